// Names that identities are made of: node (member) names, mesh names and the SPIFFE URIs
// built from them. Pure string rules, shared by the certificate code and config loading so
// that a name the agent accepts is exactly a name a certificate can carry.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace starling::identity {

/// True for a node (member) name: [A-Za-z0-9][A-Za-z0-9._-]*, 1 to 64 bytes. The agent's
/// `name` key and `--name` flag, CSRs and certificates all use this one rule.
[[nodiscard]] bool is_valid_node_name(std::string_view name) noexcept;

/// The node-name rule in words, for messages ("use <rule>").
inline constexpr std::string_view node_name_rule =
    "1 to 64 of letters, digits, '.', '_' and '-', starting with a letter or digit";

/// True for a mesh name: lower-case letters, digits, '.' and '-', 1 to 63 bytes, starting and
/// ending with a letter or digit, no "..". It is the host part of every SPIFFE URI of the
/// mesh and the URI name constraint of its issuers.
[[nodiscard]] bool is_valid_mesh_name(std::string_view mesh) noexcept;

/// The mesh-name rule in words, for messages ("use <rule>").
inline constexpr std::string_view mesh_name_rule =
    "1 to 63 of a-z, 0-9, '.' and '-', starting and ending with a letter or digit";

/// A parsed Starling SPIFFE ID: `spiffe://<mesh>` (a mesh root), `spiffe://<mesh>/node/<name>`
/// (a node or issuer) or `spiffe://<mesh>/svc/<name>` (a service workload).
struct spiffe_id {
  /// What the ID names.
  enum class kind_t : unsigned char { mesh = 1, node, service };
  kind_t kind = kind_t::mesh;
  /// Mesh name (valid per is_valid_mesh_name).
  std::string mesh;
  /// Node or service name; empty for kind_t::mesh. Valid per is_valid_node_name.
  std::string name;

  /// The URI text ("spiffe://m/node/n").
  [[nodiscard]] std::string to_uri() const;

  friend bool operator==(const spiffe_id&, const spiffe_id&) = default;
};

/// `spiffe://<mesh>/node/<node>`; the caller validated both names.
[[nodiscard]] std::string node_uri(std::string_view mesh, std::string_view node);

/// `spiffe://<mesh>`; the caller validated the name.
[[nodiscard]] std::string mesh_uri(std::string_view mesh);

/// Parses one of the three URI forms of spiffe_id, exactly (no query, fragment, port, user,
/// trailing '/', percent-encoding or upper-case mesh). std::nullopt for anything else: the
/// input is untrusted certificate content.
[[nodiscard]] std::optional<spiffe_id> parse_spiffe_uri(std::string_view uri);

} // namespace starling::identity
