// The lab record (its state file) is untrusted input: only the exact format
// vpcfw writes is accepted, and every forged or damaged line refuses the
// whole file (nothing in it may be acted on).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "vpcfw/lab/record.h"

using namespace vpcfw;

namespace {

const std::string kHead = "vpcfw-lab-state 1\nconfig /etc/vpcfw/lab.yaml\n";

lab::LabRecord sample() {
  lab::LabRecord r;
  r.config = "/etc/vpcfw/lab.yaml";
  r.add("vpcfw-shop", {4, 4026532288});
  r.add("vpcfw:i:web1", {4, 4026532350});
  r.add("vpcfw:internet", {4, 4026532301}, true);
  return r;
}

}  // namespace

TEST_CASE("record: what formatRecord writes, parseRecord reads back exactly") {
  const auto text = lab::formatRecord(sample());
  CHECK(text ==
        kHead + "ns vpcfw-shop 4:4026532288\nns vpcfw:i:web1 4:4026532350\ninternet vpcfw:internet 4:4026532301\n");
  auto r = lab::parseRecord(text);
  REQUIRE(r);
  CHECK(r->config == "/etc/vpcfw/lab.yaml");
  REQUIRE(r->namespaces.size() == 3);
  CHECK(r->find("vpcfw:i:web1")->id == lab::NsId{4, 4026532350});
  CHECK_FALSE(r->find("vpcfw:i:web1")->shared);
  CHECK(r->find("vpcfw:internet")->shared);
  CHECK(lab::formatRecord(*r) == text);
  // A lab that made nothing yet: the header alone.
  auto empty = lab::parseRecord(kHead);
  REQUIRE(empty);
  CHECK(empty->namespaces.empty());
}

TEST_CASE("record: a namespace name vpcfw would not make refuses the whole file") {
  // Each would reach a path under /run/netns (or /run/netns itself).
  for (const std::string& line :
       std::vector<std::string>{"", "ns", "ns  4:5", "ns . 4:5", "ns .. 4:5", "ns ../../tmp/x 4:5", "ns /run/netns 4:5",
                                "ns /etc 4:5", "ns a/b 4:5", "ns .hidden 4:5", "ns a\tb 4:5", "ns a b 4:5",
                                "ns " + std::string(101, 'a') + " 4:5", "ns caf\xc3\xa9 4:5", "ns a\x01 4:5"}) {
    CAPTURE(line);
    auto r = lab::parseRecord(kHead + "ns vpcfw-ok 4:9\n" + line + "\n");
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find("line 4") != std::string::npos);
  }
  // The same file without the bad line is fine: the line alone was the reason.
  CHECK(lab::parseRecord(kHead + "ns vpcfw-ok 4:9\n"));
}

TEST_CASE("record: identities, keywords, duplicates and headers are exact") {
  for (const std::string& line :
       std::vector<std::string>{"ns vpcfw-x", "ns vpcfw-x 4", "ns vpcfw-x 4:", "ns vpcfw-x :5", "ns vpcfw-x 0:5",
                                "ns vpcfw-x 4:0", "ns vpcfw-x 04:5", "ns vpcfw-x -4:5", "ns vpcfw-x 4:5x",
                                "ns vpcfw-x 4:5 extra", "ns vpcfw-x 4:99999999999999999999999", "ns vpcfw-x 4: 5",
                                "NS vpcfw-x 4:5", "nsvpcfw-x 4:5", " ns vpcfw-x 4:5", "ns vpcfw-x 4:5 ", "rm -rf /",
                                "ns vpcfw-ok 4:10", "internet vpcfw:a 4:1\ninternet vpcfw:b 4:2"}) {
    CAPTURE(line);
    CHECK_FALSE(lab::parseRecord(kHead + "ns vpcfw-ok 4:9\n" + line + "\n"));
  }
  for (const std::string& head : std::vector<std::string>{
           "", "vpcfw-lab-state 2\nconfig /a\n", "vpcfw-lab-state 1\n", "vpcfw-lab-state 1\nconfig\n",
           "vpcfw-lab-state 1\nconfig relative.yaml\n", "vpcfw-lab-state 1\nconfig /a\x1b[2J\n",
           "vpcfw-lab-state 1\r\nconfig /a\n", "vpcfw:i:web1\nvpcfw-shop\n"}) {
    CAPTURE(head);
    CHECK_FALSE(lab::parseRecord(head));
  }
  CHECK_FALSE(lab::parseRecord(kHead + "ns vpcfw-ok 4:9"));  // truncated: no final newline
  CHECK_FALSE(lab::parseRecord(std::string(lab::kRecordMaxBytes + 1, '\n')));
}

TEST_CASE("record: the key is a safe file name, distinct per config") {
  const auto a = lab::recordKey("/etc/a.yaml"), b = lab::recordKey("/etc/b.yaml");
  CHECK(a != b);
  CHECK(a.starts_with("lab-"));
  CHECK(a.size() == 20);
  CHECK(lab::recordFile(a) == a + ".state");
}
