// The probe harness (run.h): observers, baseline frames, listeners and
// clients, each socket made inside its namespace, then one poll loop, then
// the verdict of each probe from what was seen and what could be seen.
#include "vpcfw/probe/run.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <fmt/format.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <random>
#include <system_error>
#include <tuple>
#include <variant>

#include "fd.h"
#include "vpcfw/nft/netns.h"
#include "vpcfw/probe/packet.h"

namespace vpcfw::probe {
namespace {

using Clock = std::chrono::steady_clock;
constexpr char kPayload[] = "vpcfw-probe";
constexpr auto kInFlight = std::chrono::milliseconds(20);       // after the last reply, for arrivals still on the way
constexpr auto kBaselineWait = std::chrono::milliseconds(250);  // at most, for the closing baselines

// Thread-safe (strerror is not), and called on the thread that saw the errno.
std::string errnoText(int e) { return std::generic_category().message(e); }

// A socket made inside a namespace: it stays there. Its errno is read on the
// namespace's thread and carried out in the error.
Expected<Fd> socketIn(const std::string& ns, int family, int type, int protocol) {
  Fd fd;
  auto r = nft::runInNetns(ns, [&]() -> Expected<void> {
    const int s = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (s < 0) return makeError(ErrorCode::kKernel, errnoText(errno));
    fd = Fd(s);
    return {};
  });
  if (!r) return unexpected<Error>(r.error());
  return fd;
}

struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&ss); }
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

bool setInt(const Fd& fd, int level, int opt, int value) {
  return setsockopt(fd.get(), level, opt, &value, sizeof value) == 0;
}

bool lingerZero(const Fd& fd) {
  linger l{1, 0};  // close with a reset: no TIME_WAIT, no half-open state left behind
  return setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0;
}

std::string protoName(const ProbeSpec& p) { return p.protocol.toString(); }

// One packet socket per namespace probes start or end in, opened before
// anything is sent.
struct Observer {
  Fd fd;
  std::string openError;              // it could not be opened: nothing it reports counts
  std::string blind;                  // a baseline it missed, or packets it lost: its negatives do not count
  std::vector<std::size_t> from, to;  // probes starting / ending here
};

// One baseline frame into a namespace, sent from the far end of one of its links.
struct Baseline {
  std::string into;
  LinkEnd from;
  bool closing = false;  // sent after the probes (else before)
  bool seen = false;
  std::string error;  // it could not be sent
};

enum class Kind { kTcp, kUdp };
struct Listener {
  Fd fd;
  Kind kind = Kind::kTcp;
  std::string error;
};
using ListenerKey = std::tuple<std::string, int, std::uint16_t, bool>;  // namespace, protocol, port, IPv4

// One probe while it runs: what has been seen of it so far.
struct Probe {
  const ProbeSpec* spec = nullptr;
  Fd fd;
  bool waiting = false;  // the client socket waits for the reply
  bool done = false;
  std::string error;  // the harness failed it
  bool requestLeft = false, requestArrived = false, replySent = false, replyAtSource = false, replyReturned = false;
  std::string detail;
  Clock::time_point sent;
  double ms = 0;
  bool replyExpected() const { return !spec->protocol.isIcmpAny() || isEcho(*spec); }
};

class Harness {
 public:
  Harness(const std::vector<ProbeSpec>& specs, const EntryPoints& entries) : entries_(entries) {
    probes_.resize(specs.size());
    for (std::size_t i = 0; i < specs.size(); ++i) {
      probes_[i].spec = &specs[i];
      observers_[specs[i].srcNs].from.push_back(i);
      observers_[specs[i].dstNs].to.push_back(i);
    }
    nonce_ = static_cast<std::uint64_t>(std::random_device{}()) << 32 | std::random_device{}();
  }

  std::vector<ProbeResult> run(std::chrono::milliseconds timeout) {
    openObservers();
    openListeners();
    sendBaselines(false);
    for (auto& p : probes_) startClient(p);
    // From the last send: starting many clients takes a while, and the last
    // one gets its full time too.
    loop(Clock::now() + timeout);
    for (auto& p : probes_)
      if (!p.done) p.ms = sinceSent(p);
    closeBaselines();
    std::vector<ProbeResult> results;
    for (const auto& p : probes_) results.push_back(verdict(p));
    return results;
  }

 private:
  static double sinceSent(const Probe& p) {
    return std::chrono::duration<double, std::milli>(Clock::now() - p.sent).count();
  }

  void openObservers() {
    for (auto& [ns, o] : observers_) {
      auto fd = socketIn(ns, AF_PACKET, SOCK_DGRAM, htons(ETH_P_ALL));
      if (!fd) {
        o.openError = fmt::format("cannot observe {}: {}", ns, fd.error().message);
        continue;
      }
      o.fd = std::move(*fd);
      // A big matrix arrives all at once; what still overflows is counted
      // (PACKET_STATISTICS) and makes the observer's negatives void.
      if (!setInt(o.fd, SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)) (void)setInt(o.fd, SOL_SOCKET, SO_RCVBUF, 4 << 20);
    }
  }

  // TCP and UDP, IPv4 and IPv6, per destination namespace and port.
  void openListeners() {
    for (auto& p : probes_) {
      const auto& s = *p.spec;
      if (!s.protocol.hasPorts()) continue;
      const bool v4 = s.dst.isV4();
      ListenerKey key{s.dstNs, s.protocol.number(), s.port, v4};
      auto [it, fresh] = listeners_.try_emplace(key);
      if (fresh) it->second = openListener(s.dstNs, s.protocol.number() == net::Protocol::kTcp, v4, s.port);
      if (!it->second.error.empty()) p.error = it->second.error;
    }
  }

  static Listener openListener(const std::string& ns, bool tcp, bool v4, std::uint16_t port) {
    Listener l;
    l.kind = tcp ? Kind::kTcp : Kind::kUdp;
    const std::string what = fmt::format("the {} listener on port {} in {}", tcp ? "tcp" : "udp", port, ns);
    auto fd = socketIn(ns, v4 ? AF_INET : AF_INET6, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    if (!fd) {
      l.error = fmt::format("cannot open {}: {}", what, fd.error().message);
      return l;
    }
    bool ok = setInt(*fd, SOL_SOCKET, SO_REUSEADDR, 1) && (v4 || setInt(*fd, IPPROTO_IPV6, IPV6_V6ONLY, 1));
    // UDP replies leave from the address the datagram came to (the internet
    // namespace answers for whole ranges).
    if (ok && !tcp) ok = v4 ? setInt(*fd, IPPROTO_IP, IP_PKTINFO, 1) : setInt(*fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
    SockAddr any = sockAddr(net::Cidr::any(v4 ? net::Family::kIpv4 : net::Family::kIpv6).network(), port);
    if (ok && bind(fd->get(), any.get(), any.len) != 0) {
      // A service of the lab's own already has the port: it answers instead.
      // Whether it did is seen (verdict(): the reply leaving), not assumed.
      if (errno == EADDRINUSE) return l;
      ok = false;
    }
    ok = ok && (!tcp || listen(fd->get(), 1024) == 0);
    if (!ok) {
      l.error = fmt::format("cannot open {}: {}", what, errnoText(errno));
      return l;
    }
    l.fd = std::move(*fd);
    return l;
  }

  // Baseline frames go out of the link's far end on a packet socket: below
  // every filter, straight into the namespace's interface.
  void sendBaselines(bool closing) {
    for (const auto& [ns, o] : observers_) {
      if (!o.openError.empty()) continue;
      auto it = entries_.find(ns);
      if (it == entries_.end() || it->second.empty()) continue;  // verdict(): no baseline into it
      for (const auto& from : it->second) {
        Baseline b{ns, from, closing, false, {}};
        if (auto e = sendBaseline(from, static_cast<std::uint32_t>(baselines_.size())); !e.empty())
          b.error = fmt::format("cannot send a baseline frame into {} from {} in {}: {}", ns, from.ifname, from.ns, e);
        baselines_.push_back(std::move(b));
      }
    }
  }

  std::string sendBaseline(const LinkEnd& from, std::uint32_t index) const {
    std::string error;
    auto r = nft::runInNetns(from.ns, [&]() -> Expected<void> {
      Fd fd(::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      if (!fd) return makeError(ErrorCode::kKernel, errnoText(errno));
      const unsigned ifindex = if_nametoindex(from.ifname.c_str());
      if (ifindex == 0) return makeError(ErrorCode::kNotFound, "interface " + from.ifname + ": " + errnoText(errno));
      sockaddr_ll to{};
      to.sll_family = AF_PACKET;
      to.sll_protocol = htons(kBaselineEthertype);
      to.sll_ifindex = static_cast<int>(ifindex);
      to.sll_halen = ETH_ALEN;
      std::memset(to.sll_addr, 0xff, ETH_ALEN);  // broadcast: whatever the other end's address
      const auto frame = baselineFrame(nonce_, index);
      if (sendto(fd.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0)
        return makeError(ErrorCode::kKernel, errnoText(errno));
      return {};
    });
    return r ? "" : r.error().message;
  }

  void fail(Probe& p, std::string why) {
    p.error = std::move(why);
    p.fd.reset();
    p.done = true;
  }

  void startClient(Probe& p) {
    const auto& s = *p.spec;
    if (!p.error.empty()) return fail(p, p.error);
    if (!s.protocol.hasPorts() && !s.protocol.isIcmpAny())
      return fail(p, "only tcp, udp, icmp and icmpv6 can be probed");
    const bool v4 = s.src.isV4();
    const bool tcp = s.protocol.number() == net::Protocol::kTcp;
    auto fd = s.protocol.hasPorts()
                  ? socketIn(s.srcNs, v4 ? AF_INET : AF_INET6, tcp ? SOCK_STREAM : SOCK_DGRAM, 0)
                  : socketIn(s.srcNs, v4 ? AF_INET : AF_INET6, SOCK_RAW, v4 ? int{IPPROTO_ICMP} : int{IPPROTO_ICMPV6});
    if (!fd)
      return fail(p, fmt::format("cannot open the {} socket in {}: {}", protoName(s), s.srcNs, fd.error().message));
    p.fd = std::move(*fd);
    // The internet's hosts are AnyIP addresses: bind them without a local address.
    if (!setInt(p.fd, v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_FREEBIND : IPV6_FREEBIND, 1) ||
        (s.protocol.hasPorts() && !setInt(p.fd, SOL_SOCKET, SO_REUSEADDR, 1)) || (tcp && !lingerZero(p.fd)))
      return fail(p, fmt::format("cannot set up the {} socket in {}: {}", protoName(s), s.srcNs, errnoText(errno)));
    SockAddr from = sockAddr(s.src, s.protocol.hasPorts() ? s.sourcePort : 0);
    if (bind(p.fd.get(), from.get(), from.len) != 0)
      return fail(p, fmt::format("cannot bind {} port {} in {}: {}", s.src.toString(), s.sourcePort, s.srcNs,
                                 errnoText(errno)));
    SockAddr to = sockAddr(s.dst, s.port);
    if (s.protocol.hasPorts()) {
      if (connect(p.fd.get(), to.get(), to.len) != 0 && errno != EINPROGRESS)
        return fail(p, fmt::format("cannot connect to {} port {}: {}", s.dst.toString(), s.port, errnoText(errno)));
      if (!tcp && send(p.fd.get(), kPayload, sizeof kPayload, 0) < 0)
        return fail(p, fmt::format("cannot send to {} port {}: {}", s.dst.toString(), s.port, errnoText(errno)));
    } else {
      const auto msg = icmpMessage(s);
      if (sendto(p.fd.get(), msg.data(), msg.size(), 0, to.get(), to.len) < 0)
        return fail(p, fmt::format("cannot send to {}: {}", s.dst.toString(), errnoText(errno)));
    }
    p.sent = Clock::now();
    p.waiting = p.replyExpected();  // else only arrival is observed: done when the observer sees it
  }

  void finish(Probe& p, bool replied, std::string detail) {
    p.done = true;
    p.waiting = false;
    p.replyReturned = replied;
    p.detail = std::move(detail);
    p.ms = sinceSent(p);
    p.fd.reset();
  }

  // The client socket of `p` is ready: the connect finished, a datagram or an ICMP message came.
  void client(Probe& p) {
    const auto& s = *p.spec;
    if (s.protocol.number() == net::Protocol::kTcp) {
      int err = 0;
      socklen_t len = sizeof err;
      if (getsockopt(p.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      // Connected; a reset right after is the listener closing it.
      if (err == 0 || err == ECONNRESET || err == EPIPE)
        finish(p, true, "");
      else if (err == ECONNREFUSED)
        finish(p, true, "refused (reset)");
      else
        finish(p, false, errnoText(err));
      return;
    }
    if (s.protocol.number() == net::Protocol::kUdp) {
      char buf[2048];
      const ssize_t n = recv(p.fd.get(), buf, sizeof buf, 0);
      if (n >= 0)
        finish(p, true, "");
      else if (errno != EAGAIN && errno != EWOULDBLOCK)
        finish(p, false, errnoText(errno));
      return;
    }
    unsigned char buf[2048];
    for (;;) {
      const ssize_t n = recv(p.fd.get(), buf, sizeof buf, 0);
      if (n <= 0) return;
      const std::size_t off = s.src.isV4() ? static_cast<std::size_t>(buf[0] & 0x0f) * 4 : 0;
      if (static_cast<std::size_t>(n) < off + 8) continue;
      const auto id = static_cast<std::uint16_t>(buf[off + 4] << 8 | buf[off + 5]);
      if (buf[off] == replyType(s) && id == s.icmpId) return finish(p, true, "");
    }
  }

  // Everything queued on an observer: requests and replies leaving and
  // arriving, and baseline frames.
  void observe(Observer& o) {
    unsigned char buf[2048];
    for (;;) {
      sockaddr_ll ll{};
      socklen_t len = sizeof ll;
      const ssize_t n = recvfrom(o.fd.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&ll), &len);
      if (n <= 0) return;
      const std::span<const unsigned char> packet(buf, static_cast<std::size_t>(n));
      const bool outgoing = ll.sll_pkttype == PACKET_OUTGOING;
      if (ntohs(ll.sll_protocol) == kBaselineEthertype) {
        if (outgoing) continue;
        if (auto i = parseBaseline(packet, nonce_);
            i && *i < baselines_.size() && &observers_.at(baselines_[*i].into) == &o)
          baselines_[*i].seen = true;
        continue;
      }
      auto seen = parsePacket(packet, ntohs(ll.sll_protocol));
      if (!seen) continue;
      for (auto i : o.from) {
        auto& p = probes_[i];
        if (outgoing && isRequest(*p.spec, *seen)) p.requestLeft = true;
        if (!outgoing && isReply(*p.spec, *seen)) p.replyAtSource = true;
      }
      for (auto i : o.to) {
        auto& p = probes_[i];
        if (!outgoing && isRequest(*p.spec, *seen)) {
          p.requestArrived = true;
          if (!p.replyExpected() && !p.done) {
            p.done = true;
            p.ms = sinceSent(p);
            p.fd.reset();
          }
        }
        if (outgoing && isReply(*p.spec, *seen)) p.replySent = true;
      }
    }
  }

  static void serve(Listener& l) {
    if (l.kind == Kind::kTcp) {
      for (;;) {
        Fd c(accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!c) return;
        (void)lingerZero(c);
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
      const ssize_t n = recvmsg(l.fd.get(), &mh, 0);
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
      (void)sendmsg(l.fd.get(), &mh, 0);  // a lost echo shows as the reply never leaving (verdict())
    }
  }

  // One poll over the observers, the listeners and the clients still
  // waiting for a reply; handles what is ready. False when poll failed.
  bool pollOnce(int timeoutMs) {
    using Source = std::variant<Observer*, Listener*, Probe*>;
    std::vector<pollfd> pf;
    std::vector<Source> on;
    for (auto& [ns, o] : observers_)
      if (o.fd) {
        pf.push_back({o.fd.get(), POLLIN, 0});
        on.emplace_back(&o);
      }
    for (auto& [key, l] : listeners_)
      if (l.fd) {
        pf.push_back({l.fd.get(), POLLIN, 0});
        on.emplace_back(&l);
      }
    for (auto& p : probes_)
      if (p.waiting) {
        const bool tcp = p.spec->protocol.number() == net::Protocol::kTcp;
        pf.push_back({p.fd.get(), static_cast<short>(tcp ? POLLOUT : POLLIN), 0});
        on.emplace_back(&p);
      }
    const int n = poll(pf.data(), pf.size(), timeoutMs);
    if (n < 0) return errno == EINTR;
    for (std::size_t k = 0; k < pf.size(); ++k) {
      if (!pf[k].revents) continue;
      std::visit(
          [this](auto* s) {
            using T = std::remove_pointer_t<decltype(s)>;
            if constexpr (std::is_same_v<T, Observer>)
              observe(*s);
            else if constexpr (std::is_same_v<T, Listener>)
              serve(*s);
            else if (s->waiting)
              client(*s);
          },
          on[k]);
    }
    return true;
  }

  // Until every probe is done or the deadline.
  void loop(Clock::time_point deadline) {
    for (;;) {
      const auto now = Clock::now();
      if (now >= deadline || std::all_of(probes_.begin(), probes_.end(), [](const Probe& p) { return p.done; })) return;
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
      if (!pollOnce(static_cast<int>(wait))) {
        const std::string why = "poll: " + errnoText(errno);
        for (auto& p : probes_)
          if (!p.done) fail(p, why);
        return;
      }
    }
  }

  // The closing baselines, and what is still in flight (a reply on its way
  // at the deadline still counts: it came back), then each observer's blind
  // spots (a baseline it missed, packets it dropped).
  void closeBaselines() {
    sendBaselines(true);
    const auto begin = Clock::now();
    for (;;) {
      if (!pollOnce(5)) break;
      const bool all = std::all_of(baselines_.begin(), baselines_.end(),
                                   [](const Baseline& b) { return b.seen || !b.error.empty(); });
      const auto now = Clock::now();
      if (now - begin >= kBaselineWait || (all && now - begin >= kInFlight)) break;
    }
    (void)pollOnce(0);  // a reply an observer saw last is on its socket too by now
    for (auto& [ns, o] : observers_) {
      if (!o.openError.empty()) continue;
      tpacket_stats stats{};
      socklen_t len = sizeof stats;
      if (getsockopt(o.fd.get(), SOL_PACKET, PACKET_STATISTICS, &stats, &len) == 0 && stats.tp_drops > 0)
        o.blind = fmt::format("the observer in {} lost {} packets (receive buffer full)", ns, stats.tp_drops);
      else if (auto it = entries_.find(ns); it == entries_.end() || it->second.empty())
        o.blind = fmt::format("no baseline: the lab has no link into {}", ns);
    }
    for (const auto& b : baselines_) {
      auto& o = observers_.at(b.into);
      if (!o.blind.empty()) continue;
      if (!b.error.empty())
        o.blind = b.error;
      else if (!b.seen)
        o.blind = fmt::format("baseline failed: a frame sent into {} from {} in {} {} the probes was not seen there",
                              b.into, b.from.ifname, b.from.ns, b.closing ? "after" : "before");
    }
  }

  // What a probe showed. Positives stand on their own; a negative only when
  // a positive brackets it (the request left, the reply left) and the
  // observer that did not see it saw its baselines.
  ProbeResult verdict(const Probe& p) const {
    const auto& s = *p.spec;
    ProbeResult r;
    r.replyExpected = p.replyExpected();
    r.ms = p.ms;
    auto error = [&](std::string why) {
      r.outcome = ProbeResult::Outcome::kHarnessError;
      r.error = std::move(why);
      r.requestArrived = r.replyReturned = false;
      return r;
    };
    const Observer& src = observers_.at(s.srcNs);
    const Observer& dst = observers_.at(s.dstNs);
    if (!p.error.empty()) return error(p.error);
    if (!dst.openError.empty()) return error(dst.openError);
    r.requestArrived = p.requestArrived || p.replyReturned;  // the reply proves it
    r.replyReturned = p.replyReturned;
    r.detail = p.detail;
    if (r.replyReturned || (r.requestArrived && !r.replyExpected)) return r;
    if (!src.openError.empty()) return error(src.openError);
    if (!r.requestArrived) {
      if (!p.requestLeft)
        return error(src.blind.empty() ? fmt::format("the request never left {}", s.srcNs) : src.blind);
      if (!dst.blind.empty()) return error(dst.blind);
      return r;  // request dropped
    }
    if (!p.replySent) return error(fmt::format("{} did not answer the request", s.dstNs));
    if (p.replyAtSource) return error(fmt::format("the reply reached {} but not the probe's socket", s.srcNs));
    if (!src.blind.empty()) return error(src.blind);
    return r;  // reply dropped
  }

  const EntryPoints& entries_;
  std::vector<Probe> probes_;
  std::map<std::string, Observer> observers_;
  std::map<ListenerKey, Listener> listeners_;
  std::vector<Baseline> baselines_;
  std::uint64_t nonce_ = 0;
};

}  // namespace

std::vector<ProbeResult> runProbes(const std::vector<ProbeSpec>& probes, const EntryPoints& entries,
                                   std::chrono::milliseconds timeout) {
  return Harness(probes, entries).run(timeout);
}

}  // namespace vpcfw::probe
