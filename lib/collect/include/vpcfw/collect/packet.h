// The headers of a packet the kernel logged (nfnetlink_log copies the start
// of the packet): addresses, protocol, ports or ICMP type, TCP flags and the
// packet's length on the wire. Pure, and bounded by the bytes given: a short
// or malformed copy gives nullopt, never a read past the buffer.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "vpcfw/net/address.h"

namespace vpcfw::collect {

struct PacketHeader {
  net::IpAddress src, dst;
  std::uint8_t protocol = 0;               // the transport protocol (after IPv6 extension headers)
  std::uint16_t srcPort = 0, dstPort = 0;  // TCP, UDP, SCTP, UDP-Lite
  int icmpType = -1, icmpCode = -1;        // ICMP, ICMPv6
  std::uint16_t icmpId = 0;                // echo request and reply
  std::uint8_t tcpFlags = 0;               // the TCP header's flag byte
  std::uint32_t length = 0;                // the IP packet's length (header included)
  bool transport = false;                  // the transport header was in the copy (not a later fragment)
};

// Parses an IPv4 or IPv6 packet from its first byte (the version nibble).
std::optional<PacketHeader> parsePacket(std::span<const std::uint8_t> bytes);

}  // namespace vpcfw::collect
