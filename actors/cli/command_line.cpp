// The `starling` command line as one parser (CLI11): main() runs it on argv, the console
// (console.cpp) on each line it reads. Every command is a function of commands.hpp.
#include "actors/cli/command_line.hpp"

#include <iostream>

#include <CLI/CLI.hpp>

#include "actors/build_info.hpp"
#include "actors/config.hpp"
#include "actors/errc.hpp"
#include "actors/logging.hpp"

namespace starling::cli {

namespace {

namespace sa = starling::actors;
namespace sc = starling::cli;

/// Adds --admin and a timeout to a one-shot command.
void add_client_flags(CLI::App& cmd, sc::client_options& opts, bool with_json) {
  cmd.add_option("--admin", opts.admin, "admin HOST:PORT of the agent (default 127.0.0.1:7947)")
      ->type_name("");
  cmd.add_option("--admin-cookie", opts.admin_cookie,
                 "file with the agent's admin credential, needed by commands that change the "
                 "node (default: $STARLING_ADMIN_COOKIE, else the copy the agent left for its "
                 "own user; see docs/operations.md, \"Admin access\")")
      ->type_name("FILE");
  if (with_json)
    cmd.add_flag("--json", opts.json, "print the JSON view");
}

} // namespace

int with_command_line(const client_options& base, bool in_console,
                      const std::function<bool(CLI::App&)>& parse) {
  CLI::App app{"starling: a service mesh with no central control plane", "starling"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every command");
  app.set_version_flag("--version",
                       "starling " + std::string{build_version()} + " (" +
                           std::string{build_revision()} + ")",
                       "print the version and the source revision this binary was built from");

  sa::agent_flags agent_flags;
  auto* agent = app.add_subcommand("agent", "run a node (docs/operations.md)");
  sa::add_agent_flags(*agent, agent_flags);

  sc::client_options members_opts = base;
  auto* members = app.add_subcommand("members", "list the members this node knows");
  add_client_flags(*members, members_opts, true);

  sc::client_options stats_opts = base;
  auto* stats = app.add_subcommand(
      "stats", "counters of the gossip transport, admin port, sealer and membership");
  add_client_flags(*stats, stats_opts, true);

  sc::client_options services_opts = base;
  auto* services = app.add_subcommand(
      "services", "the services of the mesh: one line per instance, with its health");
  add_client_flags(*services, services_opts, true);

  sc::client_options routes_opts = base;
  auto* routes = app.add_subcommand(
      "routes", "per service: the local outbound listener and the routing policies");
  add_client_flags(*routes, routes_opts, true);

  sc::client_options register_opts = base;
  sc::register_options register_svc;
  auto* register_cmd = app.add_subcommand(
      "register", "register a service instance on this node (kept across restarts, spread to "
                  "the mesh)");
  register_cmd->add_option("--name", register_svc.name, "the service's name")
      ->required()
      ->type_name("SVC");
  register_cmd->add_option("--port", register_svc.port, "where the instance listens")
      ->required()
      ->type_name("PORT");
  register_cmd
      ->add_option("--protocol", register_svc.protocol, "tcp, http or http2 (gRPC; default tcp)")
      ->type_name("");
  register_cmd->add_option("--tags", register_svc.tags, "comma-separated tags")->type_name("a,b");
  register_cmd->add_option("--version", register_svc.version, "the instance's version (splits)")
      ->type_name("V");
  register_cmd->add_option("--weight", register_svc.weight, "load-balancing weight (default 100)")
      ->type_name("N");
  register_cmd
      ->add_option("--address", register_svc.address,
                   "the instance's address (default: the node's address)")
      ->type_name("ADDR");
  register_cmd->add_option("--id", register_svc.id, "instance id (default: the name)")
      ->type_name("ID");
  register_cmd->add_option("--check", register_svc.check, "health check: tcp, http or grpc")
      ->type_name("KIND");
  register_cmd->add_option("--check-path", register_svc.check_path, "HTTP check path")
      ->type_name("PATH");
  register_cmd->add_option("--check-expect", register_svc.check_expect, "HTTP status expected")
      ->type_name("CODE");
  register_cmd
      ->add_option("--check-grpc-service", register_svc.check_grpc_service,
                   "the service a grpc check asks about (default: the whole server)")
      ->type_name("NAME");
  register_cmd->add_option("--check-interval", register_svc.check_interval, "e.g. 10s")
      ->type_name("D");
  register_cmd->add_option("--check-timeout", register_svc.check_timeout, "e.g. 2s")
      ->type_name("D");
  register_cmd->add_option("--rise", register_svc.rise, "passes in a row to become passing")
      ->type_name("N");
  register_cmd->add_option("--fall", register_svc.fall, "failures in a row to become failing")
      ->type_name("N");
  add_client_flags(*register_cmd, register_opts, false);

  sc::client_options deregister_opts = base;
  sc::deregister_options deregister_what;
  auto* deregister =
      app.add_subcommand("deregister", "remove this node's instances of a service (or one, by ID)");
  deregister->add_option("SVC", deregister_what.service, "the service");
  deregister->add_option("ID", deregister_what.id, "the instance id (default: all of SVC)");
  deregister->add_option("--name", deregister_what.name, "the service (as SVC)")->type_name("SVC");
  deregister->add_option("--id", deregister_what.id_flag, "the instance id (as ID)")
      ->type_name("ID");
  add_client_flags(*deregister, deregister_opts, false);

  sc::client_options split_opts = base;
  std::string split_service;
  std::vector<std::string> split_weights;
  bool split_clear = false;
  auto* split = app.add_subcommand(
      "split", "split a service's traffic between its versions (weights summing to 100)");
  split->add_option("SVC", split_service, "the service")->required();
  split->add_option("VERSION=WEIGHT", split_weights, "e.g. v1=90 v2=10");
  split->add_flag("--clear", split_clear, "remove the split (every version takes traffic)");
  add_client_flags(*split, split_opts, false);

  sc::client_options route_opts = base;
  std::string route_service;
  std::string route_name;
  sc::route_options route_rule;
  auto* route = app.add_subcommand(
      "route", "send the requests to a service that carry a header to one of its versions");
  route->add_option("SVC", route_service, "the service")->required();
  route->add_option("NAME", route_name, "the route's name")->required();
  route->add_option("--header", route_rule.header, "the header that selects the route")
      ->type_name("NAME=VALUE");
  route->add_option("--to", route_rule.to, "the version matching requests go to")
      ->type_name("VERSION");
  route->add_flag("--delete", route_rule.remove, "remove the route NAME");
  add_client_flags(*route, route_opts, false);

  sc::client_options resilience_opts = base;
  std::string resilience_service;
  sc::resilience_options resilience_set;
  auto* resilience =
      app.add_subcommand("resilience", "timeouts, retries, circuit breaking and outlier "
                                       "ejection of the calls to a service");
  resilience->add_option("SVC", resilience_service, "the service")->required();
  resilience->add_option("--timeout", resilience_set.timeout, "whole call, retries included")
      ->type_name("D");
  resilience->add_option("--per-try-timeout", resilience_set.per_try_timeout, "each attempt")
      ->type_name("D");
  resilience->add_option("--retries", resilience_set.retries, "retries of a failed call")
      ->type_name("N");
  resilience
      ->add_option("--retry-budget", resilience_set.retry_budget,
                   "retries at most this share of the calls")
      ->type_name("P%");
  resilience
      ->add_option("--min-retries", resilience_set.min_retries,
                   "retries per second allowed whatever the budget")
      ->type_name("N");
  resilience
      ->add_option("--max-connections", resilience_set.max_connections,
                   "circuit breaker: open connections to the service, per proxy thread")
      ->type_name("N");
  resilience
      ->add_option("--max-requests", resilience_set.max_requests,
                   "circuit breaker: requests in flight of an HTTP service, per proxy thread")
      ->type_name("N");
  resilience
      ->add_option("--max-pending", resilience_set.max_pending,
                   "circuit breaker: HTTP requests waiting for a connection, per proxy thread")
      ->type_name("N");
  resilience
      ->add_option("--eject-after-5xx", resilience_set.eject_5xx,
                   "5xx answers in a row that eject an instance (0: off)")
      ->type_name("N");
  resilience
      ->add_option("--eject-after-connect-failures", resilience_set.eject_connect_failures,
                   "connect failures in a row that eject an instance (0: off)")
      ->type_name("N");
  resilience
      ->add_option("--ejection-time", resilience_set.ejection_time,
                   "first ejection's length (the n-th lasts n times as long)")
      ->type_name("D");
  resilience
      ->add_option("--max-ejected", resilience_set.max_ejected,
                   "largest share of the instances ejected at once (0: no ejection)")
      ->type_name("P%");
  resilience->add_flag("--clear", resilience_set.clear, "back to the defaults");
  add_client_flags(*resilience, resilience_opts, false);

  sc::client_options authz_opts = base;
  std::string authz_service;
  std::string authz_name;
  sc::authz_options authz_rule;
  auto* authz = app.add_subcommand("authz", "allow or deny callers of a service, by identity");
  authz->add_option("SVC", authz_service, "the service")->required();
  authz->add_option("NAME", authz_name, "the rule's name")->required();
  authz->add_option("--allow", authz_rule.allow, "a caller the rule allows (repeatable)")
      ->type_name("spiffe://MESH/...");
  authz->add_option("--deny", authz_rule.deny, "a caller the rule denies (repeatable)")
      ->type_name("spiffe://MESH/...");
  authz->add_flag("--delete", authz_rule.remove, "remove the rule NAME");
  add_client_flags(*authz, authz_opts, false);

  sc::client_options leave_opts = base;
  auto* leave = app.add_subcommand("leave", "make the agent leave the mesh and exit");
  add_client_flags(*leave, leave_opts, false);

  sc::client_options drain_opts = base;
  bool drain_cancel = false;
  auto* drain = app.add_subcommand(
      "drain", "withdraw this node's instances from the mesh, then refuse new inbound work");
  drain->add_flag("--cancel", drain_cancel, "route to this node again");
  add_client_flags(*drain, drain_opts, false);

  sc::client_options keyring_opts = base;
  std::string keyring_arg;
  bool keyring_local = false;
  auto* keyring = app.add_subcommand("keyring", "list and rotate the gossip encryption keyring");
  keyring->require_subcommand(1);
  auto* keyring_list = keyring->add_subcommand("list", "key ids, the primary, and counters");
  add_client_flags(*keyring_list, keyring_opts, true);
  auto* keyring_install = keyring->add_subcommand("install", "add a key (it opens, not seals)");
  keyring_install->add_option("KEY", keyring_arg, "base64 key")->required();
  keyring_install->add_flag("--local", keyring_local, "on this agent only, not the whole mesh");
  add_client_flags(*keyring_install, keyring_opts, false);
  auto* keyring_use = keyring->add_subcommand("use", "make an installed key the primary");
  keyring_use->add_option("KEY_OR_ID", keyring_arg, "base64 key or key id")->required();
  keyring_use->add_flag("--local", keyring_local, "on this agent only, not the whole mesh");
  add_client_flags(*keyring_use, keyring_opts, false);
  auto* keyring_remove = keyring->add_subcommand("remove", "remove a key that is not primary");
  keyring_remove->add_option("KEY_OR_ID", keyring_arg, "base64 key or key id")->required();
  keyring_remove->add_flag("--local", keyring_local, "on this agent only, not the whole mesh");
  add_client_flags(*keyring_remove, keyring_opts, false);
  auto* keyring_generate =
      keyring->add_subcommand("generate", "print a fresh random key (local, no agent needed)");

  sc::client_options certs_opts = base;
  auto* certs = app.add_subcommand("certs", "this node's certificate, issuers, roots, keyring");
  add_client_flags(*certs, certs_opts, true);

  sc::client_options token_opts = base;
  std::string token_ttl;
  std::string token_uses;
  auto* token = app.add_subcommand("token", "join tokens (on an issuer node)");
  token->require_subcommand(1);
  auto* token_create = token->add_subcommand("create", "print a new join token");
  token_create->add_option("--ttl", token_ttl, "how long it is valid (default 1h, at most 7 days)")
      ->type_name("");
  token_create->add_option("--uses", token_uses, "how many nodes may join with it (default 1)")
      ->type_name("");
  add_client_flags(*token_create, token_opts, false);

  sc::client_options revoke_opts = base;
  std::string revoke_node;
  std::string revoke_key;
  auto* revoke = app.add_subcommand("revoke", "revoke a node's key (on an issuer node)");
  revoke->add_option("NODE", revoke_node, "the node whose certificates this issuer signed")
      ->required();
  revoke
      ->add_option("--key", revoke_key,
                   "revoke this key (sha256:HEX, see `starling certs` on the node) instead")
      ->type_name("");
  add_client_flags(*revoke, revoke_opts, false);

  sc::ca_init_options ca_init_opts;
  sc::ca_issuer_options ca_issuer_opts;
  auto* ca = app.add_subcommand("ca", "offline mesh root and issuer certificates");
  ca->require_subcommand(1);
  auto* ca_init = ca->add_subcommand("init", "create the mesh root (key + certificate)");
  ca_init->add_option("--mesh", ca_init_opts.mesh, "mesh name (a-z, 0-9, '.', '-')")
      ->required()
      ->type_name("");
  ca_init->add_option("--out", ca_init_opts.out, "directory for root.key and root.crt")
      ->required()
      ->type_name("");
  auto* ca_issuer = ca->add_subcommand("issuer", "create an issuer certificate for a node");
  ca_issuer->add_option("--ca", ca_issuer_opts.ca, "directory of root.key and root.crt")
      ->required()
      ->type_name("");
  ca_issuer->add_option("--name", ca_issuer_opts.name, "node name of the issuer")
      ->required()
      ->type_name("");
  ca_issuer
      ->add_option("--out", ca_issuer_opts.out,
                   "directory for issuer.key, issuer.crt and bundle.crt")
      ->required()
      ->type_name("");

  sc::demo_options demo_opts;
  unsigned demo_seconds = 0;
  auto* demo = app.add_subcommand("demo", "run a local 3-node mesh and show it working");
  demo->add_option("--duration", demo_seconds,
                   "seconds of live view after the scripted part (default: until Ctrl-C)");
  demo->add_flag("--keep", demo_opts.keep, "keep the demo's temporary directory");

  sc::client_options console_opts = base;
  auto* console = app.add_subcommand(
      "console", "an interactive console on the agent: the same commands, history, completion "
                 "and a live `top`; reads commands from a pipe too, one a line");
  add_client_flags(*console, console_opts, false);

  try {
    if (!parse(app))
      return sa::exit_ok;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "starling: " << e.what()
              << (in_console ? " (`help` lists the commands)\n" : " (see starling --help)\n");
    return sa::exit_usage;
  }

  if (console->parsed())
    return sc::run_console(console_opts);
  if (agent->parsed()) {
    auto cfg = sa::load_agent_config(agent_flags);
    if (!cfg) {
      std::cerr << "config error: " << sa::message_of(cfg.error()) << '\n';
      return sa::exit_usage;
    }
    return sa::run_agent(*cfg);
  }
  // One-shot commands: keep library logs quiet on stderr.
  if (!in_console)
    sa::setup_logging(sa::log_level::warn, sa::log_format::text);
  if (members->parsed())
    return sc::run_members(members_opts);
  if (stats->parsed())
    return sc::run_stats(stats_opts);
  if (services->parsed())
    return sc::run_services(services_opts);
  if (routes->parsed())
    return sc::run_routes(routes_opts);
  if (register_cmd->parsed())
    return sc::run_register(register_opts, register_svc);
  if (deregister->parsed())
    return sc::run_deregister(deregister_opts, deregister_what);
  if (split->parsed())
    return sc::run_split(split_opts, split_service, split_weights, split_clear);
  if (route->parsed())
    return sc::run_route(route_opts, route_service, route_name, route_rule);
  if (resilience->parsed())
    return sc::run_resilience(resilience_opts, resilience_service, resilience_set);
  if (authz->parsed())
    return sc::run_authz(authz_opts, authz_service, authz_name, authz_rule);
  if (leave->parsed())
    return sc::run_leave(leave_opts);
  if (drain->parsed())
    return sc::run_drain(drain_opts, drain_cancel);
  if (keyring->parsed()) {
    if (keyring_generate->parsed())
      return sc::run_keyring_generate();
    for (auto* cmd : {keyring_list, keyring_install, keyring_use, keyring_remove})
      if (cmd->parsed())
        return sc::run_keyring(keyring_opts, cmd->get_name(), keyring_arg, keyring_local);
  }
  if (certs->parsed())
    return sc::run_certs(certs_opts);
  if (token_create->parsed())
    return sc::run_token_create(token_opts, token_ttl, token_uses);
  if (revoke->parsed())
    return sc::run_revoke(revoke_opts, revoke_node, revoke_key);
  if (ca_init->parsed())
    return sc::run_ca_init(ca_init_opts);
  if (ca_issuer->parsed())
    return sc::run_ca_issuer(ca_issuer_opts);
  if (demo->parsed()) {
    demo_opts.duration = std::chrono::seconds{demo_seconds};
    return sc::run_demo(demo_opts);
  }
  return sa::exit_usage;
}

} // namespace starling::cli
