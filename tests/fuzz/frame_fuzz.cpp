// libFuzzer target: the TCP push-pull stream (length-prefixed frames). Not part of the
// default build; see README.md. The first input byte chooses how the rest is split into
// feeds, so the frame_reader sees arbitrary chunking; every frame body is decoded, and a
// decoded push-pull must survive an encode/decode round trip unchanged.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gossip/codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace starling::gossip;
  if (size == 0)
    return 0;
  const std::size_t chunk = 1 + data[0];
  std::string_view rest{reinterpret_cast<const char*>(data) + 1, size - 1};
  frame_reader reader{64 * 1024};
  while (true) {
    const auto n = std::min(chunk, rest.size());
    reader.feed(rest.substr(0, n));
    rest.remove_prefix(n);
    for (auto body = reader.next(); body; body = reader.next()) {
      if (!*body)
        return 0; // failed for good: every later next() fails too
      auto decoded = decode_frame(**body);
      if (!decoded)
        continue;
      const auto frame = encode_frame(*decoded);
      auto again = decode_frame(std::string_view{frame}.substr(4));
      if (!again || !(*again == *decoded))
        __builtin_trap();
    }
    if (rest.empty())
      break;
  }
  return 0;
}
