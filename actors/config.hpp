// Configuration of `starling agent`: a TOML file whose keys mirror the command-line flags,
// flags overriding the file. Loading is plain C++ (toml++, CLI11): no CAF actor headers,
// so it is cheap to compile and to unit-test. docs/operations.md lists every key.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "actors/service_spec.hpp"
#include "gossip/hlc.hpp"
#include "gossip/membership.hpp"
#include "gossip/routing_gossip.hpp"
#include "gossip/types.hpp"
#include "proto/wire/address.hpp"

namespace CLI {
class App;
} // namespace CLI

namespace starling::actors {

/// A "host:port" pair (proto/wire/address.hpp). IPv6 hosts are kept without brackets.
using host_port = wire::host_port;

/// Output format of the agent's log (always on stderr).
enum class log_format : std::uint8_t { text = 1, json = 2 };

/// Log levels, in spdlog's order.
enum class log_level : std::uint8_t { trace = 0, debug, info, warn, error, off };

/// The default of agent_config::inline_section_max (gossip::default_inline_section_max,
/// checked equal in config.cpp; kept here so that this header needs no gossip routing one).
inline constexpr std::size_t default_inline_section_max = 64u << 10;

/// Most data-plane I/O threads ([proxy] threads).
inline constexpr std::size_t max_proxy_threads = 64;

/// Everything `starling agent` needs, validated. Defaults are the documented ones.
struct agent_config {
  /// This node's member name: [A-Za-z0-9][A-Za-z0-9._-]*, at most 64 bytes. Default: hostname.
  std::string name;
  /// Where agent.json, the lock and the persisted incarnation live.
  /// Default: ./starling-data/<name> (relative to the working directory).
  std::filesystem::path data_dir;
  /// UDP + TCP gossip bind address; port 0 picks a free one.
  host_port gossip{"0.0.0.0", 7946};
  /// Host advertised to other members; empty lets the transport choose.
  std::string advertise;
  /// Admin actor address; loopback unless admin_allow_remote.
  host_port admin{"127.0.0.1", 7947};
  /// Allows a non-loopback admin address (the credential travels in the clear on it).
  bool admin_allow_remote = false;
  /// Read-only admin commands (members, certs, stats, keyring list) need no credential;
  /// false: every command needs it (docs/decisions/0012).
  bool admin_open_reads = true;
  /// Seeds ("host:port", port != 0). Empty: start a new mesh alone.
  std::vector<std::string> join;
  /// Give up (exit 1) when no seed answered within this bound.
  std::chrono::milliseconds join_timeout{std::chrono::seconds{60}};
  /// Tags this node publishes.
  gossip::tag_map tags;
  log_level level = log_level::info;
  log_format format = log_format::text;
  /// JSON-lines file receiving member events; empty disables it.
  std::filesystem::path event_log;
  /// SWIM tunables ([gossip] table).
  gossip::swim_config swim;
  /// Bound on one push-pull exchange (gossip.tcp_timeout).
  std::chrono::milliseconds tcp_timeout{std::chrono::seconds{10}};
  /// Initial gossip key, base64 of 32 bytes (validated); empty: none. Secret.
  std::string gossip_key;
  /// Initial keyring file (the <data-dir>/keyring text form; validated at load); empty: none.
  std::filesystem::path keyring_file;
  /// Directory of `starling ca issuer`'s output: this node is an issuer (signs its own node
  /// certificate and admits others). Empty: not an issuer.
  std::filesystem::path issuer_dir;
  /// Join tokens (`starling token create` on issuers); used once, when the data dir holds
  /// no node certificate yet. Needs `join`. With admission_quorum = k, k tokens made by k
  /// distinct issuers of one mesh. Secret: never logged.
  std::vector<std::string> tokens;
  /// How many distinct issuers must vouch for a node certificate (docs/decisions/0009):
  /// peers with fewer are refused at every handshake, issuers admit with no fewer. The same
  /// value on every node of a mesh; 1 to identity::max_admission_quorum.
  std::size_t admission_quorum = 1;
  /// Validity of the node certificates this node signs as an issuer (admissions, renewals,
  /// its own): from min_cert_ttl to max_cert_ttl, capped at the issuer certificate's
  /// expiry. Ignored on a node that is not an issuer.
  std::chrono::seconds cert_ttl{std::chrono::hours{24}};
  /// The services this node registers from the config's `[[service]]` tables, in file order,
  /// each with from_config set: valid (service_from_json's checks), distinct by (name, id),
  /// at most gossip::max_instances_per_owner.
  std::vector<service_spec> services;
  /// DNS server answering `<service>.<dns_domain>` names ([dns] address, --dns); port 0
  /// picks a free one; nullopt: no DNS server ("" or "off"). Loopback unless
  /// dns_allow_remote.
  std::optional<host_port> dns{host_port{"127.0.0.1", 8600}};
  /// Domain the DNS server answers for: lowercase DNS labels joined by '.', at most 253 bytes.
  std::string dns_domain = "starling";
  /// The metrics/status HTTP server (/metrics, /healthz, /readyz; [metrics] address,
  /// --metrics); port 0 picks a free port; unset ("off"): none. A non-loopback address
  /// needs metrics_allow_remote.
  std::optional<host_port> metrics{host_port{"127.0.0.1", 7949}};
  /// Allows a non-loopback `metrics` address ([metrics] metrics_allow_remote).
  bool metrics_allow_remote = false;
  /// The data plane's inbound listener, where peers' proxies reach this node's services over
  /// mutual TLS ([proxy] inbound, --inbound); port 0 picks a free port; unset ("off"): no
  /// data plane at all (no inbound and no outbound listeners).
  std::optional<host_port> inbound{host_port{"0.0.0.0", 7948}};
  /// Data-plane I/O threads, one io_context each ([proxy] threads, 1 to max_proxy_threads).
  std::size_t proxy_threads = 1;
  /// Access log of the data plane: a file of JSON lines, appended ([proxy] access_log);
  /// empty: none.
  std::string access_log;
  /// Share of requests the access log records, 0 to 1 ([proxy] access_log_sample).
  double access_log_sample = 1.0;
  /// TCP tunnels between plain sockets (local instances) move bytes with splice(2)
  /// ([proxy] splice).
  bool proxy_splice = false;
  /// HTTP requests to peers go over HTTP/2 when the peer chooses it by ALPN ([proxy]
  /// http2_between_nodes; decision 0022).
  bool proxy_http2 = true;
  /// A TCP tunnel that moves no byte either way for this long closes ([proxy]
  /// tunnel_idle_timeout); zero: never.
  std::chrono::milliseconds proxy_tunnel_idle_timeout{std::chrono::hours{1}};
  /// TCP keepalive of the data plane's connections: first probe after this long without
  /// traffic ([proxy] keepalive, whole seconds up to 32767); zero: off.
  std::chrono::seconds proxy_keepalive{10};
  /// The data plane's I/O back end ([proxy] io): "io_uring" (which falls back to epoll,
  /// with a warning, where the agent may not use it) or "epoll".
  std::string proxy_io = "io_uring";
  /// Allows a non-loopback `dns` address ([dns] dns_allow_remote): the server then answers
  /// whoever reaches it with the mesh's service addresses.
  bool dns_allow_remote = false;
  /// Routing stamps more than this ahead of the wall clock are refused ([routing]
  /// max_clock_skew; whole milliseconds, min_clock_skew to max_clock_skew_bound).
  std::chrono::milliseconds max_clock_skew{gossip::default_max_clock_skew};
  /// Largest routing table (encoded bytes) a push-pull section carries whole; beyond it the
  /// section is the digest and peers pull the differing ranges ([routing]
  /// inline_section_max; 0 to 8 MiB, 0: always the digest).
  std::size_t inline_section_max = default_inline_section_max;
  /// Problems that do not stop the agent (a secret file readable by group or others); the
  /// agent logs each at warn once logging is set up.
  std::vector<std::string> warnings;
};

/// Bounds of agent_config::cert_ttl. Under 30 s a certificate would be due for renewal
/// (at 2/3 of its life) faster than a renewal round trip is sure to complete; over 30 days
/// a stolen key is usable too long after it is revoked on a node that missed the statement.
inline constexpr std::chrono::seconds min_cert_ttl{30};
inline constexpr std::chrono::seconds max_cert_ttl{std::chrono::hours{24 * 30}};

/// Bounds of agent_config::max_clock_skew. Under a second, ordinary NTP jitter would refuse
/// writes; over a day, a node with a wrong date could pin every clock of the mesh ahead.
inline constexpr std::chrono::milliseconds min_clock_skew{std::chrono::seconds{1}};
inline constexpr std::chrono::milliseconds max_clock_skew_bound{std::chrono::hours{24}};

/// Flag values as given on the command line; unset ones leave the file's value alone.
struct agent_flags {
  std::optional<std::string> config_file;
  std::optional<std::string> name;
  std::optional<std::string> data_dir;
  std::optional<std::string> gossip;
  std::optional<std::string> advertise;
  std::optional<std::string> admin;
  std::vector<std::string> join; ///< replaces the file's list when not empty
  std::optional<std::string> join_timeout;
  std::vector<std::string> tags; ///< "k=v", merged over the file's [tags]
  std::optional<std::string> log_level;
  std::optional<std::string> log_format;
  std::optional<std::string> event_log;
  std::optional<std::string> gossip_key;
  /// --gossip-key-file: a file holding the key (not visible in `ps`).
  std::optional<std::string> gossip_key_file;
  std::optional<std::string> keyring_file;
  std::optional<std::string> issuer_dir;
  std::vector<std::string> tokens; ///< replaces the file's tokens when not empty
  /// --token-file: a file of join tokens, one per line (not visible in `ps`).
  std::optional<std::string> token_file;
  std::optional<std::string> admission_quorum;
  std::optional<std::string> cert_ttl;
  /// --dns HOST:PORT ("off" disables the DNS server).
  std::optional<std::string> dns;
  /// --metrics HOST:PORT ("off" disables the metrics/status server).
  std::optional<std::string> metrics;
  /// --inbound HOST:PORT ("off" disables the data plane).
  std::optional<std::string> inbound;
};

/// Secrets taken from the environment, so that they do not show in `ps`. Precedence:
/// flags > environment > config file.
struct agent_env {
  /// STARLING_TOKEN: join tokens separated by commas or whitespace.
  std::optional<std::string> token;
  /// STARLING_GOSSIP_KEY: the initial gossip key.
  std::optional<std::string> gossip_key;

  /// Reads STARLING_TOKEN and STARLING_GOSSIP_KEY from this process's environment (an
  /// empty variable counts as unset).
  [[nodiscard]] static agent_env from_process();
};

/// Declares the `starling agent` flags on `app`, storing into `flags` (which must outlive
/// parsing).
void add_agent_flags(CLI::App& app, agent_flags& flags);

/// Reads flags.config_file (if set), applies the environment (agent_env::from_process) and
/// the flags, fills defaults and validates.
/// Errors: invalid_config with a message naming the key or flag, e.g.
/// `gossip.probe_interval: expected a duration like "500ms", got "fast"`.
[[nodiscard]] caf::expected<agent_config> load_agent_config(const agent_flags& flags);

/// As load_agent_config, but with the TOML text and the environment given (`source` names
/// the text in messages). flags.config_file is ignored.
[[nodiscard]] caf::expected<agent_config> make_agent_config(std::string_view toml_text,
                                                            std::string_view source,
                                                            const agent_flags& flags,
                                                            const agent_env& env = {});

/// Splits join tokens given as one text (a token file, STARLING_TOKEN): separated by
/// commas or whitespace (so one per line works); lines starting with '#' are comments.
[[nodiscard]] std::vector<std::string> split_tokens(std::string_view text);

/// Parses a duration: one or more <number><unit> with unit ns|us|ms|s|m|h ("200ms",
/// "1.5s", "1m30s"), or "0". Errors: invalid_config naming `key`.
[[nodiscard]] caf::expected<gossip::duration> parse_duration(std::string_view text,
                                                             std::string_view key);

/// Renders a duration the way parse_duration reads it ("1m30s", "250ms", "0s").
[[nodiscard]] std::string format_duration(gossip::duration d);

/// One plain setting of the configuration file and its value as a TOML literal, the way
/// docs/operations.md's tables show defaults: `"500ms"`, `3`, `true`, `"127.0.0.1:7947"`.
struct config_value {
  std::string table;   ///< "" (top level) or "gossip"
  std::string key;     ///< "join_timeout", "probe_interval"
  std::string literal; ///< TOML literal of the value
};

/// Every top-level, [gossip], [dns], [metrics], [routing] and [proxy] setting of `cfg` that has a
/// plain value (not a name, a path, a secret, a list or a table), in the order docs/operations.md
/// lists them. The single source the documented defaults are checked against: a test feeds each
/// documented default through make_agent_config and compares this rendering with the defaults'.
[[nodiscard]] std::vector<config_value> plain_values(const agent_config& cfg);

/// Parses "host:port" ("[::1]:7946" for IPv6). Errors: invalid_config naming `key`.
[[nodiscard]] caf::expected<host_port> parse_host_port(std::string_view text, std::string_view key);

/// True for 127.0.0.0/8, ::1 and "localhost".
[[nodiscard]] bool is_loopback_host(std::string_view host);

/// Name of a log level ("info") and of a format ("json").
[[nodiscard]] std::string_view to_string(log_level l) noexcept;
[[nodiscard]] std::string_view to_string(log_format f) noexcept;

} // namespace starling::actors
