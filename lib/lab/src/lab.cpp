#include "vpcfw/lab/lab.h"

#include <fmt/format.h>

#include <set>

#include "vpcfw/compile/compiler.h"
#include "vpcfw/lab/rtnl.h"
#include "vpcfw/nft/applier.h"

namespace vpcfw::lab {
namespace {

// Every packet of an instance goes through its VPC's router, as in AWS:
// the instance holds /32 (/128) addresses and a default route to the subnet's
// router address (.1), which the router holds on the instance's ENI interface.
Expected<void> wireInstance(const model::Model& m, const model::Instance& inst, const std::string& routerNs,
                            const std::string& eni) {
  const std::string ns = instanceNamespace(inst);
  const auto& subnet = m.subnets[inst.subnet];
  if (auto r = createNamespace(ns); !r) return r;
  if (auto r = setLinkUp(ns, "lo"); !r) return r;
  if (auto r = createVeth(ns, "eth0", routerNs, eni); !r) return r;
  if (auto r = setLinkUp(ns, "eth0"); !r) return r;
  if (auto r = setLinkUp(routerNs, eni); !r) return r;
  auto wire = [&](const net::IpAddress& addr, const net::Cidr& block) -> Expected<void> {
    const int bits = addr.bits();
    const net::IpAddress gw = block.network().offset(1);
    if (auto r = addAddress(ns, "eth0", addr, bits); !r) return r;
    if (auto r = addAddress(routerNs, eni, gw, bits); !r) return r;
    if (auto r = addRoute(routerNs, net::Cidr::host(addr), eni); !r) return r;
    return {};
  };
  auto defaults = [&](const net::Cidr& block) -> Expected<void> {
    const net::IpAddress gw = block.network().offset(1);
    if (auto r = addRoute(ns, net::Cidr::host(gw), "eth0"); !r) return r;
    return addRoute(ns, net::Cidr::any(block.family()), "eth0", gw);
  };
  if (auto r = wire(inst.privateIp, subnet.cidr); !r) return r;
  for (const auto& a : inst.secondaryIps)
    if (auto r = wire(a, subnet.cidr); !r) return r;
  if (auto r = defaults(subnet.cidr); !r) return r;
  if (subnet.ipv6Cidr && !inst.ipv6Addresses.empty()) {
    for (const auto& a : inst.ipv6Addresses)
      if (auto r = wire(a, *subnet.ipv6Cidr); !r) return r;
    if (auto r = defaults(*subnet.ipv6Cidr); !r) return r;
  }
  return {};
}

}  // namespace

std::string instanceNamespace(const model::Instance& inst) {
  return inst.placement.netns.empty() ? std::string(kPrefix) + "i-" + inst.name : inst.placement.netns;
}

Expected<LabReport> labUp(const model::Model& m, const std::function<void(const std::string&)>& progress) {
  LabReport report;
  for (const auto& g : m.internetGateways)
    report.notBuilt.push_back(fmt::format("internet gateway {} (and the internet namespace)", g.name));
  for (const auto& p : m.peerings) report.notBuilt.push_back(fmt::format("peering {}", p.name));
  auto placement = compile::labPlacement(m);
  auto rulesets = compile::compileRulesets(m, placement);
  if (!rulesets) return unexpected(rulesets.error());
  auto fail = [&](const Error& e) -> Expected<LabReport> {
    for (auto it = report.namespaces.rbegin(); it != report.namespaces.rend(); ++it) (void)deleteNamespace(*it);
    return unexpected(e);
  };
  std::set<std::string> routers;
  for (std::size_t i = 0; i < m.instances.size(); ++i) {
    const auto& inst = m.instances[i];
    if (!placement.byInstance[i] || placement.byInstance[i]->hostMode) continue;
    const auto& a = *placement.byInstance[i];
    if (routers.insert(a.fabric).second) {
      progress(fmt::format("router {}", a.fabric));
      if (auto r = createNamespace(a.fabric); !r) return fail(r.error());
      report.namespaces.push_back(a.fabric);
      for (const auto& [key, value] : {std::pair{"net/ipv4/ip_forward", "1"}, std::pair{"net/ipv6/conf/all/forwarding", "1"}})
        if (auto r = writeSysctl(a.fabric, key, value); !r) return fail(r.error());
      if (auto r = setLinkUp(a.fabric, "lo"); !r) return fail(r.error());
    }
    progress(fmt::format("instance {} ({} in {})", inst.name, a.ifname, a.fabric));
    report.namespaces.push_back(instanceNamespace(inst));
    if (auto r = wireInstance(m, inst, a.fabric, a.ifname); !r) return fail(r.error());
  }
  for (const auto& r : *rulesets) {
    if (r.hostMode) continue;
    progress(fmt::format("rules {}", r.fabric));
    nft::ApplyOptions o;
    o.netns = r.fabric;
    if (auto a = nft::applyRuleset(r, o); !a) return fail(a.error());
  }
  return report;
}

std::size_t labDown(const model::Model* m) {
  std::set<std::string> names;
  for (const auto& n : listNamespaces(std::string(kPrefix))) names.insert(n);
  if (m)
    for (const auto& inst : m->instances)
      if (inst.placement.kind == model::Placement::Kind::kLabNamespace) {
        auto n = instanceNamespace(inst);
        if (!listNamespaces(n).empty()) names.insert(n);
      }
  std::size_t removed = 0;
  for (const auto& n : names)
    if (deleteNamespace(n)) ++removed;
  return removed;
}

}  // namespace vpcfw::lab
