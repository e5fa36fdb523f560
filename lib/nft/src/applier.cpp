#include <netinet/in.h>  // before linux/netfilter.h

#include "vpcfw/nft/applier.h"

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <libnftnl/expr.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <set>

#include "netlink.h"
#include "nftnl_objects.h"
#include "vpcfw/nft/netns.h"

namespace vpcfw::nft {
namespace {

// What the kernel holds of our table.
struct KernelSet {
  std::string signature;
  std::vector<ElementBytes> elements;  // sorted
};
struct KernelChain {
  std::string signature;
  std::vector<std::string> rules;  // signatures, in order
};
struct KernelTable {
  bool exists = false;
  std::map<std::string, KernelSet> sets;
  std::map<std::string, KernelChain> chains;
  std::vector<TableStatus::Counter> counters;
};

void collectCounters(nftnl_rule* r, const char* chain, std::vector<TableStatus::Counter>& out) {
  nftnl_expr_iter* it = nftnl_expr_iter_create(r);
  for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it))
    if (std::strcmp(nftnl_expr_get_str(e, NFTNL_EXPR_NAME), "counter") == 0)
      out.push_back(TableStatus::Counter{chain, ruleComment(r), nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS),
                                         nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES)});
  nftnl_expr_iter_destroy(it);
}

Expected<KernelTable> readTable(Socket& sock, const std::string& table) {
  KernelTable k;
  auto r = sock.dump(
      NFT_MSG_GETTABLE, [](nlmsghdr*) {},
      [&](const nlmsghdr* nlh) {
        TablePtr t(nftnl_table_alloc());
        if (nftnl_table_nlmsg_parse(nlh, t.get()) == 0 && nftnl_table_get_u32(t.get(), NFTNL_TABLE_FAMILY) == NFPROTO_INET &&
            table == nftnl_table_get_str(t.get(), NFTNL_TABLE_NAME))
          k.exists = true;
      });
  if (!r) return unexpected(r.error());
  if (!k.exists) return k;
  r = sock.dump(
      NFT_MSG_GETCHAIN,
      [&](nlmsghdr* nlh) {
        ChainPtr c(nftnl_chain_alloc());
        nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, table.c_str());
        nftnl_chain_nlmsg_build_payload(nlh, c.get());
      },
      [&](const nlmsghdr* nlh) {
        ChainPtr c(nftnl_chain_alloc());
        if (nftnl_chain_nlmsg_parse(nlh, c.get()) != 0 || table != nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE)) return;
        k.chains[nftnl_chain_get_str(c.get(), NFTNL_CHAIN_NAME)].signature = chainSignature(c.get());
      });
  if (!r) return unexpected(r.error());
  r = sock.dump(
      NFT_MSG_GETRULE,
      [&](nlmsghdr* nlh) {
        RulePtr rl(nftnl_rule_alloc());
        nftnl_rule_set_str(rl.get(), NFTNL_RULE_TABLE, table.c_str());
        nftnl_rule_nlmsg_build_payload(nlh, rl.get());
      },
      [&](const nlmsghdr* nlh) {
        RulePtr rl(nftnl_rule_alloc());
        if (nftnl_rule_nlmsg_parse(nlh, rl.get()) != 0 || table != nftnl_rule_get_str(rl.get(), NFTNL_RULE_TABLE)) return;
        k.chains[nftnl_rule_get_str(rl.get(), NFTNL_RULE_CHAIN)].rules.push_back(ruleSignature(rl.get()));
        collectCounters(rl.get(), nftnl_rule_get_str(rl.get(), NFTNL_RULE_CHAIN), k.counters);
      });
  if (!r) return unexpected(r.error());
  std::vector<std::string> setNames;
  r = sock.dump(
      NFT_MSG_GETSET,
      [&](nlmsghdr* nlh) {
        SetPtr s(nftnl_set_alloc());
        nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
        nftnl_set_nlmsg_build_payload(nlh, s.get());
      },
      [&](const nlmsghdr* nlh) {
        SetPtr s(nftnl_set_alloc());
        if (nftnl_set_nlmsg_parse(nlh, s.get()) != 0 || table != nftnl_set_get_str(s.get(), NFTNL_SET_TABLE)) return;
        std::string name = nftnl_set_get_str(s.get(), NFTNL_SET_NAME);
        k.sets[name].signature = setSignature(s.get());
        setNames.push_back(name);
      });
  if (!r) return unexpected(r.error());
  for (const auto& name : setNames) {
    auto& ks = k.sets[name];
    r = sock.dump(
        NFT_MSG_GETSETELEM,
        [&](nlmsghdr* nlh) {
          SetPtr s(nftnl_set_alloc());
          nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
          nftnl_set_set_str(s.get(), NFTNL_SET_NAME, name.c_str());
          nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
        },
        [&](const nlmsghdr* nlh) {
          SetPtr s(nftnl_set_alloc());
          if (nftnl_set_elems_nlmsg_parse(nlh, s.get()) != 0) return;
          nftnl_set_elems_iter* it = nftnl_set_elems_iter_create(s.get());
          for (auto* e = nftnl_set_elems_iter_next(it); e; e = nftnl_set_elems_iter_next(it)) ks.elements.push_back(elementBytes(e));
          nftnl_set_elems_iter_destroy(it);
        });
    if (!r) return unexpected(r.error());
    std::sort(ks.elements.begin(), ks.elements.end());
  }
  return k;
}

// Batch builders ---------------------------------------------------------

void putTable(Batch& b, std::uint16_t type, const std::string& name, std::uint16_t flags) {
  auto t = makeTable(name);
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
    std::vector<ElementBytes> part(elements.begin() + static_cast<std::ptrdiff_t>(i),
                                   elements.begin() + static_cast<std::ptrdiff_t>(std::min(elements.size(), i + kChunk)));
    addElements(s.get(), part);
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

void fullBatch(Batch& b, const LinearTable& d, bool exists, std::vector<std::string>& changes) {
  putTable(b, NFT_MSG_NEWTABLE, d.name, NLM_F_CREATE);
  if (exists) {
    // Create-if-missing above keeps DELTABLE from failing; the commit swaps
    // the whole table at once, so no packet sees an empty ruleset.
    putTable(b, NFT_MSG_DELTABLE, d.name, 0);
    putTable(b, NFT_MSG_NEWTABLE, d.name, NLM_F_CREATE);
  }
  for (const auto& s : d.sets) putSet(b, s);
  for (const auto& c : d.chains) putChain(b, c);
  for (const auto& s : d.sets)
    putElements(b, NFT_MSG_NEWSETELEM, d.name, nftnl_set_get_str(s.set.get(), NFTNL_SET_NAME),
                nftnl_set_get_u32(s.set.get(), NFTNL_SET_ID), s.elements,
                fmt::format("elements of set {}", nftnl_set_get_str(s.set.get(), NFTNL_SET_NAME)));
  for (const auto& c : d.chains) putRules(b, c);
  changes.push_back(fmt::format("{} table inet {}: {} sets, {} chains", exists ? "replaced" : "created", d.name,
                                d.sets.size(), d.chains.size()));
}

bool isIntervalSingle(const std::string& signature) {
  // rbtree sets: interval flag without concat; their elements come as start/end pairs.
  auto pos = signature.find("flags=");
  if (pos == std::string::npos) return false;
  unsigned flags = static_cast<unsigned>(std::stoul(signature.substr(pos + 6)));
  return (flags & NFT_SET_INTERVAL) && !(flags & NFT_SET_CONCAT);
}

// Adds to `b` what turns `k` into `d`; returns false when only a full
// replacement can (a set or base chain whose type changed).
bool incrementalBatch(Batch& b, const LinearTable& d, const KernelTable& k, std::vector<std::string>& changes) {
  std::map<std::string, const LinearSet*> dsets;
  std::map<std::string, const LinearChain*> dchains;
  for (const auto& s : d.sets) dsets[nftnl_set_get_str(s.set.get(), NFTNL_SET_NAME)] = &s;
  for (const auto& c : d.chains) dchains[nftnl_chain_get_str(c.chain.get(), NFTNL_CHAIN_NAME)] = &c;
  for (const auto& [name, s] : dsets)
    if (auto it = k.sets.find(name); it != k.sets.end() && it->second.signature != s->signature) return false;
  for (const auto& [name, c] : dchains)
    if (auto it = k.chains.find(name); it != k.chains.end() && it->second.signature != c->signature) return false;

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
    const auto& want = s->elements;
    if (have == want) continue;
    ElementChange ch{name, {}, {}, false};
    if (isIntervalSingle(s->signature)) {
      ch.flush = true;  // start/end pairs: rewrite them all
      ch.add = want;
    } else {
      std::set_difference(want.begin(), want.end(), have.begin(), have.end(), std::back_inserter(ch.add));
      std::set_difference(have.begin(), have.end(), want.begin(), want.end(), std::back_inserter(ch.remove));
    }
    changes.push_back(fmt::format("set {}: +{} -{} elements", name, ch.add.size(), ch.flush ? have.size() : ch.remove.size()));
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
      putElements(b, NFT_MSG_DELSETELEM, d.name, ch.set, 0, ch.remove, fmt::format("remove elements of set {}", ch.set));
  }
  // 2. rules of changed and vanishing chains
  for (const auto& name : rewrite) flushChain(b, d.name, name);
  for (const auto& [name, kc] : k.chains)
    if (!dchains.count(name)) flushChain(b, d.name, name);
  // 3. vanishing chains and sets
  for (const auto& [name, kc] : k.chains)
    if (!dchains.count(name)) {
      deleteNamed(b, NFT_MSG_DELCHAIN, d.name, name);
      changes.push_back(fmt::format("chain {}: deleted", name));
    }
  for (const auto& [name, ks] : k.sets)
    if (!dsets.count(name)) {
      deleteNamed(b, NFT_MSG_DELSET, d.name, name);
      changes.push_back(fmt::format("set {}: deleted", name));
    }
  // 4. new sets, 5. new chains
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
    if (!ch.add.empty()) putElements(b, NFT_MSG_NEWSETELEM, d.name, ch.set, 0, ch.add, fmt::format("add elements to set {}", ch.set));
  for (const auto& [name, c] : dchains)
    if (!k.chains.count(name) || std::find(rewrite.begin(), rewrite.end(), name) != rewrite.end()) putRules(b, *c);
  return true;
}

std::vector<std::string> describeDiff(const LinearTable& d, const KernelTable& k, bool verbose) {
  std::vector<std::string> out;
  if (!k.exists) {
    out.push_back(fmt::format("table inet {}: missing", d.name));
    return out;
  }
  std::set<std::string> dsets, dchains;
  for (const auto& s : d.sets) {
    std::string name = nftnl_set_get_str(s.set.get(), NFTNL_SET_NAME);
    dsets.insert(name);
    auto it = k.sets.find(name);
    if (it == k.sets.end()) {
      out.push_back(fmt::format("set {}: missing", name));
    } else if (it->second.signature != s.signature) {
      out.push_back(fmt::format("set {}: type or flags differ", name));
      if (verbose) out.push_back("  kernel:  " + it->second.signature + "\n  desired: " + s.signature);
    } else if (it->second.elements != s.elements) {
      std::vector<ElementBytes> add, rem;
      std::set_difference(s.elements.begin(), s.elements.end(), it->second.elements.begin(), it->second.elements.end(),
                          std::back_inserter(add));
      std::set_difference(it->second.elements.begin(), it->second.elements.end(), s.elements.begin(), s.elements.end(),
                          std::back_inserter(rem));
      out.push_back(fmt::format("set {}: {} elements to add, {} to remove", name, add.size(), rem.size()));
    }
  }
  for (const auto& [name, ks] : k.sets)
    if (!dsets.count(name)) out.push_back(fmt::format("set {}: not in the config", name));
  for (const auto& c : d.chains) {
    std::string name = nftnl_chain_get_str(c.chain.get(), NFTNL_CHAIN_NAME);
    dchains.insert(name);
    auto it = k.chains.find(name);
    if (it == k.chains.end()) {
      out.push_back(fmt::format("chain {}: missing", name));
      continue;
    }
    if (it->second.signature != c.signature) out.push_back(fmt::format("chain {}: hook or policy differ", name));
    const auto& have = it->second.rules;
    for (std::size_t i = 0; i < std::max(have.size(), c.rules.size()); ++i) {
      if (i >= have.size()) out.push_back(fmt::format("chain {}: rule {} missing ({})", name, i + 1, c.rules[i].comment));
      else if (i >= c.rules.size()) out.push_back(fmt::format("chain {}: rule {} not in the config", name, i + 1));
      else if (have[i] != c.rules[i].signature) {
        out.push_back(fmt::format("chain {}: rule {} differs ({})", name, i + 1, c.rules[i].comment));
        if (verbose) out.push_back("  kernel:  " + have[i] + "\n  desired: " + c.rules[i].signature);
      }
    }
  }
  for (const auto& [name, kc] : k.chains)
    if (!dchains.count(name)) out.push_back(fmt::format("chain {}: not in the config", name));
  return out;
}

std::string errorText(const std::vector<KernelError>& errors) {
  std::string msg = "the kernel rejected the ruleset; nothing was changed:";
  for (const auto& e : errors) msg += fmt::format("\n  {}: {}", e.what, std::strerror(e.error));
  return msg;
}

double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

Expected<void> sendOrCheck(Socket& sock, Batch& b, const ApplyOptions& o, ApplyReport& report) {
  report.messages = b.messages();
  if (b.messages() == 0) return {};  // the kernel already holds it: send nothing
  b.finish(!o.check);
  report.batchBytes = b.bytes();
  const auto t0 = std::chrono::steady_clock::now();
  auto errors = sock.send(b);
  report.commitMs = msSince(t0);
  if (!errors) return unexpected(errors.error());
  if (!errors->empty()) return makeError(ErrorCode::kKernel, errorText(*errors));
  report.changed = !o.check;
  return {};
}

}  // namespace

Expected<ApplyReport> applyRuleset(const compile::Ruleset& desired, const ApplyOptions& options) {
  ApplyReport report;
  auto done = runInNetns(options.netns, [&]() -> Expected<void> {
    auto sock = Socket::open();
    if (!sock) return unexpected(sock.error());
    auto t0 = std::chrono::steady_clock::now();
    const LinearTable d = linearize(desired.table);
    report.linearizeMs = msSince(t0);
    t0 = std::chrono::steady_clock::now();
    auto k = readTable(*sock, d.name);
    if (!k) return unexpected(k.error());
    report.readBackMs = msSince(t0);
    t0 = std::chrono::steady_clock::now();
    Batch b;
    if (!k->exists || options.fullReplace || !incrementalBatch(b, d, *k, report.changes)) {
      report.changes.clear();
      Batch full;
      fullBatch(full, d, k->exists, report.changes);
      report.buildMs = msSince(t0);
      return sendOrCheck(*sock, full, options, report);
    }
    report.buildMs = msSince(t0);
    return sendOrCheck(*sock, b, options, report);
  });
  if (!done) return unexpected(done.error());
  return report;
}

Expected<bool> deleteTable(const std::optional<std::string>& netns, std::string_view table) {
  bool existed = false;
  auto done = runInNetns(netns, [&]() -> Expected<void> {
    auto sock = Socket::open();
    if (!sock) return unexpected(sock.error());
    auto k = readTable(*sock, std::string(table));
    if (!k) return unexpected(k.error());
    existed = k->exists;
    if (!existed) return {};
    Batch b;
    putTable(b, NFT_MSG_DELTABLE, std::string(table), 0);
    b.finish(true);
    auto errors = sock->send(b);
    if (!errors) return unexpected(errors.error());
    if (!errors->empty()) return makeError(ErrorCode::kKernel, errorText(*errors));
    return {};
  });
  if (!done) return unexpected(done.error());
  return existed;
}

Expected<TableStatus> tableStatus(const std::optional<std::string>& netns, std::string_view table) {
  TableStatus st;
  auto done = runInNetns(netns, [&]() -> Expected<void> {
    auto sock = Socket::open();
    if (!sock) return unexpected(sock.error());
    auto k = readTable(*sock, std::string(table));
    if (!k) return unexpected(k.error());
    st.exists = k->exists;
    st.sets = k->sets.size();
    for (const auto& [name, set] : k->sets) st.elements += set.elements.size();
    st.chains = k->chains.size();
    for (const auto& [name, chain] : k->chains) st.rules += chain.rules.size();
    st.counters = std::move(k->counters);
    return {};
  });
  if (!done) return unexpected(done.error());
  return st;
}

Expected<std::vector<std::string>> diffRuleset(const compile::Ruleset& desired, const std::optional<std::string>& netns,
                                               bool verbose) {
  std::vector<std::string> out;
  auto done = runInNetns(netns, [&]() -> Expected<void> {
    auto sock = Socket::open();
    if (!sock) return unexpected(sock.error());
    const LinearTable d = linearize(desired.table);
    auto k = readTable(*sock, d.name);
    if (!k) return unexpected(k.error());
    out = describeDiff(d, *k, verbose);
    return {};
  });
  if (!done) return unexpected(done.error());
  return out;
}

}  // namespace vpcfw::nft
