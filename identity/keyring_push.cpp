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
    // Signed by this issuer's key for this member: no member can pass it on to another,
    // and no name alone makes a change (issue 13, finding 1).
    auto seal = sign_keyring_change(signer, p.op, p.arg, node, now);
    auto request = seal ? encode(keyring_change{p.op, p.arg, *seal})
                        : caf::expected<std::string>{seal.error()};
    if (!request) {
      p.members.push_back({node, render(request.error())});
      continue;
    }
    p.members.push_back({node, std::nullopt});
    ++p.pending;
    fx.send.push_back({push, node, std::move(*request)});
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
  if (!it->second.listed || it->second.pending > 0)
    return fx;
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
