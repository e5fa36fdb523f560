// Validation: every rule and quota that AWS enforces (vpc-semantics.md),
// reported as located diagnostics, plus the AWS defaults a VPC gets without
// asking (default NACL, default security group, main route table, local routes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "vpcfw/base/diagnostic.h"
#include "vpcfw/model/model.h"

namespace vpcfw::model {

// Checks `m` as loaded from a config, adds the AWS defaults and resolves every
// reference. Reports all problems it finds to `diags`; returns true when there
// were no errors (warnings allowed). A model that failed must not be used.
bool validate(Model& m, Diagnostics& diags);

// The outcome of the rule checks of security groups (the per-rule part of
// validation) in earlier runs, so that a reload of a config directory checks
// the rules of the groups it parsed anew, not of all. An outcome is reused
// only for a group of the same text (same stamp) whose every input outside it
// is as it was: its VPC and the defaults added to it, the quota, and what
// each name it refers to resolves to (index, VPC, peering, prefix list
// family and size). Only outcomes without errors are kept; their warnings are
// replayed in place, so the diagnostics are those of a full check.
class GroupRuleMemo {
 public:
  struct Reference {
    std::string name;
    bool prefixList = false;
    std::size_t index = kNone;
    std::size_t vpc = kNone;  // a group's
    bool peered = false;      // a group of another VPC: an active peering with it
    net::Family family = net::Family::kIpv4;
    int maxEntries = 0;
  };
  struct Outcome {
    std::size_t vpc = kNone;
    bool selfRule = false;  // the defaults that were added
    int egressDefaults = 0;
    int quota = 0;
    // The rules as checked: defaults added, references resolved. Shared with
    // the model that was validated (not a copy).
    SharedList<SgRule> ingress, egress;
    std::vector<Reference> references;
    std::vector<Diagnostic> warnings;
  };
  std::unordered_map<std::uint64_t, Outcome> outcomes;  // by stamp
};

// validate(), reusing and updating `memo`. `stamps[i]` names the text of
// m.groups[i] as loaded (before the defaults are added): equal stamps mean
// the same text at the same place of the same file; 0 is never reused.
bool validate(Model& m, Diagnostics& diags, const std::vector<std::uint64_t>& stamps, GroupRuleMemo& memo);

}  // namespace vpcfw::model
