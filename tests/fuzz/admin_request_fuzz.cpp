// libFuzzer target: the admin port's byte stream (4-byte length prefix, then an
// AdminRequest), as the admin server reads it: frame_reader with the server's default
// bound, then decode_admin_request, the pure decoder the server calls. The first input
// byte chooses how the rest is split into feeds. Checks that nothing crashes, that a
// decoded request keeps the documented bounds and survives an encode/decode round trip.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "actors/admin_server.hpp"
#include "proto/wire/framing.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace starling;
  if (size == 0)
    return 0;
  const std::size_t chunk = 1 + data[0];
  std::string_view rest{reinterpret_cast<const char*>(data) + 1, size - 1};
  wire::frame_reader reader{actors::admin_server_config{}.max_request};
  while (true) {
    const auto n = std::min(chunk, rest.size());
    reader.feed(rest.substr(0, n));
    rest.remove_prefix(n);
    for (auto frame = reader.next(); frame.what != wire::frame_reader::status::need_more;
         frame = reader.next()) {
      if (frame.what != wire::frame_reader::status::frame)
        return 0; // failed for good: the server closes the connection
      auto req = actors::decode_admin_request(frame.body);
      if (!req)
        continue;
      if (req->args.empty() || req->args.size() > actors::max_admin_args)
        __builtin_trap();
      (void)actors::is_read_only_command(req->args);
      auto again = actors::decode_admin_request(actors::encode_admin_request(*req));
      if (!again || !(*again == *req))
        __builtin_trap();
    }
    if (rest.empty())
      break;
  }
  return 0;
}
