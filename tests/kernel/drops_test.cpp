// Per-ENI drop counters against real packets: two ENIs of a router
// namespace send denied traffic, and exactly the sender's counter for the
// stage that denied it moves (every other ENI's and stage's stays put).
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <map>
#include <string>
#include <utility>

#include "netns_fixture.h"

namespace vpcfw::test {
namespace {

using Drops = std::map<std::pair<std::string, std::string>, std::uint64_t>;  // (eni, stage) -> packets

Drops dropsIn(const Netns& ns) {
  auto st = nft::tableStatus(ns.name());
  REQUIRE(st.has_value());
  Drops d;
  for (const auto& e : st->eniDrops) d[{e.eni, e.stage}] = e.packets;
  return d;
}

// Everything in `after` equals `before` except (eni, stage), which grew.
void onlyMoved(const Drops& before, const Drops& after, const std::string& eni, const std::string& stage) {
  REQUIRE(before.size() == after.size());
  for (const auto& [key, n] : after) {
    INFO(key.first << " " << key.second);
    if (key == std::pair{eni, stage})
      CHECK(n > before.at(key));
    else
      CHECK(n == before.at(key));
  }
}

// A TCP connect (or a UDP datagram) from `from` in `ns`; true when it was answered.
bool tcp(const Netns& ns, const std::string& from, const std::string& to, int port) {
  auto r = ns.exec(fmt::format(
      "python3 -c \"import socket,sys\ns=socket.socket()\ns.settimeout(0.5)\ns.bind(('{}',0))\n"
      "try:\n s.connect(('{}',{}))\nexcept ConnectionRefusedError: sys.exit(0)\nexcept OSError: sys.exit(1)\n\"",
      from, to, port));
  return r.status == 0;
}

}  // namespace

TEST_CASE("drop counters: each denied packet counts for its own ENI and stage only") {
  Netns router("drops-r"), web("drops-a"), db("drops-b");
  auto rs = compileExample("two-tier");
  for (auto [inst, ns, ifn, addr, gw] : {std::tuple{"web1", &web, "eni-web1", "10.0.1.10/24", "10.0.1.1"},
                                         std::tuple{"db1", &db, "eni-db1", "10.0.2.20/24", "10.0.2.1"}}) {
    REQUIRE(sh(fmt::format("ip -n {} link add {} type veth peer name eth0 netns {}", router.name(), ifn, ns->name()))
                .status == 0);
    REQUIRE(router.exec(fmt::format("ip addr add {}/24 dev {}", gw, ifn)).status == 0);
    REQUIRE(router.exec(fmt::format("ip link set {} up", ifn)).status == 0);
    REQUIRE(ns->exec(fmt::format("ip addr add {} dev eth0", addr)).status == 0);
    REQUIRE(ns->exec("ip link set eth0 up").status == 0);
    REQUIRE(ns->exec("ip link set lo up").status == 0);
    REQUIRE(ns->exec(fmt::format("ip route add default via {}", gw)).status == 0);
  }
  REQUIRE(web.exec("ip addr add 10.0.1.77/24 dev eth0").status == 0);  // a forged source
  REQUIRE(router.exec("sysctl -qw net.ipv4.ip_forward=1").status == 0);
  applyIn(rs, router);

  // Baseline: every ENI has all six stages, all zero.
  Drops d0 = dropsIn(router);
  CHECK(d0.size() == 3 * 6);
  for (const auto& [key, n] : d0) CHECK(n == 0);

  // Allowed traffic passes and counts nowhere (web-acl egress 120, db-acl
  // ingress 100, db-sg from web-sg: db1 refuses the connection itself).
  CHECK(tcp(web, "10.0.1.10", "10.0.2.20", 5432));
  onlyMoved(d0, dropsIn(router), "", "");

  // web1 -> db1 port 22: web-acl egress has no rule for it.
  Drops d1 = dropsIn(router);
  CHECK_FALSE(tcp(web, "10.0.1.10", "10.0.2.20", 22));
  Drops d2 = dropsIn(router);
  onlyMoved(d1, d2, "web1", "nacl-egress");

  // db1 -> web1 port 2000: both NACLs allow it, db-sg allows no egress.
  CHECK_FALSE(tcp(db, "10.0.2.20", "10.0.1.10", 2000));
  Drops d3 = dropsIn(router);
  onlyMoved(d2, d3, "db1", "sg-egress");

  // web1 forging another source: its anti-spoofing, nobody else's.
  CHECK_FALSE(tcp(web, "10.0.1.77", "10.0.2.20", 5432));
  Drops d4 = dropsIn(router);
  onlyMoved(d3, d4, "web1", "anti-spoofing");

  // The per-rule counter of the NACL's '*' rule still counts too.
  auto st = nft::tableStatus(router.name());
  REQUIRE(st.has_value());
  bool seen = false;
  for (const auto& c : st->counters)
    if (c.comment == "nacl web-acl egress * deny") {
      seen = true;
      CHECK(c.packets == d4.at({"web1", "nacl-egress"}));
    }
  CHECK(seen);
}

}  // namespace vpcfw::test
