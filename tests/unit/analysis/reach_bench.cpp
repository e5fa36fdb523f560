// Timing of vpcfw reach over every instance pair of a config (e.g.
// scripts/gen-config 100 60): reach from each VPC to each VPC, both
// families, every protocol, including the text of every rule that bounds a
// piece. Not a test: prints figures. usage: bench_reach CONFIG.yaml [RUNS]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <vector>

#include "vpcfw/analysis/reach.h"
#include "vpcfw/config/loader.h"

using namespace vpcfw;

namespace {

// Thread CPU time beside wall time: the machine is shared, and wall time
// there partly measures the other processes.
double cpuMs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fmt::print(stderr, "usage: bench_reach CONFIG.yaml [RUNS]\n");
    return 2;
  }
  const int runs = argc > 2 ? std::max(1, std::atoi(argv[2])) : 11;
  Diagnostics diags;
  auto m = config::loadConfigFile(argv[1], diags);
  if (!m) {
    fmt::print(stderr, "{}", diags.format());
    return 2;
  }
  std::vector<double> cpu, wall;
  std::size_t pairs = 0, reachable = 0, pieces = 0;
  for (int run = 0; run < runs; ++run) {
    pairs = reachable = pieces = 0;
    const double c0 = cpuMs();
    const auto w0 = std::chrono::steady_clock::now();
    for (const auto& a : m->vpcs)
      for (const auto& b : m->vpcs) {
        auto r = analysis::computeReach(*m, {a.name, b.name, std::nullopt});
        if (!r) continue;
        for (const auto& p : r->pairs) {
          ++pairs;
          reachable += p.protocols.empty() ? 0 : 1;
          for (const auto& pr : p.protocols) pieces += pr.forward.size() + pr.reply.size();
        }
      }
    cpu.push_back(cpuMs() - c0);
    wall.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count());
  }
  fmt::print(
      "{} instances, {} pairs ({} with something reachable, {} pieces): all pairs in {:.1f} ms CPU, {:.1f} ms "
      "wall (median of {} runs)\n",
      m->instances.size(), pairs, reachable, pieces, median(cpu), median(wall), runs);
  return 0;
}
