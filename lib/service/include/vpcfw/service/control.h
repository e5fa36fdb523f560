// The daemon's control socket: a small versioned JSON protocol over AF_UNIX
// (daemon.md). The client sends one JSON object on one line,
//   {"v":1,"op":"status", ...}
// and the server answers one line and closes:
//   {"v":1,"ok":true,"result":{...}}
//   {"v":1,"ok":false,"error":{"code":"...","message":"..."}}
// Every peer is untrusted input: requests are bounded in size, depth and time,
// connections in number, and the peer's credentials (SO_PEERCRED and its
// supplementary groups) decide which ops it may run. The server never blocks
// the event loop it runs on.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/eval/evaluator.h"
#include "vpcfw/service/loop.h"

namespace vpcfw::service {

inline constexpr int kProtocolVersion = 1;
inline constexpr const char* kDefaultControlSocket = "/run/vpcfw/vpcfwd.sock";
inline constexpr const char* kControlGroup = "vpcfw";

// Error codes of the protocol (the "code" of an error response). Handlers may
// answer others ("rejected" for a reload whose config is invalid, "invalid"
// for bad op arguments).
inline constexpr const char* kErrProtocol = "protocol";      // not one JSON object on one bounded line
inline constexpr const char* kErrVersion = "version";        // "v" missing or not one we speak
inline constexpr const char* kErrUnknownOp = "unknown-op";   // "op" missing or not registered
inline constexpr const char* kErrPermission = "permission";  // the peer may not run this op
inline constexpr const char* kErrBusy = "busy";              // too many connections
inline constexpr const char* kErrInternal = "internal";      // the daemon failed to answer
inline constexpr const char* kErrRejected = "rejected";      // reload: the new config is invalid
inline constexpr const char* kErrInvalid = "invalid";        // an op's arguments are wrong

// Who is on the other end, from the kernel (SO_PEERCRED, SO_PEERGROUPS).
struct Peer {
  pid_t pid = 0;
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  std::vector<gid_t> groups;  // supplementary groups (empty where the kernel cannot tell)
};

// kRead: status, metrics, explain (root and members of the read group);
// kChange: reload (root only).
enum class Access { kRead, kChange };

// One answer to one request. Copyable (it goes into std::function) and
// answerable later from any loop callback; only the first answer counts.
// When the connection has gone (the client closed, the deadline passed, the
// server was destroyed), answering does nothing. When every copy is dropped
// without an answer the client gets an "internal" error rather than a hang.
class Reply {
 public:
  void ok(nlohmann::json result) const;
  void error(const std::string& code, const std::string& message, nlohmann::json extra = nullptr) const;
  // Whether the client is still there to read an answer.
  bool connected() const;

  struct State;  // shared by the copies (control.cpp)
  explicit Reply(std::shared_ptr<State> s) : state_(std::move(s)) {}

 private:
  std::shared_ptr<State> state_;
};

using Handler = std::function<void(const nlohmann::json& request, const Peer& peer, Reply reply)>;

struct ControlLimits {
  std::size_t maxRequestBytes = 64 * 1024;          // the request line, newline excluded
  std::size_t maxResponseBytes = 32 * 1024 * 1024;  // a longer answer becomes an "internal" error
  std::size_t maxConnections = 64;                  // beyond: answered "busy" and closed
  std::size_t maxDepth = 32;                        // nesting of arrays and objects in a request
  std::chrono::milliseconds requestTimeout{5000};   // accept -> full request line
  std::chrono::milliseconds writeTimeout{5000};     // answer ready -> fully written
};

struct ControlOptions {
  std::string path = kDefaultControlSocket;
  // Members of this group may run read ops; the socket is then 0660 with this
  // group, else 0600. The daemon passes the gid of group `vpcfw` when it
  // exists (lookupGroup); tests pass any gid.
  std::optional<gid_t> readGroup;
  ControlLimits limits;
};

// The gid of group `name`, or nothing when it does not exist.
std::optional<gid_t> lookupGroup(const std::string& name);

class ControlServer {
 public:
  // Binds and listens at options.path and registers with `loop` (which must
  // outlive the server). Refuses a path whose parent is not a directory owned
  // by this user and writable by no one else, and anything at the path but a
  // stale socket (one no process listens on): a regular file, a symlink, a
  // directory, a live socket are errors, never replaced. The socket is bound
  // under umask 0177, so it is never reachable with looser permissions, and
  // then given its group and mode. Sets the process umask for the duration of
  // bind(): call it before starting threads.
  [[nodiscard]] static Expected<std::unique_ptr<ControlServer>> create(EventLoop& loop, ControlOptions options);
  ~ControlServer();  // closes every connection and removes the socket (if it is still ours)
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Registers `op`. A kRead op may be run by root and read-group members, a
  // kChange op by root only.
  void handle(const std::string& op, Access access, Handler handler);

  const std::string& path() const { return options_.path; }
  std::size_t connections() const;  // open connections (tests, status)

  struct Impl;

 private:
  ControlServer(EventLoop& loop, ControlOptions options, int fd);
  EventLoop& loop_;
  ControlOptions options_;
  std::shared_ptr<Impl> impl_;
};

// The client side: connects to `socketPath`, sends `request` as one line and
// reads the one-line answer within `timeout` (connect, send and receive
// together), at most `maxBytes`. Returns the response object after checking
// its shape ({"v":1,"ok":true,"result":{}} or "ok":false with an error object
// of string code and message); an answer that is not that is an error, as is
// any failure to connect, send or receive in time.
[[nodiscard]] Expected<nlohmann::json> controlRequest(const std::string& socketPath, const nlohmann::json& request,
                                                      std::chrono::milliseconds timeout,
                                                      std::size_t maxBytes = 32 * 1024 * 1024);

// The explain op's payload, shared by `vpcfw explain --running` and the
// daemon. The request carries {"flow":{"from":s,"to":s,"proto":s,"port":n,
// "sport":n,"icmp_type":n,"icmp_code":n,"family":"4"|"6"}} (from and to
// required, the rest optional with the CLI's defaults); parsing checks it as
// the CLI checks its arguments (an error message names the CLI flag). The
// daemon passes request.value("flow", nlohmann::json()) (operator[] on a
// const json without the key is undefined) and answers an error with code
// kErrInvalid and the message, which the CLI turns into exit status 2.
[[nodiscard]] Expected<eval::FlowRequest> flowRequestFromJson(const nlohmann::json& flow);
// The result: {"verdict": what `vpcfw explain --json` prints, "text": what
// `vpcfw explain` prints, "reachable": bool}.
nlohmann::json explainResult(const eval::Verdict& v);

}  // namespace vpcfw::service
