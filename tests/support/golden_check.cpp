// Golden test of the compiler: `vpcfw compile CONFIG` must print exactly the
// reviewed text in GOLDEN. With VPCFW_UPDATE_GOLDEN=1 it rewrites GOLDEN
// instead, so a change of output is reviewed as a diff in git.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "vpcfw/cli/cli.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: golden_check CONFIG GOLDEN\n";
    return 2;
  }
  std::ostringstream out, err;
  int status = vpcfw::cli::run({"compile", argv[1]}, out, err);
  if (status != 0) {
    std::cerr << "vpcfw compile failed:\n" << err.str();
    return 1;
  }
  const char* update = std::getenv("VPCFW_UPDATE_GOLDEN");
  if (update && std::string(update) == "1") {
    std::ofstream(argv[2], std::ios::binary) << out.str();
    std::cout << "updated " << argv[2] << "\n";
    return 0;
  }
  std::ifstream in(argv[2], std::ios::binary);
  std::stringstream want;
  want << in.rdbuf();
  if (want.str() == out.str()) {
    std::cout << argv[2] << ": matches\n";
    return 0;
  }
  // Show the first differing line; `git diff` after an update shows the rest.
  std::istringstream a(want.str()), b(out.str());
  std::string la, lb;
  for (int line = 1;; ++line) {
    bool ea = !std::getline(a, la), eb = !std::getline(b, lb);
    if (ea && eb) break;
    if (ea || eb || la != lb) {
      std::cerr << argv[2] << ":" << line << ": golden differs\n  want: " << (ea ? "<end>" : la)
                << "\n  got:  " << (eb ? "<end>" : lb)
                << "\nrun with VPCFW_UPDATE_GOLDEN=1 to accept the new output, then review `git diff`\n";
      break;
    }
  }
  return 1;
}
