// The lab's plan: what a config becomes as namespaces, links, addresses,
// routes, policy rules and gateway NAT (pure; lab.cpp carries it out).
#include "vpcfw/lab/plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "vpcfw/compile/compiler.h"
#include "vpcfw/names/names.h"

namespace vpcfw::lab {
namespace {

using compile::Field;
using compile::Match;
using compile::Op;
using model::kNone;
using net::Cidr;
using net::IpAddress;
using Role = NamespacePlan::Role;

constexpr std::uint32_t kSubnetTableBase = 100;                            // table of the VPC's k-th subnet: 100 + k
constexpr std::uint32_t kSubnetRuleBase = 1000;                            // its rules' priority
constexpr std::string_view kGatewayLink = names::kRouterGatewayInterface;  // router side of the router-gateway link
constexpr std::string_view kGatewayVpcSide = names::kGatewayVpcInterface;
constexpr std::string_view kGatewayInetSide = names::kGatewayInternetInterface;

IpAddress ip(const char* s) { return *IpAddress::parse(s); }

// Point-to-point links carry link-local next hops: the router-gateway link
// 169.254.0.1 (router) / .2 (gateway), the gateway-internet link .6 (gateway)
// / .5 (internet); IPv6 fe80::1/::2 and fe80::6/::5 the same way.
const IpAddress kRouterGw4 = ip("169.254.0.1"), kGatewayVpc4 = ip("169.254.0.2"), kInternetSide4 = ip("169.254.0.5"),
                kGatewayInet4 = ip("169.254.0.6");
const IpAddress kRouterGw6 = ip("fe80::1"), kGatewayVpc6 = ip("fe80::2"), kInternetSide6 = ip("fe80::5"),
                kGatewayInet6 = ip("fe80::6");

// Peering k: 169.254.(1 + k/64).(4(k%64)) /30, requester .1, accepter .2;
// IPv6 fe80::1 (requester) and fe80::2 (accepter) on the link.
IpAddress peeringAddress(std::size_t k, bool requester) {
  const auto third = static_cast<unsigned>(1 + k / 64),
             fourth = static_cast<unsigned>(4 * (k % 64) + (requester ? 1 : 2));
  return *IpAddress::parse(fmt::format("169.254.{}.{}", third, fourth));
}

std::vector<std::pair<std::string, std::string>> routerSysctls() {
  return {{"net/ipv4/conf/all/rp_filter", "0"},
          {"net/ipv4/conf/default/rp_filter", "0"},
          {"net/ipv4/ip_forward", "1"},
          {"net/ipv6/conf/all/forwarding", "1"},
          {"net/ipv6/conf/default/accept_dad", "0"},
          {"net/ipv6/conf/default/accept_ra", "0"}};
}

RouteSpec route(const Cidr& dst, std::string ifname, std::optional<IpAddress> gw = std::nullopt,
                std::uint32_t table = 254, bool onlink = false) {
  RouteSpec r;
  r.dst = dst;
  r.ifname = std::move(ifname);
  r.gateway = gw;
  r.table = table;
  r.onlink = onlink;
  return r;
}

Match eq(Field f, compile::Value v) { return Match{{f}, Op::kEq, std::move(v), {}}; }
compile::AddressRange single(const IpAddress& a) { return {a, a}; }
compile::AddressRange rangeOf(const Cidr& c) { return {c.network(), c.last()}; }

// The gateway's table: 1:1 NAT for instances with a public IPv4 address,
// their IPv6 addresses as they are, nothing else through.
compile::Ruleset gatewayRuleset(const model::Model& m, std::size_t vpcIndex, const std::string& ns) {
  const auto& vpc = m.vpcs[vpcIndex];
  compile::Ruleset rs;
  rs.fabric = ns;
  rs.table.name = "vpcfw";
  auto chain = [](std::string name, std::string type, int priority, compile::Verdict policy) {
    compile::Chain c;
    c.hook = name;
    c.name = std::move(name);
    c.type = std::move(type);
    c.priority = priority;
    c.policy = policy;
    return c;
  };
  compile::Chain fwd = chain("forward", "filter", 0, compile::Verdict::drop());
  compile::Chain pre = chain("prerouting", "nat", -100, compile::Verdict::accept());
  compile::Chain post = chain("postrouting", "nat", 100, compile::Verdict::accept());
  compile::Rule est;
  est.ctState = compile::CtState::kEstablishedRelated;
  est.verdict = compile::Verdict::accept();
  fwd.rules.push_back(est);
  const std::string vpcSide(kGatewayVpcSide), inetSide(kGatewayInetSide);
  for (const auto& inst : m.instances) {
    if (inst.vpc != vpcIndex || !inst.publicIp || inst.placement.kind != model::Placement::Kind::kLabNamespace)
      continue;
    const std::string what =
        fmt::format("instance {}: {} <-> {}", inst.name, inst.privateIp.toString(), inst.publicIp->toString());
    compile::Rule d;
    d.matches = {eq(Field::kIifname, inetSide), eq(Field::kIpDaddr, single(*inst.publicIp))};
    d.nat = compile::Nat{false, inst.privateIp};
    d.comment = what;
    pre.rules.push_back(d);
    compile::Rule s;
    s.matches = {eq(Field::kOifname, inetSide), eq(Field::kIpSaddr, single(inst.privateIp))};
    s.nat = compile::Nat{true, *inst.publicIp};
    s.comment = what;
    post.rules.push_back(s);
    compile::Rule out;
    out.matches = {eq(Field::kIifname, vpcSide), eq(Field::kIpSaddr, single(inst.privateIp))};
    out.verdict = compile::Verdict::accept();
    out.comment = what;
    fwd.rules.push_back(out);
    compile::Rule in;
    in.matches = {eq(Field::kIifname, inetSide), eq(Field::kIpDaddr, single(inst.privateIp))};  // after dnat
    in.verdict = compile::Verdict::accept();
    in.comment = what;
    fwd.rules.push_back(in);
  }
  if (vpc.ipv6Cidr) {
    compile::Rule out;
    out.matches = {eq(Field::kIifname, vpcSide), eq(Field::kIp6Saddr, rangeOf(*vpc.ipv6Cidr))};
    out.verdict = compile::Verdict::accept();
    out.comment = "IPv6 of VPC " + vpc.name + ", not translated";
    fwd.rules.push_back(out);
    compile::Rule in = out;
    in.matches = {eq(Field::kIifname, inetSide), eq(Field::kIp6Daddr, rangeOf(*vpc.ipv6Cidr))};
    fwd.rules.push_back(in);
  }
  compile::Rule drop;
  drop.counter = true;
  drop.verdict = compile::Verdict::drop();
  drop.comment = "the internet gateway routes only public addresses and the VPC's IPv6";
  fwd.rules.push_back(drop);
  rs.table.chains = {std::move(fwd), std::move(pre), std::move(post)};
  return rs;
}

}  // namespace

std::string_view roleName(Role r) {
  switch (r) {
    case Role::kRouter:
      return "router";
    case Role::kInstance:
      return "instance";
    case Role::kGateway:
      return "gateway";
    case Role::kInternet:
      return "internet";
  }
  return "?";
}

std::string instanceNamespace(const model::Instance& inst) {
  return names::instanceNamespace(inst.name, inst.placement.netns);
}
std::string routerNamespace(const model::Vpc& vpc) { return names::routerNamespace(vpc.name); }
std::string gatewayNamespace(const model::Vpc& vpc) { return names::gatewayNamespace(vpc.name); }

const std::vector<Cidr>& internetRanges() {
  static const std::vector<Cidr> ranges = {Cidr::parse("192.0.2.0/24")->cidr, Cidr::parse("198.51.100.0/24")->cidr,
                                           Cidr::parse("203.0.113.0/24")->cidr, Cidr::parse("2001:db8::/32")->cidr};
  return ranges;
}

bool isLabInternetHost(const IpAddress& a) {
  return std::any_of(internetRanges().begin(), internetRanges().end(), [&](const Cidr& c) { return c.contains(a); });
}

const NamespacePlan* LabPlan::find(std::string_view name) const {
  for (const auto& n : namespaces)
    if (n.name == name) return &n;
  return nullptr;
}

bool isLabRule(const RuleSpec& r) { return !isKernelDefaultRule(r); }

Expected<LabPlan> planLab(const model::Model& m, const std::string& internetNs) {
  if (!names::isValidNamespaceName(internetNs))
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("'{}' cannot name the lab's internet namespace (1..{} of [A-Za-z0-9._:@+-], not "
                                 "starting with '.')",
                                 internetNs, names::kNamespaceNameMax));
  LabPlan plan;
  plan.internet = internetNs;
  auto placement = compile::labPlacement(m);
  auto rulesets = compile::compileRulesets(m, placement);
  if (!rulesets) return unexpected(rulesets.error());

  // Which VPCs have lab instances: only those get a router (and gateway, peerings).
  std::vector<std::vector<std::size_t>> byVpc(m.vpcs.size());
  for (std::size_t i = 0; i < m.instances.size(); ++i) {
    const auto& inst = m.instances[i];
    if (inst.vpc == kNone || inst.placement.kind != model::Placement::Kind::kLabNamespace) continue;
    byVpc[inst.vpc].push_back(i);
  }
  if (std::all_of(byVpc.begin(), byVpc.end(), [](const auto& v) { return v.empty(); }))
    return makeError(ErrorCode::kInvalidArgument,
                     "the config places no instance in the lab (every instance is on a host)");

  std::vector<NamespacePlan> routers, gateways, instances;
  NamespacePlan internet;
  internet.name = internetNs;
  internet.role = Role::kInternet;
  internet.object = "internet";
  internet.sysctls = {{"net/ipv4/ip_nonlocal_bind", "1"},
                      {"net/ipv6/ip_nonlocal_bind", "1"},
                      {"net/ipv4/ip_forward", "1"},
                      {"net/ipv6/conf/all/forwarding", "1"},
                      {"net/ipv6/conf/default/accept_dad", "0"}};
  internet.up = {"lo"};
  for (const auto& c : internetRanges()) {
    RouteSpec r = route(c, "lo");
    r.type = RouteSpec::Type::kLocal;  // every address of the range answers (in main, so /32s via gateways win)
    internet.routes.push_back(r);
  }
  bool needInternet = false;

  std::map<std::size_t, std::string> peeringIf;  // peering index -> interface name (both sides)
  for (std::size_t p = 0; p < m.peerings.size(); ++p) {
    const auto& pc = m.peerings[p];
    if (!pc.active || byVpc[pc.requester].empty() || byVpc[pc.accepter].empty()) {
      if (pc.active) plan.notes.push_back(fmt::format("peering {}: not built (a side has no lab instances)", pc.name));
      continue;
    }
    peeringIf[p] = names::peeringInterface(pc.name);
    plan.links.push_back(LinkPlan{routerNamespace(m.vpcs[pc.requester]), peeringIf[p],
                                  routerNamespace(m.vpcs[pc.accepter]), peeringIf[p], "peering " + pc.name});
  }

  for (std::size_t v = 0; v < m.vpcs.size(); ++v) {
    if (byVpc[v].empty()) continue;
    const auto& vpc = m.vpcs[v];
    NamespacePlan router;
    router.name = routerNamespace(vpc);
    router.role = Role::kRouter;
    router.object = vpc.name;
    router.sysctls = routerSysctls();
    router.up = {"lo"};
    const bool hasGateway = vpc.internetGateway != kNone;
    if (hasGateway) {
      const std::string gwNs = gatewayNamespace(vpc);
      const std::string inetIf = names::gatewayInternetInterface(vpc.name);
      needInternet = true;
      plan.links.push_back(LinkPlan{router.name, std::string(kGatewayLink), gwNs, std::string(kGatewayVpcSide),
                                    "internet gateway " + m.internetGateways[vpc.internetGateway].name});
      plan.links.push_back(
          LinkPlan{gwNs, std::string(kGatewayInetSide), internet.name, inetIf,
                   "internet gateway " + m.internetGateways[vpc.internetGateway].name + " to the internet"});
      router.up.emplace_back(kGatewayLink);
      router.addresses.push_back({std::string(kGatewayLink), kRouterGw4, 30});
      router.addresses.push_back({std::string(kGatewayLink), kRouterGw6, 64});

      NamespacePlan gw;
      gw.name = gwNs;
      gw.role = Role::kGateway;
      gw.object = m.internetGateways[vpc.internetGateway].name;
      gw.sysctls = routerSysctls();
      gw.up = {"lo", std::string(kGatewayVpcSide), std::string(kGatewayInetSide)};
      gw.addresses = {{std::string(kGatewayVpcSide), kGatewayVpc4, 30},
                      {std::string(kGatewayVpcSide), kGatewayVpc6, 64},
                      {std::string(kGatewayInetSide), kGatewayInet4, 30},
                      {std::string(kGatewayInetSide), kGatewayInet6, 64}};
      for (const auto& c : vpc.cidrs)
        gw.routes.push_back(route(c, std::string(kGatewayVpcSide), kRouterGw4, 254, true));
      if (vpc.ipv6Cidr) gw.routes.push_back(route(*vpc.ipv6Cidr, std::string(kGatewayVpcSide), kRouterGw6));
      gw.routes.push_back(
          route(Cidr::any(net::Family::kIpv4), std::string(kGatewayInetSide), kInternetSide4, 254, true));
      gw.routes.push_back(route(Cidr::any(net::Family::kIpv6), std::string(kGatewayInetSide), kInternetSide6));
      gateways.push_back(std::move(gw));
      plan.rulesets.push_back(gatewayRuleset(m, v, gwNs));

      internet.up.push_back(inetIf);
      internet.addresses.push_back({inetIf, kInternetSide4, 30});
      internet.addresses.push_back({inetIf, kInternetSide6, 64});
      for (auto i : byVpc[v])
        if (m.instances[i].publicIp)
          internet.routes.push_back(route(Cidr::host(*m.instances[i].publicIp), inetIf, kGatewayInet4, 254, true));
      if (vpc.ipv6Cidr) internet.routes.push_back(route(*vpc.ipv6Cidr, inetIf, kGatewayInet6));
    }
    for (const auto& [p, ifn] : peeringIf) {
      const auto& pc = m.peerings[p];
      if (pc.requester != v && pc.accepter != v) continue;
      router.up.push_back(ifn);
      router.addresses.push_back({ifn, peeringAddress(p, pc.requester == v), 30});
      router.addresses.push_back({ifn, pc.requester == v ? kRouterGw6 : kGatewayVpc6, 64});
    }

    // What no table routes is dropped silently, as in AWS (no ICMP errors).
    for (auto f : {net::Family::kIpv4, net::Family::kIpv6}) {
      RouteSpec bh;
      bh.dst = Cidr::any(f);
      bh.type = RouteSpec::Type::kBlackhole;
      router.routes.push_back(bh);
    }
    // One table per subnet, chosen by source address: the subnet's route
    // table. Local routes "throw" to the main table, which holds only the
    // VPC's instances: so traffic from a peering or the gateway (no rule of
    // its own) reaches this VPC's instances and nothing else.
    std::size_t k = 0;
    for (std::size_t s = 0; s < m.subnets.size(); ++s) {
      const auto& subnet = m.subnets[s];
      if (subnet.vpc != v) continue;
      const auto table = static_cast<std::uint32_t>(kSubnetTableBase + k);
      const auto prio = static_cast<std::uint32_t>(kSubnetRuleBase + k);
      ++k;
      router.rules.push_back(RuleSpec{subnet.cidr, table, prio});
      if (subnet.ipv6Cidr) router.rules.push_back(RuleSpec{*subnet.ipv6Cidr, table, prio});
      for (const auto& r : m.routeTables[subnet.routeTable].routes) {
        const bool isV4 = r.destination.family() == net::Family::kIpv4;
        RouteSpec spec;
        spec.dst = r.destination;
        spec.table = table;
        switch (r.target) {
          case model::Route::Target::kLocal:
            spec.type = RouteSpec::Type::kThrow;
            break;
          case model::Route::Target::kInternetGateway:
            spec.ifname = std::string(kGatewayLink);
            spec.gateway = isV4 ? kGatewayVpc4 : kGatewayVpc6;
            spec.onlink = isV4;
            break;
          case model::Route::Target::kPeering: {
            auto it = peeringIf.find(r.targetIndex);
            if (it == peeringIf.end()) {
              spec.type = RouteSpec::Type::kBlackhole;
              break;
            }
            const auto& pc = m.peerings[r.targetIndex];
            const bool weRequest = pc.requester == v;
            spec.ifname = it->second;
            spec.gateway = isV4 ? peeringAddress(r.targetIndex, !weRequest) : (weRequest ? kGatewayVpc6 : kRouterGw6);
            spec.onlink = isV4;
            break;
          }
        }
        router.routes.push_back(spec);
      }
    }

    for (auto i : byVpc[v]) {
      const auto& inst = m.instances[i];
      const auto& subnet = m.subnets[inst.subnet];
      const std::string eni = names::eniInterface(inst.name);
      NamespacePlan in;
      in.name = instanceNamespace(inst);
      in.role = Role::kInstance;
      in.object = inst.name;
      in.sysctls = {{"net/ipv6/conf/default/accept_dad", "0"}, {"net/ipv6/conf/default/accept_ra", "0"}};
      in.up = {"lo", std::string(names::kInstanceInterface)};
      plan.links.push_back(LinkPlan{in.name, "eth0", router.name, eni, "instance " + inst.name});
      router.up.push_back(eni);
      // Every packet of an instance goes through its VPC's router, as in AWS:
      // the instance holds /32 (/128) addresses and a default route to the
      // subnet's router address (.1), which the router holds on the ENI.
      auto wire = [&](const IpAddress& addr, const Cidr& block) {
        const IpAddress gw = block.network().offset(1);
        in.addresses.push_back({"eth0", addr, addr.bits()});
        router.addresses.push_back({eni, gw, addr.bits()});
        router.routes.push_back(route(Cidr::host(addr), eni));
      };
      auto defaults = [&](const Cidr& block) {
        const IpAddress gw = block.network().offset(1);
        in.routes.push_back(route(Cidr::host(gw), "eth0"));
        in.routes.push_back(route(Cidr::any(block.family()), "eth0", gw));
      };
      wire(inst.privateIp, subnet.cidr);
      for (const auto& a : inst.secondaryIps) wire(a, subnet.cidr);
      defaults(subnet.cidr);
      if (subnet.ipv6Cidr && !inst.ipv6Addresses.empty()) {
        for (const auto& a : inst.ipv6Addresses) wire(a, *subnet.ipv6Cidr);
        defaults(*subnet.ipv6Cidr);
      }
      instances.push_back(std::move(in));
    }
    routers.push_back(std::move(router));
  }

  for (auto& r : routers) plan.namespaces.push_back(std::move(r));
  for (auto& g : gateways) plan.namespaces.push_back(std::move(g));
  if (needInternet) plan.namespaces.push_back(std::move(internet));
  for (auto& i : instances) plan.namespaces.push_back(std::move(i));
  // Two objects in one namespace would be one lab object for the kernel: an
  // instance's own `netns:` may not be the internet's (the other names
  // cannot meet: validation checks the final names).
  std::set<std::string> seen;
  for (const auto& n : plan.namespaces)
    if (!seen.insert(n.name).second)
      return makeError(ErrorCode::kInvalidArgument, fmt::format("namespace {} is planned twice (an instance's netns: "
                                                                "is the lab's internet namespace?)",
                                                                n.name));
  for (auto& r : *rulesets)
    if (!r.hostMode) plan.rulesets.push_back(std::move(r));
  for (const auto& inst : m.instances)
    if (inst.placement.kind == model::Placement::Kind::kHostInterface)
      plan.notes.push_back(
          fmt::format("instance {}: on host {} (vpcfw apply --host), not in the lab", inst.name, inst.placement.host));
  return plan;
}

}  // namespace vpcfw::lab
