// Watching the nftables ruleset of one network namespace for changes: a
// netlink socket subscribed to NFNLGRP_NFTABLES (libnftnl's nft-events shape).
// The kernel announces every committed transaction as its objects' messages
// followed by NFT_MSG_NEWGEN with the generation the commit produced; the
// monitor folds each transaction into one Transaction, telling whether it
// touched the watched table. vpcfwd tells its own commits from others' by
// the generation its applies report (ApplyReport::generation).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"

namespace vpcfw::nft {

struct Transaction {
  std::uint32_t generation = 0;  // what the ruleset is at after it
  bool touched = false;          // it changed the watched table (inet family)
  // The watched table does not exist after it: the transaction's last word
  // on the table was its deletion (`nft flush ruleset`, `nft delete table`).
  // Then a repair needs no read-back (TableRecord::assumeAbsent).
  bool tableGone = false;
  std::vector<std::string> what;  // "rule deleted in chain forward", ... (bounded)
  std::uint32_t pid = 0;          // the committing process (NFTA_GEN_PROC_PID), 0 if unknown
  std::string process;            // its name (NFTA_GEN_PROC_NAME), as the kernel gives it
};

// The receive buffer the monitor asks for (SO_RCVBUFFORCE; without
// CAP_NET_ADMIN, SO_RCVBUF up to net.core.rmem_max).
inline constexpr int kReceiveBuffer = 64 << 20;

class Monitor {
 public:
  // Subscribes in namespace `netns` (nullopt: the caller's) to changes of
  // table inet `table`.
  [[nodiscard]] static Expected<Monitor> open(const std::optional<std::string>& netns, std::string table = "vpcfw");
  Monitor(Monitor&& o) noexcept;
  Monitor& operator=(Monitor&&) = delete;
  Monitor(const Monitor&) = delete;
  ~Monitor();

  int fd() const;  // non-blocking; readable when the kernel announced something

  // Leaves (false) or rejoins (true) the announcements. The kernel builds
  // announcements of a commit only while someone listens, and a full
  // commit of the reference config announces ~73,000 objects (a third of
  // the commit's kernel time, and the monitor's parsing of them): a caller
  // that leaves around its own commit, then rejoins and compares
  // rulesetGeneration() with its commit's, knows whether anyone else
  // committed meanwhile (then it must read back). Rejoining drops a
  // transaction half seen before leaving.
  [[nodiscard]] Expected<void> subscribe(bool on);

  // Reads everything queued and calls `each` per complete transaction.
  // Returns false when the kernel dropped announcements (the socket's
  // buffer overflowed, ENOBUFS): the caller cannot tell from them what
  // changed. The ruleset's generation (rulesetGeneration, applier.h) still
  // can: if it is the caller's own last commit's, nobody else committed.
  // The buffer holds the echo of a full commit of a 60,000-rule table
  // (kReceiveBuffer), so overflows take a flood of foreign commits.
  [[nodiscard]] Expected<bool> drain(const std::function<void(const Transaction&)>& each);

 private:
  Monitor(void* nl, std::string table) : nl_(nl), table_(std::move(table)) {}
  void* nl_;  // mnl_socket
  std::string table_;
  Transaction pending_;
};

}  // namespace vpcfw::nft
