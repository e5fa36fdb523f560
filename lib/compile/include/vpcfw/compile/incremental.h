// STUB (coordinator's placeholder until inc-compile lands): full compile each time.
#pragma once
#include <memory>
#include <string_view>
#include "vpcfw/compile/compiler.h"
namespace vpcfw::compile {
class IncrementalCompiler {
 public:
  [[nodiscard]] Expected<void> compile(std::shared_ptr<const model::Model> m) {
    auto r = compileRulesets(*m, labPlacement(*m));
    if (!r) return makeError(r.error().code, r.error().message);
    rulesets_ = std::move(*r);
    return {};
  }
  const std::vector<Ruleset>& rulesets() const { return rulesets_; }
  const RulesetChanges& changes(std::string_view) const { return all_; }
  void reset() { rulesets_.clear(); }
  struct Stats { bool full = true; std::size_t enisRecompiled = 0; };
  const Stats& stats() const { return stats_; }
 private:
  std::vector<Ruleset> rulesets_;
  RulesetChanges all_;
  Stats stats_;
};
}  // namespace vpcfw::compile
