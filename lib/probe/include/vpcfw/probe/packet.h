// The packets of the probe harness as bytes: what an observer's packet socket
// sees (the layer-3 packet and its layer-4 fields), the ICMP messages probes
// send, and the baseline frames that prove an observer can see anything.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "vpcfw/probe/run.h"

namespace vpcfw::probe {

// The fields probes are told apart by, of one packet an observer saw.
struct Seen {
  int proto = 0;
  std::uint16_t sport = 0, dport = 0;  // tcp / udp
  std::uint8_t tcpFlags = 0;
  int icmpType = -1;
  std::uint16_t icmpId = 0;
};
// `ethProto`: the packet socket's sll_protocol (host order).
std::optional<Seen> parsePacket(std::span<const unsigned char> p, std::uint16_t ethProto);

int requestType(const ProbeSpec& p);  // the ICMP type sent: echo request of the family, or the spec's
int replyType(const ProbeSpec& p);    // echo reply of the family
bool isEcho(const ProbeSpec& p);
bool isRequest(const ProbeSpec& p, const Seen& s);  // the probe's request (TCP: its SYN)
bool isReply(const ProbeSpec& p, const Seen& s);    // the destination's answer to it (TCP: SYN-ACK or reset)

// The ICMP message of an ICMP probe (IPv4 checksum filled; the kernel fills ICMPv6's).
std::vector<unsigned char> icmpMessage(const ProbeSpec& p);

// Baseline frames: an EtherType no stack handles (IEEE local experimental),
// a marker, the run's nonce and the baseline's number.
inline constexpr std::uint16_t kBaselineEthertype = 0x88b5;
std::vector<unsigned char> baselineFrame(std::uint64_t nonce, std::uint32_t index);
std::optional<std::uint32_t> parseBaseline(std::span<const unsigned char> p, std::uint64_t nonce);

}  // namespace vpcfw::probe
