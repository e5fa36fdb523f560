// Bounded input inside a config: one YAML document, bounded nesting and alias
// expansion ("billion laughs"), echoed strings quoted, escaped and cut, and
// "did you mean" hints that cannot cost names x candidates. Each attack is
// tried in several shapes, next to a baseline that is accepted.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <sys/resource.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "support/test_config.h"
#include "vpcfw/config/loader.h"

using vpcfw::test::hasDiagnostic;
using vpcfw::test::loadDiagnostics;
using vpcfw::test::loadOk;

namespace {

const std::string kVpc = "vpcs:\n  - {name: v, cidr: 10.0.0.0/16}\n";

std::string repeat(const std::string& s, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += s;
  return out;
}

// True when `s` is valid UTF-8: nlohmann's strict encoder throws otherwise.
bool validUtf8(const std::string& s) {
  try {
    return !nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::strict).empty();
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

struct Timed {
  std::vector<std::string> diags;
  bool ok = false;
  double seconds = 0;
};

Timed timedLoad(const std::string& yaml) {
  Timed t;
  auto t0 = std::chrono::steady_clock::now();
  t.diags = loadDiagnostics(yaml, &t.ok);
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return t;
}

}  // namespace

TEST_CASE("a file holds exactly one YAML document") {
  CHECK(loadOk("").vpcs.empty());                            // empty: nothing declared
  CHECK(loadOk("# only a comment\n").vpcs.empty());          // still nothing
  CHECK(loadOk("---\n" + kVpc).vpcs.size() == 1);            // an explicit start is one document
  CHECK(loadOk("---\n" + kVpc + "...\n").vpcs.size() == 1);  // and so is an explicit end
  CHECK(loadDiagnostics(kVpc + "---\nsubnets: []\n") ==
        std::vector<std::string>{"3:1: error: a second YAML document: a config file holds exactly one"});
  CHECK(loadDiagnostics(kVpc + "---\n") ==  // an empty second document is one too
        std::vector<std::string>{"3:1: error: a second YAML document: a config file holds exactly one"});
  CHECK(loadDiagnostics(kVpc + "...\n---\n- x\n") ==
        std::vector<std::string>{"4:1: error: a second YAML document: a config file holds exactly one"});
  CHECK(loadDiagnostics("---\n" + kVpc + "--- [1\n") ==  // reported before the second one is even parsed
        std::vector<std::string>{"4:1: error: a second YAML document: a config file holds exactly one"});
  auto many = loadDiagnostics(repeat(kVpc + "---\n", 1000));
  CHECK(many == std::vector<std::string>{"3:1: error: a second YAML document: a config file holds exactly one"});
}

TEST_CASE("nesting is bounded: 100,000 open brackets are one located error, not a crash") {
  // Baseline: nesting that the schema uses.
  CHECK(loadOk(kVpc + "security_groups:\n  - {name: g, vpc: v, ingress: [{protocol: tcp, ports: 1, cidr: "
                      "10.0.0.0/8}]}\n")
            .groups.size() == 2);
  for (const std::string& yaml : {"vpcs: " + repeat("[", 100'000), "vpcs: " + repeat("{a: ", 100'000),
                                  repeat("- ", 100'000), "vpcs: " + repeat("[{a: ", 100'000)}) {
    CAPTURE(yaml.substr(0, 20));
    auto t = timedLoad(yaml + "\n");
    CHECK_FALSE(t.ok);
    REQUIRE(t.diags.size() == 1);
    CHECK(t.diags[0].find("1:") == 0);
    CHECK(t.diags[0].find("error: lists and mappings nested more than 64 deep") != std::string::npos);
  }
  // Block style, one level per line.
  std::string block;
  for (int i = 0; i < 200; ++i) block += std::string(static_cast<std::size_t>(i), ' ') + "a:\n";
  auto d = loadDiagnostics(block + std::string(200, ' ') + "b\n");
  REQUIRE(d.size() == 1);
  CHECK(d[0] == "65:65: error: lists and mappings nested more than 64 deep");
}

TEST_CASE("aliases cannot make a small file expensive (billion laughs)") {
  // Baseline: one rule list shared by three groups, a normal use of aliases.
  auto m = loadOk(kVpc + R"(security_groups:
  - name: a
    vpc: v
    ingress: &web [{protocol: tcp, ports: 443, cidr: 0.0.0.0/0}, {protocol: tcp, ports: 80, cidr: 0.0.0.0/0}]
  - {name: b, vpc: v, ingress: *web}
  - {name: c, vpc: v, ingress: *web}
)");
  CHECK(m.groups[m.findGroup("c", 0)].ingress.size() == 2);

  // Classic laughs under an unknown key, under a list the loader walks, and
  // nested maps; each level multiplies by 10: 10^30 nodes if expanded.
  auto laughs = [](const std::string& first, const std::string& pre, const std::string& post) {
    std::string y = "l0: &l0 [" + first + "]\n";
    for (int i = 1; i < 30; ++i) {
      y += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [";
      for (int k = 0; k < 10; ++k) y += (k ? ", " : "") + pre + "*l" + std::to_string(i - 1) + post;
      y += "]\n";
    }
    return y;
  };
  for (const std::string& yaml :
       {laughs("lol, lol, lol, lol, lol, lol, lol, lol, lol, lol", "", "") + "vpcs: *l29\n",
        laughs("{name: v, cidr: 10.0.0.0/16}", "", "") + "instances: *l29\n", laughs("x", "{k: ", "}")}) {
    auto t = timedLoad(yaml);
    CHECK_FALSE(t.ok);
    REQUIRE(t.diags.size() == 1);
    CHECK(t.diags[0].find("error: aliases expand the config beyond 100000 nodes and bytes") != std::string::npos);
    CHECK(t.seconds < 5);  // linear: milliseconds; expanded: never
  }
  // Within schema positions: a rule list aliased into many groups (about 5 KB).
  std::string y = kVpc + "limits: {profile: lab}\nsecurity_groups:\n  - name: g\n    vpc: v\n    ingress: &r\n";
  for (int p = 1; p < 40; ++p) y += "      - {protocol: tcp, ports: " + std::to_string(p) + ", cidr: 10.0.0.0/8}\n";
  for (int g = 0; g < 200; ++g) y += "  - {name: g" + std::to_string(g) + ", vpc: v, ingress: *r, egress: *r}\n";
  auto t = timedLoad(y);
  CHECK_FALSE(t.ok);
  REQUIRE(t.diags.size() == 1);
  CHECK(t.diags[0].find("error: aliases expand the config beyond") != std::string::npos);
  // Few aliases of one long scalar: bytes count, not only nodes.
  std::string big(50'000, 'x');
  y = "vpcs:\n  - {name: v, cidr: 10.0.0.0/16, ipv6_cidr: &b " + big + "}\n";
  for (int i = 0; i < 40; ++i) y += "  - {name: v" + std::to_string(i) + ", cidr: *b}\n";
  t = timedLoad(y);
  REQUIRE(t.diags.size() == 1);
  CHECK(t.diags[0].find("error: aliases expand the config beyond") != std::string::npos);
  // An alias inside the node it names would be an endless structure.
  CHECK(loadDiagnostics("vpcs: &a [*a]\n") ==
        std::vector<std::string>{"1:11: error: an alias inside the node it refers to (a cycle)"});
  CHECK(loadDiagnostics("x: &a {b: {c: *a}}\n") ==
        std::vector<std::string>{"1:15: error: an alias inside the node it refers to (a cycle)"});
}

TEST_CASE("echoed strings are cut to 64 characters and escaped") {
  const std::string huge(100'000, 'a');
  const std::string kilo(1000, 'a');
  const std::string shown = "'" + std::string(64, 'a') + "'...";
  struct Case {
    std::string yaml, expected;
  };
  for (const Case& c : std::vector<Case>{
           {"vpcs:\n  - {name: " + huge + ", cidr: 10.0.0.0/16}\n",
            "2:12: error: VPC: 'name' is 100000 bytes long; at most 1024 are read"},
           {"vpcs:\n  - {name: " + kilo + ", cidr: 10.0.0.0/16}\n", "2:12: error: VPC name " + shown + " is not valid"},
           {"vpcs:\n  - {name: v, cidr: " + huge + "}\n", "2:21: error: VPC cidr: " + shown + " is not a CIDR block"},
           {kVpc +
                "subnets:\n  - {name: s, vpc: v, cidr: 10.0.0.0/24}\ninstances:\n  - {name: i, subnet: s, "
                "private_ip: " +
                huge + "}\n",
            "6:38: error: private_ip: " + shown + " is not an IPv4 or IPv6 address"},
           {kVpc + "network_acls:\n  - {name: n, vpc: v, ingress: [{rule: 1, protocol: " + kilo + "}]}\n",
            "4:53: error: NACL 'n' ingress rule 1: " + shown + " is not a protocol"},
           {kVpc + "network_acls:\n  - {name: n, vpc: v, ingress: [{rule: 1, protocol: " + huge + "}]}\n",
            "4:53: error: NACL 'n' ingress rule 1: 'protocol' is 100000 bytes long; at most 1024 are read"},
           {kVpc + huge + ": 1\n", "3:100001: error: YAML syntax error: illegal map value"},  // a plain key
           {kVpc + "? " + huge + "\n: 1\n", "3:3: error: config: unknown key " + shown},      // an explicit key
           {"limits: {profile: " + huge + "}\n",
            "1:19: error: limits: 'profile' is 100000 bytes long; at most 1024 are read"},
           {"limits: {vpcs: " + huge + "}\n", "1:16: error: limits 'vpcs' must be a whole number, not " + shown},
       }) {
    auto d = loadDiagnostics(c.yaml);
    REQUIRE_FALSE(d.empty());
    CHECK(d[0] == c.expected);
    for (const auto& x : d) CHECK(x.size() < 1200);
  }
  // A reference of 1000 characters reaches the validator, whose message the
  // Diagnostics cut.
  auto ref = loadDiagnostics(kVpc + "security_groups:\n  - {name: g, vpc: " + kilo + "}\n");
  REQUIRE(ref.size() == 1);
  CHECK(ref[0].rfind("4:20: error: security group 'g' refers to unknown VPC 'aaaa", 0) == 0);
  CHECK(ref[0].size() <= 16 + vpcfw::Diagnostics::kMaxMessageChars + 3);
  // A key of 100 KB: no suggestion computed, message bounded.
  vpcfw::Diagnostics diags;
  CHECK_FALSE(vpcfw::config::loadConfigString(kVpc + "? " + huge + "\n: 1\n", "f.yaml", diags));
  REQUIRE(diags.all().size() == 1);
  CHECK(diags.all()[0].message == "config: unknown key " + shown);
  CHECK(diags.all()[0].hint.rfind("known keys: ", 0) == 0);

  // Short values are echoed whole (baseline).
  CHECK(hasDiagnostic(loadDiagnostics("vpcs:\n  - {name: v, cidr: 10.0.0.0/33}\n"),
                      "VPC cidr: '10.0.0.0/33' has an invalid prefix length"));
}

TEST_CASE("control characters and invalid UTF-8 never reach a message raw") {
  struct Case {
    std::string value, escaped;
  };
  for (const Case& c : std::vector<Case>{
           {"a\xff", "a\\xff"},                           // not UTF-8 at all
           {"a\xc3", "a\\xc3"},                           // truncated sequence
           {"\xc0\xaf", "\\xc0\\xaf"},                    // overlong '/'
           {"\xed\xa0\x80", "\\xed\\xa0\\x80"},           // UTF-16 surrogate
           {"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"},  // above U+10FFFF
           {"\x1b[31mred", "\\x1b[31mred"},               // terminal escape
           {"a\rb", "a\\x0db"},                           // carriage return
           {"\xc2\x9b"
            "31m",
            "\\xc2\\x9b31m"},  // C1 control (CSI)
           {"abc\xe2\x80\xae"
            "fdp",
            "abc\\xe2\\x80\\xaefdp"},                // right-to-left override
           {"x\xe2\x80\xa8y", "x\\xe2\\x80\\xa8y"},  // line separator
       }) {
    CAPTURE(c.escaped);
    auto d =
        loadDiagnostics(kVpc + "security_groups:\n  - name: g\n    vpc: v\n    description: \"" + c.value + "\"\n");
    REQUIRE(d.size() == 1);
    CHECK(d[0] == "6:18: error: security group: 'description' must be printable UTF-8 text, not '" + c.escaped + "'");
    CHECK(validUtf8(d[0]));
    d = loadDiagnostics("vpcs:\n  - {name: v, cidr: \"" + c.value + "\"}\n");
    REQUIRE(d.size() == 1);
    CHECK(d[0] == "2:21: error: VPC cidr: '" + c.escaped + "' is not a CIDR block");
  }
  // Printable UTF-8 text is kept as it is by the loader (baseline; validation
  // then holds a group description to AWS's ASCII alphabet).
  vpcfw::model::Model m;
  vpcfw::Diagnostics diags;
  REQUIRE(vpcfw::config::parseConfig(
      kVpc + "security_groups:\n  - {name: g, vpc: v, description: \"caf\xc3\xa9 \xe6\x97\xa5\"}\n", "t.yaml", m,
      diags));
  CHECK(m.groups.at(0).description == "caf\xc3\xa9 \xe6\x97\xa5");
  // Free text is bounded: a description of 2 KB is refused by the loader.
  auto d =
      loadDiagnostics(kVpc + "security_groups:\n  - {name: g, vpc: v, description: " + std::string(2048, 'd') + "}\n");
  REQUIRE(d.size() == 1);
  CHECK(d[0] == "4:36: error: security group: 'description' is 2048 bytes long; at most 1024 are read");
}

TEST_CASE("quoteForMessage and the diagnostics themselves keep every message one line of valid UTF-8") {
  CHECK(vpcfw::quoteForMessage("web") == "'web'");
  CHECK(vpcfw::quoteForMessage(std::string(64, 'x')) == "'" + std::string(64, 'x') + "'");
  CHECK(vpcfw::quoteForMessage(std::string(65, 'x')) == "'" + std::string(64, 'x') + "'...");
  // Cut by characters, never inside one.
  std::string e = "\xc3\xa9";
  CHECK(vpcfw::quoteForMessage(repeat(e, 100)) == "'" + repeat(e, 64) + "'...");
  CHECK(vpcfw::quoteForMessage("\xf0\x9f\x98\x80") == "'\xf0\x9f\x98\x80'");
  CHECK(vpcfw::quoteForMessage(std::string("a\0b", 3)) == "'a\\x00b'");
  CHECK(vpcfw::escapeForMessage("tab\there\n") == "tab\\x09here\\x0a");
  CHECK(vpcfw::isPrintableText("caf\xc3\xa9"));
  CHECK_FALSE(vpcfw::isPrintableText("caf\xc3"));

  // Every byte value, alone and after a lead byte, comes out valid UTF-8.
  for (int a = 0; a < 256; ++a)
    for (int b : {0x00, 0x41, 0x80, 0xbf, 0xc3, 0xff}) {
      std::string s{static_cast<char>(a), static_cast<char>(b)};
      CHECK(validUtf8(vpcfw::quoteForMessage(s)));
    }

  // The Diagnostics cut and escape whatever a module hands them.
  vpcfw::Diagnostics d;
  d.error({"f\xff.yaml\n", 1, 1}, "line one\nline two " + std::string(5000, 'z'), "hint\x1b");
  REQUIRE(d.all().size() == 1);
  const auto& x = d.all()[0];
  CHECK(x.where.file == "f\\xff.yaml\\x0a");
  CHECK(x.message.rfind("line one\\x0aline two zzz", 0) == 0);
  CHECK(x.message.size() <= vpcfw::Diagnostics::kMaxMessageChars + 3 + 3);
  CHECK(x.message.substr(x.message.size() - 3) == "...");
  CHECK(x.hint == "hint\\x1b");
  CHECK(vpcfw::formatDiagnostic(x).find('\n') == vpcfw::formatDiagnostic(x).find("\n  hint: "));
}

TEST_CASE("did-you-mean hints are bounded") {
  std::vector<std::string> names;
  for (int i = 0; i < 2000; ++i) names.push_back(fmt::format("group-{:04}-{}", i, std::string(50, 'n')));
  // Baseline: a close candidate is suggested.
  vpcfw::Diagnostics d;
  CHECK(d.didYouMean("group-0007-" + std::string(49, 'n'), names) == "did you mean '" + names[7] + "'?");
  // Searches that compare every candidate spend the budget after a few
  // calls; later calls suggest nothing rather than costing names x candidates.
  for (int i = 0; i < 2000; ++i) CHECK(d.didYouMean(std::string(60, 'x'), names).empty());
  CHECK(d.didYouMean("group-0007-" + std::string(49, 'n'), names).empty());
  CHECK(vpcfw::Diagnostics().didYouMean("group-0007-" + std::string(49, 'n'), names) ==
        "did you mean '" + names[7] + "'?");
  // Once errors are capped, hints would be dropped with them: none computed.
  vpcfw::Diagnostics capped(1);
  CHECK_FALSE(capped.didYouMean("group-0001-" + std::string(49, 'n'), names).empty());
  capped.error({}, "first");
  CHECK(capped.didYouMean("group-0001-" + std::string(49, 'n'), names).empty());
  // Names too long to be names get no suggestion; a length gap rules out.
  CHECK(vpcfw::closestName(std::string(65, 'a'), {std::string(64, 'a')}).empty());
  CHECK(vpcfw::closestName("web-sgg", {"web-sg", "db-sg", std::string(1000, 'w')}) == "web-sg");
  CHECK(vpcfw::closestName("zzzzzz", {"web-sg", "db-sg"}).empty());
}

TEST_CASE("2,000 unknown references and 2,000 unknown keys: diagnostics are capped") {
  std::string y = kVpc + "limits: {profile: lab}\nsubnets:\n  - {name: s, vpc: v, cidr: 10.0.0.0/16}\n";
  y += "security_groups:\n";
  for (int g = 0; g < 20; ++g) y += fmt::format("  - {{name: group-{:02}-{}, vpc: v}}\n", g, std::string(50, 'n'));
  y += "instances:\n";
  for (int i = 0; i < 2000; ++i)
    y += fmt::format("  - {{name: i{}, subnet: s, private_ip: 10.0.{}.{}, security_groups: [unknown-{:04}-{}]}}\n", i,
                     i / 200 + 1, i % 200 + 10, i, std::string(50, 'u'));
  vpcfw::Diagnostics d;
  CHECK_FALSE(vpcfw::config::loadConfigString(y, "f.yaml", d));
  CHECK(d.errorCount() >= 2000);
  CHECK(d.all().size() == vpcfw::Diagnostics::kDefaultCap + 1);  // + the lab profile's warning
  CHECK(d.dropped() == d.errorCount() - vpcfw::Diagnostics::kDefaultCap);
  CHECK(d.format().find("refers to unknown security group 'unknown-0000-") != std::string::npos);

  std::string keys = "vpcs:\n  - name: v\n    cidr: 10.0.0.0/16\n";
  for (int k = 0; k < 2000; ++k) keys += fmt::format("    cidrr{:04}{}: 1\n", k, std::string(50, 'c'));
  keys += "    cidx: 1\n";
  vpcfw::Diagnostics kd;
  CHECK_FALSE(vpcfw::config::loadConfigString(keys, "f.yaml", kd));
  CHECK(kd.errorCount() == 2001);
  CHECK(kd.all().size() == vpcfw::Diagnostics::kDefaultCap);
  CHECK(kd.dropped() == 1801);
  CHECK(kd.all()[0].message.rfind("VPC: unknown key 'cidrr0000", 0) == 0);
}

TEST_CASE("unclosed flow collections are refused on the text, before the YAML scanner reads them ahead") {
  // yaml-cpp scans a flow collection ahead in full: 8 MB of '[' cost it 1.8 GB
  // before the event pass could refuse the nesting. Bounded on the text, the
  // same input costs a pass over it.
  for (const char* open : {"[", "{"}) {
    std::string yaml = "vpcs: ";
    for (int i = 0; i < 8'000'000; ++i) yaml += open;
    auto d = loadDiagnostics(yaml + "\n");
    REQUIRE(d.size() == 1);
    CHECK(d[0] == "1:71: error: lists and mappings nested more than 64 deep");
    rusage ru{};
    REQUIRE(getrusage(RUSAGE_SELF, &ru) == 0);
    CHECK(ru.ru_maxrss < 400 * 1024);  // KiB: the input itself is 8 MB
  }
  // Brackets inside quotes and comments, or inside plain scalars, open nothing.
  auto m = loadOk(
      "# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n"
      "vpcs:\n  - {name: v, cidr: 10.0.0.0/16}\nsecurity_groups:\n  - name: g\n    vpc: v\n"
      "    description: \"" +
      std::string(100, '[') + "\"\n");
  CHECK(m.groups.size() == 2);
}
