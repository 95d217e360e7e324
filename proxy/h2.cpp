// HTTP/2 session over nghttp2 and the HTTP/1.1 <-> HTTP/2 conversions (h2.hpp).
//
// nghttp2 is used without I/O callbacks: nghttp2_session_mem_recv takes the peer's bytes,
// nghttp2_session_mem_send hands out frames. `receive` serializes what nghttp2 queued while
// receiving into `pending_` at once, because that is the only public way to learn that
// nghttp2 decided on a connection error (it queues a GOAWAY with an error code and keeps
// returning success); `take_output` then gives pending_ plus everything queued since.
// pending_ stops at limits::max_pending_output_bytes: a caller that cannot write (the peer
// reads nothing) leaves the rest in nghttp2's queue, whose flood limit then ends the
// connection.
// nghttp2 validates received fields (RFC 9113 8.2.1: no upper case names, no CR/LF/NUL,
// no connection-specific fields, pseudo-header rules, content-length against DATA); we
// keep that on and reset a stream for every field it would only ignore.
#include "proxy/h2.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <utility>

#include <nghttp2/nghttp2.h>

#include "proto/wire/hex.hpp"
#include "proxy/http_text.hpp"
#include "proxy/thread_cache.hpp"

namespace starling::proxy::h2 {

namespace {

using text::for_each_token;
using text::iequals;
using text::is_field_byte;
using text::is_tchar;
using text::lower;

constexpr std::array<std::string_view, 13> errc_names{
    "ok",        "protocol",     "internal",    "closed",    "stream_limit",    "going_away",
    "no_stream", "stream_ended", "buffer_full", "bad_field", "not_convertible", "too_large",
    "unknown",
};

/// Index of a remembered field in session::pseudo_ (offset at 2*i, length at 2*i+1).
enum slot : std::size_t { s_method, s_scheme, s_authority, s_path, s_host, s_count };
constexpr std::uint32_t absent = 0xffffffffU;

/// RFC 9113 6.5.2: the size of a field in a header list.
constexpr std::size_t field_overhead = 32;

/// Closed streams' states kept for reuse (as many as a peer may open at once by default, so
/// that 128 streams in flight do not allocate a state each), the buffer capacity one may
/// keep, and the capacity all of a session's spares may keep together (64 full buffers).
constexpr std::size_t max_spare_states = 256;
constexpr std::size_t max_spare_capacity = 64 * 1024;
constexpr std::size_t max_spare_bytes = 64 * max_spare_capacity;

using text::is_token;

/// A field value HTTP/1.1 can carry: HT, SP, VCHAR, obs-text; never CR, LF, NUL or other
/// controls, whatever an HTTP/2 peer sent.
bool is_h1_value(std::string_view s) noexcept { return text::all_field_bytes(s); }

/// Bytes of a request-target or authority: 0x21..0x7e.
bool is_visible(std::string_view s) noexcept {
  for (const char c : s)
    if (c < 0x21 || c > 0x7e)
      return false;
  return true;
}

bool has_upper(std::string_view s) noexcept {
  std::uint8_t any = 0;
  for (const char c : s)
    any |= text::char_class(c);
  return (any & text::upper_bit) != 0;
}

/// The fields HTTP/2 has no place for whatever the message says: connection-specific ones
/// (RFC 9113 8.2.2), Host (a pseudo-header instead) and Trailer.
bool is_h1_framing(std::string_view name) noexcept {
  return iequals(name, "connection") || iequals(name, "keep-alive") ||
         iequals(name, "proxy-connection") || iequals(name, "transfer-encoding") ||
         iequals(name, "upgrade") || iequals(name, "host") || iequals(name, "trailer");
}

/// True for an HTTP/1.1 header that HTTP/2 must not carry (RFC 9113 8.2.2) or that is
/// replaced by a pseudo-header (Host), or that the proxy drops as hop-by-hop (Trailer, as
/// write_forward_head does). TE is decided by the caller (kept only as "trailers").
bool is_h1_only(std::string_view name, const connection_options& named) noexcept {
  if (is_h1_framing(name))
    return true;
  if (iequals(name, "content-length"))
    return false; // framing: kept whatever Connection says (nghttp2 checks it against DATA)
  return named.names(name);
}

/// Appends `name` lower-cased to `arena` if needed; returns the lower-case view. The arena
/// has been reserved for every name, so appending never moves earlier views.
std::string_view lower_name(std::string& arena, std::string_view name) {
  if (!has_upper(name))
    return name;
  const auto at = arena.size();
  arena.resize(at + name.size());
  std::transform(name.begin(), name.end(), arena.begin() + static_cast<std::ptrdiff_t>(at), lower);
  return std::string_view(arena).substr(at, name.size());
}

std::size_t list_bytes(std::span<const field> fields) noexcept {
  std::size_t n = 0;
  for (const auto& f : fields)
    n += f.name.size() + f.value.size() + field_overhead;
  return n;
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

/// With `spans`: where the field line that ends `out` (from `line`, its name `name_len`
/// bytes long) lies, as offsets from `start`, the head's first byte. The value without
/// surrounding whitespace, as a parser reads it (joined cookies may end in a space).
void mark_field(std::vector<header_span>* spans, const std::string& out, std::size_t start,
                std::size_t line, std::size_t name_len) {
  if (spans == nullptr)
    return;
  const auto value_at = line + name_len + 2;
  const auto value = text::trim(std::string_view(out).substr(value_at, out.size() - 2 - value_at));
  spans->push_back({static_cast<std::uint32_t>(line - start), static_cast<std::uint32_t>(name_len),
                    static_cast<std::uint32_t>(value.data() - out.data() - start),
                    static_cast<std::uint32_t>(value.size())});
}

/// append_field, marked in `spans` (mark_field).
void append_marked(std::vector<header_span>* spans, std::string& out, std::size_t start,
                   std::string_view name, std::string_view value) {
  const auto line = out.size();
  append_field(out, name, value);
  mark_field(spans, out, start, line, name.size());
}

void append_number(std::string& out, std::uint64_t v) {
  std::array<char, 24> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  out.append(buf.data(), r.ptr);
}

/// Lower-case tchar names only: what an HTTP/2 field name may be and HTTP/1.1 can carry.
bool is_h2_name(std::string_view s) noexcept { return text::is_lower_token(s); }

/// About what an HTTP/1.1 head written from `h` takes (a little more, never less than the
/// fields' own bytes), so that it is written in one allocation rather than a growing few.
std::size_t h1_size_hint(const head& h, const forward_options& opts) noexcept {
  std::size_t n = 128 + h.method.size() + h.path.size() + h.authority.size() +
                  opts.client_address.size() + opts.proto.size();
  for (const auto& f : h.fields)
    n += f.name.size() + f.value.size() + 4;
  return n;
}

/// Fields written by to_h1_*: the ones of `h` minus framing and connection-specific ones,
/// cookies joined; x-forwarded-* handled as write_forward_head does for requests.
/// Returns false (after writing some) on a field HTTP/1.1 cannot carry.
bool write_h1_fields(const head& h, const forward_options& opts, bool request, std::string& out,
                     std::size_t start, std::vector<header_span>* spans) {
  auto mark = [&](std::size_t line, std::size_t name_len) {
    mark_field(spans, out, start, line, name_len);
  };
  auto field = [&](std::string_view name, std::string_view value) {
    append_marked(spans, out, start, name, value);
  };
  const bool set_proto = request && !opts.proto.empty();
  const bool add_xff = request && !opts.client_address.empty();
  std::size_t last_xff = h.fields.size();
  if (add_xff)
    for (std::size_t i = 0; i < h.fields.size(); ++i)
      if (h.fields[i].name == "x-forwarded-for")
        last_xff = i;
  bool cookies_written = false;
  for (std::size_t i = 0; i < h.fields.size(); ++i) {
    const auto& f = h.fields[i];
    if (!is_h2_name(f.name) || !is_h1_value(f.value))
      return false;
    if (f.name == "host" || f.name == "content-length" || f.name == "connection" ||
        f.name == "keep-alive" || f.name == "proxy-connection" || f.name == "transfer-encoding" ||
        f.name == "upgrade")
      continue;
    if (set_proto && f.name == "x-forwarded-proto")
      continue;
    if (request && f.name == "cookie") {
      // RFC 9113 8.2.3: HTTP/2 may split cookies; HTTP/1.1 wants one line.
      if (cookies_written)
        continue;
      cookies_written = true;
      const auto line = out.size();
      out.append("cookie: ");
      bool first = true;
      for (std::size_t j = i; j < h.fields.size(); ++j) {
        if (h.fields[j].name != "cookie")
          continue;
        if (!is_h1_value(h.fields[j].value))
          return false;
        if (!first)
          out.append("; ");
        out.append(h.fields[j].value);
        first = false;
      }
      out.append("\r\n");
      mark(line, 6);
      continue;
    }
    if (i == last_xff) {
      const auto line = out.size();
      out.append("x-forwarded-for: ");
      if (!f.value.empty()) {
        out.append(f.value);
        out.append(", ");
      }
      out.append(opts.client_address);
      out.append("\r\n");
      mark(line, 15);
      continue;
    }
    field(f.name, f.value);
  }
  if (opts.add_via)
    field("via", "2.0 starling");
  if (add_xff && last_xff == h.fields.size())
    field("x-forwarded-for", opts.client_address);
  if (set_proto)
    field("x-forwarded-proto", opts.proto);
  for (const auto& f : opts.extra)
    field(f.name, f.value);
  return true;
}

/// Runs `f`, turning an exception (std::bad_alloc from our buffers, or a listener that
/// broke its contract) into a fatal nghttp2 callback failure: none may unwind through C.
template <class F> auto guarded(F&& f) noexcept -> decltype(f()) {
  try {
    return f();
  } catch (...) {
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
}

/// nghttp2's memory (nghttp2_mem): blocks of up to 16 KiB in power-of-two classes from 32
/// bytes, kept for reuse in the thread's caches (thread_cache, one per class). nghttp2
/// allocates and frees several small blocks per stream (the stream, copies of header
/// fields, outbound items): they were about 5 of a node's 9.6 `malloc` calls per request
/// (docs/bench-proxy.md, Runs V and W). Each block starts with a header holding its
/// capacity and class; larger blocks come from malloc and go back to it. A class keeps at
/// most 128 KiB of free blocks (a 512-byte class then covers 256 streams' header copies
/// submitted in one turn), so a thread holds at most 1.25 MiB. Under AddressSanitizer
/// nothing is kept (every free goes to the allocator that checks use after free).
class block_pool {
public:
  static void* allocate(std::size_t size, void* /*user*/) noexcept {
    const auto k = class_of(size);
    if (k == large) {
      if (size > SIZE_MAX - header_bytes)
        return nullptr;
      auto* base = static_cast<std::byte*>(std::malloc(header_bytes + size));
      return base == nullptr ? nullptr : mark(base, size, large);
    }
    if (auto* base = kept[k].take())
      return base + header_bytes;
    auto* base = static_cast<std::byte*>(std::malloc(header_bytes + capacity(k)));
    return base == nullptr ? nullptr : mark(base, capacity(k), k);
  }
  static void release(void* ptr, void* /*user*/) noexcept {
    if (ptr == nullptr)
      return;
    auto* base = static_cast<std::byte*>(ptr) - header_bytes;
    const auto k = class_at(base);
    if (k == large || !keep)
      std::free(base);
    else
      kept[k].give(base); // freed there when the cache is full or gone
  }
  static void* zeroed(std::size_t n, std::size_t size, void* user) noexcept {
    if (size != 0 && n > SIZE_MAX / size)
      return nullptr;
    void* p = allocate(n * size, user);
    if (p != nullptr)
      std::memset(p, 0, n * size);
    return p;
  }
  static void* resize(void* ptr, std::size_t size, void* user) noexcept {
    if (ptr == nullptr)
      return allocate(size, user);
    if (size == 0) {
      release(ptr, user);
      return nullptr;
    }
    const auto have = capacity_at(static_cast<std::byte*>(ptr) - header_bytes);
    if (size <= have)
      return ptr;
    void* bigger = allocate(size, user);
    if (bigger == nullptr)
      return nullptr; // the old block stays valid, as realloc's
    std::memcpy(bigger, ptr, have);
    release(ptr, user);
    return bigger;
  }
  static nghttp2_mem* mem() noexcept {
    static nghttp2_mem m{nullptr, &allocate, &release, &zeroed, &resize};
    return &m;
  }

private:
  static constexpr std::size_t header_bytes = 16; // keeps the blocks 16-byte aligned
  static constexpr std::uint8_t classes = 10;     // 32 .. 16384
  static constexpr std::uint8_t large = 0xff;
  static constexpr std::size_t max_kept_bytes = 128 * 1024;
  static constexpr bool keep = reuse_freed_blocks;

  static constexpr std::size_t capacity(std::size_t k) { return std::size_t{32} << k; }
  static std::uint8_t class_of(std::size_t size) noexcept {
    for (std::uint8_t k = 0; k < classes; ++k)
      if (size <= capacity(k))
        return k;
    return large;
  }
  static void* mark(std::byte* base, std::size_t cap, std::uint8_t k) noexcept {
    std::memcpy(base, &cap, sizeof cap);
    base[sizeof cap] = static_cast<std::byte>(k);
    return base + header_bytes;
  }
  static std::size_t capacity_at(const std::byte* base) noexcept {
    std::size_t cap = 0;
    std::memcpy(&cap, base, sizeof cap);
    return cap;
  }
  static std::uint8_t class_at(const std::byte* base) noexcept {
    return static_cast<std::uint8_t>(base[sizeof(std::size_t)]);
  }

  /// A free block of class K (malloc's pointer, header included), owned: dropped by a full
  /// or gone cache, it is freed.
  struct free_block {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  template <std::size_t K> struct kept_block { std::unique_ptr<std::byte, free_block> base; };
  template <std::size_t K>
  using class_cache = thread_cache<kept_block<K>, max_kept_bytes / capacity(K)>;
  /// The caches of one class, reached by its number.
  struct class_ops {
    std::byte* (*take)() noexcept;
    void (*give)(std::byte* base) noexcept;
  };
  template <std::size_t K>
  static constexpr class_ops ops_of{
      []() noexcept { return class_cache<K>::take().base.release(); },
      [](std::byte* base) noexcept {
        class_cache<K>::give(kept_block<K>{std::unique_ptr<std::byte, free_block>{base}});
      }};
  template <std::size_t... K>
  static constexpr std::array<class_ops, classes> all_ops(std::index_sequence<K...>) {
    return {ops_of<K>...};
  }
  static const std::array<class_ops, classes> kept;
};

constexpr std::array<block_pool::class_ops, block_pool::classes> block_pool::kept =
    block_pool::all_ops(std::make_index_sequence<block_pool::classes>{});

} // namespace

std::string_view name(errc e) noexcept {
  const auto i = static_cast<std::size_t>(e);
  return i < errc_names.size() - 1 ? errc_names[i] : errc_names.back();
}

// --- session ----------------------------------------------------------------------------

struct session::nv_scratch {
  std::vector<nghttp2_nv> nv;

  /// `fields` as nghttp2_nv. nghttp2 copies names and values (no NO_COPY flags), so the
  /// views may die after the submit.
  const nghttp2_nv* of(std::span<const field> fields) {
    nv.clear();
    for (const auto& f : fields)
      add(f.name, f.value);
    return nv.data();
  }
  void add(std::string_view name, std::string_view value) {
    static char empty[] = "";
    auto* n = name.empty() ? empty : const_cast<char*>(name.data());
    auto* v = value.empty() ? empty : const_cast<char*>(value.data());
    nv.push_back({reinterpret_cast<std::uint8_t*>(n), reinterpret_cast<std::uint8_t*>(v),
                  name.size(), value.size(), NGHTTP2_NV_FLAG_NONE});
  }
};

/// What the session keeps per stream, from submit (client) or first HEADERS (server) until
/// nghttp2 closes the stream.
struct session::stream_state {
  /// Outgoing DATA; bytes [out_off, size) not yet framed. size - out_off <= max_buffered.
  std::string out;
  std::size_t out_off = 0;
  /// Outgoing DATA lent by the caller (lend_data), framed before anything else: `lent_len`
  /// bytes at `lent`. Never together with bytes in `out`.
  const char* lent = nullptr;
  std::size_t lent_len = 0;
  /// Outgoing bytes not yet framed: the loan's, or else the buffer's.
  [[nodiscard]] std::size_t pending() const noexcept {
    return lent_len != 0 ? lent_len : out.size() - out_off;
  }
  void drop_loan() noexcept {
    lent = nullptr;
    lent_len = 0;
  }
  /// Forgets everything still to send: buffered and lent bytes, trailers.
  void drop_outgoing() noexcept {
    out.clear();
    out_off = 0;
    drop_loan();
    trailers.clear();
  }
  /// Trailers to send after the data (name, value, name, value...), until framed.
  std::vector<std::string> trailers;
  void* user = nullptr;         ///< The caller's pointer (set_user).
  std::size_t unconsumed = 0;   ///< Delivered by on_data, not yet `consumed`.
  std::uint32_t reset_code = 0; ///< The code of our `reset`, if any.
  bool local_ended = false;     ///< No more send_data: end_stream given.
  bool has_provider = false;    ///< A data provider is attached (DATA flows from `out`).
  bool known = false;           ///< The listener knows the stream (gets on_reset/on_close).
  bool refused = false;         ///< Its head was refused: reset, nothing delivered.
  bool refusal_sent = false;    ///< The RST_STREAM for `refused` was submitted.
  bool final_head = false;      ///< The final head was delivered; next HEADERS: trailers.
  bool rst = false;             ///< RST_STREAM went either way (or `reset` was called).

  /// Back to a fresh state, keeping a bounded buffer capacity for reuse.
  void clear() noexcept {
    if (out.capacity() > max_spare_capacity)
      std::string().swap(out);
    drop_outgoing();
    user = nullptr;
    unconsumed = 0;
    reset_code = 0;
    local_ended = has_provider = known = refused = refusal_sent = final_head = rst = false;
  }
};

/// nghttp2's C callbacks; `user_data` is the session.
struct session::callbacks {
  static session& self(void* user) noexcept { return *static_cast<session*>(user); }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    return guarded([&]() -> int {
      auto& s = self(user);
      if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
      if (s.role_ == role::server && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        s.open_state(frame->hd.stream_id);
      s.block_.clear();
      s.refs_.clear();
      std::fill(std::begin(s.pseudo_), std::end(s.pseudo_), absent);
      s.block_status_ = 0;
      s.block_length_ = -1;
      s.block_bytes_ = 0;
      return 0;
    });
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                       std::uint8_t, void* user) {
    return guarded([&]() -> int {
      auto& s = self(user);
      if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
      auto* st = s.find(frame->hd.stream_id);
      if (st == nullptr || st->refused)
        return 0;
      s.block_bytes_ += namelen + valuelen + field_overhead;
      if (s.block_bytes_ > s.limits_.max_header_list_bytes) {
        st->refused = true; // reset when the block ends (on_frame_recv)
        return 0;
      }
      const std::string_view n(reinterpret_cast<const char*>(name), namelen);
      const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
      const auto off = static_cast<std::uint32_t>(s.block_.size());
      s.block_.append(n);
      s.block_.append(v);
      auto remember = [&](slot i) {
        s.pseudo_[2 * i] = off + static_cast<std::uint32_t>(namelen);
        s.pseudo_[2 * i + 1] = static_cast<std::uint32_t>(valuelen);
      };
      if (!n.empty() && n.front() == ':') {
        if (n == ":method")
          remember(s_method);
        else if (n == ":scheme")
          remember(s_scheme);
        else if (n == ":authority")
          remember(s_authority);
        else if (n == ":path")
          remember(s_path);
        else if (n == ":status") {
          unsigned st_code = 0;
          std::from_chars(v.data(), v.data() + v.size(), st_code);
          s.block_status_ = static_cast<std::uint16_t>(st_code);
        }
        return 0; // nghttp2 checked which pseudo-headers are allowed
      }
      if (n == "host")
        remember(s_host);
      else if (n == "content-length") {
        std::int64_t len = -1;
        const auto r = std::from_chars(v.data(), v.data() + v.size(), len);
        s.block_length_ = r.ec == std::errc{} ? len : -1;
      }
      s.refs_.push_back(off);
      s.refs_.push_back(static_cast<std::uint32_t>(namelen));
      s.refs_.push_back(static_cast<std::uint32_t>(valuelen));
      return 0;
    });
  }

  /// A field nghttp2 would only ignore (bad name byte, bad value): reset the stream with
  /// PROTOCOL_ERROR instead, so that no request goes on without a field it was sent with.
  static int on_invalid_header(nghttp2_session*, const nghttp2_frame*, const std::uint8_t*,
                               std::size_t, const std::uint8_t*, std::size_t, std::uint8_t, void*) {
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }

  static int on_frame_recv(nghttp2_session* ng, const nghttp2_frame* frame, void* user) {
    return guarded([&]() -> int {
      auto& s = self(user);
      const auto id = frame->hd.stream_id;
      switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        auto* st = s.find(id);
        if (st == nullptr)
          return 0;
        if (st->refused) {
          if (!st->refusal_sent) {
            st->refusal_sent = true;
            nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_PROTOCOL_ERROR);
          }
          return 0;
        }
        const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        s.deliver_head(id, *st, end);
        if (end && s.find(id) != nullptr)
          s.listener_.on_end(id);
        return 0;
      }
      case NGHTTP2_DATA: {
        auto* st = s.find(id);
        if (st != nullptr && !st->refused && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0)
          s.listener_.on_end(id);
        return 0;
      }
      case NGHTTP2_RST_STREAM:
        if (auto* st = s.find(id))
          st->rst = true;
        return 0;
      case NGHTTP2_GOAWAY:
        s.goaway_received_ = true;
        s.listener_.on_goaway(frame->goaway.last_stream_id, frame->goaway.error_code);
        return 0;
      default:
        return 0;
      }
    });
  }

  static int on_data_chunk(nghttp2_session* ng, std::uint8_t, std::int32_t id,
                           const std::uint8_t* data, std::size_t len, void* user) {
    return guarded([&]() -> int {
      auto& s = self(user);
      auto* st = s.find(id);
      if (st == nullptr || st->refused) {
        nghttp2_session_consume(ng, id, len); // nobody will: keep the windows open
        return 0;
      }
      st->unconsumed += len;
      s.listener_.on_data(id, std::span<const char>(reinterpret_cast<const char*>(data), len));
      return 0;
    });
  }

  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    auto& s = self(user);
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
      if (auto* st = s.find(frame->hd.stream_id))
        st->rst = true;
    } else if (frame->hd.type == NGHTTP2_GOAWAY) {
      s.goaway_sent_ = true;
      if (frame->goaway.error_code != NGHTTP2_NO_ERROR)
        s.error_goaway_sent_ = true;
    }
    return 0;
  }

  /// A request HEADERS that never went out (cancelled by `reset`, refused after GOAWAY).
  /// nghttp2 usually closes the stream itself (on_stream_close); this covers the case
  /// where the stream was never opened, so that every submitted stream gets its events.
  static int on_frame_not_send(nghttp2_session* ng, const nghttp2_frame* frame, int, void* user) {
    return guarded([&]() -> int {
      auto& s = self(user);
      const auto id = frame->hd.stream_id;
      if (frame->hd.type != NGHTTP2_HEADERS || s.role_ != role::client)
        return 0;
      auto* st = s.find(id);
      if (st == nullptr || nghttp2_session_find_stream(ng, id) != nullptr)
        return 0;
      s.listener_.on_reset(id, st->rst ? st->reset_code : refused_stream);
      s.listener_.on_close(id);
      s.release(id);
      return 0;
    });
  }

  static int on_stream_close(nghttp2_session* ng, std::int32_t id, std::uint32_t code, void* user) {
    return guarded([&]() -> int {
      auto& s = self(user);
      auto* st = s.find(id);
      if (st == nullptr)
        return 0;
      if (st->unconsumed != 0) // what the caller will never consume now
        nghttp2_session_consume_connection(ng, st->unconsumed);
      st->unconsumed = 0;
      if (st->known) {
        if (code != NGHTTP2_NO_ERROR || st->rst)
          s.listener_.on_reset(id, code);
        s.listener_.on_close(id);
      }
      s.release(id);
      return 0;
    });
  }

  static ssize_t read_data(nghttp2_session* ng, std::int32_t id, std::uint8_t* /*buf*/,
                           std::size_t length, std::uint32_t* flags, nghttp2_data_source*,
                           void* user) {
    return guarded([&]() -> ssize_t {
      auto& s = self(user);
      auto* st = s.find(id);
      if (st == nullptr)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
      const std::size_t avail = st->pending();
      const std::size_t n = std::min(length, avail);
      // The payload goes from the stream's buffer straight to the output (send_data_frame),
      // not through nghttp2's frame buffer: one copy less per byte.
      if (n != 0)
        *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
      if (n == avail && st->local_ended) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (!st->trailers.empty()) {
          *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
          s.nv_->nv.clear();
          for (std::size_t i = 0; i + 1 < st->trailers.size(); i += 2)
            s.nv_->add(st->trailers[i], st->trailers[i + 1]);
          const int rv = nghttp2_submit_trailer(ng, id, s.nv_->nv.data(), s.nv_->nv.size());
          st->trailers.clear();
          if (rv != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        return static_cast<ssize_t>(n);
      }
      if (n == 0)
        return NGHTTP2_ERR_DEFERRED; // resumed by send_data/end_stream
      return static_cast<ssize_t>(n);
    });
  }
  /// A DATA frame read_data left uncopied: its header, then `length` bytes of the stream's
  /// buffer, appended to the output drain() is filling. At drain's limit, later (nghttp2
  /// calls again with the same frame).
  static int send_data_frame(nghttp2_session*, nghttp2_frame* frame, const std::uint8_t* framehd,
                             std::size_t length, nghttp2_data_source*, void* user) {
    return guarded([&]() -> int {
      auto& s = self(user);
      auto* st = s.find(frame->hd.stream_id);
      if (st == nullptr || length > st->pending())
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
      if (s.drain_out_ == nullptr || s.drain_out_->size() >= s.drain_limit_)
        return NGHTTP2_ERR_WOULDBLOCK;
      auto& out = *s.drain_out_;
      out.append(reinterpret_cast<const char*>(framehd), 9);
      const std::size_t pad = frame->data.padlen;
      if (pad > 0)
        out.push_back(static_cast<char>(pad - 1));
      if (st->lent_len != 0) { // from the caller's memory (lend_data)
        out.append(st->lent, length);
        st->lent += length;
        st->lent_len -= length;
      } else {
        out.append(st->out, st->out_off, length);
        st->out_off += length;
        if (st->out_off == st->out.size()) {
          st->out.clear();
          st->out_off = 0;
        }
      }
      if (pad > 1)
        out.append(pad - 1, '\0');
      return 0;
    });
  }
};

session::session(role r, limits lim, listener& l)
    : role_(r), limits_(lim), listener_(l), nv_(std::make_unique<nv_scratch>()) {
  limits_.max_frame_size = std::clamp<std::uint32_t>(limits_.max_frame_size, 16384, 16777215);
  limits_.initial_stream_window =
      std::min<std::uint32_t>(limits_.initial_stream_window, NGHTTP2_MAX_WINDOW_SIZE);
  limits_.connection_window = std::clamp<std::uint32_t>(
      limits_.connection_window, NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE, NGHTTP2_MAX_WINDOW_SIZE);
  std::fill(std::begin(pseudo_), std::end(pseudo_), absent);

  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0)
    throw std::bad_alloc();
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &callbacks::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &callbacks::on_header);
  nghttp2_session_callbacks_set_on_invalid_header_callback(cbs, &callbacks::on_invalid_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &callbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &callbacks::on_frame_send);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, &callbacks::on_frame_not_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &callbacks::on_stream_close);
  nghttp2_session_callbacks_set_send_data_callback(cbs, &callbacks::send_data_frame);
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cbs);
    throw std::bad_alloc();
  }
  // The caller reopens windows with `consumed` once data has left the proxy.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  // Until the peer's SETTINGS arrive (RFC 9113 6.5.2 recommends at least 100).
  nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
  // Flood limits, explicit rather than nghttp2's defaults (equal today), so that they are
  // ours to see and test.
  nghttp2_option_set_stream_reset_rate_limit(opt, limits_.max_resets_burst,
                                             limits_.max_resets_per_second);
  nghttp2_option_set_max_continuations(opt, limits_.max_continuations);
  nghttp2_option_set_max_outbound_ack(opt, limits_.max_queued_answers);
  const int rv = r == role::client
                     ? nghttp2_session_client_new3(&ng_, cbs, this, opt, block_pool::mem())
                     : nghttp2_session_server_new3(&ng_, cbs, this, opt, block_pool::mem());
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0)
    throw std::bad_alloc();

  std::array<nghttp2_settings_entry, 5> iv{{
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, limits_.initial_stream_window},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, limits_.max_frame_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits_.max_header_list_bytes},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  }};
  // ENABLE_PUSH is the client's to send; a server has nothing to say about it.
  const std::size_t n = r == role::client ? iv.size() : iv.size() - 1;
  if (nghttp2_submit_settings(ng_, NGHTTP2_FLAG_NONE, iv.data(), n) != 0 ||
      nghttp2_session_set_local_window_size(
          ng_, NGHTTP2_FLAG_NONE, 0, static_cast<std::int32_t>(limits_.connection_window)) != 0) {
    nghttp2_session_del(ng_);
    throw std::bad_alloc();
  }
}

session::~session() { nghttp2_session_del(ng_); }

session::stream_state* session::find(std::int32_t id) const noexcept {
  // Callbacks come in runs for one stream (every field of a header block, then the frame):
  // the last hit answers most lookups without hashing.
  if (id == last_id_ && last_ != nullptr)
    return last_;
  const auto it = streams_.find(id);
  if (it == streams_.end())
    return nullptr;
  last_id_ = id;
  last_ = it->second.get();
  return last_;
}

session::stream_state& session::open_state(std::int32_t id) {
  std::unique_ptr<stream_state> st;
  if (!spare_.empty()) {
    st = std::move(spare_.back());
    spare_.pop_back();
    spare_bytes_ -= st->out.capacity();
  } else {
    st = std::make_unique<stream_state>();
  }
  auto& ref = *st;
  streams_[id] = std::move(st);
  last_id_ = id;
  last_ = &ref;
  return ref;
}

void session::release(std::int32_t id) {
  const auto it = streams_.find(id);
  if (it == streams_.end())
    return;
  auto st = std::move(it->second);
  streams_.erase(it);
  if (last_ == st.get())
    last_ = nullptr;
  if (spare_.size() < max_spare_states) {
    st->clear();
    if (spare_bytes_ + st->out.capacity() > max_spare_bytes)
      std::string().swap(st->out);
    spare_bytes_ += st->out.capacity();
    spare_.push_back(std::move(st));
  }
}

void session::deliver_head(std::int32_t id, stream_state& st, bool end_stream) {
  fields_.clear();
  const std::string_view block(block_);
  for (std::size_t i = 0; i + 3 <= refs_.size(); i += 3)
    fields_.push_back({block.substr(refs_[i], refs_[i + 1]),
                       block.substr(refs_[i] + refs_[i + 1], refs_[i + 2])});
  const bool request_head = role_ == role::server;
  if (st.final_head) {
    listener_.on_trailers(id, fields_);
    return;
  }
  auto get = [&](slot i) {
    return pseudo_[2 * i] == absent ? std::string_view{}
                                    : block.substr(pseudo_[2 * i], pseudo_[2 * i + 1]);
  };
  head h;
  h.fields = fields_;
  h.content_length = block_length_;
  h.end_stream = end_stream;
  if (request_head) {
    h.method = get(s_method);
    h.scheme = get(s_scheme);
    h.authority = pseudo_[2 * s_authority] != absent ? get(s_authority) : get(s_host);
    h.path = get(s_path);
    st.final_head = true;
    st.known = true;
  } else {
    h.status = block_status_;
    st.final_head = !h.is_interim();
  }
  listener_.on_head(id, h);
}

errc session::receive(std::span<const char> bytes) {
  if (failed_ || nghttp2_session_want_read(ng_) == 0)
    return errc::closed;
  const auto rv = nghttp2_session_mem_recv(ng_, reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                           bytes.size());
  if (rv < 0) {
    // Fatal: nghttp2 queued nothing for these (bad client magic, flooding, a callback
    // failure), so say goodbye ourselves.
    const bool local = rv == NGHTTP2_ERR_CALLBACK_FAILURE || rv == NGHTTP2_ERR_NOMEM;
    nghttp2_session_terminate_session(ng_, local ? NGHTTP2_INTERNAL_ERROR : NGHTTP2_PROTOCOL_ERROR);
    drain(pending_, limits_.max_pending_output_bytes);
    failed_ = true;
    return local ? errc::internal : errc::protocol;
  }
  drain(pending_, limits_.max_pending_output_bytes);
  if (failed_)
    return errc::internal;
  if (error_goaway_sent_ && !terminated_by_caller_)
    return errc::protocol; // nghttp2 found a connection error and queued the GOAWAY
  return errc::ok;
}

void session::drain(std::string& out, std::size_t limit) {
  if (failed_)
    return;
  // DATA frames reach `out` inside mem_send (callbacks::send_data_frame), in their turn.
  // (Saved and restored: a listener called meanwhile may drain again.)
  auto* const outer_out = std::exchange(drain_out_, &out);
  const auto outer_limit = std::exchange(drain_limit_, limit);
  while (out.size() < limit) {
    const std::uint8_t* data = nullptr;
    const auto n = nghttp2_session_mem_send(ng_, &data);
    if (n < 0) {
      failed_ = true; // out of memory or a callback failure while sending: nothing to save
      break;
    }
    if (n == 0)
      break;
    out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
  drain_out_ = outer_out;
  drain_limit_ = outer_limit;
}

bool session::wants_write() const noexcept {
  return !pending_.empty() || (!failed_ && nghttp2_session_want_write(ng_) != 0);
}

void session::take_output(std::string& out) {
  if (out.empty()) {
    out.swap(pending_);
  } else {
    out.append(pending_);
    pending_.clear();
  }
  drain(out);
}

bool session::is_done() const noexcept {
  if (!pending_.empty())
    return false;
  return failed_ || (nghttp2_session_want_read(ng_) == 0 && nghttp2_session_want_write(ng_) == 0);
}

bool session::can_submit() const noexcept {
  if (role_ != role::client || failed_ || goaway_sent_ || goaway_received_ ||
      nghttp2_session_check_request_allowed(ng_) == 0)
    return false;
  const auto max =
      nghttp2_session_get_remote_settings(ng_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return streams_.size() < max;
}

submitted session::submit_request(std::span<const field> fields, bool end_stream) {
  if (role_ != role::client)
    return {0, errc::internal};
  if (failed_)
    return {0, errc::closed};
  if (goaway_sent_ || goaway_received_ || nghttp2_session_check_request_allowed(ng_) == 0)
    return {0, errc::going_away};
  if (!can_submit())
    return {0, errc::stream_limit};
  if (fields.empty())
    return {0, errc::bad_field};
  nghttp2_data_provider prd{};
  prd.read_callback = &callbacks::read_data;
  const auto* nv = nv_->of(fields);
  const std::int32_t id =
      nghttp2_submit_request(ng_, nullptr, nv, fields.size(), end_stream ? nullptr : &prd, nullptr);
  if (id < 0)
    return {0, id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? errc::going_away
               : id == NGHTTP2_ERR_INVALID_ARGUMENT      ? errc::bad_field
                                                         : errc::internal};
  auto& st = open_state(id);
  st.known = true;
  st.local_ended = end_stream;
  st.has_provider = !end_stream;
  return {id, errc::ok};
}

errc session::submit_response(std::int32_t stream, std::span<const field> fields, bool end_stream) {
  if (role_ != role::server)
    return errc::internal;
  if (failed_)
    return errc::closed;
  auto* st = find(stream);
  if (st == nullptr)
    return errc::no_stream;
  if (fields.empty() || fields.front().name != ":status" || fields.front().value.empty())
    return errc::bad_field;
  const auto* nv = nv_->of(fields);
  int rv = 0;
  if (fields.front().value.front() == '1') {
    if (end_stream)
      return errc::bad_field;
    rv =
        nghttp2_submit_headers(ng_, NGHTTP2_FLAG_NONE, stream, nullptr, nv, fields.size(), nullptr);
  } else {
    if (st->has_provider)
      return errc::bad_field; // a final response was submitted already
    nghttp2_data_provider prd{};
    prd.read_callback = &callbacks::read_data;
    // Data given before the response (send_data) still goes out after it.
    const bool body = !end_stream || st->pending() != 0;
    rv = nghttp2_submit_response(ng_, stream, nv, fields.size(), body ? &prd : nullptr);
    if (rv == 0) {
      st->has_provider = body;
      st->local_ended = st->local_ended || end_stream;
    }
  }
  if (rv == 0)
    return errc::ok;
  return rv == NGHTTP2_ERR_NOMEM           ? errc::internal
         : rv == NGHTTP2_ERR_STREAM_CLOSED ? errc::no_stream
                                           : errc::bad_field;
}

std::pair<session::stream_state*, errc> session::sendable(std::int32_t stream) const noexcept {
  if (failed_)
    return {nullptr, errc::closed};
  auto* st = find(stream);
  if (st == nullptr)
    return {nullptr, errc::no_stream};
  if (st->local_ended)
    return {nullptr, errc::stream_ended};
  return {st, errc::ok};
}

errc session::send_data(std::int32_t stream, std::span<const char> bytes, bool end_stream) {
  const auto [st, e] = sendable(stream);
  if (st == nullptr)
    return e;
  if (bytes.size() > room(stream))
    return errc::buffer_full;
  if (st->out_off != 0) { // keep the buffer within max_buffered_bytes
    st->out.erase(0, st->out_off);
    st->out_off = 0;
  }
  st->out.append(bytes.data(), bytes.size());
  st->local_ended = end_stream;
  if (st->has_provider && (!bytes.empty() || end_stream))
    nghttp2_session_resume_data(ng_, stream); // fails harmlessly when not deferred
  return errc::ok;
}

errc session::lend_data(std::int32_t stream, std::span<const char> bytes) {
  const auto [st, e] = sendable(stream);
  if (st == nullptr)
    return e;
  if (st->pending() != 0)
    return errc::buffer_full;
  if (bytes.empty())
    return errc::ok;
  st->lent = bytes.data();
  st->lent_len = bytes.size();
  if (st->has_provider)
    nghttp2_session_resume_data(ng_, stream); // fails harmlessly when not deferred
  return errc::ok;
}

std::size_t session::lent(std::int32_t stream) const noexcept {
  const auto* st = find(stream);
  return st == nullptr ? 0 : st->lent_len;
}

void session::unlend(std::int32_t stream) noexcept {
  if (auto* st = find(stream))
    st->drop_loan();
}

errc session::end_stream(std::int32_t stream, std::span<const field> trailers) {
  const auto [st, e] = sendable(stream);
  if (st == nullptr)
    return e;
  if (list_bytes(trailers) > limits_.max_header_list_bytes)
    return errc::too_large;
  for (const auto& f : trailers)
    if (!is_h2_name(f.name) || !is_h1_value(f.value))
      return errc::bad_field;
  for (const auto& f : trailers) {
    st->trailers.emplace_back(f.name);
    st->trailers.emplace_back(f.value);
  }
  st->local_ended = true;
  if (st->has_provider)
    nghttp2_session_resume_data(ng_, stream);
  return errc::ok;
}

std::size_t session::buffered(std::int32_t stream) const noexcept {
  const auto* st = find(stream);
  return st == nullptr ? 0 : st->pending();
}

std::size_t session::room(std::int32_t stream) const noexcept {
  const auto* st = find(stream);
  if (st == nullptr || st->local_ended || st->lent_len != 0)
    return 0;
  const auto used = st->out.size() - st->out_off;
  return used >= limits_.max_buffered_bytes ? 0 : limits_.max_buffered_bytes - used;
}

errc session::reset(std::int32_t stream, std::uint32_t code) {
  if (failed_)
    return errc::closed;
  auto* st = find(stream);
  if (st == nullptr)
    return errc::no_stream;
  st->rst = true;
  st->reset_code = code;
  st->local_ended = true;
  st->drop_outgoing();
  return nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, stream, code) == 0 ? errc::ok
                                                                              : errc::internal;
}

void session::consumed(std::int32_t stream, std::size_t n) {
  if (failed_)
    return;
  auto* st = find(stream);
  if (st == nullptr)
    return;
  n = std::min(n, st->unconsumed);
  st->unconsumed -= n;
  if (n != 0)
    nghttp2_session_consume(ng_, stream, n);
}

void session::goaway(std::uint32_t code) {
  if (failed_)
    return;
  if (code == no_error) {
    // The last stream the peer opened that we processed: those complete, later ones are
    // refused (the peer retries them elsewhere).
    const auto last = nghttp2_session_get_last_proc_stream_id(ng_);
    if (nghttp2_submit_goaway(ng_, NGHTTP2_FLAG_NONE, last, code, nullptr, 0) == 0)
      goaway_sent_ = true;
    return;
  }
  terminated_by_caller_ = true;
  goaway_sent_ = true;
  nghttp2_session_terminate_session(ng_, code);
}

void* session::user(std::int32_t stream) const noexcept {
  const auto* st = find(stream);
  return st == nullptr ? nullptr : st->user;
}

errc session::set_user(std::int32_t stream, void* p) noexcept {
  auto* st = find(stream);
  if (st == nullptr)
    return errc::no_stream;
  st->user = p;
  return errc::ok;
}

// --- conversions -------------------------------------------------------------------------

errc to_h2_request(const message_head& h, const forward_options& opts, field_list& out,
                   std::size_t max_list_bytes) {
  out.arena.clear();
  out.fields.clear();
  if (h.dir != direction::request)
    return errc::bad_field;
  if (h.is_connect || h.upgrade)
    return errc::not_convertible;
  std::string_view authority;
  std::string_view path;
  bool path_needs_slash = false;
  const std::string_view target = h.target;
  if (!target.empty() && target.front() == '/') {
    path = target;
  } else if (target == "*") {
    if (h.method != "OPTIONS")
      return errc::bad_field;
    path = target;
  } else {
    // absolute-form (RFC 9112 3.2.2): the target's authority wins over Host.
    const auto colon = target.find("://");
    if (colon == std::string_view::npos)
      return errc::bad_field;
    const auto scheme = target.substr(0, colon);
    if (!iequals(scheme, "http") && !iequals(scheme, "https"))
      return errc::bad_field;
    auto rest = target.substr(colon + 3);
    const auto end = std::min(rest.find('/'), rest.find('?'));
    authority = rest.substr(0, end);
    if (const auto at = authority.rfind('@'); at != std::string_view::npos)
      authority.remove_prefix(at + 1); // userinfo is not part of :authority
    if (authority.empty())
      return errc::bad_field;
    path = end == std::string_view::npos ? std::string_view("/") : rest.substr(end);
    path_needs_slash = !path.empty() && path.front() == '?';
  }
  if (authority.empty())
    if (const auto* host = h.find("host"))
      authority = host->value;

  const bool set_proto = !opts.proto.empty();
  const bool add_xff = !opts.client_address.empty();
  std::size_t last_xff = h.headers.size();
  if (add_xff)
    for (std::size_t i = 0; i < h.headers.size(); ++i)
      if (iequals(h.headers[i].name, "x-forwarded-for"))
        last_xff = i;
  // Reserve everything the arena will hold, so that its views never move.
  std::size_t need = path_needs_slash ? path.size() + 1 : 0;
  for (const auto& f : h.headers)
    need += f.name.size();
  if (last_xff != h.headers.size())
    need += h.headers[last_xff].value.size() + 2 + opts.client_address.size();
  out.arena.reserve(need);
  out.fields.reserve(h.headers.size() + 8); // the pseudo-fields, via, x-forwarded-*, extras

  out.fields.push_back({":method", h.method});
  out.fields.push_back({":scheme", set_proto ? opts.proto : std::string_view("http")});
  if (!authority.empty())
    out.fields.push_back({":authority", authority});
  if (path_needs_slash) {
    const auto at = out.arena.size();
    out.arena.push_back('/');
    out.arena.append(path);
    path = std::string_view(out.arena).substr(at, path.size() + 1);
  }
  out.fields.push_back({":path", path});
  const connection_options named(h);
  for (std::size_t i = 0; i < h.headers.size(); ++i) {
    const auto& f = h.headers[i];
    if (is_h1_only(f.name, named))
      continue;
    if (iequals(f.name, "te")) {
      if (!iequals(f.value, "trailers"))
        continue;
    }
    if (set_proto && iequals(f.name, "x-forwarded-proto"))
      continue;
    const auto n = lower_name(out.arena, f.name);
    if (i == last_xff) {
      const auto at = out.arena.size();
      if (!f.value.empty()) {
        out.arena.append(f.value);
        out.arena.append(", ");
      }
      out.arena.append(opts.client_address);
      out.fields.push_back({n, std::string_view(out.arena).substr(at)});
      continue;
    }
    out.fields.push_back({n, f.value});
  }
  if (opts.add_via)
    out.fields.push_back({"via", h.version_minor == 1 ? "1.1 starling" : "1.0 starling"});
  if (add_xff && last_xff == h.headers.size())
    out.fields.push_back({"x-forwarded-for", opts.client_address});
  if (set_proto)
    out.fields.push_back({"x-forwarded-proto", opts.proto});
  for (const auto& f : opts.extra)
    out.fields.push_back(f);
  if (list_bytes(out.fields) > max_list_bytes) {
    out.fields.clear();
    return errc::too_large;
  }
  return errc::ok;
}

errc to_h2_response(const message_head& h, const forward_options& opts, field_list& out,
                    std::size_t max_list_bytes) {
  out.arena.clear();
  out.fields.clear();
  if (h.dir != direction::response || h.status < 100 || h.status > 999)
    return errc::bad_field;
  if (h.status == 101 || h.upgrade)
    return errc::not_convertible;
  std::size_t need = 3;
  for (const auto& f : h.headers)
    need += f.name.size();
  out.arena.reserve(need);
  out.fields.reserve(h.headers.size() + 2); // :status, via
  append_number(out.arena, h.status);
  out.fields.push_back({":status", std::string_view(out.arena).substr(0, 3)});
  const connection_options named(h);
  for (const auto& f : h.headers) {
    if (is_h1_only(f.name, named) || iequals(f.name, "te"))
      continue;
    out.fields.push_back({lower_name(out.arena, f.name), f.value});
  }
  if (opts.add_via)
    out.fields.push_back({"via", h.version_minor == 1 ? "1.1 starling" : "1.0 starling"});
  for (const auto& f : opts.extra)
    out.fields.push_back(f);
  if (list_bytes(out.fields) > max_list_bytes) {
    out.fields.clear();
    return errc::too_large;
  }
  return errc::ok;
}

errc to_h2_trailers(std::string_view section, field_list& out, std::size_t max_list_bytes) {
  out.arena.clear();
  out.fields.clear();
  out.arena.reserve(section.size()); // every lower-cased name fits: views never move
  const auto is_ows = [](char c) { return c == ' ' || c == '\t'; };
  while (!section.empty()) {
    const auto end = section.find("\r\n");
    auto line = section.substr(0, end);
    section.remove_prefix(end == std::string_view::npos ? section.size() : end + 2);
    if (line.empty() || line == "\r")
      continue; // the section's final CRLF, whole or its CR alone
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      out.fields.clear();
      return errc::bad_field;
    }
    const auto name = line.substr(0, colon);
    auto value = line.substr(colon + 1);
    while (!value.empty() && is_ows(value.front()))
      value.remove_prefix(1);
    while (!value.empty() && is_ows(value.back()))
      value.remove_suffix(1);
    if (is_h1_framing(name) || iequals(name, "content-length") || iequals(name, "te"))
      continue;
    out.fields.push_back({lower_name(out.arena, name), value});
  }
  if (list_bytes(out.fields) > max_list_bytes) {
    out.fields.clear();
    return errc::too_large;
  }
  return errc::ok;
}

h1_written to_h1_request(const head& h, const forward_options& opts, std::string& out,
                         std::vector<header_span>* spans) {
  const auto start = out.size();
  if (spans != nullptr)
    spans->clear();
  if (h.method == "CONNECT")
    return {errc::not_convertible, body_kind::none};
  if (!is_token(h.method) || h.path.empty() || !is_visible(h.path) || !is_visible(h.authority))
    return {errc::bad_field, body_kind::none};
  out.reserve(start + h1_size_hint(h, opts)); // once the head is known to be convertible
  out.append(h.method);
  out.push_back(' ');
  out.append(h.path);
  out.append(" HTTP/1.1\r\n");
  // Each line below is one field: where it lies goes into spans (when asked).
  auto field = [&](std::string_view name, std::string_view value) {
    append_marked(spans, out, start, name, value);
  };
  field("host", h.authority);
  if (!write_h1_fields(h, opts, true, out, start, spans)) {
    out.resize(start);
    if (spans != nullptr)
      spans->clear();
    return {errc::bad_field, body_kind::none};
  }
  body_kind body = body_kind::none;
  if (h.content_length >= 0) {
    const auto line = out.size();
    out.append("content-length: ");
    append_number(out, static_cast<std::uint64_t>(h.content_length));
    out.append("\r\n");
    mark_field(spans, out, start, line, 14);
    body = h.content_length > 0 ? body_kind::content_length : body_kind::none;
  } else if (!h.end_stream) {
    field("transfer-encoding", "chunked");
    body = body_kind::chunked;
  }
  if (opts.close)
    field("connection", "close");
  out.append("\r\n");
  return {errc::ok, body};
}

h1_written to_h1_response(const head& h, bool head_request, const forward_options& opts,
                          std::string& out) {
  const auto start = out.size();
  if (h.status < 100 || h.status > 999)
    return {errc::bad_field, body_kind::none};
  out.reserve(start + h1_size_hint(h, opts));
  out.append("HTTP/1.1 ");
  append_number(out, h.status);
  out.push_back(' ');
  out.append(reason_phrase(h.status));
  out.append("\r\n");
  if (!write_h1_fields(h, opts, false, out, start, nullptr)) {
    out.resize(start);
    return {errc::bad_field, body_kind::none};
  }
  body_kind body = body_kind::none;
  auto length = [&](std::uint64_t n) {
    out.append("content-length: ");
    append_number(out, n);
    out.append("\r\n");
  };
  if (h.is_interim()) {
    // No framing: the final response follows.
  } else if (head_request || h.status == 204 || h.status == 304) {
    if (h.content_length >= 0 && h.status != 204)
      length(static_cast<std::uint64_t>(h.content_length)); // the size a GET would get
  } else if (h.content_length >= 0) {
    length(static_cast<std::uint64_t>(h.content_length));
    body = h.content_length > 0 ? body_kind::content_length : body_kind::none;
  } else if (h.end_stream) {
    length(0);
  } else if (opts.close) {
    body = body_kind::until_close;
  } else {
    out.append("transfer-encoding: chunked\r\n");
    body = body_kind::chunked;
  }
  if (!h.is_interim()) {
    if (opts.close)
      out.append("connection: close\r\n");
    else if (opts.keep_alive)
      out.append("connection: keep-alive\r\n");
  }
  out.append("\r\n");
  return {errc::ok, body};
}

bool is_grpc_content_type(std::string_view value) noexcept {
  static constexpr std::string_view base = "application/grpc";
  if (value.size() < base.size() || !iequals(value.substr(0, base.size()), base))
    return false;
  return value.size() == base.size() || value[base.size()] == '+' || value[base.size()] == ';';
}

std::optional<std::chrono::milliseconds> grpc_timeout_value(std::string_view value) noexcept {
  if (value.size() < 2 || value.size() > 9)
    return std::nullopt;
  std::uint64_t n = 0;
  const auto digits = value.substr(0, value.size() - 1);
  const auto r = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (r.ec != std::errc{} || r.ptr != digits.data() + digits.size())
    return std::nullopt;
  // At most 99,999,999 of the unit: in milliseconds below 2^49 even for hours.
  std::uint64_t ms = 0;
  switch (value.back()) {
  case 'H':
    ms = n * 3'600'000;
    break;
  case 'M':
    ms = n * 60'000;
    break;
  case 'S':
    ms = n * 1'000;
    break;
  case 'm':
    ms = n;
    break;
  case 'u':
    ms = (n + 999) / 1'000;
    break;
  case 'n':
    ms = (n + 999'999) / 1'000'000;
    break;
  default:
    return std::nullopt;
  }
  return std::chrono::milliseconds{std::max<std::uint64_t>(ms, 1)};
}

errc write_last_chunk(std::span<const field> trailers, std::string& out) {
  for (const auto& f : trailers)
    if (!is_h2_name(f.name) || !is_h1_value(f.value))
      return errc::bad_field;
  out.append("0\r\n");
  for (const auto& f : trailers)
    append_field(out, f.name, f.value);
  out.append("\r\n");
  return errc::ok;
}

std::string_view reason_phrase(std::uint16_t status) noexcept {
  switch (status) {
  case 100:
    return "Continue";
  case 103:
    return "Early Hints";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 202:
    return "Accepted";
  case 203:
    return "Non-Authoritative Information";
  case 204:
    return "No Content";
  case 205:
    return "Reset Content";
  case 206:
    return "Partial Content";
  case 300:
    return "Multiple Choices";
  case 301:
    return "Moved Permanently";
  case 302:
    return "Found";
  case 303:
    return "See Other";
  case 304:
    return "Not Modified";
  case 307:
    return "Temporary Redirect";
  case 308:
    return "Permanent Redirect";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 406:
    return "Not Acceptable";
  case 408:
    return "Request Timeout";
  case 409:
    return "Conflict";
  case 410:
    return "Gone";
  case 411:
    return "Length Required";
  case 412:
    return "Precondition Failed";
  case 413:
    return "Content Too Large";
  case 414:
    return "URI Too Long";
  case 415:
    return "Unsupported Media Type";
  case 416:
    return "Range Not Satisfiable";
  case 417:
    return "Expectation Failed";
  case 421:
    return "Misdirected Request";
  case 422:
    return "Unprocessable Content";
  case 425:
    return "Too Early";
  case 426:
    return "Upgrade Required";
  case 428:
    return "Precondition Required";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  case 505:
    return "HTTP Version Not Supported";
  default:
    return "";
  }
}

// --- dechunker ---------------------------------------------------------------------------

dechunker::step dechunker::next(std::span<const char> in) noexcept {
  std::size_t i = 0;
  // Where this call's bytes of the trailer section start (npos: none yet).
  constexpr auto none = std::string_view::npos;
  std::size_t trailer_at = state_ == state::trailer || state_ == state::field ||
                                   state_ == state::field_lf || state_ == state::final_lf
                               ? 0
                               : none;
  const auto result = [&](std::size_t consumed, std::span<const char> payload = {}) {
    step s{consumed, payload, {}};
    if (trailer_at != none && consumed > trailer_at)
      s.trailer = in.subspan(trailer_at, consumed - trailer_at);
    return s;
  };
  while (i < in.size()) {
    const char c = in[i];
    // A byte that must be `want`: on to `then`, or the framing is broken.
    const auto expect = [&](char want, state then) {
      state_ = c == want ? then : state::failed;
      return state_ != state::failed;
    };
    switch (state_) {
    case state::size: {
      const int v = wire::hex_value(c);
      if (v >= 0) {
        if (++digits_ > 15) { // as http1_parser: cannot overflow
          state_ = state::failed;
          return result(i);
        }
        remaining_ = remaining_ * 16 + static_cast<unsigned>(v);
      } else if (digits_ != 0 && c == ';') {
        state_ = state::ext;
      } else if (!(digits_ != 0 && expect('\r', state::size_lf))) {
        state_ = state::failed;
        return result(i);
      }
      break;
    }
    case state::ext:
      if (c == '\r')
        state_ = state::size_lf;
      break;
    case state::size_lf:
      if (!expect('\n', state::data))
        return result(i);
      if (remaining_ == 0) {
        state_ = state::trailer;
        trailer_at = i + 1;
      }
      break;
    case state::data: {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, in.size() - i));
      remaining_ -= n;
      const auto payload = in.subspan(i, n);
      i += n;
      if (remaining_ == 0)
        state_ = state::data_cr;
      return result(i, payload);
    }
    case state::data_cr:
      if (!expect('\r', state::data_lf))
        return result(i);
      break;
    case state::data_lf:
      if (!expect('\n', state::size))
        return result(i);
      digits_ = 0;
      break;
    case state::trailer:
      state_ = c == '\r' ? state::final_lf : state::field;
      break;
    case state::field:
      if (c == '\r')
        state_ = state::field_lf;
      break;
    case state::field_lf:
      if (!expect('\n', state::trailer))
        return result(i);
      break;
    case state::final_lf:
      if (!expect('\n', state::done))
        return result(i);
      return result(i + 1);
    case state::done:
    case state::failed:
      return result(i);
    }
    ++i; // every state but data took one byte
  }
  return result(i);
}

} // namespace starling::proxy::h2
