// Parsing the logged packet's headers (packet.h).
#include "vpcfw/collect/packet.h"

namespace vpcfw::collect {
namespace {

std::uint16_t be16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }

// The transport header at `l4` (bytes left: `n`).
void transportOf(PacketHeader& h, const std::uint8_t* l4, std::size_t n) {
  switch (h.protocol) {
    case 6:  // TCP: the flag byte is at offset 13
      if (n < 14) return;
      h.srcPort = be16(l4), h.dstPort = be16(l4 + 2), h.tcpFlags = l4[13];
      break;
    case 17:
    case 132:
    case 136:
      if (n < 4) return;
      h.srcPort = be16(l4), h.dstPort = be16(l4 + 2);
      break;
    case 1:
    case 58:
      if (n < 8) return;
      h.icmpType = l4[0], h.icmpCode = l4[1];
      h.icmpId = be16(l4 + 4);
      break;
    default:
      break;
  }
  h.transport = true;
}

}  // namespace

std::optional<PacketHeader> parsePacket(std::span<const std::uint8_t> b) {
  if (b.empty()) return std::nullopt;
  PacketHeader h;
  const int version = b[0] >> 4;
  if (version == 4) {
    if (b.size() < 20) return std::nullopt;
    const std::size_t ihl = static_cast<std::size_t>(b[0] & 0x0f) * 4;
    if (ihl < 20 || ihl > b.size()) return std::nullopt;
    h.length = be16(&b[2]);
    h.protocol = b[9];
    h.src = net::IpAddress::fromBytes(net::Family::kIpv4, &b[12]);
    h.dst = net::IpAddress::fromBytes(net::Family::kIpv4, &b[16]);
    const bool laterFragment = (be16(&b[6]) & 0x1fff) != 0;
    if (!laterFragment) transportOf(h, b.data() + ihl, b.size() - ihl);
    return h;
  }
  if (version == 6) {
    if (b.size() < 40) return std::nullopt;
    h.length = static_cast<std::uint32_t>(be16(&b[4])) + 40;
    h.src = net::IpAddress::fromBytes(net::Family::kIpv6, &b[8]);
    h.dst = net::IpAddress::fromBytes(net::Family::kIpv6, &b[24]);
    std::uint8_t next = b[6];
    std::size_t off = 40;
    // Extension headers, at most a handful (a longer chain is not a flow we log).
    for (int k = 0; k < 8; ++k) {
      if (next == 0 || next == 43 || next == 60) {  // hop-by-hop, routing, destination options
        if (off + 2 > b.size()) return std::nullopt;
        const std::size_t len = (static_cast<std::size_t>(b[off + 1]) + 1) * 8;
        next = b[off];
        off += len;
      } else if (next == 44) {  // fragment: only the first carries the transport header
        if (off + 8 > b.size()) return std::nullopt;
        const bool laterFragment = (be16(&b[off + 2]) & 0xfff8) != 0;
        next = b[off];
        off += 8;
        if (laterFragment) {
          h.protocol = next;
          return h;
        }
      } else if (next == 51) {  // authentication header: length in 4-byte units, minus 2
        if (off + 2 > b.size()) return std::nullopt;
        const std::size_t len = (static_cast<std::size_t>(b[off + 1]) + 2) * 4;
        next = b[off];
        off += len;
      } else {
        break;
      }
      if (off > b.size()) return std::nullopt;
    }
    h.protocol = next;
    transportOf(h, b.data() + off, b.size() - off);
    return h;
  }
  return std::nullopt;
}

}  // namespace vpcfw::collect
