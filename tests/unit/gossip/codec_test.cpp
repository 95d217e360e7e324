// Tests of the gossip wire codec: round trips, every refusal with its errc, robustness
// against garbage and mutations, the TCP frame reader, and the core's size bounds.
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>

#include "gossip.pb.h"
#include "gossip/codec.hpp"
#include "gossip/errc.hpp"
#include "gossip/membership.hpp"

namespace starling::gossip {
namespace {

/// The gossip errc of `err`, or 0 for no error / another category.
int code_of(const caf::error& err) {
  if (!err || err.category() != errc_category)
    return 0;
  return err.code();
}

template <class T> int code_of(const caf::expected<T>& x) { return x ? 0 : code_of(x.error()); }

constexpr int code(errc x) { return static_cast<int>(x); }

member_update make_update(member_state s, std::string name, std::uint64_t inc) {
  member_update u;
  u.state = s;
  u.name = std::move(name);
  u.address = "10.0.0.1:7946";
  u.incarnation = inc;
  u.tags = {{"role", "web"}, {"zone", "eu-1"}};
  if (s == member_state::suspect || s == member_state::dead)
    u.from = "observer";
  return u;
}

packet sample_packet(packet_kind kind) {
  packet p;
  p.kind = kind;
  p.seq = 4242;
  p.sender = "node-a";
  p.sender_address = "127.0.0.1:7946";
  p.target = "node-b";
  p.target_address = "[::1]:7946";
  p.updates = {make_update(member_state::alive, "n1", 1),
               make_update(member_state::suspect, "n2", 7),
               make_update(member_state::dead, "n3", std::numeric_limits<std::uint64_t>::max()),
               make_update(member_state::left, "n4", 0)};
  return p;
}

push_pull sample_push_pull() {
  push_pull pp;
  pp.sender = "node-a";
  pp.sender_address = "127.0.0.1:7946";
  pp.join = true;
  pp.members = {make_update(member_state::alive, "node-a", 3),
                make_update(member_state::dead, "node-z", 9)};
  return pp;
}

/// A datagram holding an arbitrary (possibly invalid) Packet message.
std::string raw_datagram(const v1::Packet& msg) {
  std::string out(1, static_cast<char>(frame_type::plain));
  msg.AppendToString(&out);
  return out;
}

v1::Packet valid_proto_packet() {
  v1::Packet msg;
  msg.set_version(1);
  msg.set_kind(v1::Packet_Kind_KIND_PING);
  msg.set_seq(1);
  msg.set_sender("a");
  return msg;
}

std::string body_of(const std::string& frame) { return frame.substr(4); }

// -- round trips -----------------------------------------------------------------------------

TEST(codec, datagram_round_trip_every_kind) {
  for (auto kind :
       {packet_kind::ping, packet_kind::ping_req, packet_kind::ack, packet_kind::nack}) {
    SCOPED_TRACE(static_cast<int>(kind));
    auto p = sample_packet(kind);
    auto bytes = encode_datagram(p);
    ASSERT_FALSE(bytes.empty());
    EXPECT_EQ(static_cast<std::uint8_t>(bytes[0]), static_cast<std::uint8_t>(frame_type::plain));
    auto decoded = decode_datagram(bytes);
    ASSERT_TRUE(decoded) << render(decoded.error());
    EXPECT_EQ(*decoded, p);
  }
}

TEST(codec, datagram_round_trip_minimal) {
  packet p;
  p.kind = packet_kind::ack;
  p.sender = "x";
  auto decoded = decode_datagram(encode_datagram(p));
  ASSERT_TRUE(decoded) << render(decoded.error());
  EXPECT_EQ(*decoded, p);
}

TEST(codec, push_pull_round_trip) {
  for (bool join : {false, true}) {
    auto pp = sample_push_pull();
    pp.join = join;
    auto frame = encode_frame(pp);
    ASSERT_GE(frame.size(), 4u);
    const std::size_t len = (std::size_t{static_cast<unsigned char>(frame[0])} << 24) |
                            (std::size_t{static_cast<unsigned char>(frame[1])} << 16) |
                            (std::size_t{static_cast<unsigned char>(frame[2])} << 8) |
                            std::size_t{static_cast<unsigned char>(frame[3])};
    EXPECT_EQ(len, frame.size() - 4);
    auto decoded = decode_frame(body_of(frame));
    ASSERT_TRUE(decoded) << render(decoded.error());
    EXPECT_EQ(*decoded, pp);
  }
}

TEST(codec, extension_payloads_and_sections_round_trip) {
  auto p = sample_packet(packet_kind::ping);
  p.extensions = {{7, "route v2"},
                  {7, std::string(max_extension_payload_bytes, '\xff')},
                  {std::numeric_limits<extension_kind>::max(), ""},
                  {1, std::string{"\0bin\0", 5}}};
  codec_limits relaxed;
  relaxed.max_datagram = 1u << 20;
  auto decoded = decode_datagram(encode_datagram(p), relaxed);
  ASSERT_TRUE(decoded) << render(decoded.error());
  EXPECT_EQ(*decoded, p);

  auto pp = sample_push_pull();
  pp.extensions = {{7, "table"}, {8, ""}, {9, std::string(100000, 's')}};
  auto back = decode_frame(body_of(encode_frame(pp)));
  ASSERT_TRUE(back) << render(back.error());
  EXPECT_EQ(*back, pp);
}

TEST(codec, extensions_are_optional_on_the_wire) {
  // A Packet or PushPull from a peer that predates extensions has none: it decodes as
  // before, with no extension; and a message without extensions encodes no field 9 / 5,
  // byte for byte what such a peer sends.
  auto msg = valid_proto_packet();
  auto decoded = decode_datagram(raw_datagram(msg));
  ASSERT_TRUE(decoded) << render(decoded.error());
  EXPECT_TRUE(decoded->extensions.empty());
  auto p = sample_packet(packet_kind::ack);
  v1::Packet parsed;
  ASSERT_TRUE(parsed.ParseFromString(encode_datagram(p).substr(1)));
  EXPECT_EQ(parsed.extensions_size(), 0);
  p.extensions = {{5, "x"}};
  ASSERT_TRUE(parsed.ParseFromString(encode_datagram(p).substr(1)));
  ASSERT_EQ(parsed.extensions_size(), 1);
  EXPECT_EQ(parsed.extensions(0).kind(), 5u);
  EXPECT_EQ(parsed.extensions(0).payload(), "x");
}

TEST(codec, push_pull_without_members_round_trips) {
  push_pull pp;
  pp.sender = "lonely";
  auto decoded = decode_frame(body_of(encode_frame(pp)));
  ASSERT_TRUE(decoded) << render(decoded.error());
  EXPECT_EQ(*decoded, pp);
}

TEST(codec, error_frame_is_peer_refused_with_reason) {
  auto decoded = decode_frame(body_of(encode_error_frame("not an issuer")));
  ASSERT_FALSE(decoded);
  EXPECT_EQ(code_of(decoded), code(errc::peer_refused));
  EXPECT_NE(render(decoded.error()).find("not an issuer"), std::string::npos);
}

// -- admission frames and decode_any_frame -------------------------------------------------

TEST(codec, admission_frame_round_trip) {
  // Opaque bytes, binary included; empty bytes are a (set) admission frame too.
  const std::string binary{"\x0a\x00\xff"
                           "csr",
                           6};
  for (const std::string& bytes : {binary, std::string{}}) {
    auto frame = encode_admission_frame(bytes);
    ASSERT_GE(frame.size(), 4u);
    auto decoded = decode_any_frame(body_of(frame));
    ASSERT_TRUE(decoded) << render(decoded.error());
    ASSERT_TRUE(std::holds_alternative<admission_payload>(*decoded));
    EXPECT_EQ(std::get<admission_payload>(*decoded).bytes, bytes);
  }
}

TEST(codec, decode_any_frame_tells_push_pull_and_error_apart) {
  auto pp = decode_any_frame(body_of(encode_frame(sample_push_pull())));
  ASSERT_TRUE(pp) << render(pp.error());
  ASSERT_TRUE(std::holds_alternative<push_pull>(*pp));
  EXPECT_EQ(std::get<push_pull>(*pp), sample_push_pull());
  auto refused = decode_any_frame(body_of(encode_error_frame("token spent")));
  ASSERT_FALSE(refused);
  EXPECT_EQ(code_of(refused.error()), code(errc::peer_refused));
  EXPECT_NE(render(refused.error()).find("token spent"), std::string::npos);
}

TEST(codec, decode_any_frame_refuses_garbage) {
  EXPECT_EQ(code_of(decode_any_frame("")), code(errc::invalid_field)); // no body
  EXPECT_EQ(code_of(decode_any_frame(std::string{"\xff\xff\xff", 3})), code(errc::malformed));
  codec_limits limits;
  const auto body = body_of(encode_admission_frame(std::string(100, 'x')));
  limits.max_frame = body.size() - 1;
  EXPECT_EQ(code_of(decode_any_frame(body, limits)), code(errc::oversized));
  // Garbage never crashes; a refusal always carries a gossip code.
  std::mt19937 rng{7};
  std::uniform_int_distribution<int> byte{0, 255};
  for (int i = 0; i < 2000; ++i) {
    std::string junk(static_cast<std::size_t>(i % 64), '\0');
    for (auto& c : junk)
      c = static_cast<char>(byte(rng));
    auto any = decode_any_frame(junk);
    EXPECT_TRUE(any || code_of(any) != 0);
  }
}

TEST(codec, admission_frame_is_not_a_push_pull) {
  auto decoded = decode_frame(body_of(encode_admission_frame("csr")));
  ASSERT_FALSE(decoded);
  EXPECT_EQ(code_of(decoded), code(errc::invalid_field));
  EXPECT_NE(render(decoded.error()).find("admission frame"), std::string::npos);
}

// -- datagram refusals -----------------------------------------------------------------------

TEST(codec, refuses_empty_datagram) {
  EXPECT_EQ(code_of(decode_datagram("")), code(errc::truncated));
}

TEST(codec, refuses_oversized_datagram) {
  codec_limits limits;
  auto p = sample_packet(packet_kind::ping);
  auto bytes = encode_datagram(p);
  limits.max_datagram = bytes.size() - 1;
  EXPECT_EQ(code_of(decode_datagram(bytes, limits)), code(errc::oversized));
  limits.max_datagram = bytes.size();
  EXPECT_TRUE(decode_datagram(bytes, limits));
  std::string huge(1401, '\x01');
  EXPECT_EQ(code_of(decode_datagram(huge)), code(errc::oversized));
}

TEST(codec, refuses_unknown_frame_byte) {
  auto bytes = encode_datagram(sample_packet(packet_kind::ping));
  for (int b : {0x00, 0x02, 0x03, 0x7f, 0xff}) {
    SCOPED_TRACE(b);
    bytes[0] = static_cast<char>(b);
    EXPECT_EQ(code_of(decode_datagram(bytes)), code(errc::unknown_frame));
  }
}

TEST(codec, refuses_unparsable_packet) {
  EXPECT_EQ(code_of(decode_datagram(std::string{"\x01\xff\xff\xff\xff", 5})),
            code(errc::malformed));
  // Field 4 (sender, length-delimited) announcing more bytes than present.
  EXPECT_EQ(code_of(decode_datagram(std::string{"\x01\x22\x10"
                                                "ab",
                                                5})),
            code(errc::malformed));
}

TEST(codec, refuses_invalid_utf8_string) {
  google::protobuf::LogSilencer silence; // encoding invalid UTF-8 logs; the test means it
  auto msg = valid_proto_packet();
  msg.set_sender(std::string{"\xc3\x28", 2});
  EXPECT_EQ(code_of(decode_datagram(raw_datagram(msg))), code(errc::malformed));
}

TEST(codec, refuses_other_versions) {
  for (std::uint32_t v : {0u, 2u, 0xffffffffu}) {
    SCOPED_TRACE(v);
    auto msg = valid_proto_packet();
    msg.set_version(v);
    EXPECT_EQ(code_of(decode_datagram(raw_datagram(msg))), code(errc::unsupported_version));
  }
  // A frame byte alone is an empty Packet: version 0.
  EXPECT_EQ(code_of(decode_datagram(std::string(1, '\x01'))), code(errc::unsupported_version));
  EXPECT_TRUE(decode_datagram(raw_datagram(valid_proto_packet())));
}

TEST(codec, refuses_unknown_kind) {
  for (int k : {0, 5, 99, -1}) {
    SCOPED_TRACE(k);
    auto msg = valid_proto_packet();
    msg.set_kind(static_cast<v1::Packet_Kind>(k));
    EXPECT_EQ(code_of(decode_datagram(raw_datagram(msg))), code(errc::invalid_field));
  }
}

TEST(codec, refuses_empty_sender) {
  auto msg = valid_proto_packet();
  msg.clear_sender();
  EXPECT_EQ(code_of(decode_datagram(raw_datagram(msg))), code(errc::invalid_field));
}

TEST(codec, refuses_unknown_member_state_and_empty_name) {
  for (int s : {0, 5, 1000}) {
    SCOPED_TRACE(s);
    auto msg = valid_proto_packet();
    auto* u = msg.add_updates();
    u->set_name("m");
    u->set_state(static_cast<v1::MemberState>(s));
    EXPECT_EQ(code_of(decode_datagram(raw_datagram(msg))), code(errc::invalid_field));
  }
  auto msg = valid_proto_packet();
  msg.add_updates()->set_state(v1::MEMBER_STATE_ALIVE);
  EXPECT_EQ(code_of(decode_datagram(raw_datagram(msg))), code(errc::invalid_field));
}

TEST(codec, refuses_broken_limits) {
  codec_limits limits;
  limits.max_datagram = 1u << 20; // let sizes through to the field checks
  limits.max_name = 8;
  limits.max_address = 12;
  limits.max_tags = 2;
  limits.max_tag_bytes = 4;
  limits.max_updates = 2;
  auto base = [] {
    packet p;
    p.sender = "s";
    p.updates = {make_update(member_state::alive, "m", 1)};
    p.updates[0].tags = {{"a", "b"}};
    p.updates[0].address = "1.2.3.4:5";
    return p;
  };
  ASSERT_TRUE(decode_datagram(encode_datagram(base()), limits));

  std::vector<std::pair<const char*, packet>> cases;
  auto add = [&](const char* what, auto mutate) {
    auto p = base();
    mutate(p);
    cases.emplace_back(what, std::move(p));
  };
  add("sender", [](packet& p) { p.sender = std::string(9, 's'); });
  add("sender_address", [](packet& p) { p.sender_address = std::string(13, 'a'); });
  add("target", [](packet& p) { p.target = std::string(9, 't'); });
  add("target_address", [](packet& p) { p.target_address = std::string(13, 'a'); });
  add("name", [](packet& p) { p.updates[0].name = std::string(9, 'n'); });
  add("address", [](packet& p) { p.updates[0].address = std::string(13, 'a'); });
  add("from", [](packet& p) { p.updates[0].from = std::string(9, 'f'); });
  add("tag count", [](packet& p) { p.updates[0].tags = {{"a", "1"}, {"b", "2"}, {"c", "3"}}; });
  add("tag key", [](packet& p) { p.updates[0].tags = {{"aaaaa", "1"}}; });
  add("tag value", [](packet& p) { p.updates[0].tags = {{"a", "11111"}}; });
  add("updates", [](packet& p) { p.updates.resize(3, p.updates[0]); });
  for (const auto& [what, p] : cases) {
    SCOPED_TRACE(what);
    EXPECT_EQ(code_of(decode_datagram(encode_datagram(p), limits)), code(errc::invalid_field));
  }
  // Exactly at the limits is fine.
  auto p = base();
  p.sender = std::string(8, 's');
  p.updates[0].tags = {{"aaaa", "1111"}, {"bbbb", "2222"}};
  p.updates.resize(2, p.updates[0]);
  EXPECT_TRUE(decode_datagram(encode_datagram(p), limits));
}

TEST(codec, refuses_bad_extension_payloads_before_copying_them) {
  codec_limits limits;
  limits.max_datagram = 1u << 20;
  limits.max_extension_payloads = 2;
  limits.max_extension_payload_bytes = 4;
  auto with = [](std::vector<extension_payload> xs) {
    packet p;
    p.sender = "s";
    p.extensions = std::move(xs);
    return p;
  };
  EXPECT_TRUE(decode_datagram(encode_datagram(with({{1, "1234"}, {1, "5678"}})), limits))
      << "exactly at the limits; one kind may come twice in a datagram";
  struct bad {
    const char* what;
    packet p;
    const char* says;
  };
  for (const auto& [what, p, says] :
       {bad{"count", with({{1, "a"}, {2, "b"}, {3, "c"}}), "3 extension payloads, over 2"},
        bad{"size", with({{1, "12345"}}), "5 bytes exceeds 4"},
        bad{"kind 0", with({{0, "a"}}), "kind 0"}}) {
    SCOPED_TRACE(what);
    auto r = decode_datagram(encode_datagram(p), limits);
    EXPECT_EQ(code_of(r), code(errc::invalid_field));
    if (!r) {
      EXPECT_NE(render(r.error()).find(says), std::string::npos) << render(r.error());
    }
  }
  // The defaults are the bounds the core packs with.
  const codec_limits defaults;
  EXPECT_EQ(defaults.max_extension_payloads, max_extension_payloads);
  EXPECT_EQ(defaults.max_extension_payload_bytes, max_extension_payload_bytes);
  EXPECT_EQ(defaults.max_extension_sections, max_extension_sections);
  EXPECT_EQ(defaults.max_extension_section_bytes, max_extension_section_bytes);
}

TEST(codec, refuses_bad_extension_sections) {
  codec_limits limits;
  limits.max_extension_sections = 2;
  limits.max_extension_section_bytes = 8;
  auto with = [](std::vector<extension_payload> xs) {
    push_pull pp;
    pp.sender = "s";
    pp.extensions = std::move(xs);
    return pp;
  };
  EXPECT_TRUE(decode_frame(body_of(encode_frame(with({{1, "12345678"}, {2, ""}}))), limits));
  struct bad {
    const char* what;
    push_pull pp;
    const char* says;
  };
  for (const auto& [what, pp, says] :
       {bad{"count", with({{1, "a"}, {2, "b"}, {3, "c"}}), "3 extension sections, over 2"},
        bad{"size", with({{1, "123456789"}}), "9 bytes exceeds 8"},
        bad{"kind 0", with({{0, "a"}}), "kind 0"},
        bad{"same kind twice", with({{4, "a"}, {4, "b"}}), "two extension sections of kind 4"}}) {
    SCOPED_TRACE(what);
    auto r = decode_frame(body_of(encode_frame(pp)), limits);
    EXPECT_EQ(code_of(r), code(errc::invalid_field));
    if (!r) {
      EXPECT_NE(render(r.error()).find(says), std::string::npos) << render(r.error());
    }
  }
  // A section over the default limit (8 MiB) is refused by default.
  auto big = with({{1, std::string(max_extension_section_bytes + 1, 'x')}});
  EXPECT_EQ(code_of(decode_frame(body_of(encode_frame(big)))), code(errc::invalid_field));
}

// -- frame refusals --------------------------------------------------------------------------

TEST(codec, refuses_bad_frames) {
  EXPECT_EQ(code_of(decode_frame("")), code(errc::invalid_field)); // no body
  EXPECT_EQ(code_of(decode_frame(std::string{"\xff\xff\xff", 3})), code(errc::malformed));
  push_pull pp = sample_push_pull();
  pp.sender.clear();
  EXPECT_EQ(code_of(decode_frame(body_of(encode_frame(pp)))), code(errc::invalid_field));

  codec_limits limits;
  limits.max_push_pull_members = 1;
  EXPECT_EQ(code_of(decode_frame(body_of(encode_frame(sample_push_pull())), limits)),
            code(errc::invalid_field));
  // The per-datagram update limit does not apply to a push-pull's members.
  limits = codec_limits{};
  limits.max_updates = 1;
  EXPECT_TRUE(decode_frame(body_of(encode_frame(sample_push_pull())), limits));
  pp = sample_push_pull();
  pp.members[1].state = static_cast<member_state>(9);
  EXPECT_EQ(code_of(decode_frame(body_of(encode_frame(pp)))), code(errc::invalid_field));

  auto body = body_of(encode_frame(sample_push_pull()));
  limits = codec_limits{};
  limits.max_frame = body.size() - 1;
  EXPECT_EQ(code_of(decode_frame(body, limits)), code(errc::oversized));
}

// -- robustness ------------------------------------------------------------------------------

TEST(codec, random_garbage_never_crashes) {
  std::mt19937_64 rng{20240601};
  std::size_t ok = 0;
  for (int i = 0; i < 4000; ++i) {
    std::string bytes(rng() % 1500, '\0');
    for (auto& c : bytes)
      c = static_cast<char>(rng());
    if (i % 2 == 0 && !bytes.empty())
      bytes[0] = '\x01';
    auto d = decode_datagram(bytes);
    auto f = decode_frame(bytes);
    if (d)
      ++ok;
    EXPECT_TRUE(d || code_of(d) != 0);
    EXPECT_TRUE(f || code_of(f) != 0);
  }
  RecordProperty("decoded", static_cast<int>(ok));
}

TEST(codec, mutations_and_truncations_never_crash) {
  std::mt19937_64 rng{7};
  const auto datagram = encode_datagram(sample_packet(packet_kind::ping_req));
  const auto frame = body_of(encode_frame(sample_push_pull()));
  for (int i = 0; i < 3000; ++i) {
    for (const auto* original : {&datagram, &frame}) {
      std::string bytes = *original;
      switch (rng() % 4) {
      case 0:
        bytes.resize(rng() % (bytes.size() + 1));
        break;
      case 1:
        for (int n = 1 + static_cast<int>(rng() % 4); n > 0; --n)
          bytes[rng() % bytes.size()] = static_cast<char>(rng());
        break;
      case 2:
        bytes[rng() % bytes.size()] ^= static_cast<char>(1u << (rng() % 8));
        break;
      default: {
        const auto at = rng() % (bytes.size() + 1);
        std::string junk(rng() % 16, '\0');
        for (auto& c : junk)
          c = static_cast<char>(rng());
        bytes.insert(at, junk);
      }
      }
      if (original == &datagram) {
        auto d = decode_datagram(bytes);
        EXPECT_TRUE(d || code_of(d) != 0);
      } else {
        auto f = decode_frame(bytes);
        EXPECT_TRUE(f || code_of(f) != 0);
      }
    }
  }
}

// -- frame_reader ----------------------------------------------------------------------------

TEST(frame_reader, byte_by_byte) {
  const auto frame = encode_frame(sample_push_pull());
  frame_reader reader;
  for (std::size_t i = 0; i + 1 < frame.size(); ++i) {
    reader.feed(frame.substr(i, 1));
    EXPECT_FALSE(reader.next().has_value()) << "at byte " << i;
  }
  reader.feed(frame.substr(frame.size() - 1));
  auto body = reader.next();
  ASSERT_TRUE(body.has_value());
  ASSERT_TRUE(*body);
  EXPECT_EQ(**body, body_of(frame));
  EXPECT_FALSE(reader.next().has_value());
}

TEST(frame_reader, several_frames_in_one_feed_and_split) {
  const auto a = encode_frame(sample_push_pull());
  const auto b = encode_error_frame("nope");
  auto pp = sample_push_pull();
  pp.sender = "other";
  const auto c = encode_frame(pp);
  const auto all = a + b + c;
  frame_reader reader;
  reader.feed(all.substr(0, a.size() + b.size() + 3)); // a, b and part of c's prefix
  auto r1 = reader.next();
  auto r2 = reader.next();
  ASSERT_TRUE(r1 && *r1);
  ASSERT_TRUE(r2 && *r2);
  EXPECT_EQ(**r1, body_of(a));
  EXPECT_EQ(**r2, body_of(b));
  EXPECT_FALSE(reader.next().has_value());
  reader.feed(all.substr(a.size() + b.size() + 3));
  auto r3 = reader.next();
  ASSERT_TRUE(r3 && *r3);
  auto decoded = decode_frame(**r3);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(*decoded, pp);
  EXPECT_EQ(code_of(decode_frame(**r2)), code(errc::peer_refused));
}

TEST(frame_reader, oversized_length_fails_for_good) {
  frame_reader reader{1000};
  reader.feed(std::string{"\x00\x00\x03\xe9", 4}); // 1001
  for (int i = 0; i < 3; ++i) {
    auto r = reader.next();
    ASSERT_TRUE(r.has_value());
    ASSERT_FALSE(*r);
    EXPECT_EQ(code_of(r->error()), code(errc::oversized));
    reader.feed(encode_frame(sample_push_pull())); // ignored once failed
  }
  frame_reader huge;
  huge.feed(std::string{"\xff\xff\xff\xff", 4});
  auto r = huge.next();
  ASSERT_TRUE(r && !*r);
  EXPECT_EQ(code_of(r->error()), code(errc::oversized));
}

TEST(frame_reader, zero_length_is_malformed_for_good) {
  frame_reader reader;
  reader.feed(std::string(4, '\0'));
  for (int i = 0; i < 3; ++i) {
    auto r = reader.next();
    ASSERT_TRUE(r && !*r);
    EXPECT_EQ(code_of(r->error()), code(errc::malformed));
  }
}

TEST(frame_reader, exactly_max_frame_is_accepted) {
  const auto frame = encode_frame(sample_push_pull());
  frame_reader reader{frame.size() - 4};
  reader.feed(frame);
  auto r = reader.next();
  ASSERT_TRUE(r && *r);
  EXPECT_EQ(**r, body_of(frame));
}

// -- the core's size bounds ------------------------------------------------------------------

std::string random_string(std::mt19937_64& rng, std::size_t max_len, std::size_t min_len = 0) {
  // Bias towards the extremes: empty, maximal, anything between.
  std::size_t len = 0;
  switch (rng() % 4) {
  case 0:
    len = min_len;
    break;
  case 1:
    len = max_len;
    break;
  default:
    len = min_len + rng() % (max_len - min_len + 1);
  }
  std::string s(len, '\0');
  for (auto& c : s)
    c = static_cast<char>(0x20 + rng() % 0x5f); // printable ASCII (valid UTF-8)
  return s;
}

std::uint64_t random_u64(std::mt19937_64& rng) {
  switch (rng() % 4) {
  case 0:
    return 0;
  case 1:
    return std::numeric_limits<std::uint64_t>::max();
  default:
    return rng() >> (rng() % 64);
  }
}

member_update random_update(std::mt19937_64& rng, const codec_limits& limits) {
  member_update u;
  u.state = static_cast<member_state>(1 + rng() % 4);
  u.name = random_string(rng, limits.max_name, 1);
  u.address = random_string(rng, limits.max_address);
  u.incarnation = random_u64(rng);
  u.from = random_string(rng, limits.max_name);
  const std::size_t tags = rng() % 3 == 0 ? limits.max_tags : rng() % (limits.max_tags + 1);
  for (std::size_t i = 0; i < tags; ++i)
    u.tags.emplace(std::to_string(i) + random_string(rng, limits.max_tag_bytes - 2),
                   random_string(rng, limits.max_tag_bytes));
  return u;
}

packet random_header(std::mt19937_64& rng, const codec_limits& limits) {
  packet p;
  p.kind = static_cast<packet_kind>(1 + rng() % 4);
  p.seq = static_cast<std::uint32_t>(random_u64(rng));
  p.sender = random_string(rng, limits.max_name, 1);
  p.sender_address = random_string(rng, limits.max_address);
  p.target = random_string(rng, limits.max_name);
  p.target_address = random_string(rng, limits.max_address);
  return p;
}

TEST(codec_bounds, core_size_bounds_hold) {
  const codec_limits limits;
  std::mt19937_64 rng{0x5eed};
  for (int i = 0; i < 2000; ++i) {
    SCOPED_TRACE(i);
    auto p = random_header(rng, limits);
    const auto header = encode_datagram(p).size();
    ASSERT_LE(header, encoded_header_bound(p));
    auto u = random_update(rng, limits);
    p.updates.push_back(u);
    const auto with_one = encode_datagram(p).size();
    ASSERT_LE(with_one - header, encoded_size_bound(u));
    // An extension payload: kind and size from the extremes to anything between.
    extension_payload x;
    x.kind = static_cast<extension_kind>(rng() % 3 == 0 ? std::numeric_limits<std::uint32_t>::max()
                                                        : 1 + rng() % 300);
    x.bytes = random_string(rng, limits.max_extension_payload_bytes);
    p.extensions.push_back(x);
    const auto with_payload = encode_datagram(p).size();
    ASSERT_LE(with_payload - with_one, extension_payload_bound(x.kind, x.bytes.size()));
    // The same as a push-pull section: the bound covers the element in the PushPull (the
    // enclosing Frame's length varint may grow by a byte; the simulator counts that apart).
    push_pull pp;
    pp.sender = "s";
    v1::Frame bare, with_section;
    ASSERT_TRUE(bare.ParseFromString(body_of(encode_frame(pp))));
    pp.extensions.push_back(x);
    ASSERT_TRUE(with_section.ParseFromString(body_of(encode_frame(pp))));
    ASSERT_LE(with_section.push_pull().ByteSizeLong() - bare.push_pull().ByteSizeLong(),
              extension_payload_bound(x.kind, x.bytes.size()));
  }
}

} // namespace
} // namespace starling::gossip
