// What one `vpcfw probe` run needs of the running lab before it plans: where
// baseline frames enter each namespace, and a pool of identifiers no tracked
// flow holds (the routers' and gateways' conntrack tables read).
#pragma once

#include <cstdint>
#include <optional>

#include "vpcfw/base/error.h"
#include "vpcfw/lab/lab.h"
#include "vpcfw/probe/plan.h"

namespace vpcfw::probe {

struct Session {
  LabView view;
  IdentifierPool ids;
};

// Errors: the lab's conntrack tables cannot be read (a router or gateway
// namespace is missing: the lab is not up). Identifiers are drawn from
// `seed`, or a fresh random one; a fixed seed repeats the draws but never a
// tracked identifier (tests use it to show the conntrack check works).
[[nodiscard]] Expected<Session> openSession(const lab::LabPlan& plan, std::optional<std::uint64_t> seed = std::nullopt);

}  // namespace vpcfw::probe
