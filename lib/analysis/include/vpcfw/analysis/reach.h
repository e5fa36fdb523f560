// Exact reachability sets (`vpcfw reach`): for every pair of ends that two
// selectors pick (instances, or internet address ranges) and every address
// family, the set of flows for which eval::explainFlow would say "reachable",
// computed from the rules with interval arithmetic, never by sampling flows.
//
// A flow is (source address for internet ends, protocol, source port,
// destination port or ICMP type and code). Forward steps constrain the
// destination port (or ICMP type/code); the reply's NACL steps constrain the
// client's source port (the reply's destination port). So the answer for one
// protocol is a product: the destination ports the forward path allows times
// the source ports whose replies get back; ICMP requests whose reply is
// blocked are left out of the forward pieces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/eval/evaluator.h"
#include "vpcfw/model/model.h"

namespace vpcfw::analysis {

// An inclusive range of ports, ICMP types or codes, or protocol numbers.
struct Span {
  std::uint32_t first = 0, last = 0;
  bool contains(std::uint32_t v) const { return v >= first && v <= last; }
  bool operator==(const Span&) const = default;
};

// An inclusive range of addresses of one family.
struct AddressRange {
  net::IpAddress first, last;
  bool contains(const net::IpAddress& a) const { return a.family() == first.family() && a >= first && a <= last; }
  std::string toString() const;  // "198.51.100.0/24" when it is a CIDR block, else "first-last"
  bool operator==(const AddressRange&) const = default;
};

// The rule that decided one step for a piece, named as explain names it.
struct RuleRef {
  eval::StepKind step = eval::StepKind::kRoute;
  std::string rule;  // "web-acl egress rule 120", "web-sg ingress rule 2"
  bool operator==(const RuleRef&) const = default;
};

// Destination ports (tcp/udp) or ICMP types x codes the forward path allows,
// with the deciding rule of each filtering step in path order.
struct ForwardPiece {
  Span ports{0, 0};  // tcp/udp
  Span types{0, 0};  // icmp/icmpv6
  Span codes{0, 0};  // icmp/icmpv6
  std::vector<RuleRef> rules;
  bool operator==(const ForwardPiece&) const = default;
};

// What lets the reply back: for tcp/udp the client source ports whose reply
// passes; for ICMP the request type whose reply passes; for other protocols
// one piece. Rules in path order of the reply.
struct ReplyPiece {
  Span sourcePorts{0, 0};  // tcp/udp
  int requestType = -1;    // icmp/icmpv6: 8, 13 or 128
  std::vector<RuleRef> rules;
  bool operator==(const ReplyPiece&) const = default;
};

// The reachable flows of one protocol, or of several protocols without ports
// that share one answer.
struct ProtocolReach {
  std::vector<Span> protocols;
  std::vector<ForwardPiece> forward;  // disjoint, ascending
  std::vector<ReplyPiece> reply;      // disjoint, ascending
  bool hasPorts() const {
    return protocols.size() == 1 && protocols[0].first == protocols[0].last &&
           (protocols[0].first == 6 || protocols[0].first == 17);
  }
  bool isIcmp() const {
    return protocols.size() == 1 && protocols[0].first == protocols[0].last &&
           (protocols[0].first == 1 || protocols[0].first == 58);
  }
  bool operator==(const ProtocolReach&) const = default;
};

// One end of a pair: an instance at the address explain uses for it, or the
// internet hosts in `ranges`.
struct Endpoint {
  std::size_t instance = model::kNone;
  net::IpAddress address;            // instance ends
  std::vector<AddressRange> ranges;  // internet ends, ascending
  bool isInternet() const { return instance == model::kNone; }
  bool operator==(const Endpoint&) const = default;
};

// Why nothing gets through: the first step (forward, then reply) after which
// no flow that the earlier steps allowed is left.
struct Blocked {
  eval::StepKind step = eval::StepKind::kRoute;
  bool onReply = false;
  std::string component;    // "network ACL web-acl (subnet web)"
  std::string code;         // ENI_SG_RULES_MISMATCH, SUBNET_ACL_RESTRICTION, CANNOT_ROUTE
  std::string explanation;  // one sentence for people
  bool operator==(const Blocked&) const = default;
};

struct PairReach {
  Endpoint from, to;
  net::Family family = net::Family::kIpv4;
  std::vector<ProtocolReach> protocols;  // empty: nothing is reachable
  std::optional<Blocked> blocked;        // set exactly when `protocols` is empty
};

struct ReachRequest {
  // Each: an instance, a subnet or a VPC name (looked up in that order),
  // `internet`, or a CIDR / address (the instances whose primary private
  // IPv4, public IPv4 or first IPv6 address lies in it, named as by name,
  // and the internet addresses in it; that family only).
  std::string from, to;
  std::optional<net::Protocol> protocol;  // nullopt: every protocol
};

// One concrete flow, for membership tests.
struct FlowPoint {
  std::size_t fromInstance = model::kNone, toInstance = model::kNone;  // kNone: an internet host
  net::IpAddress remote;                                               // the internet host's address, when one end is
  net::Family family = net::Family::kIpv4;
  int protocol = net::Protocol::kTcp;
  std::uint16_t sourcePort = 0, port = 0;
  int icmpType = 0, icmpCode = 0;
};

struct ReachResult {
  std::string from, to;  // the selectors as given
  std::optional<net::Protocol> protocol;
  std::vector<PairReach> pairs;  // source end order, then destination, then IPv4 before IPv6

  // True when `flow` is in the computed set: explain would call it reachable.
  bool allows(const FlowPoint& flow) const;
};

// Computes the reachable set for every pair the selectors give. Errors are
// for selectors that name nothing, pairs of different families given as
// CIDRs, or selectors that leave no pair with an instance in it.
[[nodiscard]] Expected<ReachResult> computeReach(const model::Model& m, const ReachRequest& req);

// How the command names an end: "web1 (10.0.1.10)", "internet 0.0.0.0/0 (outside every VPC)".
std::string endpointText(const model::Model& m, const Endpoint& e);

}  // namespace vpcfw::analysis
