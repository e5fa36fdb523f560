// The `vpcfw` command line: argument parsing and the commands, as a library so
// that tests drive it exactly as a user does. Programs log; libraries do not:
// this is the one place (with the mains) that writes to the terminal.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace vpcfw::cli {

// Exit statuses shared by the commands.
inline constexpr int kExitOk = 0;        // success; for explain: the flow and its reply get through
inline constexpr int kExitBlocked = 1;   // explain: the flow or its reply is blocked
inline constexpr int kExitUsage = 2;     // bad usage, unreadable or invalid config
inline constexpr int kExitDisagree = 3;  // probe --explain: the kernel and the evaluator differ
inline constexpr int kExitHarness = 4;   // probe: the probe could not be carried out (a socket, listener,
                                         // observer or baseline failed, a namespace is missing): no verdict

// Runs `vpcfw args...` (args excludes the program name) writing to out/err.
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace vpcfw::cli
