// Packet bytes for the probe harness: parsing what observers see, building
// ICMP probes and baseline frames.
#include "vpcfw/probe/packet.h"

#include <netinet/in.h>
#include <linux/if_ether.h>

#include <cstring>

namespace vpcfw::probe {
namespace {

constexpr char kPayload[] = "vpcfw-probe";
constexpr char kBaselineMark[] = "vpcfw-baseline";  // with its NUL

std::uint16_t be16(const unsigned char* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }

std::uint16_t checksum(std::span<const unsigned char> p) {
  std::uint32_t s = 0;
  for (std::size_t i = 0; i + 1 < p.size(); i += 2) s += be16(p.data() + i);
  if (p.size() % 2) s += static_cast<std::uint32_t>(p.back() << 8);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<std::uint16_t>(~s & 0xffff);
}

}  // namespace

std::optional<Seen> parsePacket(std::span<const unsigned char> p, std::uint16_t ethProto) {
  Seen s;
  std::size_t off = 0;
  if (ethProto == ETH_P_IP) {
    if (p.size() < 20) return std::nullopt;
    off = static_cast<std::size_t>(p[0] & 0x0f) * 4;
    s.proto = p[9];
  } else if (ethProto == ETH_P_IPV6) {
    if (p.size() < 40) return std::nullopt;
    off = 40;
    s.proto = p[6];
  } else {
    return std::nullopt;
  }
  if (p.size() < off + 8) return std::nullopt;
  const unsigned char* l4 = p.data() + off;
  if (s.proto == IPPROTO_TCP || s.proto == IPPROTO_UDP) {
    s.sport = be16(l4);
    s.dport = be16(l4 + 2);
    if (s.proto == IPPROTO_TCP) {
      if (p.size() < off + 14) return std::nullopt;
      s.tcpFlags = l4[13];
    }
  } else if (s.proto == IPPROTO_ICMP || s.proto == IPPROTO_ICMPV6) {
    s.icmpType = l4[0];
    s.icmpId = be16(l4 + 4);
  }
  return s;
}

bool isEcho(const ProbeSpec& p) { return p.icmpType == -1; }
int requestType(const ProbeSpec& p) { return isEcho(p) ? (p.dst.isV4() ? 8 : 128) : p.icmpType; }
int replyType(const ProbeSpec& p) { return p.dst.isV4() ? 0 : 129; }

namespace {
constexpr std::uint8_t kSyn = 0x02, kRst = 0x04, kAck = 0x10;
}

bool isRequest(const ProbeSpec& p, const Seen& s) {
  if (s.proto != p.protocol.number()) return false;
  if (s.proto == IPPROTO_TCP)
    return (s.tcpFlags & kSyn) && !(s.tcpFlags & kAck) && s.sport == p.sourcePort && s.dport == p.port;
  if (s.proto == IPPROTO_UDP) return s.sport == p.sourcePort && s.dport == p.port;
  return s.icmpType == requestType(p) && s.icmpId == p.icmpId;
}

bool isReply(const ProbeSpec& p, const Seen& s) {
  if (s.proto != p.protocol.number()) return false;
  if (s.proto == IPPROTO_TCP)
    return s.sport == p.port && s.dport == p.sourcePort &&
           (((s.tcpFlags & kSyn) && (s.tcpFlags & kAck)) || (s.tcpFlags & kRst));
  if (s.proto == IPPROTO_UDP) return s.sport == p.port && s.dport == p.sourcePort;
  return isEcho(p) && s.icmpType == replyType(p) && s.icmpId == p.icmpId;
}

std::vector<unsigned char> icmpMessage(const ProbeSpec& p) {
  std::vector<unsigned char> msg(8 + sizeof kPayload);
  msg[0] = static_cast<unsigned char>(requestType(p));
  msg[1] = static_cast<unsigned char>(p.icmpCode);
  msg[4] = static_cast<unsigned char>(p.icmpId >> 8);  // probes are told apart by identifier
  msg[5] = static_cast<unsigned char>(p.icmpId & 0xff);
  msg[7] = 1;
  std::memcpy(msg.data() + 8, kPayload, sizeof kPayload);
  if (p.dst.isV4()) {
    const auto sum = checksum(msg);
    msg[2] = static_cast<unsigned char>(sum >> 8);
    msg[3] = static_cast<unsigned char>(sum & 0xff);
  }
  return msg;
}

std::vector<unsigned char> baselineFrame(std::uint64_t nonce, std::uint32_t index) {
  std::vector<unsigned char> f(sizeof kBaselineMark + 12);
  std::memcpy(f.data(), kBaselineMark, sizeof kBaselineMark);
  for (int i = 0; i < 8; ++i) f[sizeof kBaselineMark + i] = static_cast<unsigned char>(nonce >> (56 - 8 * i));
  for (int i = 0; i < 4; ++i) f[sizeof kBaselineMark + 8 + i] = static_cast<unsigned char>(index >> (24 - 8 * i));
  return f;
}

std::optional<std::uint32_t> parseBaseline(std::span<const unsigned char> p, std::uint64_t nonce) {
  if (p.size() < sizeof kBaselineMark + 12 || std::memcmp(p.data(), kBaselineMark, sizeof kBaselineMark) != 0)
    return std::nullopt;
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n = n << 8 | p[sizeof kBaselineMark + i];
  if (n != nonce) return std::nullopt;  // another run's
  std::uint32_t index = 0;
  for (int i = 0; i < 4; ++i) index = index << 8 | p[sizeof kBaselineMark + 8 + i];
  return index;
}

}  // namespace vpcfw::probe
