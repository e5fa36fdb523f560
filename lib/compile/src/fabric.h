// The compiler's internals the incremental compiler builds on: compiling one
// fabric, all of it or only some ENIs' own parts, and the layout of the
// resulting table (where the ENI-independent objects end and each ENI's begin).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/compile/ir.h"
#include "vpcfw/model/model.h"

namespace vpcfw::compile::detail {

// A fabric's table is laid out as: prefixSets sets that every ENI shares
// (their elements keyed by the ENI's interface where they are the ENI's),
// then the member sets of referenced groups in the order the ENIs first
// reference them; prefixChains shared chains, then each ENI's own chains, in
// ENI order.
struct FabricLayout {
  struct Eni {
    std::size_t instance = 0;
    std::size_t chains = 0;                 // how many chains the ENI has, after those of the ENIs before it
    std::vector<std::size_t> memberGroups;  // groups whose member sets its rules use, in first-use order
  };
  // The layout holds: no name needed a suffix (names are then independent of
  // the order of creation), and no routed host with own ENIs (whose chains
  // create sets between the member sets).
  bool patchable = false;
  std::size_t prefixSets = 0, prefixChains = 0;
  std::vector<Eni> enis;  // the compiled ENIs, in order
};

// The fabrics with ENIs, ordered by name, after compileRulesets' checks.
[[nodiscard]] Expected<std::vector<std::string>> fabricsOf(const model::Model& m, const Placement& p);

// One fabric's ruleset. `only` (by instance; nullptr: all): the ENIs whose
// own parts (elements, chains, member sets) are compiled, a partial compile:
// its shared objects are all there, with the same names and keys, holding
// only those ENIs' elements, and the shard chains have no rules.
[[nodiscard]] Expected<Ruleset> compileFabric(const model::Model& m, const Placement& p, const std::string& fabric,
                                              const std::vector<char>* only, FabricLayout* layout,
                                              const CompileOptions& options);

// The member sets of group g, as the compiler names and fills them (IPv4,
// then IPv6 when the group's VPC has an IPv6 block), elements sorted.
std::vector<Set> memberSets(const model::Model& m, std::size_t g);

}  // namespace vpcfw::compile::detail
