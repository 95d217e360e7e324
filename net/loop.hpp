// The data plane's own I/O loop (decision 0021): one thread's loop of posted
// tasks, timers and socket operations, on epoll, or on io_uring where the kernel allows it.
// The data plane runs on it through net::connection.
//
// Threads: run() makes the calling thread the loop's thread. post() and stop() may be called
// from any thread; everything else only from the loop's thread (inside a task or a timer).
// Only the loop's thread touches its ring or its epoll set: other threads queue a task and
// write to the loop's eventfd, which the loop always has a read (io_uring) or a watch (epoll)
// pending on. That is what Asio's io_uring backend got wrong for us (a wake-up from another
// thread submitted the loop's queued requests, whose completions then interrupted that
// thread: docs/bench-proxy.md, "io_uring, second try"). Make, run and destroy a loop on one
// thread: an io_uring ring keeps a node for the thread that made it, and its close sends
// that thread task work, which fails a blocking call with a timeout there with EINTR. The
// ring is also set up for that one thread (IORING_SETUP_SINGLE_ISSUER): the kernel refuses
// a submission from any other.
//
// No CAF and no Asio here: the data plane is to leave Asio.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/socket.h>

#include "net/callback.hpp"

namespace starling::net {

enum class backend : unsigned char { uring, epoll };

/// "io_uring" or "epoll".
const char* to_string(backend b);

class loop {
public:
  using clock = std::chrono::steady_clock;
  /// Room inside for a connection's deferred completion (a handler, an error, a count).
  using task = callback<void(), 96>;
  using timer_id = std::uint64_t;

  /// A loop on `wanted`. When io_uring is wanted but this process may not use it (a seccomp
  /// filter, the kernel.io_uring_disabled sysctl, a kernel before 5.11), the loop runs on
  /// epoll and `why` says why; otherwise `why` is left empty. Null only when neither can
  /// be set up (out of descriptors, say), with the reason in `why`.
  static std::unique_ptr<loop> make(backend wanted, std::string& why);

  /// A derived loop's destructor calls shutdown() first.
  virtual ~loop() = default;
  loop(const loop&) = delete;
  loop& operator=(const loop&) = delete;

  [[nodiscard]] virtual backend kind() const = 0;

  /// Runs tasks and timers until stop(). A stop() before run() makes run() return as soon
  /// as it has run what was ready. Tasks still queued when run() returns stay queued.
  void run();
  /// Any thread: ends run() at the end of the turn running now, whose tasks, completions
  /// and due timers still run after the stop() (a completion there may start new work: an
  /// owner that stops the loop to tear down clears what that work made, after run()).
  void stop();
  /// The loop's thread, or any once run() returned and no other thread uses the loop: drops
  /// everything it holds, as a destroyed loop must. The kernel lets go of every buffer an
  /// operation named (io_uring: the ring is closed), then the handlers of pending operations,
  /// the queued completions, tasks and timers are destroyed without being called, until
  /// destroying them (which may close descriptors through the loop, or start operations
  /// that cannot run now) leaves none. The loop can run nothing afterwards.
  void shutdown();
  /// Any thread: runs `t` on the loop's thread. Tasks posted by one thread run in the order
  /// they were posted.
  void post(task t);

  /// Loop thread: runs `t` on the loop's next turn, after what is ready now. Unlike post(),
  /// no lock and no wake-up (the loop's thread is awake): what a completion that happened
  /// inside the call that started it uses to run later.
  void defer(task t) { deferred_.push_back(std::move(t)); }

  /// Loop thread: the time this turn of the loop began, read once per turn (as HAProxy's and
  /// nginx's loops do) for what reads the time per request (latencies, deadlines, the
  /// balancer's clock) instead of the clock each time. Earlier than the clock by at most
  /// the turn's work so far; due timers run when it has reached their time. Before the
  /// first run(), the time the loop was made.
  [[nodiscard]] clock::time_point now() const { return now_; }

  /// Loop thread: runs `t` once `delay` has passed. Timers due at the same time run in the
  /// order they were set.
  timer_id after(clock::duration delay, task t) { return after(delay, std::move(t), nullptr); }
  /// The same, and `*clear` (unless null) is set to 0 just before `t` runs.
  timer_id after(clock::duration delay, task t, timer_id* clear);
  /// Loop thread: true when the timer had not run yet (it never will now).
  bool cancel(timer_id id);

  // ---- Socket operations (loop thread). `fd` is a socket the caller made and owns until
  // close(fd); the loop may set its O_NONBLOCK flag. A descriptor has at most one input
  // operation (receive or accept) and one output operation (send or connect) pending; a
  // second one completes with -EBUSY. Completions run on the loop's thread, never inside
  // the call that started the operation.

  /// A completion's result: bytes moved, a new descriptor (accept), 0 (connect), or -errno.
  /// -ECANCELED when close(fd) came first.
  /// Room inside for a connection's handler wrapped in its wait (connection.cpp).
  using io_done = callback<void(int result), 128>;

  /// Receives at least one byte, at most `len`, into `buf` (valid until completion); 0 is
  /// the end of the stream.
  virtual void receive(int fd, void* buf, std::size_t len, io_done done) = 0;
  /// Sends all `len` bytes of `buf` (valid until completion): the result is `len`, or the
  /// error that stopped it. epoll: tried at once, so a send the socket takes whole costs
  /// no wait. io_uring: queued, and handed to the kernel with the loop's next wait
  /// (sends_later(); flush() hands it over sooner). More than INT_MAX bytes at once is
  /// -EINVAL (a receive takes at most that many).
  virtual void send(int fd, const void* buf, std::size_t len, io_done done) = 0;
  /// Accepts a connection on the listening socket `listener`: the result is the new
  /// descriptor (non-blocking, close-on-exec), which the caller then owns.
  virtual void accept(int listener, io_done done) = 0;
  /// Connects `fd` to `addr` (copied).
  virtual void connect(int fd, const sockaddr* addr, socklen_t len, io_done done) = 0;
  /// What poll() waits for.
  enum class ready : unsigned char { readable, writable };
  /// Waits until `fd` is readable (an input operation) or writable (an output operation):
  /// the result is 0, or -errno. For a caller that moves the bytes itself (splice, OpenSSL's
  /// writes): call it right after the descriptor said EAGAIN, before the loop waits again
  /// (epoll is edge-triggered: a readiness that came and went unwatched is not seen again).
  virtual void poll(int fd, ready what, io_done done) = 0;
  /// Completes the descriptor's pending operations with -ECANCELED and closes it. No
  /// operation started before reaches a descriptor that later gets the same number.
  virtual void close(int fd) = 0;

  /// Whether send() queues its bytes for the kernel instead of trying at once (io_uring:
  /// the sends of a turn go to the kernel in the system call that waits). Its completion
  /// then always comes on a later turn.
  [[nodiscard]] virtual bool sends_later() const { return false; }
  /// Hands the kernel what the loop has queued for it now: before a shutdown(2) of a
  /// socket whose queued sends must go first.
  virtual void flush() {}

  /// How many times the loop waited for the kernel and how many wake-ups from other threads
  /// it read: for tests and counters. Loop thread.
  struct counts {
    std::uint64_t waits = 0;
    std::uint64_t wakeups = 0;
  };
  [[nodiscard]] counts stats() const { return counts_; }

protected:
  loop() = default;
  /// shutdown(): the kernel lets go of every buffer (io_uring: the ring closes; later socket
  /// operations complete with -ECANCELED, close() only closes).
  virtual void release_kernel() = 0;
  /// shutdown(): the handlers of the operations still pending, taken out of the back end.
  virtual std::vector<io_done> take_pending() = 0;
  /// Loop thread: runs `done(result)` on the next turn of the loop.
  void complete_later(io_done done, int result) {
    completed_.emplace_back(std::move(done), result);
  }
  /// Waits until the kernel has something for the loop, a wake-up arrives, or `deadline`
  /// passes (no deadline: waits as long as it takes). Returns the number of wake-ups read.
  virtual std::uint64_t wait(std::optional<clock::time_point> deadline) = 0;
  /// Any thread: makes a wait() running now, or the next one, return.
  virtual void wake() = 0;

private:
  struct timer {
    clock::time_point due;
    std::uint64_t seq; // the order they were set, for timers due at the same time
    timer_id id;
    bool operator>(const timer& o) const { return due != o.due ? due > o.due : seq > o.seq; }
  };
  /// A timer's task in slots_: a timer_id is its slot's index (low 32 bits) and the slot's
  /// generation (high 32 bits), which grows each time the slot is used again, so that an
  /// old id (its heap entry, a late cancel) never reaches the slot's next timer. Slots are
  /// reused: setting a timer allocates nothing once the loop has had as many at once.
  struct timer_slot {
    task t;
    /// Set to 0 before the task runs (net::timer's id).
    timer_id* clear = nullptr;
    std::uint32_t generation = 1; // never 0: no timer_id is 0
    bool armed = false;
  };
  /// The armed slot of `id`, or null (ran, cancelled, or never set).
  timer_slot* slot_of(timer_id id);
  void free_slot(std::uint32_t index);
  void run_posted();
  void run_completions();
  void run_due_timers();

  std::mutex mutex_; // guards posted_
  std::vector<task> posted_;
  std::atomic<bool> has_posted_{false}; // posted_ may not be empty (set under mutex_)
  std::atomic<bool> stop_{false};
  clock::time_point now_ = clock::now();  // the turn's time (now())
  std::vector<timer> heap_;               // a min-heap on (due, id); cancelled entries are skipped
  std::size_t cancelled_in_heap_ = 0;     // heap_ compacts when they are more than half
  std::vector<timer_slot> slots_;         // the timers' tasks
  std::vector<std::uint32_t> free_slots_; // slots_ not armed
  std::vector<std::pair<io_done, int>> completed_; // socket completions to run
  std::vector<task> deferred_;                     // defer()'s tasks
  // What run_completions() runs from (swapped with the two above: their capacity stays).
  std::vector<std::pair<io_done, int>> completing_;
  std::vector<task> running_;
  std::uint64_t next_seq_ = 1;
  counts counts_;
};

/// One timer on a loop, re-armable (loop thread only): start() replaces what was set,
/// cancel() and the destructor make sure it never runs. The task runs with the timer
/// disarmed, so it may start it again.
class timer {
public:
  explicit timer(loop& l) : loop_(l) {}
  ~timer() { cancel(); }
  timer(const timer&) = delete;
  timer& operator=(const timer&) = delete;

  void start(loop::clock::duration delay, loop::task t) {
    cancel();
    id_ = loop_.after(delay, std::move(t), &id_);
  }
  void start_at(loop::clock::time_point when, loop::task t) {
    start(when - loop::clock::now(), std::move(t));
  }
  void cancel() {
    if (id_ != 0)
      loop_.cancel(id_);
    id_ = 0;
  }
  [[nodiscard]] bool armed() const { return id_ != 0; }

private:
  loop& loop_;
  loop::timer_id id_ = 0;
};

} // namespace starling::net
