// The incremental compiler: finds the ENIs whose inputs changed between two
// models (comparing by content, per kind), compiles those ENIs' own parts
// alone and patches them into the previous fabric rulesets; whatever it
// cannot attribute to ENIs falls back to compiling from scratch.
//
// Why the patch equals a fresh compile: a fabric's table is shared objects
// (whose content does not depend on the ENIs' groups), then member sets in
// first-reference order, and per-ENI chains in ENI order (detail::FabricLayout);
// every set's elements are sorted, so an ENI's elements keyed by its
// interface form one run. The patch is only tried when no input of the shared
// objects changed and every name is free of clashes (a clash makes names
// depend on creation order).
#include "vpcfw/compile/incremental.h"

#include <algorithm>
#include <map>
#include <optional>

#include "fabric.h"
#include "vpcfw/compile/compiler.h"

namespace vpcfw::compile {
namespace {

// ------------------------------------------------------------ the diff
// What changed between two models, as far as the compiler can tell apart;
// nullopt from diffModels: something it cannot (compile everything).
struct ModelDiff {
  std::vector<char> dirty;           // by instance: its ENI must be recompiled
  std::vector<char> membersChanged;  // by group: its member addresses changed
};

bool sameNaclRule(const model::NaclRule& a, const model::NaclRule& b) {
  return a.number == b.number && a.protocol == b.protocol && a.ports == b.ports && a.icmp == b.icmp &&
         a.cidr == b.cidr && a.action == b.action;
}

bool samePeer(const model::Peer& a, const model::Peer& b) {
  if (a.index() != b.index()) return false;
  if (auto* c = std::get_if<net::Cidr>(&a)) return *c == std::get<net::Cidr>(b);
  if (auto* g = std::get_if<model::GroupRef>(&a)) return g->group == std::get<model::GroupRef>(b).group;
  return std::get<model::PrefixListRef>(a).prefixList == std::get<model::PrefixListRef>(b).prefixList;
}

// Descriptions and source positions do not reach the ruleset.
bool sameSgRule(const model::SgRule& a, const model::SgRule& b) {
  return a.index == b.index && a.protocol == b.protocol && a.ports == b.ports && a.icmp == b.icmp &&
         samePeer(a.peer, b.peer);
}

template <class T, class Eq>
bool sameList(const std::vector<T>& a, const std::vector<T>& b, Eq eq) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), eq);
}

bool sameFlowLogCover(const model::FlowLog& a, const model::FlowLog& b) {
  return a.resourceKind == b.resourceKind && a.resource == b.resource;
}

bool samePlacement(const model::Placement& a, const model::Placement& b) {
  return a.kind == b.kind && a.host == b.host && a.interface == b.interface && a.routed == b.routed;
}

// An ENI's timeouts and allowance reach shared chains, sets and objects of
// its fabric: a change there compiles from scratch.
bool sameConnectionTracking(const model::Instance& a, const model::Instance& b) {
  const auto &x = a.connectionTracking, &y = b.connectionTracking;
  if (x.has_value() != y.has_value()) return false;
  return !x || (x->tcpEstablished == y->tcpEstablished && x->udpStream == y->udpStream && x->udp == y->udp &&
                x->maxTracked == y->maxTracked);
}

std::optional<ModelDiff> diffModels(const model::Model& a, const model::Model& b) {
  if (a.vpcs.size() != b.vpcs.size() || a.subnets.size() != b.subnets.size() || a.nacls.size() != b.nacls.size() ||
      a.groups.size() != b.groups.size() || a.prefixLists.size() != b.prefixLists.size() ||
      a.instances.size() != b.instances.size())
    return std::nullopt;
  for (std::size_t i = 0; i < a.vpcs.size(); ++i)
    if (a.vpcs[i].name != b.vpcs[i].name || a.vpcs[i].ipv6Cidr != b.vpcs[i].ipv6Cidr) return std::nullopt;
  for (std::size_t i = 0; i < a.subnets.size(); ++i) {
    const auto &x = a.subnets[i], &y = b.subnets[i];
    if (x.name != y.name || x.vpc != y.vpc || x.cidr != y.cidr || x.ipv6Cidr != y.ipv6Cidr || x.nacl != y.nacl)
      return std::nullopt;
  }
  for (std::size_t i = 0; i < a.nacls.size(); ++i) {
    const auto &x = a.nacls[i], &y = b.nacls[i];
    if (x.name != y.name || !sameList(x.ingress, y.ingress, sameNaclRule) ||
        !sameList(x.egress, y.egress, sameNaclRule))
      return std::nullopt;
  }
  // Which fabrics log for flow logs follows from what each flow log covers
  // (its other settings are the collector's); a change there touches every
  // ENI's drop chains of a fabric.
  if (!sameList(a.flowLogs, b.flowLogs, sameFlowLogCover)) return std::nullopt;
  std::vector<char> listChanged(a.prefixLists.size());
  for (std::size_t i = 0; i < a.prefixLists.size(); ++i)
    listChanged[i] = a.prefixLists[i].entries != b.prefixLists[i].entries;

  ModelDiff d;
  d.dirty.assign(b.instances.size(), 0);
  for (std::size_t i = 0; i < a.instances.size(); ++i) {
    const auto &x = a.instances[i], &y = b.instances[i];
    if (x.name != y.name || x.subnet != y.subnet || x.vpc != y.vpc || x.privateIp != y.privateIp ||
        x.secondaryIps != y.secondaryIps || x.ipv6Addresses != y.ipv6Addresses ||
        !samePlacement(x.placement, y.placement) || !sameConnectionTracking(x, y))
      return std::nullopt;
    d.dirty[i] = x.groups != y.groups;
  }
  // A group's rules reach the ENIs that carry it; its members (their
  // addresses are unchanged here) reach the ENIs whose groups reference it.
  std::vector<char> rulesChanged(b.groups.size());
  d.membersChanged.assign(b.groups.size(), 0);
  bool anyMembers = false;
  for (std::size_t g = 0; g < a.groups.size(); ++g) {
    const auto &x = a.groups[g], &y = b.groups[g];
    if (x.name != y.name || x.vpcName != y.vpcName || x.vpc != y.vpc) return std::nullopt;
    // Lists the config cache shared into both models are the same without a look.
    auto same = [](const model::SharedList<model::SgRule>& p, const model::SharedList<model::SgRule>& q) {
      return p.shares(q) || sameList(p.get(), q.get(), sameSgRule);
    };
    bool changed = !same(x.ingress, y.ingress) || !same(x.egress, y.egress);
    for (const auto* rules : {&y.ingress, &y.egress})
      for (const auto& r : *rules)
        if (auto* pl = std::get_if<model::PrefixListRef>(&r.peer); pl && listChanged[pl->prefixList]) changed = true;
    rulesChanged[g] = changed;
    d.membersChanged[g] = x.members != y.members;
    anyMembers = anyMembers || d.membersChanged[g];
  }
  if (anyMembers)
    for (std::size_t g = 0; g < b.groups.size(); ++g) {
      if (rulesChanged[g]) continue;
      for (const auto* rules : {&b.groups[g].ingress, &b.groups[g].egress})
        for (const auto& r : *rules)
          if (auto* ref = std::get_if<model::GroupRef>(&r.peer); ref && d.membersChanged[ref->group])
            rulesChanged[g] = 1;
    }
  for (std::size_t i = 0; i < b.instances.size(); ++i)
    for (auto g : b.instances[i].groups) d.dirty[i] = d.dirty[i] || rulesChanged[g];
  return d;
}

// The groups whose member sets a fabric has, in table order.
std::vector<std::size_t> memberOrder(const detail::FabricLayout& l) {
  std::vector<std::size_t> order;
  std::vector<std::size_t> seen;  // sorted
  for (const auto& e : l.enis)
    for (auto g : e.memberGroups) {
      auto it = std::lower_bound(seen.begin(), seen.end(), g);
      if (it != seen.end() && *it == g) continue;
      seen.insert(it, g);
      order.push_back(g);
    }
  return order;
}

// The run of an interface's elements in a sorted set whose key starts with
// the interface.
std::pair<std::size_t, std::size_t> eniRun(const std::vector<SetElement>& elems, const Value& ifn) {
  auto lo = std::partition_point(elems.begin(), elems.end(), [&](const SetElement& e) { return e.key[0] < ifn; });
  auto hi = std::partition_point(lo, elems.end(), [&](const SetElement& e) { return e.key[0] == ifn; });
  return {static_cast<std::size_t>(lo - elems.begin()), static_cast<std::size_t>(hi - elems.begin())};
}

bool keyedByInterface(const Set& s) {
  return !s.key.empty() && (s.key[0] == Field::kIifname || s.key[0] == Field::kOifname);
}

void sortUnique(std::vector<std::string>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

}  // namespace

struct IncrementalCompiler::State {
  struct Fabric {
    detail::FabricLayout layout;
    std::vector<std::size_t> members;  // memberOrder(layout)
    RulesetChanges changes;
  };
  std::shared_ptr<const model::Model> model;
  Placement placement;          // labPlacement(*model): what the diff compares decides it
  std::vector<Fabric> fabrics;  // parallel to rulesets_
};

IncrementalCompiler::IncrementalCompiler(CompileOptions options)
    : state_(std::make_unique<State>()), options_(options) {}
IncrementalCompiler::~IncrementalCompiler() = default;

void IncrementalCompiler::reset() {
  state_ = std::make_unique<State>();
  rulesets_.clear();
  stats_ = {};
}

const RulesetChanges& IncrementalCompiler::changes(std::string_view fabric) const {
  static const RulesetChanges unknown;
  auto it = std::lower_bound(rulesets_.begin(), rulesets_.end(), fabric,
                             [](const Ruleset& r, std::string_view f) { return r.fabric < f; });
  if (it == rulesets_.end() || it->fabric != fabric || state_->fabrics.empty()) return unknown;
  return state_->fabrics[static_cast<std::size_t>(it - rulesets_.begin())].changes;
}

namespace {

// One fabric's plan, made before anything is changed: either a ruleset
// compiled from scratch, or the partial compile to patch in.
struct FabricPlan {
  bool full = false;
  Ruleset ruleset;  // full: the new ruleset; else the dirty ENIs' partial compile
  detail::FabricLayout layout;
  std::vector<std::size_t> dirtyPositions;  // patch: positions in the old layout's ENIs
  std::vector<std::size_t> members;         // patch: the new member order
};

// Whether the names a patch adds are free in the table it patches (else a
// fresh compile would suffix one of them).
bool namesFree(const Table& t, const std::vector<std::string>& added) {
  if (added.empty()) return true;
  auto taken = [&](const std::string& n) {
    return n == "forward" || std::any_of(t.sets.begin(), t.sets.end(), [&](const Set& s) { return s.name == n; }) ||
           std::any_of(t.chains.begin(), t.chains.end(), [&](const Chain& c) { return c.name == n; });
  };
  return std::none_of(added.begin(), added.end(), taken);
}

}  // namespace

Expected<void> IncrementalCompiler::compile(std::shared_ptr<const model::Model> m) {
  if (!m) return makeError(ErrorCode::kInternal, "no model to compile");
  std::optional<ModelDiff> diff;
  if (state_->model && state_->fabrics.size() == rulesets_.size()) diff = diffModels(*state_->model, *m);

  if (!diff) {
    Placement p = labPlacement(*m);
    auto fabrics = detail::fabricsOf(*m, p);
    if (!fabrics) return unexpected(fabrics.error());
    std::vector<Ruleset> out;
    std::vector<State::Fabric> states;
    Stats stats;
    for (const auto& f : *fabrics) {
      State::Fabric s;
      auto r = detail::compileFabric(*m, p, f, nullptr, &s.layout, options_);
      if (!r) return unexpected(r.error());
      s.members = memberOrder(s.layout);
      stats.enisRecompiled += s.layout.enis.size();
      out.push_back(std::move(*r));
      states.push_back(std::move(s));
    }
    stats.fabricsFull = out.size();
    rulesets_ = std::move(out);
    state_->fabrics = std::move(states);
    state_->model = std::move(m);
    state_->placement = std::move(p);
    stats_ = stats;
    return {};
  }

  // The same instances with the same placements: the same fabrics, each with
  // the same ENIs in the same order.
  const Placement& p = state_->placement;
  std::vector<FabricPlan> plans(rulesets_.size());
  for (std::size_t k = 0; k < rulesets_.size(); ++k) {
    const Ruleset& old = rulesets_[k];
    const State::Fabric& st = state_->fabrics[k];
    FabricPlan& plan = plans[k];
    for (std::size_t j = 0; j < st.layout.enis.size(); ++j)
      if (diff->dirty[st.layout.enis[j].instance]) plan.dirtyPositions.push_back(j);
    if (plan.dirtyPositions.empty()) continue;
    bool patch = st.layout.patchable;
    if (patch) {
      auto r = detail::compileFabric(*m, p, old.fabric, &diff->dirty, &plan.layout, options_);
      if (!r) return unexpected(r.error());
      plan.ruleset = std::move(*r);
      const Table &pt = plan.ruleset.table, &ot = old.table;
      patch = plan.layout.patchable && plan.layout.prefixSets == st.layout.prefixSets &&
              plan.layout.prefixChains == st.layout.prefixChains &&
              plan.layout.enis.size() == plan.dirtyPositions.size() && pt.sets.size() >= st.layout.prefixSets &&
              ot.sets.size() >= st.layout.prefixSets;
      for (std::size_t s = 0; patch && s < st.layout.prefixSets; ++s)
        patch = pt.sets[s].name == ot.sets[s].name && pt.sets[s].key == ot.sets[s].key;
      for (std::size_t c = 0; patch && c < st.layout.prefixChains; ++c) patch = pt.chains[c].name == ot.chains[c].name;
      if (patch) {
        // Names the patch adds: chains an ENI did not have, member sets of
        // groups not referenced before.
        std::vector<std::string> added;
        std::vector<std::size_t> offsets(st.layout.enis.size() + 1, st.layout.prefixChains);
        for (std::size_t j = 0; j < st.layout.enis.size(); ++j) offsets[j + 1] = offsets[j] + st.layout.enis[j].chains;
        std::size_t pc = plan.layout.prefixChains;
        detail::FabricLayout next = st.layout;
        for (std::size_t d = 0; d < plan.dirtyPositions.size(); ++d) {
          const std::size_t j = plan.dirtyPositions[d];
          const auto& ne = plan.layout.enis[d];
          for (std::size_t c = pc; c < pc + ne.chains; ++c) {
            const std::string& n = pt.chains[c].name;
            if (std::none_of(ot.chains.begin() + offsets[j], ot.chains.begin() + offsets[j + 1],
                             [&](const Chain& x) { return x.name == n; }))
              added.push_back(n);
          }
          pc += ne.chains;
          next.enis[j] = ne;
        }
        plan.members = memberOrder(next);
        for (auto g : plan.members)
          if (std::find(st.members.begin(), st.members.end(), g) == st.members.end())
            for (const auto& s : detail::memberSets(*m, g)) added.push_back(s.name);
        patch = namesFree(ot, added);
      }
    }
    if (!patch) {
      plan.full = true;
      plan.layout = {};
      auto r = detail::compileFabric(*m, p, old.fabric, nullptr, &plan.layout, options_);
      if (!r) return unexpected(r.error());
      plan.ruleset = std::move(*r);
    }
  }

  // Nothing below fails: the patches are applied in place.
  Stats stats;
  stats.full = false;
  for (std::size_t k = 0; k < rulesets_.size(); ++k) {
    FabricPlan& plan = plans[k];
    State::Fabric& st = state_->fabrics[k];
    Table& t = rulesets_[k].table;
    RulesetChanges ch;
    ch.all = false;
    if (plan.full) {
      rulesets_[k] = std::move(plan.ruleset);
      st.layout = std::move(plan.layout);
      st.members = memberOrder(st.layout);
      ch.all = true;
      ++stats.fabricsFull;
      stats.enisRecompiled += st.layout.enis.size();
    } else if (!plan.dirtyPositions.empty()) {
      Table& pt = plan.ruleset.table;
      ++stats.fabricsPatched;
      stats.enisRecompiled += plan.dirtyPositions.size();
      // The shared sets: each dirty ENI's run of elements.
      for (std::size_t s = 0; s < st.layout.prefixSets; ++s) {
        if (!keyedByInterface(t.sets[s])) continue;
        auto& elems = t.sets[s].elements;
        const auto& fresh = pt.sets[s].elements;
        bool changed = false;
        for (const auto& e : plan.layout.enis) {
          const Value ifn{p.byInstance[e.instance]->ifname};
          auto [olo, ohi] = eniRun(elems, ifn);
          auto [nlo, nhi] = eniRun(fresh, ifn);
          if (std::equal(elems.begin() + olo, elems.begin() + ohi, fresh.begin() + nlo, fresh.begin() + nhi)) continue;
          changed = true;
          elems.erase(elems.begin() + olo, elems.begin() + ohi);
          elems.insert(elems.begin() + olo, fresh.begin() + nlo, fresh.begin() + nhi);
        }
        if (changed) ch.sets.push_back(t.sets[s].name);
      }
      // Each dirty ENI's chains, last first so that the earlier offsets hold.
      std::vector<std::size_t> offsets(st.layout.enis.size() + 1, st.layout.prefixChains);
      for (std::size_t j = 0; j < st.layout.enis.size(); ++j) offsets[j + 1] = offsets[j] + st.layout.enis[j].chains;
      std::vector<std::size_t> newOffsets(plan.layout.enis.size() + 1, plan.layout.prefixChains);
      for (std::size_t d = 0; d < plan.layout.enis.size(); ++d)
        newOffsets[d + 1] = newOffsets[d] + plan.layout.enis[d].chains;
      for (std::size_t d = plan.dirtyPositions.size(); d-- > 0;) {
        const std::size_t j = plan.dirtyPositions[d];
        auto ob = t.chains.begin() + static_cast<std::ptrdiff_t>(offsets[j]);
        auto oe = t.chains.begin() + static_cast<std::ptrdiff_t>(offsets[j + 1]);
        auto nb = pt.chains.begin() + static_cast<std::ptrdiff_t>(newOffsets[d]);
        auto ne = pt.chains.begin() + static_cast<std::ptrdiff_t>(newOffsets[d + 1]);
        for (auto c = nb; c != ne; ++c) {
          auto same = std::find_if(ob, oe, [&](const Chain& x) { return x.name == c->name; });
          if (same == oe || !(*same == *c)) ch.chains.push_back(c->name);
        }
        for (auto c = ob; c != oe; ++c)
          if (std::none_of(nb, ne, [&](const Chain& x) { return x.name == c->name; })) ch.chains.push_back(c->name);
        if (!std::equal(ob, oe, nb, ne, [](const Chain& x, const Chain& y) { return x.name == y.name; }))
          ch.table = true;
        if (oe - ob == ne - nb) {
          std::move(nb, ne, ob);
        } else {
          auto at = t.chains.erase(ob, oe);
          t.chains.insert(at, std::make_move_iterator(nb), std::make_move_iterator(ne));
        }
        st.layout.enis[j] = std::move(plan.layout.enis[d]);
      }
      // The member sets: refreshed where the members changed, rebuilt when
      // the referenced groups or their order changed.
      const auto first = t.sets.begin() + static_cast<std::ptrdiff_t>(st.layout.prefixSets);
      auto setsOf = [&](std::size_t g) -> std::ptrdiff_t { return m->vpcs[m->groups[g].vpc].ipv6Cidr ? 2 : 1; };
      if (plan.members == st.members) {
        auto at = first;
        for (auto g : plan.members) {
          if (!diff->membersChanged[g]) {
            at += setsOf(g);
            continue;
          }
          for (auto& s : detail::memberSets(*m, g)) {
            if (!(*at == s)) {
              ch.sets.push_back(s.name);
              *at = std::move(s);
            }
            ++at;
          }
        }
      } else {
        std::map<std::size_t, std::vector<Set>> kept;
        auto at = first;
        for (auto g : st.members) {
          const auto n = setsOf(g);
          for (auto s = at; s != at + n; ++s) ch.sets.push_back(s->name);
          if (!diff->membersChanged[g]) kept[g].assign(std::make_move_iterator(at), std::make_move_iterator(at + n));
          at += n;
        }
        std::vector<Set> section;
        for (auto g : plan.members) {
          auto it = kept.find(g);
          auto sets = it != kept.end() ? std::move(it->second) : detail::memberSets(*m, g);
          for (auto& s : sets) {
            ch.sets.push_back(s.name);
            section.push_back(std::move(s));
          }
        }
        t.sets.erase(first, t.sets.end());
        t.sets.insert(t.sets.end(), std::make_move_iterator(section.begin()), std::make_move_iterator(section.end()));
        ch.table = true;
      }
      st.members = std::move(plan.members);
    }
    sortUnique(ch.sets);
    sortUnique(ch.chains);
    st.changes = std::move(ch);
  }
  state_->model = std::move(m);
  stats_ = stats;
  return {};
}

}  // namespace vpcfw::compile
