// Presenting a verdict: a trace for people and JSON for programs.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "vpcfw/eval/evaluator.h"

namespace vpcfw::eval {

// The forward and return path, one line per step with the deciding rule, and
// the verdict with the explanation code of the blocking step.
std::string formatVerdictText(const Verdict& v);

nlohmann::json verdictToJson(const Verdict& v);

}  // namespace vpcfw::eval
