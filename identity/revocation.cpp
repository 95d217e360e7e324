// Revocation statements and their log (identity/revocation.hpp). Every input is hostile
// until verify_revocation accepted it: sizes are bounded before any parsing, and OpenSSL's
// error queue is drained into each error.
#include "identity/revocation.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <vector>

#include <openssl/sha.h>

#include "identity/admission.hpp"
#include "identity/errc.hpp"
#include "identity/files.hpp"
#include "identity/statement.hpp"

namespace starling::identity {

namespace {

/// First line of the persisted log.
constexpr std::string_view persist_header = "starling-revocations 1";

/// Bound on the persisted log: max_revocations lines of at most ~8.5 KiB each would be far
/// more; in practice a line is about 1.3 KiB.
constexpr std::size_t max_file_bytes = std::size_t{96} << 20;

/// Domain separation: this context starts every signed encoding of a revocation
/// (statement.hpp, signed_bytes), so a signature made for one can never be taken for a
/// signature over anything else an issuer key signs.
constexpr statement_kind revocation_kind{"starling-revocation-1", "a revocation"};

// -- the text form ------------------------------------------------------------------------------

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1; // lower case only: one spelling per file
}

/// Lower-case hex to bytes; std::nullopt for odd length or another character.
std::optional<std::vector<std::uint8_t>> unhex(std::string_view text) {
  if (text.size() % 2 != 0)
    return std::nullopt;
  std::vector<std::uint8_t> out(text.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = hex_value(text[2 * i]);
    int lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return out;
}

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (pos <= line.size()) {
    auto sp = line.find(' ', pos);
    if (sp == std::string_view::npos)
      sp = line.size();
    out.push_back(line.substr(pos, sp - pos));
    pos = sp + 1;
  }
  return out;
}

caf::error bad_line(std::size_t line_no, std::string_view reason) {
  return bad_record_line("revocation log", line_no, reason);
}

caf::expected<revocation_log::entry> parse_line(std::string_view line, std::size_t line_no) {
  auto f = fields(line);
  if (f.size() != 6 || f[0] != "revocation")
    return bad_line(line_no, "expected 'revocation <key> <node> <revoked_at> <issuer> <sig>'");
  revocation stmt;
  auto key = unhex(f[1]);
  if (!key || key->size() != stmt.key.size())
    return bad_line(line_no, "bad key");
  std::copy(key->begin(), key->end(), stmt.key.begin());
  stmt.node = std::string{f[2]};
  std::int64_t at = 0;
  auto [ptr, ec] = std::from_chars(f[3].data(), f[3].data() + f[3].size(), at);
  if (ec != std::errc{} || ptr != f[3].data() + f[3].size() || f[3].empty())
    return bad_line(line_no, "bad revoked_at");
  stmt.revoked_at = unix_time{std::chrono::seconds{at}};
  auto issuer = unhex(f[4]);
  auto sig = unhex(f[5]);
  if (!issuer || !sig)
    return bad_line(line_no, "bad hex");
  stmt.issuer = std::move(*issuer);
  stmt.signature = std::move(*sig);
  if (auto err = check_statement_shape(view_of(stmt)))
    return bad_line(line_no, render(err));
  auto who = describe_issuer(stmt.issuer);
  if (!who)
    return bad_line(line_no, render(who.error()));
  return revocation_log::entry{std::move(stmt), std::move(*who)};
}

} // namespace

statement_view view_of(const revocation& stmt) {
  return {revocation_kind, stmt.key, stmt.node, stmt.revoked_at, stmt.issuer, stmt.signature};
}

// -- statements ----------------------------------------------------------------------------------

caf::expected<issuer_identity> describe_issuer(std::span<const std::uint8_t> issuer_der) {
  auto cert = certificate_from_der(issuer_der);
  if (!cert)
    return cert.error();
  auto id = spiffe_id_of(*cert);
  if (!id || id->kind != spiffe_id::kind_t::node)
    return make_error(errc::bad_certificate,
                      "the issuer certificate of a statement names no node of a mesh");
  auto key = spki_sha256(*cert);
  if (!key)
    return key.error();
  auto until = not_after(*cert);
  if (!until)
    return until.error();
  return issuer_identity{std::move(id->name), *key, *until};
}

caf::expected<revocation> make_revocation(const issuer_material& issuer, const sha256_digest& key,
                                          std::string_view node, time_point now) {
  if (!is_valid_node_name(node))
    return make_error(errc::invalid_argument, "cannot revoke a key of an invalid node name: use " +
                                                  std::string{node_name_rule});
  auto own = spki_sha256(issuer.cert);
  if (!own)
    return own.error();
  const auto& pins = issuer.bundle.pins();
  if (key == *own || std::find(pins.begin(), pins.end(), key) != pins.end())
    return make_error(errc::revokes_ca_key, format_pin(key) +
                                                " is the key of a root or of this issuer: an "
                                                "issuer revokes node keys only");
  return sealed(issuer, revocation{key, std::string{node}, unix_seconds(now), {}, {}});
}

caf::expected<issuer_identity> verify_issuer(std::span<const std::uint8_t> issuer_der,
                                             const trust_bundle& bundle, time_point now) {
  auto cert = certificate_from_der(issuer_der);
  if (!cert)
    return cert.error();
  auto who = describe_issuer(issuer_der);
  if (!who)
    return who.error();
  const auto what = "the certificate of '" + who->node + "'";
  if (X509_check_ca(cert->native()) == 0)
    return make_error(errc::not_an_issuer, what + " is not a CA");
  auto path = verify_path({*cert}, bundle, now);
  if (!path)
    return make_error(static_cast<errc>(path.error().code()), what + ": " + render(path.error()));
  auto id = spiffe_id_of(*cert);
  if (!id || id->mesh != bundle.mesh())
    return make_error(errc::foreign_mesh, what + " is not of mesh " + bundle.mesh());
  return who;
}

caf::expected<issuer_identity> verify_revocation(const revocation& stmt, const trust_bundle& bundle,
                                                 time_point now,
                                                 const std::set<sha256_digest>& known_ca_keys) {
  auto who = verify_statement(view_of(stmt), bundle, now);
  if (!who)
    return who.error();
  const auto& pins = bundle.pins();
  if (stmt.key == who->key || known_ca_keys.contains(stmt.key) ||
      std::find(pins.begin(), pins.end(), stmt.key) != pins.end())
    return make_error(errc::revokes_ca_key, describe_statement(view_of(stmt)) + " by '" +
                                                who->node +
                                                "' names the key of a root or an issuer "
                                                "(issuers revoke node keys only)");
  return who;
}

// -- the log -------------------------------------------------------------------------------------

caf::expected<bool> revocation_log::add(const revocation& stmt, const trust_bundle& bundle,
                                        time_point now,
                                        const std::set<sha256_digest>& known_ca_keys) {
  auto who = verify_revocation(stmt, bundle, now, known_ca_keys);
  if (!who)
    return who.error();
  return insert(entry{stmt, std::move(*who)});
}

bool revocation_log::insert(entry e) {
  entry_key k{e.statement.key, e.issuer.key};
  auto it = entries_.find(k);
  if (it != entries_.end()) {
    if (!(e.statement < it->second.statement))
      return false;
    it->second = std::move(e);
    return true;
  }
  entries_.emplace(k, std::move(e));
  trim();
  return entries_.contains(k);
}

std::size_t revocation_log::merge(const revocation_log& other) {
  std::size_t changed = 0;
  for (const auto& [k, e] : other.entries_)
    if (insert(e))
      ++changed;
  return changed;
}

namespace {

/// The latest notAfter of the issuers of `entries`; time_point::min() when empty.
template <class Map> time_point latest_issuer_expiry(const Map& entries) {
  auto latest = time_point::min();
  for (const auto& [k, e] : entries)
    latest = std::max(latest, e.issuer.not_after);
  return latest;
}

time_point retention_of(const revocation_log::entry& e, time_point latest_issuer) {
  const time_point revoked_at{e.statement.revoked_at.time_since_epoch()};
  return std::max(revoked_at + max_node_certificate_lifetime, latest_issuer);
}

} // namespace

time_point revocation_log::retained_until(const entry& e) const {
  return retention_of(e, std::max(latest_issuer_expiry(entries_), e.issuer.not_after));
}

std::size_t revocation_log::prune(time_point now) {
  // Computed once, before erasing: the entries pruned together are judged by one log.
  const auto latest = latest_issuer_expiry(entries_);
  return std::erase_if(entries_,
                       [&](const auto& kv) { return retention_of(kv.second, latest) <= now; });
}

void revocation_log::trim() {
  while (entries_.size() > max_revocations)
    entries_.erase(std::prev(entries_.end()));
}

revocation_set revocation_log::revoked() const {
  revocation_set out;
  for (const auto& [k, e] : entries_)
    out.insert(k.first);
  return out;
}

bool revocation_log::revokes(const sha256_digest& key) const {
  auto it = entries_.lower_bound(entry_key{key, sha256_digest{}});
  return it != entries_.end() && it->first.first == key;
}

bool revocation_log::contains(const revocation& stmt) const {
  for (auto it = entries_.lower_bound(entry_key{stmt.key, sha256_digest{}});
       it != entries_.end() && it->first.first == stmt.key; ++it)
    if (it->second.statement == stmt)
      return true;
  return false;
}

sha256_digest revocation_log::digest() const {
  // The entries' fixed-size parts, hashed in one pass (no OpenSSL context to fail).
  std::vector<std::uint8_t> bytes;
  bytes.reserve(entries_.size() * 3 * SHA256_DIGEST_LENGTH);
  for (const auto& [k, e] : entries_) {
    std::array<std::uint8_t, SHA256_DIGEST_LENGTH> sig{};
    SHA256(e.statement.signature.data(), e.statement.signature.size(), sig.data());
    bytes.insert(bytes.end(), k.first.begin(), k.first.end());
    bytes.insert(bytes.end(), k.second.begin(), k.second.end());
    bytes.insert(bytes.end(), sig.begin(), sig.end());
  }
  sha256_digest out{};
  SHA256(bytes.data(), bytes.size(), out.data());
  return out;
}

std::string revocation_log::serialize() const {
  std::string out{persist_header};
  out += '\n';
  for (const auto& [k, e] : entries_) {
    const auto& s = e.statement;
    out += "revocation " + to_hex(s.key) + ' ' + s.node + ' ' +
           std::to_string(s.revoked_at.time_since_epoch().count()) + ' ' + to_hex(s.issuer) + ' ' +
           to_hex(s.signature) + '\n';
  }
  out += "end " + std::to_string(entries_.size()) + '\n';
  return out;
}

caf::expected<revocation_log> revocation_log::deserialize(std::string_view text) {
  revocation_log log;
  auto err = read_record_lines(
      text, persist_header, "revocation log",
      [&](std::string_view line, std::size_t line_no) -> caf::error {
        if (log.entries_.size() >= max_revocations)
          return bad_line(line_no, "more than " + std::to_string(max_revocations) + " revocations");
        auto e = parse_line(line, line_no);
        if (!e)
          return e.error();
        entry_key k{e->statement.key, e->issuer.key};
        if (!log.entries_.emplace(k, std::move(*e)).second)
          return bad_line(line_no, "a second revocation of one key by one issuer");
        return {};
      });
  if (err)
    return err;
  return log;
}

caf::expected<revocation_log> revocation_log::load(const std::filesystem::path& file) {
  std::error_code ec;
  const bool found = std::filesystem::exists(file, ec);
  if (ec)
    return make_error(errc::io_failure, "cannot stat " + file.string() + ": " + ec.message());
  if (!found)
    return revocation_log{};
  auto text = read_file(file, max_file_bytes);
  if (!text)
    return text.error();
  auto log = deserialize(*text);
  if (!log)
    return make_error(errc::invalid_argument, file.string() + ": " + render(log.error()));
  return log;
}

caf::error revocation_log::save(const std::filesystem::path& file) const {
  if (auto err = create_private_directories(file.parent_path()))
    return err;
  return replace_file(file, serialize(), private_file_mode);
}

} // namespace starling::identity
