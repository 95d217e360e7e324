// The routing table's extension in the membership actor (issue 16). The table lives in the
// routing actor (its signature checks must not delay probes), so the membership core is
// given this relay: it piggybacks what the routing actor published, answers push-pulls with
// the section the routing actor last built, and forwards every peer payload and section to
// the routing actor as a message. Thread-safe: the membership actor calls the extension
// side, the routing actor the other, each from its own thread.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>

#include "actors/membership_actor.hpp"
#include "gossip/extension.hpp"
#include "gossip/payload_queue.hpp"
#include "gossip/routing_gossip.hpp"
#include "gossip/transport.hpp"

namespace starling::actors {

/// What a routing_input carries.
enum class routing_input_kind : std::uint8_t {
  payload, ///< a piggybacked payload
  section, ///< a push-pull section
  answer,  ///< the answer to one of our pulls
  pull,    ///< a peer's pull (request type 3), answered through `reply`
};

/// A peer's routing bytes, forwarded to the routing actor.
struct routing_input {
  routing_input_kind kind = routing_input_kind::payload;
  std::string bytes;
  /// The member that sent them (for a pull: the client's verified name with TLS, else
  /// empty).
  std::string sender;
  /// For a pull: where the answer goes (any thread).
  gossip::request_responder reply;
};

/// The relay. Created once by the supervisor; outlives restarts of both actors.
class routing_relay final : public gossip::extension {
public:
  /// Where peers' bytes go (sends to the routing actor of the moment). Returns false when
  /// there is none (it restarts): the input is dropped (gossip sends again), and a pull is
  /// refused.
  using sink_fn = std::function<bool(routing_input)>;

  /// Called (on the publisher's thread) after payloads were queued: tells the membership
  /// actor to run a gossip round now (membership::on_extension_news).
  using news_fn = std::function<void()>;

  explicit routing_relay(sink_fn sink, news_fn news = {});

  // -- the routing actor's side ------------------------------------------------------------

  /// Queues payloads to piggyback.
  void publish(std::vector<gossip::routing_publication> pubs);
  /// The section the next push-pulls carry.
  void set_section(std::string bytes);
  /// The note (gossip::routing_gossip::note_payload) that rides on datagrams about once a
  /// second.
  void set_note(std::string bytes);
  /// Members to push-pull with, at the next payload or section heard.
  void ask_push_pull(std::vector<std::string> members);
  /// Pulls to send (request type 3), at the next payload, section or answer heard.
  void ask_pulls(std::vector<gossip::extension_request> pulls);

  /// Tells the membership actor that asks wait (it collects them through take_effects).
  void poke();

  /// Request type 3's spec for the transport: a peer's pull goes to the routing actor,
  /// which answers it (routing_input_kind::pull).
  [[nodiscard]] gossip::request_spec pull_spec();

  // -- the membership actor's side (gossip::extension) -------------------------------------

  [[nodiscard]] std::vector<std::string>
  take_payloads(const gossip::piggyback_request& req) override;
  [[nodiscard]] bool has_payloads() const override;
  [[nodiscard]] gossip::extension_effects
  on_payload(std::string_view bytes, const std::string& sender, gossip::time_point now) override;
  [[nodiscard]] std::optional<std::string> make_section(bool join) override;
  [[nodiscard]] gossip::extension_effects on_section(std::string_view bytes,
                                                     const std::string& sender, bool join,
                                                     gossip::time_point now) override;
  [[nodiscard]] gossip::extension_effects
  on_answer(std::string_view bytes, const std::string& sender, gossip::time_point now) override;
  [[nodiscard]] gossip::extension_effects take_effects() override;

  /// Payloads waiting.
  [[nodiscard]] std::size_t queued() const;

  // -- who is live (the membership actor writes, a starting routing actor reads) -----------

  /// Takes in a report of who is live (actors/membership_actor.hpp).
  void update_members(const member_changes& changes);
  /// The live members (alive or suspect, this node included) and their hosts.
  [[nodiscard]] std::map<std::string, std::string, std::less<>> members() const;
  /// "host:port" of the live members' data-plane inbound listeners (those that run one), by
  /// name: what a starting proxy controller begins with.
  [[nodiscard]] std::map<std::string, std::string, std::less<>> inbounds() const;

private:
  sink_fn sink_;
  news_fn news_;
  mutable std::mutex mutex_;
  gossip::payload_queue queue_;
  std::optional<std::string> section_;
  std::string note_;
  gossip::note_pacer notes_;
  std::vector<std::string> push_pull_with_;
  std::vector<gossip::extension_request> pulls_;
  /// Live members by name, and their hosts.
  std::map<std::string, std::string, std::less<>> live_;
  /// Their inbound listeners, for those that have one.
  std::map<std::string, std::string, std::less<>> inbound_;
};

} // namespace starling::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::routing_input)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::member_changes)
