// The applier against the real kernel, each case in its own namespace:
// what apply leaves equals what `nft -f` makes of the rendered text; a second
// apply sends nothing; a one-rule change sends a small batch; check mode
// commits nothing; a kernel error names the config object and changes
// nothing; tables vpcfw does not own survive every operation. Ownership,
// tampering, generations and locks: hardening_test.cpp.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "kernel/netns_fixture.h"
#include "support/test_config.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/compile/render.h"
#include "vpcfw/config/loader.h"
#include "vpcfw/nft/applier.h"

using namespace vpcfw;
using test::applyIn;
using test::compileExample;
using test::diffIn;
using test::listedJson;
using test::Netns;

namespace {

compile::Ruleset compileYaml(const std::string& yaml) {
  auto m = test::loadOk(yaml);
  auto r = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(r.has_value());
  REQUIRE(r->size() == 1);
  return (*r)[0];
}

const char* kForeign = R"(table inet foreign {
  chain input { type filter hook input priority 10; policy accept; tcp dport 22 counter accept; }
}
table ip other {
  set keep { type ipv4_addr; elements = { 192.0.2.1 } }
  chain fwdchain { type filter hook forward priority -5; policy accept; ip saddr @keep counter; }
}
)";

// Loads an nft script into the namespace with `nft -f`.
void nftLoad(const Netns& ns, const std::string& script) {
  const std::string path = "/tmp/" + ns.name() + ".nft";
  std::ofstream(path) << script;
  auto r = ns.exec("nft -f " + path);
  std::remove(path.c_str());
  INFO(r.out);
  REQUIRE(r.status == 0);
}

void loadForeign(const Netns& ns) { nftLoad(ns, kForeign); }
std::string foreignState(const Netns& ns) {
  return ns.exec("nft list table inet foreign").out + ns.exec("nft list table ip other").out;
}

}  // namespace

TEST_CASE("apply leaves exactly what nft -f makes of the rendered ruleset") {
  const std::string src = VPCFW_SOURCE_DIR;
  for (const std::string& path : std::vector<std::string>{
           src + "/config/examples/two-tier.yaml", src + "/config/examples/bastion.yaml",
           src + "/config/examples/default-vpc.yaml", src + "/config/examples/peering.yaml",
           src + "/tests/golden/nacl-order.yaml", src + "/tests/golden/group-references.yaml",
           src + "/tests/integration/configs/kernel-semantics.yaml", src + "/tests/golden/host-mode.yaml",
           src + "/config/examples/flow-logs.yaml", src + "/tests/golden/host-mode-flow-logs.yaml"}) {
    Diagnostics diags;
    auto m = config::loadConfigFile(path, diags);
    REQUIRE(m.has_value());
    auto rulesets = compile::compileRulesets(*m, compile::labPlacement(*m));
    REQUIRE(rulesets.has_value());
    for (const auto& r : *rulesets) {
      std::string name = path + " " + r.fabric;
      CAPTURE(name);
      Netns viaApply("apply"), viaNft("nft");
      auto rep = applyIn(r, viaApply);
      CHECK(rep.changed);
      // compile's text has no ownership marker (a table loaded from it is not
      // vpcfw's); add the comment vpcfw's own tables carry.
      // With the NACL verdict cache generation the apply chose: its commit's.
      CHECK(rep.cacheGeneration == (r.hostMode ? 0 : rep.generation));
      std::string script = compile::renderScript(r, rep.cacheGeneration);
      const std::string open = "table inet vpcfw {\n";
      REQUIRE(script.find(open) != std::string::npos);
      script.replace(script.find(open), open.size(), open + "\tcomment \"" + std::string(nft::kOwnerMarker) + "\"\n");
      nftLoad(viaNft, script);
      // The same objects, as nft lists them...
      CHECK(listedJson(viaApply) == listedJson(viaNft));
      CHECK(diffIn(r, viaApply).empty());
      // ...and the same encodings: vpcfw finds nft's table up to date.
      CHECK(diffIn(r, viaNft).empty());
    }
  }
}

TEST_CASE("a second apply of the same ruleset sends nothing") {
  auto r = compileExample("two-tier");
  Netns ns("idem");
  CHECK(applyIn(r, ns).messages > 50);
  auto again = applyIn(r, ns);
  CHECK_FALSE(again.changed);
  CHECK(again.messages == 0);
}

TEST_CASE("a one-rule change sends a small batch and lands exactly") {
  const std::string base = R"(vpcs: [{name: v, cidr: 10.0.0.0/16}]
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24}]
security_groups:
  - name: g
    vpc: v
    ingress:
      - {protocol: tcp, ports: 22, cidr: 10.0.0.0/8}
      - {protocol: tcp, ports: PORT, cidr: 192.0.2.0/24}
instances:
)";
  std::string yaml = base;
  for (int i = 10; i < 60; ++i)
    yaml += "  - {name: i" + std::to_string(i) + ", subnet: s, private_ip: 10.0.1." + std::to_string(i) +
            ", security_groups: [g]}\n";
  auto before = compileYaml(std::regex_replace(yaml, std::regex("PORT"), "443"));
  auto after = compileYaml(std::regex_replace(yaml, std::regex("PORT"), "8443"));
  Netns ns("incr");
  auto full = applyIn(before, ns);
  auto small = applyIn(after, ns);
  CHECK(small.changed);
  // The rule lives in a set per ENI (50 ENIs): element changes, no rule rewrites.
  CHECK(small.messages < full.messages / 4);
  CHECK(diffIn(after, ns).empty());
  for (const auto& c : small.changes) CHECK(c.find("rules rewritten") == std::string::npos);
}

TEST_CASE("check mode lets the kernel validate and commits nothing") {
  auto r = compileExample("two-tier");
  Netns ns("check");
  nft::ApplyOptions check;
  check.check = true;
  auto rep = applyIn(r, ns, check);
  CHECK_FALSE(rep.changed);
  CHECK(rep.messages > 0);
  CHECK(ns.exec("nft list table inet vpcfw").status != 0);  // still no table
  applyIn(r, ns);
  auto changed = compileExample("bastion");
  applyIn(changed, ns, check);
  CHECK(diffIn(r, ns).empty());  // the first ruleset is still in force
}

TEST_CASE("a kernel error names the object that caused it and changes nothing") {
  auto good = compileExample("two-tier");
  Netns ns("error");
  applyIn(good, ns);
  // A rule that jumps to a chain that does not exist: the kernel refuses it.
  auto bad = good;
  auto& chain = bad.table.chains.back();
  REQUIRE_FALSE(chain.rules.empty());
  chain.rules.front().verdict = compile::Verdict::jump("no_such_chain");
  chain.rules.front().comment = "sg web2 ingress: the culprit";
  nft::ApplyOptions o;
  o.netns = ns.name();
  auto rep = nft::applyRuleset(bad, o);
  REQUIRE_FALSE(rep.has_value());
  CAPTURE(rep.error().message);
  CHECK(rep.error().message.find("sg web2 ingress: the culprit") != std::string::npos);
  CHECK(rep.error().message.find("nothing was changed") != std::string::npos);
  CHECK(diffIn(good, ns).empty());
}

TEST_CASE("tables vpcfw does not own survive apply, change, failed apply and flush") {
  Netns ns("foreign");
  loadForeign(ns);
  const std::string before = foreignState(ns);
  REQUIRE(before.find("tcp dport 22") != std::string::npos);
  applyIn(compileExample("two-tier"), ns);
  CHECK(foreignState(ns) == before);
  applyIn(compileExample("bastion"), ns);
  CHECK(foreignState(ns) == before);
  auto bad = compileExample("bastion");
  bad.table.chains.back().rules.front().verdict = compile::Verdict::jump("no_such_chain");
  nft::ApplyOptions o;
  o.netns = ns.name();
  CHECK_FALSE(nft::applyRuleset(bad, o).has_value());
  CHECK(foreignState(ns) == before);
  auto flushed = nft::deleteTable(ns.name());
  REQUIRE(flushed.has_value());
  CHECK(*flushed);
  CHECK(foreignState(ns) == before);
  CHECK(ns.exec("nft list table inet vpcfw").status != 0);
}

TEST_CASE("apply rebuilds the table after someone flushed the ruleset") {
  auto r = compileExample("two-tier");
  Netns ns("rebuild");
  applyIn(r, ns);
  REQUIRE(ns.exec("nft flush ruleset").status == 0);
  CHECK_FALSE(diffIn(r, ns).empty());
  CHECK(applyIn(r, ns).changed);
  CHECK(diffIn(r, ns).empty());
}
