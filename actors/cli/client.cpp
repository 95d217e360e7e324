// The one-shot commands that talk to an agent's admin port: `starling members`,
// `starling leave`, the service and routing commands of issue 16 (`services`, `routes`,
// `register`, `deregister`, `split`, `route`, `resilience`, `authz`). Client side of
// docs/decisions/0007: send the command line, print the answer, map its status to the exit code.
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <set>
#include <string_view>
#include <tuple>
#include <variant>

#include <nlohmann/json.hpp>

#include "actors/admin_server.hpp"
#include "actors/certs_view.hpp"
#include "actors/cli/commands.hpp"
#include "actors/cli/views.hpp"
#include "actors/errc.hpp"
#include "actors/keyring_sealer.hpp"
#include "actors/views.hpp"
#include "gossip/health.hpp"
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

} // namespace

std::variant<std::string, int> ask_agent(const client_options& opts,
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

namespace {

/// Asks for a JSON view and prints it as is (--json) or rendered by `render`.
int print_view(const client_options& opts, const std::vector<std::string>& args,
               caf::expected<std::string> (*render)(std::string_view)) {
  auto res = ask_agent(opts, args);
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
  auto res = ask_agent(opts, {"leave"});
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
  auto res = ask_agent(mesh_opts, args);
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
  auto res = ask_agent(opts, args);
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
  auto res = ask_agent(opts, args);
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

// -- services and routing (issue 16) -------------------------------------------------------

int run_services(const client_options& opts) {
  return print_view(opts, {"services"}, services_table);
}

int run_routes(const client_options& opts) { return print_view(opts, {"routes"}, routes_text); }

namespace {

/// A usage error of a command line, caught before anything is sent.
caf::error usage_error(std::string message) {
  return make_error(errc::invalid_config, std::move(message));
}

/// `text` in double quotes, for messages.
std::string in_quotes(std::string_view text) { return "\"" + std::string{text} + "\""; }

/// A non-negative decimal integer of at most 9 digits (no sign, no blanks); nullopt otherwise.
std::optional<std::uint32_t> parse_count(std::string_view text) {
  if (text.empty() || text.size() > 9)
    return std::nullopt;
  std::uint32_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return std::nullopt;
    n = n * 10 + static_cast<std::uint32_t>(c - '0');
  }
  return n;
}

/// The request, unless it carries more arguments than one admin request may; `fixed` of them
/// are not the list of `what`.
caf::expected<std::vector<std::string>> within_limit(std::vector<std::string> args,
                                                     std::size_t fixed, std::string_view what) {
  if (args.size() > max_admin_args)
    return usage_error(args[0] + ": at most " + std::to_string(max_admin_args - fixed) + " " +
                       std::string{what});
  return args;
}

/// Sends the request built from the command line (exit 2 when it could not be built) and
/// prints the agent's text answer.
int send_and_print(const client_options& opts,
                   const caf::expected<std::vector<std::string>>& args) {
  if (!args) {
    std::cerr << "starling: " << message_of(args.error()) << '\n';
    return exit_usage;
  }
  auto res = ask_agent(opts, *args);
  if (auto* code = std::get_if<int>(&res))
    return *code;
  const auto& answer = std::get<std::string>(res);
  std::cout << answer;
  if (answer.empty() || answer.back() != '\n')
    std::cout << '\n';
  std::cout << std::flush;
  return exit_ok;
}

} // namespace

caf::expected<std::vector<std::string>> register_args(const register_options& svc) {
  if (svc.name.empty())
    return usage_error("register: --name is required (the service's name)");
  if (svc.port.empty())
    return usage_error("register: --port is required (where the instance listens)");
  if (!svc.check.empty() && !gossip::parse_health_check_kind(svc.check))
    return usage_error("register: --check: expected tcp, http or grpc, got " +
                       in_quotes(svc.check));
  const std::pair<const char*, const std::string*> keys[] = {
      {"name", &svc.name},
      {"port", &svc.port},
      {"protocol", &svc.protocol},
      {"tags", &svc.tags},
      {"version", &svc.version},
      {"weight", &svc.weight},
      {"address", &svc.address},
      {"id", &svc.id},
      {"check", &svc.check},
      {"check_path", &svc.check_path},
      {"check_expect", &svc.check_expect},
      {"check_interval", &svc.check_interval},
      {"check_timeout", &svc.check_timeout},
      {"check_rise", &svc.rise},
      {"check_fall", &svc.fall},
      {"check_grpc_service", &svc.check_grpc_service},
  };
  const std::pair<const char*, const std::string*> check_flags[] = {
      {"--check-path", &svc.check_path},
      {"--check-expect", &svc.check_expect},
      {"--check-interval", &svc.check_interval},
      {"--check-timeout", &svc.check_timeout},
      {"--rise", &svc.rise},
      {"--fall", &svc.fall},
      {"--check-grpc-service", &svc.check_grpc_service},
  };
  if (svc.check.empty())
    for (const auto& [flag, value] : check_flags)
      if (!value->empty())
        return usage_error(std::string{"register: "} + flag +
                           " configures a health check: add --check tcp|http|grpc");
  std::vector<std::string> args{"register"};
  for (const auto& [key, value] : keys)
    if (!value->empty())
      args.push_back(std::string{key} + "=" + *value);
  return args;
}

int run_register(const client_options& opts, const register_options& svc) {
  auto args = register_args(svc);
  if (!args) {
    std::cerr << "starling: " << message_of(args.error()) << '\n';
    return exit_usage;
  }
  auto res = ask_agent(opts, *args);
  if (auto* code = std::get_if<int>(&res))
    return *code;
  const auto& answer = std::get<std::string>(res);
  auto text = registered_text(answer);
  if (!text) {
    // The agent did register it (its status says so); show what it said.
    std::cerr << "starling: " << message_of(text.error()) << "; it answered:\n";
    std::cout << answer << std::endl;
    return exit_ok;
  }
  std::cout << *text << std::flush;
  return exit_ok;
}

caf::expected<std::vector<std::string>> deregister_args(const deregister_options& what) {
  if (!what.service.empty() && !what.name.empty() && what.service != what.name)
    return usage_error("deregister: SVC " + in_quotes(what.service) + " and --name " +
                       in_quotes(what.name) + " differ");
  if (!what.id.empty() && !what.id_flag.empty() && what.id != what.id_flag)
    return usage_error("deregister: ID " + in_quotes(what.id) + " and --id " +
                       in_quotes(what.id_flag) + " differ");
  const auto& service = what.service.empty() ? what.name : what.service;
  const auto& id = what.id.empty() ? what.id_flag : what.id;
  if (service.empty())
    return usage_error("deregister: give the service (`starling deregister SVC [ID]`)");
  std::vector<std::string> args{"deregister", service};
  if (!id.empty())
    args.push_back(id);
  return args;
}

int run_deregister(const client_options& opts, const deregister_options& what) {
  return send_and_print(opts, deregister_args(what));
}

caf::expected<std::vector<std::string>>
split_args(const std::string& service, const std::vector<std::string>& weights, bool clear) {
  if (service.empty())
    return usage_error("split: give the service (`starling split SVC v1=90 v2=10`)");
  if (clear) {
    if (!weights.empty())
      return usage_error("split: --clear takes no VERSION=WEIGHT");
    return std::vector<std::string>{"split", service, "--clear"};
  }
  if (weights.empty())
    return usage_error("split: give at least one VERSION=WEIGHT (e.g. v1=90 v2=10), or --clear");
  std::vector<std::string> args{"split", service};
  std::set<std::string, std::less<>> versions;
  unsigned sum = 0;
  for (const auto& w : weights) {
    const auto eq = w.find('=');
    if (eq == std::string::npos || eq == 0)
      return usage_error("split: expected VERSION=WEIGHT (e.g. v1=90), got " + in_quotes(w));
    const auto version = w.substr(0, eq);
    const auto weight = parse_count(std::string_view{w}.substr(eq + 1));
    if (!weight || *weight > 100)
      return usage_error("split: the weight of " + version + " must be an integer 0..100, got " +
                         in_quotes(w.substr(eq + 1)));
    if (!versions.insert(version).second)
      return usage_error("split: version " + version + " is given twice");
    sum += *weight;
    args.push_back(w);
  }
  if (sum != 100)
    return usage_error("split: the weights must sum to 100, they sum to " + std::to_string(sum));
  return within_limit(std::move(args), 2, "versions");
}

int run_drain(const client_options& opts, bool cancel) {
  return send_and_print(opts, cancel ? std::vector<std::string>{"drain", "--cancel"}
                                     : std::vector<std::string>{"drain"});
}

int run_split(const client_options& opts, const std::string& service,
              const std::vector<std::string>& weights, bool clear) {
  return send_and_print(opts, split_args(service, weights, clear));
}

caf::expected<std::vector<std::string>>
route_args(const std::string& service, const std::string& name, const route_options& route) {
  if (service.empty() || name.empty())
    return usage_error("route: give the service and the route's name (`starling route SVC NAME "
                       "--header H=V --to VERSION`)");
  if (route.remove) {
    if (!route.header.empty() || !route.to.empty())
      return usage_error("route: --delete takes no --header or --to");
    return std::vector<std::string>{"route", service, name, "--delete"};
  }
  if (route.header.empty())
    return usage_error("route: give --header NAME=VALUE and --to VERSION (or --delete)");
  const auto eq = route.header.find('=');
  if (eq == std::string::npos || eq == 0) // an empty VALUE matches an empty header
    return usage_error("route: --header expects NAME=VALUE (e.g. x-user-group=beta), got " +
                       in_quotes(route.header));
  if (route.to.empty())
    return usage_error("route: --to VERSION is required (where matching requests go)");
  return std::vector<std::string>{"route",
                                  service,
                                  name,
                                  "header=" + route.header.substr(0, eq),
                                  "value=" + route.header.substr(eq + 1),
                                  "version=" + route.to};
}

int run_route(const client_options& opts, const std::string& service, const std::string& name,
              const route_options& route) {
  return send_and_print(opts, route_args(service, name, route));
}

caf::expected<std::vector<std::string>> resilience_args(const std::string& service,
                                                        const resilience_options& res) {
  if (service.empty())
    return usage_error("resilience: give the service (`starling resilience SVC --timeout 2s`)");
  const bool any =
      !res.timeout.empty() || !res.per_try_timeout.empty() || !res.retries.empty() ||
      !res.retry_budget.empty() || !res.min_retries.empty() || !res.max_connections.empty() ||
      !res.max_requests.empty() || !res.max_pending.empty() || !res.eject_5xx.empty() ||
      !res.eject_connect_failures.empty() || !res.ejection_time.empty() || !res.max_ejected.empty();
  if (res.clear) {
    if (any)
      return usage_error("resilience: --clear takes no other option");
    return std::vector<std::string>{"resilience", service, "--clear"};
  }
  if (!any)
    return usage_error(
        "resilience: give at least one of --timeout, --per-try-timeout, "
        "--retries, --retry-budget, --min-retries, --max-connections, "
        "--max-requests, --max-pending, --eject-after-5xx, --eject-after-connect-failures, "
        "--ejection-time, --max-ejected (or --clear)");
  std::vector<std::string> args{"resilience", service};
  auto percent_of = [](std::string_view text) {
    if (!text.empty() && text.back() == '%')
      text.remove_suffix(1);
    const auto n = parse_count(text);
    return n && *n <= 100 ? n : std::nullopt;
  };
  for (const auto& [flag, key, value] :
       {std::tuple{"--timeout", "timeout", &res.timeout},
        std::tuple{"--per-try-timeout", "per_try_timeout", &res.per_try_timeout}}) {
    if (value->empty())
      continue;
    if (auto d = parse_duration(*value, std::string{"resilience: "} + flag); !d)
      return d.error();
    args.push_back(std::string{key} + "=" + *value);
  }
  if (!res.retries.empty()) {
    if (!parse_count(res.retries))
      return usage_error("resilience: --retries: expected a number of retries, got " +
                         in_quotes(res.retries));
    args.push_back("retries=" + res.retries);
  }
  if (!res.retry_budget.empty()) {
    const auto percent = percent_of(res.retry_budget);
    if (!percent)
      return usage_error("resilience: --retry-budget: expected a percentage 0..100 (e.g. 20%), "
                         "got " +
                         in_quotes(res.retry_budget));
    args.push_back("budget=" + std::to_string(*percent));
  }
  if (!res.min_retries.empty()) {
    if (!parse_count(res.min_retries))
      return usage_error("resilience: --min-retries: expected retries per second, got " +
                         in_quotes(res.min_retries));
    args.push_back("min_retries=" + res.min_retries);
  }
  for (const auto& [flag, key, value] :
       {std::tuple{"--max-connections", "max_connections", &res.max_connections},
        std::tuple{"--max-requests", "max_requests", &res.max_requests},
        std::tuple{"--max-pending", "max_pending", &res.max_pending}}) {
    if (value->empty())
      continue;
    const auto n = parse_count(*value);
    if (!n || *n == 0 || *n > 1'000'000)
      return usage_error(std::string{"resilience: "} + flag + ": expected a cap from 1 to " +
                         "1000000, got " + in_quotes(*value));
    args.push_back(std::string{key} + "=" + *value);
  }
  for (const auto& [flag, key, value] :
       {std::tuple{"--eject-after-5xx", "eject_5xx", &res.eject_5xx},
        std::tuple{"--eject-after-connect-failures", "eject_connect_failures",
                   &res.eject_connect_failures}}) {
    if (value->empty())
      continue;
    const auto n = parse_count(*value);
    if (!n || *n > 1000)
      return usage_error(std::string{"resilience: "} + flag +
                         ": expected failures in a row, 0 (off) to 1000, got " + in_quotes(*value));
    args.push_back(std::string{key} + "=" + *value);
  }
  if (!res.ejection_time.empty()) {
    if (auto d = parse_duration(res.ejection_time, "resilience: --ejection-time"); !d)
      return d.error();
    args.push_back("ejection_time=" + res.ejection_time);
  }
  if (!res.max_ejected.empty()) {
    const auto percent = percent_of(res.max_ejected);
    if (!percent)
      return usage_error("resilience: --max-ejected: expected a percentage 0..100 (e.g. 50%), "
                         "got " +
                         in_quotes(res.max_ejected));
    args.push_back("max_ejected=" + std::to_string(*percent));
  }
  return args;
}

int run_resilience(const client_options& opts, const std::string& service,
                   const resilience_options& res) {
  return send_and_print(opts, resilience_args(service, res));
}

caf::expected<std::vector<std::string>>
authz_args(const std::string& service, const std::string& name, const authz_options& rule) {
  if (service.empty() || name.empty())
    return usage_error("authz: give the service and the rule's name (`starling authz SVC NAME "
                       "--allow spiffe://MESH/svc/CALLER`)");
  if (rule.remove) {
    if (!rule.allow.empty() || !rule.deny.empty())
      return usage_error("authz: --delete takes no --allow or --deny");
    return std::vector<std::string>{"authz", service, name, "--delete"};
  }
  if (!rule.allow.empty() && !rule.deny.empty())
    return usage_error("authz: a rule allows or denies: give --allow or --deny, not both");
  if (rule.allow.empty() && rule.deny.empty())
    return usage_error("authz: give --allow FROM or --deny FROM (spiffe:// URIs), or --delete");
  const auto& from = rule.allow.empty() ? rule.deny : rule.allow;
  constexpr std::string_view scheme = "spiffe://";
  for (const auto& f : from)
    if (f.size() <= scheme.size() || f.compare(0, scheme.size(), scheme) != 0)
      return usage_error("authz: FROM must be a spiffe:// URI (e.g. spiffe://MESH/svc/frontend), "
                         "got " +
                         in_quotes(f));
  std::vector<std::string> args{"authz", service, name, rule.allow.empty() ? "deny" : "allow"};
  args.insert(args.end(), from.begin(), from.end());
  return within_limit(std::move(args), 4, "callers per rule");
}

int run_authz(const client_options& opts, const std::string& service, const std::string& name,
              const authz_options& rule) {
  return send_and_print(opts, authz_args(service, name, rule));
}

} // namespace starling::cli
