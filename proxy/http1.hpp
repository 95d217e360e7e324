// HTTP/1.1 framing for the data plane: a pull parser for requests and responses (heads
// parsed by llhttp, bodies framed here), head forwarding and the responses the proxy
// generates itself. Pure: no I/O, no clock, no threads, no exceptions on the data path.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include <llhttp.h>

namespace starling::proxy {

/// Why a message was refused or why the proxy answered itself. The names (`name()`) are a
/// contract: metric label values and the `x-starling-error` header. Append only; never
/// renumber or rename.
enum class http_error : std::uint8_t {
  malformed = 1,            ///< 400: not HTTP/1.x framing (llhttp or our line checks).
  bad_method,               ///< 400: method not a known HTTP method token.
  bad_target,               ///< 400: empty request-target, or a byte outside 0x21..0x7e.
  bad_version,              ///< 400: version other than HTTP/1.0 or HTTP/1.1.
  bad_header,               ///< 400: invalid header name/value byte (NUL, controls), no colon.
  space_before_colon,       ///< 400: whitespace between a header name and its colon.
  obs_fold,                 ///< 400: a header line starting with SP or HT (line folding).
  bare_cr,                  ///< 400: CR not followed by LF where CRLF is required.
  bare_lf,                  ///< 400: LF not preceded by CR where CRLF is required.
  bad_content_length,       ///< 400: Content-Length not a plain decimal, or overflows.
  duplicate_content_length, ///< 400: Content-Length more than once (even identical values).
  smuggling_cl_te,          ///< 400: both Content-Length and Transfer-Encoding.
  bad_transfer_encoding,    ///< 400: final coding not chunked (request), chunked not last,
                            ///<      empty, or Transfer-Encoding in an HTTP/1.0 message.
  bad_chunk,                ///< 400: bad chunk size/extension/terminator or trailer.
  truncated,                ///< 400: the stream ended inside a message.
  /// 400: an HTTP/2 client preface ("PRI * HTTP/2.0", prior knowledge, as gRPC clients
  /// send) on an HTTP/1.1 listener; answered in HTTP/2 (write_error_response: a SETTINGS
  /// frame and GOAWAY with HTTP_1_1_REQUIRED), which such a client can read.
  http2_preface,
  header_too_large,   ///< 431: the head exceeds `http1_limits::max_head_bytes`.
  too_many_headers,   ///< 431: more than `http1_limits::max_headers` header lines.
  target_too_long,    ///< 414: request-target over `http1_limits::max_target_bytes`.
  body_too_large,     ///< 413: body over `http1_limits::max_body_bytes`.
  forbidden,          ///< 403: refused by an authorization rule.
  no_route,           ///< 404: no service matches the request.
  upstream_connect,   ///< 502: connecting to the upstream failed.
  upstream_reset,     ///< 502: the upstream closed or reset before a full response.
  upstream_malformed, ///< 502: the upstream's response could not be parsed.
  no_upstream,        ///< 503: no healthy endpoint for the service.
  overloaded,         ///< 503: a circuit breaker or pending-request limit refused it.
  upstream_timeout,   ///< 504: the upstream did not answer in time.
  draining,           ///< 503: the node is draining (dataplane::set_draining).
};

/// The stable snake_case name of `e` ("unknown" for a value outside the enum).
[[nodiscard]] std::string_view name(http_error e) noexcept;

/// The status the proxy answers with for `e` (400, 403, 404, 413, 414, 431, 502, 503, 504).
[[nodiscard]] std::uint16_t status_of(http_error e) noexcept;

/// True for the errors a parser reports (the message framing is lost: close the connection).
[[nodiscard]] bool is_framing_error(http_error e) noexcept;

/// Which side a parser reads: requests from clients or responses from upstreams.
enum class direction : std::uint8_t { request, response };

/// How the body of a message is delimited on the wire.
enum class body_kind : std::uint8_t {
  none,           ///< No body (no length, HEAD/1xx/204/304 responses, CONNECT request).
  content_length, ///< Exactly `message_head::content_length` bytes.
  chunked,        ///< Transfer-Encoding chunked; body events carry the raw chunked bytes.
  until_close,    ///< A response delimited by the upstream closing the connection.
};

/// Bounds checked before anything is buffered. Defaults as Envoy/HAProxy-like.
struct http1_limits {
  /// Request/status line plus header lines plus the final CRLF, in bytes. Leading empty
  /// lines skipped before a request line are not counted. Also bounds a chunked trailer.
  std::size_t max_head_bytes = 64 * 1024;
  /// Header lines in a head (also trailer lines in a chunked trailer).
  std::size_t max_headers = 100;
  /// Request-target length in bytes.
  std::size_t max_target_bytes = 8 * 1024;
  /// Body payload bytes (chunked: sum of the chunk sizes); 0 = unlimited.
  std::uint64_t max_body_bytes = 0;
  /// One chunk-size line including extensions and CRLF; bounds extension abuse.
  std::size_t max_chunk_line_bytes = 1024;
};

/// One header field: views into the parser's head buffer, value without surrounding OWS.
struct header {
  std::string_view name;
  std::string_view value;
};

/// Where a header line's name and value lie in a head's text (byte offsets from its start):
/// what a writer of HTTP/1.1 heads records so that the head need not be split again
/// (h2::to_h1_request, http1_parser::adopt_head).
struct header_span {
  std::uint32_t name_at = 0, name_len = 0;
  std::uint32_t value_at = 0, value_len = 0;
};

/// A parsed request or response head. Every view points into the parser that produced it
/// and stays valid until that parser starts the next message: the first `parse` call with
/// non-empty input after `complete` (or its destruction).
struct message_head {
  direction dir = direction::request;
  std::string_view method;         ///< Requests only, as on the wire ("GET").
  std::string_view target;         ///< Requests only.
  std::uint16_t status = 0;        ///< Responses only.
  std::string_view reason;         ///< Responses only; may be empty.
  std::uint8_t version_minor = 1;  ///< 0 or 1: HTTP/1.0 or HTTP/1.1.
  std::span<const header> headers; ///< In wire order, original case.
  body_kind body = body_kind::none;
  std::uint64_t content_length = 0; ///< When `body == content_length`.
  /// The connection may carry another message after this one (HTTP/1.1 unless
  /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`; never after an
  /// until-close body).
  bool keep_alive = true;
  bool expect_continue = false; ///< Request has `Expect: 100-continue` (HTTP/1.1).
  /// Request asks to switch protocols (`Upgrade` named in `Connection`) or is a CONNECT;
  /// response is a 101, or a 2xx to CONNECT. After such a message the stream is opaque.
  bool upgrade = false;
  bool is_connect = false; ///< Request method is CONNECT.
  /// The raw head bytes (start line through the final CRLF).
  std::string_view raw;

  /// The first header named `name` (ASCII case-insensitive), or nullptr.
  [[nodiscard]] const header* find(std::string_view name) const noexcept;
  /// True for a 1xx response other than 101: the final response to the same request
  /// follows on the same stream.
  [[nodiscard]] bool is_interim() const noexcept {
    return dir == direction::response && status >= 100 && status < 200 && status != 101;
  }
};

/// What one `http1_parser::parse` step produced.
enum class parse_status : std::uint8_t {
  need_more, ///< All given bytes consumed (buffered into the head); feed more.
  head,      ///< `http1_parser::head()` is complete and valid.
  body,      ///< `parse_result::body` holds body bytes (a subspan of the input).
  complete,  ///< The message ended; the next `parse` starts the next message.
  upgrade,   ///< After an upgrade/CONNECT message: the rest of the stream is opaque bytes,
             ///< untouched by the parser (consumed is 0); sticky until `resume_after_upgrade`.
  error,     ///< Refused; `parse_result::error` says why. Sticky: the connection is done.
};

/// The result of one parse step.
struct parse_result {
  parse_status status = parse_status::need_more;
  /// Bytes of the input this step used (copied into the head buffer, or returned as body).
  /// The caller drops them and passes the rest to the next call. Always <= input size.
  std::size_t consumed = 0;
  /// For `body`: the raw wire bytes of the body, `input.subspan(0, consumed)`. For a
  /// chunked body these include chunk-size lines, extensions, CRLFs, the last chunk and the
  /// trailer: forward them verbatim, they have been validated.
  std::span<const char> body;
  /// For `error`.
  http_error error = http_error::malformed;
};

/// An incremental HTTP/1.x parser for one connection and one direction, pull style: each
/// `parse` call returns one step. Per message: `head`, zero or more `body`, `complete`
/// (then `upgrade`, forever, if the message switched protocols). One message at a time:
/// bytes after a complete message are not consumed by the step that completes it, so the
/// caller keeps pipelined bytes for the next call. Input may be split anywhere (one byte
/// at a time works). Reuse one parser per connection: buffers keep their capacity, so the
/// steady state allocates nothing. Not thread-safe; call from the connection's strand.
class http1_parser {
public:
  explicit http1_parser(direction dir, http1_limits limits = {});
  http1_parser(const http1_parser&) = delete;
  http1_parser& operator=(const http1_parser&) = delete;
  http1_parser(http1_parser&&) = delete;
  http1_parser& operator=(http1_parser&&) = delete;
  ~http1_parser();

  /// Parses from the start of `in` (the bytes not yet consumed) and returns one step.
  /// An empty `in` returns `need_more` (or a pending `complete`/`upgrade`/`error`).
  [[nodiscard]] parse_result parse(std::span<const char> in) noexcept;

  /// The peer closed its sending side: completes an until-close body (`complete`), returns
  /// `need_more` between messages (a clean close), else `error` with `truncated`.
  [[nodiscard]] parse_result finish() noexcept;

  /// Response parsers: the method of the request this response answers (HEAD: no body;
  /// CONNECT: 2xx is a tunnel). Call before each response; it defaults to GET. Interim
  /// 1xx responses keep it.
  void expect_response_to(std::string_view method) noexcept;

  /// After `upgrade` when the switch was declined (e.g. the upstream answered an Upgrade
  /// request with 200): parse HTTP again from the next byte.
  void resume_after_upgrade() noexcept;

  /// From now on the heads this parser reads are the proxy's own: written by
  /// h2::to_h1_request or h2::to_h1_response from the fields of an HTTP/2 stream, which
  /// were validated when they were decoded and again when written (lower-case token names,
  /// values of HTAB, SP, VCHAR and obs-text only, a token method, a visible target). Their lines
  /// are checked as any head's (CRLF only, no obs-fold, a colon, the limits), but their fields are
  /// split here rather than by llhttp: the second parse of a head on each hop (docs/proxy.md). A
  /// head with anything those writers never write (Upgrade, CONNECT, a Connection other than close
  /// or keep-alive, a Transfer-Encoding other than chunked, a second or non-decimal
  /// Content-Length) still goes through llhttp. Bodies and trailers are framed as always.
  /// Trust ends with the first message that is not a 1xx: a stream carries one exchange,
  /// and anything after it is parsed as a stranger's bytes. Never for bytes from a socket.
  void trust_heads() noexcept { trusted_ = true; }

  /// Starts the next message with a head the proxy wrote itself, already split: `text`,
  /// written by h2::to_h1_request from an HTTP/2 stream's fields (validated when decoded
  /// and when written, as for trust_heads), and `spans`, where its header lines' names and
  /// values are. Returns what `parse` would have returned for those bytes: `head` (the
  /// head copied, its views into this parser) or `error` (the limits hold as for any head:
  /// 431, 414); a head with anything the trusted split does not take (an extension method,
  /// a Connection other than close or keep-alive) goes through llhttp, as with
  /// trust_heads. The body that follows is parsed from bytes as usual. Only between
  /// messages, with no byte of the next one given yet (else `error`, malformed).
  [[nodiscard]] parse_result adopt_head(std::string_view text,
                                        std::span<const header_span> spans) noexcept;

  /// The current head; valid after a `head` step until the next message starts.
  [[nodiscard]] const message_head& head() const noexcept { return head_; }

  /// Messages completed on this connection.
  [[nodiscard]] std::uint64_t messages() const noexcept { return messages_; }

  /// The grpc-status field of the current message's trailer section (a chunked body's),
  /// once its line was read: a gRPC call's status when it crossed an HTTP/1.1 hop between
  /// nodes (decision 0025). A value that is not a number from 0 to 999 reads as 2
  /// (UNKNOWN), as text::grpc_status_number reads it. Nothing before, or without one; reset
  /// when the next message starts.
  [[nodiscard]] std::optional<std::uint16_t> trailer_grpc_status() const noexcept {
    return trailer_grpc_status_;
  }

private:
  enum class state : std::uint8_t {
    start_line,    ///< Accumulating the head into head_buf_.
    headers,       ///< Accumulating header lines into head_buf_.
    body_length,   ///< Counting down remaining_ bytes.
    body_close,    ///< Everything until finish() is body.
    chunk_size,    ///< Hex digits of a chunk size.
    chunk_ext,     ///< After ';' until CR.
    chunk_size_lf, ///< Saw CR after the size line.
    chunk_data,    ///< remaining_ payload bytes of this chunk.
    chunk_data_cr, ///< Expect CR after chunk data.
    chunk_data_lf, ///< Expect LF after chunk data.
    trailer,       ///< Trailer lines after the last chunk.
    done,          ///< Message complete returned pending.
    tunnel,        ///< Opaque after upgrade.
    failed,        ///< Sticky error.
  };

  parse_result fail(http_error e, std::size_t consumed) noexcept;
  parse_result scan_head(std::span<const char> in) noexcept;
  parse_result finish_head(std::size_t consumed) noexcept;
  http_error check_start_line(std::string_view line) noexcept;
  http_error run_llhttp() noexcept;
  /// trust_heads(): fills headers_ and llhttp's flags from head_buf_ without llhttp;
  /// false when the head needs llhttp after all.
  bool split_trusted() noexcept;
  /// A request line llhttp takes as it is (a common method, origin or asterisk form); true
  /// for responses.
  [[nodiscard]] bool plain_request_line() const noexcept;
  /// A trusted head's field into llhttp's flags (content-length, transfer-encoding,
  /// connection); false for one that needs llhttp.
  bool note_trusted_field(std::string_view name, std::string_view value) noexcept;
  /// After the head is split: decides the body's framing and the next state.
  parse_result framed_head(std::size_t consumed) noexcept;
  http_error decide_body() noexcept;
  parse_result scan_chunked(std::span<const char> in) noexcept;
  void start_message() noexcept;

  static const llhttp_settings_t* settings() noexcept;
  static int on_header_field(llhttp_t* p, const char* at, std::size_t n);
  static int on_header_value(llhttp_t* p, const char* at, std::size_t n);
  static int on_headers_complete(llhttp_t* p);

  direction dir_;
  http1_limits limits_;
  state state_ = state::start_line;
  http_error error_ = http_error::malformed; ///< Valid in state::failed.
  llhttp_t llhttp_{};
  /// The current head (start line through final CRLF); never larger than max_head_bytes.
  std::string head_buf_;
  /// Start of the current incomplete line in head_buf_ (or in the trailer line counter).
  std::size_t line_start_ = 0;
  /// Header lines seen in the current head (or trailer).
  std::size_t header_lines_ = 0;
  /// Parsed headers; views into head_buf_ (filled only once the head is complete).
  std::vector<header> headers_;
  bool field_open_ = false;    ///< llhttp callbacks: a header name is being delivered.
  bool value_open_ = false;    ///< llhttp callbacks: a header value is being delivered.
  std::size_t lead_bytes_ = 0; ///< Empty-line bytes skipped before this request line.
  bool lead_cr_ = false;       ///< A skipped empty line's CR was seen, LF next.
  /// The previous message completed; its head stays readable until new bytes arrive.
  bool pending_reset_ = false;
  message_head head_;
  /// Offset and length in head_buf_ of the method (requests).
  std::pair<std::size_t, std::size_t> start_a_{};
  /// Offset and length in head_buf_ of the target (requests) or reason (responses).
  std::pair<std::size_t, std::size_t> start_b_{};
  std::uint16_t head_flags_ = 0;          ///< llhttp's flags at headers complete.
  std::uint64_t head_content_length_ = 0; ///< llhttp's Content-Length at headers complete.
  std::uint8_t head_method_ = 0;          ///< llhttp's method at headers complete.
  /// Bytes left in a Content-Length body or in the current chunk.
  std::uint64_t remaining_ = 0;
  /// Payload bytes so far in this message's body (for max_body_bytes).
  std::uint64_t body_bytes_ = 0;
  std::size_t chunk_line_ = 0;     ///< Bytes in the current chunk-size line.
  std::size_t chunk_digits_ = 0;   ///< Hex digits in the current chunk size.
  std::size_t trailer_bytes_ = 0;  ///< Bytes of the trailer section so far.
  bool trailer_line_empty_ = true; ///< The current trailer line has no bytes yet.
  bool trailer_cr_ = false;        ///< The current trailer line ended with CR (LF next).
  bool trailer_colon_ = false;     ///< The current trailer line has its colon.
  /// The current trailer line's first bytes (enough for "grpc-status: 999"), and how many
  /// of its bytes there were (more than the array holds: the line is not one we read).
  std::array<char, 24> trailer_line_{};
  std::size_t trailer_line_len_ = 0;
  std::optional<std::uint16_t> trailer_grpc_status_;
  /// Reads the trailer line just ended (trailer_line_) for grpc-status.
  void note_trailer_line() noexcept;
  bool trusted_ = false;
  bool response_to_head_ = false;
  bool response_to_connect_ = false;
  std::uint64_t messages_ = 0;
};

/// The field names a head's Connection headers list (RFC 9110 7.6.1: hop-by-hop fields,
/// dropped when the head is forwarded), gathered once per head so that each field is
/// checked against a few tokens rather than by scanning the head again.
class connection_options {
public:
  /// Views into `h`, which must outlive this.
  explicit connection_options(const message_head& h) noexcept;
  /// Whether a Connection header of the head names `field` (ASCII case-insensitive).
  [[nodiscard]] bool names(std::string_view field) const noexcept;

private:
  struct lower_hash {
    std::size_t operator()(std::string_view s) const noexcept;
  };
  struct lower_equal {
    bool operator()(std::string_view a, std::string_view b) const noexcept;
  };
  static constexpr std::size_t max_kept = 8;
  std::array<std::string_view, max_kept> tokens_{};
  std::size_t count_ = 0;
  /// Past max_kept tokens (a hostile or odd head), all of them in a set: a head whose
  /// Connection lists thousands of names costs one lookup per field, not a scan of the
  /// list per field (tens of milliseconds for a 64 KiB head). Bounded by the head's size.
  std::unordered_set<std::string_view, lower_hash, lower_equal> many_;
};

/// Options for forwarding a head (`write_forward_head`).
struct forward_options {
  /// Requests: appended to the last `x-forwarded-for` (or added); empty = leave it alone.
  std::string_view client_address;
  /// Requests: `x-forwarded-proto` is set to this (any received one dropped); empty = keep.
  std::string_view proto = "http";
  /// Added after the forwarded headers, in order (e.g. the target-service header).
  std::span<const header> extra;
  /// Add `connection: close` (the proxy will close this hop after the message).
  bool close = false;
  /// Add `connection: keep-alive`: an HTTP/1.0 message on a hop the proxy keeps open.
  bool keep_alive = false;
  /// Add this hop's `via` (false where a later step of the same hop adds it: a stream
  /// from another node converted to HTTP/1.1 before the session forwards it).
  bool add_via = true;
  /// Responses: send the status line as `HTTP/1.1` whatever the upstream spoke (an
  /// intermediary sends its own version, RFC 9112 2.3), for a downstream speaking HTTP/1.1.
  bool as_http11 = false;
  /// Responses with an until-close body: add `transfer-encoding: chunked`. The caller then
  /// frames every body byte with `append_chunk` and ends with `last_chunk`, so the
  /// downstream hop can stay open.
  bool chunked = false;
};

/// Appends `data` as one chunk of a chunked body (nothing for empty data: an empty chunk
/// would end the body).
void append_chunk(std::string& out, std::span<const char> data);

/// The end of a chunked body without trailers.
inline constexpr std::string_view last_chunk = "0\r\n\r\n";

/// Appends `h` to `out` as it is forwarded to the next hop: the start line as received
/// (same version unless `opts.as_http11`), headers in order and case minus the hop-by-hop ones
/// (Connection and the headers it names except Host/Content-Length/Transfer-Encoding, Keep-Alive,
/// Proxy-Connection, TE, Trailer, and Upgrade unless `h.upgrade`), Transfer-Encoding and
/// Content-Length kept (the body is forwarded raw), `via: 1.x starling`, and for requests
/// x-forwarded-for/-proto, then `opts.extra`, `transfer-encoding: chunked` when asked,
/// `connection: upgrade` when upgrading or else `connection: close` / `connection:
/// keep-alive` when asked, and the final CRLF.
void write_forward_head(const message_head& h, const forward_options& opts, std::string& out);

/// The most bytes of a generated answer's detail that its `x-starling-error-detail` field
/// carries (and that a calling node takes from a peer's).
inline constexpr std::size_t max_error_detail_bytes = 256;

/// Appends a complete response the proxy generates: status line for `status_of(reason)`,
/// `content-type: text/plain`, `content-length`, `x-starling-error: <name(reason)>`,
/// `x-starling-error-detail: <detail>` when there is one (its first max_error_detail_bytes
/// printable bytes), `connection: close` when `close` or `is_framing_error(reason)`, and a
/// one-line body. `detail` (e.g. the authorization rule of a 403) is added to the body too,
/// control bytes dropped. For `http2_preface` it appends HTTP/2 frames instead (SETTINGS,
/// then GOAWAY with HTTP_1_1_REQUIRED); the caller closes after them.
void write_error_response(http_error reason, std::string& out, bool close = false,
                          std::string_view detail = {});

/// The detail of an answer a proxy made itself (its x-starling-error-detail, as
/// write_error_response writes it): empty when there is none, or when it is longer than
/// max_error_detail_bytes or not printable ASCII (what a peer that turned hostile sends in
/// it goes no further).
[[nodiscard]] std::string_view error_detail_of(const message_head& h) noexcept;

/// The gRPC status a gRPC client gets for an answer the proxy generates with HTTP status
/// `http_status` ("gRPC over HTTP2"'s mapping of HTTP statuses: 400 INTERNAL, 401
/// UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429, 502, 503 and 504
/// UNAVAILABLE, any other UNKNOWN).
[[nodiscard]] std::uint16_t grpc_status_for_http(std::uint16_t http_status) noexcept;

/// Appends the answer the proxy generates for an app's gRPC call, as gRPC clients read it:
/// a trailers-only response, HTTP 200 with `content-type: application/grpc`,
/// `grpc-status: <grpc_status>`, `grpc-message: <reason>[ (<detail>)]` (percent-encoded as
/// gRPC says, control bytes dropped), `x-starling-error: <reason>`, and `content-length: 0`
/// (an HTTP/2 stream carries it as one HEADERS frame that ends it). `reason` is an
/// http_error's name (a peer's, for an answer the instance's node made): lower-case letters
/// and '_' only, else it is written as "error".
void write_grpc_error_response(std::string_view reason, std::uint16_t grpc_status, std::string& out,
                               std::string_view detail = {});

} // namespace starling::proxy
