// `starling keyring install|use|remove --local` against an admin port (a real admin_server on
// 127.0.0.1, port 0, answering as the agent does): a refused change arrives as a failed
// status and the command prints why and exits 1; an accepted one prints the key id and
// exits 0. (The agent's side, a refused change answered as a failed status, is in
// tests/integration/keyring_test.cpp.)
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "actors/admin_server.hpp"
#include "actors/cli/commands.hpp"

namespace sa = starling::actors;
namespace sc = starling::cli;

namespace {

/// The requests the admin port got (written on its I/O thread).
struct request_log {
  std::mutex mutex;
  std::vector<std::vector<std::string>> asked;
};

/// An admin port that answers keyring changes like an agent whose keyring refuses removing
/// its primary key `primary` and accepts the rest; remembers what it was asked.
std::unique_ptr<sa::admin_server> start_admin(const std::string& primary, request_log& log) {
  sa::admin_server_config cfg;
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  auto server = sa::admin_server::start(
      cfg, [primary, &log](std::vector<std::string> args, sa::admin_responder reply) {
        {
          std::lock_guard guard{log.mutex};
          log.asked.push_back(args);
        }
        if (args.size() == 3 && args[1] == "remove" && args[2] == primary)
          return reply(sa::admin_reply::failed("identity.keyring_refused: key " + primary +
                                               " is the primary key"));
        reply(sa::admin_reply::ok(args.size() == 3 ? args[2] : "?"));
      });
  EXPECT_TRUE(server);
  return server ? std::move(*server) : nullptr;
}

sc::client_options options_for(const sa::admin_server& server) {
  sc::client_options opts;
  opts.admin = "127.0.0.1:" + std::to_string(server.port());
  opts.timeout = std::chrono::seconds{5};
  return opts;
}

TEST(cli_keyring, a_refused_change_prints_why_and_exits_1) {
  request_log log;
  const std::string primary = "00112233445566ff";
  auto server = start_admin(primary, log);
  ASSERT_TRUE(server);
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  const int code = sc::run_keyring(options_for(*server), "remove", primary, true);
  const auto out = ::testing::internal::GetCapturedStdout();
  const auto err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, sa::exit_failed);
  EXPECT_TRUE(out.empty()) << out;
  EXPECT_NE(err.find("identity.keyring_refused: key " + primary + " is the primary key"),
            std::string::npos)
      << err;
  std::lock_guard guard{log.mutex};
  ASSERT_EQ(log.asked.size(), 1u);
  EXPECT_EQ(log.asked[0], (std::vector<std::string>{"keyring", "remove", primary}));
}

TEST(cli_keyring, an_accepted_change_prints_the_key_id_and_exits_0) {
  request_log log;
  auto server = start_admin("00112233445566ff", log);
  ASSERT_TRUE(server);
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  const int code = sc::run_keyring(options_for(*server), "use", "aabbccddeeff0011", true);
  const auto out = ::testing::internal::GetCapturedStdout();
  const auto err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, sa::exit_ok) << err;
  EXPECT_EQ(out, "key aabbccddeeff0011 is now the primary key (it seals this node's gossip)\n");
}

} // namespace
