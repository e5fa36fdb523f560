// Diagnostics are data: every problem found in a config, with the position of
// the YAML node it came from, collected (up to a cap) and printed by the CLI the
// way a compiler prints its errors. Config text echoed in a message goes
// through quoteForMessage, so that a message is one line of valid UTF-8 of
// bounded length whatever the input held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vpcfw {

struct SourceLocation {
  std::string file;
  int line = 0;    // 1-based; 0 = unknown
  int column = 0;  // 1-based; 0 = unknown
};

enum class Severity { kError, kWarning };

struct Diagnostic {
  Severity severity = Severity::kError;
  SourceLocation where;
  std::string message;
  std::string hint;  // empty when there is nothing useful to add
};

// "file:line:column: error: message" (plus "  hint: ..." on the next line).
std::string formatDiagnostic(const Diagnostic& d);

// How many characters of a config string a message quotes.
inline constexpr std::size_t kQuotedChars = 64;

// `s` in single quotes for a message: at most kQuotedChars characters (then
// "..." after the closing quote), with every byte of a control character,
// of invalid UTF-8 or of a bidirectional-text control written as \xNN.
std::string quoteForMessage(std::string_view s);

// The same escaping, without quotes or truncation (file names).
std::string escapeForMessage(std::string_view s);

// True when `s` is valid UTF-8 and holds nothing escapeForMessage escapes.
bool isPrintableText(std::string_view s);

// The candidate closest to `name` within a small edit distance, for "did you
// mean" hints; empty when nothing is close. Bounded: a name longer than 64
// bytes gets no suggestion and a candidate whose length alone rules it out
// costs nothing, so one call is O(candidates x 64 x 64) at worst.
std::string closestName(std::string_view name, const std::vector<std::string>& candidates);

class Diagnostics {
 public:
  // Errors and warnings are capped separately, so that a flood of warnings
  // never hides an error.
  static constexpr std::size_t kDefaultCap = 200;
  static constexpr std::size_t kDefaultWarningCap = 50;
  // Messages and hints longer than this are cut (they echo config text).
  static constexpr std::size_t kMaxMessageChars = 512;
  // Edit-distance work all "did you mean" hints of one Diagnostics may cost
  // (comparisons of characters, plus one per candidate looked at).
  static constexpr std::uint64_t kSuggestionBudget = 20'000'000;
  explicit Diagnostics(std::size_t cap = kDefaultCap, std::size_t warningCap = kDefaultWarningCap)
      : cap_(cap), warningCap_(warningCap) {}

  // The message, hint and file name are escaped (and the message and hint
  // cut) as quoteForMessage does, so every diagnostic is one line of UTF-8.
  void error(const SourceLocation& at, std::string message, std::string hint = {});
  void warning(const SourceLocation& at, std::string message, std::string hint = {});

  // "did you mean 'x'?" for an error about `name`, or empty: when nothing is
  // close, when errors are already capped (the hint would be dropped with its
  // error) or when the suggestion budget is spent, so that a config with many
  // unknown names costs linear time, not names x candidates.
  std::string didYouMean(std::string_view name, const std::vector<std::string>& candidates);
  // False once didYouMean would answer nothing anyway: callers can skip
  // listing candidates.
  bool wantsSuggestions() const { return shownErrors_ < cap_ && suggestionCost_ < kSuggestionBudget; }

  bool hasErrors() const { return errors_ > 0; }
  std::size_t errorCount() const { return errors_; }
  std::size_t dropped() const { return dropped_; }
  const std::vector<Diagnostic>& all() const { return items_; }
  // All diagnostics formatted, one per line, in the order found.
  std::string format() const;

 private:
  void add(Diagnostic d);
  std::vector<Diagnostic> items_;
  std::size_t cap_;
  std::size_t warningCap_;
  std::size_t shownErrors_ = 0, shownWarnings_ = 0;
  std::size_t errors_ = 0;
  std::size_t dropped_ = 0;
  std::uint64_t suggestionCost_ = 0;
};

}  // namespace vpcfw
