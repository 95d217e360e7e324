#include "actors/node_identity.hpp"

#include <algorithm>
#include <random>
#include <thread>
#include <utility>

#include <spdlog/spdlog.h>

#include "actors/config.hpp"
#include "actors/errc.hpp"
#include "actors/keyring_sealer.hpp"
#include "actors/tls_security.hpp"
#include "gossip/transport.hpp"
#include "identity/channel.hpp"
#include "identity/errc.hpp"
#include "identity/keyring.hpp"
#include "identity/renewal.hpp"
#include "proto/wire/backoff.hpp"

namespace starling::actors {

namespace {

using identity::time_point;

caf::error failed(std::string what) { return make_error(errc::io_failure, std::move(what)); }

/// Checks stored credentials for this node at `now`: the chain verifies against the stored
/// bundle, names `name`, and is vouched for by `quorum` issuers.
caf::expected<identity::peer_identity> check_stored(const identity::node_credentials& creds,
                                                    const std::string& name, time_point now,
                                                    std::size_t quorum) {
  auto id = identity::verify_peer(creds.certs, creds.bundle, {}, now, name);
  if (!id)
    return id;
  if (auto vouchers =
          identity::check_quorum(creds.certs.front(), *id, creds.bundle, {}, now, quorum);
      !vouchers)
    return vouchers.error();
  return id;
}

/// An issuer node's own credentials: a node certificate for its issuer key (what makes a
/// peer that issuer is the key the root certified, never the name: identity::
/// is_issuer_own_leaf). Stored ones are kept while they certify that key, verify and are
/// not due for renewal.
caf::expected<identity::node_credentials>
issue_for_self(const identity::issuer_material& issuer, const std::string& name,
               const std::optional<identity::node_credentials>& stored, time_point now,
               std::chrono::seconds validity) {
  auto own = identity::spki_sha256(issuer.key);
  if (!own)
    return own.error();
  std::optional<identity::sha256_digest> kept;
  if (stored)
    if (auto key = identity::spki_sha256(stored->key))
      kept = *key;
  if (stored && !stored->certs.empty() && stored->bundle.mesh() == issuer.mesh && kept &&
      *kept == *own && check_stored(*stored, name, now, 1) &&
      !needs_renewal(stored->certs.front(), now))
    return *stored;
  return identity::self_issue(issuer, name, issuer.key, now, validity);
}

/// Stores the keyring an issuer granted, unless the node already keeps one.
caf::error store_granted_keyring(const agent_config& cfg, const std::string& text) {
  if (text.empty())
    return {};
  auto ring = identity::keyring::from_text(text);
  if (!ring)
    return failed("the issuer sent a keyring that does not parse: " + message_of(ring.error()));
  const auto file = keyring_path(cfg.data_dir);
  auto existing = read_keyring_file(file);
  if (existing && *existing) {
    spdlog::info("keeping the gossip keyring already in {}", file.string());
    return {};
  }
  return write_keyring_file(file, *ring);
}

/// Case 3: admission through the seeds, retried with backoff until join_timeout.
caf::expected<identity::node_credentials> admit(const agent_config& cfg, time_point now) {
  // The first token's pin is every token's (config checks it); its issuer signs.
  auto token = identity::decode(cfg.tokens.front());
  if (!token)
    return failed("--token: " + message_of(token.error()));
  auto key = identity::generate_key();
  if (!key)
    return key.error();
  std::string which;
  for (const auto& text : cfg.tokens)
    if (auto t = identity::decode(text))
      which += (which.empty() ? "" : ", ") + t->id_hex() + " (issuer " + t->issuer + ")";
  spdlog::info("no node certificate yet: asking for admission with token{} {}",
               cfg.tokens.size() > 1 ? "s" : "", which);
  const auto deadline = std::chrono::steady_clock::now() + cfg.join_timeout;
  std::minstd_rand rng{std::random_device{}()};
  wire::backoff backoff{{std::chrono::milliseconds{200}, std::chrono::milliseconds{5000}, 0.5}};
  std::string last;
  for (unsigned round = 0;; ++round) {
    bool refused_everywhere = true;
    for (const auto& seed : cfg.join) {
      auto creds = request_admission(seed, cfg.name, cfg.tokens, *token, *key, cfg.tcp_timeout, now,
                                     cfg.admission_quorum);
      if (creds) {
        spdlog::info("admitted by issuer {} through seed {}", creds->issuer, seed);
        if (auto err = store_granted_keyring(cfg, creds->keyring))
          return err;
        return std::move(creds->creds);
      }
      last = seed + ": " + message_of(creds.error());
      spdlog::warn("admission through {} failed: {}", seed, message_of(creds.error()));
      // A refusal by the mesh (bad token, too few endorsements) will not change by
      // retrying; an unreachable seed or an issuer that is not reachable yet may. Decided on
      // the refusal's code (IdentityResponse.refusal), never on its text.
      const bool refusal = identity::is_final_admission_refusal(creds.error());
      if (!refusal)
        refused_everywhere = false;
    }
    if (refused_everywhere)
      return failed("admission refused: " + last);
    auto now_steady = std::chrono::steady_clock::now();
    if (now_steady >= deadline)
      return failed("no seed admitted this node within " + format_duration(cfg.join_timeout) +
                    "; last error: " + last);
    auto pause =
        std::min(backoff.next_with(rng),
                 std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now_steady));
    std::this_thread::sleep_for(pause);
    now = std::chrono::system_clock::now();
  }
}

} // namespace

caf::expected<admission_outcome> request_admission(const std::string& seed, const std::string& name,
                                                   const std::vector<std::string>& tokens,
                                                   const identity::join_token& token,
                                                   const identity::private_key& key,
                                                   std::chrono::milliseconds timeout,
                                                   time_point now, std::size_t quorum) {
  identity::tls_options opts;
  opts.pinned_root = token.pin;
  auto ctx = identity::tls_context::make(std::move(opts));
  if (!ctx)
    return ctx.error();
  tls_security security{std::make_shared<identity::tls_context_holder>(*ctx)};
  auto build = [&](const SSL* ssl) -> caf::expected<std::string> {
    const auto* peer = identity::tls_context::peer_of(ssl);
    if (peer == nullptr || !peer->identity)
      return make_error(errc::io_failure, "the seed presented no verified identity");
    auto csr = identity::make_csr(key, peer->identity->mesh, name);
    if (!csr)
      return csr.error();
    return identity::encode(identity::admission_request{name, std::move(*csr), tokens, {}});
  };
  auto answer = gossip::admission_exchange(seed, security, build, timeout);
  if (!answer)
    return answer.error();
  auto grant = identity::decode_admission_grant(*answer);
  if (!grant)
    return grant.error();
  auto creds = identity::accept_grant(*grant, key, name, token.pin, now, quorum);
  if (!creds)
    return creds.error();
  return admission_outcome{std::move(*creds), std::move(grant->keyring), std::move(grant->issuer)};
}

// The renewal policy lives with the renewal core (identity/renewal.hpp).
bool needs_renewal(const identity::certificate& leaf, time_point now) {
  return identity::renewal_due(leaf, now);
}

std::chrono::nanoseconds renewal_check_period(const identity::certificate& leaf,
                                              std::chrono::nanoseconds every) {
  return identity::renewal_check_period(leaf, every);
}

caf::error install_renewed(node_identity& id, identity::node_credentials creds,
                           const std::filesystem::path& data_dir) {
  auto ctx = make_node_tls(creds, id.trust);
  if (!ctx)
    return ctx.error();
  if (!data_dir.empty())
    if (auto err = identity::store_node_credentials(data_dir, creds))
      return err;
  if (id.tls)
    id.tls->replace(std::move(*ctx));
  id.creds = std::move(creds);
  return {};
}

caf::expected<std::shared_ptr<const identity::tls_context>>
make_node_tls(const identity::node_credentials& creds,
              const std::shared_ptr<identity::trust_state>& trust) {
  identity::tls_options opts;
  opts.key = creds.key;
  opts.certs = creds.certs;
  // The roots too: a joiner checks our chain against its token's pin, and it has no bundle
  // yet (peers that have one ignore a root in the presented chain).
  for (const auto& root : creds.bundle.roots())
    opts.certs.push_back(root);
  opts.trust = trust;
  opts.accept_anonymous_clients = true;
  return identity::tls_context::make(std::move(opts));
}

caf::expected<std::optional<node_identity>> prepare_node_identity(const agent_config& cfg,
                                                                  time_point now) {
  auto stored = identity::load_node_credentials(cfg.data_dir);
  if (!stored)
    return failed("node credentials in " + cfg.data_dir.string() + ": " +
                  message_of(stored.error()));
  std::optional<identity::node_credentials> creds;
  std::optional<identity::issuer_material> issuer;
  std::string source;
  if (!cfg.issuer_dir.empty()) {
    auto loaded = identity::load_issuer(cfg.issuer_dir, now);
    if (!loaded)
      return failed("issuer " + cfg.issuer_dir.string() + ": " + message_of(loaded.error()));
    if (loaded->node != cfg.name)
      return failed("issuer " + cfg.issuer_dir.string() + " is for node '" + loaded->node +
                    "', but this node is '" + cfg.name + "'");
    auto issued = issue_for_self(*loaded, cfg.name, *stored, now, cfg.cert_ttl);
    if (!issued)
      return failed("cannot issue this node's certificate: " + message_of(issued.error()));
    source = "self-issued by " + loaded->node;
    creds = std::move(*issued);
    issuer = std::move(*loaded);
  } else if (*stored && check_stored(**stored, cfg.name, now, cfg.admission_quorum)) {
    creds = std::move(**stored);
    source = "stored";
  } else if (!cfg.tokens.empty()) {
    if (*stored)
      spdlog::warn("stored node certificate is not usable ({}); asking for a new one",
                   message_of(check_stored(**stored, cfg.name, now, cfg.admission_quorum).error()));
    auto admitted = admit(cfg, now);
    if (!admitted)
      return admitted.error();
    creds = std::move(*admitted);
    source = "admitted";
  } else if (*stored) {
    return failed("the node certificate in " + cfg.data_dir.string() + " is not usable: " +
                  message_of(check_stored(**stored, cfg.name, now, cfg.admission_quorum).error()) +
                  "; start with --token to be admitted again");
  } else {
    return std::optional<node_identity>{};
  }
  if (source != "stored")
    if (auto err = identity::store_node_credentials(cfg.data_dir, *creds))
      return failed("cannot store node credentials: " + message_of(err));
  auto trust = std::make_shared<identity::trust_state>(creds->bundle, identity::revocation_set{},
                                                       cfg.admission_quorum);
  auto ctx = make_node_tls(*creds, trust);
  if (!ctx)
    return failed("cannot build the TLS context: " + message_of(ctx.error()));
  node_identity id{std::move(*creds), std::move(issuer), std::move(trust),
                   std::make_shared<identity::tls_context_holder>(*ctx), std::move(source)};
  return std::optional<node_identity>{std::move(id)};
}

} // namespace starling::actors
