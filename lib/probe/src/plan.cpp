// Probe planning (plan.h): flows from the evaluator, fresh identifiers,
// the matrix, agreement and the lab's entry points for baselines.
#include "vpcfw/probe/plan.h"

#include <fmt/format.h>

#include <algorithm>

namespace vpcfw::probe {

IdentifierPool::IdentifierPool(TrackedIds tracked, std::uint64_t seed) : used_(std::move(tracked)), rng_(seed) {}

Expected<std::uint16_t> IdentifierPool::draw(int protocol, std::uint32_t first, std::uint32_t last) {
  auto& used = used_.byProtocol[protocol];
  const std::uint32_t span = last - first + 1;
  const std::uint32_t start = first + static_cast<std::uint32_t>(rng_() % span);
  // From a random point, the first free one: uniform enough, and bounded
  // however full the range is.
  for (std::uint32_t k = 0; k < span; ++k) {
    const auto v = static_cast<std::uint16_t>(first + (start - first + k) % span);
    if (used.insert(v).second) return v;
  }
  return makeError(ErrorCode::kInvalidArgument,
                   fmt::format("no fresh {} identifier left in {}..{} (in use by tracked flows or this run)",
                               net::Protocol(protocol).toString(), first, last));
}

Expected<std::uint16_t> IdentifierPool::sourcePort(int protocol) {
  return draw(protocol, kFirstSourcePort, kLastSourcePort);
}
Expected<std::uint16_t> IdentifierPool::icmpId(int protocol) { return draw(protocol, 0, 0xffff); }
void IdentifierPool::reserve(int protocol, std::uint16_t port) { used_.byProtocol[protocol].insert(port); }

bool reachable(const ProbeResult& r) {
  return !r.harnessError() && (r.replyExpected ? r.replyReturned : r.requestArrived);
}

Agreement agreement(const Trial& t) {
  if (t.observed.harnessError()) return Agreement::kNotCarriedOut;
  if (!t.predicted) return Agreement::kAgrees;
  const auto& v = *t.predicted;
  const auto& o = t.observed;
  if (v.forward.delivered != o.requestArrived) return Agreement::kDisagrees;
  if (v.forward.delivered && v.replyExpected && o.replyExpected && v.reachable() != o.replyReturned)
    return Agreement::kDisagrees;
  return Agreement::kAgrees;
}

std::string namespaceOf(const model::Model& m, const net::IpAddress& a) {
  if (auto i = m.instanceWithAddress(a); i != model::kNone) return lab::instanceNamespace(m.instances[i]);
  if (auto i = m.instanceWithPublicIp(a); i != model::kNone) return lab::instanceNamespace(m.instances[i]);
  return lab::internetNamespace();
}

Expected<void> prepare(const model::Model& m, Trial& t) {
  auto v = eval::explainFlow(m, t.request);
  if (!v) return unexpected<Error>(v.error());
  const auto& p = v->forward.packet;
  for (const auto* a : {&p.src, &p.dst})
    if (m.instanceWithAddress(*a) == model::kNone && m.instanceWithPublicIp(*a) == model::kNone &&
        !lab::isLabInternetHost(*a))
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("{} is outside the lab's internet (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, "
                                   "2001:db8::/32)",
                                   a->toString()));
  t.spec.srcNs = namespaceOf(m, p.src);
  t.spec.src = p.src;
  t.spec.dstNs = namespaceOf(m, p.dst);
  t.spec.dst = p.dst;
  t.spec.protocol = p.protocol;
  t.spec.port = p.dstPort;
  t.spec.sourcePort = p.srcPort;
  if (p.protocol.isIcmpAny()) {
    t.spec.icmpType = t.request.icmpType == -1 ? -1 : p.icmpType;
    t.spec.icmpCode = p.icmpCode;
  }
  t.predicted = std::move(*v);
  return {};
}

namespace {

// Draws what the trial's flow needs (a source port before the evaluation,
// which depends on it) and prepares it. Errors from the pool are the run's;
// the evaluator's are the trial's (returned as `skip`).
Expected<std::optional<Trial>> planTrial(const model::Model& m, Trial t, bool fixedSourcePort, IdentifierPool& ids,
                                         Error* skip) {
  if (t.request.protocol.hasPorts() && !fixedSourcePort) {
    auto port = ids.sourcePort(t.request.protocol.number());
    if (!port) return unexpected<Error>(port.error());
    t.request.sourcePort = *port;
  }
  if (auto e = prepare(m, t); !e) {
    if (skip) *skip = e.error();
    return std::optional<Trial>();
  }
  if (t.spec.protocol.isIcmpAny()) {
    auto id = ids.icmpId(t.spec.protocol.number());
    if (!id) return unexpected<Error>(id.error());
    t.spec.icmpId = *id;
  }
  return std::optional<Trial>(std::move(t));
}

}  // namespace

Expected<Trial> planProbe(const model::Model& m, const Request& r, IdentifierPool& ids) {
  Trial t;
  t.from = r.flow.from;
  t.to = r.flow.to;
  t.request = r.flow;
  Error skip;
  auto planned = planTrial(m, std::move(t), r.fixedSourcePort, ids, &skip);
  if (!planned) return unexpected<Error>(planned.error());
  if (!*planned) return unexpected<Error>(skip);
  return std::move(**planned);
}

std::map<int, std::vector<std::uint16_t>> mentionedPorts(const model::Model& m, std::size_t cap) {
  std::map<int, std::set<std::uint16_t>> found;
  auto take = [&](const net::Protocol& p, const net::PortRange& r) {
    if (!p.hasPorts() || r.isAll()) return;
    found[p.number()].insert(std::max<std::uint16_t>(r.from, 1));  // port 0 cannot be listened on
  };
  for (const auto& g : m.groups)
    for (auto d : {model::Direction::kIngress, model::Direction::kEgress})
      for (const auto& r : g.rules(d)) take(r.protocol, r.ports);
  for (const auto& a : m.nacls)
    for (auto d : {model::Direction::kIngress, model::Direction::kEgress})
      for (const auto& r : a.rules(d))
        if (r.ports.to - r.ports.from < 1000) take(r.protocol, r.ports);  // not the ephemeral ranges
  std::map<int, std::vector<std::uint16_t>> out;
  for (auto& [proto, ports] : found)
    for (auto p : ports)
      if (out[proto].size() < cap) out[proto].push_back(p);
  return out;
}

std::string Service::name() const {
  return proto.hasPorts() ? fmt::format("{}/{}", proto.toString(), port) : proto.toString();
}

const Trial* Matrix::at(const Cell& c) const {
  auto it = index.find(c);
  return it == index.end() ? nullptr : &trials[it->second];
}

// An internet host of the lab that no instance and no VPC block claims (a
// public IP of the config would make "the internet" an instance).
std::optional<std::string> freeInternetHost(const model::Model& m, bool v6) {
  for (unsigned k = 100; k < 250; ++k) {
    const std::string text = v6 ? fmt::format("2001:db8:ffff::{}", k) : fmt::format("198.51.100.{}", k);
    const auto a = net::IpAddress::parse(text);
    if (a && m.instanceWithPublicIp(*a) == model::kNone && m.instanceWithAddress(*a) == model::kNone &&
        m.vpcContaining(*a) == model::kNone)
      return text;
  }
  return std::nullopt;
}

Expected<Matrix> planMatrix(const model::Model& m, std::optional<net::Family> family, IdentifierPool& ids) {
  Matrix x;
  bool internet = false;
  for (const auto& inst : m.instances) {
    if (inst.vpc == model::kNone || inst.placement.kind != model::Placement::Kind::kLabNamespace) continue;
    x.ends.push_back(inst.name);
    if (m.vpcs[inst.vpc].internetGateway != model::kNone) internet = true;
  }
  const bool v6 = family == net::Family::kIpv6;
  const std::string internetHost = freeInternetHost(m, v6).value_or("");
  if (internet && !internetHost.empty()) x.ends.push_back(internetHost);
  for (const auto& [proto, ports] : mentionedPorts(m, kMatrixPortsPerProtocol))
    for (auto p : ports) x.services.push_back({net::Protocol(proto), p});
  x.services.push_back({net::Protocol(v6 ? net::Protocol::kIcmpv6 : net::Protocol::kIcmp), 0});
  // Every end listens on every service port while the matrix runs, and the
  // same ends are clients: a service port in the source range (a rule for
  // 49152-65535 names 49152) must not be drawn as a source port.
  for (const auto& sv : x.services)
    if (sv.proto.hasPorts()) ids.reserve(sv.proto.number(), sv.port);

  for (std::size_t s = 0; s < x.services.size(); ++s)
    for (std::size_t a = 0; a < x.ends.size(); ++a)
      for (std::size_t b = 0; b < x.ends.size(); ++b) {
        if (a == b || (x.ends[a] == internetHost && x.ends[b] == internetHost)) continue;
        Trial t;
        t.from = t.request.from = x.ends[a];
        t.to = t.request.to = x.ends[b];
        t.request.protocol = x.services[s].proto;
        t.request.port = x.services[s].port;
        t.request.family = family;
        auto planned = planTrial(m, std::move(t), false, ids, nullptr);
        if (!planned) return unexpected<Error>(planned.error());
        if (!*planned) continue;  // cannot be addressed (n/a)
        x.index[{s, a, b}] = x.trials.size();
        x.trials.push_back(std::move(**planned));
        x.cells.push_back({s, a, b});
      }
  return x;
}

Summary summarize(const std::vector<Trial>& trials) {
  Summary s;
  for (const auto& t : trials) {
    ++s.probes;
    if (reachable(t.observed)) ++s.reachable;
    switch (agreement(t)) {
      case Agreement::kNotCarriedOut:
        ++s.harnessErrors;
        break;
      case Agreement::kDisagrees:
        ++s.disagreements;
        break;
      case Agreement::kAgrees:
        break;
    }
  }
  return s;
}

LabView labView(const lab::LabPlan& plan) {
  LabView v;
  for (const auto& l : plan.links) {
    v.entries[l.ns].push_back({l.peerNs, l.peer});
    v.entries[l.peerNs].push_back({l.ns, l.name});
  }
  for (const auto& n : plan.namespaces)
    if (n.role == lab::NamespacePlan::Role::kRouter || n.role == lab::NamespacePlan::Role::kGateway)
      v.trackers.push_back(n.name);
  return v;
}

std::vector<ProbeSpec> specs(const std::vector<Trial>& trials) {
  std::vector<ProbeSpec> out;
  for (const auto& t : trials) out.push_back(t.spec);
  return out;
}

void record(std::vector<Trial>& trials, std::vector<ProbeResult> results) {
  for (std::size_t i = 0; i < trials.size() && i < results.size(); ++i) trials[i].observed = std::move(results[i]);
}

}  // namespace vpcfw::probe
