// Routes and policy-routing rules as the lab plans them and reads them back
// from the kernel: plain values, comparable and printable, with no kernel
// access (the plan uses them; rtnl.h sends and dumps them).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "vpcfw/net/address.h"

namespace vpcfw::lab {

struct RouteSpec {
  enum class Type { kUnicast, kThrow, kLocal, kBlackhole };
  net::Cidr dst;
  std::string ifname;                     // empty for throw / blackhole
  std::optional<net::IpAddress> gateway;  // else on-link
  std::uint32_t table = 254;              // RT_TABLE_MAIN
  Type type = Type::kUnicast;
  bool onlink = false;  // the gateway is on the link, whatever its address
};

// A policy-routing rule: packets from `from` look up `table`.
struct RuleSpec {
  net::Cidr from;
  std::uint32_t table = 254;
  std::uint32_t priority = 0;
  std::uint8_t action = 1;  // FR_ACT_TO_TBL, what the lab makes; a foreign rule may blackhole, prohibit, ...
};
// The kernel's own rules (lookup local, main, default at 0, 32766, 32767):
// every other rule in a lab namespace is the lab's or a difference.
bool isKernelDefaultRule(const RuleSpec& r);

bool operator==(const RouteSpec& a, const RouteSpec& b);
bool operator==(const RuleSpec& a, const RuleSpec& b);
std::string describe(const RouteSpec& r);  // "10.0.0.0/16 via 169.254.0.2 dev igw0 table 100", ...
std::string describe(const RuleSpec& r);   // "from 10.0.1.0/24 lookup 100 priority 1000"

}  // namespace vpcfw::lab
