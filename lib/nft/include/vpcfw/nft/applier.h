// Applying a compiled ruleset to the kernel through libnftnl + libmnl: one
// atomic netlink batch per apply, in the host's namespace or a named one.
// vpcfw owns exactly its table (compile::kTableName, family inet) and never
// sends a message about any other table.
//
// apply() reads back what the kernel holds and sends only the difference:
// nothing when the kernel already matches, element changes for sets, a
// rewrite of just the chains whose rules changed. On any kernel error the
// batch is aborted by the kernel as a whole, so the previous ruleset stays
// in force, and the error names the config object the failing message came from.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/compile/ir.h"

namespace vpcfw::nft {

struct ApplyOptions {
  std::optional<std::string> netns;  // nullopt: the caller's namespace
  bool check = false;                // let the kernel validate, commit nothing
  bool fullReplace = false;          // ignore what the kernel holds; replace the table
};

struct ApplyReport {
  bool changed = false;          // false: the kernel already held the desired ruleset
  std::size_t messages = 0;      // netlink messages in the batch (0 when nothing changed)
  std::size_t batchBytes = 0;
  std::vector<std::string> changes;  // one line per changed object, for people
  // Where the time went, in milliseconds.
  double linearizeMs = 0, readBackMs = 0, buildMs = 0, commitMs = 0;
};

// Makes the kernel hold `desired` (the table of one fabric).
[[nodiscard]] Expected<ApplyReport> applyRuleset(const compile::Ruleset& desired, const ApplyOptions& options);

// Deletes vpcfw's table (if present) and nothing else.
[[nodiscard]] Expected<bool> deleteTable(const std::optional<std::string>& netns,
                                         std::string_view table = "vpcfw");

// What vpcfw's table in a namespace holds, and what its counted drop rules
// have dropped so far.
struct TableStatus {
  bool exists = false;
  std::size_t sets = 0, elements = 0, chains = 0, rules = 0;
  struct Counter {
    std::string chain, comment;
    std::uint64_t packets = 0, bytes = 0;
  };
  std::vector<Counter> counters;  // rules with a counter, in chain order
};
[[nodiscard]] Expected<TableStatus> tableStatus(const std::optional<std::string>& netns,
                                                std::string_view table = "vpcfw");

// What differs between the kernel and `desired`, one line per object;
// empty when they match. Sends nothing. `verbose` adds both sides' encodings.
[[nodiscard]] Expected<std::vector<std::string>> diffRuleset(const compile::Ruleset& desired,
                                                             const std::optional<std::string>& netns, bool verbose = false);

}  // namespace vpcfw::nft
