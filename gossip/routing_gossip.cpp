#include "gossip/routing_gossip.hpp"

#include <algorithm>
#include <set>
#include <utility>

namespace starling::gossip {

namespace {

/// Unknown chains one section may make this node verify: bounds the cryptography a peer
/// can cause per push-pull (a chain costs a path validation).
constexpr std::size_t max_chains_learned_per_section = 256;

/// Room kept in a section for its digest and framing.
constexpr std::size_t section_overhead = 2048;

template <class Record> routing_payload payload_of(const Record& r) {
  routing_payload p;
  if constexpr (std::is_same_v<Record, owner_record>)
    p.owners.push_back(r);
  else
    p.policies.push_back(r);
  return p;
}

std::string queue_key(const owner_record& r) { return routing_table::key_of(r); }

std::string queue_key(const policy_record& p) { return routing_table::key_of(p.key); }

} // namespace

routing_gossip::routing_gossip(routing_table& table, std::size_t max_section_bytes,
                               std::size_t inline_section_max)
    : table_(table), max_section_bytes_(max_section_bytes),
      inline_section_max_(inline_section_max) {}

template <class Record>
std::optional<routing_publication> routing_gossip::publish_one(const Record& r) {
  auto bytes = encode_routing(payload_of(r));
  if (bytes.size() > max_extension_payload_bytes) {
    ++stats_.too_large_to_piggyback;
    return std::nullopt;
  }
  return routing_publication{std::move(bytes), queue_key(r)};
}

std::optional<routing_publication> routing_gossip::publication(const owner_record& r) {
  return publish_one(r);
}

std::optional<routing_publication> routing_gossip::publication(const policy_record& p) {
  return publish_one(p);
}

template <class Record>
void routing_gossip::merge_one(const Record& r, std::uint64_t wall_ms, routing_gossip_result& out,
                               bool& wants_chain) {
  auto res = table_.merge(r, wall_ms);
  if (res.outcome == merge_outcome::applied) {
    ++out.applied;
    if constexpr (std::is_same_v<Record, policy_record>)
      out.policies.push_back({r.key, r.writer, r.stamp, r.deleted});
    if (auto pub = publication(r))
      out.publish.push_back(std::move(*pub));
  } else if (res.outcome == merge_outcome::pending) {
    wants_chain = true;
  }
}

routing_gossip_result routing_gossip::on_payload(std::string_view bytes, const std::string& sender,
                                                 std::uint64_t wall_ms) {
  ++stats_.payloads_in;
  routing_gossip_result out;
  routing_codec_limits limits;
  limits.max_bytes = max_extension_payload_bytes;
  auto payload = decode_routing_payload(bytes, limits);
  if (!payload) {
    ++stats_.payloads_malformed;
    out.error = std::move(payload.error());
    return out;
  }
  bool wants_chain = false;
  for (const auto& r : payload->owners)
    merge_one(r, wall_ms, out, wants_chain);
  for (const auto& p : payload->policies)
    merge_one(p, wall_ms, out, wants_chain);
  if (wants_chain)
    out.push_pull_with.push_back(sender);
  else if (payload->note)
    on_note(*payload->note, sender, wall_ms, out);
  return out;
}

void routing_gossip::on_note(const routing_note& note, const std::string& sender,
                             std::uint64_t wall_ms, routing_gossip_result& out) {
  ++stats_.notes_in;
  if (note.table_hash == table_.table_hash() && note.records == table_.size()) {
    differing_since_.reset();
    return;
  }
  ++stats_.notes_differing;
  const auto hold = static_cast<std::uint64_t>(anti_entropy_hold.count());
  // A change of our own table restarts the wait: it may be the change the peer has.
  if (!differing_since_ || differing_changes_ != table_.changes() || wall_ms < *differing_since_) {
    differing_since_ = wall_ms;
    differing_changes_ = table_.changes();
    return;
  }
  if (wall_ms - *differing_since_ < hold || (last_ask_ && wall_ms < *last_ask_ + hold))
    return;
  // The wait is not restarted: should the membership core drop the ask (the peer is dead in
  // our view, as after a long partition), the next differing note asks again.
  last_ask_ = wall_ms;
  ++stats_.anti_entropy_asks;
  out.push_pull_with.push_back(sender);
}

std::string routing_gossip::note_payload() const {
  routing_payload p;
  p.note = routing_note{table_.table_hash(), static_cast<std::uint32_t>(table_.size())};
  return encode_routing(p);
}

void note_pacer::add(std::vector<std::string>& payloads, const piggyback_request& req,
                     const std::string& note) {
  if (last_ && req.now < *last_ + note_every)
    return;
  std::size_t used = 0;
  for (const auto& p : payloads)
    used += extension_payload_bound(routing_extension_kind, p.size());
  if (payloads.size() >= req.max_count ||
      used + extension_payload_bound(routing_extension_kind, note.size()) > req.budget)
    return;
  payloads.push_back(note);
  last_ = req.now;
}

template <class Room>
bool routing_gossip::add_chain(routing_section& s, std::set<std::string>& keys,
                               const routing_seal& seal, Room& room) {
  if (seal.key_id.empty() || keys.contains(seal.key_id))
    return true;
  auto chain = table_.trust().chain_of(seal.key_id);
  if (!chain)
    return true; // nothing to hand on: the receiver asks someone else
  std::size_t size = chain->key_id.size() + 16;
  for (const auto& c : chain->certificates)
    size += c.size() + 8;
  if (!room(size))
    return false;
  keys.insert(seal.key_id);
  s.chains.push_back(std::move(*chain));
  return true;
}

std::string routing_gossip::make_section() {
  routing_section s;
  s.digest = table_.digest();
  std::set<std::string> keys;
  std::size_t used = section_overhead;
  const auto bound = std::min(max_section_bytes_, inline_section_max_ + section_overhead);
  auto room = [&](std::size_t n) {
    if (used + n > bound)
      return false;
    used += n;
    return true;
  };
  bool whole = true;
  for (const auto& [_, p] : table_.policies()) {
    if (!room(encoded_size(p)) || !add_chain(s, keys, p.seal, room)) {
      whole = false;
      break;
    }
    s.policies.push_back(p);
  }
  if (whole) {
    for (const auto& [_, r] : table_.owners()) {
      if (!room(encoded_size(r)) || !add_chain(s, keys, r.seal, room)) {
        whole = false;
        break;
      }
      s.owners.push_back(r);
    }
  }
  if (!whole) {
    // Too large to carry whole: the digest alone, and the peer pulls what differs.
    s.policies.clear();
    s.owners.clear();
    s.chains.clear();
    s.partial = true;
    ++stats_.sections_digest_only;
  }
  ++stats_.sections_out;
  if (s.partial)
    ++stats_.sections_partial;
  auto bytes = encode_routing(s);
  stats_.section_bytes_out += bytes.size();
  return bytes;
}

routing_gossip_result routing_gossip::merge_section(std::string_view bytes, std::uint64_t wall_ms,
                                                    std::optional<routing_section>& section) {
  routing_gossip_result out;
  routing_codec_limits limits;
  limits.max_bytes = max_section_bytes_;
  auto decoded = decode_routing_section(bytes, limits);
  if (!decoded) {
    ++stats_.sections_malformed;
    out.error = std::move(decoded.error());
    return out;
  }
  section = std::move(*decoded);
  stats_.chains_in += section->chains.size();
  // Learn only the chains this node needs and lacks: the signers of pending records and of
  // the section's records, not yet known; at most max_chains_learned_per_section.
  std::set<std::string> needed;
  for (const auto& k : table_.wanted_keys())
    needed.insert(k);
  for (const auto& r : section->owners)
    if (!r.seal.key_id.empty())
      needed.insert(r.seal.key_id);
  for (const auto& p : section->policies)
    if (!p.seal.key_id.empty())
      needed.insert(p.seal.key_id);
  std::size_t learned = 0;
  for (const auto& chain : section->chains) {
    if (learned >= max_chains_learned_per_section)
      break;
    if (!needed.contains(chain.key_id) || table_.trust().chain_of(chain.key_id))
      continue;
    ++learned;
    needed.erase(chain.key_id);
    auto applied = table_.learn_chain(chain, wall_ms);
    if (!applied)
      continue; // counted by the table (chains_refused)
    for (const auto& rec : *applied) {
      ++out.applied;
      if (const auto* p = std::get_if<policy_record>(&rec))
        out.policies.push_back({p->key, p->writer, p->stamp, p->deleted});
      auto pub = std::visit([&](const auto& r) { return publication(r); }, rec);
      if (pub)
        out.publish.push_back(std::move(*pub));
    }
  }
  bool wants_chain = false;
  for (const auto& p : section->policies)
    merge_one(p, wall_ms, out, wants_chain);
  for (const auto& r : section->owners)
    merge_one(r, wall_ms, out, wants_chain);
  // A section is where chains come from: asking the same sender again would not help.
  return out;
}

std::optional<extension_request> routing_gossip::make_pull(const routing_digest& theirs,
                                                           const std::string& to) {
  auto ranges = table_.differing_ranges(theirs);
  if (ranges.empty())
    return std::nullopt;
  routing_pull pull;
  pull.have = table_.summaries(ranges);
  // Keep the pull under max_pull_bytes: drop the last ranges (the next exchange pulls them).
  const auto cost = [](const entry_summary& e) { return e.key.size() + 16; };
  std::size_t total = ranges.size() * 5 + 16;
  for (const auto& e : pull.have)
    total += cost(e);
  while (total > max_pull_bytes && ranges.size() > 1) {
    const auto dropped = ranges.back();
    ranges.pop_back();
    total -= 5;
    std::erase_if(pull.have, [&](const entry_summary& e) {
      if (routing_table::range_of(e.key) != dropped)
        return false;
      total -= cost(e);
      return true;
    });
  }
  if (total > max_pull_bytes)
    return std::nullopt; // one range's summaries alone are too many: the table's bounds forbid
  pull.ranges = std::move(ranges);
  ++stats_.pulls_out;
  return extension_request{to, encode_routing(pull)};
}

routing_gossip_result routing_gossip::on_section(std::string_view bytes, const std::string& sender,
                                                 std::uint64_t wall_ms) {
  ++stats_.sections_in;
  std::optional<routing_section> section;
  auto out = merge_section(bytes, wall_ms, section);
  if (section && section->partial)
    if (auto pull = make_pull(section->digest, sender))
      out.pulls.push_back(std::move(*pull));
  return out;
}

caf::expected<std::string> routing_gossip::answer_pull(std::string_view bytes,
                                                       const std::string& sender) {
  routing_codec_limits limits;
  limits.max_bytes = max_pull_bytes;
  auto pull = decode_routing_pull(bytes, limits);
  if (!pull) {
    ++stats_.pulls_malformed;
    return std::move(pull.error());
  }
  static_cast<void>(sender);
  ++stats_.pulls_in;
  routing_section s;
  s.digest = table_.digest();
  // Chains take their share of the bound too: records up to half of it, then chains.
  auto records =
      table_.records_for(pull->ranges, pull->have, (max_section_bytes_ - section_overhead) / 2);
  std::size_t used = section_overhead;
  for (const auto& p : records.policies)
    used += encoded_size(p);
  for (const auto& r : records.owners)
    used += encoded_size(r);
  auto room = [&](std::size_t n) {
    if (used + n > max_section_bytes_)
      return false;
    used += n;
    return true;
  };
  std::set<std::string> keys;
  bool chains_fit = true;
  for (const auto& p : records.policies)
    chains_fit = chains_fit && add_chain(s, keys, p.seal, room);
  for (const auto& r : records.owners)
    chains_fit = chains_fit && add_chain(s, keys, r.seal, room);
  s.policies = std::move(records.policies);
  s.owners = std::move(records.owners);
  s.partial = records.truncated || !chains_fit;
  auto out = encode_routing(s);
  stats_.pull_answer_bytes_out += out.size();
  return out;
}

routing_gossip_result routing_gossip::on_pull_answer(std::string_view bytes,
                                                     const std::string& sender,
                                                     std::uint64_t wall_ms) {
  ++stats_.pull_answers_in;
  std::optional<routing_section> section;
  auto out = merge_section(bytes, wall_ms, section);
  // A partial answer that brought news: pull the rest. One that brought nothing stops here
  // (the next exchange tries again), so a peer cannot keep this node pulling.
  if (section && section->partial && out.applied > 0)
    if (auto pull = make_pull(section->digest, sender))
      out.pulls.push_back(std::move(*pull));
  return out;
}

// -- routing_extension -------------------------------------------------------------------------

routing_extension::routing_extension(std::shared_ptr<routing_table> table, time_point epoch,
                                     std::uint64_t wall_at_epoch_ms, payload_queue_config queue,
                                     std::size_t inline_section_max)
    : table_(std::move(table)), gossip_(*table_, max_extension_section_bytes, inline_section_max),
      queue_(routing_extension_kind, queue), epoch_(epoch), wall_at_epoch_ms_(wall_at_epoch_ms) {}

std::uint64_t routing_extension::wall_ms(time_point now) const noexcept {
  const auto since = std::chrono::duration_cast<std::chrono::milliseconds>(now - epoch_).count();
  if (since < 0)
    return wall_at_epoch_ms_ > static_cast<std::uint64_t>(-since)
               ? wall_at_epoch_ms_ - static_cast<std::uint64_t>(-since)
               : 0;
  return wall_at_epoch_ms_ + static_cast<std::uint64_t>(since);
}

void routing_extension::publish(const owner_record& r) {
  if (auto pub = gossip_.publication(r))
    static_cast<void>(queue_.push(std::move(pub->bytes), std::move(pub->key)));
}

void routing_extension::publish(const policy_record& p) {
  if (auto pub = gossip_.publication(p))
    static_cast<void>(queue_.push(std::move(pub->bytes), std::move(pub->key)));
}

extension_effects routing_extension::apply(routing_gossip_result res, time_point now) {
  for (auto& pub : res.publish)
    static_cast<void>(queue_.push(std::move(pub.bytes), std::move(pub.key)));
  if (res.applied > 0 && on_change_)
    on_change_(now);
  extension_effects fx;
  fx.push_pull_with = std::move(res.push_pull_with);
  fx.requests = std::move(res.pulls);
  return fx;
}

std::vector<std::string> routing_extension::take_payloads(const piggyback_request& req) {
  auto out = queue_.take(req);
  notes_.add(out, req, gossip_.note_payload());
  return out;
}

bool routing_extension::has_payloads() const { return !queue_.empty(); }

extension_effects routing_extension::on_payload(std::string_view bytes, const std::string& sender,
                                                time_point now) {
  return apply(gossip_.on_payload(bytes, sender, wall_ms(now)), now);
}

std::optional<std::string> routing_extension::make_section(bool) { return gossip_.make_section(); }

extension_effects routing_extension::on_section(std::string_view bytes, const std::string& sender,
                                                bool, time_point now) {
  return apply(gossip_.on_section(bytes, sender, wall_ms(now)), now);
}

std::optional<std::string> routing_extension::on_request(std::string_view bytes,
                                                         const std::string& sender, time_point) {
  auto answer = gossip_.answer_pull(bytes, sender);
  if (!answer)
    return std::nullopt;
  return std::move(*answer);
}

extension_effects routing_extension::on_answer(std::string_view bytes, const std::string& sender,
                                               time_point now) {
  return apply(gossip_.on_pull_answer(bytes, sender, wall_ms(now)), now);
}

} // namespace starling::gossip
