// The TLS half of a connection, shared by net::stream (on Asio: the gossip transport) and
// net::connection (on net::loop: the data plane). No Asio, no loop: the owner does the
// waiting, this holds the OpenSSL session and the BIO it runs on.
//
// The BIO writes to the socket's descriptor itself (send with MSG_NOSIGNAL, and MSG_MORE
// while the owner's write holds more records than the one being sent) and reads from
// an input buffer that the owner's own reads fill (read-ahead on: OpenSSL takes all that
// arrived at once, several records if there are). While a stream is in full flow (the last
// read filled the buffer), the BIO reads the socket straight into OpenSSL's buffer, one copy
// less per record, until the socket runs dry.
//
// An operation: prepare(), an OpenSSL call, and on a return <= 0 classify(), which says
// whether the call waits for input (the owner reads into input() and calls filled() or
// ended()), waits for the socket to be writable, or failed.
#pragma once

#include <cstddef>
#include <memory>

#include <openssl/ssl.h>

namespace starling::net {

class tls_core {
public:
  tls_core() = default;
  virtual ~tls_core();
  tls_core(const tls_core&) = delete;
  tls_core& operator=(const tls_core&) = delete;

  /// What one OpenSSL call asks for next.
  enum class want : unsigned char { nothing, read, write };
  /// How an OpenSSL call failed.
  enum class failure : unsigned char {
    none,
    /// A close_notify, or the socket's end of stream (a FIN without close_notify is how
    /// the peer half-closes).
    eof,
    /// An end of stream inside a record or a handshake.
    truncated,
    /// A system call failed: `code` is its errno.
    system,
    /// OpenSSL failed: `code` is its error (ERR_peek_last_error).
    ssl,
    /// A want the BIO did not ask for (x509 lookup, async job): not used here.
    other,
  };
  struct outcome {
    want next = want::nothing;
    failure error = failure::none;
    unsigned long code = 0;
  };

  /// Starts TLS with `session` (made for a client or a server, its verification set up),
  /// which this owns and frees from now on. False (the session freed) when OpenSSL cannot
  /// make the BIO.
  bool start_tls(SSL* session);
  /// The TLS session; null for plain TCP.
  [[nodiscard]] SSL* session() const { return ssl_; }
  [[nodiscard]] bool is_tls() const { return ssl_ != nullptr; }

protected:
  /// The socket's descriptor, read at each BIO call: -1 once closed, so a late call fails
  /// with EBADF and never touches a descriptor number the kernel gave to another connection.
  [[nodiscard]] virtual int descriptor() const = 0;

  /// Before each OpenSSL call: clears the BIO's retry flags and last errno, so that
  /// classify() reads what this call did (an EAGAIN of an earlier send must not turn a
  /// later end of stream into an error). False when the socket is closed.
  [[nodiscard]] bool prepare() {
    BIO_clear_retry_flags(bio_);
    io_errno_ = 0;
    return descriptor() >= 0;
  }
  /// After an OpenSSL call returned `ret` <= 0. The wait is read from the BIO's retry flags,
  /// which only this call set (prepare()), not from SSL_get_error, which would first need
  /// the thread's error queue cleared before every call (ERR_clear_error: 1.5% of the
  /// proxy's CPU). On a failure the queue is read and emptied.
  outcome classify(int ret);

  /// Bytes the input buffer holds: a whole TLS record with its header and tag, so that one
  /// read can complete a record OpenSSL waits for.
  static constexpr std::size_t input_capacity = 16 * 1024 + 512;
  /// The input buffer, allocated at the first read.
  char* input();
  /// The owner's read into input() gave `n` bytes (0 after an error).
  void filled(std::size_t n) {
    in_begin_ = 0;
    in_end_ = n;
    direct_ = n == input_capacity; // more is likely waiting in the socket
  }
  /// The socket's read side ended (given to OpenSSL once the buffer is empty).
  void ended() {
    filled(0);
    in_eof_ = true;
  }

  /// Reads all whole records OpenSSL holds already into `buf` after the `n` bytes the first
  /// SSL_read_ex gave (one record per call; a bulk stream fills a large buffer in one
  /// operation). Returns the new total.
  std::size_t read_pending(char* buf, std::size_t size, std::size_t n);

  /// A read into the input buffer is pending (the owner's flag).
  bool filling_ = false;

  /// Plain bytes of the largest TLS record (RFC 8446 5.1); OpenSSL's default fragment.
  static constexpr std::size_t max_record_plain = 16 * 1024;
  /// The next OpenSSL call writes from a buffer that holds more than one record: its sends
  /// carry MSG_MORE, so that the kernel sends the records in one segment when the last,
  /// sent without it, arrives (one transmit and one wake-up of the peer instead of one per
  /// record; HAProxy does the same). The owner sets it around each SSL_write_ex and clears
  /// it after; the kernel also pushes on its own when the socket's buffer is full.
  bool more_ = false;

private:
  static int bio_write(BIO* b, const char* data, std::size_t len, std::size_t* written);
  static int bio_read(BIO* b, char* data, std::size_t len, std::size_t* read);
  static long bio_ctrl(BIO* b, int cmd, long num, void* ptr);
  static int bio_create(BIO* b);
  static BIO_METHOD* bio_method();

  SSL* ssl_ = nullptr;
  BIO* bio_ = nullptr; // owned by ssl_
  /// What the socket gave and OpenSSL has not taken yet: in_[in_begin_, in_end_).
  std::unique_ptr<char[]> in_;
  std::size_t in_begin_ = 0, in_end_ = 0;
  bool in_eof_ = false;
  /// The BIO reads the socket itself while the buffer is empty (bio_read).
  bool direct_ = false;
  /// errno of the BIO's last failed recv or send (read by classify on SSL_ERROR_SYSCALL).
  int io_errno_ = 0;
};

} // namespace starling::net
