// The applier as an attacker sees it, each case in its own namespace:
// a table inet vpcfw that vpcfw did not make is reported and left alone
// (several forgeries) unless taken over; every kind of tampering with vpcfw's
// table (table flags, chains, rules, sets, elements, stateful objects,
// flowtables) is a difference for diff and is repaired by apply; a batch
// computed against an old generation is refused and recomputed; a fabric's
// lock makes a second command wait, bounded, whether it names the namespace
// or runs inside it; concurrent applies never mix two configs.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <regex>
#include <thread>

#include "kernel/netns_fixture.h"
#include "support/test_config.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/compile/render.h"
#include "vpcfw/nft/applier.h"
#include "vpcfw/nft/netns.h"
#include "vpcfw/state/state.h"

using namespace vpcfw;
using test::applyIn;
using test::compileExample;
using test::diffIn;
using test::listedJson;
using test::Netns;
using test::sh;

namespace {

const std::string kSrc = VPCFW_SOURCE_DIR;
const std::string kVpcfw = VPCFW_BINARY;
const std::string kTwoTier = kSrc + "/config/examples/two-tier.yaml";
const std::string kBastion = kSrc + "/config/examples/bastion.yaml";

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

std::string listing(const Netns& ns) { return ns.exec("nft list table inet vpcfw").out; }

void nftScript(const Netns& ns, const std::string& script) {
  const std::string path = "/tmp/" + ns.name() + "-tamper.nft";
  std::ofstream(path) << script;
  auto r = ns.exec("nft -f " + path);
  std::remove(path.c_str());
  INFO(script);
  INFO(r.out);
  REQUIRE(r.status == 0);
}

void nftCmd(const Netns& ns, const std::string& args) {
  const std::string cmd = "nft " + args;
  auto r = ns.exec(cmd);
  INFO(cmd);
  INFO(r.out);
  REQUIRE(r.status == 0);
}

// The handle of the first rule of a chain (`nft -a` prints the chain's own handle first).
std::string firstRuleHandle(const Netns& ns, const std::string& chain) {
  auto out = ns.exec("nft -a list chain inet vpcfw " + chain).out;
  std::smatch m;
  std::string rest = out.substr(out.find("# handle") + 8);
  REQUIRE(std::regex_search(rest, m, std::regex("# handle ([0-9]+)")));
  return m[1];
}

}  // namespace

TEST_CASE("a table inet vpcfw that vpcfw did not create is reported and left alone until taken over") {
  const auto r = compileExample("two-tier");
  struct Forgery {
    std::string what;
    std::string script;
  };
  const std::vector<Forgery> forgeries = {
      {"an empty table (nft add table inet vpcfw)", "table inet vpcfw {}\n"},
      {"a table with someone's chain",
       "table inet vpcfw {\n chain input { type filter hook input priority 0; policy accept; }\n}\n"},
      {"vpcfw's own ruleset loaded by nft -f (an older vpcfw)", compile::renderScript(r)},
      {"a comment that is almost the marker", "table inet vpcfw { comment \"managed by vpcfw\"; }\n"},
      {"the marker with something after it",
       "table inet vpcfw { comment \"" + std::string(nft::kOwnerMarker) + "!\"; }\n"},
  };
  for (const auto& f : forgeries) {
    CAPTURE(f.what);
    Netns ns("own");
    nftScript(ns, f.script);
    const std::string before = listing(ns);
    REQUIRE(before.find("table inet vpcfw") != std::string::npos);

    nft::ApplyOptions o;
    o.netns = ns.name();
    auto applied = nft::applyRuleset(r, o);
    REQUIRE_FALSE(applied.has_value());
    CHECK(applied.error().code == ErrorCode::kNotOwned);
    CHECK(applied.error().message.find("--takeover") != std::string::npos);
    CHECK(listing(ns) == before);

    auto flushed = nft::deleteTable(ns.name());
    REQUIRE_FALSE(flushed.has_value());
    CHECK(flushed.error().code == ErrorCode::kNotOwned);
    CHECK(listing(ns) == before);

    auto d = diffIn(r, ns);
    REQUIRE_FALSE(d.empty());
    CHECK(d.front().find(nft::kForeignTable) != std::string::npos);
    auto st = nft::tableStatus(ns.name());
    REQUIRE(st.has_value());
    CHECK(st->exists);
    CHECK_FALSE(st->owned);

    // The CLI says so too: diff exits 1, status names it (also in JSON), apply refuses and names --takeover.
    auto cliDiff = sh(kVpcfw + " diff " + kTwoTier + " --netns " + ns.name());
    CHECK(cliDiff.status == 1);
    CHECK(cliDiff.out.find(nft::kForeignTable) != std::string::npos);
    auto cliStatus = sh(kVpcfw + " status --netns " + ns.name());
    CHECK(cliStatus.out.find(nft::kForeignTable) != std::string::npos);
    auto cliJson = sh(kVpcfw + " status --json --netns " + ns.name() + " 2>/dev/null");
    auto j = nlohmann::json::parse(cliJson.out);
    CHECK(j["foreign"] == true);
    CHECK(j["owned"] == false);
    auto cliApply = sh(kVpcfw + " apply " + kTwoTier + " --netns " + ns.name());
    CHECK(cliApply.status == 1);
    CHECK(cliApply.out.find("--takeover") != std::string::npos);
    auto cliFlush = sh(kVpcfw + " flush --netns " + ns.name());
    CHECK(cliFlush.status == 1);
    CHECK(listing(ns) == before);

    // --takeover replaces it; then it is vpcfw's and up to date.
    auto took = sh(kVpcfw + " apply " + kTwoTier + " --takeover --netns " + ns.name());
    INFO(took.out);
    CHECK(took.status == 0);
    CHECK(diffIn(r, ns).empty());
    st = nft::tableStatus(ns.name());
    REQUIRE(st.has_value());
    CHECK(st->owned);
    CHECK(listing(ns).find(nft::kOwnerMarker) != std::string::npos);
    CHECK(sh(kVpcfw + " diff " + kTwoTier + " --netns " + ns.name()).status == 0);
    CHECK(sh(kVpcfw + " flush --netns " + ns.name()).status == 0);
    CHECK(ns.exec("nft list table inet vpcfw").status != 0);
  }
}

TEST_CASE("flush --takeover removes a foreign table inet vpcfw, and tables of other families are never vpcfw's") {
  const auto r = compileExample("two-tier");
  Netns ns("ownflush");
  nftScript(ns, "table inet vpcfw {}\ntable ip vpcfw {\n chain c { type filter hook input priority 0; }\n}\n");
  CHECK(sh(kVpcfw + " flush --netns " + ns.name()).status == 1);
  CHECK(ns.exec("nft list table inet vpcfw").status == 0);
  CHECK(sh(kVpcfw + " flush --takeover --netns " + ns.name()).status == 0);
  CHECK(ns.exec("nft list table inet vpcfw").status != 0);
  const std::string ipTable = ns.exec("nft list table ip vpcfw").out;
  REQUIRE(ipTable.find("chain c") != std::string::npos);
  applyIn(r, ns);
  CHECK(diffIn(r, ns).empty());
  CHECK(ns.exec("nft list table ip vpcfw").out == ipTable);
}

TEST_CASE("every kind of tampering with vpcfw's table is a difference, and apply repairs it") {
  const auto r = compileExample("two-tier");
  struct Tamper {
    std::string what;
    std::function<void(const Netns&)> act;
    std::string evidence;  // in `nft list table inet vpcfw` afterwards
  };
  std::vector<Tamper> tampers = {
      {"table flags dormant", [](const Netns& ns) { nftCmd(ns, "add table inet vpcfw '{ flags dormant; }'"); },
       "flags dormant"},
      {"forward policy accept", [](const Netns& ns) { nftCmd(ns, "chain inet vpcfw forward '{ policy accept; }'"); },
       "hook forward priority filter; policy accept;"},
      {"forward priority changed (chain recreated with its rules)",
       [](const Netns& ns) {
         std::string chain = ns.exec("nft list chain inet vpcfw forward").out;
         const std::string prio = "priority filter;";
         REQUIRE(chain.find(prio) != std::string::npos);
         chain.replace(chain.find(prio), prio.size(), "priority filter + 5;");
         nftScript(ns, "flush chain inet vpcfw forward\ndelete chain inet vpcfw forward\n" + chain);
       },
       "hook forward priority filter + 5;"},
      {"an accept rule inserted at the top of forward",
       [](const Netns& ns) { nftCmd(ns, "insert rule inet vpcfw forward accept"); }, "policy drop;\n\t\taccept\n"},
      {"a rule with an anonymous set in sg_in",
       [](const Netns& ns) { nftCmd(ns, "insert rule inet vpcfw sg_in ip saddr '{ 192.0.2.99 }' accept"); },
       "192.0.2.99"},
      {"a rule with a bound anonymous chain in forward",
       [](const Netns& ns) { nftCmd(ns, "insert rule inet vpcfw forward jump '{ accept; }'"); }, "jump {"},
      {"a rule deleted from forward",
       [](const Netns& ns) { nftCmd(ns, "delete rule inet vpcfw forward handle " + firstRuleHandle(ns, "forward")); },
       ""},
      {"an extra chain", [](const Netns& ns) { nftCmd(ns, "add chain inet vpcfw evil"); }, "chain evil"},
      {"an extra base chain",
       [](const Netns& ns) {
         nftCmd(ns, "add chain inet vpcfw evil '{ type filter hook forward priority -500; policy accept; }'");
       },
       "chain evil"},
      {"an extra set", [](const Netns& ns) { nftCmd(ns, "add set inet vpcfw evil '{ type ipv4_addr; }'"); },
       "set evil"},
      {"an extra element", [](const Netns& ns) { nftCmd(ns, "add element inet vpcfw enis '{ \"evil0\" }'"); }, "evil0"},
      {"an element changed (a NACL jump became accept)",
       [](const Netns& ns) {
         nftScript(ns,
                   "delete element inet vpcfw nacl_in { \"eni-web1\" }\nadd element inet vpcfw nacl_in { \"eni-web1\" "
                   ": accept }\n");
       },
       "\"eni-web1\" : accept"},
      {"a catch-all element", [](const Netns& ns) { nftCmd(ns, "add element inet vpcfw nacl_in '{ * : accept }'"); },
       "* : accept"},
      {"an anti-spoofing element removed",
       [](const Netns& ns) { nftCmd(ns, "delete element inet vpcfw eni_src4 '{ \"eni-web1\" . 10.0.1.10 }'"); }, ""},
      {"a counter object", [](const Netns& ns) { nftCmd(ns, "add counter inet vpcfw evil"); }, "counter evil"},
      {"a quota object", [](const Netns& ns) { nftCmd(ns, "add quota inet vpcfw evilq '{ 100 mbytes }'"); },
       "quota evilq"},
      {"a limit object", [](const Netns& ns) { nftCmd(ns, "add limit inet vpcfw evill '{ rate 10/second; }'"); },
       "limit evill"},
      {"a ct timeout object",
       [](const Netns& ns) {
         nftCmd(ns, "add ct timeout inet vpcfw evilto '{ protocol tcp; l3proto ip; policy = { established: 100 }; }'");
       },
       "ct timeout evilto"},
      {"a ct helper object",
       [](const Netns& ns) { nftCmd(ns, "add ct helper inet vpcfw evilh '{ type \"ftp\" protocol tcp; }'"); },
       "ct helper evilh"},
      {"a ct expectation object",
       [](const Netns& ns) {
         nftCmd(ns,
                "add ct expectation inet vpcfw evile '{ protocol tcp; dport 22; timeout 10m; size 8; l3proto ip; }'");
       },
       "ct expectation evile"},
      {"a synproxy object",
       [](const Netns& ns) { nftCmd(ns, "add synproxy inet vpcfw evilsp '{ mss 1460; wscale 7; }'"); },
       "synproxy evilsp"},
      {"an element that only gained a comment",
       [](const Netns& ns) {
         nftScript(ns,
                   "delete element inet vpcfw enis { \"eni-web1\" }\nadd element inet vpcfw enis { \"eni-web1\" "
                   "comment \"x\" }\n");
       },
       "\"eni-web1\" comment \"x\""},
      {"a set recreated with another header (a size limit), everything else reloaded as it was",
       [](const Netns& ns) {
         std::string table = ns.exec("nft list table inet vpcfw").out;
         const std::string head = "set enis {\n\t\ttype ifname\n";
         REQUIRE(table.find(head) != std::string::npos);
         table.replace(table.find(head), head.size(), head + "\t\tsize 1000\n");
         nftScript(ns, "flush table inet vpcfw\ndelete set inet vpcfw enis\n" + table);
       },
       "size 1000"},
  };
  // A flowtable needs a device and the kernel's flow-table support (not every
  // kernel has it); probe in a scratch namespace first.
  const std::string ftDevice = "ip link add vpcfwft0 type veth peer name vpcfwft1";
  const std::string ft = "add flowtable inet vpcfw evilft '{ hook ingress priority 0; devices = { vpcfwft0 }; }'";
  {
    Netns probe("ftprobe");
    REQUIRE(probe.exec(ftDevice).status == 0);
    REQUIRE(probe.exec("nft add table inet vpcfw").status == 0);
    if (probe.exec("nft " + ft).status == 0)
      tampers.push_back({"a flowtable",
                         [&](const Netns& ns) {
                           REQUIRE(ns.exec(ftDevice).status == 0);
                           nftCmd(ns, ft);
                         },
                         "flowtable evilft"});
    else
      MESSAGE("this kernel refuses flowtables (no nf_flow_table); the flowtable tamper is not run");
  }
  for (const auto& t : tampers) {
    CAPTURE(t.what);
    Netns ns("tamper");
    const std::uint32_t cacheBefore = applyIn(r, ns).cacheGeneration;
    REQUIRE(cacheBefore != 0);
    REQUIRE(diffIn(r, ns).empty());  // baseline: untampered, it matches
    REQUIRE(sh(kVpcfw + " diff " + kTwoTier + " --netns " + ns.name()).status == 0);
    const auto good = listedJson(ns);
    const std::string before = listing(ns);
    t.act(ns);
    const std::string after = listing(ns);
    INFO(after);
    REQUIRE(after != before);  // the tamper is real
    if (!t.evidence.empty()) REQUIRE(after.find(t.evidence) != std::string::npos);

    auto d = diffIn(r, ns);
    INFO(joined(d));
    CHECK_FALSE(d.empty());
    auto cli = sh(kVpcfw + " diff " + kTwoTier + " --netns " + ns.name());
    CHECK(cli.status == 1);
    if (t.evidence == "flags dormant") {
      CHECK(joined(d).find("dormant") != std::string::npos);
      auto st = nft::tableStatus(ns.name());
      REQUIRE(st.has_value());
      CHECK(st->dormant);
    }

    auto rep = applyIn(r, ns);
    CHECK(rep.changed);
    CHECK(diffIn(r, ns).empty());
    // As it was, but that a repair of what the NACL verdicts depend on
    // starts a new cache generation (its commit's).
    CHECK(test::withoutCacheRules(listedJson(ns)) == test::withoutCacheRules(good));
    CHECK((rep.cacheGeneration == cacheBefore || rep.cacheGeneration == rep.generation));
    CHECK(sh(kVpcfw + " diff " + kTwoTier + " --netns " + ns.name()).status == 0);
    CHECK_FALSE(applyIn(r, ns).changed);  // and it stays repaired
  }
}

TEST_CASE("a batch computed against an older generation is refused by the kernel and recomputed") {
  const auto twoTier = compileExample("two-tier");
  const auto bastion = compileExample("bastion");

  SUBCASE("a foreign change elsewhere in the ruleset") {
    for (bool tableExists : {false, true}) {
      CAPTURE(tableExists);
      Netns ns("gen");
      if (tableExists) applyIn(bastion, ns);
      int calls = 0;
      nft::ApplyOptions o;
      o.beforeCommit = [&] {
        if (calls++ == 0) nftCmd(ns, "add table ip vpcfwk_gen_other");
      };
      auto rep = applyIn(twoTier, ns, o);
      CHECK(rep.attempts == 2);  // the first batch was refused
      CHECK(calls == 2);
      CHECK(rep.changed);
      CHECK(diffIn(twoTier, ns).empty());
      CHECK(ns.exec("nft list table ip vpcfwk_gen_other").status == 0);
    }
  }
  SUBCASE("a change to vpcfw's own table between read-back and commit") {
    Netns ns("genown");
    applyIn(bastion, ns);
    int calls = 0;
    nft::ApplyOptions o;
    o.beforeCommit = [&] {
      if (calls++ == 0) nftCmd(ns, "insert rule inet vpcfw forward accept");
    };
    auto rep = applyIn(twoTier, ns, o);
    CHECK(rep.attempts == 2);
    CHECK(diffIn(twoTier, ns).empty());
    CHECK(listing(ns).find("policy drop;\n\t\taccept\n") == std::string::npos);
  }
  SUBCASE("a ruleset that never holds still: bounded, then kBusy, nothing changed") {
    Netns ns("genbusy");
    applyIn(bastion, ns);
    int calls = 0;
    nft::ApplyOptions o;
    o.netns = ns.name();
    o.beforeCommit = [&] { nftCmd(ns, "add table ip vpcfwk_busy" + std::to_string(calls++)); };
    auto rep = nft::applyRuleset(twoTier, o);
    REQUIRE_FALSE(rep.has_value());
    CHECK(rep.error().code == ErrorCode::kBusy);
    CHECK(calls == 5);
    CHECK(diffIn(bastion, ns).empty());
  }
  SUBCASE("check mode is refused the same way") {
    Netns ns("gencheck");
    int calls = 0;
    nft::ApplyOptions o;
    o.check = true;
    o.beforeCommit = [&] {
      if (calls++ == 0) nftCmd(ns, "add table ip vpcfwk_gen_check");
    };
    auto rep = applyIn(twoTier, ns, o);
    CHECK(rep.attempts == 2);
    CHECK_FALSE(rep.changed);
    CHECK(ns.exec("nft list table inet vpcfw").status != 0);
  }
}

TEST_CASE("a held fabric lock makes apply and flush wait, bounded, however the namespace is reached") {
  const auto r = compileExample("two-tier");
  Netns ns("lock");
  auto id = nft::netnsIdentity(ns.name());
  REQUIRE(id.has_value());
  // The identity is the namespace's, not the name's: the same from inside.
  std::string inside;
  REQUIRE(nft::runInNetns(ns.name(), [&]() -> Expected<void> {
            auto i = nft::netnsIdentity(std::nullopt);
            if (!i) return unexpected(i.error());
            inside = *i;
            return {};
          }).has_value());
  CHECK(inside == *id);
  auto own = nft::netnsIdentity(std::nullopt);
  REQUIRE(own.has_value());
  CHECK(*own != *id);

  nft::ApplyOptions o;
  o.netns = ns.name();
  o.lockTimeout = std::chrono::milliseconds(400);
  int waits = 0;
  std::string holder;
  o.lockWaiting = [&](const std::string& h) {
    ++waits;
    holder = h;
  };
  // Baseline: nobody holds it, apply goes through without waiting.
  REQUIRE(nft::applyRuleset(r, o).has_value());
  CHECK(waits == 0);

  auto acquired = state::Lock::acquire("netns", *id, std::chrono::milliseconds(0));
  REQUIRE(acquired.has_value());
  std::optional<state::Lock> held(std::move(*acquired));
  const std::string self = "pid " + std::to_string(getpid());

  auto t0 = std::chrono::steady_clock::now();
  auto rep = nft::applyRuleset(compileExample("bastion"), o);
  auto waited = std::chrono::steady_clock::now() - t0;
  REQUIRE_FALSE(rep.has_value());
  CHECK(rep.error().code == ErrorCode::kBusy);
  CHECK(rep.error().message.find(self) != std::string::npos);
  CHECK(waits == 1);
  CHECK(holder.find(self) != std::string::npos);
  CHECK(waited >= std::chrono::milliseconds(400));
  CHECK(diffIn(r, ns).empty());  // nothing changed

  // From inside the namespace (the caller's own namespace, as under `ip netns exec`): the same lock.
  nft::ApplyOptions inner = o;
  inner.netns = std::nullopt;
  Expected<nft::ApplyReport> innerRep = makeError(ErrorCode::kInternal, "not run");
  REQUIRE(nft::runInNetns(ns.name(), [&]() -> Expected<void> {
            innerRep = nft::applyRuleset(compileExample("bastion"), inner);
            return {};
          }).has_value());
  REQUIRE_FALSE(innerRep.has_value());
  CHECK(innerRep.error().code == ErrorCode::kBusy);

  nft::FlushOptions fo;
  fo.netns = ns.name();
  fo.lock.timeout = std::chrono::milliseconds(300);
  auto flushed = nft::deleteTable(fo);
  REQUIRE_FALSE(flushed.has_value());
  CHECK(flushed.error().code == ErrorCode::kBusy);

  // The CLI: one "waiting for" line on stderr, then a clean failure (exit 1).
  auto cli = sh(kVpcfw + " apply " + kBastion + " --netns " + ns.name() + " --lock-timeout 0.5");
  CHECK(cli.status == 1);
  CHECK(cli.out.find("waiting for " + self) != std::string::npos);
  CHECK(cli.out.find("waiting for") == cli.out.rfind("waiting for"));
  CHECK(cli.out.find("locked by") != std::string::npos);
  auto cliInside = ns.exec(kVpcfw + " flush --lock-timeout 0.5");
  CHECK(cliInside.status == 1);
  CHECK(cliInside.out.find("waiting for " + self) != std::string::npos);
  CHECK(diffIn(r, ns).empty());

  // A waiting command proceeds as soon as the holder lets go.
  const std::string log = "/tmp/" + ns.name() + "-waiter.log";
  test::CommandResult late{};
  std::thread waiter(
      [&] { late = sh(kVpcfw + " apply " + kBastion + " --netns " + ns.name() + " --lock-timeout 20 >" + log); });
  auto logText = [&] {
    std::ifstream f(log);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  };
  // Release only once it is waiting (it said so), however slowly it started.
  for (int i = 0; i < 200 && logText().find("waiting for " + self) == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const std::string saidWaiting = logText();
  held.reset();
  waiter.join();
  const std::string all = logText();
  std::remove(log.c_str());
  INFO(all);
  CHECK(saidWaiting.find("waiting for " + self) != std::string::npos);
  CHECK(late.status == 0);
  CHECK(all.find("committed") != std::string::npos);
  CHECK(diffIn(compileExample("bastion"), ns).empty());
}

TEST_CASE("two concurrent applies of different configs leave exactly one of them") {
  Netns ns("race");
  int twoTierWins = 0, bastionWins = 0;
  for (int round = 0; round < 10; ++round) {
    CAPTURE(round);
    auto both =
        sh("( " + kVpcfw + " apply " + kTwoTier + " --netns " + ns.name() + " >/dev/null 2>&1; echo A=$? ) & ( " +
           kVpcfw + " apply " + kBastion + " --netns " + ns.name() + " >/dev/null 2>&1; echo B=$? ) & wait");
    INFO(both.out);
    CHECK(both.out.find("A=0") != std::string::npos);
    CHECK(both.out.find("B=0") != std::string::npos);
    const bool a = sh(kVpcfw + " diff " + kTwoTier + " --netns " + ns.name()).status == 0;
    const bool b = sh(kVpcfw + " diff " + kBastion + " --netns " + ns.name()).status == 0;
    CHECK(a != b);
    twoTierWins += a;
    bastionWins += b;
  }
  CHECK(twoTierWins + bastionWins == 10);
}

TEST_CASE("the lock spans read-back to commit: two applies with a wide window between them are serialised") {
  const auto twoTier = compileExample("two-tier");
  const auto bastion = compileExample("bastion");
  Netns ns("window");
  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    REQUIRE(nft::deleteTable(ns.name()).has_value());  // both have something to do
    Expected<nft::ApplyReport> a = makeError(ErrorCode::kInternal, "not run"), b = a;
    auto run = [&](const compile::Ruleset& r, Expected<nft::ApplyReport>& out) {
      nft::ApplyOptions o;
      o.netns = ns.name();
      // Hold the window between read-back and commit open: the other apply
      // would read the same state and commit over it if the lock did not cover this.
      o.beforeCommit = [] { std::this_thread::sleep_for(std::chrono::milliseconds(300)); };
      out = nft::applyRuleset(r, o);
    };
    const auto t0 = std::chrono::steady_clock::now();
    std::thread ta([&] { run(twoTier, a); }), tb([&] { run(bastion, b); });
    ta.join();
    tb.join();
    const auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE(a.has_value());
    REQUIRE(b.has_value());
    // The second read back only after the first committed: one batch each, no retry.
    CHECK(a->attempts == 1);
    CHECK(b->attempts == 1);
    CHECK(took >= std::chrono::milliseconds(600));
    const bool twoTierHolds = diffIn(twoTier, ns).empty(), bastionHolds = diffIn(bastion, ns).empty();
    CHECK(twoTierHolds != bastionHolds);
  }
}

TEST_CASE("a read-back that the ruleset changed under is read again before anything is computed from it") {
  const auto twoTier = compileExample("two-tier");
  const auto bastion = compileExample("bastion");
  SUBCASE("one change during the read-back") {
    for (const std::string change :
         {"add table ip vpcfwk_read_other", "insert rule inet vpcfw forward accept", "add chain inet vpcfw evil"}) {
      CAPTURE(change);
      Netns ns("read");
      applyIn(bastion, ns);
      int calls = 0;
      nft::ApplyOptions o;
      o.duringReadBack = [&] {
        if (calls++ == 0) nftCmd(ns, change);
      };
      auto rep = applyIn(twoTier, ns, o);
      CHECK(rep.reads == 2);     // the first read-back was thrown away...
      CHECK(rep.attempts == 1);  // ...so the batch was computed from a consistent one and accepted
      CHECK(diffIn(twoTier, ns).empty());
    }
  }
  SUBCASE("a ruleset that changes during every read-back: bounded, then kBusy") {
    Netns ns("readbusy");
    applyIn(bastion, ns);
    int calls = 0;
    nft::ApplyOptions o;
    o.netns = ns.name();
    o.duringReadBack = [&] { nftCmd(ns, "add table ip vpcfwk_read" + std::to_string(calls++)); };
    auto rep = nft::applyRuleset(twoTier, o);
    REQUIRE_FALSE(rep.has_value());
    CHECK(rep.error().code == ErrorCode::kBusy);
    CHECK(calls == 5);
    CHECK(diffIn(bastion, ns).empty());
  }
}
