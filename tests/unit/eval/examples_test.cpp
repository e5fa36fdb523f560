// The shipped example configs give the verdicts a careful reader of the AWS
// documentation expects, with the deciding rule named forward and back.
#include <doctest/doctest.h>

#include "support/test_config.h"

using namespace vpcfw;

namespace {

struct Case {
  const char* from;
  const char* to;
  const char* proto;
  int port;
  bool reachable;
  const char* decidingRule;  // the blocking step's rule, or (reachable) the destination's SG ingress rule
};

void check(const char* example, const std::vector<Case>& cases) {
  auto m = test::loadExample(example);
  for (const auto& c : cases) {
    std::string flow = std::string(c.from) + " -> " + c.to;
    CAPTURE(flow);
    CAPTURE(c.port);
    auto v = test::explain(m, c.from, c.to, c.proto, c.port);
    CHECK(v.reachable() == c.reachable);
    if (c.reachable) {
      std::string rule;
      for (const auto& s : v.forward.steps)
        if (s.kind == eval::StepKind::kSecurityGroupIngress) rule = s.rule;
      CHECK(rule == c.decidingRule);
    } else {
      REQUIRE(v.blockingStep());
      CHECK(v.blockingStep()->rule == c.decidingRule);
    }
  }
}

}  // namespace

TEST_CASE("example two-tier: web reaches the database, the classic NACLs hold") {
  check("two-tier", {
                        {"web1", "db1", "tcp", 5432, true, "db-sg ingress rule 1"},
                        {"web2", "db1", "tcp", 5432, true, "db-sg ingress rule 1"},
                        {"web1", "db1", "tcp", 22, false, "web-acl egress rule *"},
                        {"db1", "web1", "tcp", 80, false, "no rule allows"},
                        {"203.0.113.99", "web1", "tcp", 443, true, "web-sg ingress rule 2"},
                        {"203.0.113.99", "web1", "tcp", 22, false, "web-acl ingress rule *"},
                        {"198.51.100.7", "web1", "tcp", 22, true, "web-sg ingress rule 4"},
                        {"2001:db8:ffff::1", "web1", "tcp", 443, true, "web-sg ingress rule 3"},
                        {"web1", "192.0.2.10", "tcp", 443, true, ""},
                        // The classic "1024-65535 out" return rule also lets web open high ports.
                        {"web1", "192.0.2.10", "tcp", 8443, true, ""},
                        {"web1", "192.0.2.10", "tcp", 25, false, "web-acl egress rule *"},
                        {"web1", "web2", "tcp", 80, true, "web-sg ingress rule 1"},
                    });
}

TEST_CASE("example two-tier: a denied host is stopped by the NACL before the allow") {
  auto m = test::loadOk(R"(vpcs: [{name: v, cidr: 10.0.0.0/16}]
network_acls:
  - name: db-acl
    vpc: v
    ingress:
      - {rule: 90, protocol: tcp, ports: 5432, cidr: 10.0.1.99/32, action: deny}
      - {rule: 100, protocol: tcp, ports: 5432, cidr: 10.0.1.0/24, action: allow}
    egress: [{rule: 100, protocol: tcp, ports: 1024-65535, cidr: 10.0.1.0/24, action: allow}]
subnets:
  - {name: web, vpc: v, cidr: 10.0.1.0/24}
  - {name: db, vpc: v, cidr: 10.0.2.0/24, network_acl: db-acl}
instances:
  - {name: old, subnet: web, private_ip: 10.0.1.99}
  - {name: new, subnet: web, private_ip: 10.0.1.98}
  - {name: db1, subnet: db, private_ip: 10.0.2.20}
security_groups:
  - {name: default, vpc: v, ingress: [{protocol: all, cidr: 10.0.0.0/16}]}
)");
  auto v = test::explain(m, "old", "db1", "tcp", 5432);
  REQUIRE(v.blockingStep());
  CHECK(v.blockingStep()->rule == "db-acl ingress rule 90");
  CHECK(test::explain(m, "new", "db1", "tcp", 5432).reachable());
}

TEST_CASE("example default-vpc: the default group admits its members only") {
  check("default-vpc", {
                           {"app1", "app2", "tcp", 8080, true, "default ingress rule 1"},
                           {"app3", "app1", "udp", 53, true, "default ingress rule 1"},
                           {"203.0.113.7", "app1", "tcp", 22, false, "no rule allows"},
                           {"app1", "192.0.2.80", "tcp", 443, true, ""},
                           {"app3", "192.0.2.80", "tcp", 443, false, "no translation"},
                       });
}

TEST_CASE("example bastion: SSH only through the bastion") {
  check("bastion", {
                       {"198.51.100.7", "bastion", "tcp", 22, true, "bastion-sg ingress rule 1"},
                       {"192.0.2.5", "bastion", "tcp", 22, true, "bastion-sg ingress rule 1"},
                       {"192.0.2.50", "bastion", "tcp", 22, false, "no rule allows"},
                       {"bastion", "app1", "tcp", 22, true, "app-sg ingress rule 1"},
                       {"bastion", "app1", "tcp", 8080, false, "no rule allows"},
                       {"app2", "app1", "tcp", 22, false, "no rule allows"},
                       {"app2", "app1", "tcp", 8080, true, "app-sg ingress rule 2"},
                       {"198.51.100.7", "10.20.2.10", "tcp", 22, false, "no translation"},
                   });
}

TEST_CASE("example peering: routes on both sides, group references across the peering, no transit") {
  check("peering", {
                       {"a1", "b1", "tcp", 8080, true, "svc ingress rule 1"},
                       {"a2", "b1", "tcp", 8080, false, "no rule allows"},
                       {"b1", "g1", "tcp", 8080, true, "svc ingress rule 1"},
                       {"a1", "g1", "tcp", 8080, false, "10.3.0.0/16 -> peering alpha-beta"},
                       {"g1", "a1", "tcp", 8080, false, "10.1.0.0/16 -> peering beta-gamma"},
                   });
}
