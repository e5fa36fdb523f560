// What the lab's connection tracking already holds, so that a new probe never
// rides an earlier flow's entry (an earlier run's, or anyone's): read from
// each router's and gateway's conntrack table over ctnetlink.
#pragma once

#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/probe/plan.h"

namespace vpcfw::probe {

// Every port (tcp, udp: both ends of both directions) and ICMP identifier in
// the conntrack tables of `namespaces`. Errors: a namespace that does not
// exist, or a table that cannot be read.
[[nodiscard]] Expected<TrackedIds> trackedIdentifiers(const std::vector<std::string>& namespaces);

}  // namespace vpcfw::probe
