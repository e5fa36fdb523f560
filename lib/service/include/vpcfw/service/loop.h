// The daemon's one event loop: epoll over file descriptors, one-shot timers
// on a single timerfd, and nothing else. Idle means blocked in epoll_wait
// with no timeout unless a timer is armed, so an idle daemon does not wake
// (daemon.md: no polling, no sleeps).
//
// Single-threaded: every callback runs on the thread that called run().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "vpcfw/base/error.h"

namespace vpcfw::service {

class EventLoop {
 public:
  using Clock = std::chrono::steady_clock;
  using FdCallback = std::function<void(std::uint32_t events)>;  // EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP
  using TimerId = std::uint64_t;

  [[nodiscard]] static Expected<EventLoop> create();
  EventLoop(EventLoop&&) noexcept;
  EventLoop& operator=(EventLoop&&) = delete;
  EventLoop(const EventLoop&) = delete;
  ~EventLoop();

  // Watches `fd` (not owned) for `events`; one callback per fd.
  [[nodiscard]] Expected<void> add(int fd, std::uint32_t events, FdCallback cb);
  [[nodiscard]] Expected<void> modify(int fd, std::uint32_t events);
  // Safe from inside any callback, including fd's own.
  void remove(int fd);

  // Runs `cb` once, `delay` from now. Ids are never reused.
  TimerId after(std::chrono::milliseconds delay, std::function<void()> cb);
  void cancel(TimerId id);
  bool pending(TimerId id) const { return timers_.count(id) != 0; }

  // Dispatches until stop() (returns success) or an epoll failure.
  [[nodiscard]] Expected<void> run();
  void stop() { stopping_ = true; }

  // Wakeups so far (epoll_wait returns): the idle-wakeup figure of the bench.
  std::uint64_t wakeups() const { return wakeups_; }

 private:
  EventLoop(int epfd, int timerfd);
  void armTimer();
  void fireTimers();

  struct Watch {
    FdCallback cb;
    std::uint64_t serial = 0;
  };
  struct Timer {
    Clock::time_point due;
    std::function<void()> cb;
  };
  int epfd_ = -1;
  int timerfd_ = -1;
  bool stopping_ = false;
  std::uint64_t wakeups_ = 0;
  std::uint64_t nextSerial_ = 1;
  TimerId nextTimer_ = 1;
  std::map<int, std::shared_ptr<Watch>> watches_;
  std::map<TimerId, Timer> timers_;
};

}  // namespace vpcfw::service
