// State directories, atomic files and flock-based locks under /run/vpcfw.
#include "vpcfw/state/state.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <random>
#include <utility>

namespace vpcfw::state {
namespace {

using Clock = std::chrono::steady_clock;

// A descriptor closed on every path out.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// An existing state directory or file must be ours and private.
Expected<void> checkOwned(int fd, const std::string& path, bool directory) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return systemError(ErrorCode::kIo, "stat " + path, errno);
  if (directory ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
    return makeError(ErrorCode::kIo,
                     fmt::format("{} is not a {}; refusing to use it", path, directory ? "directory" : "regular file"));
  if (st.st_uid != geteuid())
    return makeError(ErrorCode::kIo, fmt::format("{} is owned by uid {}, not by uid {}; refusing to trust it", path,
                                                 st.st_uid, geteuid()));
  if (st.st_mode & 022)
    return makeError(ErrorCode::kIo, fmt::format("{} is writable by group or others (mode {:o}); refusing to trust it",
                                                 path, st.st_mode & 07777));
  return {};
}

// Opens (making it 0700 if missing) the directory `name` inside `parent`.
Expected<Fd> openPrivateDir(int parent, const std::string& name, const std::string& path) {
  bool made = false;
  if (mkdirat(parent, name.c_str(), 0700) == 0)
    made = true;
  else if (errno != EEXIST)
    return systemError(ErrorCode::kIo, "create " + path, errno);
  Fd fd(openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) {
    const int err = errno;
    struct stat st {};
    if (fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
      return makeError(ErrorCode::kIo, path + " is a symlink; refusing to follow it", err);
    return systemError(ErrorCode::kIo, "open " + path, err);
  }
  // The umask may have taken bits off; a directory made just now is ours to set.
  if (made && fchmod(fd.get(), 0700) != 0) return systemError(ErrorCode::kIo, "chmod " + path, errno);
  if (auto ok = checkOwned(fd.get(), path, true); !ok) return unexpected(ok.error());
  return fd;
}

Expected<void> checkName(std::string_view name, const std::string& dir) {
  if (!isSafeComponent(name))
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("'{}' is not a safe file name inside {}", std::string(name.substr(0, 64)), dir));
  return {};
}

std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

std::string runDir() {
  const char* env = std::getenv("VPCFW_RUN_DIR");
  return env && *env ? std::string(env) : std::string("/run/vpcfw");
}

bool isSafeComponent(std::string_view name) {
  if (name.empty() || name.size() > 128 || name.front() == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-' || c == ':' || c == '@' || c == '+';
  });
}

std::string lockFileName(std::string_view kind, std::string_view name) {
  if (name.size() <= 64 && isSafeComponent(name)) return fmt::format("{}.{}", kind, name);
  std::string safe;
  for (char c : name.substr(0, 40)) safe += isSafeComponent(std::string_view(&c, 1)) ? c : '_';
  return fmt::format("{}.{}+{:016x}", kind, safe, fnv1a64(name));
}

// ------------------------------------------------------------------- Dir

Expected<Dir> Dir::open(std::string_view sub) {
  const std::string root = runDir();
  if (root.empty() || root.front() != '/')
    return makeError(ErrorCode::kInvalidArgument, "the state directory must be an absolute path");
  if (auto ok = checkName(sub, root); !ok) return unexpected(ok.error());
  // The root's parent (/run) is the system's; the root itself and below are ours.
  const auto slash = root.find_last_of('/');
  const std::string parentPath = slash == 0 ? "/" : root.substr(0, slash);
  Fd parent(::open(parentPath.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (parent.get() < 0) return systemError(ErrorCode::kIo, "open " + parentPath, errno);
  auto top = openPrivateDir(parent.get(), root.substr(slash + 1), root);
  if (!top) return unexpected(top.error());
  const std::string path = root + "/" + std::string(sub);
  auto dir = openPrivateDir(top->get(), std::string(sub), path);
  if (!dir) return unexpected(dir.error());
  return Dir(dir->release(), path);
}

Dir::Dir(Dir&& o) noexcept : fd_(std::exchange(o.fd_, -1)), path_(std::move(o.path_)) {}

Dir& Dir::operator=(Dir&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    path_ = std::move(o.path_);
  }
  return *this;
}

Dir::~Dir() {
  if (fd_ >= 0) ::close(fd_);
}

Expected<void> Dir::writeFile(std::string_view name, std::string_view content) const {
  if (auto ok = checkName(name, path_); !ok) return ok;
  const std::string target(name);
  const std::string tmp = fmt::format(".{}.{}.{:08x}.tmp", target, getpid(), std::random_device{}());
  Fd fd(openat(fd_, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (fd.get() < 0) return systemError(ErrorCode::kIo, fmt::format("create {}/{}", path_, tmp), errno);
  auto fail = [&](const std::string& what, int err) {
    unlinkat(fd_, tmp.c_str(), 0);
    return systemError(ErrorCode::kIo, fmt::format("{} {}/{}", what, path_, target), err);
  };
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write", errno);
    }
    done += static_cast<std::size_t>(n);
  }
  if (fsync(fd.get()) != 0) return fail("sync", errno);
  if (renameat(fd_, tmp.c_str(), fd_, target.c_str()) != 0) return fail("rename over", errno);
  return {};
}

Expected<std::optional<std::string>> Dir::readFile(std::string_view name, std::size_t maxBytes) const {
  if (auto ok = checkName(name, path_); !ok) return unexpected(ok.error());
  const std::string file = path_ + "/" + std::string(name);
  Fd fd(openat(fd_, std::string(name).c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return std::optional<std::string>();
    return systemError(ErrorCode::kIo, errno == ELOOP ? file + " is a symlink; refusing to follow it" : "open " + file,
                       errno);
  }
  if (auto ok = checkOwned(fd.get(), file, false); !ok) return unexpected(ok.error());
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return systemError(ErrorCode::kIo, "read " + file, errno);
    }
    if (n == 0) break;
    if (out.size() + static_cast<std::size_t>(n) > maxBytes)
      return makeError(ErrorCode::kIo, fmt::format("{} is larger than {} bytes; refusing to read it", file, maxBytes));
    out.append(buf, static_cast<std::size_t>(n));
  }
  return std::optional<std::string>(std::move(out));
}

Expected<void> Dir::remove(std::string_view name) const {
  if (auto ok = checkName(name, path_); !ok) return ok;
  if (unlinkat(fd_, std::string(name).c_str(), 0) != 0 && errno != ENOENT)
    return systemError(ErrorCode::kIo, fmt::format("remove {}/{}", path_, name), errno);
  return {};
}

// ------------------------------------------------------------------ Lock

Expected<Lock> Lock::acquire(std::string_view kind, std::string_view name, std::chrono::milliseconds timeout,
                             const std::function<void(const std::string&)>& waiting) {
  auto dir = Dir::open("lock");
  if (!dir) return unexpected(dir.error());
  const std::string file = lockFileName(kind, name);
  const std::string path = dir->path() + "/" + file;
  Fd fd(openat(dir->fd(), file.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600));
  if (fd.get() < 0) return systemError(ErrorCode::kIo, "open lock " + path, errno);
  if (auto ok = checkOwned(fd.get(), path, false); !ok) return unexpected(ok.error());

  auto holder = [&]() -> std::string {
    char buf[256];
    ssize_t n = pread(fd.get(), buf, sizeof buf - 1, 0);
    std::string s = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
    while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
    for (char& c : s)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
    return s.empty() ? std::string("another vpcfw command") : s;
  };

  // The holder releases by closing its descriptor: inotify tells us when any
  // descriptor on the file is closed, and each time the lock is tried again.
  Fd watch;
  const auto deadline = Clock::now() + timeout;
  bool told = false;
  for (;;) {
    if (flock(fd.get(), LOCK_EX | LOCK_NB) == 0) break;
    if (errno != EWOULDBLOCK && errno != EINTR) return systemError(ErrorCode::kIo, "lock " + path, errno);
    if (watch.get() < 0) {
      watch = Fd(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
      if (watch.get() < 0) return systemError(ErrorCode::kIo, "inotify", errno);
      if (inotify_add_watch(watch.get(), path.c_str(), IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_DELETE_SELF) < 0)
        return systemError(ErrorCode::kIo, "watch " + path, errno);
      continue;  // released between the first try and the watch: try again
    }
    if (!told && waiting) waiting(holder());
    told = true;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0)
      return makeError(ErrorCode::kBusy, fmt::format("{} {} is locked by {} ({}); gave up after {} ms", kind, name,
                                                     holder(), path, timeout.count()));
    pollfd p{watch.get(), POLLIN, 0};
    // A holder that unlocks without closing sends no event; look again each second.
    int n = poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (n < 0 && errno != EINTR) return systemError(ErrorCode::kIo, "wait for " + path, errno);
    char events[4096];
    while (::read(watch.get(), events, sizeof events) > 0) {
    }
  }
  // Who holds it, for the next one waiting.
  std::string self = fmt::format("pid {}", getpid());
  if (ftruncate(fd.get(), 0) == 0) (void)pwrite(fd.get(), self.data(), self.size(), 0);
  return Lock(fd.release(), path);
}

Lock::Lock(Lock&& o) noexcept : fd_(std::exchange(o.fd_, -1)), path_(std::move(o.path_)) {}

Lock& Lock::operator=(Lock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    path_ = std::move(o.path_);
  }
  return *this;
}

Lock::~Lock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock and wakes the waiters
}

}  // namespace vpcfw::state
