// The lab's state file: written by formatRecord, read back strictly by
// parseRecord (it is untrusted input).
#include "vpcfw/lab/record.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <set>

#include "vpcfw/names/names.h"

namespace vpcfw::lab {
namespace {

bool parseNumber(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > 20 || s[0] == '0') return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// A line echoed in an error: printable ASCII only, bounded.
std::string shown(std::string_view line) {
  std::string s;
  for (char c : line.substr(0, 80)) s += (c >= 0x20 && c < 0x7f) ? c : '?';
  return line.size() > 80 ? s + "..." : s;
}

}  // namespace

std::string describe(const NsId& id) { return fmt::format("{}:{}", id.dev, id.ino); }

const NsRecord* LabRecord::find(std::string_view name) const {
  for (const auto& n : namespaces)
    if (n.name == name) return &n;
  return nullptr;
}

void LabRecord::add(std::string name, NsId id, bool shared) {
  remove(name);
  namespaces.push_back(NsRecord{std::move(name), id, shared});
}

void LabRecord::remove(std::string_view name) {
  std::erase_if(namespaces, [&](const NsRecord& n) { return n.name == name; });
}

// The caller (labIdOf) refuses a config path that is not printable text, so
// the path is always exactly one line here.
std::string formatRecord(const LabRecord& r) {
  std::string s = fmt::format("{}\nconfig {}\n", kRecordMagic, r.config);
  for (const auto& n : r.namespaces)
    s += fmt::format("{} {} {}\n", n.shared ? "internet" : "ns", n.name, describe(n.id));
  return s;
}

Expected<LabRecord> parseRecord(std::string_view text) {
  auto bad = [](std::size_t line, std::string_view what, std::string_view content) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("line {}: {}: '{}'", line, what, shown(content)));
  };
  if (text.size() > kRecordMaxBytes) return makeError(ErrorCode::kInvalidArgument, "larger than a lab record can be");
  if (text.empty() || text.back() != '\n')
    return makeError(ErrorCode::kInvalidArgument, "truncated (no final newline)");
  LabRecord r;
  std::set<std::string, std::less<>> seen;
  std::size_t lineNo = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t end = text.find('\n', pos);
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++lineNo;
    if (lineNo == 1) {
      if (line != kRecordMagic) return bad(lineNo, fmt::format("not a lab record (expected '{}')", kRecordMagic), line);
      continue;
    }
    if (lineNo == 2) {
      constexpr std::string_view kConfig = "config ";
      if (!line.starts_with(kConfig)) return bad(lineNo, "expected 'config PATH'", line);
      const std::string_view path = line.substr(kConfig.size());
      const bool clean = std::all_of(path.begin(), path.end(),
                                     [](char c) { return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f; });
      if (path.empty() || path[0] != '/' || path.size() > 4096 || !clean)
        return bad(lineNo, "the config path is not an absolute path", line);
      r.config = std::string(path);
      continue;
    }
    // ns|internet NAME DEV:INO, single spaces, nothing else.
    const bool shared = line.starts_with("internet ");
    if (!shared && !line.starts_with("ns ")) return bad(lineNo, "expected 'ns NAME DEV:INO'", line);
    const std::string_view rest = line.substr(shared ? 9 : 3);
    const std::size_t sp = rest.find(' ');
    if (sp == std::string_view::npos) return bad(lineNo, "expected 'ns NAME DEV:INO'", line);
    const std::string_view name = rest.substr(0, sp), id = rest.substr(sp + 1);
    if (!names::isValidNamespaceName(name)) return bad(lineNo, "not a namespace name vpcfw makes", line);
    const std::size_t colon = id.find(':');
    NsId nsid;
    if (colon == std::string_view::npos || !parseNumber(id.substr(0, colon), nsid.dev) ||
        !parseNumber(id.substr(colon + 1), nsid.ino))
      return bad(lineNo, "not a namespace identity DEV:INO", line);
    if (!seen.insert(std::string(name)).second) return bad(lineNo, "namespace recorded twice", line);
    if (shared && std::any_of(r.namespaces.begin(), r.namespaces.end(), [](const NsRecord& n) { return n.shared; }))
      return bad(lineNo, "a second internet namespace", line);
    r.namespaces.push_back(NsRecord{std::string(name), nsid, shared});
  }
  if (lineNo < 2) return makeError(ErrorCode::kInvalidArgument, "truncated (no config line)");
  return r;
}

std::string recordKey(const std::string& absoluteConfig) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : absoluteConfig) h = (h ^ c) * 1099511628211ull;
  return fmt::format("lab-{:016x}", h);
}

std::string recordFile(const std::string& key) { return key + ".state"; }

}  // namespace vpcfw::lab
