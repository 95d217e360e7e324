// net/stream.hpp: Asio's side of a stream (TLS's is net/tls_core.cpp), and the error mapping.
#include "net/stream.hpp"

namespace starling::net {

bool is_eof(const asio::error_code& ec) {
  return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

bool stream::start_tls(SSL* session) {
  if (!tls_core::start_tls(session))
    return false;
  asio::error_code ignored;
  socket_.non_blocking(true, ignored);
  return true;
}

asio::error_code stream::classify(int ret, want& w) {
  const auto o = tls_core::classify(ret);
  w = o.next;
  switch (o.error) {
  case failure::none:
    return {};
  case failure::eof:
    return asio::error::eof;
  case failure::truncated:
    return asio::ssl::error::stream_truncated;
  case failure::system:
    return {static_cast<int>(o.code), asio::error::get_system_category()};
  case failure::ssl:
    return {static_cast<int>(o.code), asio::error::get_ssl_category()};
  case failure::other:
    break;
  }
  return asio::error::fault;
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
