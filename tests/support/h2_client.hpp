// A blocking HTTP/2 client for the data plane's tests (tests/unit/proxy/dataplane_h2_test.cpp)
// over the project's own session (proxy/h2.hpp, role::client): plain TCP to "host:port" with
// prior knowledge (no TLS, no ALPN), requests submitted as fields, and a pump loop that
// writes the session's output and feeds it what the socket gives until the streams asked
// for are done or a deadline passes. Every recv waits at most 200 ms and every call at most
// the client's deadline: a server bug fails the test, never hangs it. Header-only: the
// including test links starling_proxy.
#pragma once

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "proxy/h2.hpp"

namespace starling::testing::h2_support {

namespace h2 = starling::proxy::h2;
using namespace std::chrono_literals;

/// The HTTP/2 client connection preface (RFC 9113 section 3.4).
inline constexpr std::string_view client_preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A field a request carries, owned (h2::field only views these during a submit).
using owned_field = std::pair<std::string, std::string>;

/// The fields of a request through a node's inbound listener: ":method", ":scheme" "http",
/// ":authority", ":path", then `x-starling-service: <service>` (none when `service` is
/// empty), then `extra` (lower-case names).
inline std::vector<owned_field> request_fields(std::string method, std::string path,
                                               std::string service,
                                               std::vector<owned_field> extra = {},
                                               std::string authority = "app.test") {
  std::vector<owned_field> out{{":method", std::move(method)},
                               {":scheme", "http"},
                               {":authority", std::move(authority)},
                               {":path", std::move(path)}};
  if (!service.empty())
    out.emplace_back("x-starling-service", std::move(service));
  for (auto& f : extra)
    out.push_back(std::move(f));
  return out;
}

/// The fields of a tunnel through a node's inbound listener (RFC 9113 8.5): ":method"
/// CONNECT, ":authority" `service`, `x-starling-service: <service>`, then `extra`.
inline std::vector<owned_field> tunnel_fields(std::string service,
                                              std::vector<owned_field> extra = {}) {
  std::vector<owned_field> out{
      {":method", "CONNECT"}, {":authority", service}, {"x-starling-service", service}};
  for (auto& f : extra)
    out.push_back(std::move(f));
  return out;
}

/// What one stream of an h2_client received.
struct stream_result {
  /// The final response's ":status"; 0 until it arrives (1xx interim heads are not kept).
  int status = 0;
  /// The final head's regular fields by (lower-case) name; repeated names joined with ", ".
  std::map<std::string, std::string> headers;
  std::map<std::string, std::string> trailers;
  std::string body;
  bool ended = false;                 ///< END_STREAM arrived: the response is whole.
  std::optional<std::uint32_t> reset; ///< RST_STREAM (from either side) or refused: its code.
  bool closed = false;                ///< The session closed the stream (its last event).
  /// Nothing more will arrive on the stream.
  [[nodiscard]] bool is_done() const noexcept { return ended || reset.has_value() || closed; }
};

/// `r` in a line, for failure messages: status, END_STREAM, reset code, body size.
inline std::string describe(const stream_result& r) {
  return "status " + std::to_string(r.status) + ", ended " + (r.ended ? "yes" : "no") + ", reset " +
         (r.reset ? std::to_string(*r.reset) : std::string{"no"}) + ", closed " +
         (r.closed ? "yes" : "no") + ", body " + std::to_string(r.body.size()) + " bytes";
}

/// A response arrived whole: END_STREAM and no reset.
[[nodiscard]] inline bool is_whole(const stream_result& r) {
  return r.ended && !r.reset.has_value();
}

/// One HTTP/2 connection to `address` ("127.0.0.1:PORT"). Not thread-safe: one test
/// thread drives it. Nothing is written before the first `flush` (or a call that pumps),
/// so `send_bytes` may put raw bytes first on the wire.
class h2_client final : private h2::listener {
public:
  /// Connects (blocking) to `address`. `deadline` bounds each pumping call.
  explicit h2_client(const std::string& address, std::chrono::milliseconds deadline = 10s,
                     h2::limits lim = {})
      : deadline_(deadline), session_(h2::role::client, lim, *this) {
    const auto colon = address.rfind(':');
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
    if (::inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr) != 1)
      return;
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0)
      return;
    timeval rcv{0, 200 * 1000}; // one recv waits at most 200 ms; the loops check the deadline
    timeval snd{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof rcv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof snd);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  }
  ~h2_client() override {
    if (fd_ >= 0)
      ::close(fd_);
  }
  h2_client(const h2_client&) = delete;
  h2_client& operator=(const h2_client&) = delete;

  /// Whether what arrives is passed on at once, reopening the peer's windows (the
  /// default); false: held, so that the peer's stream stalls once it sent a window's worth.
  bool consume = true;

  /// The TCP connection was made.
  [[nodiscard]] bool connected() const noexcept { return connected_; }
  /// The socket, for a test that watches it without reading.
  [[nodiscard]] int fd() const noexcept { return fd_; }
  /// The peer closed the connection (EOF, or a reset or write error).
  [[nodiscard]] bool peer_closed() const noexcept { return peer_closed_; }
  /// A GOAWAY arrived: (last stream id, error code).
  [[nodiscard]] const std::optional<std::pair<std::int32_t, std::uint32_t>>& goaway() const {
    return goaway_;
  }
  /// The first error the session reported on received bytes (the server broke HTTP/2).
  [[nodiscard]] h2::errc receive_error() const noexcept { return receive_error_; }
  /// The session itself, for what this class does not wrap.
  [[nodiscard]] h2::session& session() noexcept { return session_; }

  /// Opens a stream with `fields` (pseudo-headers first) and, with `end_stream`, no body.
  /// Returns the stream id, or 0 when the session refused (see `last_submit_error`).
  /// Nothing is written until a flush or a pumping call.
  std::int32_t submit(const std::vector<owned_field>& fields, bool end_stream = true) {
    std::vector<h2::field> views;
    views.reserve(fields.size());
    for (const auto& [name, value] : fields)
      views.push_back({name, value});
    const auto made = session_.submit_request(views, end_stream);
    last_submit_error_ = made.error;
    if (made.error != h2::errc::ok)
      return 0;
    streams_.try_emplace(made.stream); // known from now on, done or not
    return made.stream;
  }
  /// Why the last `submit` returned 0.
  [[nodiscard]] h2::errc last_submit_error() const noexcept { return last_submit_error_; }

  /// Queues `bytes` on `stream` (pumping while its buffer is full) and, with `end`, ends
  /// it after them; then flushes. False on a session error, a closed connection, a stream
  /// reset meanwhile, or the deadline.
  bool send_data(std::int32_t stream, std::string_view bytes, bool end) {
    const auto deadline = std::chrono::steady_clock::now() + deadline_;
    do {
      const std::size_t room = session_.room(stream);
      if (room == 0 && !bytes.empty()) {
        if (!flush() || !read_once() || std::chrono::steady_clock::now() > deadline ||
            streams_[stream].reset.has_value())
          return false;
        continue;
      }
      const auto piece = bytes.substr(0, room);
      bytes.remove_prefix(piece.size());
      const bool last = bytes.empty();
      if (session_.send_data(stream, std::span<const char>(piece.data(), piece.size()),
                             last && end) != h2::errc::ok)
        return false;
    } while (!bytes.empty());
    return flush();
  }

  /// Writes everything the session has to send now. False when the socket failed.
  bool flush() {
    out_.clear();
    session_.take_output(out_);
    if (out_.empty())
      return !peer_closed_;
    return send_bytes(out_);
  }

  /// Writes `bytes` to the socket as they are, past the session. False on a write error.
  bool send_bytes(std::string_view bytes) {
    while (!bytes.empty()) {
      const auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        peer_closed_ = true;
        return false;
      }
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  /// Pumps (write, read, feed) until every stream of `streams` is done. False at the
  /// deadline, or when the connection ended with some of them not done.
  bool wait(const std::vector<std::int32_t>& streams) {
    return pump_until([&] {
      for (auto s : streams)
        if (!streams_[s].is_done())
          return false;
      return true;
    });
  }
  bool wait(std::int32_t stream) { return wait(std::vector<std::int32_t>{stream}); }

  /// Pumps until `pred` holds; false at the deadline or when the connection ended first.
  bool wait_for(const std::function<bool()>& pred) { return pump_until(pred); }

  /// Reads (and feeds the session) without writing anything until the peer closes the
  /// connection. False when it is still open at the deadline.
  bool wait_closed() {
    const auto deadline = std::chrono::steady_clock::now() + deadline_;
    while (!peer_closed_ && std::chrono::steady_clock::now() < deadline)
      read_once();
    return peer_closed_;
  }

  /// Pumps until a GOAWAY arrives; false at the deadline or when the connection ended
  /// without one.
  bool wait_goaway() {
    return pump_until([&] { return goaway_.has_value(); });
  }

  /// What `stream` received so far (empty for a stream this client does not know).
  [[nodiscard]] const stream_result& result(std::int32_t stream) { return streams_[stream]; }

  /// Submits a request without a body and waits for its response (`result`); returns the
  /// stream id (0 when the submit failed).
  std::int32_t exchange(const std::vector<owned_field>& fields) {
    const auto s = submit(fields, true);
    if (s != 0)
      wait(s);
    return s;
  }

private:
  /// Flushes, then reads until `pred` holds, the peer closes or the deadline passes.
  bool pump_until(const std::function<bool()>& pred) {
    const auto deadline = std::chrono::steady_clock::now() + deadline_;
    while (true) {
      flush();
      if (pred())
        return true;
      if (peer_closed_ || std::chrono::steady_clock::now() > deadline)
        return pred();
      read_once();
    }
  }

  /// One recv of at most 200 ms; feeds what came to the session. False once the peer
  /// closed (EOF or an error other than the timeout).
  bool read_once() {
    if (peer_closed_)
      return false;
    char buf[16384];
    const auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      const auto e = session_.receive(std::span<const char>(buf, static_cast<std::size_t>(n)));
      if (e != h2::errc::ok && receive_error_ == h2::errc::ok)
        receive_error_ = e;
      return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      return true; // the 200 ms passed: the caller checks its deadline
    peer_closed_ = true;
    return false;
  }

  // --- h2::listener
  void on_head(std::int32_t stream, const h2::head& h) override {
    if (h.is_interim())
      return;
    auto& r = streams_[stream];
    r.status = h.status;
    for (const auto& f : h.fields) {
      auto& v = r.headers[std::string(f.name)];
      v += v.empty() ? std::string(f.value) : ", " + std::string(f.value);
    }
  }
  void on_data(std::int32_t stream, std::span<const char> bytes) override {
    streams_[stream].body.append(bytes.data(), bytes.size());
    if (consume)
      session_.consumed(stream, bytes.size()); // the test "passed them on": reopen the window
  }
  void on_trailers(std::int32_t stream, std::span<const h2::field> fields) override {
    for (const auto& f : fields)
      streams_[stream].trailers[std::string(f.name)] = std::string(f.value);
  }
  void on_end(std::int32_t stream) override { streams_[stream].ended = true; }
  void on_reset(std::int32_t stream, std::uint32_t code) override { streams_[stream].reset = code; }
  void on_close(std::int32_t stream) override { streams_[stream].closed = true; }
  void on_goaway(std::int32_t last_stream, std::uint32_t code) override {
    goaway_ = std::make_pair(last_stream, code);
  }

  std::chrono::milliseconds deadline_;
  int fd_ = -1;
  bool connected_ = false;
  bool peer_closed_ = false;
  h2::errc receive_error_ = h2::errc::ok;
  h2::errc last_submit_error_ = h2::errc::ok;
  std::optional<std::pair<std::int32_t, std::uint32_t>> goaway_;
  /// Every stream submitted (or named by an event), by id; kept after it closes.
  std::map<std::int32_t, stream_result> streams_;
  /// Scratch for take_output.
  std::string out_;
  /// Last: it calls back into the members above, and is destroyed (without events) first.
  h2::session session_;
};

} // namespace starling::testing::h2_support
