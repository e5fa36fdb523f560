// Checks one file of tests/invalid: the config must be rejected, and the
// diagnostics it produces must be exactly the ones its "# expect:" lines list
// ("# expect: LINE:COLUMN: error|warning: message"), in order.
#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "vpcfw/config/loader.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: invalid_corpus_check FILE.yaml\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  if (!in) {
    std::cerr << "cannot open " << argv[1] << "\n";
    return 2;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<std::string> expected;
  std::istringstream lines(ss.str());
  for (std::string line; std::getline(lines, line);) {
    const std::string tag = "# expect: ";
    if (line.rfind(tag, 0) == 0) expected.push_back(line.substr(tag.size()));
  }
  if (expected.empty()) {
    std::cerr << argv[1] << ": no '# expect:' lines\n";
    return 2;
  }
  vpcfw::Diagnostics diags;
  auto m = vpcfw::config::loadConfigString(ss.str(), "input.yaml", diags);
  std::vector<std::string> actual;
  for (const auto& d : diags.all())
    actual.push_back(fmt::format("{}:{}: {}: {}", d.where.line, d.where.column,
                                 d.severity == vpcfw::Severity::kError ? "error" : "warning", d.message));
  bool ok = !m.has_value() && actual == expected;
  if (!ok) {
    std::cerr << argv[1] << ": diagnostics differ" << (m ? " (and the config was accepted)" : "") << "\nexpected:\n";
    for (const auto& e : expected) std::cerr << "  " << e << "\n";
    std::cerr << "actual:\n";
    for (const auto& a : actual) std::cerr << "  " << a << "\n";
    return 1;
  }
  std::cout << argv[1] << ": " << actual.size() << " diagnostics as expected\n";
  return 0;
}
