// net/stream.hpp: the TLS session's socket BIO and the error mapping.
#include "net/stream.hpp"

#include <cerrno>

#include <sys/socket.h>

namespace starling::net {

bool is_eof(const asio::error_code& ec) {
  return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

stream::~stream() {
  if (ssl_)
    SSL_free(ssl_); // frees the BIO too (it does not close the descriptor: the socket does)
}

int stream::bio_create(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

int stream::bio_write(BIO* b, const char* data, std::size_t len, std::size_t* written) {
  auto* self = static_cast<stream*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  // MSG_NOSIGNAL: a peer that reset the connection gives EPIPE, not a SIGPIPE that would
  // stop the agent (OpenSSL's own socket BIO calls write()).
  const auto n = ::send(self->socket_.native_handle(), data, len, MSG_NOSIGNAL);
  if (n >= 0) {
    *written = static_cast<std::size_t>(n);
    return 1;
  }
  self->io_errno_ = errno;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
    BIO_set_retry_write(b);
  return 0;
}

int stream::bio_read(BIO* b, char* data, std::size_t len, std::size_t* read) {
  auto* self = static_cast<stream*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  const auto n = ::recv(self->socket_.native_handle(), data, len, 0);
  if (n > 0) {
    *read = static_cast<std::size_t>(n);
    return 1;
  }
  if (n == 0) {
    // End of stream: OpenSSL asks BIO_CTRL_EOF to tell an unexpected EOF from an error.
    BIO_set_flags(b, BIO_FLAGS_IN_EOF);
    self->io_errno_ = 0;
    return 0;
  }
  self->io_errno_ = errno;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
    BIO_set_retry_read(b);
  return 0;
}

long stream::bio_ctrl(BIO* b, int cmd, long /*num*/, void* /*ptr*/) {
  switch (cmd) {
  case BIO_CTRL_FLUSH: // every write went to the socket already
    return 1;
  case BIO_CTRL_EOF:
    return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
  default: // no kTLS, no datagram or push/pop controls
    return 0;
  }
}

BIO_METHOD* stream::bio_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "starling socket");
    if (m && (BIO_meth_set_write_ex(m, &stream::bio_write) != 1 ||
              BIO_meth_set_read_ex(m, &stream::bio_read) != 1 ||
              BIO_meth_set_ctrl(m, &stream::bio_ctrl) != 1 ||
              BIO_meth_set_create(m, &stream::bio_create) != 1)) {
      BIO_meth_free(m);
      m = nullptr;
    }
    return m;
  }();
  return method;
}

bool stream::start_tls(SSL* session) {
  BIO_METHOD* method = bio_method();
  BIO* bio = method ? BIO_new(method) : nullptr;
  if (!bio) {
    SSL_free(session);
    ERR_clear_error();
    return false;
  }
  BIO_set_data(bio, this);
  SSL_set_bio(session, bio, bio); // one reference, for both directions
  // Read-ahead: one recv takes what has arrived (up to OpenSSL's read buffer), several
  // records at once, instead of a header and then a body. Partial writes and a moving write
  // buffer: SSL_write_ex returns after each record the socket took, and a retry may come
  // with the same bytes at another address (write_step keeps its offset).
  SSL_set_read_ahead(session, 1);
  // A FIN without close_notify ends the read side like a close_notify, and keeps the session
  // usable for writing: that is how a peer half-closes (shutdown_send), and an unexpected
  // EOF would otherwise be a fatal error that also fails our writes. A truncated answer is
  // still caught by the layer above (HTTP framing, the gossip frame's length).
  SSL_set_options(session, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_set_mode(session, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  asio::error_code ignored;
  socket_.non_blocking(true, ignored);
  ssl_ = session;
  return true;
}

asio::error_code stream::classify(int ret, want& w) {
  w = want::nothing;
  switch (SSL_get_error(ssl_, ret)) {
  case SSL_ERROR_WANT_READ:
    w = want::read;
    return {};
  case SSL_ERROR_WANT_WRITE:
    w = want::write;
    return {};
  case SSL_ERROR_ZERO_RETURN: // close_notify, or a FIN (SSL_OP_IGNORE_UNEXPECTED_EOF)
    return asio::error::eof;
  case SSL_ERROR_SYSCALL: {
    ERR_clear_error();
    if (io_errno_ == 0) // EOF inside a record or a handshake
      return asio::ssl::error::stream_truncated;
    return {io_errno_, asio::error::get_system_category()};
  }
  case SSL_ERROR_SSL: {
    const auto code = ERR_peek_last_error();
    ERR_clear_error();
    if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
        ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
      return asio::ssl::error::stream_truncated;
    return {static_cast<int>(code), asio::error::get_ssl_category()};
  }
  default:
    ERR_clear_error();
    return asio::error::fault;
  }
}

void stream::shutdown_send() {
  asio::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
}

void stream::close() {
  asio::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

} // namespace starling::net
