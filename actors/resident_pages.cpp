#include "actors/resident_pages.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>

#include <sys/mman.h>

#include "identity/errc.hpp"
#include "identity/files.hpp"

namespace starling::actors {

namespace {

// /proc/self/smaps of the agent is about 90 KB (some 120 mappings of 0.75 KB each).
constexpr std::size_t max_smaps_bytes = 16u << 20;

std::optional<std::uintptr_t> hex(std::string_view text) {
  std::uintptr_t value = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value, 16);
  if (ec != std::errc{} || ptr != end || text.empty())
    return std::nullopt;
  return value;
}

std::string_view next_field(std::string_view& line) {
  const auto start = line.find_first_not_of(' ');
  if (start == std::string_view::npos) {
    line = {};
    return {};
  }
  line.remove_prefix(start);
  const auto stop = line.find(' ');
  const auto field = line.substr(0, stop);
  line.remove_prefix(stop == std::string_view::npos ? line.size() : stop);
  return field;
}

struct mapping_lines {
  clean_file_mapping range;
  bool eligible = false; // by its header: private, read-only, a file
  std::optional<std::size_t> rss, anonymous, locked;
};

// A header line: "begin-end perms offset dev inode [path]", addresses in lower-case hex.
std::optional<mapping_lines> parse_header(std::string_view line) {
  const auto span = next_field(line);
  const auto dash = span.find('-');
  if (dash == std::string_view::npos)
    return std::nullopt;
  const auto begin = hex(span.substr(0, dash));
  const auto end = hex(span.substr(dash + 1));
  if (!begin || !end || *end <= *begin)
    return std::nullopt;
  const auto perms = next_field(line);
  if (perms.size() != 4)
    return std::nullopt;
  next_field(line); // offset
  next_field(line); // device
  const auto inode = next_field(line);
  if (inode.empty())
    return std::nullopt;
  const auto start = line.find_first_not_of(' ');
  const auto path = start == std::string_view::npos ? std::string_view{} : line.substr(start);
  mapping_lines out;
  out.range.begin = *begin;
  out.range.end = *end;
  out.eligible = perms[0] == 'r' && perms[1] == '-' && perms[3] == 'p' && inode != "0" &&
                 !path.empty() && path.front() == '/';
  return out;
}

// "Name:   1234 kB" -> 1234, for the names asked for.
std::optional<std::size_t> kib_field(std::string_view line, std::string_view name) {
  if (line.size() <= name.size() || line.substr(0, name.size()) != name || line[name.size()] != ':')
    return std::nullopt;
  line.remove_prefix(name.size() + 1);
  const auto number = next_field(line);
  if (next_field(line) != "kB")
    return std::nullopt;
  std::size_t value = 0;
  const auto* end = number.data() + number.size();
  auto [ptr, ec] = std::from_chars(number.data(), end, value);
  if (ec != std::errc{} || ptr != end || number.empty())
    return std::nullopt;
  return value;
}

void close_mapping(const std::optional<mapping_lines>& m, std::vector<clean_file_mapping>& out) {
  if (!m || !m->eligible || !m->rss || !m->anonymous || !m->locked)
    return;
  if (*m->rss == 0 || *m->anonymous != 0 || *m->locked != 0)
    return;
  auto range = m->range;
  range.resident_kib = *m->rss;
  out.push_back(range);
}

bool is_header(std::string_view line) {
  // Field lines start with a capitalised name ("Rss:", "VmFlags:"); headers with the
  // mapping's first address in lower-case hex.
  return !line.empty() &&
         ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f'));
}

} // namespace

std::vector<clean_file_mapping> clean_file_mappings(std::string_view smaps) {
  std::vector<clean_file_mapping> out;
  std::optional<mapping_lines> current;
  while (!smaps.empty()) {
    const auto eol = smaps.find('\n');
    const auto line = smaps.substr(0, eol);
    smaps.remove_prefix(eol == std::string_view::npos ? smaps.size() : eol + 1);
    if (is_header(line)) {
      close_mapping(current, out);
      current = parse_header(line);
      continue;
    }
    if (!current)
      continue;
    if (auto v = kib_field(line, "Rss"))
      current->rss = v;
    else if (auto a = kib_field(line, "Anonymous"))
      current->anonymous = a;
    else if (auto l = kib_field(line, "Locked"))
      current->locked = l;
  }
  close_mapping(current, out);
  return out;
}

released_pages release_clean_file_pages() {
  released_pages result;
  auto text = identity::read_file("/proc/self/smaps", max_smaps_bytes);
  if (!text) {
    result.error = identity::render(text.error());
    return result;
  }
  for (const auto& m : clean_file_mappings(*text)) {
    // Clean file pages only: the kernel would drop them itself under memory pressure.
    if (::madvise(reinterpret_cast<void*>(m.begin), m.end - m.begin, MADV_DONTNEED) != 0) {
      if (result.error.empty())
        result.error = std::string("madvise: ") + std::strerror(errno);
      continue;
    }
    ++result.mappings;
    result.kib += m.resident_kib;
  }
  return result;
}

} // namespace starling::actors
