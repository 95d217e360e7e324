// net/connection.hpp: a connection's operations on the loop, and its error categories.
#include "net/connection.hpp"

#include <cerrno>
#include <string>

#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

namespace starling::net {

namespace {

class net_category final : public std::error_category {
public:
  [[nodiscard]] const char* name() const noexcept override { return "starling.net"; }
  [[nodiscard]] std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
    case errc::eof:
      return "end of stream";
    case errc::truncated:
      return "stream truncated (the peer ended inside a TLS record or handshake)";
    case errc::unexpected:
      return "TLS asked for an operation the connection does not do";
    }
    return "unknown starling.net error " + std::to_string(value);
  }
};

class openssl_category final : public std::error_category {
public:
  [[nodiscard]] const char* name() const noexcept override { return "openssl"; }
  [[nodiscard]] std::string message(int value) const override {
    char text[256];
    ERR_error_string_n(static_cast<unsigned long>(static_cast<unsigned int>(value)), text,
                       sizeof text);
    return text;
  }
};

std::error_code system_error(int err) { return {err, std::system_category()}; }

} // namespace

const std::error_category& category() {
  static const net_category c;
  return c;
}

const std::error_category& tls_category() {
  static const openssl_category c;
  return c;
}

std::error_code make_error_code(errc e) { return {static_cast<int>(e), category()}; }

bool is_end(const std::error_code& ec) {
  return ec == make_error_code(errc::eof) || ec == make_error_code(errc::truncated);
}

bool is_aborted(const std::error_code& ec) { return ec == system_error(ECANCELED); }

connection::~connection() { close(); }

int connection::new_socket(int family) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  return fd >= 0 ? fd : -errno;
}

void connection::connect(const sockaddr* addr, socklen_t len, done_handler handler) {
  if (fd_ < 0) {
    complete(std::move(handler), false, system_error(EBADF));
    return;
  }
  loop_.connect(fd_, addr, len, [h = std::move(handler)](int r) {
    h(r < 0 ? system_error(-r) : std::error_code{});
  });
}

void connection::close() {
  if (fd_ < 0)
    return;
  const int fd = fd_;
  fd_ = -1;      // the BIO sees it closed from now on
  loop_.flush(); // sends queued for the kernel go before the shutdown
  ::shutdown(fd, SHUT_RDWR);
  loop_.close(fd);
}

void connection::reset() {
  if (fd_ < 0)
    return;
  const int fd = fd_;
  fd_ = -1;
  const linger abort_now{1, 0};
  (void)::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof abort_now);
  loop_.close(fd); // the socket's last reference goes with the loop's: then the reset
}

void connection::shutdown_send() {
  if (fd_ >= 0) {
    loop_.flush(); // sends queued for the kernel go before the FIN
    ::shutdown(fd_, SHUT_WR);
  }
}

void connection::wait(loop::ready what, done_handler handler) {
  if (fd_ < 0) {
    complete(std::move(handler), false, system_error(EBADF));
    return;
  }
  loop_.poll(fd_, what,
             [h = std::move(handler)](int r) { h(r < 0 ? system_error(-r) : std::error_code{}); });
}

std::error_code connection::classify_tls(int ret, want& w) {
  const auto o = tls_core::classify(ret);
  w = o.next;
  switch (o.error) {
  case failure::none:
    return {};
  case failure::eof:
    return errc::eof;
  case failure::truncated:
    return errc::truncated;
  case failure::system:
    return system_error(static_cast<int>(o.code));
  case failure::ssl:
    return {static_cast<int>(static_cast<unsigned int>(o.code)), tls_category()};
  case failure::other:
    break;
  }
  return errc::unexpected;
}

void connection::wait_for(want w, done_handler then) {
  if (fd_ < 0) {
    then(system_error(EBADF)); // inside a completion already (callers' `now` paths)
    return;
  }
  if (w == want::write) {
    loop_.poll(fd_, loop::ready::writable,
               [h = std::move(then)](int r) { h(r < 0 ? system_error(-r) : std::error_code{}); });
    return;
  }
  if (filling_) {
    loop_.defer([h = std::move(then)] { h(system_error(EBUSY)); });
    return;
  }
  filling_ = true;
  loop_.receive(fd_, input(), input_capacity, [this, h = std::move(then)](int r) {
    filling_ = false;
    if (r == 0) {
      ended();
      h({});
      return;
    }
    filled(r > 0 ? static_cast<std::size_t>(r) : 0);
    h(r < 0 ? system_error(-r) : std::error_code{});
  });
}

void connection::handshake(bool server, done_handler handler) {
  if (!is_tls()) {
    complete(std::move(handler), false, system_error(EINVAL));
    return;
  }
  if (server)
    SSL_set_accept_state(session());
  else
    SSL_set_connect_state(session());
  handshake_step(std::move(handler), false);
}

void connection::handshake_step(done_handler handler, bool now) {
  if (!prepare()) {
    complete(std::move(handler), now, system_error(EBADF));
    return;
  }
  const int r = SSL_do_handshake(session());
  if (r == 1) {
    complete(std::move(handler), now, std::error_code{});
    return;
  }
  want w = want::nothing;
  const auto ec = classify_tls(r, w);
  if (w == want::nothing) {
    complete(std::move(handler), now, ec);
    return;
  }
  wait_for(w, [this, h = std::move(handler)](std::error_code wec) mutable {
    if (wec)
      h(wec);
    else
      handshake_step(std::move(h), true);
  });
}

void connection::read_some(void* buf, std::size_t len, io_handler handler) {
  if (fd_ < 0) {
    complete(std::move(handler), false, system_error(EBADF), std::size_t{0});
    return;
  }
  if (is_tls()) {
    read_step(static_cast<char*>(buf), len, std::move(handler), false);
    return;
  }
  loop_.receive(fd_, buf, len, [h = std::move(handler)](int r) {
    if (r > 0)
      h({}, static_cast<std::size_t>(r));
    else
      h(r == 0 ? make_error_code(errc::eof) : system_error(-r), 0);
  });
}

void connection::read_step(char* buf, std::size_t len, io_handler handler, bool now) {
  std::size_t n = 0;
  if (!prepare()) {
    complete(std::move(handler), now, system_error(EBADF), std::size_t{0});
    return;
  }
  const int r = len == 0 ? 1 : SSL_read_ex(session(), buf, len, &n);
  if (r == 1) {
    n = read_pending(buf, len, n);
    complete(std::move(handler), now, std::error_code{}, n);
    return;
  }
  want w = want::nothing;
  const auto ec = classify_tls(r, w);
  if (w == want::nothing) {
    complete(std::move(handler), now, ec, std::size_t{0});
    return;
  }
  wait_for(w, [this, buf, len, h = std::move(handler)](std::error_code wec) mutable {
    if (wec)
      h(wec, 0);
    else
      read_step(buf, len, std::move(h), true);
  });
}

void connection::write(const void* buf, std::size_t len, io_handler handler, completion how) {
  const auto* bytes = static_cast<const char*>(buf);
  const bool at_once = how == completion::inline_when_done;
  if (fd_ < 0) {
    complete(std::move(handler), false, system_error(EBADF), std::size_t{0});
    return;
  }
  if (is_tls()) {
    write_step(bytes, len, 0, std::move(handler), false, at_once);
    return;
  }
  std::size_t sent = 0;
  if (at_once && !loop_.sends_later()) {
    while (sent < len) {
      const auto n = ::send(fd_, bytes + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n <= 0)
        break; // full, or an error that the loop's send meets again and reports
      sent += static_cast<std::size_t>(n);
    }
    if (sent == len) {
      handler({}, len);
      return;
    }
  }
  loop_.send(fd_, bytes + sent, len - sent, [sent, h = std::move(handler)](int r) {
    if (r >= 0)
      h({}, sent + static_cast<std::size_t>(r));
    else
      h(system_error(-r), sent);
  });
}

void connection::write_step(const char* buf, std::size_t len, std::size_t done, io_handler handler,
                            bool now, bool at_once) {
  while (done < len) {
    std::size_t n = 0;
    if (!prepare()) {
      complete(std::move(handler), now, system_error(EBADF), done);
      return;
    }
    // Partial writes: one record per call. Every record but the last goes with MSG_MORE.
    more_ = len - done > max_record_plain;
    const int r = SSL_write_ex(session(), buf + done, len - done, &n);
    more_ = false;
    if (r == 1) {
      done += n;
      continue;
    }
    want w = want::nothing;
    const auto ec = classify_tls(r, w);
    if (w == want::nothing) {
      complete(std::move(handler), now, ec, done);
      return;
    }
    wait_for(w, [this, buf, len, done, h = std::move(handler)](std::error_code wec) mutable {
      if (wec)
        h(wec, done);
      else
        write_step(buf, len, done, std::move(h), true, false);
    });
    return;
  }
  complete(std::move(handler), now || at_once, std::error_code{}, done);
}

} // namespace starling::net
