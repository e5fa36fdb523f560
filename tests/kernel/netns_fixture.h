// A throwaway network namespace for one test, with a unique name, always
// removed (also when the test fails); and a shell helper for nft/ip.
#pragma once

#include <unistd.h>

#include <doctest/doctest.h>

#include <cstdio>
#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/test_config.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/nft/applier.h"

namespace vpcfw::test {

struct CommandResult {
  int status;
  std::string out;
};

inline CommandResult sh(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  std::array<char, 4096> buf{};
  while (p && fgets(buf.data(), buf.size(), p)) out += buf.data();
  int st = p ? pclose(p) : -1;
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

class Netns {
 public:
  explicit Netns(const std::string& tag) {
    static int counter = 0;
    name_ = "vpcfwk-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    sh("ip netns add " + name_);
  }
  ~Netns() { sh("ip netns del " + name_); }
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;
  const std::string& name() const { return name_; }
  CommandResult exec(const std::string& cmd) const { return sh("ip netns exec " + name_ + " " + cmd); }

 private:
  std::string name_;
};

// The one fabric's ruleset of an example config (config/examples/NAME.yaml).
inline compile::Ruleset compileExample(const std::string& name) {
  auto m = test::loadExample(name);
  auto r = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(r.has_value());
  REQUIRE(r->size() == 1);
  return (*r)[0];
}

// applyRuleset / diffRuleset into `ns`, failing the test (with the error) on an error.
inline nft::ApplyReport applyIn(const compile::Ruleset& r, const Netns& ns, nft::ApplyOptions o = {}) {
  o.netns = ns.name();
  auto rep = nft::applyRuleset(r, o);
  INFO((rep ? std::string() : rep.error().message));
  REQUIRE(rep.has_value());
  return *rep;
}
inline std::vector<std::string> diffIn(const compile::Ruleset& r, const Netns& ns) {
  auto d = nft::diffRuleset(r, ns.name());
  INFO((d ? std::string() : d.error().message));
  REQUIRE(d.has_value());
  return *d;
}

// `nft -j list table TABLE` in `ns`, without handles and with set elements
// in a stable order, for comparing listings.
inline nlohmann::json listedJson(const Netns& ns, const std::string& table = "inet vpcfw") {
  auto res = ns.exec("nft -j list table " + table);
  REQUIRE(res.status == 0);
  auto j = nlohmann::json::parse(res.out);
  for (auto& item : j["nftables"])
    for (auto& [kind, obj] : item.items()) {
      obj.erase("handle");
      if (obj.contains("elem") && obj["elem"].is_array()) {
        std::vector<std::string> elems;
        for (auto& e : obj["elem"]) elems.push_back(e.dump());
        std::sort(elems.begin(), elems.end());
        obj["elem"] = elems;
      }
    }
  return j;
}

// A listing without the NACL verdict cache's rules, whose generation an
// apply chooses (docs/ruleset.md): for comparing tables whatever it is.
inline nlohmann::json withoutCacheRules(nlohmann::json j) {
  auto& items = j["nftables"];
  for (auto it = items.begin(); it != items.end();) {
    const bool cache =
        it->contains("rule") && (*it)["rule"].value("comment", "").find("NACL verdict") != std::string::npos;
    it = cache ? items.erase(it) : it + 1;
  }
  return j;
}

}  // namespace vpcfw::test
