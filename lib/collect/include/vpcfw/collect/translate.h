// From what netfilter reports in one fabric to flow-log observations
// (docs/flowlogs.md, "Collection"). Conntrack's per-entry counters give the
// packets that entered a flow in each direction; the drop rules' log
// messages give the packets a NACL or security group dropped (REJECT) and
// which of those conntrack had already counted; the accepted TCP control
// packets give tcp-flags. A direction's ACCEPT count at an ENI is what
// conntrack counted minus what was dropped before passing that ENI. A packet
// the kernel dropped at the destination's NACL before it evaluated the
// source's security groups (the fabric's order, docs/ruleset.md) has its
// source-side verdict from the evaluator, so records follow AWS's order.
// Pure: no sockets, no clock; observations name model instance indices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vpcfw/collect/packet.h"
#include "vpcfw/flowlog/aggregator.h"
#include "vpcfw/model/model.h"

namespace vpcfw::collect {

// A conntrack entry's original-direction tuple (as the fabric saw it: the
// routers do no NAT, so the reply tuple is its mirror).
struct CtTuple {
  net::IpAddress src, dst;
  std::uint8_t protocol = 0;
  std::uint16_t srcPort = 0, dstPort = 0;  // TCP, UDP, SCTP, UDP-Lite
  std::uint16_t icmpId = 0;
};

struct CtEntry {
  std::uint32_t id = 0;
  CtTuple orig;
  bool accounted = false;  // the entry has counters (nf_conntrack_acct was on when it was made)
  std::uint64_t packets[2] = {0, 0}, bytes[2] = {0, 0};  // [0] original, [1] reply direction
  std::int64_t start = 0;                                // Unix seconds it was made; 0: unknown
  bool confirmed = true;                                 // in the table (not a first packet's entry)
};

// The four stages whose drops are logged (the fabric's drop chains).
// kAllowance*: a new flow beyond the ENI's tracked-connection allowance (a
// REJECT at that ENI, as AWS drops it there).
enum class Stage : std::uint8_t {
  kNaclEgress,
  kNaclIngress,
  kSgEgress,
  kSgIngress,
  kAllowanceEgress,
  kAllowanceIngress
};
std::string_view stageName(Stage s);  // "nacl-egress", ...
std::optional<Stage> parseStage(std::string_view text);
inline bool isEgress(Stage s) {
  return s == Stage::kNaclEgress || s == Stage::kSgEgress || s == Stage::kAllowanceEgress;
}

// A packet the ruleset logged: dropped at a stage of an ENI, or an accepted
// TCP packet with SYN, FIN or RST.
struct LoggedPacket {
  enum class Kind : std::uint8_t { kDrop, kAcceptedTcp };
  Kind kind = Kind::kDrop;
  Stage stage = Stage::kNaclEgress;  // kDrop
  std::string ifname;                // kDrop: the ENI whose stage dropped it
  PacketHeader packet;
  std::optional<CtEntry> ct;  // the packet's conntrack entry, as the log message carried it
  std::int64_t time = 0;      // Unix seconds
};

// The log prefixes of the compiled ruleset: "vpcfw-drop <stage> <ifname>" and
// "vpcfw-tcp". False for any other prefix (another program's rules).
bool parsePrefix(std::string_view prefix, LoggedPacket& into);

// An ENI of the fabric: the instance and its kernel interface name there.
struct FabricEni {
  std::size_t instance = model::kNone;
  std::string ifname;
};

struct TranslatorStats {
  std::uint64_t entries = 0;      // conntrack entries followed now
  std::uint64_t unaccounted = 0;  // entries without counters (made before accounting was on)
  std::uint64_t forgotten = 0;    // entries that vanished without a destroy event (lost events)
  std::uint64_t unknownEni = 0;   // drop messages naming an interface that is not an ENI here
};

class Translator {
 public:
  // `m` must outlive the translator (or the next rebind).
  Translator(const model::Model& m, std::vector<FabricEni> enis);
  ~Translator();
  Translator(Translator&&) noexcept;
  Translator& operator=(Translator&&) noexcept;

  // A new model (a reload): entries followed so far keep their counts.
  void rebind(const model::Model& m, std::vector<FabricEni> enis);

  // An entry that existed when collection started: only what it counts from
  // now on is reported.
  void baseline(const CtEntry& e);
  // The entry's counters as of `now` (a dump, or its destroy event when
  // `destroyed`): what they grew by since the last report, as observations
  // at the ENIs of the fabric the flow crosses.
  void counters(const CtEntry& e, std::int64_t now, bool destroyed, std::vector<flowlog::Observation>& out);
  void logged(const LoggedPacket& p, std::vector<flowlog::Observation>& out);
  // The followed entry the packet belongs to (either direction), if any:
  // for log messages that do not carry their conntrack entry.
  std::optional<CtEntry> entryOf(const PacketHeader& p) const;
  // A dump is complete: entries it did not show, and that no dump before it
  // showed, are forgotten (their destroy events were lost). Returns how many.
  std::size_t endDump(std::int64_t now);

  // The ENIs (model instance indices) of entries read without counters since
  // the last call: their traffic cannot be counted, which the caller reports
  // as loss (SKIPDATA), never as silence.
  std::vector<std::size_t> takeUncounted();

  const TranslatorStats& stats() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace vpcfw::collect
