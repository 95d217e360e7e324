// The agent's gossip keyring: gossip::datagram_sealer over the pure identity::sealer, with
// the system clock, a lock (the transport's I/O thread seals and opens while the admin side
// rotates keys), persistence in <data-dir>/keyring (mode 0600, atomic replace), and the JSON
// and text views of `starling keyring list`. docs/decisions/0005, docs/operations.md.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "actors/gossip_io.hpp"
#include "gossip/transport.hpp"
#include "identity/keyring.hpp"
#include "identity/sealer.hpp"

namespace starling::actors {

struct agent_config;

/// What `starling keyring list` shows of one node.
struct keyring_view {
  /// False when the node gossips in plain text (no key configured).
  bool enabled = false;
  /// Installed key ids (hex), primary first.
  std::vector<std::string> ids;
  /// Id of the primary key; empty when disabled.
  std::string primary;
  /// Sealer counters since the agent started.
  identity::sealer_counters counters;
  /// Senders tracked for replay protection.
  std::size_t tracked_senders = 0;
  /// The replay/skew window.
  std::chrono::milliseconds window{0};
  /// What the gossip transport dropped after (or before) the sealer: undecodable after
  /// opening, oversized, binding refused. Absent when no transport reports to this sealer.
  std::optional<transport_drops> dropped;
};

/// The gossip keyring of a running agent. Thread-safe: every public member may be called
/// from any thread (the transport thread, the membership actor, the supervisor).
class keyring_sealer final : public gossip::datagram_sealer {
public:
  /// Makes a sealer for `ring` (not empty) with a fresh random salt and first counter.
  /// Changes are written to `persist_to` (empty: not persisted). Errors: keyring_refused
  /// for an empty ring, crypto_failure when the CSPRNG fails.
  [[nodiscard]] static caf::expected<std::shared_ptr<keyring_sealer>>
  make(identity::keyring ring, std::filesystem::path persist_to, identity::sealer_config cfg = {});

  /// Seals under the primary key, stamped with the system clock, for `receiver`
  /// (seal_to); the transport's datagrams name their destination.
  [[nodiscard]] caf::expected<std::string> seal(std::string plain,
                                                std::string_view receiver) override {
    return seal_to(receiver, std::move(plain));
  }

  /// Opens a message received by `self` (open_as).
  [[nodiscard]] caf::expected<std::string> open(std::string_view wire,
                                                std::string_view self) override {
    return open_as(self, wire);
  }

  /// Seals for no receiver (a TCP frame): seal_to("", plain).
  [[nodiscard]] caf::expected<std::string> seal(std::string plain) {
    return seal_to({}, std::move(plain));
  }

  /// Opens a message bound to no receiver: open_as("", wire).
  [[nodiscard]] caf::expected<std::string> open(std::string_view wire) { return open_as({}, wire); }

  /// Seals under the primary key for `receiver`: the destination's advertised gossip
  /// address "host:port", as the membership knows it. Only open_as(receiver, ...) opens it.
  [[nodiscard]] caf::expected<std::string> seal_to(std::string_view receiver, std::string plain);

  /// Opens a message received by `self` (this node's advertised gossip address). Errors:
  /// identity errors (counted as refused by the transport; wrong_receiver for a message
  /// sealed for another member), except sealed_malformed, which becomes
  /// gossip::errc::malformed.
  [[nodiscard]] caf::expected<std::string> open_as(std::string_view self, std::string_view wire);

  /// Installs a base64 key (idempotent) and persists; returns its id.
  [[nodiscard]] caf::expected<std::string> install(std::string_view key_base64);

  /// Makes an installed key (base64 key or hex id) primary and persists; returns its id.
  [[nodiscard]] caf::expected<std::string> use(std::string_view key_or_id);

  /// Removes a key (base64 or hex id) that is not primary and persists; returns its id.
  [[nodiscard]] caf::expected<std::string> remove(std::string_view key_or_id);

  /// A snapshot of the keyring and the counters.
  [[nodiscard]] keyring_view view() const;

  /// Where the agent's gossip transport sums its drops (make_transport_io), so that
  /// view() shows them. Never null.
  [[nodiscard]] std::shared_ptr<transport_drop_counters> drop_counters() const;

  /// The keyring in its file form (what an issuer hands a node it admits). A secret.
  [[nodiscard]] std::string ring_text() const;

  /// Writes the current keyring to the persistence file (no-op without one).
  [[nodiscard]] caf::error persist() const;

  /// Use make().
  keyring_sealer(identity::sealer core, std::filesystem::path persist_to);

private:
  /// Applies `change` to a copy of the ring, persists the copy, then swaps it in.
  template <class Change>
  caf::expected<std::string> mutate(const char* what, const identity::key_id& id, Change change);

  mutable std::mutex mutex_;
  /// Guarded by mutex_.
  identity::sealer core_;
  /// Where changes are persisted; empty: nowhere. Immutable.
  std::filesystem::path file_;
  /// The transport's drops (thread-safe on its own). Never null, immutable pointer.
  std::shared_ptr<transport_drop_counters> drops_;
};

/// Reads a keyring file (the text form of identity::keyring). std::nullopt when the file
/// does not exist. Errors: io_failure (unreadable), invalid_config naming the file.
[[nodiscard]] caf::expected<std::optional<identity::keyring>>
read_keyring_file(const std::filesystem::path& file);

/// Writes `ring` to `file` with mode 0600, atomically (temporary file + rename).
[[nodiscard]] caf::error write_keyring_file(const std::filesystem::path& file,
                                            const identity::keyring& ring);

/// The keyring an agent starts with, and where it came from.
struct startup_keyring {
  identity::keyring ring;
  /// "persisted" (<data-dir>/keyring), "config" (gossip_key and/or keyring_file) or "none".
  std::string source;
};

/// The persisted <data-dir>/keyring wins; else keyring_file's keys plus gossip_key (which
/// becomes primary); else an empty ring (plain gossip). Errors: io_failure or
/// invalid_config naming the file.
[[nodiscard]] caf::expected<startup_keyring> load_startup_keyring(const agent_config& cfg);

/// The persisted keyring's path: <data_dir>/keyring.
[[nodiscard]] std::filesystem::path keyring_path(const std::filesystem::path& data_dir);

/// Serves one admin keyring request. `op` is "list" (answer: the JSON view), "install",
/// "use" or "remove" (answer: the key id). A null `sealer` means gossip encryption is off:
/// list answers a disabled view, the others fail. Errors: bad_request (an unknown op),
/// request_failed (encryption off), the sealer's refusal (identity.keyring_refused, ...):
/// the admin answers them as a failed status, never as an ok one.
[[nodiscard]] caf::expected<std::string>
answer_keyring_request(keyring_sealer* sealer, std::string_view op, std::string_view arg);

/// The sealer's counters by name, in the order of identity::sealer_counters (the keyring and
/// stats views show them).
[[nodiscard]] counter_list sealer_counter_list(const identity::sealer_counters& c);

/// The `keyring list --json` view, one line:
/// {"enabled":true,"primary":"<id>","keys":[{"id","primary"}..],"counters":{..},
///  "tracked_senders":N,"window":"30s"}, plus
/// "dropped":{"malformed","oversized","binding_refused"} when the view has them.
[[nodiscard]] std::string keyring_json(const keyring_view& v);

} // namespace starling::actors
