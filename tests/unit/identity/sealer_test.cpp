// The gossip sealer: AES-256-GCM round trips, and every refusal (tampering anywhere, wrong or
// unknown keys, replays, stale or future timestamps, the counter window, salt expiry,
// garbage), plus rotation. Time is passed in: no clock, no sleep.
#include <gtest/gtest.h>

#include "identity/errc.hpp"
#include "identity/sealer.hpp"

namespace starling::identity {
namespace {

using namespace std::chrono_literals;

gossip_key key_of(std::uint8_t seed) {
  gossip_key k{};
  for (std::size_t i = 0; i < k.size(); ++i)
    k[i] = static_cast<std::uint8_t>(seed * 17 + i);
  return k;
}

/// A fixed wall time (2024-05-01T12:00:00Z).
const wall_time t0 = wall_time{} + 1714564800s;

constexpr std::uint32_t salt_a = 0xA0A0A0A0;
constexpr std::uint32_t salt_b = 0xB0B0B0B0;

std::string must_seal(sealer& s, std::string_view plain, wall_time now = t0) {
  auto w = s.seal(plain, now);
  EXPECT_TRUE(w) << (w ? "" : render(w.error()));
  return w ? *w : std::string{};
}

errc code_of(const caf::error& err) { return static_cast<errc>(err.code()); }

TEST(sealer, round_trip_with_header_layout) {
  sealer tx{keyring{key_of(1)}, salt_a, 41};
  sealer rx{keyring{key_of(1)}, salt_b, 0};
  for (std::string plain : {std::string{}, std::string{"\x01hello"}, std::string(1400, 'x')}) {
    auto wire = must_seal(tx, plain);
    ASSERT_EQ(wire.size(), plain.size() + sealed_overhead);
    EXPECT_EQ(static_cast<std::uint8_t>(wire[0]), sealed_frame_byte);
    EXPECT_EQ(static_cast<std::uint8_t>(wire[1]), sealed_version);
    const auto id = id_of(key_of(1));
    EXPECT_EQ(wire.substr(2, 8), std::string(id.begin(), id.end()));
    EXPECT_EQ(wire.substr(10, 4), std::string("\xA0\xA0\xA0\xA0", 4));
    if (!plain.empty()) {
      EXPECT_EQ(wire.find(plain), std::string::npos) << "plaintext visible";
    }
    auto opened = rx.open(wire, t0 + 1s);
    ASSERT_TRUE(opened) << render(opened.error());
    EXPECT_EQ(*opened, plain);
  }
  EXPECT_EQ(tx.counters().sealed, 3u);
  EXPECT_EQ(rx.counters().opened, 3u);
  EXPECT_EQ(rx.tracked_salts(), 1u);
}

TEST(sealer, counters_are_big_endian_and_increase) {
  sealer tx{keyring{key_of(1)}, salt_a, 0x0102030405060708};
  auto w1 = must_seal(tx, "a");
  auto w2 = must_seal(tx, "a");
  EXPECT_EQ(w1.substr(14, 8), std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  EXPECT_EQ(w2.substr(14, 8), std::string("\x01\x02\x03\x04\x05\x06\x07\x09", 8));
  EXPECT_NE(w1, w2);
}

TEST(sealer, empty_keyring_cannot_seal) {
  sealer tx{keyring{}, salt_a, 0};
  auto w = tx.seal("x", t0);
  ASSERT_FALSE(w);
  EXPECT_TRUE(is(w.error(), errc::keyring_refused));
}

TEST(sealer, a_bit_flip_anywhere_is_refused) {
  sealer tx{keyring{key_of(1)}, salt_a, 0};
  const auto wire = must_seal(tx, "gossip payload of some length");
  sealer rx{keyring{key_of(1)}, salt_b, 0};
  for (std::size_t byte = 0; byte < wire.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      auto bad = wire;
      bad[byte] = static_cast<char>(bad[byte] ^ (1 << bit));
      auto r = rx.open(bad, t0);
      ASSERT_FALSE(r) << "byte " << byte << " bit " << bit;
      const auto c = code_of(r.error());
      const auto expected =
          byte == 0   ? errc::sealed_malformed
          : byte == 1 ? errc::sealed_malformed
          : byte < 10 ? errc::unknown_key
          : byte >= sealed_header_size - receiver_tag_size && byte < sealed_header_size
              ? errc::wrong_receiver
              : errc::tampered;
      EXPECT_EQ(c, expected) << "byte " << byte << ": " << render(r.error());
    }
  }
  // Nothing tampered was recorded for replay: the original still opens, once.
  EXPECT_EQ(rx.tracked_salts(), 0u);
  EXPECT_TRUE(rx.open(wire, t0));
  EXPECT_EQ(rx.counters().opened, 1u);
  EXPECT_EQ(rx.counters().tampered, (wire.size() - 10 - receiver_tag_size) * 8);
  EXPECT_EQ(rx.counters().unknown_key, 8u * 8u);
  EXPECT_EQ(rx.counters().wrong_receiver, receiver_tag_size * 8);
}

TEST(sealer, a_message_sealed_for_one_receiver_opens_there_only) {
  // Issue 13: the authenticated header did not name the receiver, so a datagram captured on
  // its way to member X could be replayed to member Y within the window.
  const std::string x = "10.0.0.1:7946", y = "10.0.0.2:7946";
  sealer tx{keyring{key_of(1)}, salt_a, 0};
  sealer at_y{keyring{key_of(1)}, salt_b, 0};
  sealer at_x{keyring{key_of(1)}, salt_b, 0};
  auto w = tx.seal("ping", t0, x);
  ASSERT_TRUE(w) << render(w.error());
  auto r = at_y.open(*w, t0, y);
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), errc::wrong_receiver) << render(r.error());
  EXPECT_EQ(at_y.counters().wrong_receiver, 1u);
  EXPECT_EQ(at_y.counters().opened, 0u);
  EXPECT_EQ(at_y.tracked_salts(), 0u) << "a refused message leaves no replay state";
  auto ok = at_x.open(*w, t0, x);
  ASSERT_TRUE(ok) << render(ok.error());
  EXPECT_EQ(*ok, "ping");
  // Unbound and bound do not mix either way.
  auto unbound = tx.seal("ping", t0);
  ASSERT_TRUE(unbound);
  r = at_x.open(*unbound, t0, x);
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), errc::wrong_receiver);
  auto bound = tx.seal("ping", t0, x);
  ASSERT_TRUE(bound);
  r = at_x.open(*bound, t0);
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), errc::wrong_receiver);
  // Rewriting the tag to Y's does not help: the receiver is authenticated, not just tagged.
  auto for_y = tx.seal("other", t0, y);
  ASSERT_TRUE(for_y);
  auto for_x = tx.seal("ping", t0, x);
  ASSERT_TRUE(for_x);
  auto forged = *for_x;
  const auto tag_at = sealed_header_size - receiver_tag_size;
  std::copy_n(for_y->begin() + static_cast<std::ptrdiff_t>(tag_at), receiver_tag_size,
              forged.begin() + static_cast<std::ptrdiff_t>(tag_at));
  r = at_y.open(forged, t0, y);
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), errc::tampered);
  // The message really sealed for Y opens at Y.
  EXPECT_TRUE(at_y.open(*for_y, t0, y));
}

TEST(sealer, truncated_and_extended_messages_are_refused) {
  sealer tx{keyring{key_of(1)}, salt_a, 0};
  const auto wire = must_seal(tx, "payload");
  sealer rx{keyring{key_of(1)}, salt_b, 0};
  for (std::size_t n = 0; n < wire.size(); ++n) {
    auto r = rx.open(wire.substr(0, n), t0);
    ASSERT_FALSE(r) << n;
    EXPECT_EQ(code_of(r.error()), n < sealed_overhead ? errc::sealed_malformed : errc::tampered)
        << n;
  }
  auto longer = rx.open(wire + "x", t0);
  ASSERT_FALSE(longer);
  EXPECT_EQ(code_of(longer.error()), errc::tampered);
}

TEST(sealer, wrong_key_with_the_same_id_is_tampered_and_unknown_id_is_unknown_key) {
  sealer tx{keyring{key_of(1)}, salt_a, 0};
  const auto wire = must_seal(tx, "payload");
  // A receiver holding another key only.
  sealer other{keyring{key_of(2)}, salt_b, 0};
  auto r = other.open(wire, t0);
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), errc::unknown_key);
  EXPECT_NE(render(r.error()).find(to_hex(id_of(key_of(1)))), std::string::npos);
  EXPECT_EQ(other.counters().unknown_key, 1u);
  // A forged id (the receiver's id on a message sealed with another key): tag mismatch.
  auto forged = wire;
  const auto id2 = id_of(key_of(2));
  std::copy(id2.begin(), id2.end(), forged.begin() + 2);
  r = other.open(forged, t0);
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), errc::tampered);
}

TEST(sealer, plain_frames_and_garbage_of_every_length_are_refused) {
  sealer rx{keyring{key_of(1)}, salt_b, 0};
  auto plain = rx.open("\x01plain gossip", t0);
  ASSERT_FALSE(plain);
  EXPECT_EQ(code_of(plain.error()), errc::unknown_key);
  EXPECT_EQ(rx.counters().unsealed, 1u);
  std::uint64_t state = 0x9E3779B97F4A7C15ull;
  for (std::size_t n = 0; n <= 100; ++n) {
    for (int fill = 0; fill < 4; ++fill) {
      std::string g(n, '\0');
      for (auto& c : g) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        c = static_cast<char>(fill == 0 ? 0 : fill == 1 ? 0xff : state & 0xff);
      }
      if (fill == 3 && n > 0)
        g[0] = static_cast<char>(sealed_frame_byte); // looks sealed
      if (fill == 3 && n > 1)
        g[1] = static_cast<char>(sealed_version);
      auto r = rx.open(g, t0);
      ASSERT_FALSE(r) << n << "/" << fill;
    }
  }
  EXPECT_EQ(rx.counters().opened, 0u);
  EXPECT_EQ(rx.tracked_salts(), 0u);
}

TEST(sealer, replays_of_the_same_message_are_refused) {
  sealer tx{keyring{key_of(1)}, salt_a, 0};
  sealer rx{keyring{key_of(1)}, salt_b, 0};
  const auto wire = must_seal(tx, "ping");
  ASSERT_TRUE(rx.open(wire, t0));
  for (int i = 0; i < 3; ++i) {
    auto r = rx.open(wire, t0 + std::chrono::seconds{i});
    ASSERT_FALSE(r);
    EXPECT_EQ(code_of(r.error()), errc::replayed);
  }
  EXPECT_EQ(rx.counters().replayed, 3u);
  EXPECT_EQ(rx.counters().opened, 1u);
}

TEST(sealer, timestamps_outside_the_window_are_refused_either_way) {
  sealer tx{keyring{key_of(1)}, salt_a, 0};
  sealer rx{keyring{key_of(1)}, salt_b, 0}; // window 30 s
  // Skew within the window is tolerated, both ways.
  EXPECT_TRUE(rx.open(must_seal(tx, "a", t0 - 29s), t0));
  EXPECT_TRUE(rx.open(must_seal(tx, "b", t0 + 29s), t0));
  EXPECT_TRUE(rx.open(must_seal(tx, "c", t0 - 30s), t0));
  auto old = rx.open(must_seal(tx, "d", t0 - 31s), t0);
  ASSERT_FALSE(old);
  EXPECT_EQ(code_of(old.error()), errc::replayed);
  auto future = rx.open(must_seal(tx, "e", t0 + 31s), t0);
  ASSERT_FALSE(future);
  EXPECT_EQ(code_of(future.error()), errc::replayed);
  // A datagram kept and replayed later is too old.
  const auto kept = must_seal(tx, "f", t0);
  auto late = rx.open(kept, t0 + 1min);
  ASSERT_FALSE(late);
  EXPECT_EQ(code_of(late.error()), errc::replayed);
  EXPECT_EQ(rx.counters().replayed, 3u);
  // A custom window.
  sealer strict{keyring{key_of(1)}, salt_b, 0, sealer_config{1s, 16}};
  EXPECT_FALSE(strict.open(must_seal(tx, "g", t0 - 2s), t0));
  EXPECT_TRUE(strict.open(must_seal(tx, "h", t0 - 500ms), t0));
}

TEST(sealer, counter_window_accepts_reordering_and_refuses_duplicates_and_stale) {
  sealer tx{keyring{key_of(1)}, salt_a, 1000};
  sealer rx{keyring{key_of(1)}, salt_b, 0};
  std::vector<std::string> wires;
  for (int i = 0; i < 3000; ++i)
    wires.push_back(must_seal(tx, "m" + std::to_string(i)));
  // Out of order within the window: all accepted once.
  for (int i : {5, 3, 4, 0, 1, 2})
    EXPECT_TRUE(rx.open(wires[i], t0)) << i;
  for (int i : {0, 3, 5})
    EXPECT_FALSE(rx.open(wires[i], t0)) << i;
  // Slide the window: the top moves to 1500; 1500 - 1024 = 476 is the oldest still tracked.
  ASSERT_TRUE(rx.open(wires[1500], t0));
  auto stale = rx.open(wires[476], t0);
  ASSERT_FALSE(stale);
  EXPECT_EQ(code_of(stale.error()), errc::replayed);
  EXPECT_TRUE(rx.open(wires[477], t0));
  EXPECT_FALSE(rx.open(wires[477], t0));
  EXPECT_TRUE(rx.open(wires[1499], t0));
  // A jump beyond the whole window clears it; the old top is then too old.
  ASSERT_TRUE(rx.open(wires[2999], t0));
  EXPECT_FALSE(rx.open(wires[1500], t0));
  EXPECT_TRUE(rx.open(wires[2999 - 1023], t0));
  EXPECT_FALSE(rx.open(wires[2999 - 1024], t0));
  EXPECT_FALSE(rx.open(wires[2999], t0));
}

TEST(sealer, senders_are_tracked_separately_and_forgotten_after_two_windows) {
  sealer a{keyring{key_of(1)}, salt_a, 0};
  sealer b{keyring{key_of(1)}, salt_b, 0}; // same counters, another salt
  sealer rx{keyring{key_of(1)}, 0xC0C0C0C0, 0};
  const auto wa = must_seal(a, "x");
  const auto wb = must_seal(b, "x");
  EXPECT_TRUE(rx.open(wa, t0));
  EXPECT_TRUE(rx.open(wb, t0));
  EXPECT_EQ(rx.tracked_salts(), 2u);
  // Within 2 x window the salt stays; after it, it is forgotten, and its old messages are
  // refused by their timestamp instead.
  rx.prune(t0 + 59s);
  EXPECT_EQ(rx.tracked_salts(), 2u);
  EXPECT_TRUE(rx.open(must_seal(a, "y", t0 + 50s), t0 + 50s)); // a keeps talking
  rx.prune(t0 + 61s);
  EXPECT_EQ(rx.tracked_salts(), 1u); // b forgotten
  auto old = rx.open(wb, t0 + 61s);
  ASSERT_FALSE(old);
  EXPECT_EQ(code_of(old.error()), errc::replayed);
  // open() prunes as it goes, too.
  ASSERT_FALSE(rx.open("garbage", t0 + 200s));
  EXPECT_EQ(rx.tracked_salts(), 0u);
}

TEST(sealer, tracked_salts_are_bounded) {
  sealer rx{keyring{key_of(1)}, 1, 0, sealer_config{30s, 8}};
  for (std::uint32_t salt = 100; salt < 120; ++salt) {
    sealer tx{keyring{key_of(1)}, salt, 0};
    ASSERT_TRUE(rx.open(must_seal(tx, "x", t0 + std::chrono::milliseconds{salt}),
                        t0 + std::chrono::milliseconds{salt}));
    EXPECT_LE(rx.tracked_salts(), 8u);
  }
  EXPECT_EQ(rx.counters().salts_evicted, 12u);
}

TEST(sealer, rotation_old_primary_opens_while_installed_not_after_remove) {
  const auto old_key = key_of(1), new_key = key_of(2);
  sealer tx{keyring{old_key}, salt_a, 0};
  sealer rx{keyring{old_key}, salt_b, 0};
  const auto before = must_seal(tx, "under old");
  // Step 1: install the new key on both; the old one stays primary.
  auto ring = rx.ring();
  ASSERT_FALSE(ring.install(new_key));
  rx.set_ring(ring);
  ring = tx.ring();
  ASSERT_FALSE(ring.install(new_key));
  tx.set_ring(ring);
  // Step 2: the sender switches to the new key; messages under both open at the receiver.
  ring = tx.ring();
  ASSERT_FALSE(ring.use(id_of(new_key)));
  tx.set_ring(ring);
  const auto after = must_seal(tx, "under new");
  const auto new_id = id_of(new_key);
  EXPECT_EQ(after.substr(2, 8), std::string(new_id.begin(), new_id.end()));
  EXPECT_TRUE(rx.open(before, t0));
  EXPECT_TRUE(rx.open(after, t0));
  sealer straggler{keyring{old_key}, 0xD0D0D0D0, 0}; // a node still on the old key only
  const auto late_old = must_seal(straggler, "late");
  // Step 3: the receiver removes the old key (after making the new one primary).
  ring = rx.ring();
  EXPECT_TRUE(is(ring.remove(id_of(old_key)), errc::keyring_refused));
  ASSERT_FALSE(ring.use(id_of(new_key)));
  ASSERT_FALSE(ring.remove(id_of(old_key)));
  rx.set_ring(ring);
  auto r = rx.open(late_old, t0);
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), errc::unknown_key);
  EXPECT_TRUE(rx.open(must_seal(tx, "still fine"), t0));
}

} // namespace
} // namespace starling::identity
