// Namespace plumbing: a thread that joins a namespace, and a namespace's identity.
#include "vpcfw/nft/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "vpcfw/base/diagnostic.h"
#include "vpcfw/names/names.h"

namespace vpcfw::nft {

std::string netnsPath(const std::string& name) { return names::namespacePath(name); }

Expected<void> runInNetns(const std::optional<std::string>& name, const std::function<Expected<void>()>& fn) {
  if (!name) return fn();
  Expected<void> result;
  std::thread worker([&] {
    const std::string path = netnsPath(*name);
    if (path.empty()) {
      result = makeError(ErrorCode::kInvalidArgument,
                         fmt::format("{} cannot name a network namespace", quoteForMessage(*name)));
      return;
    }
    // Without blocking: whatever sits in /run/netns, a FIFO must not hang us (setns refuses non-namespaces).
    int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
      result = systemError(ErrorCode::kNotFound, "network namespace '" + *name + "'", errno);
      return;
    }
    if (setns(fd, CLONE_NEWNET) != 0) {
      result = systemError(ErrorCode::kKernel, "cannot enter network namespace '" + *name + "'", errno);
      close(fd);
      return;
    }
    close(fd);
    // The thread ends after fn, so its namespace never leaks to other work.
    result = fn();
  });
  worker.join();
  return result;
}

Expected<std::string> netnsIdentity(const std::optional<std::string>& name) {
  // /proc/thread-self: this thread's namespace, which a runInNetns worker has changed.
  const std::string path = name ? netnsPath(*name) : std::string("/proc/thread-self/ns/net");
  if (path.empty())
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("{} cannot name a network namespace", quoteForMessage(*name)));
  struct stat st {};
  if (stat(path.c_str(), &st) != 0)
    return systemError(ErrorCode::kNotFound, name ? "network namespace '" + *name + "'" : path, errno);
  return fmt::format("{}-{}", static_cast<unsigned long long>(st.st_dev), static_cast<unsigned long long>(st.st_ino));
}

}  // namespace vpcfw::nft
