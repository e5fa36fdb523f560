// Flow-log formats and records: AWS's documented example records rendered
// byte for byte, the field table, format parsing and versions.
#include <doctest/doctest.h>

#include <set>

#include "vpcfw/flowlog/format.h"
#include "vpcfw/flowlog/record.h"

using namespace vpcfw::flowlog;
using vpcfw::net::IpAddress;

namespace {

IpAddress ip(const char* s) { return *IpAddress::parse(s); }

EniIdentity awsEni(const char* id = "eni-1235b8ca123456789") {
  EniIdentity e;
  e.interfaceId = id;
  e.vpcId = "vpc-abcdefab012345678";
  e.subnetId = "subnet-aaaaaaaa012345678";
  e.instanceId = "i-01234567890123456";
  return e;
}

Record tcp(const char* src, const char* dst, std::uint16_t sport, std::uint16_t dport, std::uint64_t packets,
           std::uint64_t bytes, std::int64_t start, std::int64_t end, Action action) {
  Record r;
  r.accountId = "123456789010";
  r.eni = awsEni();
  r.srcAddr = r.pktSrcAddr = ip(src);
  r.dstAddr = r.pktDstAddr = ip(dst);
  r.srcPort = sport;
  r.dstPort = dport;
  r.protocol = 6;
  r.packets = packets;
  r.bytes = bytes;
  r.start = start;
  r.end = end;
  r.action = action;
  return r;
}

}  // namespace

TEST_CASE("the default format is version 2's fields in AWS's order") {
  const Format f = Format::defaultFormat();
  CHECK(f.header() ==
        "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start "
        "end action log-status");
  CHECK(f.version() == 2);
  CHECK(f.text().starts_with("${version} ${account-id} ${interface-id} "));
  auto again = Format::parse(f.text());
  REQUIRE(again);
  CHECK(*again == f);
}

TEST_CASE("the field table holds every field of versions 2 to 5 once, each name round-trips") {
  std::set<std::string_view> names;
  int perVersion[6] = {};
  for (const auto& info : fieldTable()) {
    CHECK(names.insert(info.name).second);
    CHECK(fieldNamed(info.name) == info.field);
    CHECK(&fieldInfo(info.field) == &info);
    CHECK_FALSE(info.meaning.empty());
    REQUIRE(info.version >= 2);
    REQUIRE(info.version <= 5);
    ++perVersion[info.version];
  }
  CHECK(perVersion[2] == 14);
  CHECK(perVersion[3] == 7);
  CHECK(perVersion[4] == 4);
  CHECK(perVersion[5] == 4);
  CHECK_FALSE(fieldNamed("ecs-cluster-name"));  // version 7: not supported
  CHECK_FALSE(fieldNamed("Version"));
}

TEST_CASE("AWS's SSH ACCEPT and RDP REJECT example records render byte for byte") {
  const Format f = Format::defaultFormat();
  CHECK(render(tcp("172.31.16.139", "172.31.16.21", 20641, 22, 20, 4249, 1418530010, 1418530070, Action::kAccept), f) ==
        "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 "
        "ACCEPT OK");
  CHECK(render(tcp("172.31.9.69", "172.31.9.12", 49761, 3389, 20, 4249, 1418530010, 1418530070, Action::kReject), f) ==
        "2 123456789010 eni-1235b8ca123456789 172.31.9.69 172.31.9.12 49761 3389 6 20 4249 1418530010 1418530070 "
        "REJECT OK");
}

TEST_CASE("AWS's ping example: ICMP prints ports 0 and protocol 1") {
  Record in = tcp("203.0.113.12", "172.31.16.139", 0, 0, 4, 336, 1432917027, 1432917142, Action::kAccept);
  in.protocol = 1;
  Record out = tcp("172.31.16.139", "203.0.113.12", 0, 0, 4, 336, 1432917094, 1432917142, Action::kReject);
  out.protocol = 1;
  const Format f = Format::defaultFormat();
  CHECK(render(in, f) ==
        "2 123456789010 eni-1235b8ca123456789 203.0.113.12 172.31.16.139 0 0 1 4 336 1432917027 1432917142 ACCEPT OK");
  CHECK(render(out, f) ==
        "2 123456789010 eni-1235b8ca123456789 172.31.16.139 203.0.113.12 0 0 1 4 336 1432917094 1432917142 REJECT OK");
}

TEST_CASE("NODATA and SKIPDATA rows have '-' from srcaddr through action, as AWS prints them") {
  Record r;
  r.accountId = "123456789010";
  r.eni = awsEni();
  r.status = LogStatus::kNoData;
  r.start = 1431280876;
  r.end = 1431280934;
  // Values a stale record might still hold are not printed.
  r.srcAddr = ip("10.0.0.1");
  r.packets = 7;
  const Format f = Format::defaultFormat();
  CHECK(render(r, f) == "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA");
  r.status = LogStatus::kSkipData;
  r.eni = awsEni("eni-11111111aaaaaaaaa");
  CHECK(render(r, f) == "2 123456789010 eni-11111111aaaaaaaaa - - - - - - - 1431280876 1431280934 - SKIPDATA");
}

TEST_CASE("AWS's custom-format tcp-flags example renders byte for byte, version 3") {
  auto f = Format::parse(
      "${version} ${vpc-id} ${subnet-id} ${instance-id} ${interface-id} ${account-id} ${type} ${srcaddr} ${dstaddr} "
      "${srcport} ${dstport} ${pkt-srcaddr} ${pkt-dstaddr} ${protocol} ${bytes} ${packets} ${start} ${end} ${action} "
      "${tcp-flags} ${log-status}");
  REQUIRE(f);
  CHECK(f->version() == 3);
  struct Row {
    const char *src, *dst;
    std::uint16_t sport, dport;
    std::uint64_t bytes, packets;
    std::uint8_t flags;
    const char* line;
  };
  const Row rows[] = {
      {"52.213.180.42", "10.0.0.62", 43416, 5001, 568, 8, 2,
       "3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 eni-1235b8ca123456789 123456789010 IPv4 "
       "52.213.180.42 10.0.0.62 43416 5001 52.213.180.42 10.0.0.62 6 568 8 1566848875 1566848933 ACCEPT 2 OK"},
      {"10.0.0.62", "52.213.180.42", 5001, 43416, 376, 7, 18,
       "3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 eni-1235b8ca123456789 123456789010 IPv4 "
       "10.0.0.62 52.213.180.42 5001 43416 10.0.0.62 52.213.180.42 6 376 7 1566848875 1566848933 ACCEPT 18 OK"},
      {"52.213.180.42", "10.0.0.62", 43418, 5001, 100701, 70, 2,
       "3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 eni-1235b8ca123456789 123456789010 IPv4 "
       "52.213.180.42 10.0.0.62 43418 5001 52.213.180.42 10.0.0.62 6 100701 70 1566848875 1566848933 ACCEPT 2 OK"},
      {"10.0.0.62", "52.213.180.42", 5001, 43418, 632, 12, 18,
       "3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 eni-1235b8ca123456789 123456789010 IPv4 "
       "10.0.0.62 52.213.180.42 5001 43418 10.0.0.62 52.213.180.42 6 632 12 1566848875 1566848933 ACCEPT 18 OK"},
  };
  for (const auto& row : rows) {
    Record r =
        tcp(row.src, row.dst, row.sport, row.dport, row.packets, row.bytes, 1566848875, 1566848933, Action::kAccept);
    r.tcpFlags = row.flags;
    CHECK(render(r, *f) == row.line);
  }
}

TEST_CASE("version 4 and 5 fields: region, az-id, flow-direction, traffic-path, and '-' where they do not apply") {
  auto f = Format::parse(
      "${version} ${interface-id} ${region} ${az-id} ${flow-direction} ${traffic-path} "
      "${pkt-src-aws-service} ${sublocation-type} ${srcaddr} ${pkt-srcaddr} ${log-status}");
  REQUIRE(f);
  CHECK(f->version() == 5);
  Record r = tcp("10.0.1.5", "198.51.100.7", 40000, 443, 3, 180, 100, 160, Action::kAccept);
  r.region = "eu-west-1";
  r.eni.azId = "euw1-az2";
  r.direction = FlowDirection::kEgress;
  r.trafficPath = TrafficPath::kInternetGateway;
  r.pktSrcAddr = ip("203.0.113.5");  // the packet's own source, where it differs from srcaddr
  CHECK(render(r, *f) == "5 eni-1235b8ca123456789 eu-west-1 euw1-az2 egress 2 - - 10.0.1.5 203.0.113.5 OK");
  r.direction = FlowDirection::kIngress;  // traffic-path is for egress only
  r.eni.azId.clear();
  CHECK(render(r, *f) == "5 eni-1235b8ca123456789 eu-west-1 - ingress - - - 10.0.1.5 203.0.113.5 OK");
  Record idle;
  idle.status = LogStatus::kNoData;
  idle.eni = awsEni();
  idle.region = "eu-west-1";
  CHECK(render(idle, *f) == "5 eni-1235b8ca123456789 eu-west-1 - - - - - - - NODATA");
}

TEST_CASE("a custom format's version is the highest of its fields, whatever their order") {
  struct Case {
    const char* text;
    int version;
  };
  for (auto c : {Case{"${srcaddr}", 2}, Case{"${tcp-flags} ${srcaddr}", 3}, Case{"${srcaddr} ${az-id} ${vpc-id}", 4},
                 Case{"${traffic-path}", 5}, Case{"${log-status}   ${version}", 2}}) {
    CAPTURE(c.text);
    auto f = Format::parse(c.text);
    REQUIRE(f);
    CHECK(f->version() == c.version);
  }
}

TEST_CASE("bad formats are refused with the field and its character") {
  struct Case {
    const char* text;
    const char* message;
  };
  for (auto c : {Case{"", "the format names no field"}, Case{"   ", "the format names no field"},
                 Case{"${srcaddr} ${nope}", "character 12: unknown field 'nope'"},
                 Case{"${srcaddr} ${srcaddr}", "character 12: field 'srcaddr' is given twice"},
                 Case{"${srcaddr},${dstaddr}", "character 11: fields must be separated by spaces"},
                 Case{"srcaddr", "character 1: expected ${field}, not 'srcaddr'"},
                 Case{"${srcaddr} ${dstaddr", "character 12: '${' without its '}'"},
                 Case{"${SRCADDR}", "character 1: unknown field 'SRCADDR'"},
                 Case{"${ecs-cluster-arn}", "character 1: unknown field 'ecs-cluster-arn'"}}) {
    CAPTURE(c.text);
    auto f = Format::parse(c.text);
    REQUIRE_FALSE(f);
    CHECK(f.error().message.starts_with(c.message));
  }
  CHECK(Format::parse("${srcaddr} ${dstaddr}"));  // the baseline: the same shapes, valid
}

TEST_CASE("header lines parse back into formats, and bad headers are refused") {
  auto f = Format::fromHeader("version srcaddr tcp-flags");
  REQUIRE(f);
  CHECK(f->version() == 3);
  CHECK(f->header() == "version srcaddr tcp-flags");
  CHECK_FALSE(Format::fromHeader(""));
  CHECK_FALSE(Format::fromHeader("version version"));
  CHECK_FALSE(Format::fromHeader("2 123456789010 eni-1235b8ca123456789"));
}

TEST_CASE("AWS's tcp-flags: FIN 1, SYN 2, RST 4, SYN-ACK 18, and ACK, PSH and URG alone are 0") {
  CHECK(awsTcpFlags(0x02) == 2);
  CHECK(awsTcpFlags(0x12) == 18);
  CHECK(awsTcpFlags(0x11) == 1);  // FIN-ACK: the FIN
  CHECK(awsTcpFlags(0x04) == 4);
  CHECK(awsTcpFlags(0x10) == 0);
  CHECK(awsTcpFlags(0x18) == 0);  // PSH-ACK
  CHECK(awsTcpFlags(0x20) == 0);  // URG
}

TEST_CASE("AWS-shaped ids are stable, of AWS's length, and differ by kind and name") {
  const std::string eni = awsId("eni", "web");
  CHECK(eni == awsId("eni", "web"));
  CHECK(eni.size() == 4 + 17);
  CHECK(eni.starts_with("eni-"));
  CHECK(eni.find_first_not_of("0123456789abcdef", 4) == std::string::npos);
  CHECK(awsId("eni", "web") != awsId("eni", "db"));
  CHECK(awsId("vpc", "x").substr(4) != awsId("eni", "x").substr(4));
  CHECK(awsId("i", "web").size() == 2 + 17);
}
