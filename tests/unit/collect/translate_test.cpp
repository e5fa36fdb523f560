// The translator: conntrack counters and logged packets into observations
// at the right ENIs, directions and actions (AWS's order, drops taken out of
// the accepted counts), and the logged packets' header parsing.
#include <doctest/doctest.h>

#include <algorithm>

#include "support/test_config.h"
#include "vpcfw/collect/translate.h"

using namespace vpcfw;
using namespace vpcfw::collect;
using flowlog::Action;
using flowlog::FlowDirection;
using flowlog::Observation;

namespace {

net::IpAddress ip(const char* s) { return *net::IpAddress::parse(s); }

// a (10.0.1.10) in subnet one, b (10.0.2.20) in subnet two; b's group lets
// TCP 22 in; a's group lets out only TCP (no UDP).
const char* kConfig = R"(version: 1
vpcs: [{name: v, cidr: 10.0.0.0/16}]
internet_gateways: [{name: igw, vpc: v}]
route_tables:
  - {name: rt, vpc: v, routes: [{destination: 0.0.0.0/0, internet_gateway: igw}]}
subnets:
  - {name: one, vpc: v, cidr: 10.0.1.0/24, route_table: rt}
  - {name: two, vpc: v, cidr: 10.0.2.0/24}
security_groups:
  - name: ga
    vpc: v
    ingress: []
    egress: [{protocol: tcp, ports: 0-65535, cidr: 0.0.0.0/0}]
  - name: gb
    vpc: v
    ingress: [{protocol: tcp, ports: 22, cidr: 10.0.0.0/16}]
instances:
  - {name: a, subnet: one, private_ip: 10.0.1.10, security_groups: [ga]}
  - {name: b, subnet: two, private_ip: 10.0.2.20, security_groups: [gb]}
)";

struct Fixture {
  model::Model m = test::loadOk(kConfig);
  Translator t{m, {{0, "eni-a"}, {1, "eni-b"}}};
  std::vector<Observation> out;
};

CtEntry tcpEntry(std::uint32_t id, std::uint64_t op, std::uint64_t ob, std::uint64_t rp, std::uint64_t rb) {
  CtEntry e;
  e.id = id;
  e.orig = {ip("10.0.1.10"), ip("10.0.2.20"), 6, 40000, 22, 0};
  e.accounted = true;
  e.packets[0] = op, e.bytes[0] = ob, e.packets[1] = rp, e.bytes[1] = rb;
  return e;
}

const Observation* find(const std::vector<Observation>& os, std::size_t eni, FlowDirection d, Action a) {
  auto it = std::find_if(os.begin(), os.end(),
                         [&](const Observation& o) { return o.eni == eni && o.direction == d && o.action == a; });
  return it == os.end() ? nullptr : &*it;
}

PacketHeader packet(const char* src, const char* dst, std::uint8_t proto, std::uint16_t sp, std::uint16_t dp,
                    std::uint32_t len, std::uint8_t flags = 0) {
  PacketHeader h;
  h.src = ip(src), h.dst = ip(dst);
  h.protocol = proto, h.srcPort = sp, h.dstPort = dp, h.length = len, h.tcpFlags = flags, h.transport = true;
  return h;
}

LoggedPacket drop(Stage st, const char* ifname, PacketHeader h, std::optional<CtEntry> ct = std::nullopt) {
  LoggedPacket p;
  p.kind = LoggedPacket::Kind::kDrop;
  p.stage = st;
  p.ifname = ifname;
  p.packet = h;
  p.ct = ct;
  p.time = 1000;
  return p;
}

}  // namespace

TEST_CASE("counters: each direction at both ENIs, as deltas between reads") {
  Fixture f;
  f.t.counters(tcpEntry(7, 3, 180, 2, 120), 1000, false, f.out);
  REQUIRE(f.out.size() == 4);
  auto* aOut = find(f.out, 0, FlowDirection::kEgress, Action::kAccept);
  auto* bIn = find(f.out, 1, FlowDirection::kIngress, Action::kAccept);
  auto* bOut = find(f.out, 1, FlowDirection::kEgress, Action::kAccept);
  auto* aIn = find(f.out, 0, FlowDirection::kIngress, Action::kAccept);
  REQUIRE((aOut && bIn && bOut && aIn));
  CHECK(aOut->packets == 3);
  CHECK(aOut->bytes == 180);
  CHECK(aOut->src == ip("10.0.1.10"));
  CHECK(aOut->srcPort == 40000);
  CHECK(aOut->dstPort == 22);
  CHECK(aOut->trafficPath == flowlog::TrafficPath::kSameVpc);
  CHECK(bIn->packets == 3);
  CHECK_FALSE(bIn->trafficPath.has_value());
  CHECK(bOut->packets == 2);
  CHECK(bOut->src == ip("10.0.2.20"));
  CHECK(bOut->srcPort == 22);
  CHECK(aIn->bytes == 120);
  f.out.clear();
  f.t.counters(tcpEntry(7, 5, 300, 2, 120), 1005, false, f.out);  // only the original direction grew
  REQUIRE(f.out.size() == 2);
  CHECK(f.out[0].packets == 2);
  CHECK(f.out[0].bytes == 120);
  CHECK(f.out[0].first == 1000);  // since the last read
  CHECK(f.out[0].last == 1005);
  f.out.clear();
  f.t.counters(tcpEntry(7, 5, 300, 2, 120), 1010, true, f.out);  // destroyed, nothing new
  CHECK(f.out.empty());
  CHECK(f.t.stats().entries == 0);
}

TEST_CASE("counters: what an entry counted before collection started is not reported") {
  Fixture f;
  f.t.baseline(tcpEntry(9, 100, 6000, 90, 5000));
  f.t.counters(tcpEntry(9, 101, 6060, 90, 5000), 1000, false, f.out);
  REQUIRE(f.out.size() == 2);
  CHECK(f.out[0].packets == 1);
  CHECK(f.out[0].bytes == 60);
  CtEntry noCounters = tcpEntry(10, 0, 0, 0, 0);
  noCounters.accounted = false;
  f.out.clear();
  f.t.counters(noCounters, 1000, false, f.out);
  CHECK(f.out.empty());
  CHECK(f.t.stats().unaccounted == 1);
  // Its traffic cannot be counted: both ENIs are named, for the caller's SKIPDATA.
  CHECK(f.t.takeUncounted() == std::vector<std::size_t>{0, 1});
  CHECK(f.t.takeUncounted().empty());
}

TEST_CASE("the ping whose reply the NACL denies: ACCEPT in, REJECT out, no accepted reply anywhere") {
  Fixture f;
  // b pings a's... here a pings b: request a->b, reply b->a dropped at b's NACL egress.
  CtEntry e;
  e.id = 3;
  e.orig = {ip("10.0.1.10"), ip("10.0.2.20"), 1, 0, 0, 77};
  e.accounted = true;
  PacketHeader reply = packet("10.0.2.20", "10.0.1.10", 1, 0, 0, 84);
  reply.icmpType = 0, reply.icmpCode = 0, reply.icmpId = 77;
  for (int k = 0; k < 4; ++k) f.t.logged(drop(Stage::kNaclEgress, "eni-b", reply, e), f.out);
  REQUIRE(f.out.size() == 4);
  for (const auto& o : f.out) {
    CHECK(o.eni == 1);
    CHECK(o.direction == FlowDirection::kEgress);
    CHECK(o.action == Action::kReject);
    CHECK(o.bytes == 84);
    CHECK(o.srcPort == 0);
  }
  f.out.clear();
  e.packets[0] = 4, e.bytes[0] = 336, e.packets[1] = 4, e.bytes[1] = 336;  // conntrack counted the replies
  f.t.counters(e, 1005, false, f.out);
  REQUIRE(f.out.size() == 2);
  CHECK(find(f.out, 0, FlowDirection::kEgress, Action::kAccept)->packets == 4);
  CHECK(find(f.out, 1, FlowDirection::kIngress, Action::kAccept)->bytes == 336);
  CHECK_FALSE(find(f.out, 1, FlowDirection::kEgress, Action::kAccept));
  CHECK_FALSE(find(f.out, 0, FlowDirection::kIngress, Action::kAccept));
}

TEST_CASE("a dropped reply at the destination's ingress still left the source: counted there only") {
  Fixture f;
  CtEntry e = tcpEntry(4, 1, 60, 0, 0);
  f.t.counters(e, 1000, false, f.out);
  f.out.clear();
  // The reply b->a is dropped at a's NACL ingress (after leaving b).
  f.t.logged(drop(Stage::kNaclIngress, "eni-a", packet("10.0.2.20", "10.0.1.10", 6, 22, 40000, 60, 0x12), e), f.out);
  REQUIRE(f.out.size() == 1);
  CHECK(f.out[0].eni == 0);
  CHECK(f.out[0].direction == FlowDirection::kIngress);
  CHECK(f.out[0].action == Action::kReject);
  CHECK(f.out[0].tcpFlags == 18);
  f.out.clear();
  f.t.counters(tcpEntry(4, 1, 60, 1, 60), 1005, false, f.out);
  REQUIRE(f.out.size() == 1);
  CHECK(f.out[0].eni == 1);
  CHECK(f.out[0].direction == FlowDirection::kEgress);
  CHECK(f.out[0].action == Action::kAccept);
}

TEST_CASE("a first packet dropped at the destination: the source's egress verdict in AWS's order") {
  Fixture f;
  SUBCASE("dropped by the destination's groups: the source sent it") {
    f.t.logged(drop(Stage::kSgIngress, "eni-b", packet("10.0.1.10", "10.0.2.20", 6, 40000, 80, 60, 0x02)), f.out);
    REQUIRE(f.out.size() == 2);
    CHECK(find(f.out, 1, FlowDirection::kIngress, Action::kReject));
    auto* a = find(f.out, 0, FlowDirection::kEgress, Action::kAccept);
    REQUIRE(a);
    CHECK(a->tcpFlags == 2);
    CHECK(a->packets == 1);
  }
  SUBCASE("dropped by the destination's NACL, the source's groups allow it: ACCEPT at the source") {
    f.t.logged(drop(Stage::kNaclIngress, "eni-b", packet("10.0.1.10", "10.0.2.20", 6, 40000, 80, 60)), f.out);
    REQUIRE(f.out.size() == 2);
    CHECK(find(f.out, 0, FlowDirection::kEgress, Action::kAccept));
  }
  SUBCASE("dropped by the destination's NACL, the source's groups deny it: REJECT at the source") {
    f.t.logged(drop(Stage::kNaclIngress, "eni-b", packet("10.0.1.10", "10.0.2.20", 17, 40000, 53, 60)), f.out);
    REQUIRE(f.out.size() == 2);
    CHECK(find(f.out, 0, FlowDirection::kEgress, Action::kReject));
    CHECK_FALSE(find(f.out, 0, FlowDirection::kEgress, Action::kAccept));
  }
  SUBCASE("dropped at the source: nothing at the destination") {
    f.t.logged(drop(Stage::kSgEgress, "eni-a", packet("10.0.1.10", "10.0.2.20", 17, 40000, 53, 60)), f.out);
    REQUIRE(f.out.size() == 1);
    CHECK(find(f.out, 0, FlowDirection::kEgress, Action::kReject));
  }
  SUBCASE("from the internet: only the destination") {
    f.t.logged(drop(Stage::kSgIngress, "eni-b", packet("198.51.100.7", "10.0.2.20", 6, 40000, 3389, 60)), f.out);
    REQUIRE(f.out.size() == 1);
  }
  SUBCASE("a prefix naming no ENI here is counted, not recorded") {
    f.t.logged(drop(Stage::kSgIngress, "eni-zz", packet("10.0.1.10", "10.0.2.20", 6, 40000, 80, 60)), f.out);
    CHECK(f.out.empty());
    CHECK(f.t.stats().unknownEni == 1);
  }
}

TEST_CASE("accepted TCP control packets give tcp-flags, also when logged before their entry is read") {
  Fixture f;
  LoggedPacket syn;
  syn.kind = LoggedPacket::Kind::kAcceptedTcp;
  syn.packet = packet("10.0.1.10", "10.0.2.20", 6, 40000, 22, 60, 0x02);
  syn.time = 998;
  f.t.logged(syn, f.out);
  LoggedPacket synAck = syn;
  synAck.packet = packet("10.0.2.20", "10.0.1.10", 6, 22, 40000, 60, 0x12);
  f.t.logged(synAck, f.out);
  CHECK(f.out.empty());
  f.t.counters(tcpEntry(5, 1, 60, 1, 60), 1000, false, f.out);
  CHECK(find(f.out, 0, FlowDirection::kEgress, Action::kAccept)->tcpFlags == 2);
  CHECK(find(f.out, 0, FlowDirection::kEgress, Action::kAccept)->first == 998);
  CHECK(find(f.out, 1, FlowDirection::kIngress, Action::kAccept)->tcpFlags == 2);
  CHECK(find(f.out, 1, FlowDirection::kEgress, Action::kAccept)->tcpFlags == 18);
  f.out.clear();
  LoggedPacket fin = syn;
  fin.packet.tcpFlags = 0x11;  // FIN-ACK
  f.t.logged(fin, f.out);
  f.t.counters(tcpEntry(5, 2, 120, 1, 60), 1005, false, f.out);
  REQUIRE(f.out.size() == 2);
  CHECK(f.out[0].tcpFlags == 1);
}

TEST_CASE("a dump read before an entry's destroy event does not count it again") {
  Fixture f;
  f.t.counters(tcpEntry(8, 2, 120, 0, 0), 1000, true, f.out);  // destroyed: final counters
  REQUIRE(f.out.size() == 2);
  f.out.clear();
  f.t.counters(tcpEntry(8, 1, 60, 0, 0), 1000, false, f.out);  // the older dump of it
  CHECK(f.out.empty());
  for (int k = 0; k < 3; ++k) f.t.endDump(1000 + k);
  f.t.counters(tcpEntry(8, 1, 60, 0, 0), 1010, false, f.out);  // the id reused dumps later: a new flow
  CHECK(f.out.size() == 2);
}

TEST_CASE("entries that vanish from two dumps without a destroy event are forgotten and counted") {
  Fixture f;
  f.t.counters(tcpEntry(1, 1, 60, 0, 0), 1000, false, f.out);
  CHECK(f.t.endDump(1000) == 0);
  CHECK(f.t.endDump(1005) == 0);  // missing once: its destroy event may still come
  CHECK(f.t.endDump(1010) == 1);
  CHECK(f.t.stats().forgotten == 1);
  CHECK(f.t.stats().entries == 0);
}

TEST_CASE("log prefixes: only the ruleset's own") {
  LoggedPacket p;
  CHECK(parsePrefix("vpcfw-tcp", p));
  CHECK(p.kind == LoggedPacket::Kind::kAcceptedTcp);
  CHECK(parsePrefix("vpcfw-drop sg-ingress eni-web1", p));
  CHECK(p.kind == LoggedPacket::Kind::kDrop);
  CHECK(p.stage == Stage::kSgIngress);
  CHECK(p.ifname == "eni-web1");
  for (const char* bad :
       {"", "vpcfw-drop", "vpcfw-drop sg-ingress", "vpcfw-drop anti-spoofing eni-a", "vpcfw-drop sg-ingress a b",
        "vpcfw-drop sg-ingress 0123456789abcdefX", "other prefix", "vpcfw-tcpx"})
    CHECK_MESSAGE(!parsePrefix(bad, p), bad);
}

TEST_CASE("packet headers: IPv4 and IPv6, extension headers, fragments, short copies") {
  // IPv4 TCP SYN 10.0.1.10:40000 -> 10.0.2.20:22, total length 60.
  std::vector<std::uint8_t> v4 = {0x45, 0,    0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0, 10,   0,    1, 10, 10, 0, 2, 20,
                                  0x9c, 0x40, 0, 22, 0, 0, 0,    0, 0,  0, 0, 0, 0x50, 0x02, 0, 0,  0,  0, 0, 0};
  auto h = parsePacket(v4);
  REQUIRE(h);
  CHECK(h->src == ip("10.0.1.10"));
  CHECK(h->dst == ip("10.0.2.20"));
  CHECK(h->protocol == 6);
  CHECK(h->srcPort == 40000);
  CHECK(h->dstPort == 22);
  CHECK(h->tcpFlags == 0x02);
  CHECK(h->length == 60);
  for (std::size_t n = 0; n < 20; ++n) CHECK_FALSE(parsePacket({v4.data(), n}));
  auto shortTcp = parsePacket({v4.data(), 30});  // the TCP header cut: addresses only
  REQUIRE(shortTcp);
  CHECK_FALSE(shortTcp->transport);
  std::vector<std::uint8_t> frag = v4;
  frag[6] = 0x00, frag[7] = 0x10;  // a later fragment: no ports
  CHECK(parsePacket(frag)->srcPort == 0);
  std::vector<std::uint8_t> badIhl = v4;
  badIhl[0] = 0x4f;  // 60-byte header longer than the copy
  CHECK_FALSE(parsePacket(badIhl));

  // IPv6 UDP behind a hop-by-hop header: 2001:db8::1:5353 -> 2001:db8::2:53.
  std::vector<std::uint8_t> v6(40 + 8 + 8, 0);
  v6[0] = 0x60;
  v6[4] = 0, v6[5] = 16;  // payload length
  v6[6] = 0;              // hop-by-hop
  v6[8] = 0x20, v6[9] = 0x01, v6[10] = 0x0d, v6[11] = 0xb8, v6[23] = 1;
  v6[24] = 0x20, v6[25] = 0x01, v6[26] = 0x0d, v6[27] = 0xb8, v6[39] = 2;
  v6[40] = 17, v6[41] = 0;  // next: UDP, 8 bytes
  v6[48] = 0x14, v6[49] = 0xe9, v6[50] = 0, v6[51] = 53;
  auto h6 = parsePacket(v6);
  REQUIRE(h6);
  CHECK(h6->protocol == 17);
  CHECK(h6->srcPort == 5353);
  CHECK(h6->dstPort == 53);
  CHECK(h6->length == 56);
  CHECK(h6->dst == ip("2001:db8::2"));
  std::vector<std::uint8_t> loop = v6;
  loop[41] = 200;  // an extension header longer than the copy
  CHECK_FALSE(parsePacket(loop));
  CHECK_FALSE(parsePacket(std::vector<std::uint8_t>{0x70, 0, 0}));
}
