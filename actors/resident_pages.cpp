#include "actors/resident_pages.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>

#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

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

namespace {

// Ranges less the pages of `cut` (both as page ranges), sorted.
std::vector<page_range> without(std::vector<page_range> ranges,
                                const std::vector<page_range>& cut) {
  for (const auto& c : cut) {
    std::vector<page_range> kept;
    for (const auto& r : ranges) {
      if (c.end <= r.begin || r.end <= c.begin) {
        kept.push_back(r);
        continue;
      }
      if (r.begin < c.begin)
        kept.push_back({r.begin, c.begin});
      if (c.end < r.end)
        kept.push_back({c.end, r.end});
    }
    ranges = std::move(kept);
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const page_range& a, const page_range& b) { return a.begin < b.begin; });
  return ranges;
}

// True when the object's dynamic section asks for text relocations (DT_TEXTREL, or
// DF_TEXTREL in DT_FLAGS). Reads the loaded object's memory.
bool has_text_relocations(const dl_phdr_info& info) {
  for (std::size_t i = 0; i < info.dlpi_phnum; ++i) {
    const auto& ph = info.dlpi_phdr[i];
    if (ph.p_type != PT_DYNAMIC)
      continue;
    const auto* dyn = reinterpret_cast<const ElfW(Dyn)*>(info.dlpi_addr + ph.p_vaddr);
    const std::size_t entries = ph.p_memsz / sizeof(ElfW(Dyn));
    for (std::size_t k = 0; k < entries && dyn[k].d_tag != DT_NULL; ++k) {
      if (dyn[k].d_tag == DT_TEXTREL)
        return true;
      if (dyn[k].d_tag == DT_FLAGS && (dyn[k].d_un.d_val & DF_TEXTREL) != 0)
        return true;
    }
  }
  return false;
}

// The object whose first segment starts at the vDSO's ELF header: the kernel's, no file.
bool is_vdso(const dl_phdr_info& info) {
  const auto vdso = ::getauxval(AT_SYSINFO_EHDR);
  if (vdso == 0)
    return false;
  for (std::size_t i = 0; i < info.dlpi_phnum; ++i) {
    const auto& ph = info.dlpi_phdr[i];
    if (ph.p_type == PT_LOAD && ph.p_offset == 0 && info.dlpi_addr + ph.p_vaddr == vdso)
      return true;
  }
  return false;
}

// Resident KiB of files and shared memory: statm's third field, in pages.
std::optional<std::size_t> file_resident_kib(std::size_t page) {
  auto text = identity::read_file("/proc/self/statm", 4096);
  if (!text)
    return std::nullopt;
  std::string_view rest = *text;
  next_field(rest); // size
  next_field(rest); // resident
  auto shared = next_field(rest);
  std::size_t pages = 0;
  const auto* end = shared.data() + shared.size();
  auto [ptr, ec] = std::from_chars(shared.data(), end, pages);
  if (ec != std::errc{} || ptr != end || shared.empty())
    return std::nullopt;
  return pages * (page / 1024);
}

struct release_walk {
  std::vector<clean_file_mapping> clean;
  std::size_t page = 4096;
  released_pages* result = nullptr;
};

int release_object(dl_phdr_info* info, std::size_t, void* data) {
  auto& walk = *static_cast<release_walk*>(data);
  if (is_vdso(*info))
    return 0;
  const auto ranges = inside(never_written_pages(info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum,
                                                 has_text_relocations(*info), walk.page),
                             walk.clean);
  for (const auto& r : ranges) {
    // Clean file pages only: the kernel would drop them itself under memory pressure.
    if (::madvise(reinterpret_cast<void*>(r.begin), r.end - r.begin, MADV_DONTNEED) != 0) {
      if (walk.result->error.empty())
        walk.result->error = std::string("madvise: ") + std::strerror(errno);
      continue;
    }
    ++walk.result->ranges;
  }
  return 0;
}

} // namespace

std::vector<page_range> never_written_pages(std::uintptr_t base, const ElfW(Phdr) * phdrs,
                                            std::size_t count, bool text_relocations,
                                            std::size_t page) {
  if (text_relocations || page == 0 || (page & (page - 1)) != 0)
    return {};
  const auto floor = [page](std::uintptr_t a) { return a & ~(page - 1); };
  const auto ceil = [page](std::uintptr_t a) { return (a + page - 1) & ~(page - 1); };
  std::vector<page_range> read_only, written;
  for (std::size_t i = 0; i < count; ++i) {
    const auto& ph = phdrs[i];
    const auto start = base + ph.p_vaddr;
    if (ph.p_type == PT_GNU_RELRO || (ph.p_type == PT_LOAD && (ph.p_flags & PF_W) != 0)) {
      written.push_back({floor(start), ceil(start + ph.p_memsz)});
      continue;
    }
    if (ph.p_type != PT_LOAD || (ph.p_flags & PF_R) == 0 || ph.p_filesz == 0)
      continue;
    // The loader zero-fills past the file's bytes, writing the last page of the file part.
    const auto end =
        ph.p_memsz > ph.p_filesz ? floor(start + ph.p_filesz) : ceil(start + ph.p_filesz);
    if (floor(start) < end)
      read_only.push_back({floor(start), end});
  }
  return without(std::move(read_only), written);
}

std::vector<page_range> inside(const std::vector<page_range>& ranges,
                               const std::vector<clean_file_mapping>& clean) {
  std::vector<page_range> out;
  for (const auto& r : ranges) {
    for (const auto& m : clean) {
      const auto begin = std::max(r.begin, m.begin);
      const auto end = std::min(r.end, m.end);
      if (begin < end)
        out.push_back({begin, end});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const page_range& a, const page_range& b) { return a.begin < b.begin; });
  return out;
}

released_pages release_clean_file_pages() {
  released_pages result;
  release_walk walk;
  walk.result = &result;
  const auto page = ::sysconf(_SC_PAGESIZE);
  walk.page = page > 0 ? static_cast<std::size_t>(page) : 4096;
  auto text = identity::read_file("/proc/self/smaps", max_smaps_bytes);
  if (!text) {
    result.error = identity::render(text.error());
    return result;
  }
  walk.clean = clean_file_mappings(*text);
  result.file_kib_before = file_resident_kib(walk.page).value_or(0);
  // The loader's lock is held while the callback runs: no object is mapped or unmapped
  // meanwhile, and every range handed back is a segment of a loaded object.
  ::dl_iterate_phdr(release_object, &walk);
  result.file_kib_after = file_resident_kib(walk.page).value_or(0);
  return result;
}

} // namespace starling::actors
