#include "vpcfw/compile/intervals.h"

#include <algorithm>
#include <map>
#include <optional>

namespace vpcfw::compile {
namespace {

using net::IpAddress;

bool isMax(const IpAddress& a) {
  const int len = a.isV4() ? 4 : 16;
  for (int i = 0; i < len; ++i)
    if (a.bytes()[static_cast<std::size_t>(i)] != 0xff) return false;
  return true;
}

// What the rules allow inside one atom; compared to merge neighbours.
struct AtomValue {
  bool all = false;
  std::vector<std::uint8_t> protocols;                  // sorted, unique
  std::map<std::uint8_t, std::vector<IntRange>> ports;  // proto -> merged ranges
  bool icmpAll = false;
  std::map<std::uint32_t, std::vector<IntRange>> icmpCodes;  // type -> merged code ranges
  bool operator==(const AtomValue&) const = default;
};

struct Atom {
  AddressRange range;
  AtomValue value;
};

// Cuts the address space at every CIDR boundary; keeps atoms some match covers.
std::vector<Atom> atomize(const std::vector<AddressMatch>& matches) {
  std::vector<IpAddress> points;
  for (const auto& m : matches) {
    points.push_back(m.cidr.network());
    if (!isMax(m.cidr.last())) points.push_back(m.cidr.last().offset(1));
  }
  std::sort(points.begin(), points.end());
  points.erase(std::unique(points.begin(), points.end()), points.end());
  std::vector<Atom> atoms;
  for (std::size_t i = 0; i < points.size(); ++i) {
    IpAddress lo = points[i];
    IpAddress hi;
    if (i + 1 < points.size()) {
      hi = points[i + 1].offset(-1);
    } else {
      // Up to the end of the address space, unless every CIDR ends earlier.
      std::optional<IpAddress> end;
      for (const auto& m : matches)
        if (m.cidr.contains(lo)) end = m.cidr.last();
      if (!end) continue;
      hi = *end;
    }
    bool covered =
        std::any_of(matches.begin(), matches.end(), [&](const AddressMatch& m) { return m.cidr.contains(lo); });
    if (covered) atoms.push_back(Atom{AddressRange{lo, hi}, {}});
  }
  return atoms;
}

void addValue(AtomValue& v, const L4Match& l4) {
  switch (l4.kind) {
    case L4Match::Kind::kAll:
      v.all = true;
      break;
    case L4Match::Kind::kProtocol:
      v.protocols.push_back(l4.protocol);
      break;
    case L4Match::Kind::kPorts:
      v.ports[l4.protocol].push_back(l4.ports);
      break;
    case L4Match::Kind::kIcmp:
      if (l4.icmpType.lo == 0 && l4.icmpType.hi == 255) {
        v.icmpAll = true;
      } else {
        for (auto t = l4.icmpType.lo; t <= l4.icmpType.hi; ++t) v.icmpCodes[t].push_back(l4.icmpCode);
      }
      break;
  }
}

void normalize(AtomValue& v) {
  std::sort(v.protocols.begin(), v.protocols.end());
  v.protocols.erase(std::unique(v.protocols.begin(), v.protocols.end()), v.protocols.end());
  for (auto& [p, r] : v.ports) r = mergeIntRanges(std::move(r));
  if (v.icmpAll) v.icmpCodes.clear();
  for (auto& [t, r] : v.icmpCodes) r = mergeIntRanges(std::move(r));
  // Everything else is redundant where the atom allows every protocol; the
  // sets stay separate lookups, so dropping it keeps them small.
  if (v.all) {
    v.protocols.clear();
    v.ports.clear();
    v.icmpAll = false;
    v.icmpCodes.clear();
  }
}

}  // namespace

std::vector<IntRange> mergeIntRanges(std::vector<IntRange> in) {
  std::sort(in.begin(), in.end());
  std::vector<IntRange> out;
  for (const auto& r : in) {
    if (!out.empty() && static_cast<std::uint64_t>(r.lo) <= static_cast<std::uint64_t>(out.back().hi) + 1)
      out.back().hi = std::max(out.back().hi, r.hi);
    else
      out.push_back(r);
  }
  return out;
}

std::vector<AddressRange> mergeCidrs(const std::vector<net::Cidr>& cidrs) {
  std::vector<AddressMatch> m;
  for (const auto& c : cidrs) m.push_back(AddressMatch{c, {}});
  std::vector<AddressRange> out;
  for (const auto& a : atomize(m)) {
    if (!out.empty() && !isMax(out.back().hi) && out.back().hi.offset(1) == a.range.lo)
      out.back().hi = a.range.hi;
    else
      out.push_back(a.range);
  }
  return out;
}

namespace {

// Address-first: cut the address space, give each piece the union of what the
// rules allow there. Few elements when rules share addresses.
SetElements addressFirst(const std::vector<AddressMatch>& matches) {
  auto atoms = atomize(matches);
  for (auto& a : atoms) {
    for (const auto& m : matches)
      if (m.cidr.contains(a.range.lo)) addValue(a.value, m.l4);
    normalize(a.value);
  }
  // Merge neighbouring atoms that allow the same.
  std::vector<Atom> merged;
  for (auto& a : atoms) {
    if (!merged.empty() && !isMax(merged.back().range.hi) && merged.back().range.hi.offset(1) == a.range.lo &&
        merged.back().value == a.value)
      merged.back().range.hi = a.range.hi;
    else
      merged.push_back(std::move(a));
  }
  SetElements out;
  for (const auto& a : merged) {
    const Value addr = a.range;
    if (a.value.all) out.all.push_back(SetElement{{addr}, std::nullopt});
    for (auto p : a.value.protocols) out.protocol.push_back(SetElement{{addr, IntRange{p, p}}, std::nullopt});
    for (const auto& [p, ranges] : a.value.ports)
      for (const auto& r : ranges) out.ports.push_back(SetElement{{addr, IntRange{p, p}, r}, std::nullopt});
    if (a.value.icmpAll) out.icmp.push_back(SetElement{{addr, IntRange{0, 255}, IntRange{0, 255}}, std::nullopt});
    // Consecutive types with the same code ranges share one element.
    for (auto it = a.value.icmpCodes.begin(); it != a.value.icmpCodes.end();) {
      auto first = it->first, last = it->first;
      auto next = std::next(it);
      while (next != a.value.icmpCodes.end() && next->first == last + 1 && next->second == it->second) {
        last = next->first;
        ++next;
      }
      for (const auto& r : it->second) out.icmp.push_back(SetElement{{addr, IntRange{first, last}, r}, std::nullopt});
      it = next;
    }
  }
  return out;
}

// Protocol-first: cut the protocol/port/ICMP dimension into disjoint pieces,
// give each piece the merged union of the addresses the rules allow for it.
// Few elements when rules share ports (many CIDRs, few services).
struct Piece {
  IntRange l4;
  std::vector<AddressRange> addresses;
};
std::vector<Piece> l4First(const std::vector<std::pair<IntRange, net::Cidr>>& items) {
  std::vector<std::uint64_t> points;
  for (const auto& [r, c] : items) {
    points.push_back(r.lo);
    points.push_back(std::uint64_t{r.hi} + 1);
  }
  std::sort(points.begin(), points.end());
  points.erase(std::unique(points.begin(), points.end()), points.end());
  std::vector<Piece> out;
  for (std::size_t i = 0; i + 1 < points.size(); ++i) {
    IntRange atom{static_cast<std::uint32_t>(points[i]), static_cast<std::uint32_t>(points[i + 1] - 1)};
    std::vector<net::Cidr> cidrs;
    for (const auto& [r, c] : items)
      if (r.lo <= atom.lo && atom.lo <= r.hi) cidrs.push_back(c);
    if (cidrs.empty()) continue;
    auto addrs = mergeCidrs(cidrs);
    if (!out.empty() && std::uint64_t{out.back().l4.hi} + 1 == atom.lo && out.back().addresses == addrs)
      out.back().l4.hi = atom.hi;
    else
      out.push_back(Piece{atom, std::move(addrs)});
  }
  return out;
}

SetElements protocolFirst(const std::vector<AddressMatch>& matches) {
  SetElements out;
  std::vector<net::Cidr> all;
  std::vector<std::pair<IntRange, net::Cidr>> protos, icmp;
  std::map<std::uint8_t, std::vector<std::pair<IntRange, net::Cidr>>> ports;
  for (const auto& m : matches) {
    switch (m.l4.kind) {
      case L4Match::Kind::kAll:
        all.push_back(m.cidr);
        break;
      case L4Match::Kind::kProtocol:
        protos.push_back({IntRange{m.l4.protocol, m.l4.protocol}, m.cidr});
        break;
      case L4Match::Kind::kPorts:
        ports[m.l4.protocol].push_back({m.l4.ports, m.cidr});
        break;
      case L4Match::Kind::kIcmp:
        // type and code as one number, type * 256 + code: each rule is one range.
        if (m.l4.icmpType.lo == m.l4.icmpType.hi)
          icmp.push_back(
              {IntRange{m.l4.icmpType.lo * 256 + m.l4.icmpCode.lo, m.l4.icmpType.lo * 256 + m.l4.icmpCode.hi}, m.cidr});
        else
          icmp.push_back({IntRange{m.l4.icmpType.lo * 256, m.l4.icmpType.hi * 256 + 255}, m.cidr});
        break;
    }
  }
  for (const auto& a : mergeCidrs(all)) out.all.push_back(SetElement{{a}, std::nullopt});
  for (const auto& piece : l4First(protos))
    for (const auto& a : piece.addresses) out.protocol.push_back(SetElement{{a, piece.l4}, std::nullopt});
  for (const auto& [p, items] : ports)
    for (const auto& piece : l4First(items))
      for (const auto& a : piece.addresses)
        out.ports.push_back(SetElement{{a, IntRange{p, p}, piece.l4}, std::nullopt});
  for (const auto& piece : l4First(icmp)) {
    // Back from type * 256 + code to (type range, code range) boxes.
    std::uint32_t lo = piece.l4.lo, hi = piece.l4.hi;
    std::vector<std::pair<IntRange, IntRange>> boxes;
    while (lo <= hi) {
      std::uint32_t type = lo / 256, code = lo % 256;
      if (code == 0 && hi >= lo + 255) {  // whole types, as many as fit
        const std::uint32_t lastType = (hi + 1) / 256 - 1;
        boxes.push_back({IntRange{type, lastType}, IntRange{0, 255}});
        lo = (lastType + 1) * 256;
      } else {
        std::uint32_t end = std::min(hi, type * 256 + 255);
        boxes.push_back({IntRange{type, type}, IntRange{code, end % 256}});
        lo = end + 1;
      }
    }
    for (const auto& [t, c] : boxes)
      for (const auto& a : piece.addresses) out.icmp.push_back(SetElement{{a, t, c}, std::nullopt});
  }
  return out;
}

template <class V>
V& smaller(V& a, V& b) {
  return b.size() < a.size() ? b : a;
}

}  // namespace

SetElements buildSetElements(const std::vector<AddressMatch>& matches) {
  auto a = addressFirst(matches);
  auto b = protocolFirst(matches);
  SetElements out;
  out.all = std::move(smaller(a.all, b.all));
  out.protocol = std::move(smaller(a.protocol, b.protocol));
  out.ports = std::move(smaller(a.ports, b.ports));
  out.icmp = std::move(smaller(a.icmp, b.icmp));
  for (auto* v : {&out.all, &out.protocol, &out.ports, &out.icmp}) std::sort(v->begin(), v->end());
  return out;
}

}  // namespace vpcfw::compile
