// vpcfw's runtime state on disk (/run/vpcfw): directories that only root can
// write, files written atomically and read back as untrusted input, and the
// locks that serialise commands changing one fabric or one lab.
//
// Everything here works relative to an open directory descriptor, never by
// joining strings into paths: a name is one checked path component, and a
// symlink, a foreign owner or a wrong file type is refused (hardening.md §2, §3).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "vpcfw/base/error.h"

namespace vpcfw::state {

// The root of vpcfw's state: /run/vpcfw, or $VPCFW_RUN_DIR (tests only; it
// must name a directory the caller owns, and the same checks apply).
std::string runDir();

// True for a name that may be used as one component inside a state
// directory: 1..128 bytes of [A-Za-z0-9._:@+-], not starting with '.'.
bool isSafeComponent(std::string_view name);

// A state directory, held open. Made 0700 and owned by the caller's
// effective user whatever the umask; an existing one that is a symlink, not
// a directory, owned by someone else, or writable by group/others is refused.
class Dir {
 public:
  // runDir()/sub (made as needed; `sub` is one safe component).
  [[nodiscard]] static Expected<Dir> open(std::string_view sub);
  Dir(Dir&& o) noexcept;
  Dir& operator=(Dir&& o) noexcept;
  Dir(const Dir&) = delete;
  Dir& operator=(const Dir&) = delete;
  ~Dir();

  const std::string& path() const { return path_; }
  int fd() const { return fd_; }

  // Writes `content` to a fresh temporary file (O_CREAT|O_EXCL|O_NOFOLLOW,
  // mode 0600), syncs it and renames it over `name`: readers see the old
  // file or the new one, never a part.
  [[nodiscard]] Expected<void> writeFile(std::string_view name, std::string_view content) const;
  // The file's content; nullopt when it does not exist. Refused: a symlink,
  // anything but a regular file, a file owned by another user or writable by
  // group/others, more than `maxBytes`.
  [[nodiscard]] Expected<std::optional<std::string>> readFile(std::string_view name,
                                                              std::size_t maxBytes = 1 << 20) const;
  // Removes `name`; a missing file is not an error.
  [[nodiscard]] Expected<void> remove(std::string_view name) const;

 private:
  Dir(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

// An exclusive lock on one thing vpcfw changes (a fabric, a lab), held for
// as long as the object lives: flock(2) on runDir()/lock/<kind>.<name>, so
// it is released when the process dies, however it dies.
class Lock {
 public:
  // Waits up to `timeout` for the lock. The wait sleeps until the holder
  // closes the lock file (inotify), not in a polling loop; `waiting` is
  // called once, with the holder's description, if the lock is busy.
  // Errors: kBusy when the timeout passes (the message names the holder).
  [[nodiscard]] static Expected<Lock> acquire(std::string_view kind, std::string_view name,
                                              std::chrono::milliseconds timeout,
                                              const std::function<void(const std::string&)>& waiting = {});
  Lock(Lock&& o) noexcept;
  Lock& operator=(Lock&& o) noexcept;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
  ~Lock();

  const std::string& path() const { return path_; }

 private:
  Lock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

// The default wait for a lock: long enough for a large apply, short enough
// that a stuck holder is reported rather than waited on forever.
inline constexpr std::chrono::milliseconds kDefaultLockTimeout{30'000};

// The lock-file name for an arbitrary object name: the name itself when it is
// a safe component of at most 64 bytes, else a sanitised prefix plus a hash,
// so that two different names never share a lock.
std::string lockFileName(std::string_view kind, std::string_view name);

}  // namespace vpcfw::state
