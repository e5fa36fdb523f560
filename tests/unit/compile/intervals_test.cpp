// Set elements built from rules: disjoint (the kernel rejects overlaps) and
// exactly the union of the rules (nothing lost, nothing added), checked on
// hand-picked cases and on random rule sets against random packets.
#include <doctest/doctest.h>

#include <random>

#include "vpcfw/compile/intervals.h"

using namespace vpcfw;
using compile::AddressMatch;
using compile::AddressRange;
using compile::IntRange;
using compile::L4Match;
using compile::SetElement;

namespace {

net::Cidr cidr(const char* s) { return net::Cidr::parse(s)->cidr; }
net::IpAddress ip(const char* s) { return *net::IpAddress::parse(s); }

L4Match ports(std::uint8_t proto, std::uint32_t lo, std::uint32_t hi) {
  L4Match m;
  m.kind = L4Match::Kind::kPorts;
  m.protocol = proto;
  m.ports = {lo, hi};
  return m;
}
L4Match icmp(std::uint32_t tlo, std::uint32_t thi, std::uint32_t clo, std::uint32_t chi) {
  L4Match m;
  m.kind = L4Match::Kind::kIcmp;
  m.protocol = 1;
  m.icmpType = {tlo, thi};
  m.icmpCode = {clo, chi};
  return m;
}
L4Match proto(std::uint8_t p) {
  L4Match m;
  m.kind = L4Match::Kind::kProtocol;
  m.protocol = p;
  return m;
}

bool inRange(const compile::Value& v, const net::IpAddress& a) {
  const auto& r = std::get<AddressRange>(v);
  return !(a < r.lo) && !(r.hi < a);
}
bool inRange(const compile::Value& v, std::uint32_t x) {
  const auto& r = std::get<IntRange>(v);
  return r.lo <= x && x <= r.hi;
}

bool overlaps(const compile::Value& a, const compile::Value& b) {
  if (auto* x = std::get_if<AddressRange>(&a)) {
    const auto& y = std::get<AddressRange>(b);
    return !(x->hi < y.lo) && !(y.hi < x->lo);
  }
  const auto& x = std::get<IntRange>(a);
  const auto& y = std::get<IntRange>(b);
  return x.lo <= y.hi && y.lo <= x.hi;
}

// No two elements of one set overlap in every field.
bool disjoint(const std::vector<SetElement>& elems) {
  for (std::size_t i = 0; i < elems.size(); ++i)
    for (std::size_t j = i + 1; j < elems.size(); ++j) {
      bool all = true;
      for (std::size_t k = 0; k < elems[i].key.size(); ++k) all = all && overlaps(elems[i].key[k], elems[j].key[k]);
      if (all) return false;
    }
  return true;
}

struct Packet {
  net::IpAddress addr;
  std::uint32_t protocol, port, type, code;
};

bool rulesMatch(const std::vector<AddressMatch>& ms, const Packet& p) {
  for (const auto& m : ms) {
    if (!m.cidr.contains(p.addr)) continue;
    switch (m.l4.kind) {
      case L4Match::Kind::kAll:
        return true;
      case L4Match::Kind::kProtocol:
        if (p.protocol == m.l4.protocol) return true;
        break;
      case L4Match::Kind::kPorts:
        if (p.protocol == m.l4.protocol && m.l4.ports.lo <= p.port && p.port <= m.l4.ports.hi) return true;
        break;
      case L4Match::Kind::kIcmp:
        if (p.protocol == 1 && m.l4.icmpType.lo <= p.type && p.type <= m.l4.icmpType.hi && m.l4.icmpCode.lo <= p.code &&
            p.code <= m.l4.icmpCode.hi)
          return true;
        break;
    }
  }
  return false;
}

// What the compiled rules do: one lookup per set; ports and ICMP sets only
// see packets of their protocols.
bool setsMatch(const compile::SetElements& s, const Packet& p) {
  for (const auto& e : s.all)
    if (inRange(e.key[0], p.addr)) return true;
  for (const auto& e : s.protocol)
    if (inRange(e.key[0], p.addr) && inRange(e.key[1], p.protocol)) return true;
  if (p.protocol == 6 || p.protocol == 17)
    for (const auto& e : s.ports)
      if (inRange(e.key[0], p.addr) && inRange(e.key[1], p.protocol) && inRange(e.key[2], p.port)) return true;
  if (p.protocol == 1)
    for (const auto& e : s.icmp)
      if (inRange(e.key[0], p.addr) && inRange(e.key[1], p.type) && inRange(e.key[2], p.code)) return true;
  return false;
}

}  // namespace

TEST_CASE("integer ranges merge when they overlap or touch") {
  auto m = compile::mergeIntRanges({{10, 20}, {1, 5}, {21, 30}, {6, 6}, {40, 50}, {45, 46}});
  REQUIRE(m.size() == 3);
  CHECK(m[0] == IntRange{1, 6});
  CHECK(m[1] == IntRange{10, 30});
  CHECK(m[2] == IntRange{40, 50});
  CHECK(compile::mergeIntRanges({{0, 65535}, {80, 80}}) == std::vector<IntRange>{{0, 65535}});
  CHECK(compile::mergeIntRanges({}).empty());
}

TEST_CASE("CIDRs merge into disjoint address ranges") {
  auto r =
      compile::mergeCidrs({cidr("10.0.0.0/25"), cidr("10.0.0.128/25"), cidr("10.0.0.64/26"), cidr("192.0.2.0/24")});
  REQUIRE(r.size() == 2);
  CHECK(r[0].lo == ip("10.0.0.0"));
  CHECK(r[0].hi == ip("10.0.0.255"));
  CHECK(r[1].lo == ip("192.0.2.0"));
  auto all = compile::mergeCidrs({cidr("0.0.0.0/0"), cidr("10.0.0.0/8")});
  REQUIRE(all.size() == 1);
  CHECK(all[0].hi == ip("255.255.255.255"));
  auto v6 = compile::mergeCidrs({cidr("::/0")});
  REQUIRE(v6.size() == 1);
  CHECK(v6[0].hi == ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
}

TEST_CASE("the classic web rules compile to few elements") {
  auto s = compile::buildSetElements({
      {cidr("0.0.0.0/0"), ports(6, 80, 80)},
      {cidr("0.0.0.0/0"), ports(6, 443, 443)},
      {cidr("198.51.100.0/24"), ports(6, 22, 22)},
      {cidr("0.0.0.0/0"), ports(6, 1024, 65535)},
  });
  CHECK(s.ports.size() == 4);
  CHECK(s.all.empty());
  CHECK(disjoint(s.ports));
  // Many CIDRs on one port: one element per merged address range.
  std::vector<AddressMatch> many;
  for (int i = 0; i < 50; ++i)
    many.push_back({net::Cidr::make(net::IpAddress::v4(0x0a000000u + static_cast<std::uint32_t>(i) * 256), 24),
                    ports(6, 443, 443)});
  auto m = compile::buildSetElements(many);
  CHECK(m.ports.size() == 1);  // 10.0.0.0 - 10.0.49.255
}

TEST_CASE("ICMP type and code ranges become disjoint boxes") {
  auto s = compile::buildSetElements({
      {cidr("10.0.0.0/8"), icmp(8, 8, 0, 255)},
      {cidr("10.0.0.0/8"), icmp(3, 3, 4, 4)},
      {cidr("10.1.0.0/16"), icmp(0, 255, 0, 255)},
  });
  CHECK(disjoint(s.icmp));
  Packet p{ip("10.2.0.1"), 1, 0, 8, 3};
  CHECK(setsMatch(s, p));
  p.type = 3;
  CHECK_FALSE(setsMatch(s, p));
  p.code = 4;
  CHECK(setsMatch(s, p));
  p = {ip("10.1.2.3"), 1, 0, 200, 200};
  CHECK(setsMatch(s, p));
}

TEST_CASE("random rule sets: elements are disjoint and match exactly the union of the rules") {
  std::mt19937 rng(20261127);
  auto pick = [&](std::uint32_t lo, std::uint32_t hi) {
    return std::uniform_int_distribution<std::uint32_t>(lo, hi)(rng);
  };
  // A small address and port space so that rules overlap a lot.
  auto randomAddr = [&] { return net::IpAddress::v4(0x0a000000u | (pick(0, 3) << 8) | pick(0, 255)); };
  int checked = 0;
  for (int round = 0; round < 300; ++round) {
    std::vector<AddressMatch> ms;
    const auto n = pick(1, 12);
    for (std::uint32_t i = 0; i < n; ++i) {
      net::Cidr c =
          pick(0, 20) == 0 ? cidr("0.0.0.0/0") : net::Cidr::make(randomAddr(), static_cast<int>(pick(22, 32)));
      L4Match l4;
      switch (pick(0, 3)) {
        case 0:
          break;  // all
        case 1:
          l4 = proto(static_cast<std::uint8_t>(pick(46, 48)));
          break;
        case 2: {
          auto a = pick(0, 40), b = pick(0, 40);
          l4 = ports(pick(0, 1) ? 6 : 17, std::min(a, b), std::max(a, b));
          break;
        }
        default: {
          if (pick(0, 4) == 0) {
            l4 = icmp(0, 255, 0, 255);
          } else {
            auto t = pick(0, 4);
            auto a = pick(0, 5), b = pick(0, 5);
            l4 = pick(0, 1) ? icmp(t, t, 0, 255) : icmp(t, t, std::min(a, b), std::max(a, b));
          }
        }
      }
      ms.push_back({c, l4});
    }
    auto s = compile::buildSetElements(ms);
    REQUIRE(disjoint(s.all));
    REQUIRE(disjoint(s.protocol));
    REQUIRE(disjoint(s.ports));
    REQUIRE(disjoint(s.icmp));
    for (int k = 0; k < 200; ++k) {
      Packet p{pick(0, 30) == 0 ? net::IpAddress::v4(pick(0, 0xffffffffu)) : randomAddr(), 0, pick(0, 42), pick(0, 6),
               pick(0, 6)};
      const std::uint32_t protos[] = {1, 6, 17, 46, 47, 48, 50};
      p.protocol = protos[pick(0, 6)];
      INFO("round " << round << " packet " << p.addr.toString() << " proto " << p.protocol << " port " << p.port
                    << " icmp " << p.type << "/" << p.code);
      REQUIRE(setsMatch(s, p) == rulesMatch(ms, p));
      ++checked;
    }
  }
  CHECK(checked == 60000);
}
