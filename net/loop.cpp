// The data plane's own I/O loop: the shared part (tasks, timers), then the two back ends.
#include "net/loop.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#include <liburing.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace starling::net {

const char* to_string(backend b) { return b == backend::uring ? "io_uring" : "epoll"; }

// ---------------------------------------------------------------- tasks and timers

void loop::run() {
  for (;;) {
    run_posted();
    run_due_timers();
    {
      std::lock_guard lock(mutex_);
      if (stop_) {
        stop_ = false; // a later run() runs again
        return;
      }
    }
    std::optional<clock::time_point> deadline;
    if (!heap_.empty())
      deadline = heap_.front().due;
    ++counts_.waits;
    counts_.wakeups += wait(deadline);
  }
}

void loop::stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake();
}

void loop::post(task t) {
  {
    std::lock_guard lock(mutex_);
    posted_.push_back(std::move(t));
  }
  wake();
}

void loop::run_posted() {
  std::vector<task> ready;
  {
    std::lock_guard lock(mutex_);
    ready.swap(posted_);
  }
  for (auto& t : ready)
    t();
}

loop::timer_id loop::after(clock::duration delay, task t) {
  const timer_id id = next_timer_++;
  heap_.push_back({clock::now() + std::max(delay, clock::duration::zero()), id});
  std::push_heap(heap_.begin(), heap_.end(), std::greater<>{});
  timer_tasks_.emplace(id, std::move(t));
  return id;
}

bool loop::cancel(timer_id id) {
  // Its heap entry stays until it comes due, and is skipped then.
  return timer_tasks_.erase(id) != 0;
}

void loop::run_due_timers() {
  const auto now = clock::now();
  while (!heap_.empty() && heap_.front().due <= now) {
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>{});
    const timer_id id = heap_.back().id;
    heap_.pop_back();
    auto it = timer_tasks_.find(id);
    if (it == timer_tasks_.end())
      continue; // cancelled
    task t = std::move(it->second);
    timer_tasks_.erase(it);
    t();
  }
}

namespace {

std::string system_error(const char* what, int err) {
  return std::string{what} + ": " + std::strerror(err);
}

/// Nanoseconds from now until `deadline`, zero when it has passed.
std::chrono::nanoseconds left_until(loop::clock::time_point deadline) {
  const auto left = deadline - loop::clock::now();
  return std::max(std::chrono::duration_cast<std::chrono::nanoseconds>(left),
                  std::chrono::nanoseconds::zero());
}

/// The eventfd that other threads write to wake the loop.
int make_eventfd(std::string& why) {
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0)
    why = system_error("eventfd", errno);
  return fd;
}

void write_eventfd(int fd) {
  const std::uint64_t one = 1;
  // Can fail only when the counter is about to overflow (2^64 - 2 unread wake-ups): the
  // loop is then woken already.
  [[maybe_unused]] const auto n = ::write(fd, &one, sizeof one);
}

// ---------------------------------------------------------------- epoll

class epoll_loop final : public loop {
public:
  static std::unique_ptr<loop> make(std::string& why) {
    std::unique_ptr<epoll_loop> l{new epoll_loop};
    l->epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (l->epoll_ < 0) {
      why = system_error("epoll_create1", errno);
      return nullptr;
    }
    l->wake_fd_ = make_eventfd(why);
    if (l->wake_fd_ < 0)
      return nullptr;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = l->wake_fd_;
    if (::epoll_ctl(l->epoll_, EPOLL_CTL_ADD, l->wake_fd_, &ev) != 0) {
      why = system_error("epoll_ctl", errno);
      return nullptr;
    }
    return l;
  }
  ~epoll_loop() override {
    if (wake_fd_ >= 0)
      ::close(wake_fd_);
    if (epoll_ >= 0)
      ::close(epoll_);
  }
  [[nodiscard]] backend kind() const override { return backend::epoll; }

protected:
  std::uint64_t wait(std::optional<clock::time_point> deadline) override {
    timespec ts{};
    timespec* timeout = nullptr;
    if (deadline) {
      const auto left = left_until(*deadline);
      ts.tv_sec = static_cast<time_t>(left.count() / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(left.count() % 1'000'000'000);
      timeout = &ts;
    }
    std::array<epoll_event, 16> events{};
    const auto size = static_cast<int>(events.size());
    int n = -1;
    if (pwait2_) {
      n = ::epoll_pwait2(epoll_, events.data(), size, timeout, nullptr);
      if (n < 0 && errno == ENOSYS)
        pwait2_ = false; // Linux before 5.11: milliseconds, rounded up, from now on
    }
    if (!pwait2_) {
      const auto ms = deadline ? static_cast<int>(std::min<std::int64_t>(
                                     (left_until(*deadline).count() + 999'999) / 1'000'000,
                                     std::numeric_limits<int>::max()))
                               : -1;
      n = ::epoll_wait(epoll_, events.data(), size, ms);
    }
    std::uint64_t woken = 0;
    for (int i = 0; i < n; ++i)
      if (events[static_cast<std::size_t>(i)].data.fd == wake_fd_) {
        std::uint64_t value = 0;
        if (::read(wake_fd_, &value, sizeof value) == sizeof value)
          woken += value;
      }
    return woken; // n < 0: EINTR (a signal); the loop looks again
  }
  void wake() override { write_eventfd(wake_fd_); }

private:
  epoll_loop() = default;
  int epoll_ = -1;
  int wake_fd_ = -1;
  bool pwait2_ = true; // epoll_pwait2 (nanosecond timeouts) works here
};

// ---------------------------------------------------------------- io_uring

/// Entries in the submission queue (the completion queue has twice as many). Asio's 16,384
/// cost 1.5 MiB per ring (docs/bench-proxy.md); 256 cost about 25 KiB.
constexpr unsigned ring_entries = 256;

class uring_loop final : public loop {
public:
  static std::unique_ptr<loop> make(std::string& why) {
    std::unique_ptr<uring_loop> l{new uring_loop};
    io_uring_params params{};
    const int rc = io_uring_queue_init_params(ring_entries, &l->ring_, &params);
    if (rc < 0) {
      why = system_error("io_uring_setup", -rc);
      return nullptr;
    }
    l->ring_open_ = true;
    // NODROP (5.5): completions that do not fit the queue wait in the kernel instead of
    // being lost. EXT_ARG (5.11): a wait with a timeout is one system call, no timeout entry.
    if ((params.features & IORING_FEAT_NODROP) == 0 ||
        (params.features & IORING_FEAT_EXT_ARG) == 0) {
      why = "this kernel's io_uring lacks IORING_FEAT_NODROP or IORING_FEAT_EXT_ARG (Linux 5.11)";
      return nullptr;
    }
    l->wake_fd_ = make_eventfd(why);
    if (l->wake_fd_ < 0)
      return nullptr;
    l->wake_armed_ = l->arm_wake_read(); // the queue is empty: there is room
    return l;
  }
  ~uring_loop() override {
    if (ring_open_)
      io_uring_queue_exit(&ring_); // cancels the pending read before its buffer goes
    if (wake_fd_ >= 0)
      ::close(wake_fd_);
  }
  [[nodiscard]] backend kind() const override { return backend::uring; }

protected:
  std::uint64_t wait(std::optional<clock::time_point> deadline) override {
    if (!wake_armed_)
      wake_armed_ = arm_wake_read();
    // Without its wake-up read the loop would not see other threads' posts: it looks every
    // 10 ms until the read is queued again.
    if (!wake_armed_) {
      const auto soon = clock::now() + std::chrono::milliseconds{10};
      deadline = deadline ? std::min(*deadline, soon) : soon;
    }
    __kernel_timespec ts{};
    __kernel_timespec* timeout = nullptr;
    if (deadline) {
      const auto left = left_until(*deadline);
      ts.tv_sec = left.count() / 1'000'000'000;
      ts.tv_nsec = left.count() % 1'000'000'000;
      timeout = &ts;
    }
    // Submits what is queued and waits, in one io_uring_enter. -ETIME (the deadline) and
    // -EINTR (a signal) leave nothing to do but look again.
    io_uring_cqe* first = nullptr;
    (void)io_uring_submit_and_wait_timeout(&ring_, &first, 1, timeout, nullptr);
    std::uint64_t woken = 0;
    bool rearm = false;
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++seen;
      if (io_uring_cqe_get_data(cqe) == &wake_value_) {
        if (cqe->res == static_cast<int>(sizeof wake_value_))
          woken += wake_value_;
        rearm = true;
      }
    }
    io_uring_cq_advance(&ring_, seen);
    if (rearm)
      wake_armed_ = arm_wake_read();
    return woken;
  }
  void wake() override { write_eventfd(wake_fd_); }

private:
  uring_loop() = default;

  /// Queues a read of the eventfd (submitted by the next wait()): its completion is how a
  /// post() or stop() from another thread ends a wait. False when the submission queue is
  /// full and submitting it failed (the kernel busy with completions it holds back).
  bool arm_wake_read() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      if (io_uring_submit(&ring_) < 0)
        return false;
      sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr)
        return false;
    }
    io_uring_prep_read(sqe, wake_fd_, &wake_value_, sizeof wake_value_, 0);
    io_uring_sqe_set_data(sqe, &wake_value_);
    return true;
  }

  io_uring ring_{};
  bool ring_open_ = false;
  int wake_fd_ = -1;
  std::uint64_t wake_value_ = 0; // the pending read's buffer
  bool wake_armed_ = false;      // a read of wake_fd_ is queued or pending
};

} // namespace

std::unique_ptr<loop> loop::make(backend wanted, std::string& why) {
  why.clear();
  if (wanted == backend::uring) {
    std::string uring_why;
    if (auto l = uring_loop::make(uring_why))
      return l;
    why = "io_uring is not available (" + uring_why + "); running on epoll";
  }
  std::string epoll_why;
  if (auto l = epoll_loop::make(epoll_why))
    return l;
  why += (why.empty() ? "" : "; ") + epoll_why;
  return nullptr;
}

} // namespace starling::net
