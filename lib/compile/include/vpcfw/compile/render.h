// IR -> nft text that `nft -f` loads and people read.
#pragma once

#include <cstdint>
#include <string>

#include "vpcfw/compile/ir.h"

namespace vpcfw::compile {

// The table as an nft script: `table inet vpcfw { ... }`. The script creates
// the table if missing and then replaces its content atomically (it starts
// with `table ...; delete table ...;` so a load fully replaces what was there).
// `cacheGeneration`: the NACL verdict cache's (ir.h), 0 unless the text must
// equal a table an apply committed.
std::string renderScript(const Ruleset& r, std::uint32_t cacheGeneration = 0);

// The table block alone, as `nft list table` would show it (for diffs and goldens).
std::string renderTable(const Table& t, std::uint32_t cacheGeneration = 0);

std::string renderValue(Field f, const Value& v);

}  // namespace vpcfw::compile
