// The compiler (compiler.h): one FabricCompiler per fabric builds its table
// in a fixed order, shared objects first, then each ENI's own parts.
#include "vpcfw/compile/compiler.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <functional>
#include <map>
#include <set>

#include "fabric.h"
#include "vpcfw/compile/intervals.h"
#include "vpcfw/names/names.h"

namespace vpcfw::compile {
namespace {

using model::Direction;
using model::kNone;
using net::Family;
using net::Protocol;

constexpr std::size_t kMaxComment = 120;  // nft allows 128 bytes

std::string sanitize(std::string_view name) {
  std::string out(name);
  for (auto& c : out)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) c = '_';
  return out;
}

std::string clip(std::string s) {
  if (s.size() > kMaxComment) s = s.substr(0, kMaxComment - 3) + "...";
  return s;
}

// Hands out unique nft identifiers: "nacl_web_acl_in", then "..._2" on a clash.
class Names {
 public:
  std::string take(const std::string& wanted) {
    std::string n = sanitize(wanted);
    for (int i = 2; !used_.insert(n).second; ++i) {
      n = sanitize(wanted) + "_" + std::to_string(i);
      clashed_ = true;
    }
    return n;
  }
  // Some name needed a suffix: names then depend on creation order.
  bool clashed() const { return clashed_; }

 private:
  std::set<std::string> used_;
  bool clashed_ = false;
};

Field addrField(Family f, Direction peerSide) {
  // peerSide ingress: the peer is the source; egress: the destination.
  if (f == Family::kIpv4) return peerSide == Direction::kIngress ? Field::kIpSaddr : Field::kIpDaddr;
  return peerSide == Direction::kIngress ? Field::kIp6Saddr : Field::kIp6Daddr;
}

IntRange anyOr(int v, std::uint32_t max) {
  return v < 0 ? IntRange{0, max} : IntRange{static_cast<std::uint32_t>(v), static_cast<std::uint32_t>(v)};
}

// What a rule's protocol/ports/ICMP fields match, for a peer of family `f`.
L4Match l4Of(const Protocol& proto, const net::PortRange& ports, const net::IcmpMatch& icmp, Family f) {
  L4Match m;
  if (proto.isAll()) return m;
  if (proto.hasPorts()) {
    m.kind = L4Match::Kind::kPorts;
    m.protocol = static_cast<std::uint8_t>(proto.number());
    m.ports = IntRange{ports.from, ports.to};
    return m;
  }
  if (proto.isIcmpAny()) {
    m.kind = L4Match::Kind::kIcmp;
    if (f == Family::kIpv4) {
      // AWS: protocol 58 with an IPv4 CIDR means all ICMP.
      m.protocol = Protocol::kIcmp;
      if (proto.number() == Protocol::kIcmpv6) return m;
    } else {
      m.protocol = Protocol::kIcmpv6;
    }
    m.icmpType = anyOr(icmp.type, 255);
    m.icmpCode = anyOr(icmp.code, 255);
    return m;
  }
  m.kind = L4Match::Kind::kProtocol;
  m.protocol = static_cast<std::uint8_t>(proto.number());
  return m;
}

// The matches of one rule written inline (no set): protocol, ports, ICMP.
void appendL4Matches(std::vector<Match>& out, const L4Match& l4, Family f) {
  auto eq = [&](Field fld, IntRange r) { out.push_back(Match{{fld}, Op::kEq, Value{r}, {}}); };
  switch (l4.kind) {
    case L4Match::Kind::kAll:
      break;
    case L4Match::Kind::kProtocol:
      eq(Field::kL4proto, IntRange{l4.protocol, l4.protocol});
      break;
    case L4Match::Kind::kPorts:
      eq(Field::kL4proto, IntRange{l4.protocol, l4.protocol});
      if (!(l4.ports.lo == 0 && l4.ports.hi == 65535)) eq(Field::kThDport, l4.ports);
      break;
    case L4Match::Kind::kIcmp: {
      eq(Field::kL4proto, IntRange{l4.protocol, l4.protocol});
      const bool v4 = f == Family::kIpv4;
      if (!(l4.icmpType.lo == 0 && l4.icmpType.hi == 255)) eq(v4 ? Field::kIcmpType : Field::kIcmp6Type, l4.icmpType);
      if (!(l4.icmpCode.lo == 0 && l4.icmpCode.hi == 255)) eq(v4 ? Field::kIcmpCode : Field::kIcmp6Code, l4.icmpCode);
      break;
    }
  }
}

Value addressValue(const net::Cidr& c) { return AddressRange{c.network(), c.last()}; }

// Shards by interface name: any stable hash will do.
std::uint32_t fnv1a(std::string_view s) {
  std::uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

class FabricCompiler {
 public:
  FabricCompiler(const model::Model& m, const Placement& p, std::string fabric, const CompileOptions& options,
                 const std::vector<char>* only = nullptr, detail::FabricLayout* layout = nullptr)
      : m_(m), p_(p), fabric_(std::move(fabric)), options_(options), only_(only), layout_(layout) {}

  Expected<Ruleset> run() {
    for (std::size_t i = 0; i < m_.instances.size(); ++i)
      if (p_.byInstance[i] && p_.byInstance[i]->fabric == fabric_) {
        enis_.push_back(i);
        hostMode_ = p_.byInstance[i]->hostMode;
        (p_.byInstance[i]->hostMode && !p_.byInstance[i]->routed ? hasOwn_ : hasRouted_) = true;
      }
    routedHost_ = hostMode_ && hasRouted_;
    flowLogged_ = coveredByFlowLog();
    for (auto i : enis_)
      if (const auto& ct = m_.instances[i].connectionTracking) {
        if (ct->maxTracked) hasAllowance_[styleOf(i)] = true;
        if (ct->setsTimeouts()) hasTimeouts_[styleOf(i)] = true;
      }
    Ruleset r;
    r.fabric = fabric_;
    r.hostMode = hostMode_;
    t_.name = std::string(kTableName);
    names_.take("forward");
    // Sets and maps the base chains use; filled below. A lab router has only
    // routed ENIs, a host its own or (routed host) both: then the own ENIs
    // get sets and maps of their own, named host_*.
    const int first = hasRouted_ ? kRouted : kOwn;
    enisSet_[first] = addSet("enis", {Field::kIifname}, false,
                             routedHost_ ? "the ENIs this host routes for" : "the ENIs of this fabric");
    src4_ =
        addSet("eni_src4", {Field::kIifname, Field::kIpSaddr}, false, "anti-spoofing: each ENI's own IPv4 addresses");
    src6_ =
        addSet("eni_src6", {Field::kIifname, Field::kIp6Saddr}, false, "anti-spoofing: each ENI's own IPv6 addresses");
    naclOut_[first] = addMap("nacl_out", "ENI -> its subnet's NACL, egress");
    naclIn_[first] = addMap("nacl_in", "ENI -> its subnet's NACL, ingress");
    if (routedHost_ && hasOwn_) {
      enisSet_[kOwn] = addSet("host_enis", {Field::kIifname}, false, "the host's own interfaces that are ENIs");
      naclOut_[kOwn] = addMap("host_nacl_out", "the host's own ENI -> its subnet's NACL, egress");
      naclIn_[kOwn] = addMap("host_nacl_in", "the host's own ENI -> its subnet's NACL, ingress");
      // Looked up by the own ENI's address: the source on output (egress),
      // the destination on input (ingress).
      for (auto dir : {Direction::kEgress, Direction::kIngress}) {
        const bool out = dir == Direction::kEgress;
        const int d = dirIndex(dir);
        for (auto fam : {Family::kIpv4, Family::kIpv6}) {
          const int f = famIndex(fam);
          const Field key = addrField(fam, out ? Direction::kIngress : Direction::kEgress);
          const std::string sfx = fmt::format("{}{}", out ? "out" : "in", f == 0 ? 4 : 6);
          const std::string what = fmt::format("the host's own ENI by {} address -> ", f == 0 ? "IPv4" : "IPv6");
          const std::string tail = fmt::format(", {} (with a routed ENI)", out ? "egress" : "ingress");
          byAddrNacl_[d][f] = addMap("host_addr_nacl_" + sfx, what + "its subnet's NACL" + tail, key);
          byAddrSg_[d][f] = addMap("host_addr_sg_" + sfx, what + "its groups" + tail, key);
        }
      }
    }
    sgRefsOut_ = addMap("sg_out_refs", "ENI -> its group-reference rules, egress");
    sgRefsIn_ = addMap("sg_in_refs", "ENI -> its group-reference rules, ingress");
    createDropMaps();
    // Every ENI's CIDR, prefix-list and small-group rules share these sets,
    // keyed by the ENI's interface: a few lookups per new flow whatever the
    // rule count. Beyond kShardEnis ENIs they are split into shards by a hash
    // of the interface name: the kernel clones a concatenated interval set
    // (pipapo) whole in every transaction that changes it, so a one-rule
    // change costs time in proportion to the size of its shard, not of all
    // rules of the fabric.
    while (shards_ * kShardEnis < enis_.size()) shards_ *= 2;
    groupSets_.resize(shards_);
    for (std::size_t k = 0; k < shards_; ++k)
      for (auto dir : {Direction::kEgress, Direction::kIngress})
        for (auto fam : {Family::kIpv4, Family::kIpv6}) createGroupSets(dir, fam, k);
    for (auto dir : {Direction::kEgress, Direction::kIngress})
      for (auto fam : {Family::kIpv4, Family::kIpv6}) {
        const bool out = dir == Direction::kEgress, v4 = fam == Family::kIpv4;
        untracked_[dirIndex(dir)][famIndex(fam)] =
            addSet(std::string(kUntrackedSets[dirIndex(dir)][famIndex(fam)]),
                   {Field::kIifname, v4 ? Field::kIpSaddr : Field::kIp6Saddr, Field::kL4proto, Field::kThDport}, true,
                   // The comment does not depend on whether an allowance reads the
                   // set: a changed comment is a changed set, which only a full
                   // replacement of the table can make.
                   fmt::format(
                       "untracked {}: ENI . address . ports open {} {}, all open {} (read by vpcfw and allowances)",
                       out ? "egress" : "ingress", out ? "to" : "from", v4 ? "0.0.0.0/0" : "::/0", out ? "in" : "out"));
      }

    if (!hostMode_ || routedHost_) {
      // A lab router filters everything it forwards (policy drop: it carries
      // nothing but ENI traffic). A host forwards other traffic too (its
      // containers, VPNs): policy accept, and the chain's first rule lets
      // through what is no ENI's, before anything else may drop it.
      Chain forward;
      forward.name = "forward";
      forward.hook = "forward";
      forward.policy = routedHost_ ? Verdict::accept() : Verdict::drop();
      chains_.push_back(std::move(forward));
    }
    if (hostMode_) {
      // The host's own traffic: policy accept, so that a failed or partial
      // config never cuts a machine off on its other interfaces.
      for (const char* hook : {"input", "output"}) {
        Chain c;
        c.name = names_.take(hook);
        c.hook = hook;
        c.policy = Verdict::accept();
        chains_.push_back(std::move(c));
      }
    }
    if (flowLogged_) createFlowLogChains();
    createDropChains();
    for (int style : {kRouted, kOwn})
      if (hasAllowance_[style] || hasTimeouts_[style]) createConntrackChains(style);
    for (int style : {kRouted, kOwn})
      if (style == kRouted ? hasRouted_ : hasOwn_)
        for (auto dir : {Direction::kEgress, Direction::kIngress}) buildGroupChain(dir, style);

    std::map<std::pair<int, std::size_t>, std::vector<std::size_t>> bySubnet;  // (style, subnet) -> ENIs
    for (auto i : enis_) bySubnet[{styleOf(i), m_.instances[i].subnet}].push_back(i);
    for (auto& [key, members] : bySubnet) compileSubnet(key.second, members, key.first);
    if (layout_) {
      layout_->prefixSets = t_.sets.size();
      layout_->prefixChains = chains_.size();
    }
    for (auto i : enis_) {
      if (!compiles(i)) continue;
      const std::size_t before = chains_.size();
      if (layout_) current_ = &layout_->enis.emplace_back(detail::FabricLayout::Eni{i, 0, {}});
      compileEni(i);
      if (current_) current_->chains = chains_.size() - before;
    }
    if (layout_) layout_->patchable = !names_.clashed() && !(routedHost_ && hasOwn_);
    if (routedHost_)
      buildRoutedHostChains();
    else if (hostMode_)
      buildHostChains();
    else
      buildForward();
    t_.chains = std::move(chains_);
    for (auto& [name, o] : ctTimeouts_) t_.ctTimeouts.push_back(std::move(o));
    // Maps and base sets first, then the rest in creation order (already so).
    r.table = std::move(t_);
    return r;
  }

 private:
  const model::Model& m_;
  const Placement& p_;
  std::string fabric_;
  const CompileOptions& options_;
  const std::vector<char>* only_;  // by instance: the ENIs to compile (nullptr: all)
  bool compiles(std::size_t inst) const { return !only_ || (*only_)[inst]; }
  detail::FabricLayout* layout_;
  detail::FabricLayout::Eni* current_ = nullptr;  // the ENI being compiled, in layout_
  std::vector<std::size_t> enis_;
  bool hostMode_ = false;    // the fabric is a host (not a lab router)
  bool hasOwn_ = false;      // ENIs that are the host's own interfaces: input/output
  bool hasRouted_ = false;   // ENIs whose traffic is forwarded (a lab router's, or a host's routed ones)
  bool routedHost_ = false;  // a host with routed ENIs: forward, input and output
  bool flowLogged_ = false;  // a flow log covers one of the fabric's ENIs
  // By style: some ENI has a tracked-connection allowance / idle timeouts.
  bool hasAllowance_[2] = {false, false}, hasTimeouts_[2] = {false, false};
  std::string conntrackChain_[2];  // by style: the chain new flows jump to (empty: none)
  // How an ENI is filtered: routed (its traffic is forwarded; the ENI is the
  // iif of its egress) or own (the host's interface; the oif of its egress).
  static constexpr int kRouted = 0, kOwn = 1;
  int styleOf(std::size_t inst) const { return hostMode_ && !p_.byInstance[inst]->routed ? kOwn : kRouted; }
  Table t_;
  std::vector<Chain> chains_;
  Names names_;
  std::size_t enisSet_[2] = {0, 0}, naclOut_[2] = {0, 0}, naclIn_[2] = {0, 0};  // by style
  std::size_t src4_ = 0, src6_ = 0, sgRefsOut_ = 0, sgRefsIn_ = 0;
  std::size_t untracked_[2][2] = {};  // [egress, ingress][IPv4, IPv6] -> kUntrackedSets
  // Routed host with own ENIs: [egress/ingress][IPv4/IPv6] -> map from an own
  // ENI's address to its NACL chain / its by-address group chain.
  std::size_t byAddrNacl_[2][2] = {{0, 0}, {0, 0}}, byAddrSg_[2][2] = {{0, 0}, {0, 0}};
  std::map<std::pair<std::size_t, int>, std::string> ownNaclChain_;  // (subnet, direction) -> host NACL chain
  // Per shard: [egress/ingress][IPv4/IPv6][all, proto, ports, icmp] -> set index
  static constexpr std::size_t kShardEnis = 16;
  std::size_t shards_ = 1;
  std::vector<std::array<std::array<std::array<std::size_t, 4>, 2>, 2>> groupSets_;
  std::size_t shardOf(std::size_t inst) const { return shards_ == 1 ? 0 : fnv1a(ifname(inst)) % shards_; }
  std::map<std::size_t, std::pair<std::string, std::string>> memberSets_;  // group -> (v4 set, v6 set)

  const std::string& ifname(std::size_t inst) const { return p_.byInstance[inst]->ifname; }

  // ------------------------------------------------ drop attribution
  // Every drop names one ENI and one stage: a drop rule goes to the stage's
  // chain, whose one map lookup (keyed by the ENI's interface, or on a
  // routed host by the own ENI's address) sends the packet to the ENI's
  // chain drop_<eni>_<stage>, whose counter is that ENI's count. One lookup
  // whatever the number of ENIs; a lookup that finds nothing still drops.
  enum Stage { kSpoof, kInvalid, kNaclOut, kNaclIn, kSgOut, kSgIn, kAllowOut, kAllowIn, kStages };
  static const char* stageName(int s) {
    static constexpr const char* names[kStages] = {"anti-spoofing",    "invalid",          "nacl-egress",
                                                   "nacl-ingress",     "sg-egress",        "sg-ingress",
                                                   "allowance-egress", "allowance-ingress"};
    return names[s];
  }
  static bool isAllowance(int st) { return st == kAllowOut || st == kAllowIn; }
  static int naclStage(Direction d) { return d == Direction::kEgress ? kNaclOut : kNaclIn; }
  static int sgStage(Direction d) { return d == Direction::kEgress ? kSgOut : kSgIn; }
  // [style][stage] -> map index (ENI interface -> its drop chain); anti-spoofing
  // and invalid share one map for both styles. SIZE_MAX: no such map.
  std::size_t dropMap_[2][kStages];
  std::string dropChain_[2][kStages];  // [style][stage] -> the stage's chain
  // Routed host with own ENIs: [egress/ingress][IPv4/IPv6] -> map from an own
  // ENI's address to its NACL drop chain.
  std::size_t addrDropMap_[2][2] = {{0, 0}, {0, 0}};

  bool stageApplies(int style, int stage) const {
    if (!(style == kRouted ? hasRouted_ : hasOwn_)) return false;
    if (isAllowance(stage)) return hasAllowance_[style];
    return stage != kSpoof || style == kRouted;
  }

  void createDropMaps() {
    for (auto& row : dropMap_)
      for (auto& m : row) m = SIZE_MAX;
    const std::size_t spoof =
        hasRouted_ ? addMap("anti_spoofing_drops", "ENI -> its anti-spoofing drop counter") : SIZE_MAX;
    const std::size_t invalid = addMap("invalid_drops", "ENI -> its conntrack-invalid drop counter");
    for (int style : {kRouted, kOwn}) {
      if (!(style == kRouted ? hasRouted_ : hasOwn_)) continue;
      const std::string pre = style == kOwn && routedHost_ ? "host_" : "";
      const std::string who = style == kOwn && routedHost_ ? "the host's own ENI" : "ENI";
      dropMap_[style][kSpoof] = style == kRouted ? spoof : SIZE_MAX;
      dropMap_[style][kInvalid] = invalid;
      for (int st : {kNaclOut, kNaclIn, kSgOut, kSgIn, kAllowOut, kAllowIn}) {
        if (!stageApplies(style, st)) continue;
        const bool nacl = st == kNaclOut || st == kNaclIn, out = st == kNaclOut || st == kSgOut || st == kAllowOut;
        const char* kind = nacl ? "nacl" : isAllowance(st) ? "allowance" : "sg";
        dropMap_[style][st] = addMap(fmt::format("{}{}_{}_drops", pre, kind, out ? "out" : "in"),
                                     fmt::format("{} -> its {} drop counter", who, stageName(st)));
      }
    }
    if (routedHost_ && hasOwn_)
      for (auto dir : {Direction::kEgress, Direction::kIngress}) {
        const bool out = dir == Direction::kEgress;
        for (auto fam : {Family::kIpv4, Family::kIpv6}) {
          const int f = famIndex(fam);
          addrDropMap_[dirIndex(dir)][f] =
              addMap(fmt::format("host_addr_nacl_{}_drops{}", out ? "out" : "in", f == 0 ? 4 : 6),
                     fmt::format("the host's own ENI by {} address -> its {} drop counter", f == 0 ? "IPv4" : "IPv6",
                                 stageName(naclStage(dir))),
                     addrField(fam, out ? Direction::kIngress : Direction::kEgress));
        }
      }
  }

  Rule vmapRule(std::vector<Field> key, std::size_t map, std::string comment) const {
    Rule r;
    r.matches = {Match{std::move(key), Op::kVmap, std::nullopt, t_.sets[map].name}};
    r.comment = clip(std::move(comment));
    return r;
  }

  // The stages' chains: the ENI's lookup(s), then a drop for what no ENI
  // claims (counted, so that an unattributed drop shows too).
  void createDropChains() {
    for (int style : {kRouted, kOwn})
      for (int st = 0; st < kStages; ++st) {
        if (!stageApplies(style, st)) continue;
        if (st == kSpoof || st == kInvalid) {
          const int other = style == kRouted ? kOwn : kRouted;
          if (!dropChain_[other][st].empty()) {  // one chain for both styles
            dropChain_[style][st] = dropChain_[other][st];
            continue;
          }
        }
        const std::string pre = style == kOwn && routedHost_ && st != kInvalid ? "host_" : "";
        std::string base = stageName(st);
        std::replace(base.begin(), base.end(), '-', '_');
        const std::size_t ci = chains_.size();
        dropChain_[style][st] = newChain(pre + base + "_drop").name;
        auto& rules = chains_[ci].rules;
        const std::size_t map = dropMap_[style][st];
        if (st == kSpoof) {
          rules.push_back(vmapRule({Field::kIifname}, map, "anti-spoofing: the sending ENI's counter"));
        } else if (st == kInvalid) {
          // Whichever of the packet's interfaces is an ENI: the sender first.
          rules.push_back(vmapRule({Field::kIifname}, map, "conntrack invalid: the input interface's ENI"));
          rules.push_back(vmapRule({Field::kOifname}, map, "conntrack invalid: the output interface's ENI"));
        } else {
          const bool out = st == kNaclOut || st == kSgOut || st == kAllowOut;
          const Direction dir = out ? Direction::kEgress : Direction::kIngress;
          rules.push_back(
              vmapRule({eniInterfaceField(dir, style)}, map, fmt::format("{}: the ENI's counter", stageName(st))));
          if (style == kOwn && routedHost_ && (st == kNaclOut || st == kNaclIn))
            for (int f = 0; f < 2; ++f) {
              const std::size_t am = addrDropMap_[dirIndex(dir)][f];
              rules.push_back(
                  vmapRule(t_.sets[am].key, am, fmt::format("{}: the host's own ENI by its address", stageName(st))));
            }
        }
        rules.push_back(
            verdictRule({}, Verdict::drop(), fmt::format("{}: dropped, no ENI to count it for", stageName(st))));
      }
  }

  // ------------------------------------------------ connection tracking
  // (docs/ruleset.md, "Connection tracking"). New flows that every stage
  // allowed jump to one chain per style: first each ENI's allowance (a ct
  // count per ENI in a dynamic set, one set per distinct cap, fed by the
  // egress rule and the ingress rule alike so that an ENI's flows count
  // once whichever end opened them), then the idle timeouts: the flow gets
  // the shorter of each timeout of the ENIs at its two ends (each ENI's own
  // where the other end is no ENI), through ct timeout objects named by
  // their values, which only vpcfw generates.
  using Timeouts = std::array<int, 3>;  // tcp established, udp stream, udp
  static Timeouts timeoutsOf(const model::Instance& inst) {
    const model::ConnectionTracking ct = inst.connectionTracking.value_or(model::ConnectionTracking{});
    return {ct.tcpEstablishedOr(), ct.udpStreamOr(), ct.udpOr()};
  }
  static Timeouts shorter(const Timeouts& a, const Timeouts& b) {
    return {std::min(a[0], b[0]), std::min(a[1], b[1]), std::min(a[2], b[2])};
  }
  // The object for one protocol of a setting; made once per name.
  std::string ctTimeoutObject(const Timeouts& t, bool tcp) {
    CtTimeout o;
    if (tcp) {
      o.name = fmt::format("ct_tcp_{}", t[0]);
      o.l4proto = 6;
      // Linux's defaults for every state but established: only that one is AWS's to set.
      o.seconds = {120, 60, static_cast<std::uint32_t>(t[0]), 120, 60, 30, 120, 10, 120, 300, 300};
    } else {
      o.name = fmt::format("ct_udp_{}_{}", t[2], t[1]);
      o.l4proto = 17;
      // UDP's unreplied state is AWS's "UDP" timeout, its replied (assured) state the stream timeout.
      o.seconds = {static_cast<std::uint32_t>(t[2]), static_cast<std::uint32_t>(t[1])};
    }
    ctTimeouts_.emplace(o.name, o);
    return o.name;
  }
  std::map<std::string, CtTimeout> ctTimeouts_;  // by name: the table's objects, in name order
  // By style: each distinct setting's member set (keyed by interface) and its values.
  std::vector<std::pair<std::size_t, Timeouts>> timeoutClasses_[2];

  Rule ctTimeoutRule(std::vector<Match> matches, const Timeouts& t, bool tcp, std::string comment) {
    Rule r;
    r.matches = std::move(matches);
    r.matches.push_back(Match{{Field::kL4proto}, Op::kEq, Value{IntRange{tcp ? 6u : 17u, tcp ? 6u : 17u}}, {}});
    r.ctTimeout = ctTimeoutObject(t, tcp);
    r.comment = clip(std::move(comment));
    return r;
  }

  void createConntrackChains(int style) {
    const std::string pre = style == kOwn && routedHost_ ? "host_" : "";
    const Field egressIf = eniInterfaceField(Direction::kEgress, style),
                ingressIf = eniInterfaceField(Direction::kIngress, style);
    std::vector<std::size_t> enis;
    for (auto i : enis_)
      if (styleOf(i) == style) enis.push_back(i);
    const std::size_t ci = chains_.size();
    conntrackChain_[style] = newChain(pre + "conntrack_new").name;
    std::vector<Rule> rules;
    // Allowances: one dynamic set and one member set per distinct cap.
    std::map<std::uint32_t, std::vector<std::size_t>> byCap;
    for (auto i : enis)
      if (const auto& ct = m_.instances[i].connectionTracking; ct && ct->maxTracked)
        byCap[*ct->maxTracked].push_back(i);
    // A flow the ENI does not track (docs/ruleset.md, "Untracked flows") is
    // no connection of its allowance, as in AWS: each direction's chain
    // returns on the ENI's untracked sets first, then counts.
    std::size_t allowChain[2] = {0, 0};
    std::vector<Rule> allowRules[2];
    if (!byCap.empty())
      for (bool out : {true, false}) {
        const Direction dir = out ? Direction::kEgress : Direction::kIngress;
        allowChain[out ? 0 : 1] = chains_.size();
        const std::string name = newChain(fmt::format("{}allowance_{}", pre, out ? "egress" : "ingress")).name;
        for (auto fam : {Family::kIpv4, Family::kIpv6}) {
          const Field addr = addrField(fam, out ? Direction::kIngress : Direction::kEgress);
          allowRules[out ? 0 : 1].push_back(verdictRule(
              {inSet({out ? egressIf : ingressIf, addr, Field::kL4proto, Field::kThDport},
                     untracked_[dirIndex(dir)][famIndex(fam)])},
              Verdict::ret(), fmt::format("untracked at the ENI ({}): not counted", out ? "egress" : "ingress")));
        }
        Rule j = verdictRule({}, Verdict::jump(name),
                             fmt::format("tracked-connection allowance, {}", out ? "egress" : "ingress"));
        rules.push_back(std::move(j));
      }
    for (const auto& [cap, members] : byCap) {
      const std::size_t who = addSet(fmt::format("{}allowance_{}_enis", pre, cap), {Field::kIifname}, false,
                                     fmt::format("the ENIs whose tracked-connection allowance is {}", cap));
      for (auto i : members) t_.sets[who].elements.push_back(SetElement{{ifname(i)}, std::nullopt});
      const std::size_t counts = addSet(fmt::format("{}allowance_{}", pre, cap), {Field::kIifname}, false,
                                        fmt::format("ENI -> its tracked connections (allowance {})", cap));
      if (style == kOwn) allowanceSet_[cap] = t_.sets[counts].name;
      t_.sets[counts].dynamic = true;
      t_.sets[counts].size = 65535;
      for (bool out : {true, false}) {
        const Field f = out ? egressIf : ingressIf;
        Rule r = dropRule({inSet({f}, who)}, dropChain_[style][out ? kAllowOut : kAllowIn],
                          fmt::format("tracked-connection allowance {}, {}: beyond it new flows drop", cap,
                                      out ? "egress" : "ingress"));
        r.ctCount = CtCount{f, t_.sets[counts].name, cap, {}};
        allowRules[out ? 0 : 1].push_back(std::move(r));
      }
    }
    if (!byCap.empty())
      for (int k = 0; k < 2; ++k) chains_[allowChain[k]].rules = std::move(allowRules[k]);
    if (hasTimeouts_[style]) {
      // The distinct settings of this style's ENIs, each a class of ENIs.
      std::map<Timeouts, std::vector<std::size_t>> classes;
      for (auto i : enis) classes[timeoutsOf(m_.instances[i])].push_back(i);
      std::vector<std::size_t> members;  // class k -> its member set
      std::vector<Timeouts> settings;
      for (const auto& [t, list] : classes) {
        const std::size_t k = settings.size();
        const std::size_t si = addSet(
            fmt::format("{}ct_timeouts_{}_enis", pre, k), {Field::kIifname}, false,
            fmt::format("the ENIs whose idle timeouts are tcp {} s, udp {} s, udp stream {} s", t[0], t[2], t[1]));
        for (auto i : list) t_.sets[si].elements.push_back(SetElement{{ifname(i)}, std::nullopt});
        members.push_back(si);
        settings.push_back(t);
        timeoutClasses_[style].emplace_back(si, t);
      }
      const std::size_t from = addMap(pre + "ct_timeouts_from", "ENI -> the idle timeouts of flows it opens", egressIf);
      Rule dispatch;
      dispatch.matches = {inSet({egressIf}, from, Op::kVmap)};
      dispatch.comment = "idle timeouts: the shorter of each, of the ENIs at both ends";
      rules.push_back(std::move(dispatch));
      // From no ENI (a gateway, a peering, the host): the destination's own.
      for (std::size_t j = 0; j < settings.size(); ++j)
        for (bool tcp : {true, false})
          rules.push_back(ctTimeoutRule({inSet({ingressIf}, members[j])}, settings[j], tcp,
                                        "idle timeouts of the destination ENI"));
      for (std::size_t k = 0; k < settings.size(); ++k) {
        const std::size_t fk = chains_.size();
        const std::string name = newChain(fmt::format("{}ct_timeouts_from_{}", pre, k)).name;
        std::vector<Rule> fr;
        for (bool tcp : {true, false})
          fr.push_back(ctTimeoutRule({}, settings[k], tcp, "idle timeouts of the source ENI"));
        for (std::size_t j = 0; j < settings.size(); ++j) {
          if (j == k) continue;
          const Timeouts both = shorter(settings[k], settings[j]);
          if (both[0] != settings[k][0])
            fr.push_back(ctTimeoutRule({inSet({ingressIf}, members[j])}, both, true,
                                       "the destination ENI's TCP timeout is shorter"));
          if (both[1] != settings[k][1] || both[2] != settings[k][2])
            fr.push_back(ctTimeoutRule({inSet({ingressIf}, members[j])}, both, false,
                                       "the destination ENI's UDP timeouts are shorter"));
        }
        chains_[fk].rules = std::move(fr);
        for (auto i : classes[settings[k]])
          t_.sets[from].elements.push_back(SetElement{{ifname(i)}, Verdict::goTo(name)});
      }
    }
    chains_[ci].rules = std::move(rules);
  }
  // A routed host: a flow between a routed ENI and the host's own ENI
  // crosses the routed ENI's interface only. The routed ENI's side is its
  // style's chain (its interface is the packet's); the own ENI's side is
  // found by its address (the source on output, the destination on input),
  // through a map to a chain per own ENI and direction: its allowance,
  // counted under its own interface's element (so all its flows count
  // together), then the shorter of its timeouts and the routed ENI's.
  bool needsOwnConntrackByAddress() const {
    return routedHost_ && hasOwn_ && (hasAllowance_[kOwn] || hasTimeouts_[kOwn] || hasTimeouts_[kRouted]);
  }
  // Last assignment wins: first against a routed ENI without a setting of
  // its own (AWS's defaults), then each routed class.
  void appendOwnTimeouts(std::vector<Rule>& rules, const model::Instance& inst, bool timeouts, Field routedIf) {
    if (!timeouts) return;
    const Timeouts own = timeoutsOf(inst);
    for (bool tcp : {true, false})
      rules.push_back(ctTimeoutRule({}, shorter(own, timeoutsOf(model::Instance{})), tcp,
                                    "the host's ENI with a routed ENI: the shorter timeouts of the two"));
    for (const auto& [set, t] : timeoutClasses_[kRouted])
      for (bool tcp : {true, false})
        rules.push_back(ctTimeoutRule({inSet({routedIf}, set)}, shorter(own, t), tcp,
                                      "the host's ENI with a routed ENI: the shorter timeouts of the two"));
  }
  void createOwnConntrackByAddress() {
    const bool timeouts = hasTimeouts_[kOwn] || hasTimeouts_[kRouted];
    std::set<std::string> ownIfnames;
    for (auto i : enis_)
      if (styleOf(i) == kOwn) ownIfnames.insert(ifname(i));
    for (auto dir : {Direction::kEgress, Direction::kIngress}) {
      const bool out = dir == Direction::kEgress;
      const int d = dirIndex(dir);
      // The routed ENI's interface: the input one when it sends to the
      // host (the own ENI's ingress), the output one when the host sends.
      const Field routedIf = out ? Field::kOifname : Field::kIifname;
      // The own ENIs' untracked sets without the interface (a packet from
      // or to a routed ENI does not cross it), keyed by the own address.
      std::size_t ownUntracked[2] = {0, 0};
      for (auto fam : {Family::kIpv4, Family::kIpv6}) {
        if (!hasAllowance_[kOwn]) break;
        const int f = famIndex(fam);
        const Field addr = addrField(fam, out ? Direction::kIngress : Direction::kEgress);
        ownUntracked[f] =
            addSet(fmt::format("host_addr_untracked_{}{}", out ? "out" : "in", f == 0 ? 4 : 6),
                   {addr, Field::kL4proto, Field::kThDport}, true,
                   fmt::format("the host's own ENIs' untracked flows by {} address, {} (with a routed ENI)",
                               f == 0 ? "IPv4" : "IPv6", out ? "egress" : "ingress"));
        for (const auto& e : t_.sets[untracked_[d][f]].elements)
          if (ownIfnames.count(std::get<std::string>(e.key.front())))
            t_.sets[ownUntracked[f]].elements.push_back(SetElement{{e.key.begin() + 1, e.key.end()}, std::nullopt});
      }
      for (auto fam : {Family::kIpv4, Family::kIpv6}) {
        const int f = famIndex(fam);
        ownCtByAddr_[d][f] = addMap(
            fmt::format("host_addr_ct_{}{}", out ? "out" : "in", f == 0 ? 4 : 6),
            fmt::format("the host's own ENI by {} address -> its allowance and idle timeouts, {} (with a routed ENI)",
                        f == 0 ? "IPv4" : "IPv6", out ? "egress" : "ingress"),
            addrField(fam, out ? Direction::kIngress : Direction::kEgress));
      }
      for (auto i : enis_) {
        if (styleOf(i) != kOwn) continue;
        const auto& inst = m_.instances[i];
        const auto& ct = inst.connectionTracking;
        const bool cap = ct && ct->maxTracked;
        if (!cap && !timeouts) continue;
        const std::size_t ci = chains_.size();
        const std::string name = newChain(fmt::format("host_ct_{}_{}", inst.name, out ? "out" : "in")).name;
        std::vector<Rule> rules;
        appendOwnTimeouts(rules, inst, timeouts, routedIf);
        if (cap) {
          // Untracked at the own ENI: no connection of its allowance.
          for (int f = 0; f < 2; ++f)
            rules.push_back(
                verdictRule({inSet(t_.sets[ownUntracked[f]].key, ownUntracked[f])}, Verdict::ret(),
                            fmt::format("untracked at the host's ENI ({}): not counted", out ? "egress" : "ingress")));
          Rule r = dropRule({}, eniDropChain_.at({i, out ? kAllowOut : kAllowIn}),
                            fmt::format("tracked-connection allowance {}, {} (with a routed ENI)", *ct->maxTracked,
                                        out ? "egress" : "ingress"));
          r.ctCount = CtCount{Field::kIifname, allowanceSet_.at(*ct->maxTracked), *ct->maxTracked, ifname(i)};
          rules.push_back(std::move(r));
        }
        chains_[ci].rules = std::move(rules);
        mapAddresses(inst, ownCtByAddr_[d], Verdict::jump(name));
      }
    }
  }
  std::size_t ownCtByAddr_[2][2] = {{0, 0}, {0, 0}};

  // A routed host's own ENI in maps keyed by address ([IPv4, IPv6] -> map):
  // each of its addresses -> `v`.
  void mapAddresses(const model::Instance& inst, const std::size_t (&maps)[2], const Verdict& v) {
    auto add = [&](const net::IpAddress& a) {
      t_.sets[maps[a.isV4() ? 0 : 1]].elements.push_back(SetElement{{AddressRange{a, a}}, v});
    };
    add(inst.privateIp);
    for (const auto& a : inst.secondaryIps) add(a);
    for (const auto& a : inst.ipv6Addresses) add(a);
  }
  std::map<std::uint32_t, std::string> allowanceSet_;  // cap -> the own ENIs' count set

  // The rule before a chain's final accept that sends new flows there.
  void appendConntrackJump(std::vector<Rule>& rules, int style) const {
    if (conntrackChain_[style].empty()) return;
    Rule r;
    r.ctState = CtState::kNew;
    r.verdict = Verdict::jump(conntrackChain_[style]);
    r.comment = "connection tracking: allowance and idle timeouts of new flows";
    rules.push_back(std::move(r));
  }

  // ------------------------------------------------ flow-log logging
  // Whether some flow log covers an ENI of this fabric: then the whole
  // fabric logs, since a reject at one ENI is a record for the ENI at the
  // other end too, and the collector sees the fabric's messages on one
  // socket anyway.
  bool coveredByFlowLog() const {
    if (m_.flowLogs.empty()) return false;
    std::vector<char> covered(m_.instances.size());
    for (const auto& log : m_.flowLogs)
      for (auto i : model::flowLogInstances(m_, log)) covered[i] = 1;
    return std::any_of(enis_.begin(), enis_.end(), [&](std::size_t i) { return covered[i] != 0; });
  }

  // The accepted TCP packets that open, close or reset a connection, for the
  // flow log's tcp-flags field (conntrack counts the rest). Postrouting comes
  // after every filter hook a forwarded or sent packet crosses, so what
  // reaches it was accepted; a host's input needs a chain after its own.
  void createFlowLogChains() {
    constexpr std::uint32_t kFlags = kTcpFin | kTcpSyn | kTcpRst;
    Rule r;
    r.matches = {Match{{Field::kL4proto}, Op::kEq, Value{IntRange{6, 6}}, {}},
                 Match{{Field::kTcpFlags}, Op::kAnyBits, Value{IntRange{kFlags, kFlags}}, {}}};
    r.log = Log{flowLogPrefixText({FlowLogPrefix::Kind::kTcp, {}, {}}), options_.flowLogGroup};
    r.comment = "flow logs: accepted TCP packets with FIN, SYN or RST";
    Chain post;
    post.name = names_.take("flow_log_tcp");
    post.hook = "postrouting";
    post.rules.push_back(r);
    chains_.push_back(std::move(post));
    if (!hostMode_) return;
    Chain in;
    in.name = names_.take("flow_log_tcp_in");
    in.hook = "input";
    in.priority = 10;  // after vpcfw's input chain: what it accepted
    r.comment = "flow logs: accepted TCP packets with FIN, SYN or RST, to the host";
    in.rules.push_back(std::move(r));
    chains_.push_back(std::move(in));
  }

  // The ENI's own drop chains and its elements in the stages' maps.
  void compileEniDrops(std::size_t instIndex) {
    const auto& inst = m_.instances[instIndex];
    const int style = styleOf(instIndex);
    for (int st = 0; st < kStages; ++st) {
      if (!stageApplies(style, st)) continue;
      if (isAllowance(st) && !(inst.connectionTracking && inst.connectionTracking->maxTracked)) continue;
      const std::size_t ci = chains_.size();
      std::string base = stageName(st);
      std::replace(base.begin(), base.end(), '-', '_');
      const std::string chain = newChain(fmt::format("drop_{}_{}", inst.name, base)).name;
      // The comment is what `vpcfw status` reads: "<instance> <stage>".
      Rule drop = verdictRule({}, Verdict::drop(), fmt::format("{} {}", inst.name, stageName(st)));
      // Anti-spoofing and conntrack-invalid drops are no flow log's REJECT:
      // AWS records what its NACLs and groups refuse.
      if (flowLogged_ && st != kSpoof && st != kInvalid)
        drop.log = Log{flowLogPrefixText({FlowLogPrefix::Kind::kDrop, stageName(st), ifname(instIndex)}),
                       options_.flowLogGroup};
      chains_[ci].rules.push_back(std::move(drop));
      eniDropChain_[{instIndex, st}] = chain;
      if (dropMap_[style][st] == SIZE_MAX) continue;
      t_.sets[dropMap_[style][st]].elements.push_back(SetElement{{ifname(instIndex)}, Verdict::goTo(chain)});
      if (style == kOwn && routedHost_ && (st == kNaclOut || st == kNaclIn)) {
        mapAddresses(inst, addrDropMap_[st == kNaclOut ? 0 : 1], Verdict::goTo(chain));
      }
    }
  }
  std::map<std::pair<std::size_t, int>, std::string> eniDropChain_;  // (instance, stage) -> drop_<eni>_<stage>

  // A drop rule that sends the packet on to be counted for its ENI; its own
  // counter stays (it tells which rule dropped).
  static Rule dropRule(std::vector<Match> matches, const std::string& chain, std::string comment) {
    Rule r = verdictRule(std::move(matches), Verdict::goTo(chain), std::move(comment));
    r.counter = true;
    return r;
  }

  std::size_t addSet(const std::string& name, std::vector<Field> key, bool interval, std::string comment) {
    Set s;
    s.name = names_.take(name);
    s.key = std::move(key);
    s.interval = interval;
    s.comment = clip(std::move(comment));
    t_.sets.push_back(std::move(s));
    return t_.sets.size() - 1;
  }
  std::size_t addMap(const std::string& name, std::string comment, Field key = Field::kIifname) {
    auto i = addSet(name, {key}, false, std::move(comment));
    t_.sets[i].isMap = true;
    return i;
  }

  Chain& newChain(const std::string& wanted) {
    Chain c;
    c.name = names_.take(wanted);
    chains_.push_back(std::move(c));
    return chains_.back();
  }

  static Rule verdictRule(std::vector<Match> matches, Verdict v, std::string comment) {
    Rule r;
    r.matches = std::move(matches);
    r.verdict = std::move(v);
    r.comment = clip(std::move(comment));
    r.counter = r.verdict.kind == VerdictKind::kDrop;
    return r;
  }

  // Adds the up-to-four set lookups that match `matches` (one family) to `chain`.
  void addSetLookups(std::size_t chainIndex, const std::string& setPrefix, Family fam, Direction peerSide,
                     const std::vector<AddressMatch>& matches, Verdict v, const std::string& comment) {
    if (matches.empty()) return;
    auto elements = buildSetElements(matches);
    const Field addr = addrField(fam, peerSide);
    const bool v4 = fam == Family::kIpv4;
    const std::string suffix = v4 ? "4" : "6";
    auto lookup = [&](std::vector<SetElement>& elems, const std::string& kind, std::vector<Field> key) {
      if (elems.empty()) return;
      auto si = addSet(setPrefix + "_" + kind + suffix, key, true, comment);
      t_.sets[si].elements = std::move(elems);
      Rule r = verdictRule({Match{key, Op::kInSet, std::nullopt, t_.sets[si].name}}, v, comment);
      r.counter = r.counter || v.kind == VerdictKind::kGoto;  // a deny, counted on to its ENI
      chains_[chainIndex].rules.push_back(std::move(r));
    };
    lookup(elements.all, "all", {addr});
    lookup(elements.protocol, "proto", {addr, Field::kL4proto});
    lookup(elements.ports, "ports", {addr, Field::kL4proto, Field::kThDport});
    lookup(elements.icmp, "icmp",
           {addr, v4 ? Field::kIcmpType : Field::kIcmp6Type, v4 ? Field::kIcmpCode : Field::kIcmp6Code});
  }

  // ------------------------------------------------------------ NACLs
  void compileSubnet(std::size_t subnetIndex, const std::vector<std::size_t>& members, int style) {
    const auto& subnet = m_.subnets[subnetIndex];
    const auto& acl = m_.nacls[subnet.nacl];
    const bool own = style == kOwn;
    // On a routed host the own ENIs' chains are host_nacl_*, apart from the
    // routed ENIs' chains of the same subnet.
    const std::string prefix = own && routedHost_ ? "host_nacl_" : "nacl_";
    // A router tells same-subnet traffic by its interfaces (a host by address).
    std::size_t ifs = 0;
    if (!own) {
      ifs = addSet("subnet_" + subnet.name + "_ifs", {Field::kIifname}, false,
                   fmt::format("the ENIs of subnet {}", subnet.name));
      for (auto i : members)
        if (compiles(i)) t_.sets[ifs].elements.push_back(SetElement{{ifname(i)}, std::nullopt});
    }
    for (auto dir : {Direction::kEgress, Direction::kIngress}) {
      const bool out = dir == Direction::kEgress;
      Chain& c = newChain(fmt::format("{}{}_{}", prefix, subnet.name, out ? "out" : "in"));
      const std::string chainName = c.name;
      const std::size_t ci = chains_.size() - 1;
      // Traffic that stays inside the subnet never meets its NACL: in a
      // router, both interfaces are the subnet's ENIs; on a host, the remote
      // address is inside the subnet.
      if (own) {
        for (const auto& block : {std::optional<net::Cidr>(subnet.cidr), subnet.ipv6Cidr}) {
          if (!block) continue;
          chains_[ci].rules.push_back(
              verdictRule({Match{{addrField(block->family(), dir)}, Op::kEq, addressValue(*block), {}}}, Verdict::ret(),
                          fmt::format("subnet {}: remote inside the subnet, no NACL", subnet.name)));
        }
      } else {
        chains_[ci].rules.push_back(
            verdictRule({Match{{out ? Field::kOifname : Field::kIifname}, Op::kInSet, std::nullopt, t_.sets[ifs].name}},
                        Verdict::ret(), fmt::format("subnet {}: same subnet, no NACL", subnet.name)));
      }
      compileNaclRules(ci, chainName, acl, dir, dropChain_[style][naclStage(dir)]);
      if (own) ownNaclChain_[{subnetIndex, dirIndex(dir)}] = chainName;
      for (auto i : members)
        if (compiles(i))
          t_.sets[out ? naclOut_[style] : naclIn_[style]].elements.push_back(
              SetElement{{ifname(i)}, Verdict::jump(chainName)});
    }
  }

  void compileNaclRules(std::size_t ci, const std::string& chainName, const model::NetworkAcl& acl, Direction dir,
                        const std::string& dropChain) {
    const auto& rules = acl.rules(dir);
    const std::string dirName(model::directionName(dir));
    std::size_t i = 0, run = 0;
    while (i < rules.size() && !rules[i].isImplicitDeny()) {
      std::size_t j = i;
      while (j < rules.size() && !rules[j].isImplicitDeny() && rules[j].action == rules[i].action) ++j;
      // Rules i..j-1 share an action: inside the run, order cannot change the outcome.
      const Verdict v = rules[i].action == model::Action::kAllow ? Verdict::ret() : Verdict::goTo(dropChain);
      std::string numbers;
      for (auto k = i; k < j; ++k) numbers += (k > i ? "," : "") + rules[k].label();
      const std::string comment =
          fmt::format("nacl {} {} {} {}", acl.name, dirName, numbers, model::actionName(rules[i].action));
      if (j - i == 1) {
        const auto& r = rules[i];
        std::vector<Match> ms{Match{{addrField(r.cidr.family(), dir)}, Op::kEq, addressValue(r.cidr), {}}};
        appendL4Matches(ms, l4Of(r.protocol, r.ports, r.icmp, r.cidr.family()), r.cidr.family());
        Rule rule = verdictRule(std::move(ms), v, comment);
        rule.counter = v.kind == VerdictKind::kGoto;
        chains_[ci].rules.push_back(std::move(rule));
      } else {
        ++run;
        for (auto fam : {Family::kIpv4, Family::kIpv6}) {
          std::vector<AddressMatch> ms;
          for (auto k = i; k < j; ++k)
            if (rules[k].cidr.family() == fam)
              ms.push_back(AddressMatch{rules[k].cidr, l4Of(rules[k].protocol, rules[k].ports, rules[k].icmp, fam)});
          addSetLookups(ci, fmt::format("{}_r{}", chainName, run), fam, dir, ms, v, comment);
        }
      }
      i = j;
    }
    chains_[ci].rules.push_back(dropRule({}, dropChain, fmt::format("nacl {} {} * deny", acl.name, dirName)));
  }

  // --------------------------------------------------- security groups
  // The named member sets of a referenced group: IPv4 always, IPv6 only when
  // the group's VPC has an IPv6 block (members can have no IPv6 otherwise);
  // the second name is empty then.
  std::pair<std::string, std::string> groupMemberSets(std::size_t g) {
    if (current_ &&
        std::find(current_->memberGroups.begin(), current_->memberGroups.end(), g) == current_->memberGroups.end())
      current_->memberGroups.push_back(g);
    if (auto it = memberSets_.find(g); it != memberSets_.end()) return it->second;
    std::pair<std::string, std::string> names;
    for (auto& s : detail::memberSets(m_, g)) {
      s.name = names_.take(s.name);
      (s.key[0] == Field::kIpSaddr ? names.first : names.second) = s.name;
      t_.sets.push_back(std::move(s));
    }
    memberSets_[g] = names;
    return names;
  }

  // Groups with at most this many member addresses are referenced through
  // the shared sets' elements; larger ones through a member set (so a group
  // of N members referenced by N ENIs does not become N x N elements).
  static constexpr std::size_t kExpandMembers = 8;
  std::size_t memberAddresses(std::size_t g) const {
    std::size_t n = 0;
    for (auto i : m_.groups[g].members) n += 1 + m_.instances[i].ipv6Addresses.size();
    return n;
  }

  static int dirIndex(Direction d) { return d == Direction::kEgress ? 0 : 1; }

  // The interface that names the ENI of a packet: in a router the ENI is
  // where egress traffic comes in (iif) and ingress traffic goes out (oif);
  // on a host it is the other way round.
  static Field eniInterfaceField(Direction d, int style) {
    const bool egress = d == Direction::kEgress;
    return egress != (style == kOwn) ? Field::kIifname : Field::kOifname;
  }
  static int famIndex(Family f) { return f == Family::kIpv4 ? 0 : 1; }

  std::string shardSuffix(std::size_t k) const { return shards_ == 1 ? "" : fmt::format("_s{}", k); }

  void createGroupSets(Direction dir, Family fam, std::size_t shard) {
    const bool out = dir == Direction::kEgress, v4 = fam == Family::kIpv4;
    const Field ifField = out ? Field::kIifname : Field::kOifname;
    const Field addr = addrField(fam, out ? Direction::kEgress : Direction::kIngress);
    const std::string prefix = out ? "sg_out_" : "sg_in_";
    const std::string suffix = (v4 ? "4" : "6") + shardSuffix(shard);
    const std::string what =
        fmt::format("security groups, {}: {} CIDR, prefix-list and small-group rules", out ? "egress" : "ingress",
                    shards_ == 1 ? std::string("every ENI's") : fmt::format("shard {} of the ENIs'", shard));
    auto& slots = groupSets_[shard][dirIndex(dir)][famIndex(fam)];
    slots[0] = addSet(prefix + "all" + suffix, {ifField, addr}, true, what + " (all protocols)");
    slots[1] = addSet(prefix + "proto" + suffix, {ifField, addr, Field::kL4proto}, true, what + " (protocols)");
    slots[2] = addSet(prefix + "ports" + suffix, {ifField, addr, Field::kL4proto, Field::kThDport}, true,
                      what + " (tcp/udp ports)");
    slots[3] =
        addSet(prefix + "icmp" + suffix,
               {ifField, addr, v4 ? Field::kIcmpType : Field::kIcmp6Type, v4 ? Field::kIcmpCode : Field::kIcmp6Code},
               true, what + " (icmp)");
  }

  // One chain per direction: the shared set lookups, then the ENI's group
  // references (a goto, so that their `return` leaves this chain too). With
  // shards, the direction's chain sends each ENI to its shard's chain.
  // On a routed host the own ENIs get chains of their own (host_sg_*): the
  // same sets, looked up by the other interface.
  void buildGroupChain(Direction dir, int style) {
    const bool out = dir == Direction::kEgress;
    const std::string base = std::string(style == kOwn && routedHost_ ? "host_" : "") + (out ? "sg_out" : "sg_in");
    const std::string dirText = out ? "egress" : "ingress";
    const Field eniField = eniInterfaceField(dir, style);
    std::optional<std::size_t> dispatch;
    if (shards_ > 1) {
      Chain& c = newChain(base);
      sgEntry_[style][dirIndex(dir)] = c.name;
      const std::size_t map =
          addMap(base + "_shards", fmt::format("ENI -> its shard of the security-group sets, {}", dirText));
      Rule r;
      r.matches = {Match{{eniField}, Op::kVmap, std::nullopt, t_.sets[map].name}};
      r.comment = fmt::format("security groups, {}: the ENI's shard", dirText);
      c.rules.push_back(r);
      c.rules.push_back(
          dropRule({}, dropChain_[style][sgStage(dir)], fmt::format("security groups, {}: no rule allows", dirText)));
      dispatch = map;
    }
    for (std::size_t k = 0; k < shards_; ++k) {
      Chain& c = newChain(base + shardSuffix(k));
      if (!dispatch) sgEntry_[style][dirIndex(dir)] = c.name;
      if (dispatch) shardChains_[style][dirIndex(dir)].push_back({*dispatch, c.name});
      if (only_) continue;  // a partial compile needs the shards' chains by name only
      for (int f = 0; f < 2; ++f)
        for (int j = 0; j < 4; ++j) {
          const auto& set = t_.sets[groupSets_[k][dirIndex(dir)][f][j]];
          std::vector<Field> key = set.key;
          key[0] = eniField;
          c.rules.push_back(verdictRule({Match{key, Op::kInSet, std::nullopt, set.name}}, Verdict::ret(),
                                        fmt::format("security groups, {}: a rule allows", dirText)));
        }
      Rule refs;
      refs.matches = {Match{{eniField}, Op::kVmap, std::nullopt, t_.sets[out ? sgRefsOut_ : sgRefsIn_].name}};
      refs.comment = fmt::format("security groups, {}: rules that reference groups", dirText);
      c.rules.push_back(refs);
      c.rules.push_back(
          dropRule({}, dropChain_[style][sgStage(dir)], fmt::format("security groups, {}: no rule allows", dirText)));
    }
  }
  // [style][egress/ingress] -> (shard map, chain of shard k), in shard order
  std::vector<std::pair<std::size_t, std::string>> shardChains_[2][2];
  std::string sgEntry_[2][2];  // [style][egress/ingress] -> the chain the base chains jump to

  // vpc-semantics.md: TCP/UDP admitted from 0.0.0.0/0 (::/0) one way, with
  // all traffic to 0.0.0.0/0 (::/0) allowed the other way, is not tracked at
  // the ENI (eval::isUntracked says the same of one flow). The ports, merged
  // per protocol, for each of the ENI's addresses of the family.
  void addUntracked(const model::Instance& inst, const std::string& ifn) {
    for (auto dir : {Direction::kEgress, Direction::kIngress}) {
      const Direction back = dir == Direction::kEgress ? Direction::kIngress : Direction::kEgress;
      for (auto fam : {Family::kIpv4, Family::kIpv6}) {
        const auto any = net::Cidr::any(fam);
        bool allBack = false;
        std::vector<IntRange> open[2];  // tcp, udp
        for (auto g : inst.groups) {
          for (const auto& r : m_.groups[g].rules(back)) {
            const auto* c = std::get_if<net::Cidr>(&r.peer);
            if (c && *c == any && r.protocol.isAll()) allBack = true;
          }
          for (const auto& r : m_.groups[g].rules(dir)) {
            const auto* c = std::get_if<net::Cidr>(&r.peer);
            if (!c || *c != any) continue;
            if (r.protocol.isAll()) {
              for (auto& o : open) o.push_back(IntRange{0, 65535});
            } else if (r.protocol.number() == Protocol::kTcp || r.protocol.number() == Protocol::kUdp) {
              open[r.protocol.number() == Protocol::kTcp ? 0 : 1].push_back(IntRange{r.ports.from, r.ports.to});
            }
          }
        }
        if (!allBack) continue;
        std::vector<net::IpAddress> addrs;
        if (fam == Family::kIpv4) {
          addrs.push_back(inst.privateIp);
          addrs.insert(addrs.end(), inst.secondaryIps.begin(), inst.secondaryIps.end());
        } else {
          addrs = inst.ipv6Addresses;
        }
        auto& set = t_.sets[untracked_[dirIndex(dir)][famIndex(fam)]];
        for (int k = 0; k < 2; ++k) {
          const auto proto = static_cast<std::uint32_t>(k == 0 ? Protocol::kTcp : Protocol::kUdp);
          for (const auto& ports : mergeIntRanges(std::move(open[k])))
            for (const auto& a : addrs)
              set.elements.push_back(
                  SetElement{{ifn, AddressRange{a, a}, IntRange{proto, proto}, ports}, std::nullopt});
        }
      }
    }
  }

  void compileEni(std::size_t instIndex) {
    const auto& inst = m_.instances[instIndex];
    const std::string& ifn = ifname(instIndex);
    const int style = styleOf(instIndex);
    compileEniDrops(instIndex);
    t_.sets[enisSet_[style]].elements.push_back(SetElement{{ifn}, std::nullopt});
    const std::size_t shard = shardOf(instIndex);
    for (int d = 0; d < 2; ++d)
      if (!shardChains_[style][d].empty()) {
        const auto& [map, chain] = shardChains_[style][d][shard];
        t_.sets[map].elements.push_back(SetElement{{ifn}, Verdict::goTo(chain)});
      }
    // Anti-spoofing concerns what a routed ENI sends; a host's own ENIs are
    // in these sets only where they always were (pure host mode, unused).
    if (!(routedHost_ && style == kOwn)) {
      t_.sets[src4_].elements.push_back(SetElement{{ifn, AddressRange{inst.privateIp, inst.privateIp}}, std::nullopt});
      for (const auto& a : inst.secondaryIps)
        t_.sets[src4_].elements.push_back(SetElement{{ifn, AddressRange{a, a}}, std::nullopt});
      for (const auto& a : inst.ipv6Addresses)
        t_.sets[src6_].elements.push_back(SetElement{{ifn, AddressRange{a, a}}, std::nullopt});
    }

    addUntracked(inst, ifn);

    for (auto dir : {Direction::kEgress, Direction::kIngress}) {
      const bool out = dir == Direction::kEgress;
      std::vector<AddressMatch> byFamily[2];
      struct RefRule {
        const model::SgRule* rule;
        std::size_t group;
        std::string label;
      };
      std::vector<RefRule> refs;
      for (auto g : inst.groups) {
        const auto& group = m_.groups[g];
        for (const auto& r : group.rules(dir)) {
          if (auto* cidr = std::get_if<net::Cidr>(&r.peer)) {
            byFamily[famIndex(cidr->family())].push_back(
                AddressMatch{*cidr, l4Of(r.protocol, r.ports, r.icmp, cidr->family())});
          } else if (auto* pl = std::get_if<model::PrefixListRef>(&r.peer)) {
            for (const auto& e : m_.prefixLists[pl->prefixList].entries)
              byFamily[famIndex(e.family())].push_back(AddressMatch{e, l4Of(r.protocol, r.ports, r.icmp, e.family())});
          } else if (auto g2 = std::get<model::GroupRef>(r.peer).group; memberAddresses(g2) <= kExpandMembers) {
            // A small group's members go into the shared sets like CIDRs:
            // elements are far cheaper for the kernel than a member set and
            // a chain per ENI, and a membership change is still element-only.
            for (auto fam : {Family::kIpv4, Family::kIpv6}) {
              if (r.protocol.number() == Protocol::kIcmp && fam == Family::kIpv6) continue;
              if (r.protocol.number() == Protocol::kIcmpv6 && fam == Family::kIpv4) continue;
              for (auto i : m_.groups[g2].members) {
                const auto& member = m_.instances[i];
                if (fam == Family::kIpv4)
                  byFamily[0].push_back(
                      AddressMatch{net::Cidr::host(member.privateIp), l4Of(r.protocol, r.ports, r.icmp, fam)});
                else if (m_.vpcs[m_.groups[g2].vpc].ipv6Cidr)
                  for (const auto& a : member.ipv6Addresses)
                    byFamily[1].push_back(AddressMatch{net::Cidr::host(a), l4Of(r.protocol, r.ports, r.icmp, fam)});
              }
            }
          } else {
            refs.push_back(RefRule{&r, g2, fmt::format("{} {}", group.name, r.index)});
          }
        }
      }
      for (auto fam : {Family::kIpv4, Family::kIpv6}) {
        auto elements = buildSetElements(byFamily[famIndex(fam)]);
        auto& slots = groupSets_[shard][dirIndex(dir)][famIndex(fam)];
        int k = 0;
        for (auto* elems : {&elements.all, &elements.protocol, &elements.ports, &elements.icmp}) {
          for (auto& e : *elems) {
            e.key.insert(e.key.begin(), Value{ifn});
            t_.sets[slots[k]].elements.push_back(std::move(e));
          }
          ++k;
        }
      }
      auto appendRefRules = [&](std::size_t ci) {
        for (const auto& ref : refs) {
          auto [s4, s6] = groupMemberSets(ref.group);
          for (auto fam : {Family::kIpv4, Family::kIpv6}) {
            const auto& r = *ref.rule;
            // icmp rules only concern IPv4, icmpv6 rules only IPv6.
            if (r.protocol.number() == Protocol::kIcmp && fam == Family::kIpv6) continue;
            if (r.protocol.number() == Protocol::kIcmpv6 && fam == Family::kIpv4) continue;
            if (fam == Family::kIpv6 && s6.empty()) continue;  // no member can have IPv6
            std::vector<Match> ms{
                Match{{addrField(fam, dir)}, Op::kInSet, std::nullopt, fam == Family::kIpv4 ? s4 : s6}};
            appendL4Matches(ms, l4Of(r.protocol, r.ports, r.icmp, fam), fam);
            chains_[ci].rules.push_back(
                verdictRule(std::move(ms), Verdict::ret(),
                            fmt::format("sg {} {} {} -> group {}", inst.name, out ? "egress" : "ingress", ref.label,
                                        m_.groups[ref.group].qualifiedName())));
          }
        }
        chains_[ci].rules.push_back(
            dropRule({}, eniDropChain_.at({instIndex, sgStage(dir)}),
                     fmt::format("sg {} {}: no rule allows", inst.name, out ? "egress" : "ingress")));
      };
      if (routedHost_ && style == kOwn) compileOwnByAddress(instIndex, dir, byFamily, appendRefRules);
      if (refs.empty()) continue;
      const std::size_t ci = chains_.size();
      const std::string chainName = newChain(fmt::format("eni_{}_{}_refs", inst.name, out ? "out" : "in")).name;
      appendRefRules(ci);
      t_.sets[out ? sgRefsOut_ : sgRefsIn_].elements.push_back(SetElement{{ifn}, Verdict::goTo(chainName)});
    }
  }

  // A routed ENI and the host's own ENI meet on the host's input and output,
  // where the packet's interface is the routed one: the own ENI's side is
  // found by its address instead. Its NACL is the subnet's host chain
  // (address-based already); its groups get a chain of their own whose sets
  // are keyed by address alone, reached through maps from its addresses.
  template <class RefRules>
  void compileOwnByAddress(std::size_t instIndex, Direction dir, const std::vector<AddressMatch> (&byFamily)[2],
                           const RefRules& appendRefRules) {
    const auto& inst = m_.instances[instIndex];
    const bool out = dir == Direction::kEgress;
    const std::size_t ci = chains_.size();
    const std::string chainName = newChain(fmt::format("eni_{}_{}_by_address", inst.name, out ? "out" : "in")).name;
    for (auto fam : {Family::kIpv4, Family::kIpv6})
      addSetLookups(ci, chainName, fam, dir, byFamily[famIndex(fam)], Verdict::ret(),
                    fmt::format("sg {} {}: a rule allows (with a routed ENI)", inst.name, out ? "egress" : "ingress"));
    appendRefRules(ci);
    const int d = dirIndex(dir);
    const std::string& nacl = ownNaclChain_.at({inst.subnet, d});
    mapAddresses(inst, byAddrNacl_[d], Verdict::jump(nacl));
    mapAddresses(inst, byAddrSg_[d], Verdict::jump(chainName));
  }

  // Security groups are stateful: replies of admitted flows pass; conntrack's
  // invalid packets never do.
  void appendConntrackRules(std::vector<Rule>& rules) const {
    rules.push_back(
        conntrackAccept(CtState::kEstablishedRelated, "security groups are stateful: replies of admitted flows"));
    appendInvalidRule(rules);
  }
  static Rule conntrackAccept(CtState state, std::string comment) {
    Rule r;
    r.ctState = state;
    r.verdict = Verdict::accept();
    r.comment = std::move(comment);
    return r;
  }
  void appendInvalidRule(std::vector<Rule>& rules) const {
    Rule inv;
    inv.ctState = CtState::kInvalid;
    inv.verdict = Verdict::goTo(dropChain_[hasRouted_ ? kRouted : kOwn][kInvalid]);
    inv.counter = true;
    inv.comment = "conntrack: invalid";
    rules.push_back(inv);
  }

  // ------------------------------------------------------- host mode
  Match inSet(std::vector<Field> key, std::size_t si, Op op = Op::kInSet) const {
    return Match{std::move(key), op, std::nullopt, t_.sets[si].name};
  }

  // IPv6 neighbour discovery is link infrastructure, like ARP: AWS does not
  // filter it, and nothing works without it.
  static Rule neighbourDiscoveryRule() {
    return verdictRule({Match{{Field::kL4proto}, Op::kEq, Value{IntRange{58, 58}}, {}},
                        Match{{Field::kIcmp6Type}, Op::kEq, Value{IntRange{133, 137}}, {}}},
                       Verdict::accept(), "IPv6 neighbour discovery is not filtered");
  }

  void buildHostChains() {
    for (std::size_t ci = 0; ci < 2; ++ci) {
      const bool input = ci == 0;
      auto& rules = chains_[ci].rules;
      const Field eni = input ? Field::kIifname : Field::kOifname;
      rules.push_back(neighbourDiscoveryRule());
      Rule vmap;
      vmap.matches = {inSet({eni}, input ? naclIn_[kOwn] : naclOut_[kOwn], Op::kVmap)};
      vmap.comment = input ? "NACL ingress of the ENI's subnet (stateless, every packet)"
                           : "NACL egress of the ENI's subnet (stateless, every packet)";
      rules.push_back(vmap);
      appendConntrackRules(rules);
      rules.push_back(
          verdictRule({inSet({eni}, enisSet_[kOwn])}, Verdict::jump(sgEntry_[kOwn][input ? 1 : 0]),
                      input ? "security groups of the ENI, ingress" : "security groups of the ENI, egress"));
      appendConntrackJump(rules, kOwn);
      rules.push_back(
          verdictRule({}, Verdict::accept(), input ? "not an ENI, or every step allowed" : "every step allowed"));
    }
    for (auto& set : t_.sets) std::sort(set.elements.begin(), set.elements.end());
  }

  // ---------------------------------------------------- routed host
  // A host with ENIs it routes for (and maybe ENIs of its own). Forward: the
  // routed ENIs exactly as in a lab router, other forwarded traffic
  // untouched. Input and output: the own ENIs as in host mode, and the
  // traffic between a routed ENI and the host itself, where the host is no
  // instance: only the routed ENI's side applies (its egress for what it
  // sends the host, its ingress for what the host sends it) unless the
  // host's address is one of its own ENIs': then that ENI's side applies
  // too, found by the address (its rules are keyed by its own interface,
  // which such a packet does not cross).
  void buildRoutedHostChains() {
    if (needsOwnConntrackByAddress()) createOwnConntrackByAddress();
    auto& f = chains_[0].rules;
    f.push_back(verdictRule({inSet({Field::kIifname}, enisSet_[kRouted], Op::kNotInSet),
                             inSet({Field::kOifname}, enisSet_[kRouted], Op::kNotInSet)},
                            Verdict::accept(), "not an ENI's traffic: the host's other forwarding is not filtered"));
    appendForwardRules(f, false);
    for (std::size_t ci = 1; ci < 3; ++ci) {
      const bool input = ci == 1;
      auto& rules = chains_[ci].rules;
      const Field eni = input ? Field::kIifname : Field::kOifname;
      rules.push_back(neighbourDiscoveryRule());
      if (hasOwn_) {
        Rule vmap;
        vmap.matches = {inSet({eni}, input ? naclIn_[kOwn] : naclOut_[kOwn], Op::kVmap)};
        vmap.comment = input ? "NACL ingress of the host ENI's subnet (stateless, every packet)"
                             : "NACL egress of the host ENI's subnet (stateless, every packet)";
        rules.push_back(vmap);
      }
      if (input) appendAntiSpoofing(rules);
      // The own ENI's side of its traffic with a routed ENI, by its address:
      // the source's egress first, then the destination's ingress.
      const int ownDir = input ? 1 : 0;
      auto byAddress = [&](const std::size_t(&maps)[2][2], const char* what) {
        for (int fam = 0; fam < 2; ++fam) {
          Rule r;
          r.matches = {inSet({eni}, enisSet_[kRouted]),
                       inSet(t_.sets[maps[ownDir][fam]].key, maps[ownDir][fam], Op::kVmap)};
          r.comment = what;
          rules.push_back(std::move(r));
        }
      };
      Rule vmap;
      vmap.matches = {inSet({eni}, input ? naclOut_[kRouted] : naclIn_[kRouted], Op::kVmap)};
      vmap.comment = input ? "NACL egress of the routed ENI's subnet, to the host (stateless, every packet)"
                           : "NACL ingress of the routed ENI's subnet, from the host (stateless, every packet)";
      if (input) rules.push_back(vmap);
      if (hasOwn_)
        byAddress(byAddrNacl_, input ? "a routed ENI to the host's own ENI: that ENI's NACL ingress"
                                     : "the host's own ENI to a routed ENI: that ENI's NACL egress");
      if (!input) rules.push_back(vmap);
      appendConntrackRules(rules);
      if (hasOwn_)
        rules.push_back(verdictRule(
            {inSet({eni}, enisSet_[kOwn])}, Verdict::jump(sgEntry_[kOwn][input ? 1 : 0]),
            input ? "security groups of the host's ENI, ingress" : "security groups of the host's ENI, egress"));
      const auto routedGroups =
          verdictRule({inSet({eni}, enisSet_[kRouted])}, Verdict::jump(sgEntry_[kRouted][input ? 0 : 1]),
                      input ? "security groups of the routed ENI, egress (to the host)"
                            : "security groups of the routed ENI, ingress (from the host)");
      if (input) rules.push_back(routedGroups);
      if (hasOwn_)
        byAddress(byAddrSg_, input ? "a routed ENI to the host's own ENI: that ENI's groups, ingress"
                                   : "the host's own ENI to a routed ENI: that ENI's groups, egress");
      if (!input) rules.push_back(routedGroups);
      if (hasOwn_) appendConntrackJump(rules, kOwn);
      // With the host itself, the routed ENI's allowance and timeouts too
      // (keyed by its interface, which is the packet's), then the own ENI's
      // by its address.
      if (!conntrackChain_[kRouted].empty()) {
        Rule r = verdictRule({inSet({eni}, enisSet_[kRouted])}, Verdict::jump(conntrackChain_[kRouted]),
                             "connection tracking of the routed ENI's new flows with the host");
        r.ctState = CtState::kNew;
        rules.push_back(std::move(r));
      }
      if (needsOwnConntrackByAddress())
        for (int fam = 0; fam < 2; ++fam) {
          const std::size_t m = ownCtByAddr_[input ? 1 : 0][fam];
          Rule r;
          r.ctState = CtState::kNew;
          r.matches = {inSet({eni}, enisSet_[kRouted]), inSet(t_.sets[m].key, m, Op::kVmap)};
          r.comment = input ? "a routed ENI's new flow to the host's own ENI: that ENI's allowance and timeouts"
                            : "the host's own ENI's new flow to a routed ENI: its allowance and timeouts";
          rules.push_back(std::move(r));
        }
      rules.push_back(
          verdictRule({}, Verdict::accept(), input ? "not an ENI, or every step allowed" : "every step allowed"));
    }
    for (auto& set : t_.sets) std::sort(set.elements.begin(), set.elements.end());
  }

  // ---------------------------------------------------------- forward
  void buildForward() {
    appendForwardRules(chains_.front().rules, true);
    // Sets keyed by interface list elements in ENI order; sort for stable output.
    for (auto& set : t_.sets) std::sort(set.elements.begin(), set.elements.end());
  }

  void appendAntiSpoofing(std::vector<Rule>& f) const {
    // The address lookup first: its family check ends the rule for the other
    // family at once, and a packet from an ENI's own address needs one lookup.
    f.push_back(dropRule(
        {inSet({Field::kIifname, Field::kIpSaddr}, src4_, Op::kNotInSet), inSet({Field::kIifname}, enisSet_[kRouted])},
        dropChain_[kRouted][kSpoof], "anti-spoofing: an ENI sends only from its own IPv4 addresses"));
    f.push_back(dropRule(
        {inSet({Field::kIifname, Field::kIp6Saddr}, src6_, Op::kNotInSet), inSet({Field::kIifname}, enisSet_[kRouted])},
        dropChain_[kRouted][kSpoof], "anti-spoofing: an ENI sends only from its own IPv6 addresses"));
  }

  // The NACL verdict cache's rules (docs/ruleset.md, "NACL verdict cache"):
  // the hits after anti-spoofing, the stores where an established packet has
  // passed the NACLs. Related packets (ICMP errors)
  // never take the shortcut: their addresses are not the flow's.
  // A hit needs the packet to come from an ENI: anti-spoofing pins such a
  // packet's interface to its source address, which is what makes the cached
  // verdict its own; a packet with an established flow's tuple from a gateway
  // or peering link (whose sources are not checked) takes the full path.
  Rule cacheRule(VerdictCache::Step step, bool reply, std::string comment) const {
    Rule r;
    r.ctState = CtState::kEstablished;
    r.cache = VerdictCache{step, reply};
    if (step == VerdictCache::Step::kHit) r.matches = {inSet({Field::kIifname}, enisSet_[kRouted])};
    r.counter = step == VerdictCache::Step::kHit;
    r.verdict = Verdict::accept();
    r.comment = std::move(comment);
    return r;
  }

  // The routed ENIs' forwarding, as a lab router filters it. `cache`: with
  // the NACL verdict cache (a lab router, whose conntrack marks are
  // vpcfw's; a host's may be other software's).
  void appendForwardRules(std::vector<Rule>& f, bool cache) const {
    using Step = VerdictCache::Step;
    // Anti-spoofing first, for every packet: conntrack's tuple has no
    // interface, so a packet forged with an established flow's tuple on
    // another ENI's interface must still die here.
    appendAntiSpoofing(f);
    if (cache)
      for (bool reply : {false, true})
        f.push_back(cacheRule(Step::kHit, reply,
                              fmt::format("the flow's {} direction passed the NACLs", reply ? "reply" : "original")));
    Rule vmap;
    vmap.matches = {inSet({Field::kIifname}, naclOut_[kRouted], Op::kVmap)};
    vmap.comment = "NACL egress of the source subnet (stateless, every packet)";
    f.push_back(vmap);
    vmap.matches = {inSet({Field::kOifname}, naclIn_[kRouted], Op::kVmap)};
    vmap.comment = "NACL ingress of the destination subnet (stateless, every packet)";
    f.push_back(vmap);
    if (cache) {
      for (bool reply : {false, true}) {
        const char* dir = reply ? "reply" : "original";
        f.push_back(
            cacheRule(Step::kExtend, reply,
                      fmt::format("security groups are stateful; the {} direction's NACL verdict is cached", dir)));
        f.push_back(cacheRule(Step::kRestart, reply,
                              fmt::format("security groups are stateful; the {} direction's NACL verdict is cached "
                                          "(anew)",
                                          dir)));
      }
      f.push_back(conntrackAccept(CtState::kRelated, "security groups are stateful: ICMP errors about admitted flows"));
      appendInvalidRule(f);
    } else {
      appendConntrackRules(f);
    }
    f.push_back(verdictRule({inSet({Field::kIifname}, enisSet_[kRouted])}, Verdict::jump(sgEntry_[kRouted][0]),
                            "security groups of the source ENI, egress"));
    f.push_back(verdictRule({inSet({Field::kOifname}, enisSet_[kRouted])}, Verdict::jump(sgEntry_[kRouted][1]),
                            "security groups of the destination ENI, ingress"));
    appendConntrackJump(f, kRouted);
    f.push_back(verdictRule({}, Verdict::accept(), "every step allowed"));
  }
};

}  // namespace

namespace detail {

std::vector<Set> memberSets(const model::Model& m, std::size_t g) {
  const auto& group = m.groups[g];
  const std::string base = "grp_" + group.vpcName + "_" + group.name;
  std::vector<Set> out(m.vpcs[group.vpc].ipv6Cidr ? 2 : 1);
  out[0].name = base + "_4";
  out[0].key = {Field::kIpSaddr};
  out[0].comment = clip(fmt::format("members of group {} (primary private IPv4)", group.qualifiedName()));
  for (auto i : group.members)
    out[0].elements.push_back(
        SetElement{{AddressRange{m.instances[i].privateIp, m.instances[i].privateIp}}, std::nullopt});
  if (out.size() == 2) {
    out[1].name = base + "_6";
    out[1].key = {Field::kIp6Saddr};
    out[1].comment = clip(fmt::format("members of group {} (IPv6)", group.qualifiedName()));
    for (auto i : group.members)
      for (const auto& a : m.instances[i].ipv6Addresses)
        out[1].elements.push_back(SetElement{{AddressRange{a, a}}, std::nullopt});
  }
  // In the order every set of a ruleset ends up in.
  for (auto& s : out) std::sort(s.elements.begin(), s.elements.end());
  return out;
}

Expected<std::vector<std::string>> fabricsOf(const model::Model& m, const Placement& p) {
  if (p.byInstance.size() != m.instances.size())
    return makeError(ErrorCode::kInternal, "placement does not match the model's instances");
  std::map<std::string, std::map<std::string, std::string>> ifnames;  // fabric -> ifname -> instance
  std::set<std::string> fabrics;
  std::map<std::string, bool> hostFabrics;
  for (std::size_t i = 0; i < m.instances.size(); ++i) {
    if (!p.byInstance[i]) continue;
    const auto& a = *p.byInstance[i];
    auto [it, fresh] = ifnames[a.fabric].emplace(a.ifname, m.instances[i].name);
    if (!fresh)
      return makeError(ErrorCode::kInvalidArgument, fmt::format("instances {} and {} share interface {} in {}",
                                                                it->second, m.instances[i].name, a.ifname, a.fabric));
    fabrics.insert(a.fabric);
    auto [mode, first] = hostFabrics.emplace(a.fabric, a.hostMode);
    if (!first && mode->second != a.hostMode)
      return makeError(
          ErrorCode::kInvalidArgument,
          fmt::format("fabric {} mixes lab namespaces and host interfaces; a lab VPC and a host need different names",
                      a.fabric));
  }
  return std::vector<std::string>(fabrics.begin(), fabrics.end());
}

Expected<Ruleset> compileFabric(const model::Model& m, const Placement& p, const std::string& fabric,
                                const std::vector<char>* only, FabricLayout* layout, const CompileOptions& options) {
  return FabricCompiler(m, p, fabric, options, only, layout).run();
}

}  // namespace detail

std::string flowLogPrefixText(const FlowLogPrefix& p) {
  if (p.kind == FlowLogPrefix::Kind::kTcp) return std::string(kFlowLogTcpPrefix);
  return fmt::format("{} {} {}", kFlowLogDropPrefix, p.stage, p.ifname);
}

std::optional<FlowLogPrefix> parseFlowLogPrefix(std::string_view prefix) {
  if (prefix == kFlowLogTcpPrefix) return FlowLogPrefix{FlowLogPrefix::Kind::kTcp, {}, {}};
  if (!prefix.starts_with(kFlowLogDropPrefix) || !prefix.substr(kFlowLogDropPrefix.size()).starts_with(' '))
    return std::nullopt;
  const std::string_view rest = prefix.substr(kFlowLogDropPrefix.size() + 1);
  const auto sp = rest.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  const std::string_view stage = rest.substr(0, sp), ifname = rest.substr(sp + 1);
  // Interface names have no spaces, and at most 15 bytes.
  constexpr std::string_view kStages[] = {"nacl-egress", "nacl-ingress",     "sg-egress",
                                          "sg-ingress",  "allowance-egress", "allowance-ingress"};
  if (std::find(std::begin(kStages), std::end(kStages), stage) == std::end(kStages) || ifname.empty() ||
      ifname.size() > 15 || ifname.find(' ') != std::string_view::npos)
    return std::nullopt;
  return FlowLogPrefix{FlowLogPrefix::Kind::kDrop, std::string(stage), std::string(ifname)};
}

Placement labPlacement(const model::Model& m) {
  Placement p;
  for (const auto& inst : m.instances) {
    if (inst.vpc == kNone) {
      p.byInstance.push_back(std::nullopt);
      continue;
    }
    if (inst.placement.kind == model::Placement::Kind::kHostInterface) {
      p.byInstance.push_back(Attachment{inst.placement.host, inst.placement.interface, true, inst.placement.routed});
      continue;
    }
    p.byInstance.push_back(
        Attachment{names::routerNamespace(m.vpcs[inst.vpc].name), names::eniInterface(inst.name), false});
  }
  return p;
}

Expected<std::vector<Ruleset>> compileRulesets(const model::Model& m, const Placement& p,
                                               const CompileOptions& options) {
  auto fabrics = detail::fabricsOf(m, p);
  if (!fabrics) return unexpected(fabrics.error());
  std::vector<Ruleset> out;
  for (const auto& f : *fabrics) {
    auto r = FabricCompiler(m, p, f, options).run();
    if (!r) return unexpected(r.error());
    out.push_back(std::move(*r));
  }
  return out;
}

}  // namespace vpcfw::compile
