// A probe run's view of the lab and its fresh identifiers (session.h).
#include "vpcfw/probe/session.h"

#include <random>

#include "vpcfw/probe/conntrack.h"

namespace vpcfw::probe {

Expected<Session> openSession(const lab::LabPlan& plan, std::optional<std::uint64_t> seed) {
  auto view = labView(plan);
  auto tracked = trackedIdentifiers(view.trackers);
  if (!tracked) return unexpected<Error>(tracked.error());
  if (!seed) {
    std::random_device rd;
    seed = static_cast<std::uint64_t>(rd()) << 32 | rd();
  }
  return Session{std::move(view), IdentifierPool(std::move(*tracked), *seed)};
}

}  // namespace vpcfw::probe
