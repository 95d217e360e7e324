#include "actors/identity_actor.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/admission_msgs.hpp"
#include "actors/atoms.hpp"
#include "actors/certs_view.hpp"
#include "actors/errc.hpp"
#include "actors/keyring_sealer.hpp"
#include "gossip/errc.hpp"
#include "identity/errc.hpp"

namespace starling::actors {

/// A forwarded admission failed because the token's issuer is gone: admit here if this
/// node holds the token's record (local message).
struct admit_locally_msg {
  std::shared_ptr<const identity::admission_request> req;
  std::string token_id;
  gossip::admission_responder reply;
};

} // namespace starling::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::admit_locally_msg)

namespace starling::actors {

namespace {

struct identity_state {
  identity_params params;
  caf::actor supervisor;
  /// Set on issuer nodes.
  std::optional<identity::issuer_desk> desk;
  identity::openssl_random rng;
  std::uint64_t admitted = 0;
  std::uint64_t refused = 0;

  static inline const char* name = "identity";
};

using identity_actor_t = caf::stateful_actor<identity_state>;

identity::time_point wall_now() {
  return std::chrono::system_clock::now();
}

issuer_summary summarize(const identity_state& st, identity::time_point now) {
  issuer_summary out;
  out.admitted = st.admitted;
  out.refused = st.refused;
  if (!st.desk)
    return out;
  const auto secs = std::chrono::floor<std::chrono::seconds>(now);
  for (const auto& [id, entry] : st.desk->tokens().ledger().entries()) {
    ++out.known_tokens;
    if (secs < entry.expiry && entry.spent() < entry.uses)
      ++out.active_tokens;
  }
  return out;
}

/// An error as the refusal the client reads: "identity.token_expired: ..." (a refusal
/// relayed from the token's issuer is passed on as it came).
caf::error as_refusal(const caf::error& err) {
  if (err.category() == gossip::errc_category)
    return err.code() == static_cast<std::uint8_t>(gossip::errc::peer_refused)
             ? err
             : gossip::make_error(gossip::errc::peer_refused, gossip::render(err));
  if (err.category() == errc_category)
    return gossip::make_error(gossip::errc::peer_refused, message_of(err));
  return gossip::make_error(gossip::errc::peer_refused, identity::render(err));
}

void refuse(identity_actor_t* self, const gossip::admission_responder& reply,
            const std::string& who, const caf::error& err) {
  ++self->state.refused;
  auto refusal = as_refusal(err);
  spdlog::warn("admission of {} refused: {}", who, gossip::refusal_reason(refusal));
  reply(std::move(refusal));
}

/// Redeems and signs here.
void admit_here(identity_actor_t* self, const identity::admission_request& req,
                const std::string& token_id, const gossip::admission_responder& reply) {
  auto& st = self->state;
  auto grant = st.desk->admit(req, wall_now());
  if (!grant) {
    refuse(self, reply, "'" + req.name + "' (token " + token_id + ")", grant.error());
    return;
  }
  if (st.params.sealer)
    grant->keyring = st.params.sealer->ring_text();
  auto bytes = identity::encode(*grant);
  if (!bytes) {
    refuse(self, reply, "'" + req.name + "'", bytes.error());
    return;
  }
  ++st.admitted;
  spdlog::info("admitted node '{}' with token {}", req.name, token_id);
  reply(std::move(*bytes));
}

void on_admission(identity_actor_t* self, admission_msg& msg) {
  auto& st = self->state;
  const std::string from = msg.peer ? "member " + *msg.peer : std::string{"a joiner"};
  if (!st.params.id) {
    refuse(self, msg.reply, "a node",
           identity::make_error(identity::errc::bad_request,
                                "this node has no identity and cannot admit"));
    return;
  }
  auto req = identity::decode_admission_request(msg.request);
  if (!req) {
    refuse(self, msg.reply, "a request from " + from, req.error());
    return;
  }
  auto token = identity::decode(req->tokens.front());
  if (!token) {
    refuse(self, msg.reply, "'" + req->name + "'", token.error());
    return;
  }
  const auto token_id = token->id_hex();
  if (st.desk && token->issuer == st.desk->material().node) {
    admit_here(self, *req, token_id, msg.reply);
    return;
  }
  if (msg.peer) {
    // Forwarded to us, but the token is not ours: never forward twice (no loops).
    if (st.desk && st.desk->tokens().ledger().find(token->id) != nullptr) {
      admit_here(self, *req, token_id, msg.reply);
      return;
    }
    refuse(self, msg.reply, "'" + req->name + "' forwarded by " + *msg.peer,
           identity::make_error(identity::errc::token_unknown,
                                "token " + token_id + " was not made by this issuer"));
    return;
  }
  // A joiner's request for another issuer: forward it there.
  spdlog::info("forwarding the admission of '{}' (token {}) to issuer {}", req->name, token_id,
               token->issuer);
  caf::weak_actor_ptr weak{self->ctrl()};
  auto reply = msg.reply;
  auto local = st.desk && st.desk->tokens().ledger().find(token->id) != nullptr;
  forward_admission_msg fwd;
  fwd.issuer = token->issuer;
  fwd.request = std::move(msg.request);
  auto shared_req = std::make_shared<const identity::admission_request>(std::move(*req));
  fwd.done = [weak, reply, local, shared_req,
              token_id](caf::expected<std::string> answer) mutable {
    if (answer) {
      reply(std::move(answer));
      return;
    }
    const bool gone = answer.error().category() == errc_category &&
                      answer.error().code() == static_cast<std::uint8_t>(errc::unreachable);
    if (gone && local) {
      if (auto hdl = weak.lock()) {
        caf::anon_send(caf::actor_cast<caf::actor>(hdl),
                       admit_locally_msg{shared_req, token_id, std::move(reply)});
        return;
      }
    }
    reply(as_refusal(answer.error()));
  };
  self->send(st.supervisor, std::move(fwd));
}

caf::behavior identity_actor(identity_actor_t* self, caf::actor supervisor,
                             identity_params params) {
  auto& st = self->state;
  st.params = std::move(params);
  st.supervisor = std::move(supervisor);
  if (st.params.id && st.params.id->issuer) {
    auto desk = identity::issuer_desk::open(*st.params.id->issuer, st.params.tokens_file);
    if (!desk) {
      auto msg = "cannot open the issuer's token store " + st.params.tokens_file.string() +
                 ": " + identity::render(desk.error());
      self->send(st.supervisor, failed_atom::value, msg);
      self->quit(desk.error());
      return {};
    }
    st.desk.emplace(std::move(*desk));
  }
  return {
    [=](token_atom, std::int64_t ttl_seconds, std::int64_t uses) -> caf::result<std::string> {
      auto& st = self->state;
      if (!st.desk)
        return make_error(errc::request_failed,
                          "this node is not an issuer (start it with --issuer DIR)");
      if (uses < 1 || uses > identity::max_token_uses)
        return make_error(errc::bad_request, "--uses must be between 1 and " +
                                               std::to_string(identity::max_token_uses));
      auto token = st.desk->create_token(wall_now(), std::chrono::seconds{ttl_seconds},
                                         static_cast<std::uint16_t>(uses), st.rng);
      if (!token) {
        const bool usage = token.error().category() == identity::errc_category &&
                           token.error().code() ==
                             static_cast<std::uint8_t>(identity::errc::invalid_argument);
        return make_error(usage ? errc::bad_request : errc::request_failed,
                          identity::render(token.error()));
      }
      spdlog::info("created a join token for {} use(s), valid {}s", uses, ttl_seconds);
      return std::move(*token);
    },
    [=](certs_atom) -> std::string {
      auto& st = self->state;
      const auto now = wall_now();
      std::optional<keyring_view> ring;
      if (st.params.sealer)
        ring = st.params.sealer->view();
      auto summary = summarize(st, now);
      return certs_json(st.params.id.get(), ring ? &*ring : nullptr,
                        st.desk ? &summary : nullptr, now);
    },
    [=](admission_msg& msg) { on_admission(self, msg); },
    [=](admit_locally_msg& msg) {
      spdlog::info("the token's issuer is not reachable: redeeming token {} here",
                   msg.token_id);
      admit_here(self, *msg.req, msg.token_id, msg.reply);
    },
  };
}

} // namespace

caf::actor spawn_identity_actor(caf::actor_system& sys, caf::actor supervisor,
                                identity_params params) {
  return sys.spawn(identity_actor, std::move(supervisor), std::move(params));
}

} // namespace starling::actors
