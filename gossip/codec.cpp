// Wire codec of the gossip protocol (see codec.hpp). Decoding treats every byte as hostile:
// no exceptions, no aborts, every limit of codec_limits checked before a struct is built.
#include "gossip/codec.hpp"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <utility>

#include <google/protobuf/arena.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/wire_format_lite.h>

#include "gossip.pb.h"
#include "gossip/errc.hpp"
#include "gossip/wire_scan.hpp"

namespace starling::gossip {

namespace {

/// Protocol version written in and required of every Packet.
constexpr std::uint32_t protocol_version = 1;

/// Longest peer error reason kept in an error (the rest is cut).
constexpr std::size_t max_reason = 256;

v1::MemberState to_proto(member_state s) {
  switch (s) {
  case member_state::alive:
    return v1::MEMBER_STATE_ALIVE;
  case member_state::suspect:
    return v1::MEMBER_STATE_SUSPECT;
  case member_state::dead:
    return v1::MEMBER_STATE_DEAD;
  case member_state::left:
    return v1::MEMBER_STATE_LEFT;
  }
  return v1::MEMBER_STATE_UNSPECIFIED;
}

v1::Packet_Kind to_proto(packet_kind k) {
  switch (k) {
  case packet_kind::ping:
    return v1::Packet_Kind_KIND_PING;
  case packet_kind::ping_req:
    return v1::Packet_Kind_KIND_PING_REQ;
  case packet_kind::ack:
    return v1::Packet_Kind_KIND_ACK;
  case packet_kind::nack:
    return v1::Packet_Kind_KIND_NACK;
  }
  return v1::Packet_Kind_KIND_UNSPECIFIED;
}

void to_proto(const member_update& u, v1::MemberUpdate& out) {
  out.set_state(to_proto(u.state));
  out.set_name(u.name);
  out.set_address(u.address);
  out.set_incarnation(u.incarnation);
  auto& tags = *out.mutable_tags();
  for (const auto& [k, v] : u.tags)
    tags[k] = v;
  out.set_from(u.from);
}

/// Parses `bytes` into `msg`. Protobuf logs invalid UTF-8 in string fields at ERROR level;
/// for untrusted input that would let any sender flood stderr, so logging is silenced
/// while parsing (the failure is reported as an error value instead).
template <class Message> bool parse(Message& msg, std::string_view bytes) {
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    return false;
  google::protobuf::LogSilencer silence;
  return msg.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

/// The arena of one datagram's message, its first block on the caller's stack. Built and
/// parsed on the heap, a datagram's two dozen updates of three strings each were as many
/// allocations and frees per datagram, a quarter of a simulated partition's CPU. Where the
/// message lives changes neither the bytes it serializes to nor what a parse yields; a
/// datagram larger than the block (limits.max_datagram allows it) takes heap blocks.
class datagram_arena {
public:
  datagram_arena() : arena_(options(block_)) {}
  datagram_arena(const datagram_arena&) = delete;
  datagram_arena& operator=(const datagram_arena&) = delete;

  /// The arena; messages created in it live until this object goes.
  [[nodiscard]] google::protobuf::Arena* get() noexcept { return &arena_; }

private:
  static google::protobuf::ArenaOptions options(char* block) {
    google::protobuf::ArenaOptions o;
    o.initial_block = block;
    o.initial_block_size = block_size;
    return o;
  }

  static constexpr std::size_t block_size = 16 * 1024;
  /// Declared before arena_: it must exist when the arena is built and outlive it.
  alignas(std::max_align_t) char block_[block_size];
  google::protobuf::Arena arena_;
};

caf::error too_long(const char* what, std::size_t size, std::size_t limit) {
  return make_error(errc::invalid_field, std::string{what} + " of " + std::to_string(size) +
                                             " bytes exceeds " + std::to_string(limit));
}

// -- counting on the wire, before parsing ----------------------------------------------------
//
// Protobuf builds every entry of a repeated field while it parses, so a 16 MiB frame of
// 7-byte members would cost millions of objects before convert_push_pull could count them.
// The scan below reads the tags of the wire bytes (no allocation) and refuses a message whose
// counts break the limits before ParseFromArray sees it.

using wire_format = google::protobuf::internal::WireFormatLite;

/// Field numbers of proto/gossip.proto that the scan counts.
constexpr int packet_updates_field = 8;       // Packet.updates
constexpr int packet_extensions_field = 9;    // Packet.extensions
constexpr int push_pull_members_field = 4;    // PushPull.members
constexpr int push_pull_extensions_field = 5; // PushPull.extensions
constexpr int member_tags_field = 5;          // MemberUpdate.tags (map entries)
constexpr int frame_push_pull_field = 1;      // Frame.push_pull

caf::error malformed_wire(const char* what) {
  return make_error(errc::malformed, std::string{what} + " is not valid protobuf wire format");
}

/// Walks the fields of one message's bytes (gossip/wire_scan.hpp); `what` names the message
/// in errors (malformed).
template <class Visit>
caf::error walk_fields(std::string_view bytes, const char* what, Visit&& visit) {
  return gossip::walk_fields(
      bytes, [what] { return malformed_wire(what); }, std::forward<Visit>(visit));
}

/// Checks the number of tags of one encoded MemberUpdate; adds it to `total`.
caf::error scan_member(std::string_view bytes, const codec_limits& limits, std::size_t& total) {
  std::size_t tags = 0;
  auto err = walk_fields(bytes, "a member update", [&tags](int field, std::string_view) {
    if (field == member_tags_field)
      ++tags;
    return caf::error{};
  });
  if (err)
    return err;
  if (tags > limits.max_tags)
    return make_error(errc::invalid_field, "a member update has " + std::to_string(tags) +
                                               " tags, over " + std::to_string(limits.max_tags));
  total += tags;
  return {};
}

/// Entries counted on the wire in one Packet or PushPull (a Frame may hold its PushPull in
/// several pieces, which the parser merges: their counts add up).
struct wire_counts {
  std::size_t updates = 0;    ///< member updates (Packet) or members (PushPull)
  std::size_t extensions = 0; ///< extension payloads (Packet) or sections (PushPull)
  std::size_t tags = 0;       ///< tag entries of all the updates or members
};

/// Counts the updates and extensions of one encoded Packet or PushPull into `counts`,
/// checking every update's tags on the way.
caf::error scan_message(std::string_view bytes, int updates_field, int extensions_field,
                        const char* what, const codec_limits& limits, wire_counts& counts) {
  return walk_fields(bytes, what, [&](int field, std::string_view content) {
    if (field == updates_field) {
      ++counts.updates;
      return scan_member(content, limits, counts.tags);
    }
    if (field == extensions_field)
      ++counts.extensions;
    return caf::error{};
  });
}

/// Refuses counts over their limits (the texts of convert_updates and convert_extensions).
caf::error check_counts(const wire_counts& counts, std::size_t max_updates,
                        const char* updates_what, std::size_t max_extensions,
                        const char* extensions_what) {
  if (counts.updates > max_updates)
    return make_error(errc::invalid_field, std::to_string(counts.updates) + " " + updates_what +
                                               ", over " + std::to_string(max_updates));
  if (counts.extensions > max_extensions)
    return make_error(errc::invalid_field, std::to_string(counts.extensions) + " " +
                                               extensions_what + "s, over " +
                                               std::to_string(max_extensions));
  return {};
}

/// Checks the counts of an encoded Packet against `limits` before it is parsed.
caf::error scan_packet(std::string_view bytes, const codec_limits& limits) {
  wire_counts counts;
  if (auto err = scan_message(bytes, packet_updates_field, packet_extensions_field, "datagram",
                              limits, counts))
    return err;
  return check_counts(counts, limits.max_updates, "member updates", limits.max_extension_payloads,
                      "extension payload");
}

/// Checks the counts of an encoded PushPull into `counts` (a Frame's pieces add up).
caf::error scan_push_pull(std::string_view bytes, const codec_limits& limits, wire_counts& counts) {
  return scan_message(bytes, push_pull_members_field, push_pull_extensions_field, "push-pull",
                      limits, counts);
}

caf::error check_push_pull_counts(const wire_counts& counts, const codec_limits& limits) {
  if (counts.tags > limits.max_push_pull_tags)
    return make_error(errc::invalid_field, std::to_string(counts.tags) +
                                               " tags in a push-pull, over " +
                                               std::to_string(limits.max_push_pull_tags));
  return check_counts(counts, limits.max_push_pull_members, "members in a push-pull",
                      limits.max_extension_sections, "extension section");
}

/// Checks the counts of the push-pull an encoded Frame carries (if any) before it is parsed.
caf::error scan_frame(std::string_view bytes, const codec_limits& limits) {
  wire_counts counts;
  auto err = walk_fields(bytes, "frame", [&](int field, std::string_view content) {
    return field == frame_push_pull_field ? scan_push_pull(content, limits, counts) : caf::error{};
  });
  if (err)
    return err;
  return check_push_pull_counts(counts, limits);
}

/// Converts one MemberUpdate, checking every field against `limits`.
caf::expected<member_update> from_proto(const v1::MemberUpdate& in, const codec_limits& limits) {
  const int state = static_cast<int>(in.state());
  if (state == v1::MEMBER_STATE_UNSPECIFIED || !v1::MemberState_IsValid(state))
    return make_error(errc::invalid_field, "member state " + std::to_string(state));
  if (in.name().empty())
    return make_error(errc::invalid_field, "member update without a name");
  if (in.name().size() > limits.max_name)
    return too_long("member name", in.name().size(), limits.max_name);
  if (in.address().size() > limits.max_address)
    return too_long("member address", in.address().size(), limits.max_address);
  if (in.from().size() > limits.max_name)
    return too_long("member 'from'", in.from().size(), limits.max_name);
  if (in.tags_size() < 0 || static_cast<std::size_t>(in.tags_size()) > limits.max_tags)
    return make_error(errc::invalid_field, "member " + in.name() + " has " +
                                               std::to_string(in.tags_size()) + " tags, over " +
                                               std::to_string(limits.max_tags));
  member_update out;
  out.state = static_cast<member_state>(state);
  out.name = in.name();
  out.address = in.address();
  out.incarnation = in.incarnation();
  out.from = in.from();
  for (const auto& [k, v] : in.tags()) {
    if (k.size() > limits.max_tag_bytes)
      return too_long("tag key", k.size(), limits.max_tag_bytes);
    if (v.size() > limits.max_tag_bytes)
      return too_long("tag value", v.size(), limits.max_tag_bytes);
    out.tags.emplace(k, v);
  }
  return out;
}

/// Converts the updates of a Packet (at most `max_count`, "member updates") or the members of
/// a PushPull ("members in a push-pull"). The count was checked on the wire already
/// (scan_packet, scan_push_pull); checked again so that no caller depends on that.
template <class Repeated>
caf::error convert_updates(const Repeated& in, const codec_limits& limits, std::size_t max_count,
                           const char* what, std::vector<member_update>& out) {
  if (in.size() < 0 || static_cast<std::size_t>(in.size()) > max_count)
    return make_error(errc::invalid_field, std::to_string(in.size()) + " " + what + ", over " +
                                               std::to_string(max_count));
  out.reserve(static_cast<std::size_t>(in.size()));
  for (const auto& u : in) {
    auto converted = from_proto(u, limits);
    if (!converted)
      return std::move(converted.error());
    out.push_back(std::move(*converted));
  }
  return {};
}

/// Appends `in` to a repeated Extension field.
template <class Repeated>
void extensions_to_proto(const std::vector<extension_payload>& in, Repeated& out) {
  out.Reserve(static_cast<int>(in.size()));
  for (const auto& e : in) {
    auto& x = *out.Add();
    x.set_kind(e.kind);
    x.set_payload(e.bytes);
  }
}

/// Converts a repeated Extension field, checking the count, then every kind and size, before
/// anything is copied. `what` names them in errors ("extension payload", "extension
/// section"); `unique_kinds`: two entries of one kind are refused (push-pull sections).
template <class Repeated>
caf::error convert_extensions(Repeated& in, std::size_t max_count, std::size_t max_bytes,
                              const char* what, bool unique_kinds,
                              std::vector<extension_payload>& out) {
  if (in.size() < 0 || static_cast<std::size_t>(in.size()) > max_count)
    return make_error(errc::invalid_field, std::to_string(in.size()) + " " + what + "s, over " +
                                               std::to_string(max_count));
  for (int i = 0; i < in.size(); ++i) {
    const auto& x = in.Get(i);
    if (x.kind() == 0)
      return make_error(errc::invalid_field, std::string{what} + " of kind 0");
    if (x.payload().size() > max_bytes)
      return make_error(errc::invalid_field, std::string{what} + " of kind " +
                                                 std::to_string(x.kind()) + ": " +
                                                 std::to_string(x.payload().size()) +
                                                 " bytes exceeds " + std::to_string(max_bytes));
    if (unique_kinds)
      for (int j = 0; j < i; ++j)
        if (in.Get(j).kind() == x.kind())
          return make_error(errc::invalid_field,
                            "two " + std::string{what} + "s of kind " + std::to_string(x.kind()));
  }
  out.reserve(static_cast<std::size_t>(in.size()));
  for (auto& x : in)
    out.push_back(extension_payload{x.kind(), std::move(*x.mutable_payload())});
  return {};
}

/// Checks and converts a received PushPull (moved from).
caf::expected<push_pull> convert_push_pull(v1::PushPull& msg, const codec_limits& limits) {
  if (msg.sender().empty())
    return make_error(errc::invalid_field, "push-pull without a sender");
  if (msg.sender().size() > limits.max_name)
    return too_long("push-pull sender", msg.sender().size(), limits.max_name);
  if (msg.sender_address().size() > limits.max_address)
    return too_long("push-pull sender address", msg.sender_address().size(), limits.max_address);
  std::size_t tags = 0;
  for (const auto& m : msg.members())
    tags += static_cast<std::size_t>(std::max(m.tags_size(), 0));
  if (tags > limits.max_push_pull_tags)
    return make_error(errc::invalid_field, std::to_string(tags) + " tags in a push-pull, over " +
                                               std::to_string(limits.max_push_pull_tags));
  push_pull out;
  out.join = msg.join();
  if (auto err = convert_updates(msg.members(), limits, limits.max_push_pull_members,
                                 "members in a push-pull", out.members))
    return err;
  if (auto err = convert_extensions(*msg.mutable_extensions(), limits.max_extension_sections,
                                    limits.max_extension_section_bytes, "extension section", true,
                                    out.extensions))
    return err;
  out.sender = std::move(*msg.mutable_sender());
  out.sender_address = std::move(*msg.mutable_sender_address());
  return out;
}

/// Fills `msg` from `pp`.
void to_proto(const push_pull& pp, v1::PushPull& msg) {
  msg.set_sender(pp.sender);
  msg.set_sender_address(pp.sender_address);
  msg.set_join(pp.join);
  msg.mutable_members()->Reserve(static_cast<int>(pp.members.size()));
  for (const auto& u : pp.members)
    to_proto(u, *msg.add_members());
  extensions_to_proto(pp.extensions, *msg.mutable_extensions());
}

/// Serializes `frame` behind a 4-byte big-endian length.
std::string frame_bytes(const v1::Frame& frame) {
  const std::size_t size = frame.ByteSizeLong();
  std::string out(wire::length_prefix_size + size, '\0');
  wire::put_length(static_cast<std::uint32_t>(size), out.data());
  if (size > 0)
    frame.SerializeWithCachedSizesToArray(reinterpret_cast<std::uint8_t*>(out.data()) +
                                          wire::length_prefix_size);
  return out;
}

} // namespace

std::string encode_datagram(const packet& p) {
  datagram_arena arena;
  auto& msg = *google::protobuf::Arena::CreateMessage<v1::Packet>(arena.get());
  msg.set_version(protocol_version);
  msg.set_kind(to_proto(p.kind));
  msg.set_seq(p.seq);
  msg.set_sender(p.sender);
  msg.set_sender_address(p.sender_address);
  msg.set_target(p.target);
  msg.set_target_address(p.target_address);
  msg.mutable_updates()->Reserve(static_cast<int>(p.updates.size()));
  for (const auto& u : p.updates)
    to_proto(u, *msg.add_updates());
  extensions_to_proto(p.extensions, *msg.mutable_extensions());
  std::string out(1, static_cast<char>(frame_type::plain));
  msg.AppendToString(&out);
  return out;
}

caf::expected<packet> decode_datagram(std::string_view bytes, const codec_limits& limits) {
  if (bytes.empty())
    return make_error(errc::truncated, "empty datagram");
  if (bytes.size() > limits.max_datagram)
    return make_error(errc::oversized, "datagram of " + std::to_string(bytes.size()) +
                                           " bytes exceeds " + std::to_string(limits.max_datagram));
  const auto type = static_cast<std::uint8_t>(bytes.front());
  // A sealed datagram must be opened by the sealer before it reaches the codec.
  if (type != static_cast<std::uint8_t>(frame_type::plain))
    return make_error(errc::unknown_frame, "datagram frame byte " + std::to_string(type));
  if (auto err = scan_packet(bytes.substr(1), limits))
    return err;
  datagram_arena arena;
  auto& msg = *google::protobuf::Arena::CreateMessage<v1::Packet>(arena.get());
  if (!parse(msg, bytes.substr(1)))
    return make_error(errc::malformed, "datagram does not parse as a Packet");
  if (msg.version() != protocol_version)
    return make_error(errc::unsupported_version, "packet version " + std::to_string(msg.version()));
  const int kind = static_cast<int>(msg.kind());
  if (kind == v1::Packet_Kind_KIND_UNSPECIFIED || !v1::Packet_Kind_IsValid(kind))
    return make_error(errc::invalid_field, "packet kind " + std::to_string(kind));
  if (msg.sender().empty())
    return make_error(errc::invalid_field, "packet without a sender");
  if (msg.sender().size() > limits.max_name)
    return too_long("packet sender", msg.sender().size(), limits.max_name);
  if (msg.sender_address().size() > limits.max_address)
    return too_long("packet sender address", msg.sender_address().size(), limits.max_address);
  if (msg.target().size() > limits.max_name)
    return too_long("packet target", msg.target().size(), limits.max_name);
  if (msg.target_address().size() > limits.max_address)
    return too_long("packet target address", msg.target_address().size(), limits.max_address);
  packet out;
  out.kind = static_cast<packet_kind>(kind);
  out.seq = msg.seq();
  if (auto err =
          convert_updates(msg.updates(), limits, limits.max_updates, "member updates", out.updates))
    return err;
  if (auto err = convert_extensions(*msg.mutable_extensions(), limits.max_extension_payloads,
                                    limits.max_extension_payload_bytes, "extension payload", false,
                                    out.extensions))
    return err;
  out.sender = std::move(*msg.mutable_sender());
  out.sender_address = std::move(*msg.mutable_sender_address());
  out.target = std::move(*msg.mutable_target());
  out.target_address = std::move(*msg.mutable_target_address());
  return out;
}

std::string encode_frame(const push_pull& pp) {
  v1::Frame frame;
  to_proto(pp, *frame.mutable_push_pull());
  return frame_bytes(frame);
}

std::string encode_push_pull(const push_pull& pp) {
  v1::PushPull msg;
  to_proto(pp, msg);
  return msg.SerializeAsString();
}

caf::expected<push_pull> decode_push_pull(std::string_view bytes, const codec_limits& limits) {
  if (bytes.size() > limits.max_frame)
    return make_error(errc::oversized, "push-pull of " + std::to_string(bytes.size()) +
                                           " bytes exceeds " + std::to_string(limits.max_frame));
  wire_counts counts;
  if (auto err = scan_push_pull(bytes, limits, counts))
    return err;
  if (auto err = check_push_pull_counts(counts, limits))
    return err;
  v1::PushPull msg;
  if (!parse(msg, bytes))
    return make_error(errc::malformed, "push-pull does not parse as a PushPull");
  return convert_push_pull(msg, limits);
}

std::string encode_error_frame(std::string_view reason) {
  v1::Frame frame;
  frame.set_error(std::string{reason});
  return frame_bytes(frame);
}

std::string encode_admission_frame(std::string_view body) {
  v1::Frame frame;
  frame.set_admission(std::string{body});
  return frame_bytes(frame);
}

caf::expected<frame_body> decode_any_frame(std::string_view body, const codec_limits& limits) {
  if (body.size() > limits.max_frame)
    return make_error(errc::oversized, "frame of " + std::to_string(body.size()) +
                                           " bytes exceeds " + std::to_string(limits.max_frame));
  if (auto err = scan_frame(body, limits))
    return err;
  v1::Frame frame;
  if (!parse(frame, body))
    return make_error(errc::malformed, "frame does not parse as a Frame");
  switch (frame.body_case()) {
  case v1::Frame::kPushPull:
    break;
  case v1::Frame::kAdmission:
    return frame_body{admission_payload{std::move(*frame.mutable_admission())}};
  case v1::Frame::kError: {
    auto reason = frame.error();
    if (reason.size() > max_reason)
      reason.resize(max_reason);
    return make_error(errc::peer_refused, std::move(reason));
  }
  case v1::Frame::BODY_NOT_SET:
  default:
    return make_error(errc::invalid_field, "frame without a body");
  }
  auto pp = convert_push_pull(*frame.mutable_push_pull(), limits);
  if (!pp)
    return std::move(pp.error());
  return frame_body{std::move(*pp)};
}

caf::expected<push_pull> decode_frame(std::string_view body, const codec_limits& limits) {
  auto decoded = decode_any_frame(body, limits);
  if (!decoded)
    return std::move(decoded.error());
  if (auto* pp = std::get_if<push_pull>(&*decoded))
    return std::move(*pp);
  return make_error(errc::invalid_field, "an admission frame where a push-pull was expected");
}

frame_reader::frame_reader(std::size_t max_frame) : reader_(max_frame) {
  // Nothing else: the framing lives in wire::frame_reader.
}

void frame_reader::feed(std::string_view bytes) { reader_.feed(bytes); }

std::optional<caf::expected<std::string>> frame_reader::next() {
  auto r = reader_.next();
  switch (r.what) {
  case wire::frame_reader::status::need_more:
    return std::nullopt;
  case wire::frame_reader::status::frame:
    return caf::expected<std::string>{std::move(r.body)};
  case wire::frame_reader::status::empty:
    return caf::expected<std::string>{make_error(errc::malformed, "frame of length 0")};
  case wire::frame_reader::status::oversized:
    break;
  }
  return caf::expected<std::string>{
      make_error(errc::oversized, "frame of " + std::to_string(r.length) + " bytes exceeds " +
                                      std::to_string(reader_.max_body()))};
}

std::optional<std::size_t> frame_reader::announced() const { return reader_.announced(); }

} // namespace starling::gossip
