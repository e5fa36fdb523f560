// The metrics registry and its Prometheus text rendering (metrics.h).
#include "vpcfw/service/metrics.h"

#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <random>

#include "vpcfw/base/diagnostic.h"

namespace vpcfw::service {
namespace {

bool validName(std::string_view n, bool colon) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// Length of the valid UTF-8 sequence at s[i], or 0.
std::size_t utf8Length(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  unsigned lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF)
    n = 2;
  else if (c == 0xE0)
    n = 3, lo = 0xA0;
  else if (c >= 0xE1 && c <= 0xEC)
    n = 3;
  else if (c == 0xED)
    n = 3, hi = 0x9F;  // no surrogates
  else if (c >= 0xEE && c <= 0xEF)
    n = 3;
  else if (c == 0xF0)
    n = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3)
    n = 4;
  else if (c == 0xF4)
    n = 4, hi = 0x8F;
  else
    return 0;
  if (i + n > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k)
    if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
  return n;
}

std::string formatNumber(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<long long>(v));
  return fmt::format("{}", v);
}

std::string escapeHelp(std::string_view h) {
  std::string out;
  for (char c : h) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

// {a="x",b="y"} plus `extra` (le="..."), or nothing when there are no labels.
std::string labelText(const std::vector<std::string>& names, const std::vector<std::string>& values,
                      const std::string& extra = {}) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i)
    out += (out.empty() ? "" : ",") + names[i] + "=\"" + escapeLabelValue(values[i]) + "\"";
  if (!extra.empty()) out += (out.empty() ? "" : ",") + extra;
  return out.empty() ? out : "{" + out + "}";
}

}  // namespace

std::string escapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size();) {
    const char c = v[i];
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else {
      const std::size_t n = utf8Length(v, i);
      if (n == 0) {
        out += "\xEF\xBF\xBD";
        ++i;
        continue;
      }
      out.append(v.substr(i, n));
      i += n;
      continue;
    }
    ++i;
  }
  return out;
}

Expected<void> Metrics::describe(const std::string& name, MetricType type, const std::string& help,
                                 std::vector<std::string> labels, std::vector<double> buckets) {
  if (!validName(name, true)) return makeError(ErrorCode::kInternal, "metrics: invalid metric name " + name);
  if (families_.count(name)) return makeError(ErrorCode::kInternal, "metrics: " + name + " declared twice");
  for (const auto& l : labels)
    if (!validName(l, false) || l.rfind("__", 0) == 0 || (type == MetricType::kHistogram && l == "le"))
      return makeError(ErrorCode::kInternal, "metrics: invalid label name " + l);
  if (type == MetricType::kHistogram) {
    if (buckets.empty() || !std::is_sorted(buckets.begin(), buckets.end()) ||
        std::adjacent_find(buckets.begin(), buckets.end()) != buckets.end() ||
        std::any_of(buckets.begin(), buckets.end(), [](double b) { return !std::isfinite(b); }))
      return makeError(ErrorCode::kInternal, "metrics: " + name + " needs ascending finite buckets");
  } else if (!buckets.empty()) {
    return makeError(ErrorCode::kInternal, "metrics: only histograms have buckets");
  }
  families_[name] = Family{type, help, std::move(labels), std::move(buckets), {}};
  return {};
}

Metrics::Series* Metrics::find(const std::string& name, const LabelValues& values, MetricType type) {
  auto it = families_.find(name);
  if (it == families_.end() || it->second.type != type || values.size() != it->second.labels.size()) return nullptr;
  auto& s = it->second.series[values];
  if (type == MetricType::kHistogram && s.buckets.empty()) s.buckets.assign(it->second.buckets.size(), 0);
  return &s;
}

bool Metrics::add(const std::string& name, const LabelValues& values, double delta) {
  if (!(delta >= 0)) return false;  // a counter only goes up (NaN included)
  auto* s = find(name, values, MetricType::kCounter);
  if (!s) return false;
  s->value += delta;
  return true;
}

bool Metrics::set(const std::string& name, const LabelValues& values, double value) {
  auto it = families_.find(name);
  if (it == families_.end() || it->second.type == MetricType::kHistogram) return false;
  auto* s = find(name, values, it->second.type);
  if (!s) return false;
  s->value = value;
  return true;
}

bool Metrics::observe(const std::string& name, const LabelValues& values, double value) {
  if (std::isnan(value)) return false;
  auto* s = find(name, values, MetricType::kHistogram);
  if (!s) return false;
  const auto& bounds = families_.at(name).buckets;
  const auto at = std::lower_bound(bounds.begin(), bounds.end(), value);  // first bound >= value: le is inclusive
  if (at != bounds.end()) ++s->buckets[static_cast<std::size_t>(at - bounds.begin())];
  s->sum += value;
  ++s->count;
  return true;
}

void Metrics::clear(const std::string& name) {
  if (auto it = families_.find(name); it != families_.end()) it->second.series.clear();
}

double Metrics::value(const std::string& name, const LabelValues& values) const {
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  auto s = it->second.series.find(values);
  if (s == it->second.series.end()) return 0;
  return it->second.type == MetricType::kHistogram ? static_cast<double>(s->second.count) : s->second.value;
}

std::string Metrics::render() const {
  std::string out;
  for (const auto& [name, f] : families_) {
    const char* type = f.type == MetricType::kCounter ? "counter"
                       : f.type == MetricType::kGauge ? "gauge"
                                                      : "histogram";
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escapeHelp(f.help), name, type);
    // A family without labels has its one series from the start: a scrape
    // sees 0, not a missing metric.
    if (f.series.empty() && f.labels.empty()) {
      if (f.type != MetricType::kHistogram) {
        out += name + " 0\n";
      } else {
        for (double b : f.buckets) out += fmt::format("{}_bucket{{le=\"{}\"}} 0\n", name, formatNumber(b));
        out += fmt::format("{0}_bucket{{le=\"+Inf\"}} 0\n{0}_sum 0\n{0}_count 0\n", name);
      }
      continue;
    }
    for (const auto& [values, s] : f.series) {
      if (f.type != MetricType::kHistogram) {
        out += name + labelText(f.labels, values) + " " + formatNumber(s.value) + "\n";
        continue;
      }
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < f.buckets.size(); ++i) {
        cumulative += s.buckets[i];
        out += name + "_bucket" + labelText(f.labels, values, "le=\"" + formatNumber(f.buckets[i]) + "\"") + " " +
               std::to_string(cumulative) + "\n";
      }
      out += name + "_bucket" + labelText(f.labels, values, "le=\"+Inf\"") + " " + std::to_string(s.count) + "\n";
      out += name + "_sum" + labelText(f.labels, values) + " " + formatNumber(s.sum) + "\n";
      out += name + "_count" + labelText(f.labels, values) + " " + std::to_string(s.count) + "\n";
    }
  }
  return out;
}

Expected<void> Metrics::writeTextfile(const std::string& path) const {
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty() || base == "." || base == "..")
    return makeError(ErrorCode::kInvalidArgument, "metrics file " + escapeForMessage(path) + " names no file");
  const std::string text = render();
  std::random_device rd;
  // A dot name ending in .tmp: the textfile collector reads only *.prom.
  const std::string tmp = fmt::format("{}/.{}.{}.{:08x}.tmp", dir, base, ::getpid(), rd());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return systemError(ErrorCode::kIo, "metrics file " + escapeForMessage(tmp), errno);
  auto fail = [&](const std::string& what, int e) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return systemError(ErrorCode::kIo, "metrics file " + escapeForMessage(tmp) + ": " + what, e);
  };
  if (::fchmod(fd, 0644) < 0) return fail("chmod", errno);  // whatever the umask: the collector runs as another user
  for (std::size_t done = 0; done < text.size();) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("write", n < 0 ? errno : EIO);
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) < 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return systemError(ErrorCode::kIo, "metrics file " + escapeForMessage(tmp) + ": close", e);
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return systemError(ErrorCode::kIo, "metrics file " + escapeForMessage(path) + ": rename", e);
  }
  return {};
}

Metrics vpcfwMetrics() {
  Metrics m;
  // Names are literals here: describe cannot fail.
  (void)m.describe("vpcfw_reloads_total", MetricType::kCounter, "Reloads by result (committed, unchanged, rejected).",
                   {"result"});
  (void)m.describe("vpcfw_sync_duration_seconds", MetricType::kHistogram,
                   "Time from a reload's start to its commit: load, validate, compile, diff, commit.", {},
                   kSyncDurationBuckets);
  (void)m.describe("vpcfw_drift_repairs_total", MetricType::kCounter,
                   "Changes to vpcfw's table not made by vpcfwd, repaired.");
  (void)m.describe("vpcfw_generation", MetricType::kGauge, "The config generation in force.");
  (void)m.describe("vpcfw_enis", MetricType::kGauge, "ENIs (interfaces) the generation in force filters.");
  (void)m.describe("vpcfw_rules", MetricType::kGauge, "Rules in the ruleset in force.");
  (void)m.describe("vpcfw_dropped_packets_total", MetricType::kCounter,
                   "Packets dropped, by ENI and by stage (network ACL or security group, in or out).",
                   {"eni", "stage"});
  (void)m.describe("vpcfw_conntrack_allowance_exceeded_total", MetricType::kCounter,
                   "New flows dropped because the ENI held its tracked-connection allowance (ENA's "
                   "conntrack_allowance_exceeded).",
                   {"eni"});
  return m;
}

}  // namespace vpcfw::service
