// Text and JSON for reachability sets. Ranges are compressed the way people
// write rules ("22, 80, 1024-65535"); JSON keeps every range as [first, last].
#include "vpcfw/analysis/report.h"

#include <fmt/format.h>

#include <algorithm>

namespace vpcfw::analysis {
namespace {

std::string spanText(Span s) {
  return s.first == s.last ? fmt::format("{}", s.first) : fmt::format("{}-{}", s.first, s.last);
}

std::string protocolName(const ProtocolReach& p) {
  if (p.protocols.size() == 1 && p.protocols[0].first == p.protocols[0].last)
    return net::Protocol(static_cast<int>(p.protocols[0].first)).toString();
  std::string out = "protocols ";
  for (std::size_t i = 0; i < p.protocols.size(); ++i) out += (i ? ", " : "") + spanText(p.protocols[i]);
  return out;
}

std::string portsText(const std::vector<Span>& spans, std::string_view all) {
  if (spans.size() == 1 && spans[0].first == 0 && spans[0].last == 65535) return std::string(all);
  std::string out;
  for (std::size_t i = 0; i < spans.size(); ++i) out += (i ? ", " : "") + spanText(spans[i]);
  return out;
}

std::string icmpBoxText(const ForwardPiece& f) {
  const bool allTypes = f.types.first == 0 && f.types.last == 255, allCodes = f.codes.first == 0 && f.codes.last == 255;
  if (allTypes && allCodes) return "all types";
  std::string out =
      allTypes ? "all types" : fmt::format("type{} {}", f.types.first == f.types.last ? "" : "s", spanText(f.types));
  if (!allCodes) out += fmt::format(" code{} {}", f.codes.first == f.codes.last ? "" : "s", spanText(f.codes));
  return out;
}

// "tcp 443, 8443 from sport 1024-65535", "icmp type 8", "protocol gre".
std::string summaryLine(const ProtocolReach& p) {
  const std::string name = protocolName(p);
  if (p.hasPorts()) {
    std::vector<Span> ports, sports;
    for (const auto& f : p.forward) ports.push_back(f.ports);
    for (const auto& r : p.reply) sports.push_back(r.sourcePorts);
    auto merge = [](std::vector<Span> v) {
      std::vector<Span> out;
      for (auto s : v)
        if (!out.empty() && out.back().last + 1 == s.first)
          out.back().last = s.last;
        else
          out.push_back(s);
      return out;
    };
    return fmt::format("{} {} from sport {}", name, portsText(merge(ports), "all ports"),
                       portsText(merge(sports), "any"));
  }
  if (p.isIcmp()) {
    std::string out = name;
    for (std::size_t i = 0; i < p.forward.size(); ++i) out += (i ? ", " : " ") + icmpBoxText(p.forward[i]);
    return out;
  }
  return (p.protocols.size() == 1 && p.protocols[0].first == p.protocols[0].last ? "protocol " : "") + name +
         " (no ports)";
}

std::string rulesText(const std::vector<RuleRef>& rules) {
  std::string out;
  for (const auto& r : rules) out += (out.empty() ? "" : ", ") + r.rule;
  return out;
}

void formatPair(std::string& out, const model::Model& m, const PairReach& p) {
  out += fmt::format("{} -> {}  {}\n", endpointText(m, p.from), endpointText(m, p.to), net::familyName(p.family));
  if (p.protocols.empty()) {
    const auto& b = *p.blocked;
    out += fmt::format("  nothing: blocked at {}{}, {}\n", eval::stepKindName(b.step), b.onReply ? " (reply)" : "",
                       b.component);
    out += fmt::format("    {}: {}\n", b.code, b.explanation);
    return;
  }
  // Detail lines: a label for the piece, aligned, then its rules.
  struct Line {
    std::string label, rules;
    bool summary = false;
  };
  std::vector<Line> details;
  std::size_t width = 0;
  for (const auto& pr : p.protocols) {
    details.push_back({summaryLine(pr), "", true});
    for (const auto& f : pr.forward) {
      std::string label = pr.hasPorts() ? fmt::format("dport {}", portsText({f.ports}, "all"))
                          : pr.isIcmp() ? icmpBoxText(f)
                                        : std::string("forward");
      width = std::max(width, label.size());
      details.push_back({std::move(label), rulesText(f.rules)});
    }
    for (const auto& r : pr.reply) {
      std::string label = pr.hasPorts() ? fmt::format("reply sport {}", portsText({r.sourcePorts}, "any"))
                          : pr.isIcmp() ? fmt::format("reply to type {}", r.requestType)
                                        : std::string("reply");
      width = std::max(width, label.size());
      // Inside one subnet nothing but the route is on the way back.
      details.push_back({std::move(label), r.rules.empty() ? "no filter on the way back" : rulesText(r.rules)});
    }
  }
  for (const auto& d : details) {
    if (d.summary)
      out += fmt::format("  {}\n", d.label);
    else
      out += fmt::format("      {:<{}}  {}\n", d.label, width, d.rules);
  }
}

nlohmann::json spanJson(Span s) { return nlohmann::json::array({s.first, s.last}); }

nlohmann::json rulesJson(const std::vector<RuleRef>& rules) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& r : rules) a.push_back({{"step", eval::stepKindName(r.step)}, {"rule", r.rule}});
  return a;
}

nlohmann::json endpointJson(const model::Model& m, const Endpoint& e) {
  if (!e.isInternet()) return {{"instance", m.instances[e.instance].name}, {"address", e.address.toString()}};
  nlohmann::json ranges = nlohmann::json::array();
  for (const auto& r : e.ranges) ranges.push_back(r.toString());
  return {{"internet", ranges}};
}

}  // namespace

std::string formatReachText(const model::Model& m, const ReachResult& r) {
  std::size_t reachable = 0;
  for (const auto& p : r.pairs) reachable += p.protocols.empty() ? 0 : 1;
  std::string out = fmt::format("reach from {} to {}, {}: {} pair(s), {} with something reachable\n", r.from, r.to,
                                r.protocol ? r.protocol->toString() : "every protocol", r.pairs.size(), reachable);
  for (const auto& p : r.pairs) {
    out += '\n';
    formatPair(out, m, p);
  }
  return out;
}

nlohmann::json reachToJson(const model::Model& m, const ReachResult& r) {
  nlohmann::json pairs = nlohmann::json::array();
  for (const auto& p : r.pairs) {
    nlohmann::json protocols = nlohmann::json::array();
    for (const auto& pr : p.protocols) {
      nlohmann::json numbers = nlohmann::json::array(), fwd = nlohmann::json::array(), back = nlohmann::json::array();
      for (auto s : pr.protocols) numbers.push_back(spanJson(s));
      for (const auto& f : pr.forward) {
        nlohmann::json j{{"rules", rulesJson(f.rules)}};
        if (pr.hasPorts()) j["ports"] = spanJson(f.ports);
        if (pr.isIcmp()) {
          j["types"] = spanJson(f.types);
          j["codes"] = spanJson(f.codes);
        }
        fwd.push_back(std::move(j));
      }
      for (const auto& x : pr.reply) {
        nlohmann::json j{{"rules", rulesJson(x.rules)}};
        if (pr.hasPorts()) j["source_ports"] = spanJson(x.sourcePorts);
        if (pr.isIcmp()) j["request_type"] = x.requestType;
        back.push_back(std::move(j));
      }
      protocols.push_back({{"protocols", numbers}, {"name", protocolName(pr)}, {"forward", fwd}, {"reply", back}});
    }
    nlohmann::json j{{"from", endpointJson(m, p.from)},
                     {"to", endpointJson(m, p.to)},
                     {"family", net::familyName(p.family)},
                     {"reachable", !p.protocols.empty()},
                     {"protocols", protocols}};
    if (p.blocked)
      j["blocked"] = {{"step", eval::stepKindName(p.blocked->step)},
                      {"on_reply", p.blocked->onReply},
                      {"component", p.blocked->component},
                      {"code", p.blocked->code},
                      {"explanation", p.blocked->explanation}};
    pairs.push_back(std::move(j));
  }
  return {{"from", r.from}, {"to", r.to}, {"protocol", r.protocol ? r.protocol->toString() : "all"}, {"pairs", pairs}};
}

}  // namespace vpcfw::analysis
