// libFuzzer target: the text form of a join token (identity::decode), untrusted input from
// the command line, the environment, config files and admission requests. Checks that
// decoding never crashes and that the format has exactly one spelling per token: whatever
// decodes encodes back to the same text.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "identity/token.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace starling::identity;
  const std::string_view text{reinterpret_cast<const char*>(data), size};
  auto token = decode(text);
  if (!token)
    return 0;
  auto again = encode(*token);
  if (!again || *again != text)
    __builtin_trap();
  (void)token->id_hex();
  return 0;
}
