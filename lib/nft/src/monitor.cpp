// The ruleset monitor (monitor.h): NFNLGRP_NFTABLES announcements folded
// into transactions.
#include <netinet/in.h>  // before linux/netfilter.h

#include "vpcfw/nft/monitor.h"

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "vpcfw/nft/netns.h"

namespace vpcfw::nft {
namespace {

mnl_socket* sockOf(void* p) { return static_cast<mnl_socket*>(p); }

constexpr std::size_t kMaxWhat = 16;

const char* objectOf(std::uint16_t type) {
  switch (type) {
    case NFT_MSG_NEWTABLE:
    case NFT_MSG_DELTABLE:
      return "table";
    case NFT_MSG_NEWCHAIN:
    case NFT_MSG_DELCHAIN:
      return "chain";
    case NFT_MSG_NEWRULE:
    case NFT_MSG_DELRULE:
      return "rule";
    case NFT_MSG_NEWSET:
    case NFT_MSG_DELSET:
      return "set";
    case NFT_MSG_NEWSETELEM:
    case NFT_MSG_DELSETELEM:
      return "set element";
    case NFT_MSG_NEWOBJ:
    case NFT_MSG_DELOBJ:
      return "stateful object";
    case NFT_MSG_NEWFLOWTABLE:
    case NFT_MSG_DELFLOWTABLE:
      return "flowtable";
    default:
      return nullptr;
  }
}

bool isDelete(std::uint16_t type) {
  return type == NFT_MSG_DELTABLE || type == NFT_MSG_DELCHAIN || type == NFT_MSG_DELRULE || type == NFT_MSG_DELSET ||
         type == NFT_MSG_DELSETELEM || type == NFT_MSG_DELOBJ || type == NFT_MSG_DELFLOWTABLE;
}

// The attribute `type` of an nftables message, if present.
const nlattr* findAttr(const nlmsghdr* nlh, std::uint16_t type) {
  const nlattr* found = nullptr;
  const auto* end = reinterpret_cast<const char*>(nlh) + nlh->nlmsg_len;
  for (auto* a = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)));
       mnl_attr_ok(a, static_cast<int>(end - reinterpret_cast<const char*>(a))); a = mnl_attr_next(a))
    if (mnl_attr_get_type(a) == type) found = a;
  return found;
}

std::optional<std::string> stringAttr(const nlmsghdr* nlh, std::uint16_t type) {
  std::optional<std::string> out;
  if (const nlattr* a = findAttr(nlh, type)) {
    if (mnl_attr_validate(a, MNL_TYPE_NUL_STRING) < 0) return std::nullopt;
    out = mnl_attr_get_str(a);
  }
  return out;
}

std::optional<std::uint32_t> u32Attr(const nlmsghdr* nlh, std::uint16_t type) {
  std::optional<std::uint32_t> out;
  if (const nlattr* a = findAttr(nlh, type)) {
    if (mnl_attr_validate(a, MNL_TYPE_U32) < 0) return std::nullopt;
    out = ntohl(mnl_attr_get_u32(a));
  }
  return out;
}

}  // namespace

Expected<Monitor> Monitor::open(const std::optional<std::string>& netns, std::string table) {
  mnl_socket* nl = nullptr;
  auto done = runInNetns(netns, [&]() -> Expected<void> {
    nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (!nl) return systemError(ErrorCode::kKernel, "cannot open a netfilter socket", errno);
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
      int e = errno;
      mnl_socket_close(nl);
      nl = nullptr;
      return systemError(ErrorCode::kKernel, "cannot bind a netfilter socket", e);
    }
    unsigned group = NFNLGRP_NFTABLES;
    if (mnl_socket_setsockopt(nl, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0) {
      int e = errno;
      mnl_socket_close(nl);
      nl = nullptr;
      return systemError(ErrorCode::kKernel, "cannot subscribe to nftables announcements", e);
    }
    // A commit of a big table (vpcfwd's own full apply, `nft flush
    // ruleset`) announces every rule and element. The buffer is charged
    // only while announcements wait, so it can be generous.
    int rcv = kReceiveBuffer;
    if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) != 0)
      setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    return {};
  });
  if (!done) return unexpected(done.error());
  return Monitor(nl, std::move(table));
}

Monitor::Monitor(Monitor&& o) noexcept : nl_(o.nl_), table_(std::move(o.table_)), pending_(std::move(o.pending_)) {
  o.nl_ = nullptr;
}

Monitor::~Monitor() {
  if (nl_) mnl_socket_close(sockOf(nl_));
}

int Monitor::fd() const { return mnl_socket_get_fd(sockOf(nl_)); }

Expected<void> Monitor::subscribe(bool on) {
  unsigned group = NFNLGRP_NFTABLES;
  if (mnl_socket_setsockopt(sockOf(nl_), on ? NETLINK_ADD_MEMBERSHIP : NETLINK_DROP_MEMBERSHIP, &group, sizeof group) <
      0)
    return systemError(ErrorCode::kKernel,
                       on ? "cannot subscribe to nftables announcements" : "cannot leave nftables announcements",
                       errno);
  if (on) pending_ = Transaction{};
  return {};
}

Expected<bool> Monitor::drain(const std::function<void(const Transaction&)>& each) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE * 4);
  bool complete = true;
  for (;;) {
    ssize_t n = ::recv(fd(), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == ENOBUFS) {
        // The transaction under way lost messages: what it did to the
        // table is unknown, so it counts as having touched it (treating it
        // as untouched would let the caller move its record past drift).
        complete = false;
        pending_ = Transaction{};
        pending_.touched = true;
        pending_.what.push_back("announcements lost");
        continue;
      }
      return systemError(ErrorCode::kKernel, "reading nftables announcements", errno);
    }
    if (n == 0) break;
    auto len = static_cast<int>(n);
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len)) {
      if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_NFTABLES) continue;
      if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(nfgenmsg))) continue;
      const auto type = static_cast<std::uint16_t>(NFNL_MSG_TYPE(nlh->nlmsg_type));
      const auto* gm = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
      if (type == NFT_MSG_NEWGEN) {
        auto gen = u32Attr(nlh, NFTA_GEN_ID);
        pending_.generation = gen.value_or(0);
        pending_.pid = u32Attr(nlh, NFTA_GEN_PROC_PID).value_or(0);
        pending_.process = stringAttr(nlh, NFTA_GEN_PROC_NAME).value_or("");
        each(pending_);
        pending_ = Transaction{};
        continue;
      }
      const char* object = objectOf(type);
      if (!object) continue;
      // Every object message names its table in attribute 1 (NFTA_*_TABLE,
      // NFTA_TABLE_NAME); a table we cannot read counts as ours: guessing
      // "not ours" could leave drift unrepaired.
      auto table = stringAttr(nlh, 1);
      if (gm->nfgen_family != NFPROTO_INET && gm->nfgen_family != NFPROTO_UNSPEC) continue;
      if (table && *table != table_) continue;
      pending_.touched = true;
      // Only a deletion that names our table: the record built on it skips the read-back.
      pending_.tableGone = type == NFT_MSG_DELTABLE && table.has_value();
      if (pending_.what.size() < kMaxWhat) {
        std::string text = fmt::format("{} {}", object, isDelete(type) ? "deleted" : "added");
        if (type != NFT_MSG_NEWTABLE && type != NFT_MSG_DELTABLE) {
          // The object's name: NFTA_CHAIN_NAME is attribute 3; NFTA_RULE_CHAIN,
          // NFTA_SET_NAME, NFTA_SET_ELEM_LIST_SET, NFTA_OBJ_NAME and
          // NFTA_FLOWTABLE_NAME are 2.
          const std::uint16_t nameAttr = (type == NFT_MSG_NEWCHAIN || type == NFT_MSG_DELCHAIN) ? 3 : 2;
          if (auto name = stringAttr(nlh, nameAttr)) text += fmt::format(" ({})", *name);
        }
        pending_.what.push_back(std::move(text));
      }
    }
  }
  return complete;
}

}  // namespace vpcfw::nft
