// starling-h2-bench: the user-space cost of one request/response exchange across the hop
// between two nodes, without I/O, TLS or the kernel (decision 0022's question: does what
// HTTP/2 costs in the process eat what it saves in system calls?). Three ways, each on the
// real codecs (proxy/http1.hpp, proxy/h2.hpp):
//
//  h1       today: A parses the client's request and forwards its head; B parses it and
//           forwards it to the app; B parses the app's response and forwards it; A parses
//           it and forwards it to the client.
//  h2       A converts the parsed request to HTTP/2 fields and submits a stream; B receives
//           it and writes the HTTP/1.1 request for the app; B converts the app's parsed
//           response and submits it with its body; A receives it and writes the HTTP/1.1
//           response for the client. Output is taken once per batch of `--batch` streams
//           (one write per loop turn).
//  h2-tree  as h2, plus what the data plane still does (decision 0022): B's stream writes
//           the request head as HTTP/1.1 and B's session parses it again, and A's stream
//           and session do the same with the response head.
//  h2-trust h2-tree with those two parsers trusting the heads (http1_parser::trust_heads:
//           the fields split without llhttp), as the data plane's streams do them.
//  h2-given h2-trust, but B's session is given the request head split as the stream wrote
//           it (to_h1_request's spans, http1_parser::adopt_head), as the data plane's
//           server streams do now: not parsed again.
//  heads    not an exchange: one browser request head (14 fields) forwarded as HTTP/1.1
//           and converted to HTTP/2 fields, ns per call.
//  h2-adapt as h2, plus what decision 0022's plan adds: each side also writes and parses
//           the HTTP/1.1 head once more (the session code talks HTTP/1.1 to the stream),
//           in both directions (write_head has since removed two of the four).
//
// Prints nanoseconds per exchange (both nodes together; median, p90 and max of the rounds)
// and the bytes crossing the hop per exchange. No clock in the measured code's hot path
// other than one read per round.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/h2.hpp"
#include "proxy/http1.hpp"

namespace {

using namespace starling::proxy;
using clock_type = std::chrono::steady_clock;

constexpr std::string_view wrk_request = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
/// The client's request of every exchange: wrk's, or with `--request browser` a browser's.
std::string_view client_request = wrk_request;
constexpr std::string_view app_response =
    "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 05 Dec 2026 05:00:00 GMT\r\n"
    "Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";

/// A browser's request: what most heads through a mesh look like more than wrk's.
constexpr std::string_view browser_request =
    "GET /index.html?q=1 HTTP/1.1\r\nHost: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
    "Connection: keep-alive\r\nCookie: session=abc123; theme=dark\r\n"
    "Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n"
    "Sec-Fetch-Site: none\r\nSec-Fetch-User: ?1\r\nPragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n\r\n";

/// Parses one whole message from `in` with `p`; returns the body bytes seen (the head is
/// p.head(), valid until the next message). Aborts on anything but a clean message.
std::size_t parse_message(http1_parser& p, std::string_view in) {
  std::size_t body = 0;
  std::span<const char> rest(in.data(), in.size());
  for (int steps = 0; steps < 16; ++steps) {
    const auto r = p.parse(rest);
    rest = rest.subspan(r.consumed);
    switch (r.status) {
    case parse_status::complete:
      return body;
    case parse_status::body:
      body += r.body.size();
      break;
    case parse_status::head:
    case parse_status::need_more:
      break;
    default:
      std::fprintf(stderr, "h2-bench: parse failed\n");
      std::exit(1);
    }
  }
  std::fprintf(stderr, "h2-bench: message did not complete\n");
  std::exit(1);
}

/// Both nodes' head work of the HTTP/1.1 hop, per exchange.
struct h1_hop {
  http1_parser a_req{direction::request}, b_req{direction::request};
  http1_parser b_resp{direction::response}, a_resp{direction::response};
  std::string wire, out;
  std::size_t hop_bytes = 0;

  void exchange() {
    forward_options fo;
    fo.client_address = "127.0.0.1";
    parse_message(a_req, client_request);
    wire.clear();
    write_forward_head(a_req.head(), fo, wire); // A -> B
    hop_bytes += wire.size();
    parse_message(b_req, wire);
    out.clear();
    write_forward_head(b_req.head(), fo, out); // B -> app
    b_resp.expect_response_to("GET");
    parse_message(b_resp, app_response);
    wire.clear();
    forward_options ro;
    write_forward_head(b_resp.head(), ro, wire); // B -> A, then the body
    wire.append("ok");
    hop_bytes += wire.size();
    a_resp.expect_response_to("GET");
    parse_message(a_resp, wire);
    out.clear();
    write_forward_head(a_resp.head(), ro, out); // A -> client
    out.append("ok");
  }
};

/// The HTTP/2 hop: A is the client session, B the server session.
struct h2_hop {
  struct node : h2::listener {
    h2_hop* hop = nullptr;
    bool server = false;
    void on_head(std::int32_t stream, const h2::head& h) override {
      hop->on_head(server, stream, h);
    }
    void on_data(std::int32_t stream, std::span<const char> bytes) override {
      hop->on_data(server, stream, bytes);
    }
    void on_end(std::int32_t stream) override { hop->on_end(server, stream); }
    void on_reset(std::int32_t, std::uint32_t) override {
      std::fprintf(stderr, "h2-bench: unexpected reset\n");
      std::exit(1);
    }
  };

  /// Both heads written and parsed once more each way (h2-adapt), or only B's request
  /// and A's response (h2-tree, h2-trust).
  bool adapt = false, again_in = false;
  /// The parsers of B's request and A's response trust the head (h2-trust): renewed per
  /// exchange, as the data plane makes a parser per stream (trust covers one exchange).
  bool trust = false;
  /// B's request head is adopted split, not parsed (h2-given).
  bool given = false;
  std::vector<header_span> spans;
  node a_node, b_node;
  h2::session a{h2::role::client, {}, a_node};
  h2::session b{h2::role::server, {}, b_node};
  http1_parser a_req{direction::request}, b_resp{direction::response};
  http1_parser a_again{direction::request}, b_again{direction::request};
  http1_parser b_resp_again{direction::response}, a_resp_again{direction::response};
  h2::field_list fields;
  std::string wire, out, scratch;
  std::size_t hop_bytes = 0, completed = 0;

  explicit h2_hop(std::string_view mode)
      : adapt(mode == "h2-adapt"), again_in(mode != "h2"),
        trust(mode == "h2-trust" || mode == "h2-given"), given(mode == "h2-given") {
    a_node.hop = this;
    b_node.hop = this;
    b_node.server = true;
    flush(); // prefaces and SETTINGS
    flush();
    hop_bytes = 0;
  }

  void submit_one() {
    forward_options fo;
    fo.client_address = "127.0.0.1";
    parse_message(a_req, client_request);
    const message_head* h = &a_req.head();
    if (adapt) { // the session writes HTTP/1.1, the stream parses it again
      scratch.clear();
      write_forward_head(*h, fo, scratch);
      parse_message(a_again, scratch);
      h = &a_again.head();
      fo.client_address = {};
    }
    if (h2::to_h2_request(*h, fo, fields) != h2::errc::ok) {
      std::fprintf(stderr, "h2-bench: to_h2_request failed\n");
      std::exit(1);
    }
    const auto s = a.submit_request(fields.fields, true);
    if (s.error != h2::errc::ok) {
      std::fprintf(stderr, "h2-bench: submit_request: %s\n",
                   std::string(h2::name(s.error)).c_str());
      std::exit(1);
    }
  }

  void on_head(bool server, std::int32_t stream, const h2::head& h) {
    forward_options fo;
    if (server) { // B: toward the app, then the app's response back
      out.clear();
      if (h2::to_h1_request(h, fo, out, given ? &spans : nullptr).error != h2::errc::ok) {
        std::fprintf(stderr, "h2-bench: to_h1_request failed\n");
        std::exit(1);
      }
      if (again_in) {
        if (trust)
          b_again.trust_heads();
        if (given) {
          if (b_again.adopt_head(out, spans).status != parse_status::head ||
              b_again.parse({}).status != parse_status::complete) {
            std::fprintf(stderr, "h2-bench: adopt_head failed\n");
            std::exit(1);
          }
        } else {
          parse_message(b_again, out);
        }
        out.clear();
        write_forward_head(b_again.head(), fo, out);
      }
      b_resp.expect_response_to("GET");
      const std::size_t body = parse_message(b_resp, app_response);
      const message_head* rh = &b_resp.head();
      if (adapt) {
        scratch.clear();
        write_forward_head(*rh, fo, scratch);
        scratch.append("ok");
        b_resp_again.expect_response_to("GET");
        parse_message(b_resp_again, scratch);
        rh = &b_resp_again.head();
      }
      if (h2::to_h2_response(*rh, fo, fields) != h2::errc::ok ||
          b.submit_response(stream, fields.fields, body == 0) != h2::errc::ok ||
          (body != 0 && b.send_data(stream, std::string_view("ok"), true) != h2::errc::ok)) {
        std::fprintf(stderr, "h2-bench: response submit failed\n");
        std::exit(1);
      }
      return;
    }
    out.clear(); // A: toward the client
    const auto w = h2::to_h1_response(h, false, fo, out);
    if (w.error != h2::errc::ok) {
      std::fprintf(stderr, "h2-bench: to_h1_response failed\n");
      std::exit(1);
    }
    if (again_in) {
      if (trust)
        a_resp_again.trust_heads();
      a_resp_again.expect_response_to("GET");
      std::string_view head_bytes = out;
      scratch.assign(head_bytes);
      scratch.append("ok");
      parse_message(a_resp_again, scratch);
      out.clear();
      write_forward_head(a_resp_again.head(), fo, out);
    }
  }
  void on_data(bool server, std::int32_t stream, std::span<const char> bytes) {
    (server ? b : a).consumed(stream, bytes.size());
    if (!server)
      out.append(bytes.data(), bytes.size());
  }
  void on_end(bool server, std::int32_t) {
    if (!server)
      ++completed;
  }

  /// One loop turn on each side: A's output to B, B's output to A.
  void flush() {
    wire.clear();
    a.take_output(wire);
    hop_bytes += wire.size();
    if (!wire.empty() && b.receive(wire) != h2::errc::ok) {
      std::fprintf(stderr, "h2-bench: B refused A's bytes\n");
      std::exit(1);
    }
    wire.clear();
    b.take_output(wire);
    hop_bytes += wire.size();
    if (!wire.empty() && a.receive(wire) != h2::errc::ok) {
      std::fprintf(stderr, "h2-bench: A refused B's bytes\n");
      std::exit(1);
    }
  }
};

struct result {
  std::vector<double> ns;
  double bytes = 0;
};

double at(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5)];
}

void report(const char* name, const result& r) {
  std::printf("| %s | %.0f | %.0f | %.0f | %.0f |\n", name, at(r.ns, 0.5), at(r.ns, 0.9),
              at(r.ns, 1.0), r.bytes);
}

} // namespace

int main(int argc, char** argv) {
  long exchanges = 100000;
  int rounds = 7;
  int batch = 8;
  std::string_view only; // "": every one
  if (argc % 2 == 0) {   // options come in pairs
    std::fprintf(stderr, "starling-h2-bench: %s needs a value\n", argv[argc - 1]);
    return 2;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view k = argv[i];
    const long v = std::strtol(argv[i + 1], nullptr, 10);
    if (k == "--only")
      only = argv[i + 1];
    else if (k == "--request" &&
             (std::string_view(argv[i + 1]) == "wrk" || std::string_view(argv[i + 1]) == "browser"))
      client_request = std::string_view(argv[i + 1]) == "wrk" ? wrk_request : browser_request;
    else if (k == "--exchanges")
      exchanges = std::clamp(v, 1000L, 10000000L);
    else if (k == "--rounds")
      rounds = static_cast<int>(std::clamp(v, 1L, 100L));
    else if (k == "--batch")
      batch = static_cast<int>(std::clamp(v, 1L, 100L));
    else {
      std::fprintf(stderr, "usage: starling-h2-bench [--exchanges N] [--rounds R] [--batch B] "
                           "[--request wrk|browser] "
                           "[--only h1|h2|h2-tree|h2-trust|h2-given|h2-adapt|heads]\n");
      return 2;
    }
  }
  std::printf("# %ld exchanges per round, %d rounds, HTTP/2 streams per flush: %d, %s request\n\n",
              exchanges, rounds, batch, client_request == wrk_request ? "wrk's" : "a browser's");
  std::printf("| hop | ns/exchange median | p90 | max | bytes across the hop per exchange |\n");
  std::printf("|---|---|---|---|---|\n");

  result h1r;
  for (int r = 0; r < rounds && (only.empty() || only == "h1"); ++r) {
    h1_hop hop;
    const auto t0 = clock_type::now();
    for (long i = 0; i < exchanges; ++i)
      hop.exchange();
    const auto t1 = clock_type::now();
    h1r.ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() /
                     static_cast<double>(exchanges));
    h1r.bytes = static_cast<double>(hop.hop_bytes) / static_cast<double>(exchanges);
  }
  if (!h1r.ns.empty())
    report("h1", h1r);

  for (const std::string_view mode : {"h2", "h2-tree", "h2-trust", "h2-given", "h2-adapt"}) {
    if (!only.empty() && only != mode)
      continue;
    result r2;
    for (int r = 0; r < rounds; ++r) {
      // A fresh connection per round; stream ids last 2^30 requests, far more than this.
      h2_hop hop(mode);
      const auto t0 = clock_type::now();
      long done = 0;
      while (done < exchanges) {
        const long n = std::min<long>(batch, exchanges - done);
        for (long i = 0; i < n; ++i)
          hop.submit_one();
        hop.flush(); // A's requests to B, B's responses to A
        hop.flush(); // window updates and the like
        done += n;
      }
      const auto t1 = clock_type::now();
      if (hop.completed != static_cast<std::size_t>(exchanges)) {
        std::fprintf(stderr, "h2-bench: %zu of %ld exchanges completed\n", hop.completed,
                     exchanges);
        return 1;
      }
      r2.ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() /
                      static_cast<double>(exchanges));
      r2.bytes = static_cast<double>(hop.hop_bytes) / static_cast<double>(exchanges);
    }
    report(std::string(mode).c_str(), r2);
  }

  // One head converted at a time (the rows above use wrk's one-field request): a browser's
  // request (14 fields, one Connection) forwarded as HTTP/1.1 (write_forward_head) and
  // turned into HTTP/2 fields (h2::to_h2_request), as nodes A and B do per request.
  if (only.empty() || only == "heads") {
    http1_parser p(direction::request);
    if (p.parse(browser_request).status != parse_status::head) {
      std::fprintf(stderr, "h2-bench: the browser request does not parse\n");
      return 1;
    }
    forward_options fo;
    fo.client_address = "127.0.0.1";
    std::string out;
    h2::field_list fields;
    result fw, th;
    for (int r = 0; r < rounds; ++r) {
      auto t0 = clock_type::now();
      for (long i = 0; i < exchanges; ++i) {
        out.clear();
        write_forward_head(p.head(), fo, out);
      }
      auto t1 = clock_type::now();
      fw.ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() /
                      static_cast<double>(exchanges));
      t0 = clock_type::now();
      for (long i = 0; i < exchanges; ++i)
        if (h2::to_h2_request(p.head(), fo, fields) != h2::errc::ok) {
          std::fprintf(stderr, "h2-bench: to_h2_request failed\n");
          return 1;
        }
      t1 = clock_type::now();
      th.ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() /
                      static_cast<double>(exchanges));
    }
    fw.bytes = static_cast<double>(out.size());
    th.bytes = static_cast<double>(browser_request.size());
    std::printf("\n| one browser request head | ns per call median | p90 | max | bytes |\n");
    std::printf("|---|---|---|---|---|\n");
    report("write_forward_head", fw);
    report("h2::to_h2_request", th);
  }
  return 0;
}
