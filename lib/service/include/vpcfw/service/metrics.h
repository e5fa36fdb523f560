// The daemon's metrics: counters, gauges and histograms with labels, rendered
// in the Prometheus text exposition format 0.0.4, over the control socket and
// optionally into a file for node_exporter's textfile collector. Label values
// come from config names and interface names: they are escaped (and invalid
// UTF-8 replaced) so no value can break out of its quotes or its line.
// The daemon fills the values; this is the registry and the renderer.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"

namespace vpcfw::service {

enum class MetricType { kCounter, kGauge, kHistogram };

// Bucket upper bounds (seconds) for vpcfw_sync_duration_seconds: 1 ms .. 10 s.
inline const std::vector<double> kSyncDurationBuckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,  0.5,    1,     2.5,  5,     10};

class Metrics {
 public:
  using LabelValues = std::vector<std::string>;

  // Declares a family. `labels` are the label names every series of it has,
  // in order; `buckets` (histograms only) ascending upper bounds, +Inf
  // implied. Names are code, not input: an invalid metric or label name, or
  // a second declaration of a name, is an kInternal error.
  [[nodiscard]] Expected<void> describe(const std::string& name, MetricType type, const std::string& help,
                                        std::vector<std::string> labels = {}, std::vector<double> buckets = {});

  // The series of `name` with `values` (one per label name). A call naming an
  // undeclared family, the wrong type or the wrong number of values does
  // nothing and returns false.
  bool add(const std::string& name, const LabelValues& values, double delta = 1);  // counter
  bool set(const std::string& name, const LabelValues& values, double value);      // gauge, or a counter
                                                                                   // read from the kernel
  bool observe(const std::string& name, const LabelValues& values, double value);  // histogram
  // Forgets every series of `name` (ENIs that went away with a reload).
  void clear(const std::string& name);

  double value(const std::string& name, const LabelValues& values) const;  // 0 when absent (tests, status)

  // The exposition text: families by name, series by label values.
  std::string render() const;

  // Writes render() to `path` atomically: a new file in the same directory
  // (O_EXCL | O_NOFOLLOW, mode 0644, named so the collector's *.prom glob
  // skips it) renamed over `path`.
  [[nodiscard]] Expected<void> writeTextfile(const std::string& path) const;

 private:
  struct Series {
    double value = 0;                    // counter, gauge
    std::vector<std::uint64_t> buckets;  // histogram: per-bucket counts (not cumulative)
    double sum = 0;
    std::uint64_t count = 0;
  };
  struct Family {
    MetricType type = MetricType::kCounter;
    std::string help;
    std::vector<std::string> labels;
    std::vector<double> buckets;
    std::map<LabelValues, Series> series;
  };
  Series* find(const std::string& name, const LabelValues& values, MetricType type);
  std::map<std::string, Family> families_;
};

// Declares the daemon's families (daemon.md): vpcfw_reloads_total{result},
// vpcfw_sync_duration_seconds, vpcfw_drift_repairs_total, vpcfw_generation,
// vpcfw_enis, vpcfw_rules, vpcfw_dropped_packets_total{eni,stage}.
Metrics vpcfwMetrics();

// A label value as the text format writes it between quotes: backslash,
// double quote and newline escaped, invalid UTF-8 replaced by U+FFFD.
std::string escapeLabelValue(std::string_view v);

}  // namespace vpcfw::service
