// Routing table records ⇄ protobuf bytes (proto/routing.proto). Counts are checked on the
// wire before parsing (as decision 0017 does for push-pulls), so a stranger's bytes never
// make the decoder allocate more than the limits allow; values are checked for their range
// here and for their meaning by the table (check_owner_record, check_policy_record).
// Adapter without I/O: part of the core library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "gossip/routing_table.hpp"
#include "gossip/types.hpp"

namespace starling::gossip {

/// A summary of a whole table (RoutingNote): routing_table::table_hash and the record count.
struct routing_note {
  std::uint64_t table_hash = 0;
  std::uint32_t records = 0;
  friend bool operator==(const routing_note&, const routing_note&) = default;
};

/// A piggybacked payload: fresh records, or a note.
struct routing_payload {
  std::vector<owner_record> owners;
  std::vector<policy_record> policies;
  std::optional<routing_note> note;
  friend bool operator==(const routing_payload&, const routing_payload&) = default;
};

/// A push-pull section: the sender's digest, and the records and chains it included.
struct routing_section {
  routing_digest digest;
  std::vector<owner_record> owners;
  std::vector<policy_record> policies;
  std::vector<signer_chain> chains;
  /// Not every record of the sender fitted.
  bool partial = false;
  friend bool operator==(const routing_section&, const routing_section&) = default;
};

/// A pull (request type 3): the ranges where the asker's digest differs, and the asker's
/// entries in them.
struct routing_pull {
  std::vector<std::uint32_t> ranges;
  std::vector<entry_summary> have;
  friend bool operator==(const routing_pull&, const routing_pull&) = default;
};

/// Longest key of an entry summary (routing_table::key_of of a valid record is far shorter).
inline constexpr std::size_t max_summary_key_bytes = 512;

/// What a decoder accepts at most. Defaults follow the table's limits.
struct routing_codec_limits {
  /// Bytes of the message.
  std::size_t max_bytes = max_extension_section_bytes;
  std::size_t max_owners = 65'536;
  std::size_t max_policies = 4'096;
  std::size_t max_chains = 65'536;
  std::size_t max_certificates = 4; ///< per chain
  std::size_t max_certificate_bytes = 8'192;
};

/// Encodes a payload / a section.
[[nodiscard]] std::string encode_routing(const routing_payload& p);
[[nodiscard]] std::string encode_routing(const routing_section& s);

/// Encodes a pull.
[[nodiscard]] std::string encode_routing(const routing_pull& p);

/// Decodes a pull: at most digest_ranges distinct ranges, each below digest_ranges; at most
/// max_owners + max_policies summaries, keys of at most max_summary_key_bytes. Errors:
/// routing_errc::malformed.
[[nodiscard]] caf::expected<routing_pull>
decode_routing_pull(std::string_view bytes, const routing_codec_limits& limits = {});

/// Decodes a payload. Errors: routing_errc::malformed (not the message, counts over the
/// limits, too large), invalid_record (a value out of its field's range).
[[nodiscard]] caf::expected<routing_payload>
decode_routing_payload(std::string_view bytes, const routing_codec_limits& limits = {});

/// Decodes a section; errors as decode_routing_payload.
[[nodiscard]] caf::expected<routing_section>
decode_routing_section(std::string_view bytes, const routing_codec_limits& limits = {});

/// The encoded size of `r` alone in a payload (what it costs a datagram).
[[nodiscard]] std::size_t encoded_size(const owner_record& r);
[[nodiscard]] std::size_t encoded_size(const policy_record& p);

} // namespace starling::gossip
