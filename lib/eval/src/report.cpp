#include "vpcfw/eval/report.h"

#include <fmt/format.h>

#include <algorithm>

namespace vpcfw::eval {
namespace {

void formatLeg(std::string& out, const Leg& leg, std::size_t width) {
  out += fmt::format("  packet: {}\n", leg.packet.describe());
  for (const auto& s : leg.steps) {
    std::string rule = s.rule;
    if (!s.ruleDetail.empty()) rule += ": " + s.ruleDetail;
    out += fmt::format("  {:<5}  {:<{}}  {}\n", s.decision == Decision::kAllow ? "ALLOW" : "DENY", s.component, width,
                       rule);
    if (s.decision == Decision::kDeny) out += fmt::format("  {:<5}  {}: {}\n", "", s.code, s.explanation);
  }
}

std::size_t componentWidth(const Verdict& v) {
  std::size_t w = 0;
  for (const auto& s : v.forward.steps) w = std::max(w, s.component.size());
  if (v.reply)
    for (const auto& s : v.reply->steps) w = std::max(w, s.component.size());
  return w;
}

nlohmann::json legToJson(const Leg& leg) {
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& s : leg.steps) {
    nlohmann::json j{{"step", stepKindName(s.kind)},
                     {"component", s.component},
                     {"decision", s.decision == Decision::kAllow ? "allow" : "deny"},
                     {"rule", s.rule},
                     {"explanation", s.explanation}};
    if (!s.ruleDetail.empty()) j["rule_detail"] = s.ruleDetail;
    if (!s.code.empty()) j["code"] = s.code;
    steps.push_back(std::move(j));
  }
  const auto& p = leg.packet;
  nlohmann::json pj{{"protocol", p.protocol.toString()}, {"src", p.src.toString()}, {"dst", p.dst.toString()}};
  if (p.protocol.hasPorts()) {
    pj["src_port"] = p.srcPort;
    pj["dst_port"] = p.dstPort;
  } else if (p.protocol.isIcmpAny()) {
    pj["icmp_type"] = p.icmpType;
    pj["icmp_code"] = p.icmpCode;
  }
  return {{"packet", pj}, {"delivered", leg.delivered}, {"steps", steps}};
}

}  // namespace

std::string formatVerdictText(const Verdict& v) {
  std::string out = fmt::format("From {} to {}\n\nForward path\n", v.fromText, v.toText);
  const auto width = componentWidth(v);
  formatLeg(out, v.forward, width);
  if (v.reply) {
    out += "\nReturn path\n";
    formatLeg(out, *v.reply, width);
  } else if (!v.replyExpected) {
    out += "\nReturn path: none expected for this kind of packet\n";
  } else {
    out += "\nReturn path: not evaluated (the request does not arrive)\n";
  }
  out += "\n";
  if (v.reachable()) {
    out += v.replyExpected ? "Verdict: REACHABLE (request delivered, reply delivered)\n"
                           : "Verdict: REACHABLE (delivered; no reply expected)\n";
  } else if (const Step* s = v.blockingStep()) {
    out += fmt::format("Verdict: BLOCKED on the {} path at {}: {} ({})\n", v.blockedOnReply() ? "return" : "forward",
                       s->component, s->code, s->rule);
    std::size_t more = 0;
    for (const auto& st : v.forward.steps) more += st.decision == Decision::kDeny && &st != s;
    if (v.reply)
      for (const auto& st : v.reply->steps) more += st.decision == Decision::kDeny && &st != s;
    if (more) out += fmt::format("         {} more step(s) on the path would block it too (above)\n", more);
  }
  return out;
}

nlohmann::json verdictToJson(const Verdict& v) {
  nlohmann::json j{{"from", v.fromText},
                   {"to", v.toText},
                   {"reachable", v.reachable()},
                   {"reply_expected", v.replyExpected},
                   {"forward", legToJson(v.forward)}};
  j["return"] = v.reply ? legToJson(*v.reply) : nlohmann::json(nullptr);
  if (const Step* s = v.blockingStep()) {
    j["blocked"] = {{"path", v.blockedOnReply() ? "return" : "forward"},
                    {"component", s->component},
                    {"code", s->code},
                    {"rule", s->rule},
                    {"explanation", s->explanation}};
    // With every step asked for: the denies after the first, in path order.
    nlohmann::json also = nlohmann::json::array();
    auto add = [&](const Leg& leg, const char* path) {
      for (const auto& st : leg.steps)
        if (st.decision == Decision::kDeny && &st != s)
          also.push_back({{"path", path}, {"component", st.component}, {"code", st.code}, {"rule", st.rule}});
    };
    add(v.forward, "forward");
    if (v.reply) add(*v.reply, "return");
    if (!also.empty()) j["also_blocked"] = std::move(also);
  }
  return j;
}

}  // namespace vpcfw::eval
