// One TCP connection, plain or TLS, for the Asio adapters (the data plane, proxy/dataplane.cpp,
// and the gossip transport's TCP exchanges, gossip/transport.cpp). I/O thread only: every
// operation on a stream runs on the thread of its socket's io_context, and that io_context is
// run by that one thread (both users have one thread per io_context).
//
// TLS runs OpenSSL directly on the socket, not through asio::ssl::stream: Asio's SSL stream
// drives OpenSSL over a BIO pair, so every byte was copied socket -> Asio's input buffer -> the
// pair -> OpenSSL (and back the same way on writes), and every operation cleared OpenSSL's error
// queue several times. Here the session's BIO (net/stream.cpp) writes to the socket's
// descriptor itself (send with MSG_NOSIGNAL) and reads from the stream's own input buffer,
// which Asio's async_read_some fills (read-ahead on: OpenSSL takes all that arrived at once,
// several records if there are). An operation tries OpenSSL first; when OpenSSL wants input,
// the stream reads the socket into that buffer, and when the socket is full, waits for it to
// be writable; then it tries again. Reads go through Asio's read rather than a wait for
// readability because Asio re-arms epoll (an epoll_ctl system call) for every wait, while a
// read first tries recv and costs no epoll_ctl: one system call less per request and hop.
//
// Completion handlers are called as void(asio::error_code, std::size_t) (the handshake's as
// void(asio::error_code)), never from inside the call that starts the operation: an operation
// that completes at once posts its handler to the socket's executor, as Asio's own do. The
// one exception is asked for by the caller: a write with completion::inline_when_done whose
// bytes the socket takes at once calls its handler inside async_write (below).
// The stream must outlive its pending operations (the callers' handlers keep their owner alive).
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/ssl/error.hpp>
#include <asio/write.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace starling::net {

/// True for the errors that mean "the peer closed its sending side": a TCP FIN on a plain
/// stream; on TLS, a close_notify or a FIN without one (which is how the peer half-closes:
/// shutdown_send() sends no close_notify), both given as asio::error::eof, or an EOF inside
/// a record or a handshake (asio::ssl::error::stream_truncated).
bool is_eof(const asio::error_code& ec);

class stream {
public:
  using tcp = asio::ip::tcp;

  /// An accepted connection.
  explicit stream(tcp::socket socket) : socket_(std::move(socket)) {}
  /// A connection to be opened on `io`.
  explicit stream(asio::io_context& io) : socket_(io) {}
  ~stream();
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;

  /// The TCP socket (TLS or not).
  tcp::socket& socket() { return socket_; }

  /// Starts TLS on the connected socket with `session` (made for a client or a server, its
  /// verification set up), which the stream owns and frees from now on. Returns false (the
  /// session freed, the stream stays plain) when OpenSSL cannot make the socket's BIO.
  bool start_tls(SSL* session);
  /// The TLS session; null for plain TCP.
  [[nodiscard]] SSL* session() const { return ssl_; }
  [[nodiscard]] bool is_tls() const { return ssl_ != nullptr; }

  /// Runs the TLS handshake (start_tls first) as the server or the client.
  template <class Handler> void async_handshake(bool server, Handler&& handler) {
    if (server)
      SSL_set_accept_state(ssl_);
    else
      SSL_set_connect_state(ssl_);
    handshake_step(std::forward<Handler>(handler), false);
  }

  /// Reads what has arrived (decrypted with TLS) into `buf`, at least one byte.
  template <class Handler> void async_read_some(asio::mutable_buffer buf, Handler&& handler) {
    if (!ssl_)
      socket_.async_read_some(buf, std::forward<Handler>(handler));
    else
      read_step(buf, std::forward<Handler>(handler), false);
  }

  /// How a write that the socket takes at once completes.
  enum class completion : unsigned char {
    /// Its handler is posted to the socket's executor, as for every other operation.
    posted,
    /// Its handler runs inside async_write, before it returns. A posted handler costs a trip
    /// through the I/O loop: a post, and a non-blocking epoll_wait before the handler runs,
    /// twice per request and hop (docs/bench-proxy.md, Run F). For a caller whose
    /// async_write is its last step (nothing after it that the handler could invalidate) and
    /// that bounds how deep such handlers may nest. Errors and waits are still posted.
    inline_when_done,
  };

  /// Writes all of `buf`. With TLS, completion means every record has been handed to the
  /// socket, so a close() after completion cannot cut the answer short: the kernel sends the
  /// queued bytes before the FIN.
  template <class Handler>
  void async_write(asio::const_buffer buf, Handler&& handler, completion how = completion::posted) {
    const bool at_once = how == completion::inline_when_done;
    if (ssl_) {
      write_step(buf, 0, std::forward<Handler>(handler), false, at_once);
      return;
    }
    if (!at_once) {
      asio::async_write(socket_, buf, std::forward<Handler>(handler));
      return;
    }
    const std::size_t done = send_now(buf);
    if (done == buf.size()) {
      handler(asio::error_code{}, done);
      return;
    }
    // The rest, or the error (which Asio's write meets again and reports), as usual.
    asio::async_write(socket_, buf + done,
                      [done, h = std::forward<Handler>(handler)](
                          const asio::error_code& ec, std::size_t n) mutable { h(ec, done + n); });
  }

  /// Registers the socket with its io_context anew, for input only. Asio arms a descriptor
  /// for output the first time a write must wait (a connect is such a wait) and keeps it
  /// armed; edge-triggered, epoll then reports each ACK that frees send space, which wakes
  /// the I/O thread for nothing once per request on a pooled upstream connection. Call with
  /// no operation pending, e.g. right after the connect: pending ones would be cancelled. On
  /// a failure the socket is closed (later operations fail with bad_descriptor).
  void rearm_for_input();

  /// Half-close: no more bytes from us. With TLS no close_notify is sent: the peer's read
  /// ends at the FIN, which is_eof() takes as end of stream, and the peer can still write.
  void shutdown_send();
  /// Closes the TCP connection at once (no close_notify is sent or awaited); pending
  /// operations complete with operation_aborted.
  void close();
  [[nodiscard]] bool is_open() const { return socket_.is_open(); }

private:
  /// What one OpenSSL call asks for next.
  enum class want : unsigned char { nothing, read, write };
  /// Before each OpenSSL call: clears the BIO's retry flags, so that classify() reads what
  /// this call did, and whether the socket is still open.
  [[nodiscard]] bool prepare() {
    BIO_clear_retry_flags(bio_);
    return socket_.is_open();
  }
  /// After an OpenSSL call returned `ret` <= 0: whether it waits for input or for the socket
  /// (`w`), or failed (the error returned). The wait is read from the BIO's retry flags,
  /// which only this call set (prepare()), not from SSL_get_error, which would first need
  /// the thread's error queue cleared before every call (ERR_clear_error: 1.5% of the proxy's
  /// CPU). On a failure the queue is read and emptied.
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
          in_begin_ = 0;
          in_end_ = ec ? 0 : n;
          direct_ = in_end_ == input_capacity; // more is likely waiting in the socket
          if (ec == asio::error::eof) {
            in_eof_ = true;
            h(asio::error_code{});
            return;
          }
          h(ec);
        });
  }
  /// The input buffer, allocated at the first read.
  char* input();

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
    const int r = SSL_do_handshake(ssl_);
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
    const int r = buf.size() == 0 ? 1 : SSL_read_ex(ssl_, buf.data(), buf.size(), &n);
    if (r == 1) {
      // More whole records already read from the socket: take them too (one record per
      // SSL_read_ex; a bulk stream fills a large buffer in one operation).
      std::size_t more = 0;
      while (n < buf.size() && SSL_has_pending(ssl_) == 1 && prepare() &&
             SSL_read_ex(ssl_, static_cast<char*>(buf.data()) + n, buf.size() - n, &more) == 1)
        n += more;
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

  /// Sends what the plain socket takes now without blocking; 0 on an error or a full socket.
  std::size_t send_now(asio::const_buffer buf);

  /// `at_once`: a write done within this call completes inline (completion::inline_when_done).
  template <class Handler>
  void write_step(asio::const_buffer buf, std::size_t done, Handler&& handler, bool deferred,
                  bool at_once = false) {
    while (done < buf.size()) {
      std::size_t n = 0;
      if (!prepare()) {
        complete(std::forward<Handler>(handler), deferred,
                 asio::error_code{asio::error::bad_descriptor}, done);
        return;
      }
      const int r =
          SSL_write_ex(ssl_, static_cast<const char*>(buf.data()) + done, buf.size() - done, &n);
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
    complete(std::forward<Handler>(handler), deferred || at_once, asio::error_code{}, done);
  }

  // The session's BIO (stream.cpp): writes to this stream's socket descriptor, read at each
  // call (-1 once closed: a late call fails with EBADF, never touches a descriptor number
  // the kernel gave to another connection since); reads from the input buffer.
  static int bio_write(BIO* b, const char* data, std::size_t len, std::size_t* written);
  static int bio_read(BIO* b, char* data, std::size_t len, std::size_t* read);
  static long bio_ctrl(BIO* b, int cmd, long num, void* ptr);
  static int bio_create(BIO* b);
  static BIO_METHOD* bio_method();

  /// Bytes the input buffer holds: a whole TLS record with its header and tag, so that one
  /// read can complete a record OpenSSL waits for.
  static constexpr std::size_t input_capacity = 16 * 1024 + 512;

  tcp::socket socket_;
  SSL* ssl_ = nullptr;
  BIO* bio_ = nullptr; // owned by ssl_
  /// What the socket gave and OpenSSL has not taken yet: in_[in_begin_, in_end_).
  std::unique_ptr<char[]> in_;
  std::size_t in_begin_ = 0, in_end_ = 0;
  /// The socket's read side ended (given to OpenSSL once the buffer is empty).
  bool in_eof_ = false;
  /// A read into the input buffer is pending.
  bool filling_ = false;
  /// The BIO reads the socket itself while the buffer is empty (bio_read).
  bool direct_ = false;
  /// errno of the BIO's last failed recv or send (read by classify on SSL_ERROR_SYSCALL).
  int io_errno_ = 0;
};

} // namespace starling::net
