// The defaults of gossip::extension: each hook does nothing, so an extension overrides only
// the ones it uses (a sink-only extension has no source, most have no push-pull section).
#include "gossip/extension.hpp"

namespace starling::gossip {

extension::~extension() = default;

std::vector<std::string> extension::take_payloads(const piggyback_request&) { return {}; }

bool extension::has_payloads() const { return false; }

extension_effects extension::on_payload(std::string_view, const std::string&, time_point) {
  return {};
}

std::optional<std::string> extension::make_section(bool) { return std::nullopt; }

extension_effects extension::on_section(std::string_view, const std::string&, bool, time_point) {
  return {};
}

std::optional<std::string> extension::on_request(std::string_view, const std::string&, time_point) {
  return std::nullopt;
}

extension_effects extension::take_effects() { return {}; }

extension_effects extension::on_answer(std::string_view, const std::string&, time_point) {
  return {};
}

} // namespace starling::gossip
