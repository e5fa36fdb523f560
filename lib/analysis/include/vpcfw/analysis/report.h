// Presenting reachability sets: aligned text grouped per pair for people, and
// JSON (schema in docs/analysis.md) for programs.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "vpcfw/analysis/reach.h"

namespace vpcfw::analysis {

// Per pair: one line per protocol with its ranges compressed ("tcp 443 from
// sport 1024-65535"), then one line per piece with the rules that decided it;
// "nothing" with the blocking step and its explanation code.
std::string formatReachText(const model::Model& m, const ReachResult& r);

nlohmann::json reachToJson(const model::Model& m, const ReachResult& r);

}  // namespace vpcfw::analysis
