// The validated model as JSON (private to the CLI).
#pragma once

#include <nlohmann/json.hpp>

#include "vpcfw/model/model.h"

namespace vpcfw::cli {

nlohmann::json modelToJson(const model::Model& m);

}  // namespace vpcfw::cli
