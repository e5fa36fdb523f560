// Connection tracking in the compiled ruleset: ct timeout objects named by
// their values, the shorter of two ENIs' timeouts per pair of classes, one
// allowance rule per direction keyed like the ENI, and nothing at all for a
// fabric whose ENIs ask for none (docs/ruleset.md, "Connection tracking").
#include <doctest/doctest.h>

#include <algorithm>

#include <fmt/format.h>

#include "support/test_config.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/compile/render.h"

using namespace vpcfw;

namespace {

const char* kConfig = R"(
limits: {profile: lab}
vpcs: [{name: v, cidr: 10.0.0.0/16}, {name: w, cidr: 10.1.0.0/16}]
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24}, {name: t, vpc: w, cidr: 10.1.1.0/24}]
instances:
  - {name: a, subnet: s, private_ip: 10.0.1.10, connection_tracking: {udp_timeout: 5, udp_stream_timeout: 7, tcp_established_timeout: 10, max_tracked_connections: 3}}
  - {name: b, subnet: s, private_ip: 10.0.1.11, connection_tracking: {udp_timeout: 3, tcp_established_timeout: 20}}
  - {name: c, subnet: t, private_ip: 10.1.1.10}
)";

const compile::Ruleset& fabric(const std::vector<compile::Ruleset>& rs, const std::string& name) {
  auto it = std::find_if(rs.begin(), rs.end(), [&](const compile::Ruleset& r) { return r.fabric == name; });
  REQUIRE(it != rs.end());
  return *it;
}

const compile::Chain* chain(const compile::Table& t, const std::string& name) {
  for (const auto& c : t.chains)
    if (c.name == name) return &c;
  return nullptr;
}

}  // namespace

TEST_CASE("connection tracking: objects by value, the shorter of two, the allowance, nothing where unused") {
  auto m = test::loadOk(kConfig);
  auto rs = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(rs);
  const auto& v = fabric(*rs, "vpcfw-v").table;
  std::vector<std::string> names;
  for (const auto& o : v.ctTimeouts) names.push_back(o.name);
  // a: tcp 10, udp 5/7; b: tcp 20, udp 3/180; a<->b: tcp 10, udp 3/7.
  CHECK(names == std::vector<std::string>{"ct_tcp_10", "ct_tcp_20", "ct_udp_3_180", "ct_udp_3_7", "ct_udp_5_7"});
  for (const auto& o : v.ctTimeouts) CHECK(o.seconds.size() == compile::ctTimeoutStates(o.l4proto).size());
  const auto* fromB = chain(v, "ct_timeouts_from_1");
  REQUIRE(fromB);
  const std::string text = compile::renderTable(v, 0);
  CHECK(text.find("oifname @ct_timeouts_0_enis meta l4proto 6 ct timeout set \"ct_tcp_10\"") != std::string::npos);
  CHECK(text.find("ct timeout set \"ct_udp_3_7\"") != std::string::npos);
  CHECK(text.find("iifname @allowance_3_enis add @allowance_3 { iifname ct count over 3 } counter goto "
                  "allowance_egress_drop") != std::string::npos);
  CHECK(text.find("oifname @allowance_3_enis add @allowance_3 { oifname ct count over 3 } counter goto "
                  "allowance_ingress_drop") != std::string::npos);
  CHECK(text.find("policy = { unreplied : 5, replied : 7 }") != std::string::npos);
  CHECK(text.find("flags dynamic") != std::string::npos);
  // Only a has an allowance: only a gets its drop chains.
  CHECK(chain(v, "drop_a_allowance_egress"));
  CHECK_FALSE(chain(v, "drop_b_allowance_egress"));
  // Fabric w asks for nothing: no objects, no conntrack chain.
  const auto& w = fabric(*rs, "vpcfw-w").table;
  CHECK(w.ctTimeouts.empty());
  CHECK_FALSE(chain(w, "conntrack_new"));
}

TEST_CASE("connection tracking: AWS's ranges without the lab profile, any value under it") {
  auto d = test::loadDiagnostics(R"(
vpcs: [{name: v, cidr: 10.0.0.0/16}]
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24}]
instances:
  - {name: a, subnet: s, private_ip: 10.0.1.10, connection_tracking: {udp_timeout: 5}}
)");
  CHECK(test::hasDiagnostic(d, "'udp_timeout' is 5; AWS allows 30..60"));
  auto m = test::loadOk(R"(
limits: {profile: lab}
vpcs: [{name: v, cidr: 10.0.0.0/16}]
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24}]
instances:
  - {name: a, subnet: s, private_ip: 10.0.1.10, connection_tracking: {udp_timeout: 1, max_tracked_connections: 1}}
)");
  REQUIRE(m.instances[0].connectionTracking);
  CHECK(m.instances[0].connectionTracking->udpOr() == 1);
  CHECK(m.instances[0].connectionTracking->udpStreamOr() == 180);
  CHECK(*m.instances[0].connectionTracking->maxTracked == 1u);
}

TEST_CASE("connection tracking: at most 16 distinct timeout settings and 16 distinct allowances, located") {
  auto configWith = [](int n, bool timeouts) {
    std::string y = R"(
vpcs: [{name: v, cidr: 10.0.0.0/16}]
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24}]
instances:
)";
    for (int i = 0; i < n; ++i)
      y += fmt::format("  - {{name: i{}, subnet: s, private_ip: 10.0.1.{}, connection_tracking: {{{}: {}}}}}\n", i,
                       10 + i, timeouts ? "tcp_established_timeout" : "max_tracked_connections", 100 + i);
    return y;
  };
  for (bool timeouts : {true, false}) {
    CAPTURE(timeouts);
    test::loadOk(configWith(16, timeouts));
    auto d = test::loadDiagnostics(configWith(17, timeouts));
    const std::string what = timeouts ? "instance 'i16' brings the config to 17 distinct connection_tracking timeout"
                                      : "instance 'i16' brings the config to 17 distinct max_tracked_connections";
    CHECK(test::hasDiagnostic(d, what));
    // At the 17th instance's line.
    CHECK(std::any_of(d.begin(), d.end(), [&](const std::string& x) {
      return x.find(what) != std::string::npos && x.rfind("21:", 0) == 0;  // the string opens with a newline
    }));
  }
}
