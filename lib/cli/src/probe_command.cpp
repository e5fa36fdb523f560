// `vpcfw probe`: real packets through a running lab, with the evaluator's
// prediction beside them. This is the command's options, output and exit
// statuses; planning and the harness are lib/probe.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string_view>

#include "commands.h"
#include "vpcfw/cli/cli.h"
#include "vpcfw/eval/evaluator.h"
#include "vpcfw/lab/lab.h"
#include "vpcfw/probe/plan.h"
#include "vpcfw/probe/run.h"
#include "vpcfw/probe/session.h"

namespace vpcfw::cli {
namespace {

struct ProbeOptions {
  std::string config, from, to, proto = "tcp", family;
  int port = -1, sourcePort = -1, icmpType = -1, icmpCode = 0, timeoutMs = 1000;
  bool explain = false, matrix = false, json = false;
};

std::optional<net::Family> familyOf(const ProbeOptions& o) {
  if (o.family.empty()) return std::nullopt;
  return o.family == "6" ? net::Family::kIpv6 : net::Family::kIpv4;
}

// The run's session with the lab; prints why not and returns the exit status
// on failure. $VPCFW_PROBE_SEED fixes the identifier draws (tests).
expected<probe::Session, int> session(const model::Model& m, std::ostream& err) {
  std::optional<std::uint64_t> seed;
  if (const char* text = std::getenv("VPCFW_PROBE_SEED")) {
    std::uint64_t v = 0;
    const std::string_view sv(text);
    auto [end, ec] = std::from_chars(sv.data(), sv.data() + sv.size(), v);
    if (ec != std::errc() || end != sv.data() + sv.size() || sv.empty()) {
      err << "vpcfw probe: $VPCFW_PROBE_SEED must be a number (nothing was probed)\n";
      return unexpected<int>(kExitUsage);
    }
    seed = v;
  }
  auto inet = internetReported("vpcfw probe", err);
  if (!inet) return unexpected<int>(kExitUsage);
  auto plan = lab::planLab(m, *inet);
  if (!plan) {
    err << "vpcfw probe: " << plan.error().message << " (nothing was probed)\n";
    return unexpected<int>(kExitUsage);
  }
  auto s = probe::openSession(*plan, seed);
  if (!s) {
    err << "vpcfw probe: " << s.error().message << " (is the lab up? nothing was probed)\n";
    return unexpected<int>(kExitHarness);
  }
  return std::move(*s);
}

std::string observedText(const probe::ProbeResult& r) {
  if (r.harnessError()) return "could not be carried out: " + r.error;
  if (!r.requestArrived) return "request dropped" + (r.detail.empty() ? "" : " (" + r.detail + ")");
  if (!r.replyExpected) return "request arrived (no reply expected)";
  if (!r.replyReturned) return "request arrived, reply dropped" + (r.detail.empty() ? "" : " (" + r.detail + ")");
  return "request arrived, reply returned" + (r.detail.empty() ? "" : " (" + r.detail + ")");
}

std::string predictedText(const eval::Verdict& v) {
  if (!v.forward.delivered) {
    const auto* s = v.blockingStep();
    return "request blocked" + (s ? fmt::format(" at {} ({})", s->component, s->rule) : "");
  }
  if (!v.replyExpected) return "request delivered (no reply expected)";
  if (!v.reachable()) {
    const auto* s = v.blockingStep();
    return "reply blocked" + (s ? fmt::format(" at {} ({})", s->component, s->rule) : "");
  }
  return "request and reply get through";
}

nlohmann::json trialJson(const probe::Trial& t, bool withPrediction) {
  const auto& r = t.observed;
  nlohmann::json j{{"from", t.from},
                   {"to", t.to},
                   {"source", t.spec.src.toString()},
                   {"destination", t.spec.dst.toString()},
                   {"protocol", t.spec.protocol.toString()},
                   {"harness_error", r.harnessError()},
                   {"request_arrived", r.requestArrived},
                   {"reply_returned", r.replyReturned},
                   {"reply_expected", r.replyExpected},
                   {"ms", r.ms}};
  if (t.spec.protocol.hasPorts()) {
    j["port"] = t.spec.port;
    j["source_port"] = t.spec.sourcePort;
  } else {
    j["icmp_id"] = t.spec.icmpId;
  }
  if (r.harnessError()) j["error"] = r.error;
  if (!r.detail.empty()) j["detail"] = r.detail;
  if (withPrediction && t.predicted) {
    j["predicted"] = {{"delivered", t.predicted->forward.delivered},
                      {"reachable", t.predicted->reachable()},
                      {"text", predictedText(*t.predicted)}};
    j["agrees"] = probe::agreement(t) == probe::Agreement::kAgrees;
  }
  return j;
}

int probeOne(const model::Model& m, const ProbeOptions& o, std::ostream& out, std::ostream& err) {
  probe::Request req;
  req.flow.from = o.from;
  req.flow.to = o.to;
  auto proto = net::Protocol::parse(o.proto);
  if (!proto) {
    err << "vpcfw probe: --proto: " << proto.error() << '\n';
    return kExitUsage;
  }
  req.flow.protocol = *proto;
  if (proto->hasPorts() && o.port < 0) {
    err << "vpcfw probe: --port is required for " << proto->toString() << '\n';
    return kExitUsage;
  }
  if (!proto->hasPorts() && !proto->isIcmpAny()) {
    err << "vpcfw probe: only tcp, udp, icmp and icmpv6 can be probed\n";
    return kExitUsage;
  }
  req.flow.port = static_cast<std::uint16_t>(std::max(0, o.port));
  req.fixedSourcePort = o.sourcePort >= 0;
  if (req.fixedSourcePort) req.flow.sourcePort = static_cast<std::uint16_t>(o.sourcePort);
  req.flow.icmpType = o.icmpType;
  req.flow.icmpCode = o.icmpCode;
  req.flow.family = familyOf(o);
  // A request the evaluator refuses is a usage error, found before the kernel is asked anything.
  probe::IdentifierPool unchecked({}, 0);
  if (auto e = probe::planProbe(m, req, unchecked); !e) {
    err << "vpcfw probe: " << e.error().message << '\n';
    return kExitUsage;
  }
  auto h = session(m, err);
  if (!h) return h.error();
  auto planned = probe::planProbe(m, req, h->ids);
  if (!planned) {
    err << "vpcfw probe: " << planned.error().message << '\n';
    return kExitHarness;
  }
  auto& t = *planned;
  t.observed = probe::runProbes({t.spec}, h->view.entries, std::chrono::milliseconds(o.timeoutMs)).front();
  const auto agreement = probe::agreement(t);
  if (o.json) {
    out << jsonText(trialJson(t, o.explain)) << '\n';
  } else {
    std::string what = t.spec.protocol.hasPorts()
                           ? fmt::format("{} {}:{} -> {}:{}", t.spec.protocol.toString(), t.spec.src.toString(),
                                         t.spec.sourcePort, t.spec.dst.toString(), t.spec.port)
                           : fmt::format("{} {} -> {} (id {})", t.spec.protocol.toString(), t.spec.src.toString(),
                                         t.spec.dst.toString(), t.spec.icmpId);
    out << fmt::format("probe {} ({} -> {})\n", what, t.spec.srcNs, t.spec.dstNs);
    out << fmt::format("  observed:  {} [{:.0f} ms]\n", observedText(t.observed), t.observed.ms);
    if (o.explain) {
      out << fmt::format("  predicted: {}\n", predictedText(*t.predicted));
      out << (agreement == probe::Agreement::kAgrees      ? "  the kernel agrees with vpcfw explain\n"
              : agreement == probe::Agreement::kDisagrees ? "  DISAGREEMENT: the kernel and vpcfw explain differ\n"
                                                          : "  no verdict: the probe could not be carried out\n");
    }
  }
  if (t.observed.harnessError()) return kExitHarness;
  if (o.explain) return agreement == probe::Agreement::kAgrees ? kExitOk : kExitDisagree;
  return probe::reachable(t.observed) ? kExitOk : kExitBlocked;
}

std::string cellText(const probe::Trial& t, bool explain) {
  const auto& r = t.observed;
  if (r.harnessError()) return "ERR";
  std::string cell = r.replyReturned ? "ok" : r.requestArrived ? "req" : "--";
  if (explain && probe::agreement(t) == probe::Agreement::kDisagrees) cell += "!";
  return cell;
}

void printMatrix(const probe::Matrix& x, const probe::Summary& sum, bool explain, std::ostream& out) {
  std::size_t w = 6;
  for (const auto& e : x.ends) w = std::max(w, e.size());
  for (std::size_t s = 0; s < x.services.size(); ++s) {
    out << fmt::format("{:<{}}", x.services[s].name(), w + 2);
    for (const auto& e : x.ends) out << fmt::format(" {:>{}}", e, std::max<std::size_t>(e.size(), 4));
    out << '\n';
    for (std::size_t a = 0; a < x.ends.size(); ++a) {
      out << fmt::format("  {:<{}}", x.ends[a], w);
      for (std::size_t b = 0; b < x.ends.size(); ++b) {
        const auto* t = x.at({s, a, b});
        const std::string cell = t ? cellText(*t, explain) : a == b ? "" : "n/a";
        out << fmt::format(" {:>{}}", cell, std::max<std::size_t>(x.ends[b].size(), 4));
      }
      out << '\n';
    }
    out << '\n';
  }
  out << "ok: request and reply got through; req: the request arrived, the reply did not; --: the request was dropped; "
         "n/a: cannot be addressed; ERR: the probe could not be carried out\n";
  out << fmt::format("{} probes", sum.probes);
  if (explain)
    out << fmt::format("; {} disagree with vpcfw explain{}", sum.disagreements, sum.disagreements ? " (marked !)" : "");
  out << fmt::format("; {} could not be carried out{}\n", sum.harnessErrors, sum.harnessErrors ? " (ERR):" : "");
  constexpr std::size_t kShown = 20;  // the reasons repeat; the first ones say what is wrong
  std::size_t shown = 0;
  for (std::size_t i = 0; i < x.trials.size(); ++i) {
    const auto& t = x.trials[i];
    if (!t.observed.harnessError()) continue;
    if (shown++ == kShown) {
      out << fmt::format("  ... and {} more\n", sum.harnessErrors - kShown);
      break;
    }
    out << fmt::format("  {} {} -> {}: {}\n", x.services[x.cells[i].service].name(), t.from, t.to, t.observed.error);
  }
}

int probeMatrix(const model::Model& m, const ProbeOptions& o, std::ostream& out, std::ostream& err) {
  auto h = session(m, err);
  if (!h) return h.error();
  auto x = probe::planMatrix(m, familyOf(o), h->ids);
  if (!x) {
    err << "vpcfw probe: " << x.error().message << '\n';
    return kExitUsage;
  }
  probe::record(x->trials,
                probe::runProbes(probe::specs(x->trials), h->view.entries, std::chrono::milliseconds(o.timeoutMs)));
  const auto sum = probe::summarize(x->trials);
  if (o.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& t : x->trials) arr.push_back(trialJson(t, o.explain));
    nlohmann::json j{{"probes", arr}, {"count", sum.probes}, {"harness_errors", sum.harnessErrors}};
    if (o.explain) j["disagreements"] = sum.disagreements;
    out << jsonText(j) << '\n';
  } else {
    printMatrix(*x, sum, o.explain, out);
  }
  if (sum.harnessErrors) return kExitHarness;
  if (o.explain) return sum.disagreements ? kExitDisagree : kExitOk;
  return kExitOk;
}

int probeCommand(const ProbeOptions& o, std::ostream& out, std::ostream& err) {
  auto m = loadReported(o.config, "nothing was probed", err);
  if (!m) return kExitUsage;
  if (o.matrix) return probeMatrix(*m, o, out, err);
  if (o.from.empty() || o.to.empty()) {
    err << "vpcfw probe: --from and --to are required (or --matrix)\n";
    return kExitUsage;
  }
  return probeOne(*m, o, out, err);
}

}  // namespace

void addProbeCommand(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<ProbeOptions>();
  auto* cmd =
      app.add_subcommand("probe", "Send real packets through a running lab (vpcfw lab up) and report what got through");
  cmd->add_option("config", o->config, "Config file (YAML) the lab was built from")->required();
  cmd->add_option("--from", o->from, "Source: instance name or internet address");
  cmd->add_option("--to", o->to, "Destination: instance name or internet address");
  cmd->add_option("--proto", o->proto, "tcp, udp, icmp or icmpv6")->capture_default_str();
  cmd->add_option("--port", o->port, "Destination port (tcp/udp)")->check(CLI::Range(0, 65535));
  cmd->add_option("--sport", o->sourcePort,
                  "Source port, used as given (default: a fresh one that no tracked flow holds)")
      ->check(CLI::Range(1, 65535));
  cmd->add_option("--icmp-type", o->icmpType, "ICMP type (default: echo request)")->check(CLI::Range(0, 255));
  cmd->add_option("--icmp-code", o->icmpCode, "ICMP code")->check(CLI::Range(0, 255));
  cmd->add_option("--family", o->family, "4 or 6, when both ends are instances")->check(CLI::IsMember({"4", "6"}));
  cmd->add_option("--timeout", o->timeoutMs, "Milliseconds to wait for each probe")
      ->check(CLI::Range(50, 60000))
      ->capture_default_str();
  cmd->add_flag("--explain", o->explain,
                "Set vpcfw explain's prediction beside the observation (exit 3 when they differ)");
  cmd->add_flag("--matrix", o->matrix, "Every instance pair on every port the config's rules name, and ICMP echo");
  cmd->add_flag("--json", o->json, "As JSON");
  cmd->callback(
      [&selected, o] { selected = [o](std::ostream& out, std::ostream& err) { return probeCommand(*o, out, err); }; });
}

}  // namespace vpcfw::cli
