// Protocols, port ranges and ICMP matches: parse/format round-trips and ranges.
#include <doctest/doctest.h>

#include "vpcfw/net/protocol.h"

using vpcfw::net::IcmpMatch;
using vpcfw::net::PortRange;
using vpcfw::net::Protocol;

TEST_CASE("protocol names and numbers round-trip") {
  struct Case {
    const char* text;
    int number;
    const char* printed;
  };
  for (auto c : {Case{"tcp", 6, "tcp"}, Case{"udp", 17, "udp"}, Case{"icmp", 1, "icmp"}, Case{"icmpv6", 58, "icmpv6"},
                 Case{"all", -1, "all"}, Case{"-1", -1, "all"}, Case{"6", 6, "tcp"}, Case{"17", 17, "udp"},
                 Case{"58", 58, "icmpv6"}, Case{"47", 47, "gre"}, Case{"gre", 47, "gre"}, Case{"0", 0, "0"},
                 Case{"253", 253, "253"}, Case{"ipv6-icmp", 58, "icmpv6"}}) {
    CAPTURE(c.text);
    auto p = Protocol::parse(c.text);
    REQUIRE(p.has_value());
    CHECK(p->number() == c.number);
    CHECK(p->toString() == c.printed);
    CHECK(Protocol::parse(p->toString()).value() == *p);
  }
}

TEST_CASE("protocol parse rejects unknown names and numbers out of range") {
  for (const char* text : {"", "TCP ", "-2", "256", "http", "6.0"}) {
    CAPTURE(text);
    CHECK_FALSE(Protocol::parse(text).has_value());
  }
}

TEST_CASE("only tcp and udp carry ports, icmp and icmpv6 carry type and code") {
  CHECK(Protocol(6).hasPorts());
  CHECK(Protocol(17).hasPorts());
  CHECK_FALSE(Protocol(1).hasPorts());
  CHECK_FALSE(Protocol::all().hasPorts());
  CHECK_FALSE(Protocol(132).hasPorts());  // sctp: AWS ignores ports for other protocols
  CHECK(Protocol(1).isIcmpAny());
  CHECK(Protocol(58).isIcmpAny());
}

TEST_CASE("port ranges round-trip and are checked") {
  for (const char* text : {"80", "1024-65535", "0", "65535", "all", "22-23"}) {
    CAPTURE(text);
    auto r = PortRange::parse(text);
    REQUIRE(r.has_value());
    CHECK(r->toString() == text);
  }
  CHECK(PortRange::parse("0-65535")->isAll());
  CHECK(PortRange::parse("0-65535")->toString() == "all");
  for (const char* text : {"", "65536", "-1", "80-", "-80", "100-90", "1-70000", "http", "80 - 90"}) {
    CAPTURE(text);
    CHECK_FALSE(PortRange::parse(text).has_value());
  }
  CHECK(PortRange::parse("1024-65535")->contains(1024));
  CHECK(PortRange::parse("1024-65535")->contains(65535));
  CHECK_FALSE(PortRange::parse("1024-65535")->contains(1023));
}

TEST_CASE("ICMP type and code matching with -1 as any") {
  CHECK(IcmpMatch{}.matches(8, 0));
  CHECK(IcmpMatch{8, -1}.matches(8, 5));
  CHECK_FALSE(IcmpMatch{8, -1}.matches(0, 0));
  CHECK(IcmpMatch{3, 4}.matches(3, 4));
  CHECK_FALSE(IcmpMatch{3, 4}.matches(3, 3));
  CHECK(IcmpMatch{}.toString() == "all");
  CHECK(IcmpMatch{8, -1}.toString() == "type 8");
  CHECK(IcmpMatch{3, 4}.toString() == "type 3 code 4");
}
