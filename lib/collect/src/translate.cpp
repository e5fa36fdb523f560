// Conntrack counters and logged packets into observations (translate.h).
#include "vpcfw/collect/translate.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <unordered_map>

#include "vpcfw/compile/compiler.h"
#include "vpcfw/eval/evaluator.h"
#include "vpcfw/flowlog/record.h"

namespace vpcfw::collect {
namespace {

using flowlog::Action;
using flowlog::FlowDirection;
using flowlog::Observation;

constexpr std::string_view kStageNames[] = {"nacl-egress", "nacl-ingress",     "sg-egress",
                                            "sg-ingress",  "allowance-egress", "allowance-ingress"};
// Accepted TCP flags seen before their conntrack entry is, kept this long.
constexpr std::int64_t kPendingSeconds = 120;
// ...and at most this many (a flood of control packets cannot grow it past).
constexpr std::size_t kPendingMax = 65536;
// Conntrack entries followed at once (~2 KB each): beyond it an entry's
// traffic is reported as loss (SKIPDATA), not followed.
constexpr std::size_t kTrackedMax = 262144;

bool hasPorts(std::uint8_t p) { return p == 6 || p == 17 || p == 132 || p == 136; }
bool isIcmp(std::uint8_t p) { return p == 1 || p == 58; }

// One direction of travel of a flow: the 5-tuple as its packets carry it.
struct DirKey {
  std::array<std::uint8_t, 16> src{}, dst{};
  std::uint8_t family = 0, protocol = 0;
  std::uint16_t srcPort = 0, dstPort = 0;  // ICMP: the identifier in both
  bool operator==(const DirKey&) const = default;
};
struct DirKeyHash {
  std::size_t operator()(const DirKey& k) const {
    std::uint64_t h = 1469598103934665603ull;
    auto mix = [&](const std::uint8_t* p, std::size_t n) {
      for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
    };
    mix(k.src.data(), 16), mix(k.dst.data(), 16);
    const std::uint8_t rest[] = {k.family,
                                 k.protocol,
                                 static_cast<std::uint8_t>(k.srcPort >> 8),
                                 static_cast<std::uint8_t>(k.srcPort),
                                 static_cast<std::uint8_t>(k.dstPort >> 8),
                                 static_cast<std::uint8_t>(k.dstPort)};
    mix(rest, sizeof rest);
    return static_cast<std::size_t>(h);
  }
};

DirKey keyOf(const net::IpAddress& src, const net::IpAddress& dst, std::uint8_t proto, std::uint16_t sp,
             std::uint16_t dp) {
  DirKey k;
  k.src = src.bytes(), k.dst = dst.bytes();
  k.family = static_cast<std::uint8_t>(src.family());
  k.protocol = proto, k.srcPort = sp, k.dstPort = dp;
  return k;
}
// Direction d (0 original, 1 reply) of an entry.
DirKey keyOf(const CtTuple& t, int d) {
  const std::uint16_t sp = isIcmp(t.protocol) ? t.icmpId : t.srcPort;
  const std::uint16_t dp = isIcmp(t.protocol) ? t.icmpId : t.dstPort;
  return d == 0 ? keyOf(t.src, t.dst, t.protocol, sp, dp) : keyOf(t.dst, t.src, t.protocol, dp, sp);
}
DirKey keyOf(const PacketHeader& p) {
  const std::uint16_t sp = isIcmp(p.protocol) ? p.icmpId : p.srcPort;
  const std::uint16_t dp = isIcmp(p.protocol) ? p.icmpId : p.dstPort;
  return keyOf(p.src, p.dst, p.protocol, sp, dp);
}

struct Count {
  std::uint64_t packets = 0, bytes = 0;
};

struct Direction {
  Count reportedSrc, reportedDst;      // reported as ACCEPT at the source ENI (egress) and destination ENI (ingress)
  Count droppedBeforeSrc, droppedAll;  // dropped before passing the source ENI, and anywhere
  std::uint8_t flags = 0;              // AWS tcp-flags of accepted packets not yet reported
  std::int64_t first = 0;              // the earliest not-yet-reported packet known, 0: none
};

struct Tracked {
  CtTuple orig;
  Direction dir[2];
  std::int64_t lastReport = 0;  // when its counters were last read (0: never)
  std::uint64_t seen = 0;       // the dump (or event) generation that last showed it
};

struct Pending {
  std::uint8_t flags = 0;
  std::int64_t first = 0, last = 0;
};

}  // namespace

std::string_view stageName(Stage s) { return kStageNames[static_cast<int>(s)]; }

std::optional<Stage> parseStage(std::string_view text) {
  for (int i = 0; i < static_cast<int>(std::size(kStageNames)); ++i)
    if (kStageNames[i] == text) return static_cast<Stage>(i);
  return std::nullopt;
}

bool parsePrefix(std::string_view prefix, LoggedPacket& into) {
  // A C string may carry its NUL; the compiler's reader knows the rest.
  while (!prefix.empty() && prefix.back() == '\0') prefix.remove_suffix(1);
  auto p = compile::parseFlowLogPrefix(prefix);
  if (!p) return false;
  if (p->kind == compile::FlowLogPrefix::Kind::kTcp) {
    into.kind = LoggedPacket::Kind::kAcceptedTcp;
    return true;
  }
  into.kind = LoggedPacket::Kind::kDrop;
  into.stage = *parseStage(p->stage);
  into.ifname = std::move(p->ifname);
  return true;
}

struct Translator::State {
  const model::Model* m = nullptr;
  std::vector<FabricEni> enis;
  std::unordered_map<DirKey, std::size_t, DirKeyHash> byAddress;  // unused key fields zero: address only
  std::unordered_map<std::string, std::size_t> byIfname;
  std::unordered_map<std::uint32_t, Tracked> tracked;
  std::unordered_map<DirKey, std::uint32_t, DirKeyHash> byTuple;  // both directions of each tracked entry
  std::unordered_map<DirKey, Pending, DirKeyHash> pending;        // accepted TCP flags of no known entry yet
  std::uint64_t generation = 1;
  std::vector<std::size_t> uncounted;
  // Entries destroyed since the dump before last: a dump read before their
  // destroy event was applied must not bring them back (counted twice).
  std::unordered_map<std::uint32_t, std::uint64_t> destroyed;  // id -> generation
  TranslatorStats stats;

  void noteUncounted(const CtEntry& e) {
    ++stats.unaccounted;
    for (const auto* a : {&e.orig.src, &e.orig.dst})
      if (auto o = owner(*a)) uncounted.push_back(*o);
  }

  void bind(const model::Model& model, std::vector<FabricEni> e) {
    m = &model;
    enis = std::move(e);
    byAddress.clear(), byIfname.clear();
    for (const auto& eni : enis) {
      if (eni.instance >= m->instances.size()) continue;
      const auto& inst = m->instances[eni.instance];
      auto add = [&](const net::IpAddress& a) { byAddress[keyOf(a, a, 0, 0, 0)] = eni.instance; };
      add(inst.privateIp);
      for (const auto& a : inst.secondaryIps) add(a);
      for (const auto& a : inst.ipv6Addresses) add(a);
      byIfname[eni.ifname] = eni.instance;
    }
  }

  std::optional<std::size_t> owner(const net::IpAddress& a) const {
    auto it = byAddress.find(keyOf(a, a, 0, 0, 0));
    if (it == byAddress.end()) return std::nullopt;
    return it->second;
  }

  std::optional<flowlog::TrafficPath> pathOf(std::size_t instance, const net::IpAddress& dst) const {
    const auto& inst = m->instances[instance];
    if (inst.subnet >= m->subnets.size()) return std::nullopt;
    const auto* route = eval::lookupRoute(*m, m->subnets[inst.subnet], dst);
    if (!route) return std::nullopt;
    switch (route->target) {
      case model::Route::Target::kLocal:
        return flowlog::TrafficPath::kSameVpc;
      case model::Route::Target::kInternetGateway:
        return flowlog::TrafficPath::kInternetGateway;
      case model::Route::Target::kPeering:
        return flowlog::TrafficPath::kIntraRegionPeering;
    }
    return std::nullopt;
  }

  Observation observation(std::size_t instance, FlowDirection dir, Action action, const net::IpAddress& src,
                          const net::IpAddress& dst, std::uint8_t proto, std::uint16_t sp, std::uint16_t dp) const {
    Observation o;
    o.eni = instance;
    o.direction = dir;
    o.action = action;
    o.src = src, o.dst = dst;
    o.protocol = proto;
    if (hasPorts(proto)) o.srcPort = sp, o.dstPort = dp;
    if (dir == FlowDirection::kEgress) o.trafficPath = pathOf(instance, dst);
    return o;
  }

  Tracked& track(const CtEntry& e) {
    auto [it, fresh] = tracked.try_emplace(e.id);
    Tracked& t = it->second;
    if (fresh) {
      t.orig = e.orig;
      for (int d = 0; d < 2; ++d) {
        const DirKey k = keyOf(e.orig, d);
        byTuple[k] = e.id;
        if (auto p = pending.find(k); p != pending.end()) {
          t.dir[d].flags |= p->second.flags;
          t.dir[d].first = p->second.first;
          pending.erase(p);
        }
      }
      stats.entries = tracked.size();
    }
    t.seen = generation;
    return t;
  }

  void untrack(std::uint32_t id) {
    auto it = tracked.find(id);
    if (it == tracked.end()) return;
    for (int d = 0; d < 2; ++d) {
      auto k = byTuple.find(keyOf(it->second.orig, d));
      if (k != byTuple.end() && k->second == id) byTuple.erase(k);
    }
    tracked.erase(it);
    stats.entries = tracked.size();
  }
};

Translator::Translator(const model::Model& m, std::vector<FabricEni> enis) : s_(std::make_unique<State>()) {
  s_->bind(m, std::move(enis));
}
Translator::~Translator() = default;
Translator::Translator(Translator&&) noexcept = default;
Translator& Translator::operator=(Translator&&) noexcept = default;

void Translator::rebind(const model::Model& m, std::vector<FabricEni> enis) { s_->bind(m, std::move(enis)); }

void Translator::baseline(const CtEntry& e) {
  if (!e.accounted) {
    s_->noteUncounted(e);
    return;
  }
  Tracked& t = s_->track(e);
  for (int d = 0; d < 2; ++d) {
    t.dir[d].reportedSrc = t.dir[d].reportedDst = Count{e.packets[d], e.bytes[d]};
    t.dir[d].flags = 0, t.dir[d].first = 0;
  }
}

void Translator::counters(const CtEntry& e, std::int64_t now, bool destroyed, std::vector<Observation>& out) {
  if (!e.accounted) {
    if (!s_->tracked.contains(e.id)) s_->noteUncounted(e);
    return;
  }
  if (!s_->tracked.contains(e.id)) {
    if (s_->destroyed.contains(e.id)) return;
    if (s_->tracked.size() >= kTrackedMax) {
      s_->noteUncounted(e);
      return;
    }
  }
  Tracked& t = s_->track(e);
  for (int d = 0; d < 2; ++d) {
    Direction& dir = t.dir[d];
    const net::IpAddress& src = d == 0 ? t.orig.src : t.orig.dst;
    const net::IpAddress& dst = d == 0 ? t.orig.dst : t.orig.src;
    const std::uint16_t sp = d == 0 ? t.orig.srcPort : t.orig.dstPort;
    const std::uint16_t dp = d == 0 ? t.orig.dstPort : t.orig.srcPort;
    std::int64_t first = dir.first;
    if (first == 0) first = t.lastReport > 0 ? t.lastReport : (e.start > 0 ? e.start : now);
    bool emitted = false;
    // Grows monotonically but for a dropped count that outran the counter read: never below zero.
    auto grow = [&](Count& reported, const Count& dropped) {
      const std::uint64_t p = e.packets[d] > dropped.packets ? e.packets[d] - dropped.packets : 0;
      const std::uint64_t b = e.bytes[d] > dropped.bytes ? e.bytes[d] - dropped.bytes : 0;
      Count delta{p > reported.packets ? p - reported.packets : 0, b > reported.bytes ? b - reported.bytes : 0};
      reported.packets = std::max(reported.packets, p), reported.bytes = std::max(reported.bytes, b);
      return delta;
    };
    const Count atSrc = grow(dir.reportedSrc, dir.droppedBeforeSrc);
    const Count atDst = grow(dir.reportedDst, dir.droppedAll);
    auto emit = [&](std::size_t instance, FlowDirection fd, const Count& c) {
      Observation o = s_->observation(instance, fd, Action::kAccept, src, dst, t.orig.protocol, sp, dp);
      o.packets = c.packets, o.bytes = c.bytes;
      o.tcpFlags = dir.flags;
      o.first = std::min(first, now), o.last = now;
      out.push_back(o);
      emitted = true;
    };
    if (atSrc.packets > 0)
      if (auto a = s_->owner(src)) emit(*a, FlowDirection::kEgress, atSrc);
    if (atDst.packets > 0)
      if (auto b = s_->owner(dst)) emit(*b, FlowDirection::kIngress, atDst);
    if (emitted) dir.flags = 0, dir.first = 0;
  }
  t.lastReport = now;
  if (destroyed) {
    s_->untrack(e.id);
    s_->destroyed[e.id] = s_->generation;
  }
}

void Translator::logged(const LoggedPacket& p, std::vector<Observation>& out) {
  auto& s = *s_;
  const PacketHeader& h = p.packet;
  if (p.kind == LoggedPacket::Kind::kAcceptedTcp) {
    if (h.protocol != 6 || !h.transport) return;
    const std::uint8_t flags = flowlog::awsTcpFlags(h.tcpFlags);
    if (flags == 0) return;
    const DirKey k = keyOf(h);
    if (auto it = s.byTuple.find(k); it != s.byTuple.end()) {
      Tracked& t = s.tracked.at(it->second);
      Direction& dir = t.dir[keyOf(t.orig, 0) == k ? 0 : 1];
      dir.flags |= flags;
      if (dir.first == 0 || p.time < dir.first) dir.first = p.time;
    } else if (s.pending.size() < kPendingMax || s.pending.contains(k)) {
      Pending& pe = s.pending[k];
      pe.flags |= flags;
      if (pe.first == 0) pe.first = p.time;
      pe.last = p.time;
    }
    return;
  }
  const auto at = s.byIfname.find(p.ifname);
  if (at == s.byIfname.end()) {
    ++s.stats.unknownEni;
    return;
  }
  const std::size_t stageEni = at->second;
  const Count one{1, h.length};
  const std::uint8_t flags = h.protocol == 6 ? flowlog::awsTcpFlags(h.tcpFlags) : 0;
  auto emit = [&](std::size_t instance, FlowDirection fd, Action action) {
    Observation o = s.observation(instance, fd, action, h.src, h.dst, h.protocol, h.srcPort, h.dstPort);
    o.packets = 1, o.bytes = h.length;
    o.tcpFlags = flags;
    o.first = o.last = p.time;
    out.push_back(o);
  };
  emit(stageEni, isEgress(p.stage) ? FlowDirection::kEgress : FlowDirection::kIngress, Action::kReject);

  if (p.ct && p.ct->confirmed) {
    // Conntrack counted this packet in its direction; it must not count as accepted where it did not pass.
    if (!s.tracked.contains(p.ct->id) && s.tracked.size() >= kTrackedMax) return;  // not followed: its loss is said
    Tracked& t = s.track(*p.ct);
    const int d = keyOf(t.orig, 0) == keyOf(h) ? 0 : 1;
    auto add = [&](Count& c) { c.packets += one.packets, c.bytes += one.bytes; };
    add(t.dir[d].droppedAll);
    if (isEgress(p.stage)) add(t.dir[d].droppedBeforeSrc);
    return;
  }
  // A first packet: conntrack never counts it. Dropped at the destination,
  // it was still sent by the source ENI, which AWS logs as that ENI's egress
  // verdict: the kernel evaluated the source's NACL already, and for a drop
  // at the destination's NACL the source's groups are the evaluator's.
  if (isEgress(p.stage)) return;
  const auto src = s.owner(h.src);
  if (!src || *src == stageEni) return;
  bool groupsAllow = true;
  if (p.stage == Stage::kNaclIngress) {
    eval::Packet ep;
    ep.src = h.src, ep.dst = h.dst;
    ep.protocol = net::Protocol(h.protocol);
    ep.srcPort = h.srcPort, ep.dstPort = h.dstPort;
    ep.icmpType = h.icmpType, ep.icmpCode = h.icmpCode;
    groupsAllow = eval::evaluateGroups(*s.m, s.m->instances[*src].groups, model::Direction::kEgress, ep).allowed;
  }
  emit(*src, FlowDirection::kEgress, groupsAllow ? Action::kAccept : Action::kReject);
}

std::optional<CtEntry> Translator::entryOf(const PacketHeader& p) const {
  auto it = s_->byTuple.find(keyOf(p));
  if (it == s_->byTuple.end()) return std::nullopt;
  CtEntry e;
  e.id = it->second;
  e.orig = s_->tracked.at(it->second).orig;
  e.accounted = true;
  return e;
}

std::size_t Translator::endDump(std::int64_t now) {
  auto& s = *s_;
  std::vector<std::uint32_t> gone;
  for (const auto& [id, t] : s.tracked)
    if (t.seen + 1 < s.generation) gone.push_back(id);
  for (auto id : gone) s.untrack(id);
  s.stats.forgotten += gone.size();
  for (auto it = s.destroyed.begin(); it != s.destroyed.end();)
    it = it->second + 1 < s.generation ? s.destroyed.erase(it) : std::next(it);
  for (auto it = s.pending.begin(); it != s.pending.end();)
    it = now - it->second.last > kPendingSeconds ? s.pending.erase(it) : std::next(it);
  ++s.generation;
  return gone.size();
}

std::vector<std::size_t> Translator::takeUncounted() {
  std::vector<std::size_t> out;
  out.swap(s_->uncounted);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

const TranslatorStats& Translator::stats() const { return s_->stats; }

}  // namespace vpcfw::collect
