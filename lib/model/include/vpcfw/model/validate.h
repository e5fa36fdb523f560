// Validation: every rule and quota that AWS enforces (vpc-semantics.md),
// reported as located diagnostics, plus the AWS defaults a VPC gets without
// asking (default NACL, default security group, main route table, local routes).
#pragma once

#include "vpcfw/base/diagnostic.h"
#include "vpcfw/model/model.h"

namespace vpcfw::model {

// Checks `m` as loaded from a config, adds the AWS defaults and resolves every
// reference. Reports all problems it finds to `diags`; returns true when there
// were no errors (warnings allowed). A model that failed must not be used.
bool validate(Model& m, Diagnostics& diags);

}  // namespace vpcfw::model
