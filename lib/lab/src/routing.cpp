// Comparing and printing routes and policy-routing rules.
#include "vpcfw/lab/routing.h"

namespace vpcfw::lab {

bool operator==(const RouteSpec& a, const RouteSpec& b) {
  return a.dst == b.dst && a.ifname == b.ifname && a.gateway == b.gateway && a.table == b.table && a.type == b.type &&
         a.onlink == b.onlink;
}

bool operator==(const RuleSpec& a, const RuleSpec& b) {
  return a.from == b.from && a.table == b.table && a.priority == b.priority && a.action == b.action;
}

bool isKernelDefaultRule(const RuleSpec& r) {
  if (r.from.prefix() != 0 || r.action != 1) return false;
  return (r.priority == 0 && r.table == 255) || (r.priority == 32766 && r.table == 254) ||
         (r.priority == 32767 && r.table == 253);
}

std::string describe(const RouteSpec& r) {
  std::string s;
  switch (r.type) {
    case RouteSpec::Type::kThrow:
      s = "throw ";
      break;
    case RouteSpec::Type::kBlackhole:
      s = "blackhole ";
      break;
    case RouteSpec::Type::kLocal:
      s = "local ";
      break;
    case RouteSpec::Type::kUnicast:
      break;
  }
  s += r.dst.toString();
  if (r.gateway) s += " via " + r.gateway->toString();
  if (!r.ifname.empty()) s += " dev " + r.ifname;
  if (r.onlink) s += " onlink";
  return s + " table " + std::to_string(r.table);
}

std::string describe(const RuleSpec& r) {
  const std::string what = r.action == 1 ? "lookup " + std::to_string(r.table) : "action " + std::to_string(r.action);
  return "from " + r.from.toString() + " " + what + " priority " + std::to_string(r.priority);
}

}  // namespace vpcfw::lab
