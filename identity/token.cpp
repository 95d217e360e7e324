#include "identity/token.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <optional>
#include <tuple>
#include <vector>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "identity/errc.hpp"
#include "identity/files.hpp"
#include "identity/names.hpp"
#include "identity/pki.hpp"

namespace starling::identity {

namespace {

// -- layout of the version-1 binary form ------------------------------------------------------

constexpr std::uint8_t layout_version = 1;
constexpr std::size_t fixed_size = 1 + 8 + 16 + 8 + 2 + 32 + 1;
constexpr std::size_t max_binary_size = fixed_size + max_token_issuer_size;
/// Base64 of max_binary_size bytes without padding, plus the prefix.
constexpr std::size_t max_text_size = token_text_prefix.size() + (max_binary_size * 4 + 2) / 3;

/// Latest second `create` accepts as `now`: 9999-12-31T23:59:59Z.
constexpr std::int64_t max_create_time = 253402300799;

constexpr std::string_view persist_header = "starling-tokens 2";
/// The previous text form: spends as counts per redeemer, no seals (read, never written).
constexpr std::string_view persist_header_v1 = "starling-tokens 1";

// -- hex and base64url (to_hex is pki.hpp's)
// ------------------------------------------------------------------------

constexpr std::string_view hex_digits = "0123456789abcdef";

/// Parses exactly 2 * out.size() lowercase hex digits.
bool unhex(std::string_view text, std::span<std::uint8_t> out) {
  if (text.size() != out.size() * 2)
    return false;
  auto nibble = [](char c) -> int {
    auto pos = hex_digits.find(c);
    return pos == std::string_view::npos ? -1 : static_cast<int>(pos);
  };
  for (std::size_t i = 0; i < out.size(); ++i) {
    auto hi = nibble(text[2 * i]);
    auto lo = nibble(text[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return false;
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return true;
}

constexpr std::string_view b64_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string base64url(std::span<const std::uint8_t> in) {
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (auto b : in) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += b64_alphabet[(acc >> bits) & 0x3f];
    }
  }
  if (bits > 0)
    out += b64_alphabet[(acc << (6 - bits)) & 0x3f];
  return out;
}

/// Strict base64url without padding: only the alphabet, no impossible length, and the unused
/// low bits of the last character zero, so that every byte string has exactly one spelling.
std::optional<std::vector<std::uint8_t>> unbase64url(std::string_view in) {
  if (in.size() % 4 == 1)
    return std::nullopt;
  std::vector<std::uint8_t> out;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    auto pos = b64_alphabet.find(c);
    if (pos == std::string_view::npos)
      return std::nullopt;
    acc = ((acc << 6) | static_cast<std::uint32_t>(pos)) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>(acc >> bits));
    }
  }
  if ((acc & ((1u << bits) - 1)) != 0)
    return std::nullopt;
  return out;
}

// -- big-endian fields ------------------------------------------------------------------------

void put_uint(std::vector<std::uint8_t>& out, std::uint64_t x, int size) {
  for (int i = size - 1; i >= 0; --i)
    out.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
}

/// Reads fields off a byte string; every read is bounds-checked.
class reader {
public:
  explicit reader(std::span<const std::uint8_t> in) : in_(in) {}

  bool bytes(std::span<std::uint8_t> out) {
    if (in_.size() < out.size())
      return false;
    std::copy_n(in_.begin(), out.size(), out.begin());
    in_ = in_.subspan(out.size());
    return true;
  }

  bool uint(std::uint64_t& x, int size) {
    if (in_.size() < static_cast<std::size_t>(size))
      return false;
    x = 0;
    for (int i = 0; i < size; ++i)
      x = (x << 8) | in_[i];
    in_ = in_.subspan(size);
    return true;
  }

  [[nodiscard]] std::size_t remaining() const noexcept { return in_.size(); }

private:
  std::span<const std::uint8_t> in_;
};

// -- checks shared by encode, decode, the ledger and persistence ------------------------------

bool is_valid_uses(std::uint64_t uses) noexcept { return uses >= 1 && uses <= max_token_uses; }

/// Why `entry` could not have been made by an issuer, or nullptr.
const char* entry_defect(const token_entry& entry) {
  if (!is_valid_node_name(entry.issuer))
    return "invalid issuer name";
  if (entry.created.time_since_epoch().count() < 0 || entry.expiry.time_since_epoch().count() < 0)
    return "time before the epoch";
  if (!is_valid_uses(entry.uses))
    return "uses out of range";
  if (entry.spends.size() > max_spends_per_token)
    return "too many spends";
  for (const auto& spend : entry.spends)
    if (!is_valid_node_name(spend.redeemer))
      return "invalid spend";
  return nullptr;
}

caf::error malformed(std::string reason) {
  return make_error(errc::token_malformed, std::move(reason));
}

auto record_key(const token_entry& e) {
  return std::tie(e.issuer, e.secret_hash, e.created, e.expiry, e.uses);
}

// -- persistence helpers ----------------------------------------------------------------------

/// Splits `line` at single spaces.
std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  while (true) {
    auto sp = line.find(' ');
    out.push_back(line.substr(0, sp));
    if (sp == std::string_view::npos)
      return out;
    line.remove_prefix(sp + 1);
  }
}

/// Parses a whole decimal field into `x`; false on anything else (sign, spaces, overflow).
template <class Int> bool parse_int(std::string_view text, Int& x) {
  if (text.empty() || text.front() == '+' || text.front() == '-')
    return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), x);
  return ec == std::errc{} && end == text.data() + text.size();
}

/// The error of line `line_no` of a persisted store.
caf::error bad_line(std::size_t line_no, std::string_view reason) {
  return bad_record_line("token store", line_no, reason);
}

/// Parses a whole run of hex digits (lowercase, even length) into bytes.
bool unhex_bytes(std::string_view text, std::vector<std::uint8_t>& out) {
  if (text.size() % 2 != 0)
    return false;
  out.resize(text.size() / 2);
  return unhex(text, out);
}

/// The use key of the `i`-th spend counted by `redeemer` in a version-1 store: derived, so
/// that every issuer converting the same counts gets the same spends (as the old maximum per
/// slot did).
caf::expected<sha256_digest> legacy_use(const token_id& id, std::string_view redeemer,
                                        std::uint32_t i) {
  std::vector<std::uint8_t> in{'v', '1', 0};
  in.insert(in.end(), id.begin(), id.end());
  in.insert(in.end(), redeemer.begin(), redeemer.end());
  in.push_back(0);
  put_uint(in, i, 4);
  return sha256_of(in);
}

/// Parses a token line. Version 2: "token <id> <issuer> <created> <expiry> <uses> <hash>
/// <seal issuer hex|-> <seal signature hex|-> [<redeemer>:<use hex64>...]". Version 1:
/// "token <id> <issuer> <created> <expiry> <uses> <hash> [<redeemer>:<count>...]".
caf::expected<std::pair<token_id, token_entry>> parse_token_line(std::string_view line,
                                                                 std::size_t line_no, int version) {
  auto f = fields(line);
  const std::size_t fixed = version == 1 ? 7 : 9;
  if (f.size() < fixed || f[0] != "token")
    return bad_line(line_no,
                    "expected 'token' and " + std::to_string(fixed - 1) + " fields, or 'end'");
  std::pair<token_id, token_entry> out;
  auto& [id, e] = out;
  std::int64_t created = 0;
  std::int64_t expiry = 0;
  if (!unhex(f[1], id))
    return bad_line(line_no, "token id is not 16 hex digits");
  e.issuer = std::string{f[2]};
  if (!parse_int(f[3], created) || !parse_int(f[4], expiry))
    return bad_line(line_no, "created or expiry is not a unix time");
  e.created = unix_time{std::chrono::seconds{created}};
  e.expiry = unix_time{std::chrono::seconds{expiry}};
  if (!parse_int(f[5], e.uses))
    return bad_line(line_no, "uses is not a number");
  if (!unhex(f[6], e.secret_hash))
    return bad_line(line_no, "secret hash is not 64 hex digits");
  if (version >= 2) {
    if ((f[7] != "-" && !unhex_bytes(f[7], e.seal_issuer)) ||
        (f[8] != "-" && !unhex_bytes(f[8], e.seal_signature)))
      return bad_line(line_no, "seal is not hex or '-'");
  }
  for (std::size_t i = fixed; i < f.size(); ++i) {
    auto colon = f[i].find(':');
    if (colon == std::string_view::npos)
      return bad_line(line_no, "spend is not <issuer>:<value>");
    std::string redeemer{f[i].substr(0, colon)};
    auto value = f[i].substr(colon + 1);
    if (version == 1) {
      std::uint32_t count = 0;
      if (!parse_int(value, count) || count == 0 || count > max_spends_per_token)
        return bad_line(line_no, "spend count out of range");
      for (std::uint32_t n = 0; n < count; ++n) {
        auto use = legacy_use(id, redeemer, n);
        if (!use)
          return use.error();
        e.spends.insert({redeemer, *use});
      }
    } else {
      token_spend spend{std::move(redeemer), {}};
      if (!unhex(value, spend.use))
        return bad_line(line_no, "spend key is not 64 hex digits");
      if (!e.spends.insert(std::move(spend)).second)
        return bad_line(line_no, "one spend appears twice");
    }
  }
  if (auto defect = entry_defect(e))
    return bad_line(line_no, defect);
  return out;
}

} // namespace

caf::expected<sha256_digest> sha256_of(std::span<const std::uint8_t> in) {
  sha256_digest out{};
  unsigned int size = 0;
  if (EVP_Digest(in.data(), in.size(), out.data(), &size, EVP_sha256(), nullptr) != 1 ||
      size != out.size())
    return make_openssl_error(errc::crypto_failure, "SHA-256");
  return out;
}

// -- text form --------------------------------------------------------------------------------

std::string join_token::id_hex() const { return to_hex(id); }

caf::expected<std::string> encode(const join_token& token) {
  if (!is_valid_uses(token.uses))
    return make_error(errc::invalid_argument, "token uses out of range");
  if (!is_valid_node_name(token.issuer))
    return make_error(errc::invalid_argument, "token issuer is not a node name");
  if (token.expiry.time_since_epoch().count() < 0)
    return make_error(errc::invalid_argument, "token expiry before the epoch");
  std::vector<std::uint8_t> bin;
  bin.reserve(fixed_size + token.issuer.size());
  bin.push_back(layout_version);
  bin.insert(bin.end(), token.id.begin(), token.id.end());
  bin.insert(bin.end(), token.secret.begin(), token.secret.end());
  put_uint(bin, static_cast<std::uint64_t>(token.expiry.time_since_epoch().count()), 8);
  put_uint(bin, token.uses, 2);
  bin.insert(bin.end(), token.pin.begin(), token.pin.end());
  put_uint(bin, token.issuer.size(), 1);
  bin.insert(bin.end(), token.issuer.begin(), token.issuer.end());
  return std::string{token_text_prefix} + base64url(bin);
}

caf::expected<join_token> decode(std::string_view text) {
  if (!text.starts_with(token_text_prefix))
    return malformed("a join token starts with \"stl1.\"");
  if (text.size() > max_text_size)
    return malformed("longer than any join token");
  auto bin = unbase64url(text.substr(token_text_prefix.size()));
  if (!bin)
    return malformed("not canonical base64url after \"stl1.\"");
  reader in{*bin};
  join_token out;
  std::uint64_t version = 0;
  std::uint64_t expiry = 0;
  std::uint64_t uses = 0;
  std::uint64_t name_size = 0;
  if (!in.uint(version, 1) || !in.bytes(out.id) || !in.bytes(out.secret) || !in.uint(expiry, 8) ||
      !in.uint(uses, 2) || !in.bytes(out.pin) || !in.uint(name_size, 1))
    return malformed("truncated");
  if (version != layout_version)
    return malformed("unknown layout version " + std::to_string(version));
  if (expiry > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    return malformed("expiry out of range");
  if (!is_valid_uses(uses))
    return malformed("uses out of range");
  if (name_size != in.remaining())
    return malformed("issuer name length disagrees with the token size");
  out.issuer.resize(name_size);
  if (!in.bytes({reinterpret_cast<std::uint8_t*>(out.issuer.data()), out.issuer.size()}) ||
      !is_valid_node_name(out.issuer))
    return malformed("issuer is not a node name");
  out.expiry = unix_time{std::chrono::seconds{static_cast<std::int64_t>(expiry)}};
  out.uses = static_cast<std::uint16_t>(uses);
  return out;
}

// -- randomness -------------------------------------------------------------------------------

caf::expected<void> openssl_random::fill(std::span<std::uint8_t> out) {
  if (out.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
      RAND_bytes(out.data(), static_cast<int>(out.size())) != 1)
    return make_openssl_error(errc::crypto_failure, "RAND_bytes");
  return caf::unit;
}

// -- ledger -----------------------------------------------------------------------------------

bool token_entry::spent_for(const sha256_digest& use) const noexcept {
  return std::any_of(spends.begin(), spends.end(), [&](const auto& s) { return s.use == use; });
}

bool token_entry::same_record(const token_entry& other) const noexcept {
  return record_key(*this) == record_key(other);
}

std::vector<std::uint8_t> record_bytes(const token_id& id, const token_entry& e) {
  std::vector<std::uint8_t> out;
  out.insert(out.end(), id.begin(), id.end());
  put_uint(out, e.issuer.size(), 1);
  out.insert(out.end(), e.issuer.begin(), e.issuer.end());
  out.insert(out.end(), e.secret_hash.begin(), e.secret_hash.end());
  put_uint(out, static_cast<std::uint64_t>(e.created.time_since_epoch().count()), 8);
  put_uint(out, static_cast<std::uint64_t>(e.expiry.time_since_epoch().count()), 8);
  put_uint(out, e.uses, 2);
  return out;
}

bool token_ledger::insert(const token_id& id, token_entry entry) {
  return entries_.emplace(id, std::move(entry)).second;
}

std::uint32_t token_ledger::spend(const token_id& id, const std::string& redeemer,
                                  const sha256_digest& use) {
  auto i = entries_.find(id);
  if (i == entries_.end())
    return 0;
  auto& spends = i->second.spends;
  spends.insert({redeemer, use});
  while (spends.size() > max_spends_per_token)
    spends.erase(std::prev(spends.end()));
  return i->second.spent();
}

bool token_ledger::seal(const token_id& id, std::vector<std::uint8_t> issuer,
                        std::vector<std::uint8_t> signature) {
  auto i = entries_.find(id);
  if (i == entries_.end())
    return false;
  i->second.seal_issuer = std::move(issuer);
  i->second.seal_signature = std::move(signature);
  return true;
}

void token_ledger::merge(const token_ledger& remote, std::string_view self) {
  for (const auto& [id, theirs] : remote.entries_) {
    auto [i, added] = entries_.try_emplace(id, theirs);
    if (added)
      continue;
    auto& mine = i->second;
    auto spends = std::move(mine.spends);
    spends.insert(theirs.spends.begin(), theirs.spends.end());
    while (spends.size() > max_spends_per_token)
      spends.erase(std::prev(spends.end()));
    // Another record under the same id: ours stays if we made it; else the smaller one,
    // so that every replica picks the same. The same record: the smaller seal (an empty
    // seal, from a version-1 store, last).
    auto rank = [](const token_entry& e) {
      using bytes = const std::vector<std::uint8_t>&;
      return std::tuple<bool, bytes, bytes>{e.seal_signature.empty(), e.seal_issuer,
                                            e.seal_signature};
    };
    const bool take_theirs = mine.same_record(theirs)
                                 ? rank(theirs) < rank(mine)
                                 : (self.empty() || mine.issuer != self) &&
                                       std::tuple_cat(record_key(theirs), rank(theirs)) <
                                           std::tuple_cat(record_key(mine), rank(mine));
    if (take_theirs)
      mine = theirs;
    mine.spends = std::move(spends);
  }
}

std::vector<std::uint8_t> token_ledger::canonical_bytes() const {
  std::vector<std::uint8_t> out;
  put_uint(out, entries_.size(), 8);
  for (const auto& [id, e] : entries_) {
    auto record = record_bytes(id, e);
    put_uint(out, record.size(), 4);
    out.insert(out.end(), record.begin(), record.end());
    put_uint(out, e.seal_issuer.size(), 4);
    out.insert(out.end(), e.seal_issuer.begin(), e.seal_issuer.end());
    put_uint(out, e.seal_signature.size(), 4);
    out.insert(out.end(), e.seal_signature.begin(), e.seal_signature.end());
    put_uint(out, e.spends.size(), 4);
    for (const auto& spend : e.spends) {
      put_uint(out, spend.redeemer.size(), 1);
      out.insert(out.end(), spend.redeemer.begin(), spend.redeemer.end());
      out.insert(out.end(), spend.use.begin(), spend.use.end());
    }
  }
  return out;
}

std::size_t token_ledger::prune(unix_time now, std::chrono::seconds grace) {
  return std::erase_if(entries_, [&](const auto& kv) { return kv.second.expiry <= now - grace; });
}

const token_entry* token_ledger::find(const token_id& id) const {
  auto i = entries_.find(id);
  return i == entries_.end() ? nullptr : &i->second;
}

// -- store ------------------------------------------------------------------------------------

caf::expected<token_store> token_store::make(std::string self) {
  if (!is_valid_node_name(self))
    return make_error(errc::invalid_argument, "token store of \"" + self + "\": not a node name");
  return token_store{std::move(self)};
}

caf::expected<join_token> token_store::create(unix_time now, std::chrono::seconds ttl,
                                              std::uint16_t uses, random_source& rng,
                                              const sha256_digest& pin) {
  using std::to_string;
  if (ttl <= std::chrono::seconds::zero() || ttl > max_token_ttl)
    return make_error(errc::invalid_argument, "token ttl " + to_string(ttl.count()) +
                                                  "s: expected 1s to " +
                                                  to_string(max_token_ttl.count()) + "s");
  if (!is_valid_uses(uses))
    return make_error(errc::invalid_argument, "token uses " + to_string(uses) + ": expected 1 to " +
                                                  to_string(max_token_uses));
  auto t = now.time_since_epoch().count();
  if (t < 0 || t > max_create_time)
    return make_error(errc::invalid_argument, "time " + to_string(t) + " is out of range");
  join_token token;
  if (auto ok = rng.fill(token.id); !ok)
    return ok.error();
  if (auto ok = rng.fill(token.secret); !ok)
    return ok.error();
  token.expiry = now + ttl;
  token.uses = uses;
  token.pin = pin;
  token.issuer = self_;
  auto hash = sha256_of(token.secret);
  if (!hash)
    return hash.error();
  token_entry entry{self_, *hash, now, token.expiry, uses, {}, {}, {}};
  if (!ledger_.insert(token.id, std::move(entry)))
    return make_error(errc::crypto_failure, "random source repeated token id " + token.id_hex());
  return token;
}

caf::expected<redemption> token_store::redeem(std::string_view text, unix_time now,
                                              const sha256_digest& pin, const sha256_digest& use) {
  auto token = decode(text);
  if (!token)
    return token.error();
  auto id = token->id_hex();
  if (token->pin != pin)
    return make_error(errc::token_wrong_mesh, "token " + id + " pins another mesh root");
  auto* entry = ledger_.find(token->id);
  if (entry == nullptr)
    return make_error(errc::token_unknown, "token " + id + " is not known here");
  auto hash = sha256_of(token->secret);
  if (!hash)
    return hash.error();
  auto secret_ok = CRYPTO_memcmp(hash->data(), entry->secret_hash.data(), hash->size()) == 0;
  if (!secret_ok || token->expiry != entry->expiry || token->uses != entry->uses ||
      token->issuer != entry->issuer)
    return make_error(errc::token_forged, "token " + id + " disagrees with its record");
  if (now >= entry->expiry)
    return make_error(errc::token_expired,
                      "token " + id + " expired at " +
                          std::to_string(entry->expiry.time_since_epoch().count()));
  if (entry->spent_for(use)) // the same key again (its grant was lost): not a second use
    return redemption{token->id, entry->spent(), token->issuer};
  if (entry->spent() >= entry->uses)
    return make_error(errc::token_exhausted,
                      "token " + id + " has no use left of " + std::to_string(entry->uses));
  auto count = ledger_.spend(token->id, self_, use);
  return redemption{token->id, count, token->issuer};
}

void token_store::merge_spent(const token_ledger& remote, unix_time now) {
  // Entries no issuer could have made would make the persisted form unreadable: skip them.
  token_ledger valid;
  for (const auto& [id, entry] : remote.entries())
    if (entry_defect(entry) == nullptr)
      valid.insert(id, entry);
  ledger_.merge(valid, self_);
  prune(now);
}

std::size_t token_store::prune(unix_time now) { return ledger_.prune(now, token_prune_grace); }

std::string token_store::serialize() const {
  std::string out{persist_header};
  out += '\n';
  for (const auto& [id, e] : ledger_.entries()) {
    out += "token " + to_hex(id) + ' ' + e.issuer + ' ' +
           std::to_string(e.created.time_since_epoch().count()) + ' ' +
           std::to_string(e.expiry.time_since_epoch().count()) + ' ' + std::to_string(e.uses) +
           ' ' + to_hex(e.secret_hash);
    out += ' ' + (e.seal_issuer.empty() ? std::string{"-"} : to_hex(e.seal_issuer));
    out += ' ' + (e.seal_signature.empty() ? std::string{"-"} : to_hex(e.seal_signature));
    for (const auto& spend : e.spends)
      out += ' ' + spend.redeemer + ':' + to_hex(spend.use);
    out += '\n';
  }
  out += "end " + std::to_string(ledger_.entries().size()) + '\n';
  return out;
}

caf::expected<token_store> token_store::deserialize(std::string_view text, std::string self) {
  auto store = make(std::move(self));
  if (!store)
    return store.error();
  const int version = text.starts_with(std::string{persist_header_v1} + '\n') ? 1 : 2;
  auto err =
      read_record_lines(text, version == 1 ? persist_header_v1 : persist_header, "token store",
                        [&](std::string_view line, std::size_t line_no) -> caf::error {
                          auto parsed = parse_token_line(line, line_no, version);
                          if (!parsed)
                            return parsed.error();
                          if (!store->ledger_.insert(parsed->first, std::move(parsed->second)))
                            return bad_line(line_no, "token id appears twice");
                          return {};
                        });
  if (err)
    return err;
  return store;
}

} // namespace starling::identity
