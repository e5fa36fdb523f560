// Inside the config module: readConfigFile that also hands back the fstat of
// the file it read, for the cache of config sources (source.cpp).
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>

#include "vpcfw/config/loader.h"

namespace vpcfw::config {

// readConfigFile; `st` is the fstat of the descriptor the bytes came from.
std::optional<std::string> readRegularFile(const std::string& path, const LoadOptions& options, Diagnostics& diags,
                                           struct stat& st);

}  // namespace vpcfw::config
