// The daemon's kernel seams: applies computed from a TableRecord (no
// read-back) leave the kernel exactly as read-back applies do, a record the
// ruleset moved under is refused by the kernel and recomputed, and the
// monitor tells a transaction on vpcfw's table from one on another table.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>

#include "netns_fixture.h"
#include "vpcfw/compile/render.h"
#include "vpcfw/nft/monitor.h"

namespace vpcfw::test {
namespace {

std::vector<compile::Ruleset> examples() {
  std::vector<compile::Ruleset> out;
  for (const char* name : {"two-tier", "bastion", "default-vpc", "peering", "flow-logs"}) {
    auto m = test::loadExample(name);
    auto r = compile::compileRulesets(m, compile::labPlacement(m));
    REQUIRE(r.has_value());
    for (auto& x : *r) {
      x.fabric = "f";
      out.push_back(std::move(x));
    }
  }
  return out;
}

std::vector<nft::Transaction> drain(nft::Monitor& m) {
  std::vector<nft::Transaction> out;
  auto r = m.drain([&](const nft::Transaction& t) { out.push_back(t); });
  REQUIRE(r.has_value());
  CHECK(*r);
  return out;
}

TEST_CASE("applies from a record leave the kernel as read-back applies do, across rulesets of every example") {
  Netns ns("record");
  auto all = examples();
  nft::TableRecord record;
  CHECK_FALSE(record.valid());
  // Walk every ruleset into every other, with the record; after each step
  // a full read-back finds nothing to change.
  std::size_t fromRecord = 0;
  for (std::size_t i = 0; i < all.size() * 2; ++i) {
    const auto& r = all[(i * 3) % all.size()];
    nft::ApplyOptions o;
    o.record = &record;
    auto rep = applyIn(r, ns, o);
    CHECK(record.valid());
    if (rep.fromRecord) ++fromRecord;
    INFO("step " << i);
    CHECK(diffIn(r, ns).empty());
  }
  CHECK(fromRecord >= all.size() * 2 - 1);  // all but the first came from the record
}

TEST_CASE("a record the ruleset moved under is refused by the kernel and the apply reads back") {
  Netns ns("record-moved");
  auto all = examples();
  nft::TableRecord record;
  nft::ApplyOptions o;
  o.record = &record;
  applyIn(all[0], ns, o);
  REQUIRE(record.valid());
  // Someone changes our table and another one; the record does not know.
  REQUIRE(ns.exec("nft add table inet other").status == 0);
  REQUIRE(ns.exec("nft flush table inet vpcfw").status == 0);
  auto rep = applyIn(all[1], ns, o);
  CHECK_FALSE(rep.fromRecord);
  CHECK(rep.reads >= 1);
  CHECK(diffIn(all[1], ns).empty());
  CHECK(ns.exec("nft list table inet other").status == 0);
}

TEST_CASE("a table rewritten to an older NACL verdict cache generation is found out by an apply with the record") {
  Netns ns("record-cache");
  const auto r = examples()[0];
  nft::TableRecord record;
  nft::ApplyOptions o;
  o.record = &record;
  const std::uint32_t old = applyIn(r, ns, o).cacheGeneration;
  REQUIRE(old != 0);
  // The table is made anew (a new generation), then someone puts the same
  // rules back with the old generation, consistently: marks made under it
  // would be in force again.
  REQUIRE(ns.exec("nft delete table inet vpcfw").status == 0);
  record.invalidate();  // what the daemon does when its monitor sees someone else's commit
  const std::uint32_t fresh = applyIn(r, ns, o).cacheGeneration;
  REQUIRE(fresh != old);
  std::string script = compile::renderScript(r, old);
  const std::string open = "table inet vpcfw {\n";
  REQUIRE(script.find(open) != std::string::npos);
  script.replace(script.find(open), open.size(), open + "\tcomment \"" + std::string(nft::kOwnerMarker) + "\"\n");
  const std::string path = "/tmp/" + ns.name() + ".nft";
  std::ofstream(path) << script;
  REQUIRE(ns.exec("nft -f " + path).status == 0);
  std::remove(path.c_str());
  record.invalidate();
  auto st = nft::tableStatus(ns.name());
  REQUIRE(st.has_value());
  REQUIRE(st->cacheGeneration == old);
  // The rules are what the config gives: only the generation tells, and only
  // the record knows which one vpcfw left (the one-shot CLI keeps no state).
  CHECK(diffIn(r, ns).empty());
  auto rep = applyIn(r, ns, o);
  CHECK(rep.changed);
  CHECK(rep.cacheGeneration == rep.generation);
  CHECK(rep.cacheGeneration != old);
  st = nft::tableStatus(ns.name());
  REQUIRE(st.has_value());
  CHECK(st->cacheGeneration == rep.cacheGeneration);
}

TEST_CASE("the monitor reports our commits with the generation the apply reports, and tells tables apart") {
  Netns ns("monitor");
  auto all = examples();
  auto mon = nft::Monitor::open(ns.name());
  REQUIRE(mon.has_value());
  CHECK(drain(*mon).empty());
  auto rep = applyIn(all[0], ns);
  REQUIRE(rep.changed);
  auto ts = drain(*mon);
  REQUIRE(ts.size() == 1);
  CHECK(ts[0].touched);
  CHECK(ts[0].generation == rep.generation);

  // Another table: a transaction, not touching ours (the baseline above shows touches are seen).
  REQUIRE(ns.exec("nft add table inet other").status == 0);
  ts = drain(*mon);
  REQUIRE(ts.size() == 1);
  CHECK_FALSE(ts[0].touched);
  CHECK(ts[0].process == "nft");
  // A table of our name in another family is not ours either.
  REQUIRE(ns.exec("nft add table ip vpcfw").status == 0);
  ts = drain(*mon);
  REQUIRE(ts.size() == 1);
  CHECK_FALSE(ts[0].touched);

  // Each kind of change to our table is seen.
  for (const char* cmd :
       {"nft add rule inet vpcfw forward accept", "nft delete element inet vpcfw enis { eni-web1 }",
        "nft add chain inet vpcfw extra", "nft flush chain inet vpcfw forward", "nft delete table inet vpcfw"}) {
    INFO(cmd);
    auto res = ns.exec(cmd);
    INFO(res.out);
    REQUIRE(res.status == 0);
    ts = drain(*mon);
    REQUIRE(ts.size() == 1);
    CHECK(ts[0].touched);
    CHECK(ts[0].generation != rep.generation);
  }
}

TEST_CASE("after the monitor saw the table deleted, a repair from assumeAbsent reads nothing back") {
  Netns ns("record-absent");
  auto all = examples();
  auto mon = nft::Monitor::open(ns.name());
  REQUIRE(mon.has_value());
  nft::TableRecord record;
  nft::ApplyOptions o;
  o.record = &record;
  auto rep = applyIn(all[0], ns, o);
  auto gen = nft::rulesetGeneration(ns.name());
  REQUIRE(gen.has_value());
  CHECK(*gen == rep.generation);
  auto ts = drain(*mon);
  REQUIRE(ts.size() == 1);
  CHECK_FALSE(ts[0].tableGone);

  REQUIRE(ns.exec("nft flush ruleset").status == 0);
  ts = drain(*mon);
  REQUIRE(ts.size() == 1);
  CHECK(ts[0].touched);
  CHECK(ts[0].tableGone);
  record.assumeAbsent(ts[0].generation);
  rep = applyIn(all[0], ns, o);
  CHECK(rep.fromRecord);
  CHECK(rep.reads == 0);
  CHECK(diffIn(all[0], ns).empty());
  CHECK(nft::rulesetGeneration(ns.name()).value() == rep.generation);
  CHECK(drain(*mon).size() == 1);

  // Deleted and made again in one transaction: the table is there after it.
  REQUIRE(ns.exec("sh -c 'printf \"delete table inet vpcfw\\nadd table inet vpcfw\\n\" | nft -f -'").status == 0);
  ts = drain(*mon);
  REQUIRE(ts.size() == 1);
  CHECK(ts[0].touched);
  CHECK_FALSE(ts[0].tableGone);
  // A wrong assumption (the table exists) costs a refused batch and a
  // read-back, which finds the table foreign now: left alone.
  record.assumeAbsent(ts[0].generation - 1);
  o.netns = ns.name();
  auto refused = nft::applyRuleset(all[0], o);
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().code == ErrorCode::kNotOwned);
  CHECK(ns.exec("nft list table inet vpcfw").out.find("chain") == std::string::npos);
}

TEST_CASE("a monitor that left around its own commit learns from the generation whether anyone else committed") {
  Netns ns("record-quiet");
  auto all = examples();
  auto mon = nft::Monitor::open(ns.name());
  REQUIRE(mon.has_value());
  REQUIRE(mon->subscribe(false).has_value());
  auto rep = applyIn(all[0], ns);
  REQUIRE(mon->subscribe(true).has_value());
  CHECK(drain(*mon).empty());  // nothing announced to us
  CHECK(nft::rulesetGeneration(ns.name()).value() == rep.generation);
  // Someone commits while we are away: the generation says so.
  REQUIRE(mon->subscribe(false).has_value());
  rep = applyIn(all[1], ns);
  REQUIRE(ns.exec("nft add table inet other").status == 0);
  REQUIRE(mon->subscribe(true).has_value());
  CHECK(drain(*mon).empty());
  CHECK(nft::rulesetGeneration(ns.name()).value() != rep.generation);
  // Back in: announcements arrive again.
  REQUIRE(ns.exec("nft delete table inet other").status == 0);
  CHECK(drain(*mon).size() == 1);
}

TEST_CASE("the monitor keeps up with the echo of a big commit") {
  Netns ns("record-big");
  auto all = examples();
  // 150,000 elements, each of which the kernel announces (as many bytes as the reference config's commit).
  auto r = all[0];
  compile::Set big{"big", {compile::Field::kIpSaddr}, false, false, {}, ""};
  for (std::uint32_t i = 0; i < 150000; ++i)
    big.elements.push_back(compile::SetElement{
        {compile::AddressRange{net::IpAddress::v4(0x0a000000u + i), net::IpAddress::v4(0x0a000000u + i)}}, {}});
  r.table.sets.push_back(std::move(big));
  auto mon = nft::Monitor::open(ns.name());
  REQUIRE(mon.has_value());
  auto rep = applyIn(r, ns);
  std::vector<nft::Transaction> ts;
  auto complete = mon->drain([&](const nft::Transaction& t) { ts.push_back(t); });
  REQUIRE(complete.has_value());
  CHECK(*complete);
  REQUIRE(ts.size() == 1);
  CHECK(ts[0].generation == rep.generation);
}

}  // namespace
}  // namespace vpcfw::test
