// Netfilter netlink plumbing: batches (BEGIN with NFNL_BATCH_GENID, built by
// hand because nftnl_batch_begin cannot carry it), GETGEN, dumps checked
// against the generation, and error collection.
#include "netlink.h"

#include <unistd.h>
#include <libnftnl/gen.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace vpcfw::nft {

Batch::Batch(std::uint32_t generation)
    : batch_(nftnl_batch_alloc(static_cast<std::uint32_t>(getpagesize()) * 256, UINT16_MAX + getpagesize())),
      seq_(static_cast<std::uint32_t>(time(nullptr))) {
  // As nft's mnl_batch_begin: the generation makes the commit a compare-and-swap.
  nlmsghdr* nlh = mnl_nlmsg_put_header(nftnl_batch_buffer(batch_));
  nlh->nlmsg_type = NFNL_MSG_BATCH_BEGIN;
  nlh->nlmsg_flags = NLM_F_REQUEST;
  nlh->nlmsg_seq = seq_++;
  auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfg->nfgen_family = AF_UNSPEC;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = htons(NFNL_SUBSYS_NFTABLES);
  if (generation != 0) mnl_attr_put_u32(nlh, NFNL_BATCH_GENID, htonl(generation));
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

Socket::Socket(mnl_socket* nl) : nl_(nl), seq_(static_cast<std::uint32_t>(time(nullptr))) {}

Expected<Socket> Socket::open() {
  mnl_socket* nl = mnl_socket_open(NETLINK_NETFILTER);
  if (!nl) return systemError(ErrorCode::kKernel, "cannot open a netfilter socket", errno);
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    int e = errno;
    mnl_socket_close(nl);
    return systemError(ErrorCode::kKernel, "cannot bind the netfilter socket", e);
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

Expected<std::uint32_t> Socket::generation() {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  const std::uint32_t seq = ++seq_;
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_GETGEN, AF_UNSPEC, 0, seq);
  if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0)
    return systemError(ErrorCode::kKernel, "asking for the ruleset generation failed", errno);
  struct Ctx {
    bool found = false;
    std::uint32_t id = 0;
  } ctx;
  ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
  if (n < 0) return systemError(ErrorCode::kKernel, "reading the ruleset generation failed", errno);
  int ret = mnl_cb_run(
      buf.data(), static_cast<std::size_t>(n), seq, mnl_socket_get_portid(nl_),
      [](const nlmsghdr* h, void* data) -> int {
        auto* c = static_cast<Ctx*>(data);
        nftnl_gen* g = nftnl_gen_alloc();
        if (nftnl_gen_nlmsg_parse(h, g) == 0 && nftnl_gen_is_set(g, NFTNL_GEN_ID)) {
          c->found = true;
          c->id = nftnl_gen_get_u32(g, NFTNL_GEN_ID);
        }
        nftnl_gen_free(g);
        return MNL_CB_OK;
      },
      &ctx);
  if (ret < 0) return systemError(ErrorCode::kKernel, "reading the ruleset generation failed", errno);
  if (!ctx.found) return makeError(ErrorCode::kKernel, "the kernel's generation reply had no generation id");
  return ctx.id;
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
  if (sendmsg(fd, &msg, 0) < 0) return systemError(ErrorCode::kKernel, "sending the batch failed", errno);
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
      return systemError(ErrorCode::kKernel, "reading the kernel's answer failed", errno);
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

Expected<void> Socket::dump(std::uint16_t type, std::uint32_t generation, const std::function<void(nlmsghdr*)>& fill,
                            const std::function<void(const nlmsghdr*)>& each) {
  std::vector<char> buf(1 << 17);
  const std::uint32_t seq = ++seq_;
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), type, NFPROTO_INET, NLM_F_DUMP | NLM_F_ACK, seq);
  fill(nlh);
  if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0)
    return systemError(ErrorCode::kKernel, "dump request failed", errno);
  const auto portid = mnl_socket_get_portid(nl_);
  struct Ctx {
    const std::function<void(const nlmsghdr*)>* each;
    std::uint16_t generation;
    bool moved = false;
  } ctx{&each, static_cast<std::uint16_t>(generation & 0xffff)};
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
    if (n < 0) return systemError(ErrorCode::kKernel, "dump failed", errno);
    int ret = mnl_cb_run(
        buf.data(), static_cast<std::size_t>(n), seq, portid,
        [](const nlmsghdr* h, void* data) -> int {
          auto* c = static_cast<Ctx*>(data);
          // The kernel stamps each message with the low 16 bits of its generation
          // (as nft's check_genid reads it).
          const auto* nfg = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(h));
          if (ntohs(nfg->res_id) != c->generation) c->moved = true;
          if (!c->moved) (*c->each)(h);
          return MNL_CB_OK;
        },
        &ctx);
    if (ret < 0 && errno == EINTR) ctx.moved = true;  // NLM_F_DUMP_INTR
    if (ctx.moved) {
      // Read the rest of this dump, so that the socket is clean for the next request.
      bool done = false;
      for (;;) {
        int len = static_cast<int>(n);
        for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); mnl_nlmsg_ok(h, len); h = mnl_nlmsg_next(h, &len))
          if (h->nlmsg_seq == seq && (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR)) done = true;
        if (done) break;
        n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
        if (n < 0) return systemError(ErrorCode::kKernel, "dump failed", errno);
      }
      return makeError(ErrorCode::kBusy, "the ruleset changed during the dump", EINTR);
    }
    if (ret < 0) {
      if (errno == ENOENT) return {};  // nothing of that kind (e.g. no table)
      return systemError(ErrorCode::kKernel, "dump failed", errno);
    }
    if (ret == MNL_CB_STOP) return {};
  }
}

}  // namespace vpcfw::nft
