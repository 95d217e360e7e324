// The data plane's own I/O loop: the shared part (tasks, timers), then the two back ends.
#include "net/loop.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace starling::net {

const char* to_string(backend b) { return b == backend::uring ? "io_uring" : "epoll"; }

// ---------------------------------------------------------------- tasks and timers

void loop::run() {
  // Turns in a row that ran completions queued by the turn before, without asking the
  // kernel: a request's read, write and next read follow one another without a system call
  // between them. Bounded, so that sockets and other threads' posts are still looked at.
  constexpr int max_turns_without_wait = 4;
  int turns_without_wait = 0;
  for (;;) {
    now_ = clock::now();
    run_posted();
    run_completions();
    run_due_timers();
    if (stop_.exchange(false, std::memory_order_acquire))
      return; // a later run() runs again
    std::optional<clock::time_point> deadline;
    if (!completed_.empty() || !deferred_.empty()) {
      if (++turns_without_wait < max_turns_without_wait)
        continue;
      deadline = clock::now(); // completions queued by the last turn: only look
    } else if (!heap_.empty()) {
      deadline = heap_.front().due;
    }
    turns_without_wait = 0;
    ++counts_.waits;
    counts_.wakeups += wait(deadline);
  }
}

void loop::stop() {
  stop_.store(true, std::memory_order_release);
  wake();
}

void loop::post(task t) {
  {
    std::lock_guard lock(mutex_);
    posted_.push_back(std::move(t));
    has_posted_.store(true, std::memory_order_relaxed);
  }
  wake();
}

void loop::run_posted() {
  // Most turns find nothing posted: they look at the flag, not the lock. A post() that
  // comes after this look also wakes the loop, whose next turn sees it.
  if (!has_posted_.load(std::memory_order_acquire))
    return;
  std::vector<task> ready;
  {
    std::lock_guard lock(mutex_);
    ready.swap(posted_);
    has_posted_.store(false, std::memory_order_relaxed);
  }
  for (auto& t : ready)
    t();
}

void loop::run_completions() {
  // Completions queued while these run (an operation that finishes at once) wait for the
  // next turn: a handler is never called inside the call that started its operation.
  completing_.swap(completed_);
  for (auto& [done, result] : completing_)
    done(result);
  completing_.clear();
  running_.swap(deferred_);
  for (auto& t : running_)
    t();
  running_.clear();
}

loop::timer_slot* loop::slot_of(timer_id id) {
  const auto index = static_cast<std::uint32_t>(id & 0xffffffffU);
  if (index >= slots_.size())
    return nullptr;
  auto& slot = slots_[index];
  return slot.armed && slot.generation == static_cast<std::uint32_t>(id >> 32U) ? &slot : nullptr;
}

void loop::free_slot(std::uint32_t index) {
  auto& slot = slots_[index];
  slot.armed = false;
  slot.clear = nullptr;
  if (++slot.generation == 0)
    slot.generation = 1;
  free_slots_.push_back(index);
}

loop::timer_id loop::after(clock::duration delay, task t, timer_id* clear) {
  std::uint32_t index = 0;
  if (!free_slots_.empty()) {
    index = free_slots_.back();
    free_slots_.pop_back();
  } else {
    index = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  auto& slot = slots_[index];
  slot.t = std::move(t);
  slot.clear = clear;
  slot.armed = true;
  const timer_id id = (static_cast<timer_id>(slot.generation) << 32U) | index;
  heap_.push_back({clock::now() + std::max(delay, clock::duration::zero()), next_seq_++, id});
  std::push_heap(heap_.begin(), heap_.end(), std::greater<>{});
  return id;
}

bool loop::cancel(timer_id id) {
  // Its heap entry stays until it comes due, and is skipped then, or until cancelled
  // entries are more than half the heap: a deadline re-armed at every request would
  // otherwise keep an entry per request for as long as the deadline.
  auto* slot = slot_of(id);
  if (slot == nullptr)
    return false;
  auto t = std::move(slot->t); // destroyed after the slot is free (it may set a timer)
  slot->t = nullptr;
  free_slot(static_cast<std::uint32_t>(id & 0xffffffffU));
  if (++cancelled_in_heap_ > 64 && cancelled_in_heap_ > heap_.size() / 2) {
    std::erase_if(heap_, [this](const timer& e) { return slot_of(e.id) == nullptr; });
    std::make_heap(heap_.begin(), heap_.end(), std::greater<>{});
    cancelled_in_heap_ = 0;
  }
  return true;
}

void loop::shutdown() {
  release_kernel();
  // Destroying a handler may destroy what it kept alive, which may close a descriptor
  // (a cancelled operation's completion queued) or set a timer: rounds until none is left.
  constexpr int max_rounds = 64;
  for (int round = 0; round < max_rounds; ++round) {
    std::vector<task> posted;
    {
      std::lock_guard lock(mutex_);
      posted.swap(posted_);
      has_posted_.store(false, std::memory_order_relaxed);
    }
    auto completed = std::move(completed_);
    completed_.clear();
    auto deferred = std::move(deferred_);
    deferred_.clear();
    // The slots stay (each armed one freed, its generation moved on), so that an id given
    // out before never names a timer set while the tasks below are destroyed.
    std::vector<task> timers;
    for (std::uint32_t i = 0; i < slots_.size(); ++i)
      if (slots_[i].armed) {
        timers.push_back(std::move(slots_[i].t));
        slots_[i].t = nullptr;
        free_slot(i);
      }
    heap_.clear();
    cancelled_in_heap_ = 0;
    auto pending = take_pending();
    if (posted.empty() && completed.empty() && deferred.empty() && timers.empty() &&
        pending.empty())
      return;
  }
}

void loop::run_due_timers() {
  // The turn's time (now()): a timer's task that compares a deadline with now() finds it
  // passed.
  while (!heap_.empty() && heap_.front().due <= now_) {
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>{});
    const timer_id id = heap_.back().id;
    heap_.pop_back();
    auto* slot = slot_of(id);
    if (slot == nullptr) {
      if (cancelled_in_heap_ > 0)
        --cancelled_in_heap_;
      continue; // cancelled
    }
    task t = std::move(slot->t);
    slot->t = nullptr;
    if (slot->clear != nullptr)
      *slot->clear = 0;
    free_slot(static_cast<std::uint32_t>(id & 0xffffffffU));
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

/// The most one receive or send moves: its result is an int.
constexpr std::size_t max_io = std::numeric_limits<int>::max();

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

/// Per-descriptor state by descriptor number: a vector indexed by the number (descriptors
/// are small and reused lowest first), so that the loop's lookup on every operation and
/// event is an index, not a hash and a division as in std::unordered_map (about 1% of a
/// node's CPU in a profile).
template <class T> class fd_table {
public:
  /// The state of `fd`, made (value-initialized) if it has none. A negative `fd` gets a
  /// scratch entry of its own (the system call on it then fails with EBADF).
  T& operator[](int fd) {
    if (fd < 0) {
      scratch_ = T{};
      return scratch_;
    }
    const auto i = static_cast<std::size_t>(fd);
    if (i >= items_.size())
      items_.resize(std::max(i + 1, 2 * items_.size()));
    auto& e = items_[i];
    if (!e.used) {
      e.used = true;
      ++count_;
    }
    return e.value;
  }
  /// The state of `fd`, or null.
  T* find(int fd) {
    if (fd < 0 || static_cast<std::size_t>(fd) >= items_.size())
      return nullptr;
    auto& e = items_[static_cast<std::size_t>(fd)];
    return e.used ? &e.value : nullptr;
  }
  void erase(int fd) {
    if (T* v = find(fd)) {
      *v = T{};
      items_[static_cast<std::size_t>(fd)].used = false;
      --count_;
    }
  }
  void clear() {
    items_.clear();
    count_ = 0;
  }
  template <class F> void for_each(F f) {
    for (std::size_t i = 0; i < items_.size() && count_ > 0; ++i)
      if (items_[i].used)
        f(static_cast<int>(i), items_[i].value);
  }

private:
  struct entry {
    T value{};
    bool used = false;
  };
  std::vector<entry> items_;
  std::size_t count_ = 0;
  T scratch_{};
};

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
    shutdown();
    if (wake_fd_ >= 0)
      ::close(wake_fd_);
    if (epoll_ >= 0)
      ::close(epoll_);
  }
  [[nodiscard]] backend kind() const override { return backend::epoll; }

  void receive(int fd, void* buf, std::size_t len, io_done done) override {
    start_input(fd,
                {op::receive, static_cast<char*>(buf), std::min(len, max_io), 0, std::move(done)});
  }
  void accept(int listener, io_done done) override {
    start_input(listener, {op::accept, nullptr, 0, 0, std::move(done)});
  }
  void send(int fd, const void* buf, std::size_t len, io_done done) override {
    if (len > max_io) {
      complete_later(std::move(done), -EINVAL); // the result could not say how much went
      return;
    }
    auto& st = fds_[fd];
    if (st.out) {
      complete_later(std::move(done), -EBUSY);
      return;
    }
    try_then_wait(fd, st, st.out,
                  {op::send, static_cast<char*>(const_cast<void*>(buf)), len, 0, std::move(done)});
  }
  void poll(int fd, ready what, io_done done) override {
    auto& st = fds_[fd];
    auto& slot = what == ready::readable ? st.in : st.out;
    if (slot) {
      complete_later(std::move(done), -EBUSY);
      return;
    }
    if (const int err = watch(fd, st, what == ready::writable); err != 0) {
      complete_later(std::move(done), -err);
      return;
    }
    slot = pending{what == ready::readable ? op::poll_in : op::poll_out, nullptr, 0, 0,
                   std::move(done)};
  }
  void connect(int fd, const sockaddr* addr, socklen_t len, io_done done) override {
    auto& st = fds_[fd];
    if (st.out) {
      complete_later(std::move(done), -EBUSY);
      return;
    }
    if (const int err = nonblocking(fd, st); err != 0) {
      complete_later(std::move(done), -err);
      return;
    }
    if (::connect(fd, addr, len) == 0) {
      complete_later(std::move(done), 0);
      return;
    }
    if (errno != EINPROGRESS) {
      complete_later(std::move(done), -errno);
      return;
    }
    if (const int err = watch(fd, st, true); err != 0) {
      complete_later(std::move(done), -err);
      return;
    }
    st.out = pending{op::connect, nullptr, 0, 0, std::move(done)};
  }
  void close(int fd) override {
    if (auto* st = fds_.find(fd)) {
      if (st->in)
        complete_later(std::move(st->in->done), -ECANCELED);
      if (st->out)
        complete_later(std::move(st->out->done), -ECANCELED);
      // Closing removes the descriptor from the epoll set; no event for it can follow.
      fds_.erase(fd);
    }
    ::close(fd);
  }

protected:
  void release_kernel() override {} // epoll holds no buffers
  std::vector<io_done> take_pending() override {
    std::vector<io_done> out;
    fds_.for_each([&out](int, fd_state& st) {
      for (auto* slot : {&st.in, &st.out})
        if (*slot) {
          out.push_back(std::move((*slot)->done));
          slot->reset();
        }
    });
    return out;
  }
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
    for (int i = 0; i < n; ++i) {
      const auto& ev = events[static_cast<std::size_t>(i)];
      if (ev.data.fd == wake_fd_) {
        std::uint64_t value = 0;
        if (::read(wake_fd_, &value, sizeof value) == sizeof value)
          woken += value;
      } else {
        on_event(ev.data.fd, ev.events);
      }
    }
    return woken; // n < 0: EINTR (a signal); the loop looks again
  }
  void wake() override { write_eventfd(wake_fd_); }

private:
  epoll_loop() = default;
  int epoll_ = -1;
  int wake_fd_ = -1;
  bool pwait2_ = true; // epoll_pwait2 (nanosecond timeouts) works here

  struct op {
    enum kind : unsigned char { receive, send, accept, connect, poll_in, poll_out };
  };
  struct pending {
    op::kind what;
    char* buf;
    std::size_t len;
    std::size_t done_bytes;
    io_done done;
  };
  struct fd_state {
    std::optional<pending> in;  // receive or accept
    std::optional<pending> out; // send or connect
    bool nonblocking = false;
    bool watched = false;
    bool output_watched = false; // EPOLLOUT is in the descriptor's events
    /// Input may be waiting: no receive has found the socket drained since the last input
    /// event. A receive when it is false waits for the event instead of trying first: a
    /// receive that took less than it asked for drained the socket, and bytes that come
    /// later bring an event (epoll reports every arrival, edge-triggered or not). HAProxy
    /// keeps the same state; without it every request cost a failed recv per side.
    bool maybe_readable = true;
    /// An event said the peer closed or the socket failed (EPOLLRDHUP, EPOLLHUP, EPOLLERR):
    /// a receive may return the end of the stream or the error after the last bytes, and no
    /// event will come for it again, so the socket stays maybe_readable.
    bool hung_up = false;
  };

  /// Makes `fd` non-blocking (once). 0 or errno.
  static int nonblocking(int fd, fd_state& st) {
    if (st.nonblocking)
      return 0;
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
      return errno;
    st.nonblocking = true;
    return 0;
  }
  /// Adds `fd` to the epoll set (once), edge-triggered: every operation is tried before it
  /// waits, so an edge that came while none waited is not lost. For input always; for output
  /// (`output`) from the first output operation that waits until an output event finds none
  /// waiting. Linux reports an edge-triggered EPOLLOUT at every ACK that frees send space:
  /// watched for good, a pooled connection would wake the loop for nothing once a request.
  /// Adding EPOLLOUT (EPOLL_CTL_MOD) reports a socket that is writable already.
  int watch(int fd, fd_state& st, bool output = false) {
    if (st.watched && (!output || st.output_watched))
      return 0;
    if (const int err = nonblocking(fd, st); err != 0)
      return err;
    if (const int err = set_events(fd, st.watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, output);
        err != 0)
      return err;
    st.watched = true;
    st.output_watched = output;
    return 0;
  }
  int set_events(int fd, int ctl, bool output) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET | (output ? EPOLLOUT : 0U);
    ev.data.fd = fd;
    return ::epoll_ctl(epoll_, ctl, fd, &ev) == 0 ? 0 : errno;
  }
  void start_input(int fd, pending p) {
    auto& st = fds_[fd];
    if (st.in) {
      complete_later(std::move(p.done), -EBUSY);
      return;
    }
    try_then_wait(fd, st, st.in, std::move(p));
  }
  /// Tries `p` at once; when it must wait, watches the descriptor and keeps `p` in `slot`.
  void try_then_wait(int fd, fd_state& st, std::optional<pending>& slot, pending p) {
    if (const int err = nonblocking(fd, st); err != 0) {
      complete_later(std::move(p.done), -err);
      return;
    }
    int result = 0;
    const bool drained = p.what == op::receive && !st.maybe_readable;
    if (!drained && attempt(fd, st, p, result)) {
      complete_later(std::move(p.done), result);
      return;
    }
    if (const int err = watch(fd, st, &slot == &st.out); err != 0) {
      complete_later(std::move(p.done), -err);
      return;
    }
    slot = std::move(p);
  }
  /// Tries the operation without waiting: true when it finished, with `result` set. A poll
  /// finishes on an event (`on_event`), never before it waited.
  static bool attempt(int fd, fd_state& st, pending& p, int& result, bool on_event = false) {
    for (;;) {
      ssize_t n = -1;
      switch (p.what) {
      case op::poll_in:
      case op::poll_out:
        result = 0;
        return on_event;
      case op::receive:
        n = ::recv(fd, p.buf, p.len, MSG_DONTWAIT);
        if (n >= 0) {
          // Less than asked: drained, unless the end of the stream (0, or a hang-up seen)
          // is still to be read.
          st.maybe_readable = n == 0 || static_cast<std::size_t>(n) == p.len || st.hung_up;
          result = static_cast<int>(n);
          return true;
        }
        if ((errno == EAGAIN || errno == EWOULDBLOCK) && !st.hung_up)
          st.maybe_readable = false;
        break;
      case op::accept:
        n = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (n >= 0) {
          result = static_cast<int>(n);
          return true;
        }
        break;
      case op::send:
        if (p.done_bytes == p.len) {
          result = static_cast<int>(p.len);
          return true;
        }
        n = ::send(fd, p.buf + p.done_bytes, p.len - p.done_bytes, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
          p.done_bytes += static_cast<std::size_t>(n);
          continue;
        }
        if (n == 0)
          return false; // took nothing (a stream socket does not): wait for room
        break;
      case op::connect: {
        int err = 0;
        socklen_t size = sizeof err;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &size) != 0)
          err = errno;
        if (err == EINPROGRESS || err == EALREADY)
          return false;
        result = -err;
        return true;
      }
      }
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return false;
      result = -errno;
      return true;
    }
  }
  /// An epoll event for a socket: runs what it made possible.
  void on_event(int fd, std::uint32_t events) {
    auto* found = fds_.find(fd);
    if (found == nullptr)
      return;
    auto& st = *found;
    int result = 0;
    const bool input = (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) != 0;
    if (input)
      st.maybe_readable = true;
    if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0)
      st.hung_up = true;
    if (st.in && input && attempt(fd, st, *st.in, result, true)) {
      complete_later(std::move(st.in->done), result);
      st.in.reset();
    }
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0)
      return;
    if (!st.out) {
      // Nothing waits for output: stop watching it (see watch()).
      if ((events & EPOLLOUT) != 0 && st.output_watched &&
          set_events(fd, EPOLL_CTL_MOD, false) == 0)
        st.output_watched = false;
      return;
    }
    if (attempt(fd, st, *st.out, result, true)) {
      complete_later(std::move(st.out->done), result);
      st.out.reset();
    }
  }

  fd_table<fd_state> fds_;
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
    // One thread submits (SINGLE_ISSUER, 6.0), and the kernel runs completions' task work
    // only when that thread waits in io_uring_enter (DEFER_TASKRUN, 6.1), not by
    // interrupting it wherever it runs. Older kernels refuse the flags: set up without them.
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int rc = io_uring_queue_init_params(ring_entries, &l->ring_, &params);
    if (rc == -EINVAL) {
      params = io_uring_params{};
      rc = io_uring_queue_init_params(ring_entries, &l->ring_, &params);
    }
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
    shutdown();
    if (wake_fd_ >= 0)
      ::close(wake_fd_);
    for (void* mem : spare_)
      ::operator delete(mem);
  }
  [[nodiscard]] backend kind() const override { return backend::uring; }

  void receive(int fd, void* buf, std::size_t len, io_done done) override {
    start(new_op(op::receive, fd, buf, std::min(len, max_io), std::move(done)));
  }
  void accept(int listener, io_done done) override {
    start(new_op(op::accept, listener, nullptr, 0, std::move(done)));
  }
  [[nodiscard]] bool sends_later() const override { return true; }
  void flush() override {
    if (ring_open_ && io_uring_sq_ready(&ring_) > 0)
      io_uring_submit(&ring_);
  }
  void send(int fd, const void* buf, std::size_t len, io_done done) override {
    if (len > max_io) {
      complete_later(std::move(done), -EINVAL); // the result could not say how much went
      return;
    }
    // Queued: the turn's sends go to the kernel with the loop's next wait, in one
    // io_uring_enter (with DEFER_TASKRUN a send the socket takes completes inside it), not
    // in a send(2) each.
    start(new_op(op::send, fd, const_cast<void*>(buf), len, std::move(done)));
  }
  void connect(int fd, const sockaddr* addr, socklen_t len, io_done done) override {
    if (len > sizeof(sockaddr_storage)) {
      complete_later(std::move(done), -EINVAL);
      return;
    }
    auto* o = new_op(op::connect, fd, nullptr, 0, std::move(done));
    std::memcpy(&o->addr, addr, len);
    o->addr_len = len;
    start(o);
  }
  void poll(int fd, ready what, io_done done) override {
    start(new_op(what == ready::readable ? op::poll_in : op::poll_out, fd, nullptr, 0,
                 std::move(done)));
  }
  void close(int fd) override {
    if (auto* ops = fds_.find(fd)) {
      for (op* o : {ops->in, ops->out})
        if (o != nullptr) {
          o->cancelled = true;
          if (io_uring_sqe* sqe = next_sqe()) {
            io_uring_prep_cancel(sqe, o, 0);
            io_uring_sqe_set_data(sqe, nullptr); // its own completion is ignored
          }
        }
      fds_.erase(fd);
    }
    // Entries still queued name descriptors by number, and this one's number is about to
    // be given out again: they go to the kernel first, which then holds the socket itself.
    if (ring_open_ && io_uring_sq_ready(&ring_) > 0)
      io_uring_submit(&ring_);
    ::close(fd);
  }

protected:
  void release_kernel() override {
    if (ring_open_) {
      close_unreaped_accepts();
      io_uring_queue_exit(&ring_); // cancels what is pending before the buffers go
      ring_open_ = false;
    }
  }
  std::vector<io_done> take_pending() override {
    std::vector<io_done> out;
    while (live_ != nullptr) {
      op* o = live_;
      out.push_back(std::move(o->done));
      unlink(o);
      delete o;
    }
    fds_.clear();
    return out;
  }
  std::uint64_t wait(std::optional<clock::time_point> deadline) override {
    if (!ring_open_)
      return 0; // shut down: nothing can complete
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
    consume_completions([&](void* data, int res) {
      if (data == &wake_value_) {
        if (res == static_cast<int>(sizeof wake_value_))
          woken += wake_value_;
        rearm = true;
      } else if (data != nullptr) {
        on_completion(static_cast<op*>(data), res);
      }
    });
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

  struct op {
    enum kind : unsigned char { receive, send, accept, connect, poll_in, poll_out };
    kind what;
    int fd;
    char* buf;
    std::size_t len;
    std::size_t done_bytes = 0;
    io_done done;
    bool cancelled = false;
    bool poll_first = false; // queued with IORING_RECVSEND_POLL_FIRST
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    op* prev = nullptr; // live_'s list
    op* next = nullptr;
  };
  struct fd_ops {
    op* in = nullptr;  // receive or accept
    op* out = nullptr; // send or connect
    /// As the epoll back end's: no receive found the socket drained since the last one
    /// that took all it asked for. A receive when it is false asks the kernel to wait for
    /// readiness before it tries (IORING_RECVSEND_POLL_FIRST), saving a failed attempt.
    bool maybe_readable = true;
  };

  /// An operation, made in a spare's memory when there is one: a request's receive and
  /// send allocate nothing once the loop has had as many at once.
  op* new_op(op::kind what, int fd, void* buf, std::size_t len, io_done done) {
    void* mem = nullptr;
    if (spare_.empty()) {
      mem = ::operator new(sizeof(op));
    } else {
      mem = spare_.back();
      spare_.pop_back();
    }
    auto* o = new (mem) op{what, fd, static_cast<char*>(buf), len, 0, std::move(done)};
    o->next = live_;
    if (live_ != nullptr)
      live_->prev = o;
    live_ = o;
    return o;
  }
  void unlink(op* o) {
    (o->prev != nullptr ? o->prev->next : live_) = o->next;
    if (o->next != nullptr)
      o->next->prev = o->prev;
  }
  /// Spare operations kept for reuse, at most.
  static constexpr std::size_t max_spare_ops = 256;
  /// A submission queue entry; when the queue is full, submits it first. Null when that
  /// failed too (the kernel holding back completions that do not fit).
  io_uring_sqe* next_sqe() {
    if (!ring_open_)
      return nullptr;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr && io_uring_submit(&ring_) >= 0)
      sqe = io_uring_get_sqe(&ring_);
    return sqe;
  }
  /// Claims the descriptor's input or output slot for `o` and queues its entry.
  void start(op* o) {
    const bool input = o->what == op::receive || o->what == op::accept || o->what == op::poll_in;
    auto& slot = input ? fds_[o->fd].in : fds_[o->fd].out;
    if (slot != nullptr) {
      finish(o, -EBUSY);
      return;
    }
    slot = o;
    if (!queue(o))
      finish(o, -EAGAIN);
  }
  bool queue(op* o) {
    io_uring_sqe* sqe = next_sqe();
    if (sqe == nullptr)
      return false;
    switch (o->what) {
    case op::receive:
      io_uring_prep_recv(sqe, o->fd, o->buf, o->len, 0);
      if (poll_first_ok_) {
        const auto* ops = fds_.find(o->fd);
        o->poll_first = ops != nullptr && !ops->maybe_readable;
        if (o->poll_first)
          sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
      }
      break;
    case op::send:
      io_uring_prep_send(sqe, o->fd, o->buf + o->done_bytes, o->len - o->done_bytes, MSG_NOSIGNAL);
      break;
    case op::accept:
      io_uring_prep_accept(sqe, o->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      break;
    case op::connect:
      io_uring_prep_connect(sqe, o->fd, reinterpret_cast<sockaddr*>(&o->addr), o->addr_len);
      break;
    case op::poll_in:
      io_uring_prep_poll_add(sqe, o->fd, POLLIN | POLLRDHUP);
      break;
    case op::poll_out:
      io_uring_prep_poll_add(sqe, o->fd, POLLOUT);
      break;
    }
    io_uring_sqe_set_data(sqe, o);
    return true;
  }
  /// Before the ring closes: the completions the loop has not reaped (those the kernel has
  /// ready, after the queued cancels went in) are dropped, and an accept among them made a
  /// descriptor that nobody would take, its client left waiting: closed. (What completes
  /// while the ring closes is cancelled by the kernel.) Every completion with an operation
  /// names a live one: an operation ends at its completion, or in take_pending() after this.
  void close_unreaped_accepts() {
    (void)io_uring_submit(&ring_);
    (void)io_uring_get_events(&ring_); // runs the task work that posts completions
    consume_completions([&](void* data, int res) {
      if (data != nullptr && data != &wake_value_ && static_cast<op*>(data)->what == op::accept &&
          res >= 0)
        ::close(res);
    });
  }
  /// Calls f(user data, result) for each completion the ring holds now, then consumes them.
  template <class F> void consume_completions(F&& f) {
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++seen;
      f(io_uring_cqe_get_data(cqe), cqe->res);
    }
    io_uring_cq_advance(&ring_, seen);
  }
  /// An operation's completion from the ring.
  void on_completion(op* o, int res) {
    if (o->cancelled) {
      // An accept that completed before its cancel reached it made a descriptor that
      // nobody takes now (its client would wait for ever): closed.
      if (o->what == op::accept && res >= 0)
        ::close(res);
      finish(o, -ECANCELED);
      return;
    }
    if (o->what == op::send && res >= 0) {
      o->done_bytes += static_cast<std::size_t>(res);
      if (o->done_bytes < o->len && res > 0 && queue(o))
        return; // the rest, when the socket has room
      finish(o, o->done_bytes == o->len ? static_cast<int>(o->len) : (res > 0 ? -EAGAIN : -EPIPE));
      return;
    }
    if (res == -EINVAL && o->poll_first) {
      poll_first_ok_ = false; // a kernel before 5.19: no such flag
      if (queue(o))
        return;
    }
    if (o->what == op::receive && res >= 0)
      if (auto* ops = fds_.find(o->fd))
        ops->maybe_readable = res == 0 || static_cast<std::size_t>(res) == o->len;
    if ((res == -EAGAIN || res == -EINTR) && queue(o))
      return; // not ready after all: again (the kernel waits for readiness)
    if ((o->what == op::poll_in || o->what == op::poll_out) && res > 0)
      res = 0; // the events that were ready: the caller tries its operation and sees
    finish(o, res);
  }
  /// Frees the descriptor's slot (unless close() freed it and the number is in use again)
  /// and queues the handler.
  void finish(op* o, int result) {
    if (auto* ops = fds_.find(o->fd)) {
      if (ops->in == o)
        ops->in = nullptr;
      if (ops->out == o)
        ops->out = nullptr;
    }
    complete_later(std::move(o->done), result);
    unlink(o);
    if (spare_.size() < max_spare_ops) {
      o->~op();
      spare_.push_back(o); // its memory, for new_op
    } else {
      delete o;
    }
  }

  fd_table<fd_ops> fds_;
  op* live_ = nullptr;        // operations the kernel may still complete, linked
  std::vector<void*> spare_;  // finished ones' memory, for new_op
  bool poll_first_ok_ = true; // IORING_RECVSEND_POLL_FIRST is known here (5.19)
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
