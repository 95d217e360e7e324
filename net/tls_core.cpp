// net/tls_core.hpp: the TLS session's socket BIO and how an OpenSSL call ended.
#include "net/tls_core.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <openssl/err.h>
#include <sys/socket.h>

namespace starling::net {

tls_core::~tls_core() {
  if (ssl_)
    SSL_free(ssl_); // frees the BIO too (it does not close the descriptor: the owner does)
}

int tls_core::bio_create(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

int tls_core::bio_write(BIO* b, const char* data, std::size_t len, std::size_t* written) {
  auto* self = static_cast<tls_core*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  // MSG_NOSIGNAL: a peer that reset the connection gives EPIPE, not a SIGPIPE that would
  // stop the agent (OpenSSL's own socket BIO calls write()). MSG_DONTWAIT: the descriptor
  // may not be non-blocking yet.
  const auto n = ::send(self->descriptor(), data, len,
                        MSG_NOSIGNAL | MSG_DONTWAIT | (self->more_ ? MSG_MORE : 0));
  if (n >= 0) {
    *written = static_cast<std::size_t>(n);
    return 1;
  }
  self->io_errno_ = errno;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
    BIO_set_retry_write(b);
  return 0;
}

int tls_core::bio_read(BIO* b, char* data, std::size_t len, std::size_t* read) {
  auto* self = static_cast<tls_core*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (self->in_begin_ < self->in_end_) {
    const auto n = std::min(len, self->in_end_ - self->in_begin_);
    std::memcpy(data, self->in_.get() + self->in_begin_, n);
    self->in_begin_ += n;
    *read = n;
    return 1;
  }
  if (self->in_eof_) {
    // End of stream: OpenSSL asks BIO_CTRL_EOF to tell an EOF from an error.
    BIO_set_flags(b, BIO_FLAGS_IN_EOF);
    return 0;
  }
  if (self->direct_) {
    const auto n = ::recv(self->descriptor(), data, len, MSG_DONTWAIT);
    if (n > 0) {
      *read = static_cast<std::size_t>(n);
      return 1;
    }
    if (n == 0) {
      self->in_eof_ = true;
      BIO_set_flags(b, BIO_FLAGS_IN_EOF);
      return 0;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      self->io_errno_ = errno;
      return 0;
    }
    self->direct_ = false;
  }
  BIO_set_retry_read(b); // the owner reads the socket and calls OpenSSL again
  return 0;
}

char* tls_core::input() {
  if (!in_)
    in_ = std::make_unique_for_overwrite<char[]>(input_capacity);
  return in_.get();
}

long tls_core::bio_ctrl(BIO* b, int cmd, long /*num*/, void* /*ptr*/) {
  switch (cmd) {
  case BIO_CTRL_FLUSH: // every write went to the socket already
    return 1;
  case BIO_CTRL_EOF:
    return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
  default: // no kTLS, no datagram or push/pop controls
    return 0;
  }
}

BIO_METHOD* tls_core::bio_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "starling socket");
    if (m && (BIO_meth_set_write_ex(m, &tls_core::bio_write) != 1 ||
              BIO_meth_set_read_ex(m, &tls_core::bio_read) != 1 ||
              BIO_meth_set_ctrl(m, &tls_core::bio_ctrl) != 1 ||
              BIO_meth_set_create(m, &tls_core::bio_create) != 1)) {
      BIO_meth_free(m);
      m = nullptr;
    }
    return m;
  }();
  return method;
}

bool tls_core::start_tls(SSL* session) {
  BIO_METHOD* method = bio_method();
  BIO* bio = method ? BIO_new(method) : nullptr;
  if (!bio) {
    SSL_free(session);
    ERR_clear_error();
    return false;
  }
  BIO_set_data(bio, this);
  SSL_set_bio(session, bio, bio); // one reference, for both directions
  bio_ = bio;
  // Read-ahead: OpenSSL takes all the input buffer holds (several records at once) rather
  // than a record's header and then its body. Partial writes and a moving write
  // buffer: SSL_write_ex returns after each record the socket took, and a retry may come
  // with the same bytes at another address (the owner keeps its offset).
  SSL_set_read_ahead(session, 1);
  // Up to four full records per read into OpenSSL's buffer when a stream is in full flow
  // (bio_read's direct reads); a buffer is only touched as far as it is filled.
  SSL_set_default_read_buffer_len(session, 4 * input_capacity);
  // A FIN without close_notify ends the read side like a close_notify, and keeps the session
  // usable for writing: that is how a peer half-closes, and an unexpected EOF would
  // otherwise be a fatal error that also fails our writes. A truncated answer is still
  // caught by the layer above (HTTP framing, the gossip frame's length).
  SSL_set_options(session, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_set_mode(session, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  ssl_ = session;
  return true;
}

std::size_t tls_core::read_pending(char* buf, std::size_t size, std::size_t n) {
  std::size_t more = 0;
  while (n < size && SSL_has_pending(ssl_) == 1 && prepare() &&
         SSL_read_ex(ssl_, buf + n, size - n, &more) == 1)
    n += more;
  return n;
}

tls_core::outcome tls_core::classify(int ret) {
  outcome o;
  if (BIO_should_retry(bio_)) {
    if (BIO_should_read(bio_)) {
      o.next = want::read;
      return o;
    }
    if (BIO_should_write(bio_)) {
      o.next = want::write;
      return o;
    }
  }
  // A close_notify, or the socket's end of stream (SSL_OP_IGNORE_UNEXPECTED_EOF), first:
  // whatever another caller left in the thread's error queue cannot make it an error.
  if ((SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN) != 0) {
    ERR_clear_error();
    o.error = failure::eof;
    return o;
  }
  switch (SSL_get_error(ssl_, ret)) {
  case SSL_ERROR_ZERO_RETURN:
    o.error = failure::eof;
    break;
  case SSL_ERROR_SYSCALL:
    if (io_errno_ == 0) { // EOF inside a record or a handshake
      o.error = failure::truncated;
    } else {
      o.error = failure::system;
      o.code = static_cast<unsigned long>(io_errno_);
    }
    break;
  case SSL_ERROR_SSL: {
    const auto code = ERR_peek_last_error();
    if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
        ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      o.error = failure::truncated;
    } else {
      o.error = failure::ssl;
      o.code = code;
    }
    break;
  }
  default:
    o.error = failure::other;
    break;
  }
  ERR_clear_error();
  return o;
}

} // namespace starling::net
