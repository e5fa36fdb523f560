// Real probes through a running lab: a TCP connect, a UDP datagram echoed
// back, or an ICMP message, sent from inside one namespace to another, with a
// listener at the destination and a packet socket (an observer) in every
// namespace a probe starts or ends in. Many probes run at once under one
// deadline.
//
// What a probe reports is only what the harness could see: a probe whose
// sockets could not be opened, bound, connected or sent on, whose listener or
// observers could not be opened, or whose namespaces do not exist, is a
// harness error, never "dropped". A negative ("request dropped", "reply
// dropped") is reported only when the same run showed the observers can see a
// positive: a baseline frame injected from the other end of each link into
// the namespace, seen before and after the probes (docs/lab.md, "Baselines").
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "vpcfw/net/address.h"
#include "vpcfw/net/protocol.h"

namespace vpcfw::probe {

struct ProbeSpec {
  std::string srcNs;                            // namespace the probe is sent from
  net::IpAddress src;                           // and its source address there
  std::string dstNs;                            // namespace the request should arrive in
  net::IpAddress dst;                           // the address it is sent to (a public IP arrives translated)
  net::Protocol protocol{net::Protocol::kTcp};  // tcp, udp, icmp or icmpv6
  std::uint16_t port = 0;                       // tcp/udp destination port
  std::uint16_t sourcePort = 0;                 // tcp/udp source port (unique per probe in one run)
  int icmpType = -1, icmpCode = 0;              // -1: echo request
  std::uint16_t icmpId = 0;                     // icmp/icmpv6 identifier (unique per probe in one run)
};

struct ProbeResult {
  enum class Outcome {
    kObserved,      // the fields below are what the packets did
    kHarnessError,  // the probe could not be carried out or not be seen; `error` says why
  };
  Outcome outcome = Outcome::kObserved;
  bool requestArrived = false;  // the destination namespace saw the request
  bool replyReturned = false;   // the source saw the reply (connect done, datagram or echo reply back)
  bool replyExpected = true;    // false for ICMP types other than echo
  std::string error;            // kHarnessError: what failed, with the kernel's reason
  std::string detail;           // kObserved: what came back instead of the reply ("refused (reset)")
  double ms = 0;                // until the reply (or the deadline)
  bool harnessError() const { return outcome == Outcome::kHarnessError; }
};

// Where a baseline frame enters a namespace: the far end of one of its links
// (namespace and interface name there).
struct LinkEnd {
  std::string ns, ifname;
};
// For each namespace probes may start or end in, every link into it.
using EntryPoints = std::map<std::string, std::vector<LinkEnd>>;

// Runs `probes` in parallel; each gets up to `timeout`. Listeners are opened
// in every destination namespace for the ports probed there. Source ports and
// ICMP identifiers are the caller's (see plan.h: fresh per run).
std::vector<ProbeResult> runProbes(const std::vector<ProbeSpec>& probes, const EntryPoints& entries,
                                   std::chrono::milliseconds timeout);

}  // namespace vpcfw::probe
