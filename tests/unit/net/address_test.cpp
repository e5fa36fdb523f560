// Addresses and CIDR blocks: parse/format round-trips, canonicalisation,
// containment and overlap.
#include <doctest/doctest.h>

#include "vpcfw/net/address.h"

using vpcfw::net::Cidr;
using vpcfw::net::Family;
using vpcfw::net::IpAddress;

namespace {
IpAddress ip(const char* s) {
  auto a = IpAddress::parse(s);
  REQUIRE(a.has_value());
  return *a;
}
Cidr cidr(const char* s) {
  auto c = Cidr::parse(s);
  REQUIRE(c.has_value());
  return c->cidr;
}
}  // namespace

TEST_CASE("IP addresses round-trip through parse and format") {
  for (const char* text : {"0.0.0.0", "10.0.1.10", "255.255.255.255", "203.0.113.7", "::", "::1", "2001:db8::1",
                           "2001:db8:1000:1::10", "fe80::1:2:3:4"}) {
    CAPTURE(text);
    auto a = IpAddress::parse(text);
    REQUIRE(a.has_value());
    CHECK(a->toString() == text);
    CHECK(IpAddress::parse(a->toString()).value() == *a);
  }
}

TEST_CASE("IP address parse rejects malformed text") {
  for (const char* text : {"", "10.0.0", "10.0.0.256", "10.0.0.1.2", "a.b.c.d", "010.0.0.1", "10.00.0.1", "1::2::3",
                           "10.0.0.1/24", " 10.0.0.1", "2001:db8::g"}) {
    CAPTURE(text);
    CHECK_FALSE(IpAddress::parse(text).has_value());
  }
}

TEST_CASE("IP address families and IPv4 host order") {
  CHECK(ip("10.1.2.3").isV4());
  CHECK(ip("10.1.2.3").v4HostOrder() == 0x0a010203u);
  CHECK(IpAddress::v4(0x0a010203u) == ip("10.1.2.3"));
  CHECK(ip("2001:db8::1").family() == Family::kIpv6);
  CHECK(ip("10.1.2.3") < ip("10.1.2.4"));
  CHECK(ip("10.0.0.1") != ip("::ffff:10.0.0.1"));
}

TEST_CASE("IP address offset wraps within the family") {
  CHECK(ip("10.0.0.255").offset(1) == ip("10.0.1.0"));
  CHECK(ip("10.0.1.0").offset(-1) == ip("10.0.0.255"));
  CHECK(ip("255.255.255.255").offset(1) == ip("0.0.0.0"));
  CHECK(ip("2001:db8::ffff").offset(1) == ip("2001:db8::1:0"));
  CHECK(ip("2001:db8::1:0").offset(-1) == ip("2001:db8::ffff"));
}

TEST_CASE("CIDR blocks round-trip and canonicalise host bits") {
  for (const char* text :
       {"10.0.0.0/16", "0.0.0.0/0", "192.0.2.1/32", "2001:db8::/32", "::/0", "2001:db8:1000:1::/64"}) {
    CAPTURE(text);
    auto p = Cidr::parse(text);
    REQUIRE(p.has_value());
    CHECK_FALSE(p->hostBitsSet);
    CHECK(p->cidr.toString() == text);
  }
  // vpc-semantics.md: 100.68.0.18/18 is stored as 100.68.0.0/18.
  auto p = Cidr::parse("100.68.0.18/18");
  REQUIRE(p.has_value());
  CHECK(p->hostBitsSet);
  CHECK(p->cidr.toString() == "100.68.0.0/18");
  auto p6 = Cidr::parse("2001:db8::1/64");
  REQUIRE(p6.has_value());
  CHECK(p6->hostBitsSet);
  CHECK(p6->cidr.toString() == "2001:db8::/64");
}

TEST_CASE("CIDR parse rejects malformed blocks") {
  for (const char* text :
       {"10.0.0.0", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/1a", "::/129", "x/8", "10.0.0.0/16/2"}) {
    CAPTURE(text);
    CHECK_FALSE(Cidr::parse(text).has_value());
  }
}

TEST_CASE("CIDR containment, last address and overlap") {
  CHECK(cidr("10.0.0.0/16").contains(ip("10.0.255.255")));
  CHECK_FALSE(cidr("10.0.0.0/16").contains(ip("10.1.0.0")));
  CHECK_FALSE(cidr("0.0.0.0/0").contains(ip("::1")));  // families never mix
  CHECK(cidr("::/0").contains(ip("2001:db8::1")));
  CHECK(cidr("10.0.0.0/16").contains(cidr("10.0.1.0/24")));
  CHECK_FALSE(cidr("10.0.1.0/24").contains(cidr("10.0.0.0/16")));
  CHECK(cidr("10.0.1.0/24").last() == ip("10.0.1.255"));
  CHECK(cidr("10.0.0.0/28").last() == ip("10.0.0.15"));
  CHECK(cidr("2001:db8::/64").last() == ip("2001:db8::ffff:ffff:ffff:ffff"));
  CHECK(cidr("10.0.0.0/16").overlaps(cidr("10.0.128.0/17")));
  CHECK(cidr("10.0.128.0/17").overlaps(cidr("10.0.0.0/16")));
  CHECK_FALSE(cidr("10.0.0.0/17").overlaps(cidr("10.0.128.0/17")));
  CHECK(Cidr::any(Family::kIpv4).toString() == "0.0.0.0/0");
  CHECK(Cidr::any(Family::kIpv6).toString() == "::/0");
  CHECK(Cidr::host(ip("10.0.0.1")).toString() == "10.0.0.1/32");
}
