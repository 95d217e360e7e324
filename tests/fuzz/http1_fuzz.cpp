// libFuzzer target: HTTP/1.x streams (untrusted bytes from clients and upstreams) →
// proxy::http1_parser, as requests and then as responses. Byte 0 picks the slice length
// (1..32) and the method the responses answer; the rest is the stream. Checks: each step
// consumes at most its input, body bytes are a prefix of it, the events are the same when
// the stream is fed whole and in slices (the error, if any, too), every head forwarded by
// write_forward_head parses again to the same method/target/status, every generated
// response parses, and a parser that trusts its heads (trust_heads: fields split without
// llhttp) gives the same events wherever the one that does not accepts the whole stream.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/http1.hpp"
#include "tests/fuzz/head_text.hpp"

namespace {

using namespace starling::proxy;

struct outcome {
  std::vector<std::string> heads; ///< start line + header count per head
  std::string body;               ///< all body bytes
  std::size_t completes = 0;
  bool upgraded = false;
  bool failed = false;
  http_error error = http_error::malformed;
};

void check_forward(const http1_parser& p, direction dir) {
  forward_options opts;
  opts.client_address = "192.0.2.1";
  const header extra{"x-starling-service", "svc"};
  opts.extra = std::span<const header>(&extra, 1);
  std::string out;
  write_forward_head(p.head(), opts, out);
  http1_limits roomy; // The forwarded head is a few headers and bytes larger.
  roomy.max_head_bytes = 2 * roomy.max_head_bytes;
  roomy.max_headers = 2 * roomy.max_headers;
  http1_parser again(dir, roomy);
  if (dir == direction::response && p.head().body == body_kind::none && p.head().status >= 200)
    again.expect_response_to("HEAD"); // Keep the re-parse from expecting a body it may lack.
  const auto r = again.parse(out);
  if (r.status != parse_status::head || r.consumed != out.size())
    __builtin_trap();
  const auto& a = p.head();
  const auto& b = again.head();
  if (a.method != b.method || a.target != b.target || a.status != b.status ||
      a.version_minor != b.version_minor || b.headers.size() > a.headers.size() + 4)
    __builtin_trap();
}

outcome run(direction dir, std::span<const char> data, std::size_t slice, bool to_head,
            bool trust = false) {
  http1_parser p(dir);
  if (trust)
    p.trust_heads();
  outcome o;
  std::string pending;
  std::size_t from = 0;
  auto expect = [&] {
    if (dir == direction::response)
      p.expect_response_to(to_head && o.completes % 2 == 0 ? "HEAD" : "GET");
  };
  expect();
  bool going = true;
  while (going) {
    const std::size_t n = std::min(slice, data.size() - from);
    pending.append(data.data() + from, n);
    from += n;
    for (;;) {
      const auto r = p.parse(pending);
      if (r.consumed > pending.size())
        __builtin_trap();
      if (r.status == parse_status::need_more) {
        if (r.consumed != pending.size())
          __builtin_trap();
        pending.clear();
        break;
      }
      if (r.status == parse_status::head) {
        const auto& h = p.head();
        if (h.raw.size() > 64 * 1024 || h.headers.size() > 100)
          __builtin_trap();
        auto inside = [&](std::string_view v) {
          return v.empty() ||
                 (v.data() >= h.raw.data() && v.data() + v.size() <= h.raw.data() + h.raw.size());
        };
        if (!inside(h.method) || !inside(h.target) || !inside(h.reason))
          __builtin_trap();
        for (const auto& f : h.headers)
          if (!inside(f.name) || !inside(f.value) || f.name.empty())
            __builtin_trap();
        o.heads.push_back(fuzz::describe(h));
        check_forward(p, dir);
      } else if (r.status == parse_status::body) {
        if (r.body.data() != pending.data() || r.body.size() != r.consumed || r.consumed == 0)
          __builtin_trap();
        o.body.append(r.body.data(), r.body.size());
      } else if (r.status == parse_status::complete) {
        if (r.consumed != 0)
          __builtin_trap();
        ++o.completes;
        if (!p.head().is_interim())
          expect();
      } else if (r.status == parse_status::upgrade) {
        o.upgraded = true;
        going = false;
        break;
      } else {
        o.failed = true;
        o.error = r.error;
        going = false;
        break;
      }
      pending.erase(0, r.consumed);
    }
    if (from == data.size())
      break;
  }
  if (!o.failed && !o.upgraded) {
    const auto r = p.finish();
    if (r.status == parse_status::complete)
      ++o.completes;
    else if (r.status == parse_status::error) {
      o.failed = true;
      o.error = r.error;
    }
  }
  return o;
}

void compare(const outcome& a, const outcome& b) {
  if (a.heads != b.heads || a.completes != b.completes || a.upgraded != b.upgraded ||
      a.failed != b.failed || (a.failed && a.error != b.error))
    __builtin_trap();
  // Before an error, a sliced feed may report body bytes the whole feed did not reach.
  if (a.failed ? !b.body.starts_with(a.body) && !a.body.starts_with(b.body) : a.body != b.body)
    __builtin_trap();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  const std::size_t slice = 1 + (data[0] & 31);
  const bool to_head = (data[0] & 32) != 0;
  const std::span<const char> stream(reinterpret_cast<const char*>(data + 1), size - 1);
  for (const auto dir : {direction::request, direction::response}) {
    const auto whole = run(dir, stream, stream.size() + 1, to_head);
    const auto sliced = run(dir, stream, slice, to_head);
    compare(whole, sliced);
    if (!whole.failed)
      compare(whole, run(dir, stream, slice, to_head, true));
    if (whole.failed) {
      std::string out;
      write_error_response(whole.error, out, false, "detail");
      if (whole.error == http_error::http2_preface) {
        // HTTP/2 frames, not a response: SETTINGS first, then GOAWAY (HTTP_1_1_REQUIRED).
        if (dir != direction::request || out.size() != 26 || out[3] != 0x4 || out[12] != 0x7 ||
            out[25] != 0xd)
          __builtin_trap();
        continue;
      }
      http1_parser p(direction::response);
      const auto r = p.parse(out);
      if (r.status != parse_status::head || p.head().status != status_of(whole.error))
        __builtin_trap();
    }
  }
  return 0;
}
