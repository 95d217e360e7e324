// `starling ca init` and `starling ca issuer`: the offline mesh root and issuer certificates
// (docs/decisions/0004-certificates.md, docs/operations.md "Certificates"). Plain C++ over
// identity/: no CAF actor headers. The clock is read here, at the edge.
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "actors/cli/commands.hpp"
#include "actors/views.hpp"
#include "identity/errc.hpp"
#include "identity/files.hpp"
#include "identity/pki.hpp"
#include "identity/trust.hpp"

namespace starling::cli {

using namespace starling::actors;

namespace {

namespace fs = std::filesystem;
namespace id = starling::identity;

/// A file to write: where, what, and whether it holds a private key.
struct output_file {
  fs::path path;
  std::string content;
  bool is_private = false;
};

/// Prints one message for `err` and returns the exit code it deserves: 2 for what the
/// operator gave (a bad name or option), 1 for everything else.
int fail(std::string_view command, const caf::error& err) {
  std::cerr << "starling " << command << ": " << id::render(err) << '\n';
  return id::is(err, id::errc::invalid_argument) ? exit_usage : exit_failed;
}

/// An invalid_argument error for option `flag` whose value `value` is not a `kind`.
caf::error bad_name(std::string_view flag, const std::string& value, std::string_view kind,
                    std::string_view rule) {
  return id::make_error(id::errc::invalid_argument, std::string{flag} + ": \"" + value +
                                                        "\" is not a " + std::string{kind} +
                                                        ": use " + std::string{rule});
}

/// Writes `files` into their directory (created 0700 if missing), all or none: nothing is
/// written if one exists already, and the files written are removed if a later one fails.
caf::error write_all_or_none(const std::vector<output_file>& files) {
  for (const auto& f : files) {
    std::error_code ec;
    if (fs::symlink_status(f.path, ec).type() != fs::file_type::not_found)
      return id::make_error(id::errc::already_exists,
                            "refusing to overwrite " + f.path.string() + ": it exists");
  }
  std::vector<fs::path> written;
  for (const auto& f : files) {
    auto err = id::create_private_directories(f.path.parent_path());
    if (!err)
      err = f.is_private ? id::write_private_file(f.path, f.content)
                         : id::write_public_file(f.path, f.content);
    if (err) {
      for (const auto& p : written) {
        std::error_code ec;
        fs::remove(p, ec);
      }
      return err;
    }
    written.push_back(f.path);
  }
  return {};
}

/// The error of the first of `results` that holds one, else none.
template <class... Ts> caf::error first_error(const caf::expected<Ts>&... results) {
  caf::error out;
  ((out = !out && !results ? results.error() : std::move(out)), ...);
  return out;
}

/// Reads and parses one file of the CA directory.
template <class T, class Parse> caf::expected<T> load(const fs::path& file, Parse parse) {
  auto text = id::read_file(file);
  if (!text)
    return text.error();
  auto value = parse(*text);
  if (!value)
    return id::make_error(static_cast<id::errc>(value.error().code()),
                          file.string() + ": " + id::render(value.error()));
  return std::move(*value);
}

} // namespace

int run_ca_init(const ca_init_options& opts) {
  constexpr std::string_view cmd = "ca init";
  if (!id::is_valid_mesh_name(opts.mesh))
    return fail(cmd, bad_name("--mesh", opts.mesh, "mesh name", id::mesh_name_rule));
  const fs::path dir = opts.out;
  auto root = id::create_root(opts.mesh, std::chrono::system_clock::now());
  if (!root)
    return fail(cmd, root.error());
  auto key_pem = id::to_pem(root->key);
  auto cert_pem = id::to_pem(root->cert);
  auto pin = id::spki_sha256(root->cert);
  auto expiry = id::not_after(root->cert);
  if (auto err = first_error(key_pem, cert_pem, pin, expiry))
    return fail(cmd, err);
  if (auto err = write_all_or_none(
          {{dir / "root.key", *key_pem, true}, {dir / "root.crt", *cert_pem, false}}))
    return fail(cmd, err);
  std::cout << "mesh: " << opts.mesh << '\n'
            << "root certificate: " << (dir / "root.crt").string() << '\n'
            << "root key: " << (dir / "root.key").string()
            << " (mode 0600: keep it offline, it signs issuers)\n"
            << "expires: " << iso8601_utc(*expiry) << '\n'
            << "pin: " << id::format_pin(*pin) << '\n';
  return exit_ok;
}

int run_ca_issuer(const ca_issuer_options& opts) {
  constexpr std::string_view cmd = "ca issuer";
  if (!id::is_valid_node_name(opts.name))
    return fail(cmd, bad_name("--name", opts.name, "node name", id::node_name_rule));
  const fs::path ca = opts.ca;
  const fs::path out = opts.out;
  auto root_key = load<id::private_key>(ca / "root.key", id::private_key_from_pem);
  if (!root_key)
    return fail(cmd, root_key.error());
  auto root_cert = load<id::certificate>(ca / "root.crt", id::certificate_from_pem);
  if (!root_cert)
    return fail(cmd, root_cert.error());
  // The roots to trust: ca/bundle.crt during a rotation (it must hold this root), else it.
  auto root_pin = id::spki_sha256(*root_cert);
  if (!root_pin)
    return fail(cmd, root_pin.error());
  std::error_code ec;
  auto bundle = fs::exists(ca / "bundle.crt", ec)
                    ? load<id::trust_bundle>(ca / "bundle.crt", id::trust_bundle::from_pem)
                    : id::trust_bundle::make({*root_cert});
  if (!bundle)
    return fail(cmd, bundle.error());
  if (!bundle->contains_pin(*root_pin))
    return fail(cmd, id::make_error(id::errc::invalid_argument,
                                    (ca / "bundle.crt").string() + " does not hold root.crt"));
  auto issuer =
      id::create_issuer(*root_key, *root_cert, opts.name, std::chrono::system_clock::now());
  if (!issuer)
    return fail(cmd, issuer.error());
  auto key_pem = id::to_pem(issuer->key);
  auto cert_pem = id::to_pem(issuer->cert);
  auto bundle_pem = bundle->to_pem();
  auto expiry = id::not_after(issuer->cert);
  if (auto err = first_error(key_pem, cert_pem, bundle_pem, expiry))
    return fail(cmd, err);
  if (auto err = write_all_or_none({{out / "issuer.key", *key_pem, true},
                                    {out / "issuer.crt", *cert_pem, false},
                                    {out / "bundle.crt", *bundle_pem, false}}))
    return fail(cmd, err);
  std::cout << "issuer: " << id::node_uri(bundle->mesh(), opts.name) << '\n'
            << "issuer certificate: " << (out / "issuer.crt").string() << '\n'
            << "issuer key: " << (out / "issuer.key").string() << " (mode 0600)\n"
            << "trust bundle: " << (out / "bundle.crt").string() << " (" << bundle->roots().size()
            << (bundle->roots().size() == 1 ? " root" : " roots") << ")\n"
            << "expires: " << iso8601_utc(*expiry) << '\n';
  for (const auto& pin : bundle->pins())
    std::cout << "pin: " << id::format_pin(pin) << '\n';
  return exit_ok;
}

} // namespace starling::cli
