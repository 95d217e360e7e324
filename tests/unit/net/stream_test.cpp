// net::stream over real sockets on 127.0.0.1 (port 0): TLS through the stream's own socket BIO
// (echo, pipelined records, a large write through WANT_WRITE, half-close, peer reset,
// operations after close, a failed handshake) and plain TCP through the same class. TLS
// credentials are the run-time test PKI's (tests/support/test_pki.hpp) through
// identity::tls_context, whose fixed clock matches the PKI's `now`. One io_context, run by the
// test thread in bounded turns until a condition holds or a deadline passes: nothing sleeps.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <pthread.h>

#include "identity/tls.hpp"
#include "net/stream.hpp"
#include "tests/support/test_pki.hpp"
#include "tests/support/tls_support.hpp"

namespace starling::net {
namespace {

using namespace std::chrono_literals;
using asio::ip::tcp;
using starling::testing::mesh;
using starling::testing::must;
using starling::testing::other_mesh;
using starling::testing::test_pki;

using starling::testing::fnv1a;
using starling::testing::pattern;
using starling::testing::tls_context_of;

/// Bound on the turns of any run loop, besides its deadline.
constexpr int max_turns = 1'000'000;

/// Runs `io` on this thread until `done()` holds, for at most `limit` and max_turns turns;
/// returns done().
template <class Done>
bool run_until(asio::io_context& io, Done done, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (int turn = 0; turn < max_turns && !done() && std::chrono::steady_clock::now() < deadline;
       ++turn) {
    io.restart(); // run_one_for stops the context when it runs out of work
    io.run_one_for(20ms);
  }
  return done();
}

/// Runs the handlers of `io` that are ready, until none is (bounded): afterwards every
/// pending operation waits for the peer.
void run_ready(asio::io_context& io) {
  for (int turn = 0; turn < max_turns; ++turn) {
    io.restart();
    if (io.poll() == 0)
      return;
  }
  ADD_FAILURE() << "the io_context never went idle";
}

/// How an operation completed.
struct outcome {
  bool done = false;
  asio::error_code error;
  std::size_t bytes = 0;
};

/// A completion handler that records into `o`.
auto record(outcome& o) {
  return [&o](const asio::error_code& ec, std::size_t n) {
    o.done = true;
    o.error = ec;
    o.bytes = n;
  };
}

/// Reads `s` into `data` until `limit` bytes arrived or an error ended the reads (kept in
/// `error`). The caller runs the io_context.
struct reader {
  explicit reader(stream& s, std::size_t limit = std::numeric_limits<std::size_t>::max(),
                  std::size_t chunk = 64 * 1024)
      : s(s), limit(limit), buf(chunk) {}

  void start() {
    const auto want = std::min(buf.size(), limit - data.size());
    s.async_read_some(asio::buffer(buf.data(), want),
                      [this](const asio::error_code& ec, std::size_t n) {
                        data.append(buf.data(), n);
                        ++reads;
                        if (ec)
                          error = ec;
                        if (ec || data.size() >= limit)
                          done = true;
                        else
                          start();
                      });
  }

  stream& s;
  std::size_t limit;
  std::vector<char> buf;
  std::string data;
  int reads = 0;
  asio::error_code error;
  bool done = false;
};

class net_stream : public ::testing::Test {
protected:
  /// A connected pair on the acceptor: {accepted side, connecting side}; nulls on failure.
  std::pair<std::unique_ptr<stream>, std::unique_ptr<stream>> connect_pair() {
    std::unique_ptr<stream> server;
    auto client = std::make_unique<stream>(io_);
    bool accepted = false;
    bool connected = false;
    asio::error_code accept_ec;
    asio::error_code connect_ec;
    acceptor_.async_accept([&](const asio::error_code& ec, tcp::socket s) {
      accept_ec = ec;
      server = std::make_unique<stream>(std::move(s));
      accepted = true;
    });
    client->socket().async_connect(acceptor_.local_endpoint(), [&](const asio::error_code& ec) {
      connect_ec = ec;
      connected = true;
    });
    const bool ok = run_until(io_, [&] { return accepted && connected; });
    EXPECT_TRUE(ok) << "no connection";
    EXPECT_FALSE(accept_ec) << accept_ec.message();
    EXPECT_FALSE(connect_ec) << connect_ec.message();
    if (!ok || accept_ec || connect_ec)
      return {};
    return {std::move(server), std::move(client)};
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
  std::pair<asio::error_code, asio::error_code> handshake() {
    outcome s;
    outcome c;
    server_->async_handshake(true, [&](const asio::error_code& ec) {
      s.done = true;
      s.error = ec;
    });
    client_->async_handshake(false, [&](const asio::error_code& ec) {
      c.done = true;
      c.error = ec;
    });
    EXPECT_TRUE(run_until(io_, [&] { return s.done && c.done; }))
        << "handshake hangs: server done " << s.done << ", client done " << c.done;
    return {s.error, c.error};
  }

  /// Connects server_ and client_ over TLS (mutual, one mesh).
  void connect_tls() {
    ASSERT_NO_FATAL_FAILURE(connect());
    ASSERT_NO_FATAL_FAILURE(start_tls(mesh(), mesh()));
    auto [s, c] = handshake();
    ASSERT_FALSE(s) << "server handshake: " << s.message();
    ASSERT_FALSE(c) << "client handshake: " << c.message();
  }
  /// connect_tls() or connect() (plain).
  void connect_as(bool tls) {
    if (tls)
      ASSERT_NO_FATAL_FAILURE(connect_tls());
    else
      ASSERT_NO_FATAL_FAILURE(connect());
  }

  /// Writes `data` on `s` to its end; returns how it completed.
  outcome write_all(stream& s, const std::string& data) {
    outcome o;
    s.async_write(asio::buffer(data), record(o));
    EXPECT_TRUE(run_until(io_, [&] { return o.done; })) << "write hangs";
    return o;
  }

  /// Reads from `s` until `n` bytes or an error; returns the reader.
  std::unique_ptr<reader> read_n(stream& s, std::size_t n) {
    auto r = std::make_unique<reader>(s, n);
    r->start();
    EXPECT_TRUE(run_until(io_, [&] { return r->done; })) << "read hangs";
    return r;
  }

  /// Reads from `s` until an error (the end of the stream); returns the reader.
  std::unique_ptr<reader> read_to_end(stream& s) {
    auto r = std::make_unique<reader>(s);
    r->start();
    EXPECT_TRUE(run_until(io_, [&] { return r->done; })) << "read hangs";
    return r;
  }

  asio::io_context io_;
  tcp::acceptor acceptor_{io_, tcp::endpoint{asio::ip::address_v4::loopback(), 0}};
  std::unique_ptr<stream> server_;
  std::unique_ptr<stream> client_;
};

TEST_F(net_stream, tls_echo) {
  ASSERT_NO_FATAL_FAILURE(connect_tls());
  ASSERT_TRUE(server_->is_tls());
  ASSERT_TRUE(client_->is_tls());
  const std::string hello = "hello over tls, through the stream's own BIO";

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

TEST_F(net_stream, tls_pipelined_records_all_arrive) {
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
  // recv take them together, which is the read-ahead case.
  const std::size_t on_wire = all.size() + messages.size() * (5 + 1 + 16);
  EXPECT_TRUE(run_until(io_, [&] { return server_->socket().available() >= on_wire; }));

  reader r(*server_, all.size());
  r.start();
  ASSERT_TRUE(run_until(io_, [&] { return r.reads >= 1; }));
  if (r.data.size() < all.size()) { // the other records came in the same recv
    EXPECT_EQ(SSL_has_pending(server_->session()), 1) << "read-ahead is off";
  }
  ASSERT_TRUE(run_until(io_, [&] { return r.done; }));
  ASSERT_FALSE(r.error) << r.error.message();
  EXPECT_EQ(r.data, all);
}

TEST_F(net_stream, tls_large_write_waits_for_the_reader_and_arrives_intact) {
  ASSERT_NO_FATAL_FAILURE(connect_tls());
  // Small fixed buffers (no autotuning) so that 8 MiB cannot fit in the kernel: the write
  // must meet EAGAIN, i.e. OpenSSL's WANT_WRITE, and resume from where it stopped.
  client_->socket().set_option(asio::socket_base::send_buffer_size(64 * 1024));
  server_->socket().set_option(asio::socket_base::receive_buffer_size(64 * 1024));
  const std::string big = pattern(8 * 1024 * 1024);

  outcome w;
  client_->async_write(asio::buffer(big), record(w));
  run_ready(io_);
  ASSERT_FALSE(w.done) << "8 MiB fit in the socket buffers; the WANT_WRITE path was not taken";

  reader r(*server_, big.size());
  r.start();
  ASSERT_TRUE(run_until(
      io_, [&] { return w.done && r.done; }, 60s))
      << "write done " << w.done << ", read " << r.data.size() << " bytes";
  EXPECT_FALSE(w.error) << w.error.message();
  EXPECT_EQ(w.bytes, big.size());
  EXPECT_FALSE(r.error) << r.error.message();
  EXPECT_EQ(r.data.size(), big.size());
  EXPECT_EQ(fnv1a(r.data), fnv1a(big));
  EXPECT_TRUE(r.data == big); // not EXPECT_EQ: it would print 8 MiB
}

TEST_F(net_stream, tls_full_duplex_large_transfers_in_both_directions) {
  // What the data plane does: each side reads while its own write waits for the socket, so a
  // read's wait and a write's wait are pending on one session at the same time.
  ASSERT_NO_FATAL_FAILURE(connect_tls());
  for (auto* s : {server_.get(), client_.get()}) {
    s->socket().set_option(asio::socket_base::send_buffer_size(64 * 1024));
    s->socket().set_option(asio::socket_base::receive_buffer_size(64 * 1024));
  }
  const std::string up = pattern(4 * 1024 * 1024);
  const std::string down = up.substr(1) + up.front(); // another byte order than `up`

  reader at_server(*server_, up.size());
  reader at_client(*client_, down.size());
  at_server.start();
  at_client.start();
  outcome w_up;
  outcome w_down;
  client_->async_write(asio::buffer(up), record(w_up));
  server_->async_write(asio::buffer(down), record(w_down));
  ASSERT_TRUE(run_until(
      io_, [&] { return w_up.done && w_down.done && at_server.done && at_client.done; }, 60s))
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

TEST_F(net_stream, tls_half_close_ends_the_read_side_and_the_peer_can_still_answer) {
  ASSERT_NO_FATAL_FAILURE(connect_tls());
  auto w = write_all(*client_, "abc");
  ASSERT_FALSE(w.error) << w.error.message();
  client_->shutdown_send();

  auto got = read_to_end(*server_);
  EXPECT_EQ(got->data, "abc");
  EXPECT_TRUE(is_eof(got->error)) << got->error.message();

  // A FIN without close_notify must leave the server's session writable.
  auto answer = write_all(*server_, "xyz");
  EXPECT_FALSE(answer.error) << answer.error.message();
  EXPECT_EQ(answer.bytes, 3U);
  server_->shutdown_send();

  auto back = read_to_end(*client_);
  EXPECT_EQ(back->data, "xyz");
  EXPECT_TRUE(is_eof(back->error)) << back->error.message();
}

TEST_F(net_stream, tls_immediate_completions_are_posted_not_called_inline) {
  ASSERT_NO_FATAL_FAILURE(connect_tls());
  const std::string record_100 = pattern(100);
  ASSERT_FALSE(write_all(*server_, record_100).error);

  char first = 0;
  outcome r1;
  client_->async_read_some(asio::buffer(&first, 1), record(r1));
  ASSERT_TRUE(run_until(io_, [&] { return r1.done; }));
  ASSERT_FALSE(r1.error) << r1.error.message();
  ASSERT_EQ(r1.bytes, 1U);
  // The rest of the record is decrypted and waits in OpenSSL: the next read completes at once.
  ASSERT_EQ(SSL_pending(client_->session()), 99);

  std::string rest(99, '\0');
  bool returned = false;
  bool inline_call = false;
  outcome r2;
  client_->async_read_some(asio::buffer(rest), [&](const asio::error_code& ec, std::size_t n) {
    inline_call = !returned;
    record(r2)(ec, n);
  });
  returned = true;
  ASSERT_TRUE(run_until(io_, [&] { return r2.done; }));
  EXPECT_FALSE(inline_call) << "read handler called from inside async_read_some";
  EXPECT_FALSE(r2.error) << r2.error.message();
  ASSERT_EQ(r2.bytes, 99U);
  EXPECT_EQ(first + rest, record_100);

  // A small write is taken by the socket at once: posted too.
  returned = false;
  inline_call = false;
  outcome w;
  client_->async_write(asio::buffer(record_100), [&](const asio::error_code& ec, std::size_t n) {
    inline_call = !returned;
    record(w)(ec, n);
  });
  returned = true;
  ASSERT_TRUE(run_until(io_, [&] { return w.done; }));
  EXPECT_FALSE(inline_call) << "write handler called from inside async_write";
  EXPECT_FALSE(w.error) << w.error.message();
}

TEST_F(net_stream, tls_peer_reset_fails_the_writer_without_sigpipe) {
  // A SIGPIPE must kill this process if the stream ever writes without MSG_NOSIGNAL, so the
  // default action is restored in case the test runner handed it down ignored or blocked.
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
  asio::error_code error;
  bool done = false;
  std::function<void()> next = [&] {
    client_->async_write(asio::buffer(chunk), [&](const asio::error_code& ec, std::size_t) {
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
  ASSERT_TRUE(run_until(io_, [&] { return writes >= 3 || done; }));
  ASSERT_FALSE(done) << "writes failed before the reset: " << error.message();

  // Linger 0: close() sends a RST, not a FIN.
  server_->socket().set_option(asio::socket_base::linger(true, 0));
  server_->socket().close();

  ASSERT_TRUE(run_until(io_, [&] { return done; })) << "writer never saw the reset";
  EXPECT_TRUE(error == asio::error::broken_pipe || error == asio::error::connection_reset)
      << "after " << writes << " writes: " << error.message();

  // The first send after a RST reports the reset (no signal); the next one is the EPIPE that
  // would raise SIGPIPE without MSG_NOSIGNAL. Same bytes: OpenSSL retries its pending record.
  auto again = write_all(*client_, chunk);
  EXPECT_EQ(again.error, asio::error::broken_pipe) << again.error.message();
}

TEST_F(net_stream, tls_operations_after_close_fail_and_touch_no_other_descriptor) {
  ASSERT_NO_FATAL_FAILURE(connect_tls());
  // A read waiting for data when the stream closes is aborted.
  char c = 0;
  outcome pending;
  client_->async_read_some(asio::buffer(&c, 1), record(pending));
  run_ready(io_);
  ASSERT_FALSE(pending.done);
  const auto old_fd = client_->socket().native_handle();
  client_->close();
  EXPECT_FALSE(client_->is_open());
  ASSERT_TRUE(run_until(io_, [&] { return pending.done; }));
  EXPECT_EQ(pending.error, asio::error::operation_aborted) << pending.error.message();

  // A new connection, whose connecting socket usually gets the closed descriptor's number (the
  // kernel gives out the lowest free one): what the closed stream does must not reach it.
  // (Not a structured binding: clang cannot capture one in the lambda below.)
  auto other = connect_pair();
  auto& other_server = other.first;
  auto& other_client = other.second;
  ASSERT_TRUE(other_server && other_client);
  const bool reused = other_client->socket().native_handle() == old_fd;
  RecordProperty("descriptor_reused", reused ? "yes" : "no");
  const std::string ping = "ping";
  ASSERT_FALSE(write_all(*other_server, ping).error);
  ASSERT_TRUE(run_until(io_, [&] { return other_client->socket().available() == ping.size(); }));

  bool returned = false;
  bool inline_call = false;
  outcome r;
  client_->async_read_some(asio::buffer(&c, 1), [&](const asio::error_code& ec, std::size_t n) {
    inline_call = !returned;
    record(r)(ec, n);
  });
  returned = true;
  ASSERT_TRUE(run_until(io_, [&] { return r.done; }));
  EXPECT_FALSE(inline_call);
  EXPECT_TRUE(r.error) << "read after close succeeded";
  EXPECT_EQ(r.bytes, 0U);

  const std::string junk = "junk";
  outcome w;
  client_->async_write(asio::buffer(junk), record(w));
  ASSERT_TRUE(run_until(io_, [&] { return w.done; }));
  EXPECT_TRUE(w.error) << "write after close succeeded";
  EXPECT_EQ(w.bytes, 0U);

  run_ready(io_);
  EXPECT_EQ(other_client->socket().available(), ping.size())
      << "the closed stream read another connection's bytes (descriptor reused: " << reused << ")";
  EXPECT_EQ(other_server->socket().available(), 0U)
      << "the closed stream wrote on another connection (descriptor reused: " << reused << ")";
}

TEST_F(net_stream, plain_operations_after_close_fail) {
  ASSERT_NO_FATAL_FAILURE(connect());
  client_->close();
  char c = 0;
  outcome r;
  client_->async_read_some(asio::buffer(&c, 1), record(r));
  outcome w;
  client_->async_write(asio::buffer("x", 1), record(w));
  ASSERT_TRUE(run_until(io_, [&] { return r.done && w.done; }));
  EXPECT_TRUE(r.error);
  EXPECT_TRUE(w.error);
}

TEST_F(net_stream, tls_handshake_with_an_untrusted_server_fails_on_both_sides) {
  ASSERT_NO_FATAL_FAILURE(connect());
  // The client trusts another mesh's root: it refuses the server's chain and says so with an
  // alert, which fails the server's handshake too.
  ASSERT_NO_FATAL_FAILURE(start_tls(mesh(), other_mesh()));
  auto [s, c] = handshake();
  EXPECT_TRUE(c) << "client accepted a server of another mesh";
  EXPECT_TRUE(s) << "server handshake succeeded although the client refused it";
  EXPECT_TRUE(identity::tls_context::refusal_of(client_->session()))
      << "the client failed for another reason than the server's chain: " << c.message();
}

TEST_F(net_stream, plain_echo_and_half_close) {
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
  EXPECT_TRUE(is_eof(rest->error)) << rest->error.message();

  auto echo = write_all(*server_, got->data);
  EXPECT_FALSE(echo.error) << echo.error.message();
  server_->shutdown_send();
  auto back = read_to_end(*client_);
  EXPECT_EQ(back->data, hello);
  EXPECT_TRUE(is_eof(back->error)) << back->error.message();
}

} // namespace
} // namespace starling::net
