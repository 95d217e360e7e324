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
  std::string gossip; ///< advertised gossip address
  std::string admin;  ///< actual admin address
};

/// Writes <data_dir>/agent.json atomically.
[[nodiscard]] caf::error write_agent_json(const std::filesystem::path& data_dir,
                                          const agent_info& info);

/// Reads <data_dir>/agent.json. Errors: io_failure (missing), invalid_config (malformed).
[[nodiscard]] caf::expected<agent_info> read_agent_json(const std::filesystem::path& data_dir);

/// The incarnation stored in <data_dir>/state.json, if any.
[[nodiscard]] std::optional<std::uint64_t>
read_incarnation(const std::filesystem::path& data_dir);

/// Stores `incarnation` in <data_dir>/state.json atomically.
[[nodiscard]] caf::error write_incarnation(const std::filesystem::path& data_dir,
                                           std::uint64_t incarnation);

/// An exclusive advisory lock (flock) on <data_dir>/lock, held for the agent's life.
/// The kernel drops it when the process dies, even by SIGKILL.
class data_dir_lock {
public:
  /// Creates the data directory if needed and takes the lock. Errors: io_failure, with
  /// "in use by another agent" when the lock is taken.
  [[nodiscard]] static caf::expected<data_dir_lock>
  acquire(const std::filesystem::path& data_dir);

  data_dir_lock(data_dir_lock&& other) noexcept;
  data_dir_lock& operator=(data_dir_lock&& other) noexcept;
  data_dir_lock(const data_dir_lock&) = delete;
  data_dir_lock& operator=(const data_dir_lock&) = delete;
  ~data_dir_lock();

private:
  explicit data_dir_lock(int fd) : fd_(fd) {
  }
  /// Open descriptor holding the lock; -1 when moved from.
  int fd_ = -1;
};

} // namespace starling::actors
