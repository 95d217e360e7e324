// The one-shot commands that talk to an agent's admin actor: `starling members`,
// `starling leave`. Client side of docs/decisions/0002: connect with CAF's middleman
// (bounded), send an atom, print the string answer.
#include <iostream>
#include <optional>
#include <variant>
#include <set>
#include <sstream>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/atoms.hpp"
#include "actors/commands.hpp"
#include "actors/errc.hpp"
#include "actors/keyring_sealer.hpp"
#include "actors/views.hpp"
#include "identity/errc.hpp"
#include "identity/keyring.hpp"

namespace starling::actors {

namespace {

/// A short reason for a failed connect or request.
std::string reason(const caf::error& err, std::chrono::milliseconds timeout) {
  if (err == caf::sec::cannot_connect_to_node)
    return "connection failed";
  if (err == caf::sec::request_timeout)
    return "no answer within " + std::to_string(timeout.count()) + "ms";
  if (err == caf::sec::request_receiver_down)
    return "the agent is shutting down";
  return caf::to_string(err);
}

/// Connects to the admin actor at `opts.admin` and sends `request`; returns the string
/// answer, or prints a message on stderr and returns the exit code.
template <class... Ts>
std::variant<std::string, int> ask(const client_options& opts, Ts... request) {
  auto hp = parse_host_port(opts.admin, "--admin");
  if (!hp) {
    std::cerr << "starling: " << message_of(hp.error()) << '\n';
    return exit_usage;
  }
  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();
  std::istringstream no_ini;
  if (auto err = cfg.parse(caf::actor_system_config::string_list{}, no_ini)) {
    std::cerr << "starling: " << caf::to_string(err) << '\n';
    return exit_failed;
  }
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  caf::actor admin;
  std::string failure;
  // remote_actor() waits forever on some failures: ask the middleman with a timeout.
  self
    ->request(sys.middleman().actor_handle(), opts.timeout, caf::connect_atom::value, hp->host,
              hp->port)
    .receive(
      [&](caf::node_id&, caf::strong_actor_ptr& ptr, std::set<std::string>&) {
        if (ptr)
          admin = caf::actor_cast<caf::actor>(ptr);
        else
          failure = "no actor published there";
      },
      [&](caf::error& err) { failure = reason(err, opts.timeout); });
  if (!admin) {
    std::cerr << "starling: cannot reach the agent's admin actor at " << hp->to_string() << ": "
              << failure << "; is the agent running? (--admin sets the address)\n";
    return exit_failed;
  }
  std::optional<std::string> answer;
  self->request(admin, opts.timeout, std::move(request)...)
    .receive([&](std::string& s) { answer = std::move(s); },
             [&](caf::error& err) { failure = reason(err, opts.timeout); });
  if (!answer) {
    std::cerr << "starling: the agent at " << hp->to_string()
              << " did not answer: " << failure << '\n';
    return exit_failed;
  }
  return std::move(*answer);
}

} // namespace

int run_members(const client_options& opts) {
  auto res = ask(opts, members_atom::value);
  if (auto* code = std::get_if<int>(&res))
    return *code;
  const auto& json = std::get<std::string>(res);
  if (opts.json) {
    std::cout << json << std::endl;
    return exit_ok;
  }
  auto table = members_table(json);
  if (!table) {
    std::cerr << "starling: " << message_of(table.error()) << '\n';
    return exit_failed;
  }
  std::cout << *table << std::flush;
  return exit_ok;
}

int run_leave(const client_options& opts) {
  auto res = ask(opts, leave_atom::value);
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

int run_keyring(const client_options& opts, const std::string& op, const std::string& arg) {
  auto res = ask(opts, keyring_atom::value, op, arg);
  if (auto* code = std::get_if<int>(&res))
    return *code;
  const auto& answer = std::get<std::string>(res);
  if (op == "list") {
    if (opts.json) {
      std::cout << answer << std::endl;
      return exit_ok;
    }
    auto table = keyring_table(answer);
    if (!table) {
      std::cerr << "starling: " << message_of(table.error()) << '\n';
      return exit_failed;
    }
    std::cout << *table << std::flush;
    return exit_ok;
  }
  if (answer.rfind("ok ", 0) != 0) {
    auto why = answer.rfind("error: ", 0) == 0 ? answer.substr(7) : answer;
    std::cerr << "starling: keyring " << op << " refused: " << why << '\n';
    return exit_failed;
  }
  const auto id = answer.substr(3);
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

int run_keyring_generate() {
  auto key = identity::generate_gossip_key();
  if (!key) {
    std::cerr << "starling: " << identity::render(key.error()) << '\n';
    return exit_failed;
  }
  std::cout << identity::to_base64(*key) << std::endl;
  return exit_ok;
}

} // namespace starling::actors
