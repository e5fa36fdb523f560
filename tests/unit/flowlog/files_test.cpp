// The writers and the reader: the S3 key layout (names, directories, modes,
// gzip, header, rotation, no partial file visible), read back by vpcfw's
// reader and by an independent one (python3's gzip and csv); stream files;
// the reader against hostile trees and files.
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "vpcfw/flowlog/reader.h"
#include "vpcfw/flowlog/writer.h"

using namespace vpcfw::flowlog;
namespace fs = std::filesystem;

namespace {

// A fresh directory under /tmp, removed at the end of the test.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/vpcfw-flowlog-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

constexpr std::int64_t kT = 1418530010;  // 2014-12-14T04:06:50Z

Record record(std::uint16_t sport, std::int64_t t = kT) {
  Record r;
  r.accountId = "123456789010";
  r.region = "us-east-1";
  r.eni.interfaceId = "eni-1235b8ca123456789";
  r.srcAddr = r.pktSrcAddr = *vpcfw::net::IpAddress::parse("172.31.16.139");
  r.dstAddr = r.pktDstAddr = *vpcfw::net::IpAddress::parse("172.31.16.21");
  r.srcPort = sport;
  r.dstPort = 22;
  r.protocol = 6;
  r.packets = 20;
  r.bytes = 4249;
  r.start = t;
  r.end = t + 60;
  return r;
}

S3LayoutOptions layout(const std::string& prefix) {
  S3LayoutOptions o;
  o.prefix = prefix;
  o.accountId = "123456789010";
  o.region = "us-east-1";
  o.flowLogId = "fl-1234abcd";
  return o;
}

struct Read {
  std::vector<std::string> rows;  // "file-name:line: values"
  ReadStats stats;
};

Read readAll(const std::string& path, ReadLimits limits = {}) {
  Read out;
  auto stats = readFlowLogs(path, limits, [&](const RowView& row) {
    std::string values;
    for (auto v : row.values) values += (values.empty() ? "" : " ") + std::string(v);
    out.rows.push_back(fmt::format("{}:{}: {}", fs::path(row.file).filename().string(), row.line, values));
  });
  REQUIRE(stats);
  out.stats = *stats;
  return out;
}

std::vector<std::string> problems(const ReadStats& s) {
  std::vector<std::string> out;
  for (const auto& p : s.problems) out.push_back(p.text());
  return out;
}

std::string run(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  CHECK(::pclose(p) == 0);
  return out;
}

void writeFile(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

std::string gzipped(const std::string& text) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(compressBound(static_cast<uLong>(text.size())) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

const std::string kHeader = Format::defaultFormat().header();
const std::string kLine =
    "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT "
    "OK";

// kLine with another source port.
std::string withPort(int port) {
  std::string l = kLine;
  return l.replace(l.find(" 20641 "), 7, fmt::format(" {} ", port));
}

}  // namespace

TEST_CASE("the S3 layout's directory and file name are AWS's, from the file's window in UTC") {
  CHECK(s3LayoutDirectory("123456789010", "us-east-1", kT) == "AWSLogs/123456789010/vpcflowlogs/us-east-1/2014/12/14");
  CHECK(s3LayoutFileName("123456789010", "us-east-1", "fl-1234abcd", 1418529900, "fe123456") ==
        "123456789010_vpcflowlogs_us-east-1_fl-1234abcd_20141214T0405Z_fe123456.log.gz");
}

TEST_CASE("S3-layout files: header line, gzip, modes 0640/0755, visible only when complete, read back two ways") {
  TempDir tmp;
  const std::string prefix = tmp.path + "/bucket/prefix";
  auto w = makeS3LayoutWriter(layout(prefix));
  REQUIRE(w->write({record(20641)}, kT));
  // While its window is open the file exists only under its hidden temporary name.
  auto during = readAll(prefix);
  CHECK(during.stats.rows == 0);
  CHECK(during.stats.files == 0);
  const std::string day = prefix + "/AWSLogs/123456789010/vpcflowlogs/us-east-1/2014/12/14";
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(day)) names.push_back(e.path().filename().string());
  REQUIRE(names.size() == 1);
  CHECK(names[0].starts_with(".123456789010_vpcflowlogs_us-east-1_fl-1234abcd_20141214T0405Z_"));
  CHECK(names[0].ends_with(".log.gz.tmp"));
  REQUIRE(w->write({record(20642), record(20643)}, kT + 10));
  REQUIRE(w->close());
  auto after = readAll(prefix);
  CHECK(after.stats.files == 1);
  CHECK(after.stats.problemCount == 0);
  REQUIRE(after.rows.size() == 3);
  CHECK(after.rows[0].ends_with(":2: " + kLine));
  // The independent reader: python3's gzip and csv.
  const std::string py = run(fmt::format("python3 {}/tests/unit/flowlog/read_tree.py {}", VPCFW_SOURCE_DIR, prefix));
  const std::string name = fs::directory_iterator(day)->path().filename().string();
  CHECK(name.size() ==
        std::string("123456789010_vpcflowlogs_us-east-1_fl-1234abcd_20141214T0405Z_fe123456.log.gz").size());
  CHECK(py == fmt::format("file AWSLogs/123456789010/vpcflowlogs/us-east-1/2014/12/14/{} 0o640\n14 {}\n14 {}\n"
                          "14 {}\n14 {}\n",
                          name, kHeader, kLine, withPort(20642), withPort(20643)));
  // Every directory the writer made is 0755.
  for (std::string d = day;
       d.size() > prefix.size() - std::string("/bucket/prefix").size() + std::string("/bucket").size();
       d = fs::path(d).parent_path().string()) {
    struct stat st {};
    REQUIRE(::stat(d.c_str(), &st) == 0);
    CHECK_MESSAGE((st.st_mode & 0777) == 0755, d);
  }
}

TEST_CASE("S3-layout files rotate every 5 minutes and at the size limit") {
  TempDir tmp;
  auto w = makeS3LayoutWriter(layout(tmp.path));
  REQUIRE(w->write({record(1)}, kT));
  REQUIRE(w->write({record(2)}, kT + 100));  // the same window (04:05)
  REQUIRE(w->write({}, 1418530200));         // 04:10: the first file is complete
  CHECK(readAll(tmp.path).stats.files == 1);
  REQUIRE(w->write({record(3)}, 1418530200 + 5));  // a new file for 04:10
  REQUIRE(w->close());
  auto r = readAll(tmp.path);
  CHECK(r.stats.files == 2);
  CHECK(r.rows.size() == 3);
  CHECK(r.rows[2].find("_20141214T0410Z_") != std::string::npos);

  TempDir small;
  auto o = layout(small.path);
  o.maxFileBytes = 1;  // every write fills a file
  auto s = makeS3LayoutWriter(o);
  for (std::uint16_t p = 1; p <= 3; ++p) REQUIRE(s->write({record(p)}, kT));
  REQUIRE(s->close());
  auto sr = readAll(small.path);
  CHECK(sr.stats.files == 3);
  CHECK(sr.rows.size() == 3);
  CHECK(sr.stats.problemCount == 0);
}

TEST_CASE("the writer follows no symlink: not in the prefix, not in the layout's directories") {
  TempDir tmp;
  TempDir elsewhere;
  // A symlink as a component of the prefix.
  REQUIRE(::symlink(elsewhere.path.c_str(), (tmp.path + "/link").c_str()) == 0);
  auto w = makeS3LayoutWriter(layout(tmp.path + "/link/prefix"));
  auto e = w->write({record(1)}, kT);
  REQUIRE_FALSE(e);
  CHECK(e.error().message.find("'link' is a symlink") != std::string::npos);
  // A symlink planted where the layout makes a directory.
  fs::create_directories(tmp.path + "/p/AWSLogs/123456789010/vpcflowlogs");
  REQUIRE(::symlink(elsewhere.path.c_str(), (tmp.path + "/p/AWSLogs/123456789010/vpcflowlogs/us-east-1").c_str()) == 0);
  auto planted = makeS3LayoutWriter(layout(tmp.path + "/p"));
  auto e2 = planted->write({record(1)}, kT);
  REQUIRE_FALSE(e2);
  CHECK(e2.error().message.find("'us-east-1' is a symlink") != std::string::npos);
  CHECK(fs::is_empty(elsewhere.path));
  // The baseline: the same writer into a plain directory works.
  auto ok = makeS3LayoutWriter(layout(tmp.path + "/plain"));
  CHECK(ok->write({record(1)}, kT));
  CHECK(ok->close());
  CHECK_FALSE(openDirectoryNoFollow("relative/path", true));
  CHECK_FALSE(openDirectoryNoFollow(tmp.path + "/../x", true));
}

TEST_CASE("stream files: one per ENI, header once, appended across writers, another format refused") {
  TempDir tmp;
  const std::string dir = tmp.path + "/streams";
  Record other = record(5);
  other.eni.interfaceId = "eni-0000000000000000b";
  {
    auto w = makeStreamWriter(dir, Format::defaultFormat());
    REQUIRE(w->write({record(1), other}, kT));
    REQUIRE(w->write({record(2)}, kT + 60));
    REQUIRE(w->close());
  }
  {
    auto w = makeStreamWriter(dir, Format::defaultFormat());
    REQUIRE(w->write({record(3)}, kT + 120));
  }
  std::ifstream f(dir + "/eni-1235b8ca123456789.log");
  std::string first, line;
  std::getline(f, first);
  CHECK(first == kHeader);
  int n = 0;
  while (std::getline(f, line)) ++n;
  CHECK(n == 3);
  struct stat st {};
  REQUIRE(::stat((dir + "/eni-1235b8ca123456789.log").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
  auto r = readAll(dir);
  CHECK(r.stats.files == 2);
  CHECK(r.rows.size() == 4);
  auto custom = Format::parse("${interface-id} ${srcaddr}");
  REQUIRE(custom);
  auto w = makeStreamWriter(dir, *custom);
  auto e = w->write({record(4)}, kT);
  REQUIRE_FALSE(e);
  CHECK(e.error().message.find("another format") != std::string::npos);
  // A symlink standing for an ENI's stream is refused, not followed.
  TempDir elsewhere;
  Record third = record(6);
  third.eni.interfaceId = "eni-0000000000000000c";
  REQUIRE(::symlink((elsewhere.path + "/victim").c_str(), (dir + "/eni-0000000000000000c.log").c_str()) == 0);
  auto w2 = makeStreamWriter(dir, Format::defaultFormat());
  CHECK_FALSE(w2->write({third}, kT));
  CHECK_FALSE(fs::exists(elsewhere.path + "/victim"));
  // ...and does not keep the other ENIs of the batch from their streams (the
  // symlink's ENI sorts first): the error is still reported.
  Record fourth = record(7);
  fourth.eni.interfaceId = "eni-0000000000000000d";
  auto w3 = makeStreamWriter(dir, Format::defaultFormat());
  CHECK_FALSE(w3->write({third, fourth}, kT));
  CHECK(fs::exists(dir + "/eni-0000000000000000d.log"));
  CHECK(readAll(dir + "/eni-0000000000000000d.log").rows.size() == 1);
}

TEST_CASE("the descriptor writer prints the header once, then the lines") {
  TempDir tmp;
  const std::string path = tmp.path + "/out";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  REQUIRE(fd >= 0);
  auto w = makeFdWriter(fd, Format::defaultFormat(), true);
  REQUIRE(w->write({record(20641)}, kT));
  REQUIRE(w->write({record(20641)}, kT));
  ::close(fd);
  std::ifstream f(path);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CHECK(all == kHeader + "\n" + kLine + "\n" + kLine + "\n");
}

TEST_CASE("the reader refuses hostile files with located problems and reads the good ones beside them") {
  TempDir tmp;
  const std::string good = gzipped(kHeader + "\n" + kLine + "\n");
  writeFile(tmp.path + "/a-good.log.gz", good);
  writeFile(tmp.path + "/b-truncated.log.gz", good.substr(0, good.size() - 9));
  writeFile(tmp.path + "/c-not-gzip.log.gz", "2 123456789010 eni-1 - - - - - - - 1 2 - NODATA\n");
  writeFile(tmp.path + "/d-no-header.log.gz", gzipped(kLine + "\n"));
  writeFile(tmp.path + "/e-fields.log.gz",
            gzipped(kHeader + "\n" + kLine + "\n2 123456789010 eni-1 - -\n" + kLine + " extra\n\n" + kLine + "\n"));
  writeFile(tmp.path + "/f-empty.log.gz", "");
  writeFile(tmp.path + "/g-trailing-garbage.log.gz", good + "garbage");
  writeFile(tmp.path + "/h-concatenated.log.gz", good + gzipped(kLine + "\n"));
  writeFile(tmp.path + "/i-binary.log", kHeader + "\n" + std::string("2 \x01\xff x", 6) + "\n");
  writeFile(tmp.path + "/not-a-log.txt", "ignored");
  writeFile(tmp.path + "/.hidden.log.gz.tmp", "a writer's temporary file");
  auto r = readAll(tmp.path);
  const std::string p = tmp.path + "/";
  CHECK(problems(r.stats) == std::vector<std::string>{
                                 p + "b-truncated.log.gz:2: truncated gzip data (the file ends inside its stream)",
                                 p + "c-not-gzip.log.gz:1: bad gzip data: incorrect header check",
                                 p + "d-no-header.log.gz:1: not a flow-log file: the header names an unknown field '2'",
                                 p + "e-fields.log.gz:3: 5 values where the header names 14 fields; skipped",
                                 p + "e-fields.log.gz:4: 15 values where the header names 14 fields; skipped",
                                 p + "e-fields.log.gz:5: 0 values where the header names 14 fields; skipped",
                                 p + "f-empty.log.gz: empty file: not gzip",
                                 p + "g-trailing-garbage.log.gz:3: bad gzip data: incorrect header check",
                                 p + "i-binary.log:2: line holds control characters or invalid UTF-8; skipped",
                             });
  // Rows: the good file, e's two good lines, g's line before its garbage, h's two members.
  CHECK(r.rows == std::vector<std::string>{"a-good.log.gz:2: " + kLine, "e-fields.log.gz:2: " + kLine,
                                           "e-fields.log.gz:6: " + kLine, "g-trailing-garbage.log.gz:2: " + kLine,
                                           "h-concatenated.log.gz:2: " + kLine, "h-concatenated.log.gz:3: " + kLine});
  CHECK(r.stats.skippedFiles == 5);
  CHECK(r.stats.skippedLines == 4);
}

TEST_CASE("the reader follows no symlink in a tree, reads no FIFO, and bounds lines, depth and sizes") {
  TempDir tmp;
  TempDir elsewhere;
  const std::string good = gzipped(kHeader + "\n" + kLine + "\n");
  writeFile(elsewhere.path + "/secret.log.gz", good);
  fs::create_directories(tmp.path + "/t");
  writeFile(tmp.path + "/t/real.log.gz", good);
  REQUIRE(::symlink((elsewhere.path + "/secret.log.gz").c_str(), (tmp.path + "/t/link.log.gz").c_str()) == 0);
  REQUIRE(::symlink(elsewhere.path.c_str(), (tmp.path + "/t/linkdir").c_str()) == 0);
  REQUIRE(::mkfifo((tmp.path + "/t/fifo.log.gz").c_str(), 0600) == 0);
  // A 10 MB line between two good ones.
  writeFile(tmp.path + "/t/long.log.gz",
            gzipped(kHeader + "\n" + kLine + "\n" + std::string(10 << 20, 'x') + "\n" + kLine + "\n"));
  auto r = readAll(tmp.path + "/t");
  const std::string p = tmp.path + "/t/";
  CHECK(problems(r.stats) == std::vector<std::string>{p + "fifo.log.gz: not a regular file; not read",
                                                      p + "link.log.gz: a symlink; not followed",
                                                      p + "linkdir: a symlink; not followed",
                                                      p + "long.log.gz:3: line longer than 65536 bytes skipped"});
  CHECK(r.rows ==
        std::vector<std::string>{"long.log.gz:2: " + kLine, "long.log.gz:4: " + kLine, "real.log.gz:2: " + kLine});
  // Bounds: depth, uncompressed size, the number of problems kept.
  TempDir deep;
  std::string d = deep.path;
  for (int i = 0; i < 5; ++i) d += "/d";
  fs::create_directories(d);
  writeFile(d + "/x.log.gz", good);
  ReadLimits shallow;
  shallow.maxDepth = 3;
  auto rd = readAll(deep.path, shallow);
  CHECK(rd.stats.rows == 0);
  CHECK(rd.stats.problemCount == 1);
  CHECK(readAll(deep.path).stats.rows == 1);  // the baseline: the default depth reads it
  ReadLimits tiny;
  tiny.maxFileBytes = 100;
  tiny.maxProblems = 1;
  auto rs = readAll(tmp.path + "/t", tiny);
  CHECK(rs.stats.problems.size() == 1);
  CHECK(rs.stats.problemCount > 1);
  CHECK(rs.stats.rows <= 3);
}

TEST_CASE("the reader's path itself: one file, a missing path, a FIFO") {
  TempDir tmp;
  writeFile(tmp.path + "/one.log.gz", gzipped(kHeader + "\n" + kLine + "\n"));
  auto r = readAll(tmp.path + "/one.log.gz");
  CHECK(r.rows.size() == 1);
  CHECK_FALSE(readFlowLogs(tmp.path + "/missing", {}, [](const RowView&) {}));
  REQUIRE(::mkfifo((tmp.path + "/fifo").c_str(), 0600) == 0);
  CHECK_FALSE(readFlowLogs(tmp.path + "/fifo", {}, [](const RowView&) {}));
}
