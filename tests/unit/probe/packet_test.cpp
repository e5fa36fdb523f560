// The probe harness's packet bytes: what counts as a probe's request and its
// reply (a stray packet must not), ICMP messages, and baseline frames (only
// this run's count).
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <linux/if_ether.h>

#include <algorithm>
#include <iterator>
#include <vector>

#include "vpcfw/probe/packet.h"

using namespace vpcfw;
using probe::Seen;

namespace {

// An IPv4 packet (20-byte header) with the first bytes of a layer-4 header.
std::vector<unsigned char> ipv4(int proto, std::vector<unsigned char> l4) {
  std::vector<unsigned char> p(20 + l4.size(), 0);
  p[0] = 0x45;
  p[9] = static_cast<unsigned char>(proto);
  std::copy(l4.begin(), l4.end(), p.begin() + 20);
  return p;
}

std::vector<unsigned char> tcp(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags) {
  std::vector<unsigned char> h(20, 0);
  h[0] = static_cast<unsigned char>(sport >> 8);
  h[1] = static_cast<unsigned char>(sport);
  h[2] = static_cast<unsigned char>(dport >> 8);
  h[3] = static_cast<unsigned char>(dport);
  h[13] = flags;
  return ipv4(IPPROTO_TCP, h);
}

probe::ProbeSpec spec(int proto) {
  probe::ProbeSpec s;
  s.src = *net::IpAddress::parse("10.0.1.10");
  s.dst = *net::IpAddress::parse("10.0.2.20");
  s.protocol = net::Protocol(proto);
  s.port = 80;
  s.sourcePort = 50123;
  s.icmpId = 0xbeef;
  return s;
}

Seen seen(const std::vector<unsigned char>& p) {
  auto s = probe::parsePacket(p, ETH_P_IP);
  REQUIRE(s);
  return *s;
}

constexpr std::uint8_t kSyn = 0x02, kRst = 0x04, kAck = 0x10;

}  // namespace

TEST_CASE("tcp: the request is the probe's SYN, the reply its SYN-ACK or reset, nothing else") {
  const auto s = spec(net::Protocol::kTcp);
  CHECK(probe::isRequest(s, seen(tcp(50123, 80, kSyn))));
  CHECK_FALSE(probe::isRequest(s, seen(tcp(50123, 80, kSyn | kAck))));  // a reply, not a request
  CHECK_FALSE(probe::isRequest(s, seen(tcp(50123, 80, kAck))));         // the handshake's last ACK
  CHECK_FALSE(probe::isRequest(s, seen(tcp(50124, 80, kSyn))));         // another probe's port
  CHECK_FALSE(probe::isRequest(s, seen(tcp(50123, 81, kSyn))));
  CHECK(probe::isReply(s, seen(tcp(80, 50123, kSyn | kAck))));
  CHECK(probe::isReply(s, seen(tcp(80, 50123, kRst | kAck))));
  CHECK_FALSE(probe::isReply(s, seen(tcp(80, 50123, kAck))));  // data of an old connection
  CHECK_FALSE(probe::isReply(s, seen(tcp(80, 50124, kSyn | kAck))));
  CHECK_FALSE(probe::isReply(s, seen(tcp(50123, 80, kSyn | kAck))));  // the wrong way round
}

TEST_CASE("udp and icmp: ports and identifiers tell probes apart") {
  const auto u = spec(net::Protocol::kUdp);
  auto udp = [](std::uint16_t sp, std::uint16_t dp) {
    return ipv4(IPPROTO_UDP, {static_cast<unsigned char>(sp >> 8), static_cast<unsigned char>(sp),
                              static_cast<unsigned char>(dp >> 8), static_cast<unsigned char>(dp), 0, 8, 0, 0});
  };
  CHECK(probe::isRequest(u, seen(udp(50123, 80))));
  CHECK(probe::isReply(u, seen(udp(80, 50123))));
  CHECK_FALSE(probe::isReply(u, seen(udp(80, 50000))));
  CHECK_FALSE(probe::isRequest(u, seen(tcp(50123, 80, kSyn))));  // another protocol

  const auto i = spec(net::Protocol::kIcmp);
  auto icmp = [](int type, std::uint16_t id) {
    return ipv4(IPPROTO_ICMP, {static_cast<unsigned char>(type), 0, 0, 0, static_cast<unsigned char>(id >> 8),
                               static_cast<unsigned char>(id), 0, 1});
  };
  CHECK(probe::isRequest(i, seen(icmp(8, 0xbeef))));
  CHECK(probe::isReply(i, seen(icmp(0, 0xbeef))));
  CHECK_FALSE(probe::isReply(i, seen(icmp(0, 0xbeee))));  // an earlier run's echo
  CHECK_FALSE(probe::isRequest(i, seen(icmp(0, 0xbeef))));
  auto timestamp = i;
  timestamp.icmpType = 13;
  CHECK(probe::isRequest(timestamp, seen(icmp(13, 0xbeef))));
  CHECK_FALSE(probe::isReply(timestamp, seen(icmp(14, 0xbeef))));  // no reply is expected of other types
}

TEST_CASE("parsePacket: short or foreign packets are not probes") {
  CHECK_FALSE(probe::parsePacket(std::vector<unsigned char>(10, 0), ETH_P_IP));
  auto t = tcp(50123, 80, kSyn);
  t.resize(30);  // the TCP flags are cut off
  CHECK_FALSE(probe::parsePacket(t, ETH_P_IP));
  CHECK_FALSE(probe::parsePacket(tcp(50123, 80, kSyn), ETH_P_ARP));
  std::vector<unsigned char> v6(48, 0);
  v6[0] = 0x60;
  v6[6] = IPPROTO_ICMPV6;
  const unsigned char echo[] = {128, 0, 0, 0, 0x12, 0x34, 0, 1};
  std::copy(std::begin(echo), std::end(echo), v6.begin() + 40);
  auto s = probe::parsePacket(v6, ETH_P_IPV6);
  REQUIRE(s);
  CHECK(s->icmpType == 128);
  CHECK(s->icmpId == 0x1234);
}

TEST_CASE("icmpMessage: the type, the identifier and a valid IPv4 checksum") {
  const auto msg = probe::icmpMessage(spec(net::Protocol::kIcmp));
  REQUIRE(msg.size() >= 8);
  CHECK(msg[0] == 8);
  CHECK(msg[4] == 0xbe);
  CHECK(msg[5] == 0xef);
  std::uint32_t sum = 0;  // over the whole message, checksum included: all ones
  for (std::size_t k = 0; k + 1 < msg.size(); k += 2) sum += static_cast<std::uint32_t>(msg[k] << 8 | msg[k + 1]);
  if (msg.size() % 2) sum += static_cast<std::uint32_t>(msg.back() << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  CHECK(sum == 0xffff);
}

TEST_CASE("baseline frames: this run's are recognised with their number, another run's are not") {
  const auto f = probe::baselineFrame(0x0123456789abcdefULL, 7);
  auto index = probe::parseBaseline(f, 0x0123456789abcdefULL);
  REQUIRE(index);
  CHECK(*index == 7);
  CHECK_FALSE(probe::parseBaseline(f, 0x0123456789abcdeeULL));  // another run
  auto cut = f;
  cut.pop_back();
  CHECK_FALSE(probe::parseBaseline(cut, 0x0123456789abcdefULL));
  auto forged = f;
  forged[0] ^= 1;  // not vpcfw's marker
  CHECK_FALSE(probe::parseBaseline(forged, 0x0123456789abcdefULL));
}
