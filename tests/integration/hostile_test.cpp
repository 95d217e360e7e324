// Hostile tests of the trust layer with real agents on 127.0.0.1 (port 0), issue 13. The
// attacker is test code that speaks the wire (the identity channel over TLS on the gossip
// port), holding what a real attacker would: one valid join token, then the node
// certificate it got with it, or a leaf that carries an issuer's name (what a joiner was
// given before names were checked). Each attack below succeeded against the code before
// the fix. Every wait polls with a deadline.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gossip/codec.hpp"
#include "gossip/errc.hpp"
#include "gossip/routing_codec.hpp"
#include "gossip/routing_gossip.hpp"
#include "gossip/transport.hpp"
#include "identity/admission.hpp"
#include "identity/authority.hpp"
#include "identity/channel.hpp"
#include "identity/errc.hpp"
#include "identity/keyring.hpp"
#include "identity/routing_keys.hpp"
#include "identity/sealer.hpp"
#include "identity/tls.hpp"
#include "identity/token.hpp"
#include "tests/support/context_security.hpp"
#include "tests/support/mesh_test.hpp"

namespace st = starling::testing;
namespace si = starling::identity;
namespace sg = starling::gossip;
using namespace std::chrono_literals;

namespace {

/// The attacker's TLS: one context (client role).
using attacker_tls = st::context_security;

/// The text of an error as the attacker reads it.
std::string text_of(const caf::error& err) {
  return err.category() == sg::errc_category ? sg::render(err) : si::render(err);
}

class hostile_test : public st::mesh_test {
protected:
  hostile_test() : mesh_test("starling-it-hostile") {}

  /// Asks `seed` for admission as `name` with `tokens`, as a joiner (pinned root, no
  /// certificate). The node credentials on success.
  caf::expected<si::node_credentials> join_as(const std::string& seed, const std::string& name,
                                              const std::vector<std::string>& tokens) {
    auto token = si::decode(tokens.front());
    if (!token)
      return token.error();
    si::tls_options opts;
    opts.pinned_root = token->pin;
    auto ctx = si::tls_context::make(std::move(opts));
    if (!ctx)
      return ctx.error();
    auto key = si::generate_key();
    if (!key)
      return key.error();
    attacker_tls tls{*ctx};
    auto answer = sg::admission_exchange(
        seed, tls,
        [&](const SSL* ssl) -> caf::expected<std::string> {
          const auto* peer = si::tls_context::peer_of(ssl);
          if (peer == nullptr || !peer->identity)
            return si::make_error(si::errc::no_certificate, "the seed is unverified");
          auto csr = si::make_csr(*key, peer->identity->mesh, name);
          if (!csr)
            return csr.error();
          return si::encode(si::admission_request{name, std::move(*csr), tokens, {}});
        },
        5s);
    if (!answer)
      return answer.error();
    auto grant = si::decode_admission_grant(*answer);
    if (!grant)
      return grant.error();
    return si::accept_grant(*grant, *key, name, token->pin, std::chrono::system_clock::now());
  }

  /// Sends `request` (an encoded IdentityRequest) to member `target` at `address` over mutual
  /// TLS as the holder of `creds`; the encoded answer.
  static caf::expected<std::string> send_as(const si::node_credentials& creds,
                                            const std::string& address, const std::string& target,
                                            const std::string& request) {
    si::tls_options opts;
    opts.key = creds.key;
    opts.certs = creds.certs;
    opts.trust = std::make_shared<si::trust_state>(creds.bundle);
    auto ctx = si::tls_context::make(std::move(opts));
    if (!ctx)
      return ctx.error();
    attacker_tls tls{*ctx};
    (void)target; // the server is checked against the bundle; any member name is accepted
    return sg::admission_exchange(
        address, tls, [&](const SSL*) -> caf::expected<std::string> { return request; }, 5s);
  }
};

TEST_F(hostile_test, one_token_buys_no_issuer_name_and_no_issuer_authority) {
  const auto ca = make_root("h.mesh", "ca");
  const auto dir_a = make_issuer(ca, "node-a");
  auto& a = start("node-a", {}, {"--issuer", dir_a.string(), "--gossip-key", key_});
  ASSERT_FALSE(HasFailure());
  auto& b = start("node-b", {a.info.gossip}, {"--token", token_of(a, "1")});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(20s, [&] { return all_alive(2); })) << "the mesh did not form";

  // Finding 1: one valid token, and the attacker asks for the issuer's name, then for a
  // live member's. Both refused before the token is spent: it still admits a fresh name.
  const auto token = token_of(a, "1");
  auto as_issuer = join_as(a.info.gossip, "node-a", {token});
  ASSERT_FALSE(as_issuer) << "admitted under the issuer's own name";
  EXPECT_NE(text_of(as_issuer.error()).find("name_taken"), std::string::npos)
      << text_of(as_issuer.error());
  auto as_member = join_as(a.info.gossip, "node-b", {token});
  ASSERT_FALSE(as_member) << "admitted under a live member's name";
  EXPECT_NE(text_of(as_member.error()).find("name_taken"), std::string::npos)
      << text_of(as_member.error());
  // Through a seed that is no issuer: it forwards, the issuer refuses.
  auto via_b = join_as(b.info.gossip, "node-a", {token});
  ASSERT_FALSE(via_b);
  EXPECT_NE(text_of(via_b.error()).find("name_taken"), std::string::npos) << text_of(via_b.error());
  auto mallory = join_as(a.info.gossip, "mallory", {token});
  ASSERT_TRUE(mallory) << text_of(mallory.error());
  auto view = certs_of(a);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->at("issuer").at("names_refused"), 3) << view->dump();

  // A leaf that names the issuer but certifies another key: what the hostile test got
  // before names were checked (made here with the issuer's offline material). It passes
  // the TLS handshake as "node-a"; it must not pass for the issuer anywhere.
  auto material = si::load_issuer(dir_a, std::chrono::system_clock::now());
  ASSERT_TRUE(material) << si::render(material.error());
  auto rogue_key = si::generate_key();
  ASSERT_TRUE(rogue_key);
  auto rogue = si::self_issue(*material, "node-a", *rogue_key, std::chrono::system_clock::now());
  ASSERT_TRUE(rogue) << si::render(rogue.error());
  // The issuer's certificate is public (every chain carries it): sign with the rogue key
  // under it.
  auto forged = *material;
  forged.key = *rogue_key;
  const auto now = std::chrono::system_clock::now();

  // Install and use its own gossip key on node-b: refused, counted, keyring unchanged.
  const auto keys_of = [](const st::agent_node& n) {
    auto ring = st::cli_json({"keyring", "list", "--admin", n.info.admin, "--json"});
    return ring ? ring->at("keys") : nlohmann::json{};
  };
  const auto keys_before = keys_of(b);
  ASSERT_EQ(keys_before.size(), 1u);
  const auto new_key = cli_line({"keyring", "generate"});
  auto seal = si::sign_keyring_change(forged, "install", new_key, "node-b", now);
  ASSERT_TRUE(seal);
  auto change = si::encode(si::keyring_change{"install", new_key, *seal});
  ASSERT_TRUE(change);
  auto answer = send_as(*rogue, b.info.gossip, "node-b", *change);
  ASSERT_TRUE(answer) << text_of(answer.error());
  // Refused with its code in the answer (IdentityResponse.refusal).
  auto applied = si::decode_keyring_answer(*answer);
  ASSERT_FALSE(applied) << "a rogue 'node-a' installed a gossip key on node-b";
  EXPECT_NE(text_of(applied.error()).find("bad_signature"), std::string::npos)
      << text_of(applied.error());
  auto b_view = certs_of(b);
  ASSERT_TRUE(b_view);
  EXPECT_EQ(b_view->at("sync").at("keyring_refused"), 1) << b_view->dump();
  EXPECT_EQ(keys_of(b), keys_before);

  // Plant a self-minted token in the issuer's ledger, then use it: refused, the token
  // unknown. The record claims node-a made it; the ledger is signed with the rogue key.
  si::join_token minted;
  minted.id = {0xba, 0xd0, 0x70, 0x4e, 0x11, 0x22, 0x33, 0x44};
  minted.secret.fill(0x5a);
  minted.expiry = std::chrono::floor<std::chrono::seconds>(now + 1h);
  minted.uses = 3;
  minted.pin = material->pin;
  minted.issuer = "node-a";
  auto minted_text = si::encode(minted);
  ASSERT_TRUE(minted_text);
  si::token_entry record;
  record.issuer = "node-a";
  ASSERT_EQ(EVP_Digest(minted.secret.data(), minted.secret.size(), record.secret_hash.data(),
                       nullptr, EVP_sha256(), nullptr),
            1);
  record.created = std::chrono::floor<std::chrono::seconds>(now);
  record.expiry = minted.expiry;
  record.uses = minted.uses;
  ASSERT_FALSE(si::seal_token_record(forged, minted.id, record)); // signed, by the wrong key
  si::token_ledger planted;
  planted.insert(minted.id, record);
  si::sync_message sync;
  sync.ledger = planted;
  auto ledger_seal = si::sign_ledger(forged, planted, {}, "node-a", now);
  ASSERT_TRUE(ledger_seal);
  sync.ledger_seal = *ledger_seal;
  auto sync_bytes = si::encode_sync_request(sync);
  ASSERT_TRUE(sync_bytes);
  ASSERT_TRUE(send_as(*rogue, a.info.gossip, "node-a", *sync_bytes)); // answered, not merged
  view = certs_of(a);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->at("sync").at("ledgers_refused"), 1) << view->dump();
  auto ghost = join_as(a.info.gossip, "ghost", {*minted_text});
  ASSERT_FALSE(ghost) << "a self-minted token admitted a node";
  EXPECT_NE(text_of(ghost.error()).find("token_unknown"), std::string::npos)
      << text_of(ghost.error());

  // The mesh is whole: the attacks changed nothing for its members.
  EXPECT_TRUE(st::poll_until(20s, [&] { return all_alive(2); }));
}

/// Sets an environment variable for a scope (the CLI runs as a child and inherits it).
class env_scope {
public:
  env_scope(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name))
      old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~env_scope() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  env_scope(const env_scope&) = delete;
  env_scope& operator=(const env_scope&) = delete;

private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST_F(hostile_test, a_local_user_without_the_credential_changes_nothing) {
  // Issue 13, finding 6: any local user could mint tokens, revoke nodes, change the
  // keyring and make a node leave through the admin port.
  const auto ca = make_root("h.mesh", "ca");
  const auto dir_a = make_issuer(ca, "node-a");
  auto& a = start("node-a", {}, {"--issuer", dir_a.string(), "--gossip-key", key_});
  ASSERT_FALSE(HasFailure());
  // Another user: the same port, but not the agent user's runtime dir (where the agent
  // left its credential) nor its data dir.
  st::temp_dir elsewhere{"starling-it-other-user"};
  {
    env_scope other{"STARLING_RUNTIME_DIR", elsewhere.path().string()};
    const std::vector<std::vector<std::string>> changes{
        {"token", "create", "--admin", a.info.admin},
        {"revoke", "node-b", "--admin", a.info.admin},
        {"keyring", "install", cli_line({"keyring", "generate"}), "--admin", a.info.admin},
        {"leave", "--admin", a.info.admin}};
    for (const auto& args : changes) {
      auto r = st::run_cli(args);
      EXPECT_EQ(r.exit_code, 1) << args.front() << ": " << r.out << r.err;
      EXPECT_NE(r.err.find("needs its admin credential"), std::string::npos) << r.err;
    }
    // Views stay open to local users (admin_open_reads, the default).
    auto members = st::cli_json({"members", "--admin", a.info.admin, "--json"});
    ASSERT_TRUE(members);
    EXPECT_EQ(members->at("members").size(), 1u);
    // Every refusal is counted where the operator sees it.
    auto stats = st::cli_json({"stats", "--admin", a.info.admin, "--json"});
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats->at("admin").at("auth_refused"), changes.size()) << stats->dump();
    // Given the credential file (what the agent's user hands another operator): served.
    auto r = st::run_cli({"token", "create", "--admin", a.info.admin, "--admin-cookie",
                          (data_dir("node-a") / "admin.cookie").string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("stl1."), std::string::npos) << r.out;
  }
  // The agent still runs, and its own user needs no flag.
  EXPECT_NE(token_of(a, "1").find("stl1."), std::string::npos);
}

/// The gossip keyring a node keeps in its data dir (what its owner can always read).
caf::expected<si::keyring> keyring_of(const std::filesystem::path& data_dir) {
  std::ifstream in{data_dir / "keyring"};
  std::stringstream text;
  text << in.rdbuf();
  return si::keyring::from_text(text.str());
}

/// Sends `bytes` in one UDP datagram to `address` ("127.0.0.1:PORT").
bool send_udp(const std::string& address, const std::string& bytes) {
  auto hp = sg::split_host_port(address);
  if (!hp)
    return false;
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(hp->second);
  ::inet_pton(AF_INET, hp->first.c_str(), &to.sin_addr);
  auto n =
      ::sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
  ::close(fd);
  return n == static_cast<ssize_t>(bytes.size());
}

/// A ping "from" `sender` carrying an alive update for `ghost`, tagged as an issuer.
std::string ghost_datagram(const std::string& sender, const std::string& sender_address,
                           const std::string& ghost) {
  sg::packet p;
  p.kind = sg::packet_kind::ping;
  p.seq = 4242;
  p.sender = sender;
  p.sender_address = sender_address;
  p.target = "node-a";
  sg::member_update u;
  u.name = ghost;
  u.address = "127.0.0.1:9";
  u.tags = {{"starling.issuer", "true"}};
  p.updates.push_back(u);
  return sg::encode_datagram(p);
}

TEST_F(hostile_test, a_revoked_node_loses_the_gossip_keyring) {
  // Issue 13, finding 5: a revoked node kept the keyring and went on injecting sealed
  // gossip (a ghost member tagged as an issuer appeared on the issuer).
  const auto ca = make_root("h.mesh", "ca");
  const auto dir_a = make_issuer(ca, "node-a");
  auto& a = start("node-a", {}, {"--issuer", dir_a.string(), "--gossip-key", key_});
  ASSERT_FALSE(HasFailure());
  auto& b = start("node-b", {a.info.gossip}, {"--token", token_of(a, "1")});
  start("node-c", {a.info.gossip}, {"--token", token_of(a, "1")});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(20s, [&] { return all_alive(3); })) << "the mesh did not form";
  // What node-c's owner keeps whatever happens: the keyring in its data dir.
  auto stolen = keyring_of(data_dir("node-c"));
  ASSERT_TRUE(stolen) << si::render(stolen.error());
  si::sealer attacker{*stolen, 0x5eed, 1};
  const auto seal_for_a = [&](const std::string& ghost) {
    auto wire = attacker.seal(ghost_datagram("node-b", b.info.gossip, ghost),
                              std::chrono::system_clock::now(), a.info.gossip);
    return wire ? *wire : std::string{};
  };
  const auto member_names = [&](const st::agent_node& n) {
    std::vector<std::string> out;
    if (auto view = st::members_view(n.info.admin))
      for (const auto& m : view->at("members"))
        out.push_back(m.at("name").get<std::string>());
    return out;
  };
  const auto has = [](const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  // With the keyring, anything goes, even under another member's name.
  ASSERT_TRUE(send_udp(a.info.gossip, seal_for_a("ghost-1")));
  ASSERT_TRUE(st::poll_until(10s, [&] { return has(member_names(a), "ghost-1"); }))
      << "the stolen keyring did not open at node-a: the test proves nothing";

  // Revoked: the issuer rotates the keyring on every other member.
  const auto old_primary = st::cli_json({"keyring", "list", "--admin", a.info.admin, "--json"});
  ASSERT_TRUE(old_primary);
  auto r = st::run_cli({"revoke", "node-c", "--admin", a.info.admin});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rotated = [&](const st::agent_node& n) {
    auto ring = st::cli_json({"keyring", "list", "--admin", n.info.admin, "--json"});
    return ring && ring->at("primary") != old_primary->at("primary") &&
           ring->at("keys").size() == 1;
  };
  ASSERT_TRUE(st::poll_until(30s, [&] { return rotated(a) && rotated(b); }))
      << "the keyring was not rotated after the revocation";
  auto view = certs_of(a);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->at("issuer").at("keyring_rotations"), 1);
  // The revoked node's keyring opens nothing any more.
  const auto refused_before = st::cli_json({"keyring", "list", "--admin", a.info.admin, "--json"})
                                  ->at("counters")
                                  .at("unknown_key")
                                  .get<std::uint64_t>();
  ASSERT_TRUE(send_udp(a.info.gossip, seal_for_a("ghost-2")));
  ASSERT_TRUE(st::poll_until(10s, [&] {
    auto ring = st::cli_json({"keyring", "list", "--admin", a.info.admin, "--json"});
    return ring && ring->at("counters").at("unknown_key").get<std::uint64_t>() > refused_before;
  })) << "the datagram sealed with the old key was not refused as unknown_key";
  EXPECT_FALSE(has(member_names(a), "ghost-2"));
  // The members still talk under the new key.
  EXPECT_TRUE(st::poll_until(10s, [&] {
    auto names = member_names(b);
    return has(names, "node-a") && has(names, "node-b");
  }));
}

TEST_F(hostile_test, a_name_another_issuer_certified_is_taken_while_its_node_is_down) {
  // Issue 13, finding 1: admission refuses a name with a certificate still valid for
  // another key "that the issuers know of" — here issuer-2 certified node-b, which is down
  // (so no live member holds the name), and the attacker holds a token of issuer-1.
  const auto ca = make_root("h.mesh", "ca");
  const auto dir1 = make_issuer(ca, "issuer-1");
  const auto dir2 = make_issuer(ca, "issuer-2");
  auto& i1 = start("issuer-1", {}, {"--issuer", dir1.string(), "--gossip-key", key_});
  ASSERT_FALSE(HasFailure());
  auto& i2 = start("issuer-2", {i1.info.gossip}, {"--issuer", dir2.string(), "--gossip-key", key_});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(20s, [&] { return all_alive(2); }));
  start("node-b", {i2.info.gossip}, {"--token", token_of(i2, "1")});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(20s, [&] { return all_alive(3); }));
  ASSERT_TRUE(stop("node-b", SIGKILL).has_value());
  // issuer-1 learns issuer-2's issued list with its ledger (a sync between issuers), and
  // node-b is no longer live anywhere.
  const auto merged_before = certs_of(i1)->at("sync").at("ledgers_merged").get<int>();
  ASSERT_TRUE(st::poll_until(30s, [&] {
    auto v = certs_of(i1);
    return v && v->at("sync").at("ledgers_merged").get<int>() > merged_before;
  })) << "issuer-1 merged no ledger of issuer-2";
  ASSERT_TRUE(st::poll_until(30s, [&] {
    auto view = st::members_view(i1.info.admin);
    if (!view)
      return false;
    for (const auto& m : view->at("members"))
      if (m.at("name") == "node-b")
        return m.at("state") == "dead";
    return false;
  })) << "node-b was not declared dead";
  auto taken = join_as(i1.info.gossip, "node-b", {token_of(i1, "1")});
  ASSERT_FALSE(taken) << "admitted under a name issuer-2 certified for another key";
  EXPECT_NE(text_of(taken.error()).find("name_taken"), std::string::npos) << text_of(taken.error());
}

/// A seal of `bytes` with `key` under `context` (what a node's agent would sign).
sg::routing_seal routing_seal_of(const si::private_key& key, std::string_view context,
                                 const std::string& bytes) {
  auto sig = si::sign_routing(key, context,
                              {reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()});
  EXPECT_TRUE(sig) << si::render(sig.error());
  if (!sig)
    return {};
  return {std::string(sig->key_id.begin(), sig->key_id.end()),
          std::string(sig->signature.begin(), sig->signature.end())};
}

TEST_F(hostile_test, a_member_turned_hostile_cannot_reroute_the_mesh) {
  // Issue 16: the owner of node-c (a member, not an issuer) holds its node key and the
  // gossip keyring, and injects routing records signed with that valid key: node-b's
  // instances pointed elsewhere, a split written in its own name, and one in the issuer's
  // name. Every node refuses all three, counts them, and keeps routing as before.
  const auto ca = make_root("h.mesh", "ca");
  auto& a =
      start("node-a", {}, {"--issuer", make_issuer(ca, "node-a").string(), "--gossip-key", key_});
  ASSERT_FALSE(HasFailure());
  auto& b = start("node-b", {a.info.gossip}, {"--token", token_of(a, "1")});
  auto& c = start("node-c", {a.info.gossip}, {"--token", token_of(a, "1")});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(20s, [&] { return all_alive(3); })) << "the mesh did not form";
  auto reg = st::run_cli(
      {"register", "--name", "web", "--port", "18080", "--version", "v1", "--admin", b.info.admin});
  ASSERT_EQ(reg.exit_code, 0) << reg.err;
  const auto web_address = [](const st::agent_node& n) {
    auto view = st::cli_json({"services", "--json", "--admin", n.info.admin});
    if (view)
      for (const auto& svc : view->at("services"))
        if (svc.at("name") == "web" && svc.at("instances").size() == 1)
          return svc.at("instances")[0].at("address").get<std::string>() + ":" +
                 std::to_string(svc.at("instances")[0].at("port").get<int>());
    return std::string{};
  };
  ASSERT_TRUE(st::poll_until(20s, [&] { return web_address(a) == "127.0.0.1:18080"; }));

  // What node-c's owner holds: its key and the keyring.
  auto creds = si::load_node_credentials(data_dir("node-c"));
  ASSERT_TRUE(creds && *creds) << "node-c's credentials";
  auto stolen = keyring_of(data_dir("node-c"));
  ASSERT_TRUE(stolen) << si::render(stolen.error());
  si::sealer attacker{*stolen, 0x5eed, 1};
  const auto now_ms =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());

  sg::owner_record reroute;
  reroute.owner = "node-b";
  reroute.version = 1000;
  reroute.stamp = {now_ms, 0};
  sg::service_registration evil;
  evil.service = "web";
  evil.id = "web";
  evil.address = "10.6.6.6";
  evil.port = 6666;
  evil.version = "v1";
  reroute.instances.push_back(evil);
  reroute.seal =
      routing_seal_of((*creds)->key, si::routing_owner_context, sg::canonical_bytes(reroute));

  sg::policy_record own_split;
  own_split.key = {sg::policy_kind::split, "web", ""};
  own_split.stamp = {now_ms, 0};
  own_split.writer = "node-c";
  own_split.value = std::vector<sg::split_weight>{{"v1", 100}};
  own_split.seal =
      routing_seal_of((*creds)->key, si::routing_policy_context, sg::canonical_bytes(own_split));
  auto as_issuer = own_split;
  as_issuer.writer = "node-a";
  as_issuer.stamp.logical = 1;
  as_issuer.seal =
      routing_seal_of((*creds)->key, si::routing_policy_context, sg::canonical_bytes(as_issuer));

  const auto datagram_to = [&](const st::agent_node& target) {
    sg::packet p;
    p.kind = sg::packet_kind::ping;
    p.seq = 4343;
    p.sender = "node-c";
    p.sender_address = c.info.gossip;
    p.target = target.name;
    sg::routing_payload first;
    first.owners.push_back(reroute);
    sg::routing_payload second;
    second.policies.push_back(own_split);
    sg::routing_payload third;
    third.policies.push_back(as_issuer);
    for (const auto* payload : {&first, &second, &third})
      p.extensions.push_back({sg::routing_extension_kind, sg::encode_routing(*payload)});
    auto wire =
        attacker.seal(sg::encode_datagram(p), std::chrono::system_clock::now(), target.info.gossip);
    return wire ? *wire : std::string{};
  };
  const auto refused = [](const st::agent_node& n, const char* what) -> std::uint64_t {
    auto stats = st::cli_json({"stats", "--json", "--admin", n.info.admin});
    return stats ? stats->at("routing").at(what).get<std::uint64_t>() : 0;
  };
  for (const auto* target : {&a, &b}) {
    SCOPED_TRACE(target->name);
    // Sent until counted: a datagram may be lost, and the first may wait for node-c's chain.
    EXPECT_TRUE(st::poll_until(20s,
                               [&] {
                                 send_udp(target->info.gossip, datagram_to(*target));
                                 return refused(*target, "refused_not_owner") >= 1 &&
                                        refused(*target, "refused_not_authorized") >= 2;
                               }))
        << "not refused: not_owner " << refused(*target, "refused_not_owner") << ", not_authorized "
        << refused(*target, "refused_not_authorized");
  }
  // Nothing changed anywhere, and every node keeps running.
  for (const auto* n : {&a, &b, &c}) {
    EXPECT_EQ(web_address(*n), "127.0.0.1:18080") << n->name;
    auto routes = st::cli_json({"routes", "--json", "--admin", n->info.admin});
    ASSERT_TRUE(routes) << n->name;
    for (const auto& r : routes->at("routes"))
      EXPECT_TRUE(r.at("split").is_null()) << n->name << ": " << r.dump();
  }
  EXPECT_TRUE(st::poll_until(20s, [&] { return all_alive(3); }));
}

} // namespace
