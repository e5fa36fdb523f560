// Flow-log collection from real packets (docs/flowlogs.md, "Collection"):
// in each fabric's network namespace a ctnetlink socket for destroy events,
// a conntrack dump at every sample, and an nfnetlink_log socket on the
// group the ruleset logs drops and accepted TCP control packets to. The
// translator turns them into observations, each flow log's aggregator into
// records, handed to the caller as intervals close. Lost events (ENOBUFS on
// either socket, a gap in nflog's sequence numbers) become SKIPDATA for
// the fabric's ENIs and are counted.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/collect/translate.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/flowlog/aggregator.h"
#include "vpcfw/lab/plan.h"
#include "vpcfw/model/model.h"

namespace vpcfw::collect {

// Where one fabric's filter runs: a named namespace (a lab router) or the
// caller's own (nullopt: host mode), and its ENIs' interface names.
struct Fabric {
  std::optional<std::string> netns;
  std::vector<FabricEni> enis;
};

// A lab's fabrics: each router namespace of the plan and the ENIs linked into it.
std::vector<Fabric> labFabrics(const model::Model& m, const lab::LabPlan& plan);
// A host's: its instances placed on `host` (their interfaces), in `netns`
// (nullopt: the caller's own namespace).
Fabric hostFabric(const model::Model& m, const std::string& host, std::optional<std::string> netns);

struct CollectorOptions {
  std::uint16_t group = compile::kFlowLogGroup;  // the nflog group the ruleset logs to
  int socketBuffer = 64 << 20;                   // receive buffer of each socket (SO_RCVBUFFORCE)
  std::int64_t sampleSeconds = 5;                // conntrack counters are read at least this often
  std::uint32_t logQueueThreshold = 16;          // nflog batches this many messages...
  std::uint32_t logFlushCentiseconds = 1;        // ...or waits this long (1/100 s)
  std::size_t maxFlowsPerInterval = 262144;      // per flow log; past it, SKIPDATA
  std::optional<std::int64_t> interval;          // overrides every flow log's aggregation interval (seconds)
  bool enableAccounting = true;                  // turn on nf_conntrack_acct and _timestamp in the fabrics
};

struct CollectorStats {
  std::uint64_t ctDestroyEvents = 0, ctDumpedEntries = 0, logMessages = 0;
  std::uint64_t lostCtEvents = 0;     // ENOBUFS on a ctnetlink event socket (each counts one)
  std::uint64_t lostLogMessages = 0;  // nflog sequence gaps and ENOBUFS
  std::uint64_t samples = 0;
  std::uint64_t foreignLogMessages = 0;  // prefixes the ruleset does not write
  std::uint64_t uncountedFlows = 0;      // entries without counters, reported as loss
  TranslatorStats translator;            // summed over the fabrics
  flowlog::AggregatorStats aggregated;   // summed over the flow logs
};

// Records of one flow log's closed intervals.
using RecordSink = std::function<void(const model::FlowLog& log, const std::vector<flowlog::Record>& records)>;

class Collector {
 public:
  ~Collector();
  // Opens every fabric's sockets, turns accounting on, and takes the
  // baseline dump: only traffic from now on is recorded. `m` must outlive
  // the collector.
  [[nodiscard]] static Expected<std::unique_ptr<Collector>> open(const model::Model& m, std::vector<Fabric> fabrics,
                                                                 CollectorOptions options, RecordSink sink);

  // Reads events and samples counters until `stop` is set (checked at least
  // every 100 ms) or an error; closes intervals on the wall clock as they
  // end. On return (stop), the open intervals are flushed to the sink.
  [[nodiscard]] Expected<void> run(const std::atomic<bool>& stop);

  // One step, for callers with their own loop: waits at most `timeoutMs` for
  // events, reads them, samples when due, closes intervals that ended.
  [[nodiscard]] Expected<void> step(int timeoutMs);
  // Samples now and closes every open interval at `now` (shutdown, reload).
  [[nodiscard]] Expected<void> flush();

  CollectorStats stats() const;
  // The sockets step() reads, for a caller's own event loop (readable: call step(0)).
  std::vector<int> fds() const;
  // What open() could not set up but collection goes on without (conntrack
  // accounting that could not be turned on), for the caller to say.
  const std::vector<std::string>& warnings() const;

 private:
  Collector();
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace vpcfw::collect
