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

// Where an ENI's interface is: the fabric (a network namespace, or a host)
// whose kernel filters its traffic, and the interface name there. In a lab
// router the ENI's traffic is forwarded; on a host (host mode) the ENI is the
// machine's own interface, filtered on input and output, or (routed) the
// host's side of a link to a namespace, VM or container it routes for, whose
// traffic the host forwards and filters as a lab router does.
struct Attachment {
  std::string fabric;
  std::string ifname;
  bool hostMode = false;
  bool routed = false;  // hostMode only
};

struct Placement {
  std::vector<std::optional<Attachment>> byInstance;  // index = instance; nullopt: not enforced
};

// The placement the config declares: an instance in a lab namespace has its
// VPC's router namespace (names::routerNamespace) as fabric, with the
// interface names::eniInterface there; an instance on a host interface has
// the host as fabric (host mode).
Placement labPlacement(const model::Model& m);

// One ruleset per fabric that has ENIs, ordered by fabric name.
[[nodiscard]] Expected<std::vector<Ruleset>> compileRulesets(const model::Model& m, const Placement& p);

}  // namespace vpcfw::compile
