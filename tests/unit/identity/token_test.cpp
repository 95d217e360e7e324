#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "identity/errc.hpp"
#include "identity/token.hpp"
#include "tests/support/seeded_random.hpp"

namespace starling::identity {
namespace {

using namespace std::chrono_literals;
using testing::seeded_random;

/// A fresh key digest at each call: a redemption for a key no redemption used before.
sha256_digest next_use() {
  static std::uint32_t n = 0;
  sha256_digest out{};
  ++n;
  for (int i = 0; i < 4; ++i)
    out[i] = static_cast<std::uint8_t>(n >> (8 * i));
  return out;
}

// -- fixtures: fake time, seeded randomness ---------------------------------------------------

const unix_time t0{std::chrono::seconds{1'700'000'000}};

/// Always fails, as RAND_bytes would without entropy.
class broken_random final : public random_source {
public:
  caf::expected<void> fill(std::span<std::uint8_t>) override {
    return make_error(errc::crypto_failure, "no entropy");
  }
};

/// Always the same bytes: a random source that repeats itself.
class stuck_random final : public random_source {
public:
  caf::expected<void> fill(std::span<std::uint8_t> out) override {
    std::fill(out.begin(), out.end(), std::uint8_t{7});
    return caf::unit;
  }
};

sha256_digest make_pin(std::uint8_t fill) {
  sha256_digest pin;
  pin.fill(fill);
  return pin;
}

const sha256_digest pin_a = make_pin(0xa1);
const sha256_digest pin_b = make_pin(0xb2);

token_store make_store(std::string name) {
  auto store = token_store::make(std::move(name));
  EXPECT_TRUE(store) << render(store.error());
  return std::move(*store);
}

join_token must_create(token_store& store, random_source& rng, std::uint16_t uses = 1,
                       std::chrono::seconds ttl = 1h, unix_time now = t0) {
  auto token = store.create(now, ttl, uses, rng, pin_a);
  EXPECT_TRUE(token) << render(token.error());
  return *token;
}

std::string must_encode(const join_token& token) {
  auto text = encode(token);
  EXPECT_TRUE(text) << render(text.error());
  return *text;
}

/// Asserts that `result` failed with `code`.
template <class T>
::testing::AssertionResult refused_with(const caf::expected<T>& result, errc code) {
  if (result)
    return ::testing::AssertionFailure() << "accepted, expected " << to_string(code);
  if (!is(result.error(), code))
    return ::testing::AssertionFailure()
           << "got " << render(result.error()) << ", expected " << to_string(code);
  return ::testing::AssertionSuccess();
}

// -- text form --------------------------------------------------------------------------------

TEST(join_token, round_trips_through_its_text_form) {
  seeded_random rng{1};
  auto store = make_store("issuer-a");
  auto token = must_create(store, rng, 3, 2h);
  EXPECT_EQ(token.expiry, t0 + 2h);
  EXPECT_EQ(token.uses, 3);
  EXPECT_EQ(token.pin, pin_a);
  EXPECT_EQ(token.issuer, "issuer-a");
  auto text = must_encode(token);
  EXPECT_TRUE(text.starts_with("stl1.")) << text;
  EXPECT_EQ(text.find('='), std::string::npos) << text;
  auto back = decode(text);
  ASSERT_TRUE(back) << render(back.error());
  EXPECT_EQ(*back, token);
  EXPECT_EQ(token.id_hex().size(), 16u);
  EXPECT_EQ(token.id_hex().find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(join_token, carries_the_longest_issuer_name) {
  join_token token;
  token.id.fill(1);
  token.secret.fill(2);
  token.expiry = t0;
  token.uses = max_token_uses;
  token.pin = pin_a;
  token.issuer = std::string(max_token_issuer_size, 'n');
  auto text = must_encode(token);
  EXPECT_EQ(text.size(), 181u); // 5 + base64 of 132 bytes
  auto back = decode(text);
  ASSERT_TRUE(back) << render(back.error());
  EXPECT_EQ(*back, token);
  token.issuer += 'n';
  EXPECT_TRUE(refused_with(encode(token), errc::invalid_argument));
}

TEST(join_token, encode_refuses_fields_decode_would_refuse) {
  join_token token;
  token.expiry = t0;
  token.uses = 1;
  token.issuer = "issuer-a";
  ASSERT_TRUE(encode(token));
  auto bad = token;
  bad.uses = 0;
  EXPECT_TRUE(refused_with(encode(bad), errc::invalid_argument));
  bad.uses = max_token_uses + 1;
  EXPECT_TRUE(refused_with(encode(bad), errc::invalid_argument));
  bad = token;
  bad.issuer = "has space";
  EXPECT_TRUE(refused_with(encode(bad), errc::invalid_argument));
  bad = token;
  bad.expiry = unix_time{-1s};
  EXPECT_TRUE(refused_with(encode(bad), errc::invalid_argument));
}

TEST(join_token, decode_refuses_malformed_text) {
  seeded_random rng{2};
  auto store = make_store("issuer-a");
  auto text = must_encode(must_create(store, rng));
  auto body = text.substr(5);
  const std::vector<std::string> inputs{
      "",
      "stl1.",
      "stl1",
      "stl2." + body,
      "STL1." + body,
      " " + text,
      text + " ",
      text + "=",
      text + "AA", // two more bytes: the name length disagrees
      text.substr(0, text.size() - 1),
      text.substr(0, 40),
      "stl1." + std::string(1000, 'A'),
      "stl1.B" + body.substr(1),  // layout version 5
      "stl1.+/" + body.substr(2), // standard base64, not base64url
  };
  for (const auto& in : inputs) {
    SCOPED_TRACE(in);
    EXPECT_TRUE(refused_with(decode(in), errc::token_malformed));
  }
  auto v5 = decode("stl1.B" + body.substr(1));
  ASSERT_FALSE(v5);
  EXPECT_NE(render(v5.error()).find("version 5"), std::string::npos) << render(v5.error());
}

TEST(join_token, decode_accepts_one_spelling_only) {
  // 76 bytes (issuer-a) leave 4 unused low bits in the last character: setting one must not
  // give a second text for the same token.
  seeded_random rng{3};
  auto store = make_store("issuer-a");
  auto text = must_encode(must_create(store, rng));
  constexpr std::string_view alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  auto last = alphabet.find(text.back());
  ASSERT_EQ(last % 16, 0u) << text;
  for (std::size_t low = 1; low < 16; ++low) {
    auto other = text;
    other.back() = alphabet[last + low];
    EXPECT_TRUE(refused_with(decode(other), errc::token_malformed)) << other;
  }
}

TEST(join_token, decode_survives_random_input) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(seed);
    std::mt19937_64 gen{seed};
    for (int i = 0; i < 500; ++i) {
      std::string in = (i % 2 == 0) ? "stl1." : "";
      auto size = gen() % 200;
      for (std::size_t k = 0; k < size; ++k)
        in += static_cast<char>(i % 3 == 0 ? "AQgw-_az09"[gen() % 10] : gen() % 256);
      auto out = decode(in);
      if (out) { // only a canonical token decodes: it then re-encodes to the same text
        auto again = encode(*out);
        ASSERT_TRUE(again);
        EXPECT_EQ(*again, in);
      }
    }
  }
}

// -- redemption and each refusal --------------------------------------------------------------

TEST(token_store, redeems_a_token_once_per_use) {
  seeded_random rng{4};
  auto store = make_store("issuer-a");
  auto token = must_create(store, rng, 3);
  auto text = must_encode(token);
  for (std::uint32_t use = 1; use <= 3; ++use) {
    auto r = store.redeem(text, t0 + 1s, pin_a, next_use());
    ASSERT_TRUE(r) << render(r.error());
    EXPECT_EQ(r->id, token.id);
    EXPECT_EQ(r->use, use);
    EXPECT_EQ(r->issuer, "issuer-a");
  }
  EXPECT_TRUE(refused_with(store.redeem(text, t0 + 2s, pin_a, next_use()), errc::token_exhausted));
  EXPECT_EQ(store.ledger().find(token.id)->spent(), 3u);
}

TEST(token_store, refuses_a_replayed_one_use_token) {
  seeded_random rng{5};
  auto store = make_store("issuer-a");
  auto text = must_encode(must_create(store, rng));
  ASSERT_TRUE(store.redeem(text, t0, pin_a, next_use()));
  EXPECT_TRUE(refused_with(store.redeem(text, t0, pin_a, next_use()), errc::token_exhausted));
  EXPECT_TRUE(refused_with(store.redeem(text, t0 + 10s, pin_a, next_use()), errc::token_exhausted));
}

TEST(token_store, refuses_a_forged_secret) {
  seeded_random rng{6};
  auto store = make_store("issuer-a");
  auto token = must_create(store, rng);
  for (std::size_t i = 0; i < token.secret.size(); ++i) {
    auto forged = token;
    forged.secret[i] ^= 0x01;
    EXPECT_TRUE(
        refused_with(store.redeem(must_encode(forged), t0, pin_a, next_use()), errc::token_forged));
  }
  EXPECT_EQ(store.ledger().find(token.id)->spent(), 0u);
  EXPECT_TRUE(store.redeem(must_encode(token), t0, pin_a, next_use()));
}

TEST(token_store, refuses_a_token_whose_fields_disagree_with_the_record) {
  seeded_random rng{7};
  auto store = make_store("issuer-a");
  auto token = must_create(store, rng, 2);
  auto longer = token;
  longer.expiry += 24h;
  auto more = token;
  more.uses = 100;
  auto renamed = token;
  renamed.issuer = "issuer-b";
  for (const auto& forged : {longer, more, renamed})
    EXPECT_TRUE(
        refused_with(store.redeem(must_encode(forged), t0, pin_a, next_use()), errc::token_forged));
  // An expired token refreshed by hand is forged, not merely expired.
  EXPECT_TRUE(refused_with(store.redeem(must_encode(longer), t0 + 2h, pin_a, next_use()),
                           errc::token_forged));
}

TEST(token_store, refuses_a_token_of_another_mesh) {
  seeded_random rng{8};
  auto store = make_store("issuer-a");
  auto token = must_create(store, rng);
  EXPECT_TRUE(refused_with(store.redeem(must_encode(token), t0, pin_b, next_use()),
                           errc::token_wrong_mesh));
  auto repinned = token;
  repinned.pin = pin_b;
  EXPECT_TRUE(refused_with(store.redeem(must_encode(repinned), t0, pin_a, next_use()),
                           errc::token_wrong_mesh));
  // The mesh check comes before the lookup: an unknown token of another mesh is wrong_mesh.
  repinned.id[0] ^= 0xff;
  EXPECT_TRUE(refused_with(store.redeem(must_encode(repinned), t0, pin_a, next_use()),
                           errc::token_wrong_mesh));
}

TEST(token_store, refuses_an_unknown_token) {
  seeded_random rng{9};
  auto a = make_store("issuer-a");
  auto b = make_store("issuer-b");
  auto text = must_encode(must_create(a, rng));
  auto r = b.redeem(text, t0, pin_a, next_use());
  EXPECT_TRUE(refused_with(r, errc::token_unknown));
  // The error names the id, never the secret.
  auto token = *decode(text);
  auto msg = render(r.error());
  EXPECT_NE(msg.find(token.id_hex()), std::string::npos) << msg;
  EXPECT_EQ(msg.find(text.substr(5, 20)), std::string::npos) << msg;
}

TEST(token_store, refuses_a_token_at_and_after_its_expiry) {
  seeded_random rng{10};
  auto store = make_store("issuer-a");
  auto text = must_encode(must_create(store, rng, 5, 10min));
  EXPECT_TRUE(store.redeem(text, t0 + 10min - 1s, pin_a, next_use()));
  EXPECT_TRUE(refused_with(store.redeem(text, t0 + 10min, pin_a, next_use()), errc::token_expired));
  EXPECT_TRUE(
      refused_with(store.redeem(text, t0 + 10min + 1s, pin_a, next_use()), errc::token_expired));
  EXPECT_TRUE(refused_with(store.redeem(text, t0 + 30h, pin_a, next_use()), errc::token_expired));
}

TEST(token_store, checks_expiry_before_exhaustion) {
  seeded_random rng{11};
  auto store = make_store("issuer-a");
  auto text = must_encode(must_create(store, rng, 1, 1min));
  ASSERT_TRUE(store.redeem(text, t0, pin_a, next_use()));
  EXPECT_TRUE(refused_with(store.redeem(text, t0 + 1min, pin_a, next_use()), errc::token_expired));
}

TEST(token_store, never_accepts_a_token_with_a_flipped_bit) {
  seeded_random rng{12};
  auto store = make_store("issuer-a");
  auto token = must_create(store, rng);
  auto text = must_encode(token);
  std::size_t tried = 0;
  std::map<errc, std::size_t> seen;
  for (std::size_t i = 0; i < text.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto flipped = text;
      flipped[i] = static_cast<char>(flipped[i] ^ (1 << bit));
      SCOPED_TRACE(::testing::Message() << "position " << i << " bit " << bit);
      auto r = store.redeem(flipped, t0, pin_a, next_use());
      ASSERT_FALSE(r) << flipped;
      // An altered id is unknown, an altered pin another mesh, any other field forged.
      EXPECT_TRUE(is(r.error(), errc::token_malformed) || is(r.error(), errc::token_forged) ||
                  is(r.error(), errc::token_unknown) || is(r.error(), errc::token_wrong_mesh))
          << render(r.error());
      ++seen[static_cast<errc>(r.error().code())];
      ++tried;
    }
  }
  EXPECT_EQ(tried, text.size() * 8);
  // Every kind of refusal was reached, not only the decoder's.
  for (auto code :
       {errc::token_malformed, errc::token_forged, errc::token_unknown, errc::token_wrong_mesh})
    EXPECT_GT(seen[code], 0u) << to_string(code);
  EXPECT_EQ(store.ledger().find(token.id)->spent(), 0u);
  EXPECT_TRUE(store.redeem(text, t0, pin_a, next_use()));
}

// -- create: argument validation and randomness -----------------------------------------------

TEST(token_store, create_validates_its_arguments) {
  seeded_random rng{13};
  auto store = make_store("issuer-a");
  EXPECT_TRUE(refused_with(store.create(t0, 0s, 1, rng, pin_a), errc::invalid_argument));
  EXPECT_TRUE(refused_with(store.create(t0, -1s, 1, rng, pin_a), errc::invalid_argument));
  EXPECT_TRUE(
      refused_with(store.create(t0, max_token_ttl + 1s, 1, rng, pin_a), errc::invalid_argument));
  EXPECT_TRUE(refused_with(store.create(t0, 1h, 0, rng, pin_a), errc::invalid_argument));
  EXPECT_TRUE(
      refused_with(store.create(t0, 1h, max_token_uses + 1, rng, pin_a), errc::invalid_argument));
  EXPECT_TRUE(
      refused_with(store.create(unix_time{-1s}, 1h, 1, rng, pin_a), errc::invalid_argument));
  EXPECT_TRUE(store.ledger().entries().empty());
  EXPECT_TRUE(store.create(t0, 1s, 1, rng, pin_a));
  EXPECT_TRUE(store.create(t0, max_token_ttl, max_token_uses, rng, pin_a));
  auto bad = store.create(t0, 0s, 1, rng, pin_a);
  EXPECT_NE(render(bad.error()).find("ttl"), std::string::npos) << render(bad.error());
}

TEST(token_store, make_refuses_an_invalid_node_name) {
  EXPECT_TRUE(refused_with(token_store::make(""), errc::invalid_argument));
  EXPECT_TRUE(refused_with(token_store::make("a b"), errc::invalid_argument));
  EXPECT_TRUE(refused_with(token_store::make(std::string(65, 'a')), errc::invalid_argument));
}

TEST(token_store, create_fails_without_good_randomness) {
  auto store = make_store("issuer-a");
  broken_random broken;
  EXPECT_TRUE(refused_with(store.create(t0, 1h, 1, broken, pin_a), errc::crypto_failure));
  stuck_random stuck;
  EXPECT_TRUE(store.create(t0, 1h, 1, stuck, pin_a));
  EXPECT_TRUE(refused_with(store.create(t0, 1h, 1, stuck, pin_a), errc::crypto_failure));
  EXPECT_EQ(store.ledger().entries().size(), 1u);
}

TEST(token_store, production_randomness_makes_distinct_tokens) {
  openssl_random rng;
  auto store = make_store("issuer-a");
  auto a = must_create(store, rng);
  auto b = must_create(store, rng);
  EXPECT_NE(a.id, b.id);
  EXPECT_NE(a.secret, b.secret);
}

// -- the ledger: CRDT laws and spends across issuers ------------------------------------------

/// A random ledger over a small pool of ids and records, so that merges overlap and conflict.
token_ledger random_ledger(std::uint64_t seed) {
  std::mt19937_64 gen{seed};
  const std::vector<std::string> names{"issuer-a", "issuer-b", "issuer-c"};
  token_ledger out;
  auto entries = gen() % 8;
  for (std::size_t i = 0; i < entries; ++i) {
    token_id id{};
    id[0] = static_cast<std::uint8_t>(gen() % 6);
    auto variant = gen() % 4 == 0 ? 1 : 0; // sometimes a conflicting record under one id
    token_entry e;
    e.issuer = names[(id[0] + variant) % names.size()];
    e.secret_hash.fill(static_cast<std::uint8_t>(id[0] * 7 + variant));
    e.created = t0;
    e.expiry = t0 + std::chrono::hours{id[0] + 1};
    e.uses = static_cast<std::uint16_t>(1 + id[0]);
    for (const auto& n : names)
      for (auto count = gen() % 4; count > 0; --count) {
        sha256_digest use{};
        use[0] = static_cast<std::uint8_t>(gen() % 5); // overlapping spends across replicas
        e.spends.insert({n, use});
      }
    out.insert(id, std::move(e));
  }
  return out;
}

token_ledger merged(token_ledger a, const token_ledger& b) {
  a.merge(b);
  return a;
}

TEST(token_ledger, merge_is_commutative_associative_and_idempotent) {
  std::size_t conflicts = 0;
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    SCOPED_TRACE(seed);
    auto a = random_ledger(seed);
    auto b = random_ledger(seed + 1000);
    auto c = random_ledger(seed + 2000);
    EXPECT_EQ(merged(a, b), merged(b, a));
    EXPECT_EQ(merged(a, a), a);
    EXPECT_EQ(merged(merged(a, b), c), merged(a, merged(b, c)));
    EXPECT_EQ(merged(merged(a, b), b), merged(a, b));
    // The merge never lowers a spend count, whichever record survives (issue 13,
    // finding 2: a conflicting record used to erase the spends).
    auto ab = merged(a, b);
    for (const auto* side : {&a, &b})
      for (const auto& [id, e] : side->entries()) {
        auto* m = ab.find(id);
        ASSERT_NE(m, nullptr);
        EXPECT_GE(m->spent(), e.spent());
        if (!m->same_record(e))
          ++conflicts;
      }
  }
  EXPECT_GT(conflicts, 0u); // the generator does make conflicting records
}

TEST(token_ledger, prune_drops_entries_after_expiry_and_grace) {
  auto ledger = random_ledger(42);
  ASSERT_FALSE(ledger.entries().empty());
  auto latest = t0;
  for (const auto& [id, e] : ledger.entries())
    latest = std::max(latest, e.expiry);
  auto copy = ledger;
  EXPECT_EQ(copy.prune(t0, 1h), 0u);
  EXPECT_EQ(copy, ledger);
  // One second before the latest expiry plus grace: the latest entry stays.
  auto dropped = copy.prune(latest + 1h - 1s, 1h);
  EXPECT_EQ(dropped + copy.entries().size(), ledger.entries().size());
  ASSERT_FALSE(copy.entries().empty());
  for (const auto& [id, e] : copy.entries())
    EXPECT_GT(e.expiry + 1h, latest + 1h - 1s);
  auto remaining = copy.entries().size();
  EXPECT_EQ(copy.prune(latest + 1h, 1h), remaining);
  EXPECT_TRUE(copy.entries().empty());
}

TEST(token_store, a_token_spent_at_one_issuer_is_refused_at_another) {
  seeded_random rng{14};
  auto a = make_store("issuer-a");
  auto b = make_store("issuer-b");
  auto token = must_create(a, rng);
  auto text = must_encode(token);
  b.merge_spent(a.ledger(), t0); // b learns the record (issuer gossip)
  ASSERT_NE(b.ledger().find(token.id), nullptr);
  ASSERT_TRUE(a.redeem(text, t0, pin_a, next_use()));
  b.merge_spent(a.ledger(), t0); // ... and then the spend
  EXPECT_TRUE(refused_with(b.redeem(text, t0, pin_a, next_use()), errc::token_exhausted));
}

TEST(token_store, a_token_created_elsewhere_is_redeemable_once_its_issuer_is_gone) {
  seeded_random rng{15};
  auto a = make_store("issuer-a");
  auto b = make_store("issuer-b");
  auto c = make_store("issuer-c");
  auto text = must_encode(must_create(a, rng, 2));
  b.merge_spent(a.ledger(), t0);
  c.merge_spent(a.ledger(), t0);
  // issuer-a is gone: b redeems, c learns it, c redeems the last use, b learns that.
  auto r1 = b.redeem(text, t0, pin_a, next_use());
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->issuer, "issuer-a");
  c.merge_spent(b.ledger(), t0);
  auto r2 = c.redeem(text, t0, pin_a, next_use());
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->use, 2u);
  b.merge_spent(c.ledger(), t0);
  EXPECT_TRUE(refused_with(b.redeem(text, t0, pin_a, next_use()), errc::token_exhausted));
  EXPECT_EQ(b.ledger(), c.ledger());
}

TEST(token_store, concurrent_spends_before_gossip_are_all_counted) {
  // The window forwarding to the creating issuer closes: two issuers that redeem before
  // hearing of each other both accept; once merged, the G-counter counts both spends.
  seeded_random rng{16};
  auto a = make_store("issuer-a");
  auto b = make_store("issuer-b");
  auto text = must_encode(must_create(a, rng, 1));
  b.merge_spent(a.ledger(), t0);
  ASSERT_TRUE(a.redeem(text, t0, pin_a, next_use()));
  ASSERT_TRUE(b.redeem(text, t0, pin_a, next_use()));
  a.merge_spent(b.ledger(), t0);
  b.merge_spent(a.ledger(), t0);
  EXPECT_EQ(a.ledger(), b.ledger());
  EXPECT_EQ(a.ledger().entries().begin()->second.spent(), 2u);
  EXPECT_TRUE(refused_with(a.redeem(text, t0, pin_a, next_use()), errc::token_exhausted));
}

TEST(token_store, merge_skips_entries_no_issuer_could_make_and_prunes) {
  seeded_random rng{17};
  auto a = make_store("issuer-a");
  auto b = make_store("issuer-b");
  auto old_token = must_create(a, rng, 1, 1h, t0);
  auto token = must_create(a, rng, 1, 1h, t0 + 48h);
  token_ledger remote = a.ledger();
  token_entry bad;
  bad.issuer = "not a name";
  bad.expiry = t0 + 100h;
  bad.uses = 1;
  remote.insert(token_id{9}, bad);
  b.merge_spent(remote, t0 + 48h);
  EXPECT_EQ(b.ledger().find(token_id{9}), nullptr);
  EXPECT_EQ(b.ledger().find(old_token.id), nullptr); // expired for more than the grace
  EXPECT_NE(b.ledger().find(token.id), nullptr);
}

TEST(token_store, prune_keeps_expired_records_for_a_grace_period) {
  seeded_random rng{18};
  auto store = make_store("issuer-a");
  auto text = must_encode(must_create(store, rng, 1, 1h));
  EXPECT_EQ(store.prune(t0 + 1h + token_prune_grace - 1s), 0u);
  EXPECT_TRUE(refused_with(store.redeem(text, t0 + 2h, pin_a, next_use()), errc::token_expired));
  EXPECT_EQ(store.prune(t0 + 1h + token_prune_grace), 1u);
  EXPECT_TRUE(refused_with(store.redeem(text, t0 + 2h, pin_a, next_use()), errc::token_unknown));
}

// -- persistence ------------------------------------------------------------------------------

TEST(token_store, persists_records_and_spends_but_no_secret) {
  seeded_random rng{19};
  auto a = make_store("issuer-a");
  auto b = make_store("issuer-b");
  auto one = must_create(a, rng, 1);
  auto three = must_create(a, rng, 3, 3h);
  auto unused = must_create(a, rng, 5, 5h);
  b.merge_spent(a.ledger(), t0);
  ASSERT_TRUE(a.redeem(must_encode(one), t0, pin_a, next_use()));
  ASSERT_TRUE(b.redeem(must_encode(three), t0, pin_a, next_use()));
  ASSERT_TRUE(a.redeem(must_encode(three), t0, pin_a, next_use()));
  a.merge_spent(b.ledger(), t0);
  auto text = a.serialize();
  for (const auto& t : {one, three, unused}) {
    std::string secret_hex;
    for (auto byte : t.secret)
      secret_hex += "0123456789abcdef"[byte >> 4], secret_hex += "0123456789abcdef"[byte & 15];
    EXPECT_EQ(text.find(secret_hex), std::string::npos);
  }
  auto restored = token_store::deserialize(text, "issuer-a");
  ASSERT_TRUE(restored) << render(restored.error()) << "\n" << text;
  EXPECT_EQ(restored->ledger(), a.ledger());
  EXPECT_EQ(restored->self(), "issuer-a");
  EXPECT_EQ(restored->serialize(), text);
  // After the restart: the spent token stays spent, the others keep their remaining uses.
  EXPECT_TRUE(refused_with(restored->redeem(must_encode(one), t0, pin_a, next_use()),
                           errc::token_exhausted));
  auto r = restored->redeem(must_encode(three), t0, pin_a, next_use());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->use, 3u);
  EXPECT_TRUE(restored->redeem(must_encode(unused), t0, pin_a, next_use()));
}

TEST(token_store, a_conflicting_record_never_erases_spends_or_replaces_the_creators) {
  // Issue 13, finding 2: a re-sent record with an older `created` replaced the whole entry,
  // spends included, and a one-use token admitted twice.
  seeded_random rng{30};
  auto a = make_store("issuer-a");
  auto b = make_store("issuer-b");
  auto token = must_create(a, rng, 1);
  const auto text = must_encode(token);
  ASSERT_TRUE(a.redeem(text, t0, pin_a, next_use()));
  b.merge_spent(a.ledger(), t0);
  token_ledger hostile;
  auto copy = *a.ledger().find(token.id);
  copy.created = copy.created - 1h; // sorts first
  copy.spends.clear();
  hostile.insert(token.id, copy);
  a.merge_spent(hostile, t0);
  b.merge_spent(hostile, t0);
  EXPECT_EQ(a.ledger().find(token.id)->created, t0) << "the creator keeps its own record";
  EXPECT_EQ(a.ledger().find(token.id)->spent(), 1u);
  EXPECT_EQ(b.ledger().find(token.id)->spent(), 1u) << "the spend survives the conflict";
  EXPECT_TRUE(refused_with(a.redeem(text, t0, pin_a, next_use()), errc::token_exhausted));
  EXPECT_TRUE(refused_with(b.redeem(text, t0, pin_a, next_use()), errc::token_exhausted));
}

TEST(token_store, reads_a_version_1_store_with_every_spend) {
  const std::string hash(64, 'a');
  const std::string v1 = "starling-tokens 1\n"
                         "token 0011223344556677 issuer-a 1700000000 1700003600 3 " +
                         hash +
                         " issuer-a:2 issuer-b:1\n"
                         "end 1\n";
  auto restored = token_store::deserialize(v1, "issuer-a");
  ASSERT_TRUE(restored) << render(restored.error());
  const auto& entry = restored->ledger().entries().begin()->second;
  EXPECT_EQ(entry.spent(), 3u);
  EXPECT_TRUE(entry.seal_signature.empty());
  // Written back as version 2; two issuers converting the same counts agree.
  auto again = token_store::deserialize(restored->serialize(), "issuer-a");
  ASSERT_TRUE(again) << render(again.error());
  EXPECT_EQ(again->ledger(), restored->ledger());
  auto other = token_store::deserialize(v1, "issuer-b");
  ASSERT_TRUE(other) << render(other.error());
  other->merge_spent(restored->ledger(), unix_time{std::chrono::seconds{1700000000}});
  EXPECT_EQ(other->ledger().entries().begin()->second.spent(), 3u);
}

TEST(token_store, persists_an_empty_store) {
  auto store = make_store("issuer-a");
  EXPECT_EQ(store.serialize(), "starling-tokens 2\nend 0\n");
  auto restored = token_store::deserialize(store.serialize(), "issuer-a");
  ASSERT_TRUE(restored) << render(restored.error());
  EXPECT_TRUE(restored->ledger().entries().empty());
}

TEST(token_store, refuses_malformed_persisted_text) {
  seeded_random rng{20};
  auto a = make_store("issuer-a");
  auto text_a = must_encode(must_create(a, rng, 2));
  ASSERT_TRUE(a.redeem(text_a, t0, pin_a, next_use()));
  must_create(a, rng, 1);
  auto good = a.serialize();
  // Every truncation fails: nothing is silently lost.
  for (std::size_t k = 0; k < good.size(); ++k) {
    SCOPED_TRACE(k);
    EXPECT_TRUE(refused_with(token_store::deserialize(good.substr(0, k), "issuer-a"),
                             errc::invalid_argument));
  }
  const auto spend_at = good.find(" issuer-a:");
  ASSERT_NE(spend_at, std::string::npos);
  const auto spend = good.substr(spend_at, 10 + 64);
  auto first_token = good.find("token ");
  auto line = good.substr(first_token, good.find('\n', first_token) - first_token);
  auto replace = [&](std::string_view from, std::string_view to) {
    auto out = good;
    auto pos = out.find(from);
    EXPECT_NE(pos, std::string::npos) << from;
    return out.replace(pos, from.size(), to);
  };
  const std::vector<std::string> bad{
      "",
      "garbage\n",
      replace("starling-tokens 2", "starling-tokens 3"),
      replace("end 2", "end 3"),
      replace("end 2", "end x"),
      good + "token\n",
      good + "\n",
      replace(line, line + "\n" + line), // duplicate id
      replace(line, line.substr(0, 30)), // too few fields
      replace(" issuer-a ", " bad/name "),
      replace(spend, " issuer-a:00"), // a spend key that is not 64 hex
      replace(spend, spend + spend),  // one spend twice
      replace(spend, " issuer-a:" + std::string(64, 'G')),
      replace(spend, " issuer-a"),
      replace(spend, " bad/name" + spend.substr(9)),
      replace(" - ", " zz "), // a seal that is not hex
      replace(" 2 ", " 0 "),  // uses out of range
      replace(" 2 ", " 1001 "),
      replace(" 2 ", " 70000 "),
      replace(" 1700000000 ", " -5 "),
      replace(" 1700000000 ", " 99999999999999999999999 "),
      replace("token ", "token zz"),
      std::string{"starling-tokens 2\r\nend 0\r\n"},
      std::string{"starling-tokens 1\ntoken 0011223344556677 issuer-a 1700000000 1700003600 "
                  "2 " +
                  std::string(64, 'a') + " issuer-a:0\nend 1\n"}, // v1: a zero count
  };
  for (const auto& in : bad) {
    SCOPED_TRACE(in);
    auto r = token_store::deserialize(in, "issuer-a");
    EXPECT_TRUE(refused_with(r, errc::invalid_argument));
    if (!r) {
      EXPECT_NE(render(r.error()).find("token store line "), std::string::npos)
          << render(r.error());
    }
  }
  EXPECT_TRUE(refused_with(token_store::deserialize(good, "bad name"), errc::invalid_argument));
}

} // namespace
} // namespace starling::identity
