// The reachability computation: selectors to pairs of ends, each pair to the
// path explain walks (the same steps in the same order), and each path to
// labelled interval sets per protocol. Internet ends are cut into address
// atoms at every CIDR edge that can matter to the pair, so that one
// evaluation stands exactly for every address of its atom.
#include "vpcfw/analysis/reach.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <set>

namespace vpcfw::analysis {
namespace {

using eval::StepKind;
using model::Direction;
using model::Instance;
using model::kNone;
using model::Model;
using net::Family;
using net::IpAddress;
using net::Protocol;

__extension__ using U128 = unsigned __int128;

U128 toInt(const IpAddress& a) {
  U128 v = 0;
  const int n = a.isV4() ? 4 : 16;
  for (int i = 0; i < n; ++i) v = v << 8 | a.bytes()[static_cast<std::size_t>(i)];
  return v;
}

IpAddress fromInt(Family f, U128 v) {
  std::uint8_t b[16] = {};
  const int n = f == Family::kIpv4 ? 4 : 16;
  for (int i = n - 1; i >= 0; --i) {
    b[i] = static_cast<std::uint8_t>(v & 0xff);
    v >>= 8;
  }
  return IpAddress::fromBytes(f, b);
}

U128 familyMax(Family f) { return f == Family::kIpv4 ? U128(0xffffffffu) : ~U128(0); }

struct USpan {
  U128 lo, hi;
};

// ------------------------------------------------------------ interval sets

// Sorted, disjoint spans; every operation keeps that.
using Spans = std::vector<Span>;

Spans intersectSpans(const Spans& a, const Spans& b) {
  Spans out;
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const auto lo = std::max(a[i].first, b[j].first), hi = std::min(a[i].last, b[j].last);
    if (lo <= hi) out.push_back({lo, hi});
    if (a[i].last < b[j].last)
      ++i;
    else
      ++j;
  }
  return out;
}

Spans subtractSpans(const Spans& a, const Spans& b) {
  Spans out;
  std::size_t j = 0;
  for (auto s : a) {
    while (j < b.size() && b[j].last < s.first) ++j;
    std::size_t k = j;
    std::uint64_t from = s.first;
    for (; k < b.size() && b[k].first <= s.last; ++k) {
      if (b[k].first > from) out.push_back({static_cast<std::uint32_t>(from), b[k].first - 1});
      from = std::uint64_t{b[k].last} + 1;
    }
    if (from <= s.last) out.push_back({static_cast<std::uint32_t>(from), s.last});
  }
  return out;
}

Spans unionSpans(const Spans& a, const Spans& b) {
  Spans all;
  std::merge(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(all),
             [](const Span& x, const Span& y) { return x.first < y.first; });
  Spans out;
  for (auto s : all) {
    if (!out.empty() && std::uint64_t{out.back().last} + 1 >= s.first)
      out.back().last = std::max(out.back().last, s.last);
    else
      out.push_back(s);
  }
  return out;
}

// What decided one filtering step for a piece: the step, the NACL or group
// (model index) and the rule's position in its list.
struct Decider {
  StepKind kind = StepKind::kRoute;
  std::uint32_t owner = 0, rule = 0;
  bool operator==(const Decider&) const = default;
};

// The deciders of one leg, in path order (at most four filtering steps).
struct Deciders {
  std::array<Decider, 4> d{};
  std::uint8_t n = 0;
  bool operator==(const Deciders& o) const { return n == o.n && std::equal(d.begin(), d.begin() + n, o.d.begin()); }
};

Deciders join(const Deciders& a, const Deciders& b) {
  Deciders out = a;
  for (std::uint8_t i = 0; i < b.n; ++i) out.d[out.n++] = b.d[i];
  return out;
}

struct Piece {
  Span span;
  Deciders by;
  bool operator==(const Piece&) const = default;
};
using Labelled = std::vector<Piece>;

Labelled intersect(const Labelled& a, const Labelled& b) {
  Labelled out;
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const auto lo = std::max(a[i].span.first, b[j].span.first), hi = std::min(a[i].span.last, b[j].span.last);
    if (lo <= hi) out.push_back({{lo, hi}, join(a[i].by, b[j].by)});
    if (a[i].span.last < b[j].span.last)
      ++i;
    else
      ++j;
  }
  return out;
}

// ------------------------------------------------------------ rule regions

bool isIcmpOf(int proto) { return proto == Protocol::kIcmp || proto == Protocol::kIcmpv6; }

// The values a flow of `proto` has in the forward dimension: destination
// ports for tcp/udp, type * 256 + code for ICMP, a single point otherwise.
Span domainOf(int proto) {
  if (proto == Protocol::kTcp || proto == Protocol::kUdp || isIcmpOf(proto)) return {0, 65535};
  return {0, 0};
}

Spans icmpRegion(const net::IcmpMatch& m) {
  if (m.type == -1 && m.code == -1) return {{0, 65535}};
  if (m.code == -1) {
    const auto t = static_cast<std::uint32_t>(m.type);
    return {{t * 256, t * 256 + 255}};
  }
  const auto c = static_cast<std::uint32_t>(m.code);
  if (m.type != -1) {
    const auto t = static_cast<std::uint32_t>(m.type);
    return {{t * 256 + c, t * 256 + c}};
  }
  Spans out;
  for (std::uint32_t t = 0; t < 256; ++t) out.push_back({t * 256 + c, t * 256 + c});
  return out;
}

// What a rule (whose address already matched) covers of flows of `proto`, as
// evaluateNacl / evaluateGroups decide it; false when it cannot match them.
bool ruleRegion(const Protocol& rp, const net::PortRange& ports, const net::IcmpMatch& icmp, bool icmpv6OnIpv4Nacl,
                int proto, Spans& out) {
  if (icmpv6OnIpv4Nacl) {  // AWS: 58 with an IPv4 CIDR = all ICMP
    if (proto != Protocol::kIcmp) return false;
    out = {domainOf(proto)};
    return true;
  }
  if (rp.isAll()) {
    out = {domainOf(proto)};
    return true;
  }
  if (rp.number() != proto) return false;
  if (rp.hasPorts())
    out = {{ports.from, ports.to}};
  else if (rp.isIcmpAny())
    out = icmpRegion(icmp);
  else
    out = {domainOf(proto)};
  return true;
}

// ------------------------------------------------------------ path steps

// One step of explain's path for a pair whose addresses are fixed: a NACL or
// the groups of an ENI (filters), or a route or gateway (address only: it
// passes or not for every flow).
struct Step {
  StepKind kind = StepKind::kRoute;
  bool filter = false;
  bool passes = true;         // gates
  std::string component;      // for the blocked explanation
  std::string explanation;    // gates that fail
  std::size_t owner = kNone;  // NACL steps: the NACL
  // The rules whose address matches: (group or NACL, index in its list).
  std::vector<std::pair<std::uint32_t, std::uint32_t>> candidates;
  bool isNacl() const { return kind == StepKind::kNaclEgress || kind == StepKind::kNaclIngress; }
};

std::string groupList(const Model& m, const Instance& inst) {
  std::string out;
  for (auto g : inst.groups) out += (out.empty() ? "" : ", ") + m.groups[g].name;
  return out;
}

class PathBuilder {
 public:
  explicit PathBuilder(const Model& m) : m_(m) {}

  Step nacl(const model::Subnet& subnet, Direction dir, const IpAddress& peer) const {
    Step s;
    s.kind = dir == Direction::kEgress ? StepKind::kNaclEgress : StepKind::kNaclIngress;
    s.filter = true;
    s.owner = subnet.nacl;
    const auto& acl = m_.nacls[subnet.nacl];
    s.component = fmt::format("network ACL {} (subnet {})", acl.name, subnet.name);
    const auto& rules = acl.rules(dir);
    for (std::uint32_t i = 0; i < rules.size(); ++i)
      if (rules[i].cidr.family() == peer.family() && rules[i].cidr.contains(peer))
        s.candidates.emplace_back(static_cast<std::uint32_t>(subnet.nacl), i);
    return s;
  }

  Step groups(std::size_t instance, Direction dir, const IpAddress& peer) const {
    const auto& inst = m_.instances[instance];
    Step s;
    s.kind = dir == Direction::kEgress ? StepKind::kSecurityGroupEgress : StepKind::kSecurityGroupIngress;
    s.filter = true;
    s.component = fmt::format("security groups of {} ({})", inst.name, groupList(m_, inst));
    for (auto g : inst.groups) {
      const auto& rules = m_.groups[g].rules(dir);
      for (std::uint32_t i = 0; i < rules.size(); ++i)
        if (eval::peerMatches(m_, rules[i].peer, peer)) s.candidates.emplace_back(static_cast<std::uint32_t>(g), i);
    }
    return s;
  }

  // explain's routeStep: the subnet's route toward `dst`, which is in VPC
  // `peerVpc` (kNone: the internet).
  Step route(const model::Subnet& subnet, const IpAddress& dst, std::size_t peerVpc, bool isReply) const {
    Step s;
    s.kind = StepKind::kRoute;
    s.component = fmt::format("route table {} (subnet {})", m_.routeTables[subnet.routeTable].name, subnet.name);
    auto fail = [&](std::string why) {
      s.passes = false;
      s.explanation = std::move(why);
      return s;
    };
    const auto* r = eval::lookupRoute(m_, subnet, dst);
    if (!r) return fail(fmt::format("no route matches {}{}", dst.toString(), isReply ? " for the reply" : ""));
    const bool toInternet = peerVpc == kNone;
    switch (r->target) {
      case model::Route::Target::kLocal:
        if (peerVpc != subnet.vpc) return fail(fmt::format("{} is inside this VPC but no ENI has it", dst.toString()));
        break;
      case model::Route::Target::kInternetGateway:
        if (!toInternet)
          return fail(fmt::format("the route sends {} to the internet gateway, where private addresses are not routed",
                                  dst.toString()));
        break;
      case model::Route::Target::kPeering: {
        const auto& pc = m_.peerings[r->targetIndex];
        if (!pc.active) return fail(fmt::format("peering {} is not active (blackhole route)", pc.name));
        const std::size_t far = pc.other(subnet.vpc);
        if (toInternet)
          return fail(
              fmt::format("the route sends {} into peering {}; VPC {} does not forward it to its internet "
                          "gateway (no edge-to-edge routing through a peer)",
                          dst.toString(), pc.name, m_.vpcs[far].name));
        if (far != peerVpc)
          return fail(fmt::format("peering {} leads to VPC {}, not to VPC {}; peering is not transitive", pc.name,
                                  m_.vpcs[far].name, m_.vpcs[peerVpc].name));
        if (!m_.vpcs[peerVpc].contains(dst))
          return fail(fmt::format("{} is not inside VPC {}", dst.toString(), m_.vpcs[peerVpc].name));
        break;
      }
    }
    return s;
  }

  // explain's gatewayStep: the instance's internet gateway translating.
  Step gateway(const Instance& inst, bool outbound, const IpAddress& instanceAddr) const {
    const auto& vpc = m_.vpcs[inst.vpc];
    Step s;
    s.kind = StepKind::kInternetGateway;
    s.component = vpc.internetGateway == kNone
                      ? fmt::format("VPC {} (no internet gateway)", vpc.name)
                      : fmt::format("internet gateway {}", m_.internetGateways[vpc.internetGateway].name);
    auto fail = [&](std::string why) {
      s.passes = false;
      s.explanation = std::move(why);
      return s;
    };
    if (vpc.internetGateway == kNone) return fail(fmt::format("VPC {} has no internet gateway", vpc.name));
    if (instanceAddr.isV4()) {
      if (!inst.publicIp)
        return fail(fmt::format("{} has no public IPv4 address, so the gateway cannot translate {}", inst.name,
                                instanceAddr.toString()));
      if (!outbound && instanceAddr != *inst.publicIp)
        return fail(fmt::format("{} is a private address; from the internet {} is reached at {}",
                                instanceAddr.toString(), inst.name, inst.publicIp->toString()));
    }
    return s;
  }

 private:
  const Model& m_;
};

struct Path {
  std::vector<Step> forward, reply;
};

// ------------------------------------------------------------ evaluation

// A protocol number standing for `protocols` (every protocol in them is
// treated alike by every rule of the model).
struct ProtocolClass {
  int proto = 0;
  Spans protocols;
};

struct IcmpReply {
  int requestType = 0;
  Deciders by;
  bool operator==(const IcmpReply&) const = default;
};

struct ClassAnswer {
  ProtocolClass cls;
  Labelled forward;  // reply-blocked ICMP requests removed
  Labelled reply;    // tcp/udp: client source ports; others: [0,0]; ICMP: unused
  std::vector<IcmpReply> icmpReplies;
  bool sameAnswer(const ClassAnswer& o) const {
    return cls.proto == o.cls.proto && forward == o.forward && reply == o.reply && icmpReplies == o.icmpReplies;
  }
};

struct Answer {
  std::vector<ClassAnswer> classes;
  std::optional<Blocked> blocked;
  bool operator==(const Answer& o) const {
    if (classes.size() != o.classes.size() || blocked != o.blocked) return false;
    for (std::size_t i = 0; i < classes.size(); ++i)
      if (!classes[i].sameAnswer(o.classes[i])) return false;
    return true;
  }
};

class Evaluator {
 public:
  explicit Evaluator(const Model& m) : m_(m) {}

  Answer run(const Path& path, Family fam, const std::vector<ProtocolClass>& classes) const {
    Answer a;
    std::vector<bool> aliveFwd(path.forward.size()), aliveRep(path.reply.size());
    for (const auto& c : classes) {
      Labelled f = leg(path.forward, c.proto, aliveFwd, nullptr);
      if (f.empty()) continue;
      ClassAnswer ca{c, {}, {}, {}};
      if (isIcmpOf(c.proto)) {
        // Requests that expect a reply need it back; the reply has one
        // type and code 0, so each is a single point of the reply's domain.
        std::vector<std::vector<bool>> alive;
        bool oneWayLeft = false;
        Labelled kept = f;
        for (auto [request, answer] : replyTypes(fam)) {
          const Span row{static_cast<std::uint32_t>(request) * 256, static_cast<std::uint32_t>(request) * 256 + 255};
          if (intersect(f, {{row, {}}}).empty()) continue;
          std::vector<bool> ok(path.reply.size());
          const auto point = static_cast<std::uint32_t>(answer) * 256;
          Labelled r = leg(path.reply, c.proto, ok, &point);
          alive.push_back(ok);
          if (r.empty()) {
            Labelled rest;
            for (const auto& p : kept)
              for (auto s : subtractSpans({p.span}, {row})) rest.push_back({s, p.by});
            kept = std::move(rest);
          } else {
            ca.icmpReplies.push_back({request, r.front().by});
          }
        }
        for (const auto& p : kept) {
          const auto t = p.span.first / 256;
          if (p.span.last / 256 != t || !expectsReply(fam, static_cast<int>(t))) oneWayLeft = true;
        }
        for (std::size_t k = 0; k < path.reply.size(); ++k) {
          bool any = oneWayLeft;
          for (const auto& ok : alive) any = any || ok[k];
          if (any) aliveRep[k] = true;
        }
        if (kept.empty()) continue;
        ca.forward = std::move(kept);
      } else {
        std::vector<bool> ok(path.reply.size());
        Labelled r = leg(path.reply, c.proto, ok, nullptr);
        for (std::size_t k = 0; k < ok.size(); ++k)
          if (ok[k]) aliveRep[k] = true;
        if (r.empty()) continue;
        ca.forward = std::move(f);
        ca.reply = std::move(r);
      }
      a.classes.push_back(std::move(ca));
    }
    if (a.classes.empty()) a.blocked = blockedAt(path, aliveFwd, aliveRep);
    return a;
  }

  static bool expectsReply(Family fam, int type) {
    for (auto [request, answer] : replyTypes(fam))
      if (request == type) return true;
    return false;
  }

 private:
  const Model& m_;

  // explain's replyTo: the ICMP requests that get a reply, and its type.
  static std::vector<std::pair<int, int>> replyTypes(Family fam) {
    if (fam == Family::kIpv4) return {{8, 0}, {13, 14}};
    return {{128, 129}};
  }

  // The flows of one protocol a leg lets through; `alive[k]` is set when
  // something is left after step k. `only`: start from that single value.
  Labelled leg(const std::vector<Step>& steps, int proto, std::vector<bool>& alive, const std::uint32_t* only) const {
    Labelled cur{{only ? Span{*only, *only} : domainOf(proto), {}}};
    for (std::size_t k = 0; k < steps.size() && !cur.empty(); ++k) {
      const auto& s = steps[k];
      if (!s.filter) {
        if (!s.passes) cur.clear();
      } else {
        cur = intersect(cur, s.isNacl() ? naclAllows(s, proto) : groupsAllow(s, proto));
      }
      if (!cur.empty()) alive[k] = true;
    }
    return cur;
  }

  // First match by rule number: each rule decides what is left of the domain.
  Labelled naclAllows(const Step& s, int proto) const {
    const auto& acl = m_.nacls[s.owner];
    const auto& rules = acl.rules(s.kind == StepKind::kNaclEgress ? Direction::kEgress : Direction::kIngress);
    Spans left{domainOf(proto)}, region;
    Labelled out;
    for (auto [owner, i] : s.candidates) {
      const auto& r = rules[i];
      const bool quirk = r.protocol.number() == Protocol::kIcmpv6 && r.cidr.family() == Family::kIpv4;
      if (!ruleRegion(r.protocol, r.ports, r.icmp, quirk, proto, region)) continue;
      if (r.action == model::Action::kAllow)
        for (auto p : intersectSpans(left, region)) {
          Piece piece{p, {}};
          piece.by.d[piece.by.n++] = Decider{s.kind, owner, i};
          out.push_back(piece);
        }
      left = subtractSpans(left, region);
      if (left.empty()) break;
    }
    std::sort(out.begin(), out.end(), [](const Piece& a, const Piece& b) { return a.span.first < b.span.first; });
    return out;
  }

  // Any rule of any group allows; a value is credited to the first rule that
  // covers it, as evaluateGroups reports it.
  Labelled groupsAllow(const Step& s, int proto) const {
    const Direction dir = s.kind == StepKind::kSecurityGroupEgress ? Direction::kEgress : Direction::kIngress;
    Spans covered, region;
    Labelled out;
    for (auto [g, i] : s.candidates) {
      const auto& r = m_.groups[g].rules(dir)[i];
      if (!ruleRegion(r.protocol, r.ports, r.icmp, false, proto, region)) continue;
      for (auto p : subtractSpans(region, covered)) {
        Piece piece{p, {}};
        piece.by.d[piece.by.n++] = Decider{s.kind, g, i};
        out.push_back(piece);
      }
      covered = unionSpans(covered, region);
    }
    std::sort(out.begin(), out.end(), [](const Piece& a, const Piece& b) { return a.span.first < b.span.first; });
    return out;
  }

  static std::string codeOf(StepKind k) {
    switch (k) {
      case StepKind::kSecurityGroupEgress:
      case StepKind::kSecurityGroupIngress:
        return "ENI_SG_RULES_MISMATCH";
      case StepKind::kNaclEgress:
      case StepKind::kNaclIngress:
        return "SUBNET_ACL_RESTRICTION";
      case StepKind::kRoute:
      case StepKind::kInternetGateway:
        return "CANNOT_ROUTE";
    }
    return "";
  }

  static Blocked describe(const Step& s, bool onReply, bool first) {
    Blocked b;
    b.step = s.kind;
    b.onReply = onReply;
    b.component = s.component;
    b.code = codeOf(s.kind);
    if (!s.filter)
      b.explanation = s.explanation;
    else if (onReply)
      b.explanation = "no reply of a flow that the forward path allows gets through here";
    else if (first)
      b.explanation = "no rule here allows any flow to this destination";
    else
      b.explanation = "none of the flows that the earlier steps let through is allowed here";
    return b;
  }

  static Blocked blockedAt(const Path& path, const std::vector<bool>& aliveFwd, const std::vector<bool>& aliveRep) {
    for (std::size_t k = 0; k < path.forward.size(); ++k)
      if (!aliveFwd[k]) return describe(path.forward[k], false, k == 0);
    for (std::size_t k = 0; k + 1 < path.reply.size(); ++k)
      if (!aliveRep[k]) return describe(path.reply[k], true, false);
    return describe(path.reply.back(), true, false);  // every reply has a step, and the last one left nothing
  }
};

// ------------------------------------------------------------ selectors

struct Selection {
  std::vector<std::size_t> instances;
  bool internet = false;
  std::optional<Family> family;  // a CIDR selector: its family only
  std::optional<USpan> within;   // a CIDR selector: the internet part lies in it
};

bool inCidr(const net::Cidr& c, const IpAddress& a) { return c.family() == a.family() && c.contains(a); }

Expected<Selection> select(const Model& m, const std::string& what, std::string_view flag) {
  Selection s;
  if (auto i = m.findInstance(what); i != kNone) {
    s.instances.push_back(i);
    return s;
  }
  if (auto sn = m.findSubnet(what); sn != kNone) {
    for (std::size_t i = 0; i < m.instances.size(); ++i)
      if (m.instances[i].subnet == sn) s.instances.push_back(i);
    return s;
  }
  if (auto v = m.findVpc(what); v != kNone) {
    for (std::size_t i = 0; i < m.instances.size(); ++i)
      if (m.instances[i].vpc == v) s.instances.push_back(i);
    return s;
  }
  if (what == "internet") {
    s.internet = true;
    return s;
  }
  std::optional<net::Cidr> cidr;
  if (what.find('/') != std::string::npos) {
    if (auto c = net::Cidr::parse(what)) cidr = c->cidr;
  } else if (auto a = IpAddress::parse(what)) {
    cidr = net::Cidr::host(*a);
  }
  if (!cidr)
    return makeError(
        ErrorCode::kNotFound,
        fmt::format("{} '{}' is no instance, subnet or VPC of the config, nor 'internet', nor a CIDR", flag, what));
  s.family = cidr->family();
  s.internet = true;
  s.within = USpan{toInt(cidr->network()), toInt(cidr->last())};
  for (std::size_t i = 0; i < m.instances.size(); ++i) {
    const auto& inst = m.instances[i];
    if (inCidr(*cidr, inst.privateIp) || (inst.publicIp && inCidr(*cidr, *inst.publicIp)) ||
        (!inst.ipv6Addresses.empty() && inCidr(*cidr, inst.ipv6Addresses.front())))
      s.instances.push_back(i);
  }
  return s;
}

// Every address of `fam` that explain takes for an internet host: outside
// every VPC block, no ENI's address and no instance's public IP; inside
// `within` when given.
std::vector<USpan> internetSpace(const Model& m, Family fam, const std::optional<USpan>& within) {
  std::vector<USpan> excluded;
  auto cidr = [&](const net::Cidr& c) {
    if (c.family() == fam) excluded.push_back({toInt(c.network()), toInt(c.last())});
  };
  auto addr = [&](const IpAddress& a) {
    if (a.family() == fam) excluded.push_back({toInt(a), toInt(a)});
  };
  for (const auto& v : m.vpcs) {
    for (const auto& c : v.cidrs) cidr(c);
    if (v.ipv6Cidr) cidr(*v.ipv6Cidr);
  }
  for (const auto& i : m.instances) {
    addr(i.privateIp);
    for (const auto& a : i.secondaryIps) addr(a);
    for (const auto& a : i.ipv6Addresses) addr(a);
    if (i.publicIp) addr(*i.publicIp);
  }
  std::sort(excluded.begin(), excluded.end(), [](const USpan& a, const USpan& b) { return a.lo < b.lo; });
  const USpan all = within.value_or(USpan{0, familyMax(fam)});
  std::vector<USpan> out;
  U128 from = all.lo;
  bool done = false;
  for (const auto& e : excluded) {
    if (e.hi < from) continue;
    if (e.lo > all.hi) break;
    if (e.lo > from) out.push_back({from, e.lo - 1});
    if (e.hi >= all.hi) {
      done = true;
      break;
    }
    from = e.hi + 1;
  }
  if (!done && from <= all.hi) out.push_back({from, all.hi});
  return out;
}

std::vector<ProtocolClass> protocolClasses(const Model& m, Family fam, const std::optional<Protocol>& only) {
  std::set<int> named;
  for (const auto& a : m.nacls)
    for (auto dir : {Direction::kIngress, Direction::kEgress})
      for (const auto& r : a.rules(dir))
        if (!r.protocol.isAll()) named.insert(r.protocol.number());
  for (const auto& g : m.groups)
    for (auto dir : {Direction::kIngress, Direction::kEgress})
      for (const auto& r : g.rules(dir))
        if (!r.protocol.isAll()) named.insert(r.protocol.number());
  const int icmp = fam == Family::kIpv4 ? Protocol::kIcmp : Protocol::kIcmpv6;
  const int otherIcmp = fam == Family::kIpv4 ? Protocol::kIcmpv6 : Protocol::kIcmp;
  std::set<int> own = {Protocol::kTcp, Protocol::kUdp, icmp};
  for (int n : named)
    if (n != otherIcmp) own.insert(n);
  std::vector<ProtocolClass> out;
  if (only) {
    const int n = only->number();
    if (n == otherIcmp) return out;
    const auto u = static_cast<std::uint32_t>(n);
    out.push_back({n, {{u, u}}});  // every protocol without a rule of its own behaves alike
    return out;
  }
  // tcp, udp and ICMP first, as people read them; then by number.
  std::vector<int> order = {Protocol::kTcp, Protocol::kUdp, icmp};
  for (int n : own)
    if (n != Protocol::kTcp && n != Protocol::kUdp && n != icmp) order.push_back(n);
  for (int n : order) {
    const auto u = static_cast<std::uint32_t>(n);
    out.push_back({n, {{u, u}}});
  }
  Spans rest{{0, 255}};
  Spans taken;
  for (int n : own) taken.push_back({static_cast<std::uint32_t>(n), static_cast<std::uint32_t>(n)});
  taken.push_back({static_cast<std::uint32_t>(otherIcmp), static_cast<std::uint32_t>(otherIcmp)});
  std::sort(taken.begin(), taken.end(), [](const Span& a, const Span& b) { return a.first < b.first; });
  rest = subtractSpans(rest, taken);
  if (!rest.empty()) out.push_back({static_cast<int>(rest.front().first), rest});
  return out;
}

// ------------------------------------------------------------ results

std::string ruleName(const Model& m, const Decider& d) {
  const bool egress = d.kind == StepKind::kSecurityGroupEgress || d.kind == StepKind::kNaclEgress;
  const Direction dir = egress ? Direction::kEgress : Direction::kIngress;
  if (d.kind == StepKind::kNaclEgress || d.kind == StepKind::kNaclIngress) {
    const auto& acl = m.nacls[d.owner];
    return fmt::format("{} {} rule {}", acl.name, model::directionName(dir), acl.rules(dir)[d.rule].label());
  }
  const auto& g = m.groups[d.owner];
  return fmt::format("{} {} rule {}", g.name, model::directionName(dir), g.rules(dir)[d.rule].index);
}

std::vector<RuleRef> ruleRefs(const Model& m, const Deciders& by) {
  std::vector<RuleRef> out;
  for (std::uint8_t i = 0; i < by.n; ++i) out.push_back({by.d[i].kind, ruleName(m, by.d[i])});
  return out;
}

// Neighbouring pieces decided by the same rules are one piece for people.
Labelled coalesce(const Labelled& in) {
  Labelled out;
  for (const auto& p : in) {
    if (!out.empty() && out.back().by == p.by && std::uint64_t{out.back().span.last} + 1 == p.span.first)
      out.back().span.last = p.span.last;
    else
      out.push_back(p);
  }
  return out;
}

std::vector<ProtocolReach> toPublic(const Model& m, const Answer& a) {
  std::vector<ProtocolReach> out;
  for (const auto& c : a.classes) {
    ProtocolReach pr;
    pr.protocols = c.cls.protocols;
    const int p = c.cls.proto;
    if (isIcmpOf(p)) {
      for (const auto& piece : coalesce(c.forward)) {
        // type * 256 + code back to boxes: a partial first row, whole rows, a partial last row.
        std::uint32_t lo = piece.span.first, hi = piece.span.last;
        auto box = [&](std::uint32_t t1, std::uint32_t t2, std::uint32_t c1, std::uint32_t c2) {
          pr.forward.push_back({{0, 0}, {t1, t2}, {c1, c2}, ruleRefs(m, piece.by)});
        };
        if (lo / 256 == hi / 256) {
          box(lo / 256, lo / 256, lo % 256, hi % 256);
          continue;
        }
        std::uint32_t t1 = lo / 256, t2 = hi / 256;
        if (lo % 256 != 0) {
          box(t1, t1, lo % 256, 255);
          ++t1;
        }
        const bool tail = hi % 256 != 255;
        if (tail) --t2;
        if (t1 <= t2) box(t1, t2, 0, 255);
        if (tail) box(hi / 256, hi / 256, 0, hi % 256);
      }
      for (const auto& r : c.icmpReplies) pr.reply.push_back({{0, 0}, r.requestType, ruleRefs(m, r.by)});
    } else if (p == Protocol::kTcp || p == Protocol::kUdp) {
      for (const auto& piece : coalesce(c.forward))
        pr.forward.push_back({piece.span, {0, 0}, {0, 0}, ruleRefs(m, piece.by)});
      for (const auto& piece : coalesce(c.reply)) pr.reply.push_back({piece.span, -1, ruleRefs(m, piece.by)});
    } else {
      // Protocols without ports that the same rules decide share a line.
      auto fwd = ruleRefs(m, c.forward.front().by), back = ruleRefs(m, c.reply.front().by);
      auto same = std::find_if(out.begin(), out.end(), [&](const ProtocolReach& o) {
        return !o.hasPorts() && !o.isIcmp() && o.forward.front().rules == fwd && o.reply.front().rules == back;
      });
      if (same != out.end()) {
        same->protocols = unionSpans(same->protocols, c.cls.protocols);
        continue;
      }
      pr.forward.push_back({{0, 0}, {0, 0}, {0, 0}, std::move(fwd)});
      pr.reply.push_back({{0, 0}, -1, std::move(back)});
    }
    out.push_back(std::move(pr));
  }
  return out;
}

class ReachComputer {
 public:
  ReachComputer(const Model& m, const ReachRequest& req) : m_(m), req_(req), build_(m), eval_(m) {
    for (auto f : {Family::kIpv4, Family::kIpv6}) classes_[index(f)] = protocolClasses(m, f, req.protocol);
  }

  Expected<ReachResult> run() {
    auto src = select(m_, req_.from, "--from");
    if (!src) return unexpected(src.error());
    auto dst = select(m_, req_.to, "--to");
    if (!dst) return unexpected(dst.error());
    if (src->family && dst->family && *src->family != *dst->family)
      return makeError(ErrorCode::kInvalidArgument, "--from and --to are of different address families");
    if (src->instances.empty() && dst->instances.empty())
      return makeError(ErrorCode::kInvalidArgument,
                       "neither end selects an instance; reach answers for flows that touch at least one instance");
    const auto fam = src->family ? src->family : dst->family;
    ReachResult r;
    r.from = req_.from;
    r.to = req_.to;
    r.protocol = req_.protocol;
    for (auto a : src->instances) {
      for (auto b : dst->instances)
        if (a != b)
          for (auto f : families(fam))
            if (hasFamily(a, f) && hasFamily(b, f)) r.pairs.push_back(between(a, b, f));
      if (dst->internet)
        for (auto f : families(fam))
          if (hasFamily(a, f)) withInternet(r.pairs, a, f, dst->within, false);
    }
    if (src->internet)
      for (auto b : dst->instances)
        for (auto f : families(fam))
          if (hasFamily(b, f)) withInternet(r.pairs, b, f, src->within, true);
    if (r.pairs.empty())
      return makeError(ErrorCode::kInvalidArgument,
                       "--from and --to leave no pair of two different ends (an instance and another instance or "
                       "internet hosts) of a common address family");
    return r;
  }

 private:
  const Model& m_;
  const ReachRequest& req_;
  PathBuilder build_;
  Evaluator eval_;
  std::array<std::vector<ProtocolClass>, 2> classes_;

  static std::size_t index(Family f) { return f == Family::kIpv4 ? 0 : 1; }

  std::vector<Family> families(std::optional<Family> only) const {
    std::vector<Family> out;
    for (auto f : {Family::kIpv4, Family::kIpv6}) {
      if (only && *only != f) continue;
      // A protocol one family cannot carry leaves that family out.
      if (req_.protocol && classes_[index(f)].empty()) continue;
      out.push_back(f);
    }
    return out;
  }

  bool hasFamily(std::size_t i, Family f) const { return f == Family::kIpv4 || !m_.instances[i].ipv6Addresses.empty(); }

  // The address explain uses for an instance named by name.
  IpAddress addressOf(std::size_t i, Family f, bool fromInternet) const {
    const auto& inst = m_.instances[i];
    if (f == Family::kIpv6) return inst.ipv6Addresses.front();
    if (fromInternet && inst.publicIp) return *inst.publicIp;
    return inst.privateIp;
  }

  PairReach finish(Endpoint from, Endpoint to, Family f, const Answer& a) const {
    PairReach p;
    p.from = std::move(from);
    p.to = std::move(to);
    p.family = f;
    p.protocols = toPublic(m_, a);
    p.blocked = a.blocked;
    return p;
  }

  PairReach between(std::size_t ai, std::size_t bi, Family f) const {
    const auto& a = m_.instances[ai];
    const auto& b = m_.instances[bi];
    const auto& sa = m_.subnets[a.subnet];
    const auto& sb = m_.subnets[b.subnet];
    const bool same = a.subnet == b.subnet;
    const IpAddress aa = addressOf(ai, f, false), ba = addressOf(bi, f, false);
    Path path;
    path.forward.push_back(build_.groups(ai, Direction::kEgress, ba));
    if (!same) path.forward.push_back(build_.nacl(sa, Direction::kEgress, ba));
    path.forward.push_back(build_.route(sa, ba, b.vpc, false));
    if (!same) path.forward.push_back(build_.nacl(sb, Direction::kIngress, aa));
    path.forward.push_back(build_.groups(bi, Direction::kIngress, aa));
    if (!same) path.reply.push_back(build_.nacl(sb, Direction::kEgress, aa));
    path.reply.push_back(build_.route(sb, aa, a.vpc, true));
    if (!same) path.reply.push_back(build_.nacl(sa, Direction::kIngress, ba));
    return finish(Endpoint{ai, aa, {}}, Endpoint{bi, ba, {}}, f, eval_.run(path, f, classes_[index(f)]));
  }

  // explain's toInternet (inbound false) and fromInternet (inbound true) for
  // the remote host `r`.
  Path internetPath(std::size_t xi, Family f, const IpAddress& r, bool inbound) const {
    const auto& x = m_.instances[xi];
    const auto& sx = m_.subnets[x.subnet];
    Path path;
    if (!inbound) {
      const IpAddress src = addressOf(xi, f, false);
      path.forward.push_back(build_.groups(xi, Direction::kEgress, r));
      path.forward.push_back(build_.nacl(sx, Direction::kEgress, r));
      path.forward.push_back(build_.route(sx, r, kNone, false));
      path.forward.push_back(build_.gateway(x, true, src));
      // The reply meets the gateway at the public address (IPv4).
      path.reply.push_back(build_.gateway(x, false, f == Family::kIpv4 && x.publicIp ? *x.publicIp : src));
      path.reply.push_back(build_.nacl(sx, Direction::kIngress, r));
    } else {
      path.forward.push_back(build_.gateway(x, false, addressOf(xi, f, true)));
      path.forward.push_back(build_.nacl(sx, Direction::kIngress, r));
      path.forward.push_back(build_.groups(xi, Direction::kIngress, r));
      path.reply.push_back(build_.nacl(sx, Direction::kEgress, r));
      path.reply.push_back(build_.route(sx, r, kNone, true));
      path.reply.push_back(build_.gateway(x, true, addressOf(xi, f, false)));
    }
    return path;
  }

  // Every CIDR edge that can change the answer between instance `xi` and
  // internet hosts: its subnet's NACL and route table, its groups' peers.
  std::vector<U128> cutsFor(std::size_t xi, Family f) const {
    const auto& x = m_.instances[xi];
    const auto& sx = m_.subnets[x.subnet];
    std::vector<U128> cuts;
    auto add = [&](const net::Cidr& c) {
      if (c.family() != f) return;
      cuts.push_back(toInt(c.network()));
      if (toInt(c.last()) != familyMax(f)) cuts.push_back(toInt(c.last()) + 1);
    };
    for (auto dir : {Direction::kIngress, Direction::kEgress}) {
      for (const auto& r : m_.nacls[sx.nacl].rules(dir)) add(r.cidr);
      for (auto g : x.groups)
        for (const auto& r : m_.groups[g].rules(dir)) {
          if (auto* c = std::get_if<net::Cidr>(&r.peer)) add(*c);
          if (auto* p = std::get_if<model::PrefixListRef>(&r.peer); p && p->prefixList != kNone)
            for (const auto& c : m_.prefixLists[p->prefixList].entries) add(c);
        }
    }
    if (sx.routeTable != kNone)
      for (const auto& r : m_.routeTables[sx.routeTable].routes) add(r.destination);
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    return cuts;
  }

  void withInternet(std::vector<PairReach>& out, std::size_t xi, Family f, const std::optional<USpan>& within,
                    bool inbound) const {
    const auto space = internetSpace(m_, f, within);
    if (space.empty()) return;
    const Endpoint instanceEnd{xi, addressOf(xi, f, inbound), {}};
    auto pair = [&](std::vector<AddressRange> ranges, const Answer& a) {
      Endpoint net{kNone, {}, std::move(ranges)};
      out.push_back(inbound ? finish(std::move(net), instanceEnd, f, a) : finish(instanceEnd, std::move(net), f, a));
    };
    const auto& x = m_.instances[xi];
    if (inbound && f == Family::kIpv4 && !x.publicIp) {
      // explain refuses the flow: the internet has no address for it.
      Answer a;
      Blocked b;
      b.step = StepKind::kInternetGateway;
      b.component = fmt::format("instance {}", x.name);
      b.code = "CANNOT_ROUTE";
      b.explanation = fmt::format("{} has no public IP, so the internet cannot address it", x.name);
      a.blocked = b;
      std::vector<AddressRange> ranges;
      for (const auto& s : space) ranges.push_back({fromInt(f, s.lo), fromInt(f, s.hi)});
      pair(std::move(ranges), a);
      return;
    }
    const auto cuts = cutsFor(xi, f);
    std::vector<std::pair<Answer, std::vector<USpan>>> groups;
    for (const auto& s : space) {
      auto it = std::upper_bound(cuts.begin(), cuts.end(), s.lo);
      U128 lo = s.lo;
      while (true) {
        const U128 hi = it != cuts.end() && *it <= s.hi ? *it - 1 : s.hi;
        Answer a = eval_.run(internetPath(xi, f, fromInt(f, lo), inbound), f, classes_[index(f)]);
        auto g = std::find_if(groups.begin(), groups.end(), [&](const auto& e) { return e.first == a; });
        if (g == groups.end()) {
          groups.emplace_back(std::move(a), std::vector<USpan>{{lo, hi}});
        } else if (g->second.back().hi + 1 == lo) {
          g->second.back().hi = hi;
        } else {
          g->second.push_back({lo, hi});
        }
        if (hi == s.hi) break;
        lo = hi + 1;
        ++it;
      }
    }
    for (auto& [a, spans] : groups) {
      std::vector<AddressRange> ranges;
      for (const auto& s : spans) ranges.push_back({fromInt(f, s.lo), fromInt(f, s.hi)});
      pair(std::move(ranges), a);
    }
  }
};

}  // namespace

std::string AddressRange::toString() const {
  const U128 lo = toInt(first), hi = toInt(last);
  const U128 size = hi - lo;  // one less than the count
  if (size == familyMax(first.family()) && lo == 0) return net::Cidr::any(first.family()).toString();
  if ((size & (size + 1)) == 0 && (lo & size) == 0) {
    int bits = 0;
    for (U128 s = size; s; s >>= 1) ++bits;
    return net::Cidr::make(first, first.bits() - bits).toString();
  }
  return first.toString() + "-" + last.toString();
}

bool ReachResult::allows(const FlowPoint& f) const {
  auto matches = [&](const Endpoint& e, std::size_t instance) {
    if (instance != model::kNone) return e.instance == instance;
    if (!e.isInternet()) return false;
    for (const auto& r : e.ranges)
      if (r.contains(f.remote)) return true;
    return false;
  };
  for (const auto& p : pairs) {
    if (p.family != f.family || !matches(p.from, f.fromInstance) || !matches(p.to, f.toInstance)) continue;
    for (const auto& pr : p.protocols) {
      bool in = false;
      for (auto s : pr.protocols) in = in || s.contains(static_cast<std::uint32_t>(f.protocol));
      if (!in) continue;
      if (pr.hasPorts()) {
        bool fwd = false, back = false;
        for (const auto& x : pr.forward) fwd = fwd || x.ports.contains(f.port);
        for (const auto& x : pr.reply) back = back || x.sourcePorts.contains(f.sourcePort);
        return fwd && back;
      }
      if (pr.isIcmp()) {
        for (const auto& x : pr.forward)
          if (x.types.contains(static_cast<std::uint32_t>(f.icmpType)) &&
              x.codes.contains(static_cast<std::uint32_t>(f.icmpCode)))
            return true;
        return false;
      }
      return true;
    }
    return false;
  }
  return false;
}

Expected<ReachResult> computeReach(const Model& m, const ReachRequest& req) { return ReachComputer(m, req).run(); }

std::string endpointText(const Model& m, const Endpoint& e) {
  if (!e.isInternet()) return fmt::format("{} ({})", m.instances[e.instance].name, e.address.toString());
  std::string out = "internet";
  const std::size_t shown = std::min<std::size_t>(e.ranges.size(), 4);
  for (std::size_t i = 0; i < shown; ++i) out += (i ? ", " : " ") + e.ranges[i].toString();
  if (e.ranges.size() > shown) out += fmt::format(" and {} more ranges", e.ranges.size() - shown);
  return out;
}

}  // namespace vpcfw::analysis
