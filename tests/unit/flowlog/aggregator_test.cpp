// The aggregator: one record per ENI, direction, 5-tuple and action per
// interval; intervals closed on the clock passed in; NODATA, SKIPDATA (full
// table, reported loss); traffic-type filtering; what AWS does not log.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include "support/test_config.h"
#include "vpcfw/flowlog/aggregator.h"

using namespace vpcfw::flowlog;
using vpcfw::model::FlowLog;
using vpcfw::net::IpAddress;

namespace {

IpAddress ip(const char* s) { return *IpAddress::parse(s); }

Eni eni(const char* id) {
  Eni e;
  e.identity.interfaceId = id;
  e.unlogged = {ip("172.31.16.1"), ip("172.31.0.2")};
  return e;
}

AggregatorOptions options(std::int64_t interval = 60, FlowLog::Traffic traffic = FlowLog::Traffic::kAll,
                          std::size_t maxFlows = 1000) {
  AggregatorOptions o;
  o.interval = interval;
  o.traffic = traffic;
  o.maxFlows = maxFlows;
  return o;
}

Observation tcp(std::size_t e, FlowDirection d, const char* src, const char* dst, std::uint16_t sport,
                std::uint16_t dport, std::int64_t t, std::uint8_t flags = 0, Action a = Action::kAccept) {
  Observation o;
  o.eni = e;
  o.direction = d;
  o.action = a;
  o.src = ip(src);
  o.dst = ip(dst);
  o.protocol = 6;
  o.srcPort = sport;
  o.dstPort = dport;
  o.packets = 1;
  o.bytes = 60;
  o.tcpFlags = flags;
  o.first = o.last = t;
  return o;
}

std::vector<std::string> lines(const std::vector<Record>& records) {
  std::vector<std::string> out;
  for (const auto& r : records) out.push_back(render(r, Format::defaultFormat()));
  return out;
}

const char* kEni = "eni-1235b8ca123456789";
constexpr std::int64_t kT0 = 1418530020;  // inside the 60 s interval [1418529960, 1418530020 + 40)

}  // namespace

TEST_CASE("one connection's packets make one record per direction, packets and bytes added, flags ORed") {
  Aggregator a(options(), {eni(kEni)}, kT0);
  const std::int64_t start = a.intervalStart();
  CHECK(start == 1418530020 - 1418530020 % 60);
  // SYN, SYN-ACK, ACK, data, FIN from both ends, as awsTcpFlags sees each packet.
  const auto in = FlowDirection::kIngress, out = FlowDirection::kEgress;
  const char *client = "172.31.16.139", *server = "172.31.16.21";
  a.observe(tcp(0, in, client, server, 20641, 22, start + 1, awsTcpFlags(0x02)));
  a.observe(tcp(0, out, server, client, 22, 20641, start + 1, awsTcpFlags(0x12)));
  a.observe(tcp(0, in, client, server, 20641, 22, start + 2, awsTcpFlags(0x10)));
  a.observe(tcp(0, in, client, server, 20641, 22, start + 3, awsTcpFlags(0x18)));
  a.observe(tcp(0, out, server, client, 22, 20641, start + 9, awsTcpFlags(0x11)));
  a.observe(tcp(0, in, client, server, 20641, 22, start + 10, awsTcpFlags(0x11)));
  CHECK(a.openFlows() == 2);
  CHECK(a.advance(start + 59).empty());  // the interval is still open
  auto records = a.advance(start + 60);
  REQUIRE(records.size() == 2);
  CHECK(lines(records)[0] ==
        fmt::format("2 123456789010 {} 172.31.16.139 172.31.16.21 20641 22 6 4 240 {} {} ACCEPT OK", kEni, start + 1,
                    start + 10));
  CHECK(lines(records)[1] ==
        fmt::format("2 123456789010 {} 172.31.16.21 172.31.16.139 22 20641 6 2 120 {} {} ACCEPT OK", kEni, start + 1,
                    start + 9));
  CHECK(records[0].tcpFlags == 3);   // SYN | FIN
  CHECK(records[1].tcpFlags == 19);  // SYN-ACK | FIN
  CHECK(a.stats().records == 2);
  CHECK(a.intervalStart() == start + 60);
}

TEST_CASE("a flow that spans intervals gets a record in each, with that interval's counts") {
  Aggregator a(options(), {eni(kEni)}, kT0);
  const std::int64_t s = a.intervalStart();
  for (int i = 0; i < 3; ++i)
    a.observe(tcp(0, FlowDirection::kIngress, "10.0.0.5", "172.31.16.21", 5000, 80, s + 50 + i));
  auto first = a.advance(s + 60);
  for (int i = 0; i < 2; ++i)
    a.observe(tcp(0, FlowDirection::kIngress, "10.0.0.5", "172.31.16.21", 5000, 80, s + 61 + i));
  auto second = a.advance(s + 120);
  REQUIRE(first.size() == 1);
  REQUIRE(second.size() == 1);
  CHECK(first[0].packets == 3);
  CHECK(first[0].start == s + 50);
  CHECK(first[0].end == s + 52);
  CHECK(second[0].packets == 2);
  CHECK(second[0].start == s + 61);
}

TEST_CASE("the same 5-tuple with another action or on another ENI is another record") {
  Aggregator a(options(), {eni("eni-a"), eni("eni-b")}, kT0);
  const std::int64_t s = a.intervalStart();
  a.observe(tcp(0, FlowDirection::kIngress, "10.0.0.5", "10.0.0.6", 1, 2, s, 0, Action::kAccept));
  a.observe(tcp(0, FlowDirection::kIngress, "10.0.0.5", "10.0.0.6", 1, 2, s, 0, Action::kReject));
  a.observe(tcp(1, FlowDirection::kEgress, "10.0.0.5", "10.0.0.6", 1, 2, s));
  auto r = a.advance(s + 60);
  REQUIRE(r.size() == 3);
  CHECK(r[0].action == Action::kAccept);
  CHECK(r[1].action == Action::kReject);
  CHECK(r[2].eni.interfaceId == "eni-b");
}

TEST_CASE("an ENI with no traffic in an interval gets one NODATA row spanning it, a busy one none") {
  Aggregator a(options(), {eni("eni-quiet"), eni("eni-busy")}, kT0);
  const std::int64_t s = a.intervalStart();
  a.observe(tcp(1, FlowDirection::kIngress, "10.0.0.5", "10.0.0.6", 1, 2, s + 5));
  auto r = lines(a.advance(s + 60));
  REQUIRE(r.size() == 2);
  CHECK(r[0] == fmt::format("2 123456789010 eni-quiet - - - - - - - {} {} - NODATA", s, s + 60));
  CHECK(r[1].starts_with("2 123456789010 eni-busy 10.0.0.5 10.0.0.6 1 2 6 1 60 "));
  CHECK(a.stats().noData == 1);
  // The next interval, both quiet; then a jump over three intervals: one row each spanning the gap.
  CHECK(a.advance(s + 120).size() == 2);
  auto jump = a.advance(s + 300 + 7);
  REQUIRE(jump.size() == 4);
  CHECK(jump[0].status == LogStatus::kNoData);
  CHECK(jump[0].start == s + 120);
  CHECK(jump[0].end == s + 180);
  CHECK(jump[2].start == s + 180);
  CHECK(jump[2].end == s + 300);
  CHECK(a.intervalStart() == s + 300);
}

TEST_CASE("a full table turns new flows into one SKIPDATA row per ENI, counted, and known flows still count") {
  Aggregator a(options(60, FlowLog::Traffic::kAll, 2), {eni("eni-a"), eni("eni-b")}, kT0);
  const std::int64_t s = a.intervalStart();
  a.observe(tcp(0, FlowDirection::kIngress, "10.0.0.5", "10.0.0.6", 1, 80, s));
  a.observe(tcp(0, FlowDirection::kIngress, "10.0.0.5", "10.0.0.6", 2, 80, s));
  for (std::uint16_t p = 3; p < 13; ++p) a.observe(tcp(0, FlowDirection::kIngress, "10.0.0.5", "10.0.0.6", p, 80, s));
  a.observe(tcp(1, FlowDirection::kIngress, "10.0.0.5", "10.0.0.7", 9, 80, s));
  a.observe(tcp(0, FlowDirection::kIngress, "10.0.0.5", "10.0.0.6", 1, 80, s + 1));  // known: counted
  CHECK(a.stats().overflowed == 11);
  auto r = a.advance(s + 60);
  REQUIRE(r.size() == 4);
  CHECK(r[0].packets == 2);
  CHECK(r[1].srcPort == 2);
  CHECK(render(r[2], Format::defaultFormat()) ==
        fmt::format("2 123456789010 eni-a - - - - - - - {} {} - SKIPDATA", s, s + 60));
  CHECK(r[3].status == LogStatus::kSkipData);
  CHECK(r[3].eni.interfaceId == "eni-b");
  CHECK(a.stats().skipData == 2);
  // The next interval has room again.
  a.observe(tcp(0, FlowDirection::kIngress, "10.0.0.5", "10.0.0.6", 7, 80, s + 61));
  auto next = a.advance(s + 120);
  REQUIRE(next.size() == 2);
  CHECK(next[0].status == LogStatus::kOk);
  CHECK(next[1].status == LogStatus::kNoData);
}

TEST_CASE("reported loss gives SKIPDATA for that ENI or for every ENI, beside the records kept") {
  Aggregator a(options(), {eni("eni-a"), eni("eni-b")}, kT0);
  const std::int64_t s = a.intervalStart();
  a.observe(tcp(0, FlowDirection::kIngress, "10.0.0.5", "10.0.0.6", 1, 80, s));
  a.reportLoss(0, 5);
  auto r = a.advance(s + 60);
  REQUIRE(r.size() == 3);
  CHECK(r[0].status == LogStatus::kOk);
  CHECK(r[1].status == LogStatus::kSkipData);
  CHECK(r[2].status == LogStatus::kNoData);  // eni-b lost nothing and saw nothing
  a.reportLoss(std::nullopt, 1);
  auto all = a.advance(s + 120);
  REQUIRE(all.size() == 2);
  CHECK(all[0].status == LogStatus::kSkipData);
  CHECK(all[1].status == LogStatus::kSkipData);
  CHECK(a.stats().reportedLost == 6);
  CHECK(a.stats().skipData == 3);
}

TEST_CASE("traffic type ACCEPT or REJECT logs only that action, the other is counted and makes no NODATA") {
  for (auto [traffic, kept] :
       {std::pair{FlowLog::Traffic::kAccept, Action::kAccept}, std::pair{FlowLog::Traffic::kReject, Action::kReject}}) {
    Aggregator a(options(60, traffic), {eni("eni-a"), eni("eni-b")}, kT0);
    const std::int64_t s = a.intervalStart();
    a.observe(tcp(0, FlowDirection::kIngress, "10.0.0.5", "10.0.0.6", 1, 80, s, 0, Action::kAccept));
    a.observe(tcp(0, FlowDirection::kIngress, "10.0.0.5", "10.0.0.6", 2, 80, s, 0, Action::kReject));
    a.observe(tcp(1, FlowDirection::kIngress, "10.0.0.5", "10.0.0.7", 3, 80, s, 0,
                  kept == Action::kAccept ? Action::kReject : Action::kAccept));
    auto r = a.advance(s + 60);
    REQUIRE(r.size() == 1);  // eni-b's traffic was all filtered: no record and no NODATA
    CHECK(r[0].action == kept);
    CHECK(a.stats().filtered == 2);
  }
  Aggregator all(options(60, FlowLog::Traffic::kAll), {eni("eni-a")}, kT0);
  all.observe(tcp(0, FlowDirection::kIngress, "10.0.0.5", "10.0.0.6", 1, 80, kT0, 0, Action::kAccept));
  all.observe(tcp(0, FlowDirection::kIngress, "10.0.0.5", "10.0.0.6", 2, 80, kT0, 0, Action::kReject));
  CHECK(all.advance(all.intervalEnd()).size() == 2);
}

TEST_CASE("traffic AWS does not log is dropped and counted: DNS, metadata, time sync, DHCP, the router") {
  Aggregator a(options(), {eni(kEni)}, kT0);
  const std::int64_t s = a.intervalStart();
  auto udp = [&](const char* src, const char* dst, std::uint16_t sport, std::uint16_t dport) {
    Observation o = tcp(0, FlowDirection::kEgress, src, dst, sport, dport, s);
    o.protocol = 17;
    return o;
  };
  const char* me = "172.31.16.139";
  a.observe(udp(me, "172.31.0.2", 40000, 53));                                     // the VPC's DNS resolver (base + 2)
  a.observe(udp("172.31.0.2", me, 53, 40000));                                     // and its answer
  a.observe(udp(me, "169.254.169.253", 40001, 53));                                // the resolver's link-local address
  a.observe(tcp(0, FlowDirection::kEgress, me, "169.254.169.254", 40002, 80, s));  // metadata
  a.observe(udp(me, "169.254.169.123", 123, 123));                                 // time sync
  a.observe(udp("0.0.0.0", "255.255.255.255", 68, 67));                            // DHCP
  a.observe(udp("fe80::1", "ff02::1:2", 546, 547));                                // DHCPv6
  a.observe(tcp(0, FlowDirection::kEgress, me, "fd00:ec2::254", 40003, 80, s));    // metadata, IPv6
  a.observe(tcp(0, FlowDirection::kIngress, "172.31.16.1", me, 1, 2, s));          // the subnet's router
  CHECK(a.stats().unlogged == 9);
  // The baseline: the same shapes to ordinary addresses are logged.
  a.observe(udp(me, "172.31.0.3", 40000, 53));
  a.observe(tcp(0, FlowDirection::kEgress, me, "169.254.169.250", 40002, 80, s));
  a.observe(udp(me, "10.9.9.9", 68, 6700));
  auto r = a.advance(s + 60);
  CHECK(r.size() == 3);
  CHECK(a.stats().unlogged == 9);
  CHECK(a.stats().records == 3);
}

TEST_CASE("an observation of an unknown ENI is counted, not recorded, and flush closes the open interval early") {
  Aggregator a(options(600), {eni(kEni)}, kT0);
  Observation o = tcp(3, FlowDirection::kIngress, "10.0.0.5", "10.0.0.6", 1, 2, kT0);
  a.observe(o);
  CHECK(a.stats().badEni == 1);
  a.observe(tcp(0, FlowDirection::kIngress, "10.0.0.5", "10.0.0.6", 1, 2, kT0));
  auto r = a.flush(kT0 + 5);
  REQUIRE(r.size() == 1);
  CHECK(r[0].packets == 1);
  CHECK(a.intervalStart() == kT0 + 5);
  CHECK(a.intervalEnd() % 600 == 0);
  CHECK(a.intervalEnd() > kT0 + 5);
  CHECK(a.openFlows() == 0);
}

TEST_CASE("pkt-srcaddr and traffic-path come from the observation, and unset pkt addresses are srcaddr and dstaddr") {
  Aggregator a(options(), {eni(kEni)}, kT0);
  const std::int64_t s = a.intervalStart();
  Observation viaIgw = tcp(0, FlowDirection::kIngress, "198.51.100.7", "172.31.16.139", 5555, 443, s);
  viaIgw.pktDst = ip("203.0.113.10");  // the public address the internet sent to
  a.observe(viaIgw);
  Observation out = tcp(0, FlowDirection::kEgress, "172.31.16.139", "198.51.100.7", 443, 5555, s);
  out.trafficPath = TrafficPath::kInternetGateway;
  a.observe(out);
  auto r = a.advance(s + 60);
  REQUIRE(r.size() == 2);
  auto f = Format::parse("${srcaddr} ${dstaddr} ${pkt-srcaddr} ${pkt-dstaddr} ${flow-direction} ${traffic-path}");
  REQUIRE(f);
  CHECK(render(r[0], *f) == "198.51.100.7 172.31.16.139 198.51.100.7 203.0.113.10 ingress -");
  CHECK(render(r[1], *f) == "172.31.16.139 198.51.100.7 172.31.16.139 198.51.100.7 egress 2");
}

TEST_CASE("a flow log's ENIs come from its VPC, subnet or instance, with ids, az and unlogged addresses") {
  auto m = vpcfw::test::loadOk(R"(
vpcs: [{name: v, cidr: [10.0.0.0/16, 10.1.0.0/16]}, {name: w, cidr: 10.2.0.0/16}]
subnets:
  - {name: a, vpc: v, cidr: 10.0.1.0/24, availability_zone: use1-az1}
  - {name: b, vpc: v, cidr: 10.1.2.0/24}
  - {name: c, vpc: w, cidr: 10.2.0.0/24}
instances:
  - {name: i1, subnet: a, private_ip: 10.0.1.10}
  - {name: i2, subnet: b, private_ip: 10.1.2.10}
  - {name: i3, subnet: c, private_ip: 10.2.0.10}
flow_logs:
  - {name: all-v, vpc: v, destination: stdout}
  - {name: just-b, subnet: b, destination: stdout}
  - {name: one, instance: i3, destination: stdout}
)");
  std::vector<std::size_t> idx;
  auto v = enisOf(m, m.flowLogs[0], &idx);
  REQUIRE(v.size() == 2);
  CHECK(idx == std::vector<std::size_t>{0, 1});
  CHECK(v[0].identity.interfaceId == awsId("eni", "i1"));
  CHECK(v[0].identity.instanceId == awsId("i", "i1"));
  CHECK(v[0].identity.vpcId == awsId("vpc", "v"));
  CHECK(v[0].identity.subnetId == awsId("subnet", "a"));
  CHECK(v[0].identity.azId == "use1-az1");
  CHECK(v[0].unlogged == std::vector<IpAddress>{ip("10.0.1.1"), ip("10.0.0.2"), ip("10.1.0.2")});
  auto b = enisOf(m, m.flowLogs[1]);
  REQUIRE(b.size() == 1);
  CHECK(b[0].identity.interfaceId == awsId("eni", "i2"));
  auto one = enisOf(m, m.flowLogs[2]);
  REQUIRE(one.size() == 1);
  CHECK(one[0].identity.vpcId == awsId("vpc", "w"));
}

TEST_CASE("a flush right on an interval's boundary adds no zero-length NODATA rows") {
  Aggregator a(options(60), {eni("eni-0123456789abcdef0")}, 100);
  auto closed = a.advance(120);
  REQUIRE(closed.size() == 1);
  CHECK(closed[0].status == LogStatus::kNoData);
  CHECK(a.flush(120).empty());
  // Traffic or loss in the new interval is still flushed.
  a.reportLoss(0, 1);
  auto flushed = a.flush(120);
  REQUIRE(flushed.size() == 1);
  CHECK(flushed[0].status == LogStatus::kSkipData);
}
