// IP protocols, port ranges and ICMP type/code matches as AWS rules use them.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "vpcfw/base/expected.h"

namespace vpcfw::net {

// An IANA protocol number, or -1 for "all protocols".
class Protocol {
 public:
  static constexpr int kAll = -1;
  static constexpr int kIcmp = 1;
  static constexpr int kTcp = 6;
  static constexpr int kUdp = 17;
  static constexpr int kIcmpv6 = 58;

  constexpr Protocol() = default;
  constexpr explicit Protocol(int number) : number_(number) {}
  static Protocol all() { return Protocol(kAll); }
  // Accepts names (tcp, udp, icmp, icmpv6, all, gre, ...), "-1" and 0..255.
  static expected<Protocol, std::string> parse(std::string_view text);

  int number() const { return number_; }
  bool isAll() const { return number_ == kAll; }
  bool hasPorts() const { return number_ == kTcp || number_ == kUdp; }
  bool isIcmpAny() const { return number_ == kIcmp || number_ == kIcmpv6; }
  // "tcp", "icmp", "all", or the number for protocols without a common name.
  std::string toString() const;

  auto operator<=>(const Protocol&) const = default;

 private:
  int number_ = kAll;
};

// An inclusive TCP/UDP port range.
struct PortRange {
  std::uint16_t from = 0;
  std::uint16_t to = 65535;

  static PortRange all() { return {}; }
  static PortRange single(std::uint16_t p) { return {p, p}; }
  // "80", "1024-65535", "all"; checks 0..65535 and from <= to.
  static expected<PortRange, std::string> parse(std::string_view text);
  bool isAll() const { return from == 0 && to == 65535; }
  bool contains(std::uint16_t p) const { return p >= from && p <= to; }
  std::string toString() const;  // "all", "80", "1024-65535"

  auto operator<=>(const PortRange&) const = default;
};

// ICMP type and code; -1 means any.
struct IcmpMatch {
  int type = -1;
  int code = -1;

  bool isAll() const { return type == -1 && code == -1; }
  bool matches(int t, int c) const { return (type == -1 || type == t) && (code == -1 || code == c); }
  std::string toString() const;  // "all", "type 8", "type 3 code 4"

  auto operator<=>(const IcmpMatch&) const = default;
};

}  // namespace vpcfw::net
