#include "identity/names.hpp"

namespace starling::identity {

namespace {

constexpr bool is_alnum(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

constexpr bool is_lower_alnum(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

constexpr std::string_view scheme = "spiffe://";

} // namespace

bool is_valid_node_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 64 || !is_alnum(name.front()))
    return false;
  for (char c : name)
    if (!is_alnum(c) && c != '.' && c != '_' && c != '-')
      return false;
  return true;
}

bool is_valid_mesh_name(std::string_view mesh) noexcept {
  if (mesh.empty() || mesh.size() > 63 || !is_lower_alnum(mesh.front()) ||
      !is_lower_alnum(mesh.back()) || mesh.find("..") != std::string_view::npos)
    return false;
  for (char c : mesh)
    if (!is_lower_alnum(c) && c != '.' && c != '-')
      return false;
  return true;
}

std::string spiffe_id::to_uri() const {
  switch (kind) {
  case kind_t::mesh:
    return mesh_uri(mesh);
  case kind_t::node:
    return node_uri(mesh, name);
  case kind_t::service:
    return mesh_uri(mesh) + "/svc/" + name;
  }
  return {};
}

std::string node_uri(std::string_view mesh, std::string_view node) {
  return mesh_uri(mesh) + "/node/" + std::string{node};
}

std::string mesh_uri(std::string_view mesh) { return std::string{scheme} + std::string{mesh}; }

std::optional<spiffe_id> parse_spiffe_uri(std::string_view uri) {
  if (!uri.starts_with(scheme))
    return std::nullopt;
  uri.remove_prefix(scheme.size());
  auto slash = uri.find('/');
  spiffe_id id;
  id.mesh = std::string{uri.substr(0, slash)};
  if (!is_valid_mesh_name(id.mesh))
    return std::nullopt;
  if (slash == std::string_view::npos)
    return id; // kind_t::mesh
  auto path = uri.substr(slash + 1);
  auto sep = path.find('/');
  if (sep == std::string_view::npos)
    return std::nullopt;
  auto kind = path.substr(0, sep);
  auto name = path.substr(sep + 1);
  if (kind == "node")
    id.kind = spiffe_id::kind_t::node;
  else if (kind == "svc")
    id.kind = spiffe_id::kind_t::service;
  else
    return std::nullopt;
  if (!is_valid_node_name(name))
    return std::nullopt;
  id.name = std::string{name};
  return id;
}

} // namespace starling::identity
