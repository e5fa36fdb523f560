#include "vpcfw/net/address.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace vpcfw::net {

std::string_view familyName(Family f) { return f == Family::kIpv4 ? "IPv4" : "IPv6"; }

IpAddress IpAddress::v4(std::uint32_t hostOrder) {
  IpAddress a;
  a.family_ = Family::kIpv4;
  for (int i = 0; i < 4; ++i)
    a.bytes_[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(hostOrder >> (24 - 8 * i));
  return a;
}

IpAddress IpAddress::fromBytes(Family f, const std::uint8_t* bytes) {
  IpAddress a;
  a.family_ = f;
  std::memcpy(a.bytes_.data(), bytes, f == Family::kIpv4 ? 4 : 16);
  return a;
}

expected<IpAddress, std::string> IpAddress::parse(std::string_view text) {
  std::string s(text);
  std::uint8_t buf[16] = {};
  if (s.find(':') == std::string::npos) {
    // inet_pton accepts only dotted quads; reject leading zeros that some
    // tools read as octal, so "010.0.0.1" cannot mean two things.
    if (inet_pton(AF_INET, s.c_str(), buf) == 1) {
      bool leadingZero = false;
      for (std::size_t i = 0; i < s.size(); ++i)
        if (s[i] == '0' && (i == 0 || s[i - 1] == '.') && i + 1 < s.size() && s[i + 1] != '.') leadingZero = true;
      if (!leadingZero) return fromBytes(Family::kIpv4, buf);
    }
  } else if (inet_pton(AF_INET6, s.c_str(), buf) == 1) {
    return fromBytes(Family::kIpv6, buf);
  }
  return unexpected(std::string("'") + s + "' is not an IPv4 or IPv6 address");
}

std::uint32_t IpAddress::v4HostOrder() const {
  return (std::uint32_t{bytes_[0]} << 24) | (std::uint32_t{bytes_[1]} << 16) | (std::uint32_t{bytes_[2]} << 8) |
         std::uint32_t{bytes_[3]};
}

std::string IpAddress::toString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(isV4() ? AF_INET : AF_INET6, bytes_.data(), buf, sizeof buf);
  return buf;
}

IpAddress IpAddress::offset(std::int64_t n) const {
  IpAddress r = *this;
  const int len = isV4() ? 4 : 16;
  // Two's-complement add of n, sign-extended over the address width.
  std::uint64_t addend = static_cast<std::uint64_t>(n);
  const std::uint8_t fill = n < 0 ? 0xff : 0x00;
  unsigned carry = 0;
  for (int i = len - 1, k = 0; i >= 0; --i, ++k) {
    unsigned b = k < 8 ? static_cast<unsigned>((addend >> (8 * k)) & 0xff) : fill;
    unsigned sum = r.bytes_[static_cast<std::size_t>(i)] + b + carry;
    r.bytes_[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(sum & 0xff);
    carry = sum >> 8;
  }
  return r;
}

IpAddress Cidr::anyV6() {
  std::uint8_t zero[16] = {};
  return IpAddress::fromBytes(Family::kIpv6, zero);
}

Cidr Cidr::make(const IpAddress& a, int prefix) {
  Cidr c;
  std::uint8_t b[16];
  std::memcpy(b, a.bytes().data(), 16);
  const int len = a.isV4() ? 4 : 16;
  for (int i = 0; i < len; ++i) {
    int keep = prefix - 8 * i;
    if (keep >= 8) continue;
    std::uint8_t mask = keep <= 0 ? 0 : static_cast<std::uint8_t>(0xff << (8 - keep));
    b[i] &= mask;
  }
  c.network_ = IpAddress::fromBytes(a.family(), b);
  c.prefix_ = prefix;
  return c;
}

expected<Cidr::Parsed, std::string> Cidr::parse(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos)
    return unexpected(std::string("'") + std::string(text) + "' is not a CIDR block (expected address/prefix)");
  auto addr = IpAddress::parse(text.substr(0, slash));
  if (!addr) return unexpected(std::string("'") + std::string(text) + "' is not a CIDR block: " + addr.error());
  auto ptext = text.substr(slash + 1);
  int prefix = -1;
  auto [p, ec] = std::from_chars(ptext.data(), ptext.data() + ptext.size(), prefix);
  if (ptext.empty() || ec != std::errc() || p != ptext.data() + ptext.size() || prefix < 0 || prefix > addr->bits())
    return unexpected(std::string("'") + std::string(text) + "' has an invalid prefix length (0.." +
                      std::to_string(addr->bits()) + ")");
  Parsed r;
  r.cidr = make(*addr, prefix);
  r.hostBitsSet = r.cidr.network_ != *addr;
  return r;
}

IpAddress Cidr::last() const {
  std::uint8_t b[16];
  std::memcpy(b, network_.bytes().data(), 16);
  const int len = network_.isV4() ? 4 : 16;
  for (int i = 0; i < len; ++i) {
    int keep = prefix_ - 8 * i;
    if (keep >= 8) continue;
    std::uint8_t hostMask = keep <= 0 ? 0xff : static_cast<std::uint8_t>(0xff >> keep);
    b[i] |= hostMask;
  }
  return IpAddress::fromBytes(network_.family(), b);
}

bool Cidr::contains(const IpAddress& a) const {
  // Compare the whole bytes of the prefix, then the masked partial byte: this
  // runs for every rule against every address piece when sets are built.
  if (a.family() != family()) return false;
  const auto full = static_cast<std::size_t>(prefix_ / 8);
  const int rem = prefix_ % 8;
  if (std::memcmp(a.bytes().data(), network_.bytes().data(), full) != 0) return false;
  if (rem == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rem));
  return (a.bytes()[full] & mask) == network_.bytes()[full];
}

bool Cidr::contains(const Cidr& c) const {
  return c.family() == family() && c.prefix_ >= prefix_ && contains(c.network_);
}

bool Cidr::overlaps(const Cidr& c) const { return contains(c) || c.contains(*this); }

std::string Cidr::toString() const { return network_.toString() + "/" + std::to_string(prefix_); }

}  // namespace vpcfw::net
