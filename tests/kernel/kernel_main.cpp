// doctest main for kernel tests: they need root (namespaces, nftables); as
// anyone else the whole executable reports "skipped" to CTest (exit 77).
// Locks and other state go to a private directory (VPCFW_RUN_DIR), so the
// tests never meet another run's or the machine's vpcfw.
#define DOCTEST_CONFIG_IMPLEMENT
#include <unistd.h>
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    listing = listing || std::strncmp(argv[i], "--list", 6) == 0 || std::strncmp(argv[i], "-ltc", 4) == 0;
  if (geteuid() != 0 && !listing) {
    std::cout << "skipped: kernel tests need root\n";
    return 77;
  }
  char tmpl[] = "/tmp/vpcfwk-nft-XXXXXX";
  const char* dir = listing ? nullptr : mkdtemp(tmpl);
  if (dir) setenv("VPCFW_RUN_DIR", (std::string(dir) + "/run").c_str(), 1);
  doctest::Context ctx(argc, argv);
  const int rc = ctx.run();
  if (dir) std::filesystem::remove_all(dir);
  return rc;
}
