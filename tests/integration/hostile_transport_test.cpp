// Memory exhaustion without a certificate (issue 13, finding 3), against a real agent: an
// issuer (TLS on its gossip port, clients without a certificate accepted for admission) is
// attacked by 64 TLS clients without a certificate, each announcing a 16 MiB frame and
// sending its body, reconnecting when cut off. The agent's resident memory (VmRSS of
// /proc/<pid>/status) must stay under 64 MiB during the attack and after it, and the agent
// must still answer its admin commands and admit a member. Every loop is bounded by a count
// and a deadline; waits poll.
//
// Under a sanitizer (the agent is built with the same flags as this test) the bound is the
// idle figure plus 512 MiB, and the memory is not required to settle back: TSan's and
// ASan's allocators keep what was freed, and their shadow memory and per-thread traces grow
// with every connection (TSan, with nothing buffered at all: 46 MiB idle and 63 MiB after
// the attack in one run, 48 and 148 MiB in another, 2026-12-02/03). That bound still fails
// the way the finding did: the old agent buffered 1,208 MiB without a sanitizer, more with
// one. The 64 MiB bound and the settling check run in the plain build.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <gtest/gtest.h>

#include "tests/support/mesh_test.hpp"

namespace st = starling::testing;
using namespace std::chrono_literals;
using asio::ip::tcp;

namespace {

/// Attacking connections open at once (the finding's figure).
constexpr int attackers = 64;
/// What each one announces: the largest frame the codec takes from a member.
constexpr std::uint32_t announced = 16u << 20;
/// Connections each attacker opens at most (the first, then reconnections when cut off).
constexpr int rounds = 10;
/// How long the attack lasts at most.
constexpr auto attack_time = 6s;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif
#else
constexpr bool sanitized = false;
#endif

/// The bound the agent's resident memory must stay under, during and after: 64 MiB, or
/// under a sanitizer the idle figure plus 512 MiB (see the top of the file).
std::uint64_t rss_bound_kib(std::uint64_t idle_kib) {
  return sanitized ? idle_kib + 512 * 1024 : 64 * 1024;
}

/// VmRSS of process `pid` in KiB; std::nullopt if it cannot be read (the process is gone).
std::optional<std::uint64_t> rss_kib(long pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stoull(line.substr(6)); // "VmRSS:   12345 kB"
  }
  return std::nullopt;
}

/// What the attack did, summed over its connections.
struct attack_stats {
  int connections = 0;    ///< connects that succeeded
  int handshakes = 0;     ///< TLS handshakes completed (no client certificate)
  int cut_off = 0;        ///< connections the agent closed or reset
  std::uint64_t sent = 0; ///< bytes written through TLS
  int whole_frames = 0;   ///< frames written whole (the agent took all 16 MiB)
};

/// One attacking client: connect, TLS handshake without a certificate, the length prefix of
/// a 16 MiB frame, then the body in 1 MiB writes; reconnects when cut off, `rounds` times
/// at most and not after the deadline. Runs on one io_context thread.
class attacker : public std::enable_shared_from_this<attacker> {
public:
  attacker(asio::io_context& io, asio::ssl::context& ctx, tcp::endpoint to,
           std::shared_ptr<const std::string> chunk, attack_stats& stats,
           std::chrono::steady_clock::time_point deadline)
      : io_(io), ctx_(ctx), to_(to), chunk_(std::move(chunk)), stats_(stats), deadline_(deadline) {}

  void start() {
    if (stopped_ || round_ >= rounds || std::chrono::steady_clock::now() >= deadline_)
      return;
    ++round_;
    sent_ = 0;
    tls_.emplace(io_, ctx_);
    auto self = shared_from_this();
    tls_->next_layer().async_connect(to_, [self](const asio::error_code& ec) {
      if (ec)
        return self->cut();
      ++self->stats_.connections;
      self->tls_->async_handshake(asio::ssl::stream_base::client,
                                  [self](const asio::error_code& e) {
                                    if (e)
                                      return self->cut();
                                    ++self->stats_.handshakes;
                                    self->send_prefix();
                                  });
    });
  }

  /// Ends the attack of this client: closes its connection, opens no other.
  void stop() {
    stopped_ = true;
    if (tls_) {
      asio::error_code ignored;
      tls_->next_layer().close(ignored);
    }
  }

private:
  void send_prefix() {
    prefix_ = {static_cast<char>(announced >> 24), static_cast<char>((announced >> 16) & 0xff),
               static_cast<char>((announced >> 8) & 0xff), static_cast<char>(announced & 0xff)};
    auto self = shared_from_this();
    asio::async_write(*tls_, asio::buffer(prefix_),
                      [self](const asio::error_code& ec, std::size_t) {
                        if (ec)
                          return self->cut();
                        self->send_body();
                      });
  }

  void send_body() {
    if (sent_ >= announced) {
      ++stats_.whole_frames;
      return; // holds the connection open: the agent answers or times it out
    }
    const auto n = std::min<std::size_t>(chunk_->size(), announced - sent_);
    auto self = shared_from_this();
    asio::async_write(*tls_, asio::buffer(chunk_->data(), n),
                      [self](const asio::error_code& ec, std::size_t written) {
                        self->sent_ += written;
                        self->stats_.sent += written;
                        if (ec)
                          return self->cut();
                        self->send_body();
                      });
  }

  void cut() {
    if (stopped_)
      return;
    ++stats_.cut_off;
    asio::error_code ignored;
    tls_->next_layer().close(ignored);
    start();
  }

  asio::io_context& io_;
  asio::ssl::context& ctx_;
  tcp::endpoint to_;
  std::shared_ptr<const std::string> chunk_;
  attack_stats& stats_;
  std::chrono::steady_clock::time_point deadline_;
  std::optional<asio::ssl::stream<tcp::socket>> tls_;
  std::string prefix_;
  std::size_t sent_ = 0;
  int round_ = 0;
  bool stopped_ = false;
};

class hostile_transport_test : public st::mesh_test {
protected:
  hostile_transport_test() : mesh_test("starling-it-hostile-transport") {}
};

TEST_F(hostile_transport_test, anonymous_16_mib_frames_do_not_exhaust_memory) {
  const auto ca = make_root("it.mesh", "ca");
  auto& issuer = start("issuer-1", {},
                       {"--issuer", make_issuer(ca, "issuer-1").string(), "--gossip-key", key_});
  ASSERT_FALSE(HasFailure());
  const long pid = issuer.info.pid;
  ASSERT_GT(pid, 0);
  // Settled: a first members view has been served.
  ASSERT_TRUE(st::poll_until(10s, [&] { return st::members_view(issuer.info.admin).has_value(); }));
  const auto idle = rss_kib(pid);
  ASSERT_TRUE(idle);

  // The attack: 64 clients without a certificate on the gossip port, 16 MiB frames.
  asio::io_context io;
  asio::ssl::context ctx{asio::ssl::context::tls_client};
  ctx.set_verify_mode(asio::ssl::verify_none); // the attacker does not care who serves
  tcp::resolver resolver{io};
  const auto colon = issuer.info.gossip.rfind(':');
  const auto to =
      *resolver.resolve(issuer.info.gossip.substr(0, colon), issuer.info.gossip.substr(colon + 1))
           .begin();
  auto chunk = std::make_shared<const std::string>(1u << 20, 'x');
  attack_stats stats;
  const auto deadline = std::chrono::steady_clock::now() + attack_time;
  std::vector<std::shared_ptr<attacker>> clients;
  for (int i = 0; i < attackers; ++i) {
    clients.push_back(std::make_shared<attacker>(io, ctx, to.endpoint(), chunk, stats, deadline));
    clients.back()->start();
  }
  // Sample the agent's memory while the attack runs, every 20 ms.
  std::uint64_t peak = *idle;
  bool gone = false;
  asio::steady_timer sampler{io};
  std::function<void()> sample = [&] {
    if (auto now = rss_kib(pid))
      peak = std::max(peak, *now);
    else
      gone = true;
    if (std::chrono::steady_clock::now() >= deadline) {
      io.stop(); // the attack is over: whatever is still open is closed below
      return;
    }
    sampler.expires_after(20ms);
    sampler.async_wait([&](const asio::error_code& ec) {
      if (!ec)
        sample();
    });
  };
  sample();
  io.run_for(attack_time + 2s);
  // Every attacking connection closes now, so that what follows measures the recovery.
  for (auto& c : clients)
    c->stop();
  io.restart();
  io.poll(); // the aborted handlers, which open nothing new
  clients.clear();
  ASSERT_FALSE(gone) << "the agent died under the attack";
  std::cout << "[ hostile ] idle " << *idle / 1024 << " MiB, peak " << peak / 1024
            << " MiB during the attack; " << stats.connections << " connections, "
            << stats.handshakes << " anonymous handshakes, " << stats.cut_off << " cut off, "
            << stats.sent / (1u << 20) << " MiB sent, " << stats.whole_frames << " whole frames\n";
  RecordProperty("idle_rss_kib", std::to_string(*idle));
  RecordProperty("peak_rss_kib", std::to_string(peak));
  EXPECT_GT(stats.handshakes, 0) << "the attack never reached the agent";
  const auto bound = rss_bound_kib(*idle);
  EXPECT_LT(peak, bound) << "peak RSS " << peak << " KiB during the attack";

  // After: the memory comes back near its idle figure (not under a sanitizer, whose
  // allocator keeps freed memory), and stays under the bound.
  std::uint64_t after = 0;
  const bool settled = st::poll_until(10s, [&] {
    auto now = rss_kib(pid);
    after = now.value_or(0);
    return now && (sanitized ? *now < bound : *now <= *idle + 8 * 1024);
  });
  std::cout << "[ hostile ] " << after / 1024 << " MiB after the attack"
            << (sanitized ? " (sanitizer build: bound relative to idle, no settling check)" : "")
            << "\n";
  RecordProperty("after_rss_kib", std::to_string(after));
  EXPECT_TRUE(settled) << "RSS " << after << " KiB after the attack, idle was " << *idle;
  EXPECT_LT(after, bound);

  // And the agent still works: its admin answers, and a member joins with a token.
  auto view = st::members_view(issuer.info.admin);
  ASSERT_TRUE(view) << "no members view after the attack";
  const auto token = token_of(issuer, "1");
  start("node-1", {issuer.info.gossip}, {"--token", token});
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(st::poll_until(20s, [&] { return all_alive(2); })) << "node-1 did not join";
}

} // namespace
