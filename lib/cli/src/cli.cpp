#include "vpcfw/cli/cli.h"

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ostream>
#include <streambuf>

#include "vpcfw/base/diagnostic.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/compile/render.h"
#include "vpcfw/config/loader.h"
#include "vpcfw/config/source.h"
#include "vpcfw/eval/evaluator.h"
#include "vpcfw/eval/report.h"
#include "vpcfw/lab/lab.h"
#include "vpcfw/nft/applier.h"
#include "vpcfw/state/state.h"
#include "vpcfw/track/untracked.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <sys/wait.h>
#include "commands.h"
#include "show.h"

namespace vpcfw::cli {
namespace {

// A config file or directory with the size limit VPCFW_MAX_CONFIG_BYTES sets (a number of
// bytes; docs/config.md); a malformed value is an error, not the default.
std::optional<model::Model> loadConfig(const std::string& path, Diagnostics& diags) {
  config::LoadOptions options;
  options.limitHint = "set VPCFW_MAX_CONFIG_BYTES to a larger number of bytes to read it";
  if (const char* env = std::getenv("VPCFW_MAX_CONFIG_BYTES")) {
    std::string_view v(env);
    std::size_t n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc() || p != v.data() + v.size() || n == 0) {
      diags.error(SourceLocation{"VPCFW_MAX_CONFIG_BYTES", 0, 0},
                  fmt::format("must be a positive number of bytes, not {}", quoteForMessage(v)));
      return std::nullopt;
    }
    options.maxBytes = n;
  }
  // A file or a directory (vpcfw.yaml + conf.d/*.yaml), merged.
  return config::ConfigSource::open(path, std::move(options), /*cache=*/false).load(diags);
}

}  // namespace

// Loads and validates `path`, printing its diagnostics; when it has errors,
// also "<path>: N error(s); <consequence>", and returns nothing.
std::optional<model::Model> loadReported(const std::string& path, std::string_view consequence, std::ostream& err) {
  Diagnostics diags;
  auto m = loadConfig(path, diags);
  err << diags.format();
  if (!m) err << fmt::format("{}: {} error(s); {}\n", escapeForMessage(path), diags.errorCount(), consequence);
  return m;
}

std::string jsonText(const nlohmann::json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

namespace {

nlohmann::json diagnosticsToJson(const Diagnostics& d) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& x : d.all()) {
    nlohmann::json j{{"severity", x.severity == Severity::kError ? "error" : "warning"},
                     {"file", x.where.file},
                     {"line", x.where.line},
                     {"column", x.where.column},
                     {"message", x.message}};
    if (!x.hint.empty()) j["hint"] = x.hint;
    arr.push_back(std::move(j));
  }
  return arr;
}

std::string summary(const model::Model& m) {
  std::size_t rules = 0;
  for (const auto& a : m.nacls) rules += a.ingress.size() + a.egress.size();
  for (const auto& g : m.groups) rules += g.ingress.size() + g.egress.size();
  return fmt::format(
      "{} VPCs, {} subnets, {} network ACLs, {} security groups, {} instances, {} rules (AWS defaults included)",
      m.vpcs.size(), m.subnets.size(), m.nacls.size(), m.groups.size(), m.instances.size(), rules);
}

int validateCommand(const std::string& path, bool json, std::ostream& out, std::ostream& err) {
  Diagnostics diags;
  auto m = loadConfig(path, diags);
  if (json) {
    nlohmann::json j{{"file", path}, {"valid", m.has_value()}, {"diagnostics", diagnosticsToJson(diags)}};
    if (m) j["summary"] = summary(*m);
    out << jsonText(j) << '\n';
  } else {
    err << diags.format();
    if (m)
      out << fmt::format("{}: valid: {}\n", escapeForMessage(path), summary(*m));
    else
      err << fmt::format("{}: {} error(s); nothing was used\n", escapeForMessage(path), diags.errorCount());
  }
  return m ? kExitOk : kExitUsage;
}

struct ExplainOptions {
  std::string config, from, to, proto = "tcp", family;
  int port = -1, sourcePort = 50000, icmpType = -1, icmpCode = 0;
  bool json = false;
  bool allSteps = false;
  bool running = false;  // ask the daemon, about the config it enforces
  std::string socket;
};

int explainCommand(const ExplainOptions& o, std::ostream& out, std::ostream& err) {
  if (o.running) {
    if (!o.config.empty()) {
      err << "vpcfw explain: --running explains the daemon's config; give no config file\n";
      return kExitUsage;
    }
    nlohmann::json flow{{"from", o.from},          {"to", o.to},
                        {"proto", o.proto},        {"sport", o.sourcePort},
                        {"icmp_type", o.icmpType}, {"icmp_code", o.icmpCode}};
    if (o.port >= 0) flow["port"] = o.port;
    if (!o.family.empty()) flow["family"] = o.family;
    if (o.allSteps) flow["all_steps"] = true;
    return explainRunning(flow, o.json, controlSocketPath(o.socket), out, err);
  }
  if (o.config.empty()) {
    err << "vpcfw explain: a config file is required (or --running to ask vpcfwd)\n";
    return kExitUsage;
  }
  auto m = loadReported(o.config, "cannot explain", err);
  if (!m) return kExitUsage;
  eval::FlowRequest req;
  req.from = o.from;
  req.to = o.to;
  auto proto = net::Protocol::parse(o.proto);
  if (!proto || proto->isAll()) {
    err << "vpcfw explain: --proto: " << (proto ? "a flow has one protocol, not 'all'" : proto.error()) << '\n';
    return kExitUsage;
  }
  req.protocol = *proto;
  if (req.protocol.hasPorts()) {
    if (o.port < 0 || o.port > 65535) {
      err << fmt::format("vpcfw explain: --port 0..65535 is required for {}\n", req.protocol.toString());
      return kExitUsage;
    }
    req.port = static_cast<std::uint16_t>(o.port);
  }
  req.sourcePort = static_cast<std::uint16_t>(o.sourcePort);
  req.icmpType = o.icmpType;
  req.icmpCode = o.icmpCode;
  if (o.family == "4") req.family = net::Family::kIpv4;
  if (o.family == "6") req.family = net::Family::kIpv6;
  req.allSteps = o.allSteps;
  auto v = eval::explainFlow(*m, req);
  if (!v) {
    err << "vpcfw explain: " << v.error().message << '\n';
    return kExitUsage;
  }
  if (o.json)
    out << jsonText(eval::verdictToJson(*v)) << '\n';
  else
    out << eval::formatVerdictText(*v);
  return v->reachable() ? kExitOk : kExitBlocked;
}

int showCommand(const std::string& path, std::ostream& out, std::ostream& err) {
  auto m = loadReported(path, "nothing to show", err);
  if (!m) return kExitUsage;
  out << jsonText(modelToJson(*m)) << '\n';
  return kExitOk;
}

int compileCommand(const std::string& path, const std::string& fabric, std::ostream& out, std::ostream& err) {
  auto m = loadReported(path, "nothing compiled", err);
  if (!m) return kExitUsage;
  auto rulesets = compile::compileRulesets(*m, compile::labPlacement(*m));
  if (!rulesets) {
    err << "vpcfw compile: " << rulesets.error().message << '\n';
    return kExitUsage;
  }
  bool found = false;
  for (const auto& r : *rulesets) {
    if (!fabric.empty() && r.fabric != fabric) continue;
    found = true;
    out << compile::renderScript(r) << '\n';
  }
  if (!found && !fabric.empty()) {
    err << fmt::format("vpcfw compile: no fabric named '{}'\n", fabric);
    return kExitUsage;
  }
  return kExitOk;
}

struct KernelOptions {
  std::string config, netns, fabric, host;
  bool check = false, full = false, verbose = false, timing = false, takeover = false;
  double lockTimeout = std::chrono::duration<double>(state::kDefaultLockTimeout).count();  // seconds
};

// CLI::Range lets NaN through (every comparison with it is false).
CLI::Validator finiteSeconds() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        return std::isfinite(v) ? std::string() : std::string("must be a finite number of seconds");
      },
      "SECONDS");
}

std::chrono::milliseconds lockTimeoutMs(double seconds) {
  return std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
}

// Exit status for a failed kernel command: 1 when the kernel, a foreign table
// or another command's lock stood in the way; 2 for usage and config errors.
int kernelFailure(const Error& e) {
  return e.code == ErrorCode::kKernel || e.code == ErrorCode::kBusy || e.code == ErrorCode::kNotOwned ? kExitBlocked
                                                                                                      : kExitUsage;
}

// The rulesets a kernel command works on, each with the namespace it goes to:
// --netns N puts one fabric into N; without it every fabric goes to the lab
// namespace of the same name.
struct Targets {
  model::Model model;
  compile::Placement placement;
  std::vector<std::pair<compile::Ruleset, std::optional<std::string>>> list;
};
Expected<Targets> targets(const KernelOptions& o, std::ostream& out, std::ostream& err) {
  Diagnostics diags;
  auto t0 = std::chrono::steady_clock::now();
  auto m = loadConfig(o.config, diags);
  const double loadMs = msSince(t0);
  err << diags.format();
  if (!m)
    return makeError(ErrorCode::kInvalidArgument, fmt::format("{}: {} error(s); nothing was changed",
                                                              escapeForMessage(o.config), diags.errorCount()));
  t0 = std::chrono::steady_clock::now();
  auto placement = compile::labPlacement(*m);
  auto rulesets = compile::compileRulesets(*m, placement);
  if (o.timing) out << fmt::format("timing: load+validate {:.1f} ms, compile {:.1f} ms\n", loadMs, msSince(t0));
  if (!rulesets) return unexpected(rulesets.error());
  std::vector<std::pair<compile::Ruleset, std::optional<std::string>>> chosen;
  for (auto& r : *rulesets) {
    if (!o.host.empty()) {
      // Host mode: this machine is host `o.host`; its own namespace unless --netns.
      if (!r.hostMode || r.fabric != o.host) continue;
      std::optional<std::string> ns;
      if (!o.netns.empty()) ns = o.netns;
      chosen.emplace_back(std::move(r), ns);
      continue;
    }
    if (r.hostMode) continue;  // applied on that host, with --host
    if (!o.fabric.empty() && r.fabric != o.fabric) continue;
    std::optional<std::string> ns =
        o.netns.empty() ? std::optional<std::string>(r.fabric) : std::optional<std::string>(o.netns);
    chosen.emplace_back(std::move(r), ns);
  }
  if (chosen.empty())
    return makeError(ErrorCode::kInvalidArgument,
                     !o.host.empty()    ? fmt::format("no instance of the config lives on host '{}'", o.host)
                     : o.fabric.empty() ? "the config has no lab instances to enforce (host instances need --host)"
                                        : fmt::format("no fabric named '{}'", o.fabric));
  if (!o.netns.empty() && chosen.size() > 1)
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("the config has {} fabrics; name one with --fabric to put it into --netns {}",
                                 chosen.size(), o.netns));
  return Targets{std::move(*m), std::move(placement), std::move(chosen)};
}

int applyCommand(const KernelOptions& o, std::ostream& out, std::ostream& err) {
  auto t = targets(o, out, err);
  if (!t) {
    err << "vpcfw apply: " << t.error().message << '\n';
    return kExitUsage;
  }
  for (const auto& [ruleset, ns] : t->list) {
    const std::string where = ns ? "netns " + *ns : "this namespace";
    nft::ApplyOptions ao;
    ao.netns = ns;
    ao.check = o.check;
    ao.fullReplace = o.full;
    ao.takeover = o.takeover;
    ao.lockTimeout = lockTimeoutMs(o.lockTimeout);
    ao.lockWaiting = [&](const std::string& holder) {
      err << fmt::format("vpcfw apply: fabric {} ({}): waiting for {} (up to {} s)...\n", ruleset.fabric, where, holder,
                         o.lockTimeout);
    };
    if (!o.check) ao.previousSets = track::untrackedSetNames();
    auto r = nft::applyRuleset(ruleset, ao);
    if (!r) {
      err << fmt::format("vpcfw apply: fabric {} ({}): {}\n", ruleset.fabric, where, r.error().message);
      return kernelFailure(r.error());
    }
    if (o.check)
      out << fmt::format("fabric {} ({}): the kernel accepts the ruleset ({} messages checked, nothing committed)\n",
                         ruleset.fabric, where, r->messages);
    else if (!r->changed)
      out << fmt::format("fabric {} ({}): already up to date, nothing sent\n", ruleset.fabric, where);
    else
      out << fmt::format("fabric {} ({}): committed {} messages ({} bytes) in one batch\n", ruleset.fabric, where,
                         r->messages, r->batchBytes);
    if (r->attempts > 1)
      out << fmt::format("  the ruleset changed under vpcfw {} time(s); read back and computed again\n",
                         r->attempts - 1);
    if (o.timing)
      out << fmt::format("timing: linearize {:.1f} ms, read back {:.1f} ms, build batch {:.1f} ms, commit {:.1f} ms\n",
                         r->linearizeMs, r->readBackMs, r->buildMs, r->commitMs);
    for (const auto& c : r->changes) out << "  " << c << '\n';
    if (o.check) continue;
    // The new rules are in force whatever happens here; flows AWS would
    // have stopped and that keep running are an error, said as one.
    auto cut = track::cutAfterCommit(*r, t->model, t->placement, ruleset.fabric, ns);
    if (!cut) {
      err << fmt::format("vpcfw apply: fabric {} ({}): the rules are in force, but untracked flows were not cut: {}\n",
                         ruleset.fabric, where, cut.error().message);
      return kernelFailure(cut.error());
    }
    for (const auto& line : track::describe(*cut)) out << "  " << line << '\n';
  }
  return kExitOk;
}

int diffCommand(const KernelOptions& o, std::ostream& out, std::ostream& err) {
  auto t = targets(o, out, err);
  if (!t) {
    err << "vpcfw diff: " << t.error().message << '\n';
    return kExitUsage;
  }
  bool same = true;
  for (const auto& [ruleset, ns] : t->list) {
    auto d = nft::diffRuleset(ruleset, ns, o.verbose);
    if (!d) {
      err << fmt::format("vpcfw diff: fabric {}: {}\n", ruleset.fabric, d.error().message);
      return kExitUsage;
    }
    const std::string where = ns ? "netns " + *ns : "this namespace";
    if (d->empty()) {
      out << fmt::format("fabric {} ({}): the kernel holds exactly the config's ruleset\n", ruleset.fabric, where);
      continue;
    }
    same = false;
    out << fmt::format("fabric {} ({}): {} differences\n", ruleset.fabric, where, d->size());
    for (const auto& line : *d) out << "  " << line << '\n';
  }
  return same ? kExitOk : kExitBlocked;
}

struct FlushCliOptions {
  std::string netns;
  bool takeover = false;
  double lockTimeout = std::chrono::duration<double>(state::kDefaultLockTimeout).count();  // seconds
};

int flushCommand(const FlushCliOptions& o, std::ostream& out, std::ostream& err) {
  nft::FlushOptions fo;
  if (!o.netns.empty()) fo.netns = o.netns;
  fo.table = std::string(compile::kTableName);
  fo.takeover = o.takeover;
  fo.lock.timeout = lockTimeoutMs(o.lockTimeout);
  fo.lock.waiting = [&](const std::string& holder) {
    err << fmt::format("vpcfw flush: waiting for {} (up to {} s)...\n", holder, o.lockTimeout);
  };
  auto r = nft::deleteTable(fo);
  if (!r) {
    err << "vpcfw flush: " << r.error().message << '\n';
    return kernelFailure(r.error());
  }
  out << (*r ? "removed table inet vpcfw\n" : "no vpcfw table here; nothing to do\n");
  return kExitOk;
}

int statusCommand(const std::string& netns, bool json, std::ostream& out, std::ostream& err) {
  std::optional<std::string> ns;
  if (!netns.empty()) ns = netns;
  auto st = nft::tableStatus(ns, compile::kTableName);
  if (!st) {
    err << "vpcfw status: " << st.error().message << '\n';
    return kExitUsage;
  }
  const std::string where = ns ? "netns " + *ns : "this namespace";
  if (json) {
    nlohmann::json counters = nlohmann::json::array();
    for (const auto& c : st->counters)
      counters.push_back({{"chain", c.chain}, {"rule", c.comment}, {"packets", c.packets}, {"bytes", c.bytes}});
    nlohmann::json eniDrops = nlohmann::json::array();
    for (const auto& d : st->eniDrops)
      eniDrops.push_back({{"eni", d.eni}, {"stage", d.stage}, {"packets", d.packets}, {"bytes", d.bytes}});
    out << jsonText(nlohmann::json{
               {"namespace", where},
               {"table", st->exists},
               {"owned", st->exists && st->owned},
               {"foreign", st->exists && !st->owned},
               {"dormant", st->dormant},
               {"sets", st->sets},
               {"elements", st->elements},
               {"chains", st->chains},
               {"rules", st->rules},
               {"objects", st->objects},
               {"flowtables", st->flowtables},
               {"counters", counters},
               {"eni_drops", eniDrops},
               {"nacl_verdict_cache", st->cache
                                          ? nlohmann::json{{"generation", st->cacheGeneration}, {"hits", st->cacheHits}}
                                          : nlohmann::json()}})
        << '\n';
    return kExitOk;
  }
  if (!st->exists) {
    out << fmt::format("{}: no vpcfw table (nothing enforced)\n", where);
    return kExitOk;
  }
  if (!st->owned)
    out << fmt::format("{}: {} (no '{}' comment); vpcfw leaves it alone (apply --takeover replaces it)\n", where,
                       nft::kForeignTable, nft::kOwnerMarker);
  out << fmt::format("{}: table inet vpcfw with {} chains, {} rules, {} sets, {} set elements\n", where, st->chains,
                     st->rules, st->sets, st->elements);
  if (st->dormant) out << fmt::format("{}: the table is dormant (flags dormant): it filters nothing\n", where);
  if (st->objects || st->flowtables)
    out << fmt::format("{}: also {} stateful objects and {} flowtables (vpcfw makes none)\n", where, st->objects,
                       st->flowtables);
  if (st->cache)
    out << fmt::format("{}: NACL verdict cache at generation {}: {} packets of established flows took the shortcut\n",
                       where, st->cacheGeneration, st->cacheHits);
  bool any = false;
  for (const auto& c : st->counters) {
    if (c.packets == 0 || nft::isEniDropCounter(c)) continue;
    if (!any) out << "dropped so far, by rule:\n";
    any = true;
    out << fmt::format("  {:>8} packets  {}  ({})\n", c.packets, c.comment, c.chain);
  }
  if (!any) out << "nothing dropped so far\n";
  // Per ENI: every stage it has, zeros too, so that a quiet ENI shows as such.
  std::string eni;
  for (const auto& d : st->eniDrops) {
    if (d.eni != eni) {
      if (eni.empty()) out << "drops by ENI and stage:\n";
      eni = d.eni;
      out << fmt::format("  {}\n", eni);
    }
    out << fmt::format("    {:<14} {:>10} packets {:>12} bytes\n", d.stage, d.packets, d.bytes);
  }
  return kExitOk;
}

// Everything the commands write to stderr passes through here, a line at a
// time: arguments and paths echoed in messages may hold control characters
// (a terminal escape) or invalid UTF-8, and every message is to be one line of
// valid UTF-8 whatever the argument was.
class EscapingBuffer : public std::streambuf {
 public:
  explicit EscapingBuffer(std::ostream& to) : to_(to) {}
  ~EscapingBuffer() override { sync(); }

 protected:
  int overflow(int c) override {
    if (c == traits_type::eof()) return 0;
    if (c == '\n') {
      to_ << escapeForMessage(line_) << '\n';
      line_.clear();
    } else {
      line_ += static_cast<char>(c);
    }
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    for (std::streamsize i = 0; i < n; ++i) overflow(static_cast<unsigned char>(s[i]));
    return n;
  }
  int sync() override {
    if (!line_.empty()) to_ << escapeForMessage(line_);
    line_.clear();
    to_.flush();
    return 0;
  }

 private:
  std::ostream& to_;
  std::string line_;
};

}  // namespace

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& rawErr) {
  EscapingBuffer escaping(rawErr);
  std::ostream err(&escaping);
  CLI::App app{"vpcfw: AWS VPC filtering (network ACLs and security groups) on Linux", "vpcfw"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "vpcfw 0.1.0");

  std::string validatePath;
  bool validateJson = false;
  auto* validate = app.add_subcommand("validate", "Check a config against AWS's rules and quotas");
  validate->add_option("config", validatePath, "Config file (YAML)")->required();
  validate->add_flag("--json", validateJson, "Diagnostics as JSON");

  ExplainOptions ex;
  auto* explain = app.add_subcommand("explain", "Explain, rule by rule, whether a flow and its reply get through");
  explain->add_option("config", ex.config, "Config file (YAML); none with --running");
  explain->add_option("--from", ex.from, "Source: instance name or IP address")->required();
  explain->add_option("--to", ex.to, "Destination: instance name or IP address")->required();
  explain->add_option("--proto", ex.proto, "tcp, udp, icmp, icmpv6 or a protocol number")->capture_default_str();
  explain->add_option("--port", ex.port, "Destination port (tcp/udp)")->check(CLI::Range(0, 65535));
  explain->add_option("--sport", ex.sourcePort, "Source port (tcp/udp)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  explain->add_option("--icmp-type", ex.icmpType, "ICMP type (default: echo request)")->check(CLI::Range(0, 255));
  explain->add_option("--icmp-code", ex.icmpCode, "ICMP code")->check(CLI::Range(0, 255))->capture_default_str();
  explain->add_option("--family", ex.family, "4 or 6, when both ends are instances")->check(CLI::IsMember({"4", "6"}));
  explain->add_flag("--json", ex.json, "Verdict and trace as JSON");
  explain->add_flag("--all-steps", ex.allSteps,
                    "Go on past the first security group or NACL that blocks: every step that would block");
  explain->add_flag("--running", ex.running, "Ask the running vpcfwd about the config it enforces");
  explain->add_option("--socket", ex.socket, "vpcfwd's control socket (with --running)");

  std::string compilePath, compileFabric;
  auto* compileCmd = app.add_subcommand("compile", "Print the nftables ruleset of each fabric (nft -f syntax)");
  compileCmd->add_option("config", compilePath, "Config file (YAML)")->required();
  compileCmd->add_option("--fabric", compileFabric, "Only this fabric (lab: vpcfw-<vpc>)");

  std::string showPath;
  bool showJson = true;
  auto* show = app.add_subcommand("show", "Print the effective model (AWS defaults included) and the lab placement");
  show->add_option("config", showPath, "Config file (YAML)")->required();
  show->add_flag("--json", showJson, "JSON (the only format for now)");

  KernelOptions ko;
  auto* applyCmd = app.add_subcommand("apply", "Enforce the config: one atomic batch per fabric, only what changed");
  applyCmd->add_option("config", ko.config, "Config file (YAML)")->required();
  applyCmd->add_option("--netns", ko.netns, "Network namespace to apply in (default: each fabric's lab namespace)");
  applyCmd->add_option("--fabric", ko.fabric, "Only this fabric (lab: vpcfw-<vpc>)");
  applyCmd->add_option("--host", ko.host,
                       "Host mode: this machine is HOST of the config; its instances' interfaces are ENIs");
  applyCmd->add_flag("--check", ko.check, "Let the kernel validate the batch; commit nothing");
  applyCmd->add_flag("--full", ko.full, "Replace the whole table instead of sending the difference");
  applyCmd->add_flag("--timing", ko.timing, "Print where the time went");
  applyCmd->add_flag("--takeover", ko.takeover, "Replace a table inet vpcfw that vpcfw did not create");
  applyCmd->add_option("--lock-timeout", ko.lockTimeout, "Seconds to wait for another vpcfw command on the same fabric")
      ->check(finiteSeconds())
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  KernelOptions kd;
  auto* diffCmd = app.add_subcommand("diff", "Compare what the kernel holds with what the config wants");
  diffCmd->add_option("config", kd.config, "Config file (YAML)")->required();
  diffCmd->add_option("--netns", kd.netns, "Network namespace");
  diffCmd->add_option("--fabric", kd.fabric, "Only this fabric");
  diffCmd->add_option("--host", kd.host, "Host mode: compare this host's table");
  diffCmd->add_flag("--verbose", kd.verbose, "Show the kernel's and the config's encoding of each difference");
  std::function<int(std::ostream&, std::ostream&)> selected;
  addLabCommands(app, selected);
  addProbeCommand(app, selected);
  addReachCommand(app, selected);
  addDaemonCommands(app, selected);
  addFlowLogCommands(app, selected);

  std::string statusNetns;
  bool statusJson = false;
  auto* statusCmd = app.add_subcommand("status", "What vpcfw enforces here, and what it has dropped");
  statusCmd->add_option("--netns", statusNetns, "Network namespace (default: this one)");
  statusCmd->add_flag("--json", statusJson, "As JSON");
  bool statusRunningFlag = false;
  std::string statusSocket;
  statusCmd->add_flag("--running", statusRunningFlag,
                      "Ask the running vpcfwd (generation, last reload, drift repairs, drops) instead of the kernel");
  statusCmd->add_option("--socket", statusSocket, "vpcfwd's control socket (with --running)");
  FlushCliOptions fl;
  auto* flushCmd = app.add_subcommand("flush", "Remove vpcfw's table (and nothing else)");
  flushCmd->add_option("--netns", fl.netns, "Network namespace (default: this one)");
  flushCmd->add_flag("--takeover", fl.takeover, "Also remove a table inet vpcfw that vpcfw did not create");
  flushCmd->add_option("--lock-timeout", fl.lockTimeout, "Seconds to wait for another vpcfw command on the same fabric")
      ->check(finiteSeconds())
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();

  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      out << (dynamic_cast<const CLI::CallForHelp*>(&e) || dynamic_cast<const CLI::CallForAllHelp*>(&e)
                  ? app.help()
                  : std::string(e.what()) + "\n");
      if (dynamic_cast<const CLI::CallForHelp*>(&e) && app.get_subcommands().size() == 1) out.clear();
      return kExitOk;
    }
    err << "vpcfw: " << e.what() << "\n"
        << "Run 'vpcfw --help' for usage.\n";
    return kExitUsage;
  }
  if (validate->parsed()) return validateCommand(validatePath, validateJson, out, err);
  if (explain->parsed()) return explainCommand(ex, out, err);
  if (show->parsed()) return showCommand(showPath, out, err);
  if (applyCmd->parsed()) return applyCommand(ko, out, err);
  if (diffCmd->parsed()) return diffCommand(kd, out, err);
  if (selected) return selected(out, err);
  if (statusCmd->parsed() && statusRunningFlag) {
    if (!statusNetns.empty()) {
      err << "vpcfw status: --running asks the daemon; --netns does not apply\n";
      return kExitUsage;
    }
    return statusRunning(controlSocketPath(statusSocket), statusJson, out, err);
  }
  if (statusCmd->parsed()) return statusCommand(statusNetns, statusJson, out, err);
  if (flushCmd->parsed()) return flushCommand(fl, out, err);
  if (compileCmd->parsed()) return compileCommand(compilePath, compileFabric, out, err);
  return kExitUsage;
}

}  // namespace vpcfw::cli
