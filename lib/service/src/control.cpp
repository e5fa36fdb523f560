// The control socket's server and client (control.h).
#include "vpcfw/service/control.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "vpcfw/base/diagnostic.h"
#include "vpcfw/eval/report.h"

namespace vpcfw::service {

using nlohmann::json;

namespace {

std::string dumpLine(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n"; }

json errorResponse(const std::string& code, const std::string& message, json extra = nullptr) {
  json err{{"code", code}, {"message", message}};
  if (extra.is_object())
    for (auto& [k, v] : extra.items())
      if (k != "code" && k != "message") err[k] = v;
  return json{{"v", kProtocolVersion}, {"ok", false}, {"error", std::move(err)}};
}

// The deepest nesting of arrays and objects in `text`, stopping early past
// `limit`: the parser copes with depth, but nothing the protocol needs is
// deeper than a few levels and a deep value costs memory to build.
std::size_t nestingDepth(std::string_view text, std::size_t limit) {
  std::size_t depth = 0, deepest = 0;
  bool inString = false, escaped = false;
  for (char c : text) {
    if (inString) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        inString = false;
      continue;
    }
    if (c == '"') inString = true;
    if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    }
    if ((c == ']' || c == '}') && depth > 0) --depth;
  }
  return deepest;
}

Expected<sockaddr_un> unixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path || path.find('\0') != std::string::npos)
    return makeError(ErrorCode::kInvalidArgument, fmt::format("control socket path {} must be 1..{} bytes",
                                                              quoteForMessage(path), sizeof addr.sun_path - 1));
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

std::string fileType(mode_t m) {
  if (S_ISREG(m)) return "a regular file";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISLNK(m)) return "a symbolic link";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
  if (S_ISSOCK(m)) return "a socket";
  return "something unknown";
}

// The directory the socket goes into must be one only this user (or root)
// can change: anyone else who can write there could swap the socket for
// their own between our checks and our bind, or after.
Expected<void> checkParent(const std::string& path) {
  const auto slash = path.rfind('/');
  const std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  struct stat st {};
  if (::stat(parent.c_str(), &st) < 0)
    return systemError(ErrorCode::kIo, fmt::format("control socket directory {}", escapeForMessage(parent)), errno);
  if (!S_ISDIR(st.st_mode))
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("control socket directory {} is not a directory", escapeForMessage(parent)));
  if (st.st_uid != ::geteuid() && st.st_uid != 0)
    return makeError(ErrorCode::kNotOwned, fmt::format("control socket directory {} is owned by uid {}, not by us",
                                                       escapeForMessage(parent), st.st_uid));
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return makeError(ErrorCode::kNotOwned,
                     fmt::format("control socket directory {} is writable by others (mode {:04o}); "
                                 "use a directory only root can write, such as /run/vpcfw",
                                 escapeForMessage(parent), st.st_mode & 07777));
  return {};
}

// Removes a socket left by an earlier run that no process listens on any
// more; anything else at the path is an error, never replaced.
Expected<void> clearStale(const std::string& path, const sockaddr_un& addr) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) < 0) {
    if (errno == ENOENT) return {};
    return systemError(ErrorCode::kIo, fmt::format("control socket {}", escapeForMessage(path)), errno);
  }
  if (!S_ISSOCK(st.st_mode))
    return makeError(ErrorCode::kInvalidArgument, fmt::format("control socket path {} is {}; not replacing it",
                                                              escapeForMessage(path), fileType(st.st_mode)));
  if (st.st_uid != ::geteuid())
    return makeError(ErrorCode::kNotOwned, fmt::format("control socket {} belongs to uid {}; not replacing it",
                                                       escapeForMessage(path), st.st_uid));
  int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (probe < 0) return systemError(ErrorCode::kIo, "socket", errno);
  int rc = ::connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  int e = errno;
  ::close(probe);
  if (rc == 0 || e == EAGAIN)
    return makeError(ErrorCode::kBusy,
                     fmt::format("control socket {} is in use: is another vpcfwd running?", escapeForMessage(path)));
  if (e != ECONNREFUSED)
    return systemError(ErrorCode::kIo, fmt::format("control socket {}: probing it", escapeForMessage(path)), e);
  if (::unlink(path.c_str()) < 0 && errno != ENOENT)
    return systemError(ErrorCode::kIo, fmt::format("removing stale control socket {}", escapeForMessage(path)), errno);
  return {};
}

Peer peerOf(int fd) {
  Peer p;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && len == sizeof cred) {
    p.pid = cred.pid;
    p.uid = cred.uid;
    p.gid = cred.gid;
  }
#ifdef SO_PEERGROUPS
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 3; ++attempt) {
    socklen_t glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) == 0) {
      groups.resize(glen / sizeof(gid_t));
      p.groups = std::move(groups);
      break;
    }
    if (errno != ERANGE) break;  // an old kernel: the primary gid is all we know
    groups.resize(glen / sizeof(gid_t) + 1);
  }
#endif
  return p;
}

}  // namespace

std::optional<gid_t> lookupGroup(const std::string& name) {
  std::vector<char> buf(16384);
  group g{};
  group* found = nullptr;
  if (::getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found) != 0 || found == nullptr) return std::nullopt;
  return found->gr_gid;
}

// ---- the server ----

namespace {

struct Connection {
  enum class Phase { kReading, kWaiting, kWriting };
  int fd = -1;
  Peer peer;
  Phase phase = Phase::kReading;
  std::string in;
  std::string out;
  std::size_t sent = 0;
  EventLoop::TimerId timer = 0;
};

}  // namespace

struct ControlServer::Impl {
  Impl(EventLoop& l, const ControlOptions& o, int fd) : loop(l), options(o), listenFd(fd) {}
  ~Impl();

  EventLoop& loop;
  ControlOptions options;
  int listenFd;
  dev_t dev = 0;
  ino_t ino = 0;
  EventLoop::TimerId resumeTimer = 0;  // listening paused for want of descriptors
  std::weak_ptr<Impl> self;
  std::map<std::string, std::pair<Access, Handler>> ops;
  std::map<int, std::shared_ptr<Connection>> conns;

  void onListen();
  void onEvent(const std::shared_ptr<Connection>& c, std::uint32_t events);
  void readRequest(const std::shared_ptr<Connection>& c);
  void dispatch(const std::shared_ptr<Connection>& c, std::string_view line);
  void answer(const std::shared_ptr<Connection>& c, const json& response);
  void flush(const std::shared_ptr<Connection>& c);
  void drop(const std::shared_ptr<Connection>& c);
};

struct Reply::State {
  std::weak_ptr<ControlServer::Impl> server;
  std::weak_ptr<Connection> conn;
  bool answered = false;

  void send(const json& response) {
    if (answered) return;
    answered = true;
    auto s = server.lock();
    auto c = conn.lock();
    // The fd number may already belong to a newer connection: only the very
    // connection this reply was made for is answered.
    if (!s || !c || c->fd < 0 || c->phase != Connection::Phase::kWaiting) return;
    s->answer(c, response);
  }
  ~State() { send(errorResponse(kErrInternal, "the daemon dropped the request without answering")); }
};

void Reply::ok(json result) const {
  state_->send(json{{"v", kProtocolVersion}, {"ok", true}, {"result", std::move(result)}});
}

void Reply::error(const std::string& code, const std::string& message, json extra) const {
  state_->send(errorResponse(code, message, std::move(extra)));
}

bool Reply::connected() const {
  if (state_->answered) return false;
  auto s = state_->server.lock();
  auto c = state_->conn.lock();
  return s && c && c->fd >= 0;
}

ControlServer::Impl::~Impl() {
  for (auto& [fd, c] : conns) {
    loop.remove(fd);
    if (c->timer) loop.cancel(c->timer);
    ::close(fd);
    c->fd = -1;
  }
  conns.clear();
  if (resumeTimer) loop.cancel(resumeTimer);
  loop.remove(listenFd);
  ::close(listenFd);
  // Only our own socket is removed: not one a later daemon bound there.
  struct stat st {};
  if (::lstat(options.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev && st.st_ino == ino)
    ::unlink(options.path.c_str());
}

void ControlServer::Impl::drop(const std::shared_ptr<Connection>& c) {
  if (c->fd < 0) return;
  loop.remove(c->fd);
  if (c->timer) loop.cancel(c->timer);
  c->timer = 0;
  conns.erase(c->fd);
  ::close(c->fd);
  c->fd = -1;
}

void ControlServer::Impl::onListen() {
  for (;;) {
    int fd = ::accept4(listenFd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: the pending connection would wake the loop
        // without end. Stop listening for a moment instead.
        (void)loop.modify(listenFd, 0);
        resumeTimer = loop.after(std::chrono::milliseconds(100), [this] {
          resumeTimer = 0;
          (void)loop.modify(listenFd, EPOLLIN);
        });
      }
      return;  // EAGAIN: nothing more to accept
    }
    if (conns.size() >= options.limits.maxConnections) {
      const std::string busy = dumpLine(errorResponse(kErrBusy, "too many control connections; try again"));
      (void)!::send(fd, busy.data(), busy.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      ::close(fd);
      continue;
    }
    auto c = std::make_shared<Connection>();
    c->fd = fd;
    c->peer = peerOf(fd);
    std::weak_ptr<Connection> weak = c;
    if (!loop.add(fd, EPOLLIN | EPOLLRDHUP, [this, weak](std::uint32_t ev) {
          if (auto cc = weak.lock()) onEvent(cc, ev);
        })) {
      ::close(fd);
      continue;
    }
    conns[fd] = c;
    c->timer = loop.after(options.limits.requestTimeout, [this, weak] {
      if (auto cc = weak.lock()) {
        cc->timer = 0;
        drop(cc);  // slow-loris: no complete request in time
      }
    });
  }
}

void ControlServer::Impl::onEvent(const std::shared_ptr<Connection>& c, std::uint32_t events) {
  switch (c->phase) {
    case Connection::Phase::kReading:
      readRequest(c);
      return;
    case Connection::Phase::kWaiting:
      // Only a hang-up is watched while the handler works: the client gave up.
      if (events & (EPOLLHUP | EPOLLERR)) drop(c);
      return;
    case Connection::Phase::kWriting:
      if (events & EPOLLERR)
        drop(c);
      else
        flush(c);
      return;
  }
}

void ControlServer::Impl::readRequest(const std::shared_ptr<Connection>& c) {
  const std::size_t max = options.limits.maxRequestBytes;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(c->fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      drop(c);
      return;
    }
    if (n == 0) {
      if (c->in.empty()) {
        drop(c);  // connected and left: nothing to answer
        return;
      }
      c->phase = Connection::Phase::kWaiting;
      answer(c, errorResponse(kErrProtocol, "the request ended without a newline"));
      return;
    }
    const std::size_t before = c->in.size();
    c->in.append(buf, static_cast<std::size_t>(n));
    const auto nl = c->in.find('\n', before);
    if (nl != std::string::npos && nl <= max) {
      c->phase = Connection::Phase::kWaiting;
      (void)loop.modify(c->fd, 0);
      std::string line = c->in.substr(0, nl);
      c->in.clear();
      dispatch(c, line);
      return;
    }
    if (c->in.size() > max) {
      c->phase = Connection::Phase::kWaiting;
      answer(c, errorResponse(kErrProtocol, fmt::format("the request is longer than {} bytes", max)));
      return;
    }
  }
}

void ControlServer::Impl::dispatch(const std::shared_ptr<Connection>& c, std::string_view line) {
  if (c->timer) loop.cancel(c->timer);  // the handler may take its time; the client may still hang up
  c->timer = 0;
  if (nestingDepth(line, options.limits.maxDepth) > options.limits.maxDepth)
    return answer(c, errorResponse(kErrProtocol,
                                   fmt::format("the request nests deeper than {} levels", options.limits.maxDepth)));
  json req = json::parse(line.begin(), line.end(), nullptr, false);
  if (req.is_discarded()) return answer(c, errorResponse(kErrProtocol, "the request is not valid JSON (UTF-8)"));
  if (!req.is_object()) return answer(c, errorResponse(kErrProtocol, "the request is not a JSON object"));
  auto v = req.find("v");
  if (v == req.end() || !v->is_number_integer() || v->get<long long>() != kProtocolVersion)
    return answer(c, errorResponse(kErrVersion, fmt::format("the request needs \"v\":{}", kProtocolVersion)));

  const bool root = c->peer.uid == 0;
  const auto& g = options.readGroup;
  const bool member =
      g && (c->peer.gid == *g || std::find(c->peer.groups.begin(), c->peer.groups.end(), *g) != c->peer.groups.end());
  // A stranger learns nothing, not even which ops exist.
  if (!root && !member)
    return answer(c,
                  errorResponse(kErrPermission,
                                fmt::format("uid {} is neither root nor a member of the control group", c->peer.uid)));

  auto op = req.find("op");
  auto it = op != req.end() && op->is_string() ? ops.find(op->get<std::string>()) : ops.end();
  if (it == ops.end()) {
    std::string known;
    for (const auto& [name, h] : ops) known += (known.empty() ? "" : ", ") + name;
    return answer(c,
                  errorResponse(kErrUnknownOp,
                                fmt::format("{}; known ops: {}",
                                            op == req.end() || !op->is_string()
                                                ? std::string("the request needs a string \"op\"")
                                                : fmt::format("unknown op {}", quoteForMessage(op->get<std::string>())),
                                            known)));
  }
  if (it->second.first == Access::kChange && !root)
    return answer(c, errorResponse(kErrPermission, fmt::format("op '{}' changes the daemon: root only", it->first)));

  auto state = std::make_shared<Reply::State>();
  state->server = self;
  state->conn = c;
  Handler handler = it->second.second;  // a handler may register or replace ops
  handler(req, c->peer, Reply(std::move(state)));
}

void ControlServer::Impl::answer(const std::shared_ptr<Connection>& c, const json& response) {
  if (c->fd < 0) return;
  c->phase = Connection::Phase::kWriting;
  (void)loop.modify(c->fd, 0);  // flush asks for EPOLLOUT when the socket is full
  c->out = dumpLine(response);
  if (c->out.size() > options.limits.maxResponseBytes)
    c->out = dumpLine(errorResponse(
        kErrInternal, fmt::format("the answer is longer than {} bytes", options.limits.maxResponseBytes)));
  c->sent = 0;
  if (c->timer) loop.cancel(c->timer);
  std::weak_ptr<Connection> weak = c;
  c->timer = loop.after(options.limits.writeTimeout, [this, weak] {
    if (auto cc = weak.lock()) {
      cc->timer = 0;
      drop(cc);  // a client that does not read its answer
    }
  });
  flush(c);
}

void ControlServer::Impl::flush(const std::shared_ptr<Connection>& c) {
  while (c->sent < c->out.size()) {
    ssize_t n = ::send(c->fd, c->out.data() + c->sent, c->out.size() - c->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        (void)loop.modify(c->fd, EPOLLOUT);
        return;
      }
      drop(c);  // EPIPE and the like: the client is gone
      return;
    }
    c->sent += static_cast<std::size_t>(n);
  }
  drop(c);
}

// ---- ControlServer ----

Expected<std::unique_ptr<ControlServer>> ControlServer::create(EventLoop& loop, ControlOptions options) {
  auto addr = unixAddress(options.path);
  if (!addr) return unexpected(addr.error());
  if (auto r = checkParent(options.path); !r) return unexpected(r.error());
  if (auto r = clearStale(options.path, *addr); !r) return unexpected(r.error());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return systemError(ErrorCode::kIo, "socket(AF_UNIX)", errno);
  const std::string where = escapeForMessage(options.path);
  auto fail = [&](const std::string& what, int e) {
    ::close(fd);
    return systemError(ErrorCode::kIo, fmt::format("control socket {}: {}", where, what), e);
  };
  const mode_t old = ::umask(0177);
  const int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  const int bindErrno = errno;
  ::umask(old);
  if (rc < 0) return fail("bind", bindErrno);
  struct stat st {};
  if (::lstat(options.path.c_str(), &st) < 0 || !S_ISSOCK(st.st_mode)) return fail("not a socket after bind", EIO);
  auto unbind = [&](const std::string& what, int e) {
    ::unlink(options.path.c_str());
    return fail(what, e);
  };
  if (options.readGroup) {
    // Under the unit (Group=vpcfw) the socket is made with the group already,
    // and chown is filtered: change it only when it differs.
    struct stat made {};
    if (::lstat(options.path.c_str(), &made) < 0) return unbind("stat", errno);
    if (made.st_gid != *options.readGroup &&
        ::lchown(options.path.c_str(), static_cast<uid_t>(-1), *options.readGroup) < 0)
      return unbind("chown", errno);
    if (::fchmodat(AT_FDCWD, options.path.c_str(), 0660, 0) < 0) return unbind("chmod", errno);
  }
  if (::listen(fd, SOMAXCONN) < 0) return unbind("listen", errno);
  std::unique_ptr<ControlServer> server(new ControlServer(loop, std::move(options), fd));
  server->impl_->dev = st.st_dev;
  server->impl_->ino = st.st_ino;
  Impl* impl = server->impl_.get();
  if (auto r = loop.add(fd, EPOLLIN, [impl](std::uint32_t) { impl->onListen(); }); !r) return unexpected(r.error());
  return server;
}

ControlServer::ControlServer(EventLoop& loop, ControlOptions options, int fd)
    : loop_(loop), options_(std::move(options)), impl_(std::make_shared<Impl>(loop, options_, fd)) {
  impl_->self = impl_;
}

ControlServer::~ControlServer() = default;

void ControlServer::handle(const std::string& op, Access access, Handler handler) {
  impl_->ops[op] = {access, std::move(handler)};
}

std::size_t ControlServer::connections() const { return impl_->conns.size(); }

// ---- the client ----

Expected<json> controlRequest(const std::string& socketPath, const json& request, std::chrono::milliseconds timeout,
                              std::size_t maxBytes) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  auto addr = unixAddress(socketPath);
  if (!addr) return unexpected(addr.error());
  const std::string where = escapeForMessage(socketPath);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return systemError(ErrorCode::kIo, "socket(AF_UNIX)", errno);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) < 0) {
    // A full backlog answers EAGAIN at once on AF_UNIX: the daemon is stuck or swamped.
    return systemError(errno == ENOENT || errno == ECONNREFUSED ? ErrorCode::kNotFound : ErrorCode::kIo,
                       fmt::format("connecting to the daemon at {}", where), errno);
  }
  // Waits for `events` until the deadline; false when it passed.
  auto wait = [&](short events) -> Expected<void> {
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) break;
      pollfd p{fd, events, 0};
      int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1 << 30)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return systemError(ErrorCode::kIo, "poll", errno);
      if (n > 0) return {};
    }
    return makeError(ErrorCode::kBusy,
                     fmt::format("the daemon at {} did not answer within {} ms", where, timeout.count()));
  };
  std::string line = request.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  for (std::size_t sent = 0; sent < line.size();) {
    ssize_t n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      // A server may answer (busy, too long) and close before reading all
      // of the request: its answer is still there to read.
      if (errno == EPIPE || errno == ECONNRESET) break;
      if (errno != EAGAIN) return systemError(ErrorCode::kIo, fmt::format("sending to the daemon at {}", where), errno);
      if (auto w = wait(POLLOUT); !w) return unexpected(w.error());
      continue;
    }
    sent += static_cast<std::size_t>(n);
  }
  std::string in;
  std::size_t nl = std::string::npos;
  char buf[65536];
  while (nl == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN)
        return systemError(ErrorCode::kIo, fmt::format("reading from the daemon at {}", where), errno);
      if (auto w = wait(POLLIN); !w) return unexpected(w.error());
      continue;
    }
    if (n == 0)
      return makeError(ErrorCode::kIo, fmt::format("the daemon at {} closed the connection without an answer", where));
    const std::size_t before = in.size();
    in.append(buf, static_cast<std::size_t>(n));
    nl = in.find('\n', before);
    if ((nl == std::string::npos ? in.size() : nl) > maxBytes)
      return makeError(ErrorCode::kIo, fmt::format("the daemon's answer is longer than {} bytes", maxBytes));
  }
  json resp = json::parse(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(nl), nullptr, false);
  auto bad = [&](const char* why) {
    return makeError(ErrorCode::kIo,
                     fmt::format("the daemon at {} answered something else than the protocol: {}", where, why));
  };
  if (resp.is_discarded() || !resp.is_object()) return bad("not a JSON object");
  auto v = resp.find("v");
  if (v == resp.end() || !v->is_number_integer() || v->get<long long>() != kProtocolVersion) return bad("wrong \"v\"");
  auto ok = resp.find("ok");
  if (ok == resp.end() || !ok->is_boolean()) return bad("no boolean \"ok\"");
  if (ok->get<bool>()) {
    if (!resp.contains("result")) return bad("no \"result\"");
  } else {
    auto e = resp.find("error");
    if (e == resp.end() || !e->is_object() || !e->contains("code") || !(*e)["code"].is_string() ||
        !e->contains("message") || !(*e)["message"].is_string())
      return bad("an error without a string code and message");
  }
  return resp;
}

// ---- the explain op's payload ----

Expected<eval::FlowRequest> flowRequestFromJson(const json& flow) {
  auto invalid = [](const std::string& m) { return makeError(ErrorCode::kInvalidArgument, m); };
  if (!flow.is_object()) return invalid("explain needs a \"flow\" object");
  eval::FlowRequest req;
  auto str = [&](const char* key, std::string& into, bool required) -> bool {
    auto it = flow.find(key);
    if (it == flow.end()) return !required;
    if (!it->is_string()) return false;
    into = it->get<std::string>();
    return true;
  };
  // An integer within [lo, hi]; absent keeps `into`.
  auto num = [&](const char* key, int& into, int lo, int hi) -> bool {
    auto it = flow.find(key);
    if (it == flow.end()) return true;
    if (!it->is_number_integer()) return false;
    const long long v = it->get<long long>();
    if (v < lo || v > hi) return false;
    into = static_cast<int>(v);
    return true;
  };
  if (!str("from", req.from, true)) return invalid("--from: a string is required");
  if (!str("to", req.to, true)) return invalid("--to: a string is required");
  std::string proto = "tcp", family;
  if (!str("proto", proto, false)) return invalid("--proto: must be a string");
  int port = -1, sport = req.sourcePort, icmpType = -1, icmpCode = 0;
  if (!num("port", port, 0, 65535)) return invalid("--port: must be 0..65535");
  if (!num("sport", sport, 0, 65535)) return invalid("--sport: must be 0..65535");
  if (!num("icmp_type", icmpType, -1, 255)) return invalid("--icmp-type: must be 0..255");
  if (!num("icmp_code", icmpCode, 0, 255)) return invalid("--icmp-code: must be 0..255");
  if (!str("family", family, false) || (!family.empty() && family != "4" && family != "6"))
    return invalid("--family: must be \"4\" or \"6\"");
  auto p = net::Protocol::parse(proto);
  if (!p || p->isAll())
    return invalid(std::string("--proto: ") + (p ? "a flow has one protocol, not 'all'" : p.error()));
  req.protocol = *p;
  if (req.protocol.hasPorts()) {
    if (port < 0) return invalid(fmt::format("--port 0..65535 is required for {}", req.protocol.toString()));
    req.port = static_cast<std::uint16_t>(port);
  }
  req.sourcePort = static_cast<std::uint16_t>(sport);
  req.icmpType = icmpType;
  req.icmpCode = icmpCode;
  if (family == "4") req.family = net::Family::kIpv4;
  if (family == "6") req.family = net::Family::kIpv6;
  if (auto it = flow.find("all_steps"); it != flow.end()) {
    if (!it->is_boolean()) return invalid("all_steps: must be true or false");
    req.allSteps = it->get<bool>();
  }
  return req;
}

json explainResult(const eval::Verdict& v) {
  return json{{"verdict", eval::verdictToJson(v)}, {"text", eval::formatVerdictText(v)}, {"reachable", v.reachable()}};
}

}  // namespace vpcfw::service
