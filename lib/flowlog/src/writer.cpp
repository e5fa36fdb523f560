// The flow-log writers (writer.h): gzip through zlib, directories walked with
// openat(O_NOFOLLOW), files made under a temporary name and renamed.
#include "vpcfw/flowlog/writer.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <cstdio>
#include <algorithm>
#include <cerrno>
#include <ctime>
#include <map>

namespace vpcfw::flowlog {
namespace {

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

Expected<void> writeAll(int fd, const char* p, std::size_t n, const std::string& what) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return systemError(ErrorCode::kIo, fmt::format("cannot write {}", what), errno);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return {};
}

std::tm utc(std::int64_t t) {
  std::tm tm{};
  const std::time_t tt = static_cast<std::time_t>(t);
  ::gmtime_r(&tt, &tm);
  return tm;
}

std::int64_t floorTo(std::int64_t t, std::int64_t step) {
  std::int64_t q = t / step;
  if (t % step != 0 && t < 0) --q;
  return q * step;
}

// A path component that is safe to make or open below a directory.
bool plainComponent(std::string_view c) { return !c.empty() && c != "." && c != ".." && c.find('/') == c.npos; }

Expected<int> openBelow(int dirfd, const std::string& component, bool create, const std::string& shown) {
  if (!plainComponent(component))
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("{}: {} is not a plain path component", shown, component));
  for (int attempt = 0; attempt < 2; ++attempt) {
    int fd = ::openat(dirfd, component.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) return fd;
    const int err = errno;
    if (err == ELOOP || err == ENOTDIR)
      return makeError(
          ErrorCode::kInvalidArgument,
          fmt::format("{}: '{}' is a symlink or not a directory (flow-log paths follow no symlink)", shown, component));
    if (err != ENOENT || !create) return systemError(ErrorCode::kIo, fmt::format("cannot open {}", shown), err);
    if (::mkdirat(dirfd, component.c_str(), 0755) != 0 && errno != EEXIST)
      return systemError(ErrorCode::kIo, fmt::format("cannot make directory {}", shown), errno);
    // mkdirat honours the umask; the layout's directories are 0755 whatever it is.
    Fd made{::openat(dirfd, component.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)};
    if (made.fd >= 0) {
      if (::fchmod(made.fd, 0755) != 0)
        return systemError(ErrorCode::kIo, fmt::format("cannot set the mode of {}", shown), errno);
      int fd2 = made.fd;
      made.fd = -1;
      return fd2;
    }
  }
  return systemError(ErrorCode::kIo, fmt::format("cannot open {}", shown), errno);
}

// Opens each '/'-separated component of `relative` below `dirfd`.
Expected<int> openPathBelow(int dirfd, const std::string& relative, bool create, const std::string& base) {
  Fd current{::fcntl(dirfd, F_DUPFD_CLOEXEC, 0)};
  if (current.fd < 0) return systemError(ErrorCode::kIo, "cannot duplicate a directory descriptor", errno);
  std::string shown = base;
  std::size_t i = 0;
  while (i < relative.size()) {
    std::size_t slash = relative.find('/', i);
    if (slash == std::string::npos) slash = relative.size();
    const std::string component = relative.substr(i, slash - i);
    i = slash + 1;
    if (component.empty()) continue;
    shown += "/" + component;
    auto next = openBelow(current.fd, component, create, shown);
    if (!next) return unexpected(next.error());
    current = Fd{*next};
  }
  int fd = current.fd;
  current.fd = -1;
  return fd;
}

std::string lines(const std::vector<Record>& records, const Format& format) {
  std::string out;
  for (const auto& r : records) {
    out += render(r, format);
    out += '\n';
  }
  return out;
}

// ------------------------------------------------------------ S3 layout

class S3LayoutWriter final : public Writer {
 public:
  explicit S3LayoutWriter(S3LayoutOptions o) : o_(std::move(o)) {
    o_.rotateSeconds = std::max<std::int64_t>(1, o_.rotateSeconds);
  }
  ~S3LayoutWriter() override { (void)close(); }

  Expected<void> write(const std::vector<Record>& records, std::int64_t now) override {
    if (open_ && now >= windowStart_ + o_.rotateSeconds) {
      if (auto c = finish(); !c) return c;
    }
    if (records.empty()) return {};
    if (!open_) {
      if (auto s = start(now); !s) return s;
    }
    const std::string text = lines(records, o_.format);
    if (auto w = deflateText(text, Z_NO_FLUSH); !w) {
      abandon();
      return w;
    }
    if (compressed_ >= o_.maxFileBytes) return finish();
    return {};
  }

  Expected<void> close() override {
    if (!open_) return {};
    return finish();
  }

 private:
  S3LayoutOptions o_;
  bool open_ = false;
  Fd dir_, file_;
  z_stream z_{};
  std::int64_t windowStart_ = 0;
  std::uint64_t compressed_ = 0;
  std::uint64_t sequence_ = 0;
  std::string tmpName_, finalName_, shownDir_;

  Expected<void> start(std::int64_t now) {
    windowStart_ = floorTo(now, o_.rotateSeconds);
    auto root = openDirectoryNoFollow(o_.prefix, true);
    if (!root) return unexpected(root.error());
    Fd rootFd{*root};
    const std::string relative = s3LayoutDirectory(o_.accountId, o_.region, windowStart_);
    shownDir_ = o_.prefix + "/" + relative;
    auto dir = openPathBelow(rootFd.fd, relative, true, o_.prefix);
    if (!dir) return unexpected(dir.error());
    dir_ = Fd{*dir};
    // The hash tells apart the files of one window (a size rotation, a
    // restart): the flow log, the window, this process and a sequence.
    for (int attempt = 0; attempt < 64; ++attempt) {
      const std::string seed = fmt::format("{}/{}/{}/{}", o_.flowLogId, windowStart_, ::getpid(), sequence_++);
      const std::string id = awsId("h", seed);
      finalName_ = s3LayoutFileName(o_.accountId, o_.region, o_.flowLogId, windowStart_, id.substr(2, 8));
      tmpName_ = "." + finalName_ + ".tmp";
      struct stat st {};
      if (::fstatat(dir_.fd, finalName_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) continue;
      int fd = ::openat(dir_.fd, tmpName_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
      if (fd < 0 && errno == EEXIST) continue;
      if (fd < 0) return systemError(ErrorCode::kIo, fmt::format("cannot create {}/{}", shownDir_, tmpName_), errno);
      file_ = Fd{fd};
      if (::fchmod(file_.fd, 0640) != 0)
        return systemError(ErrorCode::kIo, fmt::format("cannot set the mode of {}/{}", shownDir_, tmpName_), errno);
      z_ = z_stream{};
      // 15 + 16: a gzip wrapper, as AWS's files have.
      if (deflateInit2(&z_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return makeError(ErrorCode::kInternal, "zlib: deflateInit2 failed");
      open_ = true;
      compressed_ = 0;
      return deflateText(o_.format.header() + "\n", Z_NO_FLUSH);
    }
    return makeError(ErrorCode::kIo, fmt::format("cannot find a free file name in {}", shownDir_));
  }

  Expected<void> deflateText(const std::string& text, int flush) {
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
    z_.avail_in = static_cast<uInt>(text.size());
    unsigned char out[1 << 16];
    int rc = Z_OK;
    do {
      z_.next_out = out;
      z_.avail_out = sizeof out;
      rc = ::deflate(&z_, flush);
      if (rc == Z_STREAM_ERROR) return makeError(ErrorCode::kInternal, "zlib: deflate failed");
      const std::size_t n = sizeof out - z_.avail_out;
      if (n > 0) {
        if (auto w = writeAll(file_.fd, reinterpret_cast<const char*>(out), n, shownDir_ + "/" + tmpName_); !w)
          return w;
        compressed_ += n;
      }
    } while (z_.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
    return {};
  }

  // A file that could not be written (a full disk) is removed, not left as
  // a temporary file: the next write starts a new one.
  void abandon() {
    if (open_) ::deflateEnd(&z_);
    open_ = false;
    if (dir_.fd >= 0 && !tmpName_.empty()) ::unlinkat(dir_.fd, tmpName_.c_str(), 0);
    file_ = Fd{};
    dir_ = Fd{};
  }

  // The gzip trailer, then the file appears under its final name.
  Expected<void> finish() {
    open_ = false;
    auto done = deflateText({}, Z_FINISH);
    ::deflateEnd(&z_);
    if (!done || ::fsync(file_.fd) != 0) {
      auto e = done ? systemError(ErrorCode::kIo, fmt::format("cannot write {}/{}", shownDir_, tmpName_), errno)
                    : unexpected(done.error());
      abandon();
      return e;
    }
    file_ = Fd{};
    if (::renameat(dir_.fd, tmpName_.c_str(), dir_.fd, finalName_.c_str()) != 0)
      return systemError(ErrorCode::kIo, fmt::format("cannot rename {}/{}", shownDir_, tmpName_), errno);
    dir_ = Fd{};
    return {};
  }
};

// ------------------------------------------------------------ streams

class StreamWriter final : public Writer {
 public:
  StreamWriter(std::string directory, Format format) : directory_(std::move(directory)), format_(std::move(format)) {}

  Expected<void> write(const std::vector<Record>& records, std::int64_t) override {
    if (records.empty()) return {};
    if (dir_.fd < 0) {
      auto d = openDirectoryNoFollow(directory_, true);
      if (!d) return unexpected(d.error());
      dir_ = Fd{*d};
    }
    // One write per ENI per batch: its lines land together at the end.
    std::map<std::string, std::string> byEni;
    for (const auto& r : records) {
      auto& text = byEni[r.eni.interfaceId];
      text += render(r, format_);
      text += '\n';
    }
    // One stream that cannot be written (a planted symlink, another format's
    // file, a full disk) does not keep the other ENIs' lines from theirs; the
    // first error is reported.
    Expected<void> result;
    for (const auto& [eni, text] : byEni) {
      auto fd = streamFile(eni);
      if (!fd) {
        if (result) result = unexpected(fd.error());
        continue;
      }
      if (auto w = writeAll(*fd, text.data(), text.size(), directory_ + "/" + eni + ".log"); !w && result) result = w;
    }
    return result;
  }

  Expected<void> close() override {
    files_.clear();
    dir_ = Fd{};
    return {};
  }

 private:
  std::string directory_;
  Format format_;
  Fd dir_;
  std::map<std::string, Fd> files_;

  Expected<int> streamFile(const std::string& eni) {
    if (auto it = files_.find(eni); it != files_.end()) return it->second.fd;
    const std::string name = eni + ".log";
    const std::string shown = directory_ + "/" + name;
    if (!plainComponent(name)) return makeError(ErrorCode::kInvalidArgument, shown + " is not a plain file name");
    const std::string header = format_.header() + "\n";
    int fd = ::openat(dir_.fd, name.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd >= 0) {
      Fd made{fd};
      if (::fchmod(fd, 0640) != 0) return systemError(ErrorCode::kIo, "cannot set the mode of " + shown, errno);
      if (auto w = writeAll(fd, header.data(), header.size(), shown); !w) return unexpected(w.error());
      return files_.emplace(eni, std::move(made)).first->second.fd;
    }
    if (errno != EEXIST) return systemError(ErrorCode::kIo, "cannot create " + shown, errno);
    Fd existing{::openat(dir_.fd, name.c_str(), O_RDWR | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)};
    if (existing.fd < 0) {
      if (errno == ELOOP)
        return makeError(ErrorCode::kInvalidArgument, shown + " is a symlink (flow-log paths follow no symlink)");
      return systemError(ErrorCode::kIo, "cannot open " + shown, errno);
    }
    struct stat st {};
    if (::fstat(existing.fd, &st) != 0 || !S_ISREG(st.st_mode))
      return makeError(ErrorCode::kInvalidArgument, shown + " is not a regular file");
    std::string first(header.size(), '\0');
    ssize_t n = ::pread(existing.fd, first.data(), first.size(), 0);
    if (n != static_cast<ssize_t>(first.size()) || first != header)
      return makeError(ErrorCode::kInvalidArgument,
                       shown + " holds records of another format (its first line is not this flow log's header)");
    return files_.emplace(eni, std::move(existing)).first->second.fd;
  }
};

// ------------------------------------------------------------ a descriptor

class FdWriter final : public Writer {
 public:
  FdWriter(int fd, Format format, bool header) : fd_(fd), format_(std::move(format)), header_(header) {}

  Expected<void> write(const std::vector<Record>& records, std::int64_t) override {
    std::string text;
    if (header_) {
      text = format_.header() + "\n";
      header_ = false;
    }
    text += lines(records, format_);
    return writeAll(fd_, text.data(), text.size(), "the flow-log records");
  }
  Expected<void> close() override { return {}; }

 private:
  int fd_;
  Format format_;
  bool header_;
};

}  // namespace

std::string s3LayoutDirectory(const std::string& accountId, const std::string& region, std::int64_t time) {
  const std::tm tm = utc(time);
  return fmt::format("AWSLogs/{}/vpcflowlogs/{}/{:04}/{:02}/{:02}", accountId, region, tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday);
}

std::string s3LayoutFileName(const std::string& accountId, const std::string& region, const std::string& flowLogId,
                             std::int64_t windowStart, std::string_view hash) {
  const std::tm tm = utc(windowStart);
  return fmt::format("{}_vpcflowlogs_{}_{}_{:04}{:02}{:02}T{:02}{:02}Z_{}.log.gz", accountId, region, flowLogId,
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, hash);
}

Expected<int> openDirectoryNoFollow(const std::string& path, bool create) {
  if (path.empty() || path.front() != '/')
    return makeError(ErrorCode::kInvalidArgument, fmt::format("{} is not an absolute path", path));
  Fd root{::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (root.fd < 0) return systemError(ErrorCode::kIo, "cannot open /", errno);
  return openPathBelow(root.fd, path.substr(1), create, "");
}

std::unique_ptr<Writer> makeS3LayoutWriter(S3LayoutOptions options) {
  return std::make_unique<S3LayoutWriter>(std::move(options));
}

std::unique_ptr<Writer> makeStreamWriter(std::string directory, Format format) {
  return std::make_unique<StreamWriter>(std::move(directory), std::move(format));
}

std::unique_ptr<Writer> makeFdWriter(int fd, Format format, bool header) {
  return std::make_unique<FdWriter>(fd, std::move(format), header);
}

}  // namespace vpcfw::flowlog
