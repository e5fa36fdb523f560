#include "vpcfw/net/protocol.h"

#include <array>
#include <charconv>
#include <utility>

namespace vpcfw::net {
namespace {

struct NamedProtocol {
  std::string_view name;
  int number;
};
// Names accepted in configs; the first name of a number is the one printed.
constexpr std::array<NamedProtocol, 13> kNames{{
    {"all", -1},
    {"icmp", 1},
    {"igmp", 2},
    {"ipip", 4},
    {"tcp", 6},
    {"udp", 17},
    {"gre", 47},
    {"esp", 50},
    {"ah", 51},
    {"icmpv6", 58},
    {"sctp", 132},
    {"udplite", 136},
    {"ipv6-icmp", 58},
}};

bool parseInt(std::string_view s, int& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

expected<Protocol, std::string> Protocol::parse(std::string_view text) {
  for (const auto& n : kNames)
    if (n.name == text) return Protocol(n.number);
  int v = 0;
  if (parseInt(text, v) && v >= -1 && v <= 255) return Protocol(v);
  return unexpected(std::string("unknown protocol '") + std::string(text) +
                    "' (use tcp, udp, icmp, icmpv6, all / -1, or a number 0..255)");
}

std::string Protocol::toString() const {
  for (const auto& n : kNames)
    if (n.number == number_) return std::string(n.name);
  return std::to_string(number_);
}

expected<PortRange, std::string> PortRange::parse(std::string_view text) {
  if (text == "all") return all();
  auto dash = text.find('-', 1);
  int from = 0, to = 0;
  bool ok = dash == std::string_view::npos
                ? parseInt(text, from) && parseInt(text, to)
                : parseInt(text.substr(0, dash), from) && parseInt(text.substr(dash + 1), to);
  if (!ok)
    return unexpected(std::string("'") + std::string(text) + "' is not a port or port range (e.g. 443 or 1024-65535)");
  if (from < 0 || from > 65535 || to < 0 || to > 65535)
    return unexpected(std::string("port range '") + std::string(text) + "' is outside 0..65535");
  if (from > to) return unexpected(std::string("port range '") + std::string(text) + "' has from > to");
  return PortRange{static_cast<std::uint16_t>(from), static_cast<std::uint16_t>(to)};
}

std::string PortRange::toString() const {
  if (isAll()) return "all";
  if (from == to) return std::to_string(from);
  return std::to_string(from) + "-" + std::to_string(to);
}

std::string IcmpMatch::toString() const {
  if (isAll()) return "all";
  std::string s = type == -1 ? "any type" : "type " + std::to_string(type);
  if (code != -1) s += " code " + std::to_string(code);
  return s;
}

}  // namespace vpcfw::net
