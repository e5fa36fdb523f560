// libFuzzer target for the config loader and validator: any bytes must give a
// model or diagnostics, never a crash, a hang or undefined behaviour, and the
// bounded-input promises hold on every input (docs/config.md, "Input
// limits"): each diagnostic is one line of valid UTF-8 of bounded length, the
// errors are capped, and so is text quoted from the input. When a config
// loads, it is also explained once, so the evaluator sees fuzzed models.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>

#include "vpcfw/config/loader.h"
#include "vpcfw/eval/evaluator.h"

namespace {

// nlohmann's strict encoder is an oracle for UTF-8 independent of vpcfw's.
void requireOneLineUtf8(const std::string& s) {
  if (s.find('\n') != std::string::npos || s.find('\r') != std::string::npos) std::abort();
  (void)nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  vpcfw::Diagnostics diags;
  auto m = vpcfw::config::loadConfigString(text, "fuzz.yaml", diags);
  if (diags.all().size() > vpcfw::Diagnostics::kDefaultCap + vpcfw::Diagnostics::kDefaultWarningCap) std::abort();
  for (const auto& d : diags.all()) {
    requireOneLineUtf8(d.message);
    requireOneLineUtf8(d.hint);
    // A character is at most 4 bytes, or 4 escapes of 4 bytes each.
    if (d.message.size() > 16 * vpcfw::Diagnostics::kMaxMessageChars + 3) std::abort();
  }
  auto quoted = vpcfw::quoteForMessage(text);
  requireOneLineUtf8(quoted);
  if (quoted.size() > 16 * vpcfw::kQuotedChars + 5) std::abort();
  if (m && m->instances.size() >= 2) {
    vpcfw::eval::FlowRequest req;
    req.from = m->instances.front().name;
    req.to = m->instances.back().name;
    req.port = 443;
    (void)vpcfw::eval::explainFlow(*m, req);
    req.from = "192.0.2.1";
    (void)vpcfw::eval::explainFlow(*m, req);
  }
  return 0;
}
