// Timings of compile::IncrementalCompiler against a full compile, for a config
// file (e.g. scripts/gen-config 1000 60 with host ENIs): a full compile, the
// incremental compiler's first compile, an unchanged reload (the model
// comparison alone), and one-rule edits (a port changed in one ENI's group).
// Not a test: prints figures (thread CPU time). usage: bench_incremental_compile CONFIG.yaml
#include <fmt/format.h>

#include <malloc.h>
#include <algorithm>

#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "vpcfw/compile/compiler.h"
#include "vpcfw/compile/incremental.h"
#include "vpcfw/config/loader.h"

using namespace vpcfw;

namespace {

// The thread's CPU time: the machine these figures come from is shared, and
// wall time there mostly measures the other processes.
struct Clock {
  static double now() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
  }
};

double ms(double a, double b) { return b - a; }

long rssKb() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, rss = 0;
  f >> pages >> rss;
  return rss * 4;
}

std::shared_ptr<const model::Model> load(const std::string& text) {
  Diagnostics diags;
  auto m = config::loadConfigString(text, "bench.yaml", diags);
  if (!m) {
    fmt::print(stderr, "{}\n", diags.format());
    std::exit(1);
  }
  return std::make_shared<const model::Model>(std::move(*m));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fmt::print(stderr, "usage: bench_incremental_compile CONFIG.yaml\n");
    return 2;
  }
  std::ifstream in(argv[1]);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  auto m = load(text);
  std::size_t rules = 0;
  for (const auto& g : m->groups) rules += g.ingress.size() + g.egress.size();
  fmt::print("{} instances, {} group rules\n", m->instances.size(), rules);

  std::vector<double> full;
  for (int k = 0; k < 5; ++k) {
    auto t0 = Clock::now();
    auto r = compile::compileRulesets(*m, compile::labPlacement(*m));
    full.push_back(ms(t0, Clock::now()));
  }
  std::size_t rulesetHeap = 0, incHeap = 0;
  {
    const auto before = mallinfo2().uordblks;
    auto r = compile::compileRulesets(*m, compile::labPlacement(*m));
    rulesetHeap = mallinfo2().uordblks - before;
  }
  const long rss0 = rssKb();
  const auto heap0 = mallinfo2().uordblks;
  compile::IncrementalCompiler inc;
  auto t0 = Clock::now();
  if (!inc.compile(m)) return 1;
  const double first = ms(t0, Clock::now());
  incHeap = mallinfo2().uordblks - heap0;
  const long rss1 = rssKb();

  // As in the daemon, the caller holds the model it compiled; the previous
  // one is freed after the compile, outside the timing.
  std::vector<double> same, edit;
  for (int k = 0; k < 5; ++k) {
    auto m2 = load(text);
    t0 = Clock::now();
    if (!inc.compile(m2)) return 1;
    same.push_back(ms(t0, Clock::now()));
    m = m2;
  }
  // One rule's port in the group of an ENI spread over the config.
  std::size_t edits = 0;
  for (std::size_t at = text.find("ports: ", text.find("security_groups:")); at != std::string::npos && edits < 21;
       at = text.find("ports: ", at + 40000)) {
    const auto end = text.find_first_of(",}", at);
    text.replace(at, end - at, fmt::format("ports: {}", 40000 + edits));
    auto m2 = load(text);
    t0 = Clock::now();
    if (!inc.compile(m2)) return 1;
    edit.push_back(ms(t0, Clock::now()));
    m = m2;
    if (inc.stats().full || inc.stats().enisRecompiled != 1) fmt::print("edit {}: not a one-ENI patch\n", edits);
    ++edits;
  }
  const long rss2 = rssKb();
  fmt::print("full compileRulesets: median {:.1f} ms\n", median(full));
  fmt::print("IncrementalCompiler first compile: {:.1f} ms\n", first);
  fmt::print("unchanged reload (model comparison): median {:.2f} ms\n", median(same));
  fmt::print("one-rule edit: median {:.2f} ms, max {:.2f} ms over {} edits\n", median(edit),
             *std::max_element(edit.begin(), edit.end()), edit.size());
  fmt::print("RSS: {} kB before the incremental compiler, {} kB after its first compile, {} kB after the edits\n", rss0,
             rss1, rss2);
  fmt::print("heap in use: a compileRulesets result {} kB; the incremental compiler (its rulesets included) {} kB\n",
             rulesetHeap / 1024, incHeap / 1024);
  return 0;
}
