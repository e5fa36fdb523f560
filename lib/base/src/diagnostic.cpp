#include "vpcfw/base/diagnostic.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <optional>

namespace vpcfw {
namespace {

bool continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// Length of the character at s[i] (1 for a byte that starts no valid UTF-8
// sequence) and whether it must be escaped: C0 and C1 controls, DEL, line and
// paragraph separators, bidirectional-text controls (they reorder what a
// terminal shows), and invalid UTF-8 (overlong, surrogates, truncated).
std::size_t nextChar(std::string_view s, std::size_t i, bool& escape) {
  auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  unsigned char b = at(0);
  std::size_t left = s.size() - i;
  escape = true;
  if (b < 0x80) {
    escape = b < 0x20 || b == 0x7F;
    return 1;
  }
  std::size_t len = 0;
  char32_t cp = 0;
  if (b >= 0xC2 && b <= 0xDF) {
    len = 2;
    cp = b & 0x1F;
  } else if (b >= 0xE0 && b <= 0xEF) {
    len = 3;
    cp = b & 0x0F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    len = 4;
    cp = b & 0x07;
  } else {
    return 1;
  }
  if (left < len) return 1;
  for (std::size_t k = 1; k < len; ++k) {
    if (!continuation(at(k))) return 1;
    cp = (cp << 6) | (at(k) & 0x3F);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
    return 1;
  escape = (cp >= 0x80 && cp <= 0x9F) || cp == 0x061C || cp == 0x200E || cp == 0x200F || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
  return len;
}

// Appends `s` escaped, at most `maxChars` characters of it; true when cut.
bool appendEscaped(std::string& out, std::string_view s, std::size_t maxChars) {
  std::size_t chars = 0;
  for (std::size_t i = 0; i < s.size();) {
    if (chars == maxChars) return true;
    bool escape = false;
    std::size_t len = nextChar(s, i, escape);
    if (escape)
      for (std::size_t k = 0; k < len; ++k) out += fmt::format("\\x{:02x}", static_cast<unsigned char>(s[i + k]));
    else
      out.append(s.substr(i, len));
    i += len;
    ++chars;
  }
  return false;
}

std::string bounded(std::string_view s, std::size_t maxChars) {
  std::string out;
  if (appendEscaped(out, s, maxChars)) out += "...";
  return out;
}

// Levenshtein distance, or `bound` as soon as it is known to be >= bound.
std::size_t editDistance(std::string_view a, std::string_view b, std::size_t bound) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    std::size_t rowMin = cur[0];
    for (std::size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      rowMin = std::min(rowMin, cur[j]);
    }
    if (rowMin >= bound) return bound;
    std::swap(prev, cur);
  }
  return std::min(prev[b.size()], bound);
}

constexpr std::size_t kMaxSuggestedLength = 64;

// closestName, charging its work to `budget`; nullopt when the budget ran out.
std::optional<std::string> closest(std::string_view name, const std::vector<std::string>& candidates,
                                   std::uint64_t& budget) {
  if (name.size() > kMaxSuggestedLength) return std::string();
  std::string best;
  std::size_t bestDist = std::max<std::size_t>(2, name.size() / 3) + 1;
  for (const auto& c : candidates) {
    std::uint64_t cost = 1;
    std::size_t gap = c.size() > name.size() ? c.size() - name.size() : name.size() - c.size();
    bool compare = c.size() <= kMaxSuggestedLength && gap < bestDist;
    if (compare) cost += (name.size() + 1) * (c.size() + 1);
    if (cost > budget) return std::nullopt;
    budget -= cost;
    if (!compare) continue;
    std::size_t d = editDistance(name, c, bestDist);
    if (d < bestDist) {
      bestDist = d;
      best = c;
    }
  }
  return best;
}

}  // namespace

std::string quoteForMessage(std::string_view s) {
  std::string out = "'";
  bool cut = appendEscaped(out, s, kQuotedChars);
  out += '\'';
  if (cut) out += "...";
  return out;
}

std::string escapeForMessage(std::string_view s) {
  std::string out;
  appendEscaped(out, s, std::numeric_limits<std::size_t>::max());
  return out;
}

bool isPrintableText(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    bool escape = false;
    i += nextChar(s, i, escape);
    if (escape) return false;
  }
  return true;
}

std::string closestName(std::string_view name, const std::vector<std::string>& candidates) {
  std::uint64_t unlimited = std::numeric_limits<std::uint64_t>::max();
  return *closest(name, candidates, unlimited);
}

std::string formatDiagnostic(const Diagnostic& d) {
  std::string where = d.where.file.empty() ? std::string("<input>") : d.where.file;
  if (d.where.line > 0) where += fmt::format(":{}:{}", d.where.line, d.where.column);
  std::string out = fmt::format("{}: {}: {}", where, d.severity == Severity::kError ? "error" : "warning", d.message);
  if (!d.hint.empty()) out += fmt::format("\n  hint: {}", d.hint);
  return out;
}

void Diagnostics::error(const SourceLocation& at, std::string message, std::string hint) {
  ++errors_;
  add(Diagnostic{Severity::kError, at, std::move(message), std::move(hint)});
}

void Diagnostics::warning(const SourceLocation& at, std::string message, std::string hint) {
  add(Diagnostic{Severity::kWarning, at, std::move(message), std::move(hint)});
}

std::string Diagnostics::didYouMean(std::string_view name, const std::vector<std::string>& candidates) {
  if (shownErrors_ >= cap_) return {};
  std::uint64_t left = kSuggestionBudget - std::min(suggestionCost_, kSuggestionBudget);
  std::uint64_t before = left;
  auto c = closest(name, candidates, left);
  suggestionCost_ += before - left;
  if (!c) suggestionCost_ = kSuggestionBudget;
  return c && !c->empty() ? fmt::format("did you mean {}?", quoteForMessage(*c)) : std::string();
}

void Diagnostics::add(Diagnostic d) {
  auto& shown = d.severity == Severity::kError ? shownErrors_ : shownWarnings_;
  if (shown >= (d.severity == Severity::kError ? cap_ : warningCap_)) {
    ++dropped_;
    return;
  }
  ++shown;
  // Text of the config reaches messages through many modules; this is the one
  // place that guarantees what a terminal or a JSON encoder gets.
  if (!isPrintableText(d.where.file)) d.where.file = escapeForMessage(d.where.file);
  if (d.message.size() > kMaxMessageChars || !isPrintableText(d.message))
    d.message = bounded(d.message, kMaxMessageChars);
  if (d.hint.size() > kMaxMessageChars || !isPrintableText(d.hint)) d.hint = bounded(d.hint, kMaxMessageChars);
  items_.push_back(std::move(d));
}

std::string Diagnostics::format() const {
  std::string out;
  for (const auto& d : items_) {
    out += formatDiagnostic(d);
    out += '\n';
  }
  if (dropped_ > 0) out += fmt::format("... and {} more not shown\n", dropped_);
  return out;
}

}  // namespace vpcfw
