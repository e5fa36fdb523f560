// What the loader agrees to read as a config file, tried as an attacker
// would: FIFOs (which must not block), devices, directories, sockets, symlinks
// to them, files above the size limit (also files whose size says 0), files
// that fail to read; and `vpcfw validate --json` on bytes that are not UTF-8.
#include <fcntl.h>
#include <unistd.h>
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "support/test_config.h"
#include "vpcfw/cli/cli.h"
#include "vpcfw/config/loader.h"

namespace {

namespace fs = std::filesystem;
using vpcfw::config::LoadOptions;

const char* kValid = "vpcs:\n  - {name: v, cidr: 10.0.0.0/16}\n";

// A fresh directory for one test, removed with everything in it.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "vpcfw-input-test-XXXXXX").string();
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name, const std::string& content) const {
    auto p = (path / name).string();
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
};

struct Loaded {
  bool ok = false;
  std::vector<std::string> diags;  // formatted
};

Loaded load(const std::string& path, const LoadOptions& options = {}) {
  vpcfw::Diagnostics d;
  Loaded r;
  r.ok = vpcfw::config::loadConfigFile(path, d, options).has_value();
  for (const auto& x : d.all()) r.diags.push_back(vpcfw::formatDiagnostic(x));
  return r;
}

// Loads `path` on a thread; if it has not returned within 5 s (it blocks on a
// FIFO), a writer is attached and closed so the thread can end, and the test
// fails.
Loaded loadWithTimeout(const std::string& path, const std::string& fifo) {
  std::promise<Loaded> done;
  auto result = done.get_future();
  std::thread t([&] { done.set_value(load(path)); });
  bool prompt = result.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  if (!prompt) {
    int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (w >= 0) ::close(w);
  }
  t.join();
  CHECK_MESSAGE(prompt, "loading " << path << " blocked");
  return result.get();
}

}  // namespace

TEST_CASE("a regular file is read but a FIFO (also through a symlink) is refused at once") {
  TempDir dir;
  auto good = dir.file("good.yaml", kValid);
  CHECK(load(good).ok);  // baseline: the same directory, a regular file

  auto fifo = (dir.path / "config.yaml").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  auto r = loadWithTimeout(fifo, fifo);
  CHECK_FALSE(r.ok);
  REQUIRE(r.diags.size() == 1);
  CHECK(r.diags[0] == fifo + ": error: the config path is a FIFO, not a regular file");

  auto link = (dir.path / "link.yaml").string();
  REQUIRE(::symlink(fifo.c_str(), link.c_str()) == 0);
  r = loadWithTimeout(link, fifo);
  CHECK_FALSE(r.ok);
  REQUIRE(r.diags.size() == 1);
  CHECK(r.diags[0] == link + ": error: the config path is a FIFO, not a regular file");

  // A FIFO with a writer holding valid YAML is still not read.
  int w = ::open(fifo.c_str(), O_RDWR | O_NONBLOCK);
  REQUIRE(w >= 0);
  REQUIRE(::write(w, kValid, std::strlen(kValid)) > 0);
  r = loadWithTimeout(fifo, fifo);
  ::close(w);
  CHECK_FALSE(r.ok);
  REQUIRE(r.diags.size() == 1);
  CHECK(r.diags[0].find("is a FIFO") != std::string::npos);
}

TEST_CASE("directories, devices and sockets are refused with a plain message") {
  TempDir dir;
  auto good = dir.file("good.yaml", kValid);
  CHECK(load(good).ok);

  auto sub = dir.path / "conf.d";
  fs::create_directory(sub);
  auto r = load(sub.string());
  CHECK_FALSE(r.ok);
  REQUIRE(r.diags.size() == 1);
  CHECK(r.diags[0] == sub.string() + ": error: the config path is a directory, not a file");

  for (const char* dev : {"/dev/null", "/dev/zero", "/dev/urandom"}) {
    CAPTURE(dev);
    r = load(dev);
    CHECK_FALSE(r.ok);
    REQUIRE(r.diags.size() == 1);
    CHECK(r.diags[0] == std::string(dev) + ": error: the config path is a character device, not a regular file");
  }
  auto link = (dir.path / "zero.yaml").string();
  REQUIRE(::symlink("/dev/zero", link.c_str()) == 0);
  r = load(link);
  REQUIRE(r.diags.size() == 1);
  CHECK(r.diags[0] == link + ": error: the config path is a character device, not a regular file");

  auto sock = (dir.path / "sock.yaml").string();
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(s >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  REQUIRE(sock.size() < sizeof addr.sun_path);
  std::memcpy(addr.sun_path, sock.c_str(), sock.size() + 1);
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  r = load(sock);
  ::close(s);
  REQUIRE(r.diags.size() == 1);
  CHECK(r.diags[0] == sock + ": error: the config path is a socket, not a regular file");
}

TEST_CASE("the size limit is checked before reading and while reading") {
  CHECK(LoadOptions{}.maxBytes == 64u * 1024 * 1024);
  TempDir dir;
  std::string text = kValid;
  auto path = dir.file("c.yaml", text);
  LoadOptions exact;
  exact.maxBytes = text.size();
  CHECK(load(path, exact).ok);  // at the limit: read

  LoadOptions small;
  small.maxBytes = text.size() - 1;
  small.limitHint = "raise it";
  vpcfw::Diagnostics d;
  CHECK_FALSE(vpcfw::config::loadConfigFile(path, d, small));
  REQUIRE(d.all().size() == 1);
  CHECK(vpcfw::formatDiagnostic(d.all()[0]) == path + ": error: the config file is larger than the limit of " +
                                                   std::to_string(small.maxBytes) + " bytes\n  hint: raise it");

  // /proc files report size 0: only the count while reading can stop them.
  vpcfw::Diagnostics p;
  auto maps = vpcfw::config::readConfigFile("/proc/self/maps", LoadOptions{}, p);
  REQUIRE(maps.has_value());
  CHECK(maps->size() > 64);  // baseline: it is read although its size says 0
  LoadOptions tiny;
  tiny.maxBytes = 64;
  CHECK_FALSE(vpcfw::config::readConfigFile("/proc/self/maps", tiny, p));
  REQUIRE(p.all().size() == 1);
  CHECK(p.all()[0].message == "the config file is larger than the limit of 64 bytes");
}

TEST_CASE("read errors are located errors with the system's reason") {
  // Reading /proc/self/mem from offset 0 fails with EIO (nothing is mapped there).
  auto r = load("/proc/self/mem");
  CHECK_FALSE(r.ok);
  REQUIRE(r.diags.size() == 1);
  CHECK(r.diags[0] == "/proc/self/mem: error: cannot read config file: Input/output error");

  TempDir dir;
  auto missing = (dir.path / "missing.yaml").string();
  r = load(missing);
  REQUIRE(r.diags.size() == 1);
  CHECK(r.diags[0] == missing + ": error: cannot open config file: No such file or directory");
  auto dangling = (dir.path / "dangling.yaml").string();
  REQUIRE(::symlink(missing.c_str(), dangling.c_str()) == 0);
  r = load(dangling);
  REQUIRE(r.diags.size() == 1);
  CHECK(r.diags[0] == dangling + ": error: cannot open config file: No such file or directory");
  auto notDir = dir.file("plain", "x") + "/c.yaml";
  r = load(notDir);
  REQUIRE(r.diags.size() == 1);
  CHECK(r.diags[0] == notDir + ": error: cannot open config file: Not a directory");
}

namespace {

using vpcfw::test::runCli;

}  // namespace

TEST_CASE("VPCFW_MAX_CONFIG_BYTES sets the CLI's limit and a malformed value is an error") {
  TempDir dir;
  auto path = dir.file("c.yaml", kValid);
  CHECK(runCli({"validate", path}).status == 0);
  ::setenv("VPCFW_MAX_CONFIG_BYTES", "10", 1);
  auto r = runCli({"validate", path});
  CHECK(r.status == 2);
  CHECK(r.err.find(path + ": error: the config file is larger than the limit of 10 bytes\n"
                          "  hint: set VPCFW_MAX_CONFIG_BYTES") != std::string::npos);
  for (const char* bad : {"", "ten", "-1", "0", "10k", "99999999999999999999999"}) {
    CAPTURE(bad);
    ::setenv("VPCFW_MAX_CONFIG_BYTES", bad, 1);
    r = runCli({"validate", path});
    CHECK(r.status == 2);
    CHECK(r.err.find("VPCFW_MAX_CONFIG_BYTES: error: must be a positive number of bytes") != std::string::npos);
  }
  ::setenv("VPCFW_MAX_CONFIG_BYTES", "1000", 1);
  CHECK(runCli({"validate", path}).status == 0);
  ::unsetenv("VPCFW_MAX_CONFIG_BYTES");
}

TEST_CASE("validate --json prints valid JSON for a file whose name and content are not UTF-8") {
  TempDir dir;
  // Invalid UTF-8 in the file name, a name, a key, a description and a value.
  auto path = dir.file("bad\xff\xfe.yaml",
                       "vpcs:\n"
                       "  - {name: \"v\xff\", cidr: 10.0.0.0/16}\n"
                       "  - {name: w, cidr: \"10.1.0.0/16\xc0\"}\n"
                       "security_groups:\n"
                       "  - {name: g, vpc: w, description: \"\xe2\x80\xae\x1b[2J\"}\n"
                       "subnets:\n"
                       "  - {name: s, vpc: w, cidr: 10.1.0.0/24, \"k\xed\xa0\x80\": 1}\n");
  auto r = runCli({"validate", "--json", path});
  CHECK(r.status == 2);
  nlohmann::json j;
  REQUIRE_NOTHROW(j = nlohmann::json::parse(r.out));  // parse() refuses invalid UTF-8
  CHECK(j["valid"] == false);
  CHECK(j["file"].get<std::string>().find("bad\xef\xbf\xbd") != std::string::npos);  // U+FFFD for each bad byte
  REQUIRE(j["diagnostics"].size() == 4);
  for (const auto& d : j["diagnostics"]) {
    CHECK(d["file"].get<std::string>().find("bad\\xff\\xfe.yaml") != std::string::npos);
    CHECK(d["message"].get<std::string>().find('\n') == std::string::npos);
  }
  CHECK(j["diagnostics"][0]["message"] == "VPC: 'name' must be printable UTF-8 text, not 'v\\xff'");
  CHECK(j["diagnostics"][1]["message"] == "VPC cidr: '10.1.0.0/16\\xc0' is not a CIDR block");
  CHECK(j["diagnostics"][2]["message"] ==
        "security group: 'description' must be printable UTF-8 text, not '\\xe2\\x80\\xae\\x1b[2J'");
  CHECK(j["diagnostics"][3]["message"] == "subnet: unknown key 'k\\xed\\xa0\\x80'");

  // Text output: the same escapes, nothing raw reaches the terminal.
  r = runCli({"validate", path});
  CHECK(r.err.find("\x1b") == std::string::npos);
  CHECK(r.err.find("\xff") == std::string::npos);
  CHECK(r.err.find("bad\\xff\\xfe.yaml: 4 error(s); nothing was used") != std::string::npos);
  CHECK(r.err.find("bad\\xff\\xfe.yaml:2:12: error: VPC: 'name' must be printable UTF-8 text") != std::string::npos);

  // A valid config under a non-UTF-8 name: JSON too.
  auto ok = dir.file("ok\x80.yaml", kValid);
  r = runCli({"validate", "--json", ok});
  CHECK(r.status == 0);
  REQUIRE_NOTHROW(j = nlohmann::json::parse(r.out));
  CHECK(j["valid"] == true);
}
