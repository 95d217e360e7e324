// Tests of the codec at mesh scale (decision 0017): a 10,000-member push-pull encodes and
// decodes under the default limits, the per-datagram update limit stays small, and every
// count (members, updates, tags, extensions) is read from the wire and refused before
// protobuf parses the message.
#include <chrono>
#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gossip/codec.hpp"
#include "gossip/errc.hpp"

namespace starling::gossip {
namespace {

/// The gossip errc of `x`'s error, or 0 for a value / another category.
template <class T> int code_of(const caf::expected<T>& x) {
  if (x || x.error().category() != errc_category)
    return 0;
  return x.error().code();
}

constexpr int code(errc x) { return static_cast<int>(x); }

/// A full state of `n` members as an agent sends it: names and addresses as the agents of a
/// real mesh have them, two tags each, some suspect and dead rows naming their accuser.
push_pull state_of(std::size_t n) {
  push_pull pp;
  pp.sender = "node-00000";
  pp.sender_address = "10.0.0.1:7946";
  pp.members.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    member_update u;
    u.state = i % 97 == 5   ? member_state::suspect
              : i % 89 == 7 ? member_state::dead
              : i % 83 == 3 ? member_state::left
                            : member_state::alive;
    u.name = "node-" + std::to_string(100000 + i).substr(1);
    u.address = "10." + std::to_string((i >> 16) & 0xff) + "." + std::to_string((i >> 8) & 0xff) +
                "." + std::to_string(i & 0xff) + ":7946";
    u.incarnation = i % 7;
    u.tags = {{"role", i % 2 == 0 ? "web" : "db"}, {"zone", "eu-" + std::to_string(i % 3)}};
    if (u.state == member_state::suspect || u.state == member_state::dead)
      u.from = "node-" + std::to_string(100000 + (i + 1) % n).substr(1);
    pp.members.push_back(std::move(u));
  }
  return pp;
}

/// Appends a varint.
void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

/// Appends a length-delimited field.
void put_field(std::string& out, int field, const std::string& content) {
  put_varint(out, static_cast<std::uint64_t>(field) << 3 | 2);
  put_varint(out, content.size());
  out += content;
}

/// An encoded MemberUpdate: state alive, `name`, and `tags` map entries with distinct keys.
std::string raw_member(const std::string& name, int tags = 0) {
  std::string m;
  m += "\x08\x01"; // state = alive
  for (int t = 0; t < tags; ++t) {
    std::string entry;
    put_field(entry, 1, "k" + std::to_string(t));
    put_field(entry, 2, "v");
    put_field(m, 5, entry);
  }
  put_field(m, 2, name);
  return m;
}

/// A name that is not UTF-8: protobuf refuses to parse a message holding it.
const std::string bad_utf8{"\xc3\x28", 2};

TEST(codec_scale, push_pull_of_10000_members_round_trips) {
  const auto pp = state_of(10000);
  const auto body = encode_push_pull(pp);
  const codec_limits defaults;
  EXPECT_LT(body.size(), defaults.max_frame) << "a 10,000-member state fits one frame";
  auto decoded = decode_push_pull(body);
  ASSERT_TRUE(decoded) << render(decoded.error());
  EXPECT_EQ(*decoded, pp);
  // The same state as a TCP frame of request type 1.
  const auto frame = encode_frame(pp);
  auto from_frame = decode_frame(std::string_view{frame}.substr(wire::length_prefix_size));
  ASSERT_TRUE(from_frame) << render(from_frame.error());
  EXPECT_EQ(from_frame->members.size(), 10000u);
  // What issue 15 found: a members limit of 4,096 refuses this state.
  codec_limits old = defaults;
  old.max_push_pull_members = 4096;
  auto refused = decode_push_pull(body, old);
  EXPECT_EQ(code_of(refused), code(errc::invalid_field));
  if (!refused) {
    EXPECT_NE(render(refused.error()).find("10000 members in a push-pull, over 4096"),
              std::string::npos)
        << render(refused.error());
  }
}

TEST(codec_scale, members_limit_is_exact) {
  codec_limits limits;
  limits.max_push_pull_members = 300;
  EXPECT_TRUE(decode_push_pull(encode_push_pull(state_of(300)), limits));
  EXPECT_EQ(code_of(decode_push_pull(encode_push_pull(state_of(301)), limits)),
            code(errc::invalid_field));
  EXPECT_EQ(
      code_of(decode_frame(
          std::string_view{encode_frame(state_of(301))}.substr(wire::length_prefix_size), limits)),
      code(errc::invalid_field));
}

TEST(codec_scale, datagram_updates_limit_stays_small_and_apart) {
  const codec_limits defaults;
  // The per-datagram limit is what a 1,400-byte datagram can hold, not a state's size.
  EXPECT_EQ(defaults.max_updates, datagram_updates_bound(defaults.max_datagram));
  EXPECT_LE(defaults.max_updates, 256u);
  EXPECT_GE(defaults.max_push_pull_members, 10000u);
  // The smallest valid update really is min_encoded_update bytes on the wire.
  packet one;
  one.kind = packet_kind::ack;
  one.sender = "s";
  const auto header = encode_datagram(one).size();
  one.updates = {member_update{member_state::alive, "m", {}, 0, {}, {}}};
  EXPECT_EQ(encode_datagram(one).size() - header, min_encoded_update);
  // A datagram packed with one more minimal update than the limit is refused, however
  // large the datagram limit; one at the limit passes.
  codec_limits relaxed;
  relaxed.max_datagram = 1u << 20;
  packet p = one;
  p.updates.assign(defaults.max_updates, one.updates[0]);
  EXPECT_TRUE(decode_datagram(encode_datagram(p), relaxed));
  p.updates.push_back(one.updates[0]);
  EXPECT_EQ(code_of(decode_datagram(encode_datagram(p), relaxed)), code(errc::invalid_field));
  // ... while a push-pull of that many members is nowhere near its own limit.
  push_pull pp;
  pp.sender = "s";
  pp.members = p.updates;
  EXPECT_TRUE(decode_push_pull(encode_push_pull(pp)));
}

// A count is refused from the wire bytes, before protobuf parses them: each message below
// ends with a name protobuf cannot parse (not UTF-8), so a decoder that parsed first would
// report malformed; the scan reports the count as invalid_field.
TEST(codec_scale, counts_are_refused_before_parsing) {
  codec_limits limits;
  limits.max_push_pull_members = 3;
  limits.max_updates = 3;
  limits.max_tags = 2;
  limits.max_datagram = 1u << 20;

  std::string pp;
  put_field(pp, 1, "sender");
  for (int i = 0; i < 4; ++i)
    put_field(pp, 4, raw_member("m" + std::to_string(i)));
  put_field(pp, 4, raw_member(bad_utf8));
  auto r = decode_push_pull(pp, limits);
  EXPECT_EQ(code_of(r), code(errc::invalid_field));
  if (!r) {
    EXPECT_NE(render(r.error()).find("5 members in a push-pull, over 3"), std::string::npos)
        << render(r.error());
  }
  // Under the limit the same bad name is protobuf's to refuse.
  std::string short_pp;
  put_field(short_pp, 1, "sender");
  put_field(short_pp, 4, raw_member(bad_utf8));
  EXPECT_EQ(code_of(decode_push_pull(short_pp, limits)), code(errc::malformed));

  // Tags of one member.
  std::string tagged;
  put_field(tagged, 1, "sender");
  put_field(tagged, 4, raw_member("m", 3) + std::string{"\x12\x02", 2} + bad_utf8);
  r = decode_push_pull(tagged, limits);
  EXPECT_EQ(code_of(r), code(errc::invalid_field));
  if (!r) {
    EXPECT_NE(render(r.error()).find("3 tags, over 2"), std::string::npos) << render(r.error());
  }

  // Updates of a datagram.
  std::string packet_bytes{"\x08\x01\x10\x01\x22\x01s", 7}; // version, ping, sender "s"
  for (int i = 0; i < 4; ++i)
    put_field(packet_bytes, 8, raw_member("m" + std::to_string(i)));
  put_field(packet_bytes, 8, raw_member(bad_utf8));
  auto d =
      decode_datagram(std::string(1, static_cast<char>(frame_type::plain)) + packet_bytes, limits);
  EXPECT_EQ(code_of(d), code(errc::invalid_field));
  if (!d) {
    EXPECT_NE(render(d.error()).find("5 member updates, over 3"), std::string::npos)
        << render(d.error());
  }
}

// The tags of all members count against one limit too (decoded tags cost ~30x their bytes).
TEST(codec_scale, push_pull_tags_count_in_total) {
  codec_limits limits;
  limits.max_push_pull_tags = 5;
  auto with_tags = [](std::vector<std::size_t> counts) {
    push_pull pp;
    pp.sender = "s";
    for (std::size_t i = 0; i < counts.size(); ++i) {
      member_update u{member_state::alive, "m" + std::to_string(i), "10.0.0.1:7946", 1, {}, {}};
      for (std::size_t t = 0; t < counts[i]; ++t)
        u.tags["k" + std::to_string(t)] = "v";
      pp.members.push_back(std::move(u));
    }
    return encode_push_pull(pp);
  };
  EXPECT_TRUE(decode_push_pull(with_tags({2, 2, 1}), limits));
  auto r = decode_push_pull(with_tags({2, 2, 2}), limits);
  EXPECT_EQ(code_of(r), code(errc::invalid_field));
  if (!r) {
    EXPECT_NE(render(r.error()).find("6 tags in a push-pull, over 5"), std::string::npos)
        << render(r.error());
  }
  // Counted before parsing: the bad name after the tags would make protobuf refuse it.
  std::string pp;
  put_field(pp, 1, "sender");
  for (int i = 0; i < 3; ++i)
    put_field(pp, 4, raw_member("m" + std::to_string(i), 2));
  put_field(pp, 4, raw_member(bad_utf8));
  EXPECT_EQ(code_of(decode_push_pull(pp, limits)), code(errc::invalid_field));
  // The default admits a 10,000-member state with 26 tags a member.
  const codec_limits defaults;
  EXPECT_GE(defaults.max_push_pull_tags, 10000u * 26u);
}

// A Frame may carry its push-pull in several pieces, which protobuf merges: the members of
// all pieces count against one limit.
TEST(codec_scale, frame_pieces_count_together) {
  auto piece = [](int first) {
    std::string pp;
    put_field(pp, 1, "sender");
    for (int i = first; i < first + 3; ++i)
      put_field(pp, 4, raw_member("m" + std::to_string(i)));
    return pp;
  };
  std::string frame;
  put_field(frame, 1, piece(0));
  put_field(frame, 1, piece(3));
  codec_limits limits;
  limits.max_push_pull_members = 6;
  auto merged = decode_frame(frame, limits);
  ASSERT_TRUE(merged) << render(merged.error());
  EXPECT_EQ(merged->members.size(), 6u);
  limits.max_push_pull_members = 5;
  EXPECT_EQ(code_of(decode_frame(frame, limits)), code(errc::invalid_field));
}

// Not a check (tests never assert on time): prints the bytes and the wall time of encoding
// and decoding one full state at n = 1,000 and 10,000, the figures of docs/membership.md
// ("Push-pull size at scale"). A push-pull exchange moves two such states, one each way.
TEST(codec_scale, reports_push_pull_size_and_time) {
  using clock = std::chrono::steady_clock;
  for (std::size_t n : {1000u, 10000u}) {
    const auto pp = state_of(n);
    constexpr int rounds = 5;
    std::string body;
    auto best = clock::duration::max();
    for (int i = 0; i < rounds; ++i) {
      const auto start = clock::now();
      body = encode_push_pull(pp);
      auto decoded = decode_push_pull(body);
      const auto took = clock::now() - start;
      ASSERT_TRUE(decoded) << render(decoded.error());
      best = std::min(best, took);
    }
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(best).count();
    std::cout << "push-pull state of " << n << " members: " << body.size() << " bytes ("
              << body.size() / n << " per member), encode + decode " << us << " us (best of "
              << rounds << ")\n";
    RecordProperty("bytes_" + std::to_string(n), static_cast<int>(body.size()));
    RecordProperty("encode_decode_us_" + std::to_string(n), static_cast<int>(us));
  }
}

} // namespace
} // namespace starling::gossip
