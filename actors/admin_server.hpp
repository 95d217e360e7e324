// The admin port: the agent's own request/response protocol (proto/admin.proto,
// docs/decisions/0007) on an Asio TCP listener, and the blocking client the one-shot
// commands use. No CAF actors here: the agent hands each decoded request to a handler
// that talks to the admin actor and answers through a responder.
//
// Why not CAF's middleman (decision 0002, superseded): CAF 0.17's BASP trusts the length
// in its frame header. One 16-byte header claiming a 4 GiB payload made an agent allocate
// 4 GiB and stop answering its admin port (tests/integration/garbage_test.cpp).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

namespace starling::actors {

/// The answer to one admin request.
struct admin_reply {
  /// Maps to the client's exit code (DESIGN.md: 0 ok, 1 failed, 2 usage).
  enum class status : std::uint8_t { ok = 0, failed = 1, usage = 2 };
  status code = status::ok;
  /// The answer: a JSON document or a short text.
  std::string body;
  /// Why, when code is not ok: one line for the operator.
  std::string error;

  [[nodiscard]] static admin_reply ok(std::string body) {
    return {status::ok, std::move(body), {}};
  }
  [[nodiscard]] static admin_reply failed(std::string why) {
    return {status::failed, {}, std::move(why)};
  }
  [[nodiscard]] static admin_reply usage(std::string why) {
    return {status::usage, {}, std::move(why)};
  }
};

/// Answers one request. Call exactly once, from any thread; later calls are ignored, and a
/// call after the server stopped does nothing.
using admin_responder = std::function<void(admin_reply)>;

/// Handles one request: `args` is the command line without program name and client flags
/// (["members"], ["keyring", "list"], ...). Runs on the server's I/O thread: must not
/// block; answer through `reply`, now or later.
using admin_handler = std::function<void(std::vector<std::string> args, admin_responder reply)>;

/// Counters of the admin server; read from any thread.
struct admin_server_stats {
  std::atomic<std::uint64_t> connections{0};         ///< accepted
  std::atomic<std::uint64_t> refused_connections{0}; ///< over max_connections, all busy
  std::atomic<std::uint64_t> evicted_connections{0}; ///< idle, closed to admit a new one
  std::atomic<std::uint64_t> requests{0};            ///< decoded and handed to the handler
  std::atomic<std::uint64_t> malformed{0};           ///< unparsable, oversized or bad version
  std::atomic<std::uint64_t> timeouts{0};            ///< idle or unanswered in time
  std::atomic<std::uint64_t> auth_refused{0};        ///< without the credential it needed
};

/// Where and how the admin server listens.
struct admin_server_config {
  std::string host = "127.0.0.1";
  /// 0 picks a free port (see admin_server::port()).
  std::uint16_t port = 7947;
  /// Open connections at most. A new one beyond this closes the oldest idle connection
  /// (no request with the handler, no answer being written); it is refused only when every
  /// open connection is busy.
  std::size_t max_connections = 32;
  /// Bytes of one request (length prefix excluded); a longer one closes the connection.
  std::size_t max_request = 1u << 20;
  /// A connection that sends no complete request for this long is closed.
  std::chrono::milliseconds idle_timeout{std::chrono::seconds{60}};
  /// A request the handler has not answered by then gets a `failed` reply.
  std::chrono::milliseconds request_timeout{std::chrono::seconds{30}};
  /// The admin credential (docs/decisions/0012). Empty: every request is served (tests of
  /// the protocol alone). Else a request for which `needs_credential` holds (every request
  /// when it is null) must carry it, or gets a `failed` reply and is counted.
  std::string credential;
  std::function<bool(const std::vector<std::string>& args)> needs_credential;
  /// Where the server counts (shared with whoever reports them: the admin actor's
  /// `stats`); null: counters of its own.
  std::shared_ptr<admin_server_stats> stats;
};

/// True for the commands that only read (members, events, certs, stats, services, routes,
/// keyring list, ping): served without the credential unless the agent closes reads too. Every
/// other command changes the node.
[[nodiscard]] bool is_read_only_command(const std::vector<std::string>& args);

/// Most arguments one admin request carries.
inline constexpr std::size_t max_admin_args = 64;

/// A decoded admin request (proto/admin.proto AdminRequest, version checked).
struct admin_request {
  /// The command line, 1 to max_admin_args arguments.
  std::vector<std::string> args;
  /// The admin credential, empty when none was sent.
  std::string credential;

  friend bool operator==(const admin_request&, const admin_request&) = default;
};

/// Decodes one request body (the length prefix already removed). Untrusted input: never
/// crashes. Pure (no I/O): the server's decoder, also the fuzz target's entry point.
/// Errors: request_failed naming what is wrong (unparsable, version, argument count).
[[nodiscard]] caf::expected<admin_request> decode_admin_request(std::string_view body);

/// Encodes a request body (no length prefix), as call_admin sends it.
[[nodiscard]] std::string encode_admin_request(const admin_request& req);

/// The admin listener with its own I/O thread. Stops (closing every connection) on
/// destruction; responders that run later do nothing.
class admin_server {
public:
  /// Binds `cfg.host:cfg.port` and starts serving with `handler`. Errors: the bind failed
  /// (the message names the address).
  [[nodiscard]] static caf::expected<std::unique_ptr<admin_server>> start(admin_server_config cfg,
                                                                          admin_handler handler);

  ~admin_server();
  admin_server(const admin_server&) = delete;
  admin_server& operator=(const admin_server&) = delete;

  /// The port actually bound.
  [[nodiscard]] std::uint16_t port() const noexcept;

  [[nodiscard]] const admin_server_stats& stats() const noexcept;

  class impl;

private:
  explicit admin_server(std::shared_ptr<impl> ptr);
  std::shared_ptr<impl> impl_;
};

/// Sends `args` (and `credential`, when not empty) to the admin server at `host:port` and
/// waits for the answer, all within `timeout`. Errors (category "actors"): connect failed,
/// timeout, malformed answer.
[[nodiscard]] caf::expected<admin_reply> call_admin(const std::string& host, std::uint16_t port,
                                                    const std::vector<std::string>& args,
                                                    std::chrono::milliseconds timeout,
                                                    const std::string& credential = {});

// -- where the credential lives (docs/decisions/0012) ----------------------------------------

/// Name of the credential file in the data dir, and of its copy in the runtime dir:
/// "admin.cookie", "admin-<port>.cookie".
inline constexpr std::string_view admin_cookie_file = "admin.cookie";
[[nodiscard]] std::string runtime_cookie_name(std::uint16_t port);

/// The directory where an agent leaves a copy of its credential for the CLI of the same
/// user, found by admin port: $STARLING_RUNTIME_DIR, else $XDG_RUNTIME_DIR/starling, else
/// $HOME/.starling/run, else the user's home from the passwd database + /.starling/run;
/// empty when none is known. `env` looks a variable up.
[[nodiscard]] std::string admin_runtime_dir(const std::function<const char*(const char*)>& env);

/// Reads a credential file (at most 1 KiB; surrounding whitespace dropped). Errors:
/// request_failed naming the file.
[[nodiscard]] caf::expected<std::string> read_admin_cookie(const std::string& file);

} // namespace starling::actors
