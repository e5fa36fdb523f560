// The applier: read back vpcfw's table (consistently, against one ruleset
// generation), compare every part of it with the desired table, and commit
// the difference in one batch that carries that generation, under the
// fabric's lock.
#include <netinet/in.h>  // before linux/netfilter.h

#include "vpcfw/nft/applier.h"

#include <libnftnl/expr.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "netlink.h"
#include "nftnl_objects.h"
#include "vpcfw/nft/netns.h"

namespace vpcfw::nft {
namespace {

// Reading back stops after this many generation changes in a row, and so
// does committing: someone else keeps changing the ruleset.
constexpr int kMaxReads = 5;
constexpr int kMaxAttempts = 5;

// What the kernel holds of our table.
struct KernelSet {
  std::string signature;
  PackedElements elements;
  bool anonymous = false;  // bound to a rule (`ip saddr { ... }`); goes with it
};
struct KernelChain {
  std::string signature;
  std::vector<std::string> rules;  // signatures, in order
  bool binding = false;            // an anonymous chain bound to a rule (`jump { ... }`)
};
struct KernelObject {
  std::uint32_t type = 0;  // NFT_OBJECT_*
  std::string signature;   // objectSignature
  bool operator==(const KernelObject&) const = default;
};
struct KernelTable {
  bool exists = false;
  bool owned = false;
  std::uint32_t flags = 0;
  std::string signature;
  std::map<std::string, KernelSet> sets;
  std::map<std::string, KernelChain> chains;
  std::map<std::string, KernelObject> objects;
  std::set<std::string> flowtables;
  std::vector<std::string> unreadable;  // objects libnftnl could not parse: never "matches"
  std::vector<TableStatus::Counter> counters;
  std::uint32_t cacheGeneration = 0;  // the NACL verdict cache's, from a hit rule's comment (0: none)
};

std::string str(const char* s) { return s ? s : ""; }

const char* objectKind(std::uint32_t type) {
  switch (type) {
    case NFT_OBJECT_COUNTER:
      return "counter";
    case NFT_OBJECT_QUOTA:
      return "quota";
    case NFT_OBJECT_CT_HELPER:
      return "ct helper";
    case NFT_OBJECT_LIMIT:
      return "limit";
    case NFT_OBJECT_CONNLIMIT:
      return "connlimit";
    case NFT_OBJECT_TUNNEL:
      return "tunnel";
    case NFT_OBJECT_CT_TIMEOUT:
      return "ct timeout";
    case NFT_OBJECT_SECMARK:
      return "secmark";
    case NFT_OBJECT_CT_EXPECT:
      return "ct expectation";
    case NFT_OBJECT_SYNPROXY:
      return "synproxy";
    default:
      return "object";
  }
}

void collectCounters(nftnl_rule* r, const std::string& chain, std::vector<TableStatus::Counter>& out) {
  nftnl_expr_iter* it = nftnl_expr_iter_create(r);
  for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it))
    if (std::strcmp(nftnl_expr_get_str(e, NFTNL_EXPR_NAME), "counter") == 0)
      out.push_back(TableStatus::Counter{chain, ruleComment(r), nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS),
                                         nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES)});
  nftnl_expr_iter_destroy(it);
}

// One read of the table at `gen`; kBusy when the generation moved meanwhile.
// contents=false reads only the table itself (enough to delete it).
Expected<KernelTable> readTableAt(Socket& sock, const std::string& table, std::uint32_t gen, bool contents,
                                  const std::function<void()>& during) {
  KernelTable k;
  auto r = sock.dump(
      NFT_MSG_GETTABLE, gen, [](nlmsghdr*) {},
      [&](const nlmsghdr* nlh) {
        TablePtr t(nftnl_table_alloc());
        if (nftnl_table_nlmsg_parse(nlh, t.get()) != 0) {
          k.unreadable.push_back("a table");
          return;
        }
        if (nftnl_table_get_u32(t.get(), NFTNL_TABLE_FAMILY) != NFPROTO_INET ||
            table != str(nftnl_table_get_str(t.get(), NFTNL_TABLE_NAME)))
          return;
        k.exists = true;
        k.owned = hasOwnerMarker(t.get());
        k.flags = nftnl_table_is_set(t.get(), NFTNL_TABLE_FLAGS) ? nftnl_table_get_u32(t.get(), NFTNL_TABLE_FLAGS) : 0;
        k.signature = tableSignature(t.get());
      });
  if (!r) return unexpected(r.error());
  if (!k.exists || !contents) return k;
  if (during) during();
  r = sock.dump(
      NFT_MSG_GETCHAIN, gen,
      [&](nlmsghdr* nlh) {
        ChainPtr c(nftnl_chain_alloc());
        nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, table.c_str());
        nftnl_chain_nlmsg_build_payload(nlh, c.get());
      },
      [&](const nlmsghdr* nlh) {
        ChainPtr c(nftnl_chain_alloc());
        if (nftnl_chain_nlmsg_parse(nlh, c.get()) != 0) {
          k.unreadable.push_back("a chain");
          return;
        }
        if (table != str(nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE))) return;
        auto& kc = k.chains[str(nftnl_chain_get_str(c.get(), NFTNL_CHAIN_NAME))];
        kc.signature = chainSignature(c.get());
        kc.binding = nftnl_chain_is_set(c.get(), NFTNL_CHAIN_FLAGS) &&
                     (nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_FLAGS) & NFT_CHAIN_BINDING);
      });
  if (!r) return unexpected(r.error());
  r = sock.dump(
      NFT_MSG_GETRULE, gen,
      [&](nlmsghdr* nlh) {
        RulePtr rl(nftnl_rule_alloc());
        nftnl_rule_set_str(rl.get(), NFTNL_RULE_TABLE, table.c_str());
        nftnl_rule_nlmsg_build_payload(nlh, rl.get());
      },
      [&](const nlmsghdr* nlh) {
        RulePtr rl(nftnl_rule_alloc());
        if (nftnl_rule_nlmsg_parse(nlh, rl.get()) != 0) {
          k.unreadable.push_back("a rule (an expression libnftnl does not know)");
          return;
        }
        if (table != str(nftnl_rule_get_str(rl.get(), NFTNL_RULE_TABLE))) return;
        const std::string chain = str(nftnl_rule_get_str(rl.get(), NFTNL_RULE_CHAIN));
        k.chains[chain].rules.push_back(ruleSignature(rl.get()));
        // Untrusted like the rest: a wrong number only makes the desired
        // rules differ from these, and a difference there starts a new
        // generation.
        if (const std::string comment = ruleComment(rl.get()); comment.starts_with(compile::kVerdictCacheComment)) {
          std::uint32_t g = 0;
          const char* at = comment.data() + compile::kVerdictCacheComment.size();
          std::from_chars(at, comment.data() + comment.size(), g);
          k.cacheGeneration = g & compile::kVerdictCacheGenerationMask;
        }
        collectCounters(rl.get(), chain, k.counters);
      });
  if (!r) return unexpected(r.error());
  std::vector<std::string> setNames;
  r = sock.dump(
      NFT_MSG_GETSET, gen,
      [&](nlmsghdr* nlh) {
        SetPtr s(nftnl_set_alloc());
        nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
        nftnl_set_nlmsg_build_payload(nlh, s.get());
      },
      [&](const nlmsghdr* nlh) {
        SetPtr s(nftnl_set_alloc());
        if (nftnl_set_nlmsg_parse(nlh, s.get()) != 0) {
          k.unreadable.push_back("a set");
          return;
        }
        if (table != str(nftnl_set_get_str(s.get(), NFTNL_SET_TABLE))) return;
        std::string name = str(nftnl_set_get_str(s.get(), NFTNL_SET_NAME));
        auto& ks = k.sets[name];
        ks.signature = setSignature(s.get());
        ks.anonymous = nftnl_set_is_set(s.get(), NFTNL_SET_FLAGS) &&
                       (nftnl_set_get_u32(s.get(), NFTNL_SET_FLAGS) & NFT_SET_ANONYMOUS);
        setNames.push_back(name);
      });
  if (!r) return unexpected(r.error());
  for (const auto& name : setNames) {
    auto& ks = k.sets[name];
    std::vector<PackedElement> packed;
    r = sock.dump(
        NFT_MSG_GETSETELEM, gen,
        [&](nlmsghdr* nlh) {
          SetPtr s(nftnl_set_alloc());
          nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
          nftnl_set_set_str(s.get(), NFTNL_SET_NAME, name.c_str());
          nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
        },
        [&](const nlmsghdr* nlh) {
          SetPtr s(nftnl_set_alloc());
          if (nftnl_set_elems_nlmsg_parse(nlh, s.get()) != 0) {
            k.unreadable.push_back(fmt::format("elements of set {}", name));
            return;
          }
          nftnl_set_elems_iter* it = nftnl_set_elems_iter_create(s.get());
          for (auto* e = nftnl_set_elems_iter_next(it); e; e = nftnl_set_elems_iter_next(it))
            packed.push_back(pack(elementBytes(e)));
          nftnl_set_elems_iter_destroy(it);
        });
    if (!r) return unexpected(r.error());
    ks.elements = PackedElements(std::move(packed));
  }
  // Stateful objects (counters, quotas, limits, ct helpers/timeouts/expectations, synproxy, secmarks).
  r = sock.dump(
      NFT_MSG_GETOBJ, gen,
      [&](nlmsghdr* nlh) {
        ObjPtr o(nftnl_obj_alloc());
        nftnl_obj_set_str(o.get(), NFTNL_OBJ_TABLE, table.c_str());
        nftnl_obj_nlmsg_build_payload(nlh, o.get());
      },
      [&](const nlmsghdr* nlh) {
        ObjPtr o(nftnl_obj_alloc());
        if (nftnl_obj_nlmsg_parse(nlh, o.get()) != 0) {
          k.unreadable.push_back("a stateful object");
          return;
        }
        if (table != str(nftnl_obj_get_str(o.get(), NFTNL_OBJ_TABLE))) return;
        k.objects[str(nftnl_obj_get_str(o.get(), NFTNL_OBJ_NAME))] =
            KernelObject{nftnl_obj_get_u32(o.get(), NFTNL_OBJ_TYPE), objectSignature(o.get())};
      });
  if (!r) return unexpected(r.error());
  r = sock.dump(
      NFT_MSG_GETFLOWTABLE, gen,
      [&](nlmsghdr* nlh) {
        FlowtablePtr f(nftnl_flowtable_alloc());
        nftnl_flowtable_set_str(f.get(), NFTNL_FLOWTABLE_TABLE, table.c_str());
        nftnl_flowtable_nlmsg_build_payload(nlh, f.get());
      },
      [&](const nlmsghdr* nlh) {
        FlowtablePtr f(nftnl_flowtable_alloc());
        if (nftnl_flowtable_nlmsg_parse(nlh, f.get()) != 0) {
          k.unreadable.push_back("a flowtable");
          return;
        }
        if (table != str(nftnl_flowtable_get_str(f.get(), NFTNL_FLOWTABLE_TABLE))) return;
        k.flowtables.insert(str(nftnl_flowtable_get_str(f.get(), NFTNL_FLOWTABLE_NAME)));
      });
  if (!r) return unexpected(r.error());
  return k;
}

// A read-back that one generation spans: GETGEN before, every dump message
// stamped with it, GETGEN after; read again (bounded) when it moved.
struct Snapshot {
  KernelTable table;
  std::uint32_t generation = 0;
  int reads = 0;
};
Expected<Snapshot> readTable(Socket& sock, const std::string& table, bool contents = true,
                             const std::function<void()>& during = {}) {
  for (int i = 0; i < kMaxReads; ++i) {
    auto gen = sock.generation();
    if (!gen) return unexpected(gen.error());
    auto k = readTableAt(sock, table, *gen, contents, during);
    if (!k) {
      if (k.error().code == ErrorCode::kBusy) continue;
      return unexpected(k.error());
    }
    auto after = sock.generation();
    if (!after) return unexpected(after.error());
    if (*after != *gen) continue;
    return Snapshot{std::move(*k), *gen, i + 1};
  }
  return makeError(
      ErrorCode::kBusy,
      fmt::format("the ruleset changed during each of {} read-backs of table inet {}; someone keeps changing it",
                  kMaxReads, table));
}

Expected<state::Lock> lockFabric(const LockOptions& o) {
  // Called on the thread inside the target namespace: the lock is the
  // namespace's, however the caller named it.
  auto id = netnsIdentity(std::nullopt);
  if (!id) return unexpected(id.error());
  return state::Lock::acquire("netns", *id, o.timeout, o.waiting);
}

std::string notOwnedText(const char* what) {
  return fmt::format("{} (no '{}' comment): it is left alone; {} --takeover replaces it", kForeignTable, kOwnerMarker,
                     what);
}

// Batch builders ---------------------------------------------------------

void putTable(Batch& b, std::uint16_t type, const std::string& name, std::uint16_t flags, bool owned = false) {
  auto t = owned ? makeOwnedTable(name) : makeTable(name);
  nlmsghdr* nlh = b.message(type, flags, fmt::format("table inet {}", name));
  nftnl_table_nlmsg_build_payload(nlh, t.get());
  b.next();
}

void putSet(Batch& b, const LinearSet& s) {
  const char* name = nftnl_set_get_str(s.set.get(), NFTNL_SET_NAME);
  nlmsghdr* nlh = b.message(NFT_MSG_NEWSET, NLM_F_CREATE, fmt::format("set {}", name));
  nftnl_set_nlmsg_build_payload(nlh, s.set.get());
  b.next();
}

// Element messages, split so that no message outgrows its 64 KB attribute.
void putElements(Batch& b, std::uint16_t type, const std::string& table, const std::string& set, std::uint32_t setId,
                 const std::vector<ElementBytes>& elements, const std::string& what) {
  constexpr std::size_t kChunk = 256;
  for (std::size_t i = 0; i < elements.size(); i += kChunk) {
    SetPtr s(nftnl_set_alloc());
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
    nftnl_set_set_str(s.get(), NFTNL_SET_NAME, set.c_str());
    if (setId) nftnl_set_set_u32(s.get(), NFTNL_SET_ID, setId);
    std::vector<ElementBytes> part(
        elements.begin() + static_cast<std::ptrdiff_t>(i),
        elements.begin() + static_cast<std::ptrdiff_t>(std::min(elements.size(), i + kChunk)));
    addElements(s.get(), part, type == NFT_MSG_DELSETELEM);
    nlmsghdr* nlh = b.message(type, type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, what);
    nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
    b.next();
  }
}

void flushSet(Batch& b, const std::string& table, const std::string& set) {
  SetPtr s(nftnl_set_alloc());
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, set.c_str());
  nlmsghdr* nlh = b.message(NFT_MSG_DELSETELEM, 0, fmt::format("flush set {}", set));
  nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
  b.next();
}

void putChain(Batch& b, const LinearChain& c) {
  const char* name = nftnl_chain_get_str(c.chain.get(), NFTNL_CHAIN_NAME);
  nlmsghdr* nlh = b.message(NFT_MSG_NEWCHAIN, NLM_F_CREATE, fmt::format("chain {}", name));
  nftnl_chain_nlmsg_build_payload(nlh, c.chain.get());
  b.next();
}

void putRules(Batch& b, const LinearChain& c) {
  const char* chain = nftnl_chain_get_str(c.chain.get(), NFTNL_CHAIN_NAME);
  for (std::size_t i = 0; i < c.rules.size(); ++i) {
    nlmsghdr* nlh = b.message(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND,
                              fmt::format("rule {} of chain {} ({})", i + 1, chain, c.rules[i].comment));
    nftnl_rule_nlmsg_build_payload(nlh, c.rules[i].rule.get());
    b.next();
  }
}

void flushChain(Batch& b, const std::string& table, const std::string& chain) {
  RulePtr r(nftnl_rule_alloc());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, table.c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, chain.c_str());
  nlmsghdr* nlh = b.message(NFT_MSG_DELRULE, 0, fmt::format("flush chain {}", chain));
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
  b.next();
}

void deleteNamed(Batch& b, std::uint16_t type, const std::string& table, const std::string& name) {
  if (type == NFT_MSG_DELCHAIN) {
    ChainPtr c(nftnl_chain_alloc());
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, table.c_str());
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_NAME, name.c_str());
    nlmsghdr* nlh = b.message(type, 0, fmt::format("delete chain {}", name));
    nftnl_chain_nlmsg_build_payload(nlh, c.get());
  } else {
    SetPtr s(nftnl_set_alloc());
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
    nftnl_set_set_str(s.get(), NFTNL_SET_NAME, name.c_str());
    nlmsghdr* nlh = b.message(type, 0, fmt::format("delete set {}", name));
    nftnl_set_nlmsg_build_payload(nlh, s.get());
  }
  b.next();
}

void deleteObject(Batch& b, const std::string& table, const std::string& name, std::uint32_t type) {
  ObjPtr o(nftnl_obj_alloc());
  nftnl_obj_set_str(o.get(), NFTNL_OBJ_TABLE, table.c_str());
  nftnl_obj_set_str(o.get(), NFTNL_OBJ_NAME, name.c_str());
  nftnl_obj_set_u32(o.get(), NFTNL_OBJ_TYPE, type);
  nlmsghdr* nlh = b.message(NFT_MSG_DELOBJ, 0, fmt::format("delete {} {}", objectKind(type), name));
  nftnl_obj_nlmsg_build_payload(nlh, o.get());
  b.next();
}

void putObject(Batch& b, const LinearObject& o) {
  nlmsghdr* nlh = b.message(NFT_MSG_NEWOBJ, NLM_F_CREATE, fmt::format("{} {}", objectKind(o.type), o.name));
  nftnl_obj_nlmsg_build_payload(nlh, o.obj.get());
  b.next();
}

void deleteFlowtable(Batch& b, const std::string& table, const std::string& name) {
  FlowtablePtr f(nftnl_flowtable_alloc());
  nftnl_flowtable_set_str(f.get(), NFTNL_FLOWTABLE_TABLE, table.c_str());
  nftnl_flowtable_set_str(f.get(), NFTNL_FLOWTABLE_NAME, name.c_str());
  nlmsghdr* nlh = b.message(NFT_MSG_DELFLOWTABLE, 0, fmt::format("delete flowtable {}", name));
  nftnl_flowtable_nlmsg_build_payload(nlh, f.get());
  b.next();
}

void fullBatch(Batch& b, const LinearTable& d, const KernelTable& k, std::vector<std::string>& changes) {
  if (k.exists) {
    // Create-if-missing keeps DELTABLE from failing should the table vanish
    // meanwhile; the commit swaps the whole table at once, so no packet sees
    // an empty ruleset.
    putTable(b, NFT_MSG_NEWTABLE, d.name, NLM_F_CREATE);
    putTable(b, NFT_MSG_DELTABLE, d.name, 0);
  }
  // A fresh table: the kernel takes a table's userdata only when it creates it.
  putTable(b, NFT_MSG_NEWTABLE, d.name, NLM_F_CREATE, true);
  for (const auto& o : d.objects) putObject(b, o);  // before the rules that refer to them
  for (const auto& s : d.sets) putSet(b, s);
  for (const auto& c : d.chains) putChain(b, c);
  for (const auto& s : d.sets)
    putElements(b, NFT_MSG_NEWSETELEM, d.name, nftnl_set_get_str(s.set.get(), NFTNL_SET_NAME),
                nftnl_set_get_u32(s.set.get(), NFTNL_SET_ID), s.elements,
                fmt::format("elements of set {}", nftnl_set_get_str(s.set.get(), NFTNL_SET_NAME)));
  for (const auto& c : d.chains) putRules(b, c);
  const char* verb = !k.exists ? "created" : k.owned ? "replaced" : "took over (it had no vpcfw marker) and replaced";
  changes.push_back(fmt::format("{} table inet {}: {} sets, {} chains", verb, d.name, d.sets.size(), d.chains.size()));
}

// True when only a full replacement can turn `k` into `d`: the table's own
// attributes differ (dormant, another comment), something could not be read,
// anonymous sets or bound chains hang off some rule, or a set's or chain's
// type changed.
bool needsFullReplace(const LinearTable& d, const KernelTable& k) {
  if (k.signature != d.signature || !k.unreadable.empty()) return true;
  // An object is never changed in place (ct timeouts cannot be): one under a
  // desired name with other contents, or a dynamic set holding elements no
  // rule of vpcfw's adds, is rebuilt with the table.
  for (const auto& o : d.objects)
    if (auto it = k.objects.find(o.name);
        it != k.objects.end() && (it->second.type != o.type || it->second.signature != o.signature))
      return true;
  for (const auto& s : d.sets)
    if (auto it = k.sets.find(nftnl_set_get_str(s.set.get(), NFTNL_SET_NAME));
        it != k.sets.end() && !s.dynamicExpressions.empty() && !elementsMatch(s, it->second.elements))
      return true;
  for (const auto& [name, s] : k.sets)
    if (s.anonymous) return true;
  for (const auto& [name, c] : k.chains)
    if (c.binding) return true;
  for (const auto& s : d.sets)
    if (auto it = k.sets.find(nftnl_set_get_str(s.set.get(), NFTNL_SET_NAME));
        it != k.sets.end() && it->second.signature != s.signature)
      return true;
  for (const auto& c : d.chains)
    if (auto it = k.chains.find(nftnl_chain_get_str(c.chain.get(), NFTNL_CHAIN_NAME));
        it != k.chains.end() && it->second.signature != c.signature)
      return true;
  return false;
}

// Adds to `b` what turns `k` into `d` (needsFullReplace(d, k) is false).
void incrementalBatch(Batch& b, const LinearTable& d, const KernelTable& k, std::vector<std::string>& changes) {
  std::map<std::string, const LinearSet*> dsets;
  std::map<std::string, const LinearChain*> dchains;
  for (const auto& s : d.sets) dsets[nftnl_set_get_str(s.set.get(), NFTNL_SET_NAME)] = &s;
  for (const auto& c : d.chains) dchains[nftnl_chain_get_str(c.chain.get(), NFTNL_CHAIN_NAME)] = &c;

  struct ElementChange {
    std::string set;
    std::vector<ElementBytes> add, remove;
    bool flush = false;
  };
  std::vector<ElementChange> elementChanges;
  for (const auto& [name, s] : dsets) {
    auto it = k.sets.find(name);
    if (it == k.sets.end()) continue;
    const auto& have = it->second.elements;
    if (!s->dynamicExpressions.empty() || elementsMatch(*s, have)) continue;  // dynamic: packet state
    const auto want = packAll(s->elements);
    ElementChange ch{name, {}, {}, false};
    // rbtree sets (interval without concat) hold start/end pairs: rewrite them all.
    if ((s->flags & NFT_SET_INTERVAL) && !(s->flags & NFT_SET_CONCAT)) {
      ch.flush = true;
      ch.add = s->elements;
    } else {
      ch.add = missingFrom(want, have);
      ch.remove = missingFrom(have, want);
    }
    changes.push_back(
        fmt::format("set {}: +{} -{} elements", name, ch.add.size(), ch.flush ? have.size() : ch.remove.size()));
    elementChanges.push_back(std::move(ch));
  }
  std::vector<std::string> rewrite;  // existing chains whose rules change
  for (const auto& [name, c] : dchains) {
    auto it = k.chains.find(name);
    if (it == k.chains.end()) continue;
    std::vector<std::string> want;
    for (const auto& r : c->rules) want.push_back(r.signature);
    if (want != it->second.rules) {
      rewrite.push_back(name);
      changes.push_back(fmt::format("chain {}: {} rules rewritten", name, c->rules.size()));
    }
  }
  // 1. element removals (map entries may point at chains about to go)
  for (const auto& ch : elementChanges) {
    if (ch.flush)
      flushSet(b, d.name, ch.set);
    else if (!ch.remove.empty())
      putElements(b, NFT_MSG_DELSETELEM, d.name, ch.set, 0, ch.remove,
                  fmt::format("remove elements of set {}", ch.set));
  }
  // 2. rules of changed and vanishing chains
  for (const auto& name : rewrite) flushChain(b, d.name, name);
  for (const auto& [name, kc] : k.chains)
    if (!dchains.count(name)) flushChain(b, d.name, name);
  // 3. vanishing sets (their elements may jump to vanishing chains), chains,
  //    stateful objects and flowtables (rules referring to them are gone by now)
  for (const auto& [name, ks] : k.sets)
    if (!dsets.count(name)) {
      deleteNamed(b, NFT_MSG_DELSET, d.name, name);
      changes.push_back(fmt::format("set {}: deleted", name));
    }
  for (const auto& [name, kc] : k.chains)
    if (!dchains.count(name)) {
      deleteNamed(b, NFT_MSG_DELCHAIN, d.name, name);
      changes.push_back(fmt::format("chain {}: deleted", name));
    }
  std::set<std::string> dobjects;
  for (const auto& o : d.objects) dobjects.insert(o.name);
  for (const auto& [name, ko] : k.objects)
    if (!dobjects.count(name)) {
      deleteObject(b, d.name, name, ko.type);
      changes.push_back(fmt::format("{} {}: deleted", objectKind(ko.type), name));
    }
  for (const auto& name : k.flowtables) {
    deleteFlowtable(b, d.name, name);
    changes.push_back(fmt::format("flowtable {}: deleted", name));
  }
  // 4. new objects, sets, 5. new chains (objects before the rules that use them)
  for (const auto& o : d.objects)
    if (!k.objects.count(o.name)) {
      putObject(b, o);
      changes.push_back(fmt::format("{} {}: created", objectKind(o.type), o.name));
    }
  for (const auto& [name, s] : dsets)
    if (!k.sets.count(name)) {
      putSet(b, *s);
      changes.push_back(fmt::format("set {}: created with {} elements", name, s->elements.size()));
    }
  for (const auto& [name, c] : dchains)
    if (!k.chains.count(name)) {
      putChain(b, *c);
      changes.push_back(fmt::format("chain {}: created with {} rules", name, c->rules.size()));
    }
  // 6. element additions (new sets' too), 7. rules
  for (const auto& [name, s] : dsets)
    if (!k.sets.count(name))
      putElements(b, NFT_MSG_NEWSETELEM, d.name, name, nftnl_set_get_u32(s->set.get(), NFTNL_SET_ID), s->elements,
                  fmt::format("elements of set {}", name));
  for (const auto& ch : elementChanges)
    if (!ch.add.empty())
      putElements(b, NFT_MSG_NEWSETELEM, d.name, ch.set, 0, ch.add, fmt::format("add elements to set {}", ch.set));
  for (const auto& [name, c] : dchains)
    if (!k.chains.count(name) || std::find(rewrite.begin(), rewrite.end(), name) != rewrite.end()) putRules(b, *c);
}

std::string describeElement(const ElementBytes& e) {
  auto hexOf = [](const std::string& s) {
    std::string out;
    for (unsigned char c : s) out += fmt::format("{:02x}", c);
    return out;
  };
  std::string out = "key " + (e.key.empty() ? std::string("* (catch-all)") : hexOf(e.key));
  if (!e.keyEnd.empty()) out += "-" + hexOf(e.keyEnd);
  if (e.flags) out += fmt::format(" flags {}", e.flags);
  if (e.hasVerdict) out += fmt::format(" verdict {}{}", e.verdict, e.chain.empty() ? "" : " " + e.chain);
  if (!e.data.empty()) out += " data " + hexOf(e.data);
  if (e.timeout) out += fmt::format(" timeout {} ms", e.timeout);
  if (!e.userdata.empty()) out += " userdata " + hexOf(e.userdata);
  if (!e.expressions.empty()) out += " " + e.expressions;
  if (!e.objref.empty()) out += " object " + e.objref;
  return out;
}

std::vector<std::string> describeDiff(const LinearTable& d, const KernelTable& k, bool verbose) {
  std::vector<std::string> out;
  if (!k.exists) {
    out.push_back(fmt::format("table inet {}: missing", d.name));
    return out;
  }
  if (!k.owned) out.push_back(notOwnedText("vpcfw apply"));
  if (k.flags & NFT_TABLE_F_DORMANT)
    out.push_back(fmt::format("table inet {}: flags dormant: the table is switched off and filters nothing", d.name));
  else if (k.signature != d.signature) {
    out.push_back(fmt::format("table inet {}: its own attributes (flags, comment) differ", d.name));
    if (verbose) out.push_back("  kernel:  " + k.signature + "\n  desired: " + d.signature);
  }
  for (const auto& what : k.unreadable)
    out.push_back(fmt::format("{}: vpcfw cannot read it (so it cannot match)", what));
  std::set<std::string> dsets, dchains;
  for (const auto& s : d.sets) {
    std::string name = nftnl_set_get_str(s.set.get(), NFTNL_SET_NAME);
    dsets.insert(name);
    auto it = k.sets.find(name);
    if (it == k.sets.end()) {
      out.push_back(fmt::format("set {}: missing", name));
      continue;
    }
    if (it->second.signature != s.signature) {
      out.push_back(fmt::format("set {}: type, flags or parameters differ", name));
      if (verbose) out.push_back("  kernel:  " + it->second.signature + "\n  desired: " + s.signature);
    }
    const auto& have = it->second.elements;
    if (!s.dynamicExpressions.empty()) {
      if (!elementsMatch(s, have))
        out.push_back(fmt::format("set {}: holds elements that no rule of vpcfw's adds (another allowance?)", name));
      continue;
    }
    const auto want = packAll(s.elements);
    if (have != want) {
      const auto add = missingFrom(want, have), rem = missingFrom(have, want);
      out.push_back(fmt::format("set {}: {} elements to add, {} to remove", name, add.size(), rem.size()));
      if (verbose) {
        for (const auto& e : add) out.push_back("  missing: " + describeElement(e));
        for (const auto& e : rem) out.push_back("  extra:   " + describeElement(e));
      }
    }
  }
  for (const auto& [name, ks] : k.sets)
    if (!dsets.count(name))
      out.push_back(
          fmt::format("set {}: not in the config{}", name, ks.anonymous ? " (an anonymous set of some rule)" : ""));
  for (const auto& c : d.chains) {
    std::string name = nftnl_chain_get_str(c.chain.get(), NFTNL_CHAIN_NAME);
    dchains.insert(name);
    auto it = k.chains.find(name);
    if (it == k.chains.end()) {
      out.push_back(fmt::format("chain {}: missing", name));
      continue;
    }
    if (it->second.signature != c.signature) {
      out.push_back(fmt::format("chain {}: type, hook, priority, policy or flags differ", name));
      if (verbose) out.push_back("  kernel:  " + it->second.signature + "\n  desired: " + c.signature);
    }
    const auto& have = it->second.rules;
    for (std::size_t i = 0; i < std::max(have.size(), c.rules.size()); ++i) {
      if (i >= have.size())
        out.push_back(fmt::format("chain {}: rule {} missing ({})", name, i + 1, c.rules[i].comment));
      else if (i >= c.rules.size())
        out.push_back(fmt::format("chain {}: rule {} not in the config", name, i + 1));
      else if (have[i] != c.rules[i].signature) {
        out.push_back(fmt::format("chain {}: rule {} differs ({})", name, i + 1, c.rules[i].comment));
        if (verbose) out.push_back("  kernel:  " + have[i] + "\n  desired: " + c.rules[i].signature);
      }
    }
  }
  for (const auto& [name, kc] : k.chains)
    if (!dchains.count(name))
      out.push_back(fmt::format("chain {}: not in the config{}", name, kc.binding ? " (bound to a rule)" : ""));
  std::set<std::string> dobjects;
  for (const auto& o : d.objects) {
    dobjects.insert(o.name);
    auto it = k.objects.find(o.name);
    if (it == k.objects.end()) {
      out.push_back(fmt::format("{} {}: missing", objectKind(o.type), o.name));
    } else if (it->second.type != o.type || it->second.signature != o.signature) {
      out.push_back(fmt::format("{} {}: contents differ", objectKind(o.type), o.name));
      if (verbose) out.push_back("  kernel:  " + it->second.signature + "\n  desired: " + o.signature);
    }
  }
  for (const auto& [name, ko] : k.objects)
    if (!dobjects.count(name)) out.push_back(fmt::format("{} {}: not in the config", objectKind(ko.type), name));
  for (const auto& name : k.flowtables) out.push_back(fmt::format("flowtable {}: not in the config", name));
  return out;
}

std::string errorText(const std::vector<KernelError>& errors) {
  std::string msg = "the kernel rejected the ruleset; nothing was changed:";
  for (const auto& e : errors) msg += fmt::format("\n  {}: {}", e.what, std::strerror(e.error));
  return msg;
}

bool generationMoved(const std::vector<KernelError>& errors) {
  return std::any_of(errors.begin(), errors.end(), [](const KernelError& e) { return e.error == ERESTART; });
}

double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Sends one batch; true when the kernel refused it because the generation moved.
Expected<bool> sendOrCheck(Socket& sock, Batch& b, const ApplyOptions& o, ApplyReport& report) {
  report.messages = b.messages();
  if (b.messages() == 0) return false;  // the kernel already holds it: send nothing
  b.finish(!o.check);
  report.batchBytes = b.bytes();
  if (o.beforeCommit) o.beforeCommit();
  ++report.attempts;
  const auto t0 = std::chrono::steady_clock::now();
  auto errors = sock.send(b);
  report.commitMs = msSince(t0);
  if (!errors) return unexpected(errors.error());
  if (generationMoved(*errors)) return true;
  if (!errors->empty()) return makeError(ErrorCode::kKernel, errorText(*errors), errors->front().error);
  report.changed = !o.check;
  return false;
}

// The record's entry for what the kernel holds of `s` / `c` after a commit.
KernelSet recordOf(LinearSet&& s) {
  KernelSet ks;
  ks.signature = std::move(s.signature);
  ks.elements = packAll(s.elements);
  return ks;
}
KernelChain recordOf(LinearChain&& c) {
  KernelChain kc;
  kc.signature = std::move(c.signature);
  kc.rules.reserve(c.rules.size());
  for (auto& r : c.rules) kc.rules.push_back(std::move(r.signature));
  return kc;
}

// ApplyReport::previous from what the batch about to be sent replaces: the
// sets it changes (one `d` holds with other elements). An unchanged set is
// left out, so a caller learns nothing changed there at no cost.
void keepPrevious(const KernelTable& k, const LinearTable& d, const ApplyOptions& o, ApplyReport& report) {
  report.previous.clear();
  if (!k.exists || !k.owned || o.previousSets.empty()) return;
  for (const auto& name : o.previousSets) {
    auto it = k.sets.find(name);
    if (it == k.sets.end()) continue;
    const LinearSet* want = nullptr;
    for (const auto& st : d.sets)
      if (nftnl_set_get_str(st.set.get(), NFTNL_SET_NAME) == name) want = &st;
    if (!want || !want->dynamicExpressions.empty() || elementsMatch(*want, it->second.elements)) continue;
    auto& out = report.previous[name];
    out.reserve(it->second.elements.size());
    for (std::size_t i = 0; i < it->second.elements.size(); ++i) {
      ElementBytes e = unpack(it->second.elements[i]);
      out.push_back(ApplyReport::ElementKey{std::move(e.key), std::move(e.keyEnd)});
    }
  }
}

// What the kernel holds right after committing `d`: the same reduction a
// read-back makes of it (signatures are computed by the same functions).
// Takes the strings out of `d`, which is not used afterwards.
KernelTable recordOf(LinearTable&& d) {
  KernelTable k;
  k.exists = true;
  k.owned = true;
  k.signature = d.signature;
  k.cacheGeneration = d.cacheGeneration;
  for (auto& o : d.objects) k.objects.emplace(o.name, KernelObject{o.type, std::move(o.signature)});
  for (auto& s : d.sets) {
    std::string name = nftnl_set_get_str(s.set.get(), NFTNL_SET_NAME);
    k.sets.emplace(std::move(name), recordOf(std::move(s)));
  }
  for (auto& c : d.chains) {
    std::string name = nftnl_chain_get_str(c.chain.get(), NFTNL_CHAIN_NAME);
    k.chains.emplace(std::move(name), recordOf(std::move(c)));
  }
  return k;
}

}  // namespace

struct TableRecord::Data {
  bool valid = false;
  std::uint32_t generation = 0;
  KernelTable table;
  // The NACL verdict cache generation vpcfw's own last commit left, kept when
  // the record is invalidated: a table found with another one was rewritten
  // by someone else (maybe to an older generation, whose marks would come
  // back into force), so the next commit starts a new one.
  std::uint32_t ownCacheGeneration = 0;
};

namespace {

// ------------------------------------------- the NACL verdict cache's generation
// (docs/ruleset.md, "NACL verdict cache"). A flow's conntrack mark caches that
// its direction passed anti-spoofing and the NACLs under generation G. G is
// kept while a commit changes none of the objects those verdicts are made
// of, and becomes the generation of the commit itself whenever one does: the
// kernel's generation counter never repeats a value in a namespace, so no
// mark made under older rules ever matches again. Decided here, from what
// the batch really changes, rather than guessed from the config.

// The chains with cache hit rules, and every set and chain the verdicts they
// cache depend on: what such a chain's rules before its first cache store
// refer to (sets, maps, the chains maps and verdicts lead to), transitively.
struct CacheInputs {
  std::vector<std::string> chains;            // with hit rules
  std::unordered_set<std::string> sets, all;  // all: sets and chains
};
CacheInputs cacheInputsOf(const compile::Table& t) {
  using Step = compile::VerdictCache::Step;
  CacheInputs in;
  std::unordered_map<std::string_view, const compile::Chain*> chains;
  std::unordered_map<std::string_view, const compile::Set*> sets;
  for (const auto& c : t.chains) chains.emplace(c.name, &c);
  for (const auto& st : t.sets) sets.emplace(st.name, &st);
  std::vector<const compile::Chain*> todo;
  auto reach = [&](const std::string& name, bool chain) {
    if (!in.all.insert(name).second) return;
    if (chain) {
      if (auto it = chains.find(name); it != chains.end()) todo.push_back(it->second);
      return;
    }
    in.sets.insert(name);
    if (auto it = sets.find(name); it != sets.end())
      for (const auto& e : it->second->elements)
        if (e.verdict && !e.verdict->chain.empty()) {
          const std::string& target = e.verdict->chain;
          if (!in.all.contains(target)) {
            in.all.insert(target);
            if (auto c = chains.find(target); c != chains.end()) todo.push_back(c->second);
          }
        }
  };
  auto walk = [&](const compile::Chain& c, bool upToStore) {
    for (const auto& r : c.rules) {
      if (upToStore && r.cache && r.cache->step != Step::kHit) break;
      for (const auto& m : r.matches)
        if (!m.set.empty()) reach(m.set, false);
      if (!r.verdict.chain.empty()) reach(r.verdict.chain, true);
    }
  };
  for (const auto& c : t.chains)
    if (std::any_of(c.rules.begin(), c.rules.end(),
                    [](const compile::Rule& r) { return r.cache && r.cache->step == Step::kHit; })) {
      in.chains.push_back(c.name);
      in.all.insert(c.name);
      walk(c, true);
    }
  while (!todo.empty()) {
    const compile::Chain* c = todo.back();
    todo.pop_back();
    walk(*c, false);
  }
  return in;
}

// Whether turning `k` into `d` changes one of `in`'s objects (an object
// `d` does not hold is, for a partial linearization, unchanged).
bool cacheInputsChange(const LinearTable& d, const KernelTable& k, const CacheInputs& in) {
  for (const auto& st : d.sets) {
    const std::string name = nftnl_set_get_str(st.set.get(), NFTNL_SET_NAME);
    if (!in.sets.contains(name)) continue;
    auto it = k.sets.find(name);
    if (it == k.sets.end() || it->second.signature != st.signature || !elementsMatch(st, it->second.elements))
      return true;
  }
  for (const auto& c : d.chains) {
    const std::string name = nftnl_chain_get_str(c.chain.get(), NFTNL_CHAIN_NAME);
    if (!in.all.contains(name)) continue;
    auto it = k.chains.find(name);
    if (it == k.chains.end() || it->second.signature != c.signature || it->second.rules.size() != c.rules.size())
      return true;
    for (std::size_t i = 0; i < c.rules.size(); ++i)
      if (it->second.rules[i] != c.rules[i].signature) return true;
  }
  return false;
}

// The cache generation of a commit made on top of generation `computedAt`.
std::uint32_t cacheGenerationOf(std::uint32_t computedAt) {
  const std::uint32_t g = (computedAt + 1) & compile::kVerdictCacheGenerationMask;
  return g == 0 ? 1 : g;
}

// `d` with its cache chains' rules at generation g (linearized again when
// they are not; `add`: also when `d`, a partial linearization, lacks them).
void retarget(LinearTable& d, const compile::Table& t, const CacheInputs& in, std::uint32_t g, bool add) {
  g &= compile::kVerdictCacheGenerationMask;
  if (in.chains.empty()) return;
  LinearizeOnly only;
  for (const auto& name : in.chains) {
    const bool have = std::any_of(d.chains.begin(), d.chains.end(), [&](const LinearChain& c) {
      return name == nftnl_chain_get_str(c.chain.get(), NFTNL_CHAIN_NAME);
    });
    if ((have && d.cacheGeneration != g) || (!have && add)) only.chains.insert(name);
  }
  d.cacheGeneration = g;
  if (only.chains.empty()) return;
  LinearTable fresh = linearize(t, &only, g);
  for (auto& c : fresh.chains) {
    const std::string name = nftnl_chain_get_str(c.chain.get(), NFTNL_CHAIN_NAME);
    auto it = std::find_if(d.chains.begin(), d.chains.end(), [&](const LinearChain& x) {
      return name == nftnl_chain_get_str(x.chain.get(), NFTNL_CHAIN_NAME);
    });
    if (it != d.chains.end())
      *it = std::move(c);
    else
      d.chains.push_back(std::move(c));
  }
}

// Sets `d`'s cache generation for a commit from `k` on top of generation
// `computedAt`: k's while the cache's inputs stay as they are, the commit's
// when they change, when the table is made anew (`full`), or when k's is
// not the one vpcfw's own last commit left (`own`, 0: unknown, as for the
// one-shot CLI, which keeps no state: docs/ruleset.md says what that leaves).
void chooseCacheGeneration(LinearTable& d, const compile::Table& t, const CacheInputs& in, const KernelTable& k,
                           std::uint32_t computedAt, bool full, std::uint32_t own) {
  if (in.chains.empty()) return;
  // Only the comparison needs the cache chains at k's generation.
  if (!full && k.cacheGeneration != 0 && (own == 0 || k.cacheGeneration == own)) {
    retarget(d, t, in, k.cacheGeneration, false);
    if (!cacheInputsChange(d, k, in)) return;
  }
  retarget(d, t, in, cacheGenerationOf(computedAt), false);
}

// The generation an apply leaves the ruleset at.
std::uint32_t generationAfter(const ApplyReport& report, std::uint32_t computedAt) {
  const std::uint32_t g = report.changed ? computedAt + 1 : computedAt;
  return g == 0 ? 1 : g;  // the kernel skips 0
}

// An apply from the record and a RulesetChanges hint (!changes.all): only
// the named sets and chains are linearized and compared with the record;
// every other object is, by the hint's contract, what the record says. The
// hint is trusted (it cannot be checked without the work it saves), but a
// hint that misses an added or removed object is caught by counting: the
// record's objects, less the named ones it has, plus the named ones desired
// has, must be the desired table's. Returns false when the caller must take
// the full path (the hint or the record cannot serve, or the kernel refused
// the batch); the record is then invalid if a batch was sent.
bool applyChanges(Socket& sock, const compile::Ruleset& desired, const compile::RulesetChanges& changes,
                  TableRecord::Data& rec, const ApplyOptions& o, ApplyReport& report) {
  const KernelTable& r = rec.table;
  if (!r.exists || !r.owned || !r.unreadable.empty() || !r.flowtables.empty()) return false;
  auto t0 = std::chrono::steady_clock::now();
  LinearizeOnly only;
  only.sets.insert(changes.sets.begin(), changes.sets.end());
  only.chains.insert(changes.chains.begin(), changes.chains.end());
  LinearTable d = linearize(desired.table, &only, r.cacheGeneration);
  // Objects are not in the hint: the record must hold exactly the desired ones.
  if (r.objects.size() != d.objects.size()) return false;
  for (const auto& obj : d.objects)
    if (auto it = r.objects.find(obj.name);
        it == r.objects.end() || it->second != KernelObject{obj.type, obj.signature})
      return false;
  // A change to what the cache's verdicts depend on: the cache chains too,
  // at the commit's generation.
  const CacheInputs inputs = cacheInputsOf(desired.table);
  if (!inputs.chains.empty() && (r.cacheGeneration == 0 || cacheInputsChange(d, r, inputs))) {
    retarget(d, desired.table, inputs, cacheGenerationOf(rec.generation), true);
    only.chains.insert(inputs.chains.begin(), inputs.chains.end());
  }
  report.linearizeMs = msSince(t0);
  report.compared = d.sets.size() + d.chains.size();
  if (d.signature != r.signature) return false;

  t0 = std::chrono::steady_clock::now();
  // The record's part the hint names, as a table of its own for the diff.
  KernelTable k;
  k.exists = true;
  k.owned = true;
  k.signature = r.signature;
  k.objects = r.objects;
  std::size_t sets = r.sets.size(), chains = r.chains.size();
  for (const auto& name : only.sets)
    if (auto it = r.sets.find(name); it != r.sets.end()) {
      if (it->second.anonymous) return false;
      k.sets.emplace(name, it->second);
      --sets;
    }
  for (const auto& name : only.chains)
    if (auto it = r.chains.find(name); it != r.chains.end()) {
      if (it->second.binding) return false;
      k.chains.emplace(name, it->second);
      --chains;
    }
  if (sets + d.sets.size() != desired.table.sets.size() || chains + d.chains.size() != desired.table.chains.size())
    return false;  // a stale hint: some added or removed object is not named
  if (needsFullReplace(d, k)) return false;
  Batch b(rec.generation);
  incrementalBatch(b, d, k, report.changes);
  report.buildMs = msSince(t0);
  keepPrevious(r, d, o, report);
  auto moved = sendOrCheck(sock, b, o, report);
  if (!moved || *moved) {
    rec.valid = false;
    report.changes.clear();
    report.changed = false;
    report.messages = 0;
    report.batchBytes = 0;
    return false;
  }
  report.fromRecord = true;
  report.generation = generationAfter(report, rec.generation);
  rec.generation = report.generation;
  for (const auto& name : only.sets) rec.table.sets.erase(name);
  for (const auto& name : only.chains) rec.table.chains.erase(name);
  rec.table.cacheGeneration = d.cacheGeneration;
  report.cacheGeneration = inputs.chains.empty() ? 0 : d.cacheGeneration;
  rec.ownCacheGeneration = report.cacheGeneration;
  for (auto& s : d.sets) {
    std::string name = nftnl_set_get_str(s.set.get(), NFTNL_SET_NAME);
    rec.table.sets.emplace(std::move(name), recordOf(std::move(s)));
  }
  for (auto& c : d.chains) {
    std::string name = nftnl_chain_get_str(c.chain.get(), NFTNL_CHAIN_NAME);
    rec.table.chains.emplace(std::move(name), recordOf(std::move(c)));
  }
  return true;
}

}  // namespace
TableRecord::TableRecord() : d_(std::make_unique<Data>()) {}
TableRecord::~TableRecord() = default;
TableRecord::TableRecord(TableRecord&&) noexcept = default;
TableRecord& TableRecord::operator=(TableRecord&&) noexcept = default;
bool TableRecord::valid() const { return d_->valid; }
void TableRecord::invalidate() {
  d_->valid = false;
  d_->table = KernelTable{};
}
std::uint32_t TableRecord::generation() const { return d_->generation; }
void TableRecord::advance(std::uint32_t generation) { d_->generation = generation; }
void TableRecord::assumeAbsent(std::uint32_t generation) {
  d_->table = KernelTable{};
  d_->generation = generation;
  d_->valid = true;
}

Expected<ApplyReport> applyRuleset(const compile::Ruleset& desired, const ApplyOptions& options) {
  ApplyReport report;
  TableRecord::Data* rec = options.record ? &options.record->data() : nullptr;
  auto done = runInNetns(options.netns, [&]() -> Expected<void> {
    auto lock = lockFabric(LockOptions{options.lockTimeout, options.lockWaiting});
    if (!lock) return unexpected(lock.error());
    auto sock = Socket::open();
    if (!sock) return unexpected(sock.error());
    if (rec && rec->valid && !options.fullReplace && !options.check && options.changes && !options.changes->all) {
      if (applyChanges(*sock, desired, *options.changes, *rec, options, report)) return {};
    }
    auto t0 = std::chrono::steady_clock::now();
    LinearTable d = linearize(desired.table);
    const CacheInputs inputs = cacheInputsOf(desired.table);
    report.linearizeMs = msSince(t0);
    report.compared = d.sets.size() + d.chains.size();
    auto remember = [&](std::uint32_t computedAt) {
      report.generation = generationAfter(report, computedAt);
      report.cacheGeneration = inputs.chains.empty() ? 0 : d.cacheGeneration;
      if (!rec) return;
      if (!options.check) rec->ownCacheGeneration = report.cacheGeneration;
      if (options.check) {
        rec->valid = false;
        return;
      }
      rec->table = recordOf(std::move(d));
      rec->generation = report.generation;
      rec->valid = true;
    };
    if (rec && rec->valid && !options.fullReplace && !options.check) {
      // The daemon's record stands in for the read-back. A refused batch
      // (the generation moved: someone else committed) or a kernel error
      // (the record may be wrong) falls back to reading the table.
      t0 = std::chrono::steady_clock::now();
      Batch b(rec->generation);
      chooseCacheGeneration(d, desired.table, inputs, rec->table, rec->generation, needsFullReplace(d, rec->table),
                            rec->ownCacheGeneration);
      if (needsFullReplace(d, rec->table))
        fullBatch(b, d, rec->table, report.changes);
      else
        incrementalBatch(b, d, rec->table, report.changes);
      report.buildMs = msSince(t0);
      keepPrevious(rec->table, d, options, report);
      auto moved = sendOrCheck(*sock, b, options, report);
      if (moved && !*moved) {
        report.fromRecord = true;
        remember(rec->generation);
        return {};
      }
      rec->valid = false;
      report.changes.clear();
      report.changed = false;
    }
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      t0 = std::chrono::steady_clock::now();
      auto snap = readTable(*sock, d.name, true, options.duringReadBack);
      if (!snap) return unexpected(snap.error());
      report.reads += static_cast<std::size_t>(snap->reads);
      const KernelTable& k = snap->table;
      report.readBackMs = msSince(t0);
      if (k.exists && !k.owned && !options.takeover)
        return makeError(ErrorCode::kNotOwned, notOwnedText("vpcfw apply"));
      t0 = std::chrono::steady_clock::now();
      report.changes.clear();
      Batch b(snap->generation);
      const bool full = !k.exists || !k.owned || options.fullReplace || needsFullReplace(d, k);
      chooseCacheGeneration(d, desired.table, inputs, k, snap->generation, full, rec ? rec->ownCacheGeneration : 0);
      if (full)
        fullBatch(b, d, k, report.changes);
      else
        incrementalBatch(b, d, k, report.changes);
      report.buildMs = msSince(t0);
      keepPrevious(k, d, options, report);
      auto moved = sendOrCheck(*sock, b, options, report);
      if (!moved) return unexpected(moved.error());
      if (!*moved) {
        remember(snap->generation);
        return {};
      }
    }
    return makeError(ErrorCode::kBusy,
                     fmt::format("the ruleset changed between read-back and commit {} times in a row; nothing was "
                                 "changed (someone keeps changing it)",
                                 kMaxAttempts));
  });
  if (!done) {
    // Whatever failed, the record may no longer be what the caller's next
    // hint is relative to: the next apply reads back.
    if (options.record) options.record->invalidate();
    return unexpected(done.error());
  }
  if (!report.changed) report.previous.clear();
  return report;
}

Expected<bool> deleteTable(const FlushOptions& options) {
  bool existed = false;
  auto done = runInNetns(options.netns, [&]() -> Expected<void> {
    auto lock = lockFabric(options.lock);
    if (!lock) return unexpected(lock.error());
    auto sock = Socket::open();
    if (!sock) return unexpected(sock.error());
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      auto snap = readTable(*sock, options.table, false);
      if (!snap) return unexpected(snap.error());
      existed = snap->table.exists;
      if (!existed) return {};
      if (!snap->table.owned && !options.takeover) return makeError(ErrorCode::kNotOwned, notOwnedText("vpcfw flush"));
      Batch b(snap->generation);
      putTable(b, NFT_MSG_DELTABLE, options.table, 0);
      b.finish(true);
      auto errors = sock->send(b);
      if (!errors) return unexpected(errors.error());
      if (generationMoved(*errors)) continue;
      if (!errors->empty()) return makeError(ErrorCode::kKernel, errorText(*errors), errors->front().error);
      return {};
    }
    return makeError(ErrorCode::kBusy,
                     fmt::format("the ruleset changed between read-back and commit {} times in a row; "
                                 "table inet {} was not deleted",
                                 kMaxAttempts, options.table));
  });
  if (!done) return unexpected(done.error());
  return existed;
}

Expected<bool> deleteTable(const std::optional<std::string>& netns, std::string_view table) {
  FlushOptions o;
  o.netns = netns;
  o.table = std::string(table);
  return deleteTable(o);
}

namespace {
// "<eni> <stage>" from a drop_ chain's counter; the table is kernel state
// (anyone with CAP_NET_ADMIN can write it): only printable ASCII names and
// known stages count, anything else stays an ordinary counter.
std::optional<TableStatus::EniDrops> eniDropsOf(const TableStatus::Counter& c) {
  if (!c.chain.starts_with("drop_")) return std::nullopt;
  const auto sp = c.comment.rfind(' ');
  if (sp == std::string::npos || sp == 0) return std::nullopt;
  const std::string_view eni(c.comment.data(), sp), stage(c.comment.data() + sp + 1, c.comment.size() - sp - 1);
  if (std::ranges::find(kDropStages, stage) == std::end(kDropStages)) return std::nullopt;
  for (unsigned char ch : eni)
    if (ch < 0x21 || ch > 0x7e) return std::nullopt;
  return TableStatus::EniDrops{std::string(eni), std::string(stage), c.packets, c.bytes};
}
std::size_t stageIndex(std::string_view s) {
  return static_cast<std::size_t>(std::ranges::find(kDropStages, s) - std::begin(kDropStages));
}
}  // namespace

bool isEniDropCounter(const TableStatus::Counter& c) { return eniDropsOf(c).has_value(); }

Expected<TableStatus> tableStatus(const std::optional<std::string>& netns, std::string_view table) {
  TableStatus st;
  auto done = runInNetns(netns, [&]() -> Expected<void> {
    auto sock = Socket::open();
    if (!sock) return unexpected(sock.error());
    auto snap = readTable(*sock, std::string(table));
    if (!snap) return unexpected(snap.error());
    auto& k = snap->table;
    st.exists = k.exists;
    st.owned = k.owned;
    st.dormant = (k.flags & NFT_TABLE_F_DORMANT) != 0;
    st.sets = k.sets.size();
    for (const auto& [name, set] : k.sets) st.elements += set.elements.size();
    st.chains = k.chains.size();
    for (const auto& [name, chain] : k.chains) st.rules += chain.rules.size();
    st.objects = k.objects.size();
    st.flowtables = k.flowtables.size();
    for (auto& c : k.counters) {
      // In vpcfw's own table only: a foreign table's counters are all shown.
      if (k.owned && c.comment.starts_with(compile::kVerdictCacheComment)) {
        st.cache = true;
        st.cacheHits += c.packets;
      } else {
        st.counters.push_back(std::move(c));
      }
    }
    st.cacheGeneration = k.cacheGeneration;
    if (st.owned)
      for (const auto& c : st.counters)
        if (auto d = eniDropsOf(c)) st.eniDrops.push_back(std::move(*d));
    std::ranges::sort(st.eniDrops, [](const auto& a, const auto& b) {
      return std::pair(a.eni, stageIndex(a.stage)) < std::pair(b.eni, stageIndex(b.stage));
    });
    return {};
  });
  if (!done) return unexpected(done.error());
  return st;
}

Expected<std::uint32_t> rulesetGeneration(const std::optional<std::string>& netns) {
  std::uint32_t gen = 0;
  auto done = runInNetns(netns, [&]() -> Expected<void> {
    auto sock = Socket::open();
    if (!sock) return unexpected(sock.error());
    auto g = sock->generation();
    if (!g) return unexpected(g.error());
    gen = *g;
    return {};
  });
  if (!done) return unexpected(done.error());
  return gen;
}

Expected<std::vector<std::string>> diffRuleset(const compile::Ruleset& desired, const std::optional<std::string>& netns,
                                               bool verbose) {
  std::vector<std::string> out;
  auto done = runInNetns(netns, [&]() -> Expected<void> {
    auto sock = Socket::open();
    if (!sock) return unexpected(sock.error());
    LinearTable d = linearize(desired.table);
    auto snap = readTable(*sock, d.name);
    if (!snap) return unexpected(snap.error());
    // The cache generation is the applier's choice, not a difference.
    retarget(d, desired.table, cacheInputsOf(desired.table), snap->table.cacheGeneration, false);
    out = describeDiff(d, snap->table, verbose);
    return {};
  });
  if (!done) return unexpected(done.error());
  return out;
}

}  // namespace vpcfw::nft
