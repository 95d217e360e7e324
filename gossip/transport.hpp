// The gossip transport: one UDP socket (probes and piggybacked gossip) and one TCP
// listener (push-pull full-state exchanges) on the same port, served by its own Asio
// I/O thread. No CAF actors here: the agent wires the callbacks to the membership actor.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <caf/expected.hpp>
#include <openssl/types.h>

#include "gossip/codec.hpp"
#include "gossip/types.hpp"

namespace starling::gossip {

/// Seals and opens gossip datagrams and push-pull frame bodies (the agent's implementation
/// is the AES-256-GCM keyring of docs/decisions/0005). Called from the transport's I/O
/// thread and from the threads that start or answer push-pulls: implementations must be
/// thread-safe and must not block for long.
///
/// How the transport counts an open() error: an error of the gossip category (malformed,
/// truncated, ...) counts as malformed input; any other error (the keyring's tampered,
/// replayed, unknown_key...) counts as refused, unauthenticated input.
class datagram_sealer {
public:
  virtual ~datagram_sealer() = default;
  /// Wraps an encoded datagram or frame body for the wire, bound to `receiver`: the
  /// destination's gossip address ("host:port", as the membership lists it) for a datagram,
  /// empty for a TCP frame (TCP exchanges are bound by their connection, and by mutual TLS
  /// when the node has a certificate). An error drops the message (counted as a send error,
  /// or a failed push-pull).
  [[nodiscard]] virtual caf::expected<std::string> seal(std::string plain,
                                                        std::string_view receiver) = 0;
  /// Unwraps a received datagram or frame body, received by `self` (this node's advertised
  /// gossip address for a datagram, empty for a TCP frame); a message bound to another
  /// receiver is refused. An error drops it (counted, see above).
  [[nodiscard]] virtual caf::expected<std::string> open(std::string_view wire,
                                                        std::string_view self) = 0;
};

/// TLS for every TCP exchange (push-pull, admission): the agent's implementation
/// (actors/tls_security) makes sessions from the node's current identity::tls_context, so a
/// renewed certificate applies to the next connection. Called from the transport's I/O
/// thread and from the joiner's admission exchange: implementations must be thread-safe.
class stream_security {
public:
  virtual ~stream_security() = default;
  /// A new OpenSSL session for one connection, in the server or the client role. The
  /// caller owns it (the transport hands it to net::stream, which frees it). Clients
  /// name the member they expect when they know it (std::nullopt: any member of the mesh).
  [[nodiscard]] virtual caf::expected<SSL*>
  new_session(bool server, std::optional<std::string> expected_peer) = 0;
  /// After a completed handshake: the peer's verified node name, or std::nullopt for a
  /// client that presented no certificate (a joiner; only admission is served to it).
  [[nodiscard]] virtual std::optional<std::string> peer_name(const SSL* ssl) = 0;
  /// Why a handshake failed as far as identity goes (untrusted chain, expired, revoked...);
  /// an empty error for a failure of TLS itself. For counting and logs.
  [[nodiscard]] virtual caf::error refusal(const SSL* ssl) = 0;
};

/// Where and how the transport listens.
struct transport_config {
  /// Address to bind UDP and TCP to ("0.0.0.0", "127.0.0.1", "::").
  std::string bind_host = "0.0.0.0";
  /// Port for both UDP and TCP; 0 picks a free port usable by both.
  std::uint16_t port = 7946;
  /// Host other members use to reach us. Empty: bind_host if it is a specific address,
  /// else the first non-loopback IPv4 address of this machine (127.0.0.1 if none).
  std::string advertise_host;
  /// Limits for decoding what arrives.
  codec_limits limits;
  /// Bound on a whole TCP exchange (push-pull or admission: connect, TLS handshake, write,
  /// read), both directions.
  std::chrono::milliseconds tcp_timeout{10000};
  /// Longest inbound TCP frame, in bytes (length prefix excluded), from a client without a
  /// certificate (with `security`: a joiner, whose only business is an admission request,
  /// at most identity's max_admission_bytes = 64 KiB). Checked on the length prefix as soon
  /// as it arrives, before the body is buffered: a longer one is refused with an error frame
  /// and the connection closed (counted in anonymous_refused). Plain TCP has no such client.
  std::size_t max_anonymous_frame = 64u << 10;
  /// Bytes that all inbound connections together may hold for the frames they are
  /// receiving, reserved at each frame's length prefix and given back when the frame is
  /// consumed or its connection closes. A frame announcing more than what is left is refused
  /// before anything is buffered (counted in budget_refused). At least limits.max_frame, so
  /// that one full-size push-pull always fits.
  std::size_t inbound_budget = 32u << 20;
  /// Inbound TCP connections open at once from one source address (any port). A newcomer
  /// beyond it evicts that source's oldest connection without a whole request yet (so a
  /// slowloris only evicts its own), else is closed at accept; either counts in
  /// source_refused. At least 1.
  std::size_t max_connections_per_source = 16;
  /// Inbound TCP connections open at once in all. When full, the oldest one without a whole
  /// request yet is evicted for a newcomer, else the newcomer is closed. At least 1.
  std::size_t max_inbound_connections = 64;
  /// Optional sealer; null means plain datagrams and frames. When set, every UDP datagram
  /// and every TCP frame body of a sealed request type (push-pull) is sealed, and anything that
  /// does not open is refused (a node with another key can neither probe nor join by push-pull).
  /// The sealed datagram must fit `limits.max_datagram`: the owner leaves room for the sealing
  /// overhead in what it asks to send. A refusal is answered on TCP with a plain error frame.
  std::shared_ptr<datagram_sealer> sealer;
  /// Optional TLS; null means plain TCP (a node without a certificate: development only).
  /// When set, every TCP exchange is TLS 1.3 with both certificates checked (an anonymous
  /// client may only send admission requests), push-pull frames are not sealed (TLS
  /// protects them; the sealer still seals UDP), and a push-pull whose `sender` is not the
  /// peer certificate's node name is refused in both directions (counted in
  /// binding_refused).
  std::shared_ptr<stream_security> security;
};

/// Counters of the transport; read from any thread.
struct transport_stats {
  std::atomic<std::uint64_t> datagrams_in{0};
  std::atomic<std::uint64_t> datagrams_out{0};
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> bytes_out{0};
  std::atomic<std::uint64_t> dropped_malformed{0}; ///< undecodable datagrams
  /// Datagrams and push-pull frames the sealer refused as unauthenticated (tampered,
  /// replayed, unknown key, unsealed). TCP refusals also count in push_pull_errors.
  std::atomic<std::uint64_t> dropped_refused{0};
  std::atomic<std::uint64_t> dropped_oversized{0}; ///< datagrams over max_datagram
  std::atomic<std::uint64_t> send_errors{0};
  std::atomic<std::uint64_t> push_pulls_in{0};    ///< exchanges a peer started
  std::atomic<std::uint64_t> push_pulls_out{0};   ///< exchanges we started that succeeded
  std::atomic<std::uint64_t> push_pull_errors{0}; ///< failed exchanges, either direction
  /// TLS handshakes that failed, either direction (untrusted, expired, revoked, no TLS...).
  std::atomic<std::uint64_t> tls_refused{0};
  /// Push-pulls whose sender was not the member the peer's certificate names, and
  /// members-only requests (push-pull included) sent by an anonymous client.
  std::atomic<std::uint64_t> binding_refused{0};
  std::atomic<std::uint64_t> admissions_in{0};  ///< admission requests served (any answer)
  std::atomic<std::uint64_t> admissions_out{0}; ///< admission requests forwarded, answered
  // Inbound refusals below also count in push_pull_errors (each is a failed exchange).
  /// Inbound frames refused at their length prefix: over max_anonymous_frame from a client
  /// without a certificate.
  std::atomic<std::uint64_t> anonymous_refused{0};
  /// Inbound frames refused at their length prefix: more than what was left of
  /// inbound_budget.
  std::atomic<std::uint64_t> budget_refused{0};
  /// Inbound connections closed because their source address had max_connections_per_source
  /// open: its oldest one without a whole request evicted, or the newcomer closed at accept.
  std::atomic<std::uint64_t> source_refused{0};
  /// Inbound connections closed at accept or evicted: max_inbound_connections were open.
  std::atomic<std::uint64_t> connections_refused{0};
  /// Bytes of inbound_budget reserved right now by frames being received (a gauge).
  std::atomic<std::uint64_t> inbound_buffered{0};
  // The request channel (decision 0014), every type; push-pull and the identity channel
  // also count in their own counters above.
  std::atomic<std::uint64_t> requests_in{0};     ///< requests handed to their type's handler
  std::atomic<std::uint64_t> requests_out{0};    ///< requests we sent that were answered
  std::atomic<std::uint64_t> requests_failed{0}; ///< requests we sent that failed or were refused
  /// Inbound requests of a type this node does not serve (REFUSAL_UNKNOWN_TYPE).
  std::atomic<std::uint64_t> unknown_type_refused{0};
  /// Inbound requests over their type's max_request, refused at the length prefix when the
  /// frame names its type in its first bytes (as Starling writes it), else once decoded.
  std::atomic<std::uint64_t> type_limit_refused{0};
  /// Inbound requests their handler refused (an answer, not a transport failure).
  std::atomic<std::uint64_t> handler_refused{0};
};

/// The type of a request on the gossip TCP port (docs/decisions/0014); 0 is invalid. Every
/// type in use is listed in docs/extending-gossip.md, "Adding a request type".
using request_type = std::uint32_t;

/// The request types Starling defines.
namespace request_types {
/// Membership full-state sync (Frame.push_pull); members only; sealed without TLS.
inline constexpr request_type push_pull = 1;
/// The identity channel (Frame.admission: admission, sync, renewal, endorsement, keyring);
/// TLS only; the one type a client without a certificate (a joiner) may send.
inline constexpr request_type identity = 2;
/// Reserved: the routing table's digest sync (issue 16).
inline constexpr request_type routing = 3;
} // namespace request_types

/// Who may send a request type.
enum class request_auth : std::uint8_t {
  /// With TLS, a client whose certificate the TLS check verified (a member); without TLS
  /// (development), anyone who reaches the port (and can seal, for a sealed type).
  member = 1,
  /// TLS only (refused on plain TCP), and a client without a certificate too: the identity
  /// channel alone (admission of a joiner); request_registry::add refuses it for any other.
  anyone_over_tls = 2,
};

/// Answers one request: call once with the answer body, or an error to refuse. The error's
/// category and code travel to the client (REFUSAL_HANDLER) with its rendered text, except
/// gossip.unauthenticated (REFUSAL_UNAUTHENTICATED, counted in binding_refused) and
/// gossip.malformed (REFUSAL_MALFORMED). May be called from any thread.
using request_responder = std::function<void(caf::expected<std::string>)>;

/// Serves one request of a type, on the transport's I/O thread (must not block). `body` is
/// the request (at most the type's max_request bytes), `peer` the client's verified node
/// name with TLS (std::nullopt: a client without a certificate, or plain TCP). Returns an
/// error to refuse at once, without calling `reply` (the rules above; the request does not
/// count as served), else answers through `reply`, now or later.
using request_handler = std::function<caf::error(
    std::string body, const std::optional<std::string>& peer, request_responder reply)>;

/// How the transport carries and guards one request type, on both sides.
struct request_spec {
  /// For errors and logs ("push-pull", "identity", ...). Not empty.
  std::string name;
  /// Longest request body, in bytes: checked on the request's length prefix, before the
  /// body is buffered (the frame around it may add up to 16 bytes, and sealing its own).
  std::size_t max_request = 64u << 10;
  /// Longest answer body, in bytes: the server refuses a longer answer of its handler
  /// (REFUSAL_TOO_LARGE), the client a longer answer frame at its length prefix.
  std::size_t max_answer = 64u << 10;
  /// Who may send it.
  request_auth auth = request_auth::member;
  /// True: without TLS but with a sealer, the request and its answer are sealed and an
  /// unsealed one is refused (REFUSAL_UNAUTHENTICATED). With TLS nothing is sealed.
  bool sealed = false;
  /// Serves it; null: this node sends requests of the type but serves none
  /// (REFUSAL_UNKNOWN_TYPE).
  request_handler handler;
};

/// The request types a transport knows, by type. Filled before transport::start, immutable
/// after (read from the I/O thread and the requesting threads without locks).
class request_registry {
public:
  /// Adds `type`. Errors (invalid_field): type 0, taken, an empty name, a zero size limit,
  /// request_auth::anyone_over_tls for a type other than request_types::identity.
  [[nodiscard]] caf::error add(request_type type, request_spec spec);

  /// The spec of `type`, or null.
  [[nodiscard]] const request_spec* find(request_type type) const;

private:
  std::map<request_type, request_spec> specs_;
};

/// The answer to a request we sent.
struct request_answer {
  /// The answer body (at most the type's max_answer bytes).
  std::string body;
  /// With TLS: the server's verified node name (std::nullopt: plain TCP).
  std::optional<std::string> peer;
};

/// Receives the answer to a request we sent, once, on the transport's I/O thread.
using request_done = std::function<void(caf::expected<request_answer>)>;

/// Replies to a peer's push-pull: call once with our state, or an error to refuse.
/// May be called from any thread.
using push_pull_responder = std::function<void(caf::expected<push_pull>)>;

/// Replies to an admission request: call once with the encoded IdentityResponse
/// (proto/admission.proto), or an error to refuse. May be called from any thread.
using admission_responder = std::function<void(caf::expected<std::string>)>;

/// A peer's push-pull, decoded (and, with TLS, its sender bound to the peer certificate);
/// answer through `reply`.
using push_pull_handler = std::function<void(push_pull remote, push_pull_responder reply)>;

/// A request of the identity channel (`request` is an encoded IdentityRequest, admission or
/// sync, opaque to the transport). `peer` is the client's verified node name (a member), or
/// std::nullopt for a client without a certificate (a joiner: the owner serves it admission
/// only).
using identity_handler = std::function<void(std::string request, std::optional<std::string> peer,
                                            admission_responder reply)>;

/// The spec of request type 1 (push-pull): members only, sealed without TLS, requests and
/// answers up to limits.max_frame. Its handler decodes the state with `limits` (refusing
/// malformed bytes) and, with TLS, refuses a push-pull whose `sender` is not the node the
/// client's certificate names (gossip.unauthenticated, counted in binding_refused) before
/// calling `on_push_pull`.
[[nodiscard]] request_spec push_pull_spec(push_pull_handler on_push_pull,
                                          const codec_limits& limits = {});

/// The spec of request type 2 (the identity channel): TLS only, anonymous clients allowed
/// (the handler serves them admission only), requests and answers up to 15 MiB (a sync).
[[nodiscard]] request_spec identity_spec(identity_handler on_request);

/// Callbacks into the owner. All are invoked on the transport's I/O thread and must not
/// block (post to an actor instead).
struct transport_callbacks {
  /// A datagram decoded; `from` is the UDP source "host:port".
  std::function<void(packet msg, std::string from)> on_packet;
  /// Optional: something untrusted was dropped (for debug logging); counted regardless.
  std::function<void(const caf::error& why, const std::string& from)> on_drop;
  /// The request types this node sends and serves (push_pull_spec, identity_spec, and any
  /// other module's). A type not in it is neither sent nor served.
  request_registry requests;
};

/// The gossip transport. Thread-safe public methods; callbacks run on its own thread.
class transport {
public:
  /// Binds UDP and TCP and starts the I/O thread. Fails with errc::io_failure naming the
  /// address when binding fails, with errc::invalid_field naming the key of a bad limit
  /// (inbound_budget below limits.max_frame, a zero connection or frame limit).
  [[nodiscard]] static caf::expected<std::unique_ptr<transport>> start(transport_config cfg,
                                                                       transport_callbacks cbs);

  /// Stops the I/O thread and closes sockets (idempotent); pending completions are dropped.
  ~transport();

  /// The address members use to reach us: advertise host and the bound port.
  [[nodiscard]] std::string advertise_address() const;

  /// The actual bound port (useful with port 0).
  [[nodiscard]] std::uint16_t port() const;

  /// Encodes and sends one datagram to "host:port". Never blocks; errors are counted.
  void send(const std::string& address, const packet& msg);

  /// Sends one request of `type` (registered in the callbacks' registry) with `body` to
  /// "host:port" and reads its answer; with TLS the server must be `expected_peer`
  /// (std::nullopt: any member of the mesh). `done` runs once on the I/O thread with the
  /// answer or an error: invalid_field (type not registered, body over its max_request, a
  /// TLS-only type without security, a bad address), io_failure, timeout, the TLS refusal,
  /// oversized or malformed answers, and the peer's refusal by its code (decision 0014):
  /// unknown_request, unauthenticated, oversized, busy, malformed, or the handler's own
  /// error (category and code; a gossip-category one arrives as peer_refused), and
  /// peer_refused for a refusal without a code (an older node). Thread-safe.
  void request(const std::string& address, request_type type, std::string body,
               std::optional<std::string> expected_peer, request_done done);

  /// Stops the I/O thread and closes the sockets. Idempotent.
  void stop();

  [[nodiscard]] const transport_stats& stats() const;

  class impl;

  // The typed helpers count in their protocols' own counters.
  friend void push_pull_with(transport& t, const std::string& address, push_pull local,
                             std::function<void(caf::expected<push_pull>)> done);
  friend void admission_with(transport& t, const std::string& address, std::string request,
                             std::optional<std::string> expected_peer,
                             std::function<void(caf::expected<std::string>)> done);

private:
  explicit transport(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

/// Opens a push-pull (request type 1) with "host:port": sends `local`, reads the answer.
/// `done` runs once on the I/O thread with the peer's state or an error (those of
/// transport::request; with TLS, unauthenticated when the answer's sender is not the node
/// the server's certificate names, counted in binding_refused).
void push_pull_with(transport& t, const std::string& address, push_pull local,
                    std::function<void(caf::expected<push_pull>)> done);

/// Sends an identity-channel request (request type 2, an encoded IdentityRequest) to the
/// member `expected_peer` at "host:port" over TLS and reads the answer: a seed forwarding a
/// joiner's request to the token's issuer. `done` runs once on the I/O thread with the
/// encoded IdentityResponse or an error (those of transport::request).
void admission_with(transport& t, const std::string& address, std::string request,
                    std::optional<std::string> expected_peer,
                    std::function<void(caf::expected<std::string>)> done);

/// Builds the admission request once the TLS handshake is done, from the session (a joiner
/// learns the mesh name from the seed's verified chain: identity::tls_context::peer_of).
/// An error aborts the exchange and is returned as is.
using admission_request_builder = std::function<caf::expected<std::string>(const SSL* session)>;

/// One admission exchange by a node that is not a member yet (it has no transport): TLS
/// with a client session from `security` (a joiner's pinned-root context), then one request
/// frame of request type 2 (from `build`), one answer frame, all within `timeout`. Blocks the
/// calling thread (own I/O context). Returns the encoded IdentityResponse, or an error: io_failure
/// or timeout naming the address, the server's refusal by its code (as transport::request), the TLS
/// refusal (e.g. the seed's chain does not end at the pinned root), or build's error.
[[nodiscard]] caf::expected<std::string> admission_exchange(const std::string& address,
                                                            stream_security& security,
                                                            const admission_request_builder& build,
                                                            std::chrono::milliseconds timeout,
                                                            const codec_limits& limits = {});

/// Splits "host:port" (IPv6 as "[::1]:7946"). Errors: invalid_field naming the input.
[[nodiscard]] caf::expected<std::pair<std::string, std::uint16_t>>
split_host_port(std::string_view address);

} // namespace starling::gossip
