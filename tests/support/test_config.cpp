// Helpers for tests that start from a YAML config written inline, or run the
// CLI in-process (test_config.h).
#include "support/test_config.h"

#include <fmt/format.h>

#include <sstream>

#include "vpcfw/cli/cli.h"
#include "vpcfw/config/loader.h"

namespace vpcfw::test {

namespace {
std::string shortForm(const Diagnostic& d) {
  return fmt::format("{}:{}: {}: {}", d.where.line, d.where.column,
                     d.severity == Severity::kError ? "error" : "warning", d.message);
}
}  // namespace

model::Model loadOk(const std::string& yaml) {
  Diagnostics diags;
  auto m = config::loadConfigString(yaml, "test.yaml", diags);
  INFO(diags.format());
  REQUIRE(m.has_value());
  return *m;
}

std::vector<std::string> loadDiagnostics(const std::string& yaml, bool* ok) {
  Diagnostics diags;
  auto m = config::loadConfigString(yaml, "test.yaml", diags);
  if (ok) *ok = m.has_value();
  std::vector<std::string> out;
  for (const auto& d : diags.all()) out.push_back(shortForm(d));
  return out;
}

bool hasDiagnostic(const std::vector<std::string>& diags, const std::string& needle) {
  for (const auto& d : diags)
    if (d.find(needle) != std::string::npos) return true;
  return false;
}

model::Model loadExample(const std::string& name) {
  Diagnostics diags;
  auto m = config::loadConfigFile(std::string(VPCFW_SOURCE_DIR) + "/config/examples/" + name + ".yaml", diags);
  INFO(diags.format());
  REQUIRE(m.has_value());
  return *m;
}

eval::Verdict explain(const model::Model& m, const std::string& from, const std::string& to, const std::string& proto,
                      int port, int icmpType, int icmpCode) {
  eval::FlowRequest req;
  req.from = from;
  req.to = to;
  auto p = net::Protocol::parse(proto);
  REQUIRE(p.has_value());
  req.protocol = *p;
  req.port = static_cast<std::uint16_t>(port);
  req.icmpType = icmpType;
  req.icmpCode = icmpCode;
  auto v = eval::explainFlow(m, req);
  INFO(from << " -> " << to << ": " << (v ? std::string() : v.error().message));
  REQUIRE(v.has_value());
  return *v;
}

eval::Packet makePacket(const char* proto, const char* src, const char* dst, int dport, int icmpType, int icmpCode) {
  eval::Packet p;
  p.protocol = *net::Protocol::parse(proto);
  p.src = *net::IpAddress::parse(src);
  p.dst = *net::IpAddress::parse(dst);
  p.srcPort = 40000;
  p.dstPort = static_cast<std::uint16_t>(dport);
  p.icmpType = icmpType;
  p.icmpCode = icmpCode;
  return p;
}

CliResult runCli(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int status = cli::run(args, out, err);
  return {status, out.str(), err.str()};
}

}  // namespace vpcfw::test
