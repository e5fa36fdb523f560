// The YAML loader: what it reads, where it says problems are, and that it
// reports every problem rather than the first.
#include <doctest/doctest.h>

#include "support/test_config.h"
#include "vpcfw/config/loader.h"

using vpcfw::test::hasDiagnostic;
using vpcfw::test::loadDiagnostics;
using vpcfw::test::loadOk;

namespace {
const char* kMinimal = R"(
vpcs:
  - name: v
    cidr: 10.0.0.0/16
subnets:
  - {name: s, vpc: v, cidr: 10.0.1.0/24}
)";
}

TEST_CASE("an empty config is valid and declares nothing") {
  auto m = loadOk("");
  CHECK(m.vpcs.empty());
  CHECK(m.instances.empty());
}

TEST_CASE("the loader reads every kind of object with its fields") {
  auto m = loadOk(R"(
version: 1
limits: {groups_per_eni: 10, sg_rules_per_direction: 100}
vpcs:
  - name: v
    cidr: [10.0.0.0/16, 10.1.0.0/16]
    ipv6_cidr: 2001:db8:1::/56
internet_gateways: [{name: igw, vpc: v}]
prefix_lists: [{name: pl, entries: [192.0.2.0/24], max_entries: 5}]
route_tables:
  - name: rt
    vpc: v
    routes: [{destination: 0.0.0.0/0, internet_gateway: igw}]
network_acls:
  - name: acl
    vpc: v
    ingress: [{rule: 10, protocol: tcp, ports: 22-23, cidr: 192.0.2.0/24, action: deny}]
    egress: [{rule: 20, protocol: icmp, icmp_type: 3, icmp_code: 4, cidr: 0.0.0.0/0, action: allow}]
security_groups:
  - name: g
    vpc: v
    description: test group
    ingress:
      - {protocol: udp, ports: 53, cidr: 10.0.0.0/8, description: dns}
      - {protocol: tcp, ports: 443, prefix_list: pl}
      - {protocol: all, group: g}
subnets:
  - {name: s, vpc: v, cidr: 10.0.1.0/24, ipv6_cidr: "2001:db8:1:1::/64", availability_zone: az1, route_table: rt, network_acl: acl}
instances:
  - name: i
    subnet: s
    private_ip: 10.0.1.10
    secondary_ips: [10.0.1.11]
    ipv6_addresses: ["2001:db8:1:1::10"]
    public_ip: 203.0.113.10
    security_groups: [g]
    netns: lab-i
  - {name: h, subnet: s, private_ip: 10.0.1.12, host: labhost, interface: eth1}
)");
  REQUIRE(m.vpcs.size() == 1);
  CHECK(m.vpcs[0].cidrs.size() == 2);
  CHECK(m.vpcs[0].ipv6Cidr->toString() == "2001:db8:1::/56");
  CHECK(m.limits.groupsPerEni == 10);
  CHECK(m.limits.sgRulesPerDirection == 100);
  const auto& acl = m.nacls[m.findNacl("acl", 0)];
  REQUIRE(acl.ingress.size() == 3);  // the rule plus '*' for IPv4 and IPv6
  CHECK(acl.ingress[0].number == 10);
  CHECK(acl.ingress[0].ports.toString() == "22-23");
  CHECK(acl.ingress[0].action == vpcfw::model::Action::kDeny);
  CHECK(acl.egress[0].icmp.type == 3);
  CHECK(acl.egress[0].icmp.code == 4);
  const auto& g = m.groups[m.findGroup("g", 0)];
  REQUIRE(g.ingress.size() == 3);
  CHECK(g.ingress[0].description == "dns");
  CHECK(std::holds_alternative<vpcfw::model::PrefixListRef>(g.ingress[1].peer));
  CHECK(std::holds_alternative<vpcfw::model::GroupRef>(g.ingress[2].peer));
  const auto& s = m.subnets[0];
  CHECK(s.availabilityZone == "az1");
  CHECK(m.routeTables[s.routeTable].name == "rt");
  const auto& i = m.instances[m.findInstance("i")];
  CHECK(i.secondaryIps.size() == 1);
  CHECK(i.ipv6Addresses.size() == 1);
  CHECK(i.publicIp->toString() == "203.0.113.10");
  CHECK(i.placement.netns == "lab-i");
  const auto& h = m.instances[m.findInstance("h")];
  CHECK(h.placement.kind == vpcfw::model::Placement::Kind::kHostInterface);
  CHECK(h.placement.interface == "eth1");
}

TEST_CASE("YAML syntax errors are located") {
  auto d = loadDiagnostics("vpcs:\n  - name: v\n    cidr: [10.0.0.0/16\n");
  REQUIRE(d.size() == 1);
  CHECK(d[0].rfind("4:1: error: YAML syntax error", 0) == 0);
}

TEST_CASE("unknown keys are errors at the key, with a suggestion") {
  vpcfw::Diagnostics diags;
  auto m = vpcfw::config::loadConfigString("vpcs:\n  - name: v\n    cdir: 10.0.0.0/16\n", "f.yaml", diags);
  CHECK_FALSE(m.has_value());
  REQUIRE(diags.all().size() >= 1);
  const auto& d = diags.all()[0];
  CHECK(d.where.file == "f.yaml");
  CHECK(d.where.line == 3);
  CHECK(d.where.column == 5);
  CHECK(d.message == "VPC: unknown key 'cdir'");
  CHECK(d.hint == "did you mean 'cidr'?");
}

TEST_CASE("duplicate keys are errors") {
  auto d = loadDiagnostics("vpcs:\n  - name: v\n    cidr: 10.0.0.0/16\n    cidr: 10.1.0.0/16\n");
  CHECK(hasDiagnostic(d, "4:5: error: VPC: duplicate key 'cidr'"));
}

TEST_CASE("every problem is reported, not only the first") {
  auto d = loadDiagnostics(R"(
vpcs:
  - {name: v, cidr: 10.0.0.0/16}
subnets:
  - {name: a, vpc: v, cidr: 10.0.1.0/33}
  - {name: b, vpc: v, cidr: bogus}
instances:
  - {name: i, subnet: a, private_ip: 10.0.1.300}
)");
  CHECK(d.size() == 3);
  CHECK(hasDiagnostic(d, "5:29: error: subnet cidr: '10.0.1.0/33' has an invalid prefix length"));
  CHECK(hasDiagnostic(d, "6:29: error: subnet cidr: 'bogus' is not a CIDR block"));
  CHECK(hasDiagnostic(d, "8:38: error: private_ip: '10.0.1.300' is not an IPv4 or IPv6 address"));
}

TEST_CASE("wrong shapes are reported where they are") {
  CHECK(hasDiagnostic(loadDiagnostics("vpcs: {name: v}\n"), "1:7: error: vpcs must be a list"));
  CHECK(hasDiagnostic(loadDiagnostics("- a\n- b\n"), "1:1: error: the config file must be a mapping"));
  CHECK(hasDiagnostic(loadDiagnostics("vpcs: [hello]\n"), "1:8: error: each entry of 'vpcs' (VPC) must be a mapping"));
  CHECK(hasDiagnostic(loadDiagnostics("vpcs:\n  - {cidr: 10.0.0.0/16}\n"),
                      "2:5: error: VPC is missing required key 'name'"));
}

TEST_CASE("names are limited to a safe alphabet") {
  auto d = loadDiagnostics("vpcs:\n  - {name: \"a b;\", cidr: 10.0.0.0/16}\n");
  CHECK(hasDiagnostic(d, "2:12: error: VPC name 'a b;' is not valid"));
}

TEST_CASE("CIDRs with host bits set are canonicalised with a warning") {
  bool ok = false;
  auto d = loadDiagnostics("vpcs:\n  - {name: v, cidr: 10.0.0.1/16}\n", &ok);
  CHECK(ok);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == "2:21: warning: VPC cidr 10.0.0.1/16 has host bits set; using 10.0.0.0/16");
  auto m = loadOk("vpcs:\n  - {name: v, cidr: 10.0.0.1/16}\n");
  CHECK(m.vpcs[0].cidrs[0].toString() == "10.0.0.0/16");
}

TEST_CASE("a group with egress omitted allows all out, an explicit empty list allows nothing") {
  auto m = loadOk(std::string(kMinimal) + R"(
security_groups:
  - {name: omitted, vpc: v}
  - {name: empty, vpc: v, egress: []}
)");
  const auto& omitted = m.groups[m.findGroup("omitted", 0)];
  REQUIRE(omitted.egress.size() == 1);
  CHECK(std::get<vpcfw::net::Cidr>(omitted.egress[0].peer).toString() == "0.0.0.0/0");
  CHECK(omitted.egress[0].protocol.isAll());
  CHECK(omitted.ingress.empty());
  CHECK(m.groups[m.findGroup("empty", 0)].egress.empty());
}

TEST_CASE("the lab profile lifts quotas with a warning") {
  bool ok = false;
  auto d = loadDiagnostics("limits: {profile: lab}\n", &ok);
  CHECK(ok);
  CHECK(hasDiagnostic(d, "warning: the lab profile lifts AWS quotas"));
  auto m = loadOk("limits: {profile: lab, groups_per_eni: 100}\n");
  CHECK(m.limits.groupsPerEni == 100);
  CHECK(m.limits.naclRulesPerDirection > 40);
}

TEST_CASE("an unreadable file is one located error") {
  vpcfw::Diagnostics diags;
  auto m = vpcfw::config::loadConfigFile("/nonexistent/vpcfw.yaml", diags);
  CHECK_FALSE(m.has_value());
  REQUIRE(diags.all().size() == 1);
  CHECK(vpcfw::formatDiagnostic(diags.all()[0]) ==
        "/nonexistent/vpcfw.yaml: error: cannot open config file: No such file or directory");
}

TEST_CASE("a flood of warnings never hides an error") {
  std::string yaml = "vpcs:\n  - {name: v, cidr: 10.0.0.0/16}\nprefix_lists:\n  - name: p\n    entries:\n";
  for (int i = 0; i < 300; ++i) yaml += "      - 10.0." + std::to_string(i % 256) + ".1/24\n";
  yaml += "subnets:\n  - {name: s, vpc: v, cidr: 10.1.0.0/24}\n";
  bool ok = true;
  auto d = loadDiagnostics(yaml, &ok);
  CHECK_FALSE(ok);
  CHECK(hasDiagnostic(d, "error: subnet 's' block 10.1.0.0/24 is not inside any block of VPC 'v'"));
}
