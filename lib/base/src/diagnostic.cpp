#include "vpcfw/base/diagnostic.h"

#include <fmt/format.h>

namespace vpcfw {

std::string formatDiagnostic(const Diagnostic& d) {
  std::string where = d.where.file.empty() ? std::string("<input>") : d.where.file;
  if (d.where.line > 0) where += fmt::format(":{}:{}", d.where.line, d.where.column);
  std::string out = fmt::format("{}: {}: {}", where, d.severity == Severity::kError ? "error" : "warning",
                                d.message);
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

void Diagnostics::add(Diagnostic d) {
  auto& shown = d.severity == Severity::kError ? shownErrors_ : shownWarnings_;
  if (shown >= (d.severity == Severity::kError ? cap_ : warningCap_)) {
    ++dropped_;
    return;
  }
  ++shown;
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
