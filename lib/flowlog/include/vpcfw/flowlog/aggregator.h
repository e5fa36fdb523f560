// The aggregation of observed traffic into flow-log records, as AWS does it:
// one record per ENI, direction, 5-tuple and action in each aggregation
// interval; NODATA for an ENI that saw no traffic in an interval; SKIPDATA
// when observations were lost (reported by the collector, or refused because
// the bounded table was full). Intervals close on a clock the caller passes
// in, so tests run without sleeping. Pure: no I/O, no clock of its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vpcfw/flowlog/record.h"
#include "vpcfw/model/model.h"
#include "vpcfw/net/address.h"

namespace vpcfw::flowlog {

// An ENI the aggregator records: its identity in records and the addresses
// whose traffic AWS does not log for it (its subnet's router, the VPC's DNS
// resolver; the link-local services are always added).
struct Eni {
  EniIdentity identity;
  std::vector<net::IpAddress> unlogged;
};

// The ENIs a flow log covers, in model order of their instances: the
// instances of its VPC or subnet, or its one instance. `instances`, when
// given, gets each ENI's index in m.instances.
std::vector<Eni> enisOf(const model::Model& m, const model::FlowLog& log,
                        std::vector<std::size_t>* instances = nullptr);

// What the collector saw of one flow on one ENI since it last reported it.
struct Observation {
  std::size_t eni = 0;  // index into the aggregator's ENIs
  FlowDirection direction = FlowDirection::kIngress;
  Action action = Action::kAccept;
  // The 5-tuple as the record prints it (srcaddr, dstaddr: the ENI's private
  // address on its side, see pktSrc/pktDst).
  net::IpAddress src, dst;
  std::uint8_t protocol = 0;
  std::uint16_t srcPort = 0, dstPort = 0;  // 0 for protocols without ports
  std::uint64_t packets = 0, bytes = 0;
  std::uint8_t tcpFlags = 0;  // AWS's bits (awsTcpFlags), ORed over the packets observed
  std::int64_t first = 0;     // Unix seconds of the first packet observed
  std::int64_t last = 0;      // and of the last (less than `first`: taken as `first`)
  // The addresses on the packet where they differ from src/dst (the internet
  // gateway's NAT); unset: the same as src/dst.
  std::optional<net::IpAddress> pktSrc, pktDst;
  std::optional<TrafficPath> trafficPath;  // egress
};

struct AggregatorOptions {
  std::int64_t interval = 600;  // seconds, > 0 (the flow log's max_aggregation_interval)
  model::FlowLog::Traffic traffic = model::FlowLog::Traffic::kAll;
  std::size_t maxFlows = 65536;  // records one interval may hold; past it, SKIPDATA (> 0)
  std::string accountId{model::FlowLog::kLabAccountId};
  std::string region = "us-east-1";
};

// What the aggregator did not turn into records, for metrics. Totals since
// construction.
struct AggregatorStats {
  std::uint64_t observations = 0;  // observe() calls
  std::uint64_t records = 0;       // OK records emitted
  std::uint64_t noData = 0;        // NODATA records emitted
  std::uint64_t skipData = 0;      // SKIPDATA records emitted
  std::uint64_t filtered = 0;      // observations of the other action than the traffic type logs
  std::uint64_t unlogged = 0;      // to or from an address AWS does not log (DNS, metadata, DHCP, router...)
  std::uint64_t overflowed = 0;    // refused: the table was full (each counted in a SKIPDATA row)
  std::uint64_t reportedLost = 0;  // events the collector reported lost (reportLoss)
  std::uint64_t badEni = 0;        // observations naming no ENI of this aggregator
};

class Aggregator {
 public:
  // The first interval opens at `now` rounded down to a multiple of the
  // interval (Unix time), so that every aggregator's intervals line up.
  Aggregator(AggregatorOptions options, std::vector<Eni> enis, std::int64_t now);
  ~Aggregator();
  Aggregator(Aggregator&&) noexcept;
  Aggregator& operator=(Aggregator&&) noexcept;

  // Counts `o` into the open interval's record of its key (ENI, direction,
  // action, 5-tuple): packets and bytes add up, tcp-flags OR, start is the
  // earliest first, end the latest last. Filtered and unlogged traffic still
  // makes the ENI not idle (no NODATA).
  void observe(const Observation& o);
  // The collector lost `events` observations of ENI `eni` (nothing: of any
  // ENI, e.g. ENOBUFS on a socket that serves them all): the open interval
  // gets a SKIPDATA row for that ENI (or each ENI).
  void reportLoss(std::optional<std::size_t> eni, std::uint64_t events);

  // Closes every interval that ended at or before `now` and returns their
  // records: per interval, each ENI's OK records (in first-observed order),
  // then its SKIPDATA row, or its NODATA row when it saw nothing. A jump of
  // several intervals gives idle ENIs one NODATA row spanning the gap.
  std::vector<Record> advance(std::int64_t now);
  // Closes the open interval at `now` (shutdown, or a reload that changes
  // the flow log) and opens the next one from `now`.
  std::vector<Record> flush(std::int64_t now);

  std::int64_t intervalStart() const;  // of the open interval
  std::int64_t intervalEnd() const;    // when advance() closes it
  std::size_t openFlows() const;       // records the open interval holds
  const AggregatorStats& stats() const;
  const std::vector<Eni>& enis() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace vpcfw::flowlog
