// net/stream.hpp: the TLS session's socket BIO and the error mapping.
#include "net/stream.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <sys/socket.h>
#include <unistd.h>

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

void stream::rearm_for_input() {
  asio::error_code ec;
  const auto protocol = socket_.local_endpoint(ec).protocol();
  if (ec) {
    socket_.close(ec);
    return;
  }
  const auto fd = socket_.release(ec); // deregisters the descriptor, keeps it open
  if (ec) {
    socket_.close(ec);
    return;
  }
  socket_.assign(protocol, fd, ec);
  if (ec)
    ::close(fd);
}

std::size_t stream::send_now(asio::const_buffer buf) {
  if (!socket_.is_open())
    return 0;
  // MSG_DONTWAIT: Asio makes the descriptor non-blocking only at its first asynchronous
  // operation; this may come before one.
  const auto n =
      ::send(socket_.native_handle(), buf.data(), buf.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  return n > 0 ? static_cast<std::size_t>(n) : 0;
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
    // A stream in full flow (the last read filled the input buffer): recv straight into
    // OpenSSL's buffer, one copy less per record, until the socket runs dry.
    const auto n = ::recv(self->socket_.native_handle(), data, len, 0);
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
  BIO_set_retry_read(b); // the stream reads the socket (wait) and calls OpenSSL again
  return 0;
}

char* stream::input() {
  if (!in_)
    in_ = std::make_unique_for_overwrite<char[]>(input_capacity);
  return in_.get();
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
  bio_ = bio;
  // Read-ahead: OpenSSL takes all the input buffer holds (several records at once) rather
  // than a record's header and then its body. Partial writes and a moving write
  // buffer: SSL_write_ex returns after each record the socket took, and a retry may come
  // with the same bytes at another address (write_step keeps its offset).
  SSL_set_read_ahead(session, 1);
  // Up to four full records per read into OpenSSL's buffer when a stream is in full flow
  // (bio_read's direct reads); a buffer is only touched as far as it is filled.
  SSL_set_default_read_buffer_len(session, 4 * input_capacity);
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
  if (BIO_should_retry(bio_)) {
    if (BIO_should_read(bio_)) {
      w = want::read;
      return {};
    }
    if (BIO_should_write(bio_)) {
      w = want::write;
      return {};
    }
  }
  // A close_notify, or the socket's end of stream (SSL_OP_IGNORE_UNEXPECTED_EOF), first:
  // whatever another caller left in the thread's error queue cannot make it an error.
  if ((SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN) != 0) {
    ERR_clear_error();
    return asio::error::eof;
  }
  asio::error_code ec;
  switch (SSL_get_error(ssl_, ret)) {
  case SSL_ERROR_ZERO_RETURN:
    ec = asio::error::eof;
    break;
  case SSL_ERROR_SYSCALL:
    if (io_errno_ == 0) // EOF inside a record or a handshake
      ec = asio::ssl::error::stream_truncated;
    else
      ec = {io_errno_, asio::error::get_system_category()};
    break;
  case SSL_ERROR_SSL: {
    const auto code = ERR_peek_last_error();
    if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
        ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
      ec = asio::ssl::error::stream_truncated;
    else
      ec = {static_cast<int>(code), asio::error::get_ssl_category()};
    break;
  }
  default: // a want that the BIO did not ask for (x509 lookup, async job): not used here
    ec = asio::error::fault;
    break;
  }
  ERR_clear_error();
  return ec;
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
