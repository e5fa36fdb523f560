#include "vpcfw/nft/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace vpcfw::nft {

std::string netnsPath(const std::string& name) { return "/run/netns/" + name; }

Expected<void> runInNetns(const std::optional<std::string>& name, const std::function<Expected<void>()>& fn) {
  if (!name) return fn();
  Expected<void> result;
  std::thread worker([&] {
    const std::string path = netnsPath(*name);
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      result = makeError(ErrorCode::kNotFound, "network namespace '" + *name + "': " + std::strerror(errno));
      return;
    }
    if (setns(fd, CLONE_NEWNET) != 0) {
      result = makeError(ErrorCode::kKernel, "cannot enter network namespace '" + *name + "': " + std::strerror(errno));
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

}  // namespace vpcfw::nft
