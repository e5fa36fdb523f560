// Applying a compiled ruleset to the kernel through libnftnl + libmnl: one
// atomic netlink batch per apply, in the host's namespace or a named one.
// vpcfw owns exactly its table (compile::kTableName, family inet), marked as
// its own by a comment in the table's userdata (kOwnerMarker), and never
// sends a message about any other table. A table of that name without the
// marker is reported and left alone unless the caller asks for a takeover.
//
// apply() holds the fabric's lock (one per network namespace) for its whole
// read-back -> diff -> commit, reads back everything the kernel holds in the
// table (checked against the ruleset generation) and sends only the
// difference: nothing when the kernel already matches, element changes for
// sets, a rewrite of just the chains whose rules changed. The batch carries
// the generation it was computed from; when someone changed the ruleset in
// between, the kernel refuses it and apply reads and computes again. On any
// kernel error the batch is aborted by the kernel as a whole, so the previous
// ruleset stays in force, and the error names the config object the failing
// message came from.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/compile/ir.h"
#include "vpcfw/state/state.h"

namespace vpcfw::nft {

// The comment (NFTNL_UDATA_TABLE_COMMENT) on every table vpcfw makes; `nft
// list` shows it as `comment "..."`.
inline constexpr std::string_view kOwnerMarker = "managed by vpcfw; changes are overwritten";

// How a command that changes a fabric waits for the fabric's lock.
struct LockOptions {
  std::chrono::milliseconds timeout = state::kDefaultLockTimeout;
  // Called once, with the holder's description, when the lock is busy.
  std::function<void(const std::string& holder)> waiting;
};

// What a long-running caller (vpcfwd) last committed to one fabric's table,
// so that its next change can be computed without reading the table back.
// The record is true at generation(): the caller keeps it so by watching the
// ruleset (monitor.h) and calling advance() for changes that did not touch
// the table and invalidate() for any that did (drift) or that it could not
// see. applyRuleset with an invalid record reads back as usual and leaves a
// valid record behind; a batch computed from a record the kernel refuses
// (the generation moved) is recomputed from a read-back.
class TableRecord {
 public:
  TableRecord();
  ~TableRecord();
  TableRecord(TableRecord&&) noexcept;
  TableRecord& operator=(TableRecord&&) noexcept;
  TableRecord(const TableRecord&) = delete;
  TableRecord& operator=(const TableRecord&) = delete;

  bool valid() const;
  void invalidate();
  std::uint32_t generation() const;
  // The ruleset moved on to `generation` without touching the table.
  void advance(std::uint32_t generation);
  // The table does not exist at `generation` (the monitor saw it deleted,
  // Transaction::tableGone): the record becomes valid and empty, so the
  // repair creates the table without reading anything back. Should the
  // generation be wrong, the kernel refuses the batch and apply reads back.
  void assumeAbsent(std::uint32_t generation);

  struct Data;
  Data& data() { return *d_; }

 private:
  std::unique_ptr<Data> d_;
};

struct ApplyOptions {
  std::optional<std::string> netns;  // nullopt: the caller's namespace
  bool check = false;                // let the kernel validate, commit nothing
  bool fullReplace = false;          // ignore what the kernel holds; replace the table
  bool takeover = false;             // replace a table inet vpcfw that vpcfw did not make
  std::chrono::milliseconds lockTimeout = state::kDefaultLockTimeout;
  std::function<void(const std::string& holder)> lockWaiting;  // see LockOptions::waiting
  // vpcfwd: compute from this record when it is valid, and update it.
  TableRecord* record = nullptr;
  // With a valid record: which sets and chains of `desired` may differ from
  // the ruleset this record was last applied from (compile::
  // IncrementalCompiler's report, accumulated over applies that failed).
  // When !all, only the named objects are linearized and compared, and the
  // record is updated for them alone; every other object is taken to be as
  // the record says. The hint is trusted: an object it does not name is
  // not looked at (so an object named without need only costs time). A
  // hint that misses an added or removed object is caught (the object
  // counts disagree) and the apply compares everything. Any failed apply
  // invalidates the record, so the next one reads back.
  const compile::RulesetChanges* changes = nullptr;
  // Sets of vpcfw's table whose elements, as the kernel held them right
  // before the batch that committed, the caller wants back
  // (ApplyReport::previous): how lib/track learns which running flows the
  // replaced rules left untracked.
  std::vector<std::string> previousSets;
  // Tests only: run right before each batch is sent, and in the middle of
  // each read-back (after the table, before its contents), to change the
  // ruleset behind apply's back.
  std::function<void()> beforeCommit;
  std::function<void()> duringReadBack;
};

struct ApplyReport {
  bool changed = false;      // false: the kernel already held the desired ruleset
  std::size_t messages = 0;  // netlink messages in the batch (0 when nothing changed)
  std::size_t batchBytes = 0;
  std::size_t attempts = 0;  // batches sent (more than 1: the generation moved under us)
  std::size_t reads = 0;     // read-backs (more than 1: the ruleset changed while it was read)
  bool fromRecord = false;   // computed from ApplyOptions::record, without a read-back
  // Sets + chains linearized and compared: the table's all, or (with a
  // RulesetChanges hint) just the named ones.
  std::size_t compared = 0;
  // The generation the ruleset had after this apply (its commit's, when it changed something).
  std::uint32_t generation = 0;
  // The NACL verdict cache's generation the table's rules carry now (0: no
  // cache; docs/ruleset.md, "NACL verdict cache").
  std::uint32_t cacheGeneration = 0;
  std::vector<std::string> changes;  // one line per changed object, for people
  // ApplyOptions::previousSets as the kernel (or the record standing in for
  // it) held them before the commit, by set name: each element's key and
  // key end bytes in the kernel's layout (every field padded to 4 bytes).
  // Only when something was committed, only sets vpcfw's own table had that
  // the commit changed (an absent name: the set is as it was).
  struct ElementKey {
    std::string key, keyEnd;
  };
  std::map<std::string, std::vector<ElementKey>> previous;
  // Where the time went, in milliseconds.
  double linearizeMs = 0, readBackMs = 0, buildMs = 0, commitMs = 0;
};

// Makes the kernel hold `desired` (the table of one fabric). Errors: kNotOwned
// (a foreign table of that name, without takeover), kBusy (the lock timed
// out, or the ruleset kept changing), kKernel.
[[nodiscard]] Expected<ApplyReport> applyRuleset(const compile::Ruleset& desired, const ApplyOptions& options);

struct FlushOptions {
  std::optional<std::string> netns;  // nullopt: the caller's namespace
  std::string table = "vpcfw";
  bool takeover = false;  // also delete a table of that name that vpcfw did not make
  LockOptions lock;
};

// Deletes vpcfw's table (if present) and nothing else; true when it existed.
[[nodiscard]] Expected<bool> deleteTable(const FlushOptions& options);
[[nodiscard]] Expected<bool> deleteTable(const std::optional<std::string>& netns, std::string_view table = "vpcfw");

// What vpcfw's table in a namespace holds, and what its counted drop rules
// have dropped so far.
struct TableStatus {
  bool exists = false;
  bool owned = false;    // it carries vpcfw's marker; false for a foreign table of that name
  bool dormant = false;  // NFT_TABLE_F_DORMANT: the table filters nothing
  std::size_t sets = 0, elements = 0, chains = 0, rules = 0, objects = 0, flowtables = 0;
  struct Counter {
    std::string chain, comment;
    std::uint64_t packets = 0, bytes = 0;
  };
  std::vector<Counter> counters;  // drop rules with a counter, in chain order
  // The NACL verdict cache (docs/ruleset.md): whether the table has one, the
  // generation its rules carry, and the packets that took the shortcut
  // (its hit rules' counters, not among `counters`: they count accepts).
  bool cache = false;
  std::uint32_t cacheGeneration = 0;
  std::uint64_t cacheHits = 0;
  // Drops counted for one ENI and one stage (the compiler's drop_<eni>_<stage>
  // chains, whose counter rule's comment is "<eni> <stage>"); stage is one of
  // kDropStages. Only for a table vpcfw owns; sorted by ENI, then stage.
  struct EniDrops {
    std::string eni, stage;
    std::uint64_t packets = 0, bytes = 0;
  };
  std::vector<EniDrops> eniDrops;
};
inline constexpr std::string_view kDropStages[] = {"anti-spoofing",     "nacl-egress", "nacl-ingress",
                                                   "sg-egress",         "sg-ingress",  "allowance-egress",
                                                   "allowance-ingress", "invalid"};
// The counter is one of eniDrops (so not to be listed again by rule).
[[nodiscard]] bool isEniDropCounter(const TableStatus::Counter& c);
[[nodiscard]] Expected<TableStatus> tableStatus(const std::optional<std::string>& netns,
                                                std::string_view table = "vpcfw");

// The ruleset's generation in `netns` (NFT_MSG_GETGEN): what the monitor's
// NEWGEN announcements count. Equal to the generation an apply reported:
// nobody committed anything since, whatever announcements were lost.
[[nodiscard]] Expected<std::uint32_t> rulesetGeneration(const std::optional<std::string>& netns);

// What differs between the kernel and `desired`, one line per object;
// empty when they match. Compares the table's attributes, every chain, rule,
// set, element, stateful object and flowtable. Sends nothing. `verbose` adds
// both sides' encodings.
[[nodiscard]] Expected<std::vector<std::string>> diffRuleset(const compile::Ruleset& desired,
                                                             const std::optional<std::string>& netns,
                                                             bool verbose = false);

// The text diff and status use for a table of vpcfw's name without its marker.
inline constexpr std::string_view kForeignTable = "a table inet vpcfw that vpcfw did not create";

}  // namespace vpcfw::nft
