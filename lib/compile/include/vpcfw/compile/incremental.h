// Incremental compilation for the daemon: a reload that edits a few security
// groups or instances recompiles only the ENIs whose inputs changed and
// patches the previous rulesets in place, with exactly the result of
// compileRulesets(m, labPlacement(m)), and names the objects that may differ
// (RulesetChanges) so that the applier looks at those alone.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/compile/ir.h"
#include "vpcfw/model/model.h"

namespace vpcfw::compile {

class IncrementalCompiler {
 public:
  // What the last successful compile did, for the daemon's log.
  struct Stats {
    bool full = true;                // every fabric compiled from scratch (first compile, or a fallback)
    std::size_t fabricsFull = 0;     // fabrics compiled from scratch
    std::size_t enisRecompiled = 0;  // ENIs compiled (all of those fabrics', plus the patched ones)
    std::size_t fabricsPatched = 0;  // fabrics patched in place
  };

  // Every compile uses `options`, as compileRulesets(m, p, options) would.
  explicit IncrementalCompiler(CompileOptions options = {});
  ~IncrementalCompiler();
  IncrementalCompiler(const IncrementalCompiler&) = delete;
  IncrementalCompiler& operator=(const IncrementalCompiler&) = delete;

  // Compiles m (a validated model) like compileRulesets(*m, labPlacement(*m)),
  // reusing what earlier calls computed for ENIs whose inputs did not change.
  // On error nothing changes (the previous result stays).
  [[nodiscard]] Expected<void> compile(std::shared_ptr<const model::Model> m);

  // The last successful result, ordered by fabric.
  const std::vector<Ruleset>& rulesets() const { return rulesets_; }

  // For the ruleset of `fabric` in the last result: which sets and chains may
  // differ from that fabric's ruleset in the result before it (all=true when
  // unknown: the first compile, a fallback, a new or unknown fabric).
  const RulesetChanges& changes(std::string_view fabric) const;

  // Forgets everything: the next compile is a full one.
  void reset();

  const Stats& stats() const { return stats_; }

 private:
  struct State;
  std::unique_ptr<State> state_;  // what the last compile learnt, for the next one
  std::vector<Ruleset> rulesets_;
  Stats stats_;
  CompileOptions options_;
};

}  // namespace vpcfw::compile
