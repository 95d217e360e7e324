// The gossip keyring: key text form, ids, install/use/remove and the persisted text form.
#include <set>

#include <gtest/gtest.h>

#include "identity/errc.hpp"
#include "identity/keyring.hpp"

namespace starling::identity {
namespace {

gossip_key key_of(std::uint8_t seed) {
  gossip_key k{};
  for (std::size_t i = 0; i < k.size(); ++i)
    k[i] = static_cast<std::uint8_t>(seed * 31 + i);
  return k;
}

TEST(keyring, base64_round_trip_and_known_vector) {
  gossip_key zero{};
  EXPECT_EQ(to_base64(zero), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
  for (std::uint8_t s = 0; s < 50; ++s) {
    auto k = key_of(s);
    auto text = to_base64(k);
    ASSERT_EQ(text.size(), 44u);
    auto back = parse_gossip_key(text);
    ASSERT_TRUE(back) << render(back.error());
    EXPECT_EQ(*back, k);
    // Whitespace around it (a key pasted from a file) is fine.
    auto padded = parse_gossip_key("  " + text + "\n");
    ASSERT_TRUE(padded);
    EXPECT_EQ(*padded, k);
  }
}

TEST(keyring, refuses_bad_key_text_without_echoing_it) {
  const std::string good = to_base64(key_of(7));
  std::vector<std::string> bad = {
      "",
      "short",
      good.substr(0, 43),                             // no padding
      good + "A",                                     // too long
      good.substr(0, 10) + "!" + good.substr(11),     // outside the alphabet
      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=", // non-canonical trailing bits
      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", // 31 bytes
  };
  for (const auto& text : bad) {
    SCOPED_TRACE(text);
    auto k = parse_gossip_key(text);
    ASSERT_FALSE(k);
    EXPECT_TRUE(is(k.error(), errc::invalid_argument));
    if (text.size() > 8) {
      EXPECT_EQ(render(k.error()).find(text), std::string::npos) << "the secret is echoed";
    }
  }
}

TEST(keyring, ids_are_sha256_prefixes_in_hex) {
  // SHA-256 of 32 zero bytes starts with 66687aadf862bd77.
  EXPECT_EQ(to_hex(id_of(gossip_key{})), "66687aadf862bd77");
  auto id = parse_key_id("66687AADF862BD77");
  ASSERT_TRUE(id);
  EXPECT_EQ(*id, id_of(gossip_key{}));
  EXPECT_FALSE(parse_key_id("66687aadf862bd7"));
  EXPECT_FALSE(parse_key_id("66687aadf862bd7g"));
}

TEST(keyring, generated_keys_are_distinct) {
  std::set<gossip_key> seen;
  for (int i = 0; i < 20; ++i) {
    auto k = generate_gossip_key();
    ASSERT_TRUE(k);
    EXPECT_TRUE(seen.insert(*k).second);
  }
}

TEST(keyring, install_use_remove) {
  keyring ring;
  EXPECT_TRUE(ring.empty());
  EXPECT_EQ(ring.primary(), nullptr);
  EXPECT_FALSE(ring.primary_id());
  const auto a = key_of(1), b = key_of(2), c = key_of(3);
  ASSERT_FALSE(ring.install(a));
  EXPECT_EQ(ring.primary_id(), id_of(a)); // the first key becomes primary
  ASSERT_FALSE(ring.install(b));
  ASSERT_FALSE(ring.install(b)); // idempotent
  EXPECT_EQ(ring.size(), 2u);
  EXPECT_EQ(ring.primary_id(), id_of(a));
  // use: must be installed.
  auto err = ring.use(id_of(c));
  EXPECT_TRUE(is(err, errc::unknown_key));
  ASSERT_FALSE(ring.use(id_of(b)));
  EXPECT_EQ(ring.primary_id(), id_of(b));
  EXPECT_EQ(*ring.primary(), b);
  EXPECT_EQ(ring.ids(), (std::vector<key_id>{id_of(b), id_of(a)}));
  // remove: never the primary.
  err = ring.remove(id_of(b));
  EXPECT_TRUE(is(err, errc::keyring_refused)) << render(err);
  EXPECT_TRUE(is(ring.remove(id_of(c)), errc::unknown_key));
  ASSERT_FALSE(ring.remove(id_of(a)));
  EXPECT_EQ(ring.size(), 1u);
  EXPECT_EQ(ring.find(id_of(a)), nullptr);
  EXPECT_EQ(ring.primary_id(), id_of(b));
  // The primary index follows removals before it.
  ASSERT_FALSE(ring.install(a));
  ASSERT_FALSE(ring.install(c));
  ASSERT_FALSE(ring.use(id_of(c)));
  ASSERT_FALSE(ring.remove(id_of(b)));
  ASSERT_FALSE(ring.remove(id_of(a)));
  EXPECT_EQ(ring.primary_id(), id_of(c));
  EXPECT_EQ(ring.ids(), (std::vector<key_id>{id_of(c)}));
}

TEST(keyring, is_bounded) {
  keyring ring;
  for (std::size_t i = 0; i < max_keyring_keys; ++i)
    ASSERT_FALSE(ring.install(key_of(static_cast<std::uint8_t>(i))));
  EXPECT_TRUE(is(ring.install(key_of(200)), errc::keyring_refused));
  EXPECT_EQ(ring.size(), max_keyring_keys);
}

TEST(keyring, resolves_keys_and_ids) {
  const auto a = key_of(1);
  auto by_key = keyring::resolve(to_base64(a));
  ASSERT_TRUE(by_key);
  EXPECT_EQ(*by_key, id_of(a));
  auto by_id = keyring::resolve(to_hex(id_of(a)));
  ASSERT_TRUE(by_id);
  EXPECT_EQ(*by_id, id_of(a));
  EXPECT_FALSE(keyring::resolve("nonsense"));
  EXPECT_FALSE(keyring::resolve(""));
}

TEST(keyring, text_round_trip) {
  keyring ring{key_of(1)};
  ASSERT_FALSE(ring.install(key_of(2)));
  ASSERT_FALSE(ring.install(key_of(3)));
  ASSERT_FALSE(ring.use(id_of(key_of(2))));
  auto text = ring.to_text();
  EXPECT_NE(text.find("primary " + to_base64(key_of(2))), std::string::npos);
  auto back = keyring::from_text(text);
  ASSERT_TRUE(back) << render(back.error());
  EXPECT_EQ(*back, ring);
  EXPECT_EQ(back->primary_id(), id_of(key_of(2)));
  // Empty text: an empty ring.
  auto empty = keyring::from_text("# nothing\n\n");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

TEST(keyring, refuses_bad_text_naming_the_line) {
  const auto k = to_base64(key_of(1));
  struct bad_case {
    std::string text;
    errc code;
    std::string says;
  };
  std::vector<bad_case> cases = {
      {"primary\n", errc::sealed_malformed, "line 1"},
      {"# c\nsecret " + k + "\n", errc::sealed_malformed, "line 2"},
      {"primary " + k + "\nkey nope\n", errc::sealed_malformed, "line 2"},
      {"primary " + k + "\nprimary " + to_base64(key_of(2)) + "\n", errc::sealed_malformed,
       "second primary"},
      {"key " + k + "\n", errc::keyring_refused, "no primary"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto ring = keyring::from_text(c.text);
    ASSERT_FALSE(ring);
    EXPECT_TRUE(is(ring.error(), c.code)) << render(ring.error());
    EXPECT_NE(render(ring.error()).find(c.says), std::string::npos) << render(ring.error());
    EXPECT_EQ(render(ring.error()).find(k), std::string::npos);
  }
}

} // namespace
} // namespace starling::identity
