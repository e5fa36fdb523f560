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
  std::size_t recompiledEnis() const { return 0; }
  bool fullCompile() const { return true; }
 private:
  std::vector<Ruleset> rulesets_;
  RulesetChanges all_;
};
}  // namespace vpcfw::compile
