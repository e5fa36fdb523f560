// libFuzzer target for the config loader and validator: any bytes must give a
// model or diagnostics, never a crash, a hang or undefined behaviour. When a
// config loads, it is also explained once, so the evaluator sees fuzzed models.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "vpcfw/config/loader.h"
#include "vpcfw/eval/evaluator.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  vpcfw::Diagnostics diags;
  auto m = vpcfw::config::loadConfigString(text, "fuzz.yaml", diags);
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
