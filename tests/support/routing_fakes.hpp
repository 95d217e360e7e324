// A stand-in for the identity module's key book, for routing tests and the simulator: keys
// are named after their node, a "signature" is a keyed 64-bit hash of the signed bytes, and
// a "chain" is one certificate holding "<node>" or "<node> issuer". It keeps the shape of
// the real thing (key ids, unknown keys, chains learned on demand, forgeries refused) at no
// cryptographic cost; what it does not do is cryptography: a test of real signatures uses
// the identity module (tests/unit/identity/routing_keys_test.cpp, the agent). Header-only;
// depends on the gossip core only, so the simulator can use it.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "gossip/routing_table.hpp"

namespace starling::gossip::test_support {

/// The 32-byte key id of `node`'s key in the fakes.
inline std::string fake_key_id(std::string_view node) {
  std::string id = "key:";
  id.append(node.substr(0, 28));
  id.resize(32, '.');
  return id;
}

/// The fakes' signature of `bytes` under `ctx` by the key `key_id`.
inline std::string fake_signature(routing_context ctx, std::string_view key_id,
                                  std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ULL ^ static_cast<std::uint64_t>(ctx);
  for (auto part : {key_id, std::string_view{"\0", 1}, bytes})
    for (unsigned char c : part) {
      h ^= c;
      h *= 0x100000001b3ULL;
    }
  return std::string(reinterpret_cast<const char*>(&h), sizeof h);
}

/// The chain that makes `node`'s key known (issuer authority when `issuer`).
inline signer_chain fake_chain(std::string_view node, bool issuer = false) {
  return {fake_key_id(node), {std::string{node} + (issuer ? " issuer" : "")}};
}

/// A routing_trust over the fakes. `knows_everyone`: every key is known without a chain
/// (the simulator's default); otherwise keys must be learned. Nodes in `rogues` have
/// chains that are refused (a certificate the bundle does not vouch for).
class fake_trust final : public routing_trust {
public:
  explicit fake_trust(bool knows_everyone = false, std::set<std::string> issuers = {})
      : knows_everyone_(knows_everyone), issuers_(std::move(issuers)) {}

  bool requires_signatures() const override { return true; }

  caf::expected<routing_signer> verify(routing_context ctx, std::string_view bytes,
                                       const routing_seal& seal, std::uint64_t) override {
    auto known = signer_of(seal.key_id);
    if (!known)
      return make_error(routing_errc::unknown_key, "key not learned");
    if (seal.signature != fake_signature(ctx, seal.key_id, bytes))
      return make_error(routing_errc::bad_signature, "signature does not verify");
    return *known;
  }

  caf::expected<routing_signer> learn(const signer_chain& chain, std::uint64_t) override {
    ++learn_calls;
    if (chain.certificates.size() != 1)
      return make_error(routing_errc::bad_signature, "not a fake chain");
    std::string_view text = chain.certificates.front();
    const bool issuer = text.ends_with(" issuer");
    std::string node{issuer ? text.substr(0, text.size() - 7) : text};
    if (fake_key_id(node) != chain.key_id || rogues.contains(node))
      return make_error(routing_errc::bad_signature, "chain refused");
    routing_signer s{node, issuer};
    learned_[chain.key_id] = s;
    return s;
  }

  std::optional<signer_chain> chain_of(std::string_view key_id) const override {
    auto it = learned_.find(std::string{key_id});
    if (it == learned_.end())
      return std::nullopt;
    return fake_chain(it->second.node, it->second.issuer);
  }

  /// Nodes whose chains are refused.
  std::set<std::string> rogues;
  /// learn() calls so far.
  std::size_t learn_calls = 0;

private:
  std::optional<routing_signer> signer_of(const std::string& key_id) const {
    if (auto it = learned_.find(key_id); it != learned_.end())
      return it->second;
    if (!knows_everyone_ || !key_id.starts_with("key:"))
      return std::nullopt;
    auto node = key_id.substr(4);
    node.erase(node.find_last_not_of('.') + 1);
    return routing_signer{node, issuers_.contains(node)};
  }

  bool knows_everyone_;
  std::set<std::string> issuers_;
  std::map<std::string, routing_signer> learned_;
};

/// Signs as node `node` with the fakes; `issuer` decides whether it may sign policies
/// (a sealer without issuer authority refuses them, as the agent's does).
class fake_sealer final : public routing_sealer {
public:
  explicit fake_sealer(std::string node, bool issuer = false)
      : node_(std::move(node)), issuer_(issuer) {}

  caf::expected<routing_seal> seal(routing_context ctx, std::string_view bytes) override {
    if (ctx == routing_context::policy && !issuer_ && !sign_anything)
      return make_error(routing_errc::no_authority, node_ + " is not an issuer");
    auto id = fake_key_id(node_);
    return routing_seal{id, fake_signature(ctx, id, bytes)};
  }

  /// A hostile node signs policies with its own (non-issuer) key anyway.
  bool sign_anything = false;

private:
  std::string node_;
  bool issuer_;
};

} // namespace starling::gossip::test_support
