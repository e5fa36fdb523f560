#include "vpcfw/lab/rtnl.h"

#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>  // before the linux/ headers, which clash with it otherwise
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <thread>

#include "vpcfw/nft/netns.h"

namespace vpcfw::lab {
namespace {

constexpr const char* kNetnsDir = "/run/netns";

Expected<void> sysError(const std::string& what) { return makeError(ErrorCode::kKernel, what + ": " + std::strerror(errno)); }

// Sends one request and waits for the kernel's acknowledgement.
Expected<void> talk(nlmsghdr* nlh, const std::string& what) {
  mnl_socket* nl = mnl_socket_open(NETLINK_ROUTE);
  if (!nl) return sysError("rtnetlink socket");
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    mnl_socket_close(nl);
    return sysError("rtnetlink bind");
  }
  nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  nlh->nlmsg_seq = static_cast<std::uint32_t>(time(nullptr));
  Expected<void> result;
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
    result = sysError(what);
  } else {
    alignas(nlmsghdr) char buf[8192];
    ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof buf);
    if (n < 0 || mnl_cb_run(buf, static_cast<std::size_t>(n), nlh->nlmsg_seq, mnl_socket_get_portid(nl), nullptr, nullptr) < 0)
      result = sysError(what);
  }
  mnl_socket_close(nl);
  return result;
}

Expected<unsigned> ifindex(const std::string& name) {
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0) return makeError(ErrorCode::kNotFound, "no interface " + name);
  return idx;
}

}  // namespace

Expected<void> createNamespace(const std::string& name) {
  mkdir(kNetnsDir, 0755);
  const std::string path = nft::netnsPath(name);
  int fd = open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd < 0) return sysError("create " + path);
  close(fd);
  Expected<void> result;
  // A fresh namespace lives as long as something holds it: bind-mount the
  // thread's namespace on the file, as `ip netns add` does.
  std::thread([&] {
    if (unshare(CLONE_NEWNET) != 0) {
      result = sysError("unshare a network namespace");
      return;
    }
    if (mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) != 0)
      result = sysError("mount " + path);
  }).join();
  if (!result) unlink(path.c_str());
  return result;
}

Expected<void> deleteNamespace(const std::string& name) {
  const std::string path = nft::netnsPath(name);
  umount2(path.c_str(), MNT_DETACH);
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return sysError("remove " + path);
  return {};
}

std::vector<std::string> listNamespaces(const std::string& prefix) {
  std::vector<std::string> out;
  DIR* d = opendir(kNetnsDir);
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.rfind(prefix, 0) == 0) out.push_back(n);
  }
  closedir(d);
  return out;
}

Expected<void> createVeth(const Netns& ns, const std::string& name, const Netns& peerNs, const std::string& peer) {
  int peerFd = -1;
  if (peerNs) {
    peerFd = open(nft::netnsPath(*peerNs).c_str(), O_RDONLY | O_CLOEXEC);
    if (peerFd < 0) return sysError("open namespace " + *peerNs);
  }
  auto r = nft::runInNetns(ns, [&]() -> Expected<void> {
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
    return talk(nlh, "create veth " + name + "/" + peer);
  });
  if (peerFd >= 0) close(peerFd);
  return r;
}

Expected<void> setLinkUp(const Netns& ns, const std::string& ifname) {
  return nft::runInNetns(ns, [&]() -> Expected<void> {
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
  });
}

Expected<void> addAddress(const Netns& ns, const std::string& ifname, const net::IpAddress& addr, int prefix) {
  return nft::runInNetns(ns, [&]() -> Expected<void> {
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
    const auto len = static_cast<std::size_t>(addr.isV4() ? 4 : 16);
    mnl_attr_put(nlh, IFA_LOCAL, len, addr.bytes().data());
    mnl_attr_put(nlh, IFA_ADDRESS, len, addr.bytes().data());
    return talk(nlh, "add address " + addr.toString() + " to " + ifname);
  });
}

Expected<void> addRoute(const Netns& ns, const net::Cidr& dst, const std::string& ifname,
                        const std::optional<net::IpAddress>& gateway) {
  return nft::runInNetns(ns, [&]() -> Expected<void> {
    auto idx = ifindex(ifname);
    if (!idx) return unexpected(idx.error());
    alignas(nlmsghdr) char buf[8192];
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWROUTE;
    nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
    auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
    const bool v4 = dst.family() == net::Family::kIpv4;
    rtm->rtm_family = v4 ? AF_INET : AF_INET6;
    rtm->rtm_dst_len = static_cast<unsigned char>(dst.prefix());
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_STATIC;
    rtm->rtm_scope = gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
    rtm->rtm_type = RTN_UNICAST;
    const auto len = static_cast<std::size_t>(v4 ? 4 : 16);
    if (dst.prefix() > 0) mnl_attr_put(nlh, RTA_DST, len, dst.network().bytes().data());
    mnl_attr_put_u32(nlh, RTA_OIF, *idx);
    if (gateway) mnl_attr_put(nlh, RTA_GATEWAY, len, gateway->bytes().data());
    return talk(nlh, "add route " + dst.toString() + " dev " + ifname);
  });
}

Expected<void> writeSysctl(const Netns& ns, const std::string& key, const std::string& value) {
  return nft::runInNetns(ns, [&]() -> Expected<void> {
    std::ofstream f("/proc/sys/" + key);
    if (!(f << value)) return sysError("write /proc/sys/" + key);
    return {};
  });
}

}  // namespace vpcfw::lab
