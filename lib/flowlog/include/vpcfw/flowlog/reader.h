// Reading flow-log files back: a tree in the S3 key layout, one .log.gz file,
// or stream files (.log). The files may have been written by anyone, so the
// reader follows no symlink inside a tree, reads only regular files, bounds
// line length, file size and depth, and turns every defect (bad gzip, a wrong
// header, a wrong field count) into a located problem (file:line) or a
// skipped line with a count — never a crash, never unbounded memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/flowlog/format.h"

namespace vpcfw::flowlog {

struct ReadLimits {
  std::size_t maxLineBytes = 64 * 1024;                 // a longer line is skipped
  std::uint64_t maxFileBytes = std::uint64_t{1} << 30;  // uncompressed bytes of one file
  std::size_t maxFiles = 100'000;                       // files of one tree
  int maxDepth = 16;                                    // directories below the path
  std::size_t maxProblems = 100;                        // problems kept (all are counted)
};

// One record as read: its file, 1-based line, the file's format and the
// values in that format's order (views valid during the callback).
struct RowView {
  const std::string& file;
  std::size_t line;
  const Format& format;
  std::span<const std::string_view> values;

  // The value of `f`, or nothing when the file's format lacks it.
  std::optional<std::string_view> get(Field f) const;
};

struct ReadProblem {
  std::string file;
  std::size_t line = 0;  // 0: the file as a whole
  std::string message;
  std::string text() const;  // "file:line: message"
};

struct ReadStats {
  std::size_t files = 0;              // files read
  std::size_t rows = 0;               // records passed to the callback
  std::size_t skippedFiles = 0;       // refused whole: bad gzip, header, symlink, not regular, too large
  std::size_t skippedLines = 0;       // wrong field count, too long, not text
  std::size_t problemCount = 0;       // all problems, kept or not
  std::vector<ReadProblem> problems;  // the first maxProblems
};

// Reads `path`: a directory (every *.log.gz and *.log below it, in name
// order, dot files skipped), or one such file. An error only when `path`
// itself cannot be read; everything below it is a problem in the stats.
[[nodiscard]] Expected<ReadStats> readFlowLogs(const std::string& path, const ReadLimits& limits,
                                               const std::function<void(const RowView&)>& each);

}  // namespace vpcfw::flowlog
