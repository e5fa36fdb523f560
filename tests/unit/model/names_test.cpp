// Every enum's to/from-string table round-trips.
#include <doctest/doctest.h>

#include <set>

#include "vpcfw/eval/evaluator.h"
#include "vpcfw/model/model.h"

using namespace vpcfw;

TEST_CASE("directions and actions round-trip through their names") {
  for (auto d : {model::Direction::kIngress, model::Direction::kEgress})
    CHECK(model::parseDirection(model::directionName(d)) == d);
  for (auto a : {model::Action::kAllow, model::Action::kDeny}) CHECK(model::parseAction(model::actionName(a)) == a);
  CHECK(model::directionName(model::Direction::kIngress) == "ingress");
  CHECK(model::actionName(model::Action::kDeny) == "deny");
  CHECK_FALSE(model::parseAction("permit").has_value());
  CHECK_FALSE(model::parseAction("Allow").has_value());
  CHECK_FALSE(model::parseDirection("inbound").has_value());
}

TEST_CASE("evaluation step kinds round-trip through their names, which are distinct") {
  std::set<std::string_view> names;
  for (auto k : eval::kAllStepKinds) {
    CHECK(eval::parseStepKind(eval::stepKindName(k)) == k);
    names.insert(eval::stepKindName(k));
  }
  CHECK(names.size() == std::size(eval::kAllStepKinds));
  CHECK_FALSE(eval::parseStepKind("nacl").has_value());
}
