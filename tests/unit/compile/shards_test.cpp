// Beyond 16 ENIs per fabric the shared security-group sets are split into
// shards by a hash of the ENI's interface name, reached through one verdict
// map per direction; references to small groups become set elements.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>

#include "support/test_config.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/compile/render.h"

using namespace vpcfw;

namespace {

std::string config(int enis) {
  std::string y = R"(
vpcs: [{name: v, cidr: 10.0.0.0/16}]
subnets: [{name: s, vpc: v, cidr: 10.0.0.0/20}]
security_groups:
  - {name: web, vpc: v, ingress: [{protocol: tcp, ports: 80, cidr: 192.0.2.0/24}, {protocol: tcp, ports: 22, group: admin}]}
  - {name: admin, vpc: v}
instances:
  - {name: adm, subnet: s, private_ip: 10.0.1.5, security_groups: [admin]}
)";
  for (int i = 0; i < enis; ++i)
    y += "  - {name: i" + std::to_string(i) + ", subnet: s, private_ip: 10.0.2." + std::to_string(10 + i) +
         ", security_groups: [web]}\n";
  return y;
}

const compile::Set* findSet(const compile::Table& t, const std::string& name) {
  for (const auto& s : t.sets)
    if (s.name == name) return &s;
  return nullptr;
}

}  // namespace

TEST_CASE("up to 16 ENIs: one shard, no dispatch map") {
  auto m = test::loadOk(config(15));
  auto r = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(r);
  const auto& t = r->front().table;
  CHECK(findSet(t, "sg_in_ports4") != nullptr);
  CHECK(findSet(t, "sg_in_shards") == nullptr);
}

TEST_CASE("41 ENIs: four shards, every ENI in exactly one, its rules in its shard's sets") {
  auto m = test::loadOk(config(40));
  auto r = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(r);
  const auto& t = r->front().table;
  const auto* dispatch = findSet(t, "sg_in_shards");
  REQUIRE(dispatch != nullptr);
  CHECK(dispatch->elements.size() == 41);
  std::set<std::string> used;
  std::size_t elements = 0;
  for (int k = 0; k < 4; ++k) {
    const auto* s = findSet(t, "sg_in_ports4_s" + std::to_string(k));
    REQUIRE(s != nullptr);
    elements += s->elements.size();
  }
  CHECK(findSet(t, "sg_in_ports4_s4") == nullptr);
  // Each web ENI: tcp 80 from 192.0.2.0/24 and tcp 22 from adm (a small group: an element).
  CHECK(elements == 80);
  for (const auto& e : dispatch->elements) {
    REQUIRE(e.verdict);
    CHECK(e.verdict->kind == compile::VerdictKind::kGoto);
    used.insert(e.verdict->chain);
    // The ENI's elements are in the shard its map entry leads to.
    const auto eni = std::get<std::string>(e.key[0]);
    const auto shard = e.verdict->chain.substr(e.verdict->chain.size() - 1);
    const auto* s = findSet(t, "sg_in_ports4_s" + shard);
    bool found = eni == "eni-adm" ||
                 std::any_of(s->elements.begin(), s->elements.end(),
                             [&](const compile::SetElement& x) { return std::get<std::string>(x.key[0]) == eni; });
    CHECK_MESSAGE(found, eni);
  }
  CHECK(used.size() == 4);
  CHECK(findSet(t, "grp_v_admin_4") == nullptr);  // one member: elements, not a member set
  const std::string text = compile::renderTable(t);
  CHECK(text.find("oifname vmap @sg_in_shards") != std::string::npos);
}
