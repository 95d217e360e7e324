// Files an agent keeps in its data directory: agent.json (where it listens, for tools and
// tests; docs/decisions/0003), state.json (its last incarnation, so a restarted node
// comes back with a higher one) and the lock that keeps two agents off one directory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

namespace starling::actors {

/// Writes `content` to `file` atomically: a temporary file in the same directory (created
/// with `mode`, e.g. 0600 for secrets), fsync, rename. Errors: io_failure naming the file.
[[nodiscard]] caf::error write_file_atomic(const std::filesystem::path& file,
                                           std::string_view content, unsigned mode = 0644);

/// What agent.json holds.
struct agent_info {
  std::string name;
  long pid = 0;
  std::string gossip;  ///< advertised gossip address
  std::string admin;   ///< actual admin address
  std::string dns;     ///< actual DNS responder address; empty when DNS is off
  std::string metrics; ///< actual metrics/status server address; empty when it is off
  std::string inbound; ///< actual data-plane inbound address; empty without a data plane
};

/// Writes <data_dir>/agent.json atomically.
[[nodiscard]] caf::error write_agent_json(const std::filesystem::path& data_dir,
                                          const agent_info& info);

/// Reads <data_dir>/agent.json. Errors: io_failure (missing), invalid_config (malformed).
[[nodiscard]] caf::expected<agent_info> read_agent_json(const std::filesystem::path& data_dir);

/// A fresh admin credential: 32 bytes from OpenSSL's CSPRNG as 64 hex digits
/// (docs/decisions/0012). Errors: io_failure when no randomness is available.
[[nodiscard]] caf::expected<std::string> make_admin_credential();

/// Writes `credential` to <data_dir>/admin.cookie and, when `runtime_dir` is not empty, to
/// <runtime_dir>/admin-<port>.cookie (created 0700), both 0600 and atomically: where the
/// agent's own user (and root) find it. Returns the runtime file written (empty if none).
/// Errors: io_failure naming the file (the data dir copy; a runtime dir that cannot be
/// written is logged and skipped).
[[nodiscard]] caf::expected<std::filesystem::path>
publish_admin_credential(const std::filesystem::path& data_dir, const std::string& runtime_dir,
                         std::uint16_t port, const std::string& credential);

/// Removes `runtime_file` if it still holds `credential` (another agent may have taken the
/// port since), and <data_dir>/admin.cookie likewise. Errors are logged, not returned.
void withdraw_admin_credential(const std::filesystem::path& data_dir,
                               const std::filesystem::path& runtime_file,
                               const std::string& credential);

/// The incarnation stored in <data_dir>/state.json, if any.
[[nodiscard]] std::optional<std::uint64_t> read_incarnation(const std::filesystem::path& data_dir);

/// Stores `incarnation` in <data_dir>/state.json atomically.
[[nodiscard]] caf::error write_incarnation(const std::filesystem::path& data_dir,
                                           std::uint64_t incarnation);

/// Mode of the data directory and of the directories the agent creates for it.
inline constexpr unsigned data_dir_mode = 0700;

/// What prepare_data_dir found and did.
struct data_dir_report {
  /// The data directory did not exist and was created (mode 0700, as were missing parents).
  bool created = false;
  /// Its mode before, when it existed with permissions for group or others (then it was
  /// set to 0700 if owned by this user).
  std::optional<unsigned> wider_mode;
  /// It has permissions for group or others and belongs to another user: left as it is.
  bool foreign_owner = false;
};

/// Creates `data_dir` and its missing parents with mode 0700 (whatever the umask); an
/// existing data dir with group or other permissions that this user owns is set to 0700.
/// Errors: io_failure naming the directory (cannot create or chmod, or not a directory).
[[nodiscard]] caf::expected<data_dir_report>
prepare_data_dir(const std::filesystem::path& data_dir);

/// An exclusive advisory lock (flock) on <data_dir>/lock, held for the agent's life.
/// The kernel drops it when the process dies, even by SIGKILL.
class data_dir_lock {
public:
  /// Prepares the data directory (prepare_data_dir: created or tightened to 0700, logged
  /// at warn when tightened) and takes the lock. Errors: io_failure, with "in use by another
  /// agent" when the lock is taken.
  [[nodiscard]] static caf::expected<data_dir_lock> acquire(const std::filesystem::path& data_dir);

  data_dir_lock(data_dir_lock&& other) noexcept;
  data_dir_lock& operator=(data_dir_lock&& other) noexcept;
  data_dir_lock(const data_dir_lock&) = delete;
  data_dir_lock& operator=(const data_dir_lock&) = delete;
  ~data_dir_lock();

private:
  explicit data_dir_lock(int fd) : fd_(fd) {}
  /// Open descriptor holding the lock; -1 when moved from.
  int fd_ = -1;
};

} // namespace starling::actors
