// libFuzzer target: the bytes a checked instance sends back to a gRPC health check (untrusted:
// whatever listens on the registered port) -> proxy::grpc_health_call, fed in slices (byte 0
// picks the length, 1..64), the call's output taken after each as the prober does, then the
// connection's end. Checks: once there is a verdict it never changes; every verdict's text
// is non-empty printable ASCII (it reaches JSON views and terminals); a passing verdict is
// "SERVING"; after the end of the connection there is a verdict.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "proxy/grpc_health.hpp"

namespace {

using starling::proxy::grpc_health_call;
using starling::proxy::grpc_health_verdict;

void check(const std::optional<grpc_health_verdict>& now,
           const std::optional<grpc_health_verdict>& before) {
  if (!now) {
    if (before)
      __builtin_trap();
    return;
  }
  if (before && (before->ok != now->ok || before->text != now->text))
    __builtin_trap();
  if (now->text.empty() || (now->ok && now->text != "SERVING"))
    __builtin_trap();
  for (char c : now->text)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e)
      __builtin_trap();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  const std::size_t slice = 1 + (data[0] & 63);
  const std::span<const char> stream(reinterpret_cast<const char*>(data + 1), size - 1);
  grpc_health_call call{"127.0.0.1:50051", "echo.Echo", std::chrono::milliseconds{2000}};
  std::string out;
  call.take_output(out);
  std::optional<grpc_health_verdict> seen = call.verdict();
  for (std::size_t at = 0; at < stream.size(); at += slice) {
    call.receive(stream.subspan(at, std::min(slice, stream.size() - at)));
    out.clear();
    if (call.wants_write())
      call.take_output(out);
    check(call.verdict(), seen);
    seen = call.verdict();
  }
  call.on_connection_closed();
  if (!call.verdict())
    __builtin_trap();
  check(call.verdict(), seen);
  return 0;
}
