// Admission (identity/admission.hpp): the issuer's material, a node's credential files, the
// joiner's check of a grant and the issuer's desk (tokens, signing, the issued list). The
// wire form of admission messages is in identity/channel.cpp.
#include "identity/admission.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <system_error>
#include <utility>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "identity/authority.hpp"
#include "identity/errc.hpp"
#include "identity/files.hpp"
#include "identity/statement.hpp"

namespace starling::identity {

namespace {

namespace fs = std::filesystem;

/// File names of an issuer directory (`starling ca issuer --out`).
constexpr std::string_view issuer_key_file = "issuer.key";
constexpr std::string_view issuer_cert_file = "issuer.crt";
constexpr std::string_view issuer_bundle_file = "bundle.crt";

/// Bound on the persisted token store: far above default_read_limit, because the ledger
/// grows with every token of every issuer until pruned, and an agent refuses to start
/// rather than forget spends.
constexpr std::size_t max_tokens_file_bytes = std::size_t{64} << 20;

/// Reads `file` and parses its text with `parse`. Errors: io_failure (read_file's), or
/// invalid_argument naming the file when `parse` refuses the text. The text is wiped
/// afterwards (it may be a private key).
template <class Parse>
auto load(const fs::path& file, Parse parse, std::size_t limit = default_read_limit)
    -> decltype(parse(std::string_view{})) {
  auto text = read_file(file, limit);
  if (!text)
    return text.error();
  auto value = parse(std::string_view{*text});
  OPENSSL_cleanse(text->data(), text->size());
  if (!value)
    return make_error(errc::invalid_argument, file.string() + ": " + render(value.error()));
  return value;
}

/// invalid_argument unless `key` is the private key of `cert`.
caf::error check_key_matches(const private_key& key, const certificate& cert,
                             const fs::path& key_file, const fs::path& cert_file) {
  if (X509_check_private_key(cert.native(), key.native()) != 1)
    return make_openssl_error(errc::invalid_argument, key_file.string() +
                                                          " is not the key of the certificate in " +
                                                          cert_file.string());
  return {};
}

/// Whether `file` exists. Errors: io_failure when that cannot be told (permissions).
caf::expected<bool> file_exists(const fs::path& file) {
  std::error_code ec;
  bool found = fs::exists(file, ec);
  if (ec)
    return make_error(errc::io_failure, "cannot stat " + file.string() + ": " + ec.message());
  return found;
}

/// SHA-256 of the SubjectPublicKeyInfo of `csr`'s key. Errors: bad_request (unreadable),
/// revoked (the key is in `revoked`).
caf::expected<sha256_digest> unrevoked_key_of(const certificate_request& csr,
                                              const revocation_set& revoked) {
  auto key = spki_sha256(private_key{share(X509_REQ_get0_pubkey(csr.native()))});
  if (!key)
    return bad_request("the CSR's key: " + render(key.error()));
  if (revoked.contains(*key))
    return make_error(errc::revoked, "the CSR's key " + format_pin(*key) + " is revoked");
  return key;
}

/// What a spend of a token records (token_spend::use): SHA-256 of the admitted key's SPKI
/// digest and the node name, so that the same node asking again (its grant was lost) is not
/// a second use, and the same key under another name is.
caf::expected<sha256_digest> spend_key(const sha256_digest& key, std::string_view node) {
  std::vector<std::uint8_t> in(key.begin(), key.end());
  in.insert(in.end(), node.begin(), node.end());
  return sha256_of(in);
}

/// Makes `next` the live token store once it is persisted; if `persist` fails, `live` stays
/// as it was, so that memory never holds a spend or a token the file lacks.
template <class Persist> caf::error commit(token_store& live, token_store next, Persist persist) {
  std::swap(live, next);
  if (auto err = persist()) {
    std::swap(live, next);
    return err;
  }
  return {};
}

} // namespace

// -- an issuer node's material ----------------------------------------------------------------

caf::expected<issuer_material> load_issuer(const fs::path& dir, time_point now) {
  const auto key_file = dir / issuer_key_file;
  const auto cert_file = dir / issuer_cert_file;
  const auto bundle_file = dir / issuer_bundle_file;
  auto key = load(key_file, private_key_from_pem);
  if (!key)
    return key.error();
  auto cert = load(cert_file, certificate_from_pem);
  if (!cert)
    return cert.error();
  auto bundle = load(bundle_file, trust_bundle::from_pem);
  if (!bundle)
    return bundle.error();
  if (auto err = check_key_matches(*key, *cert, key_file, cert_file))
    return err;
  if (X509_check_ca(cert->native()) == 0)
    return make_error(errc::invalid_argument,
                      cert_file.string() + " is not an issuer certificate (not a CA)");
  auto path = verify_path({*cert}, *bundle, now);
  if (!path) {
    const auto& err = path.error();
    if (is(err, errc::expired) || is(err, errc::not_yet_valid) || is(err, errc::crypto_failure))
      return make_error(static_cast<errc>(err.code()), cert_file.string() + ": " + render(err));
    return make_error(errc::invalid_argument, cert_file.string() + " is not signed by a root of " +
                                                  bundle_file.string() + " (" + render(err) + ")");
  }
  auto id = spiffe_id_of(*cert);
  if (!id || id->kind != spiffe_id::kind_t::node || id->mesh != bundle->mesh())
    return make_error(errc::invalid_argument,
                      cert_file.string() + " does not name a node of mesh " + bundle->mesh());
  auto pin = spki_sha256(path->back());
  if (!pin)
    return pin.error();
  std::string mesh = bundle->mesh();
  return issuer_material{std::move(*key), std::move(*cert),    std::move(*bundle),
                         std::move(mesh), std::move(id->name), *pin};
}

// -- a node's own credentials ----------------------------------------------------------------

caf::expected<std::optional<node_credentials>> load_node_credentials(const fs::path& data_dir) {
  const std::array<fs::path, 3> files{data_dir / node_key_file, data_dir / node_chain_file,
                                      data_dir / node_bundle_file};
  std::string missing;
  std::size_t absent = 0;
  for (const auto& file : files) {
    auto found = file_exists(file);
    if (!found)
      return found.error();
    if (!*found)
      missing += (absent++ == 0 ? "" : ", ") + file.filename().string();
  }
  if (absent == files.size())
    return std::optional<node_credentials>{}; // none stored
  if (absent > 0)
    return make_error(errc::invalid_argument, "incomplete node credentials in " +
                                                  data_dir.string() + ": missing " + missing);
  auto key = load(files[0], private_key_from_pem);
  if (!key)
    return key.error();
  auto certs = load(files[1], certificates_from_pem);
  if (!certs)
    return certs.error();
  auto bundle = load(files[2], trust_bundle::from_pem);
  if (!bundle)
    return bundle.error();
  if (certs->empty())
    return make_error(errc::invalid_argument, files[1].string() + " holds no certificate");
  if (auto err = check_key_matches(*key, certs->front(), files[0], files[1]))
    return err;
  return std::optional<node_credentials>{
      node_credentials{std::move(*key), std::move(*certs), std::move(*bundle)}};
}

caf::error store_node_credentials(const fs::path& data_dir, const node_credentials& creds) {
  if (!creds.key || creds.certs.empty())
    return make_error(errc::invalid_argument, "no key or no certificate to store");
  auto key_pem = to_pem(creds.key);
  if (!key_pem)
    return key_pem.error();
  auto chain_pem = to_pem(creds.certs);
  if (!chain_pem)
    return chain_pem.error();
  auto bundle_pem = creds.bundle.to_pem();
  if (!bundle_pem)
    return bundle_pem.error();
  if (auto err = create_private_directories(data_dir))
    return err;
  // Each file is replaced atomically, the set is not: a crash in between leaves a key and a
  // chain that do not match, which load_node_credentials refuses (the node rejoins).
  auto err = replace_file(data_dir / node_bundle_file, *bundle_pem, public_file_mode);
  if (!err)
    err = replace_file(data_dir / node_chain_file, *chain_pem, public_file_mode);
  if (!err)
    err = replace_file(data_dir / node_key_file, *key_pem, private_file_mode);
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  return err;
}

caf::expected<node_credentials> self_issue(const issuer_material& issuer, std::string_view node,
                                           const private_key& key, time_point now,
                                           std::chrono::seconds validity) {
  auto csr = make_csr(key, issuer.mesh, node);
  if (!csr)
    return csr.error();
  auto certs = sign_node(*csr, issuer.key, issuer.cert, {}, issuer.mesh, node, now, validity);
  if (!certs)
    return certs.error();
  return node_credentials{key, std::move(*certs), issuer.bundle};
}

// -- the joiner's check -----------------------------------------------------------------------

caf::expected<peer_identity> check_chain_for(const chain& certs, const trust_bundle& bundle,
                                             const revocation_set& revoked, time_point now,
                                             std::string_view name, const sha256_digest& key) {
  auto peer = verify_peer(certs, bundle, revoked, now, name);
  if (!peer)
    return peer.error();
  if (peer->spki_sha256 != key)
    return bad_request("the certificate for '" + std::string{name} + "' certifies another key (" +
                       format_pin(peer->spki_sha256) + ", not " + format_pin(key) + ")");
  return peer;
}

caf::expected<node_credentials> accept_grant(const admission_grant& grant, const private_key& key,
                                             std::string_view name, const sha256_digest& pin,
                                             time_point now, std::size_t quorum) {
  if (!grant.bundle.contains_pin(pin))
    return bad_request("the granted bundle does not hold the pinned root " + format_pin(pin));
  auto own = spki_sha256(key);
  if (!own)
    return own.error();
  auto peer = check_chain_for(grant.certs, grant.bundle, {}, now, name, *own);
  if (!peer)
    return peer.error();
  if (peer->root_pin != pin)
    return make_error(errc::untrusted_chain, "the granted chain ends at root " +
                                                 format_pin(peer->root_pin) +
                                                 ", not at the pinned " + format_pin(pin));
  auto vouchers = check_quorum(grant.certs.front(), *peer, grant.bundle, {}, now, quorum);
  if (!vouchers)
    return vouchers.error();
  return node_credentials{key, grant.certs, grant.bundle};
}

caf::expected<node_credentials> accept_renewal(const renewal_grant& grant,
                                               const node_credentials& current,
                                               std::string_view name, time_point now,
                                               const revocation_set& revoked, std::size_t quorum) {
  auto own = spki_sha256(current.key);
  if (!own)
    return own.error();
  auto peer = check_chain_for(grant.certs, current.bundle, revoked, now, name, *own);
  if (!peer)
    return peer.error();
  // A renewal that lost endorsements would be refused by every peer: keep the old one.
  auto vouchers = check_quorum(grant.certs.front(), *peer, current.bundle, revoked, now, quorum);
  if (!vouchers)
    return vouchers.error();
  return node_credentials{current.key, grant.certs, current.bundle};
}

// -- the issuer's side -----------------------------------------------------------------------

issuer_desk::issuer_desk(issuer_material issuer, fs::path tokens_file, fs::path issued_file,
                         token_store store, std::vector<issued_certificate> issued)
    : issuer_(std::move(issuer)), tokens_file_(std::move(tokens_file)),
      issued_file_(std::move(issued_file)), store_(std::move(store)), issued_(std::move(issued)) {}

caf::expected<issuer_desk> issuer_desk::open(issuer_material issuer, fs::path tokens_file,
                                             fs::path issued_file) {
  auto found = file_exists(tokens_file);
  if (!found)
    return found.error();
  auto restore = [&](std::string_view text) { return token_store::deserialize(text, issuer.node); };
  auto store =
      *found ? load(tokens_file, restore, max_tokens_file_bytes) : token_store::make(issuer.node);
  if (!store)
    return store.error();
  found = file_exists(issued_file);
  if (!found)
    return found.error();
  auto issued = *found ? load(issued_file, deserialize_issued, max_tokens_file_bytes)
                       : std::vector<issued_certificate>{};
  if (!issued)
    return issued.error();
  // Records of a version-1 store carry no seal: seal this issuer's own again (other
  // issuers' come back sealed with their next ledger).
  bool resealed = false;
  for (const auto& [id, entry] : store->ledger().entries()) {
    if (entry.issuer != issuer.node || !entry.seal_signature.empty())
      continue;
    auto copy = entry;
    if (auto err = seal_token_record(issuer, id, copy))
      return err;
    store->seal(id, std::move(copy.seal_issuer), std::move(copy.seal_signature));
    resealed = true;
  }
  issuer_desk desk{std::move(issuer), std::move(tokens_file), std::move(issued_file),
                   std::move(*store), std::move(*issued)};
  if (resealed)
    if (auto err = desk.persist())
      return err;
  return desk;
}

caf::expected<std::string> issuer_desk::create_token(time_point now, std::chrono::seconds ttl,
                                                     std::uint16_t uses, random_source& rng) {
  auto next = store_;
  auto token = next.create(unix_seconds(now), ttl, uses, rng, issuer_.pin);
  if (!token)
    return token.error();
  // Signed, so that other issuers accept the record only from this issuer's key.
  auto entry = *next.ledger().find(token->id);
  if (auto err = seal_token_record(issuer_, token->id, entry))
    return err;
  next.seal(token->id, std::move(entry.seal_issuer), std::move(entry.seal_signature));
  if (auto err = commit(store_, std::move(next), [this] { return persist(); }))
    return err;
  return encode(*token);
}

caf::error issuer_desk::check_name(std::string_view name, const sha256_digest& key, time_point now,
                                   const revocation_set& revoked,
                                   const name_holders& holders) const {
  const std::string who{name};
  if (name == issuer_.node || holders.issuers.contains(who))
    return make_error(errc::name_taken,
                      "node name '" + who + "' belongs to an issuer of the mesh: choose another");
  auto issued = keys_issued_to(name, now);
  for (const auto& [issuer, list] : known_issued_)
    for (const auto& c : list)
      if (c.node == name && c.not_after > unix_seconds(now) &&
          std::find(issued.begin(), issued.end(), c.key) == issued.end())
        issued.push_back(c.key);
  std::erase_if(issued, [&](const auto& k) { return revoked.contains(k); });
  const bool same_key = std::find(issued.begin(), issued.end(), key) != issued.end();
  if (holders.live.contains(who) && !same_key)
    return make_error(errc::name_taken,
                      "node name '" + who +
                          "' is held by a live member (alive or suspect) with another key: "
                          "choose another name, or stop that node first");
  std::erase(issued, key);
  if (!issued.empty())
    return make_error(errc::name_taken,
                      "node name '" + who + "' has a certificate for another key (" +
                          format_pin(issued.front()) +
                          ") that is still valid: revoke it first (starling revoke " + who +
                          ") or wait until it expires");
  return {};
}

caf::expected<admission_grant> issuer_desk::admit(const admission_request& req, time_point now,
                                                  const revocation_set& revoked,
                                                  std::chrono::seconds validity, std::size_t quorum,
                                                  const name_holders& holders) {
  if (req.tokens.empty())
    return bad_request("an admission request without a join token");
  if (!req.csr)
    return bad_request("an admission request without a CSR");
  // A revoked key is refused before the token is looked at: it must not burn a use.
  auto asked = unrevoked_key_of(req.csr, revoked);
  if (!asked)
    return asked.error();
  // So is a name someone else holds (issue 13, finding 1).
  if (auto err = check_name(req.name, *asked, now, revoked, holders))
    return err;
  // So is a request without its quorum: endorsements that do not pass are dropped, this
  // issuer counts once (its own endorsement, if sent, is replaced by a fresh one).
  std::vector<std::string> vouchers{issuer_.node};
  std::vector<endorsement> endorsed;
  for (auto& v : vouching_endorsements(req.endorsements, *asked, req.name, issuer_.bundle, revoked,
                                       now, issuer_.node)) {
    vouchers.push_back(std::move(v.issuer.node));
    endorsed.push_back(std::move(v.statement));
  }
  if (auto err = check_vouchers(req.name, vouchers, quorum))
    return err;
  auto extra = endorsements_extension(std::move(endorsed), *asked, req.name, now);
  if (!extra)
    return extra.error();
  // Redeemed on a copy: a CSR refused below must not burn the token. The certificate is
  // signed in memory and goes out only once the spend is on disk.
  auto next = store_;
  auto use = spend_key(*asked, req.name);
  if (!use)
    return use.error();
  auto spend = next.redeem(req.tokens.front(), unix_seconds(now), issuer_.pin, *use);
  if (!spend)
    return spend.error();
  // The issued list first: a record of a certificate that never went out (the spend fails to
  // persist below) is harmless; a certificate out without a record could not be revoked by
  // name.
  auto certs = sign_and_record(req.csr, req.name, *asked, now, validity, *extra);
  if (!certs)
    return certs.error();
  if (auto err = commit(store_, std::move(next), [this] { return persist(); }))
    return err;
  return admission_grant{std::move(*certs), issuer_.bundle, {}, issuer_.node};
}

caf::expected<endorsement> issuer_desk::endorse(const endorse_request& req, time_point now,
                                                const revocation_set& revoked,
                                                std::chrono::seconds validity,
                                                const name_holders& holders) {
  if (auto err = check_csr(req.csr, issuer_.mesh, req.name))
    return err;
  auto asked = unrevoked_key_of(req.csr, revoked);
  if (!asked)
    return asked.error();
  if (auto err = check_name(req.name, *asked, now, revoked, holders))
    return err;
  auto endorsed = make_endorsement(issuer_, *asked, req.name, now);
  if (!endorsed)
    return endorsed.error();
  auto issuer_end = not_after(issuer_.cert);
  if (!issuer_end)
    return issuer_end.error();
  // As for admit: redeemed on a copy, recorded (revocable by name here), then the spend is
  // persisted before the endorsement goes out.
  auto next = store_;
  auto use = spend_key(*asked, req.name);
  if (!use)
    return use.error();
  auto spend = next.redeem(req.token, unix_seconds(now), issuer_.pin, *use);
  if (!spend)
    return spend.error();
  if (auto err = record_issued(req.name, *asked, std::min(now + validity, *issuer_end), now))
    return err;
  if (auto err = commit(store_, std::move(next), [this] { return persist(); }))
    return err;
  return endorsed;
}

caf::expected<renewal_grant> issuer_desk::renew(const renewal_request& req, std::string_view peer,
                                                time_point now, const revocation_set& revoked,
                                                std::chrono::seconds validity, std::size_t quorum) {
  if (req.name != peer)
    return make_error(errc::name_mismatch, "member '" + std::string{peer} +
                                               "' asked to renew the certificate of '" + req.name +
                                               "'");
  if (!req.csr || req.current.empty())
    return bad_request("a renewal request without a CSR or without the current chain");
  auto asked = unrevoked_key_of(req.csr, revoked);
  if (!asked)
    return asked.error();
  // The key must be one the mesh certified for this node, in a certificate still valid:
  // a renewal never changes the key (revocation is keyed by it).
  const auto& leaf = req.current.front();
  auto current = check_chain_for(req.current, issuer_.bundle, revoked, now, req.name, *asked);
  if (!current)
    return current.error();
  auto vouchers = check_quorum(leaf, *current, issuer_.bundle, revoked, now, quorum);
  if (!vouchers)
    return vouchers.error();
  // The endorsements endorse the key, which the new certificate keeps.
  auto carried = endorsements_of(leaf);
  if (!carried)
    return carried.error();
  std::vector<raw_extension> extra;
  if (!carried->empty()) {
    auto value = encode_endorsement_extension(*carried);
    if (!value)
      return value.error();
    extra.push_back({std::string{endorsements_oid}, std::move(*value)});
  }
  auto certs = sign_and_record(req.csr, req.name, *asked, now, validity, extra);
  if (!certs)
    return certs.error();
  return renewal_grant{std::move(*certs), issuer_.node};
}

caf::expected<std::vector<raw_extension>>
issuer_desk::endorsements_extension(std::vector<endorsement> endorsed, const sha256_digest& key,
                                    const std::string& node, time_point now) const {
  if (endorsed.empty())
    return std::vector<raw_extension>{};
  auto own = make_endorsement(issuer_, key, node, now);
  if (!own)
    return own.error();
  if (endorsed.size() >= max_admission_quorum)
    endorsed.resize(max_admission_quorum - 1);
  endorsed.push_back(std::move(*own));
  auto value = encode_endorsement_extension(endorsed);
  if (!value)
    return value.error();
  return std::vector<raw_extension>{{std::string{endorsements_oid}, std::move(*value)}};
}

caf::expected<chain> issuer_desk::sign_and_record(const certificate_request& csr,
                                                  const std::string& node, const sha256_digest& key,
                                                  time_point now, std::chrono::seconds validity,
                                                  const std::vector<raw_extension>& extra) {
  auto certs =
      sign_node(csr, issuer_.key, issuer_.cert, {}, issuer_.mesh, node, now, validity, extra);
  if (!certs)
    return certs.error();
  auto until = not_after(certs->front());
  if (!until)
    return until.error();
  if (auto err = record_issued(node, key, *until, now))
    return err;
  return certs;
}

caf::error issuer_desk::record_issued(const std::string& node, const sha256_digest& key,
                                      time_point until, time_point now) {
  auto issued = issued_;
  std::erase_if(issued, [&](const auto& c) { return c.not_after <= unix_seconds(now); });
  issued.push_back({node, key, unix_seconds(until)});
  if (auto err = create_private_directories(issued_file_.parent_path()))
    return err;
  if (auto err = replace_file(issued_file_, serialize_issued(issued), private_file_mode))
    return err;
  issued_ = std::move(issued);
  return {};
}

void issuer_desk::learn_issued(const std::string& issuer, std::vector<issued_certificate> list,
                               time_point now) {
  if (issuer == issuer_.node)
    return;
  std::erase_if(list, [&](const auto& c) { return c.not_after <= unix_seconds(now); });
  if (list.size() > max_shared_issued)
    list.resize(max_shared_issued);
  known_issued_[issuer] = std::move(list);
}

std::vector<std::uint8_t> issued_bytes(const std::vector<issued_certificate>& issued) {
  std::vector<std::uint8_t> out;
  auto put = [&](std::uint64_t x, int size) {
    for (int i = size - 1; i >= 0; --i)
      out.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
  };
  put(issued.size(), 8);
  for (const auto& c : issued) {
    put(c.node.size(), 1);
    out.insert(out.end(), c.node.begin(), c.node.end());
    out.insert(out.end(), c.key.begin(), c.key.end());
    put(static_cast<std::uint64_t>(c.not_after.time_since_epoch().count()), 8);
  }
  return out;
}

std::vector<sha256_digest> issuer_desk::keys_issued_to(std::string_view node,
                                                       time_point now) const {
  std::vector<sha256_digest> out;
  for (const auto& c : issued_)
    if (c.node == node && c.not_after > unix_seconds(now) &&
        std::find(out.begin(), out.end(), c.key) == out.end())
      out.push_back(c.key);
  return out;
}

caf::expected<std::size_t> issuer_desk::merge_ledger(const token_ledger& remote, time_point now) {
  token_ledger sealed;
  std::size_t dropped = 0;
  for (const auto& [id, theirs] : remote.entries()) {
    const auto* mine = store_.ledger().find(id);
    // Known with this very seal: checked when it came first (spends need no seal).
    const bool known = mine != nullptr && mine->same_record(theirs) &&
                       mine->seal_signature == theirs.seal_signature &&
                       mine->seal_issuer == theirs.seal_issuer;
    if (!known && !verify_token_record(id, theirs, issuer_.bundle, now)) {
      ++dropped;
      continue;
    }
    sealed.insert(id, theirs);
  }
  auto next = store_;
  next.merge_spent(sealed, unix_seconds(now));
  if (auto err = commit(store_, std::move(next), [this] { return persist(); }))
    return err;
  return dropped;
}

caf::error issuer_desk::persist() const {
  if (auto err = create_private_directories(tokens_file_.parent_path()))
    return err;
  return replace_file(tokens_file_, store_.serialize(), private_file_mode);
}

// -- the issued list's text form ------------------------------------------------------------

namespace {

constexpr std::string_view issued_header = "starling-issued 1";

caf::error bad_issued_line(std::size_t line_no, std::string_view reason) {
  return bad_record_line("issued list", line_no, reason);
}

/// One "issued <node> <key hex64> <not_after>" line.
caf::expected<issued_certificate> parse_issued_line(std::string_view line, std::size_t line_no) {
  std::vector<std::string_view> f;
  for (std::size_t pos = 0; pos <= line.size();) {
    auto sp = std::min(line.find(' ', pos), line.size());
    f.push_back(line.substr(pos, sp - pos));
    pos = sp + 1;
  }
  if (f.size() != 4 || f[0] != "issued")
    return bad_issued_line(line_no, "expected 'issued <node> <key> <not_after>'");
  issued_certificate c;
  c.node = std::string{f[1]};
  if (!is_valid_node_name(c.node))
    return bad_issued_line(line_no, "bad node name");
  auto key = parse_pin("sha256:" + std::string{f[2]});
  if (!key || to_hex(*key) != f[2])
    return bad_issued_line(line_no, "bad key");
  c.key = *key;
  std::int64_t secs = 0;
  auto [ptr, ec] = std::from_chars(f[3].data(), f[3].data() + f[3].size(), secs);
  if (f[3].empty() || ec != std::errc{} || ptr != f[3].data() + f[3].size() || secs < 0)
    return bad_issued_line(line_no, "bad not_after");
  c.not_after = unix_time{std::chrono::seconds{secs}};
  return c;
}

} // namespace

std::string serialize_issued(const std::vector<issued_certificate>& issued) {
  std::string out{issued_header};
  out += '\n';
  for (const auto& c : issued)
    out += "issued " + c.node + ' ' + to_hex(c.key) + ' ' +
           std::to_string(c.not_after.time_since_epoch().count()) + '\n';
  out += "end " + std::to_string(issued.size()) + '\n';
  return out;
}

caf::expected<std::vector<issued_certificate>> deserialize_issued(std::string_view text) {
  std::vector<issued_certificate> out;
  auto err = read_record_lines(text, issued_header, "issued list",
                               [&](std::string_view line, std::size_t line_no) -> caf::error {
                                 auto c = parse_issued_line(line, line_no);
                                 if (!c)
                                   return c.error();
                                 out.push_back(std::move(*c));
                                 return {};
                               });
  if (err)
    return err;
  return out;
}

} // namespace starling::identity
