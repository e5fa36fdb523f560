// vpcfwd's core (daemon.h): one event loop over signals, the config's
// directories (inotify), the ruleset monitors of the fabrics it enforces,
// the control socket, the debounce and watchdog timers.
//
// A reload is load -> validate -> compile -> one atomic batch per fabric,
// computed against the daemon's record of what it committed (no read-back
// while the monitor vouches for the record). Drift is any transaction on
// vpcfw's table whose generation is not one of the daemon's own commits; it
// is repaired by a read-back and the minimal batch.
#include "vpcfw/service/daemon.h"

#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include "vpcfw/base/diagnostic.h"
#include "vpcfw/collect/collector.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/compile/incremental.h"
#include "vpcfw/config/source.h"
#include "vpcfw/eval/evaluator.h"
#include "vpcfw/eval/report.h"
#include "vpcfw/flowlog/record.h"
#include "vpcfw/flowlog/writer.h"
#include "vpcfw/lab/lab.h"
#include "vpcfw/lab/plan.h"
#include "vpcfw/names/names.h"
#include "vpcfw/nft/applier.h"
#include "vpcfw/nft/monitor.h"
#include "vpcfw/nft/netns.h"
#include "vpcfw/service/control.h"
#include "vpcfw/service/loop.h"
#include "vpcfw/service/metrics.h"
#include "vpcfw/state/state.h"
#include "vpcfw/track/untracked.h"

namespace vpcfw::service {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// A file event starts the debounce; later events push it back, but never
// past this much after the first (a file rewritten in a loop still reloads).
constexpr auto kMaxDebounce = std::chrono::milliseconds(500);
// Own generations remembered to tell the monitor's echo of our commits from
// someone else's change.
constexpr std::size_t kOwnGenerations = 64;

std::string wallTime(std::chrono::system_clock::time_point t) {
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::chrono::system_clock::to_time_t(t)));
}

double secondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// One fabric the daemon enforces: a namespace (or this machine) with its
// desired ruleset, its monitor and the record of what was committed there.
struct Fabric {
  std::string name;                  // the ruleset's fabric
  std::optional<std::string> netns;  // where it lives; nullopt: the daemon's own namespace
  // What the fabric must hold: in host mode the incremental compiler's
  // result (kept there, patched in place by each reload), in lab mode the
  // lab plan's copy in `owned`.
  const compile::Ruleset* desired = nullptr;
  std::optional<compile::Ruleset> owned;
  std::optional<nft::Monitor> monitor;
  nft::TableRecord record;
  std::deque<std::uint32_t> own;  // generations of our own commits
  bool repairQueued = false;
  std::string identity;  // the namespace's nsfs identity when the monitor was opened
  // Not enforcing: the last apply or repair failed (a foreign table took the
  // name, the kernel refused); what and since when, for STATUS.
  std::optional<std::string> failing;
  std::chrono::system_clock::time_point failingSince;
  std::chrono::milliseconds retry{200};
  // Drift log lines are summarised under a storm.
  Clock::time_point lastDriftLog{};
  std::size_t quietRepairs = 0;

  bool isOwn(std::uint32_t gen) const { return std::find(own.begin(), own.end(), gen) != own.end(); }
  void remember(std::uint32_t gen) {
    own.push_back(gen);
    while (own.size() > kOwnGenerations) own.pop_front();
  }
};

struct ReloadOutcome {
  enum class Result { kCommitted, kUnchanged, kRejected, kFailed };
  Result result = Result::kFailed;
  std::vector<std::string> diagnostics;  // formatted, one per line
  std::string message;
  std::uint64_t generation = 0;  // in force afterwards
  double seconds = 0;
};

std::string_view resultName(ReloadOutcome::Result r) {
  switch (r) {
    case ReloadOutcome::Result::kCommitted:
      return "committed";
    case ReloadOutcome::Result::kUnchanged:
      return "unchanged";
    case ReloadOutcome::Result::kRejected:
      return "rejected";
    case ReloadOutcome::Result::kFailed:
      return "failed";
  }
  return "failed";
}

class Daemon {
 public:
  Daemon(const DaemonOptions& o, const LogFn& log, EventLoop& loop) : o_(o), log_(log), loop_(loop) {}
  ~Daemon() {
    if (inotify_ >= 0) ::close(inotify_);
    if (signals_ >= 0) ::close(signals_);
  }

  // Loads and enforces the config once; false: exit 1 (nothing was changed
  // unless the kernel refused a batch, which changes nothing either).
  bool start() {
    host_ = o_.host;
    if (host_.empty() && !o_.lab) {
      char buf[256] = {};
      if (::gethostname(buf, sizeof buf - 1) != 0) {
        say(LogLevel::kError, "cannot read this machine's hostname; pass --host");
        return false;
      }
      host_ = buf;
    }
    source_.emplace(config::ConfigSource::open(o_.config));
    if (!lockInstance()) return false;
    if (!setUpSignals() || !setUpInotify()) return false;
    auto outcome = reloadNow(true);
    if (outcome.result != ReloadOutcome::Result::kCommitted && outcome.result != ReloadOutcome::Result::kUnchanged)
      return false;
    if (!setUpControl()) return false;
    setUpWatchdog();
    sd_notify(0, fmt::format("READY=1\nSTATUS={}", statusLine()).c_str());
    say(LogLevel::kInfo, fmt::format("enforcing generation {}: {}", generation_, statusLine()));
    return true;
  }

 private:
  // ------------------------------------------------------------ logging
  void say(LogLevel l, std::string_view text) const { log_(l, text); }

  // ------------------------------------------------------------ set-up
  bool setUpSignals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    // Blocked in every thread (runInNetns threads inherit the mask): the
    // signals arrive only through the signalfd.
    if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) return false;
    ::signal(SIGPIPE, SIG_IGN);
    signals_ = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signals_ < 0) {
      say(LogLevel::kError, fmt::format("signalfd: {}", std::strerror(errno)));
      return false;
    }
    auto r = loop_.add(signals_, EPOLLIN, [this](std::uint32_t) { onSignal(); });
    if (!r) say(LogLevel::kError, r.error().message);
    return r.has_value();
  }

  bool setUpInotify() {
    inotify_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inotify_ < 0) {
      say(LogLevel::kError, fmt::format("inotify: {}", std::strerror(errno)));
      return false;
    }
    auto r = loop_.add(inotify_, EPOLLIN, [this](std::uint32_t) { onFileEvent(); });
    if (!r) say(LogLevel::kError, r.error().message);
    return r.has_value();
  }

  // Watches the directories the config's files live in (and those its
  // symlinks point into): editors write a new file and rename it over the
  // old one, which a watch on the file itself would miss.
  void rewatch() {
    std::error_code ec;
    isDirectory_ = std::filesystem::is_directory(o_.config, ec);
    watchedNames_.clear();
    std::set<std::string> dirs;
    for (const auto& d : source_->directories()) dirs.insert(d);
    // A file that is a symlink: its target's name and directory too. (A
    // watch on a directory path already follows the path's symlinks, so only
    // links in the last component need resolving: a realpath per file per
    // reload costs more than the rest of a small reload.)
    for (const auto& file : source_->files()) {
      watchedNames_.insert(std::filesystem::path(file).filename().string());
      struct stat ls {};
      if (::lstat(file.c_str(), &ls) != 0 || !S_ISLNK(ls.st_mode)) continue;
      auto real = std::filesystem::canonical(file, ec);
      if (ec) continue;
      watchedNames_.insert(real.filename().string());
      dirs.insert(real.parent_path().string());
    }
    if (!isDirectory_) watchedNames_.insert(std::filesystem::path(o_.config).filename().string());
    if (!isDirectory_) dirs.insert(std::filesystem::absolute(o_.config, ec).parent_path().string());
    // A watch follows its inode: once the directory was renamed away or
    // deleted and another made in its place, the path is not watched any
    // more. Such watches are dropped and the path watched afresh.
    for (auto it = watches_.begin(); it != watches_.end();) {
      struct stat st {};
      const bool same =
          ::stat(it->second.path.c_str(), &st) == 0 && st.st_dev == it->second.dev && st.st_ino == it->second.ino;
      if (!dirs.count(it->second.path) || !same) {
        ::inotify_rm_watch(inotify_, it->first);
        it = watches_.erase(it);
      } else {
        ++it;
      }
    }
    bool missing = false;
    for (const auto& d : dirs) {
      bool have = false;
      for (const auto& [wd, w] : watches_) have = have || w.path == d;
      if (have) continue;
      int wd = ::inotify_add_watch(inotify_, d.c_str(),
                                   IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB |
                                       IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
      if (wd < 0) {
        // A directory that does not exist yet (conf.d) is watched once a
        // reload finds it; the parent's watch sees it appear.
        if (errno != ENOENT)
          say(LogLevel::kWarning, fmt::format("cannot watch {}: {}", escapeForMessage(d), std::strerror(errno)));
        missing = true;
        continue;
      }
      struct stat st {};
      if (::stat(d.c_str(), &st) != 0) st = {};
      watches_[wd] = Watched{d, st.st_dev, st.st_ino};
    }
    // The config's own directory gone (rm -rf, then made again): nothing
    // watched would see it come back, so look again every second until it
    // is there, and reload then.
    if (missing && !rewatchTimer_) {
      rewatchTimer_ = loop_.after(std::chrono::seconds(1), [this] {
        rewatchTimer_.reset();
        const auto before = watches_.size();
        rewatch();
        if (watches_.size() > before) {
          say(LogLevel::kInfo, "config directory is back: reloading");
          reloadNow(false);
        }
      });
    }
  }

  bool setUpControl() {
    ControlOptions co;
    co.path = o_.controlSocket.empty() ? state::runDir() + "/vpcfwd.sock" : o_.controlSocket;
    co.readGroup = lookupGroup(o_.socketGroup.empty() ? kControlGroup : o_.socketGroup);
    auto server = ControlServer::create(loop_, co);
    if (!server) {
      say(LogLevel::kError, fmt::format("control socket {}: {}", escapeForMessage(co.path), server.error().message));
      return false;
    }
    control_ = std::move(*server);
    control_->handle("status", Access::kRead,
                     [this](const json&, const Peer&, Reply reply) { reply.ok(statusJson()); });
    control_->handle("metrics", Access::kRead, [this](const json&, const Peer&, Reply reply) {
      reply.ok(json{{"text", metricsText()}});
    });
    control_->handle("explain", Access::kRead, [this](const json& req, const Peer&, Reply reply) {
      if (!model_) return reply.error(kErrInternal, "no config is in force yet");
      auto flow = flowRequestFromJson(req.value("flow", json()));
      if (!flow) return reply.error(kErrInvalid, flow.error().message);
      auto v = eval::explainFlow(*model_, *flow);
      if (!v) return reply.error(kErrInvalid, v.error().message);
      auto result = explainResult(*v);
      result["generation"] = generation_;
      reply.ok(std::move(result));
    });
    control_->handle("reload", Access::kChange, [this](const json&, const Peer& peer, Reply reply) {
      say(LogLevel::kInfo,
          fmt::format("reload requested over the control socket (uid {}, pid {})", peer.uid, peer.pid));
      auto outcome = reloadNow(false);
      if (outcome.result == ReloadOutcome::Result::kCommitted || outcome.result == ReloadOutcome::Result::kUnchanged) {
        auto j = outcomeJson(outcome);
        j["summary"] = fmt::format("{}: {}", outcome.message, statusLine());
        reply.ok(std::move(j));
      } else
        reply.error(kErrRejected, outcome.message, json{{"diagnostics", outcome.diagnostics}});
    });
    return true;
  }

  void setUpWatchdog() {
    std::uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
    watchdogEvery_ = std::chrono::milliseconds(std::max<std::uint64_t>(usec / 2000, 1));
    armWatchdog();
  }
  void armWatchdog() {
    loop_.after(watchdogEvery_, [this] {
      sd_notify(0, "WATCHDOG=1");
      armWatchdog();
    });
  }

  // One daemon per namespace (host mode) or per lab: two would take each
  // other's commits for drift and fight over the table forever.
  bool lockInstance() {
    std::string key;
    if (o_.lab) {
      auto id = lab::labIdOf(o_.config);
      if (!id) {
        say(LogLevel::kError, id.error().message);
        return false;
      }
      key = "lab-" + id->key;
    } else {
      auto id = nft::netnsIdentity(o_.netns);
      if (!id) {
        say(LogLevel::kError, id.error().message);
        return false;
      }
      key = "netns-" + *id;
    }
    auto lock = state::Lock::acquire("vpcfwd", key, std::chrono::milliseconds(0), nullptr);
    if (!lock) {
      say(LogLevel::kError,
          fmt::format("another vpcfwd enforces this {}: {}", o_.lab ? "lab" : "namespace", lock.error().message));
      return false;
    }
    instanceLock_.emplace(std::move(*lock));
    return true;
  }

  // ------------------------------------------------------------ events
  void onSignal() {
    signalfd_siginfo si{};
    while (::read(signals_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      if (si.ssi_signo == SIGHUP) {
        say(LogLevel::kInfo, "SIGHUP: reloading");
        reloadNow(false);
      } else {
        say(LogLevel::kInfo, fmt::format("{}: stopping; the rules stay in force (vpcfw flush removes them)",
                                         si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT"));
        sd_notify(0, "STOPPING=1");
        stopFlowLogs();
        loop_.stop();
      }
    }
  }

  void onFileEvent() {
    alignas(inotify_event) char buf[16384];
    bool relevant = false;
    for (;;) {
      ssize_t n = ::read(inotify_, buf, sizeof buf);
      if (n <= 0) break;
      for (ssize_t off = 0; off < n;) {
        const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
        off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        if (ev->mask & (IN_Q_OVERFLOW | IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
          relevant = true;
          continue;
        }
        std::string name = ev->len ? std::string(ev->name) : std::string();
        auto w = watches_.find(ev->wd);
        const std::string dir = w != watches_.end() ? w->second.path : std::string();
        // A regular file just created is still being written: its
        // IN_CLOSE_WRITE says when it is whole. Reading it now could apply
        // a prefix that parses as a smaller valid config (a NACL without
        // its deny rules). Symlinks and directories are whole at creation.
        if ((ev->mask & IN_CREATE) && !(ev->mask & IN_ISDIR) && !dir.empty() && !name.empty()) {
          struct stat st {};
          if (::fstatat(AT_FDCWD, (dir + "/" + name).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            continue;
        }
        if (name.empty() || affects(name)) relevant = true;
      }
    }
    if (!relevant) return;
    const auto now = Clock::now();
    if (!debounceTimer_)
      firstEvent_ = now;
    else
      loop_.cancel(*debounceTimer_);
    auto delay = o_.debounce;
    const auto latest = firstEvent_ + kMaxDebounce;
    if (now + delay > latest)
      delay = std::chrono::duration_cast<std::chrono::milliseconds>(std::max(latest - now, Clock::duration::zero()));
    debounceTimer_ = loop_.after(delay, [this] {
      debounceTimer_.reset();
      say(LogLevel::kInfo, "config changed: reloading");
      reloadNow(false);
    });
  }

  // Whether a change to directory entry `name` can change the config: one of
  // the files it read (or a symlink's target), a YAML file that a directory
  // config would pick up, conf.d itself. Editors' swap and backup files
  // (hidden, `~`, `#...#`) are not.
  bool affects(std::string_view name) const {
    if (watchedNames_.count(std::string(name))) return true;
    if (!isDirectory_ || name.empty() || name.front() == '.') return false;
    return name == "conf.d" || (name.size() > 5 && name.substr(name.size() - 5) == ".yaml");
  }

  void onMonitor(Fabric& f) {
    bool drift = false;
    std::vector<std::string> what, who;
    auto complete = f.monitor->drain([&](const nft::Transaction& t) {
      if (follow(f, t)) return;
      drift = true;
      for (const auto& w : t.what) what.push_back(w);
      who.push_back(fmt::format("{} (pid {}, generation {})", t.process.empty() ? "?" : escapeForMessage(t.process),
                                t.pid, t.generation));
    });
    if (!complete) {
      say(LogLevel::kWarning, fmt::format("{}: {}", f.name, complete.error().message));
      f.record.invalidate();
      drift = true;
    } else if (!*complete && !survivesOverflow(f)) {
      say(LogLevel::kWarning,
          fmt::format("{}: the kernel dropped ruleset announcements; reading the table back", f.name));
      drift = true;
    }
    if (!drift) return;
    if (!what.empty() && Clock::now() - f.lastDriftLog >= std::chrono::seconds(1))
      say(LogLevel::kWarning,
          fmt::format("{}: table inet vpcfw changed by {}: {}{}", f.name, fmt::join(who, ", "),
                      fmt::join(what.begin(), what.begin() + std::min<std::size_t>(what.size(), 8), "; "),
                      what.size() > 8 ? fmt::format("; and {} more", what.size() - 8) : std::string()));
    repair(f);
  }

  void repair(Fabric& f) {
    const auto t0 = Clock::now();
    auto r = applyTo(f);
    if (!r) {
      ++repairFailures_;
      const bool fresh = !f.failing || *f.failing != r.error().message;
      if (fresh) {
        f.failing = r.error().message;
        f.failingSince = std::chrono::system_clock::now();
        say(LogLevel::kError,
            fmt::format("{}: NOT ENFORCING: drift repair failed: {} (retrying)", f.name, r.error().message));
        refreshStatus();
      }
      // Try again, backing off: a failed repair must not leave the drift
      // standing, nor flood the log and the kernel while it lasts.
      if (!f.repairQueued) {
        scheduleRepair(f, f.retry);
        f.retry = std::min(f.retry * 2, std::chrono::milliseconds(10'000));
      }
      return;
    }
    f.retry = std::chrono::milliseconds(200);
    if (f.failing) {
      say(LogLevel::kWarning, fmt::format("{}: enforcing again after: {}", f.name, *f.failing));
      f.failing.reset();
      refreshStatus();
    }
    if (!r->changed) return;
    ++driftRepairs_;
    lastRepair_ = std::chrono::system_clock::now();
    lastRepairSeconds_ = secondsSince(t0);
    if (Clock::now() - f.lastDriftLog < std::chrono::seconds(1)) {
      ++f.quietRepairs;
    } else {
      say(LogLevel::kWarning,
          fmt::format(
              "{}: drift repaired in {:.1f} ms with {} message(s): {}{}", f.name, lastRepairSeconds_ * 1000,
              r->messages,
              fmt::join(r->changes.begin(), r->changes.begin() + std::min<std::size_t>(r->changes.size(), 8), "; "),
              f.quietRepairs ? fmt::format(" ({} more repair(s) in the last second not logged)", f.quietRepairs)
                             : std::string()));
      f.lastDriftLog = Clock::now();
      f.quietRepairs = 0;
    }
    refreshStatus();
    trimLater();
  }

  // `changes`: which objects differ from the ruleset last applied (a reload's
  // incremental compile); nullptr: unknown (a repair: the record is gone).
  void scheduleRepair(Fabric& f, std::chrono::milliseconds delay) {
    if (f.repairQueued) return;
    f.repairQueued = true;
    // By name, not by reference: a lab reload may drop the fabric before
    // the repair is due.
    loop_.after(delay, [this, name = f.name] {
      for (auto& g : fabrics_)
        if (g->name == name) {
          g->repairQueued = false;
          g->record.invalidate();
          repair(*g);
          return;
        }
    });
  }

  Expected<nft::ApplyReport> applyTo(Fabric& f, const compile::RulesetChanges* changes = nullptr,
                                     bool cutUntracked = false) {
    // The namespace is named, and a name can be given to another namespace
    // (deleted and made again): the monitor would watch the old one and the
    // record describe it. Then both start over in the namespace the name
    // has now.
    if (auto id = nft::netnsIdentity(f.netns); id && *id != f.identity && f.monitor) {
      say(LogLevel::kWarning, fmt::format("{}: the namespace changed identity; watching the new one", f.name));
      loop_.remove(f.monitor->fd());
      f.monitor.reset();
      f.record.invalidate();
      ReloadOutcome ignored;
      if (!openMonitor(f, ignored)) return makeError(ErrorCode::kKernel, ignored.message);
    }
    if (!f.desired) return makeError(ErrorCode::kInternal, "no compiled ruleset for this fabric");
    nft::ApplyOptions ao;
    ao.netns = f.netns;
    ao.record = &f.record;
    ao.lockTimeout = o_.lockTimeout;
    ao.changes = changes;
    if (cutUntracked) ao.previousSets = track::untrackedSetNames();
    // A big commit (a whole table: the start, a repair, a full reload) is
    // announced object by object, which costs the kernel a third of the
    // commit and us the parsing: the monitor leaves for it, and afterwards
    // the generation tells whether anyone else committed meanwhile.
    std::optional<std::uint32_t> before;
    if (f.monitor && (!f.record.valid() || !changes || changes->all)) {
      if (auto g = nft::rulesetGeneration(f.netns); g && f.monitor->subscribe(false)) before = *g;
    }
    auto r = nft::applyRuleset(*f.desired, ao);
    if (r && r->changed) f.remember(r->generation);
    if (before) {
      auto joined = f.monitor->subscribe(true);
      auto now = nft::rulesetGeneration(f.netns);
      if (!joined || !now || *now != (r ? r->generation : *before)) {
        f.record.invalidate();
        say(LogLevel::kInfo, fmt::format("{}: the ruleset changed during our commit; checking the table", f.name));
        scheduleRepair(f, std::chrono::milliseconds(0));
      }
    }
    return r;
  }

  // ------------------------------------------------------------ reload
  // A reload's garbage (the parsed YAML, the old model) goes back to the
  // system instead of staying in the heap as RSS, once reloads have been
  // quiet for a while: trimming after each one would make the next fault
  // its pages in again (tens of ms at 60,000 rules), on the path a one-rule
  // edit waits for. One wakeup after a burst; none when idle.
  void trimLater() {
    if (trimTimer_) loop_.cancel(*trimTimer_);
    trimTimer_ = loop_.after(std::chrono::seconds(2), [this] {
      trimTimer_.reset();
      ::malloc_trim(0);
    });
  }

  ReloadOutcome reloadNow(bool initial) {
    if (debounceTimer_) {
      loop_.cancel(*debounceTimer_);
      debounceTimer_.reset();
    }
    const auto t0 = Clock::now();
    if (!initial) {
      sd_notify(0, fmt::format("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
                               std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count())
                       .c_str());
    }
    ReloadOutcome out = reload(initial);
    out.seconds = secondsSince(t0);
    metrics_.observe("vpcfw_sync_duration_seconds", {}, out.seconds);
    out.generation = generation_;
    ++reloads_[std::string(resultName(out.result))];
    lastReload_ = std::chrono::system_clock::now();
    lastOutcome_ = out;
    refreshStatus();
    if (out.result == ReloadOutcome::Result::kRejected || out.result == ReloadOutcome::Result::kFailed) {
      if (!invalidSince_) invalidSince_ = lastReload_;
      for (const auto& d : out.diagnostics) say(LogLevel::kError, d);
      say(LogLevel::kError, initial ? fmt::format("{}; nothing was changed", out.message)
                                    : fmt::format("{}; generation {} stays in force", out.message, generation_));
    } else {
      invalidSince_.reset();
      say(LogLevel::kInfo, fmt::format("{} in {:.1f} ms: {}", out.message, out.seconds * 1000, statusLine()));
    }
    rewatch();
    trimLater();
    if (!initial) sd_notify(0, fmt::format("READY=1\nSTATUS={}", statusLine()).c_str());
    return out;
  }

  ReloadOutcome reload(bool initial) {
    ReloadOutcome out;
    Diagnostics diags;
    auto t0 = Clock::now();
    auto m = source_->load(diags);
    const double loadMs = secondsSince(t0) * 1000;
    for (const auto& d : diags.all()) out.diagnostics.push_back(formatDiagnostic(d));
    if (!m) {
      out.result = ReloadOutcome::Result::kRejected;
      out.message =
          fmt::format("{}: {} error(s); the config was rejected", escapeForMessage(o_.config), diags.errorCount());
      return out;
    }
    auto model = std::make_shared<const model::Model>(std::move(*m));
    t0 = Clock::now();
    auto wanted = o_.lab ? planLab(*model, out) : planHost(model, out);
    const double compileMs = secondsSince(t0) * 1000;
    if (!wanted) {
      restoreCompiler();
      out.result = ReloadOutcome::Result::kRejected;
      return out;
    }
    bool changed = false;
    t0 = Clock::now();
    if (o_.lab) {
      if (!enforceLab(*wanted, *model, out, changed)) return out;
    } else {
      if (!enforceHost(*wanted, *model, out, changed, initial)) {
        restoreCompiler();
        return out;
      }
    }
    model_ = std::move(model);
    if (changed || generation_ == 0) ++generation_;
    syncFlowLogs(wanted->plan ? &*wanted->plan : nullptr);
    out.result = changed ? ReloadOutcome::Result::kCommitted : ReloadOutcome::Result::kUnchanged;
    out.message = changed ? fmt::format("generation {} committed", generation_)
                          : fmt::format("config unchanged in the kernel; generation {}", generation_);
    out.message +=
        fmt::format(" (load + validate {:.1f} ms, compile {:.1f} ms{}, apply {:.1f} ms{})", loadMs, compileMs,
                    o_.lab ? std::string()
                    : compiler_.stats().full
                        ? fmt::format(" (all {} ENIs)", model_->instances.size())
                        : fmt::format(" ({} of {} ENIs)", compiler_.stats().enisRecompiled, model_->instances.size()),
                    secondsSince(t0) * 1000,
                    lastApply_ && !o_.lab
                        ? fmt::format(": linearize {:.1f}, {}, batch {:.1f}, commit {:.1f}", lastApply_->linearizeMs,
                                      lastApply_->fromRecord ? "from the record"
                                                             : fmt::format("read-back {:.1f}", lastApply_->readBackMs),
                                      lastApply_->buildMs, lastApply_->commitMs)
                        : std::string());
    return out;
  }

  struct Wanted {
    const compile::Ruleset* host = nullptr;  // host mode: in compiler_
    std::vector<compile::Ruleset> rulesets;  // lab mode
    std::optional<lab::LabPlan> plan;
  };

  std::optional<Wanted> planHost(const std::shared_ptr<const model::Model>& m, ReloadOutcome& out) {
    auto compiled = compiler_.compile(m);
    if (!compiled) {
      out.message = compiled.error().message;
      return std::nullopt;
    }
    Wanted w;
    for (const auto& r : compiler_.rulesets())
      if (r.hostMode && r.fabric == host_) w.host = &r;
    if (!w.host) {
      // Enforcing nothing because of a typo in --host or a config edit
      // would fail open: refused; `vpcfw flush` is how rules are removed.
      out.message = fmt::format("no instance of the config lives on host {} (--host; `vpcfw flush` removes the rules)",
                                quoteForMessage(host_));
      return std::nullopt;
    }
    return w;
  }

  std::optional<Wanted> planLab(const model::Model& m, ReloadOutcome& out) {
    auto plan = lab::planLab(m, lab::internetNamespace());
    if (!plan) {
      out.message = plan.error().message;
      return std::nullopt;
    }
    Wanted w;
    w.rulesets = plan->rulesets;
    w.plan = std::move(*plan);
    return w;
  }

  // The compiler moved on to a config that is not in force (refused, or the
  // kernel refused its batch): it starts over from the one that is, so that
  // the fabric's desired ruleset is again what the kernel holds and the next
  // reload's changes are counted from it. Slow (a full compile), and only on
  // this path.
  void restoreCompiler() {
    if (o_.lab) return;
    compiler_.reset();
    if (!model_) {
      for (auto& f : fabrics_) f->desired = nullptr;
      return;
    }
    const bool ok = compiler_.compile(model_).has_value();
    for (auto& f : fabrics_) {
      f->desired = nullptr;
      if (ok)
        for (const auto& r : compiler_.rulesets())
          if (r.hostMode && r.fabric == f->name) f->desired = &r;
      // Nothing to repair against: the record (what the kernel holds) stays,
      // and the next reload computes from it.
    }
  }

  // After a config change is in force: the untracked flows it stops
  // (docs/ruleset.md, "Untracked flows"). Drift repairs do not cut: they
  // restore the config's rules, and what a tampered table held says nothing
  // about what AWS would have tracked.
  void cutFlows(const Fabric& f, const nft::ApplyReport& r, const model::Model& m) {
    if (r.previous.empty()) return;
    auto cut = track::cutAfterCommit(r, m, compile::labPlacement(m), f.name, f.netns);
    if (!cut) {
      ++cutFailures_;
      say(LogLevel::kError,
          fmt::format("{}: the rules are in force, but untracked flows were not cut: {}", f.name, cut.error().message));
      return;
    }
    flowsCut_ += cut->cut.size();
    for (const auto& line : track::describe(*cut)) say(LogLevel::kInfo, fmt::format("{}: {}", f.name, line));
  }

  bool enforceHost(Wanted& w, const model::Model& m, ReloadOutcome& out, bool& changed, bool initial) {
    const compile::Ruleset& desired = *w.host;
    if (fabrics_.empty()) {
      auto f = std::make_unique<Fabric>();
      f->name = desired.fabric;
      f->netns = o_.netns;
      if (!openMonitor(*f, out)) return false;
      fabrics_.push_back(std::move(f));
    }
    Fabric& f = *fabrics_.front();
    // Drift seen so far is repaired by this apply too: read the monitor first.
    onMonitorQuiet(f);
    f.desired = &desired;
    auto r = applyTo(f, &compiler_.changes(f.name), true);
    if (!r) {
      out.result = ReloadOutcome::Result::kFailed;
      out.message =
          fmt::format("{}: {}{}", f.name, r.error().message, initial ? "" : "; the kernel refused the whole batch");
      return false;
    }
    changed = r->changed;
    lastApply_ = *r;
    cutFlows(f, *r, m);
    return true;
  }

  bool enforceLab(Wanted& w, const model::Model& m, ReloadOutcome& out, bool& changed) {
    auto id = lab::labIdOf(o_.config);
    if (!id) {
      out.message = id.error().message;
      return false;
    }
    // The lab commands compute against read-backs; the monitors' echo of
    // their commits is ours, and anything else is caught by the check below.
    for (auto& f : fabrics_) onMonitorQuiet(*f);
    lab::LabOptions lo;
    lo.lockTimeout = o_.lockTimeout;
    lo.progress = [this](const std::string& line) { say(LogLevel::kInfo, line); };
    lo.model = &m;
    auto st = lab::labStatus(&*w.plan, &*id);
    const bool up = st && std::any_of(st->namespaces.begin(), st->namespaces.end(),
                                      [](const lab::NamespaceStatus& n) { return n.recorded; });
    if (!up) {
      auto r = lab::labUp(*w.plan, *id, lo);
      if (!r) {
        out.result = ReloadOutcome::Result::kFailed;
        out.message = fmt::format("lab up: {}", r.error().message);
        return false;
      }
      for (const auto& line : r->afterCommit) say(LogLevel::kWarning, fmt::format("lab up committed, but {}", line));
      changed = true;
    } else {
      auto r = lab::labApply(*w.plan, *id, lo);
      if (!r) {
        out.result = ReloadOutcome::Result::kFailed;
        out.message = fmt::format("lab apply: {}", r.error().message);
        return false;
      }
      for (const auto& line : r->refused) say(LogLevel::kWarning, fmt::format("lab apply left alone: {}", line));
      for (const auto& line : r->afterCommit) say(LogLevel::kWarning, fmt::format("lab apply committed, but {}", line));
      for (const auto& line : r->cut) say(LogLevel::kInfo, line);
      flowsCut_ += r->flowsCut;
      changed = !r->changes.empty() || !r->added.empty() || !r->removed.empty();
    }
    // Fabrics now: one per ruleset, each with its monitor.
    std::map<std::string, std::unique_ptr<Fabric>> old;
    for (auto& f : fabrics_) old[f->name] = std::move(f);
    fabrics_.clear();
    for (auto& r : w.rulesets) {
      std::unique_ptr<Fabric> f;
      if (auto it = old.find(r.fabric); it != old.end()) f = std::move(it->second);
      if (!f) {
        f = std::make_unique<Fabric>();
        f->name = r.fabric;
        f->netns = r.fabric;
        if (!openMonitor(*f, out)) return false;
      }
      f->owned = std::move(r);
      f->desired = &*f->owned;
      onMonitorQuiet(*f);
      f->record.invalidate();
      // Verify (and repair) each fabric against a read-back: a change made
      // while the lab command ran is caught here.
      auto a = applyTo(*f);
      if (!a) {
        out.result = ReloadOutcome::Result::kFailed;
        out.message = fmt::format("{}: {}", f->name, a.error().message);
        fabrics_.push_back(std::move(f));
        return false;
      }
      changed = changed || a->changed;
      fabrics_.push_back(std::move(f));
    }
    for (auto& [name, f] : old)
      if (f && f->monitor) loop_.remove(f->monitor->fd());
    return true;
  }

  bool openMonitor(Fabric& f, ReloadOutcome& out) {
    auto id = nft::netnsIdentity(f.netns);
    if (!id) {
      out.result = ReloadOutcome::Result::kFailed;
      out.message = fmt::format("{}: {}", f.name, id.error().message);
      return false;
    }
    f.identity = *id;
    auto m = nft::Monitor::open(f.netns);
    if (!m) {
      out.result = ReloadOutcome::Result::kFailed;
      out.message = fmt::format("{}: cannot watch the ruleset: {}", f.name, m.error().message);
      return false;
    }
    f.monitor.emplace(std::move(*m));
    Fabric* fp = &f;
    auto r = loop_.add(f.monitor->fd(), EPOLLIN, [this, fp](std::uint32_t) { onMonitor(*fp); });
    if (!r) {
      out.result = ReloadOutcome::Result::kFailed;
      out.message = r.error().message;
      return false;
    }
    return true;
  }

  // Keeps the record true across one announced transaction; false: it was
  // drift (someone else changed the table). A change elsewhere moves the
  // record's generation on; our own commits are in it already; a foreign
  // change to the table drops it (the repair reads back), unless the table
  // is gone afterwards (`nft flush ruleset`): then the record says "absent"
  // and the repair recreates the table without reading anything.
  static bool follow(Fabric& f, const nft::Transaction& t) {
    if (!t.touched) {
      if (f.record.valid() && t.generation) f.record.advance(t.generation);
      return true;
    }
    if (f.isOwn(t.generation)) return true;
    if (t.tableGone && t.generation)
      f.record.assumeAbsent(t.generation);
    else
      f.record.invalidate();
    return false;
  }

  // After the kernel dropped announcements: if the ruleset is still at the
  // generation the record is true at, nobody committed anything since, and
  // what was lost was only the echo of our own commit (a big one fills the
  // socket). Otherwise the record is dropped and the table read back.
  bool survivesOverflow(Fabric& f) {
    if (f.record.valid()) {
      auto gen = nft::rulesetGeneration(f.netns);
      if (gen && *gen == f.record.generation()) return true;
    }
    f.record.invalidate();
    return false;
  }

  // Reads the monitor before our own apply: what others changed is repaired
  // by that apply (the record says what the kernel holds, or is dropped and
  // the apply reads back).
  void onMonitorQuiet(Fabric& f) {
    if (!f.monitor) return;
    auto complete = f.monitor->drain([&](const nft::Transaction& t) { (void)follow(f, t); });
    if (!complete)
      f.record.invalidate();
    else if (!*complete)
      (void)survivesOverflow(f);
  }

  // ------------------------------------------------------------ status
  std::string statusLine() const {
    std::string s = fmt::format("generation {}, {} ENI(s), {} rule(s)", generation_, enis_, nftRules_);
    if (invalidSince_)
      s = fmt::format("config invalid since {}; enforcing generation {} ({} ENI(s), {} rule(s))",
                      wallTime(*invalidSince_), generation_, enis_, nftRules_);
    if (driftRepairs_) s += fmt::format("; {} drift repair(s)", driftRepairs_);
    for (const auto& f : fabrics_)
      if (f->failing)
        s = fmt::format("NOT ENFORCING {} since {}: {}; {}", f->name, wallTime(f->failingSince), *f->failing, s);
    return s;
  }

  void refreshStatus() {
    enis_ = 0;
    nftRules_ = 0;
    elements_ = 0;
    for (const auto& f : fabrics_) {
      if (!f->desired) continue;
      for (const auto& s : f->desired->table.sets) {
        elements_ += s.elements.size();
        if (s.name == "enis") enis_ += s.elements.size();
      }
      for (const auto& c : f->desired->table.chains) nftRules_ += c.rules.size();
    }
    if (generation_) sd_notify(0, fmt::format("STATUS={}", statusLine()).c_str());
    if (!o_.metricsFile.empty()) {
      auto r = currentMetrics().writeTextfile(o_.metricsFile);
      if (!r) say(LogLevel::kWarning, fmt::format("metrics file: {}", r.error().message));
    }
  }

  json outcomeJson(const ReloadOutcome& o) const {
    return json{
        {"result", resultName(o.result)},
        {"committed", o.result == ReloadOutcome::Result::kCommitted || o.result == ReloadOutcome::Result::kUnchanged},
        {"generation", o.generation},
        {"message", o.message},
        {"diagnostics", o.diagnostics},
        {"seconds", o.seconds}};
  }

  json statusJson() const {
    json j{{"mode", o_.lab ? "lab" : "host"},
           {"config", o_.config},
           {"generation", generation_},
           {"status", statusLine()},
           {"enis", enis_},
           {"rules", nftRules_},
           {"set_elements", elements_},
           {"drift_repairs", driftRepairs_},
           {"drift_repair_failures", repairFailures_},
           {"untracked_flows_cut", flowsCut_},
           {"untracked_cut_failures", cutFailures_}};
    if (!o_.lab) j["host"] = host_;
    if (o_.netns) j["netns"] = *o_.netns;
    if (lastOutcome_) {
      j["last_reload"] = outcomeJson(*lastOutcome_);
      j["last_reload"]["time"] = wallTime(lastReload_);
    }
    if (invalidSince_) j["config_invalid_since"] = wallTime(*invalidSince_);
    if (lastRepair_) {
      j["last_drift_repair"] = {{"at", wallTime(*lastRepair_)}, {"seconds", lastRepairSeconds_}};
    }
    json fabrics = json::array();
    json drops = json::array();
    for (const auto& f : fabrics_) {
      json fj{{"fabric", f->name}, {"record_valid", f->record.valid()}, {"enforcing", !f->failing}};
      if (f->failing) fj["failing"] = {{"since", wallTime(f->failingSince)}, {"error", *f->failing}};
      // One read of the table per request: its summary and its ENIs' drops.
      auto st = nft::tableStatus(f->netns);
      if (st) {
        fj["table"] = {{"exists", st->exists}, {"owned", st->owned}, {"rules", st->rules}, {"sets", st->sets}};
        for (const auto& d : st->eniDrops)
          drops.push_back(
              {{"fabric", f->name}, {"eni", d.eni}, {"stage", d.stage}, {"packets", d.packets}, {"bytes", d.bytes}});
      } else {
        fj["error"] = st.error().message;
      }
      fabrics.push_back(std::move(fj));
    }
    j["fabrics"] = std::move(fabrics);
    j["drops"] = std::move(drops);
    return j;
  }

  std::string metricsText() const { return currentMetrics().render(); }

  Metrics currentMetrics() const {
    Metrics m = metrics_;
    (void)m.describe("vpcfw_config_valid", MetricType::kGauge, "1 when the last reload was accepted.");
    (void)m.describe("vpcfw_drift_repair_failures_total", MetricType::kCounter, "Drift repairs the kernel refused.");
    (void)m.describe("vpcfw_set_elements", MetricType::kGauge, "Set and map elements in the ruleset in force.");
    for (const char* r : {"committed", "unchanged", "rejected", "failed"}) {
      auto it = reloads_.find(r);
      m.set("vpcfw_reloads_total", {r}, static_cast<double>(it == reloads_.end() ? 0 : it->second));
    }
    m.set("vpcfw_drift_repairs_total", {}, static_cast<double>(driftRepairs_));
    m.set("vpcfw_drift_repair_failures_total", {}, static_cast<double>(repairFailures_));
    (void)m.describe("vpcfw_untracked_flows_cut_total", MetricType::kCounter,
                     "Untracked flows cut because a config change no longer allows them.");
    (void)m.describe("vpcfw_untracked_cut_failures_total", MetricType::kCounter,
                     "Config changes after which the untracked flows could not be cut.");
    m.set("vpcfw_untracked_flows_cut_total", {}, static_cast<double>(flowsCut_));
    m.set("vpcfw_untracked_cut_failures_total", {}, static_cast<double>(cutFailures_));
    m.set("vpcfw_generation", {}, static_cast<double>(generation_));
    m.set("vpcfw_config_valid", {}, invalidSince_ ? 0.0 : 1.0);
    (void)m.describe("vpcfw_enforcing", MetricType::kGauge,
                     "1 while every fabric holds the generation in force (0: a repair keeps failing).");
    m.set("vpcfw_enforcing", {},
          std::none_of(fabrics_.begin(), fabrics_.end(), [](const auto& f) { return f->failing.has_value(); }) ? 1.0
                                                                                                               : 0.0);
    m.set("vpcfw_enis", {}, static_cast<double>(enis_));
    m.set("vpcfw_rules", {}, static_cast<double>(nftRules_));
    m.set("vpcfw_set_elements", {}, static_cast<double>(elements_));
    std::map<std::string, double> allowance;  // ENA's conntrack_allowance_exceeded, per ENI, both directions
    for (const auto& d : drops()) {
      m.set("vpcfw_dropped_packets_total", {d.eni, d.stage}, static_cast<double>(d.packets));
      if (d.stage.starts_with("allowance-")) allowance[d.eni] += static_cast<double>(d.packets);
    }
    for (const auto& [eni, n] : allowance) m.set("vpcfw_conntrack_allowance_exceeded_total", {eni}, n);
    (void)m.describe("vpcfw_flowlog_records_total", MetricType::kCounter,
                     "Flow-log records written, by log-status (OK, NODATA, SKIPDATA).", {"status"});
    (void)m.describe(
        "vpcfw_flowlog_lost_events_total", MetricType::kCounter,
        "Conntrack events and log messages lost, and flows without conntrack counters (each stands behind a "
        "SKIPDATA row).");
    (void)m.describe("vpcfw_flowlog_failures_total", MetricType::kCounter,
                     "Flow-log collectors that could not start or stopped, and writes that failed.");
    (void)m.describe("vpcfw_flowlog_collecting", MetricType::kGauge, "1 while flow logs are collected.");
    for (const char* st : {"OK", "NODATA", "SKIPDATA"}) {
      auto it = flowRecords_.find(st);
      m.set("vpcfw_flowlog_records_total", {st}, static_cast<double>(it == flowRecords_.end() ? 0 : it->second));
    }
    std::uint64_t lost = flowLostEvents_;
    if (collector_) {
      const auto st = collector_->stats();
      lost += st.lostCtEvents + st.lostLogMessages + st.uncountedFlows + st.aggregated.overflowed;
    }
    m.set("vpcfw_flowlog_lost_events_total", {}, static_cast<double>(lost));
    m.set("vpcfw_flowlog_failures_total", {}, static_cast<double>(flowLogFailures_));
    m.set("vpcfw_flowlog_collecting", {}, collecting_ ? 1.0 : 0.0);
    return m;
  }

  struct Drop {
    std::string fabric, eni, stage;
    std::uint64_t packets = 0, bytes = 0;
  };
  // What every ENI has dropped, by stage, read from the kernel's per-ENI drop chains.
  std::vector<Drop> drops() const {
    std::vector<Drop> out;
    for (const auto& f : fabrics_) {
      auto st = nft::tableStatus(f->netns);
      if (!st) continue;
      for (const auto& d : st->eniDrops) out.push_back(Drop{f->name, d.eni, d.stage, d.packets, d.bytes});
    }
    return out;
  }

  // ---------------------------------------------------------- flow logs
  // Collection follows the config in force: started when it has flow logs,
  // restarted (the open intervals written first) when its flow logs or
  // instances change, stopped when it has none. A collector that cannot
  // start is logged and counted; enforcement does not depend on it.
  void syncFlowLogs(const lab::LabPlan* plan) {
    const bool same = collecting_ && collectedModel_ && collectedModel_->flowLogs == model_->flowLogs &&
                      collectedModel_->instances == model_->instances;
    if (same) return;
    stopFlowLogs();
    if (model_->flowLogs.empty()) return;
    std::vector<std::unique_ptr<flowlog::Writer>> writers;
    for (const auto& log : model_->flowLogs) {
      auto format = flowlog::formatOf(log);
      if (!format) {  // validated already; kept for safety
        writers.push_back(nullptr);
        continue;
      }
      switch (log.destination) {
        case model::FlowLog::Destination::kFiles: {
          flowlog::S3LayoutOptions so;
          so.prefix = log.path;
          so.accountId = log.accountId;
          so.region = model_->region;
          so.flowLogId = flowlog::awsId("fl", log.name);
          so.format = *format;
          writers.push_back(flowlog::makeS3LayoutWriter(so));
          break;
        }
        case model::FlowLog::Destination::kStreams:
          writers.push_back(flowlog::makeStreamWriter(log.path, *format));
          break;
        case model::FlowLog::Destination::kStdout:
          writers.push_back(flowlog::makeFdWriter(STDOUT_FILENO, *format, true));
          break;
      }
    }
    std::vector<collect::Fabric> fabrics;
    if (plan)
      fabrics = collect::labFabrics(*model_, *plan);
    else
      fabrics.push_back(collect::hostFabric(*model_, host_, o_.netns));
    auto model = model_;
    flowWriters_ = std::move(writers);
    auto c = collect::Collector::open(*model, std::move(fabrics), collect::CollectorOptions{},
                                      [this, model](const model::FlowLog& log, const std::vector<flowlog::Record>& rs) {
                                        writeRecords(*model, log, rs);
                                      });
    if (!c) {
      ++flowLogFailures_;
      say(LogLevel::kError, fmt::format("flow logs: not collecting: {}", c.error().message));
      flowWriters_.clear();
      return;
    }
    collector_ = std::move(*c);
    for (const auto& w : collector_->warnings()) say(LogLevel::kWarning, "flow logs: " + w);
    collectedModel_ = model;
    collecting_ = true;
    for (int fd : collector_->fds()) (void)loop_.add(fd, EPOLLIN, [this](std::uint32_t) { stepFlowLogs(); });
    flowTimer_ = loop_.after(std::chrono::milliseconds(1000), [this] { onFlowTimer(); });
    say(LogLevel::kInfo, fmt::format("flow logs: collecting {} flow log(s)", model_->flowLogs.size()));
  }

  void writeRecords(const model::Model& m, const model::FlowLog& log, const std::vector<flowlog::Record>& rs) {
    const auto k = static_cast<std::size_t>(&log - m.flowLogs.data());
    if (k >= flowWriters_.size() || !flowWriters_[k]) return;
    auto w = flowWriters_[k]->write(rs, static_cast<std::int64_t>(std::time(nullptr)));
    if (!w) {
      // Counted as lost, not as written (a failed file is removed whole).
      ++flowLogFailures_;
      flowLostEvents_ += rs.size();
      say(LogLevel::kError, fmt::format("flow log {}: {}; {} records lost", log.name, w.error().message, rs.size()));
      return;
    }
    for (const auto& r : rs) ++flowRecords_[std::string(flowlog::logStatusName(r.status))];
  }

  void stepFlowLogs() {
    if (!collector_) return;
    if (auto r = collector_->step(0); !r) {
      ++flowLogFailures_;
      say(LogLevel::kError, fmt::format("flow logs: {}; collection stopped", r.error().message));
      stopFlowLogs();
    }
  }

  void onFlowTimer() {
    flowTimer_.reset();
    stepFlowLogs();
    if (collector_) flowTimer_ = loop_.after(std::chrono::milliseconds(1000), [this] { onFlowTimer(); });
  }

  void stopFlowLogs() {
    if (flowTimer_) loop_.cancel(*flowTimer_), flowTimer_.reset();
    if (collector_) {
      for (int fd : collector_->fds()) loop_.remove(fd);
      if (auto r = collector_->flush(); !r) say(LogLevel::kError, fmt::format("flow logs: {}", r.error().message));
      const auto st = collector_->stats();
      flowLostEvents_ += st.lostCtEvents + st.lostLogMessages + st.uncountedFlows + st.aggregated.overflowed;
      collector_.reset();
    }
    for (auto& w : flowWriters_)
      if (w)
        if (auto r = w->close(); !r) say(LogLevel::kError, fmt::format("flow logs: {}", r.error().message));
    flowWriters_.clear();
    collectedModel_.reset();
    collecting_ = false;
  }

  std::unique_ptr<collect::Collector> collector_;
  std::vector<std::unique_ptr<flowlog::Writer>> flowWriters_;
  std::shared_ptr<const model::Model> collectedModel_;
  bool collecting_ = false;
  std::optional<EventLoop::TimerId> flowTimer_;
  std::map<std::string, std::uint64_t> flowRecords_;
  std::uint64_t flowLostEvents_ = 0, flowLogFailures_ = 0;

  const DaemonOptions& o_;
  const LogFn& log_;
  EventLoop& loop_;
  std::string host_;
  std::optional<config::ConfigSource> source_;
  std::shared_ptr<const model::Model> model_;
  compile::IncrementalCompiler compiler_;  // host mode
  std::vector<std::unique_ptr<Fabric>> fabrics_;
  int inotify_ = -1, signals_ = -1;
  std::set<std::string> watchedNames_;
  bool isDirectory_ = false;
  struct Watched {
    std::string path;
    dev_t dev = 0;
    ino_t ino = 0;
  };
  std::map<int, Watched> watches_;
  std::optional<EventLoop::TimerId> rewatchTimer_;
  std::optional<EventLoop::TimerId> debounceTimer_;
  std::optional<EventLoop::TimerId> trimTimer_;
  Clock::time_point firstEvent_;
  std::chrono::milliseconds watchdogEvery_{0};

  std::uint64_t generation_ = 0;
  std::size_t enis_ = 0, nftRules_ = 0, elements_ = 0;
  std::uint64_t driftRepairs_ = 0, repairFailures_ = 0;
  std::uint64_t flowsCut_ = 0, cutFailures_ = 0;  // untracked flows (cutFlows)
  std::optional<std::chrono::system_clock::time_point> lastRepair_;
  double lastRepairSeconds_ = 0;
  std::map<std::string, std::uint64_t> reloads_;
  Metrics metrics_ = vpcfwMetrics();  // the histogram accumulates here; the rest is set when rendered
  std::chrono::system_clock::time_point lastReload_;
  std::optional<ReloadOutcome> lastOutcome_;
  std::optional<std::chrono::system_clock::time_point> invalidSince_;
  std::optional<nft::ApplyReport> lastApply_;
  std::unique_ptr<ControlServer> control_;
  std::optional<state::Lock> instanceLock_;
};

}  // namespace

int runDaemon(const DaemonOptions& options, const LogFn& log) {
  auto loop = EventLoop::create();
  if (!loop) {
    log(LogLevel::kError, loop.error().message);
    return 1;
  }
  Daemon d(options, log, *loop);
  if (!d.start()) return 1;
  auto r = loop->run();
  if (!r) {
    log(LogLevel::kError, r.error().message);
    return 1;
  }
  return 0;
}

}  // namespace vpcfw::service
