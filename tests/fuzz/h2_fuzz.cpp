// libFuzzer target: HTTP/2 bytes from a peer (untrusted: the other node, or anything that
// reaches the inbound port) -> proxy::h2::session, as a server and as a client (after its
// own preface). Byte 0 picks the slice length (1..64) the bytes are fed in; the rest is the
// stream. The listener does what the data plane will: converts every head to HTTP/1.1
// (to_h1_request / to_h1_response), answers requests, sends and consumes data, resets
// some streams. Checks: receive never reports success after a failure, no HTTP/1.1 head
// or trailer written from received fields holds CR, LF or NUL except as CRLF line ends,
// nothing is written when a conversion fails, the dechunker stays inside its input, and
// each head written parses the same with http1_parser::trust_heads as without.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "proxy/h2.hpp"
#include "proxy/http1.hpp"
#include "tests/fuzz/head_text.hpp"

namespace {

using namespace starling::proxy;

/// Every CR is followed by LF and every LF preceded by CR; no NUL.
void check_h1(std::string_view out) {
  for (std::size_t i = 0; i < out.size(); ++i) {
    const char c = out[i];
    if (c == '\0')
      __builtin_trap();
    if (c == '\r' && (i + 1 >= out.size() || out[i + 1] != '\n'))
      __builtin_trap();
    if (c == '\n' && (i == 0 || out[i - 1] != '\r'))
      __builtin_trap();
  }
}

/// A head written from received fields parses the same with trust_heads as without: the
/// same head (fields, framing, flags) or the same refusal. With `spans` (a request's, from
/// to_h1_request), adopting it split (http1_parser::adopt_head) gives that head too.
void check_trusted(direction dir, std::string_view h1, const std::vector<header_span>* spans) {
  http1_parser plain(dir), trusting(dir);
  trusting.trust_heads();
  const auto a = plain.parse(h1);
  const auto b = trusting.parse(h1);
  if (a.status != b.status || a.consumed != b.consumed ||
      (a.status == parse_status::error && a.error != b.error) ||
      (a.status == parse_status::head &&
       fuzz::describe(plain.head()) != fuzz::describe(trusting.head())))
    __builtin_trap();
  if (spans == nullptr)
    return;
  http1_parser given(dir);
  const auto c = given.adopt_head(h1, *spans);
  if (c.status != a.status || (a.status == parse_status::error && a.error != c.error) ||
      (a.status == parse_status::head &&
       fuzz::describe(plain.head()) != fuzz::describe(given.head())))
    __builtin_trap();
}

struct fuzz_listener : h2::listener {
  h2::session* s = nullptr;
  h2::role role = h2::role::server;
  std::string h1;
  std::vector<header_span> spans;
  std::size_t events = 0;

  void on_head(std::int32_t stream, const h2::head& h) override {
    h1.clear();
    const bool server = role == h2::role::server;
    const auto w =
        server ? h2::to_h1_request(h, {}, h1, &spans) : h2::to_h1_response(h, false, {}, h1);
    if (w.error == h2::errc::ok) {
      check_h1(h1);
      check_trusted(server ? direction::request : direction::response, h1,
                    server ? &spans : nullptr);
    } else if (!h1.empty())
      __builtin_trap(); // nothing written on error
    if (role == h2::role::server && (++events % 3) != 0) {
      static const h2::field fields[] = {{":status", "200"}, {"x-test", "1"}};
      if (s->submit_response(stream, fields, false) == h2::errc::ok)
        (void)s->send_data(stream, std::string_view("hello"), events % 2 == 0);
    } else if (events % 5 == 0) {
      (void)s->reset(stream, h2::cancel);
    }
  }
  void on_data(std::int32_t stream, std::span<const char> bytes) override {
    if (++events % 4 != 0)
      s->consumed(stream, bytes.size());
    h2::dechunker d;
    while (!bytes.empty()) {
      const auto st = d.next(bytes);
      if (st.consumed > bytes.size() ||
          (!st.payload.empty() &&
           (st.payload.data() < bytes.data() ||
            st.payload.data() + st.payload.size() > bytes.data() + bytes.size())))
        __builtin_trap();
      if (st.consumed == 0)
        break;
      bytes = bytes.subspan(st.consumed);
    }
  }
  void on_trailers(std::int32_t, std::span<const h2::field> fields) override {
    h1.clear();
    if (h2::write_last_chunk(fields, h1) == h2::errc::ok)
      check_h1(h1);
  }
  void on_end(std::int32_t stream) override {
    if (role == h2::role::server)
      (void)s->end_stream(stream);
  }
  void on_reset(std::int32_t, std::uint32_t) override {}
};

void run(h2::role role, std::span<const char> in, std::size_t slice) {
  fuzz_listener l;
  l.role = role;
  h2::limits lim;
  lim.max_header_list_bytes = 4096;
  lim.max_buffered_bytes = 1024;
  h2::session s(role, lim, l);
  l.s = &s;
  std::string out;
  if (role == h2::role::client) {
    static const h2::field req[] = {
        {":method", "POST"}, {":scheme", "http"}, {":authority", "svc"}, {":path", "/"}};
    for (int i = 0; i < 3; ++i) {
      const auto made = s.submit_request(req, false);
      if (made.error == h2::errc::ok)
        (void)s.send_data(made.stream, std::string_view("body"), true);
    }
  }
  s.take_output(out); // SETTINGS (and the preface) go out first, as on a real connection
  bool failed = false;
  while (!in.empty()) {
    const auto n = std::min(slice, in.size());
    const auto rc = s.receive(in.first(n));
    in = in.subspan(n);
    if (failed && rc == h2::errc::ok)
      __builtin_trap(); // a broken session never recovers
    failed = failed || rc != h2::errc::ok;
    out.clear();
    s.take_output(out);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  const std::size_t slice = 1 + (data[0] & 63);
  const std::span<const char> stream(reinterpret_cast<const char*>(data + 1), size - 1);
  run(h2::role::server, stream, slice);
  run(h2::role::client, stream, slice);
  return 0;
}
