#include "actors/node_files.hpp"

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "actors/admin_server.hpp"
#include "actors/errc.hpp"
#include "identity/errc.hpp"
#include "identity/files.hpp"
#include "identity/pki.hpp"
#include "identity/token.hpp"

namespace starling::actors {

namespace fs = std::filesystem;

namespace {

caf::error io_error(std::string what, const fs::path& file, int err) {
  return make_error(errc::io_failure,
                    what + " " + file.string() + ": " + std::string{std::strerror(err)});
}

} // namespace

caf::error write_file_atomic(const fs::path& file, std::string_view content, unsigned mode) {
  auto tmp = file;
  tmp += ".tmp." + std::to_string(::getpid());
  // A stale temporary file keeps its old mode under O_CREAT: remove it first.
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0)
    return io_error("cannot create", tmp, errno);
  std::size_t off = 0;
  while (off < content.size()) {
    auto n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return io_error("cannot write", tmp, err);
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return io_error("cannot write", tmp, err);
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return io_error("cannot rename to", file, err);
  }
  return {};
}

caf::error write_agent_json(const fs::path& data_dir, const agent_info& info) {
  nlohmann::ordered_json doc{
      {"name", info.name}, {"pid", info.pid}, {"gossip", info.gossip}, {"admin", info.admin}};
  if (!info.dns.empty())
    doc["dns"] = info.dns;
  if (!info.metrics.empty())
    doc["metrics"] = info.metrics;
  if (!info.inbound.empty())
    doc["inbound"] = info.inbound;
  return write_file_atomic(data_dir / "agent.json", doc.dump() + "\n");
}

caf::expected<agent_info> read_agent_json(const fs::path& data_dir) {
  auto file = data_dir / "agent.json";
  std::ifstream in{file};
  if (!in)
    return make_error(errc::io_failure, "cannot read " + file.string());
  std::stringstream buf;
  buf << in.rdbuf();
  auto doc = nlohmann::json::parse(buf.str(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("name") || !doc.contains("pid") ||
      !doc.contains("gossip") || !doc.contains("admin") || !doc["name"].is_string() ||
      !doc["pid"].is_number_integer() || !doc["gossip"].is_string() || !doc["admin"].is_string())
    return make_error(errc::invalid_config, file.string() + ": not an agent.json");
  agent_info info{doc["name"].get<std::string>(),
                  doc["pid"].get<long>(),
                  doc["gossip"].get<std::string>(),
                  doc["admin"].get<std::string>(),
                  {},
                  {},
                  {}};
  if (doc.contains("dns") && doc["dns"].is_string())
    info.dns = doc["dns"].get<std::string>();
  if (doc.contains("metrics") && doc["metrics"].is_string())
    info.metrics = doc["metrics"].get<std::string>();
  if (doc.contains("inbound") && doc["inbound"].is_string())
    info.inbound = doc["inbound"].get<std::string>();
  return info;
}

std::optional<std::uint64_t> read_incarnation(const fs::path& data_dir) {
  std::ifstream in{data_dir / "state.json"};
  if (!in)
    return std::nullopt;
  std::stringstream buf;
  buf << in.rdbuf();
  auto doc = nlohmann::json::parse(buf.str(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("incarnation") ||
      !doc["incarnation"].is_number_unsigned())
    return std::nullopt;
  return doc["incarnation"].get<std::uint64_t>();
}

caf::error write_incarnation(const fs::path& data_dir, std::uint64_t incarnation) {
  nlohmann::json doc{{"incarnation", incarnation}};
  return write_file_atomic(data_dir / "state.json", doc.dump() + "\n");
}

caf::expected<data_dir_report> prepare_data_dir(const fs::path& data_dir) {
  data_dir_report report;
  struct ::stat st {};
  if (::stat(data_dir.c_str(), &st) != 0) {
    if (errno != ENOENT)
      return io_error("cannot stat data dir", data_dir, errno);
    // Missing: create it and its missing parents 0700 (the identity module's helper does
    // exactly that, whatever the umask).
    if (auto err = identity::create_private_directories(data_dir))
      return make_error(errc::io_failure,
                        "cannot create data dir " + data_dir.string() + ": " + message_of(err));
    report.created = true;
    return report;
  }
  if (!S_ISDIR(st.st_mode))
    return make_error(errc::io_failure,
                      "cannot use data dir " + data_dir.string() + ": not a directory");
  const auto mode = static_cast<unsigned>(st.st_mode & 07777);
  if ((mode & 077) == 0)
    return report;
  report.wider_mode = mode;
  if (st.st_uid != ::geteuid()) {
    report.foreign_owner = true;
    return report;
  }
  if (::chmod(data_dir.c_str(), static_cast<mode_t>(data_dir_mode)) != 0)
    return io_error("cannot set mode 0700 on data dir", data_dir, errno);
  return report;
}

caf::expected<data_dir_lock> data_dir_lock::acquire(const fs::path& data_dir) {
  auto report = prepare_data_dir(data_dir);
  if (!report)
    return std::move(report.error());
  if (report->wider_mode) {
    if (report->foreign_owner)
      spdlog::warn("data dir {} has mode {:04o} and belongs to another user: it holds "
                   "secrets, set it to 0700",
                   data_dir.string(), *report->wider_mode);
    else
      spdlog::warn("data dir {} had mode {:04o}: set it to 0700 (it holds secrets)",
                   data_dir.string(), *report->wider_mode);
  }
  auto file = data_dir / "lock";
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return io_error("cannot open", file, errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK)
      return make_error(errc::io_failure, "data dir " + data_dir.string() +
                                              " is in use by another agent (lock held on " +
                                              file.string() + ")");
    return io_error("cannot lock", file, err);
  }
  return data_dir_lock{fd};
}

data_dir_lock::data_dir_lock(data_dir_lock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

data_dir_lock& data_dir_lock::operator=(data_dir_lock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

data_dir_lock::~data_dir_lock() {
  if (fd_ >= 0)
    ::close(fd_);
}

// -- the admin credential ------------------------------------------------------------------

caf::expected<std::string> make_admin_credential() {
  identity::openssl_random rng;
  std::array<std::uint8_t, 32> bytes{};
  if (auto ok = rng.fill(bytes); !ok)
    return make_error(errc::io_failure,
                      "cannot make the admin credential: " + identity::render(ok.error()));
  return identity::to_hex(bytes);
}

caf::expected<fs::path> publish_admin_credential(const fs::path& data_dir,
                                                 const std::string& runtime_dir, std::uint16_t port,
                                                 const std::string& credential) {
  const auto content = credential + "\n";
  if (auto err = write_file_atomic(data_dir / admin_cookie_file, content, 0600))
    return err;
  if (runtime_dir.empty())
    return fs::path{};
  const fs::path dir{runtime_dir};
  const auto file = dir / runtime_cookie_name(port);
  if (auto err = identity::create_private_directories(dir)) {
    spdlog::warn("cannot leave the admin credential in {} for the CLI: {} (it is in {})",
                 dir.string(), message_of(err), (data_dir / admin_cookie_file).string());
    return fs::path{};
  }
  if (auto err = write_file_atomic(file, content, 0600)) {
    spdlog::warn("cannot leave the admin credential in {} for the CLI: {} (it is in {})",
                 file.string(), message_of(err), (data_dir / admin_cookie_file).string());
    return fs::path{};
  }
  return file;
}

void withdraw_admin_credential(const fs::path& data_dir, const fs::path& runtime_file,
                               const std::string& credential) {
  for (const auto& file : {runtime_file, data_dir / admin_cookie_file}) {
    if (file.empty())
      continue;
    auto held = read_admin_cookie(file.string());
    if (!held || *held != credential)
      continue; // another agent's since, or gone
    std::error_code ec;
    fs::remove(file, ec);
    if (ec)
      spdlog::warn("cannot remove the admin credential {}: {}", file.string(), ec.message());
  }
}

} // namespace starling::actors
