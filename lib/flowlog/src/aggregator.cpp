// Aggregation of observations into per-interval records (aggregator.h): a
// hash table of the open interval's flows, bounded by maxFlows.
#include "vpcfw/flowlog/aggregator.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <unordered_map>

namespace vpcfw::flowlog {
namespace {

using net::IpAddress;

// The link-local services AWS does not log: instance metadata, time sync and
// the DNS resolver's link-local address, IPv4 and IPv6.
const std::array<IpAddress, 6>& linkLocalServices() {
  static const std::array<IpAddress, 6> kAddresses = [] {
    std::array<IpAddress, 6> a;
    const char* text[] = {"169.254.169.254", "169.254.169.123", "169.254.169.253",
                          "fd00:ec2::254",   "fd00:ec2::123",   "fd00:ec2::253"};
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = *IpAddress::parse(text[i]);
    return a;
  }();
  return kAddresses;
}

bool isDhcp(const Observation& o) {
  if (o.protocol != 17) return false;
  auto pair = [&](std::uint16_t a, std::uint16_t b) {
    return (o.srcPort == a && o.dstPort == b) || (o.srcPort == b && o.dstPort == a);
  };
  return pair(68, 67) || pair(546, 547);
}

struct Key {
  std::size_t eni;
  FlowDirection direction;
  Action action;
  IpAddress src, dst;
  std::uint8_t protocol;
  std::uint16_t srcPort, dstPort;
  bool operator==(const Key&) const = default;
};

struct KeyHash {
  std::size_t operator()(const Key& k) const {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    auto mix = [&](const void* p, std::size_t n) {
      const auto* b = static_cast<const unsigned char*>(p);
      for (std::size_t i = 0; i < n; ++i) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
      }
    };
    mix(&k.eni, sizeof k.eni);
    const unsigned char small[] = {static_cast<unsigned char>(k.direction), static_cast<unsigned char>(k.action),
                                   k.protocol, static_cast<unsigned char>(k.src.family())};
    mix(small, sizeof small);
    mix(k.src.bytes().data(), 16);
    mix(k.dst.bytes().data(), 16);
    mix(&k.srcPort, sizeof k.srcPort);
    mix(&k.dstPort, sizeof k.dstPort);
    return static_cast<std::size_t>(h);
  }
};

struct Flow {
  Key key;
  IpAddress pktSrc, pktDst;
  std::optional<TrafficPath> trafficPath;
  std::uint64_t packets = 0, bytes = 0;
  std::uint8_t tcpFlags = 0;
  std::int64_t first = 0, last = 0;
};

struct EniWindow {
  bool active = false;   // any traffic, logged or not
  bool skipped = false;  // a SKIPDATA row is owed
};

std::int64_t floorTo(std::int64_t t, std::int64_t step) {
  std::int64_t q = t / step;
  if (t % step != 0 && t < 0) --q;
  return q * step;
}

}  // namespace

struct Aggregator::State {
  AggregatorOptions options;
  std::vector<Eni> enis;
  std::int64_t start = 0, end = 0;
  std::vector<Flow> flows;
  std::unordered_map<Key, std::size_t, KeyHash> index;
  std::vector<EniWindow> windows;
  AggregatorStats stats;

  bool unlogged(const Observation& o) const {
    if (isDhcp(o)) return true;
    auto hit = [&](const IpAddress& a) {
      const auto& fixed = linkLocalServices();
      if (std::find(fixed.begin(), fixed.end(), a) != fixed.end()) return true;
      const auto& own = enis[o.eni].unlogged;
      return std::find(own.begin(), own.end(), a) != own.end();
    };
    return hit(o.src) || hit(o.dst);
  }

  Record base(std::size_t eni) const {
    Record r;
    r.accountId = options.accountId;
    r.region = options.region;
    r.eni = enis[eni].identity;
    return r;
  }

  // The records of [start, closeAt), then the window is empty again.
  void close(std::int64_t closeAt, std::vector<Record>& out) {
    std::stable_sort(flows.begin(), flows.end(), [](const Flow& a, const Flow& b) { return a.key.eni < b.key.eni; });
    std::size_t f = 0;
    for (std::size_t e = 0; e < enis.size(); ++e) {
      for (; f < flows.size() && flows[f].key.eni == e; ++f) {
        const Flow& x = flows[f];
        Record r = base(e);
        r.srcAddr = x.key.src;
        r.dstAddr = x.key.dst;
        r.pktSrcAddr = x.pktSrc;
        r.pktDstAddr = x.pktDst;
        r.srcPort = x.key.srcPort;
        r.dstPort = x.key.dstPort;
        r.protocol = x.key.protocol;
        r.packets = x.packets;
        r.bytes = x.bytes;
        r.tcpFlags = x.tcpFlags;
        r.action = x.key.action;
        r.direction = x.key.direction;
        r.trafficPath = x.trafficPath;
        r.start = x.first;
        r.end = x.last;
        out.push_back(std::move(r));
        ++stats.records;
      }
      if (windows[e].skipped || !windows[e].active) {
        Record r = base(e);
        r.status = windows[e].skipped ? LogStatus::kSkipData : LogStatus::kNoData;
        r.start = start;
        r.end = closeAt;
        ++(windows[e].skipped ? stats.skipData : stats.noData);
        out.push_back(std::move(r));
      }
    }
    flows.clear();
    index.clear();
    std::fill(windows.begin(), windows.end(), EniWindow{});
  }
};

std::vector<Eni> enisOf(const model::Model& m, const model::FlowLog& log, std::vector<std::size_t>* instances) {
  std::vector<Eni> out;
  for (std::size_t i : model::flowLogInstances(m, log)) {
    const auto& inst = m.instances[i];
    const auto& subnet = m.subnets[inst.subnet];
    const auto& vpc = m.vpcs[inst.vpc];
    Eni e;
    e.identity.interfaceId = awsId("eni", inst.name);
    e.identity.instanceId = awsId("i", inst.name);
    e.identity.vpcId = awsId("vpc", vpc.name);
    e.identity.subnetId = awsId("subnet", subnet.name);
    e.identity.azId = subnet.availabilityZone;
    // The subnet's router (base + 1) and the VPC's DNS resolver (base + 2 of
    // each IPv4 block).
    e.unlogged.push_back(subnet.cidr.network().offset(1));
    for (const auto& c : vpc.cidrs) e.unlogged.push_back(c.network().offset(2));
    out.push_back(std::move(e));
    if (instances) instances->push_back(i);
  }
  return out;
}

Aggregator::Aggregator(AggregatorOptions options, std::vector<Eni> enis, std::int64_t now)
    : s_(std::make_unique<State>()) {
  s_->options = std::move(options);
  s_->options.interval = std::max<std::int64_t>(1, s_->options.interval);
  s_->options.maxFlows = std::max<std::size_t>(1, s_->options.maxFlows);
  s_->enis = std::move(enis);
  s_->windows.resize(s_->enis.size());
  s_->start = floorTo(now, s_->options.interval);
  s_->end = s_->start + s_->options.interval;
}

Aggregator::~Aggregator() = default;
Aggregator::Aggregator(Aggregator&&) noexcept = default;
Aggregator& Aggregator::operator=(Aggregator&&) noexcept = default;

void Aggregator::observe(const Observation& o) {
  State& s = *s_;
  ++s.stats.observations;
  if (o.eni >= s.enis.size()) {
    ++s.stats.badEni;
    return;
  }
  s.windows[o.eni].active = true;
  using Traffic = model::FlowLog::Traffic;
  if ((s.options.traffic == Traffic::kAccept && o.action != Action::kAccept) ||
      (s.options.traffic == Traffic::kReject && o.action != Action::kReject)) {
    ++s.stats.filtered;
    return;
  }
  if (s.unlogged(o)) {
    ++s.stats.unlogged;
    return;
  }
  const Key key{o.eni, o.direction, o.action, o.src, o.dst, o.protocol, o.srcPort, o.dstPort};
  const std::int64_t last = std::max(o.first, o.last);
  auto it = s.index.find(key);
  if (it == s.index.end()) {
    if (s.flows.size() >= s.options.maxFlows) {
      ++s.stats.overflowed;
      s.windows[o.eni].skipped = true;
      return;
    }
    Flow f;
    f.key = key;
    f.pktSrc = o.pktSrc.value_or(o.src);
    f.pktDst = o.pktDst.value_or(o.dst);
    f.trafficPath = o.trafficPath;
    f.first = o.first;
    f.last = last;
    it = s.index.emplace(key, s.flows.size()).first;
    s.flows.push_back(f);
  }
  Flow& f = s.flows[it->second];
  f.packets += o.packets;
  f.bytes += o.bytes;
  f.tcpFlags |= static_cast<std::uint8_t>(o.tcpFlags & (kTcpFin | kTcpSyn | kTcpRst | kTcpAck));
  f.first = std::min(f.first, o.first);
  f.last = std::max(f.last, last);
}

void Aggregator::reportLoss(std::optional<std::size_t> eni, std::uint64_t events) {
  State& s = *s_;
  s.stats.reportedLost += events;
  if (eni) {
    if (*eni < s.windows.size()) s.windows[*eni].skipped = true;
    return;
  }
  for (auto& w : s.windows) w.skipped = true;
}

std::vector<Record> Aggregator::advance(std::int64_t now) {
  State& s = *s_;
  std::vector<Record> out;
  if (now < s.end) return out;
  s.close(s.end, out);
  const std::int64_t next = floorTo(now, s.options.interval);
  if (next > s.end) {
    // Intervals in which advance() was not called saw no observation.
    for (std::size_t e = 0; e < s.enis.size(); ++e) {
      Record r = s.base(e);
      r.status = LogStatus::kNoData;
      r.start = s.end;
      r.end = next;
      out.push_back(std::move(r));
      ++s.stats.noData;
    }
  }
  s.start = next;
  s.end = next + s.options.interval;
  return out;
}

std::vector<Record> Aggregator::flush(std::int64_t now) {
  State& s = *s_;
  std::vector<Record> out;
  // An interval that has not begun yet (a flush right on its boundary) holds
  // nothing to say: no zero-length NODATA rows.
  const bool empty =
      now <= s.start && s.flows.empty() &&
      std::none_of(s.windows.begin(), s.windows.end(), [](const EniWindow& w) { return w.active || w.skipped; });
  if (!empty) s.close(std::max(now, s.start), out);
  s.start = std::max(now, s.start);
  s.end = floorTo(s.start, s.options.interval) + s.options.interval;
  return out;
}

std::int64_t Aggregator::intervalStart() const { return s_->start; }
std::int64_t Aggregator::intervalEnd() const { return s_->end; }
std::size_t Aggregator::openFlows() const { return s_->flows.size(); }
const AggregatorStats& Aggregator::stats() const { return s_->stats; }
const std::vector<Eni>& Aggregator::enis() const { return s_->enis; }

}  // namespace vpcfw::flowlog
