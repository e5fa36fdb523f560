// The lab's plan (pure): which namespaces, links, addresses, routes, policy
// rules and gateway NAT a config becomes, before anything touches the kernel.
#include <doctest/doctest.h>

#include <algorithm>

#include "support/test_config.h"
#include "vpcfw/compile/render.h"
#include "vpcfw/lab/lab.h"

using namespace vpcfw;
using lab::NamespacePlan;
using lab::RouteSpec;

namespace {

const NamespacePlan& ns(const lab::LabPlan& p, const std::string& name) {
  const auto* n = p.find(name);
  REQUIRE_MESSAGE(n != nullptr, name);
  return *n;
}

bool hasRoute(const NamespacePlan& n, const std::string& text) {
  return std::any_of(n.routes.begin(), n.routes.end(), [&](const RouteSpec& r) { return lab::describe(r) == text; });
}

std::string routes(const NamespacePlan& n) {
  std::string s;
  for (const auto& r : n.routes) s += lab::describe(r) + "\n";
  return s;
}

}  // namespace

TEST_CASE("two-tier: a router, a gateway, the internet and one namespace per instance") {
  auto m = test::loadExample("two-tier");
  auto plan = lab::planLab(m, "vpcfw:internet");
  REQUIRE(plan);
  std::vector<std::string> names;
  for (const auto& n : plan->namespaces) names.push_back(std::string(lab::roleName(n.role)) + " " + n.name);
  CHECK(names == std::vector<std::string>{"router vpcfw-shop", "gateway vpcfw:igw:shop", "internet vpcfw:internet",
                                          "instance vpcfw:i:web1", "instance vpcfw:i:web2", "instance vpcfw:i:db1"});
  CHECK(plan->rulesets.size() == 2);  // the router's filter, the gateway's NAT
}

TEST_CASE("router: one table per subnet chosen by source, local routes throw to the instances' host routes") {
  auto m = test::loadExample("two-tier");
  auto plan = lab::planLab(m, "vpcfw:internet");
  REQUIRE(plan);
  const auto& r = ns(*plan, "vpcfw-shop");
  CAPTURE(routes(r));
  // web (subnet 0, public route table): local throws, the internet via the gateway link.
  CHECK(hasRoute(r, "throw 10.0.0.0/16 table 100"));
  CHECK(hasRoute(r, "0.0.0.0/0 via 169.254.0.2 dev igw0 onlink table 100"));
  CHECK(hasRoute(r, "::/0 via fe80::2 dev igw0 table 100"));
  // db (subnet 1, main table): local only.
  CHECK(hasRoute(r, "throw 10.0.0.0/16 table 101"));
  CHECK_FALSE(hasRoute(r, "0.0.0.0/0 via 169.254.0.2 dev igw0 onlink table 101"));
  // The main table: each instance's addresses on its ENI; nothing else routes.
  CHECK(hasRoute(r, "10.0.1.10/32 dev eni-web1 table 254"));
  CHECK(hasRoute(r, "2001:db8:1000:1::10/128 dev eni-web1 table 254"));
  CHECK(hasRoute(r, "blackhole 0.0.0.0/0 table 254"));
  CHECK(hasRoute(r, "blackhole ::/0 table 254"));
  std::vector<std::string> rules;
  for (const auto& x : r.rules) rules.push_back(lab::describe(x));
  CHECK(rules == std::vector<std::string>{"from 10.0.1.0/24 lookup 100 priority 1000",
                                          "from 2001:db8:1000:1::/64 lookup 100 priority 1000",
                                          "from 10.0.2.0/24 lookup 101 priority 1001"});
  // The router answers as .1 of each subnet on every ENI.
  auto has = [&](const char* ifname, const char* addr) {
    return std::any_of(r.addresses.begin(), r.addresses.end(),
                       [&](const lab::AddressPlan& a) { return a.ifname == ifname && a.address.toString() == addr; });
  };
  CHECK(has("eni-web1", "10.0.1.1"));
  CHECK(has("eni-db1", "10.0.2.1"));
}

TEST_CASE("instance: its addresses as /32 and /128 and a default route to the subnet's router address") {
  auto m = test::loadExample("two-tier");
  auto plan = lab::planLab(m, "vpcfw:internet");
  REQUIRE(plan);
  const auto& w = ns(*plan, "vpcfw:i:web1");
  CAPTURE(routes(w));
  CHECK(w.addresses.size() == 2);
  CHECK(hasRoute(w, "0.0.0.0/0 via 10.0.1.1 dev eth0 table 254"));
  CHECK(hasRoute(w, "::/0 via 2001:db8:1000:1::1 dev eth0 table 254"));
  const auto& d = ns(*plan, "vpcfw:i:db1");
  CHECK(d.addresses.size() == 1);  // no IPv6 address: no IPv6 default route
  CHECK_FALSE(hasRoute(d, "::/0 via 2001:db8:1000:2::1 dev eth0 table 254"));
}

TEST_CASE("gateway: 1:1 NAT for instances with a public IP, the VPC's IPv6 as is, nothing else") {
  auto m = test::loadExample("two-tier");
  auto plan = lab::planLab(m, "vpcfw:internet");
  REQUIRE(plan);
  const compile::Ruleset* gw = nullptr;
  for (const auto& r : plan->rulesets)
    if (r.fabric == "vpcfw:igw:shop") gw = &r;
  REQUIRE(gw);
  const std::string text = compile::renderTable(gw->table);
  CAPTURE(text);
  CHECK(text.find("iifname \"inet0\" ip daddr 203.0.113.10 dnat ip to 10.0.1.10") != std::string::npos);
  CHECK(text.find("oifname \"inet0\" ip saddr 10.0.1.10 snat ip to 203.0.113.10") != std::string::npos);
  CHECK(text.find("203.0.113.11") != std::string::npos);
  CHECK(text.find("10.0.2.20") == std::string::npos);  // db1 has no public IP
  CHECK(text.find("ip6 saddr 2001:db8:1000::/56 accept") != std::string::npos);
  CHECK(text.find("type nat hook prerouting priority -100") != std::string::npos);
  CHECK(text.find("chain forward {\n\t\ttype filter hook forward priority filter; policy drop;") != std::string::npos);
  const auto& inet = ns(*plan, "vpcfw:internet");
  CAPTURE(routes(inet));
  CHECK(hasRoute(inet, "203.0.113.10/32 via 169.254.0.6 dev igw-shop onlink table 254"));
  CHECK(hasRoute(inet, "2001:db8:1000::/56 via fe80::6 dev igw-shop table 254"));
  CHECK(hasRoute(inet, "local 198.51.100.0/24 dev lo table 254"));
  CHECK(hasRoute(inet, "local 2001:db8::/32 dev lo table 254"));
}

TEST_CASE("peering: a link between the routers, routes only where the route tables put them") {
  auto m = test::loadExample("peering");
  auto plan = lab::planLab(m, "vpcfw:internet");
  REQUIRE(plan);
  std::vector<std::string> links;
  for (const auto& l : plan->links)
    if (l.what.rfind("peering", 0) == 0) links.push_back(l.ns + " " + l.name + " " + l.peerNs);
  CHECK(links ==
        std::vector<std::string>{"vpcfw-alpha pcx-alpha-beta vpcfw-beta", "vpcfw-beta pcx-beta-gamma vpcfw-gamma"});
  const auto& a = ns(*plan, "vpcfw-alpha");
  CAPTURE(routes(a));
  CHECK(hasRoute(a, "10.2.0.0/16 via 169.254.1.2 dev pcx-alpha-beta onlink table 100"));
  // alpha's attempt at transit to gamma goes into the alpha-beta link too;
  // beta's main table does not route it on (it only has beta's instances).
  CHECK(hasRoute(a, "10.3.0.0/16 via 169.254.1.2 dev pcx-alpha-beta onlink table 100"));
  const auto& b = ns(*plan, "vpcfw-beta");
  CAPTURE(routes(b));
  CHECK(hasRoute(b, "10.1.0.0/16 via 169.254.1.1 dev pcx-alpha-beta onlink table 100"));
  CHECK(hasRoute(b, "10.3.0.0/16 via 169.254.1.6 dev pcx-beta-gamma onlink table 100"));
  CHECK_FALSE(hasRoute(b, "10.3.0.0/16 via 169.254.1.6 dev pcx-beta-gamma onlink table 254"));
  CHECK(plan->find(std::string("vpcfw:internet")) == nullptr);  // no gateway, no internet
}

TEST_CASE("an inactive peering is a blackhole route and no link") {
  auto m = test::loadOk(R"(
vpcs:
  - {name: a, cidr: 10.1.0.0/16}
  - {name: b, cidr: 10.2.0.0/16}
peerings:
  - {name: ab, requester: a, accepter: b, status: pending-acceptance}
route_tables:
  - {name: am, vpc: a, main: true, routes: [{destination: 10.2.0.0/16, peering: ab}]}
subnets:
  - {name: sa, vpc: a, cidr: 10.1.1.0/24}
  - {name: sb, vpc: b, cidr: 10.2.1.0/24}
instances:
  - {name: x, subnet: sa, private_ip: 10.1.1.10}
  - {name: y, subnet: sb, private_ip: 10.2.1.10}
)");
  auto plan = lab::planLab(m, "vpcfw:internet");
  REQUIRE(plan);
  CHECK(std::none_of(plan->links.begin(), plan->links.end(),
                     [](const lab::LinkPlan& l) { return l.what == "peering ab"; }));
  CHECK(hasRoute(ns(*plan, "vpcfw-a"), "blackhole 10.2.0.0/16 table 100"));
}

TEST_CASE("long names are shortened to interface limits, a config without lab instances has no plan") {
  auto m = test::loadOk(R"(
vpcs:
  - {name: a-very-long-vpc-name, cidr: 10.1.0.0/16}
internet_gateways:
  - {name: g, vpc: a-very-long-vpc-name}
subnets:
  - {name: s, vpc: a-very-long-vpc-name, cidr: 10.1.1.0/24}
instances:
  - {name: an-instance-with-a-long-name, subnet: s, private_ip: 10.1.1.10}
)");
  auto plan = lab::planLab(m, "vpcfw:internet");
  REQUIRE(plan);
  for (const auto& l : plan->links) {
    CHECK(l.name.size() <= 15);
    CHECK(l.peer.size() <= 15);
  }
  auto hosts = test::loadOk(R"(
vpcs:
  - {name: a, cidr: 10.1.0.0/16}
subnets:
  - {name: s, vpc: a, cidr: 10.1.1.0/24}
instances:
  - {name: h, subnet: s, private_ip: 10.1.1.10, host: lab1, interface: eth0}
)");
  auto none = lab::planLab(hosts, "vpcfw:internet");
  REQUIRE_FALSE(none);
  CHECK(none.error().message.find("no instance in the lab") != std::string::npos);
}

TEST_CASE("internet hosts of the lab are the documentation ranges") {
  CHECK(lab::isLabInternetHost(*net::IpAddress::parse("192.0.2.1")));
  CHECK(lab::isLabInternetHost(*net::IpAddress::parse("198.51.100.200")));
  CHECK(lab::isLabInternetHost(*net::IpAddress::parse("203.0.113.9")));
  CHECK(lab::isLabInternetHost(*net::IpAddress::parse("2001:db8:ffff::1")));
  CHECK_FALSE(lab::isLabInternetHost(*net::IpAddress::parse("8.8.8.8")));
  CHECK_FALSE(lab::isLabInternetHost(*net::IpAddress::parse("2606:4700::1111")));
}

TEST_CASE("the internet namespace is the caller's: named in the plan, checked, never two objects in one") {
  auto m = test::loadExample("two-tier");
  auto plan = lab::planLab(m, "vpcfw:internet-t1");
  REQUIRE(plan);
  CHECK(plan->internet == "vpcfw:internet-t1");
  CHECK(ns(*plan, "vpcfw:internet-t1").role == NamespacePlan::Role::kInternet);
  CHECK(plan->find("vpcfw:internet") == nullptr);
  // The gateway's link to the internet ends in it.
  CHECK(std::any_of(plan->links.begin(), plan->links.end(),
                    [](const lab::LinkPlan& l) { return l.peerNs == "vpcfw:internet-t1"; }));
  for (const char* bad : {"", ".", "..", "../x", "/run/netns", "a/b", ".hidden"}) {
    CAPTURE(bad);
    auto p = lab::planLab(m, bad);
    REQUIRE_FALSE(p);
    CHECK(p.error().message.find("cannot name") != std::string::npos);
  }
  // An instance's own namespace may not be the internet's.
  auto clash = lab::planLab(m, "vpcfw:i:web1");
  REQUIRE_FALSE(clash);
  CHECK(clash.error().message.find("planned twice") != std::string::npos);
}
