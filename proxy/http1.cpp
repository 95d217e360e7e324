// HTTP/1.1 framing (http1.hpp). Heads: our line scanner buffers and checks the line
// discipline (CRLF only, no obs-fold, no space before a colon, bounds), then llhttp parses
// the complete head in one call for the field semantics (methods, tokens, Content-Length,
// Transfer-Encoding, Connection). Bodies: framed here, strictly, so that the raw bytes we
// forward are exactly the bytes we validated.
//
// Why not let llhttp frame bodies too: starling_llhttp is compiled without
// LLHTTP_STRICT_MODE, and in that (loose) mode llhttp accepts, among others, a chunk whose
// data is followed by two arbitrary bytes instead of CRLF, bare LF line ends in the head,
// obs-fold, "Host :" and a request line without a version. The checks below refuse all of
// them whatever mode llhttp was built in.
#include "proxy/http1.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>

#include "proto/wire/hex.hpp"
#include "proxy/http_text.hpp"
#include "proxy/thread_cache.hpp"

namespace starling::proxy {

namespace {

/// A parser's buffers at first: room for a common head.
constexpr std::size_t initial_head_bytes = 1000;
constexpr std::size_t initial_headers = 32;
/// Buffers larger than this are not kept for the next parser.
constexpr std::size_t max_cached_head_bytes = 4 * 1024;
constexpr std::size_t max_cached_headers = 128;
/// Per thread: two parsers' buffers for each stream open at once, up to this many.
constexpr std::size_t cached_parsers = 2 * cached_streams_per_thread;
using head_cache = thread_cache<std::string, cached_parsers>;
using headers_cache = thread_cache<std::vector<header>, cached_parsers>;

using text::for_each_token;
using text::iequals;

/// What a generated answer's detail keeps of its text, in its body and its fields: printable
/// ASCII (a control byte could end a field line; a byte above 0x7e is not text gRPC passes).
constexpr bool is_printable(char c) noexcept { return c >= 0x20 && c < 0x7f; }

/// Appends the printable bytes of `text`, at most `max` of them.
void append_printable(std::string& out, std::string_view text,
                      std::size_t max = std::string_view::npos) {
  for (const char c : text) {
    if (max == 0)
      return;
    if (is_printable(c)) {
      out.push_back(c);
      --max;
    }
  }
}
using text::is_field_byte;
using text::is_ows;
using text::is_tchar;
using text::lower;
using text::trim;

constexpr std::array<std::string_view, 30> error_names{
    "unknown",
    "malformed",
    "bad_method",
    "bad_target",
    "bad_version",
    "bad_header",
    "space_before_colon",
    "obs_fold",
    "bare_cr",
    "bare_lf",
    "bad_content_length",
    "duplicate_content_length",
    "smuggling_cl_te",
    "bad_transfer_encoding",
    "bad_chunk",
    "truncated",
    "http2_preface",
    "header_too_large",
    "too_many_headers",
    "target_too_long",
    "body_too_large",
    "forbidden",
    "no_route",
    "upstream_connect",
    "upstream_reset",
    "upstream_malformed",
    "no_upstream",
    "overloaded",
    "upstream_timeout",
    "draining",
};

http_error map_llhttp(const llhttp_t& p, llhttp_errno_t err, bool in_start_line,
                      direction dir) noexcept {
  switch (err) {
  case HPE_INVALID_METHOD:
    return http_error::bad_method;
  case HPE_INVALID_URL:
    return http_error::bad_target;
  case HPE_INVALID_VERSION:
    return http_error::bad_version;
  case HPE_INVALID_CONSTANT:
    // Only reachable in the start line after our checks: an RTSP-only method ("DESCRIBE")
    // with an HTTP version.
    return in_start_line && dir == direction::request ? http_error::bad_method
                                                      : http_error::malformed;
  case HPE_INVALID_HEADER_TOKEN:
    return http_error::bad_header;
  case HPE_UNEXPECTED_CONTENT_LENGTH:
    return (p.flags & F_TRANSFER_ENCODING) != 0 ? http_error::smuggling_cl_te
                                                : http_error::duplicate_content_length;
  case HPE_INVALID_CONTENT_LENGTH:
    return http_error::bad_content_length;
  case HPE_INVALID_TRANSFER_ENCODING:
    return http_error::bad_transfer_encoding;
  case HPE_LF_EXPECTED:
    return http_error::bare_cr;
  case HPE_CR_EXPECTED:
    return http_error::bare_lf;
  case HPE_UNEXPECTED_SPACE:
    return http_error::obs_fold;
  default:
    return http_error::malformed;
  }
}

} // namespace

std::string_view name(http_error e) noexcept {
  const auto i = static_cast<std::size_t>(e);
  return i < error_names.size() ? error_names[i] : error_names[0];
}

std::uint16_t status_of(http_error e) noexcept {
  switch (e) {
  case http_error::header_too_large:
  case http_error::too_many_headers:
    return 431;
  case http_error::target_too_long:
    return 414;
  case http_error::body_too_large:
    return 413;
  case http_error::forbidden:
    return 403;
  case http_error::no_route:
    return 404;
  case http_error::upstream_connect:
  case http_error::upstream_reset:
  case http_error::upstream_malformed:
    return 502;
  case http_error::no_upstream:
  case http_error::overloaded:
  case http_error::draining:
    return 503;
  case http_error::upstream_timeout:
    return 504;
  default:
    return 400;
  }
}

bool is_framing_error(http_error e) noexcept {
  const auto v = static_cast<std::uint8_t>(e);
  return v >= static_cast<std::uint8_t>(http_error::malformed) &&
         v <= static_cast<std::uint8_t>(http_error::body_too_large);
}

const header* message_head::find(std::string_view lower_name) const noexcept {
  for (const auto& h : headers)
    if (h.name.size() == lower_name.size()) {
      bool same = true;
      for (std::size_t i = 0; i < h.name.size() && same; ++i)
        same = lower(h.name[i]) == lower(lower_name[i]);
      if (same)
        return &h;
    }
  return nullptr;
}

// --- parser ---------------------------------------------------------------------------

const llhttp_settings_t* http1_parser::settings() noexcept {
  // The same callbacks for every parser (each finds itself through llhttp_t::data): made
  // once, not per parser (one is made per HTTP/2 stream).
  static const llhttp_settings_t s = [] {
    llhttp_settings_t v;
    llhttp_settings_init(&v);
    v.on_header_field = &http1_parser::on_header_field;
    v.on_header_value = &http1_parser::on_header_value;
    v.on_headers_complete = &http1_parser::on_headers_complete;
    v.on_header_field_complete = [](llhttp_t* p) {
      static_cast<http1_parser*>(p->data)->field_open_ = false;
      return 0;
    };
    v.on_header_value_complete = [](llhttp_t* p) {
      static_cast<http1_parser*>(p->data)->value_open_ = false;
      return 0;
    };
    return v;
  }();
  return &s;
}

http1_parser::http1_parser(direction dir, http1_limits limits) : dir_(dir), limits_(limits) {
  llhttp_init(&llhttp_, dir == direction::request ? HTTP_REQUEST : HTTP_RESPONSE, settings());
  llhttp_.data = this;
  // A parser is made per HTTP/2 stream: its two buffers come from the thread's cache with
  // the capacity an earlier parser grew, else with room for a common head.
  head_buf_ = head_cache::take();
  headers_ = headers_cache::take();
  head_buf_.clear();
  headers_.clear();
  if (head_buf_.capacity() < initial_head_bytes)
    head_buf_.reserve(std::min<std::size_t>(limits_.max_head_bytes, initial_head_bytes));
  if (headers_.capacity() < initial_headers)
    headers_.reserve(std::min<std::size_t>(limits_.max_headers, initial_headers));
  head_.dir = dir;
}

http1_parser::~http1_parser() {
  // Back to the cache unless a large head grew them (the next parser would keep that).
  if (head_buf_.capacity() <= max_cached_head_bytes)
    head_cache::give(std::move(head_buf_));
  if (headers_.capacity() <= max_cached_headers)
    headers_cache::give(std::move(headers_));
}

int http1_parser::on_header_field(llhttp_t* p, const char* at, std::size_t n) {
  auto* self = static_cast<http1_parser*>(p->data);
  if (self->field_open_) {
    auto& name = self->headers_.back().name;
    name = std::string_view(name.data(), static_cast<std::size_t>(at + n - name.data()));
  } else {
    self->headers_.push_back({std::string_view(at, n), {}});
    self->field_open_ = true;
  }
  return 0;
}

int http1_parser::on_header_value(llhttp_t* p, const char* at, std::size_t n) {
  auto* self = static_cast<http1_parser*>(p->data);
  if (self->headers_.empty())
    return -1;
  auto& value = self->headers_.back().value;
  if (self->value_open_ && value.data() != nullptr)
    value = std::string_view(value.data(), static_cast<std::size_t>(at + n - value.data()));
  else
    value = std::string_view(at, n);
  self->value_open_ = true;
  return 0;
}

int http1_parser::on_headers_complete(llhttp_t* p) {
  // llhttp clears its flags when a bodyless message completes in the same call: keep them.
  auto* self = static_cast<http1_parser*>(p->data);
  self->head_flags_ = p->flags;
  self->head_content_length_ = p->content_length;
  self->head_method_ = p->method;
  return 0;
}

void http1_parser::start_message() noexcept {
  head_buf_.clear();
  headers_.clear();
  line_start_ = 0;
  header_lines_ = 0;
  lead_bytes_ = 0;
  lead_cr_ = false;
  remaining_ = 0;
  body_bytes_ = 0;
  head_ = message_head{};
  head_.dir = dir_;
  pending_reset_ = false;
  trailer_grpc_status_.reset();
}

void http1_parser::note_trailer_line() noexcept {
  static constexpr std::string_view name = "grpc-status";
  const std::string_view line(trailer_line_.data(),
                              std::min(trailer_line_len_, trailer_line_.size()));
  if (line.size() <= name.size() || line[name.size()] != ':' ||
      !iequals(line.substr(0, name.size()), name))
    return;
  if (trailer_line_len_ > trailer_line_.size()) { // a value too long to be a status
    trailer_grpc_status_ = 2;
    return;
  }
  trailer_grpc_status_ = text::grpc_status_number(trim(line.substr(name.size() + 1)));
}

parse_result http1_parser::fail(http_error e, std::size_t consumed) noexcept {
  state_ = state::failed;
  error_ = e;
  return {parse_status::error, consumed, {}, e};
}

void http1_parser::expect_response_to(std::string_view method) noexcept {
  response_to_head_ = method == "HEAD";
  response_to_connect_ = method == "CONNECT";
}

void http1_parser::resume_after_upgrade() noexcept {
  if (state_ != state::tunnel)
    return;
  state_ = state::start_line;
  pending_reset_ = true;
}

parse_result http1_parser::parse(std::span<const char> in) noexcept {
  switch (state_) {
  case state::failed:
    return {parse_status::error, 0, {}, error_};
  case state::tunnel:
    return {parse_status::upgrade, 0, {}, {}};
  case state::done:
    ++messages_;
    if (dir_ == direction::response && !head_.is_interim()) {
      response_to_head_ = false;
      response_to_connect_ = false;
    }
    if (!head_.is_interim())
      trusted_ = false; // trust covers one exchange: what a stream carries
    if (head_.upgrade) {
      state_ = state::tunnel;
    } else {
      state_ = state::start_line;
      pending_reset_ = true;
    }
    return {parse_status::complete, 0, {}, {}};
  case state::start_line:
  case state::headers:
    return scan_head(in);
  case state::body_length: {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, in.size()));
    if (n == 0)
      return {};
    remaining_ -= n;
    if (remaining_ == 0)
      state_ = state::done;
    return {parse_status::body, n, in.first(n), {}};
  }
  case state::body_close:
    if (in.empty())
      return {};
    body_bytes_ += in.size();
    if (limits_.max_body_bytes != 0 && body_bytes_ > limits_.max_body_bytes)
      return fail(http_error::body_too_large, 0);
    return {parse_status::body, in.size(), in, {}};
  default:
    return scan_chunked(in);
  }
}

parse_result http1_parser::finish() noexcept {
  switch (state_) {
  case state::failed:
    return {parse_status::error, 0, {}, error_};
  case state::tunnel:
    return {parse_status::upgrade, 0, {}, {}};
  case state::body_close:
    state_ = state::done;
    return parse({});
  case state::done:
    return parse({});
  case state::start_line:
    if (pending_reset_ || (head_buf_.empty() && !lead_cr_))
      return {};
    return fail(http_error::truncated, 0);
  default:
    return fail(http_error::truncated, 0);
  }
}

parse_result http1_parser::scan_head(std::span<const char> in) noexcept {
  if (in.empty())
    return {};
  if (pending_reset_)
    start_message();
  std::size_t i = 0;
  const std::size_t size = in.size();
  // RFC 9112 2.2: a server ignores empty lines before a request line. Bounded by the head
  // limit so a stream of CRLFs is not consumed forever.
  if (dir_ == direction::request) {
    while (i < size && head_buf_.empty()) {
      const char c = in[i];
      if (lead_cr_) {
        if (c != '\n')
          return fail(http_error::bare_cr, i);
        lead_cr_ = false;
      } else if (c == '\r') {
        lead_cr_ = true;
      } else if (c == '\n') {
        return fail(http_error::bare_lf, i);
      } else {
        break;
      }
      ++i;
      if (++lead_bytes_ > limits_.max_head_bytes)
        return fail(http_error::header_too_large, i);
    }
  }
  while (i < size) {
    const char* nl = static_cast<const char*>(std::memchr(in.data() + i, '\n', size - i));
    const std::size_t end = nl != nullptr ? static_cast<std::size_t>(nl - in.data()) + 1 : size;
    const std::size_t n = end - i;
    if (head_buf_.size() + n > limits_.max_head_bytes)
      return fail(http_error::header_too_large, i);
    head_buf_.append(in.data() + i, n);
    i = end;
    if (nl == nullptr)
      break;
    // A complete line [line_start_, size) ending in LF.
    const std::string_view line(head_buf_.data() + line_start_, head_buf_.size() - line_start_);
    if (line.size() < 2 || line[line.size() - 2] != '\r')
      return fail(http_error::bare_lf, i);
    const auto content = line.substr(0, line.size() - 2);
    if (content.find('\r') != std::string_view::npos)
      return fail(http_error::bare_cr, i);
    line_start_ = head_buf_.size();
    if (state_ == state::start_line) {
      if (const auto e = check_start_line(content); e != http_error{})
        return fail(e, i);
      state_ = state::headers;
      continue;
    }
    if (content.empty())
      return finish_head(i);
    if (is_ows(content.front()))
      return fail(http_error::obs_fold, i);
    if (++header_lines_ > limits_.max_headers)
      return fail(http_error::too_many_headers, i);
    const auto colon = content.find(':');
    if (colon == std::string_view::npos || colon == 0)
      return fail(http_error::bad_header, i);
    if (is_ows(content[colon - 1]))
      return fail(http_error::space_before_colon, i);
  }
  return {parse_status::need_more, i, {}, {}};
}

http_error http1_parser::check_start_line(std::string_view line) noexcept {
  if (dir_ == direction::request) {
    if (line == "PRI * HTTP/2.0") // RFC 9113 3.4: the client preface's first line
      return http_error::http2_preface;
    const auto sp1 = line.find(' ');
    const auto sp2 = line.rfind(' ');
    if (sp1 == std::string_view::npos || sp1 == 0)
      return line.empty() || sp1 == 0 ? http_error::bad_method : http_error::malformed;
    if (sp2 == sp1)
      return http_error::bad_version; // "GET /": HTTP/0.9 has no version and no headers.
    const auto method = line.substr(0, sp1);
    const auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const auto version = line.substr(sp2 + 1);
    // PRI exists only for HTTP/2's preface, which HTTP/1.x must not take for a request (RFC
    // 9113 3.4); llhttp half-knows it (a bare head passes, one with fields does not).
    if (!text::is_token(method) || method == "PRI")
      return http_error::bad_method;
    if (version != "HTTP/1.1" && version != "HTTP/1.0")
      return http_error::bad_version;
    if (target.size() > limits_.max_target_bytes)
      return http_error::target_too_long;
    if (target.empty() ||
        !std::all_of(target.begin(), target.end(), [](char c) { return c > 0x20 && c < 0x7f; }))
      return http_error::bad_target;
    // Offsets, not views: head_buf_ may still move while the header lines are appended.
    start_a_ = {0, method.size()};
    start_b_ = {sp1 + 1, target.size()};
    head_.version_minor = version.back() == '1' ? 1 : 0;
    return {};
  }
  // status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ]; "HTTP/1.1 200" (no SP)
  // is accepted too, as every client does.
  if (line.size() < 12 || !line.starts_with("HTTP/1.") || line[8] != ' ')
    return line.starts_with("HTTP/") ? http_error::bad_version : http_error::malformed;
  if (line[7] != '0' && line[7] != '1')
    return http_error::bad_version;
  const auto code = line.substr(9, 3);
  std::uint16_t status = 0;
  if (std::from_chars(code.data(), code.data() + 3, status).ptr != code.data() + 3 ||
      status < 100 || status > 599)
    return http_error::malformed;
  if (line.size() > 12 && line[12] != ' ')
    return http_error::malformed;
  const auto reason = line.size() > 13 ? line.substr(13) : std::string_view{};
  if (!text::all_field_bytes(reason))
    return http_error::malformed;
  head_.status = status;
  start_b_ = {line.size() > 13 ? 13 : line.size(), reason.size()};
  head_.version_minor = line[7] == '1' ? 1 : 0;
  return {};
}

http_error http1_parser::run_llhttp() noexcept {
  llhttp_reset(&llhttp_);
  llhttp_.data = this;
  headers_.clear();
  field_open_ = false;
  value_open_ = false;
  head_flags_ = 0;
  head_content_length_ = 0;
  head_method_ = 0;
  const auto err = llhttp_execute(&llhttp_, head_buf_.data(), head_buf_.size());
  if (err != HPE_OK && err != HPE_PAUSED_UPGRADE) {
    const char* pos = llhttp_get_error_pos(&llhttp_);
    const auto first_line = head_buf_.find('\n');
    const bool in_start_line =
        pos != nullptr && static_cast<std::size_t>(pos - head_buf_.data()) <= first_line;
    return map_llhttp(llhttp_, err, in_start_line, dir_);
  }
  if (headers_.size() != header_lines_)
    return http_error::malformed; // Our line count and llhttp's fields must agree.
  for (auto& h : headers_)
    h.value = trim(h.value);
  return {};
}

http_error http1_parser::decide_body() noexcept {
  const auto flags = head_flags_;
  auto& h = head_;
  h.headers = headers_;
  h.raw = head_buf_;
  if (dir_ == direction::request) {
    h.method = h.raw.substr(start_a_.first, start_a_.second);
    h.target = h.raw.substr(start_b_.first, start_b_.second);
  } else {
    h.reason = h.raw.substr(start_b_.first, start_b_.second);
  }
  bool has_te = false;
  for (const auto& f : headers_)
    if (iequals(f.name, "transfer-encoding")) {
      has_te = true;
      if (f.value.empty())
        return http_error::bad_transfer_encoding;
    }
  // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
  if (has_te && h.version_minor == 0)
    return http_error::bad_transfer_encoding;
  const bool chunked = (flags & F_CHUNKED) != 0;
  const bool has_cl = (flags & F_CONTENT_LENGTH) != 0;
  if (has_te && has_cl)
    return http_error::smuggling_cl_te;
  h.content_length = has_cl ? head_content_length_ : 0;
  if (dir_ == direction::request) {
    h.is_connect = head_method_ == HTTP_CONNECT;
    if (h.is_connect) {
      // A CONNECT request has no content (RFC 9110 9.3.6); a length would be ambiguous.
      if (has_te || h.content_length != 0)
        return http_error::malformed;
      h.body = body_kind::none;
      h.upgrade = true;
    } else if (has_te) {
      if (!chunked) // The final coding of a request must be chunked (RFC 9112 6.3).
        return http_error::bad_transfer_encoding;
      h.body = body_kind::chunked;
    } else {
      h.body = h.content_length != 0 ? body_kind::content_length : body_kind::none;
    }
    if (!h.is_connect)
      h.upgrade = (flags & F_UPGRADE) != 0 && (flags & F_CONNECTION_UPGRADE) != 0;
    if (h.version_minor == 1)
      if (const auto* e = h.find("expect"); e != nullptr && iequals(e->value, "100-continue"))
        h.expect_continue = true;
  } else {
    const auto s = h.status;
    if (s < 200) {
      h.body = body_kind::none;
      h.upgrade = s == 101;
    } else if (response_to_connect_ && s < 300) {
      h.body = body_kind::none;
      h.upgrade = true;
    } else if (response_to_head_ || s == 204 || s == 304) {
      h.body = body_kind::none;
    } else if (has_te) {
      h.body = chunked ? body_kind::chunked : body_kind::until_close;
    } else if (has_cl) {
      h.body = h.content_length != 0 ? body_kind::content_length : body_kind::none;
    } else {
      h.body = body_kind::until_close;
    }
  }
  if (h.body != body_kind::content_length)
    h.content_length = 0;
  h.keep_alive = h.version_minor == 1 ? (flags & F_CONNECTION_CLOSE) == 0
                                      : (flags & F_CONNECTION_KEEP_ALIVE) != 0;
  if (h.body == body_kind::until_close)
    h.keep_alive = false;
  if (limits_.max_body_bytes != 0 && h.content_length > limits_.max_body_bytes)
    return http_error::body_too_large;
  return {};
}

bool http1_parser::plain_request_line() const noexcept {
  if (dir_ != direction::request)
    return true;
  // The methods and target forms llhttp is known to take as they are: any other (an
  // extension method, an absolute-form target, CONNECT) goes to llhttp.
  const std::string_view raw(head_buf_);
  const auto method = raw.substr(start_a_.first, start_a_.second);
  const auto target = raw.substr(start_b_.first, start_b_.second);
  static constexpr std::array<std::string_view, 8> plain{"GET",    "HEAD",    "POST",  "PUT",
                                                         "DELETE", "OPTIONS", "PATCH", "TRACE"};
  return std::find(plain.begin(), plain.end(), method) != plain.end() &&
         (target.front() == '/' || target == "*");
}

bool http1_parser::note_trusted_field(std::string_view name, std::string_view value) noexcept {
  if (iequals(name, "content-length")) {
    std::uint64_t n = 0;
    const auto* end = value.data() + value.size();
    const auto [stop, ec] = std::from_chars(value.data(), end, n);
    if ((head_flags_ & F_CONTENT_LENGTH) != 0 || value.empty() || value.front() < '0' ||
        value.front() > '9' || ec != std::errc{} || stop != end)
      return false; // llhttp's errors (a sign, an overflow, a list), then
    head_flags_ |= F_CONTENT_LENGTH;
    head_content_length_ = n;
  } else if (iequals(name, "transfer-encoding")) {
    if ((head_flags_ & F_CHUNKED) != 0 || !iequals(value, "chunked"))
      return false;
    head_flags_ |= F_CHUNKED;
  } else if (iequals(name, "connection")) {
    if (iequals(value, "close"))
      head_flags_ |= F_CONNECTION_CLOSE;
    else if (iequals(value, "keep-alive"))
      head_flags_ |= F_CONNECTION_KEEP_ALIVE;
    else
      return false;
  } else if (iequals(name, "upgrade") || iequals(name, "proxy-connection")) {
    return false;
  }
  return true;
}

bool http1_parser::split_trusted() noexcept {
  headers_.clear();
  head_flags_ = 0;
  head_content_length_ = 0;
  head_method_ = 0;
  if (!plain_request_line())
    return false;
  // scan_head checked the lines: each ends in CRLF, has no other CR, and a header line has
  // a colon that is not its first byte. The start line and the final CRLF are skipped.
  // The list is sized once and filled in place (a push per field was 2 to 4% of a node's
  // samples at 128 HTTP/2 streams in flight, docs/bench-proxy.md, Run NE); on failure
  // run_llhttp starts it again.
  std::string_view rest(head_buf_);
  rest.remove_prefix(rest.find('\n') + 1);
  headers_.resize(header_lines_);
  std::size_t n = 0;
  while (rest.size() > 2) {
    if (n == header_lines_)
      return false;
    const auto eol = rest.find('\n');
    const auto line = rest.substr(0, eol - 1);
    rest.remove_prefix(eol + 1);
    const auto colon = line.find(':');
    const auto name = line.substr(0, colon);
    const auto value = trim(line.substr(colon + 1));
    headers_[n++] = {name, value};
    if (!note_trusted_field(name, value))
      return false;
  }
  return n == header_lines_;
}

parse_result http1_parser::adopt_head(std::string_view text,
                                      std::span<const header_span> spans) noexcept {
  if (state_ == state::failed)
    return {parse_status::error, 0, {}, error_};
  if (pending_reset_)
    start_message();
  if (state_ != state::start_line || !head_buf_.empty() || lead_bytes_ != 0)
    return fail(http_error::malformed, 0); // inside a message: never what a stream gives
  const auto eol = text.find("\r\n");
  if (eol == std::string_view::npos || !text.ends_with("\r\n\r\n"))
    return fail(http_error::malformed, 0);
  // The limits hold as for a head read from a socket, checked in the order scan_head
  // meets them (the start line, then line by line), before anything is copied.
  if (eol + 2 > limits_.max_head_bytes)
    return fail(http_error::header_too_large, 0);
  if (const auto e = check_start_line(text.substr(0, eol)); e != http_error{})
    return fail(e, 0);
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const auto& s = spans[i];
    // Each field lies in a header line: after the start line, before the final CRLF.
    if (s.name_at <= eol || s.name_len == 0 || s.value_at < std::uint64_t{s.name_at} + s.name_len ||
        std::uint64_t{s.value_at} + s.value_len > text.size() - 2)
      return fail(http_error::malformed, 0);
    const std::size_t line_end = std::uint64_t{s.value_at} + s.value_len + 2;
    if (line_end > limits_.max_head_bytes)
      return fail(http_error::header_too_large, 0);
    if (i + 1 > limits_.max_headers)
      return fail(http_error::too_many_headers, 0);
  }
  if (text.size() > limits_.max_head_bytes)
    return fail(http_error::header_too_large, 0);
  head_buf_.assign(text);
  state_ = state::headers;
  header_lines_ = spans.size();
  headers_.clear();
  head_flags_ = 0;
  head_content_length_ = 0;
  head_method_ = 0;
  bool trusted = plain_request_line();
  const std::string_view raw(head_buf_);
  headers_.resize(spans.size()); // filled in place, as split_trusted's
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const auto name = raw.substr(spans[i].name_at, spans[i].name_len);
    const auto value = raw.substr(spans[i].value_at, spans[i].value_len);
    headers_[i] = {name, value};
    trusted = trusted && note_trusted_field(name, value);
  }
  if (!trusted) // what its writer never writes (an extension method, say): llhttp decides
    if (const auto e = run_llhttp(); e != http_error{})
      return fail(e, 0);
  return framed_head(0);
}

parse_result http1_parser::finish_head(std::size_t consumed) noexcept {
  if (!trusted_ || !split_trusted())
    if (const auto e = run_llhttp(); e != http_error{})
      return fail(e, consumed);
  return framed_head(consumed);
}

parse_result http1_parser::framed_head(std::size_t consumed) noexcept {
  if (const auto e = decide_body(); e != http_error{})
    return fail(e, consumed);
  switch (head_.body) {
  case body_kind::none:
    state_ = state::done;
    break;
  case body_kind::content_length:
    remaining_ = head_.content_length;
    state_ = state::body_length;
    break;
  case body_kind::chunked:
    remaining_ = 0;
    chunk_line_ = 0;
    chunk_digits_ = 0;
    state_ = state::chunk_size;
    break;
  case body_kind::until_close:
    state_ = state::body_close;
    break;
  }
  return {parse_status::head, consumed, {}, {}};
}

parse_result http1_parser::scan_chunked(std::span<const char> in) noexcept {
  const std::size_t size = in.size();
  std::size_t i = 0;
  while (i < size && state_ != state::done) {
    const char c = in[i];
    switch (state_) {
    case state::chunk_size: {
      if (++chunk_line_ > limits_.max_chunk_line_bytes)
        return fail(http_error::bad_chunk, i);
      const int v = wire::hex_value(c);
      if (v >= 0) {
        // 15 hex digits (60 bits) is far beyond any real chunk and cannot overflow.
        if (++chunk_digits_ > 15)
          return fail(http_error::bad_chunk, i);
        remaining_ = remaining_ * 16 + static_cast<unsigned>(v);
      } else if (chunk_digits_ != 0 && c == ';') {
        state_ = state::chunk_ext;
      } else if (chunk_digits_ != 0 && c == '\r') {
        state_ = state::chunk_size_lf;
      } else {
        return fail(http_error::bad_chunk, i);
      }
      ++i;
      break;
    }
    case state::chunk_ext:
      if (++chunk_line_ > limits_.max_chunk_line_bytes)
        return fail(http_error::bad_chunk, i);
      if (c == '\r')
        state_ = state::chunk_size_lf;
      else if (c == '\t' || (c >= 0x20 && c < 0x7f))
        ; // Extensions are forwarded untouched; only their bytes and length are bounded.
      else
        return fail(http_error::bad_chunk, i);
      ++i;
      break;
    case state::chunk_size_lf:
      if (c != '\n')
        return fail(http_error::bad_chunk, i);
      ++i;
      if (remaining_ == 0) {
        state_ = state::trailer;
        trailer_bytes_ = 0;
        header_lines_ = 0;
        trailer_line_empty_ = true;
        trailer_cr_ = false;
        trailer_colon_ = false;
        trailer_line_len_ = 0;
      } else {
        body_bytes_ += remaining_;
        if (limits_.max_body_bytes != 0 && body_bytes_ > limits_.max_body_bytes)
          return fail(http_error::body_too_large, i);
        state_ = state::chunk_data;
      }
      break;
    case state::chunk_data: {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, size - i));
      remaining_ -= n;
      i += n;
      if (remaining_ == 0)
        state_ = state::chunk_data_cr;
      break;
    }
    case state::chunk_data_cr:
      if (c != '\r')
        return fail(http_error::bad_chunk, i);
      state_ = state::chunk_data_lf;
      ++i;
      break;
    case state::chunk_data_lf:
      if (c != '\n')
        return fail(http_error::bad_chunk, i);
      state_ = state::chunk_size;
      chunk_line_ = 0;
      chunk_digits_ = 0;
      remaining_ = 0;
      ++i;
      break;
    case state::trailer:
      if (++trailer_bytes_ > limits_.max_head_bytes)
        return fail(http_error::header_too_large, i);
      if (trailer_cr_) {
        if (c != '\n')
          return fail(http_error::bare_cr, i);
        ++i;
        if (trailer_line_empty_) {
          state_ = state::done;
          break;
        }
        if (!trailer_colon_)
          return fail(http_error::bad_header, i);
        if (++header_lines_ > limits_.max_headers)
          return fail(http_error::too_many_headers, i);
        note_trailer_line();
        trailer_line_empty_ = true;
        trailer_cr_ = false;
        trailer_colon_ = false;
        trailer_line_len_ = 0;
        break;
      }
      if (c == '\r') {
        trailer_cr_ = true;
      } else if (c == '\n') {
        return fail(http_error::bare_lf, i);
      } else if (trailer_colon_) {
        if (!is_field_byte(c))
          return fail(http_error::bad_header, i);
      } else if (c == ':') {
        if (trailer_line_empty_)
          return fail(http_error::bad_header, i);
        trailer_colon_ = true;
      } else if (is_ows(c)) {
        return fail(trailer_line_empty_ ? http_error::obs_fold : http_error::space_before_colon, i);
      } else if (!is_tchar(c)) {
        return fail(http_error::bad_header, i);
      }
      if (c != '\r') {
        trailer_line_empty_ = false;
        if (trailer_line_len_ < trailer_line_.size())
          trailer_line_[trailer_line_len_] = c;
        ++trailer_line_len_; // bounded by trailer_bytes_
      }
      ++i;
      break;
    default:
      return fail(http_error::malformed, i);
    }
  }
  if (i == 0)
    return {};
  return {parse_status::body, i, in.first(i), {}};
}

// --- forwarding -----------------------------------------------------------------------

std::size_t connection_options::lower_hash::operator()(std::string_view s) const noexcept {
  std::size_t h = 14695981039346656037ULL; // FNV-1a over the lower-cased bytes
  for (const char c : s)
    h = (h ^ static_cast<unsigned char>(lower(c))) * 1099511628211ULL;
  return h;
}

bool connection_options::lower_equal::operator()(std::string_view a,
                                                 std::string_view b) const noexcept {
  return iequals(a, b);
}

connection_options::connection_options(const message_head& h) noexcept {
  for (const auto& c : h.headers) {
    if (!iequals(c.name, "connection"))
      continue;
    for_each_token(c.value, [&](std::string_view token) {
      if (count_ < max_kept) {
        tokens_[count_++] = token;
        return;
      }
      try {
        if (many_.empty())
          many_.insert(tokens_.begin(), tokens_.end());
        many_.insert(token);
      } catch (...) {
        // Out of memory: a name missing from the set is not dropped from the forwarded
        // head (a hop-by-hop field passes on); nothing else is affected.
      }
    });
  }
}

bool connection_options::names(std::string_view field) const noexcept {
  if (!many_.empty())
    return many_.contains(field);
  for (std::size_t i = 0; i < count_; ++i)
    if (iequals(tokens_[i], field))
      return true;
  return false;
}

namespace {

bool is_hop_by_hop(const message_head& h, std::string_view name, const connection_options& named) {
  if (iequals(name, "connection") || iequals(name, "keep-alive") ||
      iequals(name, "proxy-connection") || iequals(name, "te") || iequals(name, "trailer"))
    return true;
  if (iequals(name, "upgrade"))
    return !h.upgrade;
  // Framing and Host are never dropped, whatever Connection says: dropping them would
  // change how the next hop delimits the body we forward raw.
  if (iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
      iequals(name, "host"))
    return false;
  return named.names(name);
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

/// Appends the fields of a head as append_header writes them, but a field whose line in
/// `raw` already reads exactly `name: value` CRLF goes out as that line, and consecutive
/// such lines in one append (most heads: all their lines, the ones the proxy wrote itself
/// always). The bytes are the same either way. flush() before anything else is appended.
class field_writer {
public:
  field_writer(std::string& out, std::string_view raw) : out_(out), raw_(raw) {}
  field_writer(const field_writer&) = delete;
  field_writer& operator=(const field_writer&) = delete;
  ~field_writer() = default;

  void add(const header& f) {
    const auto line = offset(f.name.data());
    const auto value = offset(f.value.data());
    const auto name_end = line + f.name.size();
    const auto end = value + f.value.size() + 2; // past the line's CRLF
    const bool as_read = line < raw_.size() && end <= raw_.size() && value == name_end + 2 &&
                         raw_[name_end] == ':' && raw_[name_end + 1] == ' ' &&
                         raw_[end - 2] == '\r' && raw_[end - 1] == '\n';
    if (!as_read) {
      flush();
      append_header(out_, f.name, f.value);
      return;
    }
    if (run_end_ != line) {
      flush();
      run_start_ = line;
    }
    run_end_ = end;
  }
  /// Writes the lines gathered so far (before a field written otherwise).
  void flush() {
    if (run_end_ > run_start_)
      out_.append(raw_.substr(run_start_, run_end_ - run_start_));
    run_start_ = run_end_ = no_run;
  }

private:
  static constexpr std::size_t no_run = static_cast<std::size_t>(-1);
  /// Where `p` is in raw_, or no_run when it is not in it (a head made of other views).
  std::size_t offset(const char* p) const {
    const auto at = reinterpret_cast<std::uintptr_t>(p);
    const auto base = reinterpret_cast<std::uintptr_t>(raw_.data());
    return at >= base && at - base <= raw_.size() ? at - base : no_run;
  }

  std::string& out_;
  std::string_view raw_;
  std::size_t run_start_ = no_run, run_end_ = no_run;
};

} // namespace

void write_forward_head(const message_head& h, const forward_options& opts, std::string& out) {
  const bool request = h.dir == direction::request;
  // The head as read, plus what forwarding adds (via, x-forwarded-*, the extra fields): one
  // allocation for a new buffer rather than a few as it grows.
  std::size_t more = 96 + opts.client_address.size() + opts.proto.size();
  for (const auto& f : opts.extra)
    more += f.name.size() + f.value.size() + 4;
  out.reserve(out.size() + h.raw.size() + more);
  const auto eol = h.raw.find("\r\n");
  auto start_line = h.raw.substr(0, eol == std::string_view::npos ? h.raw.size() : eol);
  if (!request && opts.as_http11 && h.version_minor == 0) {
    out.append("HTTP/1.1"); // a valid status line starts with "HTTP/1.0"
    start_line.remove_prefix(std::min<std::size_t>(start_line.size(), 8));
  }
  out.append(start_line);
  out.append("\r\n");
  const bool set_proto = request && !opts.proto.empty();
  const bool add_xff = request && !opts.client_address.empty();
  std::size_t last_xff = h.headers.size();
  if (add_xff)
    for (std::size_t i = 0; i < h.headers.size(); ++i)
      if (iequals(h.headers[i].name, "x-forwarded-for"))
        last_xff = i;
  const connection_options named(h);
  field_writer fields(out, h.raw);
  for (std::size_t i = 0; i < h.headers.size(); ++i) {
    const auto& f = h.headers[i];
    if (is_hop_by_hop(h, f.name, named))
      continue;
    if (set_proto && iequals(f.name, "x-forwarded-proto"))
      continue;
    if (i == last_xff) {
      fields.flush();
      out.append(f.name);
      out.append(": ");
      if (!f.value.empty()) {
        out.append(f.value);
        out.append(", ");
      }
      out.append(opts.client_address);
      out.append("\r\n");
      continue;
    }
    fields.add(f);
  }
  fields.flush();
  if (opts.add_via)
    out.append(h.version_minor == 1 ? "via: 1.1 starling\r\n" : "via: 1.0 starling\r\n");
  if (add_xff && last_xff == h.headers.size())
    append_header(out, "x-forwarded-for", opts.client_address);
  if (set_proto)
    append_header(out, "x-forwarded-proto", opts.proto);
  for (const auto& f : opts.extra)
    append_header(out, f.name, f.value);
  if (!request && opts.chunked)
    out.append("transfer-encoding: chunked\r\n");
  // A switch of protocols needs `Connection: upgrade` on every hop; a CONNECT tunnel does not.
  const bool switching = h.upgrade && (request ? !h.is_connect : h.status == 101);
  if (switching && !opts.close)
    out.append("connection: upgrade\r\n");
  else if (opts.close)
    out.append("connection: close\r\n");
  else if (opts.keep_alive)
    out.append("connection: keep-alive\r\n");
  out.append("\r\n");
}

void append_chunk(std::string& out, std::span<const char> data) {
  if (data.empty())
    return;
  std::array<char, 20> size{};
  const auto r = std::to_chars(size.data(), size.data() + size.size(), data.size(), 16);
  out.append(size.data(), r.ptr);
  out.append("\r\n");
  out.append(data.data(), data.size());
  out.append("\r\n");
}

void write_error_response(http_error reason, std::string& out, bool close,
                          std::string_view detail) {
  if (reason == http_error::http2_preface) {
    // RFC 9113 3.4 and 6.8: the server's preface (an empty SETTINGS frame), then GOAWAY
    // with last stream 0 and HTTP_1_1_REQUIRED (0xd); the connection closes after it.
    static constexpr char frames[] = {
        0, 0, 0, 0x4, 0, 0, 0, 0, 0,                           // SETTINGS, empty
        0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xd, // GOAWAY
    };
    out.append(frames, sizeof frames);
    return;
  }
  const auto status = status_of(reason);
  std::string_view phrase;
  switch (status) {
  case 400:
    phrase = "Bad Request";
    break;
  case 403:
    phrase = "Forbidden";
    break;
  case 404:
    phrase = "Not Found";
    break;
  case 413:
    phrase = "Content Too Large";
    break;
  case 414:
    phrase = "URI Too Long";
    break;
  case 431:
    phrase = "Request Header Fields Too Large";
    break;
  case 502:
    phrase = "Bad Gateway";
    break;
  case 503:
    phrase = "Service Unavailable";
    break;
  case 504:
    phrase = "Gateway Timeout";
    break;
  default:
    phrase = "Error";
    break;
  }
  const auto code = name(reason);
  const auto detail_len =
      static_cast<std::size_t>(std::count_if(detail.begin(), detail.end(), is_printable));
  // Body: "<phrase>: <code>[ (<detail>)]\n"
  const std::size_t body_len =
      phrase.size() + 2 + code.size() + (detail_len != 0 ? detail_len + 3 : 0) + 1;
  std::array<char, 8> status_text{};
  std::array<char, 24> length_text{};
  const auto st =
      std::to_chars(status_text.data(), status_text.data() + status_text.size(), status);
  const auto lt =
      std::to_chars(length_text.data(), length_text.data() + length_text.size(), body_len);
  out.append("HTTP/1.1 ");
  out.append(status_text.data(), st.ptr);
  out.append(" ");
  out.append(phrase);
  out.append("\r\ncontent-type: text/plain\r\ncontent-length: ");
  out.append(length_text.data(), lt.ptr);
  out.append("\r\nx-starling-error: ");
  out.append(code);
  out.append("\r\n");
  if (detail_len != 0) {
    // The detail in a field too, so that a calling node that turns this answer into a gRPC
    // status for its app (decision 0026) passes it on without reading the body.
    out.append("x-starling-error-detail: ");
    append_printable(out, detail, max_error_detail_bytes);
    out.append("\r\n");
  }
  if (close || is_framing_error(reason))
    out.append("connection: close\r\n");
  out.append("\r\n");
  out.append(phrase);
  out.append(": ");
  out.append(code);
  if (detail_len != 0) {
    out.append(" (");
    append_printable(out, detail);
    out.append(")");
  }
  out.append("\n");
}

std::string_view error_detail_of(const message_head& h) noexcept {
  const auto* f = h.find("x-starling-error-detail");
  if (f == nullptr || f->value.size() > max_error_detail_bytes ||
      !std::all_of(f->value.begin(), f->value.end(), is_printable))
    return {};
  return f->value;
}

std::uint16_t grpc_status_for_http(std::uint16_t http_status) noexcept {
  switch (http_status) {
  case 400:
    return 13; // INTERNAL
  case 401:
    return 16; // UNAUTHENTICATED
  case 403:
    return 7; // PERMISSION_DENIED
  case 404:
    return 12; // UNIMPLEMENTED
  case 429:
  case 502:
  case 503:
  case 504:
    return 14; // UNAVAILABLE
  default:
    return 2; // UNKNOWN
  }
}

void write_grpc_error_response(std::string_view reason, std::uint16_t grpc_status, std::string& out,
                               std::string_view detail) {
  const bool named = !reason.empty() && reason.size() <= 32 &&
                     std::all_of(reason.begin(), reason.end(),
                                 [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; });
  if (!named)
    reason = "error";
  std::array<char, 8> status_text{};
  const auto st =
      std::to_chars(status_text.data(), status_text.data() + status_text.size(), grpc_status);
  out.append("HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: ");
  out.append(status_text.data(), st.ptr);
  out.append("\r\ngrpc-message: ");
  // Percent-encoded as gRPC asks: printable ASCII as it is but '%' (%25); control bytes
  // dropped.
  const auto append_encoded = [&out](std::string_view text) {
    for (const char c : text) {
      if (c == '%')
        out.append("%25");
      else if (is_printable(c))
        out.push_back(c);
    }
  };
  out.append(reason);
  if (!detail.empty()) {
    out.append(" (");
    append_encoded(detail);
    out.append(")");
  }
  out.append("\r\nx-starling-error: ");
  out.append(reason);
  out.append("\r\ncontent-length: 0\r\n\r\n");
}

} // namespace starling::proxy
