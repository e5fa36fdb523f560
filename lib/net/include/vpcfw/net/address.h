// IPv4/IPv6 addresses and CIDR blocks as values: parse, format, compare,
// containment and overlap. Pure; no I/O.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "vpcfw/base/expected.h"

namespace vpcfw::net {

enum class Family : std::uint8_t { kIpv4 = 4, kIpv6 = 6 };

std::string_view familyName(Family f);  // "IPv4" / "IPv6"

// An IPv4 or IPv6 address. IPv4 uses bytes[0..3]; the rest stay zero so that
// comparison and hashing work on the whole value.
class IpAddress {
 public:
  IpAddress() = default;
  static IpAddress v4(std::uint32_t hostOrder);
  static IpAddress fromBytes(Family f, const std::uint8_t* bytes);
  static expected<IpAddress, std::string> parse(std::string_view text);

  Family family() const { return family_; }
  bool isV4() const { return family_ == Family::kIpv4; }
  int bits() const { return isV4() ? 32 : 128; }
  const std::array<std::uint8_t, 16>& bytes() const { return bytes_; }
  std::uint32_t v4HostOrder() const;  // only for IPv4

  std::string toString() const;
  // This address plus n (wrapping within the family's width); n may be negative.
  IpAddress offset(std::int64_t n) const;
  // Bit i counted from the most significant bit (0 = first).
  bool bit(int i) const { return (bytes_[static_cast<std::size_t>(i / 8)] >> (7 - i % 8)) & 1; }

  auto operator<=>(const IpAddress&) const = default;
  bool operator==(const IpAddress&) const = default;

 private:
  Family family_ = Family::kIpv4;
  std::array<std::uint8_t, 16> bytes_{};
};

// A CIDR block. Always canonical (host bits zero) once constructed through
// parse() or make(); parse() reports whether the text had host bits set.
class Cidr {
 public:
  struct Parsed;
  Cidr() = default;
  static Cidr make(const IpAddress& a, int prefix);  // clears host bits
  static Cidr host(const IpAddress& a) { return make(a, a.bits()); }
  static Cidr any(Family f) { return make(f == Family::kIpv4 ? IpAddress::v4(0) : anyV6(), 0); }
  static expected<Parsed, std::string> parse(std::string_view text);

  const IpAddress& network() const { return network_; }
  int prefix() const { return prefix_; }
  Family family() const { return network_.family(); }
  IpAddress last() const;  // broadcast-like last address
  bool contains(const IpAddress& a) const;
  bool contains(const Cidr& c) const;
  bool overlaps(const Cidr& c) const;
  std::string toString() const;

  auto operator<=>(const Cidr&) const = default;
  bool operator==(const Cidr&) const = default;

 private:
  static IpAddress anyV6();
  IpAddress network_;
  int prefix_ = 0;
};

struct Cidr::Parsed {
  Cidr cidr;
  bool hostBitsSet = false;  // "10.0.0.1/24" was given; canonical is 10.0.0.0/24
};

}  // namespace vpcfw::net
