// The flow-log benchmark's load: new UDP flows as fast as one socket can send
// them. Every datagram has a 4-tuple not used before in the run: the source
// address walks the given /24s (local addresses of the sending namespace:
// the lab's internet answers for whole documentation ranges) and the
// destination port a range, so each datagram is a new conntrack entry. One
// socket, sendmmsg batches, the source address of each message set with
// IP_PKTINFO.
//
//   bench_udp_flows DST_ADDR PORT_LO PORT_HI SECONDS START SRC_PREFIX24 [SRC_PREFIX24...]
//     e.g. bench_udp_flows 203.0.113.77 10000 19999 5 0 198.51.100 192.0.2
//     START: the index of the first tuple (runs that follow each other within the
//     conntrack timeout start where the previous one ended, so their flows are new too)
//     prints {"sent": N, "seconds": S, "rate": N/S, "sport": P, "tuples": T, "wrapped": W}
//     (W: 1 when every tuple was used and the walk began again: those are not new flows)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>
#include <sys/socket.h>

#include <cstdio>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kBatch = 64;

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: bench_udp_flows DST_ADDR PORT_LO PORT_HI SECONDS START SRC_PREFIX24...\n");
    return 2;
  }
  in_addr dst{};
  if (inet_pton(AF_INET, argv[1], &dst) != 1) return 2;
  const int lo = std::atoi(argv[2]), hi = std::atoi(argv[3]);
  const double seconds = std::atof(argv[4]);
  std::vector<in_addr> sources;
  const long long first = std::atoll(argv[5]);
  for (int i = 6; i < argc; ++i)
    for (int host = 1; host <= 254; ++host) {
      in_addr a{};
      if (inet_pton(AF_INET, (std::string(argv[i]) + "." + std::to_string(host)).c_str(), &a) != 1) return 2;
      sources.push_back(a);
    }
  if (lo < 1 || hi < lo || hi > 65535 || seconds <= 0 || sources.empty()) return 2;

  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  int one = 1;
  setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one);  // any source address, even without AnyIP
  int big = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
  sockaddr_in any{};
  any.sin_family = AF_INET;
  if (bind(fd, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0) {
    std::perror("bind");
    return 1;
  }
  socklen_t len = sizeof any;
  getsockname(fd, reinterpret_cast<sockaddr*>(&any), &len);

  char payload[16] = "vpcfw-bench";
  sockaddr_in to[kBatch]{};
  iovec iov[kBatch]{};
  alignas(cmsghdr) char control[kBatch][CMSG_SPACE(sizeof(in_pktinfo))]{};
  mmsghdr msgs[kBatch]{};
  for (int i = 0; i < kBatch; ++i) {
    to[i].sin_family = AF_INET;
    to[i].sin_addr = dst;
    iov[i] = {payload, sizeof payload};
    msgs[i].msg_hdr.msg_name = &to[i];
    msgs[i].msg_hdr.msg_namelen = sizeof to[i];
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_control = control[i];
    msgs[i].msg_hdr.msg_controllen = sizeof control[i];
    cmsghdr* c = CMSG_FIRSTHDR(&msgs[i].msg_hdr);
    c->cmsg_level = SOL_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
  }

  const long long tuples = static_cast<long long>(sources.size()) * (hi - lo + 1);
  long long next = first % tuples, sent = 0, errors = 0;
  bool wrapped = false;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (Clock::now() < end) {
    for (int i = 0; i < kBatch; ++i) {
      const long long k = (next + i) % tuples;
      to[i].sin_port = htons(static_cast<std::uint16_t>(lo + k / static_cast<long long>(sources.size())));
      in_pktinfo info{};
      info.ipi_spec_dst = sources[static_cast<std::size_t>(k % static_cast<long long>(sources.size()))];
      std::memcpy(CMSG_DATA(CMSG_FIRSTHDR(&msgs[i].msg_hdr)), &info, sizeof info);
    }
    const int n = sendmmsg(fd, msgs, kBatch, 0);
    if (n < 0) {
      if (errno != EAGAIN && errno != ENOBUFS && errno != EINTR) {
        std::perror("sendmmsg");
        return 1;
      }
      ++errors;
      continue;
    }
    next += n;
    sent += n;
    if (sent >= tuples) wrapped = true;
  }
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf(
      "{\"sent\": %lld, \"seconds\": %.3f, \"rate\": %.1f, \"sport\": %d, \"tuples\": %lld, \"wrapped\": %d, "
      "\"send_errors\": %lld}\n",
      sent, took, sent / took, ntohs(any.sin_port), tuples, wrapped ? 1 : 0, errors);
  close(fd);
  return 0;
}
