// Metrics in the Prometheus text format: what a scrape reads, label values
// an attacker chose (config and interface names), and the textfile export.
#include <unistd.h>
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "vpcfw/service/metrics.h"

namespace fs = std::filesystem;
using vpcfw::service::Metrics;
using vpcfw::service::MetricType;

namespace {

// A strict reader of one sample line, as Prometheus' text parser reads it:
// name, optional {label="value",...} with only \\ \" \n escapes, a space, a
// value, end of line. Returns false for anything else.
bool parseSample(const std::string& line, std::string& name, std::vector<std::pair<std::string, std::string>>& labels,
                 std::string& value) {
  std::size_t i = 0;
  auto isNameChar = [](char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
  };
  while (i < line.size() && isNameChar(line[i], i == 0)) ++i;
  if (i == 0) return false;
  name = line.substr(0, i);
  labels.clear();
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      std::size_t s = i;
      while (i < line.size() && isNameChar(line[i], i == s) && line[i] != ':') ++i;
      if (i == s || i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') return false;
      std::string key = line.substr(s, i - s), val;
      i += 2;
      for (;; ++i) {
        if (i >= line.size() || line[i] == '\n') return false;
        if (line[i] == '"') break;
        if (line[i] == '\\') {
          if (++i >= line.size()) return false;
          if (line[i] == 'n')
            val += '\n';
          else if (line[i] == '\\' || line[i] == '"')
            val += line[i];
          else
            return false;
          continue;
        }
        val += line[i];
      }
      ++i;
      labels.emplace_back(key, val);
      if (i < line.size() && line[i] == ',') ++i;
    }
    if (i >= line.size()) return false;
    ++i;
  }
  if (i >= line.size() || line[i] != ' ') return false;
  value = line.substr(i + 1);
  return !value.empty() && value.find(' ') == std::string::npos;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

}  // namespace

TEST_CASE("metrics: the daemon's families render with HELP, TYPE and zero values before any event") {
  Metrics m = vpcfw::service::vpcfwMetrics();
  const std::string text = m.render();
  for (const char* family :
       {"vpcfw_reloads_total counter", "vpcfw_sync_duration_seconds histogram", "vpcfw_drift_repairs_total counter",
        "vpcfw_generation gauge", "vpcfw_enis gauge", "vpcfw_rules gauge", "vpcfw_dropped_packets_total counter"}) {
    CAPTURE(family);
    CHECK(text.find(std::string("# TYPE ") + family + "\n") != std::string::npos);
  }
  CHECK(text.find("\nvpcfw_generation 0\n") != std::string::npos);
  CHECK(text.find("vpcfw_sync_duration_seconds_bucket{le=\"0.001\"} 0\n") != std::string::npos);
  CHECK(text.find("vpcfw_sync_duration_seconds_bucket{le=\"10\"} 0\n") != std::string::npos);
  CHECK(text.find("vpcfw_sync_duration_seconds_count 0\n") != std::string::npos);
  // Labelled families have no series until the daemon sets one.
  CHECK(text.find("vpcfw_reloads_total{") == std::string::npos);
  // Every non-comment line is a well-formed sample.
  for (const auto& l : lines(text)) {
    if (l.rfind("# ", 0) == 0) continue;
    std::string name, value;
    std::vector<std::pair<std::string, std::string>> labels;
    CAPTURE(l);
    CHECK(parseSample(l, name, labels, value));
  }
}

TEST_CASE("metrics: counters, gauges and a histogram with inclusive, cumulative buckets") {
  Metrics m = vpcfw::service::vpcfwMetrics();
  CHECK(m.add("vpcfw_reloads_total", {"committed"}));
  CHECK(m.add("vpcfw_reloads_total", {"committed"}, 2));
  CHECK(m.add("vpcfw_reloads_total", {"rejected"}));
  CHECK(m.set("vpcfw_generation", {}, 7));
  CHECK(m.set("vpcfw_dropped_packets_total", {"eni-1", "nacl-in"}, 12345678901));
  CHECK(m.observe("vpcfw_sync_duration_seconds", {}, 0.001));  // on a bound: counts in le="0.001"
  CHECK(m.observe("vpcfw_sync_duration_seconds", {}, 0.003));
  CHECK(m.observe("vpcfw_sync_duration_seconds", {}, 20));  // beyond the last bound: only +Inf
  // Misuse does nothing.
  CHECK_FALSE(m.add("vpcfw_reloads_total", {}));                 // wrong label count
  CHECK_FALSE(m.add("vpcfw_reloads_total", {"committed"}, -1));  // a counter never goes down
  CHECK_FALSE(m.add("vpcfw_reloads_total", {"committed"}, NAN));
  CHECK_FALSE(m.observe("vpcfw_generation", {}, 1));  // not a histogram
  CHECK_FALSE(m.set("vpcfw_sync_duration_seconds", {}, 1));
  CHECK_FALSE(m.add("vpcfw_unknown", {}));
  CHECK(m.value("vpcfw_reloads_total", {"committed"}) == 3);

  const std::string t = m.render();
  CHECK(t.find("vpcfw_reloads_total{result=\"committed\"} 3\nvpcfw_reloads_total{result=\"rejected\"} 1\n") !=
        std::string::npos);
  CHECK(t.find("\nvpcfw_generation 7\n") != std::string::npos);
  CHECK(t.find("vpcfw_dropped_packets_total{eni=\"eni-1\",stage=\"nacl-in\"} 12345678901\n") != std::string::npos);
  CHECK(t.find("vpcfw_sync_duration_seconds_bucket{le=\"0.001\"} 1\n") != std::string::npos);
  CHECK(t.find("vpcfw_sync_duration_seconds_bucket{le=\"0.0025\"} 1\n") != std::string::npos);
  CHECK(t.find("vpcfw_sync_duration_seconds_bucket{le=\"0.005\"} 2\n") != std::string::npos);
  CHECK(t.find("vpcfw_sync_duration_seconds_bucket{le=\"10\"} 2\n") != std::string::npos);
  CHECK(t.find("vpcfw_sync_duration_seconds_bucket{le=\"+Inf\"} 3\n") != std::string::npos);
  CHECK(t.find("vpcfw_sync_duration_seconds_sum 20.00") != std::string::npos);
  CHECK(t.find("vpcfw_sync_duration_seconds_count 3\n") != std::string::npos);
  m.clear("vpcfw_dropped_packets_total");
  CHECK(m.render().find("eni-1") == std::string::npos);
}

TEST_CASE("metrics: rendering is deterministic whatever order series were made in") {
  Metrics a = vpcfw::service::vpcfwMetrics(), b = vpcfw::service::vpcfwMetrics();
  const std::vector<std::vector<std::string>> series{
      {"z", "sg-in"}, {"a", "nacl-out"}, {"m", "sg-in"}, {"a", "nacl-in"}};
  for (std::size_t i = 0; i < series.size(); ++i) {
    a.set("vpcfw_dropped_packets_total", series[i], static_cast<double>(i));
    b.set("vpcfw_dropped_packets_total", series[series.size() - 1 - i], static_cast<double>(series.size() - 1 - i));
  }
  CHECK(a.render() == b.render());
  const auto t = a.render();
  CHECK(t.find("eni=\"a\",stage=\"nacl-in\"") < t.find("eni=\"a\",stage=\"nacl-out\""));
  CHECK(t.find("eni=\"m\"") < t.find("eni=\"z\""));
}

TEST_CASE("metrics: hostile label values stay inside their quotes and their line") {
  Metrics m = vpcfw::service::vpcfwMetrics();
  const std::vector<std::string> hostile{
      "a\"b",
      "back\\slash",
      "trailing\\",
      "new\nline",
      "\"} 1\nvpcfw_generation 999\n# TYPE x counter",
      "\\\"",
      "\\n",
      "\r\t\x01\x7f",
      "",
      "caf\xc3\xa9 \xe2\x98\x83",  // valid UTF-8 passes through
  };
  for (std::size_t i = 0; i < hostile.size(); ++i)
    CHECK(m.set("vpcfw_dropped_packets_total", {hostile[i], "stage" + std::to_string(i)}, static_cast<double>(i)));
  const auto invalid = std::string("bad\xff\xfe utf8 \xc0\xaf \xed\xa0\x80");
  CHECK(m.set("vpcfw_dropped_packets_total", {invalid, "invalid"}, 100));
  const std::string text = m.render();

  // Exactly one sample per series, each parsing back to the value that was set.
  std::map<std::string, std::string> seen;  // stage -> eni
  int generationLines = 0;
  for (const auto& l : lines(text)) {
    if (l.rfind("# ", 0) == 0) {
      CHECK((l.rfind("# HELP vpcfw_", 0) == 0 || l.rfind("# TYPE vpcfw_", 0) == 0));
      continue;
    }
    std::string name, value;
    std::vector<std::pair<std::string, std::string>> labels;
    CAPTURE(l);
    REQUIRE(parseSample(l, name, labels, value));
    if (name == "vpcfw_generation") {
      ++generationLines;
      CHECK(value == "0");
    }
    if (name != "vpcfw_dropped_packets_total") continue;
    REQUIRE(labels.size() == 2);
    CHECK(labels[0].first == "eni");
    CHECK(labels[1].first == "stage");
    CHECK(seen.emplace(labels[1].second, labels[0].second).second);
  }
  CHECK(generationLines == 1);  // the forged sample did not become a line of its own
  REQUIRE(seen.size() == hostile.size() + 1);
  for (std::size_t i = 0; i < hostile.size(); ++i) CHECK(seen["stage" + std::to_string(i)] == hostile[i]);
  // Invalid UTF-8 became U+FFFD; the valid parts are kept.
  CHECK(seen["invalid"] ==
        "bad\xef\xbf\xbd\xef\xbf\xbd utf8 \xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}

TEST_CASE("metrics: names and buckets are checked when a family is declared") {
  Metrics m;
  CHECK(m.describe("ok_name:total", MetricType::kCounter, "h").has_value());
  CHECK_FALSE(m.describe("ok_name:total", MetricType::kCounter, "h").has_value());  // twice
  CHECK_FALSE(m.describe("9starts_with_digit", MetricType::kGauge, "h").has_value());
  CHECK_FALSE(m.describe("has space", MetricType::kGauge, "h").has_value());
  CHECK_FALSE(m.describe("", MetricType::kGauge, "h").has_value());
  CHECK_FALSE(m.describe("g1", MetricType::kGauge, "h", {"bad-label"}).has_value());
  CHECK_FALSE(m.describe("g2", MetricType::kGauge, "h", {"__reserved"}).has_value());
  CHECK_FALSE(m.describe("g3", MetricType::kGauge, "h", {}, {1, 2}).has_value());
  CHECK_FALSE(m.describe("h1", MetricType::kHistogram, "h", {"le"}, {1}).has_value());
  CHECK_FALSE(m.describe("h2", MetricType::kHistogram, "h", {}, {2, 1}).has_value());
  CHECK_FALSE(m.describe("h3", MetricType::kHistogram, "h", {}, {1, 1}).has_value());
  CHECK_FALSE(m.describe("h4", MetricType::kHistogram, "h", {}, {}).has_value());
  CHECK(m.describe("h5", MetricType::kHistogram, "help with \\ and\nnewline", {"x"}, {1}).has_value());
  CHECK(m.render().find("# HELP h5 help with \\\\ and\\nnewline\n") != std::string::npos);
}

namespace {
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/vpcfw-metrics-test.XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};
std::string slurp(const std::string& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
std::size_t entries(const std::string& dir) {
  return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}
}  // namespace

TEST_CASE("metrics: the textfile is replaced atomically, 0644 whatever the umask, never through a symlink") {
  TempDir dir;
  Metrics m = vpcfw::service::vpcfwMetrics();
  m.set("vpcfw_generation", {}, 1);
  const std::string path = dir.path + "/vpcfw.prom";
  const mode_t old = ::umask(077);
  REQUIRE(m.writeTextfile(path).has_value());
  ::umask(old);
  CHECK(slurp(path) == m.render());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0644);
  CHECK(entries(dir.path) == 1);  // no temporary left behind

  // A second write replaces the file by rename (a new inode): a reader holding
  // the old file sees the old text whole, never a half-written one.
  std::ifstream reader(path);
  m.set("vpcfw_generation", {}, 2);
  REQUIRE(m.writeTextfile(path).has_value());
  struct stat st2 {};
  REQUIRE(::stat(path.c_str(), &st2) == 0);
  CHECK(st2.st_ino != st.st_ino);
  CHECK(std::string(std::istreambuf_iterator<char>(reader), {}).find("vpcfw_generation 1\n") != std::string::npos);
  CHECK(slurp(path).find("vpcfw_generation 2\n") != std::string::npos);

  // A symlink at the path is replaced, its target untouched.
  const std::string target = dir.path + "/precious";
  { std::ofstream(target) << "precious"; }
  const std::string link = dir.path + "/link.prom";
  fs::create_symlink(target, link);
  REQUIRE(m.writeTextfile(link).has_value());
  CHECK(slurp(target) == "precious");
  CHECK_FALSE(fs::is_symlink(link));
  CHECK(slurp(link) == m.render());

  // Failures leave no temporary behind: a directory at the path, a missing directory.
  fs::create_directory(dir.path + "/adir.prom");
  const auto before = entries(dir.path);
  CHECK_FALSE(m.writeTextfile(dir.path + "/adir.prom").has_value());
  CHECK(entries(dir.path) == before);
  CHECK_FALSE(m.writeTextfile(dir.path + "/missing/x.prom").has_value());
  CHECK_FALSE(m.writeTextfile(dir.path + "/").has_value());
}
