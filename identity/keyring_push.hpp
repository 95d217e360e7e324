// The mesh-wide gossip keyring change (docs/decisions/0010, 0011): an issuer applies a
// change (install, use, remove) to its own keyring, then pushes it to every alive member
// over the identity channel, signed by the issuer key for each receiver, until every member
// answered (applied, refused, or the connection failed); then the change is reported. And
// the rotation after a revocation (issue 13, finding 5): a new key installed on every
// alive member but the revoked ones, then used, then the old key removed, each step once
// the one before reached every member. A rotation's step that missed members is sent
// again to those still alive, up to max_rotation_attempts in all, before the rotation goes
// on: a member that was merely slow when the old key is removed would be cut off the
// gossip for good (it then needs the keyring by hand).
//
// Pure: no I/O, no clock reads, no threads. The owner (actors/identity_actor.cpp) applies
// each change to its own keyring before it starts a push, asks the membership for the
// alive members, carries the signed requests to them and feeds their answers back; the
// core decides whom to tell, what each one answered, when a push is over and what the
// rotation does next. Not thread-safe: one owner.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>

#include "identity/admission.hpp"
#include "identity/log_line.hpp"

namespace starling::identity {

/// Names one push; chosen by keyring_pushes::start.
using keyring_push_id = std::uint64_t;

/// Attempts of one rotation step at the members it missed (the first one included).
inline constexpr int max_rotation_attempts = 4;
/// The wait before a rotation step's second attempt; doubled for each one after.
inline constexpr std::chrono::milliseconds rotation_retry_delay{1000};

/// Ask keyring_pushes::on_retry for push `push` after `delay`, with the members alive then.
struct keyring_retry {
  keyring_push_id push = 0;
  std::chrono::milliseconds delay{0};

  friend bool operator==(const keyring_retry&, const keyring_retry&) = default;
};

/// Send the encoded keyring change `request` (signed for `node`) to member `node`; its
/// answer goes to keyring_pushes::on_answer (or on_failure) with `push`.
struct keyring_send {
  keyring_push_id push = 0;
  std::string node;
  std::string request;
};

/// What one member made of a pushed change.
struct keyring_member_result {
  std::string node;
  /// Empty: applied. Else why not (its refusal, an undecodable answer, an answer for
  /// another key, the connection's failure). std::nullopt: no answer.
  std::optional<std::string> error;

  [[nodiscard]] bool ok() const noexcept { return error && error->empty(); }
  friend bool operator==(const keyring_member_result&, const keyring_member_result&) = default;
};

/// A push that every member answered.
struct keyring_push_report {
  keyring_push_id push = 0;
  /// "install", "use" or "remove".
  std::string op;
  /// The key id the change names.
  std::string id;
  /// This node first (it applied the change before the push), then the members told, in
  /// the order of the alive list.
  std::vector<keyring_member_result> members;

  /// Members that applied the change (this node included).
  [[nodiscard]] std::size_t done() const noexcept;
};

/// The next step of a rotation: the owner applies `op` of `arg` to its own keyring, then
/// starts a push of it (keyring_pushes::start with `rotation` true) to every alive member
/// but `exclude`, or reports that it could not (keyring_pushes::on_step_refused).
struct rotation_step {
  std::string op;
  /// install: the new key (base64, a secret: never logged); use: its id; remove: the old id.
  std::string arg;
  /// The revoked nodes: never told.
  std::set<std::string> exclude;

  friend bool operator==(const rotation_step&, const rotation_step&) = default;
};

/// What the owner does after an input: log, send, deliver the reports (to whoever started
/// the push), run the rotation's next step, try a step's missed members again later, start
/// a rotation for `rotate_again` (new key).
struct keyring_effects {
  std::vector<log_line> log;
  std::vector<keyring_send> send;
  std::vector<keyring_push_report> finished;
  std::optional<rotation_step> step;
  std::optional<keyring_retry> retry;
  /// Nodes revoked while a rotation ran: rotate again for them (a new key) now.
  std::set<std::string> rotate_again;

  /// Appends `other` to this.
  void append(keyring_effects&& other);
};

/// The keyring pushes of one issuer node and its rotation. Pure; one owner.
class keyring_pushes {
public:
  /// For the issuer node named `self` (never told: it applies a change before pushing it).
  explicit keyring_pushes(std::string self);

  /// Starts the push of change `op` of `arg`, already applied here (naming key `id`), to
  /// the alive members but `exclude`. `rotation`: this is the rotation's current step.
  /// The owner asks for the alive members next (on_members or on_no_members).
  [[nodiscard]] keyring_push_id start(std::string op, std::string arg, std::string id,
                                      std::set<std::string> exclude, bool rotation = false);

  /// The alive members (`alive`, this node included or not) for push `push`: the change
  /// signed by `signer` at `now` for each member but this node and the excluded ones (a
  /// member it cannot be signed or encoded for is reported with that error). Reported at
  /// once when there is nobody to tell.
  [[nodiscard]] keyring_effects on_members(keyring_push_id push,
                                           const std::vector<std::string>& alive,
                                           const issuer_material& signer, time_point now);

  /// No member list for push `push`: reported with this node only.
  [[nodiscard]] keyring_effects on_no_members(keyring_push_id push);

  /// Member `node` answered push `push` with `answer` (an encoded KeyringResponse: the key
  /// id it holds now; decode_keyring_answer). An undecodable answer or one for another key
  /// counts as a failure. A second answer of a member, or one from a member not told, is
  /// ignored.
  [[nodiscard]] keyring_effects on_answer(keyring_push_id push, const std::string& node,
                                          std::string_view answer);

  /// Member `node` refused push `push`, or could not be reached (`reason`, non-empty).
  [[nodiscard]] keyring_effects on_failure(keyring_push_id push, const std::string& node,
                                           std::string reason);

  /// The wait of a rotation step's push `push` (keyring_effects::retry) is over: the change,
  /// signed again at `now`, goes to each member it missed that is in `alive` now; the others
  /// keep their failure. The step ends when they answered (or at once if none is alive).
  [[nodiscard]] keyring_effects on_retry(keyring_push_id push,
                                         const std::vector<std::string>& alive,
                                         const issuer_material& signer, time_point now);

  /// Pushes waiting for answers (or for their member list, or for a retry).
  [[nodiscard]] std::size_t pending() const noexcept { return pushes_.size(); }

  // -- the rotation after a revocation -----------------------------------------------------

  /// True while a rotation runs (from rotate() to its last step's report).
  [[nodiscard]] bool rotating() const noexcept { return rotation_.has_value(); }

  /// When a rotation runs, remembers `revoked` for the rotation that follows it and
  /// returns true (the owner makes no key); else false.
  bool defer_rotation(const std::set<std::string>& revoked);

  /// Starts a rotation away from key `old_id` (the primary, which `revoked` hold) to the
  /// new key `key` (base64) whose id is `new_id`: the first step (install). Deferred as
  /// defer_rotation says when one runs already.
  [[nodiscard]] keyring_effects rotate(std::set<std::string> revoked, std::string key,
                                       std::string new_id, std::string old_id);

  /// The owner could not apply or start the rotation's current step (`reason`): the
  /// rotation stops there (members keep what they got).
  [[nodiscard]] keyring_effects on_step_refused(const std::string& reason);

  /// Rotations completed.
  [[nodiscard]] std::uint64_t rotations() const noexcept { return rotations_; }

private:
  struct push_state {
    std::string op;
    std::string arg;
    std::string id;
    std::set<std::string> exclude;
    bool rotation = false;
    /// Per member, this node first. std::nullopt: no answer yet.
    std::vector<keyring_member_result> members;
    /// Members told and not answered yet.
    std::size_t pending = 0;
    /// on_members or on_no_members ran.
    bool listed = false;
    /// Rotation steps: attempts at the missed members so far, and whether a retry is due.
    int attempt = 1;
    bool retry_due = false;
  };

  struct rotation_state {
    std::set<std::string> revoked;
    std::string key;
    std::string new_id;
    std::string old_id;
    /// 0 install, 1 use, 2 remove.
    int stage = 0;
  };

  /// Signs push `p`'s change for `node` and records it as told (++pending, the send in
  /// `fx`), or records why it could not be.
  void tell(push_state& p, keyring_push_id push, const std::string& node,
            const issuer_material& signer, time_point now, keyring_effects& fx,
            keyring_member_result* slot);
  /// Records `node`'s result in push `push`; reports the push if it was the last.
  keyring_effects settle(keyring_push_id push, const std::string& node, std::string error);
  /// Reports push `it` if every member answered, and moves the rotation on.
  keyring_effects finish_if_done(std::map<keyring_push_id, push_state>::iterator it);
  /// The rotation's step for its stage.
  rotation_step step_of(const rotation_state& r) const;

  std::string self_;
  keyring_push_id next_ = 0;
  std::map<keyring_push_id, push_state> pushes_;
  /// Set while a rotation runs.
  std::optional<rotation_state> rotation_;
  /// Nodes revoked while a rotation ran: the next rotation is for them.
  std::set<std::string> again_;
  std::uint64_t rotations_ = 0;
};

} // namespace starling::identity
