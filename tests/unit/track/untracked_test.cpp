// Untracked flows (lib/track): the compiler's untracked sets agree with the
// evaluator's label, the kernel's bytes are decoded (and bad ones refused),
// and flowsToCut picks exactly the flows AWS would stop.
#include <doctest/doctest.h>

#include <random>

#include "support/test_config.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/track/untracked.h"

using namespace vpcfw;
using model::Direction;
using nft::ApplyReport;

namespace {

// The kernel's layout of one key: every field padded to 4 bytes, the ifname
// to IFNAMSIZ, integers in network order.
std::string keyBytes(const std::vector<compile::Value>& key, bool end) {
  REQUIRE(key.size() == 4);  // ifname . address . l4proto . th dport
  std::string out = std::get<std::string>(key[0]);
  out.resize(16, '\0');
  const auto& a = std::get<compile::AddressRange>(key[1]);
  const auto& addr = end ? a.hi : a.lo;
  out.append(reinterpret_cast<const char*>(addr.bytes().data()), addr.isV4() ? 4 : 16);
  const auto& proto = std::get<compile::IntRange>(key[2]);
  out.push_back(static_cast<char>(end ? proto.hi : proto.lo));  // one byte, padded to 4
  out.append(3, '\0');
  const auto& port = std::get<compile::IntRange>(key[3]);
  const std::uint32_t x = end ? port.hi : port.lo;
  out.push_back(static_cast<char>(x >> 8));  // two bytes in network order, padded to 4
  out.push_back(static_cast<char>(x & 0xff));
  out.append(2, '\0');
  return out;
}

// What ApplyReport::previous would hold for a fabric's compiled ruleset.
std::map<std::string, std::vector<ApplyReport::ElementKey>> asKernel(const compile::Ruleset& rs) {
  std::map<std::string, std::vector<ApplyReport::ElementKey>> out;
  for (const auto& name : track::untrackedSetNames())
    for (const auto& s : rs.table.sets)
      if (s.name == name) {
        auto& v = out[name];
        for (const auto& e : s.elements) v.push_back({keyBytes(e.key, false), keyBytes(e.key, true)});
      }
  return out;
}

const char* kConfig = R"(vpcs: [{name: v, cidr: 10.0.0.0/16, ipv6_cidr: "2001:db8:1::/56"}]
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24, ipv6_cidr: "2001:db8:1:1::/64"}]
security_groups:
  - name: web
    vpc: v
    ingress:
      - {protocol: tcp, ports: 80, cidr: 0.0.0.0/0}
      - {protocol: tcp, ports: 8000-8100, cidr: 0.0.0.0/0}
      - {protocol: udp, ports: 53, cidr: "::/0"}
      - {protocol: tcp, ports: 22, cidr: 198.51.100.0/24}
    egress: []  # not AWS's default allow-all: out-all / out-web decide
  - name: out-all
    vpc: v
    egress:
      - {protocol: all, cidr: 0.0.0.0/0}
      - {protocol: all, cidr: "::/0"}
  - name: out-web
    vpc: v
    egress:
      - {protocol: tcp, ports: 443, cidr: 0.0.0.0/0}
  - name: in-all
    vpc: v
    ingress:
      - {protocol: all, cidr: 0.0.0.0/0}
    egress: []
instances:
  - {name: a, subnet: s, private_ip: 10.0.1.10, secondary_ips: [10.0.1.100], ipv6_addresses: ["2001:db8:1:1::a"], security_groups: [web, out-all]}
  - {name: b, subnet: s, private_ip: 10.0.1.11, security_groups: [web, out-web]}
  - {name: c, subnet: s, private_ip: 10.0.1.12, security_groups: [out-web, in-all]}
)";

std::string without(std::string text, const std::string& line) {
  auto at = text.find(line);
  REQUIRE(at != std::string::npos);
  text.erase(at, line.size());
  return text;
}

track::Flow flow(const char* src, std::uint16_t sport, const char* dst, std::uint16_t dport, std::uint8_t proto = 6) {
  track::Flow f;
  f.src = *net::IpAddress::parse(src);
  f.dst = *net::IpAddress::parse(dst);
  f.srcPort = sport;
  f.dstPort = dport;
  f.protocol = proto;
  return f;
}

std::vector<std::size_t> allInstances(const model::Model& m) {
  std::vector<std::size_t> v(m.instances.size());
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = i;
  return v;
}

track::UntrackedBefore compiledBefore(const model::Model& m) {
  auto rs = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(rs);
  REQUIRE(rs->size() == 1);
  auto u = track::UntrackedBefore::fromKernel(asKernel(rs->front()));
  CHECK(u.unreadable() == 0);
  return u;
}

}  // namespace

TEST_CASE("the compiled untracked sets say what the evaluator says, for every ENI, address, protocol and port") {
  for (const char* example : {"inline", "two-tier", "peering"}) {
    const std::string name = example;
    CAPTURE(name);
    const bool inlineConfig = std::string(example) == "inline";
    model::Model m = inlineConfig ? test::loadOk(kConfig) : test::loadExample(example);
    auto placement = compile::labPlacement(m);
    auto rs = compile::compileRulesets(m, placement);
    REQUIRE(rs);
    std::map<std::string, std::vector<ApplyReport::ElementKey>> kernel;
    for (const auto& r : *rs)
      for (auto& [k, v] : asKernel(r)) kernel[k].insert(kernel[k].end(), v.begin(), v.end());
    auto u = track::UntrackedBefore::fromKernel(kernel);
    CHECK(u.unreadable() == 0);
    std::size_t untracked = 0, checked = 0;
    std::mt19937 rng(7);
    for (std::size_t i = 0; i < m.instances.size(); ++i) {
      if (!placement.byInstance[i]) continue;
      const auto& inst = m.instances[i];
      std::vector<net::IpAddress> addrs{inst.privateIp};
      addrs.insert(addrs.end(), inst.secondaryIps.begin(), inst.secondaryIps.end());
      addrs.insert(addrs.end(), inst.ipv6Addresses.begin(), inst.ipv6Addresses.end());
      std::vector<std::uint16_t> ports{0,   1,    21,   22,   23,   53,   79,   80,   81,
                                       443, 3306, 5432, 7999, 8000, 8050, 8100, 8101, 65535};
      for (int k = 0; k < 40; ++k) ports.push_back(static_cast<std::uint16_t>(rng() & 0xffff));
      for (const auto& addr : addrs)
        for (auto dir : {Direction::kEgress, Direction::kIngress})
          for (std::uint8_t proto : {6, 17})
            for (auto port : ports) {
              const auto other =
                  addr.isV4() ? *net::IpAddress::parse("203.0.113.9") : *net::IpAddress::parse("2001:db8:ffff::9");
              eval::Packet p;
              p.protocol = net::Protocol(proto);
              p.src = dir == Direction::kEgress ? addr : other;
              p.dst = dir == Direction::kEgress ? other : addr;
              p.srcPort = 40000;
              p.dstPort = port;
              const bool want = eval::isUntracked(m, inst, dir, p);
              CAPTURE(inst.name);
              CAPTURE(addr.toString());
              CAPTURE(int(proto));
              CAPTURE(port);
              CAPTURE(model::directionName(dir));
              CHECK(u.untracked(dir, addr, proto, port) == want);
              untracked += want;
              ++checked;
            }
    }
    MESSAGE(name << ": " << checked << " (ENI address, direction, protocol, port) checked, " << untracked
                 << " untracked");
    CHECK(checked > 0);
    if (std::string(example) != "peering") CHECK(untracked > 0);  // the check can see a positive
  }
}

TEST_CASE("elements from the kernel that do not have the sets' layout are refused and counted") {
  const auto addr = *net::IpAddress::parse("10.0.1.10");
  std::vector<compile::Value> good{std::string("eni-a"), compile::AddressRange{addr, addr}, compile::IntRange{6, 6},
                                   compile::IntRange{80, 90}};
  const std::string k = keyBytes(good, false), e = keyBytes(good, true);
  REQUIRE(k.size() == 16 + 4 + 4 + 4);
  std::string otherAddr = e;
  otherAddr[16 + 3] = 11;  // a range over addresses: not what vpcfw writes
  std::string icmp = k;
  icmp[20] = 1;  // protocol 1: ICMP is never untracked
  std::string reversed = e;
  reversed[24] = 0, reversed[25] = 10;  // end port 10 < start 80
  std::map<std::string, std::vector<ApplyReport::ElementKey>> prev;
  prev["untracked_in4"] = {
      {k, e},  {k.substr(0, 20), e.substr(0, 20)}, {k + "x", e + "x"}, {k, otherAddr}, {icmp, icmp}, {k, reversed},
      {"", ""}};
  // A v4-sized key in the v6 set is refused too.
  prev["untracked_out6"] = {{k, e}};
  prev["not_ours"] = {{k, e}};  // other names are ignored
  auto u = track::UntrackedBefore::fromKernel(prev);
  CHECK(u.unreadable() == 7);
  CHECK(u.untracked(Direction::kIngress, addr, 6, 80));
  CHECK(u.untracked(Direction::kIngress, addr, 6, 90));
  CHECK_FALSE(u.untracked(Direction::kIngress, addr, 6, 91));
  CHECK_FALSE(u.untracked(Direction::kIngress, addr, 17, 85));
  CHECK_FALSE(u.untracked(Direction::kEgress, addr, 6, 85));
  CHECK_FALSE(u.untracked(Direction::kIngress, *net::IpAddress::parse("10.0.1.11"), 6, 85));
  // A single value (no key end) is read as a one-port range.
  std::map<std::string, std::vector<ApplyReport::ElementKey>> single;
  single["untracked_in4"] = {{k, ""}};
  auto s = track::UntrackedBefore::fromKernel(single);
  CHECK(s.unreadable() == 0);
  CHECK(s.untracked(Direction::kIngress, addr, 6, 80));
  CHECK_FALSE(s.untracked(Direction::kIngress, addr, 6, 81));
}

TEST_CASE("overlapping ranges from an untrusted kernel are still looked up right") {
  track::UntrackedBefore u;
  const auto a = *net::IpAddress::parse("10.0.1.10");
  u.add(Direction::kIngress, a, 6, 10, 1000);
  u.add(Direction::kIngress, a, 6, 20, 30);
  u.add(Direction::kIngress, a, 6, 500, 600);
  for (std::uint16_t p : {10, 25, 31, 499, 550, 601, 1000}) CHECK(u.untracked(Direction::kIngress, a, 6, p));
  CHECK_FALSE(u.untracked(Direction::kIngress, a, 6, 9));
  CHECK_FALSE(u.untracked(Direction::kIngress, a, 6, 1001));
}

TEST_CASE("removing the rule that made a flow untracked cuts it; tracked flows and flows still allowed stay") {
  auto before = test::loadOk(kConfig);
  auto u = compiledBefore(before);
  // a: tcp 80 from 0.0.0.0/0 with all egress -> untracked ingress on 80.
  REQUIRE(u.untracked(Direction::kIngress, *net::IpAddress::parse("10.0.1.10"), 6, 80));
  // b has only tcp 443 egress: its flows are tracked.
  REQUIRE_FALSE(u.untracked(Direction::kIngress, *net::IpAddress::parse("10.0.1.11"), 6, 80));

  auto now = test::loadOk(without(kConfig, "      - {protocol: tcp, ports: 80, cidr: 0.0.0.0/0}\n"));
  const std::vector<track::Flow> flows{
      flow("198.51.100.7", 40000, "10.0.1.10", 80),           // 0: untracked at a, rule gone -> cut
      flow("198.51.100.7", 40001, "10.0.1.100", 80),          // 1: the same on a's secondary address -> cut
      flow("198.51.100.7", 40002, "10.0.1.11", 80),           // 2: tracked at b -> stays
      flow("198.51.100.7", 40003, "10.0.1.10", 8050),         // 3: untracked, still allowed -> stays
      flow("198.51.100.7", 40004, "10.0.1.10", 22),           // 4: tracked (not from 0.0.0.0/0) -> stays
      flow("198.51.100.7", 40005, "10.0.1.10", 80, 17),       // 5: udp 80 was never open -> stays (not untracked)
      flow("10.0.1.10", 40006, "10.0.1.100", 80),             // 6: within one instance -> not judged
      flow("198.51.100.7", 40007, "10.0.9.9", 80),            // 7: no ENI owns it -> not judged
      flow("2001:db8::7", 40008, "2001:db8:1:1::a", 53, 17),  // 8: udp 53 from ::/0, rule kept -> stays
  };
  auto cuts = track::flowsToCut(u, now, allInstances(now), flows);
  REQUIRE(cuts.size() == 2);
  CHECK(cuts[0].flow.describe() == "tcp 198.51.100.7:40000 -> 10.0.1.10:80");
  CHECK(cuts[1].flow.describe() == "tcp 198.51.100.7:40001 -> 10.0.1.100:80");
  CHECK(cuts[0].index == 0);  // where each stands in `flows`: how the kernel entry is found again
  CHECK(cuts[1].index == 1);
  CHECK(cuts[0].why.find("a ingress") != std::string::npos);
  CHECK(cuts[0].why.find("request") != std::string::npos);

  // With the rule still there, nothing is cut: the same flows, the same sets.
  CHECK(track::flowsToCut(u, before, allInstances(before), flows).empty());
  // An ENI that is not among the fabric's is not judged.
  CHECK(track::flowsToCut(u, now, {1, 2}, flows).empty());
  // Nothing was untracked: nothing to do.
  CHECK(track::flowsToCut(track::UntrackedBefore{}, now, allInstances(now), flows).empty());
}

TEST_CASE("narrowing the other direction cuts an untracked flow whose reply is no longer allowed") {
  auto before = test::loadOk(kConfig);
  auto u = compiledBefore(before);
  // a's egress goes from all traffic to tcp 443 only: port 80 from anywhere is
  // still admitted, but the flow is tracked now and its replies (tcp from 80)
  // are not admitted by rule: AWS drops them; Linux's entry would pass them.
  std::string text = kConfig;
  auto at = text.find("security_groups: [web, out-all]");
  REQUIRE(at != std::string::npos);
  text.replace(at, std::string("security_groups: [web, out-all]").size(), "security_groups: [web, out-web]");
  auto now = test::loadOk(text);
  auto cuts =
      track::flowsToCut(u, now, allInstances(now),
                        {flow("198.51.100.7", 40000, "10.0.1.10", 80), flow("10.0.1.10", 40001, "203.0.113.5", 443)});
  REQUIRE(cuts.size() == 1);
  CHECK(cuts[0].flow.dstPort == 80);
  CHECK(cuts[0].why.find("a egress") != std::string::npos);
  CHECK(cuts[0].why.find("reply") != std::string::npos);
}

TEST_CASE("an untracked egress flow is cut when its egress rule goes") {
  // c: all ingress from 0.0.0.0/0 and tcp 443 egress to 0.0.0.0/0: egress to 443 untracked.
  auto before = test::loadOk(kConfig);
  auto u = compiledBefore(before);
  REQUIRE(u.untracked(Direction::kEgress, *net::IpAddress::parse("10.0.1.12"), 6, 443));
  std::string text = kConfig;
  auto at = text.find("{name: c, subnet: s, private_ip: 10.0.1.12, security_groups: [out-web, in-all]}");
  REQUIRE(at != std::string::npos);
  text.replace(at,
               std::string("{name: c, subnet: s, private_ip: 10.0.1.12, security_groups: [out-web, in-all]}").size(),
               "{name: c, subnet: s, private_ip: 10.0.1.12, security_groups: [in-all]}");
  auto now = test::loadOk(text);
  auto cuts = track::flowsToCut(u, now, allInstances(now), {flow("10.0.1.12", 40000, "203.0.113.5", 443)});
  REQUIRE(cuts.size() == 1);
  CHECK(cuts[0].why.find("c egress") != std::string::npos);
}
