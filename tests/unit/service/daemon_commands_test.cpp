// The CLI's daemon clients against a fake vpcfwd: exit statuses (0 committed,
// 1 rejected, 4 unreachable or outside the protocol), what they print, and
// what they send.
#include <unistd.h>
#include <doctest/doctest.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <thread>

#include "vpcfw/cli/cli.h"
#include "vpcfw/service/control.h"

using nlohmann::json;
using vpcfw::service::Access;
using vpcfw::service::ControlServer;
using vpcfw::service::EventLoop;
using vpcfw::service::Peer;
using vpcfw::service::Reply;

namespace {

struct FakeDaemon {
  std::string dir, path;
  EventLoop loop = std::move(*EventLoop::create());
  std::unique_ptr<ControlServer> server;
  int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::thread thread;
  std::mutex mu;
  json lastRequest;
  std::atomic<bool> rejectReload{false};

  FakeDaemon() {
    char tmpl[] = "/tmp/vpcfw-cli-daemon-test.XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    path = dir + "/vpcfwd.sock";
    vpcfw::service::ControlOptions o;
    o.path = path;
    auto s = ControlServer::create(loop, o);
    REQUIRE(s.has_value());
    server = std::move(*s);
    REQUIRE(loop.add(wake, EPOLLIN, [this](std::uint32_t) { loop.stop(); }).has_value());
    auto remember = [this](const json& req) {
      std::lock_guard<std::mutex> g(mu);
      lastRequest = req;
    };
    server->handle("reload", Access::kChange, [this, remember](const json& req, const Peer&, Reply r) {
      remember(req);
      if (rejectReload)
        r.error("rejected", "1 error(s); enforcing generation 3",
                json{{"diagnostics", {"/etc/vpcfw/vpcfw.yaml:4:7: error: unknown key 'ingres'"}}});
      else
        loop.after(std::chrono::milliseconds(100), [r] {
          r.ok(json{{"generation", 4}, {"summary", "generation 4: 12 rules"}});
        });
    });
    server->handle("status", Access::kRead, [remember](const json& req, const Peer&, Reply r) {
      remember(req);
      r.ok(json{{"generation", 4},
                {"enis", 2},
                {"rules", 12},
                {"last_reload", {{"result", "committed"}, {"time", "2026-12-01T23:00:00Z"}}},
                {"drift_repairs", 1},
                {"drops", {{{"eni", "web-eth0"}, {"stage", "nacl-ingress"}, {"packets", 17}}}}});
    });
    server->handle("metrics", Access::kRead, [](const json&, const Peer&, Reply r) {
      r.ok(json{{"text", "# TYPE vpcfw_generation gauge\nvpcfw_generation 4\n"}});
    });
    server->handle("explain", Access::kRead, [remember](const json& req, const Peer&, Reply r) {
      remember(req);
      auto flow = vpcfw::service::flowRequestFromJson(req.contains("flow") ? req["flow"] : json());
      if (!flow) return r.error("invalid", flow.error().message);
      r.ok(json{{"verdict", {{"reachable", false}, {"from", flow->from}}},
                {"text", "BLOCKED by nacl\n"},
                {"reachable", false}});
    });
    thread = std::thread([this] { (void)loop.run(); });
  }
  ~FakeDaemon() {
    std::uint64_t one = 1;
    (void)!::write(wake, &one, sizeof one);
    thread.join();
    server.reset();
    ::close(wake);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  json last() {
    std::lock_guard<std::mutex> g(mu);
    return lastRequest;
  }
};

int run(std::vector<std::string> args, std::string& out, std::string& err) {
  std::ostringstream o, e;
  int rc = vpcfw::cli::run(args, o, e);
  out = o.str();
  err = e.str();
  return rc;
}

}  // namespace

TEST_CASE("cli: vpcfw reload exits 0 when committed, 1 with the diagnostics when rejected, 4 without a daemon") {
  FakeDaemon d;
  std::string out, err;
  CHECK(run({"reload", "--socket", d.path}, out, err) == 0);
  CHECK(out == "reload committed: generation 4: 12 rules\n");
  CHECK(d.last()["op"] == "reload");
  CHECK(d.last()["v"] == 1);
  d.rejectReload = true;  // the loop thread reads it only inside a request
  CHECK(run({"reload", "--socket", d.path}, out, err) == 1);
  CHECK(err.find("/etc/vpcfw/vpcfw.yaml:4:7: error: unknown key 'ingres'\n") != std::string::npos);
  CHECK(err.find("enforcing generation 3 (rejected)") != std::string::npos);
  CHECK(run({"reload", "--socket", d.dir + "/absent.sock"}, out, err) == 4);
  CHECK(err.find("cannot reach vpcfwd") != std::string::npos);
  // The environment names the default socket.
  ::setenv("VPCFW_CONTROL_SOCKET", d.path.c_str(), 1);
  d.rejectReload = false;
  CHECK(run({"reload"}, out, err) == 0);
  ::unsetenv("VPCFW_CONTROL_SOCKET");
}

TEST_CASE("cli: vpcfw status --running and vpcfw metrics print the daemon's answers") {
  FakeDaemon d;
  std::string out, err;
  CHECK(run({"status", "--running", "--socket", d.path}, out, err) == 0);
  CHECK(out.find("generation 4 in force (2 ENIs, 12 rules)") != std::string::npos);
  CHECK(out.find("last reload: committed at 2026-12-01T23:00:00Z") != std::string::npos);
  CHECK(out.find("drift repairs: 1") != std::string::npos);
  CHECK(out.find("17 packets  web-eth0  nacl-ingress") != std::string::npos);
  CHECK(run({"status", "--running", "--json", "--socket", d.path}, out, err) == 0);
  auto j = json::parse(out, nullptr, false);
  CHECK(j["generation"] == 4);
  CHECK(run({"status", "--running", "--netns", "x", "--socket", d.path}, out, err) == 2);
  CHECK(run({"metrics", "--socket", d.path}, out, err) == 0);
  CHECK(out == "# TYPE vpcfw_generation gauge\nvpcfw_generation 4\n");
  CHECK(run({"metrics", "--socket", d.dir + "/absent.sock"}, out, err) == 4);
}

TEST_CASE("cli: vpcfw explain --running sends the flow and prints the daemon's verdict") {
  FakeDaemon d;
  std::string out, err;
  CHECK(run({"explain", "--running", "--socket", d.path, "--from", "web", "--to", "db", "--port", "5432"}, out, err) ==
        1);
  CHECK(out == "BLOCKED by nacl\n");
  const json flow = d.last()["flow"];
  CHECK(flow["from"] == "web");
  CHECK(flow["to"] == "db");
  CHECK(flow["proto"] == "tcp");
  CHECK(flow["port"] == 5432);
  CHECK_FALSE(flow.contains("family"));
  CHECK(run({"explain", "--running", "--json", "--socket", d.path, "--from", "web", "--to", "db", "--port", "1"}, out,
            err) == 1);
  CHECK(json::parse(out, nullptr, false)["from"] == "web");
  // The daemon checks the arguments: tcp without a port is a usage error.
  CHECK(run({"explain", "--running", "--socket", d.path, "--from", "web", "--to", "db"}, out, err) == 2);
  CHECK(err.find("--port 0..65535 is required for tcp") != std::string::npos);
  // A config file and --running contradict; no config without --running is usage too.
  CHECK(run({"explain", "x.yaml", "--running", "--socket", d.path, "--from", "a", "--to", "b"}, out, err) == 2);
  CHECK(run({"explain", "--from", "a", "--to", "b"}, out, err) == 2);
  CHECK(err.find("a config file is required") != std::string::npos);
}
