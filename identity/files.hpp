// Key and certificate files: private files (mode 0600) and public ones (0644) created with
// O_EXCL so that an existing key is never overwritten, atomic replacement for renewals,
// bounded reads, and 0700 directories. Edge adapter: plain POSIX I/O, no CAF actors.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <sys/types.h>

namespace starling::identity {

/// Mode of files holding private keys.
inline constexpr ::mode_t private_file_mode = 0600;
/// Mode of files holding certificates and bundles.
inline constexpr ::mode_t public_file_mode = 0644;
/// Mode of directories created for keys.
inline constexpr ::mode_t private_dir_mode = 0700;
/// Default bound of read_file: far above any key, certificate or bundle.
inline constexpr std::size_t default_read_limit = 1 << 20;

/// Creates `file` with mode 0600 (exactly, whatever the umask) and writes `content`, fsynced.
/// Never overwrites: an existing file (or link) is refused with already_exists naming it.
/// A partly written file is removed. Errors: already_exists, io_failure (naming the file).
[[nodiscard]] caf::error write_private_file(const std::filesystem::path& file,
                                            std::string_view content);

/// As write_private_file, with mode 0644.
[[nodiscard]] caf::error write_public_file(const std::filesystem::path& file,
                                           std::string_view content);

/// Replaces `file` atomically (renewals): writes a temporary file in the same directory
/// (created 0600, then set to `mode`), fsyncs it, renames it over `file` and fsyncs the
/// directory. Readers see the old or the new content, never a mix. Errors: io_failure.
[[nodiscard]] caf::error replace_file(const std::filesystem::path& file, std::string_view content,
                                      ::mode_t mode = private_file_mode);

/// Reads the whole regular file `file`, refusing one larger than `limit` bytes.
/// Errors: io_failure naming the file (missing, unreadable, not a regular file, too large).
[[nodiscard]] caf::expected<std::string> read_file(const std::filesystem::path& file,
                                                   std::size_t limit = default_read_limit);

/// The error of line `line_no` of a persisted store named `what` ("token store"...):
/// invalid_argument "<what> line <line_no>: <reason>".
[[nodiscard]] caf::error bad_record_line(std::string_view what, std::size_t line_no,
                                         std::string_view reason);

/// Reads the versioned text form every store of this module persists: the line `header`,
/// one line per record, then "end <number of records>", every line ending in '\n'. Calls
/// `record` with each record line (without its '\n') and its 1-based number. All or
/// nothing: a bad header, a missing 'end' line (truncated), a count that disagrees, text
/// after 'end' are bad_record_line errors; the first error `record` returns is returned as
/// is.
[[nodiscard]] caf::error read_record_lines(
    std::string_view text, std::string_view header, std::string_view what,
    const std::function<caf::error(std::string_view line, std::size_t line_no)>& record);

/// Creates `dir` and missing parents; the directories it creates get mode 0700, existing
/// ones are left as they are. Errors: io_failure naming the directory.
[[nodiscard]] caf::error create_private_directories(const std::filesystem::path& dir);

} // namespace starling::identity
