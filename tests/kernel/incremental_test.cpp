// Applies from a record with a RulesetChanges hint (only the named sets and
// chains are linearized and compared): random sequences of IR edits on a
// generated ruleset leave the kernel exactly at the desired ruleset after
// every step, with batches in proportion to the edit, and the record equal
// to the whole desired ruleset; a hint that misses an added or removed
// object falls back to comparing everything.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <random>
#include <regex>
#include <set>

#include "netns_fixture.h"

namespace vpcfw::test {
namespace {

// scripts/gen-config ENIS RULES, every instance a host ENI (as scripts/bench does).
compile::Ruleset generated(int enis, int rules, int seed) {
  auto res = sh(fmt::format("python3 {}/scripts/gen-config {} {} --seed {}", VPCFW_SOURCE_DIR, enis, rules, seed));
  REQUIRE(res.status == 0);
  const std::string yaml = std::regex_replace(res.out, std::regex(R"(security_groups: \[g(\d+)\]\})"),
                                              "security_groups: [g$1], host: bench, interface: e$1}");
  auto m = loadOk(yaml);
  auto r = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(r.has_value());
  REQUIRE(r->size() == 1);
  return (*r)[0];
}

// Random edits of a ruleset that keep it valid for the kernel, each naming
// what it touched (as compile::IncrementalCompiler would).
class Editor {
 public:
  Editor(compile::Ruleset& r, std::uint32_t seed) : r_(r), rng_(seed) {}

  compile::RulesetChanges step() {
    compile::RulesetChanges ch;
    ch.all = false;
    switch (pick(9)) {
      case 0:
        removeElement(ch);
        break;
      case 1:
        readdElement(ch);
        break;
      case 2:
        editRule(ch);
        break;
      case 3:
        addChain(ch);
        break;
      case 4:
        removeChain(ch);
        break;
      case 5:
        addSet(ch);
        break;
      case 6:
        removeSet(ch);
        break;
      case 7:  // several edits in one apply
        for (int i = 0; i < 3; ++i) {
          auto more = step();
          ch.sets.insert(ch.sets.end(), more.sets.begin(), more.sets.end());
          ch.chains.insert(ch.chains.end(), more.chains.begin(), more.chains.end());
        }
        break;
      default:  // nothing changed, but some objects are named anyway: costs time only
        ch.sets.push_back(set().name);
        ch.chains.push_back(chain().name);
    }
    return ch;
  }

 private:
  std::size_t pick(std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_); }
  compile::Set& set() { return r_.table.sets[pick(r_.table.sets.size())]; }
  compile::Chain& chain() { return r_.table.chains[pick(r_.table.chains.size())]; }
  compile::Set* findSet(const std::string& n) {
    auto it = std::ranges::find(r_.table.sets, n, &compile::Set::name);
    return it == r_.table.sets.end() ? nullptr : &*it;
  }
  compile::Chain* findChain(const std::string& n) {
    auto it = std::ranges::find(r_.table.chains, n, &compile::Chain::name);
    return it == r_.table.chains.end() ? nullptr : &*it;
  }

  // Elements (map entries too) leave and come back; what comes back was in
  // the set, so an interval set stays disjoint.
  void removeElement(compile::RulesetChanges& ch) {
    auto& s = set();
    if (s.elements.empty()) return;
    auto i = pick(s.elements.size());
    removed_[s.name].push_back(s.elements[i]);
    s.elements.erase(s.elements.begin() + static_cast<std::ptrdiff_t>(i));
    ch.sets.push_back(s.name);
  }
  void readdElement(compile::RulesetChanges& ch) {
    for (auto& [name, elems] : removed_) {
      auto* s = findSet(name);
      if (elems.empty() || !s) continue;
      s->elements.push_back(elems.back());
      elems.pop_back();
      ch.sets.push_back(name);
      return;
    }
  }
  // A rule changes (its comment), is dropped or is duplicated.
  void editRule(compile::RulesetChanges& ch) {
    auto& c = chain();
    if (c.rules.empty()) return;
    auto i = pick(c.rules.size());
    switch (pick(3)) {
      case 0:
        c.rules[i].comment += " edited";
        break;
      case 1:
        c.rules.erase(c.rules.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      default:
        c.rules.insert(c.rules.begin() + static_cast<std::ptrdiff_t>(i), c.rules[i]);
    }
    ch.chains.push_back(c.name);
  }
  // A new chain (no jumps of its own, so no loop) and a jump to it.
  void addChain(compile::RulesetChanges& ch) {
    const std::string name = fmt::format("x{}", next_++);
    auto& from = chain();
    compile::Rule jump;
    jump.verdict = compile::Verdict::jump(name);
    jump.comment = "jump to " + name;
    from.rules.push_back(jump);
    compile::Rule body;
    body.counter = true;
    body.verdict = compile::Verdict::ret();
    body.comment = name;
    const std::string fromName = from.name;
    r_.table.chains.push_back(compile::Chain{name, std::nullopt, "filter", 0, compile::Verdict::accept(), {body}});
    added_[name] = fromName;
    ch.chains.push_back(name);
    ch.chains.push_back(fromName);
  }
  void removeChain(compile::RulesetChanges& ch) {
    if (added_.empty()) return;
    auto it = std::next(added_.begin(), static_cast<std::ptrdiff_t>(pick(added_.size())));
    auto [name, fromName] = *it;
    added_.erase(it);
    if (auto* from = findChain(fromName))
      std::erase_if(from->rules, [&](const compile::Rule& r) { return r.verdict.chain == name; });
    std::erase_if(r_.table.chains, [&](const compile::Chain& c) { return c.name == name; });
    ch.chains.push_back(name);
    ch.chains.push_back(fromName);
  }
  // A copy of a set under a new name and a copy of a rule that looks it up.
  void addSet(compile::RulesetChanges& ch) {
    for (int tries = 0; tries < 20; ++tries) {
      auto& c = chain();
      for (std::size_t i = 0; i < c.rules.size(); ++i)
        for (std::size_t m = 0; m < c.rules[i].matches.size(); ++m) {
          const auto& match = c.rules[i].matches[m];
          if (match.op != compile::Op::kInSet && match.op != compile::Op::kNotInSet) continue;
          auto* orig = findSet(match.set);
          if (!orig) continue;
          compile::Set copy = *orig;
          copy.name = fmt::format("y{}", next_++);
          compile::Rule rule = c.rules[i];
          rule.matches[m].set = copy.name;
          rule.comment += " via " + copy.name;
          c.rules.insert(c.rules.begin() + static_cast<std::ptrdiff_t>(i), rule);
          copies_[copy.name] = c.name;
          ch.sets.push_back(copy.name);
          ch.chains.push_back(c.name);
          r_.table.sets.push_back(std::move(copy));
          return;
        }
    }
  }
  void removeSet(compile::RulesetChanges& ch) {
    if (copies_.empty()) return;
    auto it = std::next(copies_.begin(), static_cast<std::ptrdiff_t>(pick(copies_.size())));
    auto [name, chainName] = *it;
    copies_.erase(it);
    if (auto* c = findChain(chainName))
      std::erase_if(c->rules, [&](const compile::Rule& r) {
        return std::ranges::any_of(r.matches, [&](const compile::Match& m) { return m.set == name; });
      });
    std::erase_if(r_.table.sets, [&](const compile::Set& s) { return s.name == name; });
    removed_.erase(name);
    ch.sets.push_back(name);
    ch.chains.push_back(chainName);
  }

  compile::Ruleset& r_;
  std::mt19937 rng_;
  int next_ = 0;
  std::map<std::string, std::vector<compile::SetElement>> removed_;
  std::map<std::string, std::string> added_, copies_;  // new chain -> chain jumping to it; set copy -> its rule's chain
};

// What a batch for `ch` may hold at most: a few messages per named object,
// its rules, its elements in 256-element messages.
std::size_t bound(const compile::Ruleset& r, const compile::RulesetChanges& ch) {
  const std::set<std::string> sets(ch.sets.begin(), ch.sets.end()), chains(ch.chains.begin(), ch.chains.end());
  std::size_t n = 0;
  for (const auto& s : r.table.sets)
    if (sets.contains(s.name)) n += 2 * (s.elements.size() / 128 + 1);
  for (const auto& c : r.table.chains)
    if (chains.contains(c.name)) n += c.rules.size();
  return n + 3 * (sets.size() + chains.size());
}

TEST_CASE("random edits applied with a record and a changes hint leave the kernel at the desired ruleset") {
  for (int seed = 1; seed <= 3; ++seed) {
    Netns ns("incr");
    auto r = generated(30, 6, seed);
    nft::TableRecord record;
    nft::ApplyOptions o;
    o.record = &record;
    applyIn(r, ns, o);
    REQUIRE(record.valid());
    Editor edit(r, static_cast<std::uint32_t>(seed));
    for (int step = 0; step < 40; ++step) {
      CAPTURE(seed);
      CAPTURE(step);
      const auto ch = edit.step();
      o.changes = &ch;
      auto rep = applyIn(r, ns, o);
      CHECK(rep.fromRecord);
      CHECK(rep.attempts <= 1);
      CHECK(rep.compared <= ch.sets.size() + ch.chains.size());
      CHECK(rep.messages <= bound(r, ch));
      CHECK(diffIn(r, ns).empty());
      // The record is the whole desired ruleset: comparing everything from it finds nothing to do.
      const compile::RulesetChanges all;
      o.changes = &all;
      CHECK(applyIn(r, ns, o).messages == 0);
    }
  }
}

TEST_CASE("a changes hint that misses an added or removed object falls back to comparing everything") {
  Netns ns("incr-stale");
  auto r = generated(10, 4, 7);
  nft::TableRecord record;
  nft::ApplyOptions o;
  o.record = &record;
  applyIn(r, ns, o);
  compile::RulesetChanges ch;
  ch.all = false;
  ch.chains.push_back(r.table.chains.front().name);  // named, but not what changed

  // A chain appears that the hint does not name.
  r.table.chains.push_back(compile::Chain{"extra", std::nullopt, "filter", 0, compile::Verdict::accept(), {}});
  o.changes = &ch;
  auto rep = applyIn(r, ns, o);
  CHECK(rep.changed);
  CHECK(rep.compared == r.table.sets.size() + r.table.chains.size());
  CHECK(diffIn(r, ns).empty());
  // A set goes away unnamed (it came with a hint that named it).
  r.table.chains.pop_back();
  ch.chains.push_back("extra");
  r.table.sets.push_back(compile::Set{"spare", {compile::Field::kIpSaddr}, false, false, {}, ""});
  ch.sets.push_back("spare");
  rep = applyIn(r, ns, o);
  CHECK(rep.compared == 2);  // the first chain and spare; extra is gone
  CHECK(diffIn(r, ns).empty());
  r.table.sets.pop_back();
  ch.sets.clear();
  rep = applyIn(r, ns, o);
  CHECK(rep.changed);
  CHECK(rep.compared == r.table.sets.size() + r.table.chains.size());
  CHECK(diffIn(r, ns).empty());
}

TEST_CASE("a failed apply with a hint invalidates the record, so the next one reads back") {
  Netns ns("incr-fail");
  auto r = generated(10, 4, 3);
  nft::TableRecord record;
  nft::ApplyOptions o;
  o.record = &record;
  applyIn(r, ns, o);
  compile::RulesetChanges ch;
  ch.all = false;
  // A jump to a chain that does not exist: the kernel refuses the batch.
  auto& c = r.table.chains.front();
  compile::Rule bad;
  bad.verdict = compile::Verdict::jump("nowhere");
  c.rules.push_back(bad);
  ch.chains.push_back(c.name);
  o.changes = &ch;
  o.netns = ns.name();
  auto rep = nft::applyRuleset(r, o);
  REQUIRE_FALSE(rep.has_value());
  CHECK(rep.error().message.find(c.name) != std::string::npos);
  CHECK_FALSE(record.valid());
  c.rules.pop_back();
  auto ok = applyIn(r, ns, o);
  CHECK_FALSE(ok.fromRecord);
  CHECK(diffIn(r, ns).empty());
}

}  // namespace
}  // namespace vpcfw::test
