// net::connection over real sockets on 127.0.0.1 (port 0), on both of net::loop's back ends
// (io_uring, skipped where this process may not use it, and epoll): TLS through the
// connection's own socket BIO (echo, pipelined records, a large write through WANT_WRITE,
// full duplex, half-close, peer reset, operations after close, a failed handshake), plain TCP
// through the same class, inline and deferred completions, and wait() for readability and
// writability. The same cases as net::stream's (stream_test.cpp). TLS credentials are the
// run-time test PKI's (tests/support/test_pki.hpp) through identity::tls_context, whose fixed
// clock matches the PKI's `now`. One loop per test, run by the test thread in bounded turns
// (a 1 ms timer stops it once a condition holds or a deadline passed): nothing sleeps, and no
// assertion reads the clock.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/tcp.h> // tcp_info with tcpi_data_segs_out (glibc's is older)
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "identity/tls.hpp"
#include "net/connection.hpp"
#include "net/loop.hpp"
#include "tests/support/test_pki.hpp"
#include "tests/support/tls_support.hpp"

namespace starling::net {
namespace {

using namespace std::chrono_literals;
using starling::testing::mesh;
using starling::testing::must;
using starling::testing::other_mesh;
using starling::testing::test_pki;

using starling::testing::fnv1a;
using starling::testing::pattern;
using starling::testing::tls_context_of;

/// Whether this process may use io_uring at all (the uring cases are skipped where not).
bool uring_here() {
  std::string why;
  auto l = loop::make(backend::uring, why);
  return l && l->kind() == backend::uring;
}

std::error_code sys(int err) { return {err, std::system_category()}; }

/// Bound on the timer ticks of any run, besides its deadline.
constexpr int max_ticks = 1'000'000;

/// Runs `l` on this thread until `done()` holds, for at most `limit` and max_ticks ticks of a
/// 1 ms timer that looks at `done()` and stops the loop; returns done().
template <class Done> bool run_until(loop& l, Done done, std::chrono::milliseconds limit = 10s) {
  if (done())
    return true;
  const auto deadline = loop::clock::now() + limit;
  int ticks = 0;
  loop::timer_id current = 0;
  std::function<void()> tick = [&] {
    if (done() || ++ticks >= max_ticks || loop::clock::now() >= deadline) {
      l.stop();
      return;
    }
    current = l.after(1ms, tick);
  };
  current = l.after(1ms, tick);
  l.run();
  l.cancel(current);
  return done();
}

/// Runs `l` for `ticks` turns of a 1 ms timer: what is ready runs, and the operations that
/// wait for the peer are with the kernel. (Nothing asserted afterwards depends on how long
/// this took: the operations checked cannot complete until the peer acts.)
void settle(loop& l, int ticks = 10) {
  int left = ticks;
  std::ignore = run_until(l, [&] { return --left <= 0; });
}

/// How an operation completed.
struct outcome {
  bool done = false;
  std::error_code error;
  std::size_t bytes = 0;
};

/// A completion handler that records into `o`.
auto record(outcome& o) {
  return [&o](std::error_code ec, std::size_t n) {
    o.done = true;
    o.error = ec;
    o.bytes = n;
  };
}

/// A done_handler that records into `o`.
auto record_done(outcome& o) {
  return [&o](std::error_code ec) {
    o.done = true;
    o.error = ec;
  };
}

/// Reads `c` into `data` until `limit` bytes arrived or an error ended the reads (kept in
/// `error`). The caller runs the loop.
struct reader {
  explicit reader(connection& c, std::size_t limit = std::numeric_limits<std::size_t>::max(),
                  std::size_t chunk = 64 * 1024)
      : c(c), limit(limit), buf(chunk) {}

  void start() {
    const auto want = std::min(buf.size(), limit - data.size());
    c.read_some(buf.data(), want, [this](std::error_code ec, std::size_t n) {
      data.append(buf.data(), n);
      ++reads;
      if (ec)
        error = ec;
      if (on_read)
        on_read(*this);
      if (ec || data.size() >= limit)
        done = true;
      else
        start();
    });
  }

  connection& c;
  std::size_t limit;
  std::vector<char> buf;
  std::string data;
  int reads = 0;
  std::error_code error;
  bool done = false;
  /// Called after each read, before the next starts.
  std::function<void(const reader&)> on_read;
};

/// Bytes waiting in `fd`'s receive queue.
std::size_t available(int fd) {
  int n = 0;
  if (::ioctl(fd, FIONREAD, &n) != 0)
    return 0;
  return static_cast<std::size_t>(n);
}

/// TCP_NODELAY on `fd`.
void set_nodelay(int fd) {
  const int on = 1;
  ASSERT_EQ(::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on), 0) << std::strerror(errno);
}

/// Sets the socket option `option` (SO_SNDBUF, SO_RCVBUF) of `fd` to `bytes`; a set size
/// also turns the kernel's autotuning off for that buffer.
void set_buffer(int fd, int option, int bytes) {
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, option, &bytes, sizeof bytes), 0) << std::strerror(errno);
}

/// What TCP_INFO says of `fd`'s sending side: data segments sent (a segment larger than
/// the MSS counts as several) and the MSS (which Linux bounds by half the largest window
/// the peer advertised).
struct send_info {
  long data_segments = -1;
  long mss = -1;
};
send_info send_info_of(int fd) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
    return {};
  return {static_cast<long>(info.tcpi_data_segs_out), static_cast<long>(info.tcpi_snd_mss)};
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  return sa;
}

/// A listening socket on 127.0.0.1, port 0; its port in `port`; -1 on failure.
int make_listener(std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  auto sa = loopback(0);
  socklen_t len = sizeof sa;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    ::close(fd);
    return -1;
  }
  port = ntohs(sa.sin_port);
  return fd;
}

class net_connection : public ::testing::TestWithParam<backend> {
protected:
  void SetUp() override {
    if (GetParam() == backend::uring && !uring_here())
      GTEST_SKIP() << "io_uring is not available to this process";
    std::string why;
    loop_ = loop::make(GetParam(), why);
    ASSERT_TRUE(loop_) << why;
    ASSERT_EQ(loop_->kind(), GetParam()) << why;
    listener_ = make_listener(port_);
    ASSERT_GE(listener_, 0) << "listener: " << std::strerror(errno);
  }

  void TearDown() override {
    // The connections go before the loop, which does not run again: handlers still queued
    // (they may name the test's locals) never run.
    server_.reset();
    client_.reset();
    if (listener_ >= 0)
      loop_->close(listener_);
  }

  /// A connected pair through the listener: {accepted side, connecting side}; nulls on
  /// failure. The loop accepts; the client is a connection::new_socket that connect()s.
  std::pair<std::unique_ptr<connection>, std::unique_ptr<connection>> connect_pair() {
    const int fd = connection::new_socket(AF_INET);
    EXPECT_GE(fd, 0) << "new_socket: " << std::strerror(-fd);
    if (fd < 0)
      return {};
    auto client = std::make_unique<connection>(*loop_, fd);
    int accepted = -2;
    outcome connected;
    loop_->accept(listener_, [&](int r) { accepted = r; });
    const auto sa = loopback(port_);
    client->connect(reinterpret_cast<const sockaddr*>(&sa), sizeof sa, record_done(connected));
    const bool ok = run_until(*loop_, [&] { return accepted != -2 && connected.done; });
    EXPECT_TRUE(ok) << "no connection: accepted " << accepted << ", connected " << connected.done;
    EXPECT_GE(accepted, 0) << "accept: " << std::strerror(-accepted);
    EXPECT_FALSE(connected.error) << "connect: " << connected.error.message();
    if (!ok || accepted < 0 || connected.error) {
      if (accepted >= 0)
        loop_->close(accepted);
      return {};
    }
    return {std::make_unique<connection>(*loop_, accepted), std::move(client)};
  }

  /// Connects server_ and client_ (plain).
  void connect() {
    std::tie(server_, client_) = connect_pair();
    ASSERT_TRUE(server_ && client_);
  }

  /// Starts TLS on the pair: the server is node "b" of `server_pki`, the client node "a" of
  /// `client_pki`, expecting "b".
  void start_tls(const test_pki& server_pki, const test_pki& client_pki) {
    auto s = must(tls_context_of(server_pki, "b")->new_session(identity::tls_role::server),
                  "server session");
    auto c = must(tls_context_of(client_pki, "a")->new_session(identity::tls_role::client, "b"),
                  "client session");
    ASSERT_TRUE(server_->start_tls(s.release()));
    ASSERT_TRUE(client_->start_tls(c.release()));
  }

  /// Runs both handshakes to their end; returns {server's error, client's error}.
  std::pair<std::error_code, std::error_code> handshake() {
    outcome s;
    outcome c;
    server_->handshake(true, record_done(s));
    client_->handshake(false, record_done(c));
    EXPECT_TRUE(run_until(*loop_, [&] { return s.done && c.done; }))
        << "handshake hangs: server done " << s.done << ", client done " << c.done;
    return {s.error, c.error};
  }

  /// Connects server_ and client_ over TLS (mutual, one mesh).
  void connect_tls() {
    ASSERT_NO_FATAL_FAILURE(connect());
    ASSERT_NO_FATAL_FAILURE(start_tls(mesh(), mesh()));
    const auto errors = handshake();
    ASSERT_FALSE(errors.first) << "server handshake: " << errors.first.message();
    ASSERT_FALSE(errors.second) << "client handshake: " << errors.second.message();
  }
  /// connect_tls() or connect() (plain).
  void connect_as(bool tls) {
    if (tls)
      ASSERT_NO_FATAL_FAILURE(connect_tls());
    else
      ASSERT_NO_FATAL_FAILURE(connect());
  }

  /// Writes `data` on `c` to its end; returns how it completed.
  outcome write_all(connection& c, const std::string& data) {
    outcome o;
    c.write(data.data(), data.size(), record(o));
    EXPECT_TRUE(run_until(*loop_, [&] { return o.done; })) << "write hangs";
    return o;
  }

  /// Reads from `c` until `n` bytes or an error; returns the reader.
  std::unique_ptr<reader> read_n(connection& c, std::size_t n) {
    auto r = std::make_unique<reader>(c, n);
    r->start();
    EXPECT_TRUE(run_until(*loop_, [&] { return r->done; })) << "read hangs";
    return r;
  }

  /// Reads from `c` until an error (the end of the stream); returns the reader.
  std::unique_ptr<reader> read_to_end(connection& c) {
    auto r = std::make_unique<reader>(c);
    r->start();
    EXPECT_TRUE(run_until(*loop_, [&] { return r->done; })) << "read hangs";
    return r;
  }

  // The loop first: the connections are destroyed before it.
  std::unique_ptr<loop> loop_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::unique_ptr<connection> server_;
  std::unique_ptr<connection> client_;
};

TEST_P(net_connection, tls_echo) {
  ASSERT_NO_FATAL_FAILURE(connect_tls());
  ASSERT_TRUE(server_->is_tls());
  ASSERT_TRUE(client_->is_tls());
  const std::string hello = "hello over tls, through the connection's own BIO";

  auto w = write_all(*client_, hello);
  EXPECT_FALSE(w.error) << w.error.message();
  EXPECT_EQ(w.bytes, hello.size());
  auto got = read_n(*server_, hello.size());
  ASSERT_FALSE(got->error) << got->error.message();
  EXPECT_EQ(got->data, hello);

  auto echo = write_all(*server_, got->data);
  EXPECT_FALSE(echo.error) << echo.error.message();
  auto back = read_n(*client_, hello.size());
  ASSERT_FALSE(back->error) << back->error.message();
  EXPECT_EQ(back->data, hello);
}

TEST_P(net_connection, tls_pipelined_records_all_arrive) {
  ASSERT_NO_FATAL_FAILURE(connect_tls());
  const std::vector<std::string> messages = {"first", std::string(3000, 'b'), "third and last"};
  std::string all;
  for (const auto& m : messages) {
    auto w = write_all(*client_, m);
    ASSERT_FALSE(w.error) << w.error.message();
    EXPECT_EQ(w.bytes, m.size());
    all += m;
  }
  // Each write is one record (TLS 1.3: 5 bytes of header, 1 of inner content type, a 16-byte
  // AEAD tag). Waiting until all three records sit in the server's socket makes the first
  // receive take them together, which is the read-ahead case.
  const std::size_t on_wire = all.size() + messages.size() * (5 + 1 + 16);
  const int server_fd = server_->fd();
  EXPECT_TRUE(run_until(*loop_, [&] { return available(server_fd) >= on_wire; }));

  reader r(*server_, all.size());
  std::size_t first_read = 0;
  int pending_after_first = -1;
  SSL* session = server_->session();
  r.on_read = [&](const reader& rd) {
    if (rd.reads == 1) {
      first_read = rd.data.size();
      pending_after_first = SSL_has_pending(session);
    }
  };
  r.start();
  ASSERT_TRUE(run_until(*loop_, [&] { return r.done; }));
  ASSERT_FALSE(r.error) << r.error.message();
  EXPECT_EQ(r.data, all);
  if (first_read < all.size()) { // the other records came in the same receive
    EXPECT_EQ(pending_after_first, 1) << "read-ahead is off";
  }
}

TEST_P(net_connection, tls_a_write_of_several_records_leaves_in_one_segment_and_none_waits_corked) {
  ASSERT_NO_FATAL_FAILURE(connect_tls());
  const int client_fd = client_->fd();
  const int server_fd = server_->fd();
  ASSERT_NO_FATAL_FAILURE(set_nodelay(client_fd)); // as the data plane's sockets are
  // Three full records: the first two are sent with MSG_MORE, the last without, so the
  // kernel sends them in one segment and nothing stays corked. One segment holds them
  // once the receiver's window has grown (the MSS is at most half of it): a few megabytes
  // first, each read before the next.
  const std::string three = pattern(3 * 16 * 1024);
  const auto on_wire = static_cast<long>(three.size() + 3 * (5 + 1 + 16));
  const std::string warm = pattern(1024 * 1024);
  const long room = on_wire + 512; // and TCP options the segment may carry
  for (int i = 0; i < 16 && send_info_of(client_fd).mss < room; ++i) {
    ASSERT_FALSE(write_all(*client_, warm).error);
    ASSERT_EQ(read_n(*server_, warm.size())->data.size(), warm.size());
  }
  const auto before = send_info_of(client_fd);
  ASSERT_GE(before.mss, room) << "the window did not grow: no segment holds three records";

  auto w = write_all(*client_, three);
  ASSERT_FALSE(w.error) << w.error.message();
  EXPECT_EQ(w.bytes, three.size());
  ASSERT_TRUE(run_until(*loop_, [&] { return available(server_fd) >= std::size_t(on_wire); }))
      << "the last record did not arrive: " << available(server_fd) << " of " << on_wire
      << " bytes";
  EXPECT_EQ(send_info_of(client_fd).data_segments - before.data_segments, 1)
      << "three records, three segments: the first two were not sent with MSG_MORE";

  // Then a small write alone: no MSG_MORE is left over to hold it back.
  const std::string small = "after the three";
  ASSERT_FALSE(write_all(*client_, small).error);
  ASSERT_TRUE(run_until(*loop_, [&] {
    return available(server_fd) >= std::size_t(on_wire) + small.size() + 5 + 1 + 16;
  })) << "the small record waits corked";
  auto got = read_n(*server_, three.size() + small.size());
  ASSERT_FALSE(got->error) << got->error.message();
  EXPECT_TRUE(got->data == three + small);
}

TEST_P(net_connection, tls_large_write_waits_for_the_reader_and_arrives_intact) {
  ASSERT_NO_FATAL_FAILURE(connect_tls());
  // Small fixed buffers (no autotuning) so that 8 MiB cannot fit in the kernel: the write
  // must meet EAGAIN, i.e. OpenSSL's WANT_WRITE, and resume from where it stopped.
  ASSERT_NO_FATAL_FAILURE(set_buffer(client_->fd(), SO_SNDBUF, 64 * 1024));
  ASSERT_NO_FATAL_FAILURE(set_buffer(server_->fd(), SO_RCVBUF, 64 * 1024));
  const std::string big = pattern(8 * 1024 * 1024);

  outcome w;
  client_->write(big.data(), big.size(), record(w));
  settle(*loop_);
  ASSERT_FALSE(w.done) << "8 MiB fit in the socket buffers; the WANT_WRITE path was not taken";

  reader r(*server_, big.size());
  r.start();
  ASSERT_TRUE(run_until(
      *loop_, [&] { return w.done && r.done; }, 60s))
      << "write done " << w.done << ", read " << r.data.size() << " bytes";
  EXPECT_FALSE(w.error) << w.error.message();
  EXPECT_EQ(w.bytes, big.size());
  EXPECT_FALSE(r.error) << r.error.message();
  EXPECT_EQ(r.data.size(), big.size());
  EXPECT_EQ(fnv1a(r.data), fnv1a(big));
  EXPECT_TRUE(r.data == big); // not EXPECT_EQ: it would print 8 MiB
}

TEST_P(net_connection, tls_full_duplex_large_transfers_in_both_directions) {
  // What the data plane does: each side reads while its own write waits for the socket, so a
  // read's wait and a write's wait are pending on one session at the same time.
  ASSERT_NO_FATAL_FAILURE(connect_tls());
  for (auto* c : {server_.get(), client_.get()}) {
    ASSERT_NO_FATAL_FAILURE(set_buffer(c->fd(), SO_SNDBUF, 64 * 1024));
    ASSERT_NO_FATAL_FAILURE(set_buffer(c->fd(), SO_RCVBUF, 64 * 1024));
  }
  const std::string up = pattern(4 * 1024 * 1024);
  const std::string down = up.substr(1) + up.front(); // another byte order than `up`

  reader at_server(*server_, up.size());
  reader at_client(*client_, down.size());
  at_server.start();
  at_client.start();
  outcome w_up;
  outcome w_down;
  client_->write(up.data(), up.size(), record(w_up));
  server_->write(down.data(), down.size(), record(w_down));
  ASSERT_TRUE(run_until(
      *loop_, [&] { return w_up.done && w_down.done && at_server.done && at_client.done; }, 60s))
      << "up: written " << w_up.done << ", read " << at_server.data.size() << "; down: written "
      << w_down.done << ", read " << at_client.data.size();
  EXPECT_FALSE(w_up.error) << w_up.error.message();
  EXPECT_FALSE(w_down.error) << w_down.error.message();
  EXPECT_EQ(w_up.bytes, up.size());
  EXPECT_EQ(w_down.bytes, down.size());
  EXPECT_FALSE(at_server.error) << at_server.error.message();
  EXPECT_FALSE(at_client.error) << at_client.error.message();
  EXPECT_EQ(fnv1a(at_server.data), fnv1a(up));
  EXPECT_EQ(fnv1a(at_client.data), fnv1a(down));
  EXPECT_TRUE(at_server.data == up);
  EXPECT_TRUE(at_client.data == down);
}

TEST_P(net_connection, tls_half_close_ends_the_read_side_and_the_peer_can_still_answer) {
  ASSERT_NO_FATAL_FAILURE(connect_tls());
  auto w = write_all(*client_, "abc");
  ASSERT_FALSE(w.error) << w.error.message();
  client_->shutdown_send();

  auto got = read_to_end(*server_);
  EXPECT_EQ(got->data, "abc");
  EXPECT_TRUE(is_end(got->error)) << got->error.message();

  // A FIN without close_notify must leave the server's session writable.
  auto answer = write_all(*server_, "xyz");
  EXPECT_FALSE(answer.error) << answer.error.message();
  EXPECT_EQ(answer.bytes, 3U);
  server_->shutdown_send();

  auto back = read_to_end(*client_);
  EXPECT_EQ(back->data, "xyz");
  EXPECT_TRUE(is_end(back->error)) << back->error.message();
}

TEST_P(net_connection, tls_immediate_completions_are_deferred_not_called_inline) {
  ASSERT_NO_FATAL_FAILURE(connect_tls());
  const std::string record_100 = pattern(100);
  ASSERT_FALSE(write_all(*server_, record_100).error);

  char first = 0;
  outcome r1;
  client_->read_some(&first, 1, record(r1));
  ASSERT_TRUE(run_until(*loop_, [&] { return r1.done; }));
  ASSERT_FALSE(r1.error) << r1.error.message();
  ASSERT_EQ(r1.bytes, 1U);
  // The rest of the record is decrypted and waits in OpenSSL: the next read completes at once.
  ASSERT_EQ(SSL_pending(client_->session()), 99);

  std::string rest(99, '\0');
  bool returned = false;
  bool inline_call = false;
  outcome r2;
  client_->read_some(rest.data(), rest.size(), [&](std::error_code ec, std::size_t n) {
    inline_call = !returned;
    record(r2)(ec, n);
  });
  returned = true;
  ASSERT_TRUE(run_until(*loop_, [&] { return r2.done; }));
  EXPECT_FALSE(inline_call) << "read handler called from inside read_some";
  EXPECT_FALSE(r2.error) << r2.error.message();
  ASSERT_EQ(r2.bytes, 99U);
  EXPECT_EQ(first + rest, record_100);

  // A small write is taken by the socket at once: deferred too.
  returned = false;
  inline_call = false;
  outcome w;
  client_->write(record_100.data(), record_100.size(), [&](std::error_code ec, std::size_t n) {
    inline_call = !returned;
    record(w)(ec, n);
  });
  returned = true;
  ASSERT_TRUE(run_until(*loop_, [&] { return w.done; }));
  EXPECT_FALSE(inline_call) << "write handler called from inside write";
  EXPECT_FALSE(w.error) << w.error.message();
}

/// Starts a write of `data` on `c` with completion::inline_when_done, recorded into `o`;
/// `inline_call` says whether the handler ran inside write. Both must outlive it.
void start_inline_write(connection& c, const std::string& data, outcome& o, bool& inline_call) {
  auto returned = std::make_shared<bool>(false);
  inline_call = false;
  c.write(
      data.data(), data.size(),
      [&o, &inline_call, returned](std::error_code ec, std::size_t n) {
        inline_call = !*returned;
        record(o)(ec, n);
      },
      connection::completion::inline_when_done);
  *returned = true;
}

/// start_inline_write, then runs the loop until the write completes.
outcome write_inline(loop& l, connection& c, const std::string& data, bool& inline_call) {
  outcome o;
  start_inline_write(c, data, o, inline_call);
  EXPECT_TRUE(run_until(l, [&] { return o.done; })) << "write hangs";
  return o;
}

TEST_P(net_connection, an_inline_write_the_socket_takes_at_once_completes_inside_the_call) {
  for (bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "tls" : "plain");
    ASSERT_NO_FATAL_FAILURE(connect_as(tls));
    const std::string small = pattern(300);
    bool inline_call = false;
    auto w = write_inline(*loop_, *client_, small, inline_call);
    // A loop that sends later (io_uring) has not sent a plain write when write() returns;
    // TLS records go out through the BIO's own send(2).
    EXPECT_EQ(inline_call, tls || !loop_->sends_later())
        << "inline: " << inline_call << ", the loop sends later: " << loop_->sends_later();
    EXPECT_FALSE(w.error) << w.error.message();
    EXPECT_EQ(w.bytes, small.size());
    auto got = read_n(*server_, small.size());
    ASSERT_FALSE(got->error) << got->error.message();
    EXPECT_EQ(got->data, small);
  }
}

TEST_P(net_connection, an_inline_write_larger_than_the_socket_takes_waits_and_arrives_whole) {
  for (bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "tls" : "plain");
    ASSERT_NO_FATAL_FAILURE(connect_as(tls));
    // More than loopback's socket buffers hold while nobody reads: the write must wait.
    const std::string big = pattern(32U << 20U);
    outcome o;
    bool inline_call = false;
    start_inline_write(*client_, big, o, inline_call);
    EXPECT_FALSE(o.done) << "32 MiB went to the socket at once";
    auto r = std::make_unique<reader>(*server_, big.size());
    r->start();
    ASSERT_TRUE(run_until(
        *loop_, [&] { return r->done && o.done; }, 60s))
        << "write done " << o.done << ", read " << r->data.size() << " bytes";
    EXPECT_FALSE(inline_call);
    EXPECT_FALSE(o.error) << o.error.message();
    EXPECT_EQ(o.bytes, big.size());
    EXPECT_FALSE(r->error) << r->error.message();
    EXPECT_EQ(fnv1a(r->data), fnv1a(big));
  }
}

TEST_P(net_connection, an_inline_write_that_fails_completes_later_with_the_error) {
  for (bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "tls" : "plain");
    ASSERT_NO_FATAL_FAILURE(connect_as(tls));
    client_->close();
    const std::string x = "x";
    bool inline_call = false;
    auto w = write_inline(*loop_, *client_, x, inline_call);
    EXPECT_EQ(w.error, sys(EBADF)) << w.error.message();
    EXPECT_EQ(w.bytes, 0U);
    EXPECT_FALSE(inline_call) << "an error completed inside the call";
  }
}

TEST_P(net_connection, tls_peer_reset_fails_the_writer_without_sigpipe) {
  // A SIGPIPE must kill this process if the connection ever writes without MSG_NOSIGNAL, so
  // the default action is restored in case the test runner handed it down ignored or blocked.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ASSERT_EQ(sigaction(SIGPIPE, &dfl, nullptr), 0);
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ASSERT_EQ(pthread_sigmask(SIG_UNBLOCK, &pipe_only, nullptr), 0);

  ASSERT_NO_FATAL_FAILURE(connect_tls());
  const std::string chunk = pattern(16 * 1024);
  constexpr int max_writes = 10'000;
  int writes = 0;
  std::error_code error;
  bool done = false;
  std::function<void()> next = [&] {
    client_->write(chunk.data(), chunk.size(), [&](std::error_code ec, std::size_t) {
      ++writes;
      if (ec || writes >= max_writes) {
        error = ec;
        done = true;
        return;
      }
      next();
    });
  };
  next();
  ASSERT_TRUE(run_until(*loop_, [&] { return writes >= 3 || done; }));
  ASSERT_FALSE(done) << "writes failed before the reset: " << error.message();

  // Linger 0, and bytes the server never read: the close sends a RST, not a FIN.
  const linger reset{1, 0};
  ASSERT_EQ(::setsockopt(server_->fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset), 0)
      << std::strerror(errno);
  server_->close();

  ASSERT_TRUE(run_until(*loop_, [&] { return done; })) << "writer never saw the reset";
  EXPECT_TRUE(error == sys(EPIPE) || error == sys(ECONNRESET))
      << "after " << writes << " writes: " << error.message();

  // The first send after a RST reports the reset (no signal); the next one is the EPIPE that
  // would raise SIGPIPE without MSG_NOSIGNAL. Same bytes: OpenSSL retries its pending record.
  auto again = write_all(*client_, chunk);
  EXPECT_EQ(again.error, sys(EPIPE)) << again.error.message();
}

TEST_P(net_connection, tls_operations_after_close_fail_and_touch_no_other_descriptor) {
  ASSERT_NO_FATAL_FAILURE(connect_tls());
  // A read waiting for data when the connection closes is aborted.
  char c = 0;
  outcome pending;
  client_->read_some(&c, 1, record(pending));
  settle(*loop_);
  ASSERT_FALSE(pending.done);
  const int old_fd = client_->fd();
  client_->close();
  EXPECT_FALSE(client_->is_open());
  EXPECT_EQ(client_->fd(), -1);
  ASSERT_TRUE(run_until(*loop_, [&] { return pending.done; }));
  EXPECT_TRUE(is_aborted(pending.error)) << pending.error.message();
  EXPECT_EQ(pending.bytes, 0U);

  // A new connection, whose connecting socket usually gets the closed descriptor's number
  // (the kernel gives out the lowest free one): what the closed connection does must not
  // reach it. (Not a structured binding: clang cannot capture one in the lambdas below.)
  auto other = connect_pair();
  auto& other_server = other.first;
  auto& other_client = other.second;
  ASSERT_TRUE(other_server && other_client);
  const bool reused = other_client->fd() == old_fd;
  RecordProperty("descriptor_reused", reused ? "yes" : "no");
  const std::string ping = "ping";
  ASSERT_FALSE(write_all(*other_server, ping).error);
  const int other_client_fd = other_client->fd();
  ASSERT_TRUE(run_until(*loop_, [&] { return available(other_client_fd) == ping.size(); }));

  bool returned = false;
  bool inline_call = false;
  outcome r;
  client_->read_some(&c, 1, [&](std::error_code ec, std::size_t n) {
    inline_call = !returned;
    record(r)(ec, n);
  });
  returned = true;
  ASSERT_TRUE(run_until(*loop_, [&] { return r.done; }));
  EXPECT_FALSE(inline_call);
  EXPECT_EQ(r.error, sys(EBADF)) << "read after close: " << r.error.message();
  EXPECT_EQ(r.bytes, 0U);

  const std::string junk = "junk";
  outcome w;
  client_->write(junk.data(), junk.size(), record(w));
  ASSERT_TRUE(run_until(*loop_, [&] { return w.done; }));
  EXPECT_EQ(w.error, sys(EBADF)) << "write after close: " << w.error.message();
  EXPECT_EQ(w.bytes, 0U);

  settle(*loop_);
  EXPECT_EQ(available(other_client->fd()), ping.size())
      << "the closed connection read another connection's bytes (descriptor reused: " << reused
      << ")";
  EXPECT_EQ(available(other_server->fd()), 0U)
      << "the closed connection wrote on another connection (descriptor reused: " << reused << ")";
}

TEST_P(net_connection, plain_operations_after_close_fail) {
  ASSERT_NO_FATAL_FAILURE(connect());
  client_->close();
  char c = 0;
  outcome r;
  client_->read_some(&c, 1, record(r));
  outcome w;
  client_->write("x", 1, record(w));
  outcome waited;
  client_->wait(loop::ready::readable, record_done(waited));
  ASSERT_TRUE(run_until(*loop_, [&] { return r.done && w.done && waited.done; }));
  EXPECT_EQ(r.error, sys(EBADF)) << r.error.message();
  EXPECT_EQ(w.error, sys(EBADF)) << w.error.message();
  EXPECT_EQ(waited.error, sys(EBADF)) << waited.error.message();
}

TEST_P(net_connection, tls_handshake_with_an_untrusted_server_fails_on_both_sides) {
  ASSERT_NO_FATAL_FAILURE(connect());
  // The client trusts another mesh's root: it refuses the server's chain and says so with an
  // alert, which fails the server's handshake too.
  ASSERT_NO_FATAL_FAILURE(start_tls(mesh(), other_mesh()));
  const auto errors = handshake();
  const auto& s = errors.first;
  const auto& c = errors.second;
  EXPECT_TRUE(c) << "client accepted a server of another mesh";
  EXPECT_TRUE(s) << "server handshake succeeded although the client refused it";
  EXPECT_TRUE(identity::tls_context::refusal_of(client_->session()))
      << "the client failed for another reason than the server's chain: " << c.message();
}

TEST_P(net_connection, plain_echo_and_half_close) {
  ASSERT_NO_FATAL_FAILURE(connect());
  EXPECT_FALSE(server_->is_tls());
  EXPECT_FALSE(client_->is_tls());
  EXPECT_EQ(client_->session(), nullptr);

  const std::string hello = "hello in the clear";
  auto w = write_all(*client_, hello);
  EXPECT_FALSE(w.error) << w.error.message();
  EXPECT_EQ(w.bytes, hello.size());
  auto got = read_n(*server_, hello.size());
  ASSERT_FALSE(got->error) << got->error.message();
  EXPECT_EQ(got->data, hello);

  client_->shutdown_send();
  auto rest = read_to_end(*server_);
  EXPECT_EQ(rest->data, "");
  EXPECT_TRUE(is_end(rest->error)) << rest->error.message();

  auto echo = write_all(*server_, got->data);
  EXPECT_FALSE(echo.error) << echo.error.message();
  server_->shutdown_send();
  auto back = read_to_end(*client_);
  EXPECT_EQ(back->data, hello);
  EXPECT_TRUE(is_end(back->error)) << back->error.message();
}

TEST_P(net_connection, wait_readable_completes_after_the_peer_sends) {
  ASSERT_NO_FATAL_FAILURE(connect());
  char c = 0;
  ASSERT_EQ(::recv(client_->fd(), &c, 1, MSG_DONTWAIT), -1);
  ASSERT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << std::strerror(errno);

  bool returned = false;
  bool inline_call = false;
  outcome waited;
  client_->wait(loop::ready::readable, [&](std::error_code ec) {
    inline_call = !returned;
    record_done(waited)(ec);
  });
  returned = true;
  settle(*loop_);
  EXPECT_FALSE(waited.done) << "readable before the peer sent anything";

  const std::string one = "r";
  ASSERT_FALSE(write_all(*server_, one).error);
  ASSERT_TRUE(run_until(*loop_, [&] { return waited.done; })) << "the wait never completed";
  EXPECT_FALSE(inline_call);
  EXPECT_FALSE(waited.error) << waited.error.message();
  ASSERT_EQ(::recv(client_->fd(), &c, 1, MSG_DONTWAIT), 1) << std::strerror(errno);
  EXPECT_EQ(c, 'r');
}

TEST_P(net_connection, wait_writable_completes_once_the_peer_drains_a_full_socket) {
  ASSERT_NO_FATAL_FAILURE(connect());
  // Fixed buffers (no autotuning): the socket stays full until the peer reads.
  ASSERT_NO_FATAL_FAILURE(set_buffer(client_->fd(), SO_SNDBUF, 64 * 1024));
  ASSERT_NO_FATAL_FAILURE(set_buffer(server_->fd(), SO_RCVBUF, 64 * 1024));
  const std::string chunk = pattern(64 * 1024);
  std::string sent;
  constexpr int max_sends = 100'000;
  int sends = 0;
  int err = 0;
  // Full means the peer's window is closed, not only our send buffer: a send buffer full of
  // bytes the peer has not acknowledged yet (a loaded machine delays the ACKs) turns
  // writable again without any read. So fill until the socket stays unwritable for 50 ms.
  for (int rounds = 0; rounds < 100; ++rounds) {
    for (; sends < max_sends; ++sends) {
      const auto n = ::send(client_->fd(), chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) {
        err = errno;
        break;
      }
      sent.append(chunk, 0, static_cast<std::size_t>(n));
    }
    ASSERT_TRUE(err == EAGAIN || err == EWOULDBLOCK)
        << "after " << sends << " sends (" << sent.size() << " bytes): " << std::strerror(err);
    pollfd p{client_->fd(), POLLOUT, 0};
    if (::poll(&p, 1, 50) == 0)
      break;
  }

  bool returned = false;
  bool inline_call = false;
  outcome waited;
  client_->wait(loop::ready::writable, [&](std::error_code ec) {
    inline_call = !returned;
    record_done(waited)(ec);
  });
  returned = true;
  settle(*loop_);
  EXPECT_FALSE(waited.done) << "writable while full and nobody reads";

  reader drain(*server_, sent.size());
  drain.start();
  ASSERT_TRUE(run_until(*loop_, [&] { return waited.done && drain.done; }))
      << "waited " << waited.done << ", drained " << drain.data.size() << " of " << sent.size();
  EXPECT_FALSE(inline_call);
  EXPECT_FALSE(waited.error) << waited.error.message();
  EXPECT_FALSE(drain.error) << drain.error.message();
  EXPECT_TRUE(drain.data == sent);
  EXPECT_GT(::send(client_->fd(), chunk.data(), 1, MSG_DONTWAIT | MSG_NOSIGNAL), 0)
      << std::strerror(errno);
}

INSTANTIATE_TEST_SUITE_P(backends, net_connection,
                         ::testing::Values(backend::uring, backend::epoll),
                         [](const auto& info) { return std::string{to_string(info.param)}; });

} // namespace
} // namespace starling::net
