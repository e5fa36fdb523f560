// The benchmarks' new-flow load: TCP connect + close as fast as a few
// parallel non-blocking sockets allow, against a server that accepts and
// closes. Both close with a reset (SO_LINGER 0), so no TIME_WAIT limits the
// rate and every connection is a new flow for conntrack and the filter.
//
//   bench_flows server PORT
//   bench_flows client ADDRESS PORT SECONDS [PARALLEL]
//     prints {"connections": N, "failed": F, "seconds": S, "rate": N/S}
#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/epoll.h>
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

void lingerZero(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

int server(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 4096) != 0) {
    std::perror("bench_flows server");
    return 1;
  }
  std::puts("ready");
  std::fflush(stdout);
  for (;;) {
    int c = accept(fd, nullptr, nullptr);
    if (c < 0) continue;
    lingerZero(c);
    close(c);
  }
}

struct Conn {
  int fd = -1;
  Clock::time_point started;
};

int client(const char* address, int port, double seconds, int parallel) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<std::uint16_t>(port));
  if (inet_pton(AF_INET, address, &to.sin_addr) != 1) {
    std::fprintf(stderr, "bench_flows: bad address %s\n", address);
    return 2;
  }
  int ep = epoll_create1(0);
  std::vector<Conn> conns(static_cast<std::size_t>(parallel));
  long done = 0, failed = 0;
  auto open = [&](std::size_t i) {
    Conn& c = conns[i];
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    lingerZero(c.fd);
    c.started = Clock::now();
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 && errno != EINPROGRESS) {
      ++failed;
      close(c.fd);
      c.fd = -1;
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
  };
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (std::size_t i = 0; i < conns.size(); ++i) open(i);
  std::vector<epoll_event> events(conns.size());
  while (Clock::now() < end) {
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 10);
    for (int k = 0; k < n; ++k) {
      auto i = static_cast<std::size_t>(events[static_cast<std::size_t>(k)].data.u64);
      Conn& c = conns[i];
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0 || err == ECONNRESET)
        ++done;
      else
        ++failed;
      close(c.fd);  // closing removes it from epoll
      c.fd = -1;
      open(i);
    }
    // A connection the filter dropped never completes: give up after 1 s.
    const auto now = Clock::now();
    for (std::size_t i = 0; i < conns.size(); ++i)
      if (conns[i].fd >= 0 && now - conns[i].started > std::chrono::seconds(1)) {
        ++failed;
        close(conns[i].fd);
        conns[i].fd = -1;
        open(i);
      }
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("{\"connections\": %ld, \"failed\": %ld, \"seconds\": %.3f, \"rate\": %.1f}\n", done, failed, elapsed,
              static_cast<double>(done) / elapsed);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "server" && argc == 3) return server(std::atoi(argv[2]));
  if (mode == "client" && (argc == 5 || argc == 6))
    return client(argv[2], std::atoi(argv[3]), std::atof(argv[4]), argc == 6 ? std::atoi(argv[5]) : 16);
  std::fprintf(stderr, "usage: bench_flows server PORT | client ADDRESS PORT SECONDS [PARALLEL]\n");
  return 2;
}
