// Carrying out a lab plan: up, apply, status and down, each under the lab's
// lock, with the lab's record as the proof of what it made (docs/lab.md).
#include "vpcfw/lab/lab.h"

#include <dirent.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "vpcfw/base/diagnostic.h"
#include "vpcfw/lab/rtnl.h"
#include "vpcfw/names/names.h"
#include "vpcfw/nft/applier.h"
#include "vpcfw/nft/netns.h"
#include "vpcfw/state/state.h"
#include "vpcfw/track/untracked.h"

namespace vpcfw::lab {
namespace {

using Role = NamespacePlan::Role;
using net::IpAddress;

// Runs fn(0..n-1) on up to `jobs` threads; the first error wins.
Expected<void> parallelFor(std::size_t n, unsigned jobs, const std::function<Expected<void>(std::size_t)>& fn) {
  std::atomic<std::size_t> next{0};
  std::mutex mu;
  std::optional<Error> first;
  auto worker = [&] {
    for (;;) {
      std::size_t i = next++;
      if (i >= n) return;
      {
        std::lock_guard lock(mu);
        if (first) return;
      }
      if (auto r = fn(i); !r) {
        std::lock_guard lock(mu);
        if (!first) first = r.error();
        return;
      }
    }
  };
  const unsigned count = static_cast<unsigned>(std::min<std::size_t>(n, std::max(1u, jobs)));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < count; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (first) return unexpected(*first);
  return {};
}

unsigned jobsFor(const LabOptions& o) {
  if (o.jobs) return o.jobs;
  return std::clamp(std::thread::hardware_concurrency() * 2, 2u, 8u);
}

double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Neighbour resolution (ARP, IPv6 ND) on the namespace's links retries after
// 100 ms instead of 1 s: a solicitation sent while a fresh veth is still
// coming up would otherwise hold the first packets of a new lab for a second.
// (The per-namespace `default` entries do not exist outside the initial
// namespace, so each interface is set.)
Expected<void> fastNeighbours(const NamespacePlan& p) {
  return nft::runInNetns(p.name, [&]() -> Expected<void> {
    for (const auto& i : p.up) {
      if (i == "lo") continue;
      for (const char* fam : {"ipv4", "ipv6"}) {
        const std::string key = fmt::format("/proc/sys/net/{}/neigh/{}/retrans_time_ms", fam, i);
        std::ofstream f(key);
        if (!(f << "100") || !f.flush()) return makeError(ErrorCode::kKernel, p.name + ": cannot write " + key);
      }
    }
    return {};
  });
}

// Brings a namespace's interfaces up and gives it its addresses, routes and rules.
// Labs share the internet namespace: a route one wants there must not take a
// destination (a public IP, an IPv6 block) that another lab's gateway holds,
// which adding with replace would silently do.
Expected<void> checkSharedRoutes(const NamespacePlan& p, const std::vector<RouteSpec>& have) {
  if (p.role != Role::kInternet) return {};
  for (const auto& want : p.routes)
    for (const auto& r : have)
      if (r.dst == want.dst && r.table == want.table && !want.ifname.empty() && !r.ifname.empty() &&
          r.ifname != want.ifname)
        return makeError(ErrorCode::kInvalidArgument,
                         fmt::format("{}: {} is already routed to {}, another lab's gateway; labs that share an "
                                     "internet need distinct public IPs and IPv6 blocks",
                                     p.name, want.dst.toString(), r.ifname));
  return {};
}

Expected<void> configure(const NamespacePlan& p) {
  auto nl = Rtnl::open(p.name);
  if (!nl) return unexpected(nl.error());
  for (const auto& i : p.up)
    if (auto r = nl->setLinkUp(i); !r) return r;
  if (auto r = fastNeighbours(p); !r) return r;
  if (p.role == Role::kInternet) {
    auto have = nl->staticRoutes();
    if (!have) return unexpected(have.error());
    if (auto ok = checkSharedRoutes(p, *have); !ok) return ok;
  }
  for (const auto& a : p.addresses)
    if (auto r = nl->addAddress(a.ifname, a.address, a.prefix); !r) return r;
  for (const auto& r : p.routes)
    if (auto x = nl->addRoute(r); !x) return unexpected(Error{x.error().code, p.name + ": " + x.error().message});
  for (const auto& r : p.rules)
    if (auto x = nl->addRule(r); !x) return unexpected(Error{x.error().code, p.name + ": " + x.error().message});
  return {};
}

Expected<void> makeLink(const LinkPlan& l) {
  auto nl = Rtnl::open(l.ns);
  if (!nl) return unexpected(nl.error());
  return nl->createVeth(l.name, l.peerNs, l.peer);
}

// How long a removed namespace's veth ends may take to vanish from their peers.
constexpr std::chrono::milliseconds kLinkGoneTimeout{3000};

std::string leftAloneWhy() {
  return "not made by vpcfw (or its record is lost); left alone; remove with `ip netns delete` if it is yours";
}

// ------------------------------------------------------------ records

Expected<std::optional<LabRecord>> readRecord(const state::Dir& dir, const std::string& key) {
  const std::string file = recordFile(key);
  auto text = dir.readFile(file, kRecordMaxBytes);
  if (!text) return withContext(text.error(), "lab record " + dir.path() + "/" + file);
  if (!*text) return std::optional<LabRecord>{};
  auto r = parseRecord(**text);
  if (!r)
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("lab record {}/{}: {}; nothing in it is trusted or acted on (fix or remove the file)",
                                 dir.path(), file, r.error().message));
  return std::optional<LabRecord>{std::move(*r)};
}

// The keys of every lab record in the directory.
std::vector<std::string> recordKeys(const state::Dir& dir) {
  std::vector<std::string> out;
  const int fd = dup(dir.fd());
  if (fd < 0) return out;
  DIR* d = fdopendir(fd);
  if (!d) {
    close(fd);
    return out;
  }
  rewinddir(d);
  constexpr std::string_view kSuffix = ".state";
  while (dirent* e = readdir(d)) {
    std::string_view n = e->d_name;
    if (!n.starts_with("lab-") || !n.ends_with(kSuffix)) continue;
    const std::string key(n.substr(0, n.size() - kSuffix.size()));
    if (state::isSafeComponent(key)) out.push_back(key);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// True when a record other than `key`'s names `name` with identity `id`
// (or cannot be read: then it might, and the namespace is kept).
bool referencedElsewhere(const state::Dir& dir, const std::string& key, const std::string& name, const NsId& id) {
  for (const auto& k : recordKeys(dir)) {
    if (k == key) continue;
    auto r = readRecord(dir, k);
    if (!r) return true;
    if (!*r) continue;
    if (const NsRecord* n = (*r)->find(name); n && n->id == id) return true;
  }
  return false;
}

// The record of one lab, written through to disk on every change (a
// journal: a process killed at any point leaves a record of all it made).
class Journal {
 public:
  Journal(state::Dir dir, std::string key, LabRecord record)
      : dir_(std::move(dir)), key_(std::move(key)), record_(std::move(record)) {}

  [[nodiscard]] static Expected<std::unique_ptr<Journal>> open(const LabId& lab) {
    auto dir = state::Dir::open("lab");
    if (!dir) return unexpected(dir.error());
    auto rec = readRecord(*dir, lab.key);
    if (!rec) return unexpected(rec.error());
    LabRecord r;
    r.config = lab.config;
    if (*rec) {
      if ((*rec)->config != lab.config)
        return makeError(ErrorCode::kInvalidArgument,
                         fmt::format("lab record {}/{} is the record of {}, not of {}; nothing was done", dir->path(),
                                     recordFile(lab.key), (*rec)->config, lab.config));
      r = std::move(**rec);
    }
    return std::make_unique<Journal>(std::move(*dir), lab.key, std::move(r));
  }

  const state::Dir& dir() const { return dir_; }
  LabRecord snapshot() const {
    std::lock_guard l(mu_);
    return record_;
  }
  // Returns once a record holding the entry is on disk. Workers adding at
  // once share one write (a group commit): whoever finds no write under
  // way writes everything added so far; the others wait for it.
  [[nodiscard]] Expected<void> add(const std::string& name, const NsId& id, bool shared) {
    std::unique_lock l(mu_);
    record_.add(name, id, shared);
    const std::uint64_t mine = ++added_;
    while (written_ < mine) {
      if (failed_ >= mine) return unexpected(*error_);
      if (writing_) {
        cv_.wait(l);
        continue;
      }
      writing_ = true;
      const std::uint64_t upto = added_;
      const std::string content = formatRecord(record_);
      l.unlock();
      auto w = write(content, false);
      l.lock();
      writing_ = false;
      if (w) {
        written_ = std::max(written_, upto);
      } else {
        failed_ = std::max(failed_, upto);
        error_ = w.error();
      }
      cv_.notify_all();
    }
    return {};
  }
  [[nodiscard]] Expected<void> remove(const std::string& name) {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return !writing_; });
    record_.remove(name);
    return write(formatRecord(record_), record_.namespaces.empty());
  }

 private:
  Expected<void> write(const std::string& content, bool empty) {
    const std::string file = recordFile(key_);
    auto r = empty ? dir_.remove(file) : dir_.writeFile(file, content);
    if (!r) return withContext(r.error(), "lab record " + dir_.path() + "/" + file);
    return {};
  }
  state::Dir dir_;
  std::string key_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  LabRecord record_;
  std::uint64_t added_ = 0, written_ = 0, failed_ = 0;  // entries added, on disk, whose write failed
  bool writing_ = false;
  std::optional<Error> error_;
};

// Makes namespace `p`, its identity journalled before it has a name. Not
// made (or another's won the name): its journal entry names nothing and goes.
Expected<NsId> createJournalled(const NamespacePlan& p, Journal& j) {
  bool journalled = false;
  auto id = createNamespace(p.name, [&](const NsId& nsid) -> Expected<void> {
    auto w = j.add(p.name, nsid, p.role == Role::kInternet);
    journalled = bool(w);
    return w;
  });
  if (!id && journalled) (void)j.remove(p.name);
  return id;
}

// What a record entry is now.
enum class Proof { kGone, kOurs, kOther };
struct Proven {
  Proof proof = Proof::kGone;
  std::string why;  // for kOther
};
// The record names it, so an empty placeholder under its name is the debris
// of vpcfw's own creation, killed before the mount: it goes, and the entry
// proves nothing any more.
Proven prove(const NsRecord& r) {
  auto id = namespaceIdentity(r.name);
  if (!id && removePlaceholder(r.name)) return {Proof::kGone, {}};
  if (!id) return {Proof::kOther, id.error().message};
  if (!*id) return {Proof::kGone, {}};
  if (**id != r.id)
    return {Proof::kOther,
            fmt::format("it is {}, not the namespace the record names ({})", describe(**id), describe(r.id))};
  return {Proof::kOurs, {}};
}

// The internet namespace `name` (identity `id`) as a lab's record names it:
// a lab may then share it.
bool internetRecorded(const state::Dir& dir, const std::string& name, const NsId& id) {
  for (const auto& k : recordKeys(dir)) {
    auto r = readRecord(dir, k);
    if (!r || !*r) continue;
    if (const NsRecord* n = (*r)->find(name); n && n->shared && n->id == id) return true;
  }
  return false;
}

// ------------------------------------------------------------ locks

Expected<state::Lock> acquire(std::string_view kind, const std::string& name, const LabOptions& o) {
  return state::Lock::acquire(kind, name, o.lockTimeout, [&](const std::string& holder) {
    if (o.progress) o.progress(fmt::format("waiting for another vpcfw command on this lab ({})", holder));
  });
}

// The lab's lock, then the internet's when the lab has one.
struct Locks {
  std::optional<state::Lock> lab, internet;
};
Expected<Locks> lockLab(const std::string& key, const std::string& internet, const LabOptions& o) {
  Locks l;
  auto a = acquire("lab", key, o);
  if (!a) return unexpected(a.error());
  l.lab = std::move(*a);
  if (!internet.empty()) {
    auto b = acquire("lab-internet", internet, o);
    if (!b) return unexpected(b.error());
    l.internet = std::move(*b);
  }
  return l;
}

std::string recordedInternet(const LabRecord& r) {
  for (const auto& n : r.namespaces)
    if (n.shared) return n.name;
  return {};
}

// ------------------------------------------------------------ lab down of one record

Expected<void> downOne(const state::Dir& dir, const std::string& key, const std::string& config, const LabPlan* plan,
                       const LabOptions& options, LabDownReport& rep) {
  auto labLock = acquire("lab", key, options);
  if (!labLock) return unexpected(labLock.error());
  auto rec = readRecord(dir, key);
  if (!rec) return unexpected(rec.error());
  LabRecord r;
  if (*rec) r = std::move(**rec);
  if (*rec && !config.empty() && r.config != config)
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("lab record {}/{} is the record of {}, not of {}; nothing was done", dir.path(),
                                 recordFile(key), r.config, config));
  std::optional<state::Lock> inetLock;
  if (const std::string inet = recordedInternet(r); !inet.empty()) {
    auto l = acquire("lab-internet", inet, options);
    if (!l) return unexpected(l.error());
    inetLock = std::move(*l);
  }
  LabRecord keep;
  keep.config = r.config;
  // The internet last: the gateways' links into it go first.
  std::stable_partition(r.namespaces.begin(), r.namespaces.end(), [](const NsRecord& n) { return !n.shared; });
  for (const auto& n : r.namespaces) {
    const Proven p = prove(n);
    if (p.proof == Proof::kGone) continue;
    if (p.proof == Proof::kOther) {
      rep.errors.push_back(fmt::format("{}: recorded by the lab of {}, but {}; left alone", n.name, r.config, p.why));
      continue;
    }
    if (n.shared && referencedElsewhere(dir, key, n.name, n.id)) {
      rep.leftAlone.push_back(n.name + ": the internet of another lab too; kept for it");
      continue;
    }
    if (auto d = deleteNamespace(n.name, n.id); !d) {
      rep.errors.push_back(n.name + ": " + d.error().message);
      keep.namespaces.push_back(n);
      continue;
    }
    rep.removed.push_back(n.name);
  }
  if (plan)
    for (const auto& n : plan->namespaces)
      if (!r.find(n.name) && namespaceExists(n.name))
        rep.leftAlone.push_back(n.name + ": no record of this lab says vpcfw made it (another lab's, or " +
                                leftAloneWhy() + ")");
  const std::string file = recordFile(key);
  auto w = keep.namespaces.empty() ? dir.remove(file) : dir.writeFile(file, formatRecord(keep));
  if (!w) return withContext(w.error(), "lab record " + dir.path() + "/" + file);
  return {};
}

// ------------------------------------------------------------ status

bool isLinkLocal(const IpAddress& a) { return !a.isV4() && a.bytes()[0] == 0xfe && (a.bytes()[1] & 0xc0) == 0x80; }

// The interfaces a namespace's plan has: those it brings up and its link ends.
std::set<std::string> plannedInterfaces(const NamespacePlan& p, const std::vector<LinkPlan>& links) {
  std::set<std::string> s(p.up.begin(), p.up.end());
  for (const auto& l : links) {
    if (l.ns == p.name) s.insert(l.name);
    if (l.peerNs == p.name) s.insert(l.peer);
  }
  return s;
}

// Looks inside one namespace: links, and against its plan (when given)
// links up, addresses, static routes, policy rules and its ruleset.
void inspect(NamespaceStatus& n, const NamespacePlan* p, const LabPlan* plan, std::vector<std::string>& problems) {
  auto nl = Rtnl::open(n.name);
  if (!nl) {
    problems.push_back(n.name + ": could not look inside: " + nl.error().message);
    return;
  }
  auto links = nl->links();
  if (!links) {
    problems.push_back(n.name + ": could not list links: " + links.error().message);
    return;
  }
  for (const auto& l : *links) {
    if (l.name == "lo") continue;
    ++n.interfaces;
    if (l.up) ++n.interfacesUp;
    n.rxPackets += l.rxPackets;
    n.txPackets += l.txPackets;
  }
  auto table = nft::tableStatus(n.name);
  if (!table) {
    problems.push_back(n.name + ": could not read its nftables table: " + table.error().message);
    return;
  }
  n.hasRuleset = table->exists;
  if (!p) {
    n.verified = true;
    return;
  }
  auto diff = [&](const std::string& d) { n.differences.push_back(d); };
  const std::set<std::string> want = plannedInterfaces(*p, plan->links);
  for (const auto& i : want) {
    auto it = std::find_if(links->begin(), links->end(), [&](const LinkInfo& l) { return l.name == i; });
    if (it == links->end())
      diff("missing link " + i);
    else if (!it->up && std::find(p->up.begin(), p->up.end(), i) != p->up.end())
      diff("link " + i + " down");
  }
  // The internet is shared: other labs' gateways have links, addresses and
  // routes there too; only this lab's interfaces are compared for extras.
  const bool shared = p->role == Role::kInternet;
  auto mine = [&](const std::string& ifname) { return !shared || (want.contains(ifname) && ifname != "lo"); };
  for (const auto& l : *links)
    if (!want.contains(l.name) && !shared) diff("extra link " + l.name);
  auto addrs = nl->addresses();
  auto routes = nl->staticRoutes();
  auto rules = nl->rules();
  if (!addrs || !routes || !rules) {
    problems.push_back(n.name + ": could not read its addresses, routes or rules");
    return;
  }
  for (const auto& a : p->addresses)
    if (std::none_of(addrs->begin(), addrs->end(), [&](const AddressInfo& x) {
          return x.ifname == a.ifname && x.address == a.address && x.prefix == a.prefix;
        }))
      diff(fmt::format("missing address {}/{} on {}", a.address.toString(), a.prefix, a.ifname));
  for (const auto& x : *addrs) {
    if (x.ifname == "lo" || (isLinkLocal(x.address) && x.prefix == 64)) {
      // the kernel's own (loopback, and every interface's fe80::/64), unless planned
      if (x.ifname == "lo" || std::none_of(p->addresses.begin(), p->addresses.end(), [&](const AddressPlan& a) {
            return a.ifname == x.ifname && a.address == x.address;
          }))
        continue;
    }
    if (mine(x.ifname) && std::none_of(p->addresses.begin(), p->addresses.end(), [&](const AddressPlan& a) {
          return x.ifname == a.ifname && x.address == a.address && x.prefix == a.prefix;
        }))
      diff(fmt::format("extra address {}/{} on {}", x.address.toString(), x.prefix, x.ifname));
  }
  for (const auto& r : p->routes)
    if (std::find(routes->begin(), routes->end(), r) == routes->end()) diff("missing route " + describe(r));
  for (const auto& r : *routes)
    if (mine(r.ifname) && std::find(p->routes.begin(), p->routes.end(), r) == p->routes.end())
      diff("extra route " + describe(r));
  for (const auto& r : p->rules)
    if (std::find(rules->begin(), rules->end(), r) == rules->end()) diff("missing rule " + describe(r));
  for (const auto& r : *rules)
    if (isLabRule(r) && std::find(p->rules.begin(), p->rules.end(), r) == p->rules.end())
      diff("extra rule " + describe(r));
  const compile::Ruleset* rs = nullptr;
  for (const auto& x : plan->rulesets)
    if (x.fabric == n.name) rs = &x;
  if (rs) {
    if (!n.hasRuleset) {
      diff("no ruleset loaded");
    } else {
      auto d = nft::diffRuleset(*rs, n.name);
      if (!d) {
        problems.push_back(n.name + ": could not compare its ruleset: " + d.error().message);
        return;
      }
      n.rulesetCurrent = d->empty();
      if (!n.rulesetCurrent) diff(fmt::format("ruleset differs ({} changes)", d->size()));
    }
  } else if (n.hasRuleset) {
    diff("a vpcfw table the plan does not have");
  }
  n.verified = true;
}

// ------------------------------------------------------------ apply

// The veth ends in the planned namespaces whose peers are in `held`
// (namespaces an apply leaves as they are): namespace -> interface names.
std::map<std::string, std::set<std::string>> linksInto(const std::vector<std::string>& held, const LabPlan& plan) {
  std::map<std::string, std::set<std::string>> out;
  if (held.empty()) return out;
  std::vector<std::pair<unsigned, unsigned>> ends;  // (index, peer index) in the held namespaces
  for (const auto& h : held)
    if (auto nl = Rtnl::open(h))
      if (auto ls = nl->links())
        for (const auto& l : *ls)
          if (l.peerIndex) ends.emplace_back(l.index, l.peerIndex);
  for (const auto& n : plan.namespaces)
    if (auto nl = Rtnl::open(n.name))
      if (auto ls = nl->links())
        for (const auto& l : *ls)
          // The pair names each other: this end's index is the held end's peer and back.
          if (std::find(ends.begin(), ends.end(), std::pair{l.peerIndex, l.index}) != ends.end())
            out[n.name].insert(l.name);
  return out;
}

// Undo steps of one namespace's reconciliation, run in reverse on failure.
class Undo {
 public:
  void push(std::function<Expected<void>()> f) { steps_.push_back(std::move(f)); }
  void run() {
    for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) (void)(*it)();
    steps_.clear();
  }

 private:
  std::vector<std::function<Expected<void>()>> steps_;
};

// Makes the kernel's `have` hold exactly `want` among the entries `ours`
// accepts: stale ones removed, missing ones added, each step undoable. An
// entry already gone (its link vanished meanwhile) is not an error.
template <class T, class Ours, class Add, class Remove>
Expected<void> reconcileEntries(const std::vector<T>& have, const std::vector<T>& want, Ours ours, Add add,
                                Remove remove, std::string_view kind, Undo& undo,
                                const std::function<void(const std::string&)>& note) {
  for (const auto& r : have)
    if (ours(r) && std::find(want.begin(), want.end(), r) == want.end()) {
      if (auto x = remove(r); !x && x.error().code != ErrorCode::kNotFound) return x;
      undo.push([add, r] { return add(r); });
      note(fmt::format("- {} {}", kind, describe(r)));
    }
  for (const auto& r : want)
    if (std::find(have.begin(), have.end(), r) == have.end()) {
      if (auto x = add(r); !x) return x;
      undo.push([remove, r] { return remove(r); });
      note(fmt::format("+ {} {}", kind, describe(r)));
    }
  return {};
}

struct Reconciled {
  std::vector<std::string> changes;
  bool addressesChanged = false;
};

// Makes an existing namespace hold exactly the plan's addresses, static
// routes, policy-routing rules and interfaces (up), all or nothing: a step
// that fails undoes the earlier ones, and interfaces the plan dropped are
// deleted only after everything else succeeded.
Expected<void> reconcile(const NamespacePlan& p, const std::vector<LinkPlan>& links, const std::set<std::string>& kept,
                         Reconciled& out) {
  auto nl = Rtnl::open(p.name);
  if (!nl) return unexpected(nl.error());
  Undo undo;
  auto note = [&](const std::string& what) { out.changes.push_back(p.name + ": " + what); };
  auto failed = [&](const Error& e) {
    undo.run();
    out.changes.clear();
    out.addressesChanged = false;
    return unexpected(Error{e.code, p.name + ": " + e.message + " (its changes were undone)", e.sysErrno});
  };
  const std::set<std::string> planned = plannedInterfaces(p, links);
  // The internet is shared with other labs: only what is on this lab's own
  // links there is this lab's to remove (a gateway's link goes with its namespace).
  const bool shared = p.role == Role::kInternet;
  auto mine = [&](const std::string& ifname) { return !shared || (planned.contains(ifname) && ifname != "lo"); };
  for (const auto& i : p.up)
    if (auto r = nl->setLinkUp(i); !r) return failed(r.error());
  auto addrs = nl->addresses();
  if (!addrs) return failed(addrs.error());
  for (const auto& a : p.addresses) {
    bool present = std::any_of(addrs->begin(), addrs->end(), [&](const AddressInfo& x) {
      return x.ifname == a.ifname && x.address == a.address && x.prefix == a.prefix;
    });
    if (present) continue;
    if (auto r = nl->addAddress(a.ifname, a.address, a.prefix); !r) return failed(r.error());
    undo.push([&nl, a] { return nl->deleteAddress(a.ifname, a.address, a.prefix); });
    note(fmt::format("+ address {}/{} on {}", a.address.toString(), a.prefix, a.ifname));
    out.addressesChanged = true;
  }
  // Addresses the plan no longer has, on the interfaces it has (the kernel's
  // loopback and link-local addresses stay).
  for (const auto& x : *addrs) {
    if (x.ifname == "lo" || !planned.contains(x.ifname) || isLinkLocal(x.address)) continue;
    if (std::any_of(p.addresses.begin(), p.addresses.end(), [&](const AddressPlan& a) {
          return x.ifname == a.ifname && x.address == a.address && x.prefix == a.prefix;
        }))
      continue;
    if (auto r = nl->deleteAddress(x.ifname, x.address, x.prefix); !r && r.error().code != ErrorCode::kNotFound)
      return failed(r.error());
    undo.push([&nl, x] { return nl->addAddress(x.ifname, x.address, x.prefix); });
    note(fmt::format("- address {}/{} on {}", x.address.toString(), x.prefix, x.ifname));
    out.addressesChanged = true;
  }
  auto routes = nl->staticRoutes();
  if (!routes) return failed(routes.error());
  if (auto ok = checkSharedRoutes(p, *routes); !ok) return failed(ok.error());
  if (auto x = reconcileEntries(
          *routes, p.routes, [&](const RouteSpec& r) { return mine(r.ifname); },
          [&nl](const RouteSpec& r) { return nl->addRoute(r); },
          [&nl](const RouteSpec& r) { return nl->deleteRoute(r); }, "route", undo, note);
      !x)
    return failed(x.error());
  auto rules = nl->rules();
  if (!rules) return failed(rules.error());
  if (auto x = reconcileEntries(
          *rules, p.rules, [](const RuleSpec& r) { return isLabRule(r); },
          [&nl](const RuleSpec& r) { return nl->addRule(r); }, [&nl](const RuleSpec& r) { return nl->deleteRule(r); },
          "rule", undo, note);
      !x)
    return failed(x.error());
  // Interfaces this plan no longer has (a peering or gateway removed).
  auto ls = nl->links();
  if (!ls) return failed(ls.error());
  for (const auto& l : *ls)
    if (!planned.contains(l.name) && !kept.contains(l.name) && !shared) {
      // The far end's namespace may be going away right now, taking the
      // link with it: one that vanished meanwhile is not an error.
      if (auto r = nl->deleteLink(l.name); !r && r.error().code != ErrorCode::kNotFound && nl->ifindex(l.name))
        return failed(r.error());
      note("- link " + l.name);
    }
  return {};
}

}  // namespace

std::string internetNamespace() {
  const char* env = std::getenv("VPCFW_LAB_INTERNET");
  return env && *env ? std::string(env) : std::string(names::kDefaultInternetNamespace);
}

Expected<LabId> labIdOf(const std::string& configPath) {
  std::error_code ec;
  auto abs = std::filesystem::weakly_canonical(std::filesystem::absolute(configPath, ec), ec);
  if (ec) return makeError(ErrorCode::kIo, "cannot resolve " + configPath + ": " + ec.message(), ec.value());
  // The path goes into the lab's record as one line: a newline, a control
  // character or invalid UTF-8 in it could forge record lines or make the
  // record unreadable, so such a path is refused before anything is made.
  if (!isPrintableText(abs.string()))
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("the config's path {} holds control characters or invalid UTF-8; a lab cannot "
                                 "record it (rename the file)",
                                 quoteForMessage(abs.string())));
  LabId id;
  id.config = abs.string();
  id.key = recordKey(id.config);
  return id;
}

namespace {
// A fabric's flows without ct timeout objects (ENIs without settings, or a
// flow whose object a later generation deleted) run on the namespace's
// conntrack defaults: those are AWS's (vpc-semantics.md) but for the UDP
// stream timeout, Linux's 120 s where AWS's is 180 s. The fabric namespace is
// the lab's own. The file exists once the ruleset's conntrack expressions
// have loaded nf_conntrack, so this runs after the first commit.
Expected<void> setAwsConntrackDefaults(const std::string& fabric) {
  return writeSysctl(fabric, "net/netfilter/nf_conntrack_udp_timeout_stream",
                     std::to_string(model::ConnectionTracking::kDefaultUdpStream));
}

}  // namespace

Expected<LabReport> labUp(const LabPlan& plan, const LabId& lab, const LabOptions& options) {
  LabReport report;
  const unsigned jobs = jobsFor(options);
  auto say = [&](const std::string& s) {
    if (options.progress) options.progress(s);
  };
  const bool hasInternet = plan.find(plan.internet) != nullptr;
  auto locks = lockLab(lab.key, hasInternet ? plan.internet : std::string(), options);
  if (!locks) return unexpected(locks.error());
  auto journal = Journal::open(lab);
  if (!journal) return unexpected(journal.error());
  Journal& j = **journal;

  // Up already? Entries that prove nothing any more (gone, or the name now
  // another namespace's) are dropped; a live one means the lab is up.
  std::vector<std::string> alive;
  for (const auto& n : j.snapshot().namespaces) {
    const Proven p = prove(n);
    if (p.proof == Proof::kOurs && !n.shared)
      alive.push_back(n.name);
    else if (p.proof != Proof::kOurs)
      if (auto r = j.remove(n.name); !r) return unexpected(r.error());
  }
  if (!alive.empty())
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("the lab of {} is up ({} of its namespaces, {} first): 'vpcfw lab apply' changes it, "
                                 "'vpcfw lab down {}' removes it; nothing was built",
                                 lab.config, alive.size(), alive.front(), lab.config));
  std::vector<const NamespacePlan*> toMake;
  bool adopted = false;
  for (const auto& n : plan.namespaces) {
    auto id = namespaceIdentity(n.name);
    if (id && !*id) {
      toMake.push_back(&n);
      continue;
    }
    if (id && n.role == Role::kInternet && internetRecorded(j.dir(), n.name, **id)) {
      if (auto r = j.add(n.name, **id, true); !r) return unexpected(r.error());
      adopted = true;
      continue;
    }
    return makeError(
        ErrorCode::kNotOwned,
        fmt::format("namespace {} exists and no record of this lab says vpcfw made it for this lab (another "
                    "lab's, or not vpcfw's): nothing was built",
                    n.name));
  }
  std::mutex mu;
  std::vector<NsRecord> made;
  auto fail = [&](const Error& e) -> Expected<LabReport> {
    for (auto it = made.rbegin(); it != made.rend(); ++it)
      if (deleteNamespace(it->name, it->id)) (void)j.remove(it->name);
    if (adopted) (void)j.remove(plan.internet);
    return unexpected(e);
  };
  auto phase = [&](const std::string& name, std::size_t n, const std::function<Expected<void>(std::size_t)>& fn) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = parallelFor(n, jobs, fn);
    report.phases.emplace_back(name, msSince(t0));
    if (r) say(fmt::format("{:<12} {:>5}  {:>7.0f} ms", name, n, report.phases.back().second));
    return r;
  };
  if (auto r = phase("namespaces", toMake.size(),
                     [&](std::size_t i) -> Expected<void> {
                       const NamespacePlan& p = *toMake[i];
                       auto id = createJournalled(p, j);
                       if (!id) return unexpected(id.error());
                       {
                         std::lock_guard lock(mu);
                         made.push_back(NsRecord{p.name, *id, p.role == Role::kInternet});
                         report.namespaces.push_back(p.name);
                       }
                       for (const auto& [k, v] : p.sysctls)
                         if (auto s = writeSysctl(p.name, k, v); !s) return withContext(s.error(), p.name);
                       return {};
                     });
      !r)
    return fail(r.error());
  if (auto r = phase("links", plan.links.size(), [&](std::size_t i) { return makeLink(plan.links[i]); }); !r)
    return fail(r.error());
  if (auto r =
          phase("addressing", plan.namespaces.size(), [&](std::size_t i) { return configure(plan.namespaces[i]); });
      !r)
    return fail(r.error());
  if (auto r = phase("rules", plan.rulesets.size(),
                     [&](std::size_t i) -> Expected<void> {
                       nft::ApplyOptions o;
                       o.netns = plan.rulesets[i].fabric;
                       auto a = nft::applyRuleset(plan.rulesets[i], o);
                       if (!a) return unexpected(a.error());
                       if (auto d = setAwsConntrackDefaults(plan.rulesets[i].fabric); !d) {
                         std::lock_guard lock(mu);
                         report.afterCommit.push_back(plan.rulesets[i].fabric + ": " + d.error().message);
                       }
                       return {};
                     });
      !r)
    return fail(r.error());
  report.links = plan.links.size();
  for (const auto& n : plan.namespaces) {
    report.addresses += n.addresses.size();
    report.routes += n.routes.size();
    report.rules += n.rules.size();
  }
  return report;
}

Expected<LabDownReport> labDown(const LabPlan* plan, const LabId* lab, const LabOptions& options) {
  LabDownReport rep;
  auto dir = state::Dir::open("lab");
  if (!dir) return unexpected(dir.error());
  if (lab) {
    if (auto r = downOne(*dir, lab->key, lab->config, plan, options, rep); !r) return unexpected(r.error());
    return rep;
  }
  for (const auto& key : recordKeys(*dir))
    if (auto r = downOne(*dir, key, {}, nullptr, options, rep); !r) rep.errors.push_back(r.error().message);
  for (const auto& prefix : {names::kRouterPrefix, names::kOtherPrefix})
    for (const auto& n : listNamespaces(std::string(prefix))) rep.leftAlone.push_back(n + ": " + leftAloneWhy());
  return rep;
}

bool LabStatus::upToDate() const {
  return planned && problems.empty() && std::all_of(namespaces.begin(), namespaces.end(), [](const NamespaceStatus& n) {
           return n.planned && n.exists && n.recorded && n.verified && n.differences.empty();
         });
}

Expected<LabStatus> labStatus(const LabPlan* plan, const LabId* lab) {
  if (geteuid() != 0)
    return makeError(ErrorCode::kInvalidArgument,
                     "lab status needs root: it looks inside the lab's namespaces; nothing was checked");
  auto dir = state::Dir::open("lab");
  if (!dir) return unexpected(dir.error());
  LabStatus st;
  st.planned = plan != nullptr;
  std::set<std::string> seen;
  auto add = [&](const std::string& name, const NamespacePlan* p, const NsRecord* rec) -> NamespaceStatus* {
    if (!seen.insert(name).second) return nullptr;
    NamespaceStatus n;
    n.name = name;
    n.planned = p != nullptr;
    if (p) {
      n.role = std::string(roleName(p->role));
      n.object = p->object;
    } else {
      n.role = rec ? (rec->shared ? "internet" : "recorded") : "unrecorded";
    }
    auto id = namespaceIdentity(name);
    n.exists = namespaceExists(name);
    n.recorded = rec && id && *id && **id == rec->id;
    if (n.exists && !n.recorded)
      n.differences.push_back(rec ? "not the namespace the record names" : "no record says vpcfw made it for this lab");
    if (!n.exists && p) n.differences.push_back("missing");
    if (n.exists && id && *id) inspect(n, p, plan, st.problems);
    if (n.exists && !n.verified && (!id || !*id)) st.problems.push_back(name + ": not a mounted network namespace");
    st.namespaces.push_back(std::move(n));
    return &st.namespaces.back();
  };
  if (plan && lab) {
    auto rec = readRecord(*dir, lab->key);
    LabRecord r;
    if (!rec)
      st.problems.push_back(rec.error().message);
    else if (*rec)
      r = std::move(**rec);
    if (rec && *rec && r.config != lab->config) {
      st.problems.push_back("the lab record is of " + r.config);
      r.namespaces.clear();
    }
    for (const auto& p : plan->namespaces) add(p.name, &p, r.find(p.name));
    for (const auto& n : r.namespaces)
      if (NamespaceStatus* x = add(n.name, nullptr, &n); x && x->exists) x->differences.push_back("extra");
    return st;
  }
  for (const auto& key : recordKeys(*dir)) {
    auto rec = readRecord(*dir, key);
    if (!rec) {
      st.problems.push_back(rec.error().message);
      continue;
    }
    if (*rec)
      for (const auto& n : (*rec)->namespaces) (void)add(n.name, nullptr, &n);
  }
  std::vector<std::string> found = listNamespaces(std::string(names::kRouterPrefix));
  for (auto& n : listNamespaces(std::string(names::kOtherPrefix))) found.push_back(n);
  std::sort(found.begin(), found.end());
  for (const auto& n : found) (void)add(n, nullptr, nullptr);
  return st;
}

Expected<LabApplyReport> labApply(const LabPlan& plan, const LabId& lab, const LabOptions& options) {
  LabApplyReport report;
  const unsigned jobs = jobsFor(options);
  auto journal = Journal::open(lab);  // read before locking only to learn the internet's name
  if (!journal) return unexpected(journal.error());
  std::string inet = plan.find(plan.internet) ? plan.internet : recordedInternet((*journal)->snapshot());
  auto locks = lockLab(lab.key, inet, options);
  if (!locks) return unexpected(locks.error());
  journal = Journal::open(lab);  // what the record says now, under the lock
  if (!journal) return unexpected(journal.error());
  Journal& j = **journal;
  const LabRecord before = j.snapshot();

  // 0. Every planned namespace that exists must be this lab's (or the
  //    internet another lab shares): else nothing is changed at all.
  std::vector<const NamespacePlan*> fresh;
  std::set<std::string> planned;
  for (const auto& n : plan.namespaces) {
    planned.insert(n.name);
    auto id = namespaceIdentity(n.name);
    if (id && !*id) {
      fresh.push_back(&n);
      continue;
    }
    const NsRecord* rec = before.find(n.name);
    if (id && rec && rec->id == **id) continue;
    if (id && n.role == Role::kInternet && internetRecorded(j.dir(), n.name, **id)) {
      if (auto r = j.add(n.name, **id, true); !r) return unexpected(r.error());
      continue;
    }
    return makeError(
        ErrorCode::kNotOwned,
        fmt::format("namespace {} exists and no record of this lab says vpcfw made it for this lab (another "
                    "lab's, or not vpcfw's): nothing was changed",
                    n.name));
  }
  // 1. What the lab made and the plan dropped: removed, unless a process
  //    holds it (its name would go, the namespace and its addresses would
  //    live on out of vpcfw's sight): then it is left as it is, links too.
  std::vector<std::string> held;
  for (const auto& n : before.namespaces) {
    if (planned.contains(n.name)) continue;
    const Proven p = prove(n);
    if (p.proof != Proof::kOurs) {
      if (p.proof == Proof::kOther) report.refused.push_back(n.name + ": " + p.why + "; left alone");
      if (auto r = j.remove(n.name); !r) return unexpected(r.error());
      continue;
    }
    if (n.shared && referencedElsewhere(j.dir(), lab.key, n.name, n.id)) {
      if (auto r = j.remove(n.name); !r) return unexpected(r.error());
      continue;
    }
    if (auto holders = namespaceHolders(n.id); !holders.empty()) {
      held.push_back(n.name);
      std::string pids;
      for (const auto& h : holders) pids += (pids.empty() ? "" : ", ") + h;
      report.refused.push_back(
          fmt::format("{}: not removed: held by pid {}; stop that, then run 'vpcfw lab apply' again", n.name, pids));
      continue;
    }
    if (auto r = deleteNamespace(n.name, n.id); !r) {
      report.refused.push_back(n.name + ": " + r.error().message);
      continue;
    }
    if (auto r = j.remove(n.name); !r) return unexpected(r.error());
    report.removed.push_back(n.name);
  }
  // 2. New namespaces, journalled as they are made.
  if (auto r = parallelFor(fresh.size(), jobs,
                           [&](std::size_t i) -> Expected<void> {
                             const NamespacePlan& p = *fresh[i];
                             auto id = createJournalled(p, j);
                             if (!id) return unexpected(id.error());
                             for (const auto& [k, v] : p.sysctls)
                               if (auto s = writeSysctl(p.name, k, v); !s) return withContext(s.error(), p.name);
                             return {};
                           });
      !r)
    return unexpected(r.error());
  for (const auto* f : fresh) report.added.push_back(f->name);
  // 3. A new namespace's link into an existing one may find the name still
  //    taken by the end of a namespace just removed (the kernel tears
  //    namespaces down asynchronously): wait for its RTM_DELLINK.
  auto isFresh = [&](const std::string& ns) {
    return std::any_of(fresh.begin(), fresh.end(), [&](const NamespacePlan* f) { return f->name == ns; });
  };
  for (const auto& l : plan.links) {
    if (isFresh(l.ns) == isFresh(l.peerNs)) continue;
    const std::string& ns = isFresh(l.ns) ? l.peerNs : l.ns;
    const std::string& ifname = isFresh(l.ns) ? l.peer : l.name;
    auto gone = waitLinkGone(ns, ifname, kLinkGoneTimeout);
    if (!gone) return unexpected(gone.error());
    if (!*gone) {  // a stale end whose namespace a process holds: it is this lab's namespace's interface
      auto nl = Rtnl::open(ns);
      if (!nl) return unexpected(nl.error());
      if (auto d = nl->deleteLink(ifname); !d && d.error().code != ErrorCode::kNotFound) return unexpected(d.error());
      report.changes.push_back(ns + ": - link " + ifname + " (a stale end)");
    }
  }
  // 4. Links whose ends are missing.
  std::vector<const LinkPlan*> links;
  std::map<std::string, Rtnl> sessions;  // one socket per namespace
  for (const auto& l : plan.links) {
    auto it = sessions.find(l.ns);
    if (it == sessions.end()) {
      auto nl = Rtnl::open(l.ns);
      if (!nl) return unexpected(nl.error());
      it = sessions.emplace(l.ns, std::move(*nl)).first;
    }
    if (!it->second.ifindex(l.name)) links.push_back(&l);
  }
  sessions.clear();
  if (auto r = parallelFor(links.size(), jobs, [&](std::size_t i) { return makeLink(*links[i]); }); !r)
    return unexpected(r.error());
  for (const auto* l : links) report.changes.push_back(l->ns + ": + link " + l->name + " (" + l->what + ")");
  // 5. Addresses, routes, rules: per namespace, all or nothing.
  const auto kept = linksInto(held, plan);
  std::mutex mu;
  (void)parallelFor(plan.namespaces.size(), jobs, [&](std::size_t i) -> Expected<void> {
    const NamespacePlan& p = plan.namespaces[i];
    if (isFresh(p.name)) {
      auto x = configure(p);
      std::lock_guard lock(mu);
      if (!x) report.refused.push_back(x.error().message);
      return {};
    }
    Reconciled rc;
    const auto k = kept.find(p.name);
    auto x = reconcile(p, plan.links, k == kept.end() ? std::set<std::string>{} : k->second, rc);
    std::lock_guard lock(mu);
    if (!x) {
      report.refused.push_back(x.error().message);
      return {};
    }
    report.changes.insert(report.changes.end(), rc.changes.begin(), rc.changes.end());
    if (rc.addressesChanged && p.role == Role::kInstance) report.readdressed.push_back(p.name);
    return {};
  });
  // 6. Rules: only the difference.
  std::optional<compile::Placement> placement;
  if (options.model) placement = compile::labPlacement(*options.model);
  for (const auto& rs : plan.rulesets) {
    nft::ApplyOptions o;
    o.netns = rs.fabric;
    if (placement) o.previousSets = track::untrackedSetNames();
    auto a = nft::applyRuleset(rs, o);
    if (!a) {
      report.refused.push_back(rs.fabric + ": " + a.error().message);
      continue;
    }
    for (const auto& c : a->changes) report.changes.push_back(rs.fabric + ": " + c);
    if (auto d = setAwsConntrackDefaults(rs.fabric); !d)
      report.afterCommit.push_back(rs.fabric + ": " + d.error().message);
    if (!placement) continue;
    // The rules are in force; a failed cut leaves flows running that AWS
    // would have stopped, which is said, not hidden.
    auto cut = track::cutAfterCommit(*a, *options.model, *placement, rs.fabric, rs.fabric);
    if (!cut) {
      report.afterCommit.push_back(rs.fabric + ": untracked flows were not cut: " + cut.error().message);
      continue;
    }
    report.flowsCut += cut->cut.size();
    for (const auto& line : track::describe(*cut)) report.cut.push_back(rs.fabric + ": " + line);
  }
  std::sort(report.readdressed.begin(), report.readdressed.end());
  return report;
}

}  // namespace vpcfw::lab
