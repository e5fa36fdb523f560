// Probe planning (pure): fresh identifiers, the flows and namespaces a probe
// uses, the matrix, agreement (a harness error never agrees), the summary and
// where baseline frames enter the lab.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>

#include "support/test_config.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/names/names.h"
#include "vpcfw/probe/plan.h"

using namespace vpcfw;
using probe::Agreement;
using probe::IdentifierPool;
using probe::TrackedIds;

namespace {

probe::Request request(const std::string& from, const std::string& to, int proto, std::uint16_t port = 0) {
  probe::Request r;
  r.flow.from = from;
  r.flow.to = to;
  r.flow.protocol = net::Protocol(proto);
  r.flow.port = port;
  return r;
}

}  // namespace

TEST_CASE("identifiers: source ports stay in 49152..60999 and never repeat in a run, until none is left") {
  IdentifierPool pool({}, 1);
  std::set<std::uint16_t> seen;
  const std::size_t span = probe::kLastSourcePort - probe::kFirstSourcePort + 1;
  for (std::size_t i = 0; i < span; ++i) {
    auto p = pool.sourcePort(net::Protocol::kTcp);
    REQUIRE(p);
    CHECK(*p >= probe::kFirstSourcePort);
    CHECK(*p <= probe::kLastSourcePort);
    CHECK(seen.insert(*p).second);
  }
  auto none = pool.sourcePort(net::Protocol::kTcp);
  REQUIRE_FALSE(none);
  CHECK(none.error().message.find("no fresh tcp identifier") != std::string::npos);
  CHECK(pool.sourcePort(net::Protocol::kUdp));  // per protocol: udp still has them all
}

TEST_CASE("identifiers: ports and ICMP ids a tracked flow holds are never handed out") {
  TrackedIds tracked;
  for (std::uint32_t p = probe::kFirstSourcePort; p <= probe::kLastSourcePort; ++p)
    if (p != 50001 && p != 60999) tracked.byProtocol[net::Protocol::kUdp].insert(static_cast<std::uint16_t>(p));
  for (std::uint32_t id = 0; id <= 0xffff; ++id)
    if (id != 0 && id != 0xffff) tracked.byProtocol[net::Protocol::kIcmp].insert(static_cast<std::uint16_t>(id));
  IdentifierPool pool(tracked, 7);
  std::set<std::uint16_t> ports{*pool.sourcePort(net::Protocol::kUdp), *pool.sourcePort(net::Protocol::kUdp)};
  CHECK(ports == std::set<std::uint16_t>{50001, 60999});
  CHECK_FALSE(pool.sourcePort(net::Protocol::kUdp));
  std::set<std::uint16_t> ids{*pool.icmpId(net::Protocol::kIcmp), *pool.icmpId(net::Protocol::kIcmp)};
  CHECK(ids == std::set<std::uint16_t>{0, 0xffff});  // both ends of the 16-bit space
  CHECK_FALSE(pool.icmpId(net::Protocol::kIcmp));
  CHECK(pool.icmpId(net::Protocol::kIcmpv6));  // ICMPv6 is tracked apart
}

TEST_CASE("identifiers: ICMP ids spread over all 16 bits, and two runs draw different ones") {
  IdentifierPool a({}, 11), b({}, 12);
  std::set<std::uint16_t> fromA, highNibbles, lowBits;
  for (int i = 0; i < 64; ++i) {
    auto id = *a.icmpId(net::Protocol::kIcmp);
    fromA.insert(id);
    highNibbles.insert(static_cast<std::uint16_t>(id >> 12));
    lowBits.insert(static_cast<std::uint16_t>(id & 0x0fff));
  }
  CHECK(fromA.size() == 64);
  CHECK(highNibbles.size() > 8);
  CHECK(lowBits.size() > 32);
  std::size_t shared = 0;
  for (int i = 0; i < 64; ++i) shared += fromA.count(*b.icmpId(net::Protocol::kIcmp));
  CHECK(shared < 4);
}

TEST_CASE("planProbe: namespaces and addresses from the evaluator, a fresh source port unless one is fixed") {
  auto m = test::loadExample("two-tier");
  IdentifierPool pool({}, 3);
  auto t = probe::planProbe(m, request("web1", "db1", net::Protocol::kTcp, 5432), pool);
  REQUIRE(t);
  CHECK(t->spec.srcNs == "vpcfw:i:web1");
  CHECK(t->spec.dstNs == "vpcfw:i:db1");
  CHECK(t->spec.src.toString() == "10.0.1.10");
  CHECK(t->spec.dst.toString() == "10.0.2.20");
  CHECK(t->spec.port == 5432);
  CHECK(t->spec.sourcePort >= probe::kFirstSourcePort);
  CHECK(t->spec.sourcePort == t->request.sourcePort);  // the evaluator judged the same flow
  REQUIRE(t->predicted);
  CHECK(t->predicted->reachable());

  auto fixed = request("web1", "db1", net::Protocol::kTcp, 5432);
  fixed.fixedSourcePort = true;
  fixed.flow.sourcePort = 1234;
  auto f = probe::planProbe(m, fixed, pool);
  REQUIRE(f);
  CHECK(f->spec.sourcePort == 1234);

  // The internet reaches web1 at its public IP, from the internet namespace.
  auto in = probe::planProbe(m, request("198.51.100.7", "web1", net::Protocol::kTcp, 443), pool);
  REQUIRE(in);
  CHECK(in->spec.srcNs == lab::internetNamespace());
  CHECK(in->spec.dst.toString() == "203.0.113.10");
  CHECK(in->spec.dstNs == "vpcfw:i:web1");
}

TEST_CASE("planProbe: ICMP gets a fresh identifier, and errors are the evaluator's and ends outside the lab") {
  auto m = test::loadExample("two-tier");
  IdentifierPool pool({}, 5);
  auto a = probe::planProbe(m, request("web1", "web2", net::Protocol::kIcmp), pool);
  auto b = probe::planProbe(m, request("web1", "web2", net::Protocol::kIcmp), pool);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->spec.icmpId != b->spec.icmpId);
  CHECK(a->spec.icmpType == -1);  // echo
  CHECK_FALSE(probe::planProbe(m, request("web1", "nosuch", net::Protocol::kTcp, 80), pool));
  auto outside = probe::planProbe(m, request("web1", "8.8.8.8", net::Protocol::kTcp, 80), pool);
  REQUIRE_FALSE(outside);
  CHECK(outside.error().message.find("outside the lab's internet") != std::string::npos);
}

TEST_CASE("agreement: a harness error is never agreement, whatever its fields say") {
  auto m = test::loadExample("two-tier");
  IdentifierPool pool({}, 9);
  auto t = *probe::planProbe(m, request("web1", "db1", net::Protocol::kTcp, 22), pool);  // blocked by web-acl
  REQUIRE_FALSE(t.predicted->forward.delivered);
  t.observed = {};  // request not arrived: what the old harness said when it could not send
  CHECK(probe::agreement(t) == Agreement::kAgrees);
  t.observed.outcome = probe::ProbeResult::Outcome::kHarnessError;
  t.observed.error = "cannot open the tcp socket in vpcfw:i:web1: Too many open files";
  CHECK(probe::agreement(t) == Agreement::kNotCarriedOut);
  CHECK_FALSE(probe::reachable(t.observed));
  t.observed.outcome = probe::ProbeResult::Outcome::kObserved;
  t.observed.requestArrived = t.observed.replyReturned = true;
  CHECK(probe::agreement(t) == Agreement::kDisagrees);
  CHECK(probe::reachable(t.observed));
}

TEST_CASE("summary: harness errors and disagreements are counted apart") {
  auto m = test::loadExample("two-tier");
  IdentifierPool pool({}, 13);
  std::vector<probe::Trial> ts;
  for (int i = 0; i < 3; ++i)
    ts.push_back(*probe::planProbe(m, request("web1", "db1", net::Protocol::kTcp, 5432), pool));
  ts[0].observed.requestArrived = ts[0].observed.replyReturned = true;  // agrees
  ts[1].observed.outcome = probe::ProbeResult::Outcome::kHarnessError;  // not carried out
  // ts[2]: dropped, but predicted reachable: disagrees
  auto s = probe::summarize(ts);
  CHECK(s.probes == 3);
  CHECK(s.harnessErrors == 1);
  CHECK(s.disagreements == 1);
  CHECK(s.reachable == 1);
}

TEST_CASE("mentionedPorts: lowest first, capped, port 0 as 1, NACL ephemeral ranges left out") {
  auto m = test::loadExample("two-tier");
  auto ports = probe::mentionedPorts(m, 3);
  REQUIRE(ports.contains(net::Protocol::kTcp));
  CHECK(ports[net::Protocol::kTcp] == std::vector<std::uint16_t>{22, 80, 443});
  auto all = probe::mentionedPorts(m, 100);
  const auto& tcp = all[net::Protocol::kTcp];
  CHECK(std::find(tcp.begin(), tcp.end(), 1024) == tcp.end());  // 1024-65535 is a return range
  CHECK(std::is_sorted(tcp.begin(), tcp.end()));
}

TEST_CASE("matrix: every lab pair and the internet host, distinct identifiers, unaddressable pairs left out") {
  auto m = test::loadExample("two-tier");
  IdentifierPool pool({}, 17);
  auto x = probe::planMatrix(m, std::nullopt, pool);
  REQUIRE(x);
  CHECK(x->ends == std::vector<std::string>{"web1", "web2", "db1", "198.51.100.100"});
  REQUIRE_FALSE(x->services.empty());
  CHECK(x->services.back().name() == "icmp");
  CHECK(x->trials.size() == x->cells.size());
  std::set<std::pair<int, std::uint16_t>> ids;
  for (const auto& t : x->trials) {
    const auto id = t.spec.protocol.hasPorts() ? t.spec.sourcePort : t.spec.icmpId;
    CHECK_MESSAGE(ids.emplace(t.spec.protocol.number(), id).second, t.from, " -> ", t.to);
    if (t.spec.protocol.hasPorts()) CHECK(t.spec.sourcePort >= probe::kFirstSourcePort);
  }
  // The internet cannot address db1 (no public IP): n/a, no trial.
  CHECK(x->at({0, 3, 2}) == nullptr);
  const auto* t = x->at({0, 0, 2});
  REQUIRE(t);
  CHECK(t->from == "web1");
  CHECK(t->to == "db1");
  CHECK(x->at({0, 0, 0}) == nullptr);
  auto v6 = probe::planMatrix(m, net::Family::kIpv6, pool);
  REQUIRE(v6);
  CHECK(v6->ends.back() == "2001:db8:ffff::100");
  CHECK(v6->services.back().name() == "icmpv6");
}

TEST_CASE("matrix: a service port inside the source-port range is never drawn as a source port") {
  // A rule for 49152-65535 makes 49152 a service: every end listens on it
  // while the same ends connect out, so no client may bind it.
  auto m = test::loadOk(R"(vpcs: [{name: v, cidr: 10.0.0.0/16}]
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24}]
security_groups:
  - {name: g, vpc: v, ingress: [{protocol: tcp, ports: 49152-65535, cidr: 10.0.0.0/16}, {protocol: tcp, ports: 80, cidr: 10.0.0.0/16}]}
instances:
  - {name: a, subnet: s, private_ip: 10.0.1.10, security_groups: [g]}
  - {name: b, subnet: s, private_ip: 10.0.1.11, security_groups: [g]}
  - {name: c, subnet: s, private_ip: 10.0.1.12, security_groups: [g]}
)");
  // Only 49152 and 55000..55099 are free: a draw from a random point beyond
  // 55099 wraps to 49152 first, so without the reservation it is taken.
  TrackedIds tracked;
  for (std::uint32_t p = probe::kFirstSourcePort + 1; p <= probe::kLastSourcePort; ++p)
    if (p < 55000 || p > 55099) tracked.byProtocol[net::Protocol::kTcp].insert(static_cast<std::uint16_t>(p));
  IdentifierPool pool(tracked, 5);
  auto x = probe::planMatrix(m, std::nullopt, pool);
  REQUIRE(x);
  std::set<std::uint16_t> services;
  for (const auto& sv : x->services)
    if (sv.proto.number() == net::Protocol::kTcp) services.insert(sv.port);
  REQUIRE(services.contains(49152));
  std::size_t tcp = 0;
  for (const auto& t : x->trials)
    if (t.spec.protocol.number() == net::Protocol::kTcp) {
      ++tcp;
      CHECK_MESSAGE(!services.contains(t.spec.sourcePort), t.from, " -> ", t.to, " port ", t.spec.port);
    }
  CHECK(tcp >= 12);
}

TEST_CASE("labView: baselines enter an instance from its router's ENI, the internet from each gateway") {
  auto m = test::loadExample("two-tier");
  auto plan = lab::planLab(m, std::string(names::kDefaultInternetNamespace));
  REQUIRE(plan);
  auto v = probe::labView(*plan);
  REQUIRE(v.entries.contains("vpcfw:i:web1"));
  const auto& web1 = v.entries.at("vpcfw:i:web1");
  REQUIRE(web1.size() == 1);
  CHECK(web1[0].ns == "vpcfw-shop");
  CHECK(web1[0].ifname == names::eniInterface("web1"));
  REQUIRE(v.entries.contains(lab::internetNamespace()));
  const auto& inet = v.entries.at(lab::internetNamespace());
  REQUIRE(inet.size() == 1);
  CHECK(inet[0].ns == "vpcfw:igw:shop");
  // Every namespace a probe can start or end in has a way in.
  for (const auto& inst : m.instances) CHECK(v.entries.contains(lab::instanceNamespace(inst)));
  CHECK(v.trackers == std::vector<std::string>{"vpcfw-shop", "vpcfw:igw:shop"});
}
