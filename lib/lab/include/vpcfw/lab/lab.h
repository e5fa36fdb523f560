// The namespace lab: a config's VPCs and instances as network namespaces on
// one machine, wired the way docs/ruleset.md describes (a router namespace
// per VPC is the fabric; each instance namespace has eth0 with its addresses
// and a default route to its subnet's router address), with the compiled
// ruleset applied. First step of the lab issue: the wiring inside each VPC.
// Internet gateways, the internet namespace and peering links are not built yet.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/model/model.h"

namespace vpcfw::lab {

inline constexpr std::string_view kPrefix = "vpcfw-";

// The namespace of a lab instance: its `netns:` or "vpcfw-i-<name>".
std::string instanceNamespace(const model::Instance& inst);

struct LabReport {
  std::vector<std::string> namespaces;  // created
  std::vector<std::string> notBuilt;    // parts of the config the lab does not build yet
};

// Builds the lab of `m` and applies its rulesets; `progress` hears one line
// per step. On failure, whatever was created is removed again.
[[nodiscard]] Expected<LabReport> labUp(const model::Model& m, const std::function<void(const std::string&)>& progress);

// Removes every namespace whose name starts with "vpcfw-", and the instance
// namespaces `m` names (when given). Returns how many were removed.
std::size_t labDown(const model::Model* m);

}  // namespace vpcfw::lab
