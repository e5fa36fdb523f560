// The epoll + timerfd loop (loop.h).
#include "vpcfw/service/loop.h"

#include <unistd.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>

#include <array>
#include <cerrno>
#include <vector>

namespace vpcfw::service {

Expected<EventLoop> EventLoop::create() {
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return systemError(ErrorCode::kInternal, "epoll_create1", errno);
  int tf = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (tf < 0) {
    int e = errno;
    ::close(ep);
    return systemError(ErrorCode::kInternal, "timerfd_create", e);
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = tf;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, tf, &ev) < 0) {
    int e = errno;
    ::close(ep);
    ::close(tf);
    return systemError(ErrorCode::kInternal, "epoll_ctl(timerfd)", e);
  }
  return EventLoop(ep, tf);
}

EventLoop::EventLoop(int epfd, int timerfd) : epfd_(epfd), timerfd_(timerfd) {}

EventLoop::EventLoop(EventLoop&& o) noexcept
    : epfd_(o.epfd_),
      timerfd_(o.timerfd_),
      stopping_(o.stopping_),
      wakeups_(o.wakeups_),
      nextSerial_(o.nextSerial_),
      nextTimer_(o.nextTimer_),
      watches_(std::move(o.watches_)),
      timers_(std::move(o.timers_)) {
  o.epfd_ = o.timerfd_ = -1;
}

EventLoop::~EventLoop() {
  if (epfd_ >= 0) ::close(epfd_);
  if (timerfd_ >= 0) ::close(timerfd_);
}

Expected<void> EventLoop::add(int fd, std::uint32_t events, FdCallback cb) {
  if (watches_.count(fd)) return makeError(ErrorCode::kInternal, "event loop: fd watched twice");
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) return systemError(ErrorCode::kInternal, "epoll_ctl(add)", errno);
  watches_[fd] = std::make_shared<Watch>(Watch{std::move(cb), nextSerial_++});
  return {};
}

Expected<void> EventLoop::modify(int fd, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) < 0) return systemError(ErrorCode::kInternal, "epoll_ctl(mod)", errno);
  return {};
}

void EventLoop::remove(int fd) {
  if (watches_.erase(fd)) ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
}

EventLoop::TimerId EventLoop::after(std::chrono::milliseconds delay, std::function<void()> cb) {
  TimerId id = nextTimer_++;
  timers_[id] = Timer{Clock::now() + delay, std::move(cb)};
  armTimer();
  return id;
}

void EventLoop::cancel(TimerId id) {
  if (timers_.erase(id)) armTimer();
}

// The timerfd holds the earliest deadline (absolute, so a late arm never
// stretches it), or is disarmed: no timer, no wakeup.
void EventLoop::armTimer() {
  itimerspec spec{};
  if (!timers_.empty()) {
    auto due = timers_.begin()->second.due;
    for (const auto& [id, t] : timers_)
      if (t.due < due) due = t.due;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(due.time_since_epoch()).count();
    if (ns <= 0) ns = 1;
    spec.it_value.tv_sec = ns / 1'000'000'000;
    spec.it_value.tv_nsec = ns % 1'000'000'000;
  }
  // steady_clock is CLOCK_MONOTONIC on Linux.
  ::timerfd_settime(timerfd_, TFD_TIMER_ABSTIME, &spec, nullptr);
}

void EventLoop::fireTimers() {
  std::uint64_t expirations = 0;
  while (::read(timerfd_, &expirations, sizeof expirations) > 0) {
  }
  const auto now = Clock::now();
  std::vector<TimerId> due;
  for (const auto& [id, t] : timers_)
    if (t.due <= now) due.push_back(id);
  for (auto id : due) {
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;  // cancelled by an earlier callback
    auto cb = std::move(it->second.cb);
    timers_.erase(it);
    cb();
  }
  armTimer();
}

Expected<void> EventLoop::run() {
  stopping_ = false;
  std::array<epoll_event, 32> events{};
  while (!stopping_) {
    int n = ::epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return systemError(ErrorCode::kInternal, "epoll_wait", errno);
    }
    ++wakeups_;
    // Serials let a callback remove (and another add) an fd that is later in
    // this batch: a stale event for a re-used fd number is skipped.
    std::vector<std::pair<int, std::uint64_t>> serials;
    for (int i = 0; i < n; ++i) {
      auto it = watches_.find(events[i].data.fd);
      const int fd = events[i].data.fd;
      serials.emplace_back(fd, it == watches_.end() ? 0 : it->second->serial);
    }
    for (int i = 0; i < n && !stopping_; ++i) {
      const int fd = events[i].data.fd;
      if (fd == timerfd_) {
        fireTimers();
        continue;
      }
      auto it = watches_.find(fd);
      if (it == watches_.end() || it->second->serial != serials[static_cast<std::size_t>(i)].second) continue;
      auto keep = it->second;  // alive even if the callback removes itself
      keep->cb(events[i].events);
    }
  }
  return {};
}

}  // namespace vpcfw::service
