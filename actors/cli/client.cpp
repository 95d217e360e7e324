// The one-shot commands that talk to an agent's admin port: `starling members`,
// `starling leave`. Client side of docs/decisions/0007: send the command line, print the
// answer, map its status to the exit code.
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <variant>

#include <nlohmann/json.hpp>

#include "actors/admin_server.hpp"
#include "actors/certs_view.hpp"
#include "actors/cli/commands.hpp"
#include "actors/cli/views.hpp"
#include "actors/errc.hpp"
#include "actors/keyring_sealer.hpp"
#include "actors/views.hpp"
#include "identity/errc.hpp"
#include "identity/keyring.hpp"

namespace starling::cli {

using namespace starling::actors;

namespace {

/// The admin credential to send to the agent on `port` (docs/decisions/0012): the file of
/// --admin-cookie or $STARLING_ADMIN_COOKIE (an error if unreadable), else the copy the
/// agent left in this user's runtime dir, else none (read-only commands need none).
caf::expected<std::string> admin_credential_for(const client_options& opts, std::uint16_t port) {
  std::string file = opts.admin_cookie;
  if (file.empty())
    if (const char* env = std::getenv("STARLING_ADMIN_COOKIE"); env != nullptr)
      file = env;
  if (!file.empty())
    return read_admin_cookie(file);
  const auto dir = admin_runtime_dir([](const char* name) { return std::getenv(name); });
  if (dir.empty())
    return std::string{};
  auto found = read_admin_cookie(dir + "/" + runtime_cookie_name(port));
  return found ? std::move(*found) : std::string{};
}

/// Sends `args` to the admin port at `opts.admin`; returns the answer's body, or prints
/// a message on stderr and returns the exit code.
std::variant<std::string, int> ask(const client_options& opts,
                                   const std::vector<std::string>& args) {
  auto hp = parse_host_port(opts.admin, "--admin");
  if (!hp) {
    std::cerr << "starling: " << message_of(hp.error()) << '\n';
    return exit_usage;
  }
  auto credential = admin_credential_for(opts, hp->port);
  if (!credential) {
    std::cerr << "starling: " << message_of(credential.error()) << '\n';
    return exit_usage;
  }
  auto reply = call_admin(hp->host, hp->port, args, opts.timeout, *credential);
  if (!reply) {
    std::cerr << "starling: cannot reach the agent's admin port at " << hp->to_string() << ": "
              << message_of(reply.error())
              << "; is the agent running? (--admin sets the address)\n";
    return exit_failed;
  }
  switch (reply->code) {
  case admin_reply::status::ok:
    return std::move(reply->body);
  case admin_reply::status::usage:
    std::cerr << "starling: " << reply->error << '\n';
    return exit_usage;
  case admin_reply::status::failed:
    break;
  }
  std::cerr << "starling: the agent at " << hp->to_string() << " refused: " << reply->error << '\n';
  return exit_failed;
}

/// Asks for a JSON view and prints it as is (--json) or rendered by `render`.
int print_view(const client_options& opts, const std::vector<std::string>& args,
               caf::expected<std::string> (*render)(std::string_view)) {
  auto res = ask(opts, args);
  if (auto* code = std::get_if<int>(&res))
    return *code;
  const auto& json = std::get<std::string>(res);
  if (opts.json) {
    std::cout << json << std::endl;
    return exit_ok;
  }
  auto text = render(json);
  if (!text) {
    std::cerr << "starling: " << message_of(text.error()) << '\n';
    return exit_failed;
  }
  std::cout << *text << std::flush;
  return exit_ok;
}

} // namespace

int run_members(const client_options& opts) { return print_view(opts, {"members"}, members_table); }

int run_stats(const client_options& opts) { return print_view(opts, {"stats"}, stats_table); }

int run_leave(const client_options& opts) {
  auto res = ask(opts, {"leave"});
  if (auto* code = std::get_if<int>(&res))
    return *code;
  const auto& answer = std::get<std::string>(res);
  if (answer != "ok") {
    std::cerr << "starling: leave refused: " << answer << '\n';
    return exit_failed;
  }
  std::cout << "leave requested: the agent leaves the mesh and exits" << std::endl;
  return exit_ok;
}

namespace {

/// Prints the outcome of a keyring change pushed to the whole mesh (the agent's JSON
/// report: {"op","id","members":[{"node","ok","error"}...]}).
int print_mesh_keyring(const std::string& op, const std::string& answer) {
  auto doc = nlohmann::json::parse(answer, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("members") ||
      !doc["members"].is_array() || !doc.contains("id") || !doc["id"].is_string()) {
    std::cerr << "starling: the agent's answer is not a keyring report\n";
    return exit_failed;
  }
  std::size_t done = 0;
  for (const auto& m : doc["members"]) {
    if (m.value("ok", false)) {
      ++done;
      continue;
    }
    std::cerr << "starling: keyring " << op << " on " << m.value("node", std::string{"?"})
              << " refused: " << m.value("error", std::string{}) << '\n';
  }
  const auto id = doc["id"].get<std::string>();
  const char* verb = op == "install" ? "installed key "
                     : op == "use"   ? "made key "
                                     : "removed key ";
  std::cout << verb << id << (op == "use" ? " primary" : "") << " on " << done << " of "
            << doc["members"].size() << " alive members" << std::endl;
  if (done == doc["members"].size() && op == "install")
    std::cout << "next: `starling keyring use " << id << "` (every member can open it now)"
              << std::endl;
  return done == doc["members"].size() ? exit_ok : exit_failed;
}

} // namespace

int run_keyring(const client_options& opts, const std::string& op, const std::string& arg,
                bool local) {
  if (op == "list")
    return print_view(opts, {"keyring", "list"}, keyring_table);
  std::vector<std::string> args{"keyring", op};
  if (!arg.empty())
    args.push_back(arg);
  const bool mesh = op != "list" && !local;
  auto mesh_opts = opts;
  if (mesh) {
    args.emplace_back("--mesh");
    // One exchange per member, in parallel, each bounded by the agent's TCP timeout.
    mesh_opts.timeout = std::max(opts.timeout, std::chrono::milliseconds{std::chrono::seconds{30}});
  }
  auto res = ask(mesh_opts, args);
  if (mesh) {
    if (auto* code = std::get_if<int>(&res))
      return *code;
    return print_mesh_keyring(op, std::get<std::string>(res));
  }
  if (auto* code = std::get_if<int>(&res))
    return *code;
  // A refused change came back as a failed status (ask printed why and gave exit 1): the
  // body of an ok answer is the key id.
  const auto& id = std::get<std::string>(res);
  if (op == "install")
    std::cout << "installed key " << id << " (run `starling keyring use " << id
              << "` once every node has it)" << std::endl;
  else if (op == "use")
    std::cout << "key " << id << " is now the primary key (it seals this node's gossip)"
              << std::endl;
  else
    std::cout << "removed key " << id << std::endl;
  return exit_ok;
}

int run_certs(const client_options& opts) { return print_view(opts, {"certs"}, certs_text); }

int run_token_create(const client_options& opts, const std::string& ttl, const std::string& uses) {
  std::vector<std::string> args{"token", "create"};
  if (!ttl.empty())
    args.insert(args.end(), {"--ttl", ttl});
  if (!uses.empty())
    args.insert(args.end(), {"--uses", uses});
  auto res = ask(opts, args);
  if (auto* code = std::get_if<int>(&res))
    return *code;
  std::cerr << "join token (a secret until spent or expired; join with "
               "`starling agent --join SEED --token TOKEN`):\n";
  std::cout << std::get<std::string>(res) << std::endl;
  return exit_ok;
}

int run_revoke(const client_options& opts, const std::string& node, const std::string& key) {
  std::vector<std::string> args{"revoke", node};
  if (!key.empty())
    args.insert(args.end(), {"--key", key});
  auto res = ask(opts, args);
  if (auto* code = std::get_if<int>(&res))
    return *code;
  std::cout << std::get<std::string>(res) << std::flush;
  std::cerr << "the revocation spreads to every member; `starling certs` lists it\n";
  return exit_ok;
}

int run_keyring_generate() {
  auto key = identity::generate_gossip_key();
  if (!key) {
    std::cerr << "starling: " << identity::render(key.error()) << '\n';
    return exit_failed;
  }
  std::cout << identity::to_base64(*key) << std::endl;
  return exit_ok;
}

} // namespace starling::cli
