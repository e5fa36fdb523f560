// Flow-log logging in the kernel, each case in its own namespace: a ruleset
// with log statements is applied and read back clean, `nft list` shows the
// statements with their prefixes and group, and a log statement taken out,
// changed or a flow-log chain deleted by hand is a difference that apply
// repairs; without flow logs an apply takes every log statement out again.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <regex>

#include "kernel/netns_fixture.h"
#include "support/test_config.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/nft/applier.h"

using namespace vpcfw;
using test::applyIn;
using test::compileExample;
using test::diffIn;
using test::Netns;
using test::sh;

namespace {

const std::string kVpcfw = VPCFW_BINARY;
const std::string kFlowLogs = std::string(VPCFW_SOURCE_DIR) + "/config/examples/flow-logs.yaml";

const char* kStages[] = {"nacl-egress", "nacl-ingress", "sg-egress", "sg-ingress"};

std::string listing(const Netns& ns) {
  auto r = ns.exec("nft list table inet vpcfw");
  REQUIRE(r.status == 0);
  return r.out;
}

void nftScript(const Netns& ns, const std::string& script) {
  const std::string path = "/tmp/" + ns.name() + "-flowlog.nft";
  std::ofstream(path) << script;
  auto r = ns.exec("nft -f " + path);
  std::remove(path.c_str());
  INFO(script);
  INFO(r.out);
  REQUIRE(r.status == 0);
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// The example's one ENI, web, is eni-web in the fabric.
const std::string kIfname = "eni-web";

}  // namespace

TEST_CASE("flow-log logging: applied, read back clean, listed with its prefixes and group 2701") {
  const auto r = compileExample("flow-logs");
  Netns ns("flowlog");
  CHECK(applyIn(r, ns).changed);
  // (a) the read-back finds exactly the desired table, and the CLI agrees.
  CHECK(diffIn(r, ns).empty());
  CHECK(sh(kVpcfw + " diff " + kFlowLogs + " --netns " + ns.name()).status == 0);
  auto again = applyIn(r, ns);
  CHECK_FALSE(again.changed);
  CHECK(again.messages == 0);
  // (b) what nft lists.
  const std::string text = listing(ns);
  INFO(text);
  for (const char* stage : kStages) {
    const std::string want =
        "log prefix \"vpcfw-drop " + std::string(stage) + " " + kIfname + "\" group 2701 counter packets ";
    CHECK_MESSAGE(text.find(want) != std::string::npos, want);
  }
  CHECK(text.find("log prefix \"vpcfw-tcp\" group 2701") != std::string::npos);
  CHECK(text.find("chain flow_log_tcp {\n\t\ttype filter hook postrouting priority filter; policy accept;") !=
        std::string::npos);
  // Anti-spoofing and conntrack-invalid drops do not log.
  CHECK(std::regex_search(text, std::regex("chain drop_web_anti_spoofing \\{\n\t\tcounter packets")));
  CHECK(std::regex_search(text, std::regex("chain drop_web_invalid \\{\n\t\tcounter packets")));
  std::size_t logs = 0;
  for (auto at = text.find(" group 2701"); at != std::string::npos; at = text.find(" group 2701", at + 1)) ++logs;
  CHECK(logs == 5);
}

TEST_CASE("flow-log logging: a log statement removed, changed or a flow-log chain deleted is drift") {
  const auto r = compileExample("flow-logs");
  struct Tamper {
    std::string what, script, evidence;  // evidence: in the listing afterwards
  };
  const std::vector<Tamper> tampers = {
      {"the log statement taken out of a drop chain",
       "flush chain inet vpcfw drop_web_sg_ingress\n"
       "add rule inet vpcfw drop_web_sg_ingress counter drop comment \"web sg-ingress\"\n",
       "chain drop_web_sg_ingress {\n\t\tcounter packets 0 bytes 0 drop comment \"web sg-ingress\""},
      {"a log statement sent to another group",
       "flush chain inet vpcfw drop_web_nacl_egress\n"
       "add rule inet vpcfw drop_web_nacl_egress log prefix \"vpcfw-drop nacl-egress eni-web\" group 1 counter drop "
       "comment \"web nacl-egress\"\n",
       "group 1 counter"},
      {"a log statement's prefix changed",
       "flush chain inet vpcfw drop_web_nacl_ingress\n"
       "add rule inet vpcfw drop_web_nacl_ingress log prefix \"vpcfw-drop nacl-ingress eni-other\" group 2701 counter "
       "drop comment \"web nacl-ingress\"\n",
       "eni-other"},
      {"the flow_log_tcp chain deleted", "flush chain inet vpcfw flow_log_tcp\ndelete chain inet vpcfw flow_log_tcp\n",
       ""},
  };
  for (const auto& t : tampers) {
    CAPTURE(t.what);
    Netns ns("flowlogtamper");
    applyIn(r, ns);
    REQUIRE(diffIn(r, ns).empty());
    const std::string good = listing(ns);
    nftScript(ns, t.script);
    const std::string after = listing(ns);
    INFO(after);
    REQUIRE(after != good);  // the tamper is real
    if (!t.evidence.empty()) REQUIRE(after.find(t.evidence) != std::string::npos);
    // (c) the same check the other drift tests use: diff, and the CLI's exit status.
    auto d = diffIn(r, ns);
    INFO(joined(d));
    CHECK_FALSE(d.empty());
    CHECK(sh(kVpcfw + " diff " + kFlowLogs + " --netns " + ns.name()).status == 1);
    // apply repairs it, and it stays repaired.
    CHECK(applyIn(r, ns).changed);
    CHECK(diffIn(r, ns).empty());
    CHECK(sh(kVpcfw + " diff " + kFlowLogs + " --netns " + ns.name()).status == 0);
    CHECK(listing(ns).find("log prefix \"vpcfw-drop sg-ingress eni-web\" group 2701") != std::string::npos);
    CHECK_FALSE(applyIn(r, ns).changed);
  }
}

TEST_CASE("flow-log logging: an apply without flow logs takes the log statements out, one with them puts them back") {
  const auto with = compileExample("flow-logs");
  auto m = test::loadExample("flow-logs");
  m.flowLogs.clear();
  auto rs = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(rs.has_value());
  REQUIRE(rs->size() == 1);
  const auto& without = (*rs)[0];
  Netns ns("flowlogoff");
  applyIn(with, ns);
  CHECK(listing(ns).find(" log prefix ") != std::string::npos);
  CHECK_FALSE(diffIn(without, ns).empty());
  auto off = applyIn(without, ns);
  CHECK(off.changed);
  CHECK(diffIn(without, ns).empty());
  const std::string text = listing(ns);
  CHECK(text.find("log prefix") == std::string::npos);
  CHECK(text.find("flow_log_tcp") == std::string::npos);
  CHECK(applyIn(with, ns).changed);
  CHECK(diffIn(with, ns).empty());
  CHECK(listing(ns).find("log prefix \"vpcfw-tcp\" group 2701") != std::string::npos);
}

TEST_CASE("flow-log logging: another group from the compile option is what the kernel holds") {
  auto m = test::loadExample("flow-logs");
  compile::CompileOptions o;
  o.flowLogGroup = 4242;
  auto rs = compile::compileRulesets(m, compile::labPlacement(m), o);
  REQUIRE(rs.has_value());
  const auto& r = (*rs)[0];
  Netns ns("flowloggroup");
  applyIn(r, ns);
  CHECK(diffIn(r, ns).empty());
  const std::string text = listing(ns);
  CHECK(text.find("log prefix \"vpcfw-tcp\" group 4242") != std::string::npos);
  CHECK(text.find("group 2701") == std::string::npos);
  // The default ruleset differs from it only in the group, and that is a difference.
  CHECK_FALSE(diffIn(compileExample("flow-logs"), ns).empty());
}
