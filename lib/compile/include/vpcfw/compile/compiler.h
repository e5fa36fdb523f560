// The compiler: model + placement -> one nftables ruleset per fabric. Pure and
// deterministic: the same inputs give the same IR, byte for byte once rendered.
//
// Shape (docs/ruleset.md): in table `inet vpcfw` of each fabric, a forward base
// chain drops spoofed sources, dispatches by interface through verdict maps to
// the subnets' NACL chains (stateless, every packet, before conntrack), then
// accepts established/related, drops invalid, and dispatches to the ENIs'
// security-group chains; group rules live in concatenated interval sets, group
// references in named member sets.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/compile/ir.h"
#include "vpcfw/model/model.h"

namespace vpcfw::compile {

inline constexpr std::string_view kTableName = "vpcfw";

// Flow-log logging (docs/ruleset.md): in a fabric with an ENI that a flow log
// covers, every ENI's NACL and security-group drop chains log what they drop
// with the prefix "vpcfw-drop <stage> <ifname>", and the accepted TCP packets
// with FIN, SYN or RST are logged with the prefix "vpcfw-tcp", all to one
// nfnetlink_log group, which the collector binds.
inline constexpr std::uint16_t kFlowLogGroup = 2701;
inline constexpr std::string_view kFlowLogDropPrefix = "vpcfw-drop";
inline constexpr std::string_view kFlowLogTcpPrefix = "vpcfw-tcp";

// What a logged packet's prefix says: a drop at one ENI's stage (stage is
// "nacl-egress", "nacl-ingress", "sg-egress" or "sg-ingress"; ifname the
// ENI's interface in the fabric, the key of the fabric's maps), or an
// accepted TCP packet with FIN, SYN or RST (its interfaces tell the ENIs).
struct FlowLogPrefix {
  enum class Kind { kDrop, kTcp };
  Kind kind = Kind::kTcp;
  std::string stage;   // kDrop only
  std::string ifname;  // kDrop only
  bool operator==(const FlowLogPrefix&) const = default;
};
// "vpcfw-drop <stage> <ifname>" or "vpcfw-tcp", and back; nothing for a
// prefix that is not one of those (another tool's, a stage vpcfw does not
// log).
std::string flowLogPrefixText(const FlowLogPrefix& p);
std::optional<FlowLogPrefix> parseFlowLogPrefix(std::string_view prefix);

// Untracked flows (docs/ruleset.md, "Untracked flows"): per direction and
// family, a set of "ENI interface . ENI address . protocol . destination
// ports" for the TCP/UDP flows AWS would not track at that ENI (its groups
// admit them from, or send them to, 0.0.0.0/0 or ::/0, and allow all traffic
// the other way). No rule reads them: when group rules change, vpcfw reads
// the sets the kernel held before the commit to learn which running flows
// were untracked, and cuts those the new rules no longer allow (lib/track).
// Index: [egress, ingress][IPv4, IPv6].
inline constexpr std::string_view kUntrackedSets[2][2] = {{"untracked_out4", "untracked_out6"},
                                                          {"untracked_in4", "untracked_in6"}};

struct CompileOptions {
  // The nfnetlink_log group of the flow-log statements.
  std::uint16_t flowLogGroup = kFlowLogGroup;
};

// Where an ENI's interface is: the fabric (a network namespace, or a host)
// whose kernel filters its traffic, and the interface name there. In a lab
// router the ENI's traffic is forwarded; on a host (host mode) the ENI is the
// machine's own interface, filtered on input and output, or (routed) the
// host's side of a link to a namespace, VM or container it routes for, whose
// traffic the host forwards and filters as a lab router does.
struct Attachment {
  std::string fabric;
  std::string ifname;
  bool hostMode = false;
  bool routed = false;  // hostMode only
};

struct Placement {
  std::vector<std::optional<Attachment>> byInstance;  // index = instance; nullopt: not enforced
};

// The placement the config declares: an instance in a lab namespace has its
// VPC's router namespace (names::routerNamespace) as fabric, with the
// interface names::eniInterface there; an instance on a host interface has
// the host as fabric (host mode).
Placement labPlacement(const model::Model& m);

// One ruleset per fabric that has ENIs, ordered by fabric name.
[[nodiscard]] Expected<std::vector<Ruleset>> compileRulesets(const model::Model& m, const Placement& p,
                                                             const CompileOptions& options = {});

}  // namespace vpcfw::compile
