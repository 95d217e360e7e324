// A stand-in for libFuzzer's main, for builds without -fsanitize=fuzzer (g++, or clang
// without STARLING_FUZZ): runs LLVMFuzzerTestOneInput once on every file named on the
// command line, or in a directory named there (sorted, not recursive). Arguments starting
// with '-' (libFuzzer flags) are ignored, so one command line serves both drivers. A crash
// or a trap fails the run; so does a named file or directory that cannot be read, and an
// empty corpus (a wrong path would otherwise pass silently).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

bool run_file(const std::filesystem::path& file) {
  std::ifstream in{file, std::ios::binary};
  if (!in) {
    std::fprintf(stderr, "replay: cannot read %s\n", file.c_str());
    return false;
  }
  const std::vector<char> bytes{std::istreambuf_iterator<char>{in},
                                std::istreambuf_iterator<char>{}};
  // A copy of exactly `size` bytes, so ASan sees reads past the end (as under libFuzzer).
  std::vector<std::uint8_t> input(bytes.begin(), bytes.end());
  LLVMFuzzerTestOneInput(input.empty() ? nullptr : input.data(), input.size());
  return true;
}

} // namespace

int main(int argc, char** argv) {
  std::size_t runs = 0;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path arg{argv[i]};
    if (argv[i][0] == '-')
      continue;
    std::error_code ec;
    if (std::filesystem::is_directory(arg, ec)) {
      std::vector<std::filesystem::path> files;
      for (const auto& entry : std::filesystem::directory_iterator{arg, ec})
        if (entry.is_regular_file())
          files.push_back(entry.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        if (!run_file(f))
          return 1;
        ++runs;
      }
    } else {
      if (!run_file(arg))
        return 1;
      ++runs;
    }
  }
  std::printf("replay: %zu inputs, no crash\n", runs);
  return runs > 0 ? 0 : 1;
}
