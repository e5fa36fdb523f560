// Config directories (ConfigSource): which files count, how their fragments
// merge, every kind of object two files may not both define, the per-file
// cache a reload relies on (identity and content, never the mtime alone), the
// total size bound, and the files an attacker might place in conf.d.
#include "vpcfw/config/source.h"

#include <fcntl.h>
#include <unistd.h>
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "vpcfw/cli/cli.h"

namespace {

namespace fs = std::filesystem;
using vpcfw::Diagnostics;
using vpcfw::config::ConfigSource;
using vpcfw::config::LoadOptions;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "vpcfw-source-test-XXXXXX").string();
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    path = t;
    fs::create_directory(path / "conf.d");
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name, const std::string& content) const {
    auto p = (path / name).string();
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
    return p;
  }
  std::string dir() const { return path.string(); }
};

const std::string kNetwork =
    "vpcs:\n"
    "  - {name: v, cidr: 10.0.0.0/16}\n"
    "  - {name: w, cidr: 10.1.0.0/16}\n"
    "subnets:\n"
    "  - {name: s, vpc: v, cidr: 10.0.1.0/24}\n";

std::string formatted(const Diagnostics& d) { return d.format(); }

struct Result {
  bool ok;
  Diagnostics diags;
};

Result loadDir(const std::string& dir, const LoadOptions& o = {}) {
  Result r{false, Diagnostics{}};
  auto src = ConfigSource::open(dir, o);
  r.ok = src.load(r.diags).has_value();
  return r;
}

}  // namespace

TEST_CASE("a config directory merges vpcfw.yaml and conf.d files in name order") {
  TempDir d;
  d.file("vpcfw.yaml", kNetwork + "limits: {profile: lab}\n");
  // Written in reverse order: the merge follows names, not creation.
  d.file("conf.d/20-b.yaml", "instances:\n  - {name: i2, subnet: s, private_ip: 10.0.1.20}\n");
  d.file("conf.d/10-a.yaml",
         "instances:\n  - {name: i1, subnet: s, private_ip: 10.0.1.10}\n  - {name: i0, subnet: s, private_ip: "
         "10.0.1.5}\n");
  auto src = ConfigSource::open(d.dir());
  Diagnostics diags;
  auto m = src.load(diags);
  REQUIRE_MESSAGE(m, formatted(diags));
  REQUIRE(m->instances.size() == 3);
  CHECK(m->instances[0].name == "i1");
  CHECK(m->instances[1].name == "i0");
  CHECK(m->instances[2].name == "i2");
  CHECK(m->limits.profile == vpcfw::model::Limits::Profile::kLab);
  CHECK(m->instances[2].origin.at.file == d.dir() + "/conf.d/20-b.yaml");
  CHECK(m->vpcs[0].origin.at.file == d.dir() + "/vpcfw.yaml");
  CHECK(src.files() == std::vector<std::string>{d.dir() + "/vpcfw.yaml", d.dir() + "/conf.d/10-a.yaml",
                                                d.dir() + "/conf.d/20-b.yaml"});
  CHECK(src.directories() == std::vector<std::string>{d.dir(), d.dir() + "/conf.d"});
  // Same input, same model: a second source gives the same order.
  Diagnostics again;
  auto m2 = ConfigSource::open(d.dir()).load(again);
  REQUIRE(m2);
  for (std::size_t i = 0; i < m->instances.size(); ++i) CHECK(m2->instances[i].name == m->instances[i].name);
}

TEST_CASE("a config directory without vpcfw.yaml uses conf.d alone and one with no yaml file is an error") {
  TempDir d;
  auto r = loadDir(d.dir());
  CHECK_FALSE(r.ok);
  CHECK(formatted(r.diags).find("holds no vpcfw.yaml and no conf.d/*.yaml file") != std::string::npos);
  d.file("conf.d/net.yaml", kNetwork);
  auto ok = loadDir(d.dir());
  CHECK_MESSAGE(ok.ok, formatted(ok.diags));
  // A file given directly is still one file; its directory is what to watch.
  auto src = ConfigSource::open(d.dir() + "/conf.d/net.yaml");
  Diagnostics diags;
  CHECK(src.load(diags));
  CHECK(src.directories() == std::vector<std::string>{d.dir() + "/conf.d"});
}

// Each kind of object, written twice in two files: the second is an error at
// its name with a hint naming the first place; written once, it is valid.
TEST_CASE("two files defining the same object is an error naming both places, for every kind of object") {
  struct Case {
    const char* kind;
    std::string yaml;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"VPC", "vpcs:\n  - {name: x, cidr: 10.9.0.0/16}\n", "VPC 'x' is already defined in another file"},
      {"subnet", "subnets:\n  - {name: x, vpc: v, cidr: 10.0.9.0/24}\n",
       "subnet 'x' is already defined in another file"},
      {"instance", "instances:\n  - {name: x, subnet: s, private_ip: 10.0.1.9}\n",
       "instance 'x' is already defined in another file"},
      {"network ACL", "network_acls:\n  - {name: x, vpc: v}\n",
       "network ACL 'x' of VPC 'v' is already defined in another file"},
      {"security group", "security_groups:\n  - {name: x, vpc: v}\n",
       "security group 'x' of VPC 'v' is already defined in another file"},
      {"route table", "route_tables:\n  - {name: x, vpc: v}\n",
       "route table 'x' of VPC 'v' is already defined in another file"},
      {"prefix list", "prefix_lists:\n  - {name: x, entries: [192.0.2.0/24], max_entries: 5}\n",
       "prefix list 'x' is already defined in another file"},
      {"internet gateway", "internet_gateways:\n  - {name: x, vpc: v}\n",
       "internet gateway 'x' is already defined in another file"},
      {"peering", "peerings:\n  - {name: x, requester: v, accepter: w}\n",
       "peering 'x' is already defined in another file"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.kind);
    TempDir d;
    d.file("vpcfw.yaml", kNetwork);
    d.file("conf.d/a.yaml", "# first\n" + c.yaml);
    auto once = loadDir(d.dir());
    CHECK_MESSAGE(once.ok, formatted(once.diags));
    d.file("conf.d/b.yaml", c.yaml);
    auto twice = loadDir(d.dir());
    CHECK_FALSE(twice.ok);
    REQUIRE(twice.diags.errorCount() == 1);
    const auto& e = twice.diags.all().front();
    CHECK(e.where.file == d.dir() + "/conf.d/b.yaml");
    CHECK(e.where.line == 2);
    CHECK(e.message == c.message);
    CHECK(e.hint == "first defined at " + d.dir() + "/conf.d/a.yaml:3:" + std::to_string(e.where.column));
  }
}

TEST_CASE("VPC-scoped names may repeat across files in different VPCs") {
  for (std::string key : {"network_acls", "security_groups", "route_tables"}) {
    CAPTURE(key);
    TempDir d;
    d.file("vpcfw.yaml", kNetwork);
    d.file("conf.d/a.yaml", key + ":\n  - {name: x, vpc: v}\n");
    d.file("conf.d/b.yaml", key + ":\n  - {name: x, vpc: w}\n");
    auto r = loadDir(d.dir());
    CHECK_MESSAGE(r.ok, formatted(r.diags));
  }
}

TEST_CASE("limits in two files is an error naming both") {
  TempDir d;
  d.file("vpcfw.yaml", kNetwork + "limits: {profile: lab}\n");
  auto once = loadDir(d.dir());
  CHECK_MESSAGE(once.ok, formatted(once.diags));
  d.file("conf.d/more.yaml", "limits:\n  vpcs: 10\n");
  auto twice = loadDir(d.dir());
  CHECK_FALSE(twice.ok);
  REQUIRE(twice.diags.errorCount() == 1);
  const auto& e = twice.diags.all().front();
  CHECK(e.where.file == d.dir() + "/conf.d/more.yaml");
  CHECK(e.message == "limits are already set in another file");
  CHECK(e.hint.find(d.dir() + "/vpcfw.yaml:6:") != std::string::npos);
}

TEST_CASE("hidden files, editor temporaries and other extensions in conf.d are not read") {
  TempDir d;
  d.file("conf.d/net.yaml", kNetwork);
  for (const char* name :
       {".hidden.yaml", ".net.yaml.swp", "net.yaml~", "#net.yaml#", "net.yml", "net.yaml.bak", "README", ".yaml"})
    d.file(std::string("conf.d/") + name, "[[[ not yaml");
  auto src = ConfigSource::open(d.dir());
  Diagnostics diags;
  CHECK_MESSAGE(src.load(diags), formatted(diags));
  CHECK(src.files() == std::vector<std::string>{d.dir() + "/conf.d/net.yaml"});
  // Baseline: the same bytes under a name that counts are read (and refused).
  d.file("conf.d/zz.yaml", "[[[ not yaml");
  Diagnostics bad;
  CHECK_FALSE(ConfigSource::open(d.dir()).load(bad));
  CHECK(formatted(bad).find("conf.d/zz.yaml:") != std::string::npos);
}

TEST_CASE("a FIFO, a device, a socket path or a directory named x.yaml in conf.d is refused, not skipped") {
  struct Kind {
    const char* name;
    std::string expect;
  };
  for (const Kind& k : {Kind{"fifo", "is a FIFO"}, Kind{"device", "is a character device"},
                        Kind{"directory", "is a directory"}, Kind{"vpcfw.yaml directory", "is a directory"}}) {
    CAPTURE(k.name);
    TempDir d;
    d.file("conf.d/net.yaml", kNetwork);
    REQUIRE(loadDir(d.dir()).ok);
    std::string target = (d.path / "conf.d" / "x.yaml").string();
    if (std::string(k.name) == "fifo")
      REQUIRE(::mkfifo(target.c_str(), 0600) == 0);
    else if (std::string(k.name) == "device")
      fs::create_symlink("/dev/zero", target);
    else if (std::string(k.name) == "directory")
      fs::create_directory(target);
    else {
      target = (d.path / "vpcfw.yaml").string();
      fs::create_directory(target);
    }
    auto r = loadDir(d.dir());  // a FIFO must not block: it is never opened for reading
    CHECK_FALSE(r.ok);
    auto text = formatted(r.diags);
    CHECK(text.find(target + ": error: the config path " + k.expect) != std::string::npos);
  }
}

TEST_CASE("symlinks in conf.d: to a regular file they count, a loop or a dangling one is an error") {
  TempDir d;
  auto real = d.file("net.txt", kNetwork);
  fs::create_symlink(real, d.path / "conf.d" / "net.yaml");
  auto ok = loadDir(d.dir());
  CHECK_MESSAGE(ok.ok, formatted(ok.diags));
  fs::create_symlink("loop.yaml", d.path / "conf.d" / "loop.yaml");
  auto loop = loadDir(d.dir());
  CHECK_FALSE(loop.ok);
  CHECK(formatted(loop.diags)
            .find("conf.d/loop.yaml: error: cannot open config file: Too many levels of symbolic links") !=
        std::string::npos);
  fs::remove(d.path / "conf.d" / "loop.yaml");
  fs::create_symlink("gone.yaml", d.path / "conf.d" / "dangling.yaml");
  auto dangling = loadDir(d.dir());
  CHECK_FALSE(dangling.ok);
  CHECK(formatted(dangling.diags).find("conf.d/dangling.yaml: error: cannot open config file: No such file") !=
        std::string::npos);
}

TEST_CASE("a reload parses only the files that changed, by content as well as identity") {
  TempDir d;
  d.file("vpcfw.yaml", kNetwork);
  auto a = d.file("conf.d/a.yaml", "instances:\n  - {name: a, subnet: s, private_ip: 10.0.1.10}\n");
  d.file("conf.d/b.yaml", "instances:\n  - {name: b, subnet: s, private_ip: 10.0.1.11}\n");
  auto src = ConfigSource::open(d.dir());
  Diagnostics d1;
  REQUIRE(src.load(d1));
  CHECK(src.filesParsed() == 3);
  Diagnostics d2;
  REQUIRE(src.load(d2));
  CHECK(src.filesParsed() == 0);

  // One file edited: only it is parsed, and the model shows the edit.
  d.file("conf.d/b.yaml", "instances:\n  - {name: bb, subnet: s, private_ip: 10.0.1.11}\n");
  Diagnostics d3;
  auto m3 = src.load(d3);
  REQUIRE(m3);
  CHECK(src.filesParsed() == 1);
  CHECK(m3->instances[1].name == "bb");

  // Same size and the old mtime put back, different bytes: parsed again.
  struct stat before {};
  REQUIRE(::stat(a.c_str(), &before) == 0);
  d.file("conf.d/a.yaml", "instances:\n  - {name: z, subnet: s, private_ip: 10.0.1.10}\n");
  timespec times[2] = {before.st_atim, before.st_mtim};
  REQUIRE(::utimensat(AT_FDCWD, a.c_str(), times, 0) == 0);
  struct stat after {};
  REQUIRE(::stat(a.c_str(), &after) == 0);
  REQUIRE(after.st_size == before.st_size);
  REQUIRE(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
  Diagnostics d4;
  auto m4 = src.load(d4);
  REQUIRE(m4);
  CHECK(src.filesParsed() == 1);
  CHECK(m4->instances[0].name == "z");

  // A file removed: nothing parsed, its objects gone; a warning of a cached
  // file is shown on every load.
  fs::remove(d.path / "conf.d" / "b.yaml");
  d.file("conf.d/w.yaml", "prefix_lists:\n  - {name: p, entries: [192.0.2.1/24], max_entries: 5}\n");
  Diagnostics d5;
  auto m5 = src.load(d5);
  REQUIRE(m5);
  CHECK(src.filesParsed() == 1);
  CHECK(m5->instances.size() == 1);
  CHECK(d5.format().find("host bits set") != std::string::npos);
  Diagnostics d6;
  REQUIRE(src.load(d6));
  CHECK(src.filesParsed() == 0);
  CHECK(d6.format() == d5.format());
  CHECK(src.files().size() == 3);
}

TEST_CASE("the size limit bounds each file and all files together") {
  TempDir d;
  auto a = d.file("conf.d/a.yaml", kNetwork);
  d.file("conf.d/b.yaml", "instances:\n  - {name: b, subnet: s, private_ip: 10.0.1.11}\n");
  const auto total = fs::file_size(a) + fs::file_size(d.path / "conf.d" / "b.yaml");
  LoadOptions enough;
  enough.maxBytes = total;
  auto ok = loadDir(d.dir(), enough);
  CHECK_MESSAGE(ok.ok, formatted(ok.diags));
  LoadOptions tight;
  tight.maxBytes = total - 1;  // each file fits, the two together do not
  tight.limitHint = "raise it";
  REQUIRE(fs::file_size(a) <= tight.maxBytes);
  auto r = loadDir(d.dir(), tight);
  CHECK_FALSE(r.ok);
  CHECK(formatted(r.diags).find("conf.d/b.yaml: error: the config files are together larger than the limit of " +
                                std::to_string(total - 1) + " bytes") != std::string::npos);
}

TEST_CASE("vpcfw validate takes a config directory") {
  TempDir d;
  d.file("vpcfw.yaml", kNetwork);
  d.file("conf.d/i.yaml", "instances:\n  - {name: i, subnet: s, private_ip: 10.0.1.10}\n");
  std::ostringstream out, err;
  CHECK(vpcfw::cli::run({"validate", d.dir()}, out, err) == 0);
  CHECK(out.str().find("1 instances") != std::string::npos);
  d.file("conf.d/j.yaml", "instances:\n  - {name: i, subnet: s, private_ip: 10.0.1.11}\n");
  std::ostringstream out2, err2;
  CHECK(vpcfw::cli::run({"validate", d.dir()}, out2, err2) != 0);
  CHECK(err2.str().find("conf.d/j.yaml:2:") != std::string::npos);
  CHECK(err2.str().find("instance 'i' is already defined in another file") != std::string::npos);
}
