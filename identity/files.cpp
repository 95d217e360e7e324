#include "identity/files.hpp"

#include <cerrno>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "identity/errc.hpp"

namespace starling::identity {

namespace fs = std::filesystem;

namespace {

caf::error io_error(const char* what, const fs::path& file, int err) {
  return make_error(errc::io_failure,
                    std::string{what} + " " + file.string() + ": " + std::strerror(err));
}

/// Closes a descriptor on scope exit unless released.
class fd_guard {
public:
  explicit fd_guard(int fd) noexcept : fd_(fd) {}
  ~fd_guard() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  [[nodiscard]] int get() const noexcept { return fd_; }
  /// Closes now; returns 0 or errno.
  int close() noexcept {
    int fd = fd_;
    fd_ = -1;
    return ::close(fd) == 0 ? 0 : errno;
  }

private:
  int fd_;
};

/// Writes all of `content`, sets `mode` and fsyncs; returns 0 or errno.
int write_all(int fd, std::string_view content, ::mode_t mode) {
  while (!content.empty()) {
    auto n = ::write(fd, content.data(), content.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return errno;
    content.remove_prefix(static_cast<std::size_t>(n));
  }
  if (::fchmod(fd, mode) != 0 || ::fsync(fd) != 0)
    return errno;
  return 0;
}

caf::error write_new_file(const fs::path& file, std::string_view content, ::mode_t mode) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST)
      return make_error(errc::already_exists,
                        "refusing to overwrite " + file.string() + ": it exists");
    return io_error("cannot create", file, errno);
  }
  fd_guard guard{fd};
  int err = write_all(fd, content, mode);
  if (err == 0)
    err = guard.close();
  if (err != 0) {
    ::unlink(file.c_str());
    return io_error("cannot write", file, err);
  }
  return {};
}

} // namespace

caf::error write_private_file(const fs::path& file, std::string_view content) {
  return write_new_file(file, content, private_file_mode);
}

caf::error write_public_file(const fs::path& file, std::string_view content) {
  return write_new_file(file, content, public_file_mode);
}

caf::error replace_file(const fs::path& file, std::string_view content, ::mode_t mode) {
  auto dir = file.parent_path();
  if (dir.empty())
    dir = ".";
  std::string templ = (dir / ("." + file.filename().string() + ".XXXXXX")).string();
  int fd = ::mkostemp(templ.data(), O_CLOEXEC); // mode 0600
  if (fd < 0)
    return io_error("cannot create a temporary file for", file, errno);
  fd_guard guard{fd};
  int err = write_all(fd, content, mode);
  if (err == 0)
    err = guard.close();
  if (err == 0 && ::rename(templ.c_str(), file.c_str()) != 0)
    err = errno;
  if (err != 0) {
    ::unlink(templ.c_str());
    return io_error("cannot replace", file, err);
  }
  // Make the rename durable. A failure here leaves the new content in place.
  if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    fd_guard dguard{dfd};
    if (::fsync(dfd) != 0)
      return io_error("cannot sync the directory of", file, errno);
  }
  return {};
}

caf::expected<std::string> read_file(const fs::path& file, std::size_t limit) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return io_error("cannot open", file, errno);
  fd_guard guard{fd};
  struct ::stat st {};
  if (::fstat(fd, &st) != 0)
    return io_error("cannot stat", file, errno);
  if (!S_ISREG(st.st_mode))
    return make_error(errc::io_failure, "cannot read " + file.string() + ": not a regular file");
  std::string out;
  std::vector<char> buf(64 * 1024);
  for (;;) {
    auto n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return io_error("cannot read", file, errno);
    if (n == 0)
      return out;
    if (out.size() + static_cast<std::size_t>(n) > limit)
      return make_error(errc::io_failure, "cannot read " + file.string() + ": larger than " +
                                              std::to_string(limit) + " bytes");
    out.append(buf.data(), static_cast<std::size_t>(n));
  }
}

caf::error create_private_directories(const fs::path& dir) {
  if (dir.empty())
    return {};
  std::error_code ec;
  if (fs::is_directory(dir, ec))
    return {};
  if (auto parent = dir.parent_path(); !parent.empty() && parent != dir)
    if (auto err = create_private_directories(parent))
      return err;
  if (::mkdir(dir.c_str(), private_dir_mode) == 0)
    ::chmod(dir.c_str(), private_dir_mode); // exactly 0700, whatever the umask
  else if (errno != EEXIST)
    return io_error("cannot create directory", dir, errno);
  if (!fs::is_directory(dir, ec))
    return make_error(errc::io_failure,
                      "cannot create directory " + dir.string() + ": a file of that name exists");
  return {};
}

caf::error bad_record_line(std::string_view what, std::size_t line_no, std::string_view reason) {
  return make_error(errc::invalid_argument, std::string{what} + " line " + std::to_string(line_no) +
                                                ": " + std::string{reason});
}

caf::error read_record_lines(
    std::string_view text, std::string_view header, std::string_view what,
    const std::function<caf::error(std::string_view line, std::size_t line_no)>& record) {
  std::size_t line_no = 0;
  std::size_t records = 0;
  for (;;) {
    auto nl = text.find('\n');
    if (nl == std::string_view::npos) // every line, the last one too, ends with '\n'
      return bad_record_line(what, line_no + 1,
                             line_no == 0 ? "expected '" + std::string{header} + "'"
                                          : std::string{"truncated: no 'end' line"});
    auto line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    if (++line_no == 1) {
      if (line != header)
        return bad_record_line(what, 1, "expected '" + std::string{header} + "'");
      continue;
    }
    if (line.starts_with("end ")) {
      if (line != "end " + std::to_string(records))
        return bad_record_line(what, line_no,
                               "the 'end' count disagrees with the " + std::to_string(records) +
                                   " record lines");
      if (!text.empty())
        return bad_record_line(what, line_no + 1, "text after the 'end' line");
      return {};
    }
    ++records;
    if (auto err = record(line, line_no))
      return err;
  }
}

} // namespace starling::identity
