#include "vpcfw/lab/lab.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "vpcfw/compile/compiler.h"
#include "vpcfw/names/names.h"
#include "vpcfw/nft/applier.h"
#include "vpcfw/nft/netns.h"

namespace vpcfw::lab {
namespace {

using compile::Field;
using compile::Match;
using compile::Op;
using model::kNone;
using net::Cidr;
using net::IpAddress;
using Role = NamespacePlan::Role;

constexpr std::uint32_t kSubnetTableBase = 100;   // table of the VPC's k-th subnet: 100 + k
constexpr std::uint32_t kSubnetRuleBase = 1000;   // its rules' priority
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
  const auto third = static_cast<unsigned>(1 + k / 64), fourth = static_cast<unsigned>(4 * (k % 64) + (requester ? 1 : 2));
  return *IpAddress::parse(fmt::format("169.254.{}.{}", third, fourth));
}

std::vector<std::pair<std::string, std::string>> routerSysctls() {
  return {{"net/ipv4/conf/all/rp_filter", "0"},      {"net/ipv4/conf/default/rp_filter", "0"},
          {"net/ipv4/ip_forward", "1"},              {"net/ipv6/conf/all/forwarding", "1"},
          {"net/ipv6/conf/default/accept_dad", "0"}, {"net/ipv6/conf/default/accept_ra", "0"}};
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
    if (inst.vpc != vpcIndex || !inst.publicIp || inst.placement.kind != model::Placement::Kind::kLabNamespace) continue;
    const std::string what = fmt::format("instance {}: {} <-> {}", inst.name, inst.privateIp.toString(), inst.publicIp->toString());
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

// Runs fn(0..n-1) on up to `jobs` threads; the first error wins.
Expected<void> parallelFor(std::size_t n, unsigned jobs, const std::function<Expected<void>(std::size_t)>& fn) {
  std::atomic<std::size_t> next{0};
  std::mutex mu;
  std::optional<Error> first;
  auto worker = [&] {
    for (;;) {
      std::size_t i = next++;
      if (i >= n) return;
      {
        std::lock_guard lock(mu);
        if (first) return;
      }
      if (auto r = fn(i); !r) {
        std::lock_guard lock(mu);
        if (!first) first = r.error();
        return;
      }
    }
  };
  const unsigned count = static_cast<unsigned>(std::min<std::size_t>(n, std::max(1u, jobs)));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < count; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (first) return unexpected(*first);
  return {};
}

unsigned jobsFor(const LabOptions& o) {
  if (o.jobs) return o.jobs;
  return std::clamp(std::thread::hardware_concurrency() * 2, 2u, 8u);
}

double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Neighbour resolution (ARP, IPv6 ND) on the namespace's links retries after
// 100 ms instead of 1 s: a solicitation sent while a fresh veth is still
// coming up would otherwise hold the first packets of a new lab for a second.
// (The per-namespace `default` entries do not exist outside the initial
// namespace, so each interface is set.)
Expected<void> fastNeighbours(const NamespacePlan& p) {
  return nft::runInNetns(p.name, [&]() -> Expected<void> {
    for (const auto& i : p.up) {
      if (i == "lo") continue;
      for (const char* fam : {"ipv4", "ipv6"}) {
        const std::string key = fmt::format("/proc/sys/net/{}/neigh/{}/retrans_time_ms", fam, i);
        std::ofstream f(key);
        if (!(f << "100") || !f.flush()) return makeError(ErrorCode::kKernel, p.name + ": cannot write " + key);
      }
    }
    return {};
  });
}

// Brings a namespace's interfaces up and gives it its addresses, routes and rules.
Expected<void> configure(const NamespacePlan& p) {
  auto nl = Rtnl::open(p.name);
  if (!nl) return unexpected(nl.error());
  for (const auto& i : p.up)
    if (auto r = nl->setLinkUp(i); !r) return r;
  if (auto r = fastNeighbours(p); !r) return r;
  for (const auto& a : p.addresses)
    if (auto r = nl->addAddress(a.ifname, a.address, a.prefix); !r) return r;
  for (const auto& r : p.routes)
    if (auto x = nl->addRoute(r); !x) return unexpected(Error{x.error().code, p.name + ": " + x.error().message});
  for (const auto& r : p.rules)
    if (auto x = nl->addRule(r); !x) return unexpected(Error{x.error().code, p.name + ": " + x.error().message});
  return {};
}

Expected<void> makeNamespace(const NamespacePlan& p) {
  if (auto r = createNamespace(p.name); !r) return r;
  for (const auto& [k, v] : p.sysctls)
    if (auto r = writeSysctl(p.name, k, v); !r) return unexpected(Error{r.error().code, p.name + ": " + r.error().message});
  return {};
}

Expected<void> makeLink(const LinkPlan& l) {
  auto nl = Rtnl::open(l.ns);
  if (!nl) return unexpected(nl.error());
  return nl->createVeth(l.name, l.peerNs, l.peer);
}

}  // namespace

std::string_view roleName(Role r) {
  switch (r) {
    case Role::kRouter: return "router";
    case Role::kInstance: return "instance";
    case Role::kGateway: return "gateway";
    case Role::kInternet: return "internet";
  }
  return "?";
}

std::string instanceNamespace(const model::Instance& inst) {
  return names::instanceNamespace(inst.name, inst.placement.netns);
}
std::string routerNamespace(const model::Vpc& vpc) { return names::routerNamespace(vpc.name); }
std::string gatewayNamespace(const model::Vpc& vpc) { return names::gatewayNamespace(vpc.name); }

std::string internetNamespace() {
  const char* env = std::getenv("VPCFW_LAB_INTERNET");
  return env && *env ? std::string(env) : std::string(names::kDefaultInternetNamespace);
}

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

Expected<LabPlan> planLab(const model::Model& m) {
  LabPlan plan;
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
    return makeError(ErrorCode::kInvalidArgument, "the config places no instance in the lab (every instance is on a host)");

  std::vector<NamespacePlan> routers, gateways, instances;
  NamespacePlan internet;
  internet.name = internetNamespace();
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
      if (pc.active)
        plan.notes.push_back(fmt::format("peering {}: not built (a side has no lab instances)", pc.name));
      continue;
    }
    peeringIf[p] = names::peeringInterface(pc.name);
    plan.links.push_back(LinkPlan{routerNamespace(m.vpcs[pc.requester]), peeringIf[p], routerNamespace(m.vpcs[pc.accepter]),
                                  peeringIf[p], "peering " + pc.name});
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
      plan.links.push_back(LinkPlan{gwNs, std::string(kGatewayInetSide), internet.name, inetIf,
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
      for (const auto& c : vpc.cidrs) gw.routes.push_back(route(c, std::string(kGatewayVpcSide), kRouterGw4, 254, true));
      if (vpc.ipv6Cidr) gw.routes.push_back(route(*vpc.ipv6Cidr, std::string(kGatewayVpcSide), kRouterGw6));
      gw.routes.push_back(route(Cidr::any(net::Family::kIpv4), std::string(kGatewayInetSide), kInternetSide4, 254, true));
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
          case model::Route::Target::kLocal: spec.type = RouteSpec::Type::kThrow; break;
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
  for (auto& r : *rulesets)
    if (!r.hostMode) plan.rulesets.push_back(std::move(r));
  for (const auto& inst : m.instances)
    if (inst.placement.kind == model::Placement::Kind::kHostInterface)
      plan.notes.push_back(fmt::format("instance {}: on host {} (vpcfw apply --host), not in the lab", inst.name,
                                       inst.placement.host));
  return plan;
}

Expected<LabReport> labUp(const LabPlan& plan, const LabOptions& options) {
  LabReport report;
  const unsigned jobs = jobsFor(options);
  auto say = [&](const std::string& s) {
    if (options.progress) options.progress(s);
  };
  for (const auto& n : plan.namespaces)
    if (namespaceExists(n.name))
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("namespace {} already exists: a lab is up ('vpcfw lab apply' changes it, "
                                   "'vpcfw lab down' removes it)",
                                   n.name));
  std::mutex mu;
  auto fail = [&](const Error& e) -> Expected<LabReport> {
    for (auto it = report.namespaces.rbegin(); it != report.namespaces.rend(); ++it) (void)deleteNamespace(*it);
    return unexpected(e);
  };
  auto phase = [&](const std::string& name, std::size_t n, const std::function<Expected<void>(std::size_t)>& fn) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = parallelFor(n, jobs, fn);
    report.phases.emplace_back(name, msSince(t0));
    if (r) say(fmt::format("{:<12} {:>5}  {:>7.0f} ms", name, n, report.phases.back().second));
    return r;
  };
  if (auto r = phase("namespaces", plan.namespaces.size(),
                     [&](std::size_t i) -> Expected<void> {
                       auto x = makeNamespace(plan.namespaces[i]);
                       // Recorded even when the sysctls failed: it exists and must go on failure.
                       if (x || namespaceExists(plan.namespaces[i].name)) {
                         std::lock_guard lock(mu);
                         report.namespaces.push_back(plan.namespaces[i].name);
                       }
                       return x;
                     });
      !r)
    return fail(r.error());
  if (auto r = phase("links", plan.links.size(), [&](std::size_t i) { return makeLink(plan.links[i]); }); !r)
    return fail(r.error());
  if (auto r = phase("addressing", plan.namespaces.size(), [&](std::size_t i) { return configure(plan.namespaces[i]); }); !r)
    return fail(r.error());
  if (auto r = phase("rules", plan.rulesets.size(),
                     [&](std::size_t i) -> Expected<void> {
                       nft::ApplyOptions o;
                       o.netns = plan.rulesets[i].fabric;
                       auto a = nft::applyRuleset(plan.rulesets[i], o);
                       if (!a) return unexpected(a.error());
                       return {};
                     });
      !r)
    return fail(r.error());
  report.links = plan.links.size();
  for (const auto& n : plan.namespaces) {
    report.addresses += n.addresses.size();
    report.routes += n.routes.size();
    report.rules += n.rules.size();
  }
  return report;
}

std::size_t labDown(const LabPlan* plan, const std::string& configPath) {
  std::set<std::string> names;
  if (plan) {
    for (const auto& n : plan->namespaces)
      if (n.role != Role::kInternet && namespaceExists(n.name)) names.insert(n.name);
    for (const auto& n : readState(configPath))
      if (n != internetNamespace() && namespaceExists(n)) names.insert(n);
    std::remove(stateFile(configPath).c_str());
  } else {
    for (const auto& n : listNamespaces(std::string(names::kRouterPrefix))) names.insert(n);
    for (const auto& n : listNamespaces(std::string(names::kOtherPrefix))) names.insert(n);
  }
  std::size_t removed = 0;
  for (const auto& n : names)
    if (deleteNamespace(n)) ++removed;
  // The internet goes with the last gateway on it: it stays while it has
  // links other than this lab's (their ends vanish a moment after the
  // gateways' namespaces do).
  const std::string inet = internetNamespace();
  if (const NamespacePlan* ip = plan ? plan->find(inet) : nullptr; ip && namespaceExists(inet)) {
    bool used = false;
    if (auto nl = Rtnl::open(inet))
      if (auto links = nl->links())
        used = std::any_of(links->begin(), links->end(), [&](const LinkInfo& l) {
          return std::find(ip->up.begin(), ip->up.end(), l.name) == ip->up.end();
        });
    if (!used && deleteNamespace(inet)) ++removed;
  }
  return removed;
}

bool LabStatus::upToDate() const {
  return std::all_of(namespaces.begin(), namespaces.end(), [](const NamespaceStatus& n) {
    return n.planned && n.exists && n.interfacesUp == n.interfaces && (!n.hasRuleset || n.rulesetCurrent);
  });
}

Expected<LabStatus> labStatus(const LabPlan* plan, const std::string& configPath) {
  LabStatus st;
  std::set<std::string> seen;
  auto add = [&](const std::string& name, const NamespacePlan* p) {
    if (!seen.insert(name).second) return;
    NamespaceStatus n;
    n.name = name;
    n.planned = p != nullptr;
    if (p) {
      n.role = std::string(roleName(p->role));
      n.object = p->object;
    } else {
      n.role = name.rfind(names::kOtherPrefix, 0) == 0 ? "other" : "router";
    }
    n.exists = namespaceExists(name);
    if (n.exists) {
      if (auto nl = Rtnl::open(name)) {
        if (auto links = nl->links()) {
          for (const auto& l : *links) {
            if (l.name == "lo") continue;
            ++n.interfaces;
            if (l.up) ++n.interfacesUp;
            n.rxPackets += l.rxPackets;
            n.txPackets += l.txPackets;
          }
        }
      }
      if (auto t = nft::tableStatus(name); t && t->exists) {
        n.hasRuleset = true;
        if (plan)
          for (const auto& rs : plan->rulesets)
            if (rs.fabric == name) {
              auto d = nft::diffRuleset(rs, name);
              n.rulesetCurrent = d && d->empty();
            }
      }
    }
    st.namespaces.push_back(std::move(n));
  };
  if (plan) {
    // This lab only: the plan, and what the lab made that the plan dropped.
    for (const auto& p : plan->namespaces) add(p.name, &p);
    for (const auto& n : readState(configPath))
      if (namespaceExists(n)) add(n, nullptr);
    return st;
  }
  std::vector<std::string> found = listNamespaces(std::string(names::kRouterPrefix));
  for (auto& n : listNamespaces(std::string(names::kOtherPrefix))) found.push_back(n);
  std::sort(found.begin(), found.end());
  for (const auto& n : found) add(n, nullptr);
  return st;
}

std::string stateFile(const std::string& configPath) {
  std::error_code ec;
  auto abs = std::filesystem::weakly_canonical(configPath, ec);
  const std::string key = ec ? configPath : abs.string();
  std::uint32_t h = 2166136261u;
  for (unsigned char c : key) h = (h ^ c) * 16777619u;
  return fmt::format("/run/vpcfw/lab/{:08x}.state", h);
}

Expected<void> writeState(const LabPlan& plan, const std::string& configPath) {
  const std::string path = stateFile(configPath);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  std::ofstream f(path + ".tmp");
  for (const auto& n : plan.namespaces) f << n.name << '\n';
  f.close();
  if (!f || std::rename((path + ".tmp").c_str(), path.c_str()) != 0)
    return makeError(ErrorCode::kKernel, "cannot write " + path);
  return {};
}

std::vector<std::string> readState(const std::string& configPath) {
  std::vector<std::string> out;
  std::ifstream f(stateFile(configPath));
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

namespace {

bool ownedRule(const RuleSpec& r) { return r.priority >= kSubnetRuleBase && r.priority < kSubnetRuleBase + 1000; }

bool isLinkLocal(const IpAddress& a) { return !a.isV4() && a.bytes()[0] == 0xfe && (a.bytes()[1] & 0xc0) == 0x80; }

// True when an instance namespace holds other addresses than planned (it is rebuilt then).
bool instanceChanged(const NamespacePlan& p) {
  auto nl = Rtnl::open(p.name);
  if (!nl) return true;
  auto have = nl->addresses();
  if (!have) return true;
  std::set<std::pair<std::string, int>> a, b;
  for (const auto& x : *have)
    if (x.ifname == "eth0" && !isLinkLocal(x.address)) a.emplace(x.address.toString(), x.prefix);
  for (const auto& x : p.addresses) b.emplace(x.address.toString(), x.prefix);
  return a != b;
}

// Makes an existing namespace hold exactly the plan's interfaces (up),
// addresses (added), static routes and policy-routing rules.
Expected<void> reconcile(const NamespacePlan& p, const std::vector<LinkPlan>& links, std::vector<std::string>& changes) {
  auto nl = Rtnl::open(p.name);
  if (!nl) return unexpected(nl.error());
  auto note = [&](const std::string& what) { changes.push_back(p.name + ": " + what); };
  // Interfaces this plan no longer has (a peering or gateway removed): delete them.
  std::set<std::string> planned(p.up.begin(), p.up.end());
  for (const auto& l : links) {
    if (l.ns == p.name) planned.insert(l.name);
    if (l.peerNs == p.name) planned.insert(l.peer);
  }
  auto ls = nl->links();
  if (!ls) return unexpected(ls.error());
  for (const auto& l : *ls)
    if (!planned.contains(l.name)) {
      // The far end's namespace may be going away right now, taking the
      // link with it: one that vanished meanwhile is not an error.
      if (auto r = nl->deleteLink(l.name); !r && r.error().code != ErrorCode::kNotFound && nl->ifindex(l.name)) return r;
      note("- link " + l.name);
    }
  for (const auto& i : p.up)
    if (auto r = nl->setLinkUp(i); !r) return r;
  auto addrs = nl->addresses();
  if (!addrs) return unexpected(addrs.error());
  for (const auto& a : p.addresses) {
    bool present = std::any_of(addrs->begin(), addrs->end(), [&](const AddressInfo& x) {
      return x.ifname == a.ifname && x.address == a.address && x.prefix == a.prefix;
    });
    if (present) continue;
    if (auto r = nl->addAddress(a.ifname, a.address, a.prefix); !r) return r;
    note(fmt::format("+ address {}/{} on {}", a.address.toString(), a.prefix, a.ifname));
  }
  auto routes = nl->staticRoutes();
  if (!routes) return unexpected(routes.error());
  for (const auto& r : *routes)
    if (std::find(p.routes.begin(), p.routes.end(), r) == p.routes.end()) {
      auto x = nl->deleteRoute(r);
      if (!x && x.error().code != ErrorCode::kNotFound) return x;  // gone already: its link vanished
      note("- route " + describe(r));
    }
  for (const auto& r : p.routes)
    if (std::find(routes->begin(), routes->end(), r) == routes->end()) {
      if (auto x = nl->addRoute(r); !x) return x;
      note("+ route " + describe(r));
    }
  auto rules = nl->rules();
  if (!rules) return unexpected(rules.error());
  for (const auto& r : *rules)
    if (ownedRule(r) && std::find(p.rules.begin(), p.rules.end(), r) == p.rules.end()) {
      if (auto x = nl->deleteRule(r); !x) return x;
      note("- rule " + describe(r));
    }
  for (const auto& r : p.rules)
    if (std::find(rules->begin(), rules->end(), r) == rules->end()) {
      if (auto x = nl->addRule(r); !x) return x;
      note("+ rule " + describe(r));
    }
  return {};
}

}  // namespace

Expected<LabApplyReport> labApply(const LabPlan& plan, const std::string& configPath, const LabOptions& options) {
  LabApplyReport report;
  const unsigned jobs = jobsFor(options);
  // 1. Namespaces: remove what the lab had and the plan dropped; rebuild
  //    instances whose addresses changed; build what is missing.
  std::set<std::string> planned;
  for (const auto& n : plan.namespaces) planned.insert(n.name);
  for (const auto& n : readState(configPath))
    if (!planned.contains(n) && namespaceExists(n) && n != internetNamespace()) {
      if (auto r = deleteNamespace(n); !r) return unexpected(r.error());
      report.removed.push_back(n);
    }
  std::vector<const NamespacePlan*> fresh;
  for (const auto& n : plan.namespaces) {
    if (namespaceExists(n.name)) {
      if (n.role != Role::kInstance || !instanceChanged(n)) continue;
      if (auto r = deleteNamespace(n.name); !r) return unexpected(r.error());
      report.rebuilt.push_back(n.name);
    } else {
      report.added.push_back(n.name);
    }
    fresh.push_back(&n);
  }
  if (!fresh.empty()) {
    // A removed namespace's veth ends vanish from their peers a moment later;
    // wait for them so a rebuilt instance can take its interface name again.
    for (int tries = 0; tries < 100; ++tries) {
      bool pending = false;
      for (const auto* f : fresh)
        for (const auto& l : plan.links)
          if (l.ns == f->name && namespaceExists(l.peerNs))
            if (auto nl = Rtnl::open(l.peerNs); nl && nl->ifindex(l.peer)) pending = true;
      if (!pending) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  if (auto r = parallelFor(fresh.size(), jobs, [&](std::size_t i) { return makeNamespace(*fresh[i]); }); !r)
    return unexpected(r.error());
  // 2. Links whose ends are missing.
  std::vector<const LinkPlan*> links;
  std::map<std::string, Rtnl> sessions;  // one socket per namespace
  for (const auto& l : plan.links) {
    auto it = sessions.find(l.ns);
    if (it == sessions.end()) {
      auto nl = Rtnl::open(l.ns);
      if (!nl) return unexpected(nl.error());
      it = sessions.emplace(l.ns, std::move(*nl)).first;
    }
    if (!it->second.ifindex(l.name)) links.push_back(&l);
  }
  sessions.clear();
  if (auto r = parallelFor(links.size(), jobs, [&](std::size_t i) { return makeLink(*links[i]); }); !r)
    return unexpected(r.error());
  for (const auto* l : links) report.changes.push_back(l->ns + ": + link " + l->name + " (" + l->what + ")");
  // 3. Addresses, routes, rules.
  std::mutex mu;
  if (auto r = parallelFor(plan.namespaces.size(), jobs,
                           [&](std::size_t i) -> Expected<void> {
                             std::vector<std::string> changes;
                             auto x = reconcile(plan.namespaces[i], plan.links, changes);
                             const bool isFresh = std::find(fresh.begin(), fresh.end(), &plan.namespaces[i]) != fresh.end();
                             std::lock_guard lock(mu);
                             if (!isFresh) report.changes.insert(report.changes.end(), changes.begin(), changes.end());
                             return x;
                           });
      !r)
    return unexpected(r.error());
  // 4. Rules: only the difference.
  for (const auto& rs : plan.rulesets) {
    nft::ApplyOptions o;
    o.netns = rs.fabric;
    auto a = nft::applyRuleset(rs, o);
    if (!a) return unexpected(a.error());
    for (const auto& c : a->changes) report.changes.push_back(rs.fabric + ": " + c);
  }
  if (auto w = writeState(plan, configPath); !w) return unexpected(w.error());
  return report;
}

}  // namespace vpcfw::lab
