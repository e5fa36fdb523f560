// vpcfwd's core: enforce a config on this machine (host mode) or on its
// namespace lab (lab mode), reload it when it changes, repair drift, and
// answer the control socket (docs/daemon.md).
//
// The daemon never fails open: an invalid config at start exits before the
// kernel is touched; an invalid or failing reload leaves the last good
// generation in force; stopping leaves the rules in force.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace vpcfw::service {

struct DaemonOptions {
  std::string config = "/etc/vpcfw";  // a file, or a directory (vpcfw.yaml + conf.d/*.yaml)
  std::string host;                   // host mode: which `host:` this machine is; empty: the hostname
  bool lab = false;                   // own the config's namespace lab instead
  std::optional<std::string> netns;   // host mode: act in this namespace as if it were the machine
  std::string controlSocket;          // empty: <run dir>/vpcfwd.sock
  std::string metricsFile;            // empty: no textfile export
  std::chrono::milliseconds debounce{50};
  // How long a commit waits for a fabric's lock held by a vpcfw command.
  std::chrono::milliseconds lockTimeout{5000};
  // Read-group for the control socket; empty: "vpcfw".
  std::string socketGroup;
};

enum class LogLevel { kError, kWarning, kInfo };
using LogFn = std::function<void(LogLevel, std::string_view)>;

// Runs until SIGTERM/SIGINT; the process's exit status: 0 after a stop, 1
// when the config could not be enforced at start (nothing was changed in
// the kernel), 2 for bad options.
int runDaemon(const DaemonOptions& options, const LogFn& log);

}  // namespace vpcfw::service
