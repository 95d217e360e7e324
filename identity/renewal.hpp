// Renewal of a node's own certificate (docs/decisions/0008, "Renewal"): at 2/3 of its life
// an issuer node signs its own again; any other node asks the alive issuers one after the
// other, in a random order, until one grants a certificate for the same key that passes
// the node's checks (accept_renewal). A round that fails is retried at the next check (the
// check period is the backoff: renewal_check_period). A certificate that would be due for
// renewal at once without outliving the current one (its issuer certificate expires
// first, and the notAfter is capped there) is refused, or the node would renew in a loop.
//
// Pure: no I/O, no clock reads, no threads; the randomness is a seeded generator. The
// owner (actors/identity_actor.cpp) runs the check timer, asks the membership for the alive
// issuers, carries the requests, self-issues and installs (files, TLS context), feeding
// each outcome back. Not thread-safe: one owner.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "identity/admission.hpp"
#include "identity/log_line.hpp"

namespace starling::identity {

/// True when `leaf` is past 2/3 of its life at `now` (time to renew), or unreadable. The
/// life counts from the issue time, notBefore + clock_skew_allowance (notBefore is
/// backdated, decision 0004): a 45 s certificate is due 30 s after it was signed.
[[nodiscard]] bool renewal_due(const certificate& leaf, time_point now);

/// How often to check `leaf` for renewal: `every`, or a tenth of the certificate's life if
/// that is shorter (so that a short-lived certificate is renewed well before it expires),
/// and at least a second.
[[nodiscard]] std::chrono::nanoseconds renewal_check_period(const certificate& leaf,
                                                            std::chrono::nanoseconds every);

/// Send the encoded renewal request `request` to member `issuer`; its answer goes to
/// renewal::on_answer (or on_failure).
struct renewal_ask {
  std::string issuer;
  std::string request;
};

/// Make `creds` (signed by `by`) the node's certificate (files, TLS context), then report
/// with renewal::on_installed.
struct renewal_install {
  node_credentials creds;
  /// "issuer-2", or "issuer-1 (self-issued)".
  std::string by;
};

/// What the owner does after an input.
struct renewal_effects {
  std::vector<log_line> log;
  /// Ask the membership for the alive issuers: renewal::on_issuers, or on_no_issuers.
  bool list_issuers = false;
  /// This node is an issuer: sign its own (self_issue), then renewal::on_self_issued.
  bool self_issue = false;
  std::optional<renewal_ask> ask;
  std::optional<renewal_install> install;
  /// Set once a renewal is installed: by whom (the owner shows "renewed by <by>").
  std::optional<std::string> renewed_by;
};

/// The renewal of node `name`'s certificate. Pure; one owner.
class renewal {
public:
  /// For node `name`; `seed` seeds the order in which issuers are asked.
  renewal(std::string name, std::uint64_t seed);

  /// The periodic check at `now` of the certificate in `current`: when it is due (and no
  /// round is under way, and `stopped` is false: the node's key is revoked), a round
  /// starts: self_issue when `is_issuer`, else list_issuers.
  [[nodiscard]] renewal_effects on_check(const node_credentials& current, time_point now,
                                         bool is_issuer, bool stopped = false);

  /// The alive issuers (this node is skipped if listed): asked one after the other in a
  /// random order. None: the round fails.
  [[nodiscard]] renewal_effects on_issuers(std::vector<std::string> issuers,
                                           const node_credentials& current, time_point now);

  /// No member list (`reason`): the round fails.
  [[nodiscard]] renewal_effects on_no_issuers(const std::string& reason,
                                              const node_credentials& current, time_point now);

  /// Issuer `issuer` answered with `answer` (an encoded RenewalResponse): checked with
  /// accept_renewal (against `revoked`, for `quorum` issuers) and the expiry cap; if it
  /// fails the next issuer is asked, and after the last the round fails.
  [[nodiscard]] renewal_effects on_answer(const std::string& issuer, std::string_view answer,
                                          const node_credentials& current, time_point now,
                                          const revocation_set& revoked, std::size_t quorum);

  /// Issuer `issuer` refused or could not be reached (`reason`): the next one is asked, and
  /// after the last the round fails.
  [[nodiscard]] renewal_effects on_failure(const std::string& issuer, const std::string& reason,
                                           const node_credentials& current, time_point now);

  /// The issuer node signed its own (`creds`, or why not) as `issuer_node`.
  [[nodiscard]] renewal_effects on_self_issued(caf::expected<node_credentials> creds,
                                               const std::string& issuer_node,
                                               const node_credentials& current, time_point now);

  /// The owner installed the credentials from `by` (`err` empty), or could not. `current`:
  /// the node's credentials after the attempt.
  [[nodiscard]] renewal_effects on_installed(const std::string& by, const caf::error& err,
                                             const node_credentials& current, time_point now);

  /// A round is under way.
  [[nodiscard]] bool in_flight() const noexcept { return in_flight_; }

  /// The issuers not asked yet in this round, in the order they will be.
  [[nodiscard]] const std::vector<std::string>& rest() const noexcept { return rest_; }

private:
  /// Asks the next issuer of rest_, or fails the round with `reason` when none is left.
  renewal_effects ask_next(const std::string& reason, const node_credentials& current,
                           time_point now);
  /// Checks the cap of `creds` from `by`: an install, or the round fails.
  renewal_effects accept(node_credentials creds, std::string by, const node_credentials& current,
                         time_point now);
  /// Ends the round unsuccessfully: logged; retried at the next check.
  renewal_effects fail(const std::string& reason, const node_credentials& current, time_point now);

  std::string name_;
  std::mt19937_64 pick_;
  /// Invariant: rest_ is empty unless in_flight_.
  bool in_flight_ = false;
  /// The issuer asked now (empty: none).
  std::string asked_;
  std::vector<std::string> rest_;
};

} // namespace starling::identity
