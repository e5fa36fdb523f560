// vpcfw reach on the two-tier example, where the answers can be read off the
// config: the exact ports and client source ports, the rules that bound them,
// "nothing" with the blocking step, the selectors, and the command's output,
// JSON and exit statuses.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "support/test_config.h"
#include "vpcfw/analysis/reach.h"
#include "vpcfw/analysis/report.h"
#include "vpcfw/cli/cli.h"

using namespace vpcfw;
using analysis::Span;

namespace {

analysis::ReachResult reach(const model::Model& m, const std::string& from, const std::string& to,
                            const char* proto = nullptr) {
  analysis::ReachRequest req{from, to, std::nullopt};
  if (proto) req.protocol = *net::Protocol::parse(proto);
  auto r = analysis::computeReach(m, req);
  INFO(from << " -> " << to << ": " << (r ? std::string() : r.error().message));
  REQUIRE(r.has_value());
  return *r;
}

std::vector<std::string> rules(const std::vector<analysis::RuleRef>& refs) {
  std::vector<std::string> out;
  for (const auto& r : refs) out.push_back(r.rule);
  return out;
}

const auto run = &vpcfw::test::runCli;

std::string example(const char* name) { return std::string(VPCFW_SOURCE_DIR) + "/config/examples/" + name + ".yaml"; }

}  // namespace

TEST_CASE("reach web1 to db1: tcp 5432 only, from client ports 1024-65535, with the bounding rules") {
  auto m = test::loadExample("two-tier");
  auto r = reach(m, "web1", "db1");
  REQUIRE(r.pairs.size() == 1);  // db1 has no IPv6 address: IPv4 only
  const auto& p = r.pairs[0];
  CHECK(p.family == net::Family::kIpv4);
  CHECK(p.from.address.toString() == "10.0.1.10");
  CHECK(p.to.address.toString() == "10.0.2.20");
  REQUIRE(p.protocols.size() == 1);
  const auto& tcp = p.protocols[0];
  CHECK(tcp.hasPorts());
  REQUIRE(tcp.forward.size() == 1);
  CHECK(tcp.forward[0].ports == Span{5432, 5432});
  CHECK(rules(tcp.forward[0].rules) == std::vector<std::string>{"web-sg egress rule 1", "web-acl egress rule 120",
                                                                "db-acl ingress rule 100", "db-sg ingress rule 1"});
  REQUIRE(tcp.reply.size() == 1);
  CHECK(tcp.reply[0].sourcePorts == Span{1024, 65535});
  CHECK(rules(tcp.reply[0].rules) == std::vector<std::string>{"db-acl egress rule 100", "web-acl ingress rule 130"});

  analysis::FlowPoint f;
  f.fromInstance = m.findInstance("web1");
  f.toInstance = m.findInstance("db1");
  f.port = 5432;
  f.sourcePort = 1024;
  CHECK(r.allows(f));
  f.sourcePort = 1023;  // the reply would be denied by db-acl egress
  CHECK_FALSE(r.allows(f));
  f.sourcePort = 50000;
  f.port = 5433;
  CHECK_FALSE(r.allows(f));
}

TEST_CASE("reach that finds nothing names the step that blocks everything") {
  auto m = test::loadExample("two-tier");
  auto udp = reach(m, "web1", "db1", "udp");
  REQUIRE(udp.pairs.size() == 1);
  CHECK(udp.pairs[0].protocols.empty());
  REQUIRE(udp.pairs[0].blocked);
  CHECK(udp.pairs[0].blocked->step == eval::StepKind::kNaclEgress);
  CHECK(udp.pairs[0].blocked->code == "SUBNET_ACL_RESTRICTION");
  CHECK(udp.pairs[0].blocked->component == "network ACL web-acl (subnet web)");

  auto back = reach(m, "db1", "web1");  // db-sg has no egress rules
  REQUIRE(back.pairs.size() == 1);
  REQUIRE(back.pairs[0].blocked);
  CHECK(back.pairs[0].blocked->step == eval::StepKind::kSecurityGroupEgress);
  CHECK(back.pairs[0].blocked->code == "ENI_SG_RULES_MISMATCH");

  auto net = reach(m, "internet", "db1");  // no public IP: the internet cannot address it
  REQUIRE(net.pairs.size() == 1);
  REQUIRE(net.pairs[0].blocked);
  CHECK(net.pairs[0].blocked->code == "CANNOT_ROUTE");
  CHECK(net.pairs[0].blocked->explanation.find("no public IP") != std::string::npos);
}

TEST_CASE("reach inside one subnet: groups only, replies pass with no NACL, ICMP echo with its reply") {
  auto m = test::loadExample("two-tier");
  auto r = reach(m, "web1", "web2");
  REQUIRE(r.pairs.size() == 1);  // web2 has no IPv6 address
  const auto& ps = r.pairs[0].protocols;
  REQUIRE(ps.size() == 2);
  CHECK(ps[0].protocols == std::vector<Span>{{6, 6}});
  REQUIRE(ps[0].forward.size() == 2);
  CHECK(ps[0].forward[0].ports == Span{80, 80});
  CHECK(ps[0].forward[1].ports == Span{443, 443});
  CHECK(ps[0].reply.size() == 1);
  CHECK(ps[0].reply[0].sourcePorts == Span{0, 65535});
  CHECK(ps[0].reply[0].rules.empty());
  CHECK(ps[1].isIcmp());
  REQUIRE(ps[1].forward.size() == 1);
  CHECK(ps[1].forward[0].types == Span{8, 8});
  CHECK(ps[1].forward[0].codes == Span{0, 255});
  REQUIRE(ps[1].reply.size() == 1);
  CHECK(ps[1].reply[0].requestType == 8);
}

TEST_CASE("reach from the internet: address ranges that the rules tell apart, public addresses, IPv6") {
  auto m = test::loadExample("two-tier");
  auto r = reach(m, "internet", "web1", "tcp");
  REQUIRE(r.pairs.size() == 3);  // the admin prefix, every other IPv4 host, IPv6 hosts
  const analysis::PairReach* admin = nullptr;
  for (const auto& p : r.pairs) {
    CHECK(p.to.address == (p.family == net::Family::kIpv4 ? *net::IpAddress::parse("203.0.113.10")
                                                          : *net::IpAddress::parse("2001:db8:1000:1::10")));
    if (p.from.ranges.size() == 1 && p.from.ranges[0].toString() == "198.51.100.0/24") admin = &p;
  }
  REQUIRE(admin);
  REQUIRE(admin->protocols.size() == 1);
  CHECK(admin->protocols[0].forward.front().ports == Span{22, 22});
  for (const auto& p : r.pairs)
    for (const auto& range : p.from.ranges) {
      CHECK_FALSE(range.contains(*net::IpAddress::parse("10.0.0.1")));      // inside the VPC
      CHECK_FALSE(range.contains(*net::IpAddress::parse("203.0.113.11")));  // web2's public IP
    }
}

TEST_CASE("reach selectors: subnets, VPCs, CIDRs, and clear errors for names that select nothing") {
  auto m = test::loadExample("two-tier");
  auto web = reach(m, "web", "db1");
  CHECK(web.pairs.size() == 2);
  auto cidr = reach(m, "10.0.1.11/32", "db");
  REQUIRE(cidr.pairs.size() == 1);
  CHECK(cidr.pairs[0].from.instance == m.findInstance("web2"));
  auto vpc = reach(m, "shop", "shop");
  CHECK(vpc.pairs.size() == 6);  // ordered IPv4 pairs of three instances; only web1 has IPv6
  for (const char* bad : {"nosuch", "10.0.0.0/33"}) {
    CAPTURE(bad);
    auto e = analysis::computeReach(m, {bad, "db1", std::nullopt});
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().message.find(std::string("'") + bad + "'") != std::string::npos);
  }
  auto same = analysis::computeReach(m, {"db1", "db1", std::nullopt});
  CHECK_FALSE(same.has_value());
  auto mixed = analysis::computeReach(m, {"10.0.0.0/16", "::/0", std::nullopt});
  CHECK_FALSE(mixed.has_value());
}

TEST_CASE("vpcfw reach: text, JSON, exit statuses, located diagnostics for an invalid config") {
  auto ok = run({"reach", example("two-tier"), "--from", "web1", "--to", "db1"});
  CHECK(ok.status == 0);
  CHECK(ok.out.find("tcp 5432 from sport 1024-65535") != std::string::npos);
  CHECK(ok.out.find("reply sport 1024-65535  db-acl egress rule 100, web-acl ingress rule 130") != std::string::npos);

  auto none = run({"reach", example("two-tier"), "--from", "db1", "--to", "web1"});
  CHECK(none.status == 1);
  CHECK(none.out.find("nothing: blocked at security-group-egress") != std::string::npos);
  CHECK(none.out.find("ENI_SG_RULES_MISMATCH") != std::string::npos);

  auto j = run({"reach", example("two-tier"), "--from", "web1", "--to", "db1", "--json"});
  REQUIRE(j.status == 0);
  auto doc = nlohmann::json::parse(j.out);
  CHECK(doc["protocol"] == "all");
  const auto& pair = doc["pairs"][0];
  CHECK(pair["from"]["instance"] == "web1");
  CHECK(pair["family"] == "IPv4");
  CHECK(pair["reachable"] == true);
  CHECK(pair["protocols"][0]["name"] == "tcp");
  CHECK(pair["protocols"][0]["forward"][0]["ports"] == nlohmann::json::array({5432, 5432}));
  CHECK(pair["protocols"][0]["reply"][0]["source_ports"] == nlohmann::json::array({1024, 65535}));
  CHECK(pair["protocols"][0]["reply"][0]["rules"][1]["step"] == "network-acl-ingress");

  auto bad = run(
      {"reach", std::string(VPCFW_SOURCE_DIR) + "/tests/invalid/nacl-duplicate-rule.yaml", "--from", "a", "--to", "b"});
  CHECK(bad.status == 2);
  CHECK(bad.err.find("nacl-duplicate-rule.yaml:") != std::string::npos);
  CHECK(bad.err.find(": error: ") != std::string::npos);

  auto unknown = run({"reach", example("two-tier"), "--from", "nosuch", "--to", "db1"});
  CHECK(unknown.status == 2);
  CHECK(unknown.err.find("--from 'nosuch' is no instance, subnet or VPC") != std::string::npos);
}

TEST_CASE("reach keeps internet ranges apart when different protocols get through with the same rules") {
  // tcp is denied from one range and udp from another; what gets through is
  // decided by the same allow-all rules in both, so only the protocol tells
  // the two answers apart.
  auto m = test::loadOk(R"(vpcs: [{name: v, cidr: 10.0.0.0/16}]
internet_gateways: [{name: igw, vpc: v}]
route_tables: [{name: pub, vpc: v, routes: [{destination: 0.0.0.0/0, internet_gateway: igw}]}]
network_acls:
  - name: acl
    vpc: v
    ingress:
      - {rule: 10, protocol: udp, ports: all, cidr: 198.51.100.0/24, action: deny}
      - {rule: 20, protocol: tcp, ports: all, cidr: 192.0.2.0/24, action: deny}
      - {rule: 100, protocol: all, cidr: 0.0.0.0/0, action: allow}
    egress: [{rule: 100, protocol: all, cidr: 0.0.0.0/0, action: allow}]
security_groups: [{name: open, vpc: v, ingress: [{protocol: all, cidr: 0.0.0.0/0}]}]
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24, route_table: pub, network_acl: acl}]
instances: [{name: x, subnet: s, private_ip: 10.0.1.10, public_ip: 203.0.113.10, security_groups: [open]}]
)");
  auto r = reach(m, "internet", "x");
  analysis::FlowPoint f;
  f.toInstance = 0;
  f.port = 53;
  f.sourcePort = 40000;
  auto allows = [&](int proto, const char* from) {
    f.protocol = proto;
    f.remote = *net::IpAddress::parse(from);
    return r.allows(f);
  };
  CHECK(allows(6, "198.51.100.7"));
  CHECK_FALSE(allows(17, "198.51.100.7"));
  CHECK_FALSE(allows(6, "192.0.2.7"));
  CHECK(allows(17, "192.0.2.7"));
  CHECK(allows(6, "8.8.8.8"));
  CHECK(allows(17, "8.8.8.8"));
}
