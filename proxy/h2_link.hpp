// HTTP/2 connections between nodes (decision 0022): node B's inbound end (h2_server) and
// node A's end toward a peer (h2_client); and with apps (decision 0025): an app's
// connection to an outbound listener (h2_server::make_for_app) and a node's connection to
// a local instance that speaks HTTP/2 (h2_client's to_app), which carry no x-starling
// fields. Adapters on net::loop: each reads and writes its connection, runs an
// h2::session and flushes its output once per loop turn.
//
// Each stream is an h2_stream, a byte stream with the calls of net::connection the data
// plane's sessions use (read_some, write, shutdown_send, close, is_open), so that the
// session code that serves an HTTP/1.1 connection serves a stream unchanged:
// - on B, reading gives the request as HTTP/1.1 bytes (h2::to_h1_request) and writing takes
//   the response as HTTP/1.1 bytes, parsed (http1_parser) and sent as HTTP/2 fields
//   (h2::to_h2_response) and DATA, de-chunked;
// - on A, the other way round: writing takes the request as HTTP/1.1 bytes (sent with
//   h2::to_h2_request, plus x-starling-service/-instance), reading gives the response as
//   HTTP/1.1 bytes (h2::to_h1_response).
// The head of the message the session writes usually comes parsed (write_head, decision
// 0022): the session hands over the head it parsed from the other side and the stream
// converts it, so that a hop does not write it as HTTP/1.1 and parse it again. write()
// then carries the body alone. A message written whole as HTTP/1.1 (the responses the
// session makes itself) is still parsed here.
// A stream may instead be a tunnel (decision 0024): a CONNECT stream carrying a TCP
// connection's bytes as they are, both ways (open_tunnel on A, accept_tunnel or
// refuse_tunnel on B; shutdown_send ends our side with END_STREAM). A tunnel's write is
// lent to the session, not copied (h2::session::lend_data): framed from the writer's
// buffer, it completes once its last byte is framed.
//
// Limits: the peer's data is bounded by HTTP/2 flow control (a stream's window reopens only
// as the session reads its bytes), the header list by h2::limits, the streams by
// SETTINGS_MAX_CONCURRENT_STREAMS; a write waits for room in its stream's outgoing buffer,
// and that buffer empties only as fast as the connection writes (a tunnel's write, lent,
// waits as long in the writer's buffer).
//
// Loop thread only. Handlers complete as net::connection's do: never inside the call that
// starts the operation (a write with completion::inline_when_done aside).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "net/connection.hpp"
#include "proxy/h2.hpp"
#include "proxy/http1.hpp"
#include "proxy/stream_map.hpp"

namespace starling::proxy {

class h2_link;

/// The error a read or write of an h2_stream gets when the peer refused the stream
/// (REFUSED_STREAM, or above a GOAWAY's last stream): no app saw the request, so any
/// request may be sent again elsewhere.
inline std::error_code refused_stream_error() { return {ECONNREFUSED, std::system_category()}; }

/// One stream of an h2_link, seen as a byte stream of HTTP/1.1 (above).
class h2_stream : public std::enable_shared_from_this<h2_stream> {
public:
  using io_handler = net::connection::io_handler;
  using completion = net::connection::completion;

  /// A stream of `link`: on a server, the peer's stream `id`; on a client (id 0), one
  /// opened by the first request head written, carrying `service` and `instance`.
  h2_stream(std::shared_ptr<h2_link> link, std::int32_t id, http1_limits limits,
            std::string_view service = {}, std::string_view instance = {});
  ~h2_stream();
  h2_stream(const h2_stream&) = delete;
  h2_stream& operator=(const h2_stream&) = delete;

  /// Bytes of the peer's message (HTTP/1.1), at least one; its end is net::errc::eof; a
  /// reset stream or a lost connection ECONNRESET, a refused one refused_stream_error().
  void read_some(void* buf, std::size_t len, io_handler handler);
  /// Bytes of our message (HTTP/1.1); completes once they are in the stream's outgoing
  /// buffer. A message the conversion refuses resets the stream (EPROTO).
  void write(const void* buf, std::size_t len, io_handler handler,
             completion how = completion::deferred);
  /// Our message's head, parsed: sent as `h` forwarded with `fo` (via and x-forwarded-*
  /// as write_forward_head adds them; fo.chunked: the body comes chunked although `h` has
  /// none, the session re-chunking an until-close body), without writing it as HTTP/1.1 and
  /// parsing it again. The writes that follow carry only the body, framed as `h` says, and
  /// the message ends with the body's last byte; after a 1xx head comes another head.
  /// Returns what a write of that head would have completed with: an error resets the
  /// stream (refused_stream_error() when the peer takes no more streams).
  std::error_code write_head(const message_head& h, const forward_options& fo);
  /// No more bytes from us: resets the stream unless our message is complete.
  void shutdown_send();
  /// Done with the stream: resets it unless both messages are complete; pending operations
  /// complete with ECANCELED, later ones with EBADF.
  void close();
  /// Until closed, reset, or (client) the response ended: a stream carries one exchange.
  /// A tunnel: until closed or reset (its ends close one at a time).
  [[nodiscard]] bool is_open() const {
    return open_ && !reset_ && !(client_ && !tunnel_ && peer_ended_);
  }

  /// A tunnel (decision 0024): the stream carries a TCP connection's bytes as they are
  /// (RFC 9113 8.5, CONNECT), not HTTP/1.1. Reads give the peer's DATA; writes send DATA;
  /// shutdown_send ends our side (END_STREAM, a FIN); a reset or a lost connection is a
  /// reset (ECONNRESET). No byte moves before the tunnel is established.
  [[nodiscard]] bool is_tunnel() const { return tunnel_; }
  /// A client tunnel: sends CONNECT for the stream's service and instance. `handler`
  /// completes (never inside the call) once the peer answered: success on a 2xx, from then
  /// on bytes move; EACCES on a 403 (the peer's authorization rules refuse the caller);
  /// refused_stream_error() on another status, a reset before the answer or a refused
  /// stream (no byte reached any app: the caller may try elsewhere).
  void open_tunnel(io_handler handler);
  /// A server tunnel: the local connection is up; answers 200, and bytes move. An error
  /// when the stream is gone (reset, closed) or the answer cannot be sent.
  [[nodiscard]] std::error_code accept_tunnel();
  /// A server tunnel refused with `status` (403: the caller is not allowed), which ends
  /// the stream; close() follows.
  void refuse_tunnel(std::uint16_t status);
  /// A server stream's request head, when nothing of the stream was read yet: given to `p`
  /// split as it was written (http1_parser::adopt_head) and taken from the stream, so that
  /// the session neither reads it as bytes nor splits it again; `r` is what adopt_head
  /// returned. False, with nothing done, when no such head waits: read the stream as bytes.
  bool take_head(http1_parser& p, parse_result& r);
  /// Server: the bytes of the request not yet read (the rest of its body, chunked as the
  /// session reads it), when the whole request has arrived (END_STREAM); else nothing.
  [[nodiscard]] std::optional<std::size_t> whole_request_bytes() const {
    if (client_ || !peer_ended_)
      return std::nullopt;
    return in_.size() - in_pos_;
  }
  /// Client: the grpc-status field of the response's trailers, once they came (a gRPC
  /// call's status, decision 0025; a trailers-only answer has it in its head instead):
  /// 0 is OK, a value that is not a number from 0 to 999 reads as 2 (UNKNOWN).
  [[nodiscard]] std::optional<std::uint16_t> grpc_status() const { return grpc_status_; }
  /// The loop the stream's connection runs on.
  [[nodiscard]] net::loop& io();
  /// Closes the whole connection (a banned peer, the data plane stopping).
  void close_connection();

private:
  friend class h2_link;
  friend class h2_server;
  friend class h2_client;

  // From the link (inside h2::session::receive, or after a flush).
  void on_response_head(const h2::head& h);
  void on_data(std::span<const char> bytes);
  void on_trailers(std::span<const h2::field> fields);
  void on_end();
  void on_reset(bool refused);
  void on_room();

  void fill_read();
  /// Completes the pending read with what is there (fill_read's task on the next turn).
  void deliver();
  void pump_write(bool may_inline);
  /// Sends our message's head, `h` forwarded with `fo`; false on error.
  bool send_head(const message_head& h, forward_options fo);
  /// Hands `bytes` of our message's body to the session (de-chunked, the trailer section
  /// kept for end_message); false on error.
  bool send_body(std::span<const char> bytes);
  /// Ends our message (END_STREAM), with the trailers of a chunked body; false on error.
  bool end_message();
  /// Hands body bytes written after write_head to the session and ends the message at
  /// its last byte; false on error (bytes before a final head or after the body's end).
  bool send_direct_body(std::span<const char> bytes);
  void fail_write(std::error_code ec);
  void complete(io_handler h, std::error_code ec, std::size_t n);

  std::shared_ptr<h2_link> link_;
  std::int32_t id_;
  const bool client_;
  std::string service_, instance_;
  bool open_ = true;
  bool attached_ = true; ///< The h2 stream exists (or, client, may still be opened).
  bool peer_ended_ = false;
  bool reset_ = false;
  bool refused_ = false;
  /// The peer's body is framed chunked toward the session (no content-length).
  bool chunked_in_ = false;
  /// Our message's last byte went to the session (END_STREAM queued).
  bool sent_all_ = false;
  /// Client: the request is a HEAD (its response has no body whatever it says).
  bool head_request_ = false;
  /// Client: the request is HTTP/1.0 (its response cannot be chunked).
  bool http10_request_ = false;
  /// A tunnel (is_tunnel), and whether it is established (bytes may move).
  bool tunnel_ = false;
  bool established_ = false;
  /// Client tunnel: open_tunnel's handler, until the peer answers.
  io_handler tunnel_handler_;
  /// Client: grpc_status().
  std::optional<std::uint16_t> grpc_status_;

  /// The peer's message (head, then body) not yet read: in_[in_pos_, end).
  std::string in_;
  std::size_t in_pos_ = 0;
  /// Bytes taken by reads since the start, and per on_data the position its last byte
  /// ends at with its payload size: payload is credited to flow control once read.
  std::uint64_t in_taken_ = 0, in_total_ = 0;
  std::vector<std::pair<std::uint64_t, std::size_t>> credits_;
  char* read_buf_ = nullptr;
  std::size_t read_len_ = 0;
  io_handler read_handler_;
  /// Payload on_data copied straight into read_buf_ while the read waited with in_ empty:
  /// the read's first bytes, ahead of anything in in_.
  std::size_t read_filled_ = 0;
  /// deliver() is queued for the next turn.
  bool delivery_due_ = false;

  /// Our message's head came through write_head: writes carry the body alone.
  bool direct_ = false;
  /// write_head gave the final head (not a 1xx).
  bool final_head_ = false;
  /// After write_head, a body with a length: its bytes not yet written.
  std::uint64_t body_left_ = 0;
  /// Parses what the session writes without write_head (on a server, the responses the
  /// session makes itself): made at the first such write, as most streams never need one.
  std::optional<http1_parser> parser_;
  http1_limits limits_;
  /// Server: the request is a HEAD (for the parser of a response written whole).
  bool server_head_request_ = false;
  /// Server: the request head's bytes at the start of in_ and where its fields lie in them
  /// (take_head; 0 once taken, ignored once the session read bytes of the stream).
  std::size_t head_bytes_ = 0;
  std::vector<header_span> spans_;
  h2::dechunker dechunker_;
  bool chunked_out_ = false;
  /// The trailer section of our chunked body so far (bounded by the header list limit).
  std::string trailers_;
  const char* write_buf_ = nullptr;
  std::size_t write_len_ = 0, write_done_ = 0;
  io_handler write_handler_;
  /// A tunnel's pending write, whose bytes are lent to the session (h2::session::lend_data):
  /// completes it once the session framed the last lent byte (called by h2_link::flush);
  /// false while some are not yet.
  bool on_framed();
};

/// What h2_server and h2_client share: the connection, the session, reading, flushing,
/// the idle timer, and the streams by id.
class h2_link : public std::enable_shared_from_this<h2_link>, protected h2::listener {
public:
  struct options {
    h2::limits limits;
    http1_limits http;
    /// A connection without streams for this long is closed (GOAWAY first); one whose
    /// peer takes none of our output for between one and two of these is closed at once.
    std::chrono::milliseconds idle_timeout{60'000};
  };

  ~h2_link() override;
  h2_link(const h2_link&) = delete;
  h2_link& operator=(const h2_link&) = delete;

  /// Starts with `first` (bytes already read: on a server, the client preface and what
  /// followed it).
  void start(std::string_view first = {});
  /// Closes the connection now; every stream ends (ECONNRESET).
  void close();
  [[nodiscard]] bool is_open() const { return !closed_ && conn_->is_open(); }
  /// Streams now open.
  [[nodiscard]] std::size_t streams() const { return session_.active_streams(); }
  /// Says goodbye (GOAWAY with NO_ERROR, once): the streams the peer opened so far finish,
  /// later ones are refused (the peer may send them again elsewhere: no app saw them), and
  /// the connection closes once the open streams have ended. A draining node's inbound.
  void go_away();
  [[nodiscard]] bool is_server() const { return server_; }
  /// An app's connection (h2_server::make_for_app) or one to an app (h2_client's to_app),
  /// not one between nodes.
  [[nodiscard]] bool is_app() const { return app_; }

protected:
  friend class h2_stream;

  h2_link(std::shared_ptr<net::connection> conn, h2::role role, options opts);

  void on_data(std::int32_t stream, std::span<const char> bytes) override;
  void on_trailers(std::int32_t stream, std::span<const h2::field> fields) override;
  void on_end(std::int32_t stream) override;
  void on_reset(std::int32_t stream, std::uint32_t code) override;
  void on_close(std::int32_t stream) override;
  /// After each batch of received bytes went through the session (all its events).
  virtual void after_receive() {}

  [[nodiscard]] h2_stream* stream_of(std::int32_t id) const;
  void feed(std::span<const char> bytes);
  void read();
  void schedule_flush();
  void flush();
  void arm_idle();

  std::shared_ptr<net::connection> conn_;
  const bool server_;
  /// is_app(): set by the makers.
  bool app_ = false;
  options opts_;
  h2::session session_;
  std::vector<char> rbuf_;
  std::string out_;
  bool writing_ = false;
  bool flush_scheduled_ = false;
  /// The session failed or is finishing: close once the output is written.
  bool failed_ = false;
  bool closed_ = false;
  /// go_away() was called.
  bool goaway_sent_ = false;
  /// Open streams by id (each removes itself when destroyed or closed by the session).
  stream_map<h2_stream*> streams_;
  /// Streams to reset with NO_ERROR once our message has left their buffer (a server's
  /// response that ended before the request did: RFC 9113 8.1).
  std::vector<std::int32_t> finishing_;
  /// Streams whose write waits for room in its outgoing buffer.
  std::vector<std::weak_ptr<h2_stream>> room_waiters_;
  /// Tunnel streams with bytes lent to the session, told once framed (on_framed).
  std::vector<std::weak_ptr<h2_stream>> lenders_;
  /// Where a stream's head becomes HTTP/2 fields before the session copies them: one for
  /// the link, so that its capacity serves every stream (h2_stream::send_head).
  h2::field_list fields_;
  net::timer idle_timer_;
  /// Streams opened since the idle timer last fired.
  std::uint64_t opened_ = 0, opened_seen_ = 0;
  /// Writes started (the first is 1), and the one pending when the idle timer last fired
  /// (0: none): still pending at the next tick, the connection is closed.
  std::uint64_t writes_ = 0, stuck_write_ = 0;
};

/// Node B: the server end of an HTTP/2 connection from a peer; or, on the caller's node, of
/// an app's HTTP/2 connection to an outbound listener (make_for_app).
class h2_server final : public h2_link {
public:
  /// A new request stream for `service` (its x-starling-service field, validated and
  /// removed, as `x-starling-instance`, which names `instance` or is empty), or a tunnel
  /// (a CONNECT: h2_stream::is_tunnel; answer it with accept_tunnel, refuse it with
  /// close). The two views are valid during the call only.
  using stream_fn = std::function<void(std::shared_ptr<h2_stream> stream, std::string_view service,
                                       std::string_view instance)>;
  /// Says whether `name` is a valid service name.
  using name_check = bool (*)(std::string_view name);

  static std::shared_ptr<h2_server> make(std::shared_ptr<net::connection> conn, options opts,
                                         name_check check, stream_fn on_stream);
  /// The server end of an app's HTTP/2 connection to the outbound listener of `service`
  /// (decision 0025): every stream is a request to that service (`on_stream` gets its name
  /// and no instance); x-starling-service and -instance fields the app sent are dropped.
  static std::shared_ptr<h2_server> make_for_app(std::shared_ptr<net::connection> conn,
                                                 options opts, std::string service,
                                                 stream_fn on_stream);

private:
  h2_server(std::shared_ptr<net::connection> conn, options opts, name_check check,
            stream_fn on_stream, std::string app_service);
  void on_head(std::int32_t stream, const h2::head& h) override;
  /// An app's new streams start here, once the bytes read with their head have all gone
  /// through the session: a request that came whole in one read (a unary gRPC call) is
  /// then whole in hand when its session starts (h2_stream::whole_request_bytes).
  void after_receive() override;

  name_check check_;
  stream_fn on_stream_;
  /// An app's connection: the service of its outbound listener (else empty).
  std::string app_service_;
  /// An app's streams opened by the bytes being received, to start after them (and the
  /// ones being started: after_receive swaps the two).
  std::vector<std::shared_ptr<h2_stream>> starting_, starting_now_;
  /// Scratch: a head's fields minus the two x-starling ones.
  std::vector<h2::field> kept_;
};

/// Node A: the client end of an HTTP/2 connection to a peer's inbound proxy, shared by the
/// worker's requests to that peer; or, on the instance's node, the connection to a local
/// instance that speaks HTTP/2 (make's `to_app`), shared the same way.
class h2_client final : public h2_link {
public:
  /// `to_app`: a connection to a local instance that speaks HTTP/2 (decision 0025), whose
  /// streams carry no x-starling-service or -instance field.
  static std::shared_ptr<h2_client> make(std::shared_ptr<net::connection> conn, options opts,
                                         bool to_app = false);

  /// Whether a new stream may be opened now (open, no GOAWAY either way, below the peer's
  /// stream limit counting streams opened and not yet submitted).
  [[nodiscard]] bool usable() const;
  /// A new stream for a request to `service` (`instance`: the one the balancer picked),
  /// or with `tunnel` a tunnel to it (open it with h2_stream::open_tunnel); null when not
  /// usable().
  std::shared_ptr<h2_stream> open_stream(std::string_view service, std::string_view instance,
                                         bool tunnel = false);

private:
  friend class h2_stream;
  h2_client(std::shared_ptr<net::connection> conn, options opts, bool to_app);
  void on_head(std::int32_t stream, const h2::head& h) override;
  /// Streams opened and not yet submitted (their head is not written yet).
  std::size_t unsubmitted_ = 0;
};

} // namespace starling::proxy
