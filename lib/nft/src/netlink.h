// The netlink side of the applier: a netfilter socket, batches with a
// sequence-number -> object map for error attribution, and dumps.
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
  int error = 0;            // positive errno
  std::string what;         // the object the failing message was about
};

// One transaction: BEGIN, messages, END (omitted in check mode).
class Batch {
 public:
  Batch();
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
  static Expected<Socket> open();
  Socket(Socket&& o) noexcept : nl_(o.nl_) { o.nl_ = nullptr; }
  Socket& operator=(Socket&&) = delete;
  ~Socket();

  // Sends the batch and collects every error the kernel reports for it.
  Expected<std::vector<KernelError>> send(Batch& b);

  // A dump request (NFT_MSG_GET* | NLM_F_DUMP); `fill` adds the payload
  // (table name, set name), `each` sees every reply message.
  Expected<void> dump(std::uint16_t type, const std::function<void(nlmsghdr*)>& fill,
                      const std::function<void(const nlmsghdr*)>& each);

 private:
  explicit Socket(mnl_socket* nl) : nl_(nl) {}
  mnl_socket* nl_;
};

}  // namespace vpcfw::nft
