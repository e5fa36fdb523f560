// The control socket as a hostile peer sees it: malformed requests, slow and
// silent clients, too many clients, answers given after the client left,
// paths an attacker prepared, and peers of every permission class.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <unistd.h>
#include <doctest/doctest.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "vpcfw/service/control.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using vpcfw::service::Access;
using vpcfw::service::ControlOptions;
using vpcfw::service::ControlServer;
using vpcfw::service::EventLoop;
using vpcfw::service::Peer;
using vpcfw::service::Reply;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/vpcfw-control-test.XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

constexpr gid_t kReadGroup = 47113;  // any gid: tests never touch /etc/group

// A server on its own loop thread. Handlers are registered before start();
// everything else talks to it through the socket.
struct Daemon {
  TempDir dir;
  std::string path;
  EventLoop loop = std::move(*EventLoop::create());
  std::unique_ptr<ControlServer> server;
  int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::thread thread;
  std::mutex mu;
  std::vector<Reply> held;  // replies a handler keeps for later (loop thread only)

  explicit Daemon(std::function<void(ControlOptions&)> tweak = {}) {
    path = dir.path + "/vpcfwd.sock";
    ControlOptions o;
    o.path = path;
    o.readGroup = kReadGroup;
    if (tweak) tweak(o);
    auto s = ControlServer::create(loop, o);
    REQUIRE_MESSAGE(s.has_value(), (s ? "" : s.error().message));
    server = std::move(*s);
    REQUIRE(loop.add(wake, EPOLLIN, [this](std::uint32_t) { loop.stop(); }).has_value());
    server->handle("status", Access::kRead, [](const json&, const Peer& p, Reply r) {
      r.ok(json{{"uid", p.uid}, {"gid", p.gid}});
    });
    server->handle("reload", Access::kChange, [](const json&, const Peer&, Reply r) { r.ok(json{{"generation", 2}}); });
    server->handle("count", Access::kRead, [this](const json&, const Peer&, Reply r) {
      r.ok(json{{"connections", server->connections()}, {"held", held.size()}});
    });
    server->handle("hold", Access::kRead, [this](const json&, const Peer&, Reply r) { held.push_back(std::move(r)); });
    server->handle("release", Access::kRead, [this](const json&, const Peer&, Reply r) {
      std::size_t connected = 0;
      for (auto& h : held) {
        connected += h.connected();
        h.ok(json{{"late", true}});
      }
      held.clear();
      r.ok(json{{"connected", connected}});
    });
    server->handle("later", Access::kRead, [this](const json&, const Peer&, Reply r) {
      loop.after(200ms, [r] { r.ok(json{{"later", true}}); });
    });
    server->handle("forget", Access::kRead, [](const json&, const Peer&, Reply) {});
    server->handle("big", Access::kRead, [](const json&, const Peer&, Reply r) {
      r.ok(json{{"text", std::string(8 << 20, 'x')}});
    });
  }
  void start() {
    thread = std::thread([this] { (void)loop.run(); });
  }
  ~Daemon() {
    if (thread.joinable()) {
      std::uint64_t one = 1;
      (void)!::write(wake, &one, sizeof one);
      thread.join();
    }
    held.clear();
    server.reset();
    ::close(wake);
  }
  json ask(json req) {
    auto r = vpcfw::service::controlRequest(path, req, 5s);
    REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
    return *r;
  }
};

int connectRaw(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  return fd;
}

void sendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may close on an oversize request before reading it all
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Everything the server sends until it closes, or until `limit` passes
// (then `timedOut` is set).
std::string readAll(int fd, std::chrono::milliseconds limit, bool* timedOut = nullptr) {
  std::string out;
  const auto end = std::chrono::steady_clock::now() + limit;
  if (timedOut) *timedOut = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      if (timedOut) *timedOut = true;
      return out;
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char buf[65536];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

// Sends `bytes` (then half-closes when asked) and returns the one answer line, parsed.
json rawExchange(const std::string& path, std::string_view bytes, bool halfClose = false) {
  int fd = connectRaw(path);
  sendAll(fd, bytes);
  if (halfClose) ::shutdown(fd, SHUT_WR);
  std::string answer = readAll(fd, 5s);
  ::close(fd);
  REQUIRE_MESSAGE(!answer.empty(), "no answer");
  REQUIRE(answer.back() == '\n');
  REQUIRE(std::count(answer.begin(), answer.end(), '\n') == 1);
  auto j = json::parse(answer, nullptr, false);
  REQUIRE(j.is_object());
  return j;
}

std::string errorCode(const json& resp) {
  CHECK(resp["v"] == 1);
  CHECK(resp["ok"] == false);
  return resp["error"]["code"].get<std::string>();
}

}  // namespace

TEST_CASE("control: a request gets one answer line with the protocol's shape") {
  Daemon d;
  d.start();
  auto r = d.ask({{"v", 1}, {"op", "status"}});
  CHECK(r["ok"] == true);
  CHECK(r["result"]["uid"] == 0);
  auto raw = rawExchange(d.path, "{\"v\":1,\"op\":\"reload\"}\n");
  CHECK(raw == json{{"v", 1}, {"ok", true}, {"result", {{"generation", 2}}}});
}

TEST_CASE("control: every malformed request class is answered with an error and the server lives on") {
  Daemon d([](ControlOptions& o) { o.limits.maxRequestBytes = 1024; });
  d.start();
  struct Case {
    const char* what;
    std::string bytes;
    bool halfClose;
    const char* code;
  };
  const std::string depthBomb = std::string(100000, '[') + std::string(100000, ']');
  const std::vector<Case> cases{
      {"oversize without newline", std::string(200000, 'a'), false, "protocol"},
      {"oversize line with newline", "{\"v\":1,\"op\":\"status\",\"x\":\"" + std::string(2000, 'a') + "\"}\n", false,
       "protocol"},
      {"no newline then half-close", "{\"v\":1,\"op\":\"status\"}", true, "protocol"},
      {"empty line", "\n", false, "protocol"},
      {"invalid UTF-8 in a string", "{\"v\":1,\"op\":\"st\xff\xfe\"}\n", false, "protocol"},
      {"overlong UTF-8", "{\"v\":1,\"op\":\"\xc0\xaf\"}\n", false, "protocol"},
      {"JSON array", "[1,2,3]\n", false, "protocol"},
      {"JSON string", "\"status\"\n", false, "protocol"},
      {"JSON null", "null\n", false, "protocol"},
      {"trailing garbage", "{\"v\":1,\"op\":\"status\"} x\n", false, "protocol"},
      {"depth bomb (fits the limit only when short)",
       "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n", false, "protocol"},
      {"object depth bomb", "{\"v\":1,\"op\":\"status\",\"a\":" + std::string(40, '[') + std::string(40, ']') + "}\n",
       false, "protocol"},
      {"missing v", "{\"op\":\"status\"}\n", false, "version"},
      {"v 2", "{\"v\":2,\"op\":\"status\"}\n", false, "version"},
      {"v as a string", "{\"v\":\"1\",\"op\":\"status\"}\n", false, "version"},
      {"v as a float", "{\"v\":1.5,\"op\":\"status\"}\n", false, "version"},
      {"v huge", "{\"v\":100000000000000000000000,\"op\":\"status\"}\n", false, "version"},
      {"missing op", "{\"v\":1}\n", false, "unknown-op"},
      {"op not a string", "{\"v\":1,\"op\":[\"status\"]}\n", false, "unknown-op"},
      {"unknown op", "{\"v\":1,\"op\":\"shutdown\"}\n", false, "unknown-op"},
      {"op with a NUL", std::string("{\"v\":1,\"op\":\"status\\u0000\"}\n"), false, "unknown-op"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    auto r = rawExchange(d.path, c.bytes, c.halfClose);
    CHECK(errorCode(r) == c.code);
    CHECK(r["error"]["message"].is_string());
    // The positive baseline: the same server still answers a good request.
    CHECK(d.ask({{"v", 1}, {"op", "status"}})["ok"] == true);
  }
  // The long depth bomb exceeds the line limit; within the limit the depth check answers.
  Daemon big([](ControlOptions& o) { o.limits.maxRequestBytes = 1 << 20; });
  big.start();
  auto r = rawExchange(big.path, depthBomb + "\n");
  CHECK(errorCode(r) == "protocol");
  CHECK(r["error"]["message"].get<std::string>().find("nests deeper") != std::string::npos);
  CHECK(big.ask({{"v", 1}, {"op", "status"}})["ok"] == true);
}

TEST_CASE("control: an unknown op is answered with the list of known ops") {
  Daemon d;
  d.start();
  auto r = d.ask({{"v", 1}, {"op", "nope"}});
  CHECK(errorCode(r) == "unknown-op");
  const auto msg = r["error"]["message"].get<std::string>();
  CHECK(msg.find("'nope'") != std::string::npos);
  CHECK(msg.find("known ops: big, count, forget, hold, later, release, reload, status") != std::string::npos);
}

TEST_CASE("control: concurrent clients all get their answers") {
  Daemon d;
  d.start();
  std::atomic<int> good{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 32; ++i)
    clients.emplace_back([&] {
      for (int k = 0; k < 10; ++k) {
        auto r = vpcfw::service::controlRequest(d.path, json{{"v", 1}, {"op", "status"}}, 10s);
        if (r && (*r)["ok"] == true) ++good;
      }
    });
  for (auto& t : clients) t.join();
  CHECK(good == 320);
}

TEST_CASE("control: beyond the connection limit a client is told busy, and served once others leave") {
  Daemon d([](ControlOptions& o) { o.limits.maxConnections = 4; });
  d.start();
  std::vector<int> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(connectRaw(d.path));
  // Let the loop accept the four before the fifth arrives.
  std::this_thread::sleep_for(100ms);
  auto r = vpcfw::service::controlRequest(d.path, json{{"v", 1}, {"op", "status"}}, 5s);
  REQUIRE(r.has_value());
  CHECK(errorCode(*r) == "busy");
  for (int fd : idle) ::close(fd);
  std::this_thread::sleep_for(100ms);
  CHECK(d.ask({{"v", 1}, {"op", "status"}})["ok"] == true);
}

TEST_CASE("control: a slow-loris client is dropped at the request deadline") {
  Daemon d([](ControlOptions& o) { o.limits.requestTimeout = 300ms; });
  d.start();
  // Baseline: a client that sends its line in pieces, in time, is served.
  int fast = connectRaw(d.path);
  sendAll(fast, "{\"v\":1,");
  std::this_thread::sleep_for(50ms);
  sendAll(fast, "\"op\":\"status\"}\n");
  CHECK(readAll(fast, 5s).find("\"ok\":true") != std::string::npos);
  ::close(fast);

  int slow = connectRaw(d.path);
  const auto t0 = std::chrono::steady_clock::now();
  bool timedOut = true;
  std::string got;
  // One byte every 100 ms: never a full line; the deadline is from accept, not per byte.
  for (int i = 0; i < 30; ++i) {
    if (::send(slow, "{", 1, MSG_NOSIGNAL) != 1) break;
    pollfd p{slow, POLLIN, 0};
    if (::poll(&p, 1, 100) > 0) {
      got = readAll(slow, 1s, &timedOut);
      break;
    }
  }
  const auto waited = std::chrono::steady_clock::now() - t0;
  CHECK_FALSE(timedOut);
  CHECK(got.empty());  // dropped, not answered
  CHECK(waited >= 250ms);
  CHECK(waited < 2s);
  ::close(slow);
  CHECK(d.ask({{"v", 1}, {"op", "count"}})["result"]["connections"] == 1);
}

TEST_CASE("control: a client that never reads its answer is dropped without blocking others") {
  Daemon d([](ControlOptions& o) { o.limits.writeTimeout = 1500ms; });
  d.start();
  int lazy = connectRaw(d.path);
  int small = 4096;
  ::setsockopt(lazy, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sendAll(lazy, "{\"v\":1,\"op\":\"big\"}\n");
  std::this_thread::sleep_for(100ms);
  // While the 8 MiB answer is stuck, others are served at once.
  const auto t0 = std::chrono::steady_clock::now();
  auto c = d.ask({{"v", 1}, {"op", "count"}});
  CHECK(std::chrono::steady_clock::now() - t0 < 1000ms);  // well before the lazy client's deadline
  CHECK(c["result"]["connections"] == 2);                 // the lazy one and this one
  std::this_thread::sleep_for(1800ms);
  CHECK(d.ask({{"v", 1}, {"op", "count"}})["result"]["connections"] == 1);
  // What the lazy client can still read is a truncated answer, then EOF.
  std::string got = readAll(lazy, 2s);
  CHECK(got.size() < (8u << 20));
  ::close(lazy);
}

TEST_CASE("control: a reply given later reaches a waiting client, and is harmless after the client left") {
  Daemon d;
  d.start();
  // Answered 200 ms later from a timer.
  auto r = d.ask({{"v", 1}, {"op", "later"}});
  CHECK(r["result"]["later"] == true);

  // Two held requests: one client stays, one leaves.
  int stays = connectRaw(d.path);
  int leaves = connectRaw(d.path);
  sendAll(stays, "{\"v\":1,\"op\":\"hold\"}\n");
  sendAll(leaves, "{\"v\":1,\"op\":\"hold\"}\n");
  std::this_thread::sleep_for(100ms);
  ::close(leaves);
  std::this_thread::sleep_for(100ms);
  // The connection of the one that left is gone; its fd number may be re-used by new connections.
  std::vector<int> others;
  for (int i = 0; i < 3; ++i) others.push_back(connectRaw(d.path));
  std::this_thread::sleep_for(50ms);
  auto c = d.ask({{"v", 1}, {"op", "count"}});
  CHECK(c["result"]["held"] == 2);
  CHECK(c["result"]["connections"] == 5);  // stays, three idle, this one
  auto rel = d.ask({{"v", 1}, {"op", "release"}});
  CHECK(rel["result"]["connected"] == 1);
  CHECK(readAll(stays, 2s).find("\"late\":true") != std::string::npos);
  ::close(stays);
  // The idle connections got nothing meant for another client.
  for (int fd : others) {
    bool timedOut = false;
    CHECK(readAll(fd, 100ms, &timedOut).empty());
    CHECK(timedOut);
    ::close(fd);
  }
  // A handler that drops its reply gives the client an error, not a hang.
  CHECK(errorCode(d.ask({{"v", 1}, {"op", "forget"}})) == "internal");
}

TEST_CASE("control: a reply outliving the server does nothing") {
  TempDir dir;
  auto loop = std::move(*EventLoop::create());
  ControlOptions o;
  o.path = dir.path + "/s.sock";
  auto s = ControlServer::create(loop, o);
  REQUIRE(s.has_value());
  std::vector<Reply> kept;
  (*s)->handle("hold", Access::kRead, [&](const json&, const Peer&, Reply r) {
    kept.push_back(r);
    loop.stop();
  });
  int fd = connectRaw(o.path);
  sendAll(fd, "{\"v\":1,\"op\":\"hold\"}\n");
  REQUIRE(loop.run().has_value());
  REQUIRE(kept.size() == 1);
  CHECK(kept[0].connected());
  s->reset();
  CHECK_FALSE(kept[0].connected());
  kept[0].ok(json{{"too", "late"}});
  kept.clear();
  CHECK(readAll(fd, 1s).empty());  // closed with the server, never answered
  ::close(fd);
  CHECK_FALSE(fs::exists(o.path));  // the server removed its socket
}

TEST_CASE("control: the socket is created with its final permissions whatever the umask") {
  for (bool withGroup : {true, false}) {
    CAPTURE(withGroup);
    const mode_t old = ::umask(0);
    {
      Daemon d([&](ControlOptions& o) {
        if (!withGroup) o.readGroup.reset();
      });
      struct stat st {};
      REQUIRE(::lstat(d.path.c_str(), &st) == 0);
      CHECK(S_ISSOCK(st.st_mode));
      CHECK((st.st_mode & 07777) == (withGroup ? 0660 : 0600));
      CHECK(st.st_uid == 0);
      if (withGroup) CHECK(st.st_gid == kReadGroup);
    }
    ::umask(old);
  }
}

TEST_CASE("control: the server refuses to replace anything but its own stale socket") {
  auto loop = std::move(*EventLoop::create());
  auto create = [&](const std::string& path) {
    ControlOptions o;
    o.path = path;
    return ControlServer::create(loop, o);
  };
  TempDir dir;
  const std::string victim = dir.path + "/victim";
  { std::ofstream(victim) << "precious"; }
  auto unchanged = [&] {
    std::ifstream in(victim);
    std::string s;
    in >> s;
    return s == "precious";
  };

  // Positive baseline: a free path, then a stale socket of ours (no listener), work.
  {
    auto s = create(dir.path + "/ok.sock");
    CHECK(s.has_value());
  }
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::string p = dir.path + "/stale.sock";
    std::strcpy(a.sun_path, p.c_str());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    ::close(fd);  // bound, never listened: connect is refused
    auto s = create(p);
    CHECK(s.has_value());
  }

  struct Case {
    const char* what;
    std::function<std::string()> prepare;  // returns the path to give the server
  };
  const std::vector<Case> cases{
      {"symlink to a file",
       [&] {
         fs::create_symlink(victim, dir.path + "/link.sock");
         return dir.path + "/link.sock";
       }},
      {"dangling symlink",
       [&] {
         fs::create_symlink(dir.path + "/nowhere", dir.path + "/dangling.sock");
         return dir.path + "/dangling.sock";
       }},
      {"regular file",
       [&] {
         std::ofstream(dir.path + "/file.sock") << "x";
         return dir.path + "/file.sock";
       }},
      {"directory",
       [&] {
         fs::create_directory(dir.path + "/dir.sock");
         return dir.path + "/dir.sock";
       }},
      {"FIFO",
       [&] {
         ::mkfifo((dir.path + "/fifo.sock").c_str(), 0600);
         return dir.path + "/fifo.sock";
       }},
      {"world-writable parent (like /tmp)",
       [&] {
         fs::create_directory(dir.path + "/ww");
         ::chmod((dir.path + "/ww").c_str(), 01777);
         return dir.path + "/ww/s.sock";
       }},
      {"group-writable parent",
       [&] {
         fs::create_directory(dir.path + "/gw");
         ::chmod((dir.path + "/gw").c_str(), 0775);
         return dir.path + "/gw/s.sock";
       }},
      {"parent owned by another user",
       [&] {
         fs::create_directory(dir.path + "/other");
         REQUIRE(::chown((dir.path + "/other").c_str(), 4242, 4242) == 0);
         return dir.path + "/other/s.sock";
       }},
      {"parent is a file", [&] { return victim + "/s.sock"; }},
      {"path too long", [&] { return dir.path + "/" + std::string(200, 'a'); }},
      {"empty path", [&] { return std::string(); }},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    const std::string p = c.prepare();
    struct stat before {};
    const bool existed = ::lstat(p.c_str(), &before) == 0;
    auto s = create(p);
    CHECK_FALSE(s.has_value());
    if (!s) CHECK(!s.error().message.empty());
    struct stat after {};
    if (existed) {
      REQUIRE(::lstat(p.c_str(), &after) == 0);
      CHECK(after.st_ino == before.st_ino);
      CHECK((after.st_mode & S_IFMT) == (before.st_mode & S_IFMT));
    }
    CHECK(unchanged());
  }

  // A live socket (another daemon listening) is in use, not stale.
  auto first = create(dir.path + "/live.sock");
  REQUIRE(first.has_value());
  auto second = create(dir.path + "/live.sock");
  REQUIRE_FALSE(second.has_value());
  CHECK(second.error().message.find("in use") != std::string::npos);
  // ...and the first one still answers.
  int fd = connectRaw(dir.path + "/live.sock");
  ::close(fd);
}

namespace {

// A child process that becomes uid 4242 with the given primary and
// supplementary groups, sends `request` and exits with what it saw:
// 0 ok, 10 permission, 11 connect refused by the file mode, 12 anything else.
// Only raw system calls after fork (the parent has threads).
int asOtherUser(const std::string& path, gid_t gid, std::vector<gid_t> groups, const char* request) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (::setgroups(groups.size(), groups.data()) < 0 || ::setresgid(gid, gid, gid) < 0 ||
        ::setresuid(4242, 4242, 4242) < 0)
      ::_exit(13);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), std::min(path.size(), sizeof a.sun_path - 1));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) ::_exit(errno == EACCES ? 11 : 12);
    (void)!::write(fd, request, std::strlen(request));
    char buf[4096];
    std::size_t got = 0;
    for (ssize_t n; got < sizeof buf - 1 && (n = ::read(fd, buf + got, sizeof buf - 1 - got)) > 0;)
      got += static_cast<std::size_t>(n);
    buf[got] = 0;
    if (std::strstr(buf, "\"ok\":true")) ::_exit(0);
    if (std::strstr(buf, "\"code\":\"permission\"")) ::_exit(10);
    ::_exit(12);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

}  // namespace

TEST_CASE("control: permission classes: root, group member, supplementary member, stranger") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root to become other users");
    return;
  }
  Daemon d;
  ::chmod(d.dir.path.c_str(), 0755);  // others may reach the socket; the socket's own mode decides
  d.start();
  const char* status = "{\"v\":1,\"op\":\"status\"}\n";
  const char* reload = "{\"v\":1,\"op\":\"reload\"}\n";
  const char* unknown = "{\"v\":1,\"op\":\"nope\"}\n";

  // Root may do everything.
  CHECK(d.ask({{"v", 1}, {"op", "reload"}})["ok"] == true);
  // A member (primary group) reads, but may not reload.
  CHECK(asOtherUser(d.path, kReadGroup, {}, status) == 0);
  CHECK(asOtherUser(d.path, kReadGroup, {}, reload) == 10);
  // A member through a supplementary group (SO_PEERGROUPS) reads too.
  CHECK(asOtherUser(d.path, 5555, {5556, kReadGroup}, status) == 0);
  CHECK(asOtherUser(d.path, 5555, {5556, kReadGroup}, reload) == 10);
  // A stranger cannot even connect: the socket is 0660 root:group.
  CHECK(asOtherUser(d.path, 5555, {5556}, status) == 11);
  // With the file mode opened up, the server itself refuses the stranger,
  // for every op, known or not (it learns nothing of the ops).
  REQUIRE(::chmod(d.path.c_str(), 0666) == 0);
  CHECK(asOtherUser(d.path, 5555, {5556}, status) == 10);
  CHECK(asOtherUser(d.path, 5555, {5556}, reload) == 10);
  CHECK(asOtherUser(d.path, 5555, {5556}, unknown) == 10);
  CHECK(asOtherUser(d.path, kReadGroup, {}, status) == 0);  // baseline in the same setup
}

TEST_CASE("control: a server without a read group serves root only") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root to become other users");
    return;
  }
  Daemon d([](ControlOptions& o) { o.readGroup.reset(); });
  ::chmod(d.dir.path.c_str(), 0755);
  REQUIRE(::chmod(d.path.c_str(), 0666) == 0);
  d.start();
  CHECK(d.ask({{"v", 1}, {"op", "status"}})["ok"] == true);
  CHECK(asOtherUser(d.path, kReadGroup, {kReadGroup}, "{\"v\":1,\"op\":\"status\"}\n") == 10);
}

TEST_CASE("control: the client refuses answers outside the protocol and gives up at its deadline") {
  TempDir dir;
  const std::string path = dir.path + "/fake.sock";
  int lfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(lfd, 8) == 0);
  // A fake daemon answering each connection with the next canned bytes.
  const std::vector<std::string> answers{
      "{\"v\":1,\"ok\":true,\"result\":{}}\n",  // baseline: valid
      "hello\n",
      "[1]\n",
      "{\"v\":2,\"ok\":true,\"result\":{}}\n",
      "{\"v\":1,\"ok\":\"yes\",\"result\":{}}\n",
      "{\"v\":1,\"ok\":true}\n",
      "{\"v\":1,\"ok\":false,\"error\":\"bad\"}\n",
      "{\"v\":1,\"ok\":false,\"error\":{\"code\":1,\"message\":\"m\"}}\n",
      "{\"v\":1,\"ok\":true,\"result\":{}}",  // no newline, then close
      std::string(5000, 'x'),                 // longer than the client's bound
      "",                                     // never answers
  };
  std::thread fake([&] {
    for (const auto& ans : answers) {
      int c = ::accept(lfd, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      (void)!::recv(c, buf, sizeof buf, 0);
      if (ans.empty()) {
        std::this_thread::sleep_for(1500ms);
      } else {
        (void)!::send(c, ans.data(), ans.size(), MSG_NOSIGNAL);
      }
      ::close(c);
    }
  });
  for (std::size_t i = 0; i < answers.size(); ++i) {
    CAPTURE(i);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = vpcfw::service::controlRequest(path, json{{"v", 1}, {"op", "status"}}, 500ms, 1000);
    if (i == 0) {
      CHECK(r.has_value());
    } else {
      CHECK_FALSE(r.has_value());
    }
    CHECK(std::chrono::steady_clock::now() - t0 < 1200ms);
  }
  fake.join();
  ::close(lfd);
  // Nobody listening: an error naming the socket, at once.
  auto none = vpcfw::service::controlRequest(dir.path + "/none.sock", json{{"v", 1}, {"op", "status"}}, 500ms);
  REQUIRE_FALSE(none.has_value());
  CHECK(none.error().message.find("none.sock") != std::string::npos);
}

TEST_CASE("control: explain payloads are checked like the CLI's arguments") {
  using vpcfw::service::flowRequestFromJson;
  auto good = flowRequestFromJson(json{{"from", "web"}, {"to", "db"}, {"proto", "tcp"}, {"port", 5432}});
  REQUIRE(good.has_value());
  CHECK(good->from == "web");
  CHECK(good->port == 5432);
  CHECK(good->sourcePort == 50000);
  auto icmp = flowRequestFromJson(json{{"from", "a"}, {"to", "b"}, {"proto", "icmp"}, {"family", "6"}});
  REQUIRE(icmp.has_value());
  CHECK(icmp->family == vpcfw::net::Family::kIpv6);
  const std::vector<json> bad{
      json::array(),
      json{{"to", "b"}, {"port", 1}},
      json{{"from", 1}, {"to", "b"}, {"port", 1}},
      json{{"from", "a"}, {"to", "b"}},  // tcp needs a port
      json{{"from", "a"}, {"to", "b"}, {"port", 65536}},
      json{{"from", "a"}, {"to", "b"}, {"port", -2}},
      json{{"from", "a"}, {"to", "b"}, {"port", "22"}},
      json{{"from", "a"}, {"to", "b"}, {"port", 22.5}},
      json{{"from", "a"}, {"to", "b"}, {"port", 22}, {"sport", 70000}},
      json{{"from", "a"}, {"to", "b"}, {"proto", "all"}, {"port", 1}},
      json{{"from", "a"}, {"to", "b"}, {"proto", "bogus"}, {"port", 1}},
      json{{"from", "a"}, {"to", "b"}, {"proto", "icmp"}, {"icmp_type", 256}},
      json{{"from", "a"}, {"to", "b"}, {"proto", "icmp"}, {"family", "5"}},
      json{{"from", "a"}, {"to", "b"}, {"port", 22}, {"family", 4}},
  };
  for (const auto& b : bad) {
    CAPTURE(b.dump());
    CHECK_FALSE(flowRequestFromJson(b).has_value());
  }
}
