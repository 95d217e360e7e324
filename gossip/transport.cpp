// The gossip transport (see transport.hpp): one UDP socket and one TCP acceptor on the same
// port, served by one Asio io_context on one thread. Every handler runs on that thread, so
// the state below needs no locks; other threads only post into the io_context.
//
// Lifetime: stop() detaches the reply gate, stops the io_context and joins the thread; after
// that no handler runs again, and pending handlers (which own the connection objects) are
// destroyed with the io_context.
//
// TCP exchanges are one request frame and one answer frame, over plain TCP or (with
// `security`) TLS: `channel` hides which, so the inbound and outbound paths are written once.
// Every exchange is a request of a registered type (decision 0014): inbound ones go through
// one path (prefix checks, the type's rules, its handler), outbound ones (transport::request,
// and the joiner's blocking admission_exchange) are one `client_exchange`, run on whichever
// io_context the caller gives it. Nothing here knows what a type's bytes mean.
#include "gossip/transport.hpp"

#include <array>
#include <cctype>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <arpa/inet.h>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/udp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <caf/make_message.hpp>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include "gossip.pb.h"
#include "gossip/errc.hpp"
#include "net/stream.hpp"
#include "proto/wire/address.hpp"

namespace starling::gossip {

namespace {

using asio::ip::tcp;
using asio::ip::udp;
using namespace std::chrono_literals;

/// Receive buffer of the UDP socket: larger than any UDP payload, so an oversized datagram
/// is seen whole (and counted as oversized) rather than truncated.
constexpr std::size_t udp_buffer_size = 64 * 1024;

/// Bytes read from a TCP connection per read call.
constexpr std::size_t tcp_read_chunk = 16 * 1024;

/// Tries of "UDP on port 0, then TCP on the same port" before giving up.
constexpr int bind_attempts = 8;

/// Resolved host names are reused this long.
constexpr auto resolve_ttl = 60s;

/// Bound on cached host names (the cache is cleared when full).
constexpr std::size_t max_cached_hosts = 1024;

/// Pause before re-arming accept or receive after an unexpected error (no busy loop on,
/// say, EMFILE).
constexpr auto error_backoff = 50ms;

/// "host:port" of an endpoint; IPv4-mapped IPv6 shows as IPv4, IPv6 is bracketed.
std::string render_endpoint(const asio::ip::address& addr, std::uint16_t port) {
  if (addr.is_v6() && addr.to_v6().is_v4_mapped())
    return wire::join_host_port(
        asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6()).to_string(), port);
  return wire::join_host_port(addr.to_string(), port);
}

/// The host part of an endpoint, for per-source accounting: IPv4-mapped IPv6 shows as IPv4.
std::string render_source(const asio::ip::address& addr) {
  if (addr.is_v6() && addr.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6()).to_string();
  return addr.to_string();
}

/// The first non-loopback IPv4 address of an interface that is up; 127.0.0.1 if none.
std::string first_ipv4_address() {
  ifaddrs* list = nullptr;
  std::string result = "127.0.0.1";
  if (getifaddrs(&list) != 0)
    return result;
  for (auto* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || it->ifa_addr->sa_family != AF_INET)
      continue;
    if ((it->ifa_flags & IFF_LOOPBACK) != 0 || (it->ifa_flags & IFF_UP) == 0)
      continue;
    const auto* sin = reinterpret_cast<const sockaddr_in*>(it->ifa_addr);
    std::array<char, INET_ADDRSTRLEN> buf{};
    if (inet_ntop(AF_INET, &sin->sin_addr, buf.data(), buf.size()) != nullptr) {
      result = buf.data();
      break;
    }
  }
  freeifaddrs(list);
  return result;
}

/// Runs an owner callback; an exception from it is logged, never propagated into Asio.
template <class F, class... Args>
void invoke_callback(const char* what, const F& f, Args&&... args) noexcept {
  if (!f)
    return;
  try {
    f(std::forward<Args>(args)...);
  } catch (const std::exception& e) {
    spdlog::warn("gossip transport: {} callback threw: {}", what, e.what());
  } catch (...) {
    spdlog::warn("gossip transport: {} callback threw", what);
  }
}

caf::error io_error(std::string what, const asio::error_code& ec) {
  return make_error(errc::io_failure, std::move(what) + ": " + ec.message());
}

/// Calls sealer.seal; an exception becomes an error (never propagated into Asio).
caf::expected<std::string> seal_with(datagram_sealer& sealer, std::string plain,
                                     std::string_view receiver = {}) noexcept {
  try {
    return sealer.seal(std::move(plain), receiver);
  } catch (...) {
    return make_error(errc::malformed, "sealer threw while sealing");
  }
}

/// Calls sealer.open; an exception becomes a malformed error.
caf::expected<std::string> open_with(datagram_sealer& sealer, std::string_view wire,
                                     std::string_view self = {}) noexcept {
  try {
    return sealer.open(wire, self);
  } catch (...) {
    return make_error(errc::malformed, "sealer threw while opening");
  }
}

/// True when a sealer refusal means unauthenticated input rather than malformed bytes
/// (see datagram_sealer).
bool is_refusal(const caf::error& err) { return err.category() != errc_category; }

/// Seals the body of an encoded TCP frame (length prefix + body) when a sealer is set.
caf::expected<std::string> seal_frame(const std::shared_ptr<datagram_sealer>& sealer,
                                      std::string frame) {
  if (!sealer)
    return frame;
  if (frame.size() < 4)
    return make_error(errc::malformed, "frame shorter than its length prefix");
  auto sealed = seal_with(*sealer, frame.substr(4));
  if (!sealed)
    return sealed.error();
  return wire::framed(*sealed);
}

/// Receives a resolved host (or why it did not resolve); called once.
using resolve_handler = std::function<void(caf::expected<asio::ip::address>)>;

/// Resolves a host name on the io_context of the exchange that asks.
using resolve_fn = std::function<void(const std::string& host, resolve_handler)>;

/// Resolves `host` with `resolver` (numeric addresses at once, no cache): for the joiner's
/// one-shot exchange. The transport has its own cached resolve().
void resolve_with(asio::ip::tcp::resolver& resolver, const std::string& host, resolve_handler k) {
  asio::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (!ec) {
    k(addr);
    return;
  }
  resolver.async_resolve(
      host, "0",
      [host, k = std::move(k)](const asio::error_code& e,
                               const tcp::resolver::results_type& results) {
        if (e || results.empty())
          k(make_error(errc::io_failure, "cannot resolve " + host + ": " + e.message()));
        else
          k(results.begin()->endpoint().address());
      });
}

/// Calls security.new_session; an exception becomes an error (never propagated into Asio).
caf::expected<SSL*> session_with(stream_security& security, bool server,
                                 std::optional<std::string> expected_peer) noexcept {
  try {
    return security.new_session(server, std::move(expected_peer));
  } catch (...) {
    return make_error(errc::io_failure, "stream security threw while making a TLS session");
  }
}

/// Why the TLS handshake of `ssl` failed: the identity refusal (untrusted chain, expired,
/// revoked, name mismatch...) when there is one, else the TLS error itself.
caf::error tls_failure(stream_security& security, const SSL* ssl, std::string what,
                       const asio::error_code& ec) {
  if (auto why = security.refusal(ssl))
    return why;
  return io_error(std::move(what), ec);
}

/// Bytes a Frame adds around a request or answer body: the body's tag and length, the
/// type's tag and value.
constexpr std::size_t frame_overhead = 16;

/// Longest refusal text read from a peer.
constexpr std::size_t max_refusal_text = 1024;

/// Serializes `frame` behind its 4-byte big-endian length.
std::string framed(const v1::FrameBytes& frame) { return wire::framed(frame.SerializeAsString()); }

/// One request or answer of `type` as a frame (length prefix included): types 1 and 2 in
/// their own fields (what older nodes read), every other type as `type` then `payload`.
std::string encode_typed_frame(request_type type, std::string body) {
  v1::FrameBytes frame;
  if (type == request_types::push_pull) {
    frame.set_push_pull(std::move(body));
  } else if (type == request_types::identity) {
    frame.set_admission(std::move(body));
  } else {
    frame.set_type(type);
    frame.set_payload(std::move(body));
  }
  return framed(frame);
}

/// A refusal as a frame: the text (what older nodes read) and its code.
std::string encode_refusal_frame(v1::RefusalCode code, std::string_view text,
                                 const caf::error& handler_error = {}) {
  v1::FrameBytes frame;
  frame.set_error(std::string{text});
  frame.mutable_refusal()->set_code(code);
  if (code == v1::REFUSAL_HANDLER && handler_error) {
    frame.mutable_refusal()->set_category(caf::to_string(handler_error.category()));
    frame.mutable_refusal()->set_error_code(handler_error.code());
  }
  return framed(frame);
}

/// The refusal code for an error of the transport or of a handler refusing at once.
v1::RefusalCode refusal_code_of(const caf::error& err) {
  if (err.category() != errc_category)
    return v1::REFUSAL_HANDLER;
  switch (static_cast<errc>(err.code())) {
  case errc::oversized:
    return v1::REFUSAL_TOO_LARGE;
  case errc::busy:
    return v1::REFUSAL_BUSY;
  case errc::unauthenticated:
    return v1::REFUSAL_UNAUTHENTICATED;
  case errc::unknown_request:
    return v1::REFUSAL_UNKNOWN_TYPE;
  case errc::malformed:
  case errc::truncated:
  case errc::invalid_field:
  case errc::unsupported_version:
  case errc::unknown_frame:
    return v1::REFUSAL_MALFORMED;
  default:
    return v1::REFUSAL_HANDLER;
  }
}

/// The text of a handler's refusal: a gossip one as refusal_reason (a relayed refusal reads
/// as it came), another module's its context alone (its category and code travel apart).
std::string handler_text(const caf::error& err) {
  if (err.category() != errc_category && err.context().match_elements<std::string>())
    return err.context().get_as<std::string>(0);
  return refusal_reason(err);
}

/// The refusal frame for `err` (text: refusal_reason, so a relayed refusal reads as it came).
std::string refusal_frame_of(const caf::error& err) {
  const auto code = refusal_code_of(err);
  return encode_refusal_frame(code, code == v1::REFUSAL_HANDLER ? handler_text(err) : render(err),
                              err);
}

/// True for a category a peer may name: an atom's text (at most 10 of [0-9A-Za-z_ ]).
bool is_atom_text(std::string_view x) {
  if (x.empty() || x.size() > 10)
    return false;
  for (char c : x)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ' '))
      return false;
  return true;
}

/// The error a peer's refusal frame means to us (decision 0014): decided by its code, never
/// by its text, which only goes into the context.
caf::error refusal_error(const v1::FrameBytes& frame) {
  auto text = frame.error();
  if (text.size() > max_refusal_text)
    text.resize(max_refusal_text);
  const auto& r = frame.refusal();
  switch (r.code()) {
  case v1::REFUSAL_MALFORMED:
    return make_error(errc::malformed, "the peer could not read our request: " + text);
  case v1::REFUSAL_UNKNOWN_TYPE:
    return make_error(errc::unknown_request, std::move(text));
  case v1::REFUSAL_UNAUTHENTICATED:
    return make_error(errc::unauthenticated, std::move(text));
  case v1::REFUSAL_TOO_LARGE:
    return make_error(errc::oversized, "the peer refused our request as too large: " + text);
  case v1::REFUSAL_BUSY:
    return make_error(errc::busy, std::move(text));
  case v1::REFUSAL_HANDLER:
    // A gossip-category refusal by a handler (or a relayed one) reads as before: the text
    // verbatim under peer_refused. Another module's code travels as that module's error.
    if (r.category() != caf::to_string(errc_category) && is_atom_text(r.category()) &&
        r.error_code() > 0 && r.error_code() <= 0xff)
      return caf::error{static_cast<std::uint8_t>(r.error_code()),
                        caf::atom_from_string(r.category()), caf::make_message(std::move(text))};
    return make_error(errc::peer_refused, std::move(text));
  default: // an older node (no code), or a code newer than this node
    return make_error(errc::peer_refused, std::move(text));
  }
}

/// A request frame's body: its type and bytes.
struct typed_body {
  request_type type = 0;
  std::string bytes;
};

/// Decodes the body of a request frame (length prefix removed). Errors: malformed (not a
/// Frame), invalid_field (no body, several, a payload of type 0), peer_refused (an error
/// frame sent as a request).
caf::expected<typed_body> decode_request(std::string_view body) {
  v1::FrameBytes frame;
  if (!frame.ParseFromArray(body.data(), static_cast<int>(body.size())))
    return make_error(errc::malformed, "frame does not parse as a Frame");
  if (frame.has_error())
    return make_error(errc::peer_refused, "an error frame sent as a request");
  const int bodies =
      int{frame.has_push_pull()} + int{frame.has_admission()} + int{frame.has_payload()};
  if (bodies != 1)
    return make_error(errc::invalid_field,
                      bodies == 0 ? "frame without a body" : "frame with several bodies");
  if (frame.has_push_pull())
    return typed_body{request_types::push_pull, std::move(*frame.mutable_push_pull())};
  if (frame.has_admission())
    return typed_body{request_types::identity, std::move(*frame.mutable_admission())};
  if (frame.type() == request_types::push_pull || frame.type() == request_types::identity ||
      frame.type() == 0)
    return make_error(errc::invalid_field,
                      "a payload of request type " + std::to_string(frame.type()));
  return typed_body{frame.type(), std::move(*frame.mutable_payload())};
}

/// Decodes the answer frame to a request of `type` (length prefix removed): its bytes, or
/// the peer's refusal (refusal_error), or malformed.
caf::expected<std::string> decode_answer(std::string_view body, request_type type) {
  v1::FrameBytes frame;
  if (!frame.ParseFromArray(body.data(), static_cast<int>(body.size())))
    return make_error(errc::malformed, "answer does not parse as a Frame");
  if (frame.has_error())
    return refusal_error(frame);
  if (type == request_types::push_pull && frame.has_push_pull())
    return std::move(*frame.mutable_push_pull());
  if (type == request_types::identity && frame.has_admission())
    return std::move(*frame.mutable_admission());
  if (frame.has_payload() && frame.type() == type)
    return std::move(*frame.mutable_payload());
  return make_error(errc::malformed,
                    "an answer that is not of request type " + std::to_string(type));
}

/// What the first bytes of a request frame's body say about its type.
struct type_peek {
  enum class status : std::uint8_t {
    need_more, ///< too few bytes yet
    known,     ///< `type` is the request's type
    unknown,   ///< not laid out as Starling writes requests: checked once decoded
  };
  status what = status::unknown;
  request_type type = 0;
};

/// Reads the type from the first bytes `head` of a request frame body of `length` bytes:
/// tag 1 (push_pull) or 3 (admission) first, or tag 4 (`type`, a varint) first.
type_peek peek_type(std::string_view head, std::size_t length) {
  using status = type_peek::status;
  if (head.empty())
    return {status::need_more, 0};
  const auto tag = static_cast<unsigned char>(head[0]);
  if (tag == 0x0a)
    return {status::known, request_types::push_pull};
  if (tag == 0x1a)
    return {status::known, request_types::identity};
  if (tag != 0x20)
    return {status::unknown, 0};
  std::uint64_t value = 0;
  for (std::size_t i = 1; i < head.size() && i <= 5; ++i) {
    const auto byte = static_cast<unsigned char>(head[i]);
    value |= std::uint64_t{byte & 0x7fu} << (7 * (i - 1));
    if ((byte & 0x80u) == 0)
      return value == 0 || value > 0xffffffffu
                 ? type_peek{status::unknown, 0}
                 : type_peek{status::known, static_cast<request_type>(value)};
  }
  // The varint goes on: more may come, unless the body or the varint's 5 bytes are all in.
  if (head.size() >= 6 || head.size() >= length)
    return {status::unknown, 0};
  return {status::need_more, 0};
}

/// Bytes of a request body needed to peek at its type.
constexpr std::size_t peek_bytes = 6;

/// One TCP connection, plain or (after start_tls) TLS: what exchanges connect, read, write
/// and close, whichever it is (net/stream.hpp). With TLS, close() sends no close_notify and
/// awaits none: each exchange is one frame each way, whose length tells the reader when it
/// is whole, and a peer gone silent must not hold the connection.
using channel = net::stream;

/// What one client exchange does.
struct exchange_spec {
  /// "host:port" of the peer.
  std::string address;
  /// "push-pull" or "admission", for errors and logs.
  std::string what;
  /// Where TLS sessions come from; null for plain TCP. Must outlive the exchange.
  stream_security* security = nullptr;
  /// TLS only: the member the server must be; std::nullopt for any member of the mesh.
  std::optional<std::string> expected_peer;
  /// The request frame (length prefix included), built once connected (after the TLS
  /// handshake, from the session: the joiner reads the seed's verified chain). An error
  /// ends the exchange with it.
  std::function<caf::expected<std::string>(const SSL* session)> request;
  /// Bound on the whole exchange: resolve, connect, handshake, write, read.
  std::chrono::milliseconds timeout{10000};
  /// Longest answer frame accepted.
  std::size_t max_frame = codec_limits{}.max_frame;
};

/// One request-answer exchange over a TCP connection we open: resolve, connect, TLS handshake
/// (when the spec has security), write the request frame, read one answer frame, all within
/// one deadline. Runs on the thread of its io_context; owned by its pending handlers.
class client_exchange : public std::enable_shared_from_this<client_exchange> {
public:
  /// Runs once with the answer frame's body or why there is none. The connection is closed
  /// by then; the session can still be read (for the peer's verified name).
  using completion = std::function<void(client_exchange&, caf::expected<std::string>)>;

  client_exchange(asio::io_context& io, exchange_spec spec, completion done)
      : spec_(std::move(spec)), channel_(io), deadline_(io), reader_(spec_.max_frame),
        buffer_(tcp_read_chunk), done_(std::move(done)) {
    // start() arms the deadline.
  }

  /// Starts the exchange; `resolve` turns the host of the address into an IP address.
  void start(const resolve_fn& resolve) {
    auto hp = split_host_port(spec_.address);
    if (!hp) {
      finish(hp.error());
      return;
    }
    auto self = shared_from_this();
    deadline_.expires_after(spec_.timeout);
    deadline_.async_wait([self](const asio::error_code& ec) {
      if (!ec)
        self->finish(make_error(errc::timeout,
                                self->spec_.what + " with " + self->spec_.address + " timed out"));
    });
    const auto port = hp->second;
    resolve(hp->first, [self, port](caf::expected<asio::ip::address> addr) {
      if (self->finished_)
        return;
      if (!addr) {
        self->finish(addr.error());
        return;
      }
      self->channel_.socket().async_connect(
          tcp::endpoint{*addr, port}, [self](const asio::error_code& ec) {
            if (self->finished_)
              return;
            if (ec) {
              self->finish(io_error("connect to " + self->spec_.address, ec));
            } else {
              // One request, one answer: no Nagle delay on small frames and TLS records
              // (measured: 40 ms per admission, the delayed-ACK stall, without it).
              asio::error_code ignored;
              self->channel_.socket().set_option(tcp::no_delay{true}, ignored);
              self->on_connected();
            }
          });
    });
  }

  /// The peer's "host:port".
  [[nodiscard]] const std::string& address() const { return spec_.address; }

  /// The TLS session; null for plain TCP.
  [[nodiscard]] SSL* session() { return channel_.session(); }

  /// True when the exchange failed at TLS: the handshake, or a TLS alert where the answer
  /// should be (in TLS 1.3 a server refuses the client's certificate after the client's
  /// side of the handshake is done).
  [[nodiscard]] bool tls_refused() const { return tls_refused_; }

private:
  void on_connected() {
    if (spec_.security == nullptr) {
      send();
      return;
    }
    auto ssl = session_with(*spec_.security, false, spec_.expected_peer);
    if (!ssl) {
      finish(ssl.error());
      return;
    }
    if (!channel_.start_tls(*ssl)) {
      finish(
          make_error(errc::io_failure, "TLS with " + spec_.address + ": cannot attach the socket"));
      return;
    }
    channel_.async_handshake(false, [self = shared_from_this()](const asio::error_code& ec) {
      if (self->finished_)
        return;
      if (ec) {
        self->tls_refused_ = true;
        self->finish(tls_failure(*self->spec_.security, self->session(),
                                 "TLS handshake with " + self->spec_.address, ec));
        return;
      }
      self->send();
    });
  }

  void send() {
    auto frame = spec_.request(session());
    if (!frame) {
      finish(frame.error());
      return;
    }
    out_ = std::move(*frame);
    channel_.async_write(asio::buffer(out_),
                         [self = shared_from_this()](const asio::error_code& ec, std::size_t) {
                           if (self->finished_)
                             return;
                           if (ec)
                             self->fail_io("write to ", ec);
                           else
                             self->read();
                         });
  }

  void read() {
    channel_.async_read_some(asio::buffer(buffer_), [self = shared_from_this()](
                                                        const asio::error_code& ec, std::size_t n) {
      if (self->finished_)
        return;
      if (ec) {
        self->fail_io("read from ", ec);
        return;
      }
      self->reader_.feed(std::string_view{self->buffer_.data(), n});
      auto body = self->reader_.next();
      if (!body)
        self->read();
      else
        self->finish(std::move(*body));
    });
  }

  /// Ends with an I/O error; a TLS error (an alert, a bad record) counts as refused TLS.
  void fail_io(const char* what, const asio::error_code& ec) {
    if (ec.category() == asio::error::get_ssl_category())
      tls_refused_ = true;
    finish(io_error(what + spec_.address, ec));
  }

  void finish(caf::expected<std::string> result) {
    if (finished_)
      return;
    finished_ = true;
    deadline_.cancel();
    channel_.close();
    auto done = std::move(done_);
    invoke_callback("exchange done", done, *this, std::move(result));
  }

  exchange_spec spec_;
  channel channel_;
  asio::steady_timer deadline_;
  frame_reader reader_;
  std::vector<char> buffer_;
  /// The request frame; kept alive until the write completes.
  std::string out_;
  completion done_;
  /// `done_` ran (it runs exactly once); every handler checks this first.
  bool finished_ = false;
  bool tls_refused_ = false;
};

} // namespace

/// Lets push-pull responders reach the transport from any thread until stop() cuts them off.
struct reply_gate {
  std::mutex mutex;
  /// The live transport; null once stopping (guarded by `mutex`).
  transport::impl* owner = nullptr;
};

class transport::impl {
public:
  impl(transport_config cfg, transport_callbacks cbs)
      : cfg_(std::move(cfg)), cbs_(std::move(cbs)),
        tcp_sealer_(cfg_.security ? nullptr : cfg_.sealer), work_(asio::make_work_guard(io_)),
        udp_(io_), acceptor_(io_), accept_retry_(io_), udp_retry_(io_), resolver_(io_),
        udp_buffer_(udp_buffer_size), gate_(std::make_shared<reply_gate>()) {
    // Sockets are bound by bind(), the thread started by run().
  }

  ~impl() {
    stop();
    if (thread_.joinable()) {
      // Only reached when stop() ran on the I/O thread itself (from a callback); the
      // owner must not destroy the transport there, but do not abort if it does.
      if (thread_.get_id() == std::this_thread::get_id())
        thread_.detach();
      else
        thread_.join();
    }
  }

  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  /// Binds UDP and then TCP on the same port; with port 0 retries with fresh UDP ports.
  caf::error bind() {
    asio::error_code ec;
    auto addr = asio::ip::make_address(cfg_.bind_host, ec);
    if (ec) {
      tcp::resolver resolver{io_};
      auto results = resolver.resolve(cfg_.bind_host, "0", ec);
      if (ec || results.empty())
        return make_error(errc::io_failure,
                          "cannot resolve bind host " + cfg_.bind_host + ": " + ec.message());
      addr = results.begin()->endpoint().address();
    }
    const int attempts = cfg_.port == 0 ? bind_attempts : 1;
    std::string last_error;
    for (int i = 0; i < attempts; ++i) {
      udp::endpoint uep{addr, cfg_.port};
      udp_.open(uep.protocol(), ec);
      if (!ec)
        udp_.bind(uep, ec);
      if (ec) {
        asio::error_code ignored;
        udp_.close(ignored);
        return make_error(errc::io_failure, "cannot bind UDP " + render_endpoint(addr, cfg_.port) +
                                                ": " + ec.message());
      }
      const auto port = udp_.local_endpoint(ec).port();
      tcp::endpoint tep{addr, port};
      acceptor_.open(tep.protocol(), ec);
      if (!ec)
        acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec)
        acceptor_.bind(tep, ec);
      if (!ec)
        acceptor_.listen(asio::socket_base::max_listen_connections, ec);
      if (!ec) {
        port_ = port;
        udp_v6_ = addr.is_v6();
        return {};
      }
      last_error = "cannot bind TCP " + render_endpoint(addr, port) + ": " + ec.message();
      asio::error_code ignored;
      acceptor_.close(ignored);
      udp_.close(ignored);
    }
    return make_error(errc::io_failure, last_error);
  }

  /// Computes the advertise address, arms the receive and accept loops, starts the thread.
  void run() {
    std::string host = cfg_.advertise_host;
    if (host.empty()) {
      asio::error_code ec;
      auto addr = asio::ip::make_address(cfg_.bind_host, ec);
      if (!ec && addr.is_unspecified())
        host = first_ipv4_address();
      else
        host = cfg_.bind_host;
    }
    advertise_ = wire::join_host_port(host, port_);
    {
      std::lock_guard guard{gate_->mutex};
      gate_->owner = this;
    }
    arm_receive();
    arm_accept();
    thread_ = std::thread{[this] {
      for (;;) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("gossip transport: handler threw: {}", e.what());
        } catch (...) {
          spdlog::error("gossip transport: handler threw");
        }
      }
    }};
  }

  void stop() {
    std::lock_guard lock{stop_mutex_};
    if (stopped_)
      return;
    stopped_ = true;
    {
      std::lock_guard guard{gate_->mutex};
      gate_->owner = nullptr;
    }
    work_.reset();
    io_.stop();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id())
      thread_.join();
    // The I/O thread is gone (or is the caller): closing here races with nothing. The
    // aborted completions are queued in the stopped io_context and never run.
    asio::error_code ignored;
    udp_.close(ignored);
    acceptor_.close(ignored);
    accept_retry_.cancel();
    udp_retry_.cancel();
    resolver_.cancel();
    for (auto& [id, conn] : inbound_) {
      conn->closed = true;
      conn->stream.close();
      conn->deadline.cancel();
      release_frame(*conn);
      release_source(*conn);
    }
    inbound_.clear();
  }

  std::string advertise_address() const { return advertise_; }
  std::uint16_t port() const { return port_; }
  const transport_stats& stats() const { return stats_; }

  void send(const std::string& address, const packet& msg) {
    asio::post(io_, [this, address, msg] { do_send(address, msg); });
  }

  /// See transport::request.
  void request(const std::string& address, request_type type, std::string body,
               std::optional<std::string> expected_peer, request_done done) {
    auto fail = [this, &done](caf::error err) {
      asio::post(io_, [this, err = std::move(err), done = std::move(done)]() mutable {
        stats_.requests_failed.fetch_add(1, std::memory_order_relaxed);
        invoke_callback("request done", done, caf::expected<request_answer>{std::move(err)});
      });
    };
    const auto* spec = cbs_.requests.find(type);
    if (spec == nullptr) {
      fail(make_error(errc::invalid_field,
                      "request type " + std::to_string(type) + " is not registered here"));
      return;
    }
    if (spec->auth == request_auth::anyone_over_tls && !cfg_.security) {
      fail(make_error(errc::invalid_field, spec->name + " needs TLS"));
      return;
    }
    if (body.size() > spec->max_request) {
      fail(make_error(errc::invalid_field, spec->name + " request of " +
                                               std::to_string(body.size()) + " bytes exceeds " +
                                               std::to_string(spec->max_request)));
      return;
    }
    // Encoding and sealing need no I/O state: do them on the caller's thread.
    const bool sealed = spec->sealed && tcp_sealer_;
    auto frame = encode_typed_frame(type, std::move(body));
    if (sealed) {
      auto s = seal_frame(tcp_sealer_, std::move(frame));
      if (!s) {
        fail(std::move(s.error()));
        return;
      }
      frame = std::move(*s);
    }
    // A sealed answer's size is known once opened; a plain one's at its length prefix.
    const auto max_answer =
        sealed ? cfg_.limits.max_frame
               : std::min(cfg_.limits.max_frame, spec->max_answer + frame_overhead);
    asio::post(io_, [this, address, type, spec, sealed, max_answer,
                     expected_peer = std::move(expected_peer), frame = std::move(frame),
                     done = std::move(done)]() mutable {
      start_exchange(
          address, spec->name, std::move(expected_peer), std::move(frame), max_answer,
          [this, type, spec, sealed, done = std::move(done)](client_exchange& ex,
                                                             caf::expected<std::string> body) {
            if (!body)
              note_failure(ex, body.error());
            caf::expected<request_answer> result{caf::error{}};
            if (!body) {
              result = std::move(body.error());
            } else {
              auto answer = open_answer(ex.address(), *body, type, sealed);
              if (answer && answer->size() > spec->max_answer)
                answer = make_error(errc::oversized,
                                    spec->name + " answer of " + std::to_string(answer->size()) +
                                        " bytes exceeds " + std::to_string(spec->max_answer));
              if (answer)
                result = request_answer{std::move(*answer),
                                        cfg_.security ? cfg_.security->peer_name(ex.session())
                                                      : std::nullopt};
              else
                result = std::move(answer.error());
            }
            if (result) {
              stats_.requests_out.fetch_add(1, std::memory_order_relaxed);
            } else {
              stats_.requests_failed.fetch_add(1, std::memory_order_relaxed);
              spdlog::debug("gossip transport: {} with {}: {}", spec->name, ex.address(),
                            render(result.error()));
            }
            invoke_callback("request done", done, std::move(result));
          });
    });
  }

  /// Counters and limits for the typed helpers (push_pull_with, admission_with).
  transport_stats& mutable_stats() { return stats_; }
  const codec_limits& limits() const { return cfg_.limits; }

  /// Reports dropped input to the owner (for the typed helpers).
  void report_drop(const caf::error& why, const std::string& from) { drop(why, from); }

private:
  // -- name resolution (I/O thread) ------------------------------------------------------

  struct cache_entry {
    asio::ip::address address;
    std::chrono::steady_clock::time_point expires;
  };

  /// Resolves `host` (numeric addresses directly, names through the cache or the resolver).
  void resolve(const std::string& host, resolve_handler k) {
    asio::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (!ec) {
      k(addr);
      return;
    }
    const auto now = std::chrono::steady_clock::now();
    if (auto i = cache_.find(host); i != cache_.end()) {
      if (i->second.expires > now) {
        k(i->second.address);
        return;
      }
      cache_.erase(i);
    }
    auto& waiting = pending_[host];
    waiting.push_back(std::move(k));
    if (waiting.size() > 1)
      return; // a lookup is already under way
    resolver_.async_resolve(
        host, "0", [this, host](const asio::error_code& ec, udp::resolver::results_type results) {
          auto node = pending_.extract(host);
          if (node.empty())
            return;
          auto handlers = std::move(node.mapped());
          caf::expected<asio::ip::address> result{
              make_error(errc::io_failure, "cannot resolve " + host + ": " + ec.message())};
          if (!ec && !results.empty()) {
            // Prefer the family of our UDP socket (a v6 socket also reaches v4 via mapping).
            result = results.begin()->endpoint().address();
            for (const auto& entry : results) {
              if (entry.endpoint().address().is_v6() == udp_v6_) {
                result = entry.endpoint().address();
                break;
              }
            }
            if (cache_.size() >= max_cached_hosts)
              cache_.clear();
            cache_[host] = cache_entry{*result, std::chrono::steady_clock::now() + resolve_ttl};
          }
          for (auto& handler : handlers)
            handler(result);
        });
  }

  // -- UDP (I/O thread) ------------------------------------------------------------------

  void arm_receive() {
    udp_.async_receive_from(
        asio::buffer(udp_buffer_), udp_from_,
        [this](const asio::error_code& ec, std::size_t n) { on_datagram(ec, n); });
  }

  void on_datagram(const asio::error_code& ec, std::size_t n) {
    if (ec == asio::error::operation_aborted || !udp_.is_open())
      return;
    if (ec) {
      spdlog::debug("gossip transport: UDP receive: {}", ec.message());
      udp_retry_.expires_after(error_backoff);
      udp_retry_.async_wait([this](const asio::error_code& e) {
        if (!e)
          arm_receive();
      });
      return;
    }
    stats_.datagrams_in.fetch_add(1, std::memory_order_relaxed);
    stats_.bytes_in.fetch_add(n, std::memory_order_relaxed);
    const auto from = render_endpoint(udp_from_.address(), udp_from_.port());
    handle_datagram(std::string_view{udp_buffer_.data(), n}, from);
    arm_receive();
  }

  void handle_datagram(std::string_view wire, const std::string& from) {
    if (wire.size() > cfg_.limits.max_datagram) {
      stats_.dropped_oversized.fetch_add(1, std::memory_order_relaxed);
      drop(make_error(errc::oversized, "datagram of " + std::to_string(wire.size()) +
                                           " bytes exceeds " +
                                           std::to_string(cfg_.limits.max_datagram)),
           from);
      return;
    }
    std::string opened;
    if (cfg_.sealer) {
      auto plain = open_with(*cfg_.sealer, wire, advertise_); // bound to this node
      if (!plain) {
        if (is_refusal(plain.error()))
          stats_.dropped_refused.fetch_add(1, std::memory_order_relaxed);
        else
          stats_.dropped_malformed.fetch_add(1, std::memory_order_relaxed);
        drop(plain.error(), from);
        return;
      }
      opened = std::move(*plain);
      wire = opened;
    }
    auto msg = decode_datagram(wire, cfg_.limits);
    if (!msg) {
      stats_.dropped_malformed.fetch_add(1, std::memory_order_relaxed);
      drop(msg.error(), from);
      return;
    }
    invoke_callback("on_packet", cbs_.on_packet, std::move(*msg), from);
  }

  void do_send(const std::string& address, const packet& msg) {
    auto hp = split_host_port(address);
    if (!hp) {
      stats_.send_errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("gossip transport: send: {}", render(hp.error()));
      return;
    }
    auto bytes = encode_datagram(msg);
    if (cfg_.sealer) {
      auto sealed = seal_with(*cfg_.sealer, std::move(bytes), address); // for that member only
      if (!sealed) {
        stats_.send_errors.fetch_add(1, std::memory_order_relaxed);
        spdlog::debug("gossip transport: cannot seal a datagram to {}: {}", address,
                      render(sealed.error()));
        return;
      }
      bytes = std::move(*sealed);
    }
    if (bytes.size() > cfg_.limits.max_datagram) {
      stats_.send_errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("gossip transport: not sending a {} byte datagram to {}", bytes.size(),
                    address);
      return;
    }
    auto buf = std::make_shared<std::string>(std::move(bytes));
    const auto port = hp->second;
    resolve(hp->first, [this, buf, port](caf::expected<asio::ip::address> addr) {
      if (!addr) {
        stats_.send_errors.fetch_add(1, std::memory_order_relaxed);
        spdlog::debug("gossip transport: send: {}", render(addr.error()));
        return;
      }
      auto target = *addr;
      if (udp_v6_ && target.is_v4()) {
        target = asio::ip::make_address_v6(asio::ip::v4_mapped, target.to_v4());
      } else if (!udp_v6_ && target.is_v6()) {
        const auto v6 = target.to_v6();
        if (!v6.is_v4_mapped()) {
          stats_.send_errors.fetch_add(1, std::memory_order_relaxed);
          return;
        }
        target = asio::ip::make_address_v4(asio::ip::v4_mapped, v6);
      }
      udp_.async_send_to(asio::buffer(*buf), udp::endpoint{target, port},
                         [this, buf](const asio::error_code& ec, std::size_t n) {
                           if (ec) {
                             if (ec != asio::error::operation_aborted)
                               stats_.send_errors.fetch_add(1, std::memory_order_relaxed);
                             return;
                           }
                           stats_.datagrams_out.fetch_add(1, std::memory_order_relaxed);
                           stats_.bytes_out.fetch_add(n, std::memory_order_relaxed);
                         });
    });
  }

  // -- TCP inbound (I/O thread) ----------------------------------------------------------

  /// One peer-initiated exchange (push-pull or admission).
  struct inbound_conn {
    inbound_conn(std::uint64_t id, tcp::socket s, std::size_t max_frame)
        : id(id), stream(std::move(s)), deadline(stream.socket().get_executor()), reader(max_frame),
          buffer(tcp_read_chunk) {
      // Fields only.
    }
    std::uint64_t id;
    /// Plain TCP, or TLS once the handshake started (with `security`).
    channel stream;
    /// Closes the connection when the whole exchange took longer than tcp_timeout.
    asio::steady_timer deadline;
    frame_reader reader;
    std::vector<char> buffer;
    std::string remote;
    /// The source address (no port) counted in per_source_; empty when unknown.
    std::string source;
    /// Bytes of the inbound budget held for the frame being received (0: none).
    std::size_t reserved = 0;
    /// The answer being written; kept alive until the write completes.
    std::string out;
    /// With TLS, after the handshake: the client's verified node name; std::nullopt for an
    /// anonymous client (a joiner) or plain TCP.
    std::optional<std::string> peer;
    /// A whole request frame arrived (the exchange is under way, not merely connected or
    /// mid-handshake).
    bool requested = false;
    /// The first bytes of the stream (length prefix and up to peek_bytes of the body): the
    /// request's type is read from them before its body is buffered.
    std::string head;
    /// The type's checks ran at the prefix (or cannot: the frame is sealed or laid out
    /// otherwise); next() may buffer the body.
    bool peeked = false;
    /// The request's type, once known (0 before).
    request_type type = 0;
    /// The request arrived sealed: its answer is sealed too.
    bool sealed = false;
    /// An answer was queued (replies after the first are ignored).
    bool answered = false;
    /// Closed and removed from inbound_.
    bool closed = false;
  };
  using inbound_ptr = std::shared_ptr<inbound_conn>;

  void arm_accept() {
    acceptor_.async_accept([this](const asio::error_code& ec, tcp::socket socket) {
      on_accept(ec, std::move(socket));
    });
  }

  void on_accept(const asio::error_code& ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open())
      return;
    if (ec) {
      spdlog::debug("gossip transport: accept: {}", ec.message());
      accept_retry_.expires_after(error_backoff);
      accept_retry_.async_wait([this](const asio::error_code& e) {
        if (!e)
          arm_accept();
      });
      return;
    }
    asio::error_code ep_ec;
    socket.set_option(tcp::no_delay{true}, ep_ec); // see the client side
    const auto ep = socket.remote_endpoint(ep_ec);
    const auto remote = ep_ec ? std::string{"?"} : render_endpoint(ep.address(), ep.port());
    const auto source = ep_ec ? std::string{} : render_source(ep.address());
    // One source may hold only so many: connections from one address cannot take all the
    // slots (nor much of the budget). When its share is full, its oldest connection without
    // a whole request yet makes room, as below; with every one of them served, the newcomer
    // is closed. (Members on one host, or behind one NAT, share a source.)
    if (!source.empty() && per_source_count(source) >= cfg_.max_connections_per_source) {
      stats_.source_refused.fetch_add(1, std::memory_order_relaxed);
      const auto why = "max_connections_per_source (" +
                       std::to_string(cfg_.max_connections_per_source) + ") reached from " + source;
      inbound_ptr victim;
      for (const auto& entry : inbound_) {
        if (entry.second->source == source && !entry.second->requested) {
          victim = entry.second; // a copy: closing erases the map entry
          break;
        }
      }
      if (victim) {
        fail_inbound(
            victim,
            make_error(errc::io_failure, "evicted: " + why + " before a whole request arrived"),
            false);
      } else {
        stats_.push_pull_errors.fetch_add(1, std::memory_order_relaxed);
        asio::error_code ignored;
        socket.close(ignored);
        drop(make_error(errc::io_failure, "closed at accept: " + why), remote);
        arm_accept();
        return;
      }
    }
    // Full: make room by closing the oldest connection that has not sent a whole request
    // yet. Real push-pulls send theirs within a round trip, so a peer holding connections
    // open half-way (slowloris) only ever evicts its own.
    if (inbound_.size() >= cfg_.max_inbound_connections) {
      for (const auto& entry : inbound_) {
        if (!entry.second->requested) {
          auto old = entry.second; // a copy: closing erases the map entry
          stats_.connections_refused.fetch_add(1, std::memory_order_relaxed);
          fail_inbound(old,
                       make_error(errc::io_failure, "evicted: connection limit reached "
                                                    "before a whole request arrived"),
                       false);
          break;
        }
      }
    }
    if (inbound_.size() >= cfg_.max_inbound_connections) {
      stats_.connections_refused.fetch_add(1, std::memory_order_relaxed);
      stats_.push_pull_errors.fetch_add(1, std::memory_order_relaxed);
      asio::error_code ignored;
      socket.close(ignored);
      drop(make_error(errc::io_failure, "too many push-pull connections"), remote);
    } else {
      const auto id = next_conn_id_++;
      auto conn = std::make_shared<inbound_conn>(id, std::move(socket), cfg_.limits.max_frame);
      conn->remote = remote;
      conn->source = source;
      if (!source.empty())
        ++per_source_[source];
      inbound_.emplace(id, conn);
      conn->deadline.expires_after(cfg_.tcp_timeout);
      conn->deadline.async_wait([this, conn](const asio::error_code& e) {
        if (e || conn->closed)
          return;
        fail_inbound(conn, make_error(errc::timeout, "push-pull not completed in time"), false);
      });
      if (cfg_.security)
        handshake_inbound(conn);
      else
        read_inbound(conn);
    }
    arm_accept();
  }

  /// TLS server handshake, inside the connection's deadline; then reads the request.
  void handshake_inbound(const inbound_ptr& conn) {
    auto ssl = session_with(*cfg_.security, true, std::nullopt);
    if (!ssl) {
      fail_inbound(conn, ssl.error(), false);
      return;
    }
    if (!conn->stream.start_tls(*ssl)) {
      fail_inbound(conn, make_error(errc::io_failure, "TLS: cannot attach the socket"), false);
      return;
    }
    conn->stream.async_handshake(true, [this, conn](const asio::error_code& ec) {
      if (conn->closed)
        return;
      if (ec) {
        stats_.tls_refused.fetch_add(1, std::memory_order_relaxed);
        fail_inbound(conn, tls_failure(*cfg_.security, conn->stream.session(), "TLS handshake", ec),
                     false);
        return;
      }
      conn->peer = cfg_.security->peer_name(conn->stream.session());
      read_inbound(conn);
    });
  }

  void read_inbound(const inbound_ptr& conn) {
    conn->stream.async_read_some(
        asio::buffer(conn->buffer), [this, conn](const asio::error_code& ec, std::size_t n) {
          if (conn->closed)
            return;
          if (ec) {
            fail_inbound(conn, io_error("push-pull read", ec), false);
            return;
          }
          const std::string_view got{conn->buffer.data(), n};
          const auto head_size = wire::length_prefix_size + peek_bytes;
          if (conn->head.size() < head_size)
            conn->head.append(got.substr(0, head_size - conn->head.size()));
          conn->reader.feed(got);
          auto admitted = admit_frame(*conn);
          if (!admitted) {
            fail_inbound(conn, admitted.error(), true);
            return;
          }
          if (!*admitted) { // the type is not readable yet: buffer nothing beyond this chunk
            read_inbound(conn);
            return;
          }
          auto body = conn->reader.next();
          if (!body) {
            read_inbound(conn);
            return;
          }
          if (!*body) {
            fail_inbound(conn, body->error(), true);
            return;
          }
          // Consumed: the budget goes back before the work on it.
          release_frame(*conn);
          on_body(conn, std::move(**body));
        });
  }

  /// Once the length prefix of the frame `conn` is receiving has arrived (and before its
  /// body is buffered, beyond the read chunks that brought the prefix and the type): refuses
  /// a frame over max_anonymous_frame from a client without a certificate, and one that
  /// does not fit what is left of the inbound budget, else reserves its length from the
  /// budget; then, once the first body bytes name the request's type (plain frames as
  /// Starling writes them), refuses what that type's rules refuse (check_request). An error
  /// means: answer it and close. False: read more before buffering the body. A member's
  /// length over limits.max_frame (or of 0) is left to the reader, which refuses it.
  caf::expected<bool> admit_frame(inbound_conn& conn) {
    const auto length = conn.reader.announced();
    if (!length || *length == 0)
      return true;
    if (conn.reserved == 0) {
      if (cfg_.security && !conn.peer && *length > cfg_.max_anonymous_frame) {
        stats_.anonymous_refused.fetch_add(1, std::memory_order_relaxed);
        return make_error(errc::oversized, "a client without a certificate announced a frame of " +
                                               std::to_string(*length) + " bytes; at most " +
                                               std::to_string(cfg_.max_anonymous_frame) +
                                               " (admission only)");
      }
      if (*length > cfg_.limits.max_frame)
        return true;
      if (*length > cfg_.inbound_budget - inbound_buffered_) {
        stats_.budget_refused.fetch_add(1, std::memory_order_relaxed);
        return make_error(errc::busy, "a frame of " + std::to_string(*length) +
                                          " bytes does not fit the inbound buffer budget (" +
                                          std::to_string(cfg_.inbound_budget - inbound_buffered_) +
                                          " of " + std::to_string(cfg_.inbound_budget) +
                                          " bytes left); try later");
      }
      conn.reserved = *length;
      inbound_buffered_ += *length;
      stats_.inbound_buffered.store(inbound_buffered_, std::memory_order_relaxed);
    }
    if (conn.peeked)
      return true;
    if (tcp_sealer_) {
      // Sealed bodies hide their type: checked once opened.
      conn.peeked = true;
      return true;
    }
    const auto peek =
        peek_type(std::string_view{conn.head}.substr(wire::length_prefix_size), *length);
    if (peek.what == type_peek::status::need_more)
      return false;
    conn.peeked = true;
    if (peek.what == type_peek::status::known)
      if (auto err = check_request(conn, peek.type,
                                   *length > frame_overhead ? *length - frame_overhead : 0))
        return err;
    return true;
  }

  /// The transport's rules for a request of `type` whose body has at least `size` bytes
  /// (counted here): served here, by whom, how large. No error: hand it to the handler.
  caf::error check_request(const inbound_conn& conn, request_type type, std::size_t size) {
    const auto* spec = cbs_.requests.find(type);
    if (spec == nullptr || !spec->handler ||
        (spec->auth == request_auth::anyone_over_tls && !cfg_.security)) {
      stats_.unknown_type_refused.fetch_add(1, std::memory_order_relaxed);
      return make_error(errc::unknown_request,
                        "request type " + std::to_string(type) + " is not served here" +
                            (spec != nullptr && spec->handler ? " (" + spec->name + " needs TLS)"
                                                              : std::string{}));
    }
    if (spec->auth == request_auth::member && cfg_.security && !conn.peer) {
      stats_.binding_refused.fetch_add(1, std::memory_order_relaxed);
      return make_error(errc::unauthenticated,
                        spec->name + " from " + conn.remote +
                            ": a client without a certificate may only ask for admission");
    }
    if (size > spec->max_request) {
      stats_.type_limit_refused.fetch_add(1, std::memory_order_relaxed);
      return make_error(errc::oversized, spec->name + " request of " + std::to_string(size) +
                                             " bytes exceeds its limit of " +
                                             std::to_string(spec->max_request));
    }
    return {};
  }

  /// Gives the budget `conn` holds back (its frame was consumed or it closed).
  void release_frame(inbound_conn& conn) {
    inbound_buffered_ -= conn.reserved;
    conn.reserved = 0;
    stats_.inbound_buffered.store(inbound_buffered_, std::memory_order_relaxed);
  }

  /// Open inbound connections from `source`.
  std::size_t per_source_count(const std::string& source) const {
    auto i = per_source_.find(source);
    return i == per_source_.end() ? 0 : i->second;
  }

  /// Forgets `conn` in the per-source count.
  void release_source(inbound_conn& conn) {
    if (conn.source.empty())
      return;
    if (auto i = per_source_.find(conn.source); i != per_source_.end() && --i->second == 0)
      per_source_.erase(i);
    conn.source.clear();
  }

  /// Opens (when sealing) and decodes the request body of an inbound exchange.
  void on_body(const inbound_ptr& conn, std::string body) {
    conn->requested = true;
    if (tcp_sealer_) {
      auto plain = open_with(*tcp_sealer_, body);
      if (plain) {
        conn->sealed = true;
        body = std::move(*plain);
      } else if (is_refusal(plain.error())) {
        stats_.dropped_refused.fetch_add(1, std::memory_order_relaxed);
        // Answered with a plain error frame: the peer cannot open anything we seal.
        fail_inbound(conn, plain.error(), true, v1::REFUSAL_UNAUTHENTICATED);
        return;
      } else if (auto request = decode_request(body)) {
        const auto* spec = cbs_.requests.find(request->type);
        if (spec == nullptr || spec->sealed) {
          // A well-formed plain request of a sealed type: unauthenticated rather than
          // malformed. Say so, so that the operator of a node without the key learns why.
          stats_.dropped_refused.fetch_add(1, std::memory_order_relaxed);
          fail_inbound(conn,
                       make_error(errc::unauthenticated,
                                  "unsealed " + (spec ? spec->name : std::string{"request"}) +
                                      ", but gossip encryption is on here: the sender has no "
                                      "gossip key"),
                       true);
          return;
        }
        dispatch(conn, std::move(*request)); // a type that is never sealed
        return;
      } else {
        fail_inbound(conn, plain.error(), true);
        return;
      }
    }
    auto request = decode_request(body);
    if (!request) {
      // A peer that sends us an error frame as a request gets no answer.
      const bool answer = request.error().code() != static_cast<std::uint8_t>(errc::peer_refused);
      fail_inbound(conn, request.error(), answer);
      return;
    }
    dispatch(conn, std::move(*request));
  }

  /// Checks a decoded request by its type's rules (again: the prefix may not have shown its
  /// type) and hands it to the type's handler.
  void dispatch(const inbound_ptr& conn, typed_body request) {
    conn->type = request.type;
    if (auto err = check_request(*conn, request.type, request.bytes.size())) {
      fail_inbound(conn, err, true);
      return;
    }
    const auto& spec = *cbs_.requests.find(request.type);
    request_responder reply = [gate = gate_, id = conn->id, type = request.type,
                               max_answer = spec.max_answer, name = spec.name,
                               sealer = conn->sealed ? tcp_sealer_
                                                     : nullptr](caf::expected<std::string> answer) {
      // Encoding and sealing are pure: do them on the replier's thread.
      bool refused = !answer;
      std::string frame;
      if (answer && answer->size() > max_answer) {
        refused = true;
        frame = encode_refusal_frame(
            v1::REFUSAL_TOO_LARGE, "the " + name + " answer of " + std::to_string(answer->size()) +
                                       " bytes exceeds its limit of " + std::to_string(max_answer));
      } else if (answer) {
        frame = encode_typed_frame(type, std::move(*answer));
      } else {
        frame =
            encode_refusal_frame(v1::REFUSAL_HANDLER, handler_text(answer.error()), answer.error());
      }
      auto sealed = seal_frame(sealer, std::move(frame));
      if (!sealed) {
        refused = true;
        sealed = encode_refusal_frame(v1::REFUSAL_HANDLER, "cannot seal the answer");
      }
      post_reply(*gate, id, std::move(*sealed), refused);
    };
    caf::error refused_now;
    try {
      refused_now = spec.handler(std::move(request.bytes), conn->peer, std::move(reply));
    } catch (const std::exception& e) {
      refused_now = make_error(errc::malformed, spec.name + " handler threw: " + e.what());
    } catch (...) {
      refused_now = make_error(errc::malformed, spec.name + " handler threw");
    }
    if (refused_now) {
      const auto code = refusal_code_of(refused_now);
      if (code == v1::REFUSAL_UNAUTHENTICATED)
        stats_.binding_refused.fetch_add(1, std::memory_order_relaxed);
      else if (code == v1::REFUSAL_HANDLER)
        stats_.handler_refused.fetch_add(1, std::memory_order_relaxed);
      fail_inbound(conn, refused_now, true, code);
      return;
    }
    stats_.requests_in.fetch_add(1, std::memory_order_relaxed);
    if (auto* in = legacy_in(request.type))
      in->fetch_add(1, std::memory_order_relaxed);
  }

  /// The counter of served requests that `type` has had from before request types (kept for
  /// `starling stats`), or null.
  std::atomic<std::uint64_t>* legacy_in(request_type type) {
    if (type == request_types::push_pull)
      return &stats_.push_pulls_in;
    if (type == request_types::identity)
      return &stats_.admissions_in;
    return nullptr;
  }

  /// Hands an encoded answer to the live transport's I/O thread (from any thread); dropped
  /// once the transport is stopping.
  static void post_reply(reply_gate& gate, std::uint64_t id, std::string bytes, bool refused) {
    std::lock_guard guard{gate.mutex};
    if (auto* owner = gate.owner) {
      asio::post(owner->io_, [owner, id, refused, bytes = std::move(bytes)]() mutable {
        owner->on_reply(id, std::move(bytes), refused);
      });
    }
  }

  void on_reply(std::uint64_t id, std::string bytes, bool refused) {
    auto i = inbound_.find(id);
    if (i == inbound_.end())
      return; // timed out or closed meanwhile
    auto conn = i->second;
    if (conn->answered || conn->closed)
      return;
    conn->answered = true;
    // A refused push-pull is a failed exchange (as before request types); any other
    // refusal is an answer.
    const bool push_pull = conn->type == request_types::push_pull;
    if (refused) {
      stats_.handler_refused.fetch_add(1, std::memory_order_relaxed);
      if (push_pull)
        stats_.push_pull_errors.fetch_add(1, std::memory_order_relaxed);
    }
    write_and_close(conn, std::move(bytes), !refused && push_pull);
  }

  /// Counts a failed inbound exchange, answers a refusal frame if `answer` (its code from
  /// `why`, or `code`), then closes.
  void fail_inbound(const inbound_ptr& conn, const caf::error& why, bool answer,
                    std::optional<v1::RefusalCode> code = std::nullopt) {
    stats_.push_pull_errors.fetch_add(1, std::memory_order_relaxed);
    drop(why, conn->remote);
    if (answer && !conn->answered) {
      conn->answered = true;
      auto frame =
          code ? encode_refusal_frame(
                     *code, *code == v1::REFUSAL_HANDLER ? handler_text(why) : render(why), why)
               : refusal_frame_of(why);
      // A refusal by the type's handler to a sealed request is sealed (as its answer would
      // be); the transport's own refusals are plain (the peer may not have our key).
      if (conn->sealed && code == v1::REFUSAL_HANDLER)
        if (auto sealed = seal_frame(tcp_sealer_, frame))
          frame = std::move(*sealed);
      write_and_close(conn, std::move(frame), false);
    } else {
      close_inbound(conn);
    }
  }

  void write_and_close(const inbound_ptr& conn, std::string bytes, bool count_failure) {
    conn->out = std::move(bytes);
    conn->stream.async_write(asio::buffer(conn->out),
                             [this, conn, count_failure](const asio::error_code& ec, std::size_t) {
                               if (conn->closed)
                                 return;
                               if (ec && count_failure) {
                                 stats_.push_pull_errors.fetch_add(1, std::memory_order_relaxed);
                                 drop(io_error("push-pull answer write", ec), conn->remote);
                               }
                               // The answer is with the kernel: closing now cuts nothing.
                               close_inbound(conn);
                             });
  }

  void close_inbound(const inbound_ptr& conn) {
    if (conn->closed)
      return;
    conn->closed = true;
    conn->deadline.cancel();
    // Accounting first: once the peer sees the close, its source has room again.
    release_frame(*conn);
    release_source(*conn);
    conn->stream.close();
    // The reader may hold up to a frame: free it now, not when the last handler lets go.
    conn->reader = frame_reader{};
    inbound_.erase(conn->id);
  }

  // -- TCP outbound (I/O thread) ---------------------------------------------------------

  /// Starts a client exchange sending `frame` to `address` on this transport's thread,
  /// accepting an answer frame of at most `max_answer` bytes.
  void start_exchange(std::string address, const std::string& what,
                      std::optional<std::string> expected_peer, std::string frame,
                      std::size_t max_answer, client_exchange::completion done) {
    exchange_spec spec;
    spec.address = std::move(address);
    spec.what = what;
    spec.security = cfg_.security.get();
    spec.expected_peer = std::move(expected_peer);
    spec.request = [frame = std::move(frame)](const SSL*) -> caf::expected<std::string> {
      return frame;
    };
    spec.timeout = cfg_.tcp_timeout;
    spec.max_frame = max_answer;
    auto ex = std::make_shared<client_exchange>(io_, std::move(spec), std::move(done));
    ex->start([this](const std::string& host, resolve_handler k) { resolve(host, std::move(k)); });
  }

  /// Opens (when the request was sealed) and decodes the answer to a request of `type`. A
  /// plain refusal frame is accepted unsealed: a peer that could not open our request cannot
  /// seal its refusal for us, and its reason is what the operator needs to see.
  caf::expected<std::string> open_answer(const std::string& address, const std::string& body,
                                         request_type type, bool sealed) {
    if (!sealed)
      return decode_answer(body, type);
    auto plain = open_with(*tcp_sealer_, body);
    if (plain)
      return decode_answer(*plain, type);
    if (v1::FrameBytes frame;
        frame.ParseFromArray(body.data(), static_cast<int>(body.size())) && frame.has_error())
      return refusal_error(frame);
    if (is_refusal(plain.error()))
      stats_.dropped_refused.fetch_add(1, std::memory_order_relaxed);
    drop(plain.error(), address);
    return plain.error();
  }

  /// Counts and reports an outbound exchange that failed at TLS (`why`: the identity
  /// refusal or the TLS error).
  void note_failure(const client_exchange& ex, const caf::error& why) {
    if (!ex.tls_refused())
      return;
    stats_.tls_refused.fetch_add(1, std::memory_order_relaxed);
    drop(why, ex.address());
  }

  // -- helpers ---------------------------------------------------------------------------

  void drop(const caf::error& why, const std::string& from) {
    spdlog::debug("gossip transport: dropped input from {}: {}", from, render(why));
    invoke_callback("on_drop", cbs_.on_drop, why, from);
  }

  /// Immutable after start().
  transport_config cfg_;
  transport_callbacks cbs_;
  /// Seals TCP frame bodies: the sealer without TLS, null with TLS (TLS protects them).
  std::shared_ptr<datagram_sealer> tcp_sealer_;
  transport_stats stats_;
  /// Declared before every I/O object so that it is destroyed after them.
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  udp::socket udp_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_;
  asio::steady_timer udp_retry_;
  udp::resolver resolver_;
  /// Receive buffer and source of the one outstanding UDP receive.
  std::vector<char> udp_buffer_;
  udp::endpoint udp_from_;
  /// True when the UDP socket is IPv6 (destinations are then v4-mapped).
  bool udp_v6_ = false;
  /// Open inbound connections, by id; at most cfg_.max_inbound_connections.
  std::map<std::uint64_t, inbound_ptr> inbound_;
  /// Open inbound connections per source address (entries at 0 are erased); each at most
  /// cfg_.max_connections_per_source.
  std::unordered_map<std::string, std::size_t> per_source_;
  /// Sum of the open connections' `reserved`; at most cfg_.inbound_budget.
  std::size_t inbound_buffered_ = 0;
  std::uint64_t next_conn_id_ = 1;
  /// Resolved host names and lookups under way (with who waits for them).
  std::unordered_map<std::string, cache_entry> cache_;
  std::unordered_map<std::string, std::vector<resolve_handler>> pending_;
  std::shared_ptr<reply_gate> gate_;
  std::string advertise_;
  std::uint16_t port_ = 0;
  /// Guards stop(); `stopped_` makes it idempotent.
  std::mutex stop_mutex_;
  bool stopped_ = false;
  std::thread thread_;
};

caf::expected<std::unique_ptr<transport>> transport::start(transport_config cfg,
                                                           transport_callbacks cbs) {
  auto bad = [](const char* key, std::string why) {
    return make_error(errc::invalid_field, std::string{"transport config "} + key + ": " + why);
  };
  if (cfg.inbound_budget < cfg.limits.max_frame)
    return bad("inbound_budget",
               std::to_string(cfg.inbound_budget) + " bytes is below limits.max_frame (" +
                   std::to_string(cfg.limits.max_frame) + "): a full push-pull could never arrive");
  if (cfg.max_anonymous_frame == 0)
    return bad("max_anonymous_frame", "must be at least 1 byte");
  if (cfg.max_connections_per_source == 0)
    return bad("max_connections_per_source", "must be at least 1");
  if (cfg.max_inbound_connections == 0)
    return bad("max_inbound_connections", "must be at least 1");
  std::unique_ptr<impl> p;
  try {
    p = std::make_unique<impl>(std::move(cfg), std::move(cbs));
    if (auto err = p->bind())
      return err;
    p->run();
  } catch (const std::exception& e) {
    return make_error(errc::io_failure, std::string{"cannot start gossip transport: "} + e.what());
  }
  return std::unique_ptr<transport>{new transport(std::move(p))};
}

transport::transport(std::unique_ptr<impl> p) : impl_(std::move(p)) {
  // The impl is bound and running.
}

transport::~transport() {
  if (impl_)
    impl_->stop();
}

std::string transport::advertise_address() const { return impl_->advertise_address(); }

std::uint16_t transport::port() const { return impl_->port(); }

void transport::send(const std::string& address, const packet& msg) { impl_->send(address, msg); }

void transport::request(const std::string& address, request_type type, std::string body,
                        std::optional<std::string> expected_peer, request_done done) {
  impl_->request(address, type, std::move(body), std::move(expected_peer), std::move(done));
}

void push_pull_with(transport& t, const std::string& address, push_pull local,
                    std::function<void(caf::expected<push_pull>)> done) {
  auto* impl = t.impl_.get();
  t.request(address, request_types::push_pull, encode_push_pull(local), std::nullopt,
            [impl, address, done = std::move(done)](caf::expected<request_answer> answer) {
              auto& stats = impl->mutable_stats();
              caf::expected<push_pull> result{caf::error{}};
              if (!answer) {
                result = std::move(answer.error());
              } else {
                result = decode_push_pull(answer->body, impl->limits());
                // The membership core knows addresses only: the answer must come from the
                // member the server's certificate names.
                if (result && answer->peer && *answer->peer != result->sender) {
                  auto err = make_error(
                      errc::unauthenticated,
                      "the push-pull answer of " + address + " claims sender \"" + result->sender +
                          "\" but the peer certificate names \"" + *answer->peer + "\"");
                  stats.binding_refused.fetch_add(1, std::memory_order_relaxed);
                  impl->report_drop(err, address);
                  result = std::move(err);
                }
              }
              if (result)
                stats.push_pulls_out.fetch_add(1, std::memory_order_relaxed);
              else
                stats.push_pull_errors.fetch_add(1, std::memory_order_relaxed);
              invoke_callback("push_pull done", done, std::move(result));
            });
}

void admission_with(transport& t, const std::string& address, std::string request,
                    std::optional<std::string> expected_peer,
                    std::function<void(caf::expected<std::string>)> done) {
  auto* impl = t.impl_.get();
  t.request(address, request_types::identity, std::move(request), std::move(expected_peer),
            [impl, done = std::move(done)](caf::expected<request_answer> answer) {
              if (answer)
                impl->mutable_stats().admissions_out.fetch_add(1, std::memory_order_relaxed);
              invoke_callback("admission done", done,
                              answer ? caf::expected<std::string>{std::move(answer->body)}
                                     : caf::expected<std::string>{std::move(answer.error())});
            });
}

caf::error request_registry::add(request_type type, request_spec spec) {
  auto bad = [type](const std::string& why) {
    return make_error(errc::invalid_field, "request type " + std::to_string(type) + ": " + why);
  };
  if (type == 0)
    return bad("0 is not a request type");
  if (specs_.count(type) > 0)
    return bad("taken by " + specs_.at(type).name);
  if (spec.name.empty())
    return bad("no name");
  if (spec.max_request == 0 || spec.max_answer == 0)
    return bad(spec.name + ": a size limit of 0 bytes");
  if (spec.auth == request_auth::anyone_over_tls && type != request_types::identity)
    return bad(spec.name + ": only the identity channel (admission) may serve clients without a "
                           "certificate");
  specs_.emplace(type, std::move(spec));
  return {};
}

const request_spec* request_registry::find(request_type type) const {
  auto i = specs_.find(type);
  return i == specs_.end() ? nullptr : &i->second;
}

request_spec push_pull_spec(push_pull_handler on_push_pull, const codec_limits& limits) {
  request_spec spec;
  spec.name = "push-pull";
  spec.max_request = limits.max_frame;
  spec.max_answer = limits.max_frame;
  spec.auth = request_auth::member;
  spec.sealed = true;
  if (on_push_pull)
    spec.handler = [on_push_pull = std::move(on_push_pull),
                    limits](std::string body, const std::optional<std::string>& peer,
                            request_responder reply) -> caf::error {
      auto remote = decode_push_pull(body, limits);
      if (!remote)
        return std::move(remote.error());
      // With TLS, the sender must be the member the client's certificate names.
      if (peer && *peer != remote->sender)
        return make_error(errc::unauthenticated, "push-pull claims sender \"" + remote->sender +
                                                     "\" but the peer certificate names \"" +
                                                     *peer + "\"");
      push_pull_responder answer = [reply = std::move(reply)](caf::expected<push_pull> state) {
        reply(state ? caf::expected<std::string>{encode_push_pull(*state)}
                    : caf::expected<std::string>{std::move(state.error())});
      };
      on_push_pull(std::move(*remote), std::move(answer));
      return {};
    };
  return spec;
}

request_spec identity_spec(identity_handler on_request) {
  request_spec spec;
  spec.name = "admission"; // as logs and errors have always called the identity channel
  spec.max_request = codec_limits{}.max_frame;
  spec.max_answer = codec_limits{}.max_frame;
  spec.auth = request_auth::anyone_over_tls;
  spec.sealed = false; // TLS only
  if (on_request)
    spec.handler = [on_request = std::move(on_request)](std::string body,
                                                        const std::optional<std::string>& peer,
                                                        request_responder reply) -> caf::error {
      on_request(std::move(body), peer, std::move(reply));
      return {};
    };
  return spec;
}

void transport::stop() { impl_->stop(); }

caf::expected<std::string> admission_exchange(const std::string& address, stream_security& security,
                                              const admission_request_builder& build,
                                              std::chrono::milliseconds timeout,
                                              const codec_limits& limits) {
  try {
    asio::io_context io;
    tcp::resolver resolver{io};
    std::optional<caf::expected<std::string>> result;
    exchange_spec spec;
    spec.address = address;
    spec.what = "admission";
    spec.security = &security;
    spec.request = [&build](const SSL* session) -> caf::expected<std::string> {
      auto body = build(session);
      if (!body)
        return std::move(body.error());
      return encode_typed_frame(request_types::identity, std::move(*body));
    };
    spec.timeout = timeout;
    spec.max_frame = limits.max_frame;
    auto ex = std::make_shared<client_exchange>(
        io, std::move(spec), [&result](client_exchange&, caf::expected<std::string> body) {
          result = body ? decode_answer(*body, request_types::identity) : std::move(body);
        });
    ex->start([&resolver](const std::string& host, resolve_handler k) {
      resolve_with(resolver, host, std::move(k));
    });
    // The exchange's deadline bounds this loop. Leftover handlers (aborted operations) are
    // destroyed, never run, with the io_context.
    while (!result && io.run_one() > 0) {
    }
    if (!result)
      return make_error(errc::io_failure, "admission with " + address + " ended without an answer");
    return std::move(*result);
  } catch (const std::exception& e) {
    return make_error(errc::io_failure, "admission with " + address + ": " + e.what());
  }
}

const transport_stats& transport::stats() const { return impl_->stats(); }

caf::expected<std::pair<std::string, std::uint16_t>> split_host_port(std::string_view address) {
  auto parsed = wire::parse_host_port(address);
  if (!parsed)
    return make_error(errc::invalid_field,
                      std::string{parsed.problem} + " in address \"" + std::string{address} + "\"");
  return std::pair<std::string, std::uint16_t>{std::move(parsed.address->host),
                                               parsed.address->port};
}

} // namespace starling::gossip
