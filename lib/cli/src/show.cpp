// `vpcfw show CONFIG --json`: the effective model after validation, with the
// AWS defaults vpcfw added and the lab placement of every ENI. For people who
// want to see what vpcfw understood, and for tools (the kernel tests use it).
#include "show.h"

#include "vpcfw/compile/compiler.h"
#include "vpcfw/flowlog/format.h"
#include "vpcfw/flowlog/record.h"
#include "vpcfw/names/names.h"

namespace vpcfw::cli {
namespace {

nlohmann::json l4Json(const net::Protocol& p, const net::PortRange& ports, const net::IcmpMatch& icmp) {
  nlohmann::json j{{"protocol", p.toString()}};
  if (p.hasPorts()) j["ports"] = ports.toString();
  if (p.isIcmpAny()) {
    j["icmp_type"] = icmp.type;
    j["icmp_code"] = icmp.code;
  }
  return j;
}

}  // namespace

nlohmann::json modelToJson(const model::Model& m) {
  using nlohmann::json;
  auto placement = compile::labPlacement(m);
  json out;
  out["vpcs"] = json::array();
  for (const auto& v : m.vpcs) {
    json cidrs = json::array();
    for (const auto& c : v.cidrs) cidrs.push_back(c.toString());
    json j{{"name", v.name},
           {"cidrs", cidrs},
           {"default_network_acl", m.nacls[v.defaultNacl].name},
           {"default_security_group", m.groups[v.defaultGroup].name},
           {"main_route_table", m.routeTables[v.mainRouteTable].name},
           {"fabric", names::routerNamespace(v.name)}};
    if (v.ipv6Cidr) j["ipv6_cidr"] = v.ipv6Cidr->toString();
    if (v.internetGateway != model::kNone) j["internet_gateway"] = m.internetGateways[v.internetGateway].name;
    out["vpcs"].push_back(j);
  }
  out["subnets"] = json::array();
  for (const auto& s : m.subnets) {
    json j{{"name", s.name},
           {"vpc", s.vpcName},
           {"cidr", s.cidr.toString()},
           {"network_acl", m.nacls[s.nacl].name},
           {"route_table", m.routeTables[s.routeTable].name}};
    if (s.ipv6Cidr) j["ipv6_cidr"] = s.ipv6Cidr->toString();
    out["subnets"].push_back(j);
  }
  out["network_acls"] = json::array();
  for (const auto& a : m.nacls) {
    json j{{"name", a.name}, {"vpc", a.vpcName}, {"default", a.isDefault}, {"generated", a.generated}};
    for (auto dir : {model::Direction::kIngress, model::Direction::kEgress}) {
      json rules = json::array();
      for (const auto& r : a.rules(dir)) {
        json rj = l4Json(r.protocol, r.ports, r.icmp);
        rj["rule"] = r.label();
        rj["cidr"] = r.cidr.toString();
        rj["action"] = model::actionName(r.action);
        rules.push_back(rj);
      }
      j[std::string(model::directionName(dir))] = rules;
    }
    out["network_acls"].push_back(j);
  }
  out["security_groups"] = json::array();
  for (const auto& g : m.groups) {
    json j{{"name", g.name}, {"vpc", g.vpcName}, {"default", g.isDefault}, {"generated", g.generated}};
    for (auto dir : {model::Direction::kIngress, model::Direction::kEgress}) {
      json rules = json::array();
      for (const auto& r : g.rules(dir)) {
        json rj = l4Json(r.protocol, r.ports, r.icmp);
        rj["peer"] = r.peerText();
        if (!r.description.empty()) rj["description"] = r.description;
        rules.push_back(rj);
      }
      j[std::string(model::directionName(dir))] = rules;
    }
    json members = json::array();
    for (auto i : g.members) members.push_back(m.instances[i].name);
    j["members"] = members;
    out["security_groups"].push_back(j);
  }
  out["instances"] = json::array();
  for (std::size_t i = 0; i < m.instances.size(); ++i) {
    const auto& inst = m.instances[i];
    json groups = json::array(), secondary = json::array(), v6 = json::array();
    for (auto g : inst.groups) groups.push_back(m.groups[g].name);
    for (const auto& a : inst.secondaryIps) secondary.push_back(a.toString());
    for (const auto& a : inst.ipv6Addresses) v6.push_back(a.toString());
    json j{{"name", inst.name},
           {"subnet", inst.subnetName},
           {"vpc", m.vpcs[inst.vpc].name},
           {"private_ip", inst.privateIp.toString()},
           {"secondary_ips", secondary},
           {"ipv6_addresses", v6},
           {"security_groups", groups}};
    if (inst.publicIp) j["public_ip"] = inst.publicIp->toString();
    if (placement.byInstance[i])
      j["lab"] = {{"fabric", placement.byInstance[i]->fabric}, {"interface", placement.byInstance[i]->ifname}};
    j["interface_id"] = flowlog::awsId("eni", inst.name);
    out["instances"].push_back(j);
  }
  // Flow logs as AWS's DescribeFlowLogs would list them, with the ENIs each covers.
  if (!m.flowLogs.empty()) out["flow_logs"] = json::array();
  for (const auto& log : m.flowLogs) {
    static constexpr const char* kinds[] = {"vpc", "subnet", "instance"};
    static constexpr const char* traffic[] = {"ACCEPT", "REJECT", "ALL"};
    static constexpr const char* dest[] = {"files", "streams", "stdout"};
    auto format = flowlog::formatOf(log).value_or(flowlog::Format::defaultFormat());
    json enis = json::array();
    for (auto i : model::flowLogInstances(m, log))
      enis.push_back({{"instance", m.instances[i].name}, {"interface_id", flowlog::awsId("eni", m.instances[i].name)}});
    json j{{"name", log.name},
           {"flow_log_id", flowlog::awsId("fl", log.name)},
           {"resource", {{"type", kinds[static_cast<int>(log.resourceKind)]}, {"name", log.resourceName}}},
           {"traffic_type", traffic[static_cast<int>(log.traffic)]},
           {"log_format", format.text()},
           {"version", format.version()},
           {"max_aggregation_interval", log.maxAggregationInterval},
           {"destination", dest[static_cast<int>(log.destination)]},
           {"account_id", log.accountId},
           {"enis", enis}};
    if (!log.path.empty()) j["path"] = log.path;
    out["flow_logs"].push_back(j);
  }
  return out;
}

}  // namespace vpcfw::cli
