// Namespaces (made and removed only with proof of ownership), links,
// addresses, routes and policy-routing rules over rtnetlink (libmnl).
#include "vpcfw/lab/rtnl.h"

#include <net/if.h>  // before the linux/ headers, which clash with it otherwise
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>
#include <libmnl/libmnl.h>
#include <linux/fib_rules.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "vpcfw/names/names.h"
#include "vpcfw/nft/netns.h"

namespace vpcfw::lab {
namespace {

constexpr const char* kNetnsDir = "/run/netns";

// The kernel's errno travels in the error (Error::sysErrno).
Error sysError(const std::string& what, int err = errno) {
  return Error{ErrorCode::kKernel, what + ": " + std::strerror(err), err};
}

std::size_t addrLen(const net::IpAddress& a) { return a.isV4() ? 4 : 16; }

// /run/netns as a shared mount of its own, as `ip netns add` makes it. Were
// it a plain directory, the first `ip netns add` anyone runs later would
// bind-mount it onto itself and cover every namespace mounted in it before:
// their names would stop resolving (lab status: "not a mounted network
// namespace") and could not be removed. Made so before the first namespace
// (recursively, so namespaces mounted there by an older vpcfw are carried).
Expected<void> shareNetnsDir() {
  if (mount("", kNetnsDir, "none", MS_SHARED | MS_REC, nullptr) == 0) return {};
  if (errno != EINVAL) return unexpected(sysError(std::string("make ") + kNetnsDir + " shared"));
  if (mount(kNetnsDir, kNetnsDir, "none", MS_BIND | MS_REC, nullptr) != 0)
    return unexpected(sysError(std::string("bind-mount ") + kNetnsDir));
  if (mount("", kNetnsDir, "none", MS_SHARED | MS_REC, nullptr) != 0)
    return unexpected(sysError(std::string("make ") + kNetnsDir + " shared"));
  return {};
}

}  // namespace

Expected<NsId> createNamespace(const std::string& name, const std::function<Expected<void>(const NsId&)>& journal) {
  const std::string path = names::namespacePath(name);
  if (path.empty()) return makeError(ErrorCode::kInvalidArgument, "'" + name + "' cannot name a namespace");
  if (mkdir(kNetnsDir, 0755) != 0 && errno != EEXIST) return unexpected(sysError(std::string("create ") + kNetnsDir));
  if (auto shared = shareNetnsDir(); !shared) return unexpected(shared.error());
  Expected<NsId> result = makeError(ErrorCode::kInternal, "namespace thread did not run");
  // A fresh namespace lives as long as something holds it: bind-mount the
  // thread's namespace on the file, as `ip netns add` does. Its identity is
  // known (and journalled) before the name exists.
  std::thread([&] {
    if (unshare(CLONE_NEWNET) != 0) {
      result = unexpected(sysError("unshare a network namespace"));
      return;
    }
    struct stat st {};
    if (stat("/proc/thread-self/ns/net", &st) != 0) {
      result = unexpected(sysError("stat the new namespace"));
      return;
    }
    const NsId id{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
    if (auto j = journal(id); !j) {
      result = unexpected(j.error());
      return;
    }
    int fd = open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
    if (fd < 0) {
      const int err = errno;
      result = err == EEXIST ? makeError(ErrorCode::kNotOwned, "namespace " + name + " already exists", err)
                             : unexpected(sysError("create " + path, err));
      return;
    }
    close(fd);
    if (mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) != 0) {
      result = unexpected(sysError("mount " + path));
      unlink(path.c_str());
      return;
    }
    result = id;
  }).join();
  return result;
}

Expected<std::optional<NsId>> namespaceIdentity(const std::string& name) {
  const std::string path = names::namespacePath(name);
  if (path.empty()) return makeError(ErrorCode::kInvalidArgument, "'" + name + "' cannot name a namespace");
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::optional<NsId>{};
    return unexpected(sysError("stat " + path));
  }
  // A mounted namespace shows the nsfs inode (a regular file of nsfs); the
  // bare file under it, a symlink or a directory is not a namespace.
  struct statfs fs {};
  if (!S_ISREG(st.st_mode) || statfs(path.c_str(), &fs) != 0 || fs.f_type != NSFS_MAGIC)
    return makeError(ErrorCode::kNotOwned, path + " is not a mounted network namespace");
  return std::optional<NsId>{NsId{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)}};
}

bool removePlaceholder(const std::string& name) {
  const std::string path = names::namespacePath(name);
  if (path.empty()) return false;
  struct stat st {};
  struct statfs fs {};
  if (lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != 0) return false;
  if (statfs(path.c_str(), &fs) != 0 || fs.f_type == NSFS_MAGIC) return false;  // mounted: a namespace
  return unlink(path.c_str()) == 0;
}

Expected<void> deleteNamespace(const std::string& name, const NsId& id) {
  auto have = namespaceIdentity(name);
  if (!have) return unexpected(have.error());
  if (!*have) return {};  // gone already
  if (**have != id)
    return makeError(ErrorCode::kNotOwned,
                     fmt::format("namespace {} is {}, not the namespace vpcfw made ({}); left alone", name,
                                 describe(**have), describe(id)));
  const std::string path = names::namespacePath(name);
  if (umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0) return unexpected(sysError("unmount " + path));
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return unexpected(sysError("remove " + path));
  return {};
}

std::vector<std::string> listNamespaces(const std::string& prefix) {
  std::vector<std::string> out;
  DIR* d = opendir(kNetnsDir);
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (names::isValidNamespaceName(n) && n.starts_with(prefix)) out.push_back(n);
  }
  closedir(d);
  return out;
}

bool namespaceExists(const std::string& name) {
  const std::string path = names::namespacePath(name);
  struct stat st {};
  return !path.empty() && lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> namespaceHolders(const NsId& id) {
  std::vector<std::string> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  const std::string self = std::to_string(getpid());
  while (dirent* e = readdir(d)) {
    const std::string pid = e->d_name;
    if (pid.empty() || !std::all_of(pid.begin(), pid.end(), [](char c) { return c >= '0' && c <= '9'; }) || pid == self)
      continue;
    struct stat st {};
    if (stat(("/proc/" + pid + "/ns/net").c_str(), &st) != 0) continue;  // gone, or a kernel thread
    if (static_cast<std::uint64_t>(st.st_dev) != id.dev || static_cast<std::uint64_t>(st.st_ino) != id.ino) continue;
    std::string comm;
    std::ifstream f("/proc/" + pid + "/comm");
    std::getline(f, comm);
    out.push_back(comm.empty() ? pid : pid + " (" + comm + ")");
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

Expected<bool> waitLinkGone(const std::string& ns, const std::string& ifname, std::chrono::milliseconds timeout) {
  // A socket of its own, subscribed before the look-up: a deletion between
  // the two is not missed.
  mnl_socket* s = nullptr;
  auto opened = nft::runInNetns(ns, [&]() -> Expected<void> {
    s = mnl_socket_open(NETLINK_ROUTE);
    if (!s) return unexpected(sysError("rtnetlink socket"));
    if (mnl_socket_bind(s, RTMGRP_LINK, MNL_SOCKET_AUTOPID) < 0) {
      const int err = errno;
      mnl_socket_close(s);
      s = nullptr;
      return unexpected(sysError("rtnetlink bind", err));
    }
    return {};
  });
  if (!opened) return unexpected(opened.error());
  std::unique_ptr<mnl_socket, int (*)(mnl_socket*)> events(s, mnl_socket_close);
  auto nl = Rtnl::open(ns);
  if (!nl) return unexpected(nl.error());
  auto idx = nl->ifindex(ifname);
  if (!idx) return idx.error().code == ErrorCode::kNotFound ? Expected<bool>(true) : unexpected(idx.error());
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  alignas(nlmsghdr) char buf[16384];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{mnl_socket_get_fd(events.get()), POLLIN, 0};
    const int rc = poll(&p, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return unexpected(sysError("wait for link events"));
    if (rc == 0) return false;
    const ssize_t n = mnl_socket_recvfrom(events.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == ENOBUFS) {  // events were lost: look again
        auto again = Rtnl::open(ns);
        if (!again) return unexpected(again.error());
        if (!again->ifindex(ifname)) return true;
        continue;
      }
      return unexpected(sysError("read link events"));
    }
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buf); mnl_nlmsg_ok(h, len); h = mnl_nlmsg_next(h, &len)) {
      if (h->nlmsg_type != RTM_DELLINK) continue;
      const auto* ifm = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(h));
      if (static_cast<unsigned>(ifm->ifi_index) == *idx) return true;
    }
  }
}

Expected<void> writeSysctl(const Netns& ns, const std::string& key, const std::string& value) {
  return nft::runInNetns(ns, [&]() -> Expected<void> {
    std::ofstream f("/proc/sys/" + key);
    if (!(f << value) || !f.flush()) return unexpected(sysError("write /proc/sys/" + key));
    return {};
  });
}

// ------------------------------------------------------------------ Rtnl

Expected<Rtnl> Rtnl::open(const Netns& ns) {
  mnl_socket* s = nullptr;
  auto r = nft::runInNetns(ns, [&]() -> Expected<void> {
    s = mnl_socket_open(NETLINK_ROUTE);
    if (!s) return unexpected(sysError("rtnetlink socket"));
    if (mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) < 0) {
      int err = errno;
      mnl_socket_close(s);
      s = nullptr;
      return unexpected(sysError("rtnetlink bind", err));
    }
    return {};
  });
  if (!r) return unexpected(r.error());
  return Rtnl(s);
}

Rtnl::Rtnl(Rtnl&& o) noexcept
    : sock_(std::exchange(o.sock_, nullptr)), seq_(o.seq_), indexCache_(std::move(o.indexCache_)) {}

Rtnl& Rtnl::operator=(Rtnl&& o) noexcept {
  if (this != &o) {
    if (sock_) mnl_socket_close(sock_);
    sock_ = std::exchange(o.sock_, nullptr);
    seq_ = o.seq_;
    indexCache_ = std::move(o.indexCache_);
  }
  return *this;
}

Rtnl::~Rtnl() {
  if (sock_) mnl_socket_close(sock_);
}

// Sends one request and waits for the kernel's acknowledgement.
Expected<void> Rtnl::talk(void* msg, const std::string& what) {
  auto* nlh = static_cast<nlmsghdr*>(msg);
  nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  nlh->nlmsg_seq = seq_++;
  lastErrno_ = 0;
  auto fail = [&] {
    lastErrno_ = errno;
    return unexpected(sysError(what, lastErrno_));
  };
  if (mnl_socket_sendto(sock_, nlh, nlh->nlmsg_len) < 0) return fail();
  alignas(nlmsghdr) char buf[8192];
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(sock_, buf, sizeof buf);
    if (n < 0) return fail();
    int rc =
        mnl_cb_run(buf, static_cast<std::size_t>(n), nlh->nlmsg_seq, mnl_socket_get_portid(sock_), nullptr, nullptr);
    if (rc < 0) return fail();
    if (rc == MNL_CB_STOP) return {};
  }
}

Expected<unsigned> Rtnl::ifindex(const std::string& ifname) {
  if (auto it = indexCache_.find(ifname); it != indexCache_.end()) return it->second;
  alignas(nlmsghdr) char buf[16384];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_GETLINK;
  nlh->nlmsg_flags = NLM_F_REQUEST;
  nlh->nlmsg_seq = seq_++;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname.c_str());
  if (mnl_socket_sendto(sock_, nlh, nlh->nlmsg_len) < 0) return unexpected(sysError("look up " + ifname));
  ssize_t n = mnl_socket_recvfrom(sock_, buf, sizeof buf);
  if (n < 0) return unexpected(sysError("look up " + ifname));
  unsigned index = 0;
  int rc = mnl_cb_run(
      buf, static_cast<std::size_t>(n), nlh->nlmsg_seq, mnl_socket_get_portid(sock_),
      [](const nlmsghdr* h, void* data) {
        *static_cast<unsigned*>(data) =
            static_cast<unsigned>(static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(h))->ifi_index);
        return MNL_CB_OK;
      },
      &index);
  if (rc < 0 || index == 0) return makeError(ErrorCode::kNotFound, "no interface " + ifname);
  indexCache_[ifname] = index;
  return index;
}

Expected<std::vector<LinkInfo>> Rtnl::links() {
  alignas(nlmsghdr) char buf[16384];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_GETLINK;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = seq_++;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  const std::uint32_t seq = nlh->nlmsg_seq;
  if (mnl_socket_sendto(sock_, nlh, nlh->nlmsg_len) < 0) return unexpected(sysError("list links"));
  std::vector<LinkInfo> out;
  auto cb = [](const nlmsghdr* h, void* data) -> int {
    auto* list = static_cast<std::vector<LinkInfo>*>(data);
    const auto* m = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(h));
    LinkInfo li;
    li.index = static_cast<unsigned>(m->ifi_index);
    li.up = (m->ifi_flags & IFF_UP) != 0;
    for (auto* a = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(h, sizeof(ifinfomsg)));
         mnl_attr_ok(a, static_cast<int>(static_cast<const char*>(mnl_nlmsg_get_payload_tail(h)) -
                                         reinterpret_cast<const char*>(a)));
         a = mnl_attr_next(a)) {
      switch (mnl_attr_get_type(a)) {
        case IFLA_IFNAME:
          li.name = mnl_attr_get_str(a);
          break;
        case IFLA_LINK:
          if (mnl_attr_get_payload_len(a) >= sizeof(std::uint32_t)) li.peerIndex = mnl_attr_get_u32(a);
          break;
        case IFLA_STATS64:
          if (mnl_attr_get_payload_len(a) >= sizeof(rtnl_link_stats64)) {
            rtnl_link_stats64 st;
            std::memcpy(&st, mnl_attr_get_payload(a), sizeof st);
            li.rxPackets = st.rx_packets;
            li.txPackets = st.tx_packets;
          }
          break;
        default:
          break;
      }
    }
    list->push_back(std::move(li));
    return MNL_CB_OK;
  };
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(sock_, buf, sizeof buf);
    if (n < 0) return unexpected(sysError("list links"));
    int rc = mnl_cb_run(buf, static_cast<std::size_t>(n), seq, mnl_socket_get_portid(sock_), cb, &out);
    if (rc < 0) return unexpected(sysError("list links"));
    if (rc == MNL_CB_STOP) break;
  }
  return out;
}

Expected<void> Rtnl::createVeth(const std::string& name, const Netns& peerNs, const std::string& peer) {
  int peerFd = -1;
  if (peerNs) {
    peerFd = ::open(nft::netnsPath(*peerNs).c_str(), O_RDONLY | O_CLOEXEC);
    if (peerFd < 0) return unexpected(sysError("open namespace " + *peerNs));
  }
  alignas(nlmsghdr) char buf[8192];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_NEWLINK;
  nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  nlattr* info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
  nlattr* data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
  nlattr* peerInfo = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
  // The peer's attributes follow an ifinfomsg of its own.
  std::memset(mnl_nlmsg_get_payload_tail(nlh), 0, sizeof(ifinfomsg));
  nlh->nlmsg_len += MNL_ALIGN(sizeof(ifinfomsg));
  mnl_attr_put_strz(nlh, IFLA_IFNAME, peer.c_str());
  if (peerFd >= 0) mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, static_cast<std::uint32_t>(peerFd));
  mnl_attr_nest_end(nlh, peerInfo);
  mnl_attr_nest_end(nlh, data);
  mnl_attr_nest_end(nlh, info);
  auto r = talk(nlh, "create veth " + name + "/" + peer);
  if (peerFd >= 0) close(peerFd);
  return r;
}

Expected<void> Rtnl::setLinkUp(const std::string& ifname) {
  auto idx = ifindex(ifname);
  if (!idx) return unexpected(idx.error());
  alignas(nlmsghdr) char buf[8192];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_NEWLINK;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_index = static_cast<int>(*idx);
  ifm->ifi_change = IFF_UP;
  ifm->ifi_flags = IFF_UP;
  return talk(nlh, "set " + ifname + " up");
}

Expected<void> Rtnl::deleteLink(const std::string& ifname) {
  auto idx = ifindex(ifname);
  if (!idx) return unexpected(idx.error());
  alignas(nlmsghdr) char buf[8192];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_DELLINK;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_index = static_cast<int>(*idx);
  indexCache_.erase(ifname);
  auto r = talk(nlh, "delete link " + ifname);
  if (!r && lastErrno_ == ENODEV) return makeError(ErrorCode::kNotFound, "no interface " + ifname, lastErrno_);
  return r;
}

Expected<void> Rtnl::addAddress(const std::string& ifname, const net::IpAddress& addr, int prefix) {
  auto idx = ifindex(ifname);
  if (!idx) return unexpected(idx.error());
  alignas(nlmsghdr) char buf[8192];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_NEWADDR;
  nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = addr.isV4() ? AF_INET : AF_INET6;
  ifa->ifa_prefixlen = static_cast<unsigned char>(prefix);
  ifa->ifa_index = *idx;
  ifa->ifa_flags = addr.isV4() ? 0 : IFA_F_NODAD;
  mnl_attr_put(nlh, IFA_LOCAL, addrLen(addr), addr.bytes().data());
  mnl_attr_put(nlh, IFA_ADDRESS, addrLen(addr), addr.bytes().data());
  return talk(nlh, "add address " + addr.toString() + " to " + ifname);
}

Expected<void> Rtnl::deleteAddress(const std::string& ifname, const net::IpAddress& addr, int prefix) {
  auto idx = ifindex(ifname);
  if (!idx) return unexpected(idx.error());
  alignas(nlmsghdr) char buf[8192];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_DELADDR;
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = addr.isV4() ? AF_INET : AF_INET6;
  ifa->ifa_prefixlen = static_cast<unsigned char>(prefix);
  ifa->ifa_index = *idx;
  mnl_attr_put(nlh, IFA_LOCAL, addrLen(addr), addr.bytes().data());
  auto r = talk(nlh, "delete address " + addr.toString() + " from " + ifname);
  if (!r && (lastErrno_ == EADDRNOTAVAIL || lastErrno_ == ENODEV))
    return makeError(ErrorCode::kNotFound, "no address " + addr.toString() + " on " + ifname, lastErrno_);
  return r;
}

void Rtnl::fillRoute(void* msg, const RouteSpec& r, bool add, Expected<void>& status) {
  auto* nlh = static_cast<nlmsghdr*>(msg);
  nlh->nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE;
  nlh->nlmsg_flags = add ? NLM_F_CREATE | NLM_F_REPLACE : 0;
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
  const bool v4 = r.dst.family() == net::Family::kIpv4;
  rtm->rtm_family = v4 ? AF_INET : AF_INET6;
  rtm->rtm_dst_len = static_cast<unsigned char>(r.dst.prefix());
  rtm->rtm_table = r.table < 256 ? static_cast<unsigned char>(r.table) : static_cast<unsigned char>(RT_TABLE_UNSPEC);
  rtm->rtm_protocol = RTPROT_STATIC;
  if (!add) {
    // A stale route may be anyone's (another protocol, type or scope): match
    // it by destination, table, gateway and device alone, as `ip route del`.
    rtm->rtm_protocol = RTPROT_UNSPEC;
  }
  const bool anyType = !add;
  switch (r.type) {
    case RouteSpec::Type::kUnicast:
      rtm->rtm_type = RTN_UNICAST;
      rtm->rtm_scope = r.gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
      break;
    case RouteSpec::Type::kThrow:
      rtm->rtm_type = RTN_THROW;
      rtm->rtm_scope = RT_SCOPE_UNIVERSE;
      break;
    case RouteSpec::Type::kBlackhole:
      rtm->rtm_type = RTN_BLACKHOLE;
      rtm->rtm_scope = RT_SCOPE_UNIVERSE;
      break;
    case RouteSpec::Type::kLocal:
      rtm->rtm_type = RTN_LOCAL;
      rtm->rtm_scope = RT_SCOPE_HOST;
      break;
  }
  if (anyType) {
    rtm->rtm_type = RTN_UNSPEC;
    rtm->rtm_scope = RT_SCOPE_NOWHERE;
  }
  if (r.onlink) rtm->rtm_flags |= RTNH_F_ONLINK;
  const std::size_t len = v4 ? 4 : 16;
  if (r.dst.prefix() > 0) mnl_attr_put(nlh, RTA_DST, len, r.dst.network().bytes().data());
  mnl_attr_put_u32(nlh, RTA_TABLE, r.table);
  if (!r.ifname.empty()) {
    auto idx = ifindex(r.ifname);
    if (!idx) {
      status = unexpected(idx.error());
      return;
    }
    mnl_attr_put_u32(nlh, RTA_OIF, *idx);
  }
  if (r.gateway) mnl_attr_put(nlh, RTA_GATEWAY, len, r.gateway->bytes().data());
}

Expected<void> Rtnl::addRoute(const RouteSpec& r) {
  alignas(nlmsghdr) char buf[8192];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  Expected<void> status;
  fillRoute(nlh, r, true, status);
  if (!status) return status;
  return talk(nlh, "add route " + describe(r));
}

Expected<void> Rtnl::deleteRoute(const RouteSpec& r) {
  alignas(nlmsghdr) char buf[8192];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  Expected<void> status;
  fillRoute(nlh, r, false, status);
  if (!status) return status;
  auto x = talk(nlh, "delete route " + describe(r));
  if (!x && (lastErrno_ == ESRCH || lastErrno_ == ENODEV))
    return makeError(ErrorCode::kNotFound, "no route " + describe(r), lastErrno_);
  return x;
}

namespace {
void fillRule(nlmsghdr* nlh, const RuleSpec& r, bool add) {
  nlh->nlmsg_type = add ? RTM_NEWRULE : RTM_DELRULE;
  nlh->nlmsg_flags = add ? NLM_F_CREATE | NLM_F_EXCL : 0;
  auto* frh = static_cast<fib_rule_hdr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(fib_rule_hdr)));
  const bool v4 = r.from.family() == net::Family::kIpv4;
  frh->family = v4 ? AF_INET : AF_INET6;
  frh->src_len = static_cast<unsigned char>(r.from.prefix());
  frh->action = r.action;
  frh->table = r.table < 256 ? static_cast<unsigned char>(r.table) : static_cast<unsigned char>(RT_TABLE_UNSPEC);
  if (r.from.prefix() > 0) mnl_attr_put(nlh, FRA_SRC, v4 ? 4 : 16, r.from.network().bytes().data());
  mnl_attr_put_u32(nlh, FRA_TABLE, r.table);
  mnl_attr_put_u32(nlh, FRA_PRIORITY, r.priority);
}

template <typename F>
void forEachAttr(const nlmsghdr* h, std::size_t headerSize, F&& f) {
  for (auto* a = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(h, headerSize));
       mnl_attr_ok(a, static_cast<int>(static_cast<const char*>(mnl_nlmsg_get_payload_tail(h)) -
                                       reinterpret_cast<const char*>(a)));
       a = mnl_attr_next(a))
    f(a);
}

std::optional<net::IpAddress> addrAttr(const nlattr* a, int family) {
  const auto len = mnl_attr_get_payload_len(a);
  if (family == AF_INET && len == 4)
    return net::IpAddress::fromBytes(net::Family::kIpv4, static_cast<const std::uint8_t*>(mnl_attr_get_payload(a)));
  if (family == AF_INET6 && len == 16)
    return net::IpAddress::fromBytes(net::Family::kIpv6, static_cast<const std::uint8_t*>(mnl_attr_get_payload(a)));
  return std::nullopt;
}
}  // namespace

Expected<void> Rtnl::addRule(const RuleSpec& r) {
  alignas(nlmsghdr) char buf[8192];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  fillRule(nlh, r, true);
  return talk(nlh, "add rule " + describe(r));
}

Expected<void> Rtnl::deleteRule(const RuleSpec& r) {
  alignas(nlmsghdr) char buf[8192];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  fillRule(nlh, r, false);
  return talk(nlh, "delete rule " + describe(r));
}

Expected<void> Rtnl::dump(int type, int family, std::size_t headerSize, const std::function<void(const void*)>& each,
                          const std::string& what) {
  alignas(nlmsghdr) char buf[16384];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = static_cast<std::uint16_t>(type);
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = seq_++;
  auto* hdr = static_cast<unsigned char*>(mnl_nlmsg_put_extra_header(nlh, headerSize));
  hdr[0] = static_cast<unsigned char>(family);  // every rtnetlink header starts with the family
  const std::uint32_t seq = nlh->nlmsg_seq;
  if (mnl_socket_sendto(sock_, nlh, nlh->nlmsg_len) < 0) return unexpected(sysError(what));
  auto cb = [](const nlmsghdr* h, void* data) -> int {
    (*static_cast<const std::function<void(const void*)>*>(data))(h);
    return MNL_CB_OK;
  };
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(sock_, buf, sizeof buf);
    if (n < 0) return unexpected(sysError(what));
    int rc = mnl_cb_run(buf, static_cast<std::size_t>(n), seq, mnl_socket_get_portid(sock_), cb,
                        const_cast<std::function<void(const void*)>*>(&each));
    if (rc < 0) return unexpected(sysError(what));
    if (rc == MNL_CB_STOP) return {};
  }
}

Expected<std::string> Rtnl::ifnameOf(unsigned index) {
  for (const auto& [name, idx] : indexCache_)
    if (idx == index) return name;
  auto ls = links();
  if (!ls) return unexpected(ls.error());
  for (const auto& l : *ls) {
    indexCache_[l.name] = l.index;
    if (l.index == index) return l.name;
  }
  return makeError(ErrorCode::kNotFound, "no interface with index " + std::to_string(index));
}

Expected<std::vector<RouteSpec>> Rtnl::staticRoutes() {
  std::vector<RouteSpec> out;
  std::vector<unsigned> oifs;
  for (int family : {AF_INET, AF_INET6}) {
    auto r = dump(
        RTM_GETROUTE, family, sizeof(rtmsg),
        [&](const void* msg) {
          const auto* h = static_cast<const nlmsghdr*>(msg);
          const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(h));
          // Every route that changes forwarding, whoever made it: all but the
          // kernel's own (connected prefixes, the local table, multicast).
          if (rtm->rtm_protocol == RTPROT_KERNEL || rtm->rtm_table == RT_TABLE_LOCAL) return;
          if (rtm->rtm_type == RTN_MULTICAST || rtm->rtm_type == RTN_BROADCAST || rtm->rtm_type == RTN_ANYCAST) return;
          RouteSpec spec;
          spec.table = rtm->rtm_table;
          spec.onlink = (rtm->rtm_flags & RTNH_F_ONLINK) != 0;
          switch (rtm->rtm_type) {
            case RTN_THROW:
              spec.type = RouteSpec::Type::kThrow;
              break;
            case RTN_BLACKHOLE:
              spec.type = RouteSpec::Type::kBlackhole;
              break;
            case RTN_LOCAL:
              spec.type = RouteSpec::Type::kLocal;
              break;
            default:
              spec.type = RouteSpec::Type::kUnicast;
              break;
          }
          std::optional<net::IpAddress> dst;
          unsigned oif = 0;
          forEachAttr(h, sizeof(rtmsg), [&](const nlattr* a) {
            switch (mnl_attr_get_type(a)) {
              case RTA_TABLE:
                spec.table = mnl_attr_get_u32(a);
                break;
              case RTA_DST:
                dst = addrAttr(a, family);
                break;
              case RTA_GATEWAY:
                spec.gateway = addrAttr(a, family);
                break;
              case RTA_OIF:
                oif = mnl_attr_get_u32(a);
                break;
              default:
                break;
            }
          });
          const auto fam = family == AF_INET ? net::Family::kIpv4 : net::Family::kIpv6;
          spec.dst = net::Cidr::make(dst ? *dst : net::Cidr::any(fam).network(), rtm->rtm_dst_len);
          out.push_back(spec);
          oifs.push_back(oif);
        },
        "list routes");
    if (!r) return unexpected(r.error());
  }
  std::vector<RouteSpec> named;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (oifs[i]) {
      auto n = ifnameOf(oifs[i]);
      if (!n) continue;  // on a link that vanished since the dump: the route went with it
      // A blackhole or throw route reports the loopback device; the plan names none.
      if (out[i].type == RouteSpec::Type::kUnicast || out[i].type == RouteSpec::Type::kLocal) out[i].ifname = *n;
    }
    named.push_back(std::move(out[i]));
  }
  return named;
}

Expected<std::vector<RuleSpec>> Rtnl::rules() {
  std::vector<RuleSpec> out;
  for (int family : {AF_INET, AF_INET6}) {
    auto r = dump(
        RTM_GETRULE, family, sizeof(fib_rule_hdr),
        [&](const void* msg) {
          const auto* h = static_cast<const nlmsghdr*>(msg);
          const auto* frh = static_cast<const fib_rule_hdr*>(mnl_nlmsg_get_payload(h));
          RuleSpec spec;
          spec.table = frh->table;
          spec.action = frh->action;
          std::optional<net::IpAddress> src;
          forEachAttr(h, sizeof(fib_rule_hdr), [&](const nlattr* a) {
            switch (mnl_attr_get_type(a)) {
              case FRA_TABLE:
                spec.table = mnl_attr_get_u32(a);
                break;
              case FRA_PRIORITY:
                spec.priority = mnl_attr_get_u32(a);
                break;
              case FRA_SRC:
                src = addrAttr(a, family);
                break;
              default:
                break;
            }
          });
          const auto fam = family == AF_INET ? net::Family::kIpv4 : net::Family::kIpv6;
          spec.from = net::Cidr::make(src ? *src : net::Cidr::any(fam).network(), frh->src_len);
          out.push_back(spec);
        },
        "list rules");
    if (!r) return unexpected(r.error());
  }
  return out;
}

Expected<std::vector<AddressInfo>> Rtnl::addresses() {
  std::vector<AddressInfo> out;
  std::vector<unsigned> idx;
  for (int family : {AF_INET, AF_INET6}) {
    auto r = dump(
        RTM_GETADDR, family, sizeof(ifaddrmsg),
        [&](const void* msg) {
          const auto* h = static_cast<const nlmsghdr*>(msg);
          const auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(h));
          std::optional<net::IpAddress> local, address;
          forEachAttr(h, sizeof(ifaddrmsg), [&](const nlattr* a) {
            if (mnl_attr_get_type(a) == IFA_LOCAL) local = addrAttr(a, family);
            if (mnl_attr_get_type(a) == IFA_ADDRESS) address = addrAttr(a, family);
          });
          auto a = local ? local : address;
          if (!a) return;
          out.push_back(AddressInfo{{}, *a, ifa->ifa_prefixlen});
          idx.push_back(ifa->ifa_index);
        },
        "list addresses");
    if (!r) return unexpected(r.error());
  }
  std::vector<AddressInfo> named;
  for (std::size_t i = 0; i < out.size(); ++i) {
    auto n = ifnameOf(idx[i]);
    if (!n) continue;  // the link vanished since the dump
    out[i].ifname = *n;
    named.push_back(std::move(out[i]));
  }
  return named;
}

}  // namespace vpcfw::lab
