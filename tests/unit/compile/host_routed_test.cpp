// Routed host mode (`routed: true`): a host's table filters the ENIs it
// routes for on its forward hook, as a lab router does, and its own ENIs on
// input/output; the shapes that keep the two apart and keep non-ENI traffic
// unfiltered. The packet-level proof is tests/integration/test_host_routed.py.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>

#include "support/test_config.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/compile/render.h"

using namespace vpcfw;

namespace {

// `routed` routed ENIs and `own` own ENIs on host hv, one lab instance, one
// instance on a host with only its own ENIs.
std::string config(int routed, int own) {
  std::string y = R"(
vpcs: [{name: v, cidr: 10.0.0.0/16}]
subnets: [{name: s, vpc: v, cidr: 10.0.0.0/20}, {name: t, vpc: v, cidr: 10.0.16.0/24}]
security_groups:
  - {name: web, vpc: v, ingress: [{protocol: tcp, ports: 80, cidr: 192.0.2.0/24}, {protocol: tcp, ports: 22, group: admin}]}
  - {name: admin, vpc: v}
instances:
  - {name: lab1, subnet: t, private_ip: 10.0.16.10}
  - {name: plain, subnet: t, private_ip: 10.0.16.11, host: other, interface: eth0}
)";
  for (int i = 0; i < routed; ++i)
    y += "  - {name: r" + std::to_string(i) + ", subnet: s, private_ip: 10.0.2." + std::to_string(10 + i) +
         ", host: hv, interface: veth" + std::to_string(i) + ", routed: true, security_groups: [web]}\n";
  for (int i = 0; i < own; ++i)
    y += "  - {name: o" + std::to_string(i) + ", subnet: s, private_ip: 10.0.3." + std::to_string(10 + i) +
         ", host: hv, interface: eth" + std::to_string(i) + ", security_groups: [web, admin]}\n";
  return y;
}

const compile::Ruleset& fabric(const std::vector<compile::Ruleset>& rs, const std::string& name) {
  auto it = std::find_if(rs.begin(), rs.end(), [&](const compile::Ruleset& r) { return r.fabric == name; });
  REQUIRE(it != rs.end());
  return *it;
}

const compile::Chain* findChain(const compile::Table& t, const std::string& name) {
  for (const auto& c : t.chains)
    if (c.name == name) return &c;
  return nullptr;
}

const compile::Set* findSet(const compile::Table& t, const std::string& name) {
  for (const auto& s : t.sets)
    if (s.name == name) return &s;
  return nullptr;
}

std::set<std::string> names(const compile::Set& s) {
  std::set<std::string> out;
  for (const auto& e : s.elements) out.insert(std::get<std::string>(e.key.front()));
  return out;
}

std::vector<std::string> comments(const compile::Chain& c) {
  std::vector<std::string> out;
  for (const auto& r : c.rules) out.push_back(r.comment);
  return out;
}

std::size_t indexOf(const std::vector<std::string>& v, const std::string& s) {
  auto it = std::find(v.begin(), v.end(), s);
  REQUIRE_MESSAGE(it != v.end(), s);
  return static_cast<std::size_t>(it - v.begin());
}

}  // namespace

TEST_CASE("a routed host gets forward, input and output, all policy accept, in one table") {
  auto m = test::loadOk(config(2, 1));
  auto r = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(r);
  const auto& hv = fabric(*r, "hv");
  CHECK(hv.hostMode);
  for (const char* hook : {"forward", "input", "output"}) {
    const auto* c = findChain(hv.table, hook);
    REQUIRE(c != nullptr);
    CHECK(c->hook == std::optional<std::string>(hook));
    CHECK(c->policy == compile::Verdict::accept());
  }
  // The lab router keeps its drop policy and no input chain; a host with only
  // its own ENIs keeps input/output and gets no forward chain.
  const auto& router = fabric(*r, "vpcfw-v");
  REQUIRE(findChain(router.table, "forward") != nullptr);
  CHECK(findChain(router.table, "forward")->policy == compile::Verdict::drop());
  CHECK(findChain(router.table, "input") == nullptr);
  const auto& other = fabric(*r, "other");
  CHECK(findChain(other.table, "forward") == nullptr);
  CHECK(findChain(other.table, "input") != nullptr);
  CHECK(findSet(other.table, "host_enis") == nullptr);
}

TEST_CASE("routed and own ENIs of a host are in separate sets and maps, each ENI in exactly one") {
  auto m = test::loadOk(config(3, 2));
  auto r = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(r);
  const auto& t = fabric(*r, "hv").table;
  const std::set<std::string> routed{"veth0", "veth1", "veth2"}, own{"eth0", "eth1"};
  for (auto [set, want] :
       {std::pair{"enis", routed}, std::pair{"nacl_out", routed}, std::pair{"nacl_in", routed},
        std::pair{"host_enis", own}, std::pair{"host_nacl_out", own}, std::pair{"host_nacl_in", own}}) {
    const auto* s = findSet(t, set);
    REQUIRE_MESSAGE(s != nullptr, set);
    CHECK_MESSAGE(names(*s) == want, set);
  }
  // Anti-spoofing holds the routed ENIs' addresses; the own ENIs' addresses
  // lead to their NACL and by-address group chains.
  CHECK(names(*findSet(t, "eni_src4")) == routed);
  for (const char* map : {"host_addr_nacl_in4", "host_addr_nacl_out4", "host_addr_sg_in4", "host_addr_sg_out4"}) {
    const auto* s = findSet(t, map);
    REQUIRE_MESSAGE(s != nullptr, map);
    CHECK(s->isMap);
    CHECK(s->elements.size() == 2);
  }
  CHECK(findSet(t, "host_addr_nacl_in4")->key == std::vector{compile::Field::kIpDaddr});
  CHECK(findSet(t, "host_addr_nacl_out4")->key == std::vector{compile::Field::kIpSaddr});
  for (const auto& e : findSet(t, "host_addr_sg_in4")->elements) {
    REQUIRE(e.verdict);
    const auto* c = findChain(t, e.verdict->chain);
    REQUIRE(c != nullptr);
    // Keyed by address alone (no interface), ending in a drop.
    for (const auto& rule : c->rules)
      for (const auto& mt : rule.matches)
        for (auto fld : mt.fields) CHECK((fld != compile::Field::kIifname && fld != compile::Field::kOifname));
    // ... ending in a drop counted for this ENI: a goto to its chain,
    // which drops.
    const auto& last = c->rules.back().verdict;
    CHECK(last.kind == compile::VerdictKind::kGoto);
    const auto* d = findChain(t, last.chain);
    REQUIRE_MESSAGE(d != nullptr, last.chain);
    CHECK(d->name.starts_with("drop_"));
    CHECK(d->rules.back().verdict == compile::Verdict::drop());
    CHECK(d->rules.back().comment.ends_with(" sg-ingress"));
  }
  for (const auto& e : findSet(t, "host_addr_nacl_in4")->elements) {
    REQUIRE(e.verdict);
    CHECK(e.verdict->chain == "host_nacl_s_in");
  }
  // Own ENIs' NACL chains are the address-based host ones, routed ENIs' the
  // router's (by interface); the same subnet gets both.
  const auto* ownNacl = findChain(t, "host_nacl_s_in");
  const auto* routedNacl = findChain(t, "nacl_s_in");
  REQUIRE(ownNacl != nullptr);
  REQUIRE(routedNacl != nullptr);
  CHECK(ownNacl->rules.front().matches.front().fields == std::vector{compile::Field::kIpSaddr});
  CHECK(routedNacl->rules.front().matches.front().fields == std::vector{compile::Field::kIifname});
}

TEST_CASE("the forward chain lets through only traffic of no ENI, then filters as a lab router") {
  auto m = test::loadOk(config(2, 1));
  auto r = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(r);
  const auto& t = fabric(*r, "hv").table;
  const auto* f = findChain(t, "forward");
  REQUIRE(f != nullptr);
  const auto& first = f->rules.front();
  CHECK(first.verdict == compile::Verdict::accept());
  REQUIRE(first.matches.size() == 2);  // both conditions in one rule: iif AND oif are not routed ENIs
  for (const auto& mt : first.matches) {
    CHECK(mt.op == compile::Op::kNotInSet);
    CHECK(mt.set == "enis");
  }
  CHECK(first.matches[0].fields == std::vector{compile::Field::kIifname});
  CHECK(first.matches[1].fields == std::vector{compile::Field::kOifname});
  // The rest is the lab router's forward chain, rule for rule.
  auto lab = test::loadOk(R"(
vpcs: [{name: v, cidr: 10.0.0.0/16}]
subnets: [{name: s, vpc: v, cidr: 10.0.0.0/20}]
instances: [{name: a, subnet: s, private_ip: 10.0.2.10}]
)");
  auto lr = compile::compileRulesets(lab, compile::labPlacement(lab));
  REQUIRE(lr);
  const auto* lf = findChain(lr->front().table, "forward");
  REQUIRE(lf != nullptr);
  // The rest is the lab router's forward chain, rule for rule, but for the
  // NACL verdict cache, which a host has not (its conntrack marks may be
  // other software's): where the lab router caches and accepts established
  // and then related packets, the host accepts both in one rule.
  std::vector<std::string> hostRest, labRest;
  for (std::size_t i = 1; i < f->rules.size(); ++i) {
    CHECK_FALSE(f->rules[i].cache.has_value());
    if (f->rules[i].ctState != compile::CtState::kEstablishedRelated) hostRest.push_back(f->rules[i].comment);
  }
  int hits = 0, stores = 0;
  for (const auto& rl : lf->rules) {
    if (rl.cache) (rl.cache->step == compile::VerdictCache::Step::kHit ? hits : stores)++;
    // A hit only for packets from an ENI (anti-spoofed): not from a gateway or peering link.
    if (rl.cache && rl.cache->step == compile::VerdictCache::Step::kHit) {
      REQUIRE(rl.matches.size() == 1);
      CHECK(rl.matches[0].fields == std::vector{compile::Field::kIifname});
      CHECK(rl.matches[0].op == compile::Op::kInSet);
      CHECK(rl.matches[0].set == "enis");
    }
    if (!rl.cache && rl.ctState != compile::CtState::kRelated) labRest.push_back(rl.comment);
  }
  CHECK(hits == 2);
  CHECK(stores == 4);
  CHECK(hostRest == labRest);
}

TEST_CASE("input and output: a routed ENI's traffic with the host meets its NACL and groups before the accept") {
  auto m = test::loadOk(config(2, 1));
  auto r = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(r);
  const auto& t = fabric(*r, "hv").table;
  const auto in = comments(*findChain(t, "input"));
  const auto out = comments(*findChain(t, "output"));
  const auto spoof = indexOf(in, "anti-spoofing: an ENI sends only from its own IPv4 addresses");
  const auto ownNacl = indexOf(in, "a routed ENI to the host's own ENI: that ENI's NACL ingress");
  const auto ownSg = indexOf(in, "a routed ENI to the host's own ENI: that ENI's groups, ingress");
  const auto nacl = indexOf(in, "NACL egress of the routed ENI's subnet, to the host (stateless, every packet)");
  const auto est = indexOf(in, "security groups are stateful: replies of admitted flows");
  const auto sg = indexOf(in, "security groups of the routed ENI, egress (to the host)");
  // Stateless NACLs (source's egress, then the own ENI's ingress) before
  // conntrack; groups after, then only the final accept.
  CHECK(spoof < nacl);
  CHECK(nacl < ownNacl);
  CHECK(ownNacl < est);
  CHECK(est < sg);
  CHECK(sg < ownSg);
  CHECK(ownSg + 2 == in.size() - 1);  // the IPv6 map, then the final accept
  const auto onacl = indexOf(out, "NACL ingress of the routed ENI's subnet, from the host (stateless, every packet)");
  const auto oest = indexOf(out, "security groups are stateful: replies of admitted flows");
  const auto osg = indexOf(out, "security groups of the routed ENI, ingress (from the host)");
  const auto oOwnNacl = indexOf(out, "the host's own ENI to a routed ENI: that ENI's NACL egress");
  const auto oOwnSg = indexOf(out, "the host's own ENI to a routed ENI: that ENI's groups, egress");
  CHECK(oOwnNacl < onacl);
  CHECK(onacl < oest);
  CHECK(oest < oOwnSg);
  CHECK(oOwnSg < osg);
  CHECK(osg + 1 == out.size() - 1);
  // The group chains the routed ENIs jump to look the ENI up by the router's
  // fields (egress: iif), the own ENIs' by the host's (egress: oif).
  const auto* sgOut = findChain(t, "sg_out");
  const auto* hostSgOut = findChain(t, "host_sg_out");
  REQUIRE(sgOut != nullptr);
  REQUIRE(hostSgOut != nullptr);
  CHECK(sgOut->rules.front().matches.front().fields.front() == compile::Field::kIifname);
  CHECK(hostSgOut->rules.front().matches.front().fields.front() == compile::Field::kOifname);
  // Without own ENIs there is nothing to refuse and no host_* object.
  auto only = test::loadOk(config(2, 0));
  auto ro = compile::compileRulesets(only, compile::labPlacement(only));
  REQUIRE(ro);
  const auto& to = fabric(*ro, "hv").table;
  CHECK(findSet(to, "host_enis") == nullptr);
  CHECK(findChain(to, "host_sg_in") == nullptr);
  const auto oin = comments(*findChain(to, "input"));
  CHECK(std::find(oin.begin(), oin.end(), "a routed ENI to the host's own ENI: that ENI's groups, ingress") ==
        oin.end());
  CHECK(findSet(to, "host_addr_sg_in4") == nullptr);
  CHECK(std::find(oin.begin(), oin.end(), "security groups of the routed ENI, egress (to the host)") != oin.end());
}

TEST_CASE("sharded routed host: routed and own ENIs dispatch through their own shard maps") {
  auto m = test::loadOk(config(20, 20));
  auto r = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(r);
  const auto& t = fabric(*r, "hv").table;
  for (auto [map, prefix] : {std::pair{"sg_in_shards", "veth"}, std::pair{"sg_out_shards", "veth"},
                             std::pair{"host_sg_in_shards", "eth"}, std::pair{"host_sg_out_shards", "eth"}}) {
    const auto* s = findSet(t, map);
    REQUIRE_MESSAGE(s != nullptr, map);
    CHECK(s->elements.size() == 20);
    for (const auto& e : s->elements) {
      CHECK(std::get<std::string>(e.key.front()).rfind(prefix, 0) == 0);
      REQUIRE(e.verdict);
      const std::string chain = e.verdict->chain;
      // Each goes to a shard chain of its own style, which looks the ENI up
      // by that style's interface field.
      CHECK((std::string(prefix) == "eth") == (chain.rfind("host_", 0) == 0));
      const auto* c = findChain(t, chain);
      REQUIRE(c != nullptr);
      const bool ingress = std::string(map).find("_in_") != std::string::npos;
      const bool own = std::string(prefix) == "eth";
      const auto want = ingress != own ? compile::Field::kOifname : compile::Field::kIifname;
      CHECK(c->rules.front().matches.front().fields.front() == want);
    }
  }
}

TEST_CASE("connection tracking with the host: the routed ENI's side by its interface, the own ENI's by its address") {
  std::string y = config(1, 1);
  const std::string r0 = "routed: true, security_groups: [web]}";
  const std::string o0 = "security_groups: [web, admin]}";
  y.replace(y.find(r0), r0.size(),
            "routed: true, security_groups: [web], connection_tracking: {tcp_established_timeout: 4000}}");
  y.replace(y.find(o0), o0.size(),
            "security_groups: [web, admin], connection_tracking: {max_tracked_connections: 7, "
            "tcp_established_timeout: 3000}}");
  auto m = test::loadOk(y);
  auto r = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(r);
  const auto& t = fabric(*r, "hv").table;
  const std::string text = compile::renderTable(t);
  for (const char* chain : {"input", "output"}) {
    const auto c = comments(*findChain(t, chain));
    const auto routed = indexOf(c, "connection tracking of the routed ENI's new flows with the host");
    CHECK(routed + 3 == c.size() - 1);  // then the own ENI's by address, IPv4 and IPv6, then the accept
  }
  // o0's flows with a routed ENI count under its own interface's element,
  // with its flows from its interface; their timeout is the shorter one.
  CHECK(text.find("add @host_allowance_7 { \"eth0\" ct count over 7 }") != std::string::npos);
  CHECK(text.find("add @host_allowance_7 { iifname ct count over 7 }") != std::string::npos);
  REQUIRE(findChain(t, "host_ct_o0_in") != nullptr);
  REQUIRE(findChain(t, "host_ct_o0_out") != nullptr);
  const auto* in = findChain(t, "host_ct_o0_in");
  std::set<std::string> timeouts;
  for (const auto& rule : in->rules)
    if (!rule.ctTimeout.empty()) timeouts.insert(rule.ctTimeout);
  CHECK(timeouts.count("ct_tcp_3000") == 1);
  CHECK(timeouts.count("ct_tcp_4000") == 0);
  CHECK(findSet(t, "host_addr_ct_in4")->elements.size() == 1);  // o0's one address
  // Without settings on either side, none of it.
  auto plain = test::loadOk(config(1, 1));
  auto rp = compile::compileRulesets(plain, compile::labPlacement(plain));
  REQUIRE(rp);
  CHECK(findSet(fabric(*rp, "hv").table, "host_addr_ct_in4") == nullptr);
}
