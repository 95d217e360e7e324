// Mutual TLS on the gossip transport's TCP exchanges, through the agent's tls_security over
// contexts of the run-time test PKI: push-pulls between members, refusals (another mesh, no
// TLS, a sender that is not the certificate's node, an anonymous push-pull), admission frames
// (the joiner's blocking exchange, a member forwarding with admission_with), and the slowloris
// bound with connections stuck mid-handshake. Transports run on 127.0.0.1 with port 0; every
// wait is bounded (a condition variable or a polled counter); nothing sleeps to hope.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <gtest/gtest.h>

#include "actors/tls_security.hpp"
#include "gossip/errc.hpp"
#include "gossip/transport.hpp"
#include "identity/errc.hpp"
#include "identity/tls.hpp"
#include "tests/support/test_pki.hpp"

namespace starling::actors {
namespace {

using namespace std::chrono_literals;
using starling::testing::mesh;
using starling::testing::must;
using starling::testing::other_mesh;
using starling::testing::test_pki;

/// Bound on every wait of this file.
constexpr auto bound = 5s;

/// True once `pred` holds; false if it still does not after `bound` (polled every ms).
template <class Pred> bool within_bound(Pred pred) {
  const auto give_up = std::chrono::steady_clock::now() + bound;
  for (;;) {
    if (pred())
      return true;
    if (std::chrono::steady_clock::now() > give_up)
      return false;
    std::this_thread::sleep_for(1ms);
  }
}

bool is_gossip(const caf::error& err, gossip::errc x) {
  return err && err.category() == gossip::errc_category &&
         err.code() == static_cast<std::uint8_t>(x);
}

/// The rendering of `err` contains `text`.
bool mentions(const caf::error& err, const std::string& text) {
  return gossip::render(err).find(text) != std::string::npos;
}

/// A member context for `name` of `pki`: its chain ends with the root (so that a joiner
/// holding only the pin can check it), it trusts `trusted` (default: its own mesh), serves
/// joiners, and reads the PKI's fixed clock.
std::shared_ptr<const identity::tls_context>
member_context(const test_pki& pki, std::string_view name, const test_pki* trusted = nullptr) {
  auto node = pki.node(name);
  node.chain.push_back(pki.root().cert);
  identity::tls_options opts;
  opts.key = node.key;
  opts.certs = node.chain;
  opts.trust = std::make_shared<identity::trust_state>((trusted ? *trusted : pki).bundle());
  opts.clock = [now = pki.now()] { return now; };
  opts.accept_anonymous_clients = true;
  return must(identity::tls_context::make(std::move(opts)), "member TLS context");
}

std::shared_ptr<gossip::stream_security>
security_of(std::shared_ptr<const identity::tls_context> ctx) {
  return std::make_shared<tls_security>(
      std::make_shared<identity::tls_context_holder>(std::move(ctx)));
}

/// A joiner of our mesh: no certificate, the root pinned.
std::shared_ptr<tls_security> joiner_security() {
  identity::tls_options opts;
  opts.pinned_root = must(identity::spki_sha256(mesh().root().cert), "root pin");
  opts.clock = [] { return mesh().now(); };
  auto ctx = must(identity::tls_context::make(std::move(opts)), "joiner TLS context");
  return must(tls_security::joiner(std::move(ctx)), "joiner security");
}

gossip::push_pull state_of(const std::string& name, std::size_t members = 1) {
  gossip::push_pull pp;
  pp.sender = name;
  pp.sender_address = "127.0.0.1:1";
  for (std::size_t i = 0; i < members; ++i)
    pp.members.push_back(gossip::member_update{gossip::member_state::alive,
                                               i == 0 ? name : name + "-" + std::to_string(i),
                                               "127.0.0.1:1",
                                               i,
                                               {{"pad", std::string(100, 'p')}},
                                               {}});
  return pp;
}

/// A result handed over once from the transport's thread. The shared state outlives a wait
/// that gave up.
template <class T> class handover {
public:
  std::function<void(caf::expected<T>)> callback() {
    return [st = state_](caf::expected<T> value) {
      std::lock_guard guard{st->mutex};
      st->value.emplace(std::move(value));
      st->cv.notify_all();
    };
  }

  /// The value, or a timeout error when none came within `bound`.
  caf::expected<T> take() {
    std::unique_lock guard{state_->mutex};
    if (!state_->cv.wait_for(guard, bound, [this] { return state_->value.has_value(); }))
      return gossip::make_error(gossip::errc::timeout, "no result within the test's bound");
    return std::move(*state_->value);
  }

private:
  struct state {
    std::mutex mutex;
    std::condition_variable cv;
    std::optional<caf::expected<T>> value;
  };
  std::shared_ptr<state> state_ = std::make_shared<state>();
};

/// Answers an admission request, given the client's verified name.
using admission_handler = std::function<caf::expected<std::string>(
    const std::string& request, const std::optional<std::string>& peer)>;

/// One running transport and what its callbacks saw. Not movable (callbacks point here).
class node {
public:
  /// Starts a transport with `security` (null: plain TCP). Push-pulls are answered with
  /// state_of(answers_as, answer_members); admissions by `admit` (unset: not served).
  node(std::shared_ptr<gossip::stream_security> security, std::string answers_as,
       admission_handler admit = {}, std::chrono::milliseconds tcp_timeout = 2s,
       std::size_t answer_members = 1,
       std::size_t per_source = gossip::transport_config{}.max_connections_per_source)
      : answer_(state_of(answers_as, answer_members)), admit_(std::move(admit)) {
    gossip::transport_config cfg;
    cfg.bind_host = "127.0.0.1";
    cfg.port = 0;
    cfg.tcp_timeout = tcp_timeout;
    cfg.max_connections_per_source = per_source;
    cfg.security = std::move(security);
    gossip::transport_callbacks cbs;
    (void)cbs.requests.add(
        gossip::request_types::push_pull,
        gossip::push_pull_spec(
            [this](gossip::push_pull, gossip::push_pull_responder reply) { reply(answer_); }));
    cbs.on_drop = [this](const caf::error& why, const std::string&) {
      std::lock_guard guard{mutex_};
      drops_.push_back(why);
    };
    gossip::identity_handler on_identity;
    if (admit_)
      on_identity = [this](std::string request, std::optional<std::string> peer,
                           gossip::admission_responder reply) { reply(admit_(request, peer)); };
    // Registered without a handler too: the node still sends identity requests.
    (void)cbs.requests.add(gossip::request_types::identity,
                           gossip::identity_spec(std::move(on_identity)));
    transport_ = must(gossip::transport::start(std::move(cfg), std::move(cbs)), "transport");
  }

  node(const node&) = delete;
  node& operator=(const node&) = delete;

  [[nodiscard]] std::string address() const { return transport_->advertise_address(); }
  [[nodiscard]] std::uint16_t port() const { return transport_->port(); }
  [[nodiscard]] const gossip::transport_stats& stats() const { return transport_->stats(); }

  /// Runs a push-pull of `state` with `to` and waits for its end.
  caf::expected<gossip::push_pull> push_pull(const node& to, gossip::push_pull state) {
    handover<gossip::push_pull> result;
    gossip::push_pull_with(*transport_, to.address(), std::move(state), result.callback());
    return result.take();
  }

  /// Forwards an admission request to `to`, expecting the member `expected`.
  caf::expected<std::string> admission(const node& to, std::string request,
                                       std::optional<std::string> expected) {
    handover<std::string> result;
    gossip::admission_with(*transport_, to.address(), std::move(request), std::move(expected),
                           result.callback());
    return result.take();
  }

  /// True when an input was dropped with identity error `x`.
  bool dropped(identity::errc x) {
    std::lock_guard guard{mutex_};
    for (const auto& why : drops_)
      if (identity::is(why, x))
        return true;
    return false;
  }

private:
  const gossip::push_pull answer_;
  const admission_handler admit_;
  std::mutex mutex_;
  std::vector<caf::error> drops_;
  std::unique_ptr<gossip::transport> transport_;
};

/// Grants any admission request with "granted <request> to <peer or anonymous>".
caf::expected<std::string> grant(const std::string& request,
                                 const std::optional<std::string>& peer) {
  return "granted " + request + " to " + peer.value_or("anonymous");
}

/// Builds the joiner's request once it knows the seed: "csr for <mesh>", checking that the
/// seed's verified identity is there.
caf::expected<std::string> joiner_request(const SSL* session) {
  const auto* peer = identity::tls_context::peer_of(session);
  if (peer == nullptr || !peer->identity)
    return identity::make_error(identity::errc::no_certificate, "seed not verified");
  return "csr for " + peer->identity->mesh;
}

// -- push-pull between members ---------------------------------------------------------------

TEST(transport_tls, push_pull_between_members_works_and_both_count) {
  node a{security_of(member_context(mesh(), "node-a")), "node-a"};
  node b{security_of(member_context(mesh(), "node-b")), "node-b"};
  auto ab = a.push_pull(b, state_of("node-a"));
  ASSERT_TRUE(ab) << gossip::render(ab.error());
  EXPECT_EQ(*ab, state_of("node-b"));
  auto ba = b.push_pull(a, state_of("node-b"));
  ASSERT_TRUE(ba) << gossip::render(ba.error());
  EXPECT_EQ(*ba, state_of("node-a"));
  for (const node* n : {&a, &b}) {
    EXPECT_EQ(n->stats().push_pulls_out, 1u);
    EXPECT_TRUE(within_bound([&] { return n->stats().push_pulls_in == 1; }));
    EXPECT_EQ(n->stats().push_pull_errors, 0u);
    EXPECT_EQ(n->stats().tls_refused, 0u);
    EXPECT_EQ(n->stats().binding_refused, 0u);
  }
}

TEST(transport_tls, a_large_answer_arrives_whole_before_the_server_closes) {
  // About 400 KB: many TLS records, more than the socket buffers take at once.
  node a{security_of(member_context(mesh(), "node-a")), "node-a"};
  node b{security_of(member_context(mesh(), "node-b")), "node-b", {}, 2s, 3000};
  for (int i = 0; i < 3; ++i) {
    auto answer = a.push_pull(b, state_of("node-a"));
    ASSERT_TRUE(answer) << gossip::render(answer.error());
    EXPECT_EQ(*answer, state_of("node-b", 3000));
  }
  EXPECT_EQ(a.stats().push_pulls_out, 3u);
}

// -- refusals --------------------------------------------------------------------------------

TEST(transport_tls, a_client_of_another_mesh_is_refused_and_the_server_keeps_serving) {
  node a{security_of(member_context(mesh(), "node-a")), "node-a"};
  node b{security_of(member_context(mesh(), "node-b")), "node-b"};
  // Trusting its own mesh only, the foreign client refuses b's chain: both sides fail TLS.
  node x{security_of(member_context(other_mesh(), "node-x")), "node-x"};
  auto refused = x.push_pull(b, state_of("node-x"));
  ASSERT_FALSE(refused);
  EXPECT_TRUE(identity::is(refused.error(), identity::errc::untrusted_chain))
      << identity::render(refused.error());
  EXPECT_EQ(x.stats().tls_refused, 1u);
  EXPECT_EQ(x.stats().push_pull_errors, 1u);
  EXPECT_TRUE(x.dropped(identity::errc::untrusted_chain)); // reported through on_drop too
  EXPECT_TRUE(within_bound([&] { return b.stats().tls_refused == 1; }));
  EXPECT_TRUE(within_bound([&] { return b.stats().push_pull_errors == 1; }));
  // Trusting our root, it presents its certificate, which b refuses as untrusted.
  node y{security_of(member_context(other_mesh(), "node-y", &mesh())), "node-y"};
  EXPECT_FALSE(y.push_pull(b, state_of("node-y")));
  EXPECT_EQ(y.stats().push_pull_errors, 1u);
  EXPECT_TRUE(within_bound([&] { return b.stats().tls_refused == 2; }));
  EXPECT_TRUE(within_bound([&] { return b.dropped(identity::errc::untrusted_chain); }));
  // b still serves members.
  auto ok = a.push_pull(b, state_of("node-a"));
  ASSERT_TRUE(ok) << gossip::render(ok.error());
  EXPECT_TRUE(within_bound([&] { return b.stats().push_pulls_in == 1; }));
}

TEST(transport_tls, plain_tcp_and_tls_do_not_mix) {
  node a{security_of(member_context(mesh(), "node-a")), "node-a"};
  node b{security_of(member_context(mesh(), "node-b")), "node-b"};
  node p{nullptr, "node-p"};
  // A plain client against a TLS server: refused at the handshake.
  EXPECT_FALSE(p.push_pull(b, state_of("node-p")));
  EXPECT_EQ(p.stats().push_pull_errors, 1u);
  EXPECT_TRUE(within_bound([&] { return b.stats().tls_refused == 1; }));
  EXPECT_TRUE(within_bound([&] { return b.stats().push_pull_errors == 1; }));
  EXPECT_EQ(b.stats().push_pulls_in, 0u);
  // A TLS client against a plain server: its handshake fails.
  EXPECT_FALSE(a.push_pull(p, state_of("node-a")));
  EXPECT_EQ(a.stats().tls_refused, 1u);
  EXPECT_EQ(p.stats().push_pulls_in, 0u);
  // b still serves members.
  auto ok = a.push_pull(b, state_of("node-a"));
  ASSERT_TRUE(ok) << gossip::render(ok.error());
}

TEST(transport_tls, a_sender_other_than_the_certificate_is_refused_both_ways) {
  node a{security_of(member_context(mesh(), "node-a")), "node-a"};
  node b{security_of(member_context(mesh(), "node-b")), "node-b"};
  // a's certificate names node-a; its push-pull claims node-c.
  auto impostor = a.push_pull(b, state_of("node-c"));
  ASSERT_FALSE(impostor);
  EXPECT_TRUE(is_gossip(impostor.error(), gossip::errc::unauthenticated))
      << gossip::render(impostor.error());
  EXPECT_TRUE(mentions(impostor.error(), "node-c") && mentions(impostor.error(), "node-a"))
      << gossip::render(impostor.error());
  EXPECT_TRUE(within_bound([&] { return b.stats().binding_refused == 1; }));
  EXPECT_TRUE(within_bound([&] { return b.stats().push_pull_errors == 1; }));
  EXPECT_EQ(b.stats().push_pulls_in, 0u);
  // A server whose certificate names node-l answers as node-z: a refuses the answer.
  node liar{security_of(member_context(mesh(), "node-l")), "node-z"};
  auto lie = a.push_pull(liar, state_of("node-a"));
  ASSERT_FALSE(lie);
  EXPECT_TRUE(mentions(lie.error(), "node-z") && mentions(lie.error(), "node-l"))
      << gossip::render(lie.error());
  EXPECT_EQ(a.stats().binding_refused, 1u);
  EXPECT_EQ(a.stats().push_pull_errors, 2u);
  EXPECT_EQ(a.stats().push_pulls_out, 0u);
}

// -- admission -------------------------------------------------------------------------------

TEST(transport_tls, an_anonymous_joiner_gets_admission_but_no_push_pull) {
  node seed{security_of(member_context(mesh(), "node-b")), "node-b", grant};
  auto joiner = joiner_security();
  auto answer = gossip::admission_exchange(seed.address(), *joiner, joiner_request, 2s);
  ASSERT_TRUE(answer) << gossip::render(answer.error());
  EXPECT_EQ(*answer, "granted csr for " + mesh().mesh() + " to anonymous");
  EXPECT_TRUE(within_bound([&] { return seed.stats().admissions_in == 1; }));
  EXPECT_EQ(seed.stats().push_pull_errors, 0u);
  // The joiner's certificate-less session may not push-pull.
  node anonymous{joiner, "node-j"};
  auto refused = anonymous.push_pull(seed, state_of("node-j"));
  ASSERT_FALSE(refused);
  EXPECT_TRUE(is_gossip(refused.error(), gossip::errc::unauthenticated));
  EXPECT_TRUE(mentions(refused.error(), "without a certificate may only ask for admission"))
      << gossip::render(refused.error());
  EXPECT_TRUE(within_bound([&] { return seed.stats().binding_refused == 1; }));
  EXPECT_EQ(seed.stats().push_pulls_in, 0u);
}

TEST(transport_tls, admission_without_a_handler_is_refused_clearly) {
  node seed{security_of(member_context(mesh(), "node-b")), "node-b"};
  auto answer = gossip::admission_exchange(seed.address(), *joiner_security(), joiner_request, 2s);
  ASSERT_FALSE(answer);
  EXPECT_TRUE(is_gossip(answer.error(), gossip::errc::unknown_request))
      << gossip::render(answer.error());
  EXPECT_TRUE(mentions(answer.error(), "not served")) << gossip::render(answer.error());
  EXPECT_EQ(seed.stats().admissions_in, 0u);
}

TEST(transport_tls, the_joiners_request_builder_can_abort) {
  node seed{security_of(member_context(mesh(), "node-b")), "node-b", grant};
  auto answer = gossip::admission_exchange(
      seed.address(), *joiner_security(),
      [](const SSL*) -> caf::expected<std::string> {
        return identity::make_error(identity::errc::token_malformed, "no token");
      },
      2s);
  ASSERT_FALSE(answer);
  EXPECT_TRUE(identity::is(answer.error(), identity::errc::token_malformed));
  EXPECT_EQ(seed.stats().admissions_in, 0u);
}

TEST(transport_tls, admission_with_between_members) {
  node a{security_of(member_context(mesh(), "node-a")), "node-a"};
  node b{security_of(member_context(mesh(), "node-b")), "node-b", grant};
  auto answer = a.admission(b, "forwarded", "node-b");
  ASSERT_TRUE(answer) << gossip::render(answer.error());
  EXPECT_EQ(*answer, "granted forwarded to node-a");
  EXPECT_EQ(a.stats().admissions_out, 1u);
  EXPECT_TRUE(within_bound([&] { return b.stats().admissions_in == 1; }));
  // Not the member expected: the handshake refuses it.
  auto wrong = a.admission(b, "forwarded", "node-q");
  ASSERT_FALSE(wrong);
  EXPECT_TRUE(identity::is(wrong.error(), identity::errc::name_mismatch))
      << identity::render(wrong.error());
  EXPECT_EQ(a.stats().tls_refused, 1u);
  EXPECT_EQ(a.stats().admissions_out, 1u);
}

TEST(transport_tls, an_admission_refusal_arrives_with_its_code_and_reason) {
  node a{security_of(member_context(mesh(), "node-a")), "node-a"};
  node b{security_of(member_context(mesh(), "node-b")), "node-b",
         [](const std::string&, const std::optional<std::string>&) -> caf::expected<std::string> {
           return identity::make_error(identity::errc::token_exhausted, "token spent");
         }};
  auto answer = a.admission(b, "forwarded", "node-b");
  ASSERT_FALSE(answer);
  // The handler's own code (decision 0014): the caller decides on it, not on the text.
  EXPECT_TRUE(identity::is(answer.error(), identity::errc::token_exhausted))
      << gossip::render(answer.error());
  EXPECT_TRUE(mentions(answer.error(), "token spent")) << gossip::render(answer.error());
  EXPECT_EQ(a.stats().admissions_out, 0u);
  EXPECT_TRUE(within_bound([&] { return b.stats().admissions_in == 1; }));
  EXPECT_EQ(b.stats().push_pull_errors, 0u);
}

TEST(transport_tls, admission_needs_tls) {
  node p{nullptr, "node-p"};
  node b{security_of(member_context(mesh(), "node-b")), "node-b", grant};
  auto answer = p.admission(b, "forwarded", "node-b");
  ASSERT_FALSE(answer);
  EXPECT_TRUE(is_gossip(answer.error(), gossip::errc::invalid_field));
  EXPECT_TRUE(mentions(answer.error(), "admission needs TLS")) << gossip::render(answer.error());
}

TEST(transport_tls, a_joiner_refuses_a_seed_whose_chain_does_not_end_at_the_pinned_root) {
  node impostor{security_of(member_context(other_mesh(), "node-b")), "node-b", grant};
  auto answer =
      gossip::admission_exchange(impostor.address(), *joiner_security(), joiner_request, 2s);
  ASSERT_FALSE(answer);
  EXPECT_TRUE(identity::is(answer.error(), identity::errc::untrusted_chain))
      << identity::render(answer.error());
  EXPECT_TRUE(within_bound([&] { return impostor.stats().tls_refused == 1; }));
  EXPECT_EQ(impostor.stats().admissions_in, 0u);
}

TEST(transport_tls, admission_exchange_reports_a_closed_port) {
  std::uint16_t closed = 0;
  {
    asio::io_context io;
    asio::ip::tcp::acceptor acc{io, {asio::ip::make_address("127.0.0.1"), 0}};
    closed = acc.local_endpoint().port();
  }
  auto answer = gossip::admission_exchange("127.0.0.1:" + std::to_string(closed),
                                           *joiner_security(), joiner_request, 2s);
  ASSERT_FALSE(answer);
  EXPECT_TRUE(is_gossip(answer.error(), gossip::errc::io_failure) ||
              is_gossip(answer.error(), gossip::errc::timeout))
      << gossip::render(answer.error());
  auto bad = gossip::admission_exchange("no port", *joiner_security(), joiner_request, 2s);
  ASSERT_FALSE(bad);
  EXPECT_TRUE(is_gossip(bad.error(), gossip::errc::invalid_field));
}

// -- slowloris -------------------------------------------------------------------------------

TEST(transport_tls, connections_stuck_mid_handshake_do_not_lock_members_out) {
  // The server holds connections for 30 s; 70 raw ones never start their handshake. All
  // come from 127.0.0.1, as the member does: the per-source cap is lifted so that the
  // global bound is what is tested.
  node b{security_of(member_context(mesh(), "node-b")), "node-b", {}, 30s, 1, 100};
  node a{security_of(member_context(mesh(), "node-a")), "node-a"};
  asio::io_context io;
  std::vector<asio::ip::tcp::socket> stuck;
  for (int i = 0; i < 70; ++i) {
    stuck.emplace_back(io);
    asio::error_code ec;
    stuck.back().connect({asio::ip::make_address("127.0.0.1"), b.port()}, ec);
    ASSERT_FALSE(ec) << ec.message();
  }
  // 64 are held; each of the 6 beyond evicts the oldest one that has sent no request.
  ASSERT_TRUE(within_bound([&] { return b.stats().push_pull_errors == 6; }))
      << b.stats().push_pull_errors;
  auto ok = a.push_pull(b, state_of("node-a"));
  ASSERT_TRUE(ok) << gossip::render(ok.error());
  EXPECT_EQ(*ok, state_of("node-b"));
  EXPECT_TRUE(within_bound([&] { return b.stats().push_pulls_in == 1; }));
  EXPECT_EQ(b.stats().tls_refused, 0u);
}

} // namespace
} // namespace starling::actors
