// The vpcfw command line as a user runs it: output and exit statuses
// (0 reachable / valid, 1 blocked, 2 usage or config error).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "support/test_config.h"
#include "vpcfw/cli/cli.h"

namespace {

const auto run = &vpcfw::test::runCli;

std::string example(const char* name) { return std::string(VPCFW_SOURCE_DIR) + "/config/examples/" + name + ".yaml"; }

}  // namespace

TEST_CASE("vpcfw validate accepts every example") {
  for (const char* name : {"two-tier", "default-vpc", "bastion", "peering"}) {
    CAPTURE(name);
    auto r = run({"validate", example(name)});
    CHECK(r.status == 0);
    CHECK(r.out.find("valid:") != std::string::npos);
  }
}

TEST_CASE("vpcfw validate reports located errors and exits 2") {
  auto r = run({"validate", std::string(VPCFW_SOURCE_DIR) + "/tests/invalid/nacl-duplicate-rule.yaml"});
  CHECK(r.status == 2);
  CHECK(r.err.find("nacl-duplicate-rule.yaml:") != std::string::npos);
  CHECK(r.err.find(": error: NACL 'web-acl' already has ingress rule number 100") != std::string::npos);
  auto j = run({"validate", "--json", std::string(VPCFW_SOURCE_DIR) + "/tests/invalid/nacl-duplicate-rule.yaml"});
  CHECK(j.status == 2);
  auto parsed = nlohmann::json::parse(j.out);
  CHECK(parsed["valid"] == false);
  REQUIRE(parsed["diagnostics"].size() >= 1);
  CHECK(parsed["diagnostics"][0]["severity"] == "error");
  CHECK(parsed["diagnostics"][0]["line"].get<int>() > 0);
}

TEST_CASE("vpcfw explain: exit 0 when request and reply get through, with the deciding rules") {
  auto r = run({"explain", example("two-tier"), "--from", "web1", "--to", "db1", "--proto", "tcp", "--port", "5432"});
  CHECK(r.status == 0);
  CHECK(r.out.find("db-acl ingress rule 100") != std::string::npos);
  CHECK(r.out.find("Return path") != std::string::npos);
  CHECK(r.out.find("web-acl ingress rule 130") != std::string::npos);
  CHECK(r.out.find("Verdict: REACHABLE") != std::string::npos);
}

TEST_CASE("vpcfw explain: exit 1 when blocked, naming the code and rule") {
  auto r = run({"explain", example("two-tier"), "--from", "web1", "--to", "db1", "--proto", "tcp", "--port", "22"});
  CHECK(r.status == 1);
  CHECK(r.out.find("Verdict: BLOCKED on the forward path at network ACL web-acl (subnet web): SUBNET_ACL_RESTRICTION "
                   "(web-acl egress rule *)") != std::string::npos);
}

TEST_CASE("vpcfw explain --json is machine-readable") {
  auto r = run(
      {"explain", example("two-tier"), "--from", "web1", "--to", "db1", "--proto", "tcp", "--port", "22", "--json"});
  CHECK(r.status == 1);
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["reachable"] == false);
  CHECK(j["blocked"]["code"] == "SUBNET_ACL_RESTRICTION");
  CHECK(j["blocked"]["rule"] == "web-acl egress rule *");
  CHECK(j["forward"]["packet"]["dst_port"] == 22);
  CHECK(j["return"].is_null());
}

TEST_CASE("vpcfw usage errors exit 2") {
  CHECK(run({}).status == 2);
  CHECK(run({"frobnicate"}).status == 2);
  CHECK(run({"explain", example("two-tier"), "--from", "web1"}).status == 2);
  auto noPort = run({"explain", example("two-tier"), "--from", "web1", "--to", "db1", "--proto", "tcp"});
  CHECK(noPort.status == 2);
  CHECK(noPort.err.find("--port 0..65535 is required for tcp") != std::string::npos);
  auto unknown =
      run({"explain", example("two-tier"), "--from", "web9", "--to", "db1", "--proto", "tcp", "--port", "1"});
  CHECK(unknown.status == 2);
  CHECK(unknown.err.find("'web9' is neither an instance") != std::string::npos);
  CHECK(run({"explain", "/nonexistent.yaml", "--from", "a", "--to", "b", "--port", "1"}).status == 2);
  CHECK(run({"--help"}).status == 0);
}
