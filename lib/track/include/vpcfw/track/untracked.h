// Untracked flows, cut the moment their rule goes (vpc-semantics.md,
// "Connection tracking"; docs/ruleset.md, "Untracked flows"). AWS does not
// track a TCP/UDP flow that an ENI's groups admit from (or send to)
// 0.0.0.0/0 or ::/0 while allowing all traffic the other way: its packets
// pass by rule, so removing or narrowing that rule stops it at once. Linux
// tracks every flow, and a tracked flow's replies pass by state, so after a
// commit vpcfw deletes the conntrack entries of exactly the flows that were
// untracked at an ENI under the replaced rules and that the new rules no
// longer admit there (request or reply). Tracked flows are left alone.
//
// "Untracked under the replaced rules" is read from the kernel: the
// compiler's untracked sets (compile::kUntrackedSets) as they were right
// before the commit (nft::ApplyReport::previous), so every path that
// commits (vpcfw apply, lab apply, vpcfwd) judges against what was really in
// force. The new rules are judged by the evaluator on the new model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/model/model.h"
#include "vpcfw/net/address.h"
#include "vpcfw/nft/applier.h"

namespace vpcfw::track {

// The sets to ask nft::applyRuleset for (ApplyOptions::previousSets).
std::vector<std::string> untrackedSetNames();

// One running flow: conntrack's original (request) direction.
struct Flow {
  net::IpAddress src, dst;
  std::uint8_t protocol = 0;  // 6 or 17
  std::uint16_t srcPort = 0, dstPort = 0;
  std::string describe() const;  // "tcp 198.51.100.7:40000 -> 10.0.1.10:7"
};

// What the replaced rules left untracked, per ENI address.
class UntrackedBefore {
 public:
  // From ApplyReport::previous. The kernel's elements are untrusted input:
  // one whose bytes do not have the sets' layout is skipped and counted.
  static UntrackedBefore fromKernel(const std::map<std::string, std::vector<nft::ApplyReport::ElementKey>>& previous);
  // An entry for tests: `eni` left tcp/udp `proto` ports lo..hi untracked in `dir`.
  void add(model::Direction dir, const net::IpAddress& eni, std::uint8_t proto, std::uint16_t lo, std::uint16_t hi);
  bool empty() const { return entries_[0].empty() && entries_[1].empty(); }
  std::size_t unreadable() const { return unreadable_; }
  // Whether a flow to (ingress) or from (egress) the ENI address `eni` with
  // that protocol and destination port was untracked there.
  bool untracked(model::Direction dir, const net::IpAddress& eni, std::uint8_t proto, std::uint16_t dport) const;

 private:
  struct Entry {
    net::IpAddress addr;
    std::uint8_t proto = 0;
    std::uint16_t lo = 0, hi = 0;
    auto operator<=>(const Entry&) const = default;
  };
  void sort();
  std::vector<Entry> entries_[2];  // [egress, ingress], sorted
  std::size_t unreadable_ = 0;
};

// A flow to cut and why, for people.
struct Cut {
  Flow flow;
  std::size_t index = 0;  // of the flow in flowsToCut's `flows`
  std::string why;        // "web1 ingress: the flow was untracked and no rule of its groups admits the request now"
};

// The instances whose ENI the fabric filters (compile::Placement), the only
// ones a fabric's flows are judged at: VPCs in other fabrics may reuse the
// same addresses.
std::vector<std::size_t> enisOfFabric(const compile::Placement& placement, const std::string& fabric);

// The flows to cut: untracked before at the source's ENI (egress) or the
// destination's (ingress), and at that ENI of `now` (the one of `enis`
// owning the address) no longer admitted by rule, the request in that
// direction or its reply in the other. An address none of `enis` owns is
// not judged (the ENI is gone: its traffic is no longer vpcfw's to filter),
// nor is a flow between two addresses of one instance (it never crosses the
// ENI: a host's own traffic to itself goes over lo).
std::vector<Cut> flowsToCut(const UntrackedBefore& before, const model::Model& now,
                            const std::vector<std::size_t>& enis, const std::vector<Flow>& flows);

struct CutReport {
  std::size_t examined = 0;    // TCP/UDP entries read
  std::size_t unreadable = 0;  // set elements from the kernel that were skipped (UntrackedBefore::unreadable)
  std::vector<Cut> cut;        // entries deleted
  std::size_t gone = 0;        // picked, but already gone when deleted
};

// In `netns` (nullopt: the caller's namespace): dumps conntrack's table,
// picks with flowsToCut and deletes those entries (by tuple and id, so a
// newer flow on the same tuple is not touched). Nothing to do when `before`
// is empty.
[[nodiscard]] Expected<CutReport> cutUntracked(const UntrackedBefore& before, const model::Model& now,
                                               const std::vector<std::size_t>& enis,
                                               const std::optional<std::string>& netns);

// What every committing path runs after nft::applyRuleset (with
// ApplyOptions::previousSets = untrackedSetNames()): the fabric's ENIs from
// `placement`, the replaced rules from `applied.previous`, and the cut in
// `netns`. Nothing to do (no kernel call) when the untracked sets did not
// change.
[[nodiscard]] Expected<CutReport> cutAfterCommit(const nft::ApplyReport& applied, const model::Model& now,
                                                 const compile::Placement& placement, const std::string& fabric,
                                                 const std::optional<std::string>& netns);

// One line per cut flow, and one for entries the kernel's sets held that
// could not be read (untrusted bytes), for logs and terminals.
std::vector<std::string> describe(const CutReport& r);

}  // namespace vpcfw::track
