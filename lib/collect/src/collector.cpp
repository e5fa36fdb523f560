// The collector's sockets and loop (collector.h). Sockets are opened on a
// thread inside each fabric's namespace (nft::runInNetns) and used from the
// caller's thread: a netlink socket stays in the namespace it was made in.
#include "vpcfw/collect/collector.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnetfilter_log/libnetfilter_log.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <system_error>
#include <thread>

#include "vpcfw/nft/netns.h"

namespace vpcfw::collect {
namespace {

std::int64_t wallSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec;
}
std::int64_t monoMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

unexpected<Error> kernelError(const std::string& what, int err) {
  return makeError(ErrorCode::kKernel, what + ": " + std::generic_category().message(err));
}

// The entry's fields the translator uses; nullopt for a family it does not know.
std::optional<CtEntry> entryOf(const nf_conntrack* ct) {
  CtEntry e;
  const int l3 = nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO);
  if (l3 == AF_INET) {
    std::uint32_t s = nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_SRC), d = nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_DST);
    e.orig.src = net::IpAddress::fromBytes(net::Family::kIpv4, reinterpret_cast<const std::uint8_t*>(&s));
    e.orig.dst = net::IpAddress::fromBytes(net::Family::kIpv4, reinterpret_cast<const std::uint8_t*>(&d));
  } else if (l3 == AF_INET6) {
    const auto* s = static_cast<const std::uint8_t*>(nfct_get_attr(ct, ATTR_ORIG_IPV6_SRC));
    const auto* d = static_cast<const std::uint8_t*>(nfct_get_attr(ct, ATTR_ORIG_IPV6_DST));
    if (!s || !d) return std::nullopt;
    e.orig.src = net::IpAddress::fromBytes(net::Family::kIpv6, s);
    e.orig.dst = net::IpAddress::fromBytes(net::Family::kIpv6, d);
  } else {
    return std::nullopt;
  }
  e.id = nfct_get_attr_u32(ct, ATTR_ID);
  e.orig.protocol = nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO);
  if (nfct_attr_is_set(ct, ATTR_ORIG_PORT_SRC) > 0 && e.orig.protocol != IPPROTO_ICMP &&
      e.orig.protocol != IPPROTO_ICMPV6) {
    e.orig.srcPort = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_SRC));
    e.orig.dstPort = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST));
  }
  if (nfct_attr_is_set(ct, ATTR_ICMP_ID) > 0) e.orig.icmpId = ntohs(nfct_get_attr_u16(ct, ATTR_ICMP_ID));
  e.accounted = nfct_attr_is_set(ct, ATTR_ORIG_COUNTER_PACKETS) > 0;
  if (e.accounted) {
    e.packets[0] = nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_PACKETS);
    e.bytes[0] = nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_BYTES);
    e.packets[1] = nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_PACKETS);
    e.bytes[1] = nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_BYTES);
  }
  if (nfct_attr_is_set(ct, ATTR_TIMESTAMP_START) > 0)
    e.start = static_cast<std::int64_t>(nfct_get_attr_u64(ct, ATTR_TIMESTAMP_START) / 1000000000ull);
  if (nfct_attr_is_set(ct, ATTR_STATUS) > 0) e.confirmed = (nfct_get_attr_u32(ct, ATTR_STATUS) & IPS_CONFIRMED) != 0;
  return e;
}

struct MnlClose {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};
struct NfctClose {
  void operator()(nfct_handle* h) const { nfct_close(h); }
};
using MnlSocket = std::unique_ptr<mnl_socket, MnlClose>;

Expected<void> writeProc(const std::string& path, const std::string& value) {
  std::ofstream f(path);
  if (!f) return kernelError("cannot open " + path, errno);
  f << value;
  f.flush();
  if (!f) return kernelError("cannot write " + path, errno);
  return {};
}

// Sends one nflog config message and reads its acknowledgement.
Expected<void> nflogConfig(mnl_socket* nl, std::uint16_t group, const std::function<void(nlmsghdr*)>& fill) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = nflog_nlmsg_put_header(buf.data(), NFULNL_MSG_CONFIG, AF_UNSPEC, group);
  nlh->nlmsg_flags |= NLM_F_ACK;
  nlh->nlmsg_seq = static_cast<std::uint32_t>(monoMs());
  fill(nlh);
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) return kernelError("nflog config", errno);
  const int n = static_cast<int>(mnl_socket_recvfrom(nl, buf.data(), buf.size()));
  if (n < 0) return kernelError("nflog config", errno);
  if (mnl_cb_run(buf.data(), static_cast<std::size_t>(n), nlh->nlmsg_seq, mnl_socket_get_portid(nl), nullptr, nullptr) <
      0)
    return kernelError("nflog config", errno);
  return {};
}

// Destroy events are read on a thread of their own: a burst of them (a dump
// that expires thousands of entries, a mass timeout) then never waits for the
// main loop's dump or nflog wait and never overflows the socket. The thread
// only receives and parses; the translator stays on the caller's thread.
class EventReader {
 public:
  explicit EventReader(int fd) : fd_(fd) {
    wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    stop_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    thread_ = std::thread([this] { loop(); });
  }
  ~EventReader() {
    const std::uint64_t one = 1;
    (void)!write(stop_, &one, sizeof one);
    thread_.join();
    close(wake_);
    close(stop_);
  }
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;

  // Readable when events were queued: for the caller's poll.
  int wakeFd() const { return wake_; }
  // The events queued so far (entry, Unix seconds read) and the overruns.
  void take(std::vector<std::pair<CtEntry, std::int64_t>>& out, std::uint64_t& lost) {
    std::uint64_t n = 0;
    (void)!read(wake_, &n, sizeof n);
    std::lock_guard<std::mutex> g(mu_);
    out.swap(queue_);
    queue_.clear();
    lost = lost_;
    lost_ = 0;
  }

 private:
  void loop() {
    std::vector<char> buf(1 << 16);
    std::vector<std::pair<CtEntry, std::int64_t>> got;
    for (;;) {
      pollfd fds[] = {{fd_, POLLIN, 0}, {stop_, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0 && errno != EINTR) return;
      if (fds[1].revents) return;
      std::uint64_t overruns = 0;
      for (;;) {
        const ssize_t n = recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n < 0 && errno == ENOBUFS) {
          ++overruns;
          continue;
        }
        if (n <= 0) break;
        const std::int64_t now = wallSeconds();
        auto* nlh = reinterpret_cast<nlmsghdr*>(buf.data());
        int left = static_cast<int>(n);
        for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
          if ((nlh->nlmsg_type & 0xff) != IPCTNL_MSG_CT_DELETE) continue;
          nf_conntrack* ct = nfct_new();
          if (!ct) continue;
          if (nfct_nlmsg_parse(nlh, ct) >= 0)
            if (auto e = entryOf(ct)) got.emplace_back(*e, now);
          nfct_destroy(ct);
        }
        if (got.size() >= 4096) break;  // hand over in batches
      }
      if (got.empty() && overruns == 0) continue;
      {
        std::lock_guard<std::mutex> g(mu_);
        queue_.insert(queue_.end(), got.begin(), got.end());
        lost_ += overruns;
      }
      got.clear();
      const std::uint64_t one = 1;
      (void)!write(wake_, &one, sizeof one);
    }
  }

  int fd_, wake_ = -1, stop_ = -1;
  std::mutex mu_;
  std::vector<std::pair<CtEntry, std::int64_t>> queue_;
  std::uint64_t lost_ = 0;
  std::thread thread_;
};

}  // namespace

struct FabricIo {
  Fabric fabric;
  std::string label;
  MnlSocket events, log;
  std::unique_ptr<nfct_handle, NfctClose> dump, get;
  bool logCarriesCt = true;  // nflog attaches the conntrack entry (CONFIG_NETFILTER_NETLINK_GLUE_CT)
  std::string identity;      // the namespace the sockets were opened in (nft::netnsIdentity)
  std::optional<std::uint32_t> nextSeq;
  Translator translator;
  std::vector<CtEntry> dumped;  // the dump being read
  std::vector<CtEntry> gotten;  // a lookup's answer
  std::vector<std::pair<CtEntry, std::int64_t>> destroyed;
  std::unique_ptr<EventReader> reader;  // after `events`: stopped before the socket closes
  FabricIo(const model::Model& m, Fabric f)
      : fabric(std::move(f)), label(fabric.netns ? *fabric.netns : "the host"), translator(m, fabric.enis) {}
};

struct Sink {
  const model::FlowLog* log = nullptr;
  flowlog::Aggregator aggregator;
  std::vector<std::size_t> eniOfInstance;  // model instance -> aggregator ENI (npos: not covered)
};

struct Collector::State {
  const model::Model* m = nullptr;
  CollectorOptions options;
  RecordSink sink;
  std::vector<std::unique_ptr<FabricIo>> fabrics;
  std::vector<Sink> sinks;
  std::int64_t nextSample = 0;
  CollectorStats stats;
  std::vector<std::string> warnings;
  std::vector<flowlog::Observation> obs;
  std::vector<char> buf = std::vector<char>(1 << 16);

  void route(std::vector<flowlog::Observation>& os) {
    for (auto& s : sinks) {
      for (const auto& o : os) {
        if (o.eni >= s.eniOfInstance.size() || s.eniOfInstance[o.eni] == std::string::npos) continue;
        flowlog::Observation c = o;
        c.eni = s.eniOfInstance[o.eni];
        const std::int64_t lo = s.aggregator.intervalStart(), hi = s.aggregator.intervalEnd() - 1;
        c.first = std::clamp(c.first, lo, std::max(lo, hi));
        c.last = std::clamp(c.last, c.first, std::max(lo, hi));
        s.aggregator.observe(c);
      }
    }
    os.clear();
  }

  void loss(const FabricIo& f, std::uint64_t n) {
    for (auto& s : sinks)
      for (const auto& e : f.fabric.enis)
        if (e.instance < s.eniOfInstance.size() && s.eniOfInstance[e.instance] != std::string::npos)
          s.aggregator.reportLoss(s.eniOfInstance[e.instance], n);
  }

  void lossAt(std::size_t instance, std::uint64_t n) {
    for (auto& s : sinks)
      if (instance < s.eniOfInstance.size() && s.eniOfInstance[instance] != std::string::npos)
        s.aggregator.reportLoss(s.eniOfInstance[instance], n);
  }
  void uncounted(FabricIo& f) {
    for (auto i : f.translator.takeUncounted()) {
      ++stats.uncountedFlows;
      lossAt(i, 1);
    }
  }

  // Reads every datagram waiting on `fd`: each netlink message to `onMessage`
  // (with the time it was read), each overrun (ENOBUFS) to `onOverrun`.
  template <typename Message, typename Overrun>
  void drain(int fd, Overrun onOverrun, Message onMessage) {
    for (;;) {
      const ssize_t n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0 && errno == ENOBUFS) {
        onOverrun();
        continue;
      }
      if (n <= 0) return;  // EAGAIN, or a socket error the next dump makes up for
      const std::int64_t now = wallSeconds();
      auto* nlh = reinterpret_cast<nlmsghdr*>(buf.data());
      int left = static_cast<int>(n);
      for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) onMessage(nlh, now);
      route(obs);
    }
  }

  // Destroy events: the final counters of entries that ended.
  void readEvents(FabricIo& f) {
    std::uint64_t lost = 0;
    f.reader->take(f.destroyed, lost);
    if (lost > 0) {
      stats.lostCtEvents += lost;
      loss(f, lost);
    }
    for (const auto& [e, t] : f.destroyed) {
      ++stats.ctDestroyEvents;
      f.translator.counters(e, t, true, obs);
    }
    f.destroyed.clear();
    route(obs);
  }

  void readLog(FabricIo& f) {
    drain(
        mnl_socket_get_fd(f.log.get()),
        [&] {
          ++stats.lostLogMessages;
          loss(f, 1);
          f.nextSeq.reset();
        },
        [&](nlmsghdr* nlh, std::int64_t now) { logMessage(f, nlh, now); });
  }

  void logMessage(FabricIo& f, nlmsghdr* nlh, std::int64_t now) {
    if ((nlh->nlmsg_type & 0xff) != NFULNL_MSG_PACKET) return;
    nlattr* attrs[NFULA_MAX + 1] = {};
    if (nflog_nlmsg_parse(nlh, attrs) < 0) return;
    ++stats.logMessages;
    if (attrs[NFULA_SEQ]) {
      const std::uint32_t seq = ntohl(mnl_attr_get_u32(attrs[NFULA_SEQ]));
      if (f.nextSeq && seq != *f.nextSeq) {
        const std::uint32_t gap = seq - *f.nextSeq;
        stats.lostLogMessages += gap;
        loss(f, gap);
      }
      f.nextSeq = seq + 1;
    }
    LoggedPacket p;
    if (!attrs[NFULA_PREFIX] || !attrs[NFULA_PAYLOAD] || !parsePrefix(mnl_attr_get_str(attrs[NFULA_PREFIX]), p)) {
      ++stats.foreignLogMessages;
      return;
    }
    const auto* payload = static_cast<const std::uint8_t*>(mnl_attr_get_payload(attrs[NFULA_PAYLOAD]));
    auto h = parsePacket({payload, mnl_attr_get_payload_len(attrs[NFULA_PAYLOAD])});
    if (!h) return;
    p.packet = *h;
    p.time = now;
    if (attrs[NFULA_CT]) {
      const auto* g = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
      nf_conntrack* ct = nfct_new();
      if (ct && nfct_payload_parse(mnl_attr_get_payload(attrs[NFULA_CT]), mnl_attr_get_payload_len(attrs[NFULA_CT]),
                                   g->nfgen_family, ct) >= 0)
        p.ct = entryOf(ct);
      if (ct) nfct_destroy(ct);
    } else if (p.kind == LoggedPacket::Kind::kDrop) {
      p.ct = f.translator.entryOf(p.packet);
      if (!p.ct) p.ct = lookup(f, p.packet);
    }
    f.translator.logged(p, obs);
  }

  // The confirmed entry of a dropped packet, asked of the kernel by its
  // tuple: a first packet's entry is never in the table, so "none" means the
  // drop was the flow's first packet (or its entry has just expired).
  std::optional<CtEntry> lookup(FabricIo& f, const PacketHeader& h) {
    nf_conntrack* ct = nfct_new();
    if (!ct) return std::nullopt;
    if (h.src.isV4()) {
      std::uint32_t a, b;
      std::memcpy(&a, h.src.bytes().data(), 4), std::memcpy(&b, h.dst.bytes().data(), 4);
      nfct_set_attr_u8(ct, ATTR_L3PROTO, AF_INET);
      nfct_set_attr_u32(ct, ATTR_IPV4_SRC, a), nfct_set_attr_u32(ct, ATTR_IPV4_DST, b);
    } else {
      nfct_set_attr_u8(ct, ATTR_L3PROTO, AF_INET6);
      nfct_set_attr(ct, ATTR_IPV6_SRC, h.src.bytes().data()), nfct_set_attr(ct, ATTR_IPV6_DST, h.dst.bytes().data());
    }
    nfct_set_attr_u8(ct, ATTR_L4PROTO, h.protocol);
    if (h.protocol == IPPROTO_ICMP || h.protocol == IPPROTO_ICMPV6) {
      nfct_set_attr_u8(ct, ATTR_ICMP_TYPE, static_cast<std::uint8_t>(h.icmpType));
      nfct_set_attr_u8(ct, ATTR_ICMP_CODE, static_cast<std::uint8_t>(h.icmpCode));
      nfct_set_attr_u16(ct, ATTR_ICMP_ID, htons(h.icmpId));
    } else {
      nfct_set_attr_u16(ct, ATTR_PORT_SRC, htons(h.srcPort)), nfct_set_attr_u16(ct, ATTR_PORT_DST, htons(h.dstPort));
    }
    f.gotten.clear();
    const int r = nfct_query(f.get.get(), NFCT_Q_GET, ct);
    nfct_destroy(ct);
    if (r < 0 || f.gotten.empty()) return std::nullopt;
    return f.gotten.front();
  }

  Expected<void> dumpInto(FabricIo& f) {
    f.dumped.clear();
    std::uint32_t family = AF_UNSPEC;
    if (nfct_query(f.dump.get(), NFCT_Q_DUMP, &family) < 0)
      return kernelError("cannot read the conntrack table of " + f.label, errno);
    stats.ctDumpedEntries += f.dumped.size();
    return {};
  }

  Expected<void> sample(std::int64_t now) {
    for (auto& f : fabrics)
      if (auto r = dumpInto(*f); !r) return r;
    // A drop counted by conntrack before the dump may still sit in nflog's
    // batch: wait out one flush before the counters are applied.
    const std::int64_t until = monoMs() + static_cast<std::int64_t>(options.logFlushCentiseconds) * 10 + 10;
    while (monoMs() < until) {
      std::vector<pollfd> fds;
      for (auto& f : fabrics) fds.push_back({mnl_socket_get_fd(f->log.get()), POLLIN, 0});
      poll(fds.data(), fds.size(), static_cast<int>(std::max<std::int64_t>(1, until - monoMs())));
      for (auto& f : fabrics) readLog(*f);
    }
    for (auto& f : fabrics) {
      // The dump's counters first: an entry it showed and that was destroyed
      // since has its final counters in a queued destroy event, which must
      // come after (the other way round, the dump would count it anew).
      for (const auto& e : f->dumped) f->translator.counters(e, now, false, obs);
      route(obs);
      readEvents(*f);
      f->translator.endDump(now);
      route(obs);
      uncounted(*f);
    }
    ++stats.samples;
    return {};
  }

  void schedule(std::int64_t now) {
    std::int64_t next = (now / options.sampleSeconds + 1) * options.sampleSeconds;
    for (const auto& s : sinks) next = std::min(next, std::max(now + 1, s.aggregator.intervalEnd()));
    nextSample = next;
  }

  void close(std::int64_t now) {
    for (auto& s : sinks) {
      if (now < s.aggregator.intervalEnd()) continue;
      auto records = s.aggregator.advance(now);
      if (!records.empty() && sink) sink(*s.log, records);
    }
  }
};

Collector::Collector() : s_(std::make_unique<State>()) {}
Collector::~Collector() = default;

Expected<std::unique_ptr<Collector>> Collector::open(const model::Model& m, std::vector<Fabric> fabrics,
                                                     CollectorOptions options, RecordSink sink) {
  std::unique_ptr<Collector> c(new Collector());
  auto& s = *c->s_;
  s.m = &m;
  s.options = options;
  if (s.options.sampleSeconds <= 0) s.options.sampleSeconds = 5;
  s.sink = std::move(sink);
  const std::int64_t now = wallSeconds();
  for (const auto& log : m.flowLogs) {
    flowlog::AggregatorOptions ao;
    ao.interval = options.interval.value_or(log.maxAggregationInterval);
    ao.traffic = log.traffic;
    ao.maxFlows = options.maxFlowsPerInterval;
    ao.accountId = log.accountId;
    ao.region = m.region;
    std::vector<std::size_t> instances;
    auto enis = flowlog::enisOf(m, log, &instances);
    Sink sk{&log, flowlog::Aggregator(ao, std::move(enis), now), {}};
    sk.eniOfInstance.assign(m.instances.size(), std::string::npos);
    for (std::size_t i = 0; i < instances.size(); ++i) sk.eniOfInstance[instances[i]] = i;
    s.sinks.push_back(std::move(sk));
  }
  for (auto& fab : fabrics) {
    auto f = std::make_unique<FabricIo>(m, std::move(fab));
    auto r = nft::runInNetns(f->fabric.netns, [&]() -> Expected<void> {
      if (options.enableAccounting) {
        // Per namespace; an entry made before this has no counters (docs/flowlogs.md).
        // Where /proc/sys is read-only (vpcfwd.service: ProtectKernelTunables)
        // the setting must come from sysctl.d; an entry without counters is
        // then reported as loss, never as silence.
        for (const char* k : {"nf_conntrack_acct", "nf_conntrack_timestamp"}) {
          const std::string path = std::string("/proc/sys/net/netfilter/") + k;
          if (auto w = writeProc(path, "1"); !w) {
            std::ifstream in(path);
            std::string v;
            if (!(in >> v) || v != "1")
              c->s_->warnings.push_back(fmt::format("cannot turn on {} in {} ({}): set net.netfilter.{}=1", k, f->label,
                                                    w.error().message, k));
          }
        }
      }
      auto self = nft::netnsIdentity(std::nullopt);
      if (!self) return unexpected<Error>(self.error());
      f->identity = *self;
      f->dump.reset(nfct_open(CONNTRACK, 0));
      f->get.reset(nfct_open(CONNTRACK, 0));
      if (!f->dump || !f->get) return kernelError("cannot open the conntrack table of " + f->label, errno);
      f->events.reset(mnl_socket_open(NETLINK_NETFILTER));
      if (!f->events || mnl_socket_bind(f->events.get(), 0, MNL_SOCKET_AUTOPID) < 0)
        return kernelError("cannot open conntrack events in " + f->label, errno);
      int group = NFNLGRP_CONNTRACK_DESTROY;
      if (mnl_socket_setsockopt(f->events.get(), NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0)
        return kernelError("cannot subscribe to conntrack events in " + f->label, errno);
      f->log.reset(mnl_socket_open(NETLINK_NETFILTER));
      if (!f->log || mnl_socket_bind(f->log.get(), 0, MNL_SOCKET_AUTOPID) < 0)
        return kernelError("cannot open nflog in " + f->label, errno);
      for (mnl_socket* sock : {f->events.get(), f->log.get()}) {
        const int size = options.socketBuffer;
        if (setsockopt(mnl_socket_get_fd(sock), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
          return kernelError("cannot size a netlink socket in " + f->label, errno);
      }
      auto bind = nflogConfig(f->log.get(), options.group,
                              [](nlmsghdr* nlh) { nflog_attr_put_cfg_cmd(nlh, NFULNL_CFG_CMD_BIND); });
      if (!bind) {
        // The kernel answers EPERM for a group another socket has bound (nfnetlink_log).
        const bool busy = errno == EBUSY || errno == EPERM;
        return makeError(ErrorCode::kKernel, "cannot bind nflog group " + std::to_string(options.group) + " in " +
                                                 f->label + " (" + bind.error().message +
                                                 (busy ? "; another program holds it" : "") + ")");
      }
      std::uint16_t flags = NFULNL_CFG_F_SEQ | NFULNL_CFG_F_CONNTRACK;
      auto cfg = [&](nlmsghdr* nlh) {
        nflog_attr_put_cfg_mode(nlh, NFULNL_COPY_PACKET, 256);
        mnl_attr_put_u16(nlh, NFULA_CFG_FLAGS, htons(flags));
        mnl_attr_put_u32(nlh, NFULA_CFG_QTHRESH, htonl(std::max<std::uint32_t>(1, options.logQueueThreshold)));
        mnl_attr_put_u32(nlh, NFULA_CFG_TIMEOUT, htonl(options.logFlushCentiseconds));
      };
      auto configured = nflogConfig(f->log.get(), options.group, cfg);
      if (!configured && errno == EAGAIN) configured = nflogConfig(f->log.get(), options.group, cfg);  // module loaded
      if (!configured && errno == EOPNOTSUPP) {
        // A kernel without the conntrack glue: each drop's entry is looked up instead.
        flags = NFULNL_CFG_F_SEQ;
        f->logCarriesCt = false;
        configured = nflogConfig(f->log.get(), options.group, cfg);
      }
      if (!configured) return withContext(configured.error(), "configuring nflog in " + f->label);
      return {};
    });
    if (!r) return unexpected<Error>(r.error());
    for (int fd : {mnl_socket_get_fd(f->events.get()), mnl_socket_get_fd(f->log.get())})
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    f->reader = std::make_unique<EventReader>(mnl_socket_get_fd(f->events.get()));
    // Each handle's answers land in its own vector.
    auto collectInto = [](enum nf_conntrack_msg_type, struct nf_conntrack* ct, void* data) -> int {
      if (auto e = entryOf(ct)) static_cast<std::vector<CtEntry>*>(data)->push_back(*e);
      return NFCT_CB_CONTINUE;
    };
    nfct_callback_register(f->dump.get(), NFCT_T_ALL, collectInto, &f->dumped);
    nfct_callback_register(f->get.get(), NFCT_T_ALL, collectInto, &f->gotten);
    s.fabrics.push_back(std::move(f));
  }
  // The baseline: what existing entries counted before now is not ours.
  for (auto& f : s.fabrics) {
    if (auto r = s.dumpInto(*f); !r) return unexpected<Error>(r.error());
    for (const auto& e : f->dumped) f->translator.baseline(e);
    f->translator.endDump(now);
    s.uncounted(*f);
  }
  s.schedule(now);
  return c;
}

Expected<void> Collector::step(int timeoutMs) {
  auto& s = *s_;
  std::vector<pollfd> fds;
  for (auto& f : s.fabrics) {
    fds.push_back({f->reader->wakeFd(), POLLIN, 0});
    fds.push_back({mnl_socket_get_fd(f->log.get()), POLLIN, 0});
  }
  const std::int64_t untilSample = std::max<std::int64_t>(0, (s.nextSample - wallSeconds()) * 1000);
  const int wait = static_cast<int>(std::min<std::int64_t>(timeoutMs, untilSample));
  if (poll(fds.data(), fds.size(), wait) < 0 && errno != EINTR) return kernelError("poll", errno);
  for (auto& f : s.fabrics) s.readEvents(*f), s.readLog(*f);
  const std::int64_t now = wallSeconds();
  if (now >= s.nextSample) {
    // A named fabric's sockets stay in the namespace they were opened in,
    // which lives on, empty, when the lab is taken down (or down and up
    // again): its ENIs would show NODATA while the traffic flows elsewhere.
    for (auto& f : s.fabrics) {
      if (!f->fabric.netns) continue;
      auto id = nft::netnsIdentity(f->fabric.netns);
      if (!id || *id != f->identity) {
        s.loss(*f, 1);
        return makeError(ErrorCode::kKernel, "the namespace " + f->label +
                                                 " is gone or is no longer the one collection started in (the lab "
                                                 "was taken down?): collection stopped");
      }
    }
    if (auto r = s.sample(now); !r) return r;
    s.close(now);
    s.schedule(now);
  }
  return {};
}

Expected<void> Collector::flush() {
  auto& s = *s_;
  const std::int64_t now = wallSeconds();
  if (auto r = s.sample(now); !r) return r;
  s.close(now);
  for (auto& sk : s.sinks) {
    auto records = sk.aggregator.flush(now);
    if (!records.empty() && s.sink) s.sink(*sk.log, records);
  }
  s.schedule(now);
  return {};
}

Expected<void> Collector::run(const std::atomic<bool>& stop) {
  while (!stop.load()) {
    if (auto r = step(100); !r) return r;
  }
  return flush();
}

const std::vector<std::string>& Collector::warnings() const { return s_->warnings; }

std::vector<int> Collector::fds() const {
  std::vector<int> out;
  for (const auto& f : s_->fabrics) out.push_back(f->reader->wakeFd()), out.push_back(mnl_socket_get_fd(f->log.get()));
  return out;
}

std::vector<Fabric> labFabrics(const model::Model& m, const lab::LabPlan& plan) {
  std::vector<Fabric> out;
  for (const auto& ns : plan.namespaces) {
    if (ns.role != lab::NamespacePlan::Role::kRouter) continue;
    Fabric f;
    f.netns = ns.name;
    for (const auto& l : plan.links) {
      if (l.peerNs != ns.name || !l.what.starts_with("instance ")) continue;
      const std::string name = l.what.substr(9);
      for (std::size_t i = 0; i < m.instances.size(); ++i)
        if (m.instances[i].name == name) f.enis.push_back({i, l.peer});
    }
    out.push_back(std::move(f));
  }
  return out;
}

Fabric hostFabric(const model::Model& m, const std::string& host, std::optional<std::string> netns) {
  Fabric f;
  f.netns = std::move(netns);
  for (std::size_t i = 0; i < m.instances.size(); ++i) {
    const auto& p = m.instances[i].placement;
    if (p.kind == model::Placement::Kind::kHostInterface && p.host == host) f.enis.push_back({i, p.interface});
  }
  return f;
}

CollectorStats Collector::stats() const {
  CollectorStats st = s_->stats;
  for (const auto& sk : s_->sinks) {
    const auto& a = sk.aggregator.stats();
    st.aggregated.observations += a.observations;
    st.aggregated.records += a.records;
    st.aggregated.noData += a.noData;
    st.aggregated.skipData += a.skipData;
    st.aggregated.filtered += a.filtered;
    st.aggregated.unlogged += a.unlogged;
    st.aggregated.overflowed += a.overflowed;
    st.aggregated.reportedLost += a.reportedLost;
    st.aggregated.badEni += a.badEni;
  }
  for (const auto& f : s_->fabrics) {
    const auto& t = f->translator.stats();
    st.translator.entries += t.entries;
    st.translator.unaccounted += t.unaccounted;
    st.translator.forgotten += t.forgotten;
    st.translator.unknownEni += t.unknownEni;
  }
  return st;
}

}  // namespace vpcfw::collect
