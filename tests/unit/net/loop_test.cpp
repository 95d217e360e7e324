// net::loop (decision 0021's first slice): posted tasks, timers and stop, on both back ends;
// the fall-back to epoll where io_uring is denied. No assertion reads the clock: timers are
// checked by their order, and their delays differ by far more than setting them takes.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/connection.hpp"
#include "net/loop.hpp"
#include "tests/support/loopback_socket.hpp"

namespace {

using starling::net::backend;
using starling::net::loop;
using namespace std::chrono_literals;

/// Whether this process may use io_uring at all (the uring cases are skipped where not).
bool uring_here() {
  std::string why;
  auto l = loop::make(backend::uring, why);
  return l && l->kind() == backend::uring;
}

class net_loop : public ::testing::TestWithParam<backend> {
protected:
  void SetUp() override {
    if (GetParam() == backend::uring && !uring_here())
      GTEST_SKIP() << "io_uring is not available to this process";
    std::string why;
    loop_ = loop::make(GetParam(), why);
    ASSERT_TRUE(loop_) << why;
    ASSERT_EQ(loop_->kind(), GetParam()) << why;
    EXPECT_TRUE(why.empty()) << why;
  }
  std::unique_ptr<loop> loop_;
};

TEST_P(net_loop, tasks_posted_by_many_threads_all_run_and_each_threads_in_order) {
  constexpr int threads = 4;
  constexpr int per_thread = 2000;
  std::vector<std::pair<int, int>> ran; // touched by the loop's thread only, read after join
  std::thread runner([&] { loop_->run(); });
  std::vector<std::thread> posters;
  for (int t = 0; t < threads; ++t)
    posters.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i)
        loop_->post([&ran, t, i] { ran.emplace_back(t, i); });
    });
  for (auto& p : posters)
    p.join();
  loop_->post([&] { loop_->stop(); });
  runner.join();

  ASSERT_EQ(ran.size(), static_cast<std::size_t>(threads * per_thread));
  std::vector<int> next(threads, 0);
  for (const auto& [t, i] : ran) {
    ASSERT_EQ(i, next[static_cast<std::size_t>(t)]) << "thread " << t << " out of order";
    ++next[static_cast<std::size_t>(t)];
  }
  // Each post and the stop count one on the eventfd, and the loop reads each count once.
  EXPECT_LE(loop_->stats().wakeups, static_cast<std::uint64_t>(threads * per_thread + 2));
}

TEST_P(net_loop, timers_run_in_deadline_order_and_a_cancelled_one_never_runs) {
  std::vector<int> ran;
  bool cancelled = false;
  bool cancelled_twice = true;
  loop_->post([&] {
    loop_->after(300ms, [&] { ran.push_back(3); });
    loop_->after(100ms, [&] { ran.push_back(1); });
    const auto doomed = loop_->after(150ms, [&] { ran.push_back(99); });
    loop_->after(200ms, [&] { ran.push_back(2); });
    // Same delay: the order they were set in.
    loop_->after(0ms, [&] { ran.push_back(10); });
    loop_->after(0ms, [&] { ran.push_back(11); });
    loop_->after(-5ms, [&] { ran.push_back(12); }); // a negative delay is none
    cancelled = loop_->cancel(doomed);
    cancelled_twice = loop_->cancel(doomed);
    loop_->after(400ms, [&] { loop_->stop(); });
  });
  loop_->run();
  EXPECT_TRUE(cancelled);
  EXPECT_FALSE(cancelled_twice);
  EXPECT_EQ(ran, (std::vector<int>{10, 11, 12, 1, 2, 3}));
}

TEST_P(net_loop, a_stale_timer_id_never_cancels_the_timer_that_took_its_place) {
  // Timers' tasks live in reused slots (no allocation per timer): an id that was cancelled
  // or ran must not reach the next timer of its slot, however many come and go.
  std::vector<int> ran;
  bool stale_cancelled = true;
  bool zero_seen = false;
  loop_->post([&] {
    std::vector<loop::timer_id> stale;
    for (int round = 0; round < 1000; ++round) {
      const auto id = loop_->after(1h, [&] { ran.push_back(-1); });
      zero_seen = zero_seen || id == 0;
      EXPECT_TRUE(loop_->cancel(id));
      stale.push_back(id);
    }
    const auto live = loop_->after(1ms, [&] { ran.push_back(1); });
    zero_seen = zero_seen || live == 0;
    stale_cancelled = false;
    for (auto id : stale)
      stale_cancelled = loop_->cancel(id) || stale_cancelled;
    loop_->after(20ms, [&] { loop_->stop(); });
  });
  loop_->run();
  EXPECT_FALSE(stale_cancelled);
  EXPECT_FALSE(zero_seen) << "0 is net::timer's 'not armed'";
  EXPECT_EQ(ran, (std::vector<int>{1}));
}

TEST_P(net_loop, a_timer_set_by_a_timer_runs_and_one_that_ran_cannot_be_cancelled) {
  std::vector<int> ran;
  loop::timer_id first = 0;
  bool cancel_after_run = true;
  loop_->post([&] {
    first = loop_->after(1ms, [&] {
      ran.push_back(1);
      loop_->after(1ms, [&] {
        ran.push_back(2);
        cancel_after_run = loop_->cancel(first);
        loop_->stop();
      });
    });
  });
  loop_->run();
  EXPECT_EQ(ran, (std::vector<int>{1, 2}));
  EXPECT_FALSE(cancel_after_run);
  EXPECT_FALSE(loop_->cancel(12345)) << "an id never given out";
}

TEST_P(net_loop, the_turns_time_is_one_reading_per_turn_and_a_due_timer_sees_its_time_passed) {
  // Two tasks posted together run in one turn: they see the same now(), which was read
  // before either ran (never later than the clock).
  loop::clock::time_point first{};
  loop::clock::time_point second{};
  loop::clock::time_point armed_after{};
  loop::clock::time_point in_timer{};
  bool not_ahead = true;
  loop_->post([&] {
    first = loop_->now();
    not_ahead = first <= loop::clock::now();
  });
  loop_->post([&] {
    second = loop_->now();
    // A timer's task compares a deadline with now(): when it runs, now() has reached the
    // time it was set for (at least the clock before after() plus the delay).
    const auto before = loop::clock::now();
    loop_->after(2ms, [&, before] {
      in_timer = loop_->now();
      armed_after = before + 2ms;
      loop_->stop();
    });
  });
  loop_->run();
  EXPECT_TRUE(not_ahead);
  EXPECT_EQ(first, second) << "one reading per turn";
  EXPECT_GE(in_timer, armed_after);
  EXPECT_GT(in_timer, second) << "a later turn reads the clock again";
}

TEST_P(net_loop, stop_from_another_thread_ends_a_loop_with_nothing_to_do) {
  std::promise<void> started;
  std::thread runner([&] { loop_->run(); });
  loop_->post([&] { started.set_value(); });
  ASSERT_EQ(started.get_future().wait_for(20s), std::future_status::ready);
  // The loop now waits with no timer: only stop()'s wake-up can end that wait.
  loop_->stop();
  runner.join(); // hangs (and ctest's timeout fails the test) if the wake-up is lost
}

TEST_P(net_loop, a_stop_before_run_returns_once_the_ready_tasks_ran_and_the_loop_runs_again) {
  int ran = 0;
  bool far_timer_ran = false;
  for (int i = 0; i < 3; ++i)
    loop_->post([&] { ++ran; });
  loop_->stop();
  loop_->run();
  EXPECT_EQ(ran, 3);

  // Runs again: a timer far away does not hold it, a posted stop ends it.
  loop_->post([&] {
    loop_->after(1h, [&] { far_timer_ran = true; });
    ++ran;
    loop_->stop();
  });
  loop_->run();
  EXPECT_EQ(ran, 4);
  EXPECT_FALSE(far_timer_ran);
}

// ---------------------------------------------------------------- sockets

/// A listening socket on 127.0.0.1, port 0; its port in `port`.
int listener(std::uint16_t& port) {
  const int fd = starling::test::bound_loopback_socket(port);
  if (fd >= 0 && ::listen(fd, 16) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  return sa;
}

/// Runs the loop until `done()` or 20 s (a timer stops it then), and says whether done.
template <class Done> bool run_until(loop& l, Done done) {
  bool timed_out = false;
  const auto guard = l.after(20s, [&] { timed_out = true; });
  std::function<void()> check = [&] {
    if (done() || timed_out)
      l.stop();
    else
      l.post(check); // look again after the loop's next turn
  };
  l.post(check);
  l.run();
  l.cancel(guard);
  return done();
}

/// A connected pair through the loop: {accepted, client}, or {-1, -1}.
struct fd_pair {
  int server;
  int client;
};
fd_pair connect_pair(loop& l, int listen_fd, std::uint16_t port) {
  int accepted = -2;
  int connected = -2;
  const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  l.accept(listen_fd, [&](int r) { accepted = r; });
  const auto sa = loopback(port);
  l.connect(client, reinterpret_cast<const sockaddr*>(&sa), sizeof sa,
            [&](int r) { connected = r; });
  if (!run_until(l, [&] { return accepted != -2 && connected != -2; }) || accepted < 0 ||
      connected != 0) {
    ADD_FAILURE() << "accept " << accepted << ", connect " << connected;
    return {-1, -1};
  }
  return {accepted, client};
}

/// A listening socket and a pair connected through it by the loop (-1s when that failed).
struct connection {
  int listener = -1;
  std::uint16_t port = 0;
  int server = -1;
  int client = -1;
};
connection connect_through(loop& l) {
  connection c;
  c.listener = listener(c.port);
  if (c.listener >= 0) {
    const auto p = connect_pair(l, c.listener, c.port);
    c.server = p.server;
    c.client = p.client;
  }
  return c;
}

TEST_P(net_loop, a_large_send_arrives_whole_and_the_end_of_stream_reads_as_zero) {
  const auto c = connect_through(*loop_);
  ASSERT_GE(c.server, 0);
  const int server = c.server;
  const int client = c.client;
  const int lfd = c.listener;

  // 8 MiB: more than loopback's buffers hold, so the send must wait for the reader.
  std::string out(8U << 20U, '\0');
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<char>((i * 7919U) >> 3U);
  int sent = -2;
  bool returned = false;
  bool inside_call = false;
  loop_->send(client, out.data(), out.size(), [&](int r) {
    sent = r;
    inside_call = !returned;
    if (r >= 0)
      ::shutdown(client, SHUT_WR);
  });
  returned = true;
  std::string in;
  std::vector<char> buf(64 * 1024);
  int last = -2;
  std::function<void()> read_more = [&] {
    loop_->receive(server, buf.data(), buf.size(), [&](int r) {
      last = r;
      if (r > 0) {
        in.append(buf.data(), static_cast<std::size_t>(r));
        read_more();
      }
    });
  };
  read_more();
  ASSERT_TRUE(run_until(*loop_, [&] { return sent != -2 && last <= 0 && last != -2; }))
      << "sent " << sent << ", received " << in.size();
  EXPECT_FALSE(inside_call) << "a completion ran inside the call that started it";
  EXPECT_EQ(sent, static_cast<int>(out.size()));
  EXPECT_EQ(last, 0) << "the end of the stream";
  EXPECT_TRUE(in == out) << "received " << in.size() << " of " << out.size() << " bytes";
  loop_->close(server);
  loop_->close(client);
  loop_->close(lfd);
}

TEST_P(net_loop, close_cancels_pending_operations_and_the_number_reused_gets_none_of_them) {
  const auto c = connect_through(*loop_);
  ASSERT_GE(c.server, 0);
  const int server = c.server;
  const int client = c.client;
  const int lfd = c.listener;
  char old_buf[16] = {};
  int old_result = -2;
  int old_calls = 0;
  loop_->receive(server, old_buf, sizeof old_buf, [&](int r) {
    old_result = r;
    ++old_calls;
  });
  int busy = 0;
  bool returned = false;
  bool inside_call = false;
  loop_->receive(server, old_buf, sizeof old_buf, [&](int r) {
    busy = r;
    inside_call = !returned;
  });
  returned = true;
  ASSERT_TRUE(run_until(*loop_, [&] { return busy != 0; }));
  EXPECT_EQ(busy, -EBUSY) << "a second receive on one descriptor";
  EXPECT_FALSE(inside_call) << "a refusal ran inside the call that started the operation";
  loop_->close(server);

  // The kernel hands out the lowest free number: the next connection usually gets the
  // closed one's. Whatever it gets, the old receive must not read from it.
  const auto second = connect_pair(*loop_, lfd, c.port);
  const int server2 = second.server;
  const int client2 = second.client;
  ASSERT_GE(server2, 0);
  char new_buf[16] = {};
  int new_result = -2;
  loop_->receive(server2, new_buf, sizeof new_buf, [&](int r) { new_result = r; });
  ASSERT_EQ(::send(client2, "new", 3, MSG_NOSIGNAL), 3);
  ASSERT_EQ(::send(client, "old", 3, MSG_NOSIGNAL), 3); // to the closed server: nobody reads
  ASSERT_TRUE(run_until(*loop_, [&] { return old_result != -2 && new_result != -2; }));
  EXPECT_EQ(old_result, -ECANCELED);
  EXPECT_EQ(old_calls, 1);
  EXPECT_EQ(new_result, 3);
  EXPECT_EQ(std::string(new_buf, 3), "new");
  for (int fd : {client, server2, client2, lfd})
    loop_->close(fd);
}

TEST_P(net_loop, bytes_that_came_before_a_receive_come_in_order_through_small_receives) {
  const auto c = connect_through(*loop_);
  ASSERT_GE(c.server, 0);
  const std::string out = "the quick brown fox jumps over the lazy dog";
  ASSERT_EQ(::send(c.client, out.data(), 10, MSG_NOSIGNAL), 10);
  std::string in;
  char buf[3];
  int last = -2;
  bool sent_rest = false;
  std::function<void()> read_more = [&] {
    loop_->receive(c.server, buf, sizeof buf, [&](int r) {
      last = r;
      if (r <= 0)
        return;
      in.append(buf, static_cast<std::size_t>(r));
      if (!sent_rest) { // the rest, and the end, while the first bytes are being taken
        sent_rest = true;
        EXPECT_EQ(::send(c.client, out.data() + 10, out.size() - 10, MSG_NOSIGNAL),
                  static_cast<ssize_t>(out.size() - 10));
        ::shutdown(c.client, SHUT_WR);
      }
      read_more();
    });
  };
  read_more();
  ASSERT_TRUE(run_until(*loop_, [&] { return last == 0 || last < -2; })) << in;
  EXPECT_EQ(last, 0);
  EXPECT_EQ(in, out);
  int again = -2;
  loop_->receive(c.server, buf, sizeof buf, [&](int r) { again = r; });
  ASSERT_TRUE(run_until(*loop_, [&] { return again != -2; }));
  EXPECT_EQ(again, 0) << "the end of the stream, read again";
  for (int fd : {c.server, c.client, c.listener})
    loop_->close(fd);
}

TEST_P(net_loop, a_slow_reader_of_a_fast_stream_gets_every_byte_in_order) {
  // The reader takes 4 KiB at a time, 50 µs apart, while the sender pushes 4 MiB: the
  // send waits for room again and again.
  const auto c = connect_through(*loop_);
  ASSERT_GE(c.server, 0);
  std::string out(4U << 20U, '\0');
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<char>((i * 2654435761U) >> 24U);
  int sent = -2;
  loop_->send(c.client, out.data(), out.size(), [&](int r) {
    sent = r;
    ::shutdown(c.client, SHUT_WR);
  });
  std::string in;
  std::vector<char> buf(4096);
  int last = -2;
  std::function<void()> read_more = [&] {
    loop_->receive(c.server, buf.data(), buf.size(), [&](int r) {
      last = r;
      if (r > 0) {
        in.append(buf.data(), static_cast<std::size_t>(r));
        loop_->after(std::chrono::microseconds{50}, [&] { read_more(); });
      }
    });
  };
  read_more();
  ASSERT_TRUE(run_until(*loop_, [&] { return last <= 0 && last != -2; }))
      << "received " << in.size();
  EXPECT_EQ(sent, static_cast<int>(out.size()));
  EXPECT_EQ(last, 0);
  EXPECT_TRUE(in == out) << "received " << in.size() << " of " << out.size() << " bytes";
  for (int fd : {c.server, c.client, c.listener})
    loop_->close(fd);
}

TEST_P(net_loop, a_connection_refused_is_reported) {
  std::uint16_t port = 0;
  const int lfd = listener(port);
  ASSERT_GE(lfd, 0);
  ::close(lfd); // nothing listens on `port` now
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const auto sa = loopback(port);
  int result = -2;
  loop_->connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa, [&](int r) { result = r; });
  ASSERT_TRUE(run_until(*loop_, [&] { return result != -2; }));
  EXPECT_EQ(result, -ECONNREFUSED);
  loop_->close(fd);
}

INSTANTIATE_TEST_SUITE_P(backends, net_loop, ::testing::Values(backend::uring, backend::epoll),
                         [](const auto& info) { return std::string{to_string(info.param)}; });

/// Runs `body` in a child process whose seccomp filter fails system call `nr` with `err`
/// (as a container runtime's profile denies io_uring, or an old kernel lacks a call). The
/// child's exit code: body's result, or 10 when the filter could not be installed; -1 when
/// the child died.
template <class Body> int in_child_without(long nr, int err, Body body) {
  const pid_t pid = ::fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<unsigned>(nr), 0, 1),
        BPF_STMT(BPF_RET | BPF_K,
                 SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
      ::_exit(10);
    ::_exit(body());
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
    return -1;
  return WEXITSTATUS(status);
}

TEST(net_loop_fallback, a_process_denied_io_uring_gets_an_epoll_loop_and_the_reason) {
  const int rc = in_child_without(__NR_io_uring_setup, EPERM, [] {
    std::string why;
    auto l = loop::make(backend::uring, why);
    if (!l)
      return 11;
    if (l->kind() != backend::epoll)
      return 12;
    if (why.find("io_uring is not available") == std::string::npos ||
        why.find("Operation not permitted") == std::string::npos)
      return 13;
    bool ran = false;
    l->post([&] {
      ran = true;
      l->stop();
    });
    l->run();
    return ran ? 0 : 14;
  });
  if (rc == 10)
    GTEST_SKIP() << "this kernel or sandbox refuses seccomp filters";
  EXPECT_EQ(rc, 0) << "-1: the child died, 11: no loop, 12: not epoll, 13: no reason given, "
                      "14: did not run";
}

TEST(net_loop_fallback, epoll_without_epoll_pwait2_waits_in_milliseconds) {
  // Linux before 5.11 has no epoll_pwait2: the loop must not spin on ENOSYS, and its timers
  // must still run, in order.
  const int rc = in_child_without(__NR_epoll_pwait2, ENOSYS, [] {
    std::string why;
    auto l = loop::make(backend::epoll, why);
    if (!l)
      return 11;
    std::vector<int> ran;
    l->after(300ms, [&] { ran.push_back(2); });
    l->after(100ms, [&] { ran.push_back(1); });
    l->after(400ms, [&] { l->stop(); });
    l->run();
    if (ran != std::vector<int>{1, 2})
      return 12;
    // A handful of waits for three timers; a loop spinning on ENOSYS makes many thousands.
    return l->stats().waits < 1000 ? 0 : 13;
  });
  if (rc == 10)
    GTEST_SKIP() << "this kernel or sandbox refuses seccomp filters";
  EXPECT_EQ(rc, 0) << "-1: the child died, 11: no loop, 12: timers out of order, 13: it spun";
}

// ---------------------------------------------------------------- net::callback

using starling::net::callback;
using net_connection = starling::net::connection;

// The shapes the loop and the connection wrap stay inside their callbacks, so that a
// completion costs no allocation (net/callback.hpp): a handler that keeps its owner, that
// handler with a read's state in a TLS wait, that wait in a receive, and a deferred
// completion with its error and count.
struct keeps_owner {
  std::shared_ptr<int> self;
  void operator()(std::error_code, std::size_t) {}
};
struct tls_wait {
  void* c;
  char* buf;
  std::size_t len, done;
  net_connection::io_handler h;
  void operator()(std::error_code) {}
};
struct receive_wait {
  void* c;
  net_connection::done_handler h;
  void operator()(int) {}
};
struct deferred_completion {
  net_connection::io_handler h;
  std::error_code ec;
  std::size_t n;
  void operator()() {}
};
static_assert(net_connection::io_handler::stored_inside<keeps_owner>);
static_assert(net_connection::done_handler::stored_inside<tls_wait>);
static_assert(loop::io_done::stored_inside<receive_wait>);
static_assert(loop::task::stored_inside<deferred_completion>);

TEST(net_callback, a_small_callable_is_kept_inside_and_released_once_by_whoever_holds_it_last) {
  auto owner = std::make_shared<int>(7);
  int seen = 0;
  callback<void(int), 48> a = [owner, &seen](int x) { seen = *owner + x; };
  EXPECT_EQ(owner.use_count(), 2);
  callback<void(int), 48> b = std::move(a);
  EXPECT_FALSE(a); // NOLINT(bugprone-use-after-move): a moved-from callback is empty
  EXPECT_TRUE(b);
  EXPECT_EQ(owner.use_count(), 2);
  b(3);
  EXPECT_EQ(seen, 10);
  b = nullptr;
  EXPECT_EQ(owner.use_count(), 1);
  EXPECT_TRUE(b == nullptr);
}

TEST(net_callback, a_large_callable_lives_outside_and_moves_by_its_pointer) {
  auto owner = std::make_shared<int>(1);
  struct big {
    std::shared_ptr<int> owner;
    char pad[200] = {};
    int operator()(int x) const { return *owner + x + pad[0]; }
  };
  static_assert(!callback<int(int), 48>::stored_inside<big>);
  callback<int(int), 48> a = big{owner};
  EXPECT_EQ(owner.use_count(), 2);
  callback<int(int), 48> b;
  b = std::move(a);
  EXPECT_EQ(b(41), 42);
  EXPECT_EQ(owner.use_count(), 2);
  { auto c = std::move(b); }
  EXPECT_EQ(owner.use_count(), 1);
}

TEST(net_callback, move_only_callables_are_held_and_a_throwing_move_goes_outside) {
  auto p = std::make_unique<int>(5);
  callback<int(), 48> f = [p = std::move(p)] { return *p; };
  EXPECT_EQ(f(), 5);
  struct throwing_move {
    throwing_move() = default;
    throwing_move(throwing_move&&) noexcept(false) {}
    void operator()() {}
  };
  static_assert(!callback<void(), 48>::stored_inside<throwing_move>);
  callback<void(), 48> g = throwing_move{};
  auto h = std::move(g);
  EXPECT_NO_THROW(h());
}

TEST(net_callback, calling_an_empty_callback_throws_and_the_handler_may_replace_itself) {
  callback<void(), 48> empty;
  EXPECT_THROW(empty(), std::bad_function_call);
  // A handler taken out before its call (std::exchange, as the data plane does) may set a
  // new one in its place.
  callback<void(), 48> slot;
  int runs = 0;
  slot = [&slot, &runs] {
    ++runs;
    slot = [&runs] { runs += 10; };
  };
  std::exchange(slot, nullptr)();
  slot();
  EXPECT_EQ(runs, 11);
}

} // namespace
