// Planning probes, apart from running them: which flows a `vpcfw probe` asks
// for (one, or the matrix of every lab instance pair on every port the rules
// name), the evaluator's prediction for each, the namespaces and addresses
// they use, fresh identifiers, where baseline frames enter the lab, and
// whether the kernel agreed. Pure, except for what runProbes (run.h) fills in.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/eval/evaluator.h"
#include "vpcfw/lab/lab.h"
#include "vpcfw/model/model.h"
#include "vpcfw/probe/run.h"

namespace vpcfw::probe {

// The source ports probes use: inside every common ephemeral range
// (1024-65535, 32768-60999, 49152-65535), so the NACL rules a user writes for
// replies apply.
inline constexpr std::uint16_t kFirstSourcePort = 49152;
inline constexpr std::uint16_t kLastSourcePort = 60999;

// Identifiers the lab's connection tracking holds, per protocol number: ports
// of either end of either direction (tcp, udp), identifiers (icmp, icmpv6).
struct TrackedIds {
  std::map<int, std::set<std::uint16_t>> byProtocol;
};

// Fresh identifiers for one run: source ports from kFirstSourcePort..
// kLastSourcePort and ICMP identifiers from the whole 16-bit space, at random,
// never twice per protocol in a run and never one the lab already tracks (so
// a probe never rides an earlier flow's conntrack entry).
class IdentifierPool {
 public:
  IdentifierPool(TrackedIds tracked, std::uint64_t seed);
  [[nodiscard]] Expected<std::uint16_t> sourcePort(int protocol);
  [[nodiscard]] Expected<std::uint16_t> icmpId(int protocol);
  // Never hands out `port` as a source port of `protocol`: a port some
  // probe of the run listens on (a client bound to it in the listener's
  // namespace would fail with "address in use").
  void reserve(int protocol, std::uint16_t port);

 private:
  Expected<std::uint16_t> draw(int protocol, std::uint32_t first, std::uint32_t last);
  TrackedIds used_;
  std::mt19937_64 rng_;
};

// One probe with its prediction.
struct Trial {
  std::string from, to;  // as the user named them
  eval::FlowRequest request;
  std::optional<eval::Verdict> predicted;
  ProbeSpec spec;
  ProbeResult observed;
};

enum class Agreement {
  kAgrees,
  kDisagrees,
  kNotCarriedOut,  // a harness error: no observation to agree with
};
Agreement agreement(const Trial& t);

// The namespace an address lives in: its instance's, or the internet.
std::string namespaceOf(const model::Model& m, const net::IpAddress& a);

// Fills the probe of `t` from the evaluator's view of t.request (which
// addresses each end uses, with its source port as set). Errors are the
// evaluator's, and ends outside the lab's internet.
[[nodiscard]] Expected<void> prepare(const model::Model& m, Trial& t);

// One probe as the user asks for it. `flow.sourcePort` is used when
// `fixedSourcePort`, else a fresh one is drawn.
struct Request {
  eval::FlowRequest flow;
  bool fixedSourcePort = false;
};
[[nodiscard]] Expected<Trial> planProbe(const model::Model& m, const Request& r, IdentifierPool& ids);

// Ports the config's rules name, per protocol (at most `cap` each, lowest
// first; port 0 becomes 1, NACL ranges of 1000 ports or more are left out).
std::map<int, std::vector<std::uint16_t>> mentionedPorts(const model::Model& m, std::size_t cap);

struct Service {
  net::Protocol proto;
  std::uint16_t port = 0;
  std::string name() const;  // "tcp/22", "icmp"
};

// Every ordered pair of lab instances (and an internet host when a VPC has a
// gateway) on every service: each mentioned port (six per protocol) and ICMP
// echo of the family. Pairs the evaluator cannot address are left out (n/a).
struct Matrix {
  struct Cell {
    std::size_t service = 0, from = 0, to = 0;
    auto operator<=>(const Cell&) const = default;
  };
  std::vector<std::string> ends;
  std::vector<Service> services;
  std::vector<Trial> trials;
  std::vector<Cell> cells;            // of each trial
  std::map<Cell, std::size_t> index;  // cell -> trial
  const Trial* at(const Cell& c) const;
};
inline constexpr std::size_t kMatrixPortsPerProtocol = 6;
[[nodiscard]] Expected<Matrix> planMatrix(const model::Model& m, std::optional<net::Family> family,
                                          IdentifierPool& ids);

// What a set of trials showed.
struct Summary {
  std::size_t probes = 0;
  std::size_t harnessErrors = 0;  // not carried out
  std::size_t disagreements = 0;  // carried out, and the kernel differs from the evaluator
  std::size_t reachable = 0;      // the request arrived and the reply (if one is expected) came back
};
Summary summarize(const std::vector<Trial>& trials);
bool reachable(const ProbeResult& r);

// What a probe needs of the lab besides the namespaces: where baseline frames
// enter each namespace (the far end of each of its links), and the
// namespaces whose connection tracking decides what a probe could ride on
// (routers and gateways: the only ones with a filter or NAT).
struct LabView {
  EntryPoints entries;
  std::vector<std::string> trackers;
};
LabView labView(const lab::LabPlan& plan);

std::vector<ProbeSpec> specs(const std::vector<Trial>& trials);
void record(std::vector<Trial>& trials, std::vector<ProbeResult> results);  // results in trial order

}  // namespace vpcfw::probe
