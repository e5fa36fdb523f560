// Diagnostics are data: every problem found in a config, with the position of
// the YAML node it came from, collected (up to a cap) and printed by the CLI the
// way a compiler prints its errors.
#pragma once

#include <cstddef>
#include <string>
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

class Diagnostics {
 public:
  // Errors and warnings are capped separately, so that a flood of warnings
  // never hides an error.
  static constexpr std::size_t kDefaultCap = 200;
  static constexpr std::size_t kDefaultWarningCap = 50;
  explicit Diagnostics(std::size_t cap = kDefaultCap, std::size_t warningCap = kDefaultWarningCap)
      : cap_(cap), warningCap_(warningCap) {}

  void error(const SourceLocation& at, std::string message, std::string hint = {});
  void warning(const SourceLocation& at, std::string message, std::string hint = {});

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
};

}  // namespace vpcfw
