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
#include <map>
#include <random>
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
  CHECK(m->instances[2].origin.at().file == d.dir() + "/conf.d/20-b.yaml");
  CHECK(m->vpcs[0].origin.at().file == d.dir() + "/vpcfw.yaml");
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

namespace {

// A random directory config, edited at random: vpcfw.yaml holds the network,
// conf.d files hold groups (and a NACL), some rules deliberately wrong or
// warned about, groups duplicated or moved across files.
class RandomConfig {
 public:
  explicit RandomConfig(unsigned seed) : rng_(seed) {
    ipv6_ = coin(2);
    lab_ = coin(2);
    for (int f = 0; f < 1 + pick(5); ++f) {
      auto& groups = files_[fileName()];
      for (int g = 0; g < pick(4); ++g) groups.push_back(newGroup());
    }
  }

  // Writes the files whose text changed (the others keep their identity, so
  // the cached source reuses them) and removes the ones gone.
  void write(const TempDir& d) {
    std::map<std::string, std::string> now{{"vpcfw.yaml", main()}};
    for (const auto& [name, groups] : files_) {
      std::string text = "security_groups:\n";
      for (const auto& g : groups) text += g;
      if (name == naclFile_) text += nacl_;
      if (groups.empty() && name != naclFile_) text = name.size() % 2 ? "" : "# nothing yet\n";
      now["conf.d/" + name] = text;
    }
    for (const auto& [name, text] : written_)
      if (!now.contains(name)) fs::remove(d.path / name);
    for (const auto& [name, text] : now)
      if (!written_.contains(name) || written_[name] != text) d.file(name, text);
    written_ = std::move(now);
  }

  // One random edit; says which, for the failure message.
  std::string edit() {
    switch (pick(11)) {
      case 0: {  // a rule's port
        auto* g = someGroup();
        if (!g) return "none";
        auto at = g->find("ports: ");
        if (at == std::string::npos) return "none";
        auto end = g->find_first_of(",}", at);
        g->replace(at + 7, end - at - 7, std::to_string(1 + pick(65535)));
        return "port";
      }
      case 1: {  // a group added
        files_[someFile()].push_back(newGroup());
        return "add group";
      }
      case 2: {  // a group removed
        auto& groups = files_[someFile()];
        if (groups.empty()) return "none";
        groups.erase(groups.begin() + pick(static_cast<int>(groups.size())));
        return "remove group";
      }
      case 3: {  // a group moved to another file
        auto& from = files_[someFile()];
        if (from.empty()) return "none";
        auto k = pick(static_cast<int>(from.size()));
        auto g = from[k];
        from.erase(from.begin() + k);
        files_[someFile()].push_back(g);
        return "move group";
      }
      case 4: {  // a group copied into another file: a duplicate across files (or within one)
        auto* g = someGroup();
        if (!g) return "none";
        files_[someFile()].push_back(*g);
        return "duplicate group";
      }
      case 5: {  // an error, or a warning, in a rule
        auto* g = someGroup();
        if (!g) return "none";
        static const char* bad[] = {"      - {protocol: tcp, ports: 70000, cidr: 10.0.0.0/8}\n",
                                    "      - {protocol: tcp, ports: 80, group: nowhere}\n",
                                    "      - {protocol: udp, ports: 53, cidr: 10.1.2.3/8}\n",
                                    "      - {protocol: icmp, ports: 5, cidr: 192.0.2.0/24}\n",
                                    "      - {protocol: tcp, cidr: 192.0.2.0/24}\n",
                                    "      - {protocol: tcp, ports: 22, prefix_list: pl}\n",
                                    "      - {protocol: tcp, ports: 1-2, cidr: 127.0.0.0/8}\n",
                                    "      - [not, a, map]\n",
                                    "      - {protocol: tcp, ports: 22, cidr: [oops}\n"};
        *g += bad[pick(std::size(bad))];
        return "bad rule";
      }
      case 6: {  // errors fixed: every rule that is not one of ours dropped
        for (auto& [name, groups] : files_)
          for (auto& g : groups) {
            std::string kept;
            std::istringstream in(g);
            for (std::string line; std::getline(in, line);)
              if (line.find("70000") == std::string::npos && line.find("nowhere") == std::string::npos &&
                  line.find("[not") == std::string::npos && line.find("[oops") == std::string::npos &&
                  line.find("icmp, ports") == std::string::npos && line.find("tcp, cidr") == std::string::npos)
                kept += line + "\n";
            g = kept;
          }
        return "fix";
      }
      case 7: {  // a file renamed, removed or added
        auto name = someFile();
        auto r = pick(3);
        if (r == 0) {
          auto groups = files_[name];
          files_.erase(name);
          files_[fileName()] = groups;
          if (name == naclFile_) naclFile_ = files_.begin()->first;
          return "rename file";
        }
        if (r == 1 && files_.size() > 1 && name != naclFile_) {
          files_.erase(name);
          return "remove file";
        }
        files_[fileName()].push_back(newGroup());
        return "add file";
      }
      case 8:  // vpcfw.yaml: IPv6, the profile, the prefix list
        if (coin(2))
          ipv6_ = !ipv6_;
        else if (coin(2))
          lab_ = !lab_;
        else
          prefixList_ = !prefixList_;
        return "main";
      case 9: {  // a NACL in some file, or none
        if (coin(3)) {
          nacl_.clear();
          return "no nacl";
        }
        naclFile_ = someFile();
        nacl_ = "network_acls:\n  - name: acl\n    vpc: v\n    ingress:\n";
        for (int r = 0; r < 1 + pick(4); ++r)
          nacl_ += "      - {rule: " + std::to_string(10 * (1 + pick(5))) +
                   ", protocol: " + (coin(2) ? "tcp, ports: 80" : "icmpv6, icmp_type: 1") +
                   ", cidr: 10.0.0.0/8, action: allow}\n";
        return "nacl";
      }
      default:  // nothing changed: every file from the cache
        return "nothing";
    }
  }

 private:
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  int pick(std::size_t n) { return pick(static_cast<int>(n)); }
  bool coin(int n) { return pick(n) == 0; }

  std::string fileName() { return std::to_string(10 + pick(80)) + "-f" + std::to_string(next_++) + ".yaml"; }
  std::string someFile() {
    auto it = files_.begin();
    std::advance(it, pick(files_.size()));
    return it->first;
  }
  std::string* someGroup() {
    auto& groups = files_[someFile()];
    if (groups.empty()) return nullptr;
    return &groups[pick(groups.size())];
  }

  bool used(const std::string& name) const {
    for (const auto& [file, groups] : files_)
      for (const auto& g : groups)
        if (g.starts_with("  - name: " + name + "\n")) return true;
    return false;
  }
  // A group that exists now (it may be gone later), or g1.
  std::string someName() {
    for (int tries = 0; tries < 12; ++tries) {
      std::string name = "g" + std::to_string(pick(12));
      if (used(name)) return name;
    }
    return "g1";
  }

  std::string newGroup() {
    const int n = next_++;
    // Names from a small pool, an unused one when there is: the duplicate
    // edit is what makes duplicates, and most steps stay valid.
    std::string name = "g" + std::to_string(pick(12));
    for (int tries = 0; tries < 12 && used(name); ++tries) name = "g" + std::to_string(pick(12));
    std::string g = "  - name: " + name + "\n    vpc: v\n";
    if (coin(4)) return g;  // no rules, default egress
    g += "    ingress:\n";
    for (int r = 0; r < 1 + pick(5); ++r) {
      switch (pick(5)) {
        case 0:
          g += "      - {protocol: tcp, ports: " + std::to_string(1000 + n * 10 + r) + ", cidr: 192.0." +
               std::to_string(pick(256)) + ".0/24}\n";
          break;
        case 1:
          g += "      - {protocol: icmp, icmp_type: " + std::to_string(pick(12)) + ", cidr: 198.51.100.0/24}\n";
          break;
        case 2:
          g += "      - {protocol: udp, ports: " + std::to_string(2000 + n * 10 + r) + ", group: " + someName() + "}\n";
          break;
        case 3:
          g += "      - {protocol: tcp, ports: " + std::to_string(3000 + n * 10 + r) + ", prefix_list: pl}\n";
          break;
        default:
          g += "      - {protocol: 47, cidr: 203.0.113.0/24}\n";
      }
    }
    if (coin(3)) g += "    egress: []\n";
    return g;
  }

  std::string main() const {
    std::string m = std::string("limits: {profile: ") + (lab_ ? "lab" : "aws") + "}\n";
    m += std::string("vpcs:\n  - {name: v, cidr: 10.0.0.0/16") + (ipv6_ ? ", ipv6_cidr: 2001:db8:0:100::/56" : "") +
         "}\n";
    m += "subnets:\n  - {name: s, vpc: v, cidr: 10.0.1.0/24}\n";
    m += "instances:\n  - {name: i, subnet: s, private_ip: 10.0.1.10, security_groups: [g1]}\n";
    if (prefixList_) m += "prefix_lists:\n  - {name: pl, entries: [192.0.2.0/24], max_entries: 3}\n";
    return m;
  }

  std::mt19937 rng_;
  int next_ = 0;
  bool ipv6_ = false, lab_ = false, prefixList_ = true;
  std::map<std::string, std::vector<std::string>> files_;  // conf.d name -> groups' text
  std::string naclFile_, nacl_;
  std::map<std::string, std::string> written_;  // path in the directory -> text
};

}  // namespace

// The cached source (the daemon's) against a fresh one-shot load after every
// edit: the same model, field by field, and the same diagnostics, in order.
TEST_CASE("a cached reload equals a fresh load after every random edit") {
  std::size_t reused = 0;  // loads that took some file from the cache
  for (unsigned seed = 1; seed <= 40; ++seed) {
    TempDir d;
    RandomConfig cfg(seed);
    auto cached = ConfigSource::open(d.dir());
    for (int step = 0; step < 40; ++step) {
      const std::string what = step == 0 ? "initial" : cfg.edit();
      cfg.write(d);
      CAPTURE(seed);
      CAPTURE(step);
      CAPTURE(what);
      Diagnostics inc, fresh;
      auto a = cached.load(inc);
      auto b = ConfigSource::open(d.dir(), {}, false).load(fresh);
      REQUIRE(inc.format() == fresh.format());
      REQUIRE(a.has_value() == b.has_value());
      if (a) REQUIRE(*a == *b);
      if (cached.filesParsed() < cached.files().size()) ++reused;
    }
  }
  CHECK(reused > 400);  // the comparison is of the incremental path, not of two fresh loads
}

// The groups of an unchanged file keep their rule checks only while what they
// refer to resolves as before: removed, moved to another index, or made
// another VPC's, the reference is checked again.
TEST_CASE("a cached reload checks again the rules whose references changed") {
  TempDir d;
  d.file("vpcfw.yaml", kNetwork + "prefix_lists:\n  - {name: pl, entries: [192.0.2.0/24], max_entries: 3}\n");
  d.file("conf.d/20-a.yaml",
         "security_groups:\n  - name: ga\n    vpc: v\n    ingress:\n      - {protocol: tcp, ports: 22, group: gb}\n"
         "      - {protocol: tcp, ports: 23, prefix_list: pl}\n      - {protocol: icmp, ports: 5, cidr: "
         "192.0.2.0/24}\n");
  auto src = ConfigSource::open(d.dir());
  auto same = [&](const std::string& step) {
    CAPTURE(step);
    Diagnostics inc, fresh;
    auto a = src.load(inc);
    auto b = ConfigSource::open(d.dir(), {}, false).load(fresh);
    CHECK(inc.format() == fresh.format());
    REQUIRE(a.has_value() == b.has_value());
    if (a) CHECK(*a == *b);
    return a.has_value();
  };
  d.file("conf.d/30-b.yaml", "security_groups:\n  - {name: gb, vpc: v}\n");
  CHECK(same("valid"));
  CHECK(same("unchanged"));
  d.file("conf.d/10-c.yaml", "security_groups:\n  - {name: gc, vpc: v}\n");  // gb's index moves
  CHECK(same("index moved"));
  d.file("conf.d/30-b.yaml", "security_groups:\n  - {name: gb, vpc: w}\n");  // gb now in another VPC
  CHECK_FALSE(same("other VPC"));
  d.file("conf.d/30-b.yaml", "security_groups:\n  - {name: gb, vpc: v}\n");
  CHECK(same("back"));
  fs::remove(d.path / "conf.d" / "30-b.yaml");  // gb gone
  CHECK_FALSE(same("removed"));
  d.file("conf.d/30-b.yaml", "security_groups:\n  - {name: gb, vpc: v}\n");
  CHECK(same("again"));
  d.file("vpcfw.yaml", kNetwork + "prefix_lists:\n  - {name: pl, entries: [192.0.2.0/24], max_entries: 70}\n");
  CHECK_FALSE(same("prefix list larger than the quota"));
}
