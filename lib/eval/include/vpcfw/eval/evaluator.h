// The reference evaluator: a pure function from the model and one flow to a
// verdict with a step-by-step trace along AWS's path (vpc-semantics.md):
// source groups egress, source subnet NACL egress, routing, destination subnet
// NACL ingress, destination groups ingress, then the reply the same way back
// (NACLs again, groups by connection state). It is the oracle the kernel's
// behaviour is checked against.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/model/model.h"

namespace vpcfw::eval {

// What the user asks about. Endpoints are instance names or IP addresses; an
// address outside every VPC is an internet host.
struct FlowRequest {
  std::string from;
  std::string to;
  net::Protocol protocol{net::Protocol::kTcp};
  std::uint16_t port = 0;            // destination port (tcp/udp)
  std::uint16_t sourcePort = 50000;  // inside every common ephemeral range
  int icmpType = -1;                 // -1: echo request of the flow's family
  int icmpCode = 0;
  std::optional<net::Family> family;  // when both ends are instances; default IPv4
  // Every step that would block, not only the first: a deny at a security
  // group or a NACL no longer ends the leg (a missing route or gateway still
  // does: the packet has nowhere to go). The verdict is the same either way.
  bool allSteps = false;
};

// One packet as it travels (addresses as seen at that point of the path).
struct Packet {
  net::IpAddress src, dst;
  net::Protocol protocol;
  std::uint16_t srcPort = 0, dstPort = 0;
  int icmpType = -1, icmpCode = -1;
  std::string describe() const;  // "tcp 10.0.1.10:50000 -> 10.0.2.20:5432"
};

enum class StepKind {
  kSecurityGroupEgress,
  kNaclEgress,
  kRoute,
  kInternetGateway,
  kNaclIngress,
  kSecurityGroupIngress,
};
std::string_view stepKindName(StepKind k);  // "security-group-egress", ...
std::optional<StepKind> parseStepKind(std::string_view text);
inline constexpr StepKind kAllStepKinds[] = {
    StepKind::kSecurityGroupEgress, StepKind::kNaclEgress,  StepKind::kRoute,
    StepKind::kInternetGateway,     StepKind::kNaclIngress, StepKind::kSecurityGroupIngress};

enum class Decision { kAllow, kDeny };

struct Step {
  StepKind kind = StepKind::kRoute;
  Decision decision = Decision::kAllow;
  std::string component;    // "instance web1", "network ACL web-acl (subnet web)", ...
  std::string rule;         // what decided: "web-acl egress rule 100", "web-sg ingress rule 2", "rule *", ...
  std::string ruleDetail;   // the rule's fields: "tcp 5432 from 10.0.1.0/24 allow"
  std::string code;         // explanation code when it blocks: ENI_SG_RULES_MISMATCH, ...
  std::string explanation;  // one sentence for people
};

struct Leg {
  Packet packet;  // as it left the source
  std::vector<Step> steps;
  bool delivered = false;
};

struct Verdict {
  std::string fromText, toText;  // "web1 (10.0.1.10)", "internet host 203.0.113.5"
  Leg forward;
  std::optional<Leg> reply;  // absent when the forward leg died, or no reply is expected
  bool replyExpected = true;
  bool reachable() const { return forward.delivered && (!replyExpected || (reply && reply->delivered)); }
  // The first blocking step, if any.
  const Step* blockingStep() const;
  bool blockedOnReply() const { return forward.delivered && replyExpected && reply && !reply->delivered; }
};

// Evaluates `req` against the validated model. Errors are for requests that
// cannot be evaluated (unknown instance, an address no ENI has, both ends on
// the internet, a family an endpoint lacks), never for a blocked flow.
[[nodiscard]] Expected<Verdict> explainFlow(const model::Model& m, const FlowRequest& req);

// Lower-level pieces, exposed for tests and for the compiler's cross-checks.
struct RuleMatch {
  bool allowed = false;
  const model::NaclRule* rule = nullptr;  // the deciding NACL rule (always set for NACLs)
};
// First-match evaluation of a NACL direction. `packet` addresses as the subnet sees them.
RuleMatch evaluateNacl(const model::NetworkAcl& acl, model::Direction dir, const Packet& packet);

struct GroupMatch {
  bool allowed = false;
  std::size_t group = model::kNone;  // the group and rule that allowed
  const model::SgRule* rule = nullptr;
};
// Security groups of one ENI in one direction: any rule of any group allows.
GroupMatch evaluateGroups(const model::Model& m, const std::vector<std::size_t>& groups, model::Direction dir,
                          const Packet& packet);

// vpc-semantics.md, "Connection tracking": a TCP/UDP flow whose request
// `inst`'s groups admit in `dir` from (ingress) or to (egress) 0.0.0.0/0 or
// ::/0, while they allow all traffic with 0.0.0.0/0 (::/0) the other way, is
// not tracked at that ENI: its replies pass by rule, and removing the rule
// cuts it. ICMP and other protocols are always tracked. The compiler's
// untracked sets (compile::kUntrackedSets) hold the same.
bool isUntracked(const model::Model& m, const model::Instance& inst, model::Direction dir, const Packet& request);

// True when a security-group rule's peer covers `addr` (CIDR, members of a
// referenced group, or a prefix list entry).
bool peerMatches(const model::Model& m, const model::Peer& peer, const net::IpAddress& addr);

// The route a subnet's route table picks for `dst` (longest prefix), or null.
const model::Route* lookupRoute(const model::Model& m, const model::Subnet& s, const net::IpAddress& dst);

}  // namespace vpcfw::eval
