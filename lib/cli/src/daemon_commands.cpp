// The commands that talk to a running vpcfwd over its control socket:
// `vpcfw reload`, `vpcfw metrics`, `vpcfw status --running` and
// `vpcfw explain --running`. The daemon is another process: its answers are
// checked for shape (controlRequest) and read without throwing conversions.
#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <memory>

#include "commands.h"
#include "vpcfw/cli/cli.h"
#include "vpcfw/service/control.h"

namespace vpcfw::cli {
namespace {

using nlohmann::json;

std::chrono::milliseconds seconds(double s) { return std::chrono::milliseconds(static_cast<long long>(s * 1000)); }

// Sends `request`; on failure prints why as `command` and returns nothing.
std::optional<json> ask(std::string_view command, const std::string& socket, json request, double timeoutSeconds,
                        std::ostream& err) {
  request["v"] = service::kProtocolVersion;
  auto r = service::controlRequest(socket, request, seconds(timeoutSeconds));
  if (!r) {
    err << fmt::format("{}: cannot reach vpcfwd: {}\n", command, r.error().message);
    return std::nullopt;
  }
  return std::move(*r);
}

std::string text(const json& j, const char* key, std::string fallback = "?") {
  auto it = j.is_object() ? j.find(key) : j.end();
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

std::string number(const json& j, const char* key) {
  auto it = j.is_object() ? j.find(key) : j.end();
  return it != j.end() && it->is_number() ? it->dump() : "?";
}

// An error answer: its message, and any diagnostics the daemon sent with it
// (a rejected reload's file:line:column lines).
void printError(std::string_view command, const json& error, std::ostream& err) {
  auto d = error.find("diagnostics");
  if (d != error.end() && d->is_array())
    for (const auto& line : *d)
      if (line.is_string()) err << line.get<std::string>() << '\n';
  err << fmt::format("{}: {} ({})\n", command, text(error, "message"), text(error, "code"));
}

int reloadCommand(const std::string& socket, double timeout, std::ostream& out, std::ostream& err) {
  if (!std::isfinite(timeout)) {  // CLI::Range lets NaN through
    err << "vpcfw reload: --timeout must be a finite number of seconds\n";
    return kExitUsage;
  }
  auto r = ask("vpcfw reload", socket, json{{"op", "reload"}}, timeout, err);
  if (!r) return kExitHarness;
  if (!(*r)["ok"].get<bool>()) {
    const json& e = (*r)["error"];
    printError("vpcfw reload", e, err);
    return text(e, "code") == service::kErrRejected ? kExitBlocked : kExitHarness;
  }
  const json& result = (*r)["result"];
  out << fmt::format("reload committed: {}\n", text(result, "summary", "generation " + number(result, "generation")));
  return kExitOk;
}

int metricsCommand(const std::string& socket, double timeout, std::ostream& out, std::ostream& err) {
  auto r = ask("vpcfw metrics", socket, json{{"op", "metrics"}}, timeout, err);
  if (!r) return kExitHarness;
  if (!(*r)["ok"].get<bool>()) {
    printError("vpcfw metrics", (*r)["error"], err);
    return kExitHarness;
  }
  const json& result = (*r)["result"];
  if (!result.is_object() || !result.contains("text") || !result["text"].is_string()) {
    err << "vpcfw metrics: the daemon's answer has no \"text\"\n";
    return kExitHarness;
  }
  out << result["text"].get<std::string>();
  return kExitOk;
}

}  // namespace

std::string controlSocketPath(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* env = std::getenv("VPCFW_CONTROL_SOCKET"); env && *env) return env;
  return service::kDefaultControlSocket;
}

int statusRunning(const std::string& socket, bool asJson, std::ostream& out, std::ostream& err) {
  auto r = ask("vpcfw status --running", socket, json{{"op", "status"}}, 10, err);
  if (!r) return kExitHarness;
  if (!(*r)["ok"].get<bool>()) {
    printError("vpcfw status --running", (*r)["error"], err);
    return kExitHarness;
  }
  const json& s = (*r)["result"];
  if (asJson) {
    out << jsonText(s) << '\n';
    return kExitOk;
  }
  if (!s.is_object()) {
    err << "vpcfw status --running: the daemon's status is not an object\n";
    return kExitHarness;
  }
  out << fmt::format("vpcfwd: generation {} in force ({} ENIs, {} rules)\n", number(s, "generation"), number(s, "enis"),
                     number(s, "rules"));
  const auto last = s.find("last_reload");
  if (last != s.end() && last->is_object())
    out << fmt::format("last reload: {} at {}{}\n", text(*last, "result"), text(*last, "time"),
                       last->contains("message") ? ": " + text(*last, "message") : "");
  if (s.contains("config_invalid_since"))
    out << fmt::format("config invalid since {}; enforcing generation {}\n", text(s, "config_invalid_since"),
                       number(s, "generation"));
  out << fmt::format("drift repairs: {}\n", number(s, "drift_repairs"));
  bool any = false;
  const auto drops = s.find("drops");
  if (drops != s.end() && drops->is_array())
    for (const auto& d : *drops) {
      if (!d.is_object()) continue;
      if (!any) out << "dropped so far:\n";
      any = true;
      out << fmt::format("  {:>8} packets  {}  {}\n", number(d, "packets"), text(d, "eni"), text(d, "stage"));
    }
  if (!any) out << "nothing dropped so far\n";
  return kExitOk;
}

int explainRunning(const json& flow, bool asJson, const std::string& socket, std::ostream& out, std::ostream& err) {
  auto r = ask("vpcfw explain --running", socket, json{{"op", "explain"}, {"flow", flow}}, 10, err);
  if (!r) return kExitHarness;
  if (!(*r)["ok"].get<bool>()) {
    const json& e = (*r)["error"];
    printError("vpcfw explain --running", e, err);
    return text(e, "code") == service::kErrInvalid ? kExitUsage : kExitHarness;
  }
  const json& result = (*r)["result"];
  const auto reachable = result.is_object() ? result.find("reachable") : result.end();
  if (reachable == result.end() || !reachable->is_boolean() || !result.contains("verdict") ||
      !result.contains("text") || !result["text"].is_string()) {
    err << "vpcfw explain --running: the daemon's answer has no verdict\n";
    return kExitHarness;
  }
  if (asJson)
    out << jsonText(result["verdict"]) << '\n';
  else
    out << result["text"].get<std::string>();
  return reachable->get<bool>() ? kExitOk : kExitBlocked;
}

void addDaemonCommands(CLI::App& app, Runner& selected) {
  struct Options {
    std::string socket;
    double timeout = 90;
  };
  auto reload = std::make_shared<Options>();
  auto* reloadCmd = app.add_subcommand("reload", "Make the running vpcfwd reload its config; wait for the outcome");
  reloadCmd->add_option("--socket", reload->socket,
                        "Control socket (default $VPCFW_CONTROL_SOCKET or /run/vpcfw/vpcfwd.sock)");
  reloadCmd->add_option("--timeout", reload->timeout, "Seconds to wait for the commit")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  reloadCmd->callback([&selected, reload] {
    selected = [reload](std::ostream& o, std::ostream& e) {
      return reloadCommand(controlSocketPath(reload->socket), reload->timeout, o, e);
    };
  });
  auto metrics = std::make_shared<Options>();
  metrics->timeout = 10;
  auto* metricsCmd = app.add_subcommand("metrics", "Print the running vpcfwd's metrics (Prometheus text format)");
  metricsCmd->add_option("--socket", metrics->socket,
                         "Control socket (default $VPCFW_CONTROL_SOCKET or /run/vpcfw/vpcfwd.sock)");
  metricsCmd->callback([&selected, metrics] {
    selected = [metrics](std::ostream& o, std::ostream& e) {
      return metricsCommand(controlSocketPath(metrics->socket), metrics->timeout, o, e);
    };
  });
}

}  // namespace vpcfw::cli
