// The server end of an HTTP/2 connection between nodes (decision 0022, slice 2): node B's
// inbound side when a peer speaks HTTP/2. An adapter on net::loop: it reads and writes the
// connection, runs an h2::session (server) and flushes its output once per loop turn.
//
// Each request stream is handed to the caller as an h2_server_stream, a byte stream with the
// calls of net::connection the data plane's sessions use (read_some, write, shutdown_send,
// close, is_open), so that the session code that serves an HTTP/1.1 connection serves a
// stream unchanged:
// - reading gives the request as HTTP/1.1 bytes (h2::to_h1_request), then its body: as is
//   under a content-length, else chunked; then the end of the stream;
// - writing takes the response as HTTP/1.1 bytes, parses them (http1_parser) and sends the
//   head as HTTP/2 fields (h2::to_h2_response) and the body, de-chunked, as DATA.
// Decision 0022 plans to convert the response head where the session writes it instead of
// parsing it again; this first version keeps the session unchanged and pays that parse
// (about 1 us a request on this machine: docs/bench-proxy.md, "The HTTP/2 core without I/O").
//
// Limits: the peer's data is bounded by HTTP/2 flow control (a stream's window reopens only
// as the session reads its bytes), the header list by h2::limits, the streams by
// SETTINGS_MAX_CONCURRENT_STREAMS; a response waits for room in its stream's outgoing
// buffer, and that buffer empties only as fast as the connection writes.
//
// Loop thread only. Handlers complete as net::connection's do: never inside the call that
// starts the operation (a write with completion::inline_when_done aside).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "net/connection.hpp"
#include "proxy/h2.hpp"
#include "proxy/http1.hpp"

namespace starling::proxy {

class h2_server;

/// One request stream of an h2_server, seen as a byte stream of HTTP/1.1 (above).
class h2_server_stream : public std::enable_shared_from_this<h2_server_stream> {
public:
  using io_handler = net::connection::io_handler;
  using completion = net::connection::completion;

  h2_server_stream(std::shared_ptr<h2_server> server, std::int32_t id, http1_limits limits);
  ~h2_server_stream();
  h2_server_stream(const h2_server_stream&) = delete;
  h2_server_stream& operator=(const h2_server_stream&) = delete;

  /// The request's bytes (HTTP/1.1), at least one; the end of the stream is net::errc::eof;
  /// a reset stream or a lost connection ECONNRESET.
  void read_some(void* buf, std::size_t len, io_handler handler);
  /// Response bytes (HTTP/1.1) for the stream; completes once they are in the stream's
  /// outgoing buffer. A response the conversion refuses resets the stream (EPROTO).
  void write(const void* buf, std::size_t len, io_handler handler,
             completion how = completion::deferred);
  /// No more response bytes: resets the stream unless its response is complete.
  void shutdown_send();
  /// Done with the stream: resets it unless its response is complete; pending operations
  /// complete with ECANCELED, later ones with EBADF.
  void close();
  [[nodiscard]] bool is_open() const { return open_; }
  /// Closes the whole connection (a banned peer, the data plane stopping).
  void close_connection();

private:
  friend class h2_server;

  // From the server (inside h2::session::receive or after a flush).
  void on_data(std::span<const char> bytes);
  void on_trailers(std::span<const h2::field> fields);
  void on_end();
  void on_reset();
  void on_room();

  void fill_read();
  void pump_write(bool may_inline);
  /// Hands `bytes` of a parsed response body to the session (de-chunked); false on error.
  bool send_body(std::span<const char> bytes);
  void fail_write(std::error_code ec);
  /// Calls `h(ec, n)` on the loop's next turn.
  void complete(io_handler h, std::error_code ec, std::size_t n);

  std::shared_ptr<h2_server> server_;
  std::int32_t id_;
  bool open_ = true;
  bool attached_ = true; ///< The h2 stream still exists (no on_close yet).
  bool peer_ended_ = false;
  bool reset_ = false;
  /// The request body is framed chunked toward the session (no content-length).
  bool chunked_in_ = false;
  /// The response's last byte went to the session (END_STREAM queued).
  bool response_done_ = false;

  /// Request bytes (head, then body) not yet read: in_[in_pos_, end).
  std::string in_;
  std::size_t in_pos_ = 0;
  /// Bytes taken by reads since the start, and per on_data the position its last byte
  /// ends at with its payload size: payload is credited to flow control once read.
  std::uint64_t in_taken_ = 0, in_total_ = 0;
  std::deque<std::pair<std::uint64_t, std::size_t>> credits_;
  char* read_buf_ = nullptr;
  std::size_t read_len_ = 0;
  io_handler read_handler_;

  http1_parser parser_;
  h2::dechunker dechunker_;
  bool chunked_out_ = false;
  bool head_sent_ = false;
  h2::field_list fields_;
  const char* write_buf_ = nullptr;
  std::size_t write_len_ = 0, write_done_ = 0;
  io_handler write_handler_;
};

/// The server end of one HTTP/2 connection (above).
class h2_server : public std::enable_shared_from_this<h2_server>, private h2::listener {
public:
  /// A new request stream for `service` (its x-starling-service field, validated and
  /// removed, as `x-starling-instance`, which names `instance` or is empty).
  using stream_fn = std::function<void(std::shared_ptr<h2_server_stream> stream,
                                       std::string service, std::string instance)>;
  /// Says whether `name` is a valid service name.
  using name_check = bool (*)(std::string_view name);

  struct options {
    h2::limits limits;
    http1_limits http;
    /// A connection without streams for this long is closed (GOAWAY first).
    std::chrono::milliseconds idle_timeout{60'000};
  };

  h2_server(std::shared_ptr<net::connection> conn, options opts, name_check check,
            stream_fn on_stream);
  ~h2_server() override;
  h2_server(const h2_server&) = delete;
  h2_server& operator=(const h2_server&) = delete;

  /// Starts with `first` (bytes already read: the client preface and what followed it).
  void start(std::string_view first);
  /// Closes the connection now; every stream ends (ECONNRESET).
  void close();
  [[nodiscard]] bool is_open() const { return conn_ && conn_->is_open(); }
  /// Streams now open.
  [[nodiscard]] std::size_t streams() const { return session_.active_streams(); }

private:
  friend class h2_server_stream;

  void on_head(std::int32_t stream, const h2::head& h) override;
  void on_data(std::int32_t stream, std::span<const char> bytes) override;
  void on_trailers(std::int32_t stream, std::span<const h2::field> fields) override;
  void on_end(std::int32_t stream) override;
  void on_reset(std::int32_t stream, std::uint32_t code) override;
  void on_close(std::int32_t stream) override;

  [[nodiscard]] h2_server_stream* stream_of(std::int32_t id) const;
  void feed(std::span<const char> bytes);
  void read();
  void schedule_flush();
  void flush();
  void arm_idle();
  void wait_room(const std::shared_ptr<h2_server_stream>& s);

  std::shared_ptr<net::connection> conn_;
  options opts_;
  name_check check_;
  stream_fn on_stream_;
  h2::session session_;
  std::vector<char> rbuf_;
  std::string out_;
  bool writing_ = false;
  bool flush_scheduled_ = false;
  /// The session failed or is finishing: close once the output is written.
  bool failed_ = false;
  bool closed_ = false;
  /// Open streams by id (each removes itself when destroyed or closed by the session).
  std::unordered_map<std::int32_t, h2_server_stream*> streams_;
  /// Streams to reset with NO_ERROR once their response has left their buffer.
  std::vector<std::int32_t> finishing_;
  /// Streams whose response waits for room in its outgoing buffer.
  std::vector<std::weak_ptr<h2_server_stream>> room_waiters_;
  /// Scratch: a head's fields minus the two x-starling ones.
  std::vector<h2::field> kept_;
  net::timer idle_timer_;
  /// Streams opened since the idle timer last fired.
  std::uint64_t opened_ = 0, opened_seen_ = 0;
};

} // namespace starling::proxy
