// `vpcfw lab flowlogs CONFIG`: the config's flow logs collected from the
// running lab's real packets (lib/collect) and printed as their intervals
// close, in each flow log's format, for a terminal beside `vpcfw probe`.
#include <signal.h>
#include <unistd.h>
#include <fmt/format.h>

#include <atomic>
#include <iostream>
#include <memory>

#include "commands.h"
#include "vpcfw/cli/cli.h"
#include "vpcfw/collect/collector.h"
#include "vpcfw/flowlog/format.h"
#include "vpcfw/flowlog/record.h"
#include "vpcfw/lab/lab.h"

namespace vpcfw::cli {
namespace {

std::atomic<bool> gStop{false};
extern "C" void onStopSignal(int) { gStop.store(true); }

struct FlowLogsOptions {
  std::string config;
  bool follow = false;
  double seconds = 0;  // 0: one aggregation interval
  std::vector<std::string> enis;
  std::string action;
  int interval = 0;  // 0: each flow log's own
  bool json = false;
  int socketBuffer = 64 << 20;
};

int labFlowLogs(const FlowLogsOptions& o, std::ostream& out, std::ostream& err) {
  auto m = loadReported(o.config, "nothing was collected", err);
  if (!m) return kExitUsage;
  if (m->flowLogs.empty()) {
    err << "vpcfw lab flowlogs: " << o.config
        << " declares no flow_logs: add one (config/examples/flow-logs.yaml), then `vpcfw lab apply` it\n";
    return kExitUsage;
  }
  std::optional<flowlog::Action> action;
  if (!o.action.empty() && !(action = flowlog::parseAction(o.action))) {
    err << "vpcfw lab flowlogs: --action is ACCEPT or REJECT, not " << quoteForMessage(o.action) << '\n';
    return kExitUsage;
  }
  // --eni takes instance names or their interface ids.
  std::vector<std::string> wanted;
  for (const auto& e : o.enis) {
    std::string id;
    for (const auto& inst : m->instances)
      if (inst.name == e || flowlog::awsId("eni", inst.name) == e) id = flowlog::awsId("eni", inst.name);
    if (id.empty()) {
      err << "vpcfw lab flowlogs: --eni " << quoteForMessage(e) << " is no instance of " << o.config << '\n';
      return kExitUsage;
    }
    wanted.push_back(id);
  }
  std::vector<flowlog::Format> formats;
  for (const auto& log : m->flowLogs) {
    auto f = flowlog::formatOf(log);
    if (!f) {
      err << "vpcfw lab flowlogs: flow log " << log.name << ": " << f.error().message << '\n';
      return kExitUsage;
    }
    formats.push_back(*f);
  }
  auto inet = internetReported("vpcfw lab flowlogs", err);
  if (!inet) return kExitUsage;
  auto plan = lab::planLab(*m, *inet);
  if (!plan) {
    err << "vpcfw lab flowlogs: " << plan.error().message << '\n';
    return kExitUsage;
  }
  auto id = lab::labIdOf(o.config);
  if (!id) {
    err << "vpcfw lab flowlogs: " << id.error().message << '\n';
    return kExitUsage;
  }
  // Only namespaces this lab made, with the config's rules in them: without
  // the drop rules' log statements, REJECT records would be missing unsaid.
  auto st = lab::labStatus(&*plan, &*id);
  if (!st) {
    err << "vpcfw lab flowlogs: " << st.error().message << '\n';
    return kExitBlocked;
  }
  for (const auto& ns : st->namespaces) {
    if (ns.role != "router" || !ns.planned) continue;
    if (!ns.exists || !ns.recorded) {
      err << "vpcfw lab flowlogs: " << ns.name << " is not this lab's running router: `vpcfw lab up " << o.config
          << "` first\n";
      return kExitBlocked;
    }
    if (!ns.rulesetCurrent) {
      err << "vpcfw lab flowlogs: the rules in " << ns.name << " are not what " << o.config
          << " compiles to: `vpcfw lab apply " << o.config << "` first\n";
      return kExitBlocked;
    }
  }

  collect::CollectorOptions co;
  if (o.interval > 0) co.interval = o.interval;
  co.socketBuffer = o.socketBuffer;
  std::int64_t longest = 0;
  for (const auto& log : m->flowLogs)
    longest = std::max<std::int64_t>(longest, co.interval.value_or(log.maxAggregationInterval));
  co.sampleSeconds = std::min<std::int64_t>(5, std::max<std::int64_t>(1, longest));

  std::vector<bool> headerDone(m->flowLogs.size(), false);
  auto sink = [&](const model::FlowLog& log, const std::vector<flowlog::Record>& records) {
    const std::size_t k = static_cast<std::size_t>(&log - m->flowLogs.data());
    const auto& format = formats[k];
    const std::string tag = m->flowLogs.size() > 1 ? fmt::format("[{}] ", log.name) : "";
    for (const auto& r : records) {
      if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), r.eni.interfaceId) == wanted.end()) continue;
      // --action keeps SKIPDATA rows: they stand for lost records of either action (loss is never silent).
      if (action &&
          (r.status == flowlog::LogStatus::kNoData || (r.status == flowlog::LogStatus::kOk && r.action != *action)))
        continue;
      const std::string line = flowlog::render(r, format);
      if (o.json) {
        nlohmann::json j;
        j["flow_log"] = log.name;
        std::size_t pos = 0, field = 0;
        while (field < format.fields().size()) {
          const auto next = line.find(' ', pos);
          j[std::string(flowlog::fieldInfo(format.fields()[field]).name)] = line.substr(pos, next - pos);
          ++field;
          if (next == std::string::npos) break;
          pos = next + 1;
        }
        out << j.dump() << '\n';
      } else {
        if (!headerDone[k]) out << tag << format.header() << '\n';
        headerDone[k] = true;
        out << tag << line << '\n';
      }
    }
    out << std::flush;
  };
  auto fabrics = collect::labFabrics(*m, *plan);
  const std::size_t routers = fabrics.size();
  auto c = collect::Collector::open(*m, std::move(fabrics), co, sink);
  if (!c) {
    err << "vpcfw lab flowlogs: " << c.error().message << '\n';
    return kExitBlocked;
  }
  for (const auto& w : (*c)->warnings()) err << "vpcfw lab flowlogs: warning: " << w << '\n';
  struct sigaction sa {};
  sa.sa_handler = onStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  err << fmt::format("vpcfw lab flowlogs: collecting in {} router(s), {} flow log(s); {}\n", routers,
                     m->flowLogs.size(),
                     o.follow ? "records print as intervals close; Ctrl-C ends"
                              : fmt::format("for {} s", o.seconds > 0 ? o.seconds : static_cast<double>(longest)))
      << std::flush;
  const auto end = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(static_cast<std::int64_t>((o.seconds > 0 ? o.seconds : longest) * 1000));
  while (!gStop.load() && (o.follow || std::chrono::steady_clock::now() < end)) {
    if (auto r = (*c)->step(100); !r) {
      err << "vpcfw lab flowlogs: " << r.error().message << '\n';
      // The open interval, with SKIPDATA where collection broke off.
      if (auto f = (*c)->flush(); !f) err << "vpcfw lab flowlogs: " << f.error().message << '\n';
      return kExitBlocked;
    }
  }
  if (auto r = (*c)->flush(); !r) {
    err << "vpcfw lab flowlogs: " << r.error().message << '\n';
    return kExitBlocked;
  }
  const auto s = (*c)->stats();
  if (s.lostCtEvents + s.lostLogMessages + s.uncountedFlows > 0)
    err << fmt::format(
        "vpcfw lab flowlogs: {} conntrack events and {} log messages lost, {} flows without counters (SKIPDATA "
        "rows say where)\n",
        s.lostCtEvents, s.lostLogMessages, s.uncountedFlows);
  if (s.aggregated.overflowed > 0)
    err << fmt::format(
        "vpcfw lab flowlogs: {} observations of new flows did not fit an interval's table of {} records "
        "(SKIPDATA rows say where)\n",
        s.aggregated.overflowed, co.maxFlowsPerInterval);
  return kExitOk;
}

}  // namespace

void addLabFlowLogsCommand(CLI::App& lab, Runner& selected) {
  auto o = std::make_shared<FlowLogsOptions>();
  auto* cmd = lab.add_subcommand("flowlogs", "The config's flow logs from the running lab's real packets");
  cmd->add_option("config", o->config, "Config file (YAML) with flow_logs:")->required();
  cmd->add_flag("--follow", o->follow, "Keep collecting until interrupted (Ctrl-C prints the open interval)");
  cmd->add_option("--for", o->seconds,
                  "Collect this many seconds, then print the open interval (default: one interval)")
      ->check(CLI::Range(0.1, 86400.0));
  cmd->add_option("--eni", o->enis, "Only these ENIs (instance names or eni- ids)");
  cmd->add_option("--action", o->action, "Only ACCEPT or only REJECT records");
  cmd->add_option("--interval", o->interval, "Aggregation interval in seconds, for every flow log (1..600)")
      ->check(CLI::Range(1, 600));
  cmd->add_flag("--json", o->json, "One JSON object per record, fields by their AWS names");
  cmd->add_option("--socket-buffer", o->socketBuffer, "Receive buffer of each netlink socket, bytes (tests: loss)")
      ->check(CLI::Range(4096, 1 << 30));
  cmd->callback(
      [&selected, o] { selected = [o](std::ostream& out, std::ostream& err) { return labFlowLogs(*o, out, err); }; });
}

}  // namespace vpcfw::cli
