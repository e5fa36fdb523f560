// Names that reach the kernel or the filesystem: every generated name fits
// its consumer, and no crafted input yields a path outside /run/netns.
#include <doctest/doctest.h>

#include <random>
#include <set>
#include <string>

#include "vpcfw/names/names.h"

using namespace vpcfw;

TEST_CASE("namespace names are single safe path components") {
  for (const char* bad :
       {"", ".", "..", "../x", "a/b", "/", ".hidden", "a b", "a\tb", "a\nb", "x\xff", "a\\b", "*", "a;b", "$(id)"}) {
    CAPTURE(bad);
    CHECK_FALSE(names::isValidNamespaceName(bad));
    CHECK(names::namespacePath(bad).empty());
  }
  CHECK_FALSE(names::isValidNamespaceName(std::string(names::kNamespaceNameMax + 1, 'a')));
  CHECK(names::isValidNamespaceName(std::string(names::kNamespaceNameMax, 'a')));
  CHECK(names::namespacePath("vpcfw:i:web1") == "/run/netns/vpcfw:i:web1");
}

TEST_CASE("interface names fit IFNAMSIZ and refuse what the kernel or /proc/sys would misread") {
  for (const char* bad : {"", ".", "..", "a/b", "eth:0", "a b", "sixteen-chars-xx", "tab\t", "\x7f", "caf\xc3\xa9",
                          "e*", "x\"}}", "a'b", "a;b"}) {
    CAPTURE(bad);
    CHECK_FALSE(names::isValidInterfaceName(bad));
  }
  CHECK(names::isValidInterfaceName("fifteen-chars-x"));
  for (const char* reserved : {"lo", "all", "default"}) CHECK(names::isReservedInterface(reserved));
  CHECK_FALSE(names::isReservedInterface("eth0"));
}

TEST_CASE(
    "every generated interface name is valid for every valid object name, and distinct names mostly stay distinct") {
  std::mt19937 rng(7);
  const std::string alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";
  std::set<std::string> enis;
  for (int i = 0; i < 2000; ++i) {
    std::string n(1 + rng() % names::kObjectNameMax, 'a');
    for (auto& c : n) c = alphabet[rng() % alphabet.size()];
    REQUIRE(names::isValidObjectName(n));
    for (const auto& ifname :
         {names::eniInterface(n), names::peeringInterface(n), names::gatewayInternetInterface(n)}) {
      CAPTURE(ifname);
      CHECK(names::isValidInterfaceName(ifname));
      CHECK_FALSE(names::isReservedInterface(ifname));
    }
    CHECK(names::isValidNamespaceName(names::routerNamespace(n)));
    CHECK(names::isValidNamespaceName(names::gatewayNamespace(n)));
    CHECK(names::isValidNamespaceName(names::instanceNamespace(n)));
    CHECK(names::hasGeneratedPrefix(names::instanceNamespace(n)));
    enis.insert(names::eniInterface(n));
  }
  CHECK(enis.size() > 1900);  // a 16-bit hash: collisions are rare, and validation catches the rest
  CHECK(names::eniInterface("web1") == "eni-web1");
  CHECK(names::instanceNamespace("web1", "mine") == "mine");
}

TEST_CASE("object names keep to the alphabet every consumer accepts") {
  for (const char* bad : {"", "a b", "a/b", "a:b", "ä", "a\n", "a'b", "a\"b"}) {
    CAPTURE(bad);
    CHECK_FALSE(names::isValidObjectName(bad));
  }
  CHECK_FALSE(names::isValidObjectName(std::string(65, 'a')));
  CHECK(names::isValidObjectName("web-1.prod_a"));
  CHECK_FALSE(names::isValidHostName("lab/1"));
  CHECK(names::isValidHostName("lab-1"));
}
