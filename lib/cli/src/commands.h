// Pieces the CLI's command files share (private to the CLI).
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <ostream>
#include <string>

#include "vpcfw/model/model.h"

namespace vpcfw::cli {

// A parsed command, ready to run.
using Runner = std::function<int(std::ostream& out, std::ostream& err)>;

// Loads and validates `path`, printing its diagnostics; when it has errors,
// also "<path>: N error(s); <consequence>", and returns nothing.
std::optional<model::Model> loadReported(const std::string& path, std::string_view consequence, std::ostream& err);

double msSince(std::chrono::steady_clock::time_point t0);

// JSON text of `j`, indented. Strings from configs, paths and arguments may
// hold invalid UTF-8, on which plain dump() throws: such bytes become U+FFFD.
std::string jsonText(const nlohmann::json& j);

// The lab's internet namespace: $VPCFW_LAB_INTERNET (checked: it becomes a
// path under /run/netns) or vpcfw:internet; prints why not as `command`.
std::optional<std::string> internetReported(std::string_view command, std::ostream& err);

// `vpcfw lab up|down|status|apply|exec` (lab_commands.cpp) and `vpcfw probe`
// (probe_command.cpp): each sets `selected` when it is the parsed command.
void addLabCommands(CLI::App& app, Runner& selected);
// `vpcfw lab flowlogs` (lab_flowlogs_command.cpp), under the lab command.
void addLabFlowLogsCommand(CLI::App& lab, Runner& selected);
void addProbeCommand(CLI::App& app, Runner& selected);
// `vpcfw reach` (reach_command.cpp).
void addReachCommand(CLI::App& app, Runner& selected);
// `vpcfw flowlogs show` (flowlogs_command.cpp).
void addFlowLogCommands(CLI::App& app, Runner& selected);

// The daemon's clients (daemon_commands.cpp): `vpcfw reload` and `vpcfw
// metrics`, and the --running forms of status and explain. They exit 4 when
// the daemon cannot be reached or answers outside the protocol.
void addDaemonCommands(CLI::App& app, Runner& selected);
// --socket PATH, else $VPCFW_CONTROL_SOCKET, else /run/vpcfw/vpcfwd.sock.
std::string controlSocketPath(const std::string& given);
int statusRunning(const std::string& socket, bool json, std::ostream& out, std::ostream& err);
// `flow` is the explain op's flow object (service::flowRequestFromJson).
int explainRunning(const nlohmann::json& flow, bool json, const std::string& socket, std::ostream& out,
                   std::ostream& err);

}  // namespace vpcfw::cli
