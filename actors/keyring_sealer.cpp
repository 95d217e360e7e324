#include "actors/keyring_sealer.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include "actors/config.hpp"
#include "actors/errc.hpp"
#include "actors/node_files.hpp"
#include "gossip/errc.hpp"
#include "identity/errc.hpp"

namespace starling::actors {

namespace fs = std::filesystem;

namespace {

identity::wall_time now() { return std::chrono::system_clock::now(); }

/// An identity error as the actors module reports it to the operator.
caf::error as_request_error(const caf::error& err) {
  return make_error(errc::request_failed, identity::render(err));
}

} // namespace

// -- keyring_sealer ---------------------------------------------------------------------

caf::expected<std::shared_ptr<keyring_sealer>>
keyring_sealer::make(identity::keyring ring, fs::path persist_to, identity::sealer_config cfg) {
  if (ring.empty())
    return identity::make_error(identity::errc::keyring_refused,
                                "a gossip keyring needs at least one key");
  std::uint32_t salt = 0;
  std::uint64_t first = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&salt), sizeof(salt)) != 1 ||
      RAND_bytes(reinterpret_cast<unsigned char*>(&first), sizeof(first)) != 1)
    return identity::make_openssl_error(identity::errc::crypto_failure,
                                        "RAND_bytes for the sealing salt");
  // Below 2^63: room for 2^63 messages; with the random salt, two processes sharing a key
  // practically never reuse a nonce.
  first >>= 1;
  identity::sealer core{std::move(ring), salt, first, cfg};
  return std::make_shared<keyring_sealer>(std::move(core), std::move(persist_to));
}

keyring_sealer::keyring_sealer(identity::sealer core, fs::path persist_to)
    : core_(std::move(core)), file_(std::move(persist_to)),
      drops_(std::make_shared<transport_drop_counters>()) {
  // Fields only.
}

std::shared_ptr<transport_drop_counters> keyring_sealer::drop_counters() const { return drops_; }

caf::expected<std::string> keyring_sealer::seal_to(std::string_view receiver, std::string plain) {
  const auto t = now();
  std::lock_guard guard{mutex_};
  return core_.seal(plain, t, receiver);
}

caf::expected<std::string> keyring_sealer::open_as(std::string_view self, std::string_view wire) {
  const auto t = now();
  caf::expected<std::string> result{caf::error{}};
  {
    std::lock_guard guard{mutex_};
    result = core_.open(wire, t, self);
  }
  if (!result && identity::is(result.error(), identity::errc::sealed_malformed))
    return gossip::make_error(gossip::errc::malformed, identity::render(result.error()));
  return result;
}

template <class Change>
caf::expected<std::string> keyring_sealer::mutate(const char* what, const identity::key_id& id,
                                                  Change change) {
  std::lock_guard guard{mutex_};
  auto ring = core_.ring();
  if (auto err = change(ring))
    return as_request_error(err);
  if (!file_.empty())
    if (auto err = write_keyring_file(file_, ring))
      return err;
  core_.set_ring(std::move(ring));
  const auto hex = identity::to_hex(id);
  spdlog::info("gossip keyring: {} key {}", what, hex);
  return hex;
}

caf::expected<std::string> keyring_sealer::install(std::string_view key_base64) {
  auto key = identity::parse_gossip_key(key_base64);
  if (!key)
    return as_request_error(key.error());
  const auto id = identity::id_of(*key);
  return mutate("installed", id, [&](identity::keyring& ring) { return ring.install(*key); });
}

caf::expected<std::string> keyring_sealer::use(std::string_view key_or_id) {
  auto id = identity::keyring::resolve(key_or_id);
  if (!id)
    return as_request_error(id.error());
  return mutate("now sealing with", *id, [&](identity::keyring& ring) { return ring.use(*id); });
}

caf::expected<std::string> keyring_sealer::remove(std::string_view key_or_id) {
  auto id = identity::keyring::resolve(key_or_id);
  if (!id)
    return as_request_error(id.error());
  return mutate("removed", *id, [&](identity::keyring& ring) { return ring.remove(*id); });
}

keyring_view keyring_sealer::view() const {
  std::lock_guard guard{mutex_};
  keyring_view v;
  v.enabled = true;
  for (const auto& id : core_.ring().ids())
    v.ids.push_back(identity::to_hex(id));
  if (auto p = core_.ring().primary_id())
    v.primary = identity::to_hex(*p);
  v.counters = core_.counters();
  v.tracked_senders = core_.tracked_salts();
  v.window = core_.config().window;
  v.dropped = drops_->snapshot();
  return v;
}

caf::error keyring_sealer::persist() const {
  if (file_.empty())
    return {};
  std::lock_guard guard{mutex_};
  return write_keyring_file(file_, core_.ring());
}

std::string keyring_sealer::ring_text() const {
  std::lock_guard<std::mutex> guard{mutex_};
  return core_.ring().to_text();
}

// -- files ------------------------------------------------------------------------------

fs::path keyring_path(const fs::path& data_dir) { return data_dir / "keyring"; }

caf::expected<std::optional<identity::keyring>> read_keyring_file(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec))
    return std::optional<identity::keyring>{};
  std::ifstream in{file, std::ios::binary};
  if (!in)
    return make_error(errc::io_failure,
                      "cannot read " + file.string() + ": " + std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  auto ring = identity::keyring::from_text(buf.str());
  if (!ring)
    return make_error(errc::invalid_config, file.string() + ": " + identity::render(ring.error()));
  if (ring->empty())
    return make_error(errc::invalid_config, file.string() + ": the keyring holds no key");
  return std::optional<identity::keyring>{std::move(*ring)};
}

caf::error write_keyring_file(const fs::path& file, const identity::keyring& ring) {
  return write_file_atomic(file, ring.to_text(), 0600);
}

caf::expected<startup_keyring> load_startup_keyring(const agent_config& cfg) {
  auto persisted = read_keyring_file(keyring_path(cfg.data_dir));
  if (!persisted)
    return persisted.error();
  if (*persisted)
    return startup_keyring{std::move(**persisted), "persisted"};
  identity::keyring ring;
  if (!cfg.keyring_file.empty()) {
    auto from_file = read_keyring_file(cfg.keyring_file);
    if (!from_file)
      return from_file.error();
    if (!*from_file)
      return make_error(errc::invalid_config,
                        "keyring_file: " + cfg.keyring_file.string() + " does not exist");
    ring = std::move(**from_file);
  }
  if (!cfg.gossip_key.empty()) {
    auto key = identity::parse_gossip_key(cfg.gossip_key);
    if (!key)
      return make_error(errc::invalid_config, "gossip_key: " + identity::render(key.error()));
    if (auto err = ring.install(*key))
      return make_error(errc::invalid_config, "gossip_key: " + identity::render(err));
    if (auto err = ring.use(identity::id_of(*key)))
      return make_error(errc::invalid_config, "gossip_key: " + identity::render(err));
  }
  std::string source = ring.empty() ? "none" : "config";
  return startup_keyring{std::move(ring), std::move(source)};
}

// -- admin ------------------------------------------------------------------------------

caf::expected<std::string> answer_keyring_request(keyring_sealer* sealer, std::string_view op,
                                                  std::string_view arg) {
  if (op == "list")
    return keyring_json(sealer ? sealer->view() : keyring_view{});
  if (op != "install" && op != "use" && op != "remove")
    return make_error(errc::bad_request, "unknown keyring operation \"" + std::string{op} + "\"");
  if (!sealer)
    return make_error(errc::request_failed,
                      "gossip encryption is off on this node (it started without gossip_key or a "
                      "keyring); turning it on needs a restart with a key on every node");
  return op == "install" ? sealer->install(arg)
         : op == "use"   ? sealer->use(arg)
                         : sealer->remove(arg);
}

// -- views ------------------------------------------------------------------------------

counter_list sealer_counter_list(const identity::sealer_counters& c) {
  return {{"sealed", c.sealed},
          {"opened", c.opened},
          {"tampered", c.tampered},
          {"replayed", c.replayed},
          {"unknown_key", c.unknown_key},
          {"unsealed", c.unsealed},
          {"malformed", c.malformed},
          {"salts_evicted", c.salts_evicted},
          {"wrong_receiver", c.wrong_receiver}};
}

std::string keyring_json(const keyring_view& v) {
  nlohmann::ordered_json keys = nlohmann::ordered_json::array();
  for (const auto& id : v.ids)
    keys.push_back({{"id", id}, {"primary", id == v.primary}});
  nlohmann::ordered_json counters = nlohmann::ordered_json::object();
  for (const auto& [name, value] : sealer_counter_list(v.counters))
    counters[name] = value;
  nlohmann::ordered_json doc{
      {"enabled", v.enabled},
      {"primary", v.primary},
      {"keys", keys},
      {"counters", std::move(counters)},
      {"tracked_senders", v.tracked_senders},
      {"window", format_duration(v.window)},
  };
  if (v.dropped)
    doc["dropped"] = {{"malformed", v.dropped->malformed},
                      {"oversized", v.dropped->oversized},
                      {"binding_refused", v.dropped->binding_refused}};
  return doc.dump();
}

} // namespace starling::actors
