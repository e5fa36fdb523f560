// IR -> nft text that `nft -f` loads and people read.
#pragma once

#include <string>

#include "vpcfw/compile/ir.h"

namespace vpcfw::compile {

// The table as an nft script: `table inet vpcfw { ... }`. The script creates
// the table if missing and then replaces its content atomically (it starts
// with `table ...; delete table ...;` so a load fully replaces what was there).
std::string renderScript(const Ruleset& r);

// The table block alone, as `nft list table` would show it (for diffs and goldens).
std::string renderTable(const Table& t);

std::string renderValue(Field f, const Value& v);

}  // namespace vpcfw::compile
