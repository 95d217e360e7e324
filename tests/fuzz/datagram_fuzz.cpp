// libFuzzer target: gossip datagrams (untrusted UDP input). Not part of the default build;
// see README.md. Checks that decoding never crashes and that whatever decodes survives an
// encode/decode round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gossip/codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace starling::gossip;
  const std::string_view bytes{reinterpret_cast<const char*>(data), size};
  auto decoded = decode_datagram(bytes);
  if (!decoded)
    return 0;
  codec_limits relaxed;
  relaxed.max_datagram = 1u << 20; // re-encoding may be longer (e.g. non-minimal varints)
  auto again = decode_datagram(encode_datagram(*decoded), relaxed);
  if (!again || !(*again == *decoded))
    __builtin_trap();
  return 0;
}
