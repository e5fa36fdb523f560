// The netlink side of the applier: a netfilter socket, batches that carry
// the ruleset generation they were computed against, with a sequence-number
// -> object map for error attribution, and dumps that notice a ruleset
// changing under them (netlink-notes.md §1, §5).
#pragma once

#include <netinet/in.h>

#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/common.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"

namespace vpcfw::nft {

struct KernelError {
  std::uint32_t seq = 0;
  int error = 0;     // positive errno
  std::string what;  // the object the failing message was about
};

// One transaction: BEGIN (with the generation), messages, END (omitted in check mode).
class Batch {
 public:
  // `generation`: the ruleset generation (NFT_MSG_GETGEN) the batch was
  // computed from; the kernel refuses the batch with ERESTART when the
  // ruleset has moved on since. 0 disables the check.
  explicit Batch(std::uint32_t generation);
  ~Batch();
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  // Starts a message of `type` (NFT_MSG_*) about `what`; fill it, then call next().
  nlmsghdr* message(std::uint16_t type, std::uint16_t flags, std::string what);
  void next();
  // Closes the batch. commit=false leaves END out: the kernel validates everything, then aborts.
  void finish(bool commit);

  std::size_t messages() const { return messages_; }
  std::size_t bytes() const;
  const std::string& owner(std::uint32_t seq) const;
  nftnl_batch* raw() { return batch_; }

 private:
  nftnl_batch* batch_;
  std::uint32_t seq_;
  std::size_t messages_ = 0;
  std::map<std::uint32_t, std::string> owners_;
};

class Socket {
 public:
  // Opens a netfilter netlink socket in the calling thread's namespace.
  [[nodiscard]] static Expected<Socket> open();
  Socket(Socket&& o) noexcept : nl_(o.nl_), seq_(o.seq_) { o.nl_ = nullptr; }
  Socket& operator=(Socket&&) = delete;
  ~Socket();

  // The ruleset's current generation (NFT_MSG_GETGEN).
  [[nodiscard]] Expected<std::uint32_t> generation();

  // Sends the batch and collects every error the kernel reports for it
  // (ERESTART: the generation moved; nothing was done).
  [[nodiscard]] Expected<std::vector<KernelError>> send(Batch& b);

  // A dump request (NFT_MSG_GET* | NLM_F_DUMP); `fill` adds the payload
  // (table name, set name), `each` sees every reply message. Every message
  // must come from `generation` (its nfgenmsg res_id) and the dump must not
  // be interrupted (NLM_F_DUMP_INTR); otherwise the error is kBusy and the
  // caller reads again.
  [[nodiscard]] Expected<void> dump(std::uint16_t type, std::uint32_t generation,
                                    const std::function<void(nlmsghdr*)>& fill,
                                    const std::function<void(const nlmsghdr*)>& each);

 private:
  explicit Socket(mnl_socket* nl);
  mnl_socket* nl_;
  std::uint32_t seq_;
};

}  // namespace vpcfw::nft
