// `vpcfw probe`: real packets through a running lab, with the evaluator's
// prediction beside them.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <random>
#include <set>

#include "commands.h"
#include "vpcfw/cli/cli.h"
#include "vpcfw/eval/evaluator.h"
#include "vpcfw/lab/lab.h"
#include "vpcfw/lab/probe.h"

namespace vpcfw::cli {
namespace {

inline constexpr int kExitDisagree = 3;  // --explain: the kernel and the evaluator differ

struct ProbeOptions {
  std::string config, from, to, proto = "tcp", family;
  int port = -1, sourcePort = -1, icmpType = -1, icmpCode = 0, timeoutMs = 1000;
  bool explain = false, matrix = false, json = false;
};

// One probe with its prediction.
struct Trial {
  std::string from, to;  // as the user named them
  eval::FlowRequest request;
  std::optional<eval::Verdict> predicted;
  lab::ProbeSpec spec;
  lab::ProbeResult observed;
  bool agrees() const {
    if (!predicted) return true;
    if (predicted->forward.delivered != observed.requestArrived) return false;
    if (predicted->forward.delivered && predicted->replyExpected && observed.replyExpected)
      return predicted->reachable() == observed.replyReturned;
    return true;
  }
};

std::string namespaceOf(const model::Model& m, const net::IpAddress& a) {
  if (auto i = m.instanceWithAddress(a); i != model::kNone) return lab::instanceNamespace(m.instances[i]);
  if (auto i = m.instanceWithPublicIp(a); i != model::kNone) return lab::instanceNamespace(m.instances[i]);
  return lab::internetNamespace();
}

// Fills the probe of `t` from the evaluator's view of the flow (which
// addresses each end uses). Errors are the evaluator's.
std::optional<std::string> prepare(const model::Model& m, Trial& t) {
  auto v = eval::explainFlow(m, t.request);
  if (!v) return v.error().message;
  const auto& p = v->forward.packet;
  for (const auto* a : {&p.src, &p.dst})
    if (m.instanceWithAddress(*a) == model::kNone && m.instanceWithPublicIp(*a) == model::kNone &&
        !lab::isLabInternetHost(*a))
      return fmt::format("{} is outside the lab's internet (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)",
                         a->toString());
  t.spec.srcNs = namespaceOf(m, p.src);
  t.spec.src = p.src;
  t.spec.dstNs = namespaceOf(m, p.dst);
  t.spec.dst = p.dst;
  t.spec.protocol = p.protocol;
  t.spec.port = p.dstPort;
  t.spec.sourcePort = p.srcPort;
  if (p.protocol.isIcmpAny()) {
    const bool echo = t.request.icmpType == -1;
    t.spec.icmpType = echo ? -1 : p.icmpType;
    t.spec.icmpCode = p.icmpCode;
  }
  t.predicted = std::move(*v);
  return std::nullopt;
}

std::string observedText(const lab::ProbeResult& r) {
  if (!r.requestArrived) return "request dropped" + (r.error.empty() || r.error == "timed out" ? "" : " (" + r.error + ")");
  if (!r.replyExpected) return "request arrived (no reply expected)";
  if (!r.replyReturned) return "request arrived, reply dropped";
  return "request arrived, reply returned";
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

nlohmann::json trialJson(const Trial& t, bool withPrediction) {
  nlohmann::json j{{"from", t.from},
                   {"to", t.to},
                   {"source", t.spec.src.toString()},
                   {"destination", t.spec.dst.toString()},
                   {"protocol", t.spec.protocol.toString()},
                   {"request_arrived", t.observed.requestArrived},
                   {"reply_returned", t.observed.replyReturned},
                   {"reply_expected", t.observed.replyExpected},
                   {"ms", t.observed.ms}};
  if (t.spec.protocol.hasPorts()) {
    j["port"] = t.spec.port;
    j["source_port"] = t.spec.sourcePort;
  }
  if (!t.observed.error.empty()) j["error"] = t.observed.error;
  if (withPrediction && t.predicted) {
    j["predicted"] = {{"delivered", t.predicted->forward.delivered}, {"reachable", t.predicted->reachable()},
                      {"text", predictedText(*t.predicted)}};
    j["agrees"] = t.agrees();
  }
  return j;
}

std::uint16_t freshSourcePort() {
  // Inside every common ephemeral range (1024-65535, 32768-60999, 49152-65535),
  // and fresh per run, so a probe never rides an earlier run's tracked flow.
  return static_cast<std::uint16_t>(49152 + std::random_device{}() % 11000);
}

int probeOne(const model::Model& m, const ProbeOptions& o, std::ostream& out, std::ostream& err) {
  Trial t;
  t.from = o.from;
  t.to = o.to;
  t.request.from = o.from;
  t.request.to = o.to;
  auto proto = net::Protocol::parse(o.proto);
  if (!proto) {
    err << "vpcfw probe: --proto: " << proto.error() << '\n';
    return kExitUsage;
  }
  t.request.protocol = *proto;
  if (proto->hasPorts() && o.port < 0) {
    err << "vpcfw probe: --port is required for " << proto->toString() << '\n';
    return kExitUsage;
  }
  if (!proto->hasPorts() && !proto->isIcmpAny()) {
    err << "vpcfw probe: only tcp, udp, icmp and icmpv6 can be probed\n";
    return kExitUsage;
  }
  t.request.port = static_cast<std::uint16_t>(std::max(0, o.port));
  t.request.sourcePort = o.sourcePort >= 0 ? static_cast<std::uint16_t>(o.sourcePort) : freshSourcePort();
  t.request.icmpType = o.icmpType;
  t.request.icmpCode = o.icmpCode;
  if (!o.family.empty()) t.request.family = o.family == "6" ? net::Family::kIpv6 : net::Family::kIpv4;
  if (auto e = prepare(m, t)) {
    err << "vpcfw probe: " << *e << '\n';
    return kExitUsage;
  }
  t.observed = lab::runProbes({t.spec}, std::chrono::milliseconds(o.timeoutMs)).front();
  const bool ok = t.observed.replyExpected ? t.observed.replyReturned : t.observed.requestArrived;
  if (o.json) {
    out << trialJson(t, o.explain).dump(2) << '\n';
  } else {
    std::string what = t.spec.protocol.hasPorts()
                           ? fmt::format("{} {}:{} -> {}:{}", t.spec.protocol.toString(), t.spec.src.toString(),
                                         t.spec.sourcePort, t.spec.dst.toString(), t.spec.port)
                           : fmt::format("{} {} -> {}", t.spec.protocol.toString(), t.spec.src.toString(), t.spec.dst.toString());
    out << fmt::format("probe {} ({} -> {})\n", what, t.spec.srcNs, t.spec.dstNs);
    out << fmt::format("  observed:  {} [{:.0f} ms]\n", observedText(t.observed), t.observed.ms);
    if (o.explain) {
      out << fmt::format("  predicted: {}\n", predictedText(*t.predicted));
      out << (t.agrees() ? "  the kernel agrees with vpcfw explain\n" : "  DISAGREEMENT: the kernel and vpcfw explain differ\n");
    }
  }
  if (o.explain) return t.agrees() ? kExitOk : kExitDisagree;
  return ok ? kExitOk : kExitBlocked;
}

// Ports the config's rules name, per protocol (at most `cap` each, lowest first).
std::map<int, std::vector<std::uint16_t>> mentionedPorts(const model::Model& m, std::size_t cap) {
  std::map<int, std::set<std::uint16_t>> found;
  auto take = [&](const net::Protocol& p, const net::PortRange& r) {
    if (!p.hasPorts() || r.isAll()) return;
    found[p.number()].insert(std::max<std::uint16_t>(r.from, 1));  // port 0 cannot be listened on
  };
  for (const auto& g : m.groups)
    for (auto d : {model::Direction::kIngress, model::Direction::kEgress})
      for (const auto& r : g.rules(d)) take(r.protocol, r.ports);
  for (const auto& a : m.nacls)
    for (auto d : {model::Direction::kIngress, model::Direction::kEgress})
      for (const auto& r : a.rules(d))
        if (r.ports.to - r.ports.from < 1000) take(r.protocol, r.ports);  // not the ephemeral ranges
  std::map<int, std::vector<std::uint16_t>> out;
  for (auto& [proto, ports] : found)
    for (auto p : ports)
      if (out[proto].size() < cap) out[proto].push_back(p);
  return out;
}

int probeMatrix(const model::Model& m, const ProbeOptions& o, std::ostream& out) {
  std::vector<std::string> ends;
  bool internet = false;
  for (const auto& inst : m.instances) {
    if (inst.vpc == model::kNone || inst.placement.kind != model::Placement::Kind::kLabNamespace) continue;
    ends.push_back(inst.name);
    if (m.vpcs[inst.vpc].internetGateway != model::kNone) internet = true;
  }
  const std::string internetHost = o.family == "6" ? "2001:db8:ffff::100" : "198.51.100.100";
  if (internet) ends.push_back(internetHost);
  struct Service {
    net::Protocol proto;
    std::uint16_t port = 0;
    std::string name() const { return proto.hasPorts() ? fmt::format("{}/{}", proto.toString(), port) : proto.toString(); }
  };
  std::vector<Service> services;
  for (const auto& [proto, ports] : mentionedPorts(m, 6))
    for (auto p : ports) services.push_back({net::Protocol(proto), p});
  services.push_back({net::Protocol(o.family == "6" ? net::Protocol::kIcmpv6 : net::Protocol::kIcmp), 0});

  std::vector<Trial> trials;
  std::vector<std::tuple<std::size_t, std::size_t, std::size_t>> where;  // service, from, to
  std::map<std::tuple<std::size_t, std::size_t, std::size_t>, std::string> skipped;
  std::uint16_t sport = freshSourcePort();
  for (std::size_t s = 0; s < services.size(); ++s)
    for (std::size_t a = 0; a < ends.size(); ++a)
      for (std::size_t b = 0; b < ends.size(); ++b) {
        if (a == b || (ends[a] == internetHost && ends[b] == internetHost)) continue;
        Trial t;
        t.from = ends[a];
        t.to = ends[b];
        t.request.from = ends[a];
        t.request.to = ends[b];
        t.request.protocol = services[s].proto;
        t.request.port = services[s].port;
        t.request.sourcePort = sport;
        if (!o.family.empty()) t.request.family = o.family == "6" ? net::Family::kIpv6 : net::Family::kIpv4;
        sport = static_cast<std::uint16_t>(sport >= 60999 ? 49152 : sport + 1);
        if (auto e = prepare(m, t)) {
          skipped[{s, a, b}] = *e;
          continue;
        }
        trials.push_back(std::move(t));
        where.emplace_back(s, a, b);
      }
  std::vector<lab::ProbeSpec> specs;
  for (const auto& t : trials) specs.push_back(t.spec);
  auto results = lab::runProbes(specs, std::chrono::milliseconds(o.timeoutMs));
  std::size_t disagreements = 0;
  for (std::size_t i = 0; i < trials.size(); ++i) {
    trials[i].observed = results[i];
    if (o.explain && !trials[i].agrees()) ++disagreements;
  }
  if (o.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& t : trials) arr.push_back(trialJson(t, o.explain));
    nlohmann::json j{{"probes", arr}, {"count", trials.size()}};
    if (o.explain) j["disagreements"] = disagreements;
    out << j.dump(2) << '\n';
  } else {
    std::map<std::tuple<std::size_t, std::size_t, std::size_t>, const Trial*> at;
    for (std::size_t i = 0; i < trials.size(); ++i) at[where[i]] = &trials[i];
    std::size_t w = 6;
    for (const auto& e : ends) w = std::max(w, e.size());
    for (std::size_t s = 0; s < services.size(); ++s) {
      out << fmt::format("{:<{}}", services[s].name(), w + 2);
      for (const auto& e : ends) out << fmt::format(" {:>{}}", e, std::max<std::size_t>(e.size(), 4));
      out << '\n';
      for (std::size_t a = 0; a < ends.size(); ++a) {
        out << fmt::format("  {:<{}}", ends[a], w);
        for (std::size_t b = 0; b < ends.size(); ++b) {
          std::string cell = a == b ? "" : "n/a";
          if (auto it = at.find({s, a, b}); it != at.end()) {
            const auto& r = it->second->observed;
            cell = r.replyReturned ? "ok" : r.requestArrived ? "req" : "--";
            if (o.explain && !it->second->agrees()) cell += "!";
          }
          out << fmt::format(" {:>{}}", cell, std::max<std::size_t>(ends[b].size(), 4));
        }
        out << '\n';
      }
      out << '\n';
    }
    out << "ok: request and reply got through; req: the request arrived, the reply did not; --: the request was dropped; "
           "n/a: cannot be addressed\n";
    if (o.explain)
      out << fmt::format("{} probes; {} disagree with vpcfw explain{}\n", trials.size(), disagreements,
                         disagreements ? " (marked !)" : "");
  }
  if (o.explain) return disagreements ? kExitDisagree : kExitOk;
  return kExitOk;
}

int probeCommand(const ProbeOptions& o, std::ostream& out, std::ostream& err) {
  auto m = loadReported(o.config, "nothing was probed", err);
  if (!m) return kExitUsage;
  if (o.matrix) return probeMatrix(*m, o, out);
  if (o.from.empty() || o.to.empty()) {
    err << "vpcfw probe: --from and --to are required (or --matrix)\n";
    return kExitUsage;
  }
  return probeOne(*m, o, out, err);
}

}  // namespace

void addProbeCommand(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<ProbeOptions>();
  auto* cmd = app.add_subcommand("probe", "Send real packets through a running lab (vpcfw lab up) and report what got through");
  cmd->add_option("config", o->config, "Config file (YAML) the lab was built from")->required();
  cmd->add_option("--from", o->from, "Source: instance name or internet address");
  cmd->add_option("--to", o->to, "Destination: instance name or internet address");
  cmd->add_option("--proto", o->proto, "tcp, udp, icmp or icmpv6")->capture_default_str();
  cmd->add_option("--port", o->port, "Destination port (tcp/udp)")->check(CLI::Range(0, 65535));
  cmd->add_option("--sport", o->sourcePort, "Source port (default: a fresh ephemeral port)")->check(CLI::Range(1, 65535));
  cmd->add_option("--icmp-type", o->icmpType, "ICMP type (default: echo request)")->check(CLI::Range(0, 255));
  cmd->add_option("--icmp-code", o->icmpCode, "ICMP code")->check(CLI::Range(0, 255));
  cmd->add_option("--family", o->family, "4 or 6, when both ends are instances")->check(CLI::IsMember({"4", "6"}));
  cmd->add_option("--timeout", o->timeoutMs, "Milliseconds to wait for each probe")->check(CLI::Range(50, 60000))->capture_default_str();
  cmd->add_flag("--explain", o->explain, "Set vpcfw explain's prediction beside the observation (exit 3 when they differ)");
  cmd->add_flag("--matrix", o->matrix, "Every instance pair on every port the config's rules name, and ICMP echo");
  cmd->add_flag("--json", o->json, "As JSON");
  cmd->callback([&selected, o] { selected = [o](std::ostream& out, std::ostream& err) { return probeCommand(*o, out, err); }; });
}

}  // namespace vpcfw::cli
