// Real probes through a running lab: a TCP connect, a UDP datagram echoed
// back, or an ICMP message, sent from inside one namespace to another, with
// a listener at the destination and a packet socket there that sees whether
// the request arrived. Many probes run at once under one deadline.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "vpcfw/net/address.h"
#include "vpcfw/net/protocol.h"

namespace vpcfw::lab {

struct ProbeSpec {
  std::string srcNs;              // namespace the probe is sent from
  net::IpAddress src;             // and its source address there
  std::string dstNs;              // namespace the request should arrive in
  net::IpAddress dst;             // the address it is sent to (a public IP arrives translated)
  net::Protocol protocol{net::Protocol::kTcp};  // tcp, udp, icmp or icmpv6
  std::uint16_t port = 0;         // tcp/udp destination port
  std::uint16_t sourcePort = 0;   // tcp/udp source port (unique per probe in one run)
  int icmpType = -1, icmpCode = 0;  // -1: echo request
};

struct ProbeResult {
  bool requestArrived = false;  // the destination namespace saw the request
  bool replyReturned = false;   // the source saw the reply (connect done, datagram or echo reply back)
  bool replyExpected = true;    // false for ICMP types other than echo
  std::string error;            // a local error, or what came back instead ("refused", "unreachable")
  double ms = 0;                // until the reply (or the deadline)
};

// Runs `probes` in parallel; each gets up to `timeout`. Listeners are opened
// in every destination namespace for the ports probed there. ICMP probes
// carry identifiers that differ from run to run, so that a new echo is never
// part of an earlier run's tracked flow (TCP/UDP: choose fresh source ports).
std::vector<ProbeResult> runProbes(const std::vector<ProbeSpec>& probes, std::chrono::milliseconds timeout);

}  // namespace vpcfw::lab
