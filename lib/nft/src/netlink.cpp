#include "netlink.h"

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace vpcfw::nft {

Batch::Batch() : batch_(nftnl_batch_alloc(static_cast<std::uint32_t>(getpagesize()) * 256, UINT16_MAX + getpagesize())),
                 seq_(static_cast<std::uint32_t>(time(nullptr))) {
  nftnl_batch_begin(static_cast<char*>(nftnl_batch_buffer(batch_)), seq_++);
  nftnl_batch_update(batch_);
}

Batch::~Batch() { nftnl_batch_free(batch_); }

nlmsghdr* Batch::message(std::uint16_t type, std::uint16_t flags, std::string what) {
  owners_[seq_] = std::move(what);
  ++messages_;
  return nftnl_nlmsg_build_hdr(static_cast<char*>(nftnl_batch_buffer(batch_)), type, NFPROTO_INET, flags, seq_++);
}

void Batch::next() { nftnl_batch_update(batch_); }

void Batch::finish(bool commit) {
  if (!commit) return;
  nftnl_batch_end(static_cast<char*>(nftnl_batch_buffer(batch_)), seq_++);
  nftnl_batch_update(batch_);
}

std::size_t Batch::bytes() const {
  std::size_t n = 0;
  int iovlen = nftnl_batch_iovec_len(batch_);
  std::vector<iovec> iov(static_cast<std::size_t>(iovlen));
  nftnl_batch_iovec(batch_, iov.data(), static_cast<std::uint32_t>(iovlen));
  for (const auto& v : iov) n += v.iov_len;
  return n;
}

const std::string& Batch::owner(std::uint32_t seq) const {
  static const std::string kBatch = "the batch as a whole (commit)";
  auto it = owners_.find(seq);
  return it == owners_.end() ? kBatch : it->second;
}

Expected<Socket> Socket::open() {
  mnl_socket* nl = mnl_socket_open(NETLINK_NETFILTER);
  if (!nl) return makeError(ErrorCode::kKernel, std::string("cannot open a netfilter socket: ") + std::strerror(errno));
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    int e = errno;
    mnl_socket_close(nl);
    return makeError(ErrorCode::kKernel, std::string("cannot bind the netfilter socket: ") + std::strerror(e));
  }
  int one = 1;
  // Errors carry the offending attribute's offset (extended acks).
  setsockopt(mnl_socket_get_fd(nl), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  int rcv = 4 << 20;
  setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv);
  return Socket(nl);
}

Socket::~Socket() {
  if (nl_) mnl_socket_close(nl_);
}

Expected<std::vector<KernelError>> Socket::send(Batch& b) {
  const int fd = mnl_socket_get_fd(nl_);
  // The whole batch must fit the send buffer (netlink-notes.md §7, EMSGSIZE).
  int size = static_cast<int>(b.bytes()) + (1 << 16);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size);
  int iovlen = nftnl_batch_iovec_len(b.raw());
  std::vector<iovec> iov(static_cast<std::size_t>(iovlen));
  nftnl_batch_iovec(b.raw(), iov.data(), static_cast<std::uint32_t>(iovlen));
  sockaddr_nl snl{};
  snl.nl_family = AF_NETLINK;
  msghdr msg{};
  msg.msg_name = &snl;
  msg.msg_namelen = sizeof snl;
  msg.msg_iov = iov.data();
  msg.msg_iovlen = static_cast<std::size_t>(iovlen);
  if (sendmsg(fd, &msg, 0) < 0)
    return makeError(ErrorCode::kKernel, std::string("sending the batch failed: ") + std::strerror(errno));
  // The kernel processed the whole batch inside sendmsg(): every error is
  // queued by now, and success sends nothing. Drain without blocking.
  std::vector<KernelError> errors;
  std::vector<char> buf(1 << 16);
  for (;;) {
    ssize_t n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == ENOBUFS) {
        errors.push_back(KernelError{0, ENOBUFS, "too many errors to report (receive buffer full)"});
        break;
      }
      return makeError(ErrorCode::kKernel, std::string("reading the kernel's answer failed: ") + std::strerror(errno));
    }
    int len = static_cast<int>(n);
    for (auto* nlh = reinterpret_cast<nlmsghdr*>(buf.data()); mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_type != NLMSG_ERROR) continue;
      auto* err = static_cast<nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
      if (err->error != 0) errors.push_back(KernelError{nlh->nlmsg_seq, -err->error, b.owner(nlh->nlmsg_seq)});
    }
  }
  return errors;
}

Expected<void> Socket::dump(std::uint16_t type, const std::function<void(nlmsghdr*)>& fill,
                            const std::function<void(const nlmsghdr*)>& each) {
  std::vector<char> buf(1 << 17);
  const auto seq = static_cast<std::uint32_t>(time(nullptr));
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), type, NFPROTO_INET, NLM_F_DUMP | NLM_F_ACK, seq);
  fill(nlh);
  if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0)
    return makeError(ErrorCode::kKernel, std::string("dump request failed: ") + std::strerror(errno));
  const auto portid = mnl_socket_get_portid(nl_);
  struct Ctx {
    const std::function<void(const nlmsghdr*)>* each;
  } ctx{&each};
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
    if (n < 0) return makeError(ErrorCode::kKernel, std::string("dump failed: ") + std::strerror(errno));
    int ret = mnl_cb_run(buf.data(), static_cast<std::size_t>(n), seq, portid,
                         [](const nlmsghdr* h, void* data) -> int {
                           (*static_cast<Ctx*>(data)->each)(h);
                           return MNL_CB_OK;
                         },
                         &ctx);
    if (ret < 0) {
      if (errno == ENOENT) return {};  // nothing of that kind (e.g. no table)
      if (errno == EINTR) return makeError(ErrorCode::kKernel, "the ruleset changed during the dump; try again");
      return makeError(ErrorCode::kKernel, std::string("dump failed: ") + std::strerror(errno));
    }
    if (ret == MNL_CB_STOP) return {};
  }
}

}  // namespace vpcfw::nft
