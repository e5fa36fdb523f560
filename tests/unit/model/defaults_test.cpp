// The AWS defaults a VPC gets without asking (vpc-semantics.md): default NACL,
// default security group, main route table, local routes, default group for
// ENIs that list none, and the '*' rules no NACL can lose.
#include <doctest/doctest.h>

#include "support/test_config.h"

using namespace vpcfw;
using vpcfw::test::loadOk;

namespace {
const model::NetworkAcl& naclOf(const model::Model& m, const char* subnet) {
  return m.nacls[m.subnets[m.findSubnet(subnet)].nacl];
}
}  // namespace

TEST_CASE("default NACL: rule 100 allows all IPv4 both ways, then '*' denies") {
  auto m = loadOk("vpcs: [{name: v, cidr: 10.0.0.0/16}]\nsubnets: [{name: s, vpc: v, cidr: 10.0.1.0/24}]\n");
  const auto& acl = naclOf(m, "s");
  CHECK(acl.isDefault);
  CHECK(acl.generated);
  for (auto dir : {model::Direction::kIngress, model::Direction::kEgress}) {
    const auto& rules = acl.rules(dir);
    REQUIRE(rules.size() == 2);
    CHECK(rules[0].number == 100);
    CHECK(rules[0].action == model::Action::kAllow);
    CHECK(rules[0].protocol.isAll());
    CHECK(rules[0].cidr.toString() == "0.0.0.0/0");
    CHECK(rules[1].label() == "*");
    CHECK(rules[1].number == 32767);
    CHECK(rules[1].action == model::Action::kDeny);
  }
}

TEST_CASE("default NACL of a VPC with IPv6 adds rule 101 for ::/0 and the IPv6 '*' rule") {
  auto m = loadOk(
      "vpcs: [{name: v, cidr: 10.0.0.0/16, ipv6_cidr: '2001:db8:1::/56'}]\n"
      "subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24}]\n");
  const auto& rules = naclOf(m, "s").ingress;
  REQUIRE(rules.size() == 4);
  CHECK(rules[1].number == 101);
  CHECK(rules[1].cidr.toString() == "::/0");
  CHECK(rules[1].action == model::Action::kAllow);
  CHECK(rules[3].number == 32768);
  CHECK(rules[3].cidr.toString() == "::/0");
  CHECK(rules[3].action == model::Action::kDeny);
}

TEST_CASE("a new custom NACL has only the '*' rules: it denies everything") {
  auto m = loadOk(
      "vpcs: [{name: v, cidr: 10.0.0.0/16}]\nnetwork_acls: [{name: locked, vpc: v}]\n"
      "subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24, network_acl: locked}]\n");
  const auto& acl = naclOf(m, "s");
  CHECK_FALSE(acl.isDefault);
  REQUIRE(acl.ingress.size() == 1);
  CHECK(acl.ingress[0].isImplicitDeny());
  REQUIRE(acl.egress.size() == 1);
  CHECK(acl.egress[0].isImplicitDeny());
}

TEST_CASE("a declared default NACL replaces the generated one") {
  auto m = loadOk(
      "vpcs: [{name: v, cidr: 10.0.0.0/16}]\n"
      "network_acls: [{name: mine, vpc: v, default: true, ingress: [{rule: 5, protocol: tcp, ports: 22, cidr: "
      "0.0.0.0/0, action: allow}]}]\n"
      "subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24}]\n");
  CHECK(m.nacls.size() == 1);
  CHECK(naclOf(m, "s").name == "mine");
  CHECK(naclOf(m, "s").ingress[0].number == 5);
}

TEST_CASE("NACL rules are ordered by number whatever order they were written in") {
  auto m = loadOk(R"(
vpcs: [{name: v, cidr: 10.0.0.0/16}]
network_acls:
  - name: a
    vpc: v
    ingress:
      - {rule: 300, protocol: all, cidr: 0.0.0.0/0, action: allow}
      - {rule: 20, protocol: all, cidr: 0.0.0.0/0, action: deny}
      - {rule: 100, protocol: all, cidr: 0.0.0.0/0, action: allow}
)");
  const auto& r = m.nacls[m.findNacl("a", 0)].ingress;
  CHECK(r[0].number == 20);
  CHECK(r[1].number == 100);
  CHECK(r[2].number == 300);
  CHECK(r[3].number == 32767);
}

TEST_CASE("default security group: all in from itself, all out, ENIs without groups get it") {
  auto m = loadOk(
      "vpcs: [{name: v, cidr: 10.0.0.0/16, ipv6_cidr: '2001:db8:1::/56'}]\n"
      "subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24}]\n"
      "instances: [{name: i, subnet: s, private_ip: 10.0.1.10}, {name: j, subnet: s, private_ip: 10.0.1.11}]\n");
  const auto& g = m.groups[m.vpcs[0].defaultGroup];
  CHECK(g.name == "default");
  CHECK(g.isDefault);
  REQUIRE(g.ingress.size() == 1);
  CHECK(g.ingress[0].protocol.isAll());
  REQUIRE(std::holds_alternative<model::GroupRef>(g.ingress[0].peer));
  CHECK(std::get<model::GroupRef>(g.ingress[0].peer).group == m.vpcs[0].defaultGroup);
  REQUIRE(g.egress.size() == 2);
  CHECK(std::get<net::Cidr>(g.egress[0].peer).toString() == "0.0.0.0/0");
  CHECK(std::get<net::Cidr>(g.egress[1].peer).toString() == "::/0");
  const auto& i = m.instances[m.findInstance("i")];
  REQUIRE(i.groups.size() == 1);
  CHECK(i.groups[0] == m.vpcs[0].defaultGroup);
  CHECK(g.members.size() == 2);
}

TEST_CASE("a declared default group keeps the self rule only when ingress is omitted") {
  auto m = loadOk(
      "vpcs: [{name: v, cidr: 10.0.0.0/16}, {name: w, cidr: 10.1.0.0/16}]\n"
      "security_groups:\n"
      "  - {name: default, vpc: v, egress: []}\n"
      "  - {name: default, vpc: w, ingress: [{protocol: tcp, ports: 22, cidr: 10.0.0.0/8}]}\n");
  const auto& gv = m.groups[m.vpcs[0].defaultGroup];
  CHECK(gv.ingress.size() == 1);
  CHECK(std::holds_alternative<model::GroupRef>(gv.ingress[0].peer));
  CHECK(gv.egress.empty());
  const auto& gw = m.groups[m.vpcs[1].defaultGroup];
  REQUIRE(gw.ingress.size() == 1);
  CHECK(std::holds_alternative<net::Cidr>(gw.ingress[0].peer));
  CHECK(gw.egress.size() == 1);
}

TEST_CASE("main route table: generated with the local routes, subnets without one use it") {
  auto m = loadOk(
      "vpcs: [{name: v, cidr: [10.0.0.0/16, 10.5.0.0/16], ipv6_cidr: '2001:db8:1::/56'}]\n"
      "subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24}]\n");
  const auto& t = m.routeTables[m.subnets[0].routeTable];
  CHECK(t.isMain);
  CHECK(t.generated);
  REQUIRE(t.routes.size() == 3);
  for (const auto& r : t.routes) CHECK(r.target == model::Route::Target::kLocal);
  CHECK(t.routes[1].destination.toString() == "10.5.0.0/16");
  CHECK(t.routes[2].destination.toString() == "2001:db8:1::/56");
}

TEST_CASE("declared route tables get the local routes first") {
  auto m = loadOk(R"(
vpcs: [{name: v, cidr: 10.0.0.0/16}]
internet_gateways: [{name: igw, vpc: v}]
route_tables: [{name: pub, vpc: v, routes: [{destination: 0.0.0.0/0, internet_gateway: igw}]}]
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24, route_table: pub}]
)");
  const auto& t = m.routeTables[m.subnets[0].routeTable];
  REQUIRE(t.routes.size() == 2);
  CHECK(t.routes[0].target == model::Route::Target::kLocal);
  CHECK(t.routes[1].target == model::Route::Target::kInternetGateway);
  CHECK(m.vpcs[0].mainRouteTable != m.subnets[0].routeTable);  // a main table was generated too
}
