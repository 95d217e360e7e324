// The gossip transport: one UDP socket (probes and piggybacked gossip) and one TCP
// listener (push-pull full-state exchanges) on the same port, served by its own Asio
// I/O thread. No CAF actors here: the agent wires the callbacks to the membership actor.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
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
  /// caller owns it (the transport hands it to asio::ssl::stream, which frees it). Clients
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
  /// and every TCP push-pull frame body is sealed, and anything that does not open is
  /// refused (a node with another key can neither probe nor join by push-pull). The sealed
  /// datagram must fit `limits.max_datagram`: the owner leaves room for the sealing overhead
  /// in what it asks to send. A refusal is answered on TCP with a plain error frame.
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
  /// Push-pulls whose sender was not the member the peer's certificate names, or sent by
  /// an anonymous client.
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
};

/// Replies to a peer's push-pull: call once with our state, or an error to refuse.
/// May be called from any thread.
using push_pull_responder = std::function<void(caf::expected<push_pull>)>;

/// Replies to an admission request: call once with the encoded IdentityResponse
/// (proto/admission.proto), or an error to refuse. May be called from any thread.
using admission_responder = std::function<void(caf::expected<std::string>)>;

/// Callbacks into the owner. All are invoked on the transport's I/O thread and must not
/// block (post to an actor instead).
struct transport_callbacks {
  /// A datagram decoded; `from` is the UDP source "host:port".
  std::function<void(packet msg, std::string from)> on_packet;
  /// A peer opened a push-pull and sent its state; answer through `reply`.
  std::function<void(push_pull remote, push_pull_responder reply)> on_push_pull;
  /// Optional: something untrusted was dropped (for debug logging); counted regardless.
  std::function<void(const caf::error& why, const std::string& from)> on_drop;
  /// Optional: a request of the identity channel arrived over TLS (`request` is an encoded
  /// IdentityRequest, admission or sync, opaque to the transport). `peer` is the client's
  /// verified node name (a member), or std::nullopt for a client without a certificate (a
  /// joiner: the owner serves it admission only). Unset, or without `security`: refused
  /// with an error frame.
  std::function<void(std::string request, std::optional<std::string> peer,
                     admission_responder reply)>
      on_admission;
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

  /// Opens a push-pull with "host:port": sends `local`, reads the answer. `done` runs
  /// once on the I/O thread with the peer's state or an error (io_failure, timeout,
  /// peer_refused, malformed...).
  void push_pull_with(const std::string& address, push_pull local,
                      std::function<void(caf::expected<push_pull>)> done);

  /// Sends an admission request (encoded IdentityRequest) to the member at "host:port"
  /// over TLS, expecting the peer `expected_peer`, and reads the answer: a seed forwarding
  /// a joiner's request to the token's issuer. `done` runs once on the I/O thread with the
  /// encoded IdentityResponse or an error (no security configured: invalid_field;
  /// io_failure, timeout, peer_refused, tls refusal...).
  void admission_with(const std::string& address, std::string request,
                      std::optional<std::string> expected_peer,
                      std::function<void(caf::expected<std::string>)> done);

  /// Stops the I/O thread and closes the sockets. Idempotent.
  void stop();

  [[nodiscard]] const transport_stats& stats() const;

  class impl;

private:
  explicit transport(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

/// Builds the admission request once the TLS handshake is done, from the session (a joiner
/// learns the mesh name from the seed's verified chain: identity::tls_context::peer_of).
/// An error aborts the exchange and is returned as is.
using admission_request_builder = std::function<caf::expected<std::string>(const SSL* session)>;

/// One admission exchange by a node that is not a member yet (it has no transport): TLS
/// with a client session from `security` (a joiner's pinned-root context), then one request
/// frame (from `build`), one answer frame, all within `timeout`. Blocks the calling thread
/// (own I/O context). Returns the encoded IdentityResponse, or an error: io_failure or
/// timeout naming the address, peer_refused with the server's reason, the TLS refusal
/// (e.g. the seed's chain does not end at the pinned root), or build's error.
[[nodiscard]] caf::expected<std::string> admission_exchange(const std::string& address,
                                                            stream_security& security,
                                                            const admission_request_builder& build,
                                                            std::chrono::milliseconds timeout,
                                                            const codec_limits& limits = {});

/// Splits "host:port" (IPv6 as "[::1]:7946"). Errors: invalid_field naming the input.
[[nodiscard]] caf::expected<std::pair<std::string, std::uint16_t>>
split_host_port(std::string_view address);

} // namespace starling::gossip
