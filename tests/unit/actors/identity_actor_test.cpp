// The identity actor's side of the identity channel under CAF's deterministic test
// coordinator, with a recording supervisor and the run-time test PKI: sync requests
// (statements verified, applied to handshakes, bans; the own key; ledgers only from
// authenticated issuers; anonymous clients refused), the periodic exchange, and
// `revoke` (signed, pushed, withheld from handshakes until the revoked node was told), and
// the forwarding fallback through the shell (an unreachable issuer vs. its refusal).
// Virtual time only: nothing here sleeps.
#define CAF_TEST_NO_MAIN
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/test/unit_test_impl.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/admission_msgs.hpp"
#include "actors/atoms.hpp"
#include "actors/directory.hpp"
#include "actors/errc.hpp"
#include "actors/identity_actor.hpp"
#include "actors/keyring_sealer.hpp"
#include "gossip/errc.hpp"
#include "identity/authority.hpp"
#include "identity/channel.hpp"
#include "identity/errc.hpp"
#include "identity/keyring.hpp"
#include "tests/support/caf_test.hpp"
#include "tests/support/process.hpp"
#include "tests/support/seeded_random.hpp"
#include "tests/support/test_pki.hpp"

namespace sa = starling::actors;
namespace si = starling::identity;
namespace st = starling::testing;
using namespace std::chrono_literals;
using st::must;

namespace {

/// What the identity actor sent its supervisor.
struct supervisor_log {
  std::vector<std::string> bans;
  std::vector<std::string> failed;
  std::vector<sa::forward_admission_msg> forwards;
  /// What (alive_atom) answers: names, and which of them are issuers.
  std::vector<std::string> alive;
  std::vector<std::string> issuers;
};

caf::behavior fake_supervisor(caf::event_based_actor*, std::shared_ptr<supervisor_log> log) {
  return {
      [log](sa::ban_atom, const std::string& name) { log->bans.push_back(name); },
      [log](sa::failed_atom, const std::string& msg) { log->failed.push_back(msg); },
      [log](sa::forward_admission_msg& msg) { log->forwards.push_back(std::move(msg)); },
      [log](sa::live_atom) { return caf::make_message(log->alive, log->issuers); },
      [log](sa::alive_atom) {
        std::vector<std::string> addresses(log->alive.size(), "10.0.0.9:7946");
        return caf::make_message(log->alive, std::move(addresses), log->issuers);
      },
  };
}

/// A refusal as the transport relays it from a peer.
caf::error gossip_refusal(const std::string& reason) {
  return starling::gossip::make_error(starling::gossip::errc::peer_refused, reason);
}

si::sha256_digest key_of(const si::certificate& cert) {
  return must(si::spki_sha256(cert), "spki");
}

class identity_actor_test : public ::testing::Test,
                            public test_coordinator_fixture<caf::actor_system_config> {
protected:
  identity_actor_test() {
    spdlog::set_level(spdlog::level::off);
    supervisor_ = sys.spawn(fake_supervisor, log_);
    // The fake answers for the supervisor and the membership actor alike.
    roles_->bind(sa::role::supervisor, supervisor_);
    roles_->bind(sa::role::membership, supervisor_);
  }

  ~identity_actor_test() override {
    if (actor_)
      self->send_exit(actor_, caf::exit_reason::kill);
    self->send_exit(supervisor_, caf::exit_reason::kill);
    sched.run();
    spdlog::set_level(spdlog::level::info);
  }

  si::issuer_material material(const si::credentials& issuer, const std::string& name) const {
    return {issuer.key, issuer.cert, pki.bundle(), pki.mesh(), name, key_of(pki.root().cert)};
  }

  /// The identity of node `name`: an issuer's own node certificate if `issuer` is set.
  std::shared_ptr<sa::node_identity> identity_of(const std::string& name,
                                                 const si::credentials* issuer = nullptr) {
    std::optional<si::issuer_material> own;
    std::optional<si::node_credentials> creds;
    if (issuer != nullptr) {
      own = material(*issuer, name);
      creds = must(si::self_issue(*own, name, own->key, now), "self_issue"); // its issuer key
    } else {
      auto node = pki.node(name, pki.issuer(), now);
      creds = si::node_credentials{node.key, node.chain, pki.bundle()};
    }
    auto trust = std::make_shared<si::trust_state>(pki.bundle());
    auto tls =
        std::make_shared<si::tls_context_holder>(must(sa::make_node_tls(*creds, trust), "TLS"));
    return std::make_shared<sa::node_identity>(sa::node_identity{
        std::move(*creds), std::move(own), std::move(trust), std::move(tls), "test"});
  }

  /// Starts the identity actor of `id` (sync every `interval`; zero: none), on the fake
  /// clock `clock_`, checking for renewal every 30 s of virtual time.
  void start(std::shared_ptr<sa::node_identity> id, caf::timespan interval = caf::timespan{0}) {
    id_ = id;
    sa::identity_params p;
    p.name =
        id->issuer ? id->issuer->node : must(si::spiffe_id_of(id->creds.certs.front()), "id").name;
    p.id = std::move(id);
    p.tokens_file = dir_.path() / "tokens";
    p.issued_file = dir_.path() / "issued";
    p.revocations_file = dir_.path() / "revocations";
    p.sync_interval = interval;
    p.rng_seed = 7;
    p.data_dir = dir_.path() / "data";
    p.cert_ttl = cert_ttl_;
    p.clock = [clock = clock_] { return *clock; };
    p.sealer = sealer_;
    actor_ = sa::spawn_identity_actor(sys, roles_, std::move(p));
    sched.run();
  }

  /// Sends `request` on the identity channel from `peer`; returns the answer, or the
  /// refusal it carries as an error.
  caf::expected<std::string> ask_channel(std::string request, std::optional<std::string> peer) {
    auto answer = std::make_shared<std::optional<caf::expected<std::string>>>();
    self->send(actor_, sa::admission_msg{
                           std::move(request), std::move(peer),
                           [answer](caf::expected<std::string> a) { *answer = std::move(a); }});
    sched.run();
    if (!*answer)
      return caf::make_error(caf::sec::request_timeout, "no answer");
    if (**answer)
      if (auto refusal = si::decode_refusal(***answer))
        return *refusal;
    return std::move(**answer);
  }

  /// A sync from `peer` carrying `msg`; returns the decoded answer.
  caf::expected<si::sync_message> sync_from(const std::string& peer, const si::sync_message& msg) {
    auto answer = ask_channel(must(si::encode_sync_request(msg), "encode"), peer);
    if (!answer)
      return answer.error();
    return si::decode_sync_response(*answer);
  }

  /// Asks the actor for `what`; the string answer or the error's text.
  template <class... Ts> std::string ask(Ts... what) {
    std::string out;
    auto rh = self->request(actor_, caf::infinite, what...);
    sched.run();
    rh.receive([&](std::string& s) { out = std::move(s); },
               [&](caf::error& err) { out = "error: " + caf::to_string(err); });
    return out;
  }

  nlohmann::json certs() { return nlohmann::json::parse(ask(sa::certs_atom::value)); }

  si::revocation revoke(const si::credentials& by, const std::string& by_name,
                        const si::sha256_digest& key, const std::string& node) {
    return must(si::make_revocation(material(by, by_name), key, node, now), "statement");
  }

  /// Whole seconds, as certificates store them.
  st::test_pki pki{std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now())};
  si::time_point now = pki.now();
  st::temp_dir dir_{"starling-identity-actor"};
  std::shared_ptr<supervisor_log> log_ = std::make_shared<supervisor_log>();
  caf::actor supervisor_;
  std::shared_ptr<sa::directory> roles_ = std::make_shared<sa::directory>();
  /// The gossip keyring start() hands the actor (null: none).
  std::shared_ptr<sa::keyring_sealer> sealer_;
  caf::actor actor_;
  std::shared_ptr<sa::node_identity> id_;
  /// The identity actor's clock (certificates are checked and signed against it).
  std::shared_ptr<si::time_point> clock_ = std::make_shared<si::time_point>(now);
  /// What the actor signs with as an issuer.
  std::chrono::seconds cert_ttl_ = 2h;
};

TEST_F(identity_actor_test, a_client_without_a_certificate_may_only_ask_for_admission) {
  start(identity_of("node-1"));
  auto answer = ask_channel(must(si::encode_sync_request({}), "encode"), std::nullopt);
  ASSERT_FALSE(answer);
  EXPECT_NE(si::render(answer.error()).find("may only ask for admission"), std::string::npos)
      << si::render(answer.error());
  // Anything larger than an admission request is refused before it is parsed.
  answer = ask_channel(std::string(si::max_admission_bytes + 1, 'x'), std::nullopt);
  ASSERT_FALSE(answer);
  EXPECT_NE(si::render(answer.error()).find("exceeds"), std::string::npos);
}

TEST_F(identity_actor_test, statements_are_verified_then_enforced_and_banned) {
  start(identity_of("node-1"));
  const auto key3 = key_of(pki.node("node-3").leaf());
  si::sync_message msg;
  msg.revocations.push_back(revoke(pki.issuer(), "issuer-1", key3, "node-3"));
  auto forged = revoke(pki.issuer(), "issuer-1", key_of(pki.node("node-4").leaf()), "node-4");
  forged.signature[3] ^= 1;
  msg.revocations.push_back(forged);
  auto answer = must(sync_from("node-2", msg), "sync");
  // The answer carries what this node holds now: the good statement only, and no ledger.
  ASSERT_EQ(answer.revocations.size(), 1u);
  EXPECT_EQ(answer.revocations[0], msg.revocations[0]);
  EXPECT_FALSE(answer.ledger);
  EXPECT_TRUE(id_->trust->current()->revoked.contains(key3));
  EXPECT_EQ(log_->bans, (std::vector<std::string>{"node-3"}));
  EXPECT_TRUE(log_->failed.empty());
  auto view = certs();
  ASSERT_EQ(view.at("revocations").size(), 1u) << view.dump();
  EXPECT_EQ(view.at("revocations")[0].at("node"), "node-3");
  EXPECT_EQ(view.at("revocations")[0].at("key"), si::format_pin(key3));
  EXPECT_EQ(view.at("revocations")[0].at("issuer"), "issuer-1");
  EXPECT_EQ(view.at("sync").at("statements_learned"), 1);
  EXPECT_EQ(view.at("sync").at("statements_refused"), 1);
  // Persisted; a statement already held is neither verified nor applied again.
  auto stored = must(si::revocation_log::load(dir_.path() / "revocations"), "load");
  EXPECT_EQ(stored.size(), 1u);
  ASSERT_TRUE(sync_from("node-2", msg));
  EXPECT_EQ(log_->bans.size(), 1u);
  EXPECT_EQ(certs().at("sync").at("statements_refused"), 2);
}

TEST_F(identity_actor_test, a_revocation_of_the_own_key_stops_the_node) {
  auto id = identity_of("node-1");
  const auto own = key_of(id->creds.certs.front());
  start(id);
  si::sync_message msg;
  msg.revocations.push_back(revoke(pki.issuer(), "issuer-1", own, "node-1"));
  ASSERT_TRUE(sync_from("node-2", msg));
  ASSERT_EQ(log_->failed.size(), 1u);
  EXPECT_NE(log_->failed[0].find("revoked by issuer 'issuer-1'"), std::string::npos)
      << log_->failed[0];
  EXPECT_TRUE(log_->bans.empty()) << "a node does not ban itself";
  // Restarted with the persisted log: it stops at once.
  self->send_exit(actor_, caf::exit_reason::kill);
  sched.run();
  log_->failed.clear();
  start(id);
  EXPECT_EQ(log_->failed.size(), 1u);
}

TEST_F(identity_actor_test, ledgers_are_merged_only_from_authenticated_issuers) {
  start(identity_of("issuer-1", &pki.issuer()));
  const auto second = pki.make_issuer("issuer-2", now - 1h);
  auto store = must(si::token_store::make("issuer-2"), "store");
  st::seeded_random rng{3};
  must(store.create(std::chrono::floor<std::chrono::seconds>(now), 1h, 1, rng,
                    key_of(pki.root().cert)),
       "token");
  // Records count only with their creator's seal; the ledger only with the sender's.
  const auto material2 = material(second, "issuer-2");
  for (const auto& [id, entry] : store.ledger().entries()) {
    auto sealed = entry;
    ASSERT_FALSE(si::seal_token_record(material2, id, sealed));
    store.seal(id, sealed.seal_issuer, sealed.seal_signature);
  }
  si::sync_message msg;
  msg.ledger = store.ledger();
  // Issue 13, finding 1: a member named like issuer-2 that sends issuer-2's (public)
  // certificate, signing with its own key: refused, and nothing of ours goes back.
  auto rogue = pki.node("issuer-2", pki.issuer(), now);
  auto forged = material2;
  forged.key = rogue.key;
  msg.ledger_seal = must(si::sign_ledger(forged, *msg.ledger, {}, "issuer-1", now), "seal");
  auto answer = must(sync_from("issuer-2", msg), "sync");
  EXPECT_FALSE(answer.ledger);
  auto view = certs();
  EXPECT_EQ(view.at("sync").at("ledgers_refused"), 1);
  EXPECT_EQ(view.at("issuer").at("known_tokens"), 0);
  // Signed by issuer-2 for another receiver: refused too.
  msg.ledger_seal = must(si::sign_ledger(material2, *msg.ledger, {}, "issuer-3", now), "seal");
  EXPECT_FALSE(must(sync_from("issuer-2", msg), "sync").ledger);
  EXPECT_EQ(certs().at("sync").at("ledgers_refused"), 2);
  // Signed by issuer-2 for us: merged, and our ledger comes back signed for issuer-2.
  msg.ledger_seal = must(si::sign_ledger(material2, *msg.ledger, {}, "issuer-1", now), "seal");
  answer = must(sync_from("issuer-2", msg), "sync");
  ASSERT_TRUE(answer.ledger);
  EXPECT_EQ(answer.ledger->entries().size(), 1u);
  EXPECT_TRUE(si::verify_ledger(*answer.ledger, answer.issued, answer.ledger_seal, "issuer-2",
                                pki.bundle(), now));
  view = certs();
  EXPECT_EQ(view.at("sync").at("ledgers_merged"), 1);
  EXPECT_EQ(view.at("issuer").at("known_tokens"), 1);
  // A statement revoking issuer-2's key is refused from now on: it is a known CA key.
  si::sync_message bad;
  bad.revocations.push_back(revoke(pki.issuer(), "issuer-1", key_of(second.cert), "issuer-2"));
  ASSERT_TRUE(sync_from("node-2", bad));
  EXPECT_EQ(certs().at("sync").at("statements_refused"), 1);
}

TEST_F(identity_actor_test, every_interval_it_syncs_with_an_alive_member) {
  start(identity_of("node-1"), 2s);
  log_->alive = {"node-2"};
  advance_time(2s);
  sched.run();
  ASSERT_EQ(log_->forwards.size(), 1u);
  auto& fwd = log_->forwards[0];
  EXPECT_EQ(fwd.issuer, "node-2");
  auto req = must(si::decode_identity_request(fwd.request), "request");
  ASSERT_TRUE(std::holds_alternative<si::sync_message>(req));
  EXPECT_FALSE(std::get<si::sync_message>(req).ledger) << "no ledger from a non-issuer";
  // The peer answers with a statement: learned.
  si::sync_message back;
  const auto key3 = key_of(pki.node("node-3").leaf());
  back.revocations.push_back(revoke(pki.issuer(), "issuer-1", key3, "node-3"));
  fwd.done(must(si::encode_sync_response(back), "encode"));
  sched.run();
  EXPECT_TRUE(id_->trust->current()->revoked.contains(key3));
  EXPECT_EQ(log_->bans, (std::vector<std::string>{"node-3"}));
  EXPECT_EQ(certs().at("sync").at("exchanges"), 1);
  // The next interval, the next exchange (a failed one is counted).
  advance_time(2s);
  sched.run();
  ASSERT_EQ(log_->forwards.size(), 2u);
  log_->forwards[1].done(caf::make_error(caf::sec::request_timeout, "unreachable"));
  sched.run();
  EXPECT_EQ(certs().at("sync").at("failures"), 1);
}

TEST_F(identity_actor_test, revoke_signs_pushes_and_withholds_until_the_node_was_told) {
  start(identity_of("issuer-1", &pki.issuer()));
  log_->alive = {"node-2", "node-3"};
  const auto key3 = key_of(pki.node("node-3").leaf());
  // Nothing issued to node-3 here: a key is needed.
  auto answer = ask(sa::revoke_atom::value, std::string{"node-3"}, std::string{});
  EXPECT_NE(answer.find("has not issued a certificate to node-3"), std::string::npos) << answer;
  answer = ask(sa::revoke_atom::value, std::string{"issuer-1"}, std::string{});
  EXPECT_NE(answer.find("itself"), std::string::npos) << answer;
  answer = ask(sa::revoke_atom::value, std::string{"node-3"}, si::format_pin(key3));
  EXPECT_EQ(answer, "revoked " + si::format_pin(key3) + " (node node-3)\n");
  // Pushed to both members at once; node-3 is still let in until it heard of it.
  ASSERT_EQ(log_->forwards.size(), 2u);
  EXPECT_FALSE(id_->trust->current()->revoked.contains(key3));
  EXPECT_TRUE(log_->bans.empty());
  for (auto& fwd : log_->forwards) {
    auto req = must(si::decode_identity_request(fwd.request), "push");
    ASSERT_EQ(std::get<si::sync_message>(req).revocations.size(), 1u);
  }
  auto& to3 = log_->forwards[0].issuer == "node-3" ? log_->forwards[0] : log_->forwards[1];
  to3.done(caf::make_error(caf::sec::request_timeout, "node-3 went away"));
  sched.run();
  EXPECT_TRUE(id_->trust->current()->revoked.contains(key3));
  EXPECT_EQ(log_->bans, (std::vector<std::string>{"node-3"}));
  EXPECT_EQ(certs().at("revocations").size(), 1u);
}

TEST_F(identity_actor_test, a_revocation_rotates_the_gossip_keyring_on_the_other_members) {
  // Issue 13, finding 5: a revoked node kept the keyring and went on injecting gossip.
  const auto first = must(si::generate_gossip_key(), "key");
  sealer_ = must(sa::keyring_sealer::make(si::keyring{first}, {}), "sealer");
  const auto old_id = sealer_->view().primary;
  start(identity_of("issuer-1", &pki.issuer()));
  log_->alive = {"node-2", "node-3"};
  const auto key3 = key_of(pki.node("node-3").leaf());
  ASSERT_EQ(ask(sa::revoke_atom::value, std::string{"node-3"}, si::format_pin(key3)),
            "revoked " + si::format_pin(key3) + " (node node-3)\n");
  // Each step goes to node-2 only (never to the revoked node), signed for it; the next
  // step starts once node-2 answered.
  std::vector<std::string> steps;
  std::size_t seen = 0;
  for (int round = 0; round < 3; ++round) {
    sched.run();
    std::optional<std::size_t> step;
    std::string id;
    for (; seen < log_->forwards.size(); ++seen) {
      auto req = must(si::decode_identity_request(log_->forwards[seen].request), "request");
      if (auto* change = std::get_if<si::keyring_change>(&req)) {
        EXPECT_EQ(log_->forwards[seen].issuer, "node-2");
        EXPECT_TRUE(si::verify_keyring_change(change->op, change->key, change->seal, "node-2",
                                              pki.bundle(), now));
        steps.push_back(change->op);
        step = seen;
        id = si::to_hex(must(si::keyring::resolve(change->key), "id"));
      }
    }
    ASSERT_TRUE(step) << "no keyring step " << round;
    log_->forwards[*step].done(si::encode_keyring_answer(id));
  }
  sched.run();
  EXPECT_EQ(steps, (std::vector<std::string>{"install", "use", "remove"}));
  const auto ring = sealer_->view();
  EXPECT_NE(ring.primary, old_id);
  EXPECT_EQ(ring.ids, (std::vector<std::string>{ring.primary})) << "the old key is gone";
  EXPECT_EQ(certs().at("issuer").at("keyring_rotations"), 1);
}

TEST_F(identity_actor_test, a_forwarded_admission_is_redeemed_here_when_the_tokens_issuer_is_gone) {
  start(identity_of("issuer-1", &pki.issuer()));
  log_->alive = {"issuer-1"};
  log_->issuers = {"issuer-1"};
  // issuer-2 made a token; issuer-1 learned its record from issuer-2's signed ledger.
  const auto second = pki.make_issuer("issuer-2", now - 1h);
  const auto material2 = material(second, "issuer-2");
  auto store = must(si::token_store::make("issuer-2"), "store");
  st::seeded_random rng{5};
  std::vector<std::string> tokens;
  for (int i = 0; i < 2; ++i)
    tokens.push_back(
        must(si::encode(must(store.create(std::chrono::floor<std::chrono::seconds>(now), 1h, 1, rng,
                                          key_of(pki.root().cert)),
                             "token")),
             "encode"));
  for (const auto& [id, entry] : store.ledger().entries()) {
    auto sealed = entry;
    ASSERT_FALSE(si::seal_token_record(material2, id, sealed));
    store.seal(id, sealed.seal_issuer, sealed.seal_signature);
  }
  si::sync_message msg;
  msg.ledger = store.ledger();
  msg.ledger_seal = must(si::sign_ledger(material2, *msg.ledger, {}, "issuer-1", now), "seal");
  ASSERT_TRUE(sync_from("issuer-2", msg));
  ASSERT_EQ(certs().at("issuer").at("known_tokens"), 2);
  auto key = must(si::generate_key(), "key");
  auto request = [&](const std::string& name, const std::string& token) {
    return must(si::encode(si::admission_request{
                    name, must(si::make_csr(key, pki.mesh(), name), "CSR"), {token}}),
                "encode");
  };
  // A joiner asks issuer-1 with issuer-2's token: forwarded to issuer-2 first.
  auto answer = std::make_shared<std::optional<caf::expected<std::string>>>();
  auto ask = [&](const std::string& name, const std::string& token) {
    answer->reset();
    self->send(actor_, sa::admission_msg{
                           request(name, token), std::nullopt,
                           [answer](caf::expected<std::string> a) { *answer = std::move(a); }});
    sched.run();
  };
  ask("node-7", tokens[0]);
  ASSERT_EQ(log_->forwards.size(), 1u);
  EXPECT_EQ(log_->forwards[0].issuer, "issuer-2");
  EXPECT_FALSE(*answer) << "waits for issuer-2";
  // issuer-2 is not an alive member: issuer-1 redeems the token itself.
  log_->forwards[0].done(sa::make_error(sa::errc::unreachable, "issuer-2 is not alive"));
  sched.run();
  ASSERT_TRUE(*answer);
  ASSERT_TRUE(**answer) << caf::to_string((*answer)->error());
  auto grant = must(si::decode_admission_grant(***answer), "grant");
  EXPECT_EQ(grant.issuer, "issuer-1");
  EXPECT_EQ(certs().at("issuer").at("admitted"), 1);
  // A refusal by a reachable issuer-2 is passed on as it came, with its code: no
  // redemption here, and the joiner knows that asking again will not help.
  ask("node-8", tokens[1]);
  ASSERT_EQ(log_->forwards.size(), 2u);
  log_->forwards[1].done(
      si::encode_refusal(si::make_error(si::errc::token_expired, "token 1f expired")));
  sched.run();
  ASSERT_TRUE(*answer);
  ASSERT_TRUE(**answer) << "a refusal is an answer of the identity channel";
  auto refused = si::decode_admission_grant(***answer);
  ASSERT_FALSE(refused);
  EXPECT_TRUE(si::is(refused.error(), si::errc::token_expired)) << si::render(refused.error());
  EXPECT_EQ(si::render(refused.error()), "identity.token_expired: token 1f expired");
  EXPECT_TRUE(si::is_final_admission_refusal(refused.error()));
  EXPECT_EQ(certs().at("issuer").at("admitted"), 1);
  // A refusal from a node of the version before (the transport's error frame, text only)
  // is passed on with its text; by code it is only the transport's refusal, worth a retry.
  ask("node-9", tokens[1]);
  ASSERT_EQ(log_->forwards.size(), 3u);
  log_->forwards[2].done(gossip_refusal("identity.token_expired: too late"));
  sched.run();
  ASSERT_TRUE(*answer);
  ASSERT_TRUE(**answer);
  refused = si::decode_admission_grant(***answer);
  ASSERT_FALSE(refused);
  EXPECT_EQ(si::render(refused.error()), "gossip.peer_refused: identity.token_expired: too late");
  EXPECT_FALSE(si::is_final_admission_refusal(refused.error()));
  EXPECT_EQ(certs().at("issuer").at("admitted"), 1);
}

// -- renewal -------------------------------------------------------------------------------------

/// Seconds from the fake clock to the notAfter the certs view shows.
long expires_in(const nlohmann::json& view) {
  return view.at("certificate").at("expires_in_seconds").get<long>();
}

class renewal_test : public identity_actor_test {
protected:
  /// The notAfter of the certificate new handshakes present.
  si::time_point presented_until() const {
    return must(si::not_after(id_->tls->current()->leaf()), "notAfter");
  }

  /// Moves the fake clock to `at` and lets one renewal check run.
  void tick_at(si::time_point at) {
    *clock_ = at;
    advance_time(30s);
    sched.run();
  }

  /// What issuer-1's desk answers to the renewal request of `fwd`.
  std::string grant_for(const sa::forward_admission_msg& fwd) {
    auto desk = must(si::issuer_desk::open(material(pki.issuer(), "issuer-1"),
                                           dir_.path() / "desk" / "tokens",
                                           dir_.path() / "desk" / "issued"),
                     "desk");
    auto req = must(si::decode_identity_request(fwd.request), "request");
    auto grant = must(desk.renew(std::get<si::renewal_request>(req), "node-1", *clock_), "renew");
    return must(si::encode(grant), "encode");
  }
};

TEST_F(renewal_test, a_node_renews_at_two_thirds_of_its_life_through_an_alive_issuer) {
  start(identity_of("node-1"));
  const auto key = key_of(id_->creds.certs.front());
  const auto first_until = presented_until();
  log_->alive = {"issuer-1", "node-2"};
  log_->issuers = {"issuer-1"};
  // Not before 2/3 of its 24 h.
  tick_at(now + 16h - 1min);
  EXPECT_TRUE(log_->forwards.empty());
  tick_at(now + 16h);
  ASSERT_EQ(log_->forwards.size(), 1u);
  auto& fwd = log_->forwards[0];
  EXPECT_EQ(fwd.issuer, "issuer-1");
  auto req = must(si::decode_identity_request(fwd.request), "request");
  ASSERT_TRUE(std::holds_alternative<si::renewal_request>(req));
  EXPECT_EQ(std::get<si::renewal_request>(req).name, "node-1");
  // While the request is under way, no second one.
  advance_time(30s);
  sched.run();
  EXPECT_EQ(log_->forwards.size(), 1u);
  fwd.done(grant_for(fwd));
  sched.run();
  // The new certificate: same key, 24 h from the renewal; presented by new handshakes,
  // shown by the certs view, stored.
  EXPECT_EQ(presented_until(), *clock_ + si::node_validity);
  EXPECT_GT(presented_until(), first_until);
  auto view = certs();
  EXPECT_EQ(expires_in(view), 24 * 3600) << view.dump();
  EXPECT_EQ(view.at("certificate").at("spki_sha256"), si::to_hex(key));
  EXPECT_EQ(view.at("source"), "renewed by issuer-1");
  auto stored = must(si::load_node_credentials(dir_.path() / "data"), "stored");
  ASSERT_TRUE(stored);
  EXPECT_EQ(must(si::not_after(stored->certs.front()), "stored notAfter"), presented_until());
  // Not due again.
  tick_at(*clock_ + 1h);
  EXPECT_EQ(log_->forwards.size(), 1u);
  // A restarted actor goes on with the renewed certificate.
  self->send_exit(actor_, caf::exit_reason::kill);
  sched.run();
  start(id_);
  EXPECT_EQ(expires_in(certs()), 23 * 3600);
}

TEST_F(renewal_test, a_refusal_keeps_the_old_certificate_and_the_next_issuer_is_asked) {
  start(identity_of("node-1"));
  const auto first_until = presented_until();
  // No issuer alive: nothing to ask, retried at the next check.
  log_->alive = {"node-2"};
  tick_at(now + 17h);
  EXPECT_TRUE(log_->forwards.empty());
  log_->alive = {"issuer-1", "issuer-2"};
  log_->issuers = {"issuer-1", "issuer-2"};
  tick_at(now + 17h + 30s);
  ASSERT_EQ(log_->forwards.size(), 1u);
  log_->forwards[0].done(gossip_refusal("identity.revoked: no"));
  sched.run();
  ASSERT_EQ(log_->forwards.size(), 2u) << "the other issuer is asked";
  EXPECT_NE(log_->forwards[0].issuer, log_->forwards[1].issuer);
  // A grant that certifies another key is refused too.
  auto other = pki.node("node-1", pki.issuer(), *clock_);
  log_->forwards[1].done(
      must(si::encode(si::renewal_grant{other.chain, log_->forwards[1].issuer}), "grant"));
  sched.run();
  EXPECT_EQ(presented_until(), first_until);
  EXPECT_EQ(expires_in(certs()), 7 * 3600 - 30);
  EXPECT_FALSE(must(si::load_node_credentials(dir_.path() / "data"), "stored"));
  // Retried at the next check.
  tick_at(*clock_ + 30s);
  EXPECT_EQ(log_->forwards.size(), 3u);
}

TEST_F(renewal_test, an_issuer_renews_its_own_certificate) {
  cert_ttl_ = 2h;
  start(identity_of("issuer-1", &pki.issuer()));
  tick_at(now + 16h);
  EXPECT_TRUE(log_->forwards.empty()) << "an issuer asks nobody";
  EXPECT_EQ(presented_until(), now + 16h + 2h);
  auto view = certs();
  EXPECT_EQ(expires_in(view), 2 * 3600);
  EXPECT_EQ(view.at("source"), "renewed by issuer-1 (self-issued)");
  // Due again at 2/3 of the 2 h.
  tick_at(now + 16h + 80min - 1s);
  EXPECT_EQ(presented_until(), now + 16h + 2h);
  tick_at(now + 16h + 80min);
  EXPECT_EQ(presented_until(), now + 16h + 80min + 2h);
}

TEST_F(renewal_test, an_issuer_renews_authenticated_members_only_for_their_own_key) {
  start(identity_of("issuer-1", &pki.issuer()));
  auto node = pki.node("node-2", pki.issuer(), now - 20h);
  auto request = [&](const std::string& name) {
    return must(si::encode(si::renewal_request{
                    name, must(si::make_csr(node.key, pki.mesh(), name), "CSR"), node.chain}),
                "encode");
  };
  auto answer = ask_channel(request("node-2"), std::nullopt);
  ASSERT_FALSE(answer);
  EXPECT_NE(si::render(answer.error()).find("may only ask for admission"), std::string::npos);
  answer = ask_channel(request("node-2"), std::string{"node-3"});
  ASSERT_FALSE(answer);
  EXPECT_NE(si::render(answer.error()).find("name_mismatch"), std::string::npos)
      << si::render(answer.error());
  answer = ask_channel(request("node-2"), std::string{"node-2"});
  ASSERT_TRUE(answer) << caf::to_string(answer.error());
  auto grant = must(si::decode_renewal_grant(*answer), "grant");
  EXPECT_EQ(grant.issuer, "issuer-1");
  EXPECT_EQ(must(si::not_after(grant.certs.front()), "notAfter"), now + cert_ttl_);
  auto creds = must(si::accept_renewal(grant, {node.key, node.chain, pki.bundle()}, "node-2", now),
                    "accept");
  EXPECT_EQ(key_of(creds.certs.front()), key_of(node.leaf()));
  EXPECT_EQ(certs().at("issuer").at("refused"), 1) << "the name mismatch";
}

} // namespace
