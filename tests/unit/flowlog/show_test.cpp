// `vpcfw flowlogs show` as a user runs it: files the writers made, read back,
// filtered, as aligned columns and JSON lines; hostile files reported with
// their place and a non-zero exit.
#include <unistd.h>
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/test_config.h"
#include "vpcfw/cli/cli.h"
#include "vpcfw/flowlog/writer.h"

using namespace vpcfw::flowlog;
namespace fs = std::filesystem;

namespace {

const auto run = &vpcfw::test::runCli;

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/vpcfw-flowlog-show-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

Record record(const char* eni, const char* src, const char* dst, std::uint16_t sport, std::uint16_t dport,
              std::int64_t start, Action action) {
  Record r;
  r.accountId = "123456789010";
  r.eni.interfaceId = eni;
  r.srcAddr = r.pktSrcAddr = *vpcfw::net::IpAddress::parse(src);
  r.dstAddr = r.pktDstAddr = *vpcfw::net::IpAddress::parse(dst);
  r.srcPort = sport;
  r.dstPort = dport;
  r.protocol = 6;
  r.packets = 20;
  r.bytes = 4249;
  r.start = start;
  r.end = start + 60;
  r.action = action;
  return r;
}

// Three records and a NODATA row in the S3 layout under `prefix`.
void writeTree(const std::string& prefix) {
  S3LayoutOptions o;
  o.prefix = prefix;
  o.accountId = "123456789010";
  o.region = "us-east-1";
  o.flowLogId = "fl-0123456789abcdef0";
  auto w = makeS3LayoutWriter(o);
  Record idle;
  idle.status = LogStatus::kNoData;
  idle.accountId = "123456789010";
  idle.eni.interfaceId = "eni-11111111aaaaaaaaa";
  idle.start = 1431280876;
  idle.end = 1431280934;
  REQUIRE(w->write(
      {record("eni-1235b8ca123456789", "172.31.16.139", "172.31.16.21", 20641, 22, 1418530010, Action::kAccept),
       record("eni-1235b8ca123456789", "172.31.9.69", "172.31.9.12", 49761, 3389, 1418530010, Action::kReject), idle},
      1418530010));
  REQUIRE(w->write({record("eni-22222222bbbbbbbbb", "10.0.0.5", "10.0.0.6", 40000, 443, 1418540000, Action::kAccept)},
                   1418540000));
  REQUIRE(w->close());
}

}  // namespace

TEST_CASE("flowlogs show prints a tree's records as aligned columns under the file's field names") {
  TempDir tmp;
  writeTree(tmp.path);
  auto r = run({"flowlogs", "show", tmp.path});
  CHECK(r.status == 0);
  CHECK(r.err.empty());
  CHECK(
      r.out ==
      "version  account-id    interface-id           srcaddr        dstaddr       srcport  dstport  protocol  packets  "
      "bytes  start       end         action  log-status\n"
      "2        123456789010  eni-1235b8ca123456789  172.31.16.139  172.31.16.21  20641    22       6         20       "
      "4249   1418530010  1418530070  ACCEPT  OK\n"
      "2        123456789010  eni-1235b8ca123456789  172.31.9.69    172.31.9.12   49761    3389     6         20       "
      "4249   1418530010  1418530070  REJECT  OK\n"
      "2        123456789010  eni-11111111aaaaaaaaa  -              -             -        -        -         -        "
      "-      1431280876  1431280934  -       NODATA\n"
      "2        123456789010  eni-22222222bbbbbbbbb  10.0.0.5       10.0.0.6      40000    443      6         20       "
      "4249   1418540000  1418540060  ACCEPT  OK\n");
}

TEST_CASE("flowlogs show filters by ENI, action, address, port and time, and prints JSON lines") {
  TempDir tmp;
  writeTree(tmp.path);
  auto count = [&](std::vector<std::string> filters) {
    std::vector<std::string> args{"flowlogs", "show", tmp.path, "--json"};
    args.insert(args.end(), filters.begin(), filters.end());
    auto r = run(args);
    CHECK(r.status == 0);
    std::size_t n = 0;
    for (char c : r.out) n += c == '\n';
    return n;
  };
  CHECK(count({}) == 4);
  CHECK(count({"--eni", "eni-1235b8ca123456789"}) == 2);
  CHECK(count({"--action", "REJECT"}) == 1);
  CHECK(count({"--addr", "172.31.16.21"}) == 1);
  CHECK(count({"--addr", "10.0.0.7"}) == 0);
  CHECK(count({"--port", "22"}) == 1);
  CHECK(count({"--port", "40000"}) == 1);
  CHECK(count({"--since", "1418539000"}) == 2);  // the fourth record and the NODATA row of 2015
  CHECK(count({"--since", "1431280000"}) == 1);
  CHECK(count({"--until", "2014-12-14T04:10Z"}) == 2);  // 1418530200: the first two records
  CHECK(count({"--since", "2014-12-14T04:00:00Z", "--until", "2014-12-14T07:00:00Z"}) == 3);
  auto r = run({"flowlogs", "show", tmp.path, "--json", "--action", "REJECT"});
  CHECK(r.out ==
        "{\"version\":2,\"account-id\":\"123456789010\",\"interface-id\":\"eni-1235b8ca123456789\",\"srcaddr\":"
        "\"172.31.9.69\",\"dstaddr\":\"172.31.9.12\",\"srcport\":49761,\"dstport\":3389,\"protocol\":6,\"packets\":20,"
        "\"bytes\":4249,\"start\":1418530010,\"end\":1418530070,\"action\":\"REJECT\",\"log-status\":\"OK\"}\n");
  auto idle = run({"flowlogs", "show", tmp.path, "--json", "--eni", "eni-11111111aaaaaaaaa"});
  CHECK(idle.out.find("\"srcaddr\":null") != std::string::npos);
  CHECK(run({"flowlogs", "show", tmp.path, "--since", "yesterday"}).status == 2);
  CHECK(run({"flowlogs", "show", tmp.path, "--addr", "not-an-address"}).status == 2);
  CHECK(run({"flowlogs", "show", tmp.path, "--action", "DROP"}).status == 2);
}

TEST_CASE("flowlogs show reports hostile files with file:line, still prints the good records, exits 1") {
  TempDir tmp;
  writeTree(tmp.path);
  {
    std::ofstream bad(tmp.path + "/broken.log.gz", std::ios::binary);
    bad << "not gzip at all";
  }
  REQUIRE(::symlink("/etc/passwd", (tmp.path + "/passwd.log").c_str()) == 0);
  auto r = run({"flowlogs", "show", tmp.path, "--json"});
  CHECK(r.status == 1);
  CHECK(r.out.find("eni-22222222bbbbbbbbb") != std::string::npos);
  CHECK(r.err ==
        fmt::format("{0}/broken.log.gz:1: bad gzip data: incorrect header check\n"
                    "{0}/passwd.log: a symlink; not followed\n"
                    "vpcfw flowlogs show: 4 records shown of 4 read from 3 files; 2 files and 0 lines skipped\n",
                    tmp.path));
  auto missing = run({"flowlogs", "show", tmp.path + "/nothing"});
  CHECK(missing.status == 2);
  CHECK(missing.err.find("cannot read") != std::string::npos);
}
