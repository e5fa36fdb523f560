// Loading a vpcfw YAML config into a validated model. Parse errors, schema
// errors and AWS rule violations all come back as located diagnostics
// (file:line:column); a model is returned only when there were none. The input
// is bounded (docs/config.md, "Input limits"): only regular files of at most
// LoadOptions::maxBytes, one YAML document, a bounded nesting depth and alias
// expansion, so that no file costs more than linear time and memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "vpcfw/base/diagnostic.h"
#include "vpcfw/model/model.h"

namespace vpcfw::config {

// What loadConfigFile accepts; a caller (the CLI, the daemon) may pass its own.
struct LoadOptions {
  static constexpr std::size_t kDefaultMaxBytes = std::size_t{64} << 20;
  std::size_t maxBytes = kDefaultMaxBytes;  // larger files are refused
  std::string limitHint;                    // how a user raises maxBytes, shown when a file is too large
};

// Collections nested deeper than this are an error (the schema needs 6).
inline constexpr int kMaxNesting = 64;
// Aliases may expand a document to at most max(kMinExpansion, kExpansionFactor
// x its size in bytes), counting one per node plus the bytes of each scalar.
inline constexpr std::uint64_t kMinExpansion = 100'000;
inline constexpr std::uint64_t kExpansionFactor = 10;
// Longest string value the loader keeps (descriptions, host names, ...).
inline constexpr std::size_t kMaxTextBytes = 1024;

// Reads the YAML text into `out` (names, values, positions), without the
// cross-object checks of model::validate. Returns false on any error.
bool parseConfig(std::string_view yaml, const std::string& sourceName, model::Model& out, Diagnostics& diags);

// parseConfig + model::validate. `sourceName` is what diagnostics call the file.
std::optional<model::Model> loadConfigString(std::string_view yaml, const std::string& sourceName, Diagnostics& diags);

// The bytes of `path` when it is a regular file (not a FIFO, device, directory
// or socket, also through a symlink) of at most options.maxBytes, checked
// before and while reading; otherwise one diagnostic "path: error: ...".
std::optional<std::string> readConfigFile(const std::string& path, const LoadOptions& options, Diagnostics& diags);

// readConfigFile + loadConfigString.
std::optional<model::Model> loadConfigFile(const std::string& path, Diagnostics& diags,
                                           const LoadOptions& options = {});

}  // namespace vpcfw::config
