// Real child processes for integration tests: spawn `starling` with arguments, capture
// stdout/stderr to files, signal, wait with a deadline, read agent.json. Every wait is
// bounded; every child is killed when its owner goes away (also when a test fails).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace starling::testing {

using namespace std::chrono_literals;
using test_clock = std::chrono::steady_clock;

/// The `starling` binary: $STARLING_BIN (set by tests/CMakeLists.txt), else
/// <dir of this test>/../bin/starling when it exists.
[[nodiscard]] std::string starling_bin();

/// A fresh directory under $TMPDIR (or /tmp), removed on destruction unless the test
/// failed or STARLING_KEEP_TMP is set (then its path is printed).
class temp_dir {
public:
  explicit temp_dir(const std::string& prefix = "starling-test");
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

private:
  std::filesystem::path path_;
};

/// Writes `content` to `file` (creating parent directories).
void write_text(const std::filesystem::path& file, const std::string& content);

/// The whole content of `file`, or "" if it cannot be read.
[[nodiscard]] std::string read_text(const std::filesystem::path& file);

/// A spawned child. Killed (SIGKILL) and reaped on destruction if still running.
class child_process {
public:
  /// Spawns `argv[0]` with `argv`; stdout and stderr go to <log_dir>/<label>.out/.err, stdin
  /// reads `input` (a file; /dev/null by default). `env` entries ("K=V") are added to the
  /// inherited environment. Throws on failure.
  child_process(std::vector<std::string> argv, const std::filesystem::path& log_dir,
                std::string label, std::vector<std::string> env = {},
                const std::filesystem::path& input = "/dev/null");
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const std::string& label() const { return label_; }

  /// Sends `sig` if the child has not been reaped yet.
  void kill(int sig);

  /// Waits until the child exits or `deadline` passes. Returns its exit code, or
  /// 128 + signal number if a signal ended it; std::nullopt on timeout.
  [[nodiscard]] std::optional<int> wait(test_clock::duration timeout);

  /// True until the child has been reaped (checks without blocking).
  [[nodiscard]] bool running();

  [[nodiscard]] std::string stdout_text() const;
  [[nodiscard]] std::string stderr_text() const;

private:
  pid_t pid_ = -1;
  std::string label_;
  std::filesystem::path out_file_;
  std::filesystem::path err_file_;
  /// Set once reaped.
  std::optional<int> status_;
};

/// Owns children; kills them all on destruction. On a failed test, prints the tail of each
/// child's stderr first, which is where an agent says what went wrong.
class process_group {
public:
  explicit process_group(std::filesystem::path log_dir) : log_dir_(std::move(log_dir)) {}
  ~process_group();
  process_group(const process_group&) = delete;
  process_group& operator=(const process_group&) = delete;

  /// Spawns a child owned by the group (see child_process).
  child_process& spawn(std::vector<std::string> argv, std::string label,
                       std::vector<std::string> env = {});

  /// Kills (SIGKILL) and forgets the child.
  void remove(child_process& child);

private:
  std::filesystem::path log_dir_;
  std::vector<std::unique_ptr<child_process>> children_;
  unsigned spawned_ = 0;
};

/// What a finished command printed.
struct cli_result {
  /// Exit code (128 + signal if killed); -1 when it did not finish by the deadline.
  int exit_code = -1;
  std::string out;
  std::string err;
};

/// Runs `starling <args...>` to completion, bounded by `timeout` (killed after it).
[[nodiscard]] cli_result run_cli(const std::vector<std::string>& args,
                                 test_clock::duration timeout = 10s);

/// As run_cli, with `input` on the command's stdin (a file: EOF after it).
[[nodiscard]] cli_result run_cli_with_input(const std::vector<std::string>& args,
                                            const std::string& input,
                                            test_clock::duration timeout = 10s);

/// Polls `pred` every `interval` until it holds or `timeout` passes; returns the last value.
bool poll_until(test_clock::duration timeout, const std::function<bool()>& pred,
                test_clock::duration interval = 50ms);

/// What <data-dir>/agent.json says.
struct agent_json {
  std::string name;
  long pid = 0;
  std::string gossip;
  std::string admin;
  /// The DNS responder's address; empty when DNS is off.
  std::string dns;
  /// The metrics/status server's address; empty when it is off.
  std::string metrics;
  /// The data plane's inbound listener; empty without a data plane.
  std::string inbound;
};

/// Reads <data_dir>/agent.json if present and well-formed.
[[nodiscard]] std::optional<agent_json> read_agent_json(const std::filesystem::path& data_dir);

/// One HTTP/1.1 GET of `path` from `endpoint` ("127.0.0.1:PORT") with `Connection: close`:
/// the whole response as received (status line, headers, body), empty when the connection
/// failed. Waits at most 10 s.
[[nodiscard]] std::string http_get(const std::string& endpoint, const std::string& path);

/// A TCP and UDP port on 127.0.0.1 that was free a moment ago (bound, then closed).
[[nodiscard]] std::uint16_t closed_port();

} // namespace starling::testing
