#include "identity/keyring_push.hpp"

#include <algorithm>
#include <iterator>
#include <utility>

#include "identity/authority.hpp"
#include "identity/channel.hpp"
#include "identity/errc.hpp"

namespace starling::identity {

std::size_t keyring_push_report::done() const noexcept {
  return static_cast<std::size_t>(
      std::count_if(members.begin(), members.end(), [](const auto& m) { return m.ok(); }));
}

void keyring_effects::append(keyring_effects&& other) {
  log.insert(log.end(), std::make_move_iterator(other.log.begin()),
             std::make_move_iterator(other.log.end()));
  send.insert(send.end(), std::make_move_iterator(other.send.begin()),
              std::make_move_iterator(other.send.end()));
  finished.insert(finished.end(), std::make_move_iterator(other.finished.begin()),
                  std::make_move_iterator(other.finished.end()));
  if (other.step)
    step = std::move(other.step);
  if (other.retry)
    retry = other.retry;
  rotate_again.merge(other.rotate_again);
}

keyring_pushes::keyring_pushes(std::string self) : self_(std::move(self)) {}

keyring_push_id keyring_pushes::start(std::string op, std::string arg, std::string id,
                                      std::set<std::string> exclude, bool rotation) {
  const auto push = ++next_;
  auto& p = pushes_[push];
  p.op = std::move(op);
  p.arg = std::move(arg);
  p.id = std::move(id);
  p.exclude = std::move(exclude);
  p.rotation = rotation;
  p.members.push_back({self_, std::string{}});
  return push;
}

keyring_effects keyring_pushes::on_members(keyring_push_id push,
                                           const std::vector<std::string>& alive,
                                           const issuer_material& signer, time_point now) {
  auto it = pushes_.find(push);
  if (it == pushes_.end() || it->second.listed)
    return {};
  auto& p = it->second;
  p.listed = true;
  keyring_effects fx;
  for (const auto& node : alive) {
    if (node == self_ || p.exclude.contains(node))
      continue;
    if (std::any_of(p.members.begin(), p.members.end(),
                    [&](const auto& m) { return m.node == node; }))
      continue; // listed twice
    tell(p, push, node, signer, now, fx, nullptr);
  }
  fx.append(finish_if_done(it));
  return fx;
}

void keyring_pushes::tell(push_state& p, keyring_push_id push, const std::string& node,
                          const issuer_material& signer, time_point now, keyring_effects& fx,
                          keyring_member_result* slot) {
  if (slot == nullptr)
    slot = &p.members.emplace_back(keyring_member_result{node, std::nullopt});
  // Signed by this issuer's key for this member: no member can pass it on to another,
  // and no name alone makes a change (issue 13, finding 1).
  auto seal = sign_keyring_change(signer, p.op, p.arg, node, now);
  auto request =
      seal ? encode(keyring_change{p.op, p.arg, *seal}) : caf::expected<std::string>{seal.error()};
  if (!request) {
    slot->error = render(request.error());
    return;
  }
  slot->error = std::nullopt;
  ++p.pending;
  fx.send.push_back({push, node, std::move(*request)});
}

keyring_effects keyring_pushes::on_retry(keyring_push_id push,
                                         const std::vector<std::string>& alive,
                                         const issuer_material& signer, time_point now) {
  auto it = pushes_.find(push);
  if (it == pushes_.end() || !it->second.retry_due)
    return {};
  auto& p = it->second;
  p.retry_due = false;
  ++p.attempt;
  keyring_effects fx;
  // members[0] is this node; a slot's address stays put (no member is added here).
  for (std::size_t i = 1; i < p.members.size(); ++i) {
    auto& m = p.members[i];
    if (m.ok() || std::find(alive.begin(), alive.end(), m.node) == alive.end())
      continue;
    const auto node = m.node;
    tell(p, push, node, signer, now, fx, &m);
  }
  fx.append(finish_if_done(it));
  return fx;
}

keyring_effects keyring_pushes::on_no_members(keyring_push_id push) {
  auto it = pushes_.find(push);
  if (it == pushes_.end() || it->second.listed)
    return {};
  it->second.listed = true;
  return finish_if_done(it);
}

keyring_effects keyring_pushes::on_answer(keyring_push_id push, const std::string& node,
                                          std::string_view answer) {
  auto it = pushes_.find(push);
  if (it == pushes_.end())
    return {};
  auto id = decode_keyring_answer(answer);
  if (!id)
    return settle(push, node, render(id.error()));
  if (*id != it->second.id)
    return settle(push, node, "answered for key " + *id + ", not " + it->second.id);
  return settle(push, node, std::string{});
}

keyring_effects keyring_pushes::on_failure(keyring_push_id push, const std::string& node,
                                           std::string reason) {
  if (reason.empty())
    reason = "refused";
  return settle(push, node, std::move(reason));
}

keyring_effects keyring_pushes::settle(keyring_push_id push, const std::string& node,
                                       std::string error) {
  auto it = pushes_.find(push);
  if (it == pushes_.end())
    return {};
  auto& p = it->second;
  for (auto& m : p.members) {
    if (m.node != node || m.error)
      continue;
    m.error = std::move(error);
    --p.pending;
    return finish_if_done(it);
  }
  return {};
}

keyring_effects keyring_pushes::finish_if_done(std::map<keyring_push_id, push_state>::iterator it) {
  keyring_effects fx;
  if (!it->second.listed || it->second.pending > 0 || it->second.retry_due)
    return fx;
  if (auto& q = it->second; q.rotation && rotation_ && q.attempt < max_rotation_attempts) {
    std::vector<std::string> missed;
    for (std::size_t i = 1; i < q.members.size(); ++i)
      if (!q.members[i].ok())
        missed.push_back(q.members[i].node + " (" + *q.members[i].error + ")");
    if (!missed.empty()) {
      // A step that missed members is not over yet: the old key's removal would cut a
      // member that was only slow or briefly unreachable off the gossip for good.
      q.retry_due = true;
      const auto delay = rotation_retry_delay * (1 << (q.attempt - 1));
      std::string who;
      for (const auto& m : missed)
        who += (who.empty() ? "" : ", ") + m;
      fx.log.push_back({log_level::warn, "keyring rotation: " + q.op + " missed " + who +
                                             "; trying again in " + std::to_string(delay.count()) +
                                             " ms (attempt " + std::to_string(q.attempt + 1) +
                                             " of " + std::to_string(max_rotation_attempts) + ")"});
      fx.retry = keyring_retry{it->first, delay};
      return fx;
    }
  }
  auto p = std::move(it->second);
  const auto push = it->first;
  pushes_.erase(it);
  keyring_push_report report{push, p.op, p.id, std::move(p.members)};
  const auto done = report.done();
  const auto total = report.members.size();
  fx.log.push_back({log_level::info, "keyring " + p.op + " of key " + p.id + ": " +
                                         std::to_string(done) + " of " + std::to_string(total) +
                                         " alive members"});
  fx.finished.push_back(std::move(report));
  if (!p.rotation || !rotation_)
    return fx;
  // The rotation's step is over: the next one, or the end.
  if (done < total)
    fx.log.push_back({log_level::warn, "keyring rotation: " + p.op + " reached " +
                                           std::to_string(done) + " of " + std::to_string(total) +
                                           " alive members; the others must be given the "
                                           "keyring again (starling keyring install|use on an "
                                           "issuer)"});
  if (rotation_->stage < 2) {
    ++rotation_->stage;
    fx.step = step_of(*rotation_);
    return fx;
  }
  fx.log.push_back({log_level::info, "keyring rotated after a revocation: key " +
                                         rotation_->new_id + " in use, " + rotation_->old_id +
                                         " removed on every member told"});
  rotation_.reset();
  ++rotations_;
  fx.rotate_again = std::exchange(again_, {});
  return fx;
}

bool keyring_pushes::defer_rotation(const std::set<std::string>& revoked) {
  if (!rotation_)
    return false;
  again_.insert(revoked.begin(), revoked.end());
  return true;
}

keyring_effects keyring_pushes::rotate(std::set<std::string> revoked, std::string key,
                                       std::string new_id, std::string old_id) {
  keyring_effects fx;
  if (defer_rotation(revoked))
    return fx;
  fx.log.push_back(
      {log_level::info, "rotating the gossip keyring: the revoked node(s) hold key " + old_id});
  rotation_ =
      rotation_state{std::move(revoked), std::move(key), std::move(new_id), std::move(old_id), 0};
  fx.step = step_of(*rotation_);
  return fx;
}

keyring_effects keyring_pushes::on_step_refused(const std::string& reason) {
  keyring_effects fx;
  if (!rotation_)
    return fx;
  fx.log.push_back({log_level::error, "keyring rotation after a revocation stopped at '" +
                                          step_of(*rotation_).op + "': " + reason});
  rotation_.reset();
  return fx;
}

rotation_step keyring_pushes::step_of(const rotation_state& r) const {
  switch (r.stage) {
  case 0:
    return {"install", r.key, r.revoked};
  case 1:
    return {"use", r.new_id, r.revoked};
  default:
    return {"remove", r.old_id, r.revoked};
  }
}

} // namespace starling::identity
