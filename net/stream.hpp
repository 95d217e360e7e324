// One TCP connection, plain or TLS, for the Asio adapters (the gossip transport's TCP
// exchanges, gossip/transport.cpp; the data plane has its own, net/connection.hpp). I/O
// thread only: every operation on a stream runs on the thread of its socket's io_context,
// and that io_context is run by that one thread.
//
// TLS runs OpenSSL directly on the socket, not through asio::ssl::stream: Asio's SSL stream
// drives OpenSSL over a BIO pair, so every byte was copied socket -> Asio's input buffer -> the
// pair -> OpenSSL (and back the same way on writes), and every operation cleared OpenSSL's error
// queue several times. Here the session's BIO (net/tls_core.hpp) writes to the socket's
// descriptor itself and reads from the stream's own input buffer, which Asio's
// async_read_some fills. An operation tries OpenSSL first; when OpenSSL wants input,
// the stream reads the socket into that buffer, and when the socket is full, waits for it to
// be writable; then it tries again. Reads go through Asio's read rather than a wait for
// readability because Asio re-arms epoll (an epoll_ctl system call) for every wait, while a
// read first tries recv and costs no epoll_ctl: one system call less per exchange.
//
// Completion handlers are called as void(asio::error_code, std::size_t) (the handshake's as
// void(asio::error_code)), never from inside the call that starts the operation: an operation
// that completes at once posts its handler to the socket's executor, as Asio's own do.
// The stream must outlive its pending operations (the callers' handlers keep their owner alive).
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/ssl/error.hpp>
#include <asio/write.hpp>
#include <openssl/ssl.h>

#include "net/tls_core.hpp"

namespace starling::net {

/// True for the errors that mean "the peer closed its sending side": a TCP FIN on a plain
/// stream; on TLS, a close_notify or a FIN without one (which is how the peer half-closes:
/// shutdown_send() sends no close_notify), both given as asio::error::eof, or an EOF inside
/// a record or a handshake (asio::ssl::error::stream_truncated).
bool is_eof(const asio::error_code& ec);

class stream : public tls_core {
public:
  using tcp = asio::ip::tcp;

  /// An accepted connection.
  explicit stream(tcp::socket socket) : socket_(std::move(socket)) {}
  /// A connection to be opened on `io`.
  explicit stream(asio::io_context& io) : socket_(io) {}
  ~stream() override = default;
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;

  /// The TCP socket (TLS or not).
  tcp::socket& socket() { return socket_; }

  /// Starts TLS on the connected socket with `session` (made for a client or a server, its
  /// verification set up), which the stream owns and frees from now on. Returns false (the
  /// session freed, the stream stays plain) when OpenSSL cannot make the socket's BIO.
  bool start_tls(SSL* session);

  /// Runs the TLS handshake (start_tls first) as the server or the client.
  template <class Handler> void async_handshake(bool server, Handler&& handler) {
    if (server)
      SSL_set_accept_state(session());
    else
      SSL_set_connect_state(session());
    handshake_step(std::forward<Handler>(handler), false);
  }

  /// Reads what has arrived (decrypted with TLS) into `buf`, at least one byte.
  template <class Handler> void async_read_some(asio::mutable_buffer buf, Handler&& handler) {
    if (!is_tls())
      socket_.async_read_some(buf, std::forward<Handler>(handler));
    else
      read_step(buf, std::forward<Handler>(handler), false);
  }

  /// Writes all of `buf`. With TLS, completion means every record has been handed to the
  /// socket, so a close() after completion cannot cut the answer short: the kernel sends the
  /// queued bytes before the FIN.
  template <class Handler> void async_write(asio::const_buffer buf, Handler&& handler) {
    if (is_tls())
      write_step(buf, 0, std::forward<Handler>(handler), false);
    else
      asio::async_write(socket_, buf, std::forward<Handler>(handler));
  }

  /// Half-close: no more bytes from us. With TLS no close_notify is sent: the peer's read
  /// ends at the FIN, which is_eof() takes as end of stream, and the peer can still write.
  void shutdown_send();
  /// Closes the TCP connection at once (no close_notify is sent or awaited); pending
  /// operations complete with operation_aborted.
  void close();
  [[nodiscard]] bool is_open() const { return socket_.is_open(); }

private:
  [[nodiscard]] int descriptor() const override {
    return socket_.is_open() ? const_cast<tcp::socket&>(socket_).native_handle() : -1;
  }
  /// After an OpenSSL call returned `ret` <= 0: whether it waits for input or for the socket
  /// (`w`), or failed (the error returned, as Asio's: eof, ssl::error::stream_truncated...).
  asio::error_code classify(int ret, want& w);

  /// Waits until OpenSSL can go on: for `want::read`, reads what arrives into the input
  /// buffer (an end of stream is kept for the BIO to report); for `want::write`, waits until
  /// the socket is writable. Then calls then(error). A second wait for input while the first
  /// reads (a write that wants input, which TLS 1.3 without renegotiation does not do) waits
  /// for readability instead and leaves the buffer to the first.
  template <class Handler> void wait(want w, Handler&& then) {
    if (w == want::write || filling_) {
      socket_.async_wait(w == want::write ? tcp::socket::wait_write : tcp::socket::wait_read,
                         std::forward<Handler>(then));
      return;
    }
    filling_ = true;
    socket_.async_read_some(
        asio::buffer(input(), input_capacity),
        [this, h = std::forward<Handler>(then)](const asio::error_code& ec, std::size_t n) mutable {
          filling_ = false;
          if (ec == asio::error::eof) {
            ended();
            h(asio::error_code{});
            return;
          }
          filled(ec ? 0 : n);
          h(ec);
        });
  }

  /// Calls `handler(args...)` now when `deferred` (we are inside a completion already), or
  /// posts it when the operation completed inside the call that started it.
  template <class Handler, class... Args>
  void complete(Handler&& handler, bool deferred, Args... args) {
    if (deferred)
      handler(args...);
    else
      asio::post(socket_.get_executor(),
                 [h = std::forward<Handler>(handler), args...]() mutable { h(args...); });
  }

  template <class Handler> void handshake_step(Handler&& handler, bool deferred) {
    if (!prepare()) {
      complete(std::forward<Handler>(handler), deferred,
               asio::error_code{asio::error::bad_descriptor});
      return;
    }
    const int r = SSL_do_handshake(session());
    if (r == 1) {
      complete(std::forward<Handler>(handler), deferred, asio::error_code{});
      return;
    }
    want w = want::nothing;
    auto ec = classify(r, w);
    if (w == want::nothing) {
      complete(std::forward<Handler>(handler), deferred, ec);
      return;
    }
    wait(w, [this, h = std::forward<Handler>(handler)](const asio::error_code& wec) mutable {
      if (wec)
        h(wec);
      else
        handshake_step(std::move(h), true);
    });
  }

  template <class Handler>
  void read_step(asio::mutable_buffer buf, Handler&& handler, bool deferred) {
    std::size_t n = 0;
    if (!prepare()) {
      complete(std::forward<Handler>(handler), deferred,
               asio::error_code{asio::error::bad_descriptor}, std::size_t{0});
      return;
    }
    const int r = buf.size() == 0 ? 1 : SSL_read_ex(session(), buf.data(), buf.size(), &n);
    if (r == 1) {
      n = read_pending(static_cast<char*>(buf.data()), buf.size(), n);
      complete(std::forward<Handler>(handler), deferred, asio::error_code{}, n);
      return;
    }
    want w = want::nothing;
    auto ec = classify(r, w);
    if (w == want::nothing) {
      complete(std::forward<Handler>(handler), deferred, ec, std::size_t{0});
      return;
    }
    wait(w, [this, buf, h = std::forward<Handler>(handler)](const asio::error_code& wec) mutable {
      if (wec)
        h(wec, std::size_t{0});
      else
        read_step(buf, std::move(h), true);
    });
  }

  template <class Handler>
  void write_step(asio::const_buffer buf, std::size_t done, Handler&& handler, bool deferred) {
    while (done < buf.size()) {
      std::size_t n = 0;
      if (!prepare()) {
        complete(std::forward<Handler>(handler), deferred,
                 asio::error_code{asio::error::bad_descriptor}, done);
        return;
      }
      const int r = SSL_write_ex(session(), static_cast<const char*>(buf.data()) + done,
                                 buf.size() - done, &n);
      if (r == 1) {
        done += n;
        continue;
      }
      want w = want::nothing;
      auto ec = classify(r, w);
      if (w == want::nothing) {
        complete(std::forward<Handler>(handler), deferred, ec, done);
        return;
      }
      wait(w, [this, buf, done,
               h = std::forward<Handler>(handler)](const asio::error_code& wec) mutable {
        if (wec)
          h(wec, done);
        else
          write_step(buf, done, std::move(h), true);
      });
      return;
    }
    complete(std::forward<Handler>(handler), deferred, asio::error_code{}, done);
  }

  tcp::socket socket_;
};

} // namespace starling::net
