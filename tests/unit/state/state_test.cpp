// The state directory treats everything on disk as untrusted: symlinks,
// foreign owners, loose modes and special files are refused; writes are
// atomic; locks exclude each other and wake waiters when released.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "vpcfw/state/state.h"

namespace fs = std::filesystem;
using namespace vpcfw;

namespace {

// A private run directory for one test, removed afterwards.
struct RunDir {
  fs::path root;
  RunDir() {
    char tmpl[] = "/tmp/vpcfw-state-test-XXXXXX";
    root = mkdtemp(tmpl);
    setenv("VPCFW_RUN_DIR", (root / "run").c_str(), 1);
  }
  ~RunDir() {
    unsetenv("VPCFW_RUN_DIR");
    std::error_code ec;
    fs::remove_all(root, ec);
  }
};

mode_t modeOf(const fs::path& p) {
  struct stat st {};
  REQUIRE(lstat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

}  // namespace

TEST_CASE("state directories are made 0700 whatever the umask, and files round-trip atomically") {
  RunDir rd;
  const mode_t old = umask(0);
  auto dir = state::Dir::open("lab");
  umask(old);
  REQUIRE(dir);
  CHECK(modeOf(rd.root / "run") == 0700);
  CHECK(modeOf(rd.root / "run" / "lab") == 0700);
  REQUIRE(dir->writeFile("a.state", "one\n"));
  REQUIRE(dir->writeFile("a.state", "two\n"));
  auto back = dir->readFile("a.state");
  REQUIRE(back);
  REQUIRE(back->has_value());
  CHECK(**back == "two\n");
  CHECK(modeOf(rd.root / "run" / "lab" / "a.state") == 0600);
  // No temporary file is left behind.
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(rd.root / "run" / "lab")) files += e.is_regular_file();
  CHECK(files == 1);
  auto missing = dir->readFile("b.state");
  REQUIRE(missing);
  CHECK_FALSE(missing->has_value());
  REQUIRE(dir->remove("a.state"));
  REQUIRE(dir->remove("a.state"));  // already gone: fine
}

TEST_CASE("names that could leave the directory are refused") {
  RunDir rd;
  auto dir = state::Dir::open("lab");
  REQUIRE(dir);
  for (const char* bad : {"", ".", "..", "../x", "a/b", "/etc/passwd", ".hidden", "a b", "a\nb", "\xff"}) {
    CAPTURE(bad);
    CHECK_FALSE(dir->writeFile(bad, "x"));
    CHECK_FALSE(dir->readFile(bad));
    CHECK_FALSE(dir->remove(bad));
    CHECK_FALSE(state::Dir::open(bad));
  }
  CHECK(state::isSafeComponent("vpcfw:i:web1"));
  CHECK_FALSE(state::isSafeComponent(std::string(129, 'a')));
}

TEST_CASE("symlinked, foreign-owned or loosely-permitted state is refused") {
  RunDir rd;
  fs::create_directories(rd.root / "elsewhere");
  fs::create_directories(rd.root / "run");
  chmod((rd.root / "run").c_str(), 0700);
  SUBCASE("a symlinked state directory") {
    fs::create_directory_symlink(rd.root / "elsewhere", rd.root / "run" / "lab");
    auto dir = state::Dir::open("lab");
    REQUIRE_FALSE(dir);
    CHECK(dir.error().message.find("symlink") != std::string::npos);
  }
  SUBCASE("a group-writable state directory") {
    fs::create_directories(rd.root / "run" / "lab");
    chmod((rd.root / "run" / "lab").c_str(), 0770);
    CHECK_FALSE(state::Dir::open("lab"));
  }
  SUBCASE("a symlinked state file pointing elsewhere is neither read nor written through") {
    auto dir = state::Dir::open("lab");
    REQUIRE(dir);
    {
      std::FILE* f = std::fopen((rd.root / "elsewhere" / "secret").c_str(), "w");
      std::fputs("secret", f);
      std::fclose(f);
    }
    fs::create_symlink(rd.root / "elsewhere" / "secret", rd.root / "run" / "lab" / "x.state");
    CHECK_FALSE(dir->readFile("x.state"));
    REQUIRE(dir->writeFile("x.state", "new"));  // replaces the link itself
    CHECK(fs::is_regular_file(fs::symlink_status(rd.root / "run" / "lab" / "x.state")));
    std::FILE* f = std::fopen((rd.root / "elsewhere" / "secret").c_str(), "r");
    char buf[16] = {};
    REQUIRE(std::fgets(buf, sizeof buf, f));
    std::fclose(f);
    CHECK(std::string(buf) == "secret");
  }
  SUBCASE("special and oversized files") {
    auto dir = state::Dir::open("lab");
    REQUIRE(dir);
    REQUIRE(mkfifo((rd.root / "run" / "lab" / "fifo.state").c_str(), 0600) == 0);
    CHECK_FALSE(dir->readFile("fifo.state"));  // returns at once: opened without blocking
    fs::create_directory(rd.root / "run" / "lab" / "dir.state");
    CHECK_FALSE(dir->readFile("dir.state"));
    REQUIRE(dir->writeFile("big.state", std::string(5000, 'x')));
    CHECK_FALSE(dir->readFile("big.state", 4096));
    CHECK(dir->readFile("big.state", 5000));
  }
  if (geteuid() == 0) {
    SUBCASE("files and directories owned by another user") {
      auto dir = state::Dir::open("lab");
      REQUIRE(dir);
      REQUIRE(dir->writeFile("y.state", "forged"));
      REQUIRE(chown((rd.root / "run" / "lab" / "y.state").c_str(), 65534, 65534) == 0);
      auto r = dir->readFile("y.state");
      REQUIRE_FALSE(r);
      CHECK(r.error().message.find("owned by uid 65534") != std::string::npos);
      REQUIRE(chown((rd.root / "run" / "lab").c_str(), 65534, 65534) == 0);
      CHECK_FALSE(state::Dir::open("lab"));
    }
  }
}

TEST_CASE("a lock excludes a second holder until it is released, and the waiter wakes then") {
  RunDir rd;
  auto first = state::Lock::acquire("fabric", "vpcfw-test", std::chrono::milliseconds(100));
  REQUIRE(first);
  std::string told;
  auto busy = state::Lock::acquire("fabric", "vpcfw-test", std::chrono::milliseconds(150),
                                   [&](const std::string& who) { told = who; });
  REQUIRE_FALSE(busy);
  CHECK(busy.error().code == ErrorCode::kBusy);
  CHECK(told == "pid " + std::to_string(getpid()));
  // Another name is another lock.
  CHECK(state::Lock::acquire("fabric", "vpcfw-other", std::chrono::milliseconds(10)));
  // Released while a waiter waits: the waiter gets it, long before its timeout.
  std::atomic<bool> released{false};
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    released = true;
    auto drop = std::move(*first);
  });
  const auto t0 = std::chrono::steady_clock::now();
  auto second = state::Lock::acquire("fabric", "vpcfw-test", std::chrono::milliseconds(20'000));
  const auto waited = std::chrono::steady_clock::now() - t0;
  t.join();
  REQUIRE(second);
  CHECK(released);
  CHECK(waited < std::chrono::milliseconds(5'000));
}

TEST_CASE("lock file names never merge two different objects") {
  CHECK(state::lockFileName("fabric", "vpcfw-a") == "fabric.vpcfw-a");
  CHECK(state::lockFileName("fabric", "a/b") != state::lockFileName("fabric", "a_b"));
  CHECK(state::lockFileName("fabric", "../x") != state::lockFileName("fabric", "__x"));
  CHECK(state::isSafeComponent(state::lockFileName("fabric", "../../etc/passwd")));
  CHECK(state::isSafeComponent(state::lockFileName("fabric", std::string(300, '/'))));
}
