// The admin actor (actors/admin_actor.hpp): parses each admin request and asks the actor
// whose job it is, found in the directory when the request arrives.
#include "actors/admin_actor.hpp"

#include <charconv>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/make_message.hpp>
#include <spdlog/spdlog.h>

#include "actors/admin_server.hpp"
#include "actors/atoms.hpp"
#include "actors/config.hpp"
#include "actors/directory.hpp"
#include "actors/errc.hpp"
#include "actors/gossip_io.hpp"
#include "actors/keyring_sealer.hpp"
#include "actors/views.hpp"
#include "identity/token.hpp"
#include "proxy/dataplane.hpp"

namespace starling::actors {

namespace {

/// Refuses arguments after a command that takes none.
caf::error no_arguments(const std::vector<std::string>& args) {
  if (args.size() > 1)
    return usage("'" + args[0] + "' takes no arguments, got '" + args[1] + "'");
  return {};
}

/// token create [--ttl DURATION] [--uses N] -> (ttl seconds, uses).
caf::expected<std::pair<std::int64_t, std::int64_t>>
parse_token_create(const std::vector<std::string>& args) {
  if (args.size() < 2 || args[1] != "create")
    return usage("token: expected 'token create [--ttl 1h] [--uses 1]'");
  std::int64_t ttl =
      std::chrono::duration_cast<std::chrono::seconds>(identity::default_token_ttl).count();
  std::int64_t uses = identity::default_token_uses;
  for (std::size_t i = 2; i < args.size(); i += 2) {
    if (i + 1 >= args.size())
      return usage("token create: " + args[i] + " needs a value");
    const auto& flag = args[i];
    const auto& value = args[i + 1];
    if (flag == "--ttl") {
      auto d = parse_duration(value, "--ttl");
      if (!d)
        return usage(message_of(d.error()));
      ttl = std::chrono::duration_cast<std::chrono::seconds>(*d).count();
      if (ttl <= 0)
        return usage("--ttl must be at least 1s, got " + value);
    } else if (flag == "--uses") {
      std::int64_t n = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc{} || ptr != value.data() + value.size())
        return usage("--uses: expected a number, got '" + value + "'");
      uses = n;
    } else {
      return usage("token create: unknown option '" + flag + "'");
    }
  }
  return std::make_pair(ttl, uses);
}

/// revoke NODE [--key sha256:HEX] -> (node, key; empty: every key issued to NODE here).
caf::expected<std::pair<std::string, std::string>>
parse_revoke(const std::vector<std::string>& args) {
  std::string node;
  std::string key;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--key") {
      if (i + 1 >= args.size())
        return usage("revoke: --key needs a value (sha256:<64 hex digits>)");
      key = args[++i];
    } else if (args[i].starts_with("--")) {
      return usage("revoke: unknown option '" + args[i] + "'");
    } else if (node.empty()) {
      node = args[i];
    } else {
      return usage("revoke: one node at a time, got '" + node + "' and '" + args[i] + "'");
    }
  }
  if (node.empty())
    return usage("revoke: expected 'revoke NODE [--key sha256:HEX]'");
  return std::make_pair(std::move(node), std::move(key));
}

/// Hands a request on to the actor filling `r` now; the answer goes straight back to the
/// requester. An error while that actor restarts (nobody fills the role).
template <class... Ts>
caf::result<caf::message> ask(caf::event_based_actor* self, const directory& dir, role r,
                              Ts&&... xs) {
  auto to = dir.find(r);
  if (!to)
    return make_error(errc::unreachable,
                      "the " + std::string{role_name(r)} + " actor is restarting; try again");
  return self->delegate(to, std::forward<Ts>(xs)...);
}

/// The admin server's counters by name.
counter_list admin_counters(const admin_server_stats& s) {
  auto v = [](const std::atomic<std::uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  return {{"connections", v(s.connections)},
          {"refused_connections", v(s.refused_connections)},
          {"evicted_connections", v(s.evicted_connections)},
          {"requests", v(s.requests)},
          {"malformed", v(s.malformed)},
          {"timeouts", v(s.timeouts)},
          {"auth_refused", v(s.auth_refused)}};
}

/// The data plane's counters `s` (of `plane`), summed over its threads and services:
/// outbound ones under their names, inbound ones (what this node's inbound listener served
/// for its instances) prefixed "inbound_".
counter_list proxy_counters(const proxy::dataplane& plane, const proxy::dataplane_stats& s) {
  std::uint64_t requests = 0, r2 = 0, r3 = 0, r4 = 0, r5 = 0, retries = 0, refused = 0,
                timeouts = 0, breaker = 0, ejections = 0, bytes_in = 0, bytes_out = 0;
  for (const auto& svc : s.services) {
    requests += svc.requests;
    r2 += svc.responses_2xx;
    r3 += svc.responses_3xx;
    r4 += svc.responses_4xx;
    r5 += svc.responses_5xx;
    retries += svc.retries;
    refused += svc.retries_refused;
    timeouts += svc.timeouts;
    breaker += svc.breaker_refused;
    ejections += svc.ejections;
    bytes_in += svc.bytes_in;
    bytes_out += svc.bytes_out;
  }
  std::uint64_t in_requests = 0, in2 = 0, in3 = 0, in4 = 0, in5 = 0, in_bytes_in = 0,
                in_bytes_out = 0;
  for (const auto& svc : s.inbound_services) {
    in_requests += svc.requests;
    in2 += svc.responses_2xx;
    in3 += svc.responses_3xx;
    in4 += svc.responses_4xx;
    in5 += svc.responses_5xx;
    in_bytes_in += svc.bytes_in;
    in_bytes_out += svc.bytes_out;
  }
  std::uint64_t generated = 0;
  for (const auto& [_, n] : s.generated)
    generated += n;
  return {{"config_generation", s.config_generation},
          {"services", s.services.size()},
          {"in_flight", plane.in_flight()},
          {"draining", plane.draining() ? 1u : 0u},
          {"outbound_connections", s.outbound_connections},
          {"inbound_connections", s.inbound_connections},
          {"inbound_refused_tls", s.inbound_refused_tls},
          {"inbound_refused_authz", s.inbound_refused_authz},
          {"upstream_connects", s.upstream_connects},
          {"upstream_reused", s.upstream_reused},
          {"upstream_connect_failures", s.upstream_connect_failures},
          {"upstream_idle", s.upstream_idle},
          {"closed_by_ban", s.closed_by_ban},
          {"connections_refused_fds", s.connections_refused_fds},
          {"inbound_refused_source", s.inbound_refused_source},
          {"inbound_refused_peer", s.inbound_refused_peer},
          {"inbound_refused_failing", s.inbound_refused_failing},
          {"inbound_refused_share", s.inbound_refused_share},
          {"requests", requests},
          {"responses_2xx", r2},
          {"responses_3xx", r3},
          {"responses_4xx", r4},
          {"responses_5xx", r5},
          {"retries", retries},
          {"retries_refused", refused},
          {"timeouts", timeouts},
          {"breaker_refused", breaker},
          {"ejections", ejections},
          {"bytes_in", bytes_in},
          {"bytes_out", bytes_out},
          {"generated_responses", generated},
          {"inbound_requests", in_requests},
          {"inbound_responses_2xx", in2},
          {"inbound_responses_3xx", in3},
          {"inbound_responses_4xx", in4},
          {"inbound_responses_5xx", in5},
          {"inbound_bytes_in", in_bytes_in},
          {"inbound_bytes_out", in_bytes_out}};
}

/// `starling stats`: the counters of the transport, the admin port and the sealer, read
/// here, and the membership core's, asked of the membership actor (null while it restarts).
caf::result<caf::message> on_stats(caf::event_based_actor* self, const admin_params& p) {
  std::vector<counter_group> groups;
  groups.push_back({"transport", p.transport_counters->totals()});
  groups.push_back(
      {"admin", p.admin_stats ? std::optional{admin_counters(*p.admin_stats)} : std::nullopt});
  std::optional<counter_list> sealer;
  if (p.sealer) {
    const auto view = p.sealer->view();
    sealer = sealer_counter_list(view.counters);
    sealer->emplace_back("tracked_senders", view.tracked_senders);
  }
  groups.push_back({"sealer", std::move(sealer)});
  std::optional<counter_list> proxy;
  std::string detail; // proxy_services of the JSON view
  if (p.proxy) {
    const auto s = p.proxy->stats();
    proxy = proxy_counters(*p.proxy, s);
    detail = proxy_services_json(s);
  }
  groups.push_back({"proxy", std::move(proxy)});
  auto rp = self->make_response_promise();
  // Membership's counters, then routing's (with the DNS address); a group whose actor is
  // restarting or slow is shown as null.
  // The view's text fields: the DNS address (routing's answer) and then these.
  using fields = std::vector<std::pair<std::string, std::optional<std::string>>>;
  fields tail{{"metrics_address", std::nullopt},
              {"inbound_address", std::nullopt},
              {"proxy_io", std::nullopt}};
  if (!p.metrics_address.empty())
    tail[0].second = p.metrics_address;
  if (p.proxy) {
    tail[1].second = p.proxy->inbound_address();
    tail[2].second = net::to_string(p.proxy->io_backend());
  }
  auto with_dns = [tail](std::optional<std::string> dns) {
    fields all{{"dns_address", std::move(dns)}};
    all.insert(all.end(), tail.begin(), tail.end());
    return all;
  };
  auto with_routing = [self, dir = p.dir, rp, with_dns,
                       detail](std::vector<counter_group> groups) mutable {
    const auto routing = dir->find(role::routing);
    if (!routing) {
      groups.push_back({"routing", std::nullopt});
      rp.deliver(stats_json(groups, with_dns(std::nullopt), detail));
      return;
    }
    self->request(routing, std::chrono::seconds{5}, stats_atom::value)
        .then(
            [rp, groups, with_dns, detail](counter_list& counters, std::string& dns) mutable {
              groups.push_back({"routing", std::move(counters)});
              std::optional<std::string> address;
              if (!dns.empty())
                address = std::move(dns);
              rp.deliver(stats_json(groups, with_dns(std::move(address)), detail));
            },
            [rp, groups, with_dns, detail](caf::error&) mutable {
              groups.push_back({"routing", std::nullopt});
              rp.deliver(stats_json(groups, with_dns(std::nullopt), detail));
            });
  };
  const auto membership = p.dir->find(role::membership);
  if (!membership) {
    groups.push_back({"membership", std::nullopt});
    with_routing(std::move(groups));
    return rp;
  }
  self->request(membership, std::chrono::seconds{5}, stats_atom::value)
      .then(
          [with_routing, groups](counter_list& counters) mutable {
            groups.push_back({"membership", std::move(counters)});
            with_routing(std::move(groups));
          },
          [with_routing, groups](caf::error&) mutable {
            groups.push_back({"membership", std::nullopt});
            with_routing(std::move(groups));
          });
  return rp;
}

caf::behavior admin_actor(caf::event_based_actor* self, admin_params p) {
  const auto& dir = *p.dir;
  return {
      // Answers are caf::message so that delegation (an untyped `delegated<message>`) and
      // direct answers share one result type.
      [=, &dir](admin_atom, const std::vector<std::string>& args) -> caf::result<caf::message> {
        if (args.empty())
          return usage("empty admin request");
        const auto& cmd = args[0];
        if (cmd == "members" || cmd == "events" || cmd == "leave" || cmd == "ping" ||
            cmd == "certs" || cmd == "stats")
          if (auto err = no_arguments(args))
            return err;
        if (cmd == "members")
          return ask(self, dir, role::membership, members_atom::value);
        if (cmd == "events")
          return ask(self, dir, role::membership, events_atom::value);
        if (cmd == "stats")
          return on_stats(self, p);
        if (cmd == "leave") {
          spdlog::info("leave requested through the admin port");
          self->send(dir.find(role::supervisor), leave_atom::value);
          return caf::make_message(std::string{"ok"});
        }
        if (cmd == "ping")
          return caf::make_message(std::string{"pong"});
        if (cmd == "certs")
          return ask(self, dir, role::identity, certs_atom::value);
        if (cmd == "services" || cmd == "routes" || cmd == "register" || cmd == "deregister" ||
            cmd == "split" || cmd == "route" || cmd == "resilience" || cmd == "authz" ||
            cmd == "drain")
          return ask(self, dir, role::routing, routing_atom::value, args);
        if (cmd == "token") {
          auto parsed = parse_token_create(args);
          if (!parsed)
            return parsed.error();
          return ask(self, dir, role::identity, token_atom::value, parsed->first, parsed->second);
        }
        if (cmd == "revoke") {
          auto parsed = parse_revoke(args);
          if (!parsed)
            return parsed.error();
          spdlog::info("revoke '{}' requested through the admin port", parsed->first);
          return ask(self, dir, role::identity, revoke_atom::value, parsed->first, parsed->second);
        }
        if (cmd == "keyring") {
          // keyring list | install KEY | use KEY_OR_ID | remove KEY_OR_ID, the last three
          // with --mesh: pushed to every alive member by the identity actor (an issuer's).
          const auto op = args.size() > 1 ? args[1] : std::string{};
          const bool takes_arg = op == "install" || op == "use" || op == "remove";
          if (op != "list" && !takes_arg)
            return usage("keyring: expected list, install, use or remove, got '" + op + "'");
          const bool mesh = takes_arg && args.size() == 4 && args[3] == "--mesh";
          if (args.size() != (takes_arg ? 3u : 2u) && !mesh)
            return usage(takes_arg ? "keyring " + op + " needs one key or key id"
                                   : "keyring list takes no arguments");
          if (mesh) {
            spdlog::info("keyring {} for the whole mesh requested through the admin port", op);
            return ask(self, dir, role::identity, keyring_atom::value, op, args[2],
                       mesh_atom::value);
          }
          auto answer =
              answer_keyring_request(p.sealer.get(), op, takes_arg ? args[2] : std::string{});
          if (!answer)
            return std::move(answer.error());
          return caf::make_message(std::move(*answer));
        }
        return usage("unknown admin command '" + cmd + "'");
      },
  };
}

} // namespace

caf::actor spawn_admin_actor(caf::actor_system& sys, admin_params params) {
  return sys.spawn(admin_actor, std::move(params));
}

} // namespace starling::actors
