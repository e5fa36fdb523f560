// vpcfw: the command-line tool. All the work is in vpcfw::cli.
#include <iostream>

#include "vpcfw/cli/cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return vpcfw::cli::run(args, std::cout, std::cerr);
}
