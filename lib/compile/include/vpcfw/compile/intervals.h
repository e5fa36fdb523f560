// Interval arithmetic for set elements. The kernel rejects overlapping
// elements in interval sets, so every set the compiler emits is built from
// disjoint, merged pieces: CIDRs are cut into elementary address ranges
// ("atoms"), each atom carries the union of what the rules allow there, and
// neighbouring atoms that allow the same are merged again.
#pragma once

#include <cstdint>
#include <vector>

#include "vpcfw/compile/ir.h"
#include "vpcfw/net/address.h"

namespace vpcfw::compile {

// Sorted, disjoint, non-adjacent ranges covering exactly the union of `in`.
std::vector<IntRange> mergeIntRanges(std::vector<IntRange> in);

// What one rule matches beyond its address: every protocol, one protocol,
// tcp/udp with a port range, or ICMP type and code ranges.
struct L4Match {
  enum class Kind { kAll, kProtocol, kPorts, kIcmp };
  Kind kind = Kind::kAll;
  std::uint8_t protocol = 0;  // kProtocol, kPorts (6/17), kIcmp (1/58)
  IntRange ports{0, 65535};
  IntRange icmpType{0, 255};
  IntRange icmpCode{0, 255};
};

struct AddressMatch {
  net::Cidr cidr;
  L4Match l4;
};

// The elements of up to four sets that together match exactly the union of
// `matches` (all of one address family):
//   all:      address                  (rules for every protocol)
//   protocol: address . l4proto        (protocols without ports)
//   ports:    address . l4proto . port (tcp, udp)
//   icmp:     address . type . code    (icmp or icmpv6 by family)
struct SetElements {
  std::vector<SetElement> all, protocol, ports, icmp;
};
SetElements buildSetElements(const std::vector<AddressMatch>& matches);

// Disjoint address ranges covering the union of the CIDRs (one family).
std::vector<AddressRange> mergeCidrs(const std::vector<net::Cidr>& cidrs);

}  // namespace vpcfw::compile
