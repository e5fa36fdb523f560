#include "vpcfw/lab/probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <tuple>

#include "vpcfw/nft/netns.h"

namespace vpcfw::lab {
namespace {

using Clock = std::chrono::steady_clock;
constexpr char kPayload[] = "vpcfw-probe";

// A socket made inside a namespace: it stays there.
int socketIn(const std::string& ns, int family, int type, int protocol) {
  int fd = -1;
  (void)nft::runInNetns(ns, [&]() -> Expected<void> {
    fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    return {};
  });
  return fd;
}

struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
};

SockAddr sockAddr(const net::IpAddress& a, std::uint16_t port) {
  SockAddr s;
  if (a.isV4()) {
    auto* in = reinterpret_cast<sockaddr_in*>(&s.ss);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    std::memcpy(&in->sin_addr, a.bytes().data(), 4);
    s.len = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&s.ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    std::memcpy(&in6->sin6_addr, a.bytes().data(), 16);
    s.len = sizeof(sockaddr_in6);
  }
  return s;
}

void setInt(int fd, int level, int opt, int value) { setsockopt(fd, level, opt, &value, sizeof value); }

void lingerZero(int fd) {
  linger l{1, 0};  // close with a reset: no TIME_WAIT, no half-open state left behind
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

std::uint16_t checksum(const unsigned char* p, std::size_t n) {
  std::uint32_t s = 0;
  for (std::size_t i = 0; i + 1 < n; i += 2) s += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2) s += static_cast<std::uint32_t>(p[n - 1] << 8);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<std::uint16_t>(~s & 0xffff);
}

bool isEcho(const ProbeSpec& p) { return p.icmpType == -1; }
int requestType(const ProbeSpec& p) {
  if (!isEcho(p)) return p.icmpType;
  return p.dst.isV4() ? 8 : 128;
}

// What an observer saw arrive: protocol and the fields probes are told apart by.
struct Seen {
  int proto = 0;
  std::uint16_t sport = 0, dport = 0;  // tcp (SYN only) / udp
  int icmpType = -1;
  std::uint16_t icmpId = 0;
};

std::optional<Seen> parse(const unsigned char* p, std::size_t n, std::uint16_t ethProto) {
  Seen s;
  std::size_t off = 0;
  if (ethProto == ETH_P_IP) {
    if (n < 20) return std::nullopt;
    off = static_cast<std::size_t>(p[0] & 0x0f) * 4;
    s.proto = p[9];
  } else if (ethProto == ETH_P_IPV6) {
    if (n < 40) return std::nullopt;
    off = 40;
    s.proto = p[6];
  } else {
    return std::nullopt;
  }
  if (n < off + 8) return std::nullopt;
  const unsigned char* l4 = p + off;
  if (s.proto == IPPROTO_TCP || s.proto == IPPROTO_UDP) {
    s.sport = static_cast<std::uint16_t>(l4[0] << 8 | l4[1]);
    s.dport = static_cast<std::uint16_t>(l4[2] << 8 | l4[3]);
    if (s.proto == IPPROTO_TCP) {
      if (n < off + 14) return std::nullopt;
      const unsigned flags = l4[13];
      if (!(flags & 0x02) || (flags & 0x10)) return std::nullopt;  // SYN without ACK: a new connection
    }
  } else if (s.proto == IPPROTO_ICMP || s.proto == IPPROTO_ICMPV6) {
    s.icmpType = l4[0];
    s.icmpId = static_cast<std::uint16_t>(l4[4] << 8 | l4[5]);
  }
  return s;
}

struct Client {
  int fd = -1;
  bool done = false;
};

}  // namespace

std::vector<ProbeResult> runProbes(const std::vector<ProbeSpec>& probes, std::chrono::milliseconds timeout) {
  std::vector<ProbeResult> results(probes.size());
  const auto idBase = static_cast<std::uint16_t>(std::random_device{}() & 0xf000);
  auto icmpId = [&](std::size_t i) { return static_cast<std::uint16_t>(idBase + i); };
  std::vector<int> fds;  // everything to close at the end
  auto keep = [&](int fd) {
    if (fd >= 0) fds.push_back(fd);
    return fd;
  };

  // Observers: one packet socket per destination namespace, before anything is sent.
  std::map<std::string, int> observers;
  for (const auto& p : probes) {
    if (observers.contains(p.dstNs)) continue;
    int fd = keep(socketIn(p.dstNs, AF_PACKET, SOCK_DGRAM, htons(ETH_P_ALL)));
    if (fd >= 0) setInt(fd, SOL_SOCKET, SO_RCVBUF, 4 << 20);
    observers[p.dstNs] = fd;
  }

  // Listeners: TCP and UDP, IPv4 and IPv6, per destination namespace and port.
  enum class Kind { kTcp, kUdp };
  std::vector<std::pair<int, Kind>> listeners;
  std::set<std::tuple<std::string, int, std::uint16_t, bool>> opened;
  for (const auto& p : probes) {
    if (!p.protocol.hasPorts()) continue;
    const bool tcp = p.protocol.number() == net::Protocol::kTcp;
    const bool v4 = p.dst.isV4();
    if (!opened.emplace(p.dstNs, p.protocol.number(), p.port, v4).second) continue;
    int fd = keep(socketIn(p.dstNs, v4 ? AF_INET : AF_INET6, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
    if (fd < 0) continue;
    setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (!v4) setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    if (!tcp) {
      // Replies leave from the address the datagram came to (the internet
      // namespace answers for whole ranges).
      if (v4) setInt(fd, IPPROTO_IP, IP_PKTINFO, 1);
      else setInt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
    }
    SockAddr any = sockAddr(net::Cidr::any(v4 ? net::Family::kIpv4 : net::Family::kIpv6).network(), p.port);
    if (bind(fd, reinterpret_cast<sockaddr*>(&any.ss), any.len) != 0 || (tcp && listen(fd, 1024) != 0)) continue;
    listeners.emplace_back(fd, tcp ? Kind::kTcp : Kind::kUdp);
  }

  // Clients.
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  std::vector<Client> clients(probes.size());
  for (std::size_t i = 0; i < probes.size(); ++i) {
    const auto& p = probes[i];
    auto& r = results[i];
    auto& c = clients[i];
    const bool v4 = p.src.isV4();
    const int fam = v4 ? AF_INET : AF_INET6;
    r.replyExpected = !p.protocol.isIcmpAny() || isEcho(p);
    if (p.protocol.hasPorts()) {
      const bool tcp = p.protocol.number() == net::Protocol::kTcp;
      c.fd = keep(socketIn(p.srcNs, fam, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
    } else if (p.protocol.isIcmpAny()) {
      c.fd = keep(socketIn(p.srcNs, fam, SOCK_RAW, v4 ? int{IPPROTO_ICMP} : int{IPPROTO_ICMPV6}));
    }
    if (c.fd < 0) {
      r.error = p.protocol.hasPorts() || p.protocol.isIcmpAny() ? "cannot open a socket in " + p.srcNs + ": " + std::strerror(errno)
                                                                 : "only tcp, udp, icmp and icmpv6 can be probed";
      c.done = true;
      continue;
    }
    setInt(c.fd, v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_FREEBIND : IPV6_FREEBIND, 1);
    SockAddr from = sockAddr(p.src, p.protocol.hasPorts() ? p.sourcePort : 0);
    SockAddr to = sockAddr(p.dst, p.port);
    if (p.protocol.hasPorts()) setInt(c.fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (p.protocol.number() == net::Protocol::kTcp) lingerZero(c.fd);
    if (bind(c.fd, reinterpret_cast<sockaddr*>(&from.ss), from.len) != 0) {
      r.error = "cannot bind " + p.src.toString() + ": " + std::strerror(errno);
      c.done = true;
      continue;
    }
    if (p.protocol.hasPorts()) {
      int rc = connect(c.fd, reinterpret_cast<sockaddr*>(&to.ss), to.len);
      if (rc != 0 && errno != EINPROGRESS) {
        r.error = std::string("connect: ") + std::strerror(errno);
        c.done = true;
        continue;
      }
      if (p.protocol.number() == net::Protocol::kUdp) (void)send(c.fd, kPayload, sizeof kPayload, 0);
    } else {
      unsigned char msg[8 + sizeof kPayload] = {};
      msg[0] = static_cast<unsigned char>(requestType(p));
      msg[1] = static_cast<unsigned char>(p.icmpCode);
      const auto id = icmpId(i);  // told apart by id
      msg[4] = static_cast<unsigned char>(id >> 8);
      msg[5] = static_cast<unsigned char>(id & 0xff);
      msg[7] = 1;
      std::memcpy(msg + 8, kPayload, sizeof kPayload);
      if (v4) {
        const auto sum = checksum(msg, sizeof msg);
        msg[2] = static_cast<unsigned char>(sum >> 8);
        msg[3] = static_cast<unsigned char>(sum & 0xff);
      }  // the kernel fills ICMPv6 checksums
      if (sendto(c.fd, msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&to.ss), to.len) < 0) {
        r.error = std::string("send: ") + std::strerror(errno);
        c.done = true;
        continue;
      }
      if (!r.replyExpected) c.done = true;  // only arrival is observed
    }
  }

  auto observe = [&](const std::string& ns, int fd) {
    unsigned char buf[2048];
    for (;;) {
      sockaddr_ll ll{};
      socklen_t len = sizeof ll;
      ssize_t n = recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&ll), &len);
      if (n <= 0) return;
      if (ll.sll_pkttype == PACKET_OUTGOING) continue;
      auto s = parse(buf, static_cast<std::size_t>(n), ntohs(ll.sll_protocol));
      if (!s) continue;
      for (std::size_t i = 0; i < probes.size(); ++i) {
        const auto& p = probes[i];
        if (p.dstNs != ns || s->proto != p.protocol.number()) continue;
        if (p.protocol.hasPorts() ? (s->sport == p.sourcePort && s->dport == p.port)
                                  : (s->icmpType == requestType(p) && s->icmpId == icmpId(i)))
          results[i].requestArrived = true;
      }
    }
  };

  auto serve = [&](int fd, Kind kind) {
    if (kind == Kind::kTcp) {
      for (;;) {
        int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        lingerZero(c);
        close(c);
      }
    }
    for (;;) {
      char data[2048];
      char control[256];
      sockaddr_storage peer{};
      iovec iov{data, sizeof data};
      msghdr mh{};
      mh.msg_name = &peer;
      mh.msg_namelen = sizeof peer;
      mh.msg_iov = &iov;
      mh.msg_iovlen = 1;
      mh.msg_control = control;
      mh.msg_controllen = sizeof control;
      ssize_t n = recvmsg(fd, &mh, 0);
      if (n < 0) return;
      // Echo it back from the address it was sent to: the packet-info
      // message it came with, turned into the source to send from.
      iov.iov_len = static_cast<std::size_t>(n);
      for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
          in_pktinfo info;
          std::memcpy(&info, CMSG_DATA(cm), sizeof info);
          info.ipi_spec_dst = info.ipi_addr;
          info.ipi_ifindex = 0;
          std::memcpy(CMSG_DATA(cm), &info, sizeof info);
        } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
          in6_pktinfo info;
          std::memcpy(&info, CMSG_DATA(cm), sizeof info);
          info.ipi6_ifindex = 0;
          std::memcpy(CMSG_DATA(cm), &info, sizeof info);
        }
      }
      if (mh.msg_controllen == 0) mh.msg_control = nullptr;
      mh.msg_flags = 0;
      (void)sendmsg(fd, &mh, 0);
    }
  };

  auto finish = [&](std::size_t i, bool replied, std::string error) {
    clients[i].done = true;
    results[i].replyReturned = replied;
    if (replied) results[i].requestArrived = true;  // the reply proves it
    results[i].error = std::move(error);
    results[i].ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  };

  auto client = [&](std::size_t i) {
    const auto& p = probes[i];
    const int fd = clients[i].fd;
    if (p.protocol.number() == net::Protocol::kTcp) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      // Connected; a reset right after is the listener closing it.
      if (err == 0 || err == ECONNRESET || err == EPIPE) finish(i, true, "");
      else if (err == ECONNREFUSED) finish(i, true, "refused (reset)");
      else finish(i, false, std::strerror(err));
      return;
    }
    if (p.protocol.number() == net::Protocol::kUdp) {
      char buf[2048];
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n >= 0) finish(i, true, "");
      else if (errno != EAGAIN) finish(i, false, std::strerror(errno));
      return;
    }
    unsigned char buf[2048];
    for (;;) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;
      std::size_t off = p.src.isV4() ? static_cast<std::size_t>(buf[0] & 0x0f) * 4 : 0;
      if (static_cast<std::size_t>(n) < off + 8) continue;
      const int type = buf[off];
      const auto id = static_cast<std::uint16_t>(buf[off + 4] << 8 | buf[off + 5]);
      if (type == (p.src.isV4() ? 0 : 129) && id == icmpId(i)) {
        finish(i, true, "");
        return;
      }
    }
  };

  for (;;) {
    const bool allDone = std::all_of(clients.begin(), clients.end(), [](const Client& c) { return c.done; });
    auto now = Clock::now();
    // After the last reply, a short grace for arrivals still in flight.
    if (now >= deadline || allDone) {
      if (allDone && now < deadline) {
        std::vector<pollfd> pf;
        for (const auto& [ns, fd] : observers) pf.push_back({fd, POLLIN, 0});
        poll(pf.data(), pf.size(), 20);
      }
      for (const auto& [ns, fd] : observers)
        if (fd >= 0) observe(ns, fd);
      break;
    }
    std::vector<pollfd> pf;
    std::vector<std::function<void()>> on;
    for (const auto& [ns, fd] : observers) {
      if (fd < 0) continue;
      pf.push_back({fd, POLLIN, 0});
      on.emplace_back([&, ns = ns, fd = fd] { observe(ns, fd); });
    }
    for (const auto& [fd, kind] : listeners) {
      pf.push_back({fd, POLLIN, 0});
      on.emplace_back([&, fd = fd, kind = kind] { serve(fd, kind); });
    }
    for (std::size_t i = 0; i < clients.size(); ++i) {
      if (clients[i].done) continue;
      const bool tcp = probes[i].protocol.number() == net::Protocol::kTcp;
      pf.push_back({clients[i].fd, static_cast<short>(tcp ? POLLOUT : POLLIN), 0});
      on.emplace_back([&, i] { client(i); });
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    int n = poll(pf.data(), pf.size(), static_cast<int>(std::max<long long>(1, wait)));
    if (n < 0 && errno != EINTR) break;
    for (std::size_t k = 0; k < pf.size(); ++k)
      if (pf[k].revents) on[k]();
  }
  const double total = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  for (std::size_t i = 0; i < probes.size(); ++i) {
    if (!clients[i].done) {
      results[i].ms = total;
      if (results[i].error.empty() && results[i].replyExpected) results[i].error = "timed out";
    }
  }
  for (int fd : fds) close(fd);
  return results;
}

}  // namespace vpcfw::lab
