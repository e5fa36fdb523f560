// Network ACL evaluation (vpc-semantics.md "Network ACLs"): ordered first
// match, allow and deny, the final '*', families kept apart, ports, ICMP.
#include <doctest/doctest.h>

#include "support/test_config.h"

using namespace vpcfw;
using eval::Packet;
using model::Direction;

namespace {

model::Model withAcl(const std::string& ingress) {
  return test::loadOk(R"(vpcs: [{name: v, cidr: 10.0.0.0/16, ipv6_cidr: "2001:db8:1::/56"}]
network_acls:
  - name: a
    vpc: v
    ingress:
)" + ingress);
}

using test::makePacket;

struct Case {
  const char* name;
  Packet packet;
  bool allowed;
  const char* rule;  // the deciding rule's label
};

void check(const model::Model& m, const std::vector<Case>& cases, Direction dir = Direction::kIngress) {
  const auto& acl = m.nacls[m.findNacl("a", 0)];
  for (const auto& c : cases) {
    CAPTURE(c.name);
    auto r = eval::evaluateNacl(acl, dir, c.packet);
    CHECK(r.allowed == c.allowed);
    REQUIRE(r.rule != nullptr);
    CHECK(r.rule->label() == c.rule);
  }
}

}  // namespace

TEST_CASE("a lower-numbered allow hides a later deny, and a lower deny hides a later allow") {
  auto m = withAcl(R"(
      - {rule: 100, protocol: tcp, ports: 22, cidr: 192.0.2.0/24, action: allow}
      - {rule: 200, protocol: tcp, ports: 22, cidr: 0.0.0.0/0, action: deny}
      - {rule: 50, protocol: tcp, ports: 80, cidr: 198.51.100.0/24, action: deny}
      - {rule: 300, protocol: tcp, ports: 80, cidr: 0.0.0.0/0, action: allow}
)");
  check(m, {
               {"allow 100 before deny 200", makePacket("tcp", "192.0.2.7", "10.0.1.10", 22), true, "100"},
               {"deny 200 for others", makePacket("tcp", "203.0.113.7", "10.0.1.10", 22), false, "200"},
               {"deny 50 before allow 300", makePacket("tcp", "198.51.100.7", "10.0.1.10", 80), false, "50"},
               {"allow 300 for others", makePacket("tcp", "203.0.113.7", "10.0.1.10", 80), true, "300"},
               {"nothing matches: '*'", makePacket("tcp", "203.0.113.7", "10.0.1.10", 443), false, "*"},
           });
}

TEST_CASE("IPv4 rules never match IPv6 traffic and vice versa, each family has its '*'") {
  auto m = withAcl(R"(
      - {rule: 100, protocol: all, cidr: 0.0.0.0/0, action: allow}
      - {rule: 110, protocol: tcp, ports: 443, cidr: "2001:db8::/32", action: allow}
)");
  check(m,
        {
            {"IPv4 allowed by 100", makePacket("tcp", "192.0.2.1", "10.0.1.10", 22), true, "100"},
            {"IPv6 skips 100, allowed by 110", makePacket("tcp", "2001:db8::1", "2001:db8:1:1::10", 443), true, "110"},
            {"IPv6 not 443: IPv6 '*'", makePacket("tcp", "2001:db8::1", "2001:db8:1:1::10", 22), false, "*"},
            {"IPv6 outside 2001:db8::/32", makePacket("tcp", "2001:db9::1", "2001:db8:1:1::10", 443), false, "*"},
        });
  const auto& acl = m.nacls[m.findNacl("a", 0)];
  auto r = eval::evaluateNacl(acl, Direction::kIngress, makePacket("tcp", "2001:db8::1", "2001:db8:1:1::10", 22));
  CHECK(r.rule->number == 32768);
}

TEST_CASE("ingress rules match the source, egress rules the destination, ports are the destination port") {
  auto m = test::loadOk(R"(vpcs: [{name: v, cidr: 10.0.0.0/16}]
network_acls:
  - name: a
    vpc: v
    ingress: [{rule: 100, protocol: tcp, ports: 5432, cidr: 10.0.1.0/24, action: allow}]
    egress: [{rule: 100, protocol: tcp, ports: 1024-65535, cidr: 10.0.1.0/24, action: allow}]
)");
  check(m, {
               {"source in CIDR", makePacket("tcp", "10.0.1.10", "10.0.2.20", 5432), true, "100"},
               {"destination in CIDR does not count", makePacket("tcp", "10.0.2.99", "10.0.1.10", 5432), false, "*"},
           });
  check(m,
        {
            {"reply to an ephemeral port", makePacket("tcp", "10.0.2.20", "10.0.1.10", 50000), true, "100"},
            {"reply to port 1023 is not covered", makePacket("tcp", "10.0.2.20", "10.0.1.10", 1023), false, "*"},
            {"destination outside the CIDR", makePacket("tcp", "10.0.2.20", "10.0.3.10", 50000), false, "*"},
        },
        Direction::kEgress);
}

TEST_CASE("protocol -1 matches everything, a number matches only that protocol, ports apply to tcp/udp only") {
  auto m = withAcl(R"(
      - {rule: 10, protocol: udp, ports: 53, cidr: 0.0.0.0/0, action: allow}
      - {rule: 20, protocol: 47, cidr: 0.0.0.0/0, action: allow}
      - {rule: 30, protocol: 132, ports: 80, cidr: 0.0.0.0/0, action: allow}
      - {rule: 40, protocol: tcp, ports: 0-65535, cidr: 192.0.2.0/24, action: deny}
      - {rule: 50, protocol: -1, cidr: 192.0.2.0/24, action: allow}
)");
  check(m, {
               {"udp 53", makePacket("udp", "203.0.113.1", "10.0.1.10", 53), true, "10"},
               {"udp 54", makePacket("udp", "203.0.113.1", "10.0.1.10", 54), false, "*"},
               {"tcp 53 is not udp", makePacket("tcp", "203.0.113.1", "10.0.1.10", 53), false, "*"},
               {"gre", makePacket("gre", "203.0.113.1", "10.0.1.10", 0), true, "20"},
               {"esp is not gre", makePacket("esp", "203.0.113.1", "10.0.1.10", 0), false, "*"},
               {"sctp ignores the port range", makePacket("sctp", "203.0.113.1", "10.0.1.10", 9999), true, "30"},
               {"tcp without ports = all ports", makePacket("tcp", "192.0.2.1", "10.0.1.10", 443), false, "40"},
               {"-1 matches udp", makePacket("udp", "192.0.2.1", "10.0.1.10", 9), true, "50"},
               {"-1 matches icmp", makePacket("icmp", "192.0.2.1", "10.0.1.10", 0, 8, 0), true, "50"},
           });
}

TEST_CASE("ICMP type and code, -1 as any, protocol 58 with an IPv4 CIDR means all ICMP") {
  auto m = withAcl(R"(
      - {rule: 10, protocol: icmp, icmp_type: 3, icmp_code: 4, cidr: 192.0.2.0/24, action: allow}
      - {rule: 20, protocol: icmp, icmp_type: 8, cidr: 192.0.2.0/24, action: allow}
      - {rule: 30, protocol: icmp, icmp_type: -1, icmp_code: -1, cidr: 198.51.100.0/24, action: allow}
      - {rule: 40, protocol: 58, cidr: 203.0.113.0/24, action: allow}
      - {rule: 50, protocol: icmpv6, icmp_type: 128, cidr: "::/0", action: allow}
)");
  check(m, {
               {"type 3 code 4", makePacket("icmp", "192.0.2.1", "10.0.1.10", 0, 3, 4), true, "10"},
               {"type 3 code 3", makePacket("icmp", "192.0.2.1", "10.0.1.10", 0, 3, 3), false, "*"},
               {"echo, any code", makePacket("icmp", "192.0.2.1", "10.0.1.10", 0, 8, 0), true, "20"},
               {"echo reply is another type", makePacket("icmp", "192.0.2.1", "10.0.1.10", 0, 0, 0), false, "*"},
               {"all types", makePacket("icmp", "198.51.100.1", "10.0.1.10", 0, 11, 0), true, "30"},
               {"58 + IPv4 = all ICMP", makePacket("icmp", "203.0.113.1", "10.0.1.10", 0, 13, 0), true, "40"},
               {"58 + IPv4 is not tcp", makePacket("tcp", "203.0.113.1", "10.0.1.10", 80), false, "*"},
               {"icmpv6 echo", makePacket("icmpv6", "2001:db8::1", "2001:db8:1:1::10", 0, 128, 0), true, "50"},
               {"icmpv6 other type", makePacket("icmpv6", "2001:db8::1", "2001:db8:1:1::10", 0, 135, 0), false, "*"},
           });
}
