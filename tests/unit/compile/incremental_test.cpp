// compile::IncrementalCompiler: after every edit of a random edit sequence its
// rulesets equal a fresh compileRulesets() exactly, and every set or chain
// that differs from the previous result is named in its changes (a missing
// name would leave a stale object in the kernel).
#include "vpcfw/compile/incremental.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "support/test_config.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/compile/render.h"

using namespace vpcfw;

namespace {

// A small config the edits work on, rendered to YAML for every step.
struct GenRule {
  int proto = 0;  // 0 tcp, 1 udp, 2 icmp, 3 all, 4 gre (47)
  int port = 22;
  int peer = 0;  // 0 cidr, 1 group, 2 prefix list
  int cidr = 0, group = 0;
  int description = 0;
};
struct GenGroup {
  std::vector<GenRule> in, out;
  bool egress = false;  // false: egress omitted (AWS's allow-all)
  int description = 0;
};
struct GenInstance {
  int id = 0;
  int subnet = 0;
  int mode = 0;  // 0 lab, 1 own interface on host ha, 2 own on hr, 3 routed on hr
  std::vector<int> groups;
};
struct GenFlowLog {
  int kind = 0;    // 0 the VPC, 1 subnet s<target>, 2 instance i<target>
  int target = 0;  // (an instance gone by then: the flow log is left out)
  int traffic = 0;
};
struct GenConfig {
  bool v6 = false;
  std::vector<GenFlowLog> flowLogs;
  std::vector<GenGroup> groups;
  std::vector<GenInstance> instances;
  std::vector<std::pair<int, int>> nacl[2];  // per acl: (port, allow?)
  int prefixEntries = 1;
  int nextId = 0;
};

const char* kCidrs[] = {"192.0.2.0/24", "198.51.100.0/25", "203.0.113.7/32", "0.0.0.0/0", "10.0.0.0/8",
                        "::/0",         "2001:db8:99::/48"};

std::string ruleText(const GenRule& r, const GenConfig& c, std::set<std::string>& seen) {
  std::string s;
  switch (r.proto) {
    case 0:
      s = fmt::format("protocol: tcp, ports: {}", r.port);
      break;
    case 1:
      s = fmt::format("protocol: udp, ports: {}-{}", r.port, r.port + 10);
      break;
    case 2:
      s = "protocol: icmp, icmp_type: 8";
      break;
    case 3:
      s = "protocol: all";
      break;
    default:
      s = "protocol: 47";
      break;
  }
  if (r.peer == 0) {
    const char* cidr = kCidrs[r.cidr % (c.v6 ? 7 : 5)];
    if (r.proto == 2 && std::string(cidr).find(':') != std::string::npos) cidr = "0.0.0.0/0";
    s += fmt::format(", cidr: \"{}\"", cidr);
  } else if (r.peer == 1) {
    s += fmt::format(", group: g{}", r.group % c.groups.size());
  } else {
    s += ", prefix_list: pl";
  }
  if (!seen.insert(s).second) return {};  // AWS rejects duplicate rules
  return fmt::format("{{{}, description: d{}}}", s, r.description);
}

// A flow log's resource key, or nothing when its instance is gone.
std::string flowLogResource(const GenConfig& c, const GenFlowLog& f) {
  if (f.kind == 0) return "vpc: v";
  if (f.kind == 1) return fmt::format("subnet: s{}", f.target % 2);
  if (std::none_of(c.instances.begin(), c.instances.end(), [&](const GenInstance& i) { return i.id == f.target; }))
    return {};
  return fmt::format("instance: i{}", f.target);
}

std::string render(const GenConfig& c) {
  std::string y = "limits: {profile: lab}\nvpcs: [{name: v, cidr: 10.0.0.0/16";
  if (c.v6) y += ", ipv6_cidr: \"2001:db8::/56\"";
  y += "}]\nsubnets:\n";
  for (int s = 0; s < 2; ++s) {
    y += fmt::format("  - {{name: s{}, vpc: v, cidr: 10.0.{}.0/20, network_acl: acl{}", s, s * 16, s);
    if (c.v6) y += fmt::format(", ipv6_cidr: \"2001:db8:0:{}::/64\"", s);
    y += "}\n";
  }
  y += "network_acls:\n";
  for (int a = 0; a < 2; ++a) {
    y += fmt::format("  - name: acl{}\n    vpc: v\n    ingress:\n", a);
    int n = 10;
    for (auto [port, allow] : c.nacl[a])
      y += fmt::format("      - {{rule: {}, protocol: tcp, ports: {}, cidr: 198.51.100.0/24, action: {}}}\n", n += 10,
                       port, allow ? "allow" : "deny");
    y += "      - {rule: 500, protocol: all, cidr: 0.0.0.0/0, action: allow}\n";
    y += "    egress: [{rule: 100, protocol: all, cidr: 0.0.0.0/0, action: allow}]\n";
  }
  y += "prefix_lists:\n  - {name: pl, entries: [";
  for (int e = 0; e < c.prefixEntries; ++e) y += fmt::format("{}192.0.{}.0/28", e ? ", " : "", 100 + e);
  y += "], max_entries: 20}\n";
  y += "security_groups:\n";
  for (std::size_t g = 0; g < c.groups.size(); ++g) {
    const auto& gr = c.groups[g];
    y += fmt::format("  - name: g{}\n    vpc: v\n    description: desc{}\n    ingress:\n", g, gr.description);
    std::set<std::string> seen;
    for (const auto& r : gr.in)
      if (auto t = ruleText(r, c, seen); !t.empty()) y += "      - " + t + "\n";
    if (gr.in.empty()) y.resize(y.size() - 1), y += " []\n";
    if (gr.egress) {
      y += "    egress:\n";
      seen.clear();
      for (const auto& r : gr.out)
        if (auto t = ruleText(r, c, seen); !t.empty()) y += "      - " + t + "\n";
      if (gr.out.empty()) y.resize(y.size() - 1), y += " []\n";
    }
  }
  y += "instances:\n";
  for (const auto& i : c.instances) {
    y += fmt::format("  - {{name: i{}, subnet: s{}, private_ip: 10.0.{}.{}", i.id, i.subnet,
                     i.subnet * 16 + 1 + i.id / 200, 10 + i.id % 200);
    if (c.v6) y += fmt::format(", ipv6_addresses: [\"2001:db8:0:{}::{:x}\"]", i.subnet, 16 + i.id);
    if (i.mode == 1) y += fmt::format(", host: ha, interface: e{}", i.id);
    if (i.mode == 2) y += fmt::format(", host: hr, interface: o{}", i.id);
    if (i.mode == 3) y += fmt::format(", host: hr, interface: r{}, routed: true", i.id);
    if (!i.groups.empty()) {
      std::set<int> gs(i.groups.begin(), i.groups.end());
      y += ", security_groups: [";
      bool first = true;
      for (int g : gs) y += fmt::format("{}g{}", first ? "" : ", ", g), first = false;
      y += "]";
    }
    y += "}\n";
  }
  if (!c.flowLogs.empty()) y += "flow_logs:\n";
  for (std::size_t k = 0; k < c.flowLogs.size(); ++k) {
    const auto& f = c.flowLogs[k];
    const char* traffic[] = {"ALL", "ACCEPT", "REJECT"};
    if (auto resource = flowLogResource(c, f); !resource.empty())
      y += fmt::format("  - {{name: fl{}, {}, traffic_type: {}, destination: stdout}}\n", k, resource,
                       traffic[f.traffic % 3]);
  }
  return y;
}

// What the flow logs of `c` cover, as written: their resources, in order.
std::string flowLogCover(const GenConfig& c) {
  std::string out;
  for (const auto& f : c.flowLogs)
    if (auto resource = flowLogResource(c, f); !resource.empty()) out += resource + "\n";
  return out;
}

struct Rng {
  std::mt19937 gen;
  int operator()(int n) { return std::uniform_int_distribution<int>(0, n - 1)(gen); }
};

GenRule randomRule(Rng& rng, const GenConfig& c) {
  GenRule r;
  r.proto = rng(5);
  r.port = 20 + rng(40);
  const int k = rng(10);
  r.peer = k < 6 ? 0 : k < 9 ? 1 : 2;
  r.cidr = rng(7);
  r.group = rng(static_cast<int>(c.groups.size()));
  r.description = rng(3);
  return r;
}

std::vector<int> randomGroups(Rng& rng, const GenConfig& c) {
  std::vector<int> gs;
  const int n = rng(4);  // 0: the VPC's default group
  for (int k = 0; k < n; ++k) gs.push_back(rng(static_cast<int>(c.groups.size())));
  return gs;
}

GenInstance randomInstance(Rng& rng, GenConfig& c, int modes) {
  GenInstance i;
  i.id = c.nextId++;
  i.subnet = rng(2);
  i.mode = rng(modes);
  i.groups = randomGroups(rng, c);
  return i;
}

GenConfig randomConfig(Rng& rng, int modes) {
  GenConfig c;
  c.v6 = rng(2) == 1;
  c.groups.resize(3 + rng(5));
  for (auto& g : c.groups) {
    g.egress = rng(2) == 1;
    for (int k = rng(6); k > 0; --k) g.in.push_back(randomRule(rng, c));
    for (int k = rng(3); k > 0; --k) g.out.push_back(randomRule(rng, c));
  }
  for (int k = 5 + rng(30); k > 0; --k) c.instances.push_back(randomInstance(rng, c, modes));
  for (auto& n : c.nacl)
    for (int k = rng(3); k > 0; --k) n.emplace_back(1000 + rng(100), rng(2));
  return c;
}

// Returns what the edit was, for the failure message.
std::string randomEdit(Rng& rng, GenConfig& c, int modes) {
  auto& g = c.groups[static_cast<std::size_t>(rng(static_cast<int>(c.groups.size())))];
  auto& rules = rng(3) == 0 && g.egress ? g.out : g.in;
  auto instance = [&]() -> GenInstance& {
    return c.instances[static_cast<std::size_t>(rng(static_cast<int>(c.instances.size())))];
  };
  switch (rng(16)) {
    case 0:
    case 1:
      rules.push_back(randomRule(rng, c));
      return "rule added";
    case 2:
      if (rules.empty()) return "nothing";
      rules.erase(rules.begin() + rng(static_cast<int>(rules.size())));
      return "rule removed";
    case 3:
    case 4:
      if (rules.empty()) return "nothing";
      rules[static_cast<std::size_t>(rng(static_cast<int>(rules.size())))].port = 20 + rng(40);
      return "rule port edited";
    case 5: {
      GenRule r = randomRule(rng, c);
      r.peer = 1;
      rules.insert(rules.begin() + rng(static_cast<int>(rules.size()) + 1), r);
      return "group reference added";
    }
    case 6:
      for (auto it = rules.begin(); it != rules.end(); ++it)
        if (it->peer == 1) {
          rules.erase(it);
          return "group reference removed";
        }
      return "nothing";
    case 7:
    case 8:
      instance().groups = randomGroups(rng, c);
      return "instance groups changed";
    case 9:
      g.description++;
      return "group description";
    case 10:
      if (rules.empty()) return "nothing";
      rules[static_cast<std::size_t>(rng(static_cast<int>(rules.size())))].description++;
      return "rule description";
    case 11: {
      auto& n = c.nacl[rng(2)];
      if (!n.empty() && rng(2))
        n.pop_back();
      else
        n.emplace_back(1000 + rng(100), rng(2));
      return "nacl edited";
    }
    case 12:
      c.instances.push_back(randomInstance(rng, c, modes));
      return "instance added";
    case 13:
      if (c.instances.size() > 1) c.instances.erase(c.instances.begin() + rng(static_cast<int>(c.instances.size())));
      return "instance removed";
    case 14:
      instance().subnet ^= 1;
      return "instance subnet changed";
    default:
      c.prefixEntries = 1 + rng(4);
      return "prefix list edited";
  }
}

const compile::Ruleset* findFabric(const std::vector<compile::Ruleset>& rs, const std::string& f) {
  for (const auto& r : rs)
    if (r.fabric == f) return &r;
  return nullptr;
}

template <class T>
std::vector<std::string> namesOf(const std::vector<T>& v) {
  std::vector<std::string> out;
  for (const auto& x : v) out.push_back(x.name);
  return out;
}

// Every object of `now` or `before` that is not the same in both is listed.
template <class T>
void checkListed(const std::vector<T>& before, const std::vector<T>& now, const std::vector<std::string>& listed,
                 const char* kind) {
  std::map<std::string, const T*> b, n;
  for (const auto& x : before) b[x.name] = &x;
  for (const auto& x : now) n[x.name] = &x;
  std::set<std::string> names;
  for (auto& [k, v] : b) names.insert(k);
  for (auto& [k, v] : n) names.insert(k);
  for (const auto& name : names) {
    const bool same = b.count(name) && n.count(name) && *b[name] == *n[name];
    if (!same)
      CHECK_MESSAGE(std::find(listed.begin(), listed.end(), name) != listed.end(), kind, " not listed: ", name);
  }
}

void checkChanges(const compile::IncrementalCompiler& inc, const std::vector<compile::Ruleset>& before) {
  for (const auto& r : inc.rulesets()) {
    const auto& ch = inc.changes(r.fabric);
    const auto* old = findFabric(before, r.fabric);
    if (!old) {
      CHECK(ch.all);
      continue;
    }
    if (ch.all) continue;
    checkListed(old->table.sets, r.table.sets, ch.sets, "set");
    checkListed(old->table.chains, r.table.chains, ch.chains, "chain");
    if (namesOf(old->table.sets) != namesOf(r.table.sets) || namesOf(old->table.chains) != namesOf(r.table.chains))
      CHECK_MESSAGE(ch.table, "objects added, removed or moved without table=true");
    CHECK(old->hostMode == r.hostMode);
  }
}

void checkEqualsFresh(const compile::IncrementalCompiler& inc, const model::Model& m) {
  auto fresh = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(fresh);
  REQUIRE(inc.rulesets().size() == fresh->size());
  for (std::size_t k = 0; k < fresh->size(); ++k) {
    const auto& a = inc.rulesets()[k];
    const auto& b = (*fresh)[k];
    CHECK(a.fabric == b.fabric);
    CHECK(compile::renderTable(a.table) == compile::renderTable(b.table));
    CHECK(a == b);
  }
}

std::shared_ptr<const model::Model> load(const GenConfig& c) {
  return std::make_shared<const model::Model>(test::loadOk(render(c)));
}

// A config made of `enis` host ENIs on one host, each with its own group of
// `rules` rules (one references the next ENI's group), as scripts/gen-config makes.
std::string benchConfig(int enis, int rules) {
  std::string y =
      "limits: {profile: lab}\nvpcs: [{name: v, cidr: 10.0.0.0/16}]\n"
      "subnets: [{name: s, vpc: v, cidr: 10.0.0.0/20}]\nsecurity_groups:\n";
  for (int e = 0; e < enis; ++e) {
    y += fmt::format("  - name: g{}\n    vpc: v\n    ingress:\n      - {{protocol: tcp, ports: 22, group: g{}}}\n", e,
                     (e + 1) % enis);
    for (int r = 1; r < rules; ++r)
      y += fmt::format("      - {{protocol: tcp, ports: {}, cidr: 192.{}.{}.0/24}}\n", 1000 + r, e % 200, r);
  }
  y += "instances:\n";
  for (int e = 0; e < enis; ++e)
    y += fmt::format(
        "  - {{name: i{}, subnet: s, private_ip: 10.0.{}.{}, security_groups: [g{}], host: h, "
        "interface: e{}}}\n",
        e, 1 + e / 200, 10 + e % 200, e, e);
  return y;
}

}  // namespace

TEST_CASE("incremental compile equals a fresh compile after every step of random edit sequences") {
  std::size_t steps = 0, patched = 0, unchangedFabrics = 0;
  for (unsigned seed = 1; seed <= 40; ++seed) {
    Rng rng{std::mt19937(seed)};
    const int modes = seed % 3 == 0 ? 4 : seed % 3 == 1 ? 2 : 1;  // lab; lab + host; with a routed host
    GenConfig c = randomConfig(rng, modes);
    compile::IncrementalCompiler inc;
    auto m = load(c);
    REQUIRE(inc.compile(m));
    CHECK(inc.stats().full);
    for (const auto& r : inc.rulesets()) CHECK(inc.changes(r.fabric).all);
    checkEqualsFresh(inc, *m);
    for (int step = 0; step < 40; ++step) {
      const std::string edit = randomEdit(rng, c, modes);
      INFO("seed ", seed, " step ", step, ": ", edit);
      const std::vector<compile::Ruleset> before = inc.rulesets();
      m = load(c);
      REQUIRE(inc.compile(m));
      checkEqualsFresh(inc, *m);
      checkChanges(inc, before);
      ++steps;
      if (!inc.stats().full && inc.stats().fabricsPatched > 0) ++patched;
      for (const auto& r : inc.rulesets())
        if (!inc.changes(r.fabric).all && inc.changes(r.fabric).sets.empty() && inc.changes(r.fabric).chains.empty())
          ++unchangedFabrics;
    }
  }
  MESSAGE(steps, " steps, ", patched, " patched in place, ", unchangedFabrics, " fabrics left as they were");
  // Most edits are group and membership edits: the patch path must be the common one.
  CHECK(patched * 3 > steps);
}

TEST_CASE("incremental compile with flow logs: a change of what they cover compiles from scratch, the rest patches") {
  std::size_t patchedWithLogs = 0, coverEdits = 0;
  for (unsigned seed = 1; seed <= 12; ++seed) {
    Rng rng{std::mt19937(1000 + seed)};
    const int modes = seed % 3 == 0 ? 4 : seed % 3 == 1 ? 2 : 1;
    GenConfig c = randomConfig(rng, modes);
    c.flowLogs.push_back({2, c.instances[0].id, 0});
    compile::IncrementalCompiler inc;
    auto m = load(c);
    REQUIRE(inc.compile(m));
    checkEqualsFresh(inc, *m);
    auto randomLog = [&] {
      GenFlowLog f;
      f.kind = rng(3);
      f.target =
          f.kind == 2 ? c.instances[static_cast<std::size_t>(rng(static_cast<int>(c.instances.size())))].id : rng(2);
      f.traffic = rng(3);
      return f;
    };
    for (int step = 0; step < 30; ++step) {
      std::string edit;
      bool trafficOnly = false;
      const std::string coverBefore = flowLogCover(c);
      if (rng(3) == 0) {
        const int what = c.flowLogs.empty() ? 0 : rng(4);
        if (what == 0) {
          c.flowLogs.push_back(randomLog());
          edit = "flow log added";
        } else {
          const auto k = static_cast<std::size_t>(rng(static_cast<int>(c.flowLogs.size())));
          if (what == 1) {
            c.flowLogs.erase(c.flowLogs.begin() + static_cast<std::ptrdiff_t>(k));
            edit = "flow log removed";
          } else if (what == 2) {
            const int traffic = c.flowLogs[k].traffic;
            c.flowLogs[k] = randomLog();
            c.flowLogs[k].traffic = traffic;
            edit = "flow log resource changed";
          } else {
            c.flowLogs[k].traffic = (c.flowLogs[k].traffic + 1) % 3;
            edit = "flow log traffic type changed", trafficOnly = true;
          }
        }
      } else {
        edit = randomEdit(rng, c, modes);
      }
      const bool cover = flowLogCover(c) != coverBefore;
      INFO("seed ", seed, " step ", step, ": ", edit);
      const std::vector<compile::Ruleset> before = inc.rulesets();
      m = load(c);
      REQUIRE(inc.compile(m));
      checkEqualsFresh(inc, *m);
      checkChanges(inc, before);
      if (cover) {
        ++coverEdits;
        CHECK(inc.stats().full);
      }
      if (trafficOnly) {
        // What a flow log records is the collector's: the rulesets stay.
        CHECK_FALSE(inc.stats().full);
        CHECK(inc.stats().enisRecompiled == 0);
      }
      if (!inc.stats().full && inc.stats().fabricsPatched > 0 && !c.flowLogs.empty()) ++patchedWithLogs;
    }
  }
  MESSAGE(coverEdits, " edits of what flow logs cover, ", patchedWithLogs, " patches with flow logs present");
  CHECK(coverEdits > 10);
  CHECK(patchedWithLogs > 10);
}

TEST_CASE("a one-rule edit among many host ENIs recompiles that ENI alone and names its shard's sets") {
  auto text = benchConfig(40, 5);
  compile::IncrementalCompiler inc;
  REQUIRE(inc.compile(std::make_shared<const model::Model>(test::loadOk(text))));
  CHECK(inc.stats().full);
  CHECK(inc.stats().enisRecompiled == 40);
  const auto before = inc.rulesets();
  const auto at = text.find("ports: 1003, cidr: 192.7.3.0/24");
  REQUIRE(at != std::string::npos);
  text.replace(at, 10, "ports: 1999");
  auto m = std::make_shared<const model::Model>(test::loadOk(text));
  REQUIRE(inc.compile(m));
  CHECK_FALSE(inc.stats().full);
  CHECK(inc.stats().enisRecompiled == 1);
  CHECK(inc.stats().fabricsPatched == 1);
  checkEqualsFresh(inc, *m);
  checkChanges(inc, before);
  const auto& ch = inc.changes("h");
  CHECK_FALSE(ch.all);
  CHECK_FALSE(ch.table);
  CHECK(ch.chains.empty());
  REQUIRE(ch.sets.size() == 1);
  CHECK(ch.sets[0].starts_with("sg_in_ports4_s"));
}

TEST_CASE("a description or an unchanged reload changes nothing") {
  auto text = benchConfig(20, 3);
  compile::IncrementalCompiler inc;
  REQUIRE(inc.compile(std::make_shared<const model::Model>(test::loadOk(text))));
  REQUIRE(inc.compile(std::make_shared<const model::Model>(test::loadOk(text))));
  CHECK(inc.stats().enisRecompiled == 0);
  const auto& ch = inc.changes("h");
  CHECK_FALSE(ch.all);
  CHECK(ch.sets.empty());
  CHECK(ch.chains.empty());
  CHECK(inc.changes("no-such-fabric").all);
}

TEST_CASE("joining a large referenced group refreshes its member set and the referencing ENIs") {
  // g0 references g1, which has more members than fit as elements: a member set.
  std::string head =
      "vpcs: [{name: v, cidr: 10.0.0.0/16}]\nsubnets: [{name: s, vpc: v, cidr: 10.0.0.0/20}]\n"
      "security_groups:\n  - {name: g0, vpc: v, ingress: [{protocol: tcp, ports: 22, group: g1}]}\n"
      "  - {name: g1, vpc: v}\ninstances:\n  - {name: a, subnet: s, private_ip: 10.0.0.10, "
      "security_groups: [g0]}\n";
  auto config = [&](int members) {
    std::string y = head;
    for (int k = 0; k < 12; ++k)
      y += fmt::format("  - {{name: m{}, subnet: s, private_ip: 10.0.1.{}, security_groups: [{}]}}\n", k, 10 + k,
                       k < members ? "g1" : "default");
    return y;
  };
  compile::IncrementalCompiler inc;
  REQUIRE(inc.compile(std::make_shared<const model::Model>(test::loadOk(config(10)))));
  const auto before = inc.rulesets();
  auto m = std::make_shared<const model::Model>(test::loadOk(config(11)));
  REQUIRE(inc.compile(m));
  CHECK_FALSE(inc.stats().full);
  checkEqualsFresh(inc, *m);
  checkChanges(inc, before);
  const auto& ch = inc.changes(inc.rulesets().front().fabric);
  CHECK(std::find(ch.sets.begin(), ch.sets.end(), "grp_v_g1_4") != ch.sets.end());
  // Down to few members: the reference becomes elements, the member set goes.
  const auto before2 = inc.rulesets();
  m = std::make_shared<const model::Model>(test::loadOk(config(3)));
  REQUIRE(inc.compile(m));
  checkEqualsFresh(inc, *m);
  checkChanges(inc, before2);
  CHECK(inc.changes(inc.rulesets().front().fabric).table);
}

TEST_CASE("reset forgets the previous result: the next compile is a full one") {
  auto text = benchConfig(5, 2);
  compile::IncrementalCompiler inc;
  auto m = std::make_shared<const model::Model>(test::loadOk(text));
  REQUIRE(inc.compile(m));
  inc.reset();
  CHECK(inc.rulesets().empty());
  REQUIRE(inc.compile(m));
  CHECK(inc.stats().full);
  CHECK(inc.changes("h").all);
  checkEqualsFresh(inc, *m);
}

TEST_CASE("a failed compile keeps the previous result and what it knows") {
  auto text = benchConfig(20, 3);
  compile::IncrementalCompiler inc;
  auto m = std::make_shared<const model::Model>(test::loadOk(text));
  REQUIRE(inc.compile(m));
  const auto before = inc.rulesets();
  // Two ENIs on one interface: validate rejects it, compileRulesets too.
  auto bad = std::make_shared<model::Model>(*m);
  bad->instances[1].placement.interface = bad->instances[0].placement.interface;
  CHECK_FALSE(inc.compile(bad));
  CHECK(inc.rulesets() == before);
  CHECK(inc.changes("h").all);
  // The next compile still starts from the last good one.
  const auto at = text.find("ports: 1002, cidr: 192.3.2.0/24");
  REQUIRE(at != std::string::npos);
  text.replace(at, 10, "ports: 1777");
  m = std::make_shared<const model::Model>(test::loadOk(text));
  REQUIRE(inc.compile(m));
  CHECK(inc.stats().enisRecompiled == 1);
  checkEqualsFresh(inc, *m);
  checkChanges(inc, before);
}
