// The flow-log reader (reader.h): directory walk with openat(O_NOFOLLOW),
// gzip through zlib's inflate, line splitting with a bound.
#include "vpcfw/flowlog/reader.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "vpcfw/base/diagnostic.h"

namespace vpcfw::flowlog {
namespace {

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

bool isLogName(std::string_view n) { return n.ends_with(".log.gz") || n.ends_with(".log"); }

class FileReader {
 public:
  FileReader(const ReadLimits& l, ReadStats& s, const std::function<void(const RowView&)>& each)
      : limits_(l), stats_(s), each_(each) {}

  void problem(const std::string& file, std::size_t line, std::string message) {
    ++stats_.problemCount;
    if (stats_.problems.size() < limits_.maxProblems) stats_.problems.push_back({file, line, std::move(message)});
  }

  // Reads the open regular file `fd` named `file`.
  void read(int fd, const std::string& file) {
    file_ = file;
    line_ = 0;
    pending_.clear();
    overlong_ = false;
    format_.reset();
    total_ = 0;
    failed_ = false;
    ++stats_.files;
    const bool gz = file.ends_with(".gz");
    if (gz ? !inflateFile(fd) : !plainFile(fd)) {
      ++stats_.skippedFiles;
      return;
    }
    if (!pending_.empty() || overlong_) takeLine(true);  // a last line without its newline
    if (!format_ && !failed_) {
      problem(file_, 0, "the file holds no header line");
      ++stats_.skippedFiles;
    }
  }

 private:
  const ReadLimits& limits_;
  ReadStats& stats_;
  const std::function<void(const RowView&)>& each_;
  std::string file_;
  std::size_t line_ = 0;
  std::string pending_;
  bool overlong_ = false;
  bool failed_ = false;  // the header was refused: the rest of the file is not read
  std::optional<Format> format_;
  std::uint64_t total_ = 0;

  // Feeds decompressed bytes; false when the file is refused from here on.
  bool feed(const char* p, std::size_t n) {
    total_ += n;
    if (total_ > limits_.maxFileBytes) {
      problem(file_, line_ + 1, fmt::format("the file is larger than {} bytes uncompressed", limits_.maxFileBytes));
      return false;
    }
    while (n > 0 && !failed_) {
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', n));
      const std::size_t take = nl ? static_cast<std::size_t>(nl - p) : n;
      if (!overlong_) {
        if (pending_.size() + take > limits_.maxLineBytes) {
          overlong_ = true;
          pending_.clear();
        } else {
          pending_.append(p, take);
        }
      }
      if (!nl) break;
      takeLine(false);
      p = nl + 1;
      n -= take + 1;
    }
    return !failed_;
  }

  void takeLine(bool last) {
    ++line_;
    std::string line = std::move(pending_);
    pending_.clear();
    const bool overlong = overlong_;
    overlong_ = false;
    if (overlong) {
      problem(file_, line_, fmt::format("line longer than {} bytes skipped", limits_.maxLineBytes));
      ++stats_.skippedLines;
      if (!format_) failed_ = true;
      return;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!format_) {
      auto f = Format::fromHeader(line);
      if (!f) {
        problem(file_, line_, "not a flow-log file: " + f.error().message);
        failed_ = true;
        return;
      }
      format_ = *f;
      return;
    }
    if (line.empty() && last) return;
    if (!isPrintableText(line)) {
      problem(file_, line_, "line holds control characters or invalid UTF-8; skipped");
      ++stats_.skippedLines;
      return;
    }
    std::vector<std::string_view> values;
    values.reserve(format_->fields().size());
    std::string_view rest = line;
    while (!rest.empty()) {
      auto sp = rest.find(' ');
      values.push_back(rest.substr(0, sp));
      if (sp == std::string_view::npos) break;
      rest.remove_prefix(sp + 1);
      if (values.size() > format_->fields().size()) break;
    }
    if (values.size() != format_->fields().size() ||
        std::any_of(values.begin(), values.end(), [](std::string_view v) { return v.empty(); })) {
      problem(
          file_, line_,
          fmt::format("{} values where the header names {} fields; skipped", values.size(), format_->fields().size()));
      ++stats_.skippedLines;
      return;
    }
    ++stats_.rows;
    each_(RowView{file_, line_, *format_, values});
  }

  bool plainFile(int fd) {
    char buf[1 << 16];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        problem(file_, 0, fmt::format("cannot read: {}", std::strerror(errno)));
        return false;
      }
      if (n == 0) return true;
      if (!feed(buf, static_cast<std::size_t>(n))) return false;
    }
  }

  bool inflateFile(int fd) {
    z_stream z{};
    if (inflateInit2(&z, 15 + 16) != Z_OK) {
      problem(file_, 0, "zlib: inflateInit2 failed");
      return false;
    }
    struct End {
      z_stream* z;
      ~End() { ::inflateEnd(z); }
    } end{&z};
    unsigned char in[1 << 16];
    unsigned char out[1 << 16];
    bool ended = false;  // the last member ended and no byte followed
    bool any = false;
    for (;;) {
      ssize_t n = ::read(fd, in, sizeof in);
      if (n < 0) {
        if (errno == EINTR) continue;
        problem(file_, line_ + 1, fmt::format("cannot read: {}", std::strerror(errno)));
        return false;
      }
      if (n == 0) break;
      any = true;
      if (ended) {
        // Another gzip member follows (concatenated members are valid gzip).
        ::inflateReset(&z);
        ended = false;
      }
      z.next_in = in;
      z.avail_in = static_cast<uInt>(n);
      do {
        z.next_out = out;
        z.avail_out = sizeof out;
        const int rc = ::inflate(&z, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
          problem(file_, line_ + 1, fmt::format("bad gzip data: {}", z.msg ? z.msg : "inflate failed"));
          return false;
        }
        if (!feed(reinterpret_cast<const char*>(out), sizeof out - z.avail_out)) return false;
        if (rc == Z_STREAM_END) {
          ended = true;
          if (z.avail_in == 0) break;
          ::inflateReset(&z);
          ended = false;
          z.avail_out = 0;  // go on with the next member's bytes
        }
      } while (z.avail_out == 0);
    }
    if (!any) {
      problem(file_, 0, "empty file: not gzip");
      return false;
    }
    if (!ended) {
      problem(file_, line_ + 1, "truncated gzip data (the file ends inside its stream)");
      return false;
    }
    return true;
  }
};

class TreeReader {
 public:
  TreeReader(const ReadLimits& l, ReadStats& s, FileReader& f) : limits_(l), stats_(s), files_(f) {}

  void directory(int dirfd, const std::string& shown, int depth) {
    if (depth > limits_.maxDepth) {
      files_.problem(shown, 0, fmt::format("directories nested deeper than {}; not read", limits_.maxDepth));
      return;
    }
    int dup = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) {
      files_.problem(shown, 0, fmt::format("cannot read directory: {}", std::strerror(errno)));
      return;
    }
    DIR* d = ::fdopendir(dup);
    if (!d) {
      ::close(dup);
      files_.problem(shown, 0, fmt::format("cannot read directory: {}", std::strerror(errno)));
      return;
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      std::string_view n = e->d_name;
      if (n.empty() || n.front() == '.') continue;  // ., .., and the writers' temporary files
      if (names.size() >= limits_.maxFiles) break;
      names.emplace_back(n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      if (seen_ >= limits_.maxFiles) {
        files_.problem(shown, 0, fmt::format("more than {} files; the rest are not read", limits_.maxFiles));
        return;
      }
      entry(dirfd, n, shown + "/" + n, depth);
    }
  }

 private:
  const ReadLimits& limits_;
  ReadStats& stats_;
  FileReader& files_;
  std::size_t seen_ = 0;

  void entry(int dirfd, const std::string& name, const std::string& shown, int depth) {
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      files_.problem(shown, 0, fmt::format("cannot read: {}", std::strerror(errno)));
      return;
    }
    if (S_ISLNK(st.st_mode)) {
      files_.problem(shown, 0, "a symlink; not followed");
      ++stats_.skippedFiles;
      return;
    }
    if (!S_ISDIR(st.st_mode) && !isLogName(name)) return;
    // O_NOFOLLOW and fstat again: the entry may have been replaced since.
    Fd fd{::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)};
    if (fd.fd < 0) {
      files_.problem(shown, 0,
                     errno == ELOOP ? std::string("a symlink; not followed")
                                    : fmt::format("cannot open: {}", std::strerror(errno)));
      ++stats_.skippedFiles;
      return;
    }
    if (::fstat(fd.fd, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
      directory(fd.fd, shown, depth + 1);
      return;
    }
    ++seen_;
    if (!S_ISREG(st.st_mode)) {
      files_.problem(shown, 0, "not a regular file; not read");
      ++stats_.skippedFiles;
      return;
    }
    files_.read(fd.fd, shown);
  }
};

}  // namespace

std::optional<std::string_view> RowView::get(Field f) const {
  const auto& fs = format.fields();
  for (std::size_t i = 0; i < fs.size(); ++i)
    if (fs[i] == f) return values[i];
  return std::nullopt;
}

std::string ReadProblem::text() const {
  if (line == 0) return fmt::format("{}: {}", escapeForMessage(file), message);
  return fmt::format("{}:{}: {}", escapeForMessage(file), line, message);
}

Expected<ReadStats> readFlowLogs(const std::string& path, const ReadLimits& limits,
                                 const std::function<void(const RowView&)>& each) {
  ReadStats stats;
  FileReader files(limits, stats, each);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return systemError(ErrorCode::kIo, "cannot read " + path, errno);
  if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
    return makeError(ErrorCode::kInvalidArgument, path + " is neither a directory nor a regular file");
  Fd fd{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)};
  if (fd.fd < 0) return systemError(ErrorCode::kIo, "cannot read " + path, errno);
  if (::fstat(fd.fd, &st) != 0) return systemError(ErrorCode::kIo, "cannot read " + path, errno);
  if (S_ISDIR(st.st_mode)) {
    std::string shown = path;
    while (shown.size() > 1 && shown.back() == '/') shown.pop_back();
    TreeReader(limits, stats, files).directory(fd.fd, shown, 0);
  } else if (S_ISREG(st.st_mode)) {
    files.read(fd.fd, path);
  } else {
    return makeError(ErrorCode::kInvalidArgument, path + " is neither a directory nor a regular file");
  }
  return stats;
}

}  // namespace vpcfw::flowlog
