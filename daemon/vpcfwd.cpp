// vpcfwd: the service that enforces a vpcfw config on a lab machine or its
// namespace lab (docs/daemon.md). Options and logging here; the work is in
// vpcfw::service.
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>
#include <string>

#include "vpcfw/base/diagnostic.h"
#include "vpcfw/names/names.h"
#include "vpcfw/service/daemon.h"

int main(int argc, char** argv) {
  vpcfw::service::DaemonOptions o;
  std::string netns;
  long debounceMs = 50, lockTimeoutS = 5;
  CLI::App app{"vpcfwd: enforce a vpcfw config (AWS NACLs and security groups) on this machine or its namespace lab"};
  app.add_option("--config", o.config, "Config file, or a directory of vpcfw.yaml + conf.d/*.yaml")
      ->capture_default_str();
  app.add_option("--host", o.host, "Host mode: which `host:` of the config this machine is (default: the hostname)");
  app.add_flag("--lab", o.lab, "Own the config's namespace lab (build it, keep it in sync) instead");
  app.add_option("--netns", netns, "Act in this network namespace as if it were the machine (tests)");
  app.add_option("--control-socket", o.controlSocket, "Control socket (default /run/vpcfw/vpcfwd.sock)");
  app.add_option("--metrics-file", o.metricsFile, "Also write the metrics here (node_exporter textfile collector)");
  app.add_option("--debounce-ms", debounceMs, "Wait this long after a config file changes before reloading")
      ->check(CLI::Range(0, 10'000))
      ->capture_default_str();
  app.add_option("--lock-timeout", lockTimeoutS, "Seconds a commit waits for a vpcfw command holding a fabric")
      ->check(CLI::Range(1, 300))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (!netns.empty()) {
    if (o.lab) {
      std::cerr << "vpcfwd: --netns is for host mode; a lab lives in its own namespaces\n";
      return 2;
    }
    if (!vpcfw::names::isValidNamespaceName(netns)) {
      std::cerr << "vpcfwd: --netns: " << vpcfw::quoteForMessage(netns) << " is not a namespace name\n";
      return 2;
    }
    o.netns = netns;
  }
  o.debounce = std::chrono::milliseconds(debounceMs);
  o.lockTimeout = std::chrono::seconds(lockTimeoutS);

  // Under systemd, stderr is the journal: a "<N>" prefix gives each line its
  // priority (sd-daemon(3)); on a terminal the lines stay plain.
  const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
  auto log = [journal](vpcfw::service::LogLevel level, std::string_view text) {
    const char* prefix = "";
    if (journal)
      prefix = level == vpcfw::service::LogLevel::kError     ? "<3>"
               : level == vpcfw::service::LogLevel::kWarning ? "<4>"
                                                             : "<6>";
    // Config names and kernel text reach the log: escaped, so that each
    // line of the text is one journal line that says what it is.
    std::size_t start = 0;
    while (start <= text.size()) {
      auto end = text.find('\n', start);
      if (end == std::string_view::npos) end = text.size();
      std::cerr << prefix << "vpcfwd: " << vpcfw::escapeForMessage(text.substr(start, end - start)) << '\n';
      start = end + 1;
    }
    std::cerr << std::flush;
  };
  return vpcfw::service::runDaemon(o, log);
}
