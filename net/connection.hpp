// One TCP connection, plain or TLS, on the data plane's own loop (net/loop.hpp, decision
// 0021): net::stream's counterpart without Asio. Loop thread only.
//
// TLS runs OpenSSL on the socket through the BIO of net/tls_core.hpp. An operation tries
// OpenSSL first; when OpenSSL wants input, the connection receives from the socket into the
// input buffer (a receive on the loop: on io_uring the kernel completes it when bytes come),
// and when the socket is full, it polls for writability; then it tries again.
//
// Completion handlers are called as void(std::error_code, std::size_t) (the handshake's and
// connect's as void(std::error_code)), on the loop's thread, never from inside the call that
// starts the operation: one that completes at once runs on the loop's next turn (defer). The
// one exception is asked for by the caller: a write with completion::inline_when_done whose
// bytes the socket takes at once calls its handler inside write (below).
//
// Errors: the system's (std::system_category: ECANCELED for an operation that close() ended,
// EBADF for one started after it, ECONNRESET...), end of stream and truncation
// (net::errc, is_end()), OpenSSL's (net::tls_category()).
//
// The connection must outlive its pending operations (the callers' handlers keep their
// owner alive).
#pragma once

#include <cstddef>
#include <functional>
#include <system_error>

#include <sys/socket.h>

#include "net/loop.hpp"
#include "net/tls_core.hpp"

namespace starling::net {

/// The connection's own errors (category net::category()).
enum class errc {
  /// The peer ended its sending side: a TCP FIN; with TLS, a close_notify or a FIN without
  /// one (which is how a peer half-closes).
  eof = 1,
  /// TLS: the stream ended inside a record or a handshake.
  truncated,
  /// TLS: OpenSSL asked for something the connection does not do (an x509 lookup...).
  unexpected,
};
const std::error_category& category();
/// OpenSSL's errors: the value is the ERR code (ERR_peek_last_error), the message OpenSSL's.
const std::error_category& tls_category();
std::error_code make_error_code(errc e);

/// True for the errors that mean "the peer closed its sending side" (errc::eof and
/// errc::truncated).
bool is_end(const std::error_code& ec);
/// True for the error of an operation that close() ended.
bool is_aborted(const std::error_code& ec);

class connection : public tls_core {
public:
  /// Room inside for a caller's handler wrapped with a read's or write's state.
  using done_handler = callback<void(std::error_code), 96>;
  /// Room inside for a handler that keeps its owner (a shared_ptr) and a little more.
  using io_handler = callback<void(std::error_code, std::size_t), 48>;

  /// A connection on `fd` (an accepted socket, or a new one to connect()), which it owns
  /// from now on and closes through the loop.
  connection(loop& l, int fd) : loop_(l), fd_(fd) {}
  ~connection() override;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// A new TCP socket for `family` (AF_INET, AF_INET6), non-blocking; -errno on failure.
  static int new_socket(int family);

  [[nodiscard]] loop& io() const { return loop_; }
  /// The descriptor; -1 once closed.
  [[nodiscard]] int fd() const { return fd_; }
  [[nodiscard]] bool is_open() const { return fd_ >= 0; }

  /// Connects to `addr`.
  void connect(const sockaddr* addr, socklen_t len, done_handler handler);

  /// Starts TLS on the connected socket with `session`, which the connection owns and frees
  /// from now on. False (the session freed, the connection stays plain) when OpenSSL cannot
  /// make the BIO.
  using tls_core::start_tls;
  /// Runs the TLS handshake (start_tls first) as the server or the client.
  void handshake(bool server, done_handler handler);

  /// Reads what has arrived (decrypted with TLS) into `buf`, at least one byte; the end of
  /// the stream is errc::eof.
  void read_some(void* buf, std::size_t len, io_handler handler);

  /// How a write that the socket takes at once completes.
  enum class completion : unsigned char {
    /// Its handler runs on the loop's next turn, as for every other operation.
    deferred,
    /// Its handler runs inside write(), before it returns: for a caller whose write is its
    /// last step (nothing after it that the handler could invalidate) and that bounds how
    /// deep such handlers may nest. Errors and waits still complete later, and so does a
    /// plain write on a loop that sends later (loop::sends_later: io_uring queues it).
    inline_when_done,
  };
  /// Writes all `len` bytes of `buf` (valid until completion). With TLS, completion means
  /// every record has been handed to the socket, so a close() after completion cannot cut
  /// the answer short: the kernel sends the queued bytes before the FIN.
  void write(const void* buf, std::size_t len, io_handler handler,
             completion how = completion::deferred);

  /// For a caller that moves the bytes itself (splice): waits until the socket is readable
  /// or writable. Call right after the socket said EAGAIN (loop::poll).
  void wait(loop::ready what, done_handler handler);

  /// Half-close: no more bytes from us. With TLS no close_notify is sent: the peer's read
  /// ends at the FIN, which is_end() takes as end of stream, and the peer can still write.
  void shutdown_send();
  /// Closes the TCP connection at once (no close_notify is sent or awaited); pending
  /// operations complete with ECANCELED, later ones with EBADF.
  void close();
  /// As close(), with a TCP reset (SO_LINGER 0): what the socket still holds to send is
  /// dropped, not kept by the kernel for a peer that reads nothing.
  void reset();

private:
  [[nodiscard]] int descriptor() const override { return fd_; }

  /// Runs `h(args...)` now when `now` (inside a completion already), else on the next turn.
  template <class Handler, class... Args> void complete(Handler h, bool now, Args... args) {
    if (now)
      h(args...);
    else
      loop_.defer([h = std::move(h), args...]() mutable { h(args...); });
  }
  /// The error of an OpenSSL call that returned `ret` <= 0, or none with `w` set to what it
  /// waits for.
  std::error_code classify_tls(int ret, want& w);
  /// Waits until OpenSSL can go on: receives into the input buffer for want::read (an end
  /// of stream is kept for the BIO to report), polls for writability for want::write. A
  /// second wait for input while the first receives fails with EBUSY (the loop takes one
  /// input operation per descriptor): only a write that wants input would ask, which TLS
  /// 1.3 without renegotiation (identity/tls.cpp) never does.
  void wait_for(want w, done_handler then);

  void handshake_step(done_handler handler, bool now);
  void read_step(char* buf, std::size_t len, io_handler handler, bool now);
  /// `at_once`: a write done within this call completes inline (completion::inline_when_done).
  void write_step(const char* buf, std::size_t len, std::size_t done, io_handler handler, bool now,
                  bool at_once);

  loop& loop_;
  int fd_;
};

} // namespace starling::net

template <> struct std::is_error_code_enum<starling::net::errc> : std::true_type {};
