// The exactness proof of vpcfw reach: random valid configs (one or two VPCs,
// internet gateways and public IPs, peering, custom NACLs with overlapping
// allow and deny rules in random number order, groups with CIDR, group and
// prefix-list peers, IPv4 and IPv6) and many random concrete flows per
// config, with ports, ICMP types and addresses at the edges of the rules'
// ranges. For every flow, reach membership must equal
// eval::explainFlow(...).reachable(). A failure prints the seed and the flow;
// VPCFW_REACH_SEED=N reruns one config, VPCFW_REACH_CONFIGS=N runs more.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cstdlib>
#include <random>
#include <set>

#include "support/test_config.h"
#include "vpcfw/analysis/reach.h"
#include "vpcfw/config/loader.h"
#include "vpcfw/eval/report.h"

using namespace vpcfw;

namespace {

class Gen {
 public:
  explicit Gen(std::uint64_t seed) : rng_(seed) {}

  int below(int n) { return static_cast<int>(rng_() % static_cast<std::uint64_t>(n)); }
  bool chance(int percent) { return below(100) < percent; }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<std::size_t>(below(static_cast<int>(v.size())))];
  }

 private:
  std::mt19937_64 rng_;
};

const std::vector<std::string> kPorts = {
    "0",      "22",         "80",          "443",         "1023",   "1024",    "5432", "32768",     "49152",   "65535",
    "0-1023", "1024-65535", "32768-61000", "49152-65535", "80-443", "1-65534", "all",  "1025-5000", "443-8443"};

struct Vpc {
  int index;
  bool ipv6, igw;
  std::vector<int> subnets;  // subnet numbers (third octet)
  std::vector<std::string> groups;
};

// A random config as YAML, and the facts the flow generator needs.
struct RandomConfig {
  std::string yaml;
  std::vector<std::string> v4Cidrs, v6Cidrs;  // every CIDR the rules name, for edge addresses
};

std::string v4Cidr(Gen& g, const Vpc& v, const std::vector<Vpc>& vpcs) {
  const Vpc& o = vpcs[static_cast<std::size_t>(g.below(static_cast<int>(vpcs.size())))];
  switch (g.below(9)) {
    case 0:
      return "0.0.0.0/0";
    case 1:
      return fmt::format("10.{}.0.0/16", v.index);
    case 2:
      return fmt::format("10.{}.{}.0/24", o.index, o.subnets[static_cast<std::size_t>(g.below(int(o.subnets.size())))]);
    case 3:
      return fmt::format("10.{}.{}.{}/32", o.index, o.subnets[0], 10 + g.below(3));
    case 4:
      return "198.51.100.0/24";
    case 5:
      return fmt::format("203.0.113.{}/{}", 64 * g.below(4), 26 + g.below(7));
    case 6:
      return "192.0.2.0/25";
    case 7:
      return "128.0.0.0/1";
    default:
      return fmt::format("10.{}.0.0/16", o.index);
  }
}

std::string v6Cidr(Gen& g, const Vpc& v) {
  switch (g.below(5)) {
    case 0:
      return "::/0";
    case 1:
      return fmt::format("2001:db8:{}::/56", v.index);
    case 2:
      return fmt::format("2001:db8:{}:{}::/64", v.index, v.subnets[0]);
    case 3:
      return "2001:db8:ffff::/48";
    default:
      return "8000::/1";
  }
}

// protocol, ports and ICMP fields of a rule for a peer of `v6` family.
std::string ruleFields(Gen& g, bool v6, bool nacl) {
  const int k = g.below(10);
  if (k < 3) return fmt::format("protocol: tcp, ports: {}", g.pick(kPorts));
  if (k < 5) return fmt::format("protocol: udp, ports: {}", g.pick(kPorts));
  if (k < 7) {
    std::string out = v6 ? "protocol: icmpv6" : "protocol: icmp";
    const std::vector<int> types = v6 ? std::vector<int>{-1, 128, 129, 1} : std::vector<int>{-1, 0, 8, 3, 13, 14};
    const int type = g.pick(types);
    if (type != -1) {
      out += fmt::format(", icmp_type: {}", type);
      if (g.chance(30)) out += fmt::format(", icmp_code: {}", g.below(2));
    }
    return out;
  }
  if (k < 9) return "protocol: all";
  if (nacl && !v6 && g.chance(50)) return "protocol: 58";  // AWS: all ICMP with an IPv4 CIDR
  return fmt::format("protocol: {}", g.pick(std::vector<int>{47, 50, 132}));
}

RandomConfig randomConfig(std::uint64_t seed) {
  Gen g(seed);
  RandomConfig rc;
  std::string& y = rc.yaml;
  std::vector<Vpc> vpcs;
  const int nv = 1 + g.below(2);
  for (int i = 0; i < nv; ++i) {
    Vpc v{i, g.chance(70), g.chance(80), {}, {}};
    const int ns = 2 + g.below(2);
    for (int s = 0; s < ns; ++s) v.subnets.push_back(s + 1);
    const int ng = 2 + g.below(2);
    for (int k = 0; k < ng; ++k) v.groups.push_back(fmt::format("g{}", k));
    vpcs.push_back(v);
  }
  const bool peering = nv == 2 && g.chance(70);
  const bool peeringActive = peering && g.chance(80);
  y += "vpcs:\n";
  for (const auto& v : vpcs)
    y += fmt::format("  - {{name: v{}, cidr: 10.{}.0.0/16{}}}\n", v.index, v.index,
                     v.ipv6 ? fmt::format(", ipv6_cidr: \"2001:db8:{}::/56\"", v.index) : "");
  y += "internet_gateways:\n";
  for (const auto& v : vpcs)
    if (v.igw) y += fmt::format("  - {{name: igw{}, vpc: v{}}}\n", v.index, v.index);
  if (peering)
    y += fmt::format("peerings: [{{name: p01, requester: v0, accepter: v1, status: {}}}]\n",
                     peeringActive ? "active" : "pending-acceptance");
  y += "prefix_lists:\n  - {name: office, entries: [198.51.100.0/25, 192.0.2.8/29]}\n"
       "  - {name: office6, entries: [\"2001:db8:ffff::/48\"]}\n";
  rc.v4Cidrs = {"198.51.100.0/25", "192.0.2.8/29"};
  rc.v6Cidrs = {"2001:db8:ffff::/48"};

  y += "route_tables:\n";
  for (const auto& v : vpcs) {
    y += fmt::format("  - name: pub\n    vpc: v{}\n    routes:\n", v.index);
    if (v.igw) {
      y += fmt::format("      - {{destination: 0.0.0.0/0, internet_gateway: igw{}}}\n", v.index);
      if (v.ipv6) y += fmt::format("      - {{destination: \"::/0\", internet_gateway: igw{}}}\n", v.index);
    }
    if (peering) {
      y += fmt::format("      - {{destination: 10.{}.0.0/{}, peering: p01}}\n", 1 - v.index, g.chance(70) ? 16 : 24);
      if (g.chance(30)) y += "      - {destination: 198.51.100.0/24, peering: p01}\n";
    }
    if ((v.igw || peering) && g.chance(30))
      y += "      - {destination: 203.0.113.128/25, " +
           (v.igw ? fmt::format("internet_gateway: igw{}", v.index) : std::string("peering: p01")) + "}\n";
    if (!v.igw && !peering) y += "      []\n";
  }
  // A route table without routes of its own is an empty list; fix the YAML for that case.
  for (std::string::size_type at; (at = y.find("    routes:\n      []\n")) != std::string::npos;)
    y.replace(at, std::string("    routes:\n      []\n").size(), "    routes: []\n");

  y += "network_acls:\n";
  for (const auto& v : vpcs)
    for (int a = 0; a < 2; ++a) {
      y += fmt::format("  - name: acl{}\n    vpc: v{}\n", a, v.index);
      for (const char* dir : {"ingress", "egress"}) {
        y += fmt::format("    {}:\n", dir);
        std::set<int> numbers;
        const int n = 2 + g.below(7);
        for (int r = 0; r < n; ++r) {
          int number;
          do number = 1 + g.below(300);
          while (!numbers.insert(number).second);
          const bool v6 = v.ipv6 && g.chance(30);
          const std::string cidr = v6 ? v6Cidr(g, v) : v4Cidr(g, v, vpcs);
          (v6 ? rc.v6Cidrs : rc.v4Cidrs).push_back(cidr);
          y += fmt::format("      - {{rule: {}, {}, cidr: \"{}\", action: {}}}\n", number, ruleFields(g, v6, true),
                           cidr, g.chance(65) ? "allow" : "deny");
        }
        // Sometimes one protocol denied from a range and another from a
        // second range, ahead of broad allows: answers that differ only in
        // which protocol gets through.
        if (g.chance(30))
          for (const char* proto : {"tcp", "udp"}) {
            const std::string cidr = v4Cidr(g, v, vpcs);
            rc.v4Cidrs.push_back(cidr);
            y += fmt::format("      - {{rule: {}, protocol: {}, ports: all, cidr: \"{}\", action: deny}}\n",
                             proto[0] == 't' ? 301 : 302, proto, cidr);
          }
        // Often a broad allow late, as real NACLs have, so that flows get through.
        if (g.chance(60))
          y += fmt::format("      - {{rule: {}, protocol: all, cidr: 0.0.0.0/0, action: allow}}\n", 400 + g.below(50));
        if (v.ipv6 && g.chance(50))
          y += fmt::format("      - {{rule: {}, protocol: all, cidr: \"::/0\", action: allow}}\n", 500 + g.below(50));
      }
    }

  y += "security_groups:\n";
  for (const auto& v : vpcs)
    for (const auto& name : v.groups) {
      y += fmt::format("  - name: {}\n    vpc: v{}\n", name, v.index);
      for (const char* dir : {"ingress", "egress"}) {
        if (std::string(dir) == "egress" && g.chance(40)) continue;  // AWS's default: all out
        const int n = g.below(6);
        if (n == 0) {
          y += fmt::format("    {}: []\n", dir);
          continue;
        }
        y += fmt::format("    {}:\n", dir);
        std::set<std::string> seen;
        for (int r = 0; r < n; ++r) {
          const int kind = g.below(10);
          const bool v6 = v.ipv6 && g.chance(30);
          std::string peer;
          if (kind < 5) {
            const std::string cidr = v6 ? v6Cidr(g, v) : v4Cidr(g, v, vpcs);
            (v6 ? rc.v6Cidrs : rc.v4Cidrs).push_back(cidr);
            peer = fmt::format("cidr: \"{}\"", cidr);
          } else if (kind < 8) {
            const bool remote = peeringActive && g.chance(30);
            const Vpc& o = remote ? vpcs[static_cast<std::size_t>(1 - v.index)] : v;
            peer = remote ? fmt::format("group: v{}/{}", o.index, g.pick(o.groups))
                          : fmt::format("group: {}", g.pick(o.groups));
          } else {
            peer = v6 ? "prefix_list: office6" : "prefix_list: office";
          }
          std::string rule = fmt::format("{}, {}", ruleFields(g, v6, false), peer);
          if (seen.insert(rule).second) y += fmt::format("      - {{{}}}\n", rule);
        }
        if (seen.empty()) y += "      []\n";
      }
    }

  y += "subnets:\n";
  for (const auto& v : vpcs)
    for (int s : v.subnets) {
      y += fmt::format("  - {{name: s{}-{}, vpc: v{}, cidr: 10.{}.{}.0/24", v.index, s, v.index, v.index, s);
      if (v.ipv6) y += fmt::format(", ipv6_cidr: \"2001:db8:{}:{}::/64\"", v.index, s);
      if (g.chance(70)) y += ", route_table: pub";
      if (g.chance(75)) y += fmt::format(", network_acl: acl{}", g.below(2));
      y += "}\n";
    }

  y += "instances:\n";
  int publicHost = 10;
  for (const auto& v : vpcs)
    for (int s : v.subnets) {
      const int n = 1 + g.below(3);
      for (int k = 0; k < n; ++k) {
        y += fmt::format("  - {{name: i{}-{}-{}, subnet: s{}-{}, private_ip: 10.{}.{}.{}", v.index, s, k, v.index, s,
                         v.index, s, 10 + k);
        if (g.chance(20)) y += fmt::format(", secondary_ips: [10.{}.{}.{}]", v.index, s, 100 + k);
        if (v.ipv6 && g.chance(70)) y += fmt::format(", ipv6_addresses: [\"2001:db8:{}:{}::{}\"]", v.index, s, 10 + k);
        if (v.igw && g.chance(60)) y += fmt::format(", public_ip: 203.0.113.{}", publicHost++);
        if (g.chance(85)) {
          y += ", security_groups: [" + g.pick(v.groups);
          if (g.chance(30)) y += ", " + v.groups.back();
          y += "]";
        }
        y += "}\n";
      }
    }
  // Two groups picked alike on one instance would be a duplicate: keep the YAML valid.
  for (const auto& v : vpcs)
    for (const auto& gname : v.groups) {
      const std::string dup = fmt::format("[{}, {}]", gname, gname);
      for (std::string::size_type at; (at = y.find(dup)) != std::string::npos;)
        y.replace(at, dup.size(), "[" + gname + "]");
    }
  return rc;
}

// Addresses at every edge of the rules' CIDRs, for internet ends.
std::vector<net::IpAddress> edgeAddresses(const std::vector<std::string>& cidrs) {
  std::vector<net::IpAddress> out;
  for (const auto& text : cidrs) {
    auto c = net::Cidr::parse(text);
    if (!c) continue;
    for (auto a : {c->cidr.network(), c->cidr.last()}) {
      out.push_back(a);
      out.push_back(a.offset(1));
      out.push_back(a.offset(-1));
    }
  }
  return out;
}

struct Edges {
  std::vector<net::IpAddress> v4, v6;
  std::vector<int> ports;
};

Edges edgesOf(const RandomConfig& rc) {
  Edges e{edgeAddresses(rc.v4Cidrs), edgeAddresses(rc.v6Cidrs), {}};
  for (const auto& p : kPorts) {
    auto r = net::PortRange::parse(p);
    for (int v : {int(r->from) - 1, int(r->from), int(r->to), int(r->to) + 1})
      if (v >= 0 && v <= 65535) e.ports.push_back(v);
  }
  return e;
}

const std::vector<int> kSourcePorts = {0,     1,     1023,  1024,  1025,  4999,  5000,  5001,  32767, 32768,
                                       32769, 49151, 49152, 50000, 60999, 61000, 61001, 65534, 65535};

void setFields(eval::FlowRequest& req, const analysis::FlowPoint& f) {
  req.family = f.family;
  req.protocol = net::Protocol(f.protocol);
  req.port = f.port;
  req.sourcePort = f.sourcePort;
  req.icmpType = f.icmpType;
  req.icmpCode = f.icmpCode;
}

// An address explain takes for an internet host (not an ENI's, not a public IP).
bool internetHost(const model::Model& m, const net::IpAddress& a) {
  return m.instanceWithAddress(a) == model::kNone && m.instanceWithPublicIp(a) == model::kNone;
}

// A flow anywhere: random ends and fields, biased to the rules' edges.
bool randomFlow(Gen& g, const model::Model& m, const Edges& edges, eval::FlowRequest& req, analysis::FlowPoint& f) {
  const auto& inst = m.instances;
  const std::size_t a = static_cast<std::size_t>(g.below(static_cast<int>(inst.size())));
  std::size_t b = static_cast<std::size_t>(g.below(static_cast<int>(inst.size())));
  if (b == a) b = (b + 1) % inst.size();
  const int ends = g.below(10);  // 0-5: instance pair, 6-7: from the internet, 8-9: to the internet
  const bool v6 = g.chance(35);
  f.family = v6 ? net::Family::kIpv6 : net::Family::kIpv4;
  if (ends >= 6) {
    const auto& pool = v6 ? edges.v6 : edges.v4;
    if (g.chance(80) && !pool.empty())
      f.remote = g.pick(pool);
    else
      f.remote = *net::IpAddress::parse(
          v6 ? fmt::format("2001:db8:ff{:02x}::{:x}", g.below(256), g.below(65536))
             : fmt::format("{}.{}.{}.{}", 1 + g.below(223), g.below(256), g.below(256), g.below(256)));
    // An ENI's address or a public IP stands for its instance in explain; reach
    // names instances by name, so those flows are the instance pairs' flows.
    if (!internetHost(m, f.remote)) return false;
  }
  if (ends < 8) {
    f.toInstance = b;
    req.to = inst[b].name;
  } else {
    req.to = f.remote.toString();
  }
  if (ends < 6 || ends >= 8) {
    f.fromInstance = a;
    req.from = inst[a].name;
  } else {
    req.from = f.remote.toString();
  }
  const int pk = g.below(20);
  const int icmp = v6 ? 58 : 1;
  f.protocol = pk < 7    ? 6
               : pk < 11 ? 17
               : pk < 16 ? icmp
               : pk < 17 ? 59 - icmp
                         : g.pick(std::vector<int>{0, 4, 47, 50, 132, 255});
  f.port = static_cast<std::uint16_t>(g.chance(85) ? g.pick(edges.ports) : g.below(65536));
  f.sourcePort = static_cast<std::uint16_t>(g.chance(85) ? g.pick(kSourcePorts) : g.below(65536));
  f.icmpType = g.chance(80) ? g.pick(std::vector<int>{0, 1, 3, 8, 13, 14, 128, 129, 255}) : g.below(256);
  f.icmpCode = g.chance(80) ? g.pick(std::vector<int>{0, 1, 2, 255}) : g.below(256);
  setFields(req, f);
  return true;
}

// A value at an edge of [first, last], one past it, or inside.
int nearSpan(Gen& g, analysis::Span s, int max) {
  int v;
  switch (g.below(5)) {
    case 0:
      v = int(s.first) - 1;
      break;
    case 1:
      v = int(s.last) + 1;
      break;
    case 2:
      v = int(s.first);
      break;
    case 3:
      v = int(s.last);
      break;
    default:
      v = int(s.first) + g.below(int(s.last - s.first) + 1);
  }
  return std::clamp(v, 0, max);
}

// A flow at or next to an edge of a piece that reach says is reachable.
bool nearAnswer(Gen& g, const model::Model& m, const analysis::ReachResult& r, eval::FlowRequest& req,
                analysis::FlowPoint& f) {
  std::vector<const analysis::PairReach*> some;
  for (const auto& p : r.pairs)
    if (!p.protocols.empty()) some.push_back(&p);
  if (some.empty()) return false;
  const auto& p = *g.pick(some);
  const auto& pr = g.pick(p.protocols);
  f.family = p.family;
  auto end = [&](const analysis::Endpoint& e, std::size_t& instance, std::string& text) {
    if (!e.isInternet()) {
      instance = e.instance;
      text = m.instances[e.instance].name;
      return true;
    }
    const auto& range = g.pick(e.ranges);
    const int k = g.below(4);
    f.remote = k == 0 ? range.first.offset(-1) : k == 1 ? range.last.offset(1) : k == 2 ? range.first : range.last;
    text = f.remote.toString();
    return internetHost(m, f.remote);
  };
  if (!end(p.from, f.fromInstance, req.from) || !end(p.to, f.toInstance, req.to)) return false;
  f.protocol = nearSpan(g, g.pick(pr.protocols), 255);
  const auto& fwd = g.pick(pr.forward);
  f.port = static_cast<std::uint16_t>(nearSpan(g, fwd.ports, 65535));
  f.sourcePort =
      static_cast<std::uint16_t>(pr.reply.empty() ? 50000 : nearSpan(g, g.pick(pr.reply).sourcePorts, 65535));
  f.icmpType = nearSpan(g, fwd.types, 255);
  f.icmpCode = nearSpan(g, fwd.codes, 255);
  setFields(req, f);
  return true;
}

struct Counts {
  std::size_t configs = 0, flows = 0, reachable = 0, failures = 0, narrow = 0;
  // Reachable flows by kind, so that a run shows it tested each: between
  // instances, from and to the internet, IPv6, ICMP, protocols without ports.
  std::size_t betweenInstances = 0, fromInternet = 0, toInternet = 0, ipv6 = 0, icmp = 0, portless = 0;
};

void checkConfig(std::uint64_t seed, std::size_t flowsPerConfig, Counts& counts) {
  const RandomConfig rc = randomConfig(seed);
  Diagnostics diags;
  auto loaded = config::loadConfigString(rc.yaml, "random.yaml", diags);
  INFO("seed " << seed << "\n" << rc.yaml << "\n" << diags.format());
  REQUIRE(loaded.has_value());
  const model::Model& m = *loaded;
  ++counts.configs;

  // Every pair, both families: VPC to VPC, the internet to each VPC and back.
  analysis::ReachResult all;
  auto add = [&](const std::string& from, const std::string& to) {
    auto r = analysis::computeReach(m, {from, to, std::nullopt});
    if (!r) return;  // e.g. a VPC to itself with one instance
    for (auto& p : r->pairs) all.pairs.push_back(std::move(p));
  };
  for (const auto& a : m.vpcs) {
    for (const auto& b : m.vpcs) add(a.name, b.name);
    add("internet", a.name);
    add(a.name, "internet");
  }

  Gen g(seed * 7919 + 1);
  const Edges edges = edgesOf(rc);
  for (std::size_t i = 0; i < flowsPerConfig; ++i) {
    eval::FlowRequest req;
    analysis::FlowPoint f;
    // Half the flows at and just outside the edges of what reach found (the
    // places an off-by-one hides), half anywhere.
    const bool near = i % 2 == 1 && nearAnswer(g, m, all, req, f);
    if (!near) {
      req = {};
      f = {};
      if (!randomFlow(g, m, edges, req, f)) continue;
    }
    if (!req.protocol.hasPorts()) {
      f.port = 0;
      f.sourcePort = 0;
    }
    auto v = eval::explainFlow(m, req);
    const bool expected = v && v->reachable();
    bool got = all.allows(f);
    if (i % 8 == 0) {
      // Again through the narrow request a user would type: this protocol
      // only, the internet host as an address (a CIDR selector).
      auto narrow = analysis::computeReach(m, {req.from, req.to, req.protocol});
      const bool same = narrow ? narrow->allows(f) == got : !got;
      if (!same)
        MESSAGE(fmt::format("seed {}: reach {} -> {} --proto {} disagrees with the full reach", seed, req.from, req.to,
                            f.protocol));
      got = got && same;
      counts.failures += same ? 0 : 1;
      ++counts.narrow;
    }
    ++counts.flows;
    if (expected) {
      ++counts.reachable;
      counts.betweenInstances += f.fromInstance != model::kNone && f.toInstance != model::kNone;
      counts.fromInternet += f.fromInstance == model::kNone;
      counts.toInternet += f.toInstance == model::kNone;
      counts.ipv6 += f.family == net::Family::kIpv6;
      counts.icmp += f.protocol == 1 || f.protocol == 58;
      counts.portless += f.protocol != 1 && f.protocol != 58 && f.protocol != 6 && f.protocol != 17;
    }
    if (expected != got) {
      ++counts.failures;
      MESSAGE(
          fmt::format("seed {}: {} -> {} proto {} port {} sport {} icmp {}/{} family {}: explain says {}, reach "
                      "says {}\n{}",
                      seed, req.from, req.to, f.protocol, req.port, req.sourcePort, f.icmpType, f.icmpCode,
                      net::familyName(f.family), expected ? "reachable" : "not reachable", got ? "reachable" : "not",
                      v ? eval::formatVerdictText(*v) : v.error().message));
    }
  }
}

std::uint64_t envNumber(const char* name, std::uint64_t fallback) {
  const char* text = std::getenv(name);
  return text ? std::strtoull(text, nullptr, 10) : fallback;
}

}  // namespace

TEST_CASE("reach membership equals explain's verdict on random configs and flows") {
  Counts counts;
  const std::uint64_t only = envNumber("VPCFW_REACH_SEED", 0);
  const std::uint64_t configs = envNumber("VPCFW_REACH_CONFIGS", 400);
  for (std::uint64_t seed = only ? only : 1; seed <= (only ? only : configs); ++seed) {
    checkConfig(seed, 150, counts);
    if (counts.failures > 20) break;  // enough to read
  }
  MESSAGE(
      fmt::format("{} configs, {} flows ({} reachable: {} between instances, {} from and {} to the internet, {} "
                  "IPv6, {} ICMP, {} without ports; {} also with a one-protocol request), {} disagreements",
                  counts.configs, counts.flows, counts.reachable, counts.betweenInstances, counts.fromInternet,
                  counts.toInternet, counts.ipv6, counts.icmp, counts.portless, counts.narrow, counts.failures));
  CHECK(counts.failures == 0);
  // The configs let enough of every kind through to mean something.
  CHECK(counts.reachable > counts.flows / 5);
  for (auto n :
       {counts.betweenInstances, counts.fromInternet, counts.toInternet, counts.ipv6, counts.icmp, counts.portless})
    CHECK(n > counts.reachable / 50);
}
