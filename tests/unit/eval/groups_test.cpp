// Security group evaluation (vpc-semantics.md "Security groups"): allow-only,
// unordered, the union of all groups of an ENI, peers as CIDRs, group
// references (primary private IPs of members) and prefix lists.
#include <doctest/doctest.h>

#include "support/test_config.h"

using namespace vpcfw;
using model::Direction;

namespace {

const char* kConfig = R"(vpcs: [{name: v, cidr: 10.0.0.0/16, ipv6_cidr: "2001:db8:1::/56"}]
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24, ipv6_cidr: "2001:db8:1:1::/64"}]
prefix_lists: [{name: office, entries: [198.51.100.0/24, 192.0.2.128/25]}]
security_groups:
  - name: web
    vpc: v
    ingress:
      - {protocol: tcp, ports: 80, cidr: 0.0.0.0/0}
      - {protocol: tcp, ports: 443, cidr: "::/0"}
  - name: ssh
    vpc: v
    ingress:
      - {protocol: tcp, ports: 22, prefix_list: office}
  - name: peers
    vpc: v
    ingress:
      - {protocol: all, group: peers}
  - name: icmp
    vpc: v
    ingress:
      - {protocol: icmp, icmp_type: 8, icmp_code: 0, cidr: 0.0.0.0/0}
      - {protocol: icmpv6, icmp_type: -1, cidr: "::/0"}
      - {protocol: 47, cidr: 10.0.0.0/8}
instances:
  - {name: a, subnet: s, private_ip: 10.0.1.10, secondary_ips: [10.0.1.100], ipv6_addresses: ["2001:db8:1:1::a"], security_groups: [web, ssh, peers]}
  - {name: b, subnet: s, private_ip: 10.0.1.11, ipv6_addresses: ["2001:db8:1:1::b"], security_groups: [peers]}
  - {name: c, subnet: s, private_ip: 10.0.1.12, security_groups: [icmp]}
)";

using test::makePacket;

struct Case {
  const char* name;
  const char* instance;
  eval::Packet packet;
  const char* allowedBy;  // "group rule-index", or nullptr for no match
};

void check(const std::vector<Case>& cases) {
  auto m = test::loadOk(kConfig);
  for (const auto& c : cases) {
    CAPTURE(c.name);
    const auto& inst = m.instances[m.findInstance(c.instance)];
    auto r = eval::evaluateGroups(m, inst.groups, Direction::kIngress, c.packet);
    if (c.allowedBy == nullptr) {
      CHECK_FALSE(r.allowed);
    } else {
      REQUIRE(r.allowed);
      CHECK(m.groups[r.group].name + " " + std::to_string(r.rule->index) == c.allowedBy);
    }
  }
}

}  // namespace

TEST_CASE("an ENI's groups form one union of allow rules, no match drops") {
  check({
      {"web rule", "a", makePacket("tcp", "203.0.113.9", "10.0.1.10", 80), "web 1"},
      {"ssh group's rule applies too", "a", makePacket("tcp", "198.51.100.9", "10.0.1.10", 22), "ssh 1"},
      {"no group allows 25", "a", makePacket("tcp", "203.0.113.9", "10.0.1.10", 25), nullptr},
      {"b lacks web", "b", makePacket("tcp", "203.0.113.9", "10.0.1.11", 80), nullptr},
  });
}

TEST_CASE("IPv4 and IPv6 rules are separate") {
  check({
      {"443 only over IPv6", "a", makePacket("tcp", "2001:db8:ff::1", "2001:db8:1:1::a", 443), "web 2"},
      {"443 over IPv4 not allowed", "a", makePacket("tcp", "203.0.113.9", "10.0.1.10", 443), nullptr},
      {"80 over IPv6 not allowed", "a", makePacket("tcp", "2001:db8:ff::1", "2001:db8:1:1::a", 80), nullptr},
  });
}

TEST_CASE("prefix lists match any of their entries") {
  check({
      {"first entry", "a", makePacket("tcp", "198.51.100.200", "10.0.1.10", 22), "ssh 1"},
      {"second entry", "a", makePacket("tcp", "192.0.2.200", "10.0.1.10", 22), "ssh 1"},
      {"outside both", "a", makePacket("tcp", "192.0.2.1", "10.0.1.10", 22), nullptr},
  });
}

TEST_CASE("a group reference matches members' primary private IPs (and IPv6), not secondaries, not non-members") {
  check({
      {"member b's primary IP", "a", makePacket("udp", "10.0.1.11", "10.0.1.10", 9999), "peers 1"},
      {"member b's IPv6", "a", makePacket("udp", "2001:db8:1:1::b", "2001:db8:1:1::a", 9999), "peers 1"},
      {"member a's secondary IP", "b", makePacket("udp", "10.0.1.100", "10.0.1.11", 9999), nullptr},
      {"non-member c", "a", makePacket("udp", "10.0.1.12", "10.0.1.10", 9999), nullptr},
  });
}

TEST_CASE("membership changes take effect without changing the rule") {
  auto m = test::loadOk(kConfig);
  const auto& b = m.instances[m.findInstance("b")];
  auto fromC = makePacket("tcp", "10.0.1.12", "10.0.1.11", 5000);
  CHECK_FALSE(eval::evaluateGroups(m, b.groups, Direction::kIngress, fromC).allowed);
  // Put c into "peers" (what a config change of c's groups does) and re-check.
  std::string moved = kConfig;
  auto pos = moved.find("security_groups: [icmp]");
  REQUIRE(pos != std::string::npos);
  moved.replace(pos, std::string("security_groups: [icmp]").size(), "security_groups: [icmp, peers]");
  auto m2 = test::loadOk(moved);
  const auto& b2 = m2.instances[m2.findInstance("b")];
  CHECK(eval::evaluateGroups(m2, b2.groups, Direction::kIngress, fromC).allowed);
  // The rule itself is unchanged.
  CHECK(m.groups[m.findGroup("peers", 0)].ingress.size() == m2.groups[m2.findGroup("peers", 0)].ingress.size());
}

TEST_CASE("ICMP type/code and protocol numbers") {
  check({
      {"echo request code 0", "c", makePacket("icmp", "203.0.113.1", "10.0.1.12", 0, 8, 0), "icmp 1"},
      {"echo request code 1", "c", makePacket("icmp", "203.0.113.1", "10.0.1.12", 0, 8, 1), nullptr},
      {"destination unreachable", "c", makePacket("icmp", "203.0.113.1", "10.0.1.12", 0, 3, 0), nullptr},
      {"any ICMPv6", "c", makePacket("icmpv6", "2001:db8::1", "2001:db8:1:1::c", 0, 135, 0), "icmp 2"},
      {"gre from inside", "c", makePacket("gre", "10.9.9.9", "10.0.1.12", 0), "icmp 3"},
      {"gre from outside", "c", makePacket("gre", "203.0.113.1", "10.0.1.12", 0), nullptr},
      {"protocol -1 covers icmp", "a", makePacket("icmp", "10.0.1.11", "10.0.1.10", 0, 8, 0), "peers 1"},
  });
}

TEST_CASE("egress omitted allows all out, an explicit empty egress allows nothing") {
  auto m = test::loadOk(R"(vpcs: [{name: v, cidr: 10.0.0.0/16}]
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24}]
security_groups: [{name: open, vpc: v}, {name: closed, vpc: v, egress: []}]
instances:
  - {name: o, subnet: s, private_ip: 10.0.1.10, security_groups: [open]}
  - {name: c, subnet: s, private_ip: 10.0.1.11, security_groups: [closed]}
)");
  auto out = makePacket("tcp", "10.0.1.10", "203.0.113.1", 443);
  CHECK(eval::evaluateGroups(m, m.instances[0].groups, Direction::kEgress, out).allowed);
  out.src = *net::IpAddress::parse("10.0.1.11");
  CHECK_FALSE(eval::evaluateGroups(m, m.instances[1].groups, Direction::kEgress, out).allowed);
}
