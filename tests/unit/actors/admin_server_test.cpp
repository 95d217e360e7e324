// The admin protocol on loopback: answers, errors, hostile input, limits and lifetime.
#include <future>
#include <map>
#include <mutex>
#include <random>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "actors/admin_server.hpp"
#include "actors/errc.hpp"
#include "tests/support/process.hpp"

namespace starling::actors {
namespace {

using namespace std::chrono_literals;
namespace st = starling::testing;

/// Echoes the arguments joined by spaces; "fail" fails, "usage" is a usage error, "hold"
/// keeps the responder without answering.
struct echo_handler {
  std::mutex mutex;
  std::vector<admin_responder> held;

  admin_handler handler() {
    return [this](std::vector<std::string> args, admin_responder reply) {
      if (args[0] == "fail")
        return reply(admin_reply::failed("it failed"));
      if (args[0] == "usage")
        return reply(admin_reply::usage("unknown command"));
      if (args[0] == "hold") {
        std::lock_guard guard{mutex};
        held.push_back(std::move(reply));
        return;
      }
      std::string out;
      for (const auto& a : args)
        out += (out.empty() ? "" : " ") + a;
      reply(admin_reply::ok(out));
    };
  }
};

std::unique_ptr<admin_server> start(echo_handler& h, admin_server_config cfg = {}) {
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  auto server = admin_server::start(cfg, h.handler());
  EXPECT_TRUE(server) << (server ? "" : caf::to_string(server.error()));
  return server ? std::move(*server) : nullptr;
}

/// A raw TCP connection to the server; -1 on failure.
int connect_raw(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

/// True once the peer has closed `fd` (read returns 0 or an error), polled with a deadline.
bool closed_by_peer(int fd) {
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char buf[256];
  for (;;) {
    auto n = ::recv(fd, buf, sizeof(buf), 0);
    if (n == 0)
      return true;
    if (n < 0)
      return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

TEST(admin_server, answers_requests_with_status_body_and_error) {
  echo_handler h;
  auto server = start(h);
  ASSERT_TRUE(server);
  auto r = call_admin("127.0.0.1", server->port(), {"members", "--x"}, 5s);
  ASSERT_TRUE(r) << caf::to_string(r.error());
  EXPECT_EQ(r->code, admin_reply::status::ok);
  EXPECT_EQ(r->body, "members --x");
  r = call_admin("127.0.0.1", server->port(), {"fail"}, 5s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, admin_reply::status::failed);
  EXPECT_EQ(r->error, "it failed");
  r = call_admin("127.0.0.1", server->port(), {"usage"}, 5s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, admin_reply::status::usage);
  EXPECT_EQ(server->stats().requests.load(), 3u);
}

TEST(admin_server, an_empty_command_line_is_a_usage_error) {
  echo_handler h;
  auto server = start(h);
  ASSERT_TRUE(server);
  auto r = call_admin("127.0.0.1", server->port(), {}, 5s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, admin_reply::status::usage);
  EXPECT_NE(r->error.find("1 to 64 arguments"), std::string::npos) << r->error;
  EXPECT_EQ(server->stats().malformed.load(), 1u);
}

TEST(admin_server, garbage_and_oversized_requests_close_only_their_connection) {
  echo_handler h;
  admin_server_config cfg;
  cfg.max_request = 4096;
  auto server = start(h, cfg);
  ASSERT_TRUE(server);
  std::mt19937_64 rng{7};
  // A length prefix claiming 4 GiB: closed at once, nothing allocated.
  int fd = connect_raw(server->port());
  ASSERT_GE(fd, 0);
  const char huge[] = {'\xff', '\xff', '\xff', '\xff', 'x'};
  ASSERT_EQ(::send(fd, huge, sizeof(huge), MSG_NOSIGNAL), static_cast<ssize_t>(sizeof(huge)));
  EXPECT_TRUE(closed_by_peer(fd));
  ::close(fd);
  // Random bodies of every small length behind a correct length prefix: each gets a usage
  // answer or a close, never a crash.
  for (std::uint32_t len = 1; len <= 64; ++len) {
    int g = connect_raw(server->port());
    ASSERT_GE(g, 0);
    std::string msg{0, 0, 0, static_cast<char>(len)};
    for (std::uint32_t i = 0; i < len; ++i)
      msg += static_cast<char>(rng() & 0xff);
    (void)::send(g, msg.data(), msg.size(), MSG_NOSIGNAL);
    ::shutdown(g, SHUT_WR);
    EXPECT_TRUE(closed_by_peer(g));
    ::close(g);
  }
  EXPECT_GE(server->stats().malformed.load(), 1u);
  auto r = call_admin("127.0.0.1", server->port(), {"still", "here"}, 5s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "still here");
}

TEST(admin_server, idle_connections_at_the_limit_do_not_lock_a_client_out) {
  // Issue 13: 32 connections that never send a request used to refuse every new one.
  echo_handler h;
  auto server = start(h);
  ASSERT_TRUE(server);
  const auto cap = admin_server_config{}.max_connections;
  std::vector<int> idle;
  for (std::size_t i = 0; i < cap; ++i) {
    idle.push_back(connect_raw(server->port()));
    ASSERT_GE(idle.back(), 0);
  }
  ASSERT_TRUE(st::poll_until(5s, [&] { return server->stats().connections.load() == cap; }));
  for (int round = 0; round < 3; ++round) {
    auto r = call_admin("127.0.0.1", server->port(), {"members"}, 5s);
    ASSERT_TRUE(r) << caf::to_string(r.error());
    EXPECT_EQ(r->body, "members");
  }
  // The first call evicted one; later ones may find the slot of an answered client that has
  // hung up, depending on when the server read its close.
  EXPECT_GE(server->stats().evicted_connections.load(), 1u);
  EXPECT_LE(server->stats().evicted_connections.load(), 3u);
  EXPECT_EQ(server->stats().refused_connections.load(), 0u);
  // The oldest idle connection was the first one closed.
  EXPECT_TRUE(closed_by_peer(idle[0]));
  for (int fd : idle)
    ::close(fd);
}

TEST(admin_server, a_half_sent_request_is_idle_and_evicted_first_when_oldest) {
  echo_handler h;
  admin_server_config cfg;
  cfg.max_connections = 2;
  auto server = start(h, cfg);
  ASSERT_TRUE(server);
  int half = connect_raw(server->port());
  ASSERT_GE(half, 0);
  const char prefix[] = {0, 0, 0, 100, 'x'}; // 100 bytes announced, 1 sent
  ASSERT_EQ(::send(half, prefix, sizeof(prefix), MSG_NOSIGNAL),
            static_cast<ssize_t>(sizeof(prefix)));
  int idle = connect_raw(server->port());
  ASSERT_GE(idle, 0);
  ASSERT_TRUE(st::poll_until(5s, [&] { return server->stats().connections.load() == 2; }));
  auto r = call_admin("127.0.0.1", server->port(), {"ok"}, 5s);
  ASSERT_TRUE(r) << caf::to_string(r.error());
  EXPECT_EQ(r->body, "ok");
  EXPECT_TRUE(closed_by_peer(half));
  EXPECT_EQ(server->stats().evicted_connections.load(), 1u);
  ::close(half);
  ::close(idle);
}

TEST(admin_server, connections_over_the_limit_are_refused_when_all_are_busy) {
  echo_handler h;
  admin_server_config cfg;
  cfg.max_connections = 2;
  auto server = start(h, cfg);
  ASSERT_TRUE(server);
  // Two requests the handler holds: both connections are busy, neither may be evicted.
  auto a = std::async(std::launch::async,
                      [&] { return call_admin("127.0.0.1", server->port(), {"hold"}, 10s); });
  auto b = std::async(std::launch::async,
                      [&] { return call_admin("127.0.0.1", server->port(), {"hold"}, 10s); });
  ASSERT_TRUE(st::poll_until(5s, [&] {
    std::lock_guard guard{h.mutex};
    return h.held.size() == 2;
  }));
  int c = connect_raw(server->port());
  ASSERT_GE(c, 0);
  EXPECT_TRUE(closed_by_peer(c));
  ::close(c);
  EXPECT_EQ(server->stats().refused_connections.load(), 1u);
  EXPECT_EQ(server->stats().evicted_connections.load(), 0u);
  {
    std::lock_guard guard{h.mutex};
    for (auto& reply : h.held)
      reply(admin_reply::ok("held"));
  }
  auto ra = a.get();
  auto rb = b.get();
  ASSERT_TRUE(ra) << caf::to_string(ra.error());
  ASSERT_TRUE(rb) << caf::to_string(rb.error());
  EXPECT_EQ(ra->body, "held");
  EXPECT_EQ(rb->body, "held");
  // Answered connections are idle again (or closed by their client): a new client gets in.
  EXPECT_TRUE(st::poll_until(5s, [&] {
    auto r = call_admin("127.0.0.1", server->port(), {"ok"}, 1s);
    return r && r->body == "ok";
  }));
}

TEST(admin_server, unanswered_request_times_out_and_late_answers_are_dropped) {
  echo_handler h;
  admin_server_config cfg;
  cfg.request_timeout = 100ms;
  auto server = start(h, cfg);
  ASSERT_TRUE(server);
  auto r = call_admin("127.0.0.1", server->port(), {"hold"}, 10s);
  ASSERT_TRUE(r) << caf::to_string(r.error());
  EXPECT_EQ(r->code, admin_reply::status::failed);
  EXPECT_EQ(server->stats().timeouts.load(), 1u);
  // The handler answers late, then after the server is gone: both are ignored.
  {
    std::lock_guard guard{h.mutex};
    ASSERT_EQ(h.held.size(), 1u);
    h.held[0](admin_reply::ok("late"));
  }
  server.reset();
  std::lock_guard guard{h.mutex};
  h.held[0](admin_reply::ok("later"));
}

TEST(admin_server, several_requests_on_one_connection_and_a_closed_port) {
  echo_handler h;
  auto server = start(h);
  ASSERT_TRUE(server);
  for (int i = 0; i < 20; ++i) {
    auto r = call_admin("127.0.0.1", server->port(), {"n", std::to_string(i)}, 5s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "n " + std::to_string(i));
  }
  auto port = st::closed_port();
  auto r = call_admin("127.0.0.1", port, {"members"}, 2s);
  ASSERT_FALSE(r);
  EXPECT_NE(message_of(r.error()).find("connection failed"), std::string::npos)
      << message_of(r.error());
}

TEST(admin_server, binding_a_bad_address_fails_with_the_address) {
  echo_handler h;
  admin_server_config cfg;
  cfg.host = "not-an-address";
  auto server = admin_server::start(cfg, h.handler());
  ASSERT_FALSE(server);
  EXPECT_NE(message_of(server.error()).find("not-an-address"), std::string::npos);
}

// -- the admin credential (issue 13, finding 6; docs/decisions/0012) ------------------------------

TEST(admin_server, commands_that_change_the_node_need_the_credential) {
  echo_handler h;
  admin_server_config cfg;
  cfg.credential = "s3cret";
  cfg.needs_credential = [](const std::vector<std::string>& args) {
    return !is_read_only_command(args);
  };
  auto server = start(h, cfg);
  ASSERT_TRUE(server);
  const auto port = server->port();
  // Reads are open; a change without the credential, or with a wrong one, is refused with
  // a message that says what to do, and counted.
  auto read = call_admin("127.0.0.1", port, {"members"}, 5s);
  ASSERT_TRUE(read);
  EXPECT_EQ(read->code, admin_reply::status::ok);
  for (const std::string& wrong : {std::string{}, std::string{"s3cre"}, std::string{"s3cret!"}}) {
    auto change = call_admin("127.0.0.1", port, {"revoke", "node-2"}, 5s, wrong);
    ASSERT_TRUE(change);
    EXPECT_EQ(change->code, admin_reply::status::failed);
    EXPECT_NE(change->error.find("needs its admin credential"), std::string::npos) << change->error;
  }
  EXPECT_EQ(server->stats().auth_refused, 3u);
  auto list = call_admin("127.0.0.1", port, {"keyring", "list"}, 5s);
  ASSERT_TRUE(list);
  EXPECT_EQ(list->code, admin_reply::status::ok);
  auto install = call_admin("127.0.0.1", port, {"keyring", "install", "k"}, 5s);
  ASSERT_TRUE(install);
  EXPECT_EQ(install->code, admin_reply::status::failed);
  // With it: served.
  auto change = call_admin("127.0.0.1", port, {"revoke", "node-2"}, 5s, "s3cret");
  ASSERT_TRUE(change);
  EXPECT_EQ(change->code, admin_reply::status::ok);
  EXPECT_EQ(change->body, "revoke node-2");
  EXPECT_EQ(server->stats().auth_refused, 4u);
}

TEST(admin_server, closed_reads_need_the_credential_too) {
  echo_handler h;
  admin_server_config cfg;
  cfg.credential = "s3cret"; // no predicate: every command needs it
  auto server = start(h, cfg);
  ASSERT_TRUE(server);
  auto read = call_admin("127.0.0.1", server->port(), {"members"}, 5s);
  ASSERT_TRUE(read);
  EXPECT_EQ(read->code, admin_reply::status::failed);
  read = call_admin("127.0.0.1", server->port(), {"members"}, 5s, "s3cret");
  ASSERT_TRUE(read);
  EXPECT_EQ(read->code, admin_reply::status::ok);
}

TEST(admin_server, read_only_commands_are_the_views) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"members"}, {"events"}, {"certs"}, {"stats"}, {"keyring", "list"}, {"ping"}})
    EXPECT_TRUE(is_read_only_command(args)) << args.front();
  for (const auto& args : std::vector<std::vector<std::string>>{{"leave"},
                                                                {"token"},
                                                                {"revoke", "n"},
                                                                {"keyring", "install", "k"},
                                                                {"keyring"},
                                                                {"keyring", "use", "k"},
                                                                {"unknown"},
                                                                {}})
    EXPECT_FALSE(is_read_only_command(args)) << (args.empty() ? "" : args.front());
}

TEST(admin_server, the_runtime_dir_follows_the_environment) {
  auto env_of = [](std::map<std::string, std::string> vars) {
    return [vars](const char* name) -> const char* {
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  };
  EXPECT_EQ(admin_runtime_dir(env_of({{"STARLING_RUNTIME_DIR", "/r"}, {"HOME", "/h"}})), "/r");
  EXPECT_EQ(admin_runtime_dir(env_of({{"XDG_RUNTIME_DIR", "/run/user/7"}, {"HOME", "/h"}})),
            "/run/user/7/starling");
  EXPECT_EQ(admin_runtime_dir(env_of({{"HOME", "/h"}})), "/h/.starling/run");
  // No variable at all: the home directory of the passwd database.
  const auto* pw = ::getpwuid(::getuid());
  EXPECT_EQ(admin_runtime_dir(env_of({})), pw != nullptr && pw->pw_dir[0] == '/'
                                               ? std::string{pw->pw_dir} + "/.starling/run"
                                               : std::string{});
  EXPECT_EQ(runtime_cookie_name(7947), "admin-7947.cookie");
}

} // namespace
} // namespace starling::actors
