// HTTP/2 for the inter-node hop (ALPN "h2"): a session over nghttp2 that does no I/O
// (bytes in, events out, bytes out), the conversions between HTTP/1.1 heads and HTTP/2
// fields that node A (client side) and node B (server side) need, and a dechunker that turns
// the raw chunked bodies of http1_parser into payload. Pure: no sockets, no clock, no
// threads, no exceptions on the data path (std::bad_alloc aside, as everywhere).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/http1.hpp"
#include "proxy/stream_map.hpp"

struct nghttp2_session;

namespace starling::proxy::h2 {

/// Why an HTTP/2 operation or conversion failed. `errc::ok` (0) is success; the names
/// (`name()`) are a contract (metric labels). Append only.
enum class errc : std::uint8_t {
  ok = 0,
  protocol,        ///< receive: the peer broke HTTP/2 (not the client preface, a bad frame,
                   ///< HPACK, flow control, flooding). Output holds a GOAWAY: flush, close.
  internal,        ///< nghttp2 failed for a local reason (out of memory, a listener threw).
                   ///< Output holds a GOAWAY(INTERNAL_ERROR): flush, close.
  closed,          ///< The session is finished; nothing more is received or submitted.
  stream_limit,    ///< submit_request: the peer's SETTINGS_MAX_CONCURRENT_STREAMS is reached.
                   ///< Wait for a stream to close, or use another connection.
  going_away,      ///< submit_request: GOAWAY received or sent, or stream ids exhausted.
                   ///< This connection takes no new streams: open another one.
  no_stream,       ///< The stream is unknown or already closed.
  stream_ended,    ///< send_data/end_stream after the stream's local end.
  buffer_full,     ///< send_data: the outgoing buffer would exceed `limits::max_buffered_bytes`.
  bad_field,       ///< A field is unusable: CR/LF/NUL in a value, a bad method or path, a
                   ///< missing pseudo-header, or trailers/fields a submit cannot carry.
  not_convertible, ///< CONNECT, Upgrade or 101: keep HTTP/1.1 for this exchange.
  too_large,       ///< The fields exceed the header-list bound (the caller answers 431).
};

/// The stable snake_case name of `e` ("unknown" outside the enum).
[[nodiscard]] std::string_view name(errc e) noexcept;

/// HTTP/2 error codes used by the session (RFC 9113 section 7).
inline constexpr std::uint32_t no_error = 0x0;
inline constexpr std::uint32_t protocol_error = 0x1;
inline constexpr std::uint32_t internal_error = 0x2;
inline constexpr std::uint32_t refused_stream = 0x7;
inline constexpr std::uint32_t cancel = 0x8;

/// A field (header) as HTTP/2 carries it. Names are lower case on the wire; a request's or
/// response's pseudo-header fields (":method", ...) come first. The same type as
/// proxy::header, so heads, forward_options::extra and fields mix without copies.
using field = header;

/// Bounds of one session. Advertised to the peer in SETTINGS and enforced on receive.
struct limits {
  /// SETTINGS_MAX_CONCURRENT_STREAMS we advertise. A client also never has more than the
  /// peer's value open (before the peer's SETTINGS arrive: 100, RFC 9113 6.5.2).
  std::uint32_t max_concurrent_streams = 256;
  /// SETTINGS_MAX_HEADER_LIST_SIZE we advertise, and the bound of a received header block
  /// (names + values + 32 per field, RFC 9113 6.5.2): a larger block resets its stream
  /// (PROTOCOL_ERROR); the connection stays up. Also the default bound of the conversions.
  std::uint32_t max_header_list_bytes = 64 * 1024;
  /// SETTINGS_INITIAL_WINDOW_SIZE: bytes a peer may send on one stream before `consumed`.
  std::uint32_t initial_stream_window = 256 * 1024;
  /// Receive window of the whole connection: bytes of all streams before `consumed`.
  std::uint32_t connection_window = 1024 * 1024;
  /// SETTINGS_MAX_FRAME_SIZE (clamped to 16384..16777215).
  std::uint32_t max_frame_size = 16384;
  /// Outgoing DATA buffered per stream and not yet framed (`send_data`, `room`).
  std::size_t max_buffered_bytes = 256 * 1024;
  /// Servers: RST_STREAM frames a peer may send, as a token bucket holding `burst` tokens
  /// and regaining `per_second` a second (nghttp2's own clock). An empty bucket ends the
  /// connection with GOAWAY: opening and cancelling streams in a loop ("rapid reset",
  /// CVE-2023-44487) costs the peer its connection, not us our CPU.
  std::uint32_t max_resets_burst = 1000;
  std::uint32_t max_resets_per_second = 33;
  /// CONTINUATION frames that may follow one HEADERS frame; more ends the connection
  /// (CVE-2024-28182: an endless header block).
  std::uint32_t max_continuations = 8;
  /// Output `receive` serializes (the answers to what it read, and DATA) that the caller
  /// has not taken yet: beyond this, frames wait inside nghttp2 until `take_output`. A peer
  /// that sends frames which ask for an answer (PING, SETTINGS, or ones answered with
  /// RST_STREAM) and reads none of the answers then fills nghttp2's queue, and past
  /// `max_queued_answers` answers the connection ends (CVE-2019-9512, -9515): the answers
  /// never pile up without a bound behind a socket the peer does not read.
  std::size_t max_pending_output_bytes = 64 * 1024;
  std::size_t max_queued_answers = 1000;
};

/// A received request or response head. Every view (and `fields`) is valid only during the
/// listener call that carries it: the session reuses one arena for all header blocks.
struct head {
  std::string_view method;       ///< Requests: ":method".
  std::string_view scheme;       ///< Requests: ":scheme".
  std::string_view authority;    ///< Requests: ":authority", or the "host" field; may be empty.
  std::string_view path;         ///< Requests: ":path" (empty for CONNECT).
  std::uint16_t status = 0;      ///< Responses: ":status" (1xx for an interim response).
  std::span<const field> fields; ///< Regular fields in wire order, lower case, validated.
  /// The "content-length" field's value (validated by nghttp2 against the DATA), or -1.
  std::int64_t content_length = -1;
  /// The HEADERS frame ended the stream: no body follows (on_end follows at once).
  bool end_stream = false;
  /// True for a response with a 1xx status: the final response follows on the stream.
  [[nodiscard]] bool is_interim() const noexcept { return status >= 100 && status < 200; }
};

/// Events of a session, called from inside `session::receive` and `session::take_output`
/// (never from elsewhere). A listener may call the session's submit, send, consume and
/// reset functions from any event, but must not destroy the session or throw.
class listener {
public:
  listener() = default;
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;
  virtual ~listener() = default;

  /// A request head (server) or response head (client; again for each 1xx interim, then
  /// the final one). Servers learn of a stream here first.
  virtual void on_head(std::int32_t stream, const head& h) = 0;
  /// Body bytes of `stream`, valid during the call. Call `session::consumed` once they
  /// have left the proxy (possibly later): that reopens the peer's flow-control window.
  virtual void on_data(std::int32_t stream, std::span<const char> bytes) = 0;
  /// Trailer fields of `stream` (views valid during the call); on_end follows.
  virtual void on_trailers(std::int32_t /*stream*/, std::span<const field> /*fields*/) {}
  /// The peer ended its side of `stream` (END_STREAM): no more on_data.
  virtual void on_end(std::int32_t stream) = 0;
  /// `stream` ended abnormally with HTTP/2 error code `code`: RST_STREAM from the peer or
  /// from us (`session::reset`, or a received head that was too large or malformed), or
  /// refused (above a GOAWAY's last stream id, or cancelled before its HEADERS were sent).
  /// Buffered data of the stream is dropped; its unconsumed bytes are credited back.
  virtual void on_reset(std::int32_t stream, std::uint32_t code) = 0;
  /// `stream` is gone (after on_end and our end, or after on_reset): the last event of a
  /// stream; its user pointer is forgotten. Client streams: every submitted stream gets
  /// it; server streams: those that had on_head.
  virtual void on_close(std::int32_t /*stream*/) {}
  /// The peer sent GOAWAY: streams above `last_stream` are refused (on_reset with
  /// REFUSED_STREAM), streams up to it complete; no new streams may be submitted.
  virtual void on_goaway(std::int32_t /*last_stream*/, std::uint32_t /*code*/) {}
};

/// Which end of the connection a session is.
enum class role : std::uint8_t { client, server };

/// The result of `session::submit_request`.
struct submitted {
  std::int32_t stream = 0; ///< The new stream's id (odd, > 0) when `error == errc::ok`.
  errc error = errc::ok;
};

/// One HTTP/2 connection over nghttp2, without I/O: `receive` feeds bytes read from the
/// peer and calls the listener; submits queue frames; `take_output` appends everything to
/// send now (all queued frames of all streams, so that one write carries them). Inbound
/// flow control is the caller's: a window reopens only when `consumed` says so. Not
/// thread-safe; one owner (the connection's loop). Destroying the session forgets every
/// stream without events.
class session {
public:
  /// Creates the session and queues its SETTINGS (and, as a client, the preface). Throws
  /// std::bad_alloc only if nghttp2 cannot allocate. `l` must outlive the session.
  session(role r, limits lim, listener& l);
  session(const session&) = delete;
  session& operator=(const session&) = delete;
  session(session&&) = delete;
  session& operator=(session&&) = delete;
  ~session();

  /// Feeds bytes read from the peer; events go to the listener. `errc::protocol` or
  /// `errc::internal`: the connection is broken, the output holds the GOAWAY (unless the
  /// caller left max_pending_output_bytes untaken: a peer that does not read gets closed
  /// without one): flush it and close. `errc::closed`: the session ended earlier (input
  /// ignored).
  [[nodiscard]] errc receive(std::span<const char> bytes);

  /// True when `take_output` has bytes to give.
  [[nodiscard]] bool wants_write() const noexcept;
  /// Appends every frame there is to send now (of all streams, in nghttp2's priority
  /// order) to `out`: the caller writes them in one go, once per loop turn.
  void take_output(std::string& out);
  /// True when the connection has nothing left to do (GOAWAY exchanged or a fatal error,
  /// no streams, no output): close it.
  [[nodiscard]] bool is_done() const noexcept;

  /// Client: can a request be submitted now (below the peer's concurrent-stream limit,
  /// counting streams not yet closed, and no GOAWAY either way)?
  [[nodiscard]] bool can_submit() const noexcept;
  /// Client: opens a stream with `fields` (pseudo-headers first, as `to_h2_request` makes
  /// them). Without `end_stream`, a body follows through `send_data`/`end_stream`.
  /// Errors: `stream_limit`, `going_away`, `closed`, `bad_field` (no fields), `internal`.
  [[nodiscard]] submitted submit_request(std::span<const field> fields, bool end_stream);
  /// Server: answers `stream` with `fields` (":status" first, as `to_h2_response` makes
  /// them). A 1xx status goes out as an interim HEADERS (`end_stream` must be false); the
  /// final response follows with another call.
  [[nodiscard]] errc submit_response(std::int32_t stream, std::span<const field> fields,
                                     bool end_stream);
  /// Copies `bytes` to the stream's outgoing buffer (framed by later `take_output` calls as
  /// flow control allows) and, with `end_stream`, ends the stream after them. All or
  /// nothing: `buffer_full` when `bytes.size() > room(stream)`.
  [[nodiscard]] errc send_data(std::int32_t stream, std::span<const char> bytes,
                               bool end_stream = false);
  /// Lends `bytes` to `stream` as its next outgoing DATA: later `take_output` calls frame
  /// them straight from the caller's memory (one copy less than send_data), as flow
  /// control allows. The caller keeps them alive and unchanged until `lent(stream)` is 0,
  /// or until it calls `unlend` (a reset or a released stream drops them too). Only one
  /// loan at a time, on a stream whose buffer is empty (`buffer_full` otherwise; send_data
  /// refuses while a loan is out). A TCP tunnel's bytes (h2_stream), which wait in the
  /// tunnel's buffer meanwhile.
  [[nodiscard]] errc lend_data(std::int32_t stream, std::span<const char> bytes);
  /// Lent bytes of `stream` not yet framed (0 for an unknown stream).
  [[nodiscard]] std::size_t lent(std::int32_t stream) const noexcept;
  /// Forgets what is lent to `stream` and not yet framed (the caller's memory is free).
  void unlend(std::int32_t stream) noexcept;
  /// Ends the local side of `stream` after its buffered data, with `trailers` (lower-case
  /// regular fields, at most max_header_list_bytes) as a last HEADERS if not empty.
  [[nodiscard]] errc end_stream(std::int32_t stream, std::span<const field> trailers = {});
  /// Outgoing bytes of `stream` not yet framed, lent ones included (0 for an unknown
  /// stream).
  [[nodiscard]] std::size_t buffered(std::int32_t stream) const noexcept;
  /// Bytes `send_data` accepts now for `stream` (0 for an unknown or ended stream, or one
  /// with a loan out).
  [[nodiscard]] std::size_t room(std::int32_t stream) const noexcept;
  /// Resets `stream` with `code` (RST_STREAM); on_reset and on_close follow.
  errc reset(std::int32_t stream, std::uint32_t code = cancel);
  /// The caller has passed on `n` bytes that on_data delivered for `stream`: reopens the
  /// peer's stream and connection windows (WINDOW_UPDATE once half a window is consumed).
  /// Bytes of a closed stream are credited when it closes; later calls are ignored.
  void consumed(std::int32_t stream, std::size_t n);
  /// `no_error`: graceful shutdown: GOAWAY with the last stream seen; those streams
  /// complete, no new ones are accepted or submitted. Another code: GOAWAY(code) and every
  /// stream closes once the output is flushed (the caller then closes the connection).
  void goaway(std::uint32_t code = no_error);

  /// Streams submitted or opened and not yet closed.
  [[nodiscard]] std::size_t active_streams() const noexcept { return streams_.size(); }
  /// The caller's pointer for `stream` (nullptr when unset or the stream is unknown).
  [[nodiscard]] void* user(std::int32_t stream) const noexcept;
  /// Sets the caller's pointer for `stream`; forgotten after on_close.
  errc set_user(std::int32_t stream, void* p) noexcept;

  /// The limits this session was made with (clamped to what HTTP/2 allows).
  [[nodiscard]] const limits& config() const noexcept { return limits_; }

private:
  struct stream_state;
  struct callbacks; // nghttp2's C callbacks, friends of the session

  stream_state* find(std::int32_t id) const noexcept;
  /// `stream`'s state when our side may still send on it; else null and why
  /// (`closed`, `no_stream`, `stream_ended`).
  std::pair<stream_state*, errc> sendable(std::int32_t stream) const noexcept;
  stream_state& open_state(std::int32_t id);
  void release(std::int32_t id);
  /// Appends nghttp2's queued frames to `out` while `out` holds less than `limit` bytes.
  void drain(std::string& out, std::size_t limit = static_cast<std::size_t>(-1));
  void deliver_head(std::int32_t id, stream_state& s, bool end_stream);

  role role_;
  limits limits_;
  listener& listener_;
  nghttp2_session* ng_ = nullptr;
  /// Streams by id, from submit (client) or the first HEADERS (server) until closed.
  stream_map<std::unique_ptr<stream_state>> streams_;
  /// find()'s last hit: a stream in streams_, or null (reset when that stream is released).
  mutable std::int32_t last_id_ = 0;
  mutable stream_state* last_ = nullptr;
  /// Closed streams' states kept for reuse (buffers keep a bounded capacity); at most 256,
  /// their buffers' capacities summing to spare_bytes_ (at most 4 MiB).
  std::vector<std::unique_ptr<stream_state>> spare_;
  std::size_t spare_bytes_ = 0;
  /// Output serialized by `receive` (so that its errors are known) and not yet taken.
  std::string pending_;
  /// The output drain() fills, and its limit, while it runs (null otherwise).
  std::string* drain_out_ = nullptr;
  std::size_t drain_limit_ = 0;
  /// nghttp2_nv scratch for submits (nghttp2_nv is an anonymous struct: not declarable
  /// here); reused.
  struct nv_scratch;
  std::unique_ptr<nv_scratch> nv_;
  /// The header block being received: names and values back to back; reused, bounded by
  /// max_header_list_bytes (nghttp2 delivers one block at a time, never interleaved).
  std::string block_;
  /// (offset, length) of each regular field's name and value in block_.
  std::vector<std::uint32_t> refs_;
  /// Views into block_, built when a block is delivered; reused.
  std::vector<field> fields_;
  /// Offsets/lengths in block_ of :method, :scheme, :authority, :path, host; ~0u = absent.
  std::uint32_t pseudo_[10] = {};
  std::uint16_t block_status_ = 0;
  std::int64_t block_length_ = -1;
  std::size_t block_bytes_ = 0; ///< RFC 9113 size of the block so far (names+values+32).
  bool goaway_sent_ = false;
  bool goaway_received_ = false;
  bool terminated_by_caller_ = false; ///< goaway(code != no_error) was called.
  bool error_goaway_sent_ = false;    ///< A GOAWAY with an error code went out.
  bool failed_ = false;               ///< A fatal nghttp2 error: the session is dead.
};

// --- conversions -------------------------------------------------------------------------

/// A reusable list of fields for a submit: `fields` view the source head, the options'
/// strings and `arena` (lower-cased names, joined values). Keep the source head, the
/// options and this list alive and unchanged until the submit. Steady state: no allocation.
struct field_list {
  std::string arena;
  std::vector<field> fields;
};

/// Node A: an HTTP/1.1 request head as HTTP/2 request fields: ":method", ":scheme" (opts.proto,
/// default "http"), ":authority" (the absolute-form target's authority without userinfo,
/// else Host; none if neither), ":path" (origin-form as is; absolute-form reduced to path
/// and query, "/" if empty; "*" only for OPTIONS), then the headers in order, names lower
/// case, minus the hop-by-hop ones (Connection and the headers it names except
/// Content-Length, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, Host, Trailer,
/// TE unless exactly "trailers"); Content-Length kept; then `via: 1.x starling`,
/// x-forwarded-for/-proto as write_forward_head does them, and `opts.extra` (lower-case
/// names). opts.close/keep_alive/as_http11/chunked are ignored. Errors: `not_convertible`
/// (CONNECT, Upgrade), `bad_field` (target form), `too_large` (over `max_list_bytes`).
[[nodiscard]] errc to_h2_request(const message_head& h, const forward_options& opts,
                                 field_list& out,
                                 std::size_t max_list_bytes = limits{}.max_header_list_bytes);

/// Node B: an HTTP/1.1 response head as HTTP/2 response fields: ":status", the headers
/// lower case minus the hop-by-hop ones (as for requests, TE and Trailer included),
/// Content-Length kept, `via: 1.x starling`, `opts.extra`. A 1xx interim (100, 103) converts
/// the same way and goes out as non-final HEADERS (`session::submit_response`). Errors:
/// `not_convertible` (101, or a tunnel: `h.upgrade`), `too_large`.
[[nodiscard]] errc to_h2_response(const message_head& h, const forward_options& opts,
                                  field_list& out,
                                  std::size_t max_list_bytes = limits{}.max_header_list_bytes);

/// How the body after a head written by `to_h1_request`/`to_h1_response` is framed, and
/// whether writing succeeded (on error nothing is appended).
struct h1_written {
  errc error = errc::ok;
  /// none: no body bytes follow. content_length: copy the DATA as is. chunked: frame each
  /// DATA with append_chunk and end with last_chunk (or write_last_chunk with trailers).
  /// until_close: copy the DATA, then close the connection (responses with opts.close).
  body_kind body = body_kind::none;
};

/// Node B: an HTTP/2 request head as HTTP/1.1 request bytes toward the local app:
/// "METHOD path HTTP/1.1", `host: <authority>` (empty when none), the fields minus "host"
/// (cookie fields joined into one line with "; ", RFC 9113 8.2.3), `content-length` if the
/// request had one, else `transfer-encoding: chunked` when a body follows (no END_STREAM on
/// HEADERS), `via: 2.0 starling`, x-forwarded-for/-proto and `opts.extra` as
/// write_forward_head does them, `connection: close` with opts.close, and the final CRLF.
/// Errors: `not_convertible` (CONNECT), `bad_field` (a method that is not a token, a path
/// byte outside 0x21..0x7e, a name or value byte not allowed in HTTP/1.1: never written).
/// With `spans`, it also says where each header line's name and value lie (offsets from
/// where the head starts in `out`), for http1_parser::adopt_head.
[[nodiscard]] h1_written to_h1_request(const head& h, const forward_options& opts, std::string& out,
                                       std::vector<header_span>* spans = nullptr);

/// Node A: an HTTP/2 response head as HTTP/1.1 response bytes toward the client:
/// "HTTP/1.1 <status> <reason>", the fields, then the framing: no body for a response to
/// HEAD (`head_request`), 1xx, 204 or 304 (a HEAD or 304 response keeps its content-length);
/// else content-length if given; else, when a body follows, `transfer-encoding: chunked`,
/// or with opts.close no framing header (body until close: HTTP/1.0 clients). Then via,
/// `opts.extra`, `connection: close`/`keep-alive` per opts, the final CRLF. Errors:
/// `bad_field` (as to_h1_request).
[[nodiscard]] h1_written to_h1_response(const head& h, bool head_request,
                                        const forward_options& opts, std::string& out);

/// Appends the end of a chunked body carrying `trailers` ("0", the fields, CRLF). Errors:
/// `bad_field` (nothing appended) for a name or value HTTP/1.1 cannot carry.
[[nodiscard]] errc write_last_chunk(std::span<const field> trailers, std::string& out);

/// Whether a content-type value is gRPC's: "application/grpc" (any case), alone or followed
/// by "+..." ("application/grpc+proto") or ";...".
[[nodiscard]] bool is_grpc_content_type(std::string_view value) noexcept;

/// A gRPC call's deadline from its `grpc-timeout` field's value ("gRPC over HTTP2": 1 to 8
/// digits and a unit, H M S m u n), rounded up to whole milliseconds, at least 1 ms;
/// nullopt for a value that is not one.
[[nodiscard]] std::optional<std::chrono::milliseconds>
grpc_timeout_value(std::string_view value) noexcept;

/// The HTTP/1.1 reason phrase of `status` ("" for an unknown one).
[[nodiscard]] std::string_view reason_phrase(std::uint16_t status) noexcept;

/// An HTTP/1.1 chunked body's trailer section (its field lines as dechunker's steps hand
/// them out; a trailing CR LF or CR is ignored) as HTTP/2 trailer fields: names lower case,
/// values without surrounding whitespace, in order. Fields that must not end a message
/// (RFC 9110 6.5.1) or that HTTP/2 forbids are dropped: Connection, Keep-Alive,
/// Proxy-Connection, Transfer-Encoding, Upgrade, Host, Content-Length, TE, Trailer. Errors:
/// `bad_field` (a line without a colon, an empty name; nothing converted), `too_large`.
[[nodiscard]] errc to_h2_trailers(std::string_view section, field_list& out,
                                  std::size_t max_list_bytes = limits{}.max_header_list_bytes);

/// Turns the raw chunked body bytes http1_parser hands out (chunk-size lines, extensions,
/// CRLFs, last chunk, trailer section; already validated) into payload spans. Input may be
/// split anywhere. Chunk extensions are discarded; the trailer section is handed out as
/// it is (step::trailer) for to_h2_trailers. Still checks
/// the framing it relies on, so that garbage makes it fail rather than misbehave. Steady
/// state: no allocation, no state beyond a few integers.
class dechunker {
public:
  /// One step of `next`.
  struct step {
    std::size_t consumed = 0;      ///< Bytes of the input used; drop them, pass the rest.
    std::span<const char> payload; ///< Payload bytes inside the input (maybe empty).
    /// Bytes of the trailer section inside the input (field lines with their CRLFs, part of
    /// the final CRLF maybe): gathered over the steps, the whole section (to_h2_trailers).
    std::span<const char> trailer;
  };

  /// Consumes framing bytes up to the next payload bytes and returns those (at most to the
  /// chunk's end). Returns consumed 0 only for an empty input or when done or failed.
  [[nodiscard]] step next(std::span<const char> in) noexcept;
  /// The last chunk and the trailer section have been consumed.
  [[nodiscard]] bool is_done() const noexcept { return state_ == state::done; }
  /// The input was not valid chunked framing (sticky).
  [[nodiscard]] bool has_failed() const noexcept { return state_ == state::failed; }
  /// Starts a new body.
  void reset() noexcept { *this = dechunker{}; }

private:
  enum class state : std::uint8_t {
    size,     ///< Hex digits of a chunk size.
    ext,      ///< Chunk extension, until CR.
    size_lf,  ///< LF after the size line.
    data,     ///< remaining_ payload bytes.
    data_cr,  ///< CR after chunk data.
    data_lf,  ///< LF after chunk data.
    trailer,  ///< Start of a trailer line (CR: the end).
    field,    ///< Inside a trailer line, until CR.
    field_lf, ///< LF after a trailer line.
    final_lf, ///< LF of the final empty line.
    done,     ///< The body ended.
    failed,   ///< Not chunked framing.
  };
  state state_ = state::size;
  std::uint64_t remaining_ = 0; ///< Payload bytes left in the chunk (state::data).
  std::uint8_t digits_ = 0;     ///< Hex digits of the current size (at most 15).
};

} // namespace starling::proxy::h2
