#include "vpcfw/model/validate.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <tuple>

#include "vpcfw/names/names.h"

namespace vpcfw::model {
namespace {

using net::Cidr;
using net::Family;
using net::IpAddress;
using net::Protocol;

// AWS's maxima for adjustable quotas (amazon-vpc-limits).
constexpr int kMaxVpcCidrBlocks = 50;
constexpr int kMaxNaclRules = 40;
constexpr int kMaxSgRules = 1000;
constexpr int kMaxGroupsPerEni = 16;
constexpr int kMaxRulesTimesGroups = 1000;
constexpr int kMaxPeeringsPerVpc = 125;
constexpr int kMaxRoutesPerTable = 1000;
constexpr std::size_t kMaxDescription = 255;

// Address ranges that no public IP or route may use: AWS never assigns them,
// and NAT or routing to them would break the host the lab runs on.
struct SpecialRange {
  Cidr cidr;
  std::string_view what;
};
const std::vector<SpecialRange>& specialRanges() {
  static const std::vector<SpecialRange> ranges = {
      {Cidr::parse("0.0.0.0/8")->cidr, "unspecified (\"this network\")"},
      {Cidr::parse("127.0.0.0/8")->cidr, "loopback"},
      {Cidr::parse("169.254.0.0/16")->cidr, "link-local"},
      {Cidr::parse("224.0.0.0/4")->cidr, "multicast"},
      {Cidr::parse("240.0.0.0/4")->cidr, "reserved or broadcast"},
      {Cidr::parse("::/128")->cidr, "unspecified"},
      {Cidr::parse("::1/128")->cidr, "loopback"},
      {Cidr::parse("fe80::/10")->cidr, "link-local"},
      {Cidr::parse("ff00::/8")->cidr, "multicast"},
  };
  return ranges;
}
// Ranges AWS never hands out as public IPs: private and shared address space.
const std::vector<SpecialRange>& privateRanges() {
  static const std::vector<SpecialRange> ranges = {
      {Cidr::parse("10.0.0.0/8")->cidr, "private"},
      {Cidr::parse("172.16.0.0/12")->cidr, "private"},
      {Cidr::parse("192.168.0.0/16")->cidr, "private"},
      {Cidr::parse("100.64.0.0/10")->cidr, "shared (carrier-grade NAT)"},
  };
  return ranges;
}
// The special range that holds all of `c`, or nullptr.
const SpecialRange* specialRangeOf(const Cidr& c) {
  for (const auto& r : specialRanges())
    if (r.cidr.contains(c)) return &r;
  return nullptr;
}

// Look-ups by name in O(1), for a model whose vectors only grow while it is
// validated (AWS defaults are appended): the first object of a name wins, as
// Model::find* would return it. Keeps validation linear in the config's size.
template <class V, class Key, class KeyOf>
class NameIndex {
 public:
  NameIndex(const V& items, KeyOf keyOf) : items_(items), keyOf_(keyOf) {}
  std::size_t find(const Key& k) {
    for (; indexed_ < items_.size(); ++indexed_) index_.emplace(keyOf_(items_[indexed_]), indexed_);
    auto it = index_.find(k);
    return it == index_.end() ? kNone : it->second;
  }

 private:
  const V& items_;
  KeyOf keyOf_;
  std::size_t indexed_ = 0;
  std::map<Key, std::size_t> index_;
};
template <class V>
auto byName(const V& items) {
  auto key = [](const auto& x) { return x.name; };
  return NameIndex<V, std::string, decltype(key)>(items, key);
}
template <class V>
auto byVpcAndName(const V& items) {
  auto key = [](const auto& x) { return std::pair{x.vpc, x.name}; };
  return NameIndex<V, std::pair<std::size_t, std::string>, decltype(key)>(items, key);
}

// Calls report(earlier, later) once for each CIDR that overlaps one before
// it, in O(n log n): CIDRs nest or are disjoint, so after sorting by start,
// one that overlaps anything overlaps the one reaching furthest so far.
template <class F>
void forEachOverlap(std::vector<std::pair<Cidr, std::size_t>> blocks, F report) {
  std::sort(blocks.begin(), blocks.end(), [](const auto& a, const auto& b) {
    if (a.first.network() != b.first.network()) return a.first.network() < b.first.network();
    if (a.first.prefix() != b.first.prefix()) return a.first.prefix() < b.first.prefix();
    return a.second < b.second;
  });
  const std::pair<Cidr, std::size_t>* reach = nullptr;
  for (const auto& b : blocks) {
    if (reach && reach->first.family() == b.first.family() && reach->first.overlaps(b.first)) {
      report(std::min(reach->second, b.second), std::max(reach->second, b.second));
      continue;
    }
    if (!reach || reach->first.family() != b.first.family() || reach->first.last() < b.first.last()) reach = &b;
  }
}

class Validator {
 public:
  Validator(Model& m, Diagnostics& d, const std::vector<std::uint64_t>* stamps = nullptr, GroupRuleMemo* memo = nullptr)
      : m_(m), d_(d), stamps_(stamps), memo_(memo) {}

  void run() {
    checkLimits();
    checkVpcs();
    checkInternetGateways();
    checkPeerings();
    checkPrefixLists();
    checkNacls();
    checkGroupsDeclared();
    checkRouteTables();
    checkSubnets();
    checkInstances();
    checkGroupRules();  // needs instances (members) and peerings
    checkKernelNames();
    checkFlowLogs();
  }

 private:
  Model& m_;
  Diagnostics& d_;
  const std::vector<std::uint64_t>* stamps_;
  GroupRuleMemo* memo_;
  decltype(byName(m_.vpcs)) vpcIndex_ = byName(m_.vpcs);
  decltype(byName(m_.subnets)) subnetIndex_ = byName(m_.subnets);
  decltype(byName(m_.prefixLists)) prefixListIndex_ = byName(m_.prefixLists);
  decltype(byName(m_.internetGateways)) gatewayIndex_ = byName(m_.internetGateways);
  decltype(byName(m_.peerings)) peeringIndex_ = byName(m_.peerings);
  decltype(byVpcAndName(m_.groups)) groupIndex_ = byVpcAndName(m_.groups);
  decltype(byVpcAndName(m_.nacls)) naclIndex_ = byVpcAndName(m_.nacls);
  decltype(byVpcAndName(m_.routeTables)) routeTableIndex_ = byVpcAndName(m_.routeTables);
  std::set<std::pair<std::size_t, std::size_t>> activePairs_;  // filled by checkPeerings

  // "name" in `vpc`, or "vpc/name" (as Model::findGroup).
  std::size_t findGroup(std::string_view ref, std::size_t vpc) {
    auto slash = ref.find('/');
    if (slash == std::string_view::npos) return groupIndex_.find({vpc, std::string(ref)});
    std::size_t v = vpcIndex_.find(std::string(ref.substr(0, slash)));
    return v == kNone ? kNone : groupIndex_.find({v, std::string(ref.substr(slash + 1))});
  }

  template <class V>
  std::vector<std::string> namesOf(const V& items, std::size_t vpc = kNone) const {
    std::vector<std::string> out;
    for (const auto& it : items) {
      if constexpr (requires { it.vpc; }) {
        if (vpc != kNone && it.vpc != vpc) continue;
      }
      out.push_back(it.name);
    }
    return out;
  }

  // Bounded by Diagnostics' suggestion budget, and candidates listed only
  // while a hint can still be shown.
  template <class V>
  std::string didYouMean(std::string_view name, const V& items, std::size_t vpc = kNone) {
    if (!d_.wantsSuggestions()) return {};
    return d_.didYouMean(name, namesOf(items, vpc));
  }

  // Resolves `vpcName` of an object; reports an unknown VPC.
  std::size_t resolveVpc(const std::string& vpcName, const Origin& o, std::string_view what) {
    std::size_t v = vpcIndex_.find(vpcName);
    if (v == kNone)
      d_.error(o.of("vpc"), fmt::format("{} refers to unknown VPC {}", what, quoteForMessage(vpcName)),
               didYouMean(vpcName, m_.vpcs));
    return v;
  }

  template <class V>
  void checkUniqueNamesSimple(const V& items, std::string_view kind) {
    std::map<std::string, const Origin*> seen;
    for (const auto& it : items) {
      auto [pos, fresh] = seen.emplace(it.name, &it.origin);
      if (!fresh)
        d_.error(it.origin.of("name"), fmt::format("duplicate {} name '{}'", kind, it.name),
                 fmt::format("first declared at line {}", pos->second->of("name").line));
    }
  }

  // ------------------------------------------------------------ limits
  void checkLimits() {
    Limits& l = m_.limits;
    auto positive = [&](int v, std::string_view key) {
      if (v < 1) d_.error(l.origin.of(*FieldName::named(key)), fmt::format("limit '{}' must be at least 1", key));
    };
    positive(l.vpcs, "vpcs");
    positive(l.vpcCidrBlocks, "vpc_cidr_blocks");
    positive(l.subnetsPerVpc, "subnets_per_vpc");
    positive(l.naclsPerVpc, "nacls_per_vpc");
    positive(l.naclRulesPerDirection, "nacl_rules_per_direction");
    positive(l.sgRulesPerDirection, "sg_rules_per_direction");
    positive(l.groupsPerEni, "groups_per_eni");
    positive(l.groupsPerVpc, "groups_per_vpc");
    positive(l.peeringsPerVpc, "peerings_per_vpc");
    positive(l.routesPerTable, "routes_per_table");
    positive(l.prefixListEntries, "prefix_list_entries");
    if (l.profile == Limits::Profile::kLab) {
      d_.warning(l.origin.of("profile"), "the lab profile lifts AWS quotas: this config may not be deployable to AWS");
      return;
    }
    auto atMost = [&](int v, int max, std::string_view key) {
      if (v > max)
        d_.error(l.origin.of(*FieldName::named(key)),
                 fmt::format("limit '{}' is {}, above AWS's maximum of {}", key, v, max),
                 "use `profile: lab` to lift AWS quotas in a lab");
    };
    atMost(l.vpcCidrBlocks, kMaxVpcCidrBlocks, "vpc_cidr_blocks");
    atMost(l.naclRulesPerDirection, kMaxNaclRules, "nacl_rules_per_direction");
    atMost(l.sgRulesPerDirection, kMaxSgRules, "sg_rules_per_direction");
    atMost(l.groupsPerEni, kMaxGroupsPerEni, "groups_per_eni");
    atMost(l.peeringsPerVpc, kMaxPeeringsPerVpc, "peerings_per_vpc");
    atMost(l.routesPerTable, kMaxRoutesPerTable, "routes_per_table");
    // Each factor may be up to 10^9 as written: multiply in 64 bits.
    const long long product = static_cast<long long>(l.sgRulesPerDirection) * l.groupsPerEni;
    if (product > kMaxRulesTimesGroups)
      d_.error(l.origin.of("groups_per_eni"),
               fmt::format("sg_rules_per_direction ({}) x groups_per_eni ({}) = {} exceeds AWS's maximum of {}",
                           l.sgRulesPerDirection, l.groupsPerEni, product, kMaxRulesTimesGroups));
  }

  // ------------------------------------------------------------ VPCs
  void checkBlockSize(const Cidr& c, int minPrefix, int maxPrefix, const SourceLocation& at, std::string_view what) {
    if (c.prefix() < minPrefix || c.prefix() > maxPrefix)
      d_.error(at, fmt::format("{} {} must be between /{} and /{}", what, c.toString(), minPrefix, maxPrefix));
  }

  void checkVpcs() {
    checkUniqueNamesSimple(m_.vpcs, "VPC");
    if (static_cast<int>(m_.vpcs.size()) > m_.limits.vpcs)
      d_.error(m_.vpcs[static_cast<std::size_t>(m_.limits.vpcs)].origin.at(),
               fmt::format("{} VPCs exceed the quota of {} per region", m_.vpcs.size(), m_.limits.vpcs),
               "raise `limits: vpcs` (adjustable in AWS)");
    static const Cidr kForbidden[] = {Cidr::parse("0.0.0.0/8")->cidr, Cidr::parse("127.0.0.0/8")->cidr,
                                      Cidr::parse("169.254.0.0/16")->cidr, Cidr::parse("224.0.0.0/4")->cidr,
                                      Cidr::parse("240.0.0.0/4")->cidr};
    for (auto& v : m_.vpcs) {
      if (v.cidrs.empty()) d_.error(v.origin.at(), fmt::format("VPC '{}' has no IPv4 CIDR block", v.name));
      if (static_cast<int>(v.cidrs.size()) > m_.limits.vpcCidrBlocks)
        d_.error(v.origin.of("cidr"),
                 fmt::format("VPC '{}' has {} IPv4 CIDR blocks, above the quota of {}", v.name, v.cidrs.size(),
                             m_.limits.vpcCidrBlocks),
                 "raise `limits: vpc_cidr_blocks` (AWS maximum 50)");
      for (std::size_t i = 0; i < v.cidrs.size(); ++i) {
        const auto& c = v.cidrs[i];
        const auto& at = v.origin.of(FieldName("cidr").item(i));
        if (!c.network().isV4()) {
          d_.error(at, fmt::format("VPC block {} is not IPv4", c.toString()), "put the IPv6 block in `ipv6_cidr`");
          continue;
        }
        checkBlockSize(c, 16, 28, at, "VPC CIDR block");
        for (const auto& f : kForbidden)
          if (f.overlaps(c))
            d_.error(at, fmt::format("VPC block {} overlaps reserved range {}", c.toString(), f.toString()));
      }
      std::vector<std::pair<Cidr, std::size_t>> blocks;
      for (std::size_t i = 0; i < v.cidrs.size(); ++i) blocks.emplace_back(v.cidrs[i], i);
      forEachOverlap(std::move(blocks), [&](std::size_t j, std::size_t i) {
        d_.error(v.origin.of(FieldName("cidr").item(i)), fmt::format("VPC block {} overlaps block {} of the same VPC",
                                                                     v.cidrs[i].toString(), v.cidrs[j].toString()));
      });
      if (v.ipv6Cidr) {
        if (v.ipv6Cidr->network().isV4())
          d_.error(v.origin.of("ipv6_cidr"), fmt::format("ipv6_cidr {} is not IPv6", v.ipv6Cidr->toString()));
        else if (v.ipv6Cidr->prefix() != 56)
          d_.error(v.origin.of("ipv6_cidr"), fmt::format("VPC IPv6 block {} must be a /56", v.ipv6Cidr->toString()));
        else
          for (const auto& r : specialRanges())
            if (r.cidr.overlaps(*v.ipv6Cidr))
              d_.error(v.origin.of("ipv6_cidr"), fmt::format("VPC IPv6 block {} overlaps the {} range {}",
                                                             v.ipv6Cidr->toString(), r.what, r.cidr.toString()));
      }
    }
  }

  // --------------------------------------------------------- gateways
  void checkInternetGateways() {
    checkUniqueNamesSimple(m_.internetGateways, "internet gateway");
    for (std::size_t i = 0; i < m_.internetGateways.size(); ++i) {
      auto& g = m_.internetGateways[i];
      g.vpc = resolveVpc(g.vpcName, g.origin, fmt::format("internet gateway '{}'", g.name));
      if (g.vpc == kNone) continue;
      auto& v = m_.vpcs[g.vpc];
      if (v.internetGateway != kNone)
        d_.error(g.origin.of("vpc"), fmt::format("VPC '{}' already has internet gateway '{}'; a VPC can have only one",
                                                 v.name, m_.internetGateways[v.internetGateway].name));
      else
        v.internetGateway = i;
    }
  }

  // --------------------------------------------------------- peerings
  void checkPeerings() {
    checkUniqueNamesSimple(m_.peerings, "peering");
    std::map<std::size_t, int> perVpc;
    std::set<std::pair<std::size_t, std::size_t>> pairs;
    for (auto& p : m_.peerings) {
      std::string what = fmt::format("peering '{}'", p.name);
      p.requester = vpcIndex_.find(p.requesterName);
      p.accepter = vpcIndex_.find(p.accepterName);
      if (p.requester == kNone)
        d_.error(p.origin.of("requester"),
                 fmt::format("{} refers to unknown VPC {}", what, quoteForMessage(p.requesterName)),
                 didYouMean(p.requesterName, m_.vpcs));
      if (p.accepter == kNone)
        d_.error(p.origin.of("accepter"),
                 fmt::format("{} refers to unknown VPC {}", what, quoteForMessage(p.accepterName)),
                 didYouMean(p.accepterName, m_.vpcs));
      if (p.requester == kNone || p.accepter == kNone) continue;
      if (p.requester == p.accepter) {
        d_.error(p.origin.of("accepter"), fmt::format("{} connects VPC '{}' to itself", what, p.requesterName));
        continue;
      }
      const auto& a = m_.vpcs[p.requester];
      const auto& b = m_.vpcs[p.accepter];
      std::vector<std::pair<Cidr, std::size_t>> blocks;  // a's blocks first, then b's
      for (const auto& c : a.cidrs) blocks.emplace_back(c, blocks.size());
      for (const auto& c : b.cidrs) blocks.emplace_back(c, blocks.size());
      forEachOverlap(std::move(blocks), [&](std::size_t j, std::size_t i) {
        if (j >= a.cidrs.size() || i < a.cidrs.size()) return;  // within one VPC: reported there
        d_.error(p.origin.at(),
                 fmt::format("{}: VPC '{}' block {} overlaps VPC '{}' block {}; peered VPCs must not overlap", what,
                             a.name, a.cidrs[j].toString(), b.name, b.cidrs[i - a.cidrs.size()].toString()));
      });
      if (a.ipv6Cidr && b.ipv6Cidr && a.ipv6Cidr->overlaps(*b.ipv6Cidr))
        d_.error(p.origin.at(), fmt::format("{}: the IPv6 blocks of '{}' and '{}' overlap", what, a.name, b.name));
      if (!p.active) continue;
      auto key = std::minmax(p.requester, p.accepter);
      if (!pairs.insert({key.first, key.second}).second)
        d_.error(p.origin.at(),
                 fmt::format("{}: VPCs '{}' and '{}' already have an active peering", what, a.name, b.name));
      for (auto v : {p.requester, p.accepter})
        if (++perVpc[v] == m_.limits.peeringsPerVpc + 1)
          d_.error(p.origin.at(),
                   fmt::format("VPC '{}' has more than {} active peerings", m_.vpcs[v].name, m_.limits.peeringsPerVpc),
                   "raise `limits: peerings_per_vpc` (AWS maximum 125)");
    }
    activePairs_ = std::move(pairs);
  }

  // ----------------------------------------------------- prefix lists
  void checkPrefixLists() {
    checkUniqueNamesSimple(m_.prefixLists, "prefix list");
    for (auto& pl : m_.prefixLists) {
      if (pl.entries.empty()) {
        d_.error(pl.origin.of("entries"), fmt::format("prefix list '{}' has no entries", pl.name));
        continue;
      }
      pl.family = pl.entries.front().family();
      for (const auto& e : pl.entries) checkPeerCidr(e, pl.origin.of("entries"));
      for (const auto& e : pl.entries)
        if (e.family() != pl.family)
          d_.error(pl.origin.of("entries"),
                   fmt::format("prefix list '{}' mixes IPv4 and IPv6 entries ({})", pl.name, e.toString()),
                   "a prefix list holds one address family; make two lists");
      if (pl.maxEntries == 0) pl.maxEntries = static_cast<int>(pl.entries.size());
      if (static_cast<int>(pl.entries.size()) > pl.maxEntries)
        d_.error(pl.origin.of("entries"), fmt::format("prefix list '{}' has {} entries, above its max_entries of {}",
                                                      pl.name, pl.entries.size(), pl.maxEntries));
      if (pl.maxEntries > m_.limits.prefixListEntries)
        d_.error(pl.origin.of("max_entries"), fmt::format("prefix list '{}' max_entries {} exceeds the quota of {}",
                                                          pl.name, pl.maxEntries, m_.limits.prefixListEntries));
    }
  }

  // ------------------------------------------------- rule field checks
  // Protocol / ports / ICMP consistency shared by NACL and SG rules. `icmpFamilyStrict`:
  // SG rules reject icmp with IPv6 peers and icmpv6 with IPv4 peers; NACLs follow AWS
  // in reading protocol 58 with an IPv4 CIDR as "all ICMP".
  void checkRuleFields(const Protocol& proto, net::IcmpMatch& icmp, const Origin& o, std::optional<Family> family,
                       bool isNacl) {
    // AWS's API rejects a TCP or UDP rule without a port range; so does vpcfw
    // rather than guess that "all ports" was meant.
    if (proto.hasPorts() && !o.has("ports"))
      d_.error(o.of("protocol"), fmt::format("a {} rule needs a port range, as in AWS", proto.toString()),
               "write `ports: 0-65535` for every port");
    if (!proto.hasPorts() && o.has("ports"))
      d_.warning(o.of("ports"),
                 fmt::format("ports are ignored for protocol {}: it matches all ports", proto.toString()));
    bool icmpGiven = o.has("icmp_type") || o.has("icmp_code");
    if (!proto.isIcmpAny() && icmpGiven)
      d_.warning(o.of(o.has("icmp_type") ? FieldName("icmp_type") : FieldName("icmp_code")),
                 fmt::format("icmp_type/icmp_code are ignored for protocol {}", proto.toString()));
    if (proto.isIcmpAny()) {
      if (icmp.type < -1 || icmp.type > 255)
        d_.error(o.of("icmp_type"), fmt::format("ICMP type {} is outside -1..255", icmp.type));
      if (icmp.code < -1 || icmp.code > 255)
        d_.error(o.of("icmp_code"), fmt::format("ICMP code {} is outside -1..255", icmp.code));
      if (icmp.type == -1 && icmp.code != -1)
        d_.error(o.of("icmp_code"), "an ICMP code needs an ICMP type", "set icmp_type, or make icmp_code -1");
    }
    if (!family) return;
    if (proto.number() == Protocol::kIcmp && *family == Family::kIpv6)
      d_.error(o.of("protocol"), "protocol icmp (1) does not match IPv6 traffic", "use icmpv6 (58) with an IPv6 CIDR");
    if (proto.number() == Protocol::kIcmpv6 && *family == Family::kIpv4) {
      if (isNacl) {
        if (icmpGiven)
          d_.warning(o.of("protocol"),
                     "protocol 58 (icmpv6) with an IPv4 CIDR means all ICMP; icmp_type and icmp_code are ignored");
        icmp = {};
      } else {
        d_.error(o.of("protocol"), "protocol icmpv6 (58) does not match IPv4 traffic",
                 "use icmp (1) with an IPv4 CIDR");
      }
    }
  }

  // A peer no packet through an ENI can have: accepted (AWS accepts it), with
  // a warning. Link-local stays quiet: 169.254.169.254 is a real peer.
  void checkPeerCidr(const Cidr& c, const SourceLocation& at) {
    const auto* s = specialRangeOf(c);
    if (!s || s->what == "link-local") return;
    d_.warning(at, fmt::format(
                       "{} is in the {} range: no packet through an ENI carries such an address, so this never matches",
                       c.toString(), s->what));
  }

  // ------------------------------------------------------------- NACLs
  static NaclRule allowAll(int number, Family f) {
    NaclRule r;
    r.number = number;
    r.protocol = Protocol::all();
    r.cidr = Cidr::any(f);
    r.action = Action::kAllow;
    return r;
  }
  static NaclRule implicitDeny(Family f) {
    NaclRule r;
    r.number = f == Family::kIpv4 ? 32767 : 32768;
    r.protocol = Protocol::all();
    r.cidr = Cidr::any(f);
    r.action = Action::kDeny;
    return r;
  }

  void checkNaclRules(NetworkAcl& n, Direction dir, std::vector<NaclRule>& rules) {
    std::map<int, const NaclRule*> numbers;
    int count4 = 0, count6 = 0;
    for (auto& r : rules) {
      if (r.number < 1 || r.number > 32766)
        d_.error(r.origin.of("rule"), fmt::format("NACL rule number {} is outside 1..32766", r.number));
      auto [pos, fresh] = numbers.emplace(r.number, &r);
      if (!fresh)
        d_.error(r.origin.of("rule"),
                 fmt::format("NACL '{}' already has {} rule number {}", n.name, directionName(dir), r.number),
                 fmt::format("the first one is at line {}; rule numbers are unique per direction",
                             pos->second->origin.of("rule").line));
      checkRuleFields(r.protocol, r.icmp, r.origin, r.cidr.family(), true);
      checkPeerCidr(r.cidr, r.origin.of("cidr"));
      (r.cidr.family() == Family::kIpv4 ? count4 : count6)++;
    }
    const int quota = m_.limits.naclRulesPerDirection;
    for (auto [count, fam] : {std::pair{count4, Family::kIpv4}, std::pair{count6, Family::kIpv6}}) {
      if (count + 1 > quota)
        d_.error(n.origin.of(dir == Direction::kIngress ? FieldName("ingress") : FieldName("egress")),
                 fmt::format("NACL '{}' has {} {} {} rules; with the '*' rule that is above the quota of {}", n.name,
                             count, net::familyName(fam), directionName(dir), quota),
                 "raise `limits: nacl_rules_per_direction` (AWS maximum 40)");
    }
    std::stable_sort(rules.begin(), rules.end(),
                     [](const NaclRule& a, const NaclRule& b) { return a.number < b.number; });
  }

  void checkNacls() {
    std::map<std::size_t, int> perVpc;
    std::map<std::pair<std::size_t, std::string>, const Origin*> seen;
    for (std::size_t i = 0; i < m_.nacls.size(); ++i) {
      auto& n = m_.nacls[i];
      n.vpc = resolveVpc(n.vpcName, n.origin, fmt::format("network ACL '{}'", n.name));
      if (n.vpc == kNone) continue;
      auto [pos, fresh] = seen.emplace(std::pair{n.vpc, n.name}, &n.origin);
      if (!fresh)
        d_.error(n.origin.of("name"), fmt::format("duplicate network ACL name '{}' in VPC '{}'", n.name, n.vpcName),
                 fmt::format("first declared at line {}", pos->second->of("name").line));
      auto& v = m_.vpcs[n.vpc];
      if (n.name == "default") n.isDefault = true;
      if (n.isDefault) {
        if (v.defaultNacl != kNone)
          d_.error(n.origin.of("default"),
                   fmt::format("VPC '{}' already has default NACL '{}'", v.name, m_.nacls[v.defaultNacl].name));
        else
          v.defaultNacl = i;
      }
      ++perVpc[n.vpc];
      checkNaclRules(n, Direction::kIngress, n.ingress);
      checkNaclRules(n, Direction::kEgress, n.egress);
    }
    for (auto [vpc, declared] : perVpc) {
      const int total = declared + (m_.vpcs[vpc].defaultNacl == kNone ? 1 : 0);
      if (total > m_.limits.naclsPerVpc)
        d_.error(m_.vpcs[vpc].origin.at(),
                 fmt::format("VPC '{}' has {} network ACLs (the default one included), above the quota of {}",
                             m_.vpcs[vpc].name, total, m_.limits.naclsPerVpc));
    }
    // AWS defaults: every VPC gets a default NACL that allows everything.
    for (std::size_t vi = 0; vi < m_.vpcs.size(); ++vi) {
      auto& v = m_.vpcs[vi];
      if (v.defaultNacl != kNone) continue;
      NetworkAcl n;
      n.name = "default";
      n.vpcName = v.name;
      n.vpc = vi;
      n.isDefault = true;
      n.generated = true;
      n.origin.placeAs(v.origin);
      for (auto* list : {&n.ingress, &n.egress}) {
        list->push_back(allowAll(100, Family::kIpv4));
        if (v.ipv6Cidr) list->push_back(allowAll(101, Family::kIpv6));
      }
      v.defaultNacl = m_.nacls.size();
      m_.nacls.push_back(std::move(n));
    }
    // Every NACL ends with the '*' deny rules, which cannot be removed.
    for (auto& n : m_.nacls) {
      if (n.vpc == kNone) continue;
      for (auto* list : {&n.ingress, &n.egress}) {
        list->push_back(implicitDeny(Family::kIpv4));
        if (m_.vpcs[n.vpc].ipv6Cidr) list->push_back(implicitDeny(Family::kIpv6));
      }
    }
  }

  // --------------------------------------------------- security groups
  static SgRule allowAllTo(Family f) {
    SgRule r;
    r.protocol = Protocol::all();
    r.peer = Cidr::any(f);
    return r;
  }

  void checkGroupsDeclared() {
    std::map<std::size_t, int> perVpc;
    std::map<std::pair<std::size_t, std::string>, const Origin*> seen;
    for (std::size_t i = 0; i < m_.groups.size(); ++i) {
      auto& g = m_.groups[i];
      g.vpc = resolveVpc(g.vpcName, g.origin, fmt::format("security group '{}'", g.name));
      if (g.name.find('/') != std::string::npos)
        d_.error(g.origin.of("name"), fmt::format("security group name '{}' must not contain '/'", g.name),
                 "'/' separates a VPC name from a group name in references");
      if (g.description.size() > kMaxDescription)
        d_.error(g.origin.of("description"),
                 fmt::format("description is {} characters; AWS allows 255", g.description.size()));
      else if (!descriptionCharsOk(g.description))
        d_.error(g.origin.of("description"), "group description has characters AWS does not allow",
                 "allowed: a-z A-Z 0-9 spaces and ._-:/()#,@[]+=&;{}!$*");
      if (g.vpc == kNone) continue;
      auto [pos, fresh] = seen.emplace(std::pair{g.vpc, g.name}, &g.origin);
      if (!fresh)
        d_.error(g.origin.of("name"), fmt::format("duplicate security group name '{}' in VPC '{}'", g.name, g.vpcName),
                 fmt::format("first declared at line {}", pos->second->of("name").line));
      ++perVpc[g.vpc];
      auto& v = m_.vpcs[g.vpc];
      if (g.name == "default" && v.defaultGroup == kNone) {
        g.isDefault = true;
        v.defaultGroup = i;
      }
    }
    for (auto [vpc, count] : perVpc)
      if (count > m_.limits.groupsPerVpc)
        d_.error(m_.vpcs[vpc].origin.at(), fmt::format("VPC '{}' has {} security groups, above the quota of {}",
                                                       m_.vpcs[vpc].name, count, m_.limits.groupsPerVpc));
    // AWS defaults: every VPC has a "default" group (all in from itself, all out);
    // a group that omits egress gets the allow-all egress a new group has.
    for (std::size_t vi = 0; vi < m_.vpcs.size(); ++vi) {
      auto& v = m_.vpcs[vi];
      if (v.defaultGroup != kNone) continue;
      SecurityGroup g;
      g.name = "default";
      g.vpcName = v.name;
      g.vpc = vi;
      g.description = "default VPC security group";
      g.isDefault = true;
      g.generated = true;
      g.egressDefaulted = true;
      g.origin.placeAs(v.origin);
      v.defaultGroup = m_.groups.size();
      m_.groups.push_back(std::move(g));
    }
  }

  // The rules AWS adds to a group itself: the default group's "all from
  // itself" (unless its ingress is written), and a new group's allow-all egress
  // when it declares none (IPv6 too in a VPC with an IPv6 block).
  struct Defaults {
    bool self = false;
    int egress = 0;  // 0, 1 (IPv4) or 2 (IPv4 and IPv6)
    bool operator==(const Defaults&) const = default;
  };
  Defaults defaultsOf(const SecurityGroup& g) const {
    return {g.isDefault && (g.generated || !g.origin.has("ingress")),
            g.egressDefaulted ? (m_.vpcs[g.vpc].ipv6Cidr ? 2 : 1) : 0};
  }
  static void addDefaults(SecurityGroup& g, Defaults d) {
    if (d.self) {
      SgRule self;
      self.protocol = Protocol::all();
      self.peer = GroupRef{"default", kNone};
      g.ingress.push_back(self);
    }
    for (int k = 0; k < d.egress; ++k) g.egress.push_back(allowAllTo(k == 0 ? Family::kIpv4 : Family::kIpv6));
    for (auto* list : {&g.ingress, &g.egress})
      for (std::size_t k = 0; k < list->size(); ++k)
        if ((*list)[k].index != static_cast<int>(k + 1)) list->edit()[k].index = static_cast<int>(k + 1);
  }

  // What makes two rules the same to AWS (InvalidPermission.Duplicate).
  using RuleKey = std::tuple<Protocol, net::PortRange, net::IcmpMatch, std::size_t, Cidr, std::size_t>;
  static RuleKey ruleKey(const SgRule& r) {
    Cidr cidr;
    std::size_t target = kNone;
    if (auto* c = std::get_if<Cidr>(&r.peer))
      cidr = *c;
    else if (auto* g = std::get_if<GroupRef>(&r.peer))
      target = g->group;
    else
      target = std::get<PrefixListRef>(r.peer).prefixList;
    return {r.protocol, r.ports, r.icmp, r.peer.index(), cidr, target};
  }

  static bool descriptionCharsOk(const std::string& s) {
    // AWS: a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*
    static const std::string kExtra = " ._-:/()#,@[]+=&;{}!$*";
    return std::all_of(s.begin(), s.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             kExtra.find(c) != std::string::npos;
    });
  }

  void checkGroupRules() {
    GroupRuleMemo next;
    for (std::size_t gi = 0; gi < m_.groups.size(); ++gi) {
      auto& g = m_.groups[gi];
      if (g.vpc == kNone) continue;
      const Defaults defaults = defaultsOf(g);
      const std::uint64_t stamp = memo_ && gi < stamps_->size() ? (*stamps_)[gi] : 0;
      if (stamp != 0) {
        auto it = memo_->outcomes.find(stamp);
        if (it != memo_->outcomes.end() && reuse(g, defaults, it->second)) {
          for (const auto& w : it->second.warnings) d_.warning(w.where, w.message, w.hint);
          // The rules as checked then: defaults added, references resolved
          // (to what they resolve to now), shared rather than copied.
          g.ingress = it->second.ingress;
          g.egress = it->second.egress;
          next.outcomes.insert(memo_->outcomes.extract(it));
          continue;
        }
      }
      addDefaults(g, defaults);
      const std::size_t shown = d_.all().size(), errors = d_.errorCount(), dropped = d_.dropped();
      GroupRuleMemo::Outcome outcome;
      checkRules(g, outcome.references);
      // Kept only when complete: no error, no warning lost to the cap.
      if (stamp != 0 && d_.errorCount() == errors && d_.dropped() == dropped) {
        outcome.vpc = g.vpc;
        outcome.selfRule = defaults.self;
        outcome.egressDefaults = defaults.egress;
        outcome.ingress = g.ingress;
        outcome.egress = g.egress;
        outcome.quota = m_.limits.sgRulesPerDirection;
        outcome.warnings.assign(d_.all().begin() + static_cast<std::ptrdiff_t>(shown), d_.all().end());
        next.outcomes.emplace(stamp, std::move(outcome));
      }
    }
    if (memo_) *memo_ = std::move(next);
  }

  // What a reference resolves to now, as an outcome records it.
  GroupRuleMemo::Reference resolved(const SecurityGroup& owner, const std::string& name, bool prefixList) {
    GroupRuleMemo::Reference r{name, prefixList};
    if (prefixList) {
      r.index = prefixListIndex_.find(name);
      if (r.index != kNone) {
        r.family = m_.prefixLists[r.index].family;
        r.maxEntries = m_.prefixLists[r.index].maxEntries;
      }
    } else {
      r.index = findGroup(name, owner.vpc);
      if (r.index != kNone) {
        r.vpc = m_.groups[r.index].vpc;
        r.peered = r.vpc != owner.vpc && activePairs_.contains(std::minmax(owner.vpc, r.vpc));
      }
    }
    return r;
  }

  // The group's rules are checked as before when everything they depend on is.
  bool reuse(const SecurityGroup& g, Defaults defaults, const GroupRuleMemo::Outcome& o) {
    if (o.vpc != g.vpc || o.selfRule != defaults.self || o.egressDefaults != defaults.egress ||
        o.quota != m_.limits.sgRulesPerDirection)
      return false;
    for (const auto& ref : o.references) {
      const auto now = resolved(g, ref.name, ref.prefixList);
      if (now.index != ref.index || now.vpc != ref.vpc || now.peered != ref.peered || now.family != ref.family ||
          now.maxEntries != ref.maxEntries)
        return false;
    }
    return true;
  }

  // Checks one group's rules; `references` gets each name they refer to, once.
  void checkRules(SecurityGroup& g, std::vector<GroupRuleMemo::Reference>& references) {
    auto note = [&](const std::string& name, bool prefixList) {
      for (const auto& ref : references)
        if (ref.prefixList == prefixList && ref.name == name) return;
      references.push_back(resolved(g, name, prefixList));
    };
    for (auto dir : {Direction::kIngress, Direction::kEgress}) {
      auto& shared = dir == Direction::kIngress ? g.ingress : g.egress;
      if (shared.empty()) continue;
      auto& rules = shared.edit();       // references are resolved in place
      long long count4 = 0, count6 = 0;  // a prefix list counts as its max entries (up to 10^6 each)
      std::map<RuleKey, int> seen;
      for (std::size_t k = 0; k < rules.size(); ++k) {
        auto& r = rules[k];
        std::optional<Family> fam;
        if (auto* c = std::get_if<Cidr>(&r.peer)) {
          fam = c->family();
          checkPeerCidr(*c, r.origin.of("cidr"));
          (*fam == Family::kIpv4 ? count4 : count6)++;
        } else if (auto* ref = std::get_if<GroupRef>(&r.peer)) {
          resolveGroupRef(g, *ref, r.origin);
          note(ref->name, false);
          ++count4;  // a group reference counts as one rule
        } else {
          auto& pl = std::get<PrefixListRef>(r.peer);
          pl.prefixList = prefixListIndex_.find(pl.name);
          note(pl.name, true);
          if (pl.prefixList == kNone) {
            d_.error(r.origin.of("prefix_list"), fmt::format("unknown prefix list {}", quoteForMessage(pl.name)),
                     didYouMean(pl.name, m_.prefixLists));
          } else {
            const auto& list = m_.prefixLists[pl.prefixList];
            fam = list.family;
            // AWS counts a prefix list reference as its max entries.
            (list.family == Family::kIpv4 ? count4 : count6) += list.maxEntries;
          }
        }
        checkRuleFields(r.protocol, r.icmp, r.origin, fam, false);
        if (r.description.size() > kMaxDescription)
          d_.error(r.origin.of("description"),
                   fmt::format("rule description is {} characters; AWS allows 255", r.description.size()));
        else if (!descriptionCharsOk(r.description))
          d_.error(r.origin.of("description"), "rule description has characters AWS does not allow",
                   "allowed: a-z A-Z 0-9 spaces and ._-:/()#,@[]+=&;{}!$*");
        if (auto [first, fresh] = seen.emplace(ruleKey(r), r.index); !fresh)
          d_.error(r.origin.at(),
                   fmt::format("security group '{}' {} rule {} duplicates rule {}", g.name, directionName(dir), r.index,
                               first->second),
                   "AWS rejects duplicate rules (InvalidPermission.Duplicate)");
      }
      const int quota = m_.limits.sgRulesPerDirection;
      for (auto [count, fam] : {std::pair{count4, Family::kIpv4}, std::pair{count6, Family::kIpv6}})
        if (count > quota)
          d_.error(g.origin.of(dir == Direction::kIngress ? FieldName("ingress") : FieldName("egress")),
                   fmt::format("security group '{}' has {} {} {} rules, above the quota of {}", g.name, count,
                               net::familyName(fam), directionName(dir), quota),
                   "raise `limits: sg_rules_per_direction`");
    }
  }

  void resolveGroupRef(const SecurityGroup& owner, GroupRef& ref, const Origin& o) {
    ref.group = findGroup(ref.name, owner.vpc);
    if (ref.group == kNone) {
      const std::string hint = didYouMean(ref.name, m_.groups, owner.vpc);
      d_.error(o.of("group"), fmt::format("unknown security group {}", quoteForMessage(ref.name)),
               hint.empty() ? "a group in another VPC is named as vpc-name/group-name" : hint);
      return;
    }
    const auto& target = m_.groups[ref.group];
    if (target.vpc != owner.vpc && !activePairs_.contains(std::minmax(owner.vpc, target.vpc)))
      d_.error(o.of("group"),
               fmt::format("security group '{}' is in VPC '{}', which has no active peering with VPC '{}'", ref.name,
                           target.vpcName, owner.vpcName),
               "a rule may reference groups of its own VPC or of a VPC peered with it");
  }

  // ------------------------------------------------------ route tables
  void checkRouteTables() {
    std::map<std::pair<std::size_t, std::string>, const Origin*> seen;
    for (std::size_t i = 0; i < m_.routeTables.size(); ++i) {
      auto& t = m_.routeTables[i];
      t.vpc = resolveVpc(t.vpcName, t.origin, fmt::format("route table '{}'", t.name));
      if (t.vpc == kNone) continue;
      if (!seen.emplace(std::pair{t.vpc, t.name}, &t.origin).second)
        d_.error(t.origin.of("name"), fmt::format("duplicate route table name '{}' in VPC '{}'", t.name, t.vpcName));
      auto& v = m_.vpcs[t.vpc];
      if (t.isMain) {
        if (v.mainRouteTable != kNone)
          d_.error(t.origin.of("main"), fmt::format("VPC '{}' already has main route table '{}'", v.name,
                                                    m_.routeTables[v.mainRouteTable].name));
        else
          v.mainRouteTable = i;
      }
      if (static_cast<int>(t.routes.size()) > m_.limits.routesPerTable)
        d_.error(t.origin.of("routes"), fmt::format("route table '{}' has {} routes, above the quota of {}", t.name,
                                                    t.routes.size(), m_.limits.routesPerTable));
      std::set<Cidr> dests;
      for (auto& r : t.routes) {
        if (!dests.insert(r.destination).second)
          d_.error(r.origin.of("destination"),
                   fmt::format("route table '{}' has two routes for {}", t.name, r.destination.toString()));
        if (const auto* special = specialRangeOf(r.destination))
          d_.error(r.origin.of("destination"),
                   fmt::format("route destination {} is in the {} range {}; AWS refuses routes to it",
                               r.destination.toString(), special->what, special->cidr.toString()));
        if (r.destination.family() == net::Family::kIpv6 && !v.ipv6Cidr)
          d_.warning(r.origin.of("destination"),
                     fmt::format("IPv6 route {} in a VPC without an IPv6 block", r.destination.toString()));
        for (const auto& b : v.cidrs)
          if (b.overlaps(r.destination) && r.destination.prefix() >= b.prefix())
            d_.error(r.origin.of("destination"),
                     fmt::format("route {} lies inside VPC block {}, which the local route covers",
                                 r.destination.toString(), b.toString()));
        if (r.target == Route::Target::kInternetGateway) {
          const std::size_t gi = gatewayIndex_.find(r.targetName);
          if (gi == kNone)
            d_.error(r.origin.of("internet_gateway"),
                     fmt::format("unknown internet gateway {}", quoteForMessage(r.targetName)),
                     didYouMean(r.targetName, m_.internetGateways));
          else if (m_.internetGateways[gi].vpc != t.vpc)
            d_.error(r.origin.of("internet_gateway"),
                     fmt::format("internet gateway '{}' is attached to VPC '{}', not '{}'", r.targetName,
                                 m_.internetGateways[gi].vpcName, t.vpcName));
          r.targetIndex = gi;
        } else if (r.target == Route::Target::kPeering) {
          const std::size_t pi = peeringIndex_.find(r.targetName);
          if (pi == kNone) {
            d_.error(r.origin.of("peering"), fmt::format("unknown peering {}", quoteForMessage(r.targetName)),
                     didYouMean(r.targetName, m_.peerings));
          } else if (m_.peerings[pi].requester != t.vpc && m_.peerings[pi].accepter != t.vpc) {
            d_.error(r.origin.of("peering"),
                     fmt::format("peering '{}' does not involve VPC '{}'", r.targetName, t.vpcName),
                     "peering is not transitive: a route can only use a peering of its own VPC");
          } else if (!m_.peerings[pi].active) {
            d_.warning(r.origin.of("peering"),
                       fmt::format("peering '{}' is not active: the route is a blackhole", r.targetName));
          }
          r.targetIndex = pi;
        }
      }
    }
    // AWS defaults: a main route table per VPC; local routes for every block.
    for (std::size_t vi = 0; vi < m_.vpcs.size(); ++vi) {
      auto& v = m_.vpcs[vi];
      if (v.mainRouteTable != kNone) continue;
      RouteTable t;
      t.name = "main";
      t.vpcName = v.name;
      t.vpc = vi;
      t.isMain = true;
      t.generated = true;
      t.origin.placeAs(v.origin);
      v.mainRouteTable = m_.routeTables.size();
      m_.routeTables.push_back(std::move(t));
    }
    for (auto& t : m_.routeTables) {
      if (t.vpc == kNone) continue;
      const auto& v = m_.vpcs[t.vpc];
      std::vector<Route> local;
      for (const auto& b : v.cidrs) local.push_back(Route{b, Route::Target::kLocal, {}, kNone, {}});
      if (v.ipv6Cidr) local.push_back(Route{*v.ipv6Cidr, Route::Target::kLocal, {}, kNone, {}});
      t.routes.insert(t.routes.begin(), local.begin(), local.end());
    }
  }

  // ------------------------------------------------------------ subnets
  void checkSubnets() {
    checkUniqueNamesSimple(m_.subnets, "subnet");
    std::map<std::size_t, int> perVpc;
    for (std::size_t i = 0; i < m_.subnets.size(); ++i) {
      auto& s = m_.subnets[i];
      s.vpc = resolveVpc(s.vpcName, s.origin, fmt::format("subnet '{}'", s.name));
      if (!s.availabilityZone.empty() && !names::isValidObjectName(s.availabilityZone))
        d_.error(s.origin.of("availability_zone"),
                 fmt::format("{} is not a valid availability zone name", quoteForMessage(s.availabilityZone)),
                 "use 1..64 characters from a-z A-Z 0-9 - _ . (e.g. us-east-1a)");
      if (s.vpc == kNone) continue;
      const auto& v = m_.vpcs[s.vpc];
      if (++perVpc[s.vpc] == m_.limits.subnetsPerVpc + 1)
        d_.error(s.origin.at(), fmt::format("VPC '{}' has more than {} subnets", v.name, m_.limits.subnetsPerVpc));
      if (!s.cidr.network().isV4()) {
        d_.error(s.origin.of("cidr"), fmt::format("subnet cidr {} is not IPv4", s.cidr.toString()),
                 "put the IPv6 /64 in `ipv6_cidr`");
      } else {
        checkBlockSize(s.cidr, 16, 28, s.origin.of("cidr"), "subnet CIDR block");
        bool inside = std::any_of(v.cidrs.begin(), v.cidrs.end(), [&](const Cidr& b) { return b.contains(s.cidr); });
        if (!inside)
          d_.error(s.origin.of("cidr"), fmt::format("subnet '{}' block {} is not inside any block of VPC '{}'", s.name,
                                                    s.cidr.toString(), v.name));
      }
      if (s.ipv6Cidr) {
        if (!v.ipv6Cidr)
          d_.error(s.origin.of("ipv6_cidr"),
                   fmt::format("subnet '{}' has an IPv6 block but VPC '{}' has none", s.name, v.name));
        else if (s.ipv6Cidr->prefix() != 64)
          d_.error(s.origin.of("ipv6_cidr"), fmt::format("subnet IPv6 block {} must be a /64", s.ipv6Cidr->toString()));
        else if (!v.ipv6Cidr->contains(*s.ipv6Cidr))
          d_.error(s.origin.of("ipv6_cidr"), fmt::format("subnet IPv6 block {} is not inside VPC block {}",
                                                         s.ipv6Cidr->toString(), v.ipv6Cidr->toString()));
      }
      if (s.routeTableName.empty()) {
        s.routeTable = v.mainRouteTable;
      } else {
        s.routeTable = routeTableIndex_.find({s.vpc, s.routeTableName});
        if (s.routeTable == kNone)
          d_.error(s.origin.of("route_table"),
                   fmt::format("subnet '{}' refers to route table '{}', which VPC '{}' does not have", s.name,
                               s.routeTableName, v.name),
                   didYouMean(s.routeTableName, m_.routeTables, s.vpc));
      }
      if (s.naclName.empty()) {
        s.nacl = v.defaultNacl;
      } else {
        s.nacl = naclIndex_.find({s.vpc, s.naclName});
        if (s.nacl == kNone)
          d_.error(s.origin.of("network_acl"),
                   fmt::format("subnet '{}' refers to network ACL '{}', which VPC '{}' does not have", s.name,
                               s.naclName, v.name),
                   didYouMean(s.naclName, m_.nacls, s.vpc));
      }
    }
    // Overlaps within each VPC, each subnet reported once, against the
    // earlier-declared one of the pair.
    std::map<std::size_t, std::vector<std::pair<Cidr, std::size_t>>> v4, v6;
    for (std::size_t i = 0; i < m_.subnets.size(); ++i) {
      const auto& s = m_.subnets[i];
      if (s.vpc == kNone) continue;
      if (s.cidr.network().isV4()) v4[s.vpc].emplace_back(s.cidr, i);
      if (s.ipv6Cidr) v6[s.vpc].emplace_back(*s.ipv6Cidr, i);
    }
    for (auto& [vpc, blocks] : v4)
      forEachOverlap(std::move(blocks), [&](std::size_t j, std::size_t i) {
        const auto &s = m_.subnets[i], &o = m_.subnets[j];
        d_.error(s.origin.of("cidr"), fmt::format("subnet '{}' block {} overlaps subnet '{}' block {}", s.name,
                                                  s.cidr.toString(), o.name, o.cidr.toString()));
      });
    for (auto& [vpc, blocks] : v6)
      forEachOverlap(std::move(blocks), [&](std::size_t j, std::size_t i) {
        d_.error(m_.subnets[i].origin.of("ipv6_cidr"),
                 fmt::format("subnet '{}' IPv6 block overlaps subnet '{}'", m_.subnets[i].name, m_.subnets[j].name));
      });
  }

  // ---------------------------------------------------------- instances
  // AWS reserves the first four addresses and the last one of every subnet.
  bool reserved(const Cidr& block, const IpAddress& a) const {
    for (int k = 0; k < 4; ++k)
      if (block.network().offset(k) == a) return true;
    return block.last() == a;
  }

  void checkPrivateAddress(const Instance& inst, const Subnet& s, const IpAddress& a, const SourceLocation& at,
                           std::map<std::pair<std::size_t, IpAddress>, std::string>& used) {
    const Cidr* block = a.isV4() ? &s.cidr : (s.ipv6Cidr ? &*s.ipv6Cidr : nullptr);
    if (!block) {
      d_.error(at, fmt::format("instance '{}' has IPv6 address {} but subnet '{}' has no IPv6 block", inst.name,
                               a.toString(), s.name));
      return;
    }
    if (!block->contains(a)) {
      d_.error(at, fmt::format("address {} of instance '{}' is not inside subnet '{}' ({})", a.toString(), inst.name,
                               s.name, block->toString()));
      return;
    }
    if (reserved(*block, a))
      d_.error(
          at, fmt::format("address {} is reserved by AWS in subnet '{}'", a.toString(), s.name),
          fmt::format("AWS reserves the first four addresses ({} .. {}) and the last one ({}) of every subnet",
                      block->network().toString(), block->network().offset(3).toString(), block->last().toString()));
    auto [pos, fresh] = used.emplace(std::pair{s.vpc, a}, inst.name);
    if (!fresh)
      d_.error(at, fmt::format("address {} of instance '{}' is already used by instance '{}'", a.toString(), inst.name,
                               pos->second));
  }

  void checkInstances() {
    checkUniqueNamesSimple(m_.instances, "instance");
    std::map<std::pair<std::size_t, IpAddress>, std::string> used;
    std::map<IpAddress, std::string> publicUsed;
    std::map<std::string, std::string> netnsUsed;
    std::map<std::pair<std::string, std::string>, std::string> ifaceUsed;
    HostAddresses hostAddrUsed;
    checkConnectionTracking();
    for (std::size_t i = 0; i < m_.instances.size(); ++i) {
      auto& inst = m_.instances[i];
      inst.subnet = subnetIndex_.find(inst.subnetName);
      if (inst.subnet == kNone) {
        d_.error(inst.origin.of("subnet"),
                 fmt::format("instance '{}' refers to unknown subnet {}", inst.name, quoteForMessage(inst.subnetName)),
                 didYouMean(inst.subnetName, m_.subnets));
        continue;
      }
      const auto& s = m_.subnets[inst.subnet];
      inst.vpc = s.vpc;
      if (inst.vpc == kNone) continue;
      if (!inst.privateIp.isV4())
        d_.error(inst.origin.of("private_ip"), fmt::format("private_ip {} must be IPv4", inst.privateIp.toString()),
                 "IPv6 addresses go in `ipv6_addresses`");
      else
        checkPrivateAddress(inst, s, inst.privateIp, inst.origin.of("private_ip"), used);
      for (std::size_t k = 0; k < inst.secondaryIps.size(); ++k) {
        const auto& at = inst.origin.of(FieldName("secondary_ips").item(k));
        if (!inst.secondaryIps[k].isV4())
          d_.error(at, fmt::format("secondary IP {} must be IPv4", inst.secondaryIps[k].toString()));
        else
          checkPrivateAddress(inst, s, inst.secondaryIps[k], at, used);
      }
      for (std::size_t k = 0; k < inst.ipv6Addresses.size(); ++k) {
        const auto& at = inst.origin.of(FieldName("ipv6_addresses").item(k));
        if (inst.ipv6Addresses[k].isV4())
          d_.error(at, fmt::format("{} in ipv6_addresses is not IPv6", inst.ipv6Addresses[k].toString()));
        else
          checkPrivateAddress(inst, s, inst.ipv6Addresses[k], at, used);
      }
      if (inst.publicIp) {
        const auto& at = inst.origin.of("public_ip");
        if (!inst.publicIp->isV4())
          d_.error(at, fmt::format("public_ip {} must be IPv4", inst.publicIp->toString()));
        else if (const auto* special = specialRangeOf(Cidr::host(*inst.publicIp)))
          d_.error(at,
                   fmt::format("public_ip {} is in the {} range {}; AWS never assigns such an address",
                               inst.publicIp->toString(), special->what, special->cidr.toString()),
                   "use an address of the lab's internet, e.g. 203.0.113.10");
        else if (m_.vpcContaining(*inst.publicIp) != kNone)
          d_.error(at, fmt::format("public_ip {} lies inside VPC '{}'", inst.publicIp->toString(),
                                   m_.vpcs[m_.vpcContaining(*inst.publicIp)].name));
        else if (auto it = std::find_if(privateRanges().begin(), privateRanges().end(),
                                        [&](const SpecialRange& r) { return r.cidr.contains(*inst.publicIp); });
                 it != privateRanges().end())
          d_.error(at,
                   fmt::format("public_ip {} is in the {} range {}; AWS never assigns such an address as a public IP",
                               inst.publicIp->toString(), it->what, it->cidr.toString()),
                   "use an address of the lab's internet, e.g. 203.0.113.10");
        auto [pos, fresh] = publicUsed.emplace(*inst.publicIp, inst.name);
        if (!fresh)
          d_.error(
              at, fmt::format("public_ip {} is already used by instance '{}'", inst.publicIp->toString(), pos->second));
        if (m_.vpcs[inst.vpc].internetGateway == kNone)
          d_.warning(at, fmt::format("instance '{}' has a public IP but VPC '{}' has no internet gateway", inst.name,
                                     m_.vpcs[inst.vpc].name));
      }
      if (inst.groupNames.empty()) {
        inst.groups.push_back(m_.vpcs[inst.vpc].defaultGroup);
      } else {
        if (static_cast<int>(inst.groupNames.size()) > m_.limits.groupsPerEni)
          d_.error(inst.origin.of("security_groups"),
                   fmt::format("instance '{}' has {} security groups, above the quota of {} per ENI", inst.name,
                               inst.groupNames.size(), m_.limits.groupsPerEni),
                   "raise `limits: groups_per_eni` (AWS maximum 16)");
        for (std::size_t k = 0; k < inst.groupNames.size(); ++k) {
          const auto& gname = inst.groupNames[k];
          const auto& at = inst.origin.of(FieldName("security_groups").item(k));
          std::size_t g = findGroup(gname, inst.vpc);
          if (g == kNone) {
            d_.error(
                at, fmt::format("instance '{}' refers to unknown security group {}", inst.name, quoteForMessage(gname)),
                didYouMean(gname, m_.groups, inst.vpc));
            continue;
          }
          if (m_.groups[g].vpc != inst.vpc) {
            d_.error(at, fmt::format("security group '{}' is in VPC '{}', not in instance '{}''s VPC '{}'", gname,
                                     m_.groups[g].vpcName, inst.name, m_.vpcs[inst.vpc].name));
            continue;
          }
          if (std::find(inst.groups.begin(), inst.groups.end(), g) != inst.groups.end()) {
            d_.error(at, fmt::format("instance '{}' lists security group '{}' twice", inst.name, gname));
            continue;
          }
          inst.groups.push_back(g);
        }
      }
      for (auto g : inst.groups) m_.groups[g].members.push_back(i);
      checkPlacement(inst, netnsUsed, ifaceUsed, hostAddrUsed);
    }
  }

  // (host, address) -> (instance, its VPC): one host has one routing table.
  using HostAddresses = std::map<std::pair<std::string, IpAddress>, std::pair<std::string, std::size_t>>;

  // AWS's ranges (ConnectionTrackingSpecification); the lab profile also
  // allows shorter timeouts, so that a test or a student can watch a flow
  // expire. Distinct settings are capped: each pair of them becomes an nft
  // object and a rule in every fabric that holds both (docs/ruleset.md).
  static constexpr std::size_t kMaxTimeoutSettings = 16, kMaxAllowances = 16;
  void checkConnectionTracking() {
    const bool lab = m_.limits.profile == Limits::Profile::kLab;
    std::set<std::array<int, 3>> settings;
    std::set<std::uint32_t> caps;
    for (const auto& inst : m_.instances) {
      if (!inst.connectionTracking) continue;
      const auto& ct = *inst.connectionTracking;
      auto range = [&](const std::optional<int>& v, const char* key, int lo, int hi) {
        if (!v || (*v >= lo && *v <= hi) || (lab && *v >= 1 && *v <= hi)) return;
        d_.error(
            ct.origin.of(model::FieldName::named(key).value()),
            fmt::format("instance '{}' connection_tracking '{}' is {}; AWS allows {}..{}", inst.name, key, *v, lo, hi),
            lab ? fmt::format("the lab profile also allows 1..{}", lo - 1)
                : fmt::format("with limits: {{profile: lab}}, 1..{} is allowed too", lo - 1));
      };
      range(ct.tcpEstablished, "tcp_established_timeout", 60, ConnectionTracking::kDefaultTcpEstablished);
      range(ct.udpStream, "udp_stream_timeout", 60, ConnectionTracking::kDefaultUdpStream);
      range(ct.udp, "udp_timeout", 30, 60);
      if (ct.setsTimeouts() && settings.insert({ct.tcpEstablishedOr(), ct.udpStreamOr(), ct.udpOr()}).second &&
          settings.size() == kMaxTimeoutSettings + 1)
        d_.error(ct.origin.at(),
                 fmt::format("instance '{}' brings the config to {} distinct connection_tracking timeout settings; "
                             "vpcfw allows {}",
                             inst.name, settings.size(), kMaxTimeoutSettings),
                 "give ENIs with similar needs the same timeouts");
      // Each distinct allowance is two rules every new flow of the fabric runs.
      if (ct.maxTracked && caps.insert(*ct.maxTracked).second && caps.size() == kMaxAllowances + 1)
        d_.error(ct.origin.of(model::FieldName::named("max_tracked_connections").value()),
                 fmt::format("instance '{}' brings the config to {} distinct max_tracked_connections values; "
                             "vpcfw allows {}",
                             inst.name, caps.size(), kMaxAllowances),
                 "in AWS the allowance follows the instance type: give ENIs of one type the same value");
    }
  }

  void checkPlacement(Instance& inst, std::map<std::string, std::string>& netnsUsed,
                      std::map<std::pair<std::string, std::string>, std::string>& ifaceUsed,
                      HostAddresses& hostAddrUsed) {
    auto& p = inst.placement;
    if (p.routed && p.kind != Placement::Kind::kHostInterface)
      d_.error(inst.origin.of("routed"),
               fmt::format("instance '{}' sets 'routed' without 'host' and 'interface'", inst.name),
               "routed: true says the ENI is an interface a host routes for; name the host and that interface");
    if (p.kind == Placement::Kind::kHostInterface) {
      if (!names::isValidHostName(p.host))
        d_.error(inst.origin.of("host"), fmt::format("{} is not a valid host name", quoteForMessage(p.host)),
                 "use 1..64 characters from a-z A-Z 0-9 - _ .");
      if (!names::isValidInterfaceName(p.interface))
        d_.error(inst.origin.of("interface"),
                 fmt::format("{} is not a valid interface name", quoteForMessage(p.interface)),
                 "1..15 characters from a-z A-Z 0-9 . _ - (the kernel's IFNAMSIZ)");
      else if (names::isReservedInterface(p.interface))
        d_.error(inst.origin.of("interface"),
                 fmt::format("interface '{}' cannot be an ENI: the host needs it for itself", p.interface));
      auto [pos, fresh] = ifaceUsed.emplace(std::pair{p.host, p.interface}, inst.name);
      if (!fresh)
        d_.error(inst.origin.of("interface"),
                 fmt::format("interface {} of host {} is already instance '{}'", quoteForMessage(p.interface),
                             quoteForMessage(p.host), pos->second));
      // Instances of two VPCs may share addresses, but not on one host: it
      // has one route (routed) or one local address (own) per address, so
      // one of them would get the other's traffic. (Inside a VPC a repeated
      // address is already an error.)
      auto claim = [&](const IpAddress& a, const SourceLocation& at) {
        auto [it, first] = hostAddrUsed.emplace(std::pair{p.host, a}, std::pair{inst.name, inst.vpc});
        if (!first && it->second.second != inst.vpc)
          d_.error(at,
                   fmt::format("address {} of instance '{}' is also instance '{}''s (another VPC) on host {}",
                               a.toString(), inst.name, it->second.first, quoteForMessage(p.host)),
                   "a host has one route and one local address per IP address; put one of them on another host");
      };
      claim(inst.privateIp, inst.origin.of("private_ip"));
      for (std::size_t k = 0; k < inst.secondaryIps.size(); ++k)
        claim(inst.secondaryIps[k], inst.origin.of(FieldName("secondary_ips").item(k)));
      for (std::size_t k = 0; k < inst.ipv6Addresses.size(); ++k)
        claim(inst.ipv6Addresses[k], inst.origin.of(FieldName("ipv6_addresses").item(k)));
      return;
    }
    if (!p.netns.empty()) {
      if (!names::isValidNamespaceName(p.netns))
        d_.error(inst.origin.of("netns"), fmt::format("{} is not a valid namespace name", quoteForMessage(p.netns)),
                 fmt::format("use 1..{} characters from a-z A-Z 0-9 . _ - : @ +, not starting with '.'",
                             names::kNamespaceNameMax));
      else if (names::hasGeneratedPrefix(p.netns))
        d_.error(inst.origin.of("netns"),
                 fmt::format("namespace '{}' starts with '{}' or '{}', which vpcfw keeps for the names it generates",
                             p.netns, names::kRouterPrefix, names::kOtherPrefix),
                 "choose another name, or omit `netns` to get vpcfw:i:<instance>");
      auto [pos, fresh] = netnsUsed.emplace(p.netns, inst.name);
      if (!fresh)
        d_.error(inst.origin.of("netns"),
                 fmt::format("namespace {} is already instance '{}'", quoteForMessage(p.netns), pos->second));
    }
  }

  // The names the kernel will see, after every prefix and shortening: two
  // objects may never meet in one namespace. Interface names are shortened
  // with a 16-bit hash, so distinct config names can collide here.
  void checkKernelNames() {
    // ENIs: one interface per lab instance in its VPC's router.
    std::map<std::pair<std::size_t, std::string>, const Instance*> enis;
    for (const auto& inst : m_.instances) {
      if (inst.vpc == kNone || inst.placement.kind != Placement::Kind::kLabNamespace) continue;
      const std::string ifname = names::eniInterface(inst.name);
      auto [pos, fresh] = enis.emplace(std::pair{inst.vpc, ifname}, &inst);
      if (!fresh)
        d_.error(inst.origin.of("name"),
                 fmt::format("instances '{}' and '{}' would both be interface '{}' in VPC '{}''s router",
                             pos->second->name, inst.name, ifname, m_.vpcs[inst.vpc].name),
                 "names are shortened to fit 15 characters; rename one of them");
    }
    // Peerings: one interface per active peering in each of its two routers.
    std::map<std::pair<std::size_t, std::string>, const Peering*> links;
    for (const auto& pc : m_.peerings) {
      if (!pc.active || pc.requester == kNone || pc.accepter == kNone || pc.requester == pc.accepter) continue;
      const std::string ifname = names::peeringInterface(pc.name);
      for (auto v : {pc.requester, pc.accepter}) {
        auto [pos, fresh] = links.emplace(std::pair{v, ifname}, &pc);
        if (!fresh)
          d_.error(pc.origin.of("name"),
                   fmt::format("peerings '{}' and '{}' would both be interface '{}' in VPC '{}''s router",
                               pos->second->name, pc.name, ifname, m_.vpcs[v].name),
                   "names are shortened to fit 15 characters; rename one of them");
      }
    }
    // Internet gateways: one interface each in the shared internet namespace.
    std::map<std::string, const Vpc*> gateways;
    for (const auto& v : m_.vpcs) {
      if (v.internetGateway == kNone) continue;
      const std::string ifname = names::gatewayInternetInterface(v.name);
      auto [pos, fresh] = gateways.emplace(ifname, &v);
      if (!fresh)
        d_.error(v.origin.of("name"),
                 fmt::format("the internet gateways of VPCs '{}' and '{}' would both be interface '{}' in the internet "
                             "namespace",
                             pos->second->name, v.name, ifname),
                 "names are shortened to fit 15 characters; rename one of the VPCs");
    }
  }

  // ---------------------------------------------------------- flow logs
  void checkFlowLogs() {
    checkUniqueNamesSimple(m_.flowLogs, "flow log");
    auto instanceIndex = byName(m_.instances);
    std::map<std::string, const FlowLog*> streams;
    for (auto& f : m_.flowLogs) {
      const std::string what = fmt::format("flow log '{}'", f.name);
      auto resolve = [&](auto& index, FieldName field, std::string_view kind, const auto& objects) {
        f.resource = index.find(f.resourceName);
        if (f.resource == kNone)
          d_.error(f.origin.of(field),
                   fmt::format("{} refers to unknown {} {}", what, kind, quoteForMessage(f.resourceName)),
                   didYouMean(f.resourceName, objects));
      };
      switch (f.resourceKind) {
        case FlowLog::Resource::kVpc:
          resolve(vpcIndex_, "vpc", "VPC", m_.vpcs);
          break;
        case FlowLog::Resource::kSubnet:
          resolve(subnetIndex_, "subnet", "subnet", m_.subnets);
          break;
        case FlowLog::Resource::kInstance:
          resolve(instanceIndex, "instance", "instance", m_.instances);
          break;
      }
      // AWS offers 60 and 600 s; a lab may aggregate over a few seconds so
      // that a student sees records while the ping still runs.
      const int i = f.maxAggregationInterval;
      const bool lab = m_.limits.profile == Limits::Profile::kLab;
      if (i != 60 && i != 600 && !(lab && i >= 1 && i < 60))
        d_.error(f.origin.of("max_aggregation_interval"),
                 fmt::format("{}: max_aggregation_interval is {}; AWS allows 60 or 600", what, i),
                 lab ? "the lab profile also allows 1..59" : "with limits: {profile: lab}, 1..59 is allowed too");
      // Two flow logs appending to one ENI's stream file would mix formats.
      if (f.destination == FlowLog::Destination::kStreams) {
        auto [pos, fresh] = streams.emplace(f.path, &f);
        if (!fresh)
          d_.error(f.origin.of("destination"),
                   fmt::format("{} writes streams to {}, as flow log '{}' does", what, quoteForMessage(f.path),
                               pos->second->name),
                   "give each flow log its own streams directory");
      }
    }
  }
};

}  // namespace

bool validate(Model& m, Diagnostics& diags) {
  std::size_t before = diags.errorCount();
  Validator(m, diags).run();
  return diags.errorCount() == before;
}

bool validate(Model& m, Diagnostics& diags, const std::vector<std::uint64_t>& stamps, GroupRuleMemo& memo) {
  std::size_t before = diags.errorCount();
  Validator(m, diags, &stamps, &memo).run();
  return diags.errorCount() == before;
}

}  // namespace vpcfw::model
