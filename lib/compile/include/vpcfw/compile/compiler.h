// The compiler: model + placement -> one nftables ruleset per fabric. Pure and
// deterministic: the same inputs give the same IR, byte for byte once rendered.
//
// Shape (docs/ruleset.md): in table `inet vpcfw` of each fabric, a forward base
// chain drops spoofed sources, dispatches by interface through verdict maps to
// the subnets' NACL chains (stateless, every packet, before conntrack), then
// accepts established/related, drops invalid, and dispatches to the ENIs'
// security-group chains; group rules live in concatenated interval sets, group
// references in named member sets.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/compile/ir.h"
#include "vpcfw/model/model.h"

namespace vpcfw::compile {

inline constexpr std::string_view kTableName = "vpcfw";

// Where an ENI's interface is: the fabric (a network namespace, or the host)
// whose forward path carries its traffic, and the interface name there.
struct Attachment {
  std::string fabric;
  std::string ifname;
};

struct Placement {
  std::vector<std::optional<Attachment>> byInstance;  // index = instance; nullopt: not enforced
};

// The lab's placement: every VPC's router namespace "vpcfw-<vpc>" is the
// fabric of its ENIs, whose interfaces there are named by labInterfaceName().
Placement labPlacement(const model::Model& m);

// "eni-<instance>" when it fits the 15-character limit, else a shortened name
// with a hash of the full one, so distinct instances get distinct names.
std::string labInterfaceName(const std::string& instance);
std::string labFabricName(const std::string& vpc);

// One ruleset per fabric that has ENIs, ordered by fabric name.
[[nodiscard]] Expected<std::vector<Ruleset>> compileRulesets(const model::Model& m, const Placement& p);

}  // namespace vpcfw::compile
