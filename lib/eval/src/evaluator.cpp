#include "vpcfw/eval/evaluator.h"

#include <fmt/format.h>

namespace vpcfw::eval {
namespace {

using model::Direction;
using model::Instance;
using model::kNone;
using model::Model;
using net::Family;
using net::IpAddress;
using net::Protocol;

bool protocolMatches(const Protocol& rule, const Packet& p) { return rule.isAll() || rule == p.protocol; }

// Port and ICMP fields of a rule against a packet. The port range is always
// the packet's destination port (AWS rules describe the service side).
bool fieldsMatch(const Protocol& proto, const net::PortRange& ports, const net::IcmpMatch& icmp, const Packet& p) {
  if (proto.hasPorts()) return ports.contains(p.dstPort);
  if (proto.isIcmpAny()) return icmp.matches(p.icmpType, p.icmpCode);
  return true;
}

std::string matchText(const Protocol& proto, const net::PortRange& ports, const net::IcmpMatch& icmp) {
  if (proto.hasPorts()) return fmt::format("{} {}", proto.toString(), ports.isAll() ? "all ports" : ports.toString());
  if (proto.isIcmpAny()) return fmt::format("{} {}", proto.toString(), icmp.isAll() ? "all" : icmp.toString());
  return proto.isAll() ? "all traffic" : fmt::format("protocol {}", proto.toString());
}

std::string naclRuleText(const model::NaclRule& r, Direction dir) {
  return fmt::format("{} {} {} {}", matchText(r.protocol, r.ports, r.icmp), dir == Direction::kIngress ? "from" : "to",
                     r.cidr.toString(), model::actionName(r.action));
}

std::string sgRuleText(const model::SgRule& r, Direction dir) {
  return fmt::format("{} {} {}", matchText(r.protocol, r.ports, r.icmp), dir == Direction::kIngress ? "from" : "to",
                     r.peerText());
}

// The reply a destination sends for a request, or nullopt when none is
// expected (ICMP errors and other one-way ICMP messages).
std::optional<Packet> replyTo(const Packet& p) {
  Packet r = p;
  std::swap(r.src, r.dst);
  std::swap(r.srcPort, r.dstPort);
  if (p.protocol.number() == Protocol::kIcmp) {
    if (p.icmpType == 8)
      r.icmpType = 0;  // echo
    else if (p.icmpType == 13)
      r.icmpType = 14;  // timestamp
    else
      return std::nullopt;
    r.icmpCode = 0;
  } else if (p.protocol.number() == Protocol::kIcmpv6) {
    if (p.icmpType != 128) return std::nullopt;  // echo request
    r.icmpType = 129;
    r.icmpCode = 0;
  }
  return r;
}

// An end of the flow: an ENI or an internet host.
struct End {
  std::size_t instance = kNone;
  IpAddress address;  // the address the user gave or we chose (private, IPv6, or public)
  bool literal = false;
  std::string text;
};

class PathWalker {
 public:
  explicit PathWalker(const Model& m) : m_(m) {}

  // Security groups of an ENI for a new flow.
  bool groupsStep(Leg& leg, const Instance& inst, Direction dir, const Packet& p) {
    Step s;
    s.kind = dir == Direction::kEgress ? StepKind::kSecurityGroupEgress : StepKind::kSecurityGroupIngress;
    s.component = fmt::format("security groups of {} ({})", inst.name, groupList(inst));
    auto g = evaluateGroups(m_, inst.groups, dir, p);
    if (g.allowed) {
      s.rule = fmt::format("{} {} rule {}", m_.groups[g.group].name, model::directionName(dir), g.rule->index);
      s.ruleDetail = sgRuleText(*g.rule, dir);
      s.explanation = "a rule allows the new flow; conntrack will admit its replies";
    } else {
      s.decision = Decision::kDeny;
      s.rule = "no rule allows";
      s.code = "ENI_SG_RULES_MISMATCH";
      s.explanation = fmt::format("none of the {} rules of {}'s security groups matches {}", model::directionName(dir),
                                  inst.name, p.describe());
    }
    leg.steps.push_back(std::move(s));
    return g.allowed;
  }

  // Security groups of an ENI for the reply of a flow they admitted: passed by
  // connection state, or by rule when AWS does not track the flow.
  void replyGroupsStep(Leg& leg, const Instance& inst, Direction dir, const Packet& request) {
    Step s;
    s.kind = dir == Direction::kEgress ? StepKind::kSecurityGroupEgress : StepKind::kSecurityGroupIngress;
    s.component = fmt::format("security groups of {} ({})", inst.name, groupList(inst));
    if (isUntracked(m_, inst, dir == Direction::kEgress ? Direction::kIngress : Direction::kEgress, request)) {
      s.rule = "untracked flow";
      s.explanation =
          "AWS does not track this flow (TCP/UDP open to all one way, all traffic open the other); the reply "
          "passes by rule";
    } else {
      s.rule = "connection tracked";
      s.explanation = "the reply belongs to a tracked flow that the security groups admitted";
    }
    leg.steps.push_back(std::move(s));
  }

  bool naclStep(Leg& leg, const model::Subnet& subnet, Direction dir, const Packet& p) {
    const auto& acl = m_.nacls[subnet.nacl];
    Step s;
    s.kind = dir == Direction::kEgress ? StepKind::kNaclEgress : StepKind::kNaclIngress;
    s.component = fmt::format("network ACL {} (subnet {})", acl.name, subnet.name);
    auto r = evaluateNacl(acl, dir, p);
    s.rule = fmt::format("{} {} rule {}", acl.name, model::directionName(dir), r.rule ? r.rule->label() : "*");
    if (r.rule) s.ruleDetail = naclRuleText(*r.rule, dir);
    if (r.allowed) {
      s.explanation = "first matching rule allows";
    } else {
      s.decision = Decision::kDeny;
      s.code = "SUBNET_ACL_RESTRICTION";
      s.explanation = r.rule && !r.rule->isImplicitDeny()
                          ? fmt::format("rule {} denies {} (first match)", r.rule->label(), p.describe())
                          : fmt::format("no rule matches {}; the final '*' rule denies", p.describe());
    }
    leg.steps.push_back(std::move(s));
    return r.allowed;
  }

  // Route from a subnet toward `dst`. `peerVpc` is the VPC the destination is
  // in (kNone for the internet). Returns true when the packet gets there.
  bool routeStep(Leg& leg, const model::Subnet& subnet, const IpAddress& dst, std::size_t peerVpc, bool isReply) {
    const auto& table = m_.routeTables[subnet.routeTable];
    Step s;
    s.kind = StepKind::kRoute;
    s.component = fmt::format("route table {} (subnet {})", table.name, subnet.name);
    const auto* r = lookupRoute(m_, subnet, dst);
    auto fail = [&](std::string why) {
      s.decision = Decision::kDeny;
      s.code = "CANNOT_ROUTE";
      s.explanation = std::move(why);
      leg.steps.push_back(s);
      return false;
    };
    if (r) s.rule = fmt::format("{} -> {}", r->destination.toString(), r->targetText());
    if (!r) {
      s.rule = "no route";
      return fail(fmt::format("no route matches {}{}", dst.toString(), isReply ? " for the reply" : ""));
    }
    const bool toInternet = peerVpc == kNone;
    switch (r->target) {
      case model::Route::Target::kLocal:
        if (peerVpc == subnet.vpc) break;
        return fail(fmt::format("{} is inside this VPC but no ENI has it", dst.toString()));
      case model::Route::Target::kInternetGateway:
        if (toInternet) break;
        return fail(fmt::format("the route sends {} to the internet gateway, where private addresses are not routed",
                                dst.toString()));
      case model::Route::Target::kPeering: {
        const auto& pc = m_.peerings[r->targetIndex];
        if (!pc.active) return fail(fmt::format("peering {} is not active (blackhole route)", pc.name));
        std::size_t far = pc.other(subnet.vpc);
        if (toInternet)
          return fail(
              fmt::format("the route sends {} into peering {}; VPC {} does not forward it to its internet gateway "
                          "(no edge-to-edge routing through a peer)",
                          dst.toString(), pc.name, m_.vpcs[far].name));
        if (far != peerVpc)
          return fail(fmt::format("peering {} leads to VPC {}, not to VPC {} where {} is; peering is not transitive",
                                  pc.name, m_.vpcs[far].name, m_.vpcs[peerVpc].name, dst.toString()));
        if (!m_.vpcs[peerVpc].contains(dst))
          return fail(fmt::format("{} is not inside VPC {}", dst.toString(), m_.vpcs[peerVpc].name));
        break;
      }
    }
    s.explanation = "longest prefix match";
    leg.steps.push_back(std::move(s));
    return true;
  }

  static std::string groupList(const Instance& inst, const Model& m) {
    std::string out;
    for (auto g : inst.groups) out += (out.empty() ? "" : ", ") + m.groups[g].name;
    return out;
  }
  std::string groupList(const Instance& inst) const { return groupList(inst, m_); }

 private:
  const Model& m_;
};

// One leg's steps in path order. A filter's deny (security group, NACL) ends
// the leg unless every step is wanted; a failed route or gateway always does.
class LegWalk {
 public:
  explicit LegWalk(bool allSteps) : all_(allSteps) {}
  template <class F>
  LegWalk& filter(F&& step) {
    if (going()) ok_ = step() && ok_;
    return *this;
  }
  template <class F>
  LegWalk& path(F&& step) {
    if (going() && !step()) ok_ = false, stopped_ = true;
    return *this;
  }
  bool ok() const { return ok_; }

 private:
  bool going() const { return !stopped_ && (ok_ || all_); }
  bool all_;
  bool ok_ = true, stopped_ = false;
};

class FlowExplainer {
 public:
  FlowExplainer(const Model& m, const FlowRequest& req) : m_(m), req_(req), walk_(m) {}

  Expected<Verdict> run() {
    auto src = resolve(req_.from, "--from");
    if (!src) return unexpected(src.error());
    auto dst = resolve(req_.to, "--to");
    if (!dst) return unexpected(dst.error());
    if (src->instance == kNone && dst->instance == kNone)
      return makeError(ErrorCode::kInvalidArgument,
                       "both ends are outside every VPC; vpcfw explains flows that touch at least one instance");
    if (src->instance != kNone && src->instance == dst->instance)
      return makeError(ErrorCode::kInvalidArgument, "source and destination are the same instance");
    auto fam = chooseFamily(*src, *dst);
    if (!fam) return unexpected(fam.error());
    if (auto e = pickAddress(*src, *fam, *dst, true); !e) return unexpected(e.error());
    if (auto e = pickAddress(*dst, *fam, *src, false); !e) return unexpected(e.error());

    Verdict v;
    v.fromText = src->text;
    v.toText = dst->text;
    Packet p;
    p.src = src->address;
    p.dst = dst->address;
    p.protocol = req_.protocol;
    if (p.protocol.hasPorts()) {
      p.srcPort = req_.sourcePort;
      p.dstPort = req_.port;
    } else if (p.protocol.isIcmpAny()) {
      const bool v6 = *fam == Family::kIpv6;
      if (p.protocol.number() == (v6 ? Protocol::kIcmp : Protocol::kIcmpv6))
        return makeError(ErrorCode::kInvalidArgument,
                         fmt::format("{} cannot carry {}", v6 ? "IPv6" : "IPv4", p.protocol.toString()));
      p.icmpType = req_.icmpType == -1 ? (v6 ? 128 : 8) : req_.icmpType;
      p.icmpCode = req_.icmpCode;
    }
    v.forward.packet = p;

    if (src->instance != kNone && dst->instance != kNone)
      betweenInstances(v, m_.instances[src->instance], m_.instances[dst->instance]);
    else if (src->instance != kNone)
      toInternet(v, m_.instances[src->instance]);
    else
      fromInternet(v, m_.instances[dst->instance]);
    return v;
  }

 private:
  const Model& m_;
  const FlowRequest& req_;
  PathWalker walk_;

  Expected<End> resolve(const std::string& what, std::string_view flag) {
    End e;
    if (auto i = m_.findInstance(what); i != kNone) {
      e.instance = i;
      return e;
    }
    auto a = IpAddress::parse(what);
    if (!a)
      return makeError(ErrorCode::kNotFound,
                       fmt::format("{} '{}' is neither an instance of the config nor an IP address", flag, what));
    e.address = *a;
    e.literal = true;
    if (auto i = m_.instanceWithAddress(*a); i != kNone) {
      e.instance = i;
    } else if (auto pi = m_.instanceWithPublicIp(*a); pi != kNone) {
      e.instance = pi;
    } else if (auto v = m_.vpcContaining(*a); v != kNone) {
      return makeError(ErrorCode::kNotFound, fmt::format("{} {} is inside VPC {} but no instance has that address",
                                                         flag, what, m_.vpcs[v].name));
    }
    return e;
  }

  Expected<Family> chooseFamily(const End& a, const End& b) {
    if (a.literal && b.literal && a.address.family() != b.address.family())
      return makeError(ErrorCode::kInvalidArgument, "--from and --to are of different address families");
    if (a.literal) return a.address.family();
    if (b.literal) return b.address.family();
    if (req_.family) return *req_.family;
    if (req_.protocol.number() == Protocol::kIcmpv6) return Family::kIpv6;
    return Family::kIpv4;
  }

  // Fills e.address (when the user named an instance) and e.text.
  Expected<void> pickAddress(End& e, Family fam, const End& other, bool isSource) {
    if (e.instance == kNone) {
      e.text = fmt::format("internet host {}", e.address.toString());
      return {};
    }
    const auto& inst = m_.instances[e.instance];
    if (!e.literal) {
      if (fam == Family::kIpv6) {
        if (inst.ipv6Addresses.empty())
          return makeError(ErrorCode::kInvalidArgument, fmt::format("instance {} has no IPv6 address", inst.name));
        e.address = inst.ipv6Addresses.front();
      } else if (!isSource && other.instance == kNone) {
        // From the internet an instance is reached at its public address.
        if (!inst.publicIp)
          return makeError(ErrorCode::kInvalidArgument,
                           fmt::format("instance {} has no public IP, so the internet cannot address it; pass its "
                                       "private address to see why it is unreachable",
                                       inst.name));
        e.address = *inst.publicIp;
      } else {
        e.address = inst.privateIp;
      }
    } else if (isSource && inst.publicIp && e.address == *inst.publicIp) {
      // An instance sends from its private address; the gateway translates.
      e.address = inst.privateIp;
    }
    e.text = fmt::format("{} ({})", inst.name, e.address.toString());
    return {};
  }

  void betweenInstances(Verdict& v, const Instance& a, const Instance& b) {
    const auto& sa = m_.subnets[a.subnet];
    const auto& sb = m_.subnets[b.subnet];
    const bool sameSubnet = a.subnet == b.subnet;
    auto& fwd = v.forward;
    const Packet& p = fwd.packet;
    LegWalk w(req_.allSteps);
    w.filter([&] { return walk_.groupsStep(fwd, a, Direction::kEgress, p); });
    if (!sameSubnet) w.filter([&] { return walk_.naclStep(fwd, sa, Direction::kEgress, p); });
    w.path([&] { return walk_.routeStep(fwd, sa, p.dst, b.vpc, false); });
    if (!sameSubnet) w.filter([&] { return walk_.naclStep(fwd, sb, Direction::kIngress, p); });
    w.filter([&] { return walk_.groupsStep(fwd, b, Direction::kIngress, p); });
    fwd.delivered = w.ok();
    auto reply = replyTo(p);
    v.replyExpected = reply.has_value();
    if (!fwd.delivered || !reply) return;
    Leg back;
    back.packet = *reply;
    walk_.replyGroupsStep(back, b, Direction::kEgress, p);
    LegWalk r(req_.allSteps);
    if (!sameSubnet) r.filter([&] { return walk_.naclStep(back, sb, Direction::kEgress, *reply); });
    r.path([&] { return walk_.routeStep(back, sb, reply->dst, a.vpc, true); });
    if (!sameSubnet) r.filter([&] { return walk_.naclStep(back, sa, Direction::kIngress, *reply); });
    back.delivered = r.ok();
    if (back.delivered) walk_.replyGroupsStep(back, a, Direction::kIngress, p);
    v.reply = std::move(back);
  }

  // The instance's internet gateway translating between private and public.
  bool gatewayStep(Leg& leg, const Instance& inst, bool outbound, const IpAddress& instanceAddr) {
    const auto& vpc = m_.vpcs[inst.vpc];
    Step s;
    s.kind = StepKind::kInternetGateway;
    s.component = vpc.internetGateway == kNone
                      ? fmt::format("VPC {} (no internet gateway)", vpc.name)
                      : fmt::format("internet gateway {}", m_.internetGateways[vpc.internetGateway].name);
    auto fail = [&](std::string why) {
      s.decision = Decision::kDeny;
      s.code = "CANNOT_ROUTE";
      s.explanation = std::move(why);
      leg.steps.push_back(s);
      return false;
    };
    if (vpc.internetGateway == kNone) {
      s.rule = "no internet gateway";
      return fail(fmt::format("VPC {} has no internet gateway", vpc.name));
    }
    if (instanceAddr.isV4()) {
      s.rule = "no translation";
      if (!inst.publicIp)
        return fail(fmt::format("{} has no public IPv4 address, so the gateway cannot translate {}", inst.name,
                                instanceAddr.toString()));
      if (!outbound && instanceAddr != *inst.publicIp)
        return fail(fmt::format("{} is a private address; from the internet {} is reached at {}",
                                instanceAddr.toString(), inst.name, inst.publicIp->toString()));
      s.rule = outbound ? fmt::format("{} -> {}", inst.privateIp.toString(), inst.publicIp->toString())
                        : fmt::format("{} -> {}", inst.publicIp->toString(), inst.privateIp.toString());
      s.explanation = "1:1 NAT between the public and the private address";
    } else {
      s.rule = "no translation (IPv6)";
      s.explanation = "IPv6 addresses are used as they are";
    }
    leg.steps.push_back(std::move(s));
    return true;
  }

  void toInternet(Verdict& v, const Instance& a) {
    const auto& sa = m_.subnets[a.subnet];
    auto& fwd = v.forward;
    const Packet& p = fwd.packet;
    LegWalk w(req_.allSteps);
    w.filter([&] { return walk_.groupsStep(fwd, a, Direction::kEgress, p); })
        .filter([&] { return walk_.naclStep(fwd, sa, Direction::kEgress, p); })
        .path([&] { return walk_.routeStep(fwd, sa, p.dst, kNone, false); })
        .path([&] { return gatewayStep(fwd, a, true, p.src); });
    fwd.delivered = w.ok();
    auto reply = replyTo(p);
    v.replyExpected = reply.has_value();
    if (!fwd.delivered || !reply) return;
    Leg back;
    back.packet = *reply;  // as the instance's subnet sees it: after the gateway's translation
    // The reply reaches the gateway at the public address (IPv4) and enters
    // the subnet translated back to the private one.
    const IpAddress outside = reply->dst.isV4() ? *a.publicIp : reply->dst;
    LegWalk r(req_.allSteps);
    r.path([&] { return gatewayStep(back, a, false, outside); }).filter([&] {
      return walk_.naclStep(back, sa, Direction::kIngress, *reply);
    });
    back.delivered = r.ok();
    if (back.delivered) walk_.replyGroupsStep(back, a, Direction::kIngress, p);
    v.reply = std::move(back);
  }

  void fromInternet(Verdict& v, const Instance& b) {
    const auto& sb = m_.subnets[b.subnet];
    auto& fwd = v.forward;
    Packet inside = fwd.packet;  // the destination as the subnet sees it
    LegWalk w(req_.allSteps);
    w.path([&] { return gatewayStep(fwd, b, false, fwd.packet.dst); });
    if (w.ok() && fwd.packet.dst.isV4()) inside.dst = b.privateIp;
    w.filter([&] { return walk_.naclStep(fwd, sb, Direction::kIngress, inside); }).filter([&] {
      return walk_.groupsStep(fwd, b, Direction::kIngress, inside);
    });
    fwd.delivered = w.ok();
    auto reply = replyTo(inside);
    v.replyExpected = reply.has_value();
    if (!fwd.delivered || !reply) return;
    Leg back;
    back.packet = *reply;
    walk_.replyGroupsStep(back, b, Direction::kEgress, inside);
    LegWalk r(req_.allSteps);
    r.filter([&] { return walk_.naclStep(back, sb, Direction::kEgress, *reply); })
        .path([&] { return walk_.routeStep(back, sb, reply->dst, kNone, true); })
        .path([&] { return gatewayStep(back, b, true, reply->src); });
    back.delivered = r.ok();
    v.reply = std::move(back);
  }
};

}  // namespace

std::string_view stepKindName(StepKind k) {
  switch (k) {
    case StepKind::kSecurityGroupEgress:
      return "security-group-egress";
    case StepKind::kNaclEgress:
      return "network-acl-egress";
    case StepKind::kRoute:
      return "route";
    case StepKind::kInternetGateway:
      return "internet-gateway";
    case StepKind::kNaclIngress:
      return "network-acl-ingress";
    case StepKind::kSecurityGroupIngress:
      return "security-group-ingress";
  }
  return "?";
}

std::optional<StepKind> parseStepKind(std::string_view text) {
  for (auto k : kAllStepKinds)
    if (stepKindName(k) == text) return k;
  return std::nullopt;
}

std::string Packet::describe() const {
  if (protocol.hasPorts())
    return fmt::format("{} {} port {} -> {} port {}", protocol.toString(), src.toString(), srcPort, dst.toString(),
                       dstPort);
  if (protocol.isIcmpAny())
    return fmt::format("{} type {} code {} {} -> {}", protocol.toString(), icmpType, icmpCode, src.toString(),
                       dst.toString());
  return fmt::format("protocol {} {} -> {}", protocol.toString(), src.toString(), dst.toString());
}

const Step* Verdict::blockingStep() const {
  for (const auto& s : forward.steps)
    if (s.decision == Decision::kDeny) return &s;
  if (reply)
    for (const auto& s : reply->steps)
      if (s.decision == Decision::kDeny) return &s;
  return nullptr;
}

RuleMatch evaluateNacl(const model::NetworkAcl& acl, Direction dir, const Packet& p) {
  const auto& peer = dir == Direction::kIngress ? p.src : p.dst;
  for (const auto& r : acl.rules(dir)) {
    if (r.cidr.family() != peer.family() || !r.cidr.contains(peer)) continue;
    bool protoOk;
    if (r.protocol.number() == Protocol::kIcmpv6 && r.cidr.family() == Family::kIpv4)
      protoOk = p.protocol.number() == Protocol::kIcmp;  // AWS: 58 with an IPv4 CIDR = all ICMP
    else
      protoOk = protocolMatches(r.protocol, p) && fieldsMatch(r.protocol, r.ports, r.icmp, p);
    if (!protoOk) continue;
    return RuleMatch{r.action == model::Action::kAllow, &r};
  }
  return RuleMatch{false, nullptr};  // the '*' rule of a family the VPC lacks
}

bool peerMatches(const Model& m, const model::Peer& peer, const IpAddress& addr) {
  if (auto* c = std::get_if<net::Cidr>(&peer)) return c->contains(addr);
  if (auto* g = std::get_if<model::GroupRef>(&peer)) {
    if (g->group == kNone) return false;
    // A group reference matches the primary private IPv4 and the IPv6
    // addresses of the ENIs in that group, not their secondary IPv4s.
    for (auto i : m.groups[g->group].members) {
      const auto& inst = m.instances[i];
      if (inst.privateIp == addr) return true;
      for (const auto& a : inst.ipv6Addresses)
        if (a == addr) return true;
    }
    return false;
  }
  const auto& ref = std::get<model::PrefixListRef>(peer);
  if (ref.prefixList == kNone) return false;
  for (const auto& c : m.prefixLists[ref.prefixList].entries)
    if (c.contains(addr)) return true;
  return false;
}

// vpc-semantics.md: TCP/UDP allowed from 0.0.0.0/0 (or ::/0) in `dir` plus all
// traffic to 0.0.0.0/0 (::/0) on all ports in the other direction = untracked.
bool isUntracked(const Model& m, const Instance& inst, Direction dir, const Packet& request) {
  if (!request.protocol.hasPorts()) return false;
  const auto any = net::Cidr::any(request.src.family());
  bool open = false, allBack = false;
  const Direction back = dir == Direction::kIngress ? Direction::kEgress : Direction::kIngress;
  for (auto gi : inst.groups) {
    for (const auto& r : m.groups[gi].rules(dir)) {
      auto* c = std::get_if<net::Cidr>(&r.peer);
      if (c && *c == any && (r.protocol.isAll() || r.protocol == request.protocol) &&
          fieldsMatch(r.protocol, r.ports, r.icmp, request))
        open = true;
    }
    for (const auto& r : m.groups[gi].rules(back)) {
      auto* c = std::get_if<net::Cidr>(&r.peer);
      if (c && *c == any && r.protocol.isAll()) allBack = true;
    }
  }
  return open && allBack;
}

GroupMatch evaluateGroups(const Model& m, const std::vector<std::size_t>& groups, Direction dir, const Packet& p) {
  const auto& peer = dir == Direction::kIngress ? p.src : p.dst;
  for (auto gi : groups) {
    for (const auto& r : m.groups[gi].rules(dir)) {
      if (!protocolMatches(r.protocol, p) || !fieldsMatch(r.protocol, r.ports, r.icmp, p)) continue;
      if (peerMatches(m, r.peer, peer)) return GroupMatch{true, gi, &r};
    }
  }
  return GroupMatch{};
}

const model::Route* lookupRoute(const Model& m, const model::Subnet& s, const IpAddress& dst) {
  if (s.routeTable == kNone) return nullptr;
  const model::Route* best = nullptr;
  for (const auto& r : m.routeTables[s.routeTable].routes)
    if (r.destination.contains(dst) && (!best || r.destination.prefix() > best->destination.prefix())) best = &r;
  return best;
}

Expected<Verdict> explainFlow(const Model& m, const FlowRequest& req) { return FlowExplainer(m, req).run(); }

}  // namespace vpcfw::eval
