// Helpers for tests that start from a YAML config written inline.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "vpcfw/base/diagnostic.h"
#include "vpcfw/eval/evaluator.h"
#include "vpcfw/model/model.h"

namespace vpcfw::test {

// Loads and validates; fails the current test (printing the diagnostics) if
// the config has errors.
model::Model loadOk(const std::string& yaml);

// Loads a config that must fail; returns its diagnostics formatted as
// "line:column: severity: message" (no file name), errors and warnings.
std::vector<std::string> loadDiagnostics(const std::string& yaml, bool* ok = nullptr);

// True when some diagnostic contains `needle`.
bool hasDiagnostic(const std::vector<std::string>& diags, const std::string& needle);

// An example config from config/examples.
model::Model loadExample(const std::string& name);

// explainFlow with the request fields most tests set.
eval::Verdict explain(const model::Model& m, const std::string& from, const std::string& to, const std::string& proto,
                      int port = 0, int icmpType = -1, int icmpCode = 0);

// A packet for the evaluator's building blocks: addresses as text, the
// destination port (tcp/udp) and ICMP type/code (-1 where they do not apply).
eval::Packet makePacket(const char* proto, const char* src, const char* dst, int dport, int icmpType = -1,
                        int icmpCode = -1);

// `vpcfw ARGS...` run in-process: its exit status, standard output and error.
struct CliResult {
  int status;
  std::string out, err;
};
CliResult runCli(std::vector<std::string> args);

}  // namespace vpcfw::test
