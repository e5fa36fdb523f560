// Which flows to cut: the kernel's untracked sets from before a commit,
// decoded, against the evaluator's verdicts under the new model.
#include "vpcfw/track/untracked.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "vpcfw/compile/compiler.h"
#include "vpcfw/eval/evaluator.h"

namespace vpcfw::track {
namespace {

using model::Direction;

constexpr std::size_t kIfnameBytes = 16;  // IFNAMSIZ, the first field of every untracked set

int dirIndex(Direction d) { return d == Direction::kEgress ? 0 : 1; }

std::string protoName(std::uint8_t p) { return p == 6 ? "tcp" : p == 17 ? "udp" : std::to_string(p); }

}  // namespace

std::string Flow::describe() const {
  const bool v6 = !src.isV4();
  return v6 ? fmt::format("{} [{}]:{} -> [{}]:{}", protoName(protocol), src.toString(), srcPort, dst.toString(),
                          dstPort)
            : fmt::format("{} {}:{} -> {}:{}", protoName(protocol), src.toString(), srcPort, dst.toString(), dstPort);
}

std::vector<std::string> untrackedSetNames() {
  std::vector<std::string> out;
  for (const auto& byDir : compile::kUntrackedSets)
    for (const auto& name : byDir) out.emplace_back(name);
  return out;
}

UntrackedBefore UntrackedBefore::fromKernel(
    const std::map<std::string, std::vector<nft::ApplyReport::ElementKey>>& previous) {
  UntrackedBefore u;
  for (int d = 0; d < 2; ++d)
    for (int f = 0; f < 2; ++f) {
      auto it = previous.find(std::string(compile::kUntrackedSets[d][f]));
      if (it == previous.end()) continue;
      // ifname(16) . address(4 or 16) . protocol(1, padded to 4) . port(2, padded to 4)
      const std::size_t addrBytes = f == 0 ? 4 : 16;
      const std::size_t size = kIfnameBytes + addrBytes + 8;
      for (const auto& e : it->second) {
        const std::string& end = e.keyEnd.empty() ? e.key : e.keyEnd;  // a single value has no end
        if (e.key.size() != size || end.size() != size ||
            e.key.compare(0, size - 4, end, 0, size - 4) != 0) {  // only the port may be a range
          ++u.unreadable_;
          continue;
        }
        const auto* k = reinterpret_cast<const std::uint8_t*>(e.key.data());
        const auto* h = reinterpret_cast<const std::uint8_t*>(end.data());
        const std::size_t p = kIfnameBytes + addrBytes;
        const auto lo = static_cast<std::uint16_t>(k[p + 4] << 8 | k[p + 5]);
        const auto hi = static_cast<std::uint16_t>(h[p + 4] << 8 | h[p + 5]);
        if (lo > hi || (k[p] != 6 && k[p] != 17)) {
          ++u.unreadable_;
          continue;
        }
        u.entries_[d].push_back(
            Entry{net::IpAddress::fromBytes(f == 0 ? net::Family::kIpv4 : net::Family::kIpv6, k + kIfnameBytes), k[p],
                  lo, hi});
      }
    }
  u.sort();
  return u;
}

void UntrackedBefore::add(Direction dir, const net::IpAddress& eni, std::uint8_t proto, std::uint16_t lo,
                          std::uint16_t hi) {
  entries_[dirIndex(dir)].push_back(Entry{eni, proto, lo, hi});
  sort();
}

void UntrackedBefore::sort() {
  for (auto& v : entries_) std::sort(v.begin(), v.end());
}

bool UntrackedBefore::untracked(Direction dir, const net::IpAddress& eni, std::uint8_t proto,
                                std::uint16_t dport) const {
  const auto& v = entries_[dirIndex(dir)];
  // The entries of (eni, proto) are a sorted run; ranges from the kernel may
  // overlap (it is untrusted), so the run is walked back from the last
  // range starting at or below the port.
  auto it = std::upper_bound(v.begin(), v.end(), Entry{eni, proto, dport, 0xffff});
  while (it != v.begin()) {
    --it;
    if (it->addr != eni || it->proto != proto) return false;
    if (it->lo <= dport && dport <= it->hi) return true;
  }
  return false;
}

std::vector<std::size_t> enisOfFabric(const compile::Placement& placement, const std::string& fabric) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < placement.byInstance.size(); ++i)
    if (placement.byInstance[i] && placement.byInstance[i]->fabric == fabric) out.push_back(i);
  return out;
}

std::vector<Cut> flowsToCut(const UntrackedBefore& before, const model::Model& now,
                            const std::vector<std::size_t>& enis, const std::vector<Flow>& flows) {
  std::vector<Cut> out;
  if (before.empty()) return out;
  std::map<net::IpAddress, std::size_t> owner;
  for (auto i : enis) {
    const auto& inst = now.instances.at(i);
    owner.emplace(inst.privateIp, i);
    for (const auto& a : inst.secondaryIps) owner.emplace(a, i);
    for (const auto& a : inst.ipv6Addresses) owner.emplace(a, i);
  }
  auto ownerOf = [&](const net::IpAddress& a) {
    auto it = owner.find(a);
    return it == owner.end() ? model::kNone : it->second;
  };
  for (std::size_t n = 0; n < flows.size(); ++n) {
    const Flow& f = flows[n];
    if (const auto o = ownerOf(f.src); o != model::kNone && o == ownerOf(f.dst)) continue;
    if (f.protocol != 6 && f.protocol != 17) continue;
    eval::Packet req;
    req.src = f.src;
    req.dst = f.dst;
    req.protocol = net::Protocol(f.protocol);
    req.srcPort = f.srcPort;
    req.dstPort = f.dstPort;
    eval::Packet reply = req;
    std::swap(reply.src, reply.dst);
    std::swap(reply.srcPort, reply.dstPort);
    for (auto dir : {Direction::kEgress, Direction::kIngress}) {
      const bool out_ = dir == Direction::kEgress;
      const net::IpAddress& eni = out_ ? f.src : f.dst;
      if (!before.untracked(dir, eni, f.protocol, f.dstPort)) continue;
      const std::size_t i = ownerOf(eni);
      if (i == model::kNone) continue;
      const auto& inst = now.instances[i];
      const Direction back = out_ ? Direction::kIngress : Direction::kEgress;
      std::string why;
      if (!eval::evaluateGroups(now, inst.groups, dir, req).allowed)
        why = fmt::format("{} {}: the flow was untracked and no rule of its groups admits the request now", inst.name,
                          model::directionName(dir));
      else if (!eval::isUntracked(now, inst, dir, req) && !eval::evaluateGroups(now, inst.groups, back, reply).allowed)
        why = fmt::format("{} {}: the flow was untracked and no rule of its groups admits its reply now", inst.name,
                          model::directionName(back));
      if (why.empty()) continue;
      out.push_back(Cut{f, n, std::move(why)});
      break;
    }
  }
  return out;
}

}  // namespace vpcfw::track
