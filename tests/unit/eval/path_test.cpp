// The evaluation path of vpc-semantics.md end to end: SG egress, NACL egress,
// routing, NACL ingress, SG ingress, and the reply back (NACLs again, groups by
// state); no NACL inside one subnet; internet gateway and public IPs; peering
// with routes on both sides and without transit or edge-to-edge routing.
#include <doctest/doctest.h>

#include "support/test_config.h"

using namespace vpcfw;
using eval::StepKind;

namespace {

const char* kTopology = R"(vpcs:
  - {name: main, cidr: 10.0.0.0/16, ipv6_cidr: "2001:db8:1::/56"}
  - {name: peer, cidr: 10.1.0.0/16}
  - {name: far, cidr: 10.2.0.0/16}
internet_gateways: [{name: igw, vpc: main}, {name: peer-igw, vpc: peer}]
peerings:
  - {name: main-peer, requester: main, accepter: peer}
  - {name: peer-far, requester: peer, accepter: far}
route_tables:
  - name: public
    vpc: main
    routes:
      - {destination: 0.0.0.0/0, internet_gateway: igw}
      - {destination: "::/0", internet_gateway: igw}
      - {destination: 10.1.0.0/16, peering: main-peer}
      - {destination: 10.2.0.0/16, peering: main-peer}
  - name: private
    vpc: main
    routes:
      - {destination: 10.1.0.0/16, peering: main-peer}
      - {destination: 0.0.0.0/0, peering: main-peer}
  - name: peer-main
    vpc: peer
    main: true
    routes:
      - {destination: 10.0.1.0/24, peering: main-peer}
      - {destination: 0.0.0.0/0, internet_gateway: peer-igw}
      - {destination: 10.2.0.0/16, peering: peer-far}
  - name: far-main
    vpc: far
    main: true
    routes: [{destination: 10.1.0.0/16, peering: peer-far}]
network_acls:
  - name: strict
    vpc: main
    ingress: [{rule: 100, protocol: tcp, ports: 22, cidr: 10.0.0.0/16, action: allow}]
    egress: [{rule: 100, protocol: tcp, ports: 22, cidr: 10.0.0.0/16, action: allow}]
subnets:
  - {name: public, vpc: main, cidr: 10.0.1.0/24, ipv6_cidr: "2001:db8:1:1::/64", route_table: public}
  - {name: private, vpc: main, cidr: 10.0.2.0/24, route_table: private}
  - {name: strict, vpc: main, cidr: 10.0.3.0/24, network_acl: strict}
  - {name: peer-s, vpc: peer, cidr: 10.1.1.0/24}
  - {name: far-s, vpc: far, cidr: 10.2.1.0/24}
  - {name: isolated, vpc: main, cidr: 10.0.4.0/24}
security_groups:
  - name: open
    vpc: main
    ingress: [{protocol: all, cidr: 0.0.0.0/0}, {protocol: all, cidr: "::/0"}]
  - name: db
    vpc: main
    ingress: [{protocol: tcp, ports: 5432, cidr: 10.0.0.0/16}]
    egress: []
  - name: ssh-open
    vpc: main
    ingress: [{protocol: tcp, ports: 22, cidr: 0.0.0.0/0}]
  - {name: open, vpc: peer, ingress: [{protocol: all, cidr: 0.0.0.0/0}]}
  - {name: open, vpc: far, ingress: [{protocol: all, cidr: 0.0.0.0/0}]}
instances:
  - {name: pub1, subnet: public, private_ip: 10.0.1.10, public_ip: 203.0.113.10, ipv6_addresses: ["2001:db8:1:1::10"], security_groups: [open]}
  - {name: pub2, subnet: public, private_ip: 10.0.1.11, security_groups: [open]}
  - {name: priv1, subnet: private, private_ip: 10.0.2.10, security_groups: [open]}
  - {name: db1, subnet: private, private_ip: 10.0.2.20, security_groups: [db]}
  - {name: ssh1, subnet: public, private_ip: 10.0.1.22, public_ip: 203.0.113.22, security_groups: [ssh-open]}
  - {name: strict1, subnet: strict, private_ip: 10.0.3.10, security_groups: [open]}
  - {name: strict2, subnet: strict, private_ip: 10.0.3.11, security_groups: [open]}
  - {name: iso1, subnet: isolated, private_ip: 10.0.4.10, public_ip: 203.0.113.40, security_groups: [open]}
  - {name: peer1, subnet: peer-s, private_ip: 10.1.1.10, security_groups: [open]}
  - {name: far1, subnet: far-s, private_ip: 10.2.1.10, security_groups: [open]}
)";

const model::Model& topology() {
  static const model::Model m = test::loadOk(kTopology);
  return m;
}

const eval::Step* find(const eval::Leg& leg, StepKind k) {
  for (const auto& s : leg.steps)
    if (s.kind == k) return &s;
  return nullptr;
}

void expectBlocked(const eval::Verdict& v, bool onReply, const char* code, const std::string& explanationPart) {
  CHECK_FALSE(v.reachable());
  CHECK(v.blockedOnReply() == onReply);
  const auto* s = v.blockingStep();
  REQUIRE(s != nullptr);
  CHECK(s->code == code);
  CAPTURE(s->explanation);
  CHECK(s->explanation.find(explanationPart) != std::string::npos);
}

}  // namespace

TEST_CASE("inside one subnet the NACL is never evaluated") {
  // strict's NACL allows only tcp 22; within the subnet port 80 still passes.
  auto v = test::explain(topology(), "strict1", "strict2", "tcp", 80);
  CHECK(v.reachable());
  CHECK(find(v.forward, StepKind::kNaclEgress) == nullptr);
  CHECK(find(v.forward, StepKind::kNaclIngress) == nullptr);
  REQUIRE(v.reply);
  CHECK(find(*v.reply, StepKind::kNaclEgress) == nullptr);
}

TEST_CASE("across subnets both NACLs are evaluated, in order, forward and back") {
  auto v = test::explain(topology(), "pub1", "priv1", "tcp", 80);
  CHECK(v.reachable());
  std::vector<StepKind> kinds;
  for (const auto& s : v.forward.steps) kinds.push_back(s.kind);
  CHECK(kinds == std::vector<StepKind>{StepKind::kSecurityGroupEgress, StepKind::kNaclEgress, StepKind::kRoute,
                                       StepKind::kNaclIngress, StepKind::kSecurityGroupIngress});
  REQUIRE(v.reply);
  kinds.clear();
  for (const auto& s : v.reply->steps) kinds.push_back(s.kind);
  CHECK(kinds == std::vector<StepKind>{StepKind::kSecurityGroupEgress, StepKind::kNaclEgress, StepKind::kRoute,
                                       StepKind::kNaclIngress, StepKind::kSecurityGroupIngress});
  CHECK(find(v.forward, StepKind::kNaclEgress)->rule == "default egress rule 100");
  CHECK(find(*v.reply, StepKind::kNaclIngress)->rule == "default ingress rule 100");
}

TEST_CASE("a NACL without an ephemeral-port return rule kills the reply, not the request") {
  auto v = test::explain(topology(), "priv1", "strict1", "tcp", 22);
  CHECK(v.forward.delivered);
  CHECK(find(v.forward, StepKind::kNaclIngress)->rule == "strict ingress rule 100");
  expectBlocked(v, true, "SUBNET_ACL_RESTRICTION", "the final '*' rule denies");
  CHECK(v.blockingStep()->rule == "strict egress rule *");
}

TEST_CASE("security groups are stateful: the reply passes with no egress rule at all") {
  auto v = test::explain(topology(), "pub1", "db1", "tcp", 5432);
  CHECK(v.reachable());
  REQUIRE(v.reply);
  const auto* s = find(*v.reply, StepKind::kSecurityGroupEgress);
  REQUIRE(s);
  CHECK(s->rule == "connection tracked");
  // ...but db1 cannot open anything itself.
  auto out = test::explain(topology(), "db1", "pub1", "tcp", 80);
  expectBlocked(out, false, "ENI_SG_RULES_MISMATCH", "none of the egress rules");
}

TEST_CASE("a flow open to 0.0.0.0/0 one way and all traffic the other is untracked") {
  auto v = test::explain(topology(), "pub1", "ssh1", "tcp", 22);
  CHECK(v.reachable());
  REQUIRE(v.reply);
  CHECK(find(*v.reply, StepKind::kSecurityGroupEgress)->rule == "untracked flow");
  // ICMP is always tracked.
  auto p = test::explain(topology(), "ssh1", "pub1", "icmp");
  REQUIRE(p.reply);
  CHECK(find(*p.reply, StepKind::kSecurityGroupIngress)->rule == "connection tracked");
}

TEST_CASE("the internet: a gateway route and a public IP out, the public IP in") {
  auto out = test::explain(topology(), "pub1", "192.0.2.1", "tcp", 443);
  CHECK(out.reachable());
  const auto* gw = find(out.forward, StepKind::kInternetGateway);
  REQUIRE(gw);
  CHECK(gw->rule == "10.0.1.10 -> 203.0.113.10");
  REQUIRE(out.reply);
  CHECK(find(*out.reply, StepKind::kInternetGateway)->rule == "203.0.113.10 -> 10.0.1.10");

  expectBlocked(test::explain(topology(), "pub2", "192.0.2.1", "tcp", 443), false, "CANNOT_ROUTE",
                "pub2 has no public IPv4 address");
  // The main route table has only the local route.
  expectBlocked(test::explain(topology(), "iso1", "192.0.2.1", "tcp", 443), false, "CANNOT_ROUTE",
                "no route matches 192.0.2.1");
  // Inbound to a public IP arrives, but the reply has no route out.
  expectBlocked(test::explain(topology(), "192.0.2.1", "iso1", "tcp", 443), true, "CANNOT_ROUTE",
                "no route matches 192.0.2.1 for the reply");

  auto in = test::explain(topology(), "198.51.100.5", "pub1", "tcp", 80);
  CHECK(in.reachable());
  CHECK(in.forward.packet.dst.toString() == "203.0.113.10");
  expectBlocked(test::explain(topology(), "198.51.100.5", "10.0.1.10", "tcp", 80), false, "CANNOT_ROUTE",
                "10.0.1.10 is a private address");
  // ssh1 answers from a subnet with a gateway route; priv1's subnet sends 0/0 into a peering.
  CHECK(test::explain(topology(), "198.51.100.5", "ssh1", "tcp", 22).reachable());
}

TEST_CASE("IPv6 to and from the internet needs no public IP and no translation") {
  auto v = test::explain(topology(), "2001:db8:ffff::5", "pub1", "tcp", 80);
  CHECK(v.reachable());
  CHECK(v.forward.packet.dst.toString() == "2001:db8:1:1::10");
  CHECK(find(v.forward, StepKind::kInternetGateway)->rule == "no translation (IPv6)");
  CHECK(test::explain(topology(), "pub1", "2001:db8:ffff::5", "tcp", 80).reachable());
}

TEST_CASE("peering needs routes on both sides") {
  auto ok = test::explain(topology(), "pub1", "peer1", "tcp", 80);
  CHECK(ok.reachable());
  CHECK(find(ok.forward, StepKind::kRoute)->rule == "10.1.0.0/16 -> peering main-peer");
  // peer's table routes back only to 10.0.1.0/24: priv1's requests arrive, replies cannot return.
  auto v = test::explain(topology(), "priv1", "peer1", "tcp", 80);
  CHECK(v.forward.delivered);
  expectBlocked(v, true, "CANNOT_ROUTE", "the route sends 10.0.2.10 to the internet gateway");
}

TEST_CASE("peering is not transitive and does not reach a peer's internet gateway") {
  expectBlocked(test::explain(topology(), "pub1", "far1", "tcp", 80), false, "CANNOT_ROUTE",
                "peering main-peer leads to VPC peer, not to VPC far where 10.2.1.10 is; peering is not transitive");
  expectBlocked(test::explain(topology(), "priv1", "192.0.2.1", "tcp", 80), false, "CANNOT_ROUTE",
                "no edge-to-edge routing through a peer");
  // A direct peering with routes on both sides works.
  CHECK(test::explain(topology(), "peer1", "far1", "tcp", 80).reachable());
}

TEST_CASE("ICMP echo gets an echo reply, other ICMP expects none") {
  auto echo = test::explain(topology(), "pub1", "priv1", "icmp");
  CHECK(echo.reachable());
  REQUIRE(echo.reply);
  CHECK(echo.forward.packet.icmpType == 8);
  CHECK(echo.reply->packet.icmpType == 0);
  auto unreachable = test::explain(topology(), "pub1", "priv1", "icmp", 0, 3, 1);
  CHECK_FALSE(unreachable.replyExpected);
  CHECK_FALSE(unreachable.reply.has_value());
  CHECK(unreachable.reachable());
  auto echo6 = test::explain(topology(), "2001:db8:ffff::5", "pub1", "icmpv6");
  CHECK(echo6.forward.packet.icmpType == 128);
  REQUIRE(echo6.reply);
  CHECK(echo6.reply->packet.icmpType == 129);
}

TEST_CASE("requests that cannot be evaluated are errors, not verdicts") {
  const auto& m = topology();
  auto err = [&](const char* from, const char* to, const char* proto, const std::string& part) {
    eval::FlowRequest r;
    r.from = from;
    r.to = to;
    r.protocol = *net::Protocol::parse(proto);
    r.port = 80;
    auto v = eval::explainFlow(m, r);
    REQUIRE_FALSE(v.has_value());
    CAPTURE(v.error().message);
    CHECK(v.error().message.find(part) != std::string::npos);
  };
  err("nobody", "pub1", "tcp", "'nobody' is neither an instance of the config nor an IP address");
  err("10.0.1.99", "pub1", "tcp", "10.0.1.99 is inside VPC main but no instance has that address");
  err("192.0.2.1", "198.51.100.1", "tcp", "both ends are outside every VPC");
  err("pub1", "pub1", "tcp", "same instance");
  err("priv1", "2001:db8::1", "tcp", "instance priv1 has no IPv6 address");
  err("pub1", "192.0.2.1", "icmpv6", "IPv4 cannot carry icmpv6");
  err("192.0.2.1", "pub2", "tcp", "pub2 has no public IP");
}

TEST_CASE("every step that would block: filters go on past the first deny, a failed route ends the leg") {
  auto request = [](const char* from, const char* to, bool all) {
    eval::FlowRequest req;
    req.from = from;
    req.to = to;
    req.protocol = net::Protocol(net::Protocol::kTcp);
    req.port = 80;
    req.allSteps = all;
    auto v = eval::explainFlow(topology(), req);
    REQUIRE(v);
    return *v;
  };
  auto denies = [](const eval::Leg& leg) {
    std::vector<StepKind> out;
    for (const auto& s : leg.steps)
      if (s.decision == eval::Decision::kDeny) out.push_back(s.kind);
    return out;
  };
  // strict's NACL refuses tcp 80 out, and db1's group admits only 5432.
  auto first = request("strict1", "db1", false);
  auto all = request("strict1", "db1", true);
  CHECK(denies(first.forward) == std::vector{StepKind::kNaclEgress});
  CHECK(denies(all.forward) == std::vector{StepKind::kNaclEgress, StepKind::kSecurityGroupIngress});
  CHECK(all.forward.steps.size() == 5);
  // The verdict and the first blocking step are the same either way.
  CHECK_FALSE(all.reachable());
  REQUIRE(all.blockingStep() != nullptr);
  CHECK(all.blockingStep()->kind == StepKind::kNaclEgress);
  CHECK(all.blockingStep()->rule == first.blockingStep()->rule);
  CHECK_FALSE(all.reply);
  // No transit: the route into the peering fails and nothing after it is evaluated.
  auto far = request("pub1", "far1", true);
  REQUIRE_FALSE(far.forward.steps.empty());
  CHECK(far.forward.steps.back().kind == StepKind::kRoute);
  CHECK(far.forward.steps.back().code == "CANNOT_ROUTE");
  // A reachable flow has the same steps with or without.
  CHECK(request("pub1", "priv1", true).forward.steps.size() == request("pub1", "priv1", false).forward.steps.size());
}
