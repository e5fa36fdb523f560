// Drop attribution: every drop of a compiled ruleset is counted for one ENI
// and one stage, and no lookup miss lets a packet through. Checked on the
// shapes of every example, host mode, a routed host and a sharded fabric.
#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "support/test_config.h"
#include "vpcfw/compile/compiler.h"

using namespace vpcfw;

namespace {

const std::set<std::string> kStages = {"anti-spoofing", "invalid",   "nacl-egress",
                                       "nacl-ingress",  "sg-egress", "sg-ingress"};
// Only ENIs with a tracked-connection allowance have these.
const std::set<std::string> kAllowanceStages = {"allowance-egress", "allowance-ingress"};

std::string file(const std::string& path) {
  std::ifstream in(std::string(VPCFW_SOURCE_DIR) + "/" + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string sharded() {  // more ENIs than one shard holds
  std::string y = R"(
vpcs: [{name: v, cidr: 10.0.0.0/16}]
subnets: [{name: s, vpc: v, cidr: 10.0.0.0/20}]
security_groups: [{name: g, vpc: v, ingress: [{protocol: tcp, ports: 22, group: g}]}]
instances:
)";
  for (int i = 0; i < 40; ++i)
    y += "  - {name: i" + std::to_string(i) + ", subnet: s, private_ip: 10.0.1." + std::to_string(10 + i) +
         ", security_groups: [g]}\n";
  return y;
}

void checkRuleset(const model::Model& m, const compile::Ruleset& r, const compile::Placement& p) {
  const auto& t = r.table;
  std::map<std::string, const compile::Chain*> chains;
  for (const auto& c : t.chains) chains[c.name] = &c;
  // The ENIs of this fabric and which stages each must have.
  std::map<std::string, std::set<std::string>> want;  // instance -> stages
  for (std::size_t i = 0; i < m.instances.size(); ++i)
    if (p.byInstance[i] && p.byInstance[i]->fabric == r.fabric) {
      auto stages = kStages;
      if (p.byInstance[i]->hostMode && !p.byInstance[i]->routed) stages.erase("anti-spoofing");
      want[m.instances[i].name] = stages;
    }
  std::map<std::string, std::set<std::string>> have;
  std::set<std::string> stageChains;  // the chains drop rules go to
  for (const auto& c : t.chains) {
    if (c.name.starts_with("drop_")) {
      // An ENI's chain: one unconditional, counted drop, "<eni> <stage>".
      REQUIRE(c.rules.size() == 1);
      const auto& rule = c.rules[0];
      CHECK(rule.matches.empty());
      CHECK(rule.counter);
      CHECK(rule.verdict == compile::Verdict::drop());
      const auto sp = rule.comment.rfind(' ');
      REQUIRE(sp != std::string::npos);
      const std::string eni = rule.comment.substr(0, sp), stage = rule.comment.substr(sp + 1);
      CHECK((kStages.contains(stage) || kAllowanceStages.contains(stage)));
      CHECK(have[eni].insert(stage).second);
      continue;
    }
    for (std::size_t k = 0; k < c.rules.size(); ++k) {
      const auto& rule = c.rules[k];
      // Outside the ENIs' chains a drop is only a stage chain's last rule,
      // unconditional: whatever its lookups missed.
      if (rule.verdict.kind == compile::VerdictKind::kDrop) {
        INFO(c.name << ": " << rule.comment);
        CHECK(k + 1 == c.rules.size());
        CHECK(rule.matches.empty());
        CHECK(rule.comment.ends_with("no ENI to count it for"));
        stageChains.insert(c.name);
      }
      if (rule.verdict.kind == compile::VerdictKind::kGoto && rule.counter) {
        // A former drop: goes to a stage chain or straight to an ENI's chain.
        REQUIRE(chains.contains(rule.verdict.chain));
        const auto& to = *chains[rule.verdict.chain];
        CHECK(to.rules.back().verdict == compile::Verdict::drop());
        CHECK(to.rules.back().matches.empty());
      }
    }
  }
  CHECK(have == want);
  // The stage chains: only vmap lookups into maps whose every element is an
  // ENI's drop chain, then the drop.
  for (const auto& name : stageChains) {
    const auto& c = *chains[name];
    for (std::size_t k = 0; k + 1 < c.rules.size(); ++k) {
      REQUIRE(c.rules[k].matches.size() == 1);
      CHECK(c.rules[k].matches[0].op == compile::Op::kVmap);
      CHECK(c.rules[k].verdict.kind == compile::VerdictKind::kContinue);
      const compile::Set* map = nullptr;
      for (const auto& s : t.sets)
        if (s.name == c.rules[k].matches[0].set) map = &s;
      REQUIRE(map != nullptr);
      for (const auto& e : map->elements) {
        REQUIRE(e.verdict);
        CHECK(e.verdict->kind == compile::VerdictKind::kGoto);
        CHECK(e.verdict->chain.starts_with("drop_"));
      }
    }
  }
}

void checkAll(const model::Model& m, const compile::Placement& p, std::size_t fabrics) {
  auto rs = compile::compileRulesets(m, p);
  REQUIRE(rs.has_value());
  CHECK(rs->size() == fabrics);
  for (const auto& r : *rs) {
    INFO(r.fabric);
    checkRuleset(m, r, p);
  }
}

}  // namespace

TEST_CASE("drops: every example's drops are counted for one ENI and stage, and a miss still drops") {
  for (const char* name : {"two-tier", "bastion", "default-vpc", "peering"}) {
    INFO(name);
    auto m = test::loadExample(name);
    auto p = compile::labPlacement(m);
    std::set<std::string> fabrics;
    for (const auto& a : p.byInstance)
      if (a) fabrics.insert(a->fabric);
    checkAll(m, p, fabrics.size());
  }
}

TEST_CASE("drops: host mode, a routed host and a sharded fabric attribute every drop too") {
  for (const char* path : {"tests/golden/host-mode.yaml", "tests/golden/host-routed.yaml"}) {
    INFO(path);
    auto m = test::loadOk(file(path));
    auto p = compile::labPlacement(m);
    std::set<std::string> fabrics;
    for (const auto& a : p.byInstance)
      if (a) fabrics.insert(a->fabric);
    checkAll(m, p, fabrics.size());
  }
  auto m = test::loadOk(sharded());
  checkAll(m, compile::labPlacement(m), 1);
}
