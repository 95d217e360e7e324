// Reading protobuf wire bytes without parsing them: the walk the codecs use to count
// repeated fields before ParseFromArray builds an object per entry (decision 0017). Internal
// to the gossip codecs (codec.cpp, routing_codec.cpp). No allocation.
#pragma once

#include <cstdint>
#include <limits>
#include <string_view>

#include <caf/error.hpp>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

namespace starling::gossip {

/// Walks the fields of one message's bytes. For each length-delimited field, calls
/// `visit(field_number, content)` (an error stops the walk); every other field is skipped.
/// Bytes that are not wire format give `malformed()`.
template <class Visit, class Malformed>
caf::error walk_fields(std::string_view bytes, Malformed&& malformed, Visit&& visit) {
  using wire_format = google::protobuf::internal::WireFormatLite;
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    return malformed();
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  for (;;) {
    const std::uint32_t tag = in.ReadTag();
    if (tag == 0) // the end, or a tag that does not parse
      return static_cast<std::size_t>(in.CurrentPosition()) == bytes.size() ? caf::error{}
                                                                            : malformed();
    if (wire_format::GetTagWireType(tag) != wire_format::WIRETYPE_LENGTH_DELIMITED) {
      if (!wire_format::SkipField(&in, tag))
        return malformed();
      continue;
    }
    std::uint32_t length = 0;
    if (!in.ReadVarint32(&length))
      return malformed();
    const auto at = static_cast<std::size_t>(in.CurrentPosition());
    if (length > bytes.size() - at)
      return malformed();
    if (auto err = visit(wire_format::GetTagFieldNumber(tag), bytes.substr(at, length)))
      return err;
    if (!in.Skip(static_cast<int>(length)))
      return malformed();
  }
}

} // namespace starling::gossip
