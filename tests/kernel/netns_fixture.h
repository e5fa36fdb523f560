// A throwaway network namespace for one test, with a unique name, always
// removed (also when the test fails); and a shell helper for nft/ip.
#pragma once

#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>

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

}  // namespace vpcfw::test
