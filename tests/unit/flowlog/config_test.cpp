// The `flow_logs:` and `region:` config keys: what the loader reads, their
// defaults, the lab profile's short intervals, and merging across files.
#include <unistd.h>
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cstdio>

#include "support/test_config.h"
#include "vpcfw/config/source.h"
#include "vpcfw/flowlog/format.h"

using vpcfw::model::FlowLog;
using vpcfw::test::hasDiagnostic;
using vpcfw::test::loadDiagnostics;
using vpcfw::test::loadOk;

namespace {
const char* kNetwork = R"(
vpcs: [{name: v, cidr: 10.0.0.0/16}]
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24, availability_zone: use1-az1}]
instances: [{name: web, subnet: s, private_ip: 10.0.1.10}]
)";
}

TEST_CASE("flow_logs entries are read with every key, resolved, and region is the config's") {
  auto m = loadOk(std::string(kNetwork) + R"(
region: eu-west-1
flow_logs:
  - name: all
    vpc: v
    traffic_type: REJECT
    log_format: "${version}  ${interface-id} ${tcp-flags}"
    max_aggregation_interval: 60
    account_id: "111122223333"
    destination: {files: /var/log/vpcfw/flowlogs/}
  - {name: sub, subnet: s, traffic_type: ACCEPT, destination: {streams: /var/log/vpcfw/streams}}
  - {name: one, instance: web, destination: stdout}
)");
  CHECK(m.region == "eu-west-1");
  REQUIRE(m.flowLogs.size() == 3);
  const FlowLog& a = m.flowLogs[0];
  CHECK(a.name == "all");
  CHECK(a.resourceKind == FlowLog::Resource::kVpc);
  CHECK(a.resource == 0);
  CHECK(a.traffic == FlowLog::Traffic::kReject);
  CHECK(a.logFormat == "${version} ${interface-id} ${tcp-flags}");  // normalized
  CHECK(a.maxAggregationInterval == 60);
  CHECK(a.accountId == "111122223333");
  CHECK(a.destination == FlowLog::Destination::kFiles);
  CHECK(a.path == "/var/log/vpcfw/flowlogs");
  CHECK(a.origin.of("log_format").line == 11);
  const FlowLog& b = m.flowLogs[1];
  CHECK(b.resourceKind == FlowLog::Resource::kSubnet);
  CHECK(b.traffic == FlowLog::Traffic::kAccept);
  CHECK(b.destination == FlowLog::Destination::kStreams);
  const FlowLog& c = m.flowLogs[2];
  CHECK(c.resourceKind == FlowLog::Resource::kInstance);
  CHECK(c.resource == 0);
  // The defaults: ALL, the version-2 format, 600 s, the documented lab account.
  CHECK(c.traffic == FlowLog::Traffic::kAll);
  CHECK(c.logFormat.empty());
  CHECK(c.maxAggregationInterval == 600);
  CHECK(c.accountId == "123456789010");
  CHECK(c.destination == FlowLog::Destination::kStdout);
}

TEST_CASE("without a region key the region is us-east-1") {
  auto m = loadOk(std::string(kNetwork) + "flow_logs: [{name: x, vpc: v, destination: stdout}]\n");
  CHECK(m.region == "us-east-1");
}

TEST_CASE("the lab profile allows aggregation intervals of 1..59 s, the AWS profile does not") {
  const std::string log = "flow_logs: [{name: x, vpc: v, max_aggregation_interval: 5, destination: stdout}]\n";
  auto lab = loadOk(std::string(kNetwork) + "limits: {profile: lab}\n" + log);
  CHECK(lab.flowLogs[0].maxAggregationInterval == 5);
  bool ok = true;
  auto d = loadDiagnostics(std::string(kNetwork) + log, &ok);
  CHECK_FALSE(ok);
  CHECK(hasDiagnostic(d, "max_aggregation_interval is 5; AWS allows 60 or 600"));
  auto d2 = loadDiagnostics(std::string(kNetwork) + "limits: {profile: lab}\n" +
                                "flow_logs: [{name: x, vpc: v, max_aggregation_interval: 61, destination: stdout}]\n",
                            &ok);
  CHECK_FALSE(ok);
  CHECK(hasDiagnostic(d2, "max_aggregation_interval is 61; AWS allows 60 or 600"));
}

TEST_CASE("a config directory merges flow logs across files, and a name or the region twice is an error") {
  char tmpl[] = "/tmp/vpcfw-flowlog-config-XXXXXX";
  REQUIRE(::mkdtemp(tmpl));
  const std::string dir = tmpl;
  auto put = [&](const std::string& name, const std::string& text) {
    FILE* f = std::fopen((dir + "/" + name).c_str(), "w");
    REQUIRE(f);
    std::fputs(text.c_str(), f);
    std::fclose(f);
  };
  REQUIRE(::mkdir((dir + "/conf.d").c_str(), 0755) == 0);
  put("vpcfw.yaml", std::string(kNetwork) + "region: ap-south-1\n");
  put("conf.d/a.yaml", "flow_logs: [{name: x, vpc: v, destination: stdout}]\n");
  put("conf.d/b.yaml", "flow_logs: [{name: y, subnet: s, destination: stdout}]\n");
  vpcfw::Diagnostics diags;
  auto m = vpcfw::config::ConfigSource::open(dir, {}, false).load(diags);
  REQUIRE_MESSAGE(m, diags.format());
  CHECK(m->region == "ap-south-1");
  CHECK(m->flowLogs.size() == 2);
  put("conf.d/c.yaml", "region: us-west-2\nflow_logs: [{name: x, instance: web, destination: stdout}]\n");
  vpcfw::Diagnostics bad;
  CHECK_FALSE(vpcfw::config::ConfigSource::open(dir, {}, false).load(bad));
  const std::string text = bad.format();
  INFO(text);
  CHECK(text.find("conf.d/c.yaml:2:20: error: flow log 'x' is already defined in another file") != std::string::npos);
  CHECK(text.find("conf.d/c.yaml:1:9: error: the region is already set in another file") != std::string::npos);
  for (const char* f : {"/conf.d/a.yaml", "/conf.d/b.yaml", "/conf.d/c.yaml", "/vpcfw.yaml"})
    std::remove((dir + f).c_str());
  ::rmdir((dir + "/conf.d").c_str());
  ::rmdir(dir.c_str());
}

TEST_CASE("the example config with flow logs is valid and every format in it parses") {
  auto m = vpcfw::test::loadExample("flow-logs");
  REQUIRE_FALSE(m.flowLogs.empty());
  for (const auto& f : m.flowLogs)
    if (!f.logFormat.empty()) CHECK(vpcfw::flowlog::Format::parse(f.logFormat));
}
