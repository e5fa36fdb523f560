// Loading a vpcfw YAML config into a validated model. Parse errors, schema
// errors and AWS rule violations all come back as located diagnostics
// (file:line:column); a model is returned only when there were none.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "vpcfw/base/diagnostic.h"
#include "vpcfw/model/model.h"

namespace vpcfw::config {

// Reads the YAML text into `out` (names, values, positions), without the
// cross-object checks of model::validate. Returns false on any error.
bool parseConfig(std::string_view yaml, const std::string& sourceName, model::Model& out, Diagnostics& diags);

// parseConfig + model::validate. `sourceName` is what diagnostics call the file.
std::optional<model::Model> loadConfigString(std::string_view yaml, const std::string& sourceName, Diagnostics& diags);

// Reads `path` and loads it; an unreadable file is one diagnostic.
std::optional<model::Model> loadConfigFile(const std::string& path, Diagnostics& diags);

}  // namespace vpcfw::config
