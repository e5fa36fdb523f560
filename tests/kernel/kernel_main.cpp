// doctest main for kernel tests: they need root (namespaces, nftables); as
// anyone else the whole executable reports "skipped" to CTest (exit 77).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstring>
#include <iostream>

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing = listing || std::strncmp(argv[i], "--list", 6) == 0 || std::strncmp(argv[i], "-ltc", 4) == 0;
  if (geteuid() != 0 && !listing) {
    std::cout << "skipped: kernel tests need root\n";
    return 77;
  }
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
