// Flow-log logging in the compiled ruleset: no log statement without a flow
// log; with one, every ENI of the covered fabric logs its NACL and group
// drops with a prefix naming the stage and its interface, the fabric logs
// accepted TCP FIN/SYN/RST packets, all to the option's group; the prefixes
// parse back. The kernel side is tests/kernel/flow_log_test.cpp.
#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "support/test_config.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/compile/render.h"
#include "vpcfw/config/loader.h"

using namespace vpcfw;

namespace {

const std::set<std::string> kLoggedStages = {"nacl-egress", "nacl-ingress", "sg-egress", "sg-ingress"};

// Two VPCs (two fabrics), two subnets in a; FLOWLOGS is replaced.
const std::string kTwoVpcs = R"(
vpcs: [{name: a, cidr: 10.0.0.0/16}, {name: b, cidr: 10.1.0.0/16}]
subnets:
  - {name: a1, vpc: a, cidr: 10.0.1.0/24}
  - {name: a2, vpc: a, cidr: 10.0.2.0/24}
  - {name: b1, vpc: b, cidr: 10.1.1.0/24}
instances:
  - {name: web1, subnet: a1, private_ip: 10.0.1.10}
  - {name: web2, subnet: a2, private_ip: 10.0.2.10}
  - {name: db1, subnet: b1, private_ip: 10.1.1.10}
)";

std::string file(const std::string& path) {
  std::ifstream in(std::string(VPCFW_SOURCE_DIR) + "/" + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<compile::Ruleset> compileAll(const model::Model& m, const compile::CompileOptions& o = {}) {
  auto r = compile::compileRulesets(m, compile::labPlacement(m), o);
  REQUIRE(r.has_value());
  return *r;
}

const compile::Ruleset& fabric(const std::vector<compile::Ruleset>& rs, const std::string& name) {
  for (const auto& r : rs)
    if (r.fabric == name) return r;
  FAIL("no fabric " << name);
  return rs.front();
}

const compile::Chain* findChain(const compile::Table& t, const std::string& name) {
  for (const auto& c : t.chains)
    if (c.name == name) return &c;
  return nullptr;
}

std::size_t logCount(const compile::Ruleset& r) {
  std::size_t n = 0;
  for (const auto& c : r.table.chains)
    for (const auto& rule : c.rules) n += rule.log.has_value();
  return n;
}

// Checks that `r` logs as a covered fabric does, with group `group`: every
// ENI's four NACL and group drop chains log "vpcfw-drop <stage> <ifname>"
// in their one rule (log, counter, drop), the anti-spoofing and invalid
// ones do not, and flow_log_tcp (and on a host flow_log_tcp_in) logs the
// accepted TCP control packets. Nothing else logs.
void checkLogged(const model::Model& m, const compile::Ruleset& r, std::uint16_t group) {
  const auto p = compile::labPlacement(m);
  std::map<std::string, std::string> ifnameOf;  // instance -> its interface in this fabric
  for (std::size_t i = 0; i < m.instances.size(); ++i)
    if (p.byInstance[i] && p.byInstance[i]->fabric == r.fabric) ifnameOf[m.instances[i].name] = p.byInstance[i]->ifname;
  REQUIRE_FALSE(ifnameOf.empty());
  std::map<std::string, std::set<std::string>> logged;  // instance -> stages
  std::size_t logs = 0;
  for (const auto& c : r.table.chains) {
    INFO(c.name);
    if (c.name.starts_with("drop_")) {
      REQUIRE(c.rules.size() == 1);
      const auto& rule = c.rules[0];
      // The comment `vpcfw status` reads: "<instance> <stage>".
      const auto sp = rule.comment.rfind(' ');
      const std::string eni = rule.comment.substr(0, sp), stage = rule.comment.substr(sp + 1);
      CHECK(rule.counter);
      CHECK(rule.verdict == compile::Verdict::drop());
      CHECK(rule.matches.empty());
      if (!kLoggedStages.contains(stage)) {
        CHECK_FALSE(rule.log);
        continue;
      }
      REQUIRE(rule.log);
      ++logs;
      CHECK(rule.log->group == group);
      REQUIRE(ifnameOf.contains(eni));
      CHECK(rule.log->prefix == "vpcfw-drop " + stage + " " + ifnameOf[eni]);
      auto parsed = compile::parseFlowLogPrefix(rule.log->prefix);
      REQUIRE(parsed);
      CHECK(parsed->kind == compile::FlowLogPrefix::Kind::kDrop);
      CHECK(parsed->stage == stage);
      CHECK(parsed->ifname == ifnameOf[eni]);
      CHECK(logged[eni].insert(stage).second);
      continue;
    }
    if (c.name == "flow_log_tcp" || c.name == "flow_log_tcp_in") {
      const bool in = c.name == "flow_log_tcp_in";
      REQUIRE(c.hook);
      CHECK(*c.hook == (in ? "input" : "postrouting"));
      CHECK(c.type == "filter");
      CHECK(c.priority == (in ? 10 : 0));
      CHECK(c.policy == compile::Verdict::accept());
      REQUIRE(c.rules.size() == 1);
      const auto& rule = c.rules[0];
      REQUIRE(rule.log);
      ++logs;
      CHECK(rule.log->prefix == "vpcfw-tcp");
      CHECK(rule.log->group == group);
      CHECK(rule.verdict.kind == compile::VerdictKind::kContinue);
      CHECK_FALSE(rule.counter);
      continue;
    }
    for (const auto& rule : c.rules) CHECK_FALSE(rule.log);
  }
  for (const auto& [eni, ifn] : ifnameOf) CHECK_MESSAGE(logged[eni] == kLoggedStages, eni);
  CHECK(findChain(r.table, "flow_log_tcp") != nullptr);
  CHECK((findChain(r.table, "flow_log_tcp_in") != nullptr) == r.hostMode);
  CHECK(logs == ifnameOf.size() * 4 + (r.hostMode ? 2 : 1));
  CHECK(logCount(r) == logs);
}

}  // namespace

TEST_CASE("flow-log logging: without flow logs no rule logs and no flow-log chain exists") {
  std::vector<model::Model> models;
  for (const char* name : {"two-tier", "bastion", "default-vpc", "peering"}) models.push_back(test::loadExample(name));
  for (const char* path : {"tests/golden/host-mode.yaml", "tests/golden/host-routed.yaml",
                           "tests/golden/group-references.yaml", "tests/golden/nacl-order.yaml"})
    models.push_back(test::loadOk(file(path)));
  models.push_back(test::loadOk(kTwoVpcs));
  auto flowLogs = test::loadExample("flow-logs");
  flowLogs.flowLogs.clear();
  models.push_back(flowLogs);
  for (const auto& m : models) {
    for (const auto& r : compileAll(m)) {
      INFO(m.sourceFile << " " << r.fabric);
      CHECK(logCount(r) == 0);
      CHECK(findChain(r.table, "flow_log_tcp") == nullptr);
      CHECK(findChain(r.table, "flow_log_tcp_in") == nullptr);
      const std::string text = compile::renderTable(r.table);
      CHECK(text.find(" log ") == std::string::npos);
      CHECK(text.find("tcp flags") == std::string::npos);
    }
  }
}

TEST_CASE("flow-log logging: a flow log on one instance logs at every ENI of its fabric, and only there") {
  auto m = test::loadOk(kTwoVpcs + "flow_logs: [{name: one, instance: web1, destination: stdout}]\n");
  const auto rs = compileAll(m);
  REQUIRE(rs.size() == 2);
  const auto& a = fabric(rs, compile::labPlacement(m).byInstance[0]->fabric);
  const auto& b = fabric(rs, compile::labPlacement(m).byInstance[2]->fabric);
  REQUIRE(a.fabric != b.fabric);
  checkLogged(m, a, compile::kFlowLogGroup);  // web2, which no flow log covers, logs too
  CHECK(logCount(b) == 0);
  CHECK(findChain(b.table, "flow_log_tcp") == nullptr);
  // The fabric without flow logs is exactly what it was without any.
  auto none = test::loadOk(kTwoVpcs);
  CHECK(b == fabric(compileAll(none), b.fabric));

  const std::string text = compile::renderTable(a.table);
  CHECK(text.find("\t\tlog prefix \"vpcfw-drop sg-ingress eni-web2\" group 2701 counter drop comment \"web2 "
                  "sg-ingress\"\n") != std::string::npos);
  CHECK(text.find("\t\tlog prefix \"vpcfw-drop nacl-egress eni-web1\" group 2701 counter drop comment \"web1 "
                  "nacl-egress\"\n") != std::string::npos);
  CHECK(text.find("\tchain flow_log_tcp {\n\t\ttype filter hook postrouting priority filter; policy accept;\n"
                  "\t\tmeta l4proto 6 tcp flags & (fin | syn | rst) != 0 log prefix \"vpcfw-tcp\" group 2701 "
                  "comment ") != std::string::npos);
  CHECK(text.find("drop_web1_anti_spoofing {\n\t\tcounter drop") != std::string::npos);
  CHECK(text.find("drop_web1_invalid {\n\t\tcounter drop") != std::string::npos);
}

TEST_CASE("flow-log logging: VPC and subnet flow logs, host mode and a routed host") {
  SUBCASE("a VPC's flow log") {
    auto m = test::loadOk(kTwoVpcs + "flow_logs: [{name: v, vpc: b, destination: stdout}]\n");
    const auto rs = compileAll(m);
    checkLogged(m, fabric(rs, compile::labPlacement(m).byInstance[2]->fabric), compile::kFlowLogGroup);
    CHECK(logCount(fabric(rs, compile::labPlacement(m).byInstance[0]->fabric)) == 0);
  }
  SUBCASE("a subnet's flow log") {
    auto m = test::loadOk(kTwoVpcs + "flow_logs: [{name: s, subnet: a2, destination: stdout}]\n");
    const auto rs = compileAll(m);
    checkLogged(m, fabric(rs, compile::labPlacement(m).byInstance[0]->fabric), compile::kFlowLogGroup);
    CHECK(logCount(fabric(rs, compile::labPlacement(m).byInstance[2]->fabric)) == 0);
  }
  SUBCASE("host mode: the host's interface names, and a chain after the input chain") {
    auto m = test::loadOk(file("tests/golden/host-mode.yaml") +
                          "flow_logs: [{name: h, instance: h1, destination: stdout}]\n");
    const auto rs = compileAll(m);
    REQUIRE(rs.size() == 1);
    checkLogged(m, rs[0], compile::kFlowLogGroup);
    const std::string text = compile::renderTable(rs[0].table);
    CHECK(text.find("log prefix \"vpcfw-drop sg-ingress veth-h\" group 2701") != std::string::npos);
    CHECK(text.find("\tchain flow_log_tcp_in {\n\t\ttype filter hook input priority 10; policy accept;\n") !=
          std::string::npos);
  }
  SUBCASE("a routed host: own and routed ENIs alike") {
    auto m =
        test::loadOk(file("tests/golden/host-routed.yaml") + "flow_logs: [{name: all, vpc: v, destination: stdout}]\n");
    for (const auto& r : compileAll(m)) {
      INFO(r.fabric);
      checkLogged(m, r, compile::kFlowLogGroup);
    }
  }
}

TEST_CASE("flow-log logging: the compile option sets the group") {
  auto m = test::loadExample("flow-logs");
  compile::CompileOptions o;
  o.flowLogGroup = 42;
  const auto rs = compileAll(m, o);
  REQUIRE(rs.size() == 1);
  checkLogged(m, rs[0], 42);
  const std::string text = compile::renderTable(rs[0].table);
  CHECK(text.find("group 42") != std::string::npos);
  CHECK(text.find("group 2701") == std::string::npos);
  // Only the group differs from the default's ruleset.
  auto def = compileAll(m)[0];
  for (auto& c : def.table.chains)
    for (auto& rule : c.rules)
      if (rule.log) rule.log->group = 42;
  CHECK(def == rs[0]);
}

TEST_CASE("flow-log prefixes: text and parse round-trip, and other prefixes are not vpcfw's") {
  using K = compile::FlowLogPrefix::Kind;
  const std::vector<compile::FlowLogPrefix> prefixes = {
      {K::kTcp, {}, {}},
      {K::kDrop, "nacl-egress", "eni-web1"},
      {K::kDrop, "nacl-ingress", "eth0"},
      {K::kDrop, "sg-egress", "eni-a-very-lon1"},  // 15 bytes, the most an interface name has
      {K::kDrop, "sg-ingress", "veth-h"},
  };
  for (const auto& p : prefixes) {
    const std::string text = compile::flowLogPrefixText(p);
    INFO(text);
    CHECK(compile::parseFlowLogPrefix(text) == p);
  }
  CHECK(compile::flowLogPrefixText({K::kTcp, {}, {}}) == "vpcfw-tcp");
  CHECK(compile::flowLogPrefixText({K::kDrop, "sg-ingress", "eni-web1"}) == "vpcfw-drop sg-ingress eni-web1");
  for (const char* bad :
       {"", "vpcfw-tcp ", "vpcfw-tcpx", "vpcfw-drop", "vpcfw-drop ", "vpcfw-drop sg-ingress", "vpcfw-drop sg-ingress ",
        "vpcfw-dropsg-ingress eni-web1", "vpcfw-drop sg_ingress eni-web1", "vpcfw-drop anti-spoofing eni-web1",
        "vpcfw-drop invalid eni-web1", "vpcfw-drop sg-ingress eni web1", "vpcfw-drop sg-ingress eni-sixteen-byte",
        "IN=eth0 OUT= ", "VPCFW-TCP"}) {
    INFO(bad);
    CHECK_FALSE(compile::parseFlowLogPrefix(bad));
  }
}
