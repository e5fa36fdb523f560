// Carrying out a lab plan (plan.h): lab up, apply, status and down over
// rtnetlink and libnftnl, with the lab's record (record.h) as the proof of
// what it made, under a per-lab lock (docs/lab.md).
//
// Every command that changes a lab holds the lock state::Lock("lab", key)
// for its whole run, and the internet namespace's lock too when it touches
// that (several labs may share it). A namespace is made O_EXCL and
// journalled with its nsfs identity before it has a name; it is deleted or
// changed only when its record proves it (matching identity), so a foreign
// namespace or another lab's is reported and left alone.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/lab/plan.h"
#include "vpcfw/lab/record.h"
#include "vpcfw/model/model.h"
#include "vpcfw/state/state.h"

namespace vpcfw::lab {

// $VPCFW_LAB_INTERNET when set, else "vpcfw:internet"; not checked here
// (planLab and namespace paths refuse a name that is not valid).
std::string internetNamespace();

// Which lab a config is: its record's key and the config's absolute path.
struct LabId {
  std::string config;  // absolute
  std::string key;     // recordKey(config)
};
[[nodiscard]] Expected<LabId> labIdOf(const std::string& configPath);

struct LabOptions {
  unsigned jobs = 0;                                                   // parallel workers; 0: a few per CPU
  std::function<void(const std::string&)> progress;                    // one line per phase, and lock waits
  std::chrono::milliseconds lockTimeout = state::kDefaultLockTimeout;  // waiting for another command on the lab
  // The model the plan was made from. With it, labApply cuts the untracked
  // flows the new rules no longer admit (lib/track; docs/ruleset.md,
  // "Untracked flows"), as AWS does; without, it only commits.
  const model::Model* model = nullptr;
};

struct LabReport {
  std::vector<std::string> namespaces;                 // created
  std::vector<std::pair<std::string, double>> phases;  // phase, milliseconds
  std::size_t links = 0, addresses = 0, routes = 0, rules = 0;
  // After its ruleset was committed, what failed in a namespace ("<fabric>:
  // why"): the rules are in force, the lab is up, something did not follow.
  std::vector<std::string> afterCommit;
};

// Builds the plan's namespaces and applies its rulesets. Refuses when the
// lab (per its record) is up, or when one of its namespaces exists and is
// not the shared internet of another recorded lab. On failure, what this
// run made is removed (and only that).
[[nodiscard]] Expected<LabReport> labUp(const LabPlan& plan, const LabId& lab, const LabOptions& options);

struct LabDownReport {
  std::vector<std::string> removed;    // namespaces
  std::vector<std::string> leftAlone;  // "NAME: why" (not made by vpcfw, another lab's, held...)
  std::vector<std::string> errors;     // records that could not be trusted, removals that failed
};
// With a lab: what its record proves it made (and the internet when no
// other record references it); planned namespaces it has no record of are
// reported, not removed. Without: every lab recorded under
// state::runDir()/lab; unrecorded vpcfw-named namespaces are reported.
[[nodiscard]] Expected<LabDownReport> labDown(const LabPlan* plan, const LabId* lab, const LabOptions& options);

// A running lab next to its plan, as far as it could be verified.
struct NamespaceStatus {
  std::string name;
  std::string role, object;
  bool exists = false;
  bool planned = false;                          // the config's plan has it
  bool recorded = false;                         // a lab's record names it with the identity it has (vpcfw made it)
  bool verified = false;                         // vpcfw could look inside it
  std::size_t interfacesUp = 0, interfaces = 0;  // lo excluded
  std::uint64_t rxPackets = 0, txPackets = 0;
  bool hasRuleset = false;               // a vpcfw table is loaded
  bool rulesetCurrent = false;           // and it is what the config compiles to
  std::vector<std::string> differences;  // against the plan: "- address ...", "+ route ...", "link x down", ...
};
struct LabStatus {
  std::vector<NamespaceStatus> namespaces;
  std::vector<std::string> problems;  // what could not be checked, records that could not be trusted
  bool planned = false;               // compared against a plan
  // True only when every namespace was looked at and matched the plan,
  // nothing is missing, extra or unrecorded, and nothing went unchecked.
  bool upToDate() const;
};
// With a plan: that lab (its record and plan); without: every recorded lab
// and every vpcfw-named namespace. Needs root (errors otherwise).
[[nodiscard]] Expected<LabStatus> labStatus(const LabPlan* plan, const LabId* lab);

// Changes a running lab to `plan` without rebuilding it: namespaces the plan
// adds are built and wired in, those it drops (per the record) removed
// unless a process holds them; addresses, links, routes and policy-routing
// rules of every namespace are reconciled in place, per namespace all or
// nothing (a failed step undoes that namespace's earlier ones); every
// ruleset is brought up to date incrementally. A planned namespace that
// exists but is not this lab's refuses the whole apply before any change.
struct LabApplyReport {
  std::vector<std::string> added, removed, readdressed;  // namespaces
  std::vector<std::string> changes;                      // "<namespace>: + route ...", "<fabric>: <ruleset change>"
  std::vector<std::string> refused;                      // "<namespace>: why", left as it was
  std::vector<std::string> cut;                          // "<fabric>: cut untracked flow ...", LabOptions::model
  std::size_t flowsCut = 0;
  // The ruleset was committed, then a step after it failed ("<fabric>: why":
  // flows not cut, a conntrack default not set): applied, not complete.
  std::vector<std::string> afterCommit;
};
[[nodiscard]] Expected<LabApplyReport> labApply(const LabPlan& plan, const LabId& lab, const LabOptions& options);

}  // namespace vpcfw::lab
