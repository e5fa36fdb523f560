// `vpcfw lab up|down|status|apply|exec`.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <memory>

#include "commands.h"
#include "vpcfw/cli/cli.h"
#include "vpcfw/lab/lab.h"
#include "vpcfw/names/names.h"

namespace vpcfw::cli {

std::optional<std::string> internetReported(std::string_view command, std::ostream& err) {
  std::string inet = lab::internetNamespace();
  if (!names::isValidNamespaceName(inet)) {
    err << fmt::format(
        "{}: VPCFW_LAB_INTERNET={} cannot name a namespace (1..{} of [A-Za-z0-9._:@+-], "
        "not starting with '.')\n",
        command, quoteForMessage(inet), names::kNamespaceNameMax);
    return std::nullopt;
  }
  return inet;
}

namespace {

std::string addressesOf(const model::Instance& inst) {
  std::string s = inst.privateIp.toString();
  for (const auto& a : inst.secondaryIps) s += " " + a.toString();
  for (const auto& a : inst.ipv6Addresses) s += " " + a.toString();
  return s;
}

void printSummary(const model::Model& m, const lab::LabPlan& plan, std::ostream& out) {
  out << fmt::format("{:<16} {:<12} {:<12} {:<32} {:<15} {}\n", "INSTANCE", "VPC", "SUBNET", "ADDRESSES", "PUBLIC IP",
                     "NAMESPACE");
  for (const auto& inst : m.instances) {
    if (inst.placement.kind != model::Placement::Kind::kLabNamespace || inst.vpc == model::kNone) continue;
    out << fmt::format("{:<16} {:<12} {:<12} {:<32} {:<15} {}\n", inst.name, m.vpcs[inst.vpc].name, inst.subnetName,
                       addressesOf(inst), inst.publicIp ? inst.publicIp->toString() : "-",
                       lab::instanceNamespace(inst));
  }
  out << '\n' << fmt::format("{:<10} {:<20} {}\n", "ROLE", "OBJECT", "NAMESPACE");
  for (const auto& n : plan.namespaces)
    if (n.role != lab::NamespacePlan::Role::kInstance)
      out << fmt::format("{:<10} {:<20} {}\n", lab::roleName(n.role), n.object, n.name);
  for (const auto& l : plan.links)
    if (l.what.rfind("peering ", 0) == 0)
      out << fmt::format("{:<10} {:<20} {} <-> {}\n", "peering", l.what.substr(8), l.ns, l.peerNs);
  for (const auto& note : plan.notes) out << "note: " << note << '\n';
}

std::optional<lab::LabPlan> planReported(const model::Model& m, std::string_view cmd, std::ostream& err) {
  auto inet = internetReported(fmt::format("vpcfw lab {}", cmd), err);
  if (!inet) return std::nullopt;
  auto plan = lab::planLab(m, *inet);
  if (!plan) {
    err << "vpcfw lab " << cmd << ": " << plan.error().message << '\n';
    return std::nullopt;
  }
  return std::move(*plan);
}

std::optional<lab::LabId> labIdReported(const std::string& path, std::string_view cmd, std::ostream& err) {
  auto id = lab::labIdOf(path);
  if (!id) {
    err << "vpcfw lab " << cmd << ": " << id.error().message << '\n';
    return std::nullopt;
  }
  return *id;
}

// With a config: its plan (nullopt in *plan when none is given); false when
// the config is unusable (diagnostics printed).
bool optionalPlan(const std::string& path, std::string_view consequence, std::string_view cmd,
                  std::optional<lab::LabPlan>& plan, std::ostream& err) {
  if (path.empty()) return true;
  auto m = loadReported(path, consequence, err);
  if (!m) return false;
  plan = planReported(*m, cmd, err);
  return plan.has_value();
}

lab::LabOptions optionsFor(unsigned jobs, bool quiet, std::ostream& err) {
  lab::LabOptions lo;
  lo.jobs = jobs;
  // Lock waits are always said; phases unless --quiet.
  lo.progress = [&err, quiet](const std::string& line) {
    if (!quiet || line.starts_with("waiting")) err << "  " << line << '\n' << std::flush;
  };
  return lo;
}

struct UpOptions {
  std::string config;
  unsigned jobs = 0;
  bool quiet = false;
};

int labUp(const UpOptions& o, std::ostream& out, std::ostream& err) {
  auto m = loadReported(o.config, "nothing was built", err);
  if (!m) return kExitUsage;
  auto plan = planReported(*m, "up", err);
  if (!plan) return kExitUsage;
  auto id = labIdReported(o.config, "up", err);
  if (!id) return kExitUsage;
  auto t0 = std::chrono::steady_clock::now();
  auto r = lab::labUp(*plan, *id, optionsFor(o.jobs, o.quiet, err));
  if (!r) {
    err << "vpcfw lab up: " << r.error().message << '\n';
    return kExitBlocked;
  }
  out << fmt::format(
      "lab up: {} namespaces, {} links, {} addresses, {} routes, {} policy rules, {} rulesets in {:.0f} ms\n\n",
      r->namespaces.size(), r->links, r->addresses, r->routes, r->rules, plan->rulesets.size(), msSince(t0));
  printSummary(*m, *plan, out);
  for (const auto& c : r->afterCommit) err << "vpcfw lab up: the rules are in force, but " << c << '\n';
  return r->afterCommit.empty() ? kExitOk : kExitBlocked;
}

int labDown(const std::string& path, std::ostream& out, std::ostream& err) {
  std::optional<lab::LabPlan> plan;
  if (!optionalPlan(path, "nothing was removed", "down", plan, err)) return kExitUsage;
  std::optional<lab::LabId> id;
  if (!path.empty() && !(id = labIdReported(path, "down", err))) return kExitUsage;
  auto t0 = std::chrono::steady_clock::now();
  auto r = lab::labDown(plan ? &*plan : nullptr, id ? &*id : nullptr, optionsFor(0, true, err));
  if (!r) {
    err << "vpcfw lab down: " << r.error().message << '\n';
    return kExitBlocked;
  }
  for (const auto& n : r->leftAlone) err << "vpcfw lab down: " << n << '\n';
  for (const auto& e : r->errors) err << "vpcfw lab down: error: " << e << '\n';
  out << fmt::format("lab down: removed {} namespaces in {:.0f} ms\n", r->removed.size(), msSince(t0));
  return r->errors.empty() ? kExitOk : kExitBlocked;
}

int labStatus(const std::string& path, bool json, std::ostream& out, std::ostream& err) {
  std::optional<lab::LabPlan> plan;
  if (!optionalPlan(path, "no status", "status", plan, err)) return kExitUsage;
  std::optional<lab::LabId> id;
  if (!path.empty() && !(id = labIdReported(path, "status", err))) return kExitUsage;
  auto st = lab::labStatus(plan ? &*plan : nullptr, id ? &*id : nullptr);
  if (!st) {
    if (json) out << jsonText(nlohmann::json{{"error", st.error().message}, {"up_to_date", false}}) << '\n';
    err << "vpcfw lab status: " << st.error().message << '\n';
    return kExitBlocked;
  }
  const bool running =
      std::any_of(st->namespaces.begin(), st->namespaces.end(), [](const auto& n) { return n.exists; });
  auto stateOf = [&](const lab::NamespaceStatus& n) -> std::string {
    if (!n.exists) return "missing";
    if (!n.recorded) return "foreign";
    if (!n.verified) return "unknown";
    if (plan && !n.planned) return "extra";
    return n.differences.empty() ? "up" : "differs";
  };
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& n : st->namespaces) {
      nlohmann::json j{{"namespace", n.name},        {"role", n.role},
                       {"object", n.object},         {"state", stateOf(n)},
                       {"exists", n.exists},         {"planned", n.planned},
                       {"recorded", n.recorded},     {"verified", n.verified},
                       {"interfaces", n.interfaces}, {"interfaces_up", n.interfacesUp},
                       {"rx_packets", n.rxPackets},  {"tx_packets", n.txPackets},
                       {"ruleset", n.hasRuleset},    {"differences", n.differences}};
      if (plan && n.hasRuleset) j["ruleset_current"] = n.rulesetCurrent;
      arr.push_back(std::move(j));
    }
    nlohmann::json j{{"running", running}, {"namespaces", arr}, {"problems", st->problems}};
    if (plan) j["up_to_date"] = st->upToDate();
    out << jsonText(j) << '\n';
  } else if (!running && st->namespaces.empty() && st->problems.empty()) {
    out << "no lab is running\n";
  } else {
    out << fmt::format("{:<28} {:<9} {:<14} {:<8} {:>9} {:>10} {:>10}  {}\n", "NAMESPACE", "ROLE", "OBJECT", "STATE",
                       "LINKS UP", "RX PKTS", "TX PKTS", "RULES");
    for (const auto& n : st->namespaces) {
      std::string rules = !n.verified           ? "?"
                          : !n.hasRuleset       ? "-"
                          : !plan || !n.planned ? "loaded"
                          : n.rulesetCurrent    ? "current"
                                                : "differs";
      out << fmt::format("{:<28} {:<9} {:<14} {:<8} {:>9} {:>10} {:>10}  {}\n", n.name, n.role, n.object, stateOf(n),
                         fmt::format("{}/{}", n.interfacesUp, n.interfaces), n.rxPackets, n.txPackets, rules);
      for (const auto& d : n.differences) out << "    " << d << '\n';
    }
    for (const auto& p : st->problems) out << "could not check: " << p << '\n';
    if (plan)
      out << (st->upToDate() ? "the lab matches the config\n"
                             : "the lab differs from the config, or could not be fully checked (vpcfw lab apply)\n");
  }
  if (plan) return st->upToDate() ? kExitOk : kExitBlocked;
  return st->problems.empty() ? kExitOk : kExitBlocked;
}

int labApply(const std::string& path, std::ostream& out, std::ostream& err) {
  auto m = loadReported(path, "nothing was changed", err);
  if (!m) return kExitUsage;
  auto plan = planReported(*m, "apply", err);
  if (!plan) return kExitUsage;
  auto id = labIdReported(path, "apply", err);
  if (!id) return kExitUsage;
  auto t0 = std::chrono::steady_clock::now();
  auto lo = optionsFor(0, true, err);
  lo.model = &*m;
  auto r = lab::labApply(*plan, *id, lo);
  if (!r) {
    err << "vpcfw lab apply: " << r.error().message << '\n';
    return kExitBlocked;
  }
  for (const auto& a : r->added) out << "  + namespace " << a << '\n';
  for (const auto& a : r->removed) out << "  - namespace " << a << '\n';
  for (const auto& a : r->readdressed) out << "  ~ namespace " << a << " (its addresses changed, in place)\n";
  for (const auto& c : r->changes) out << "  ~ " << c << '\n';
  for (const auto& c : r->cut) out << "  x " << c << '\n';
  for (const auto& c : r->refused) err << "vpcfw lab apply: not applied: " << c << '\n';
  for (const auto& c : r->afterCommit) err << "vpcfw lab apply: applied, but " << c << '\n';
  out << fmt::format(
      "lab apply: {} namespaces added, {} removed, {} re-addressed, {} changes, {} untracked flows cut, {} refused in "
      "{:.0f} ms\n",
      r->added.size(), r->removed.size(), r->readdressed.size(), r->changes.size(), r->flowsCut, r->refused.size(),
      msSince(t0));
  return r->refused.empty() && r->afterCommit.empty() ? kExitOk : kExitBlocked;
}

// Runs CMD inside a lab namespace and returns its exit status. TARGET is an
// instance, "internet", "router:<vpc>" or "igw:<vpc>".
int labExec(const std::string& target, const std::string& configPath, const std::vector<std::string>& cmd,
            std::ostream& err) {
  if (cmd.empty()) {
    err << "vpcfw lab exec: no command given (vpcfw lab exec INSTANCE -- CMD ...)\n";
    return kExitUsage;
  }
  std::string ns;
  if (target == "internet") {
    auto inet = internetReported("exec", err);
    if (!inet) return kExitUsage;
    ns = *inet;
  } else if (target.rfind("router:", 0) == 0) {
    ns = names::routerNamespace(target.substr(7));
  } else if (target.rfind("igw:", 0) == 0) {
    ns = names::gatewayNamespace(target.substr(4));
  } else {
    model::Instance inst;
    inst.name = target;
    if (!configPath.empty()) {
      // The config knows an instance's own `netns:` name.
      auto m = loadReported(configPath, "nothing was run", err);
      if (!m) return kExitUsage;
      auto i = m->findInstance(target);
      if (i == model::kNone) {
        err << fmt::format("vpcfw lab exec: {} has no instance {}\n", configPath, target);
        return kExitUsage;
      }
      inst = m->instances[i];
    }
    ns = lab::instanceNamespace(inst);
  }
  const std::string path = names::namespacePath(ns);
  if (path.empty()) {
    err << fmt::format("vpcfw lab exec: '{}' cannot name a lab namespace\n", target);
    return kExitUsage;
  }
  int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    err << fmt::format("vpcfw lab exec: no lab namespace for {} ({})\n", target, path);
    return kExitUsage;
  }
  // Enter the namespace and become the command: its exit status is ours,
  // and a signal for us reaches it.
  if (setns(fd, CLONE_NEWNET) != 0) {
    err << fmt::format("vpcfw lab exec: cannot enter {}: {}\n", path, std::strerror(errno));
    close(fd);
    return kExitBlocked;
  }
  close(fd);
  std::vector<char*> argv;
  for (const auto& a : cmd) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  err.flush();
  execvp(argv[0], argv.data());
  err << fmt::format("vpcfw lab exec: {}: {}\n", cmd[0], std::strerror(errno));
  return 127;
}

}  // namespace

void addLabCommands(CLI::App& app, Runner& selected) {
  auto* labCmd =
      app.add_subcommand("lab", "The namespace lab: a config's VPCs, instances, gateways and peerings on this machine");
  labCmd->require_subcommand(1);

  auto up = std::make_shared<UpOptions>();
  auto* upCmd = labCmd->add_subcommand("up", "Build the lab and apply its rules");
  upCmd->add_option("config", up->config, "Config file (YAML)")->required();
  upCmd->add_option("--jobs", up->jobs, "Parallel workers (default: a few per CPU)")->check(CLI::Range(1, 64));
  upCmd->add_flag("--quiet", up->quiet, "No progress lines");
  upCmd->callback([&selected, up] { selected = [up](std::ostream& o, std::ostream& e) { return labUp(*up, o, e); }; });

  auto down = std::make_shared<std::string>();
  auto* downCmd =
      labCmd->add_subcommand("down", "Remove the namespaces vpcfw made (per its records, also after a crash)");
  downCmd->add_option("config", *down, "Config file: remove only its lab (default: every lab vpcfw has a record of)");
  downCmd->callback(
      [&selected, down] { selected = [down](std::ostream& o, std::ostream& e) { return labDown(*down, o, e); }; });

  struct StatusOptions {
    std::string config;
    bool json = false;
  };
  auto status = std::make_shared<StatusOptions>();
  auto* statusCmd = labCmd->add_subcommand("status", "The running lab's namespaces, links, traffic and rules");
  statusCmd->add_option("config", status->config, "Config file: compare the lab with it (exit 1 when it differs)");
  statusCmd->add_flag("--json", status->json, "As JSON");
  statusCmd->callback([&selected, status] {
    selected = [status](std::ostream& o, std::ostream& e) { return labStatus(status->config, status->json, o, e); };
  });

  auto apply = std::make_shared<std::string>();
  auto* applyCmd = labCmd->add_subcommand("apply", "Change a running lab's rules and instances without rebuilding it");
  applyCmd->add_option("config", *apply, "Config file (YAML)")->required();
  applyCmd->callback(
      [&selected, apply] { selected = [apply](std::ostream& o, std::ostream& e) { return labApply(*apply, o, e); }; });

  struct ExecOptions {
    std::string target, config;
    std::vector<std::string> args;
  };
  auto ex = std::make_shared<ExecOptions>();
  auto* execCmd = labCmd->add_subcommand("exec", "Run a command inside an instance (or internet, router:VPC, igw:VPC)");
  execCmd->add_option("instance", ex->target, "Instance name, 'internet', 'router:<vpc>' or 'igw:<vpc>'")->required();
  execCmd->add_option("--config", ex->config, "Config file (needed when the instance sets its own netns:)");
  execCmd->add_option("command", ex->args, "Command and arguments (after --)")->required();
  execCmd->callback([&selected, ex] {
    selected = [ex](std::ostream&, std::ostream& e) { return labExec(ex->target, ex->config, ex->args, e); };
  });

  addLabFlowLogsCommand(*labCmd, selected);
}

}  // namespace vpcfw::cli
