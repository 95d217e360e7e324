// The seed's side of an admission on the identity channel (docs/decisions/0008, 0009): what
// a node does with an admission request that reached it. An issuer admits with its own
// tokens; any other node forwards the request to the token's issuer, and admits itself if
// that issuer is gone while this node holds the token's record (the forwarding fallback);
// a joiner's further tokens (admission quorum) are first turned into endorsements by their
// issuers, then the request goes on with its first token and the endorsements.
//
// Pure: no I/O, no clock reads, no threads. Inputs are the request and the answers that
// come back; outputs are effects (admit here, refuse, forward, ask an issuer to endorse,
// relay an answer) that the owner (actors/identity_actor.cpp) carries out. The owner keeps
// each admission's reply channel under its ticket; every admission ends in exactly one of
// admit, refuse or relay for its ticket. Not thread-safe: one owner.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "identity/admission.hpp"
#include "identity/endorsement.hpp"
#include "identity/log_line.hpp"
#include "identity/token.hpp"

namespace starling::identity {

/// Names one admission a node is handling; chosen by the owner, unique among the
/// admissions under way.
using admission_ticket = std::uint64_t;

/// What a node knows of itself as an issuer when it routes an admission.
struct local_issuer {
  /// Its node name (its issuer certificate's).
  std::string name;
  /// Its token ledger (its own tokens and those learned from other issuers); not null.
  const token_ledger* ledger = nullptr;
};

/// Admit `req` here with its first token (issuer_desk::admit), then answer `ticket`.
struct admit_here {
  admission_ticket ticket = 0;
  admission_request req;
  /// The first token's id (id_hex), for the log.
  std::string token_id;
};

/// Refuse admission `ticket`.
struct admission_refusal {
  admission_ticket ticket = 0;
  /// Whom the refusal is about, for the log: "'node-7'", "'node-7' forwarded by node-2".
  std::string who;
  caf::error error;
  /// Non-empty: `error` is the refusal of the endorsement by this issuer (the owner says so
  /// in the refusal it sends).
  std::string endorsing_issuer;
};

/// Send the encoded admission request `request` to member `issuer` (the token's issuer);
/// its answer goes to admission_flow::on_forward_answer with `ticket`.
struct admission_forward {
  admission_ticket ticket = 0;
  std::string issuer;
  std::string request;
};

/// Answer admission `ticket` with what the token's issuer answered (a grant, or its
/// refusal: passed on as it came).
struct admission_relay {
  admission_ticket ticket = 0;
  caf::expected<std::string> answer;
};

/// Send the encoded endorse request `request` to member `issuer`; its answer (decoded:
/// decode_endorse_response) goes to admission_flow::on_endorsement with `ticket`, `index`.
struct endorsement_ask {
  admission_ticket ticket = 0;
  /// Which further token (0 for the joiner's second token).
  std::size_t index = 0;
  std::string issuer;
  std::string request;
};

/// Endorse `req` here (issuer_desk::endorse: this node made the token); the result goes to
/// admission_flow::on_endorsement with `ticket`, `index`.
struct endorsement_here {
  admission_ticket ticket = 0;
  std::size_t index = 0;
  endorse_request req;
};

/// What the owner does after an input, in this order: log, ask, forward, endorse_here
/// (feeding each result back at once), then admit, refuse and relay.
struct admission_effects {
  std::vector<log_line> log;
  std::vector<endorsement_ask> ask;
  std::vector<admission_forward> forward;
  std::vector<endorsement_here> endorse_here;
  std::vector<admit_here> admit;
  std::vector<admission_refusal> refuse;
  std::vector<admission_relay> relay;

  /// Appends `other` to this.
  void append(admission_effects&& other);
};

/// The admissions a node is routing: forwards awaiting the issuer's answer and endorsement
/// collections awaiting the endorsers'. Pure; one owner (the identity actor).
class admission_flow {
public:
  /// An admission request arrived (decoded; `raw` its bytes, forwarded unchanged).
  /// `forwarded_by`: the member that forwarded it (std::nullopt: a joiner asks this node
  /// directly). `self`: this node as an issuer, if it is one. Routing:
  /// - several tokens: from a joiner, collected (one endorsement per further token, asked
  ///   of each token's issuer, this node itself when it made the token); forwarded by a
  ///   member, refused (bad_request); more than max_admission_quorum, refused; a token that
  ///   does not decode, refused;
  /// - one token made by `self`: admitted here;
  /// - forwarded by a member with a token of another issuer: admitted here if `self` holds
  ///   its record, else refused (token_unknown): never forwarded twice;
  /// - from a joiner with a token of another issuer: forwarded to that issuer.
  [[nodiscard]] admission_effects on_request(admission_ticket ticket, admission_request req,
                                             std::string raw,
                                             std::optional<std::string> forwarded_by,
                                             const std::optional<local_issuer>& self);

  /// The endorsement of further token `index` of collection `ticket` came back (or its
  /// refusal). Once all answered: the first refusal refuses the admission (naming the
  /// endorsing issuer); else the request goes on with its first token and the
  /// endorsements, routed as a joiner's (on_request). Unknown tickets and answers already
  /// counted are ignored.
  [[nodiscard]] admission_effects on_endorsement(admission_ticket ticket, std::size_t index,
                                                 caf::expected<endorsement> result,
                                                 const std::optional<local_issuer>& self);

  /// The token's issuer answered forward `ticket`: a grant or its refusal is relayed as it
  /// came; when `issuer_unreachable` (it is not an alive member, or the connection failed)
  /// and this node held the token's record when it forwarded, the request is admitted here
  /// instead (the forwarding fallback). Unknown tickets are ignored.
  [[nodiscard]] admission_effects on_forward_answer(admission_ticket ticket,
                                                    caf::expected<std::string> answer,
                                                    bool issuer_unreachable);

  /// Collections under way.
  [[nodiscard]] std::size_t collecting() const noexcept { return collections_.size(); }
  /// Forwards awaiting their answer.
  [[nodiscard]] std::size_t forwarding() const noexcept { return forwards_.size(); }

private:
  /// A joiner's admission whose further tokens are being turned into endorsements.
  struct collection {
    admission_request req;
    /// The issuer of each further token (tokens[1..]).
    std::vector<std::string> issuers;
    /// One slot per further token; set once its endorsement came back.
    std::vector<std::optional<endorsement>> got;
    /// Which further tokens answered (a second answer for one slot is ignored).
    std::vector<bool> answered;
    /// Further tokens not answered yet.
    std::size_t pending = 0;
    /// The first refusal and the issuer that refused; the admission is refused once all
    /// answered.
    std::optional<caf::error> failure;
    std::string failed_issuer;
  };

  /// A request forwarded to its token's issuer.
  struct forward {
    /// Set when this node held the token's record at the time: what it admits if the
    /// issuer is unreachable.
    std::optional<admission_request> fallback;
    std::string token_id;
  };

  admission_effects collect(admission_ticket ticket, admission_request req,
                            const std::optional<local_issuer>& self);
  admission_effects finish(admission_ticket ticket, const std::optional<local_issuer>& self);

  /// Invariant: every collection has pending > 0 between calls.
  std::map<admission_ticket, collection> collections_;
  std::map<admission_ticket, forward> forwards_;
};

} // namespace starling::identity
