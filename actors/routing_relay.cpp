#include "actors/routing_relay.hpp"

#include <utility>

#include "gossip/errc.hpp"

namespace starling::actors {

routing_relay::routing_relay(sink_fn sink, news_fn news)
    : sink_(std::move(sink)), news_(std::move(news)), queue_(gossip::routing_extension_kind) {}

void routing_relay::publish(std::vector<gossip::routing_publication> pubs) {
  if (pubs.empty())
    return;
  {
    std::lock_guard guard{mutex_};
    for (auto& p : pubs)
      static_cast<void>(queue_.push(std::move(p.bytes), std::move(p.key)));
  }
  if (news_)
    news_();
}

void routing_relay::set_section(std::string bytes) {
  std::lock_guard guard{mutex_};
  section_ = std::move(bytes);
}

void routing_relay::set_note(std::string bytes) {
  std::lock_guard guard{mutex_};
  note_ = std::move(bytes);
}

void routing_relay::ask_push_pull(std::vector<std::string> members) {
  std::lock_guard guard{mutex_};
  for (auto& m : members)
    if (push_pull_with_.size() < 16)
      push_pull_with_.push_back(std::move(m));
}

void routing_relay::ask_pulls(std::vector<gossip::extension_request> pulls) {
  std::lock_guard guard{mutex_};
  for (auto& p : pulls)
    if (pulls_.size() < 16)
      pulls_.push_back(std::move(p));
}

void routing_relay::poke() {
  if (news_)
    news_();
}

gossip::request_spec routing_relay::pull_spec() {
  gossip::request_spec spec;
  spec.name = "routing pull";
  spec.max_request = gossip::max_pull_bytes;
  spec.max_answer = gossip::max_extension_section_bytes;
  spec.auth = gossip::request_auth::member;
  spec.sealed = true;
  spec.handler = [this](std::string body, const std::optional<std::string>& peer,
                        gossip::request_responder reply) -> caf::error {
    if (!sink_(routing_input{routing_input_kind::pull, std::move(body), peer.value_or(""),
                             std::move(reply)}))
      return gossip::make_error(gossip::errc::peer_refused, "routing is restarting");
    return {};
  };
  return spec;
}

std::vector<std::string> routing_relay::take_payloads(const gossip::piggyback_request& req) {
  std::lock_guard guard{mutex_};
  auto out = queue_.take(req);
  if (!note_.empty())
    notes_.add(out, req, note_);
  return out;
}

bool routing_relay::has_payloads() const {
  std::lock_guard guard{mutex_};
  return !queue_.empty();
}

std::size_t routing_relay::queued() const {
  std::lock_guard guard{mutex_};
  return queue_.size();
}

void routing_relay::update_members(const member_changes& changes) {
  std::lock_guard guard{mutex_};
  if (changes.full) {
    live_.clear();
    inbound_.clear();
  }
  for (const auto& m : changes.members) {
    if (m.live)
      live_[m.name] = m.host;
    else
      live_.erase(m.name);
    if (m.live && !m.inbound.empty())
      inbound_[m.name] = m.inbound;
    else
      inbound_.erase(m.name);
  }
}

std::map<std::string, std::string, std::less<>> routing_relay::inbounds() const {
  std::lock_guard guard{mutex_};
  return inbound_;
}

std::map<std::string, std::string, std::less<>> routing_relay::members() const {
  std::lock_guard guard{mutex_};
  return live_;
}

gossip::extension_effects routing_relay::take_effects() {
  gossip::extension_effects fx;
  std::lock_guard guard{mutex_};
  fx.push_pull_with.swap(push_pull_with_);
  fx.requests.swap(pulls_);
  return fx;
}

gossip::extension_effects routing_relay::on_payload(std::string_view bytes,
                                                    const std::string& sender, gossip::time_point) {
  static_cast<void>(
      sink_(routing_input{routing_input_kind::payload, std::string{bytes}, sender, {}}));
  return take_effects();
}

std::optional<std::string> routing_relay::make_section(bool) {
  std::lock_guard guard{mutex_};
  return section_;
}

gossip::extension_effects routing_relay::on_section(std::string_view bytes,
                                                    const std::string& sender, bool,
                                                    gossip::time_point) {
  static_cast<void>(
      sink_(routing_input{routing_input_kind::section, std::string{bytes}, sender, {}}));
  return take_effects();
}

gossip::extension_effects routing_relay::on_answer(std::string_view bytes,
                                                   const std::string& sender, gossip::time_point) {
  static_cast<void>(
      sink_(routing_input{routing_input_kind::answer, std::string{bytes}, sender, {}}));
  return take_effects();
}

} // namespace starling::actors
