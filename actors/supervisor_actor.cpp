#include "actors/supervisor_actor.hpp"

#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <random>
#include <set>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "actors/admin_actor.hpp"
#include "actors/admin_server.hpp"
#include "actors/admission_msgs.hpp"
#include "actors/agent.hpp"
#include "actors/atoms.hpp"
#include "actors/build_info.hpp"
#include "actors/directory.hpp"
#include "actors/errc.hpp"
#include "actors/identity_actor.hpp"
#include "actors/keyring_sealer.hpp"
#include "actors/membership_actor.hpp"
#include "actors/metrics_text.hpp"
#include "actors/node_files.hpp"
#include "actors/node_identity.hpp"
#include "actors/proxy_controller.hpp"
#include "actors/proxy_tls.hpp"
#include "actors/resident_pages.hpp"
#include "actors/routing_actor.hpp"
#include "actors/routing_relay.hpp"
#include "actors/service_notify.hpp"
#include "actors/status_server.hpp"
#include "actors/tls_security.hpp"
#include "gossip/discovery/dns_server.hpp"
#include "gossip/routing_gossip.hpp"
#include "proto/wire/errors.hpp"
#include "proxy/dataplane.hpp"

namespace starling::actors {

namespace {

using steady = std::chrono::steady_clock;

/// More restarts of one child than this within restart_window: give up, exit 1.
constexpr std::size_t max_restarts = 5;
constexpr auto restart_window = std::chrono::seconds{60};

/// Host of the data plane's outbound listeners (and the DNS answer for a service).
constexpr std::string_view outbound_host = "127.0.0.1";

/// Bound on the admin actor's answer to one admin request.
constexpr auto admin_request_timeout = std::chrono::seconds{20};
/// Each of the two asks behind /metrics (the status server answers 503 after 5 s).
constexpr auto metrics_request_timeout = std::chrono::seconds{2};

/// One supervised child. Adding a child = adding a slot with its start function.
struct child_slot {
  /// What it does; its name in logs, its entry in the directory.
  role job;
  /// The running instance; held here, since an actor nobody holds exits as unreachable.
  caf::actor handle;
  /// Spawns a fresh instance (and wires it). Called at start and on restart.
  std::function<caf::actor()> start;
  /// Times of recent restarts, oldest first, within restart_window.
  std::deque<steady::time_point> restarts;
};

struct supervisor_state {
  supervisor_params params;
  std::vector<child_slot> children;
  /// Where the children find each other (and this supervisor): bound at each (re)start.
  std::shared_ptr<directory> dir = std::make_shared<directory>();
  /// Membership actor starts so far (0 before the first).
  unsigned membership_starts = 0;
  /// Advertised gossip address and bound port, once the membership actor reported them.
  std::string gossip_address;
  std::uint16_t gossip_port = 0;
  /// The admin port's listener (started once gossip is bound; outlives admin actor
  /// restarts, since it finds the admin actor in the directory). Null before and after.
  std::shared_ptr<admin_server> admin;
  /// The admin port's counters, shared with every admin actor instance (`starling stats`).
  std::shared_ptr<admin_server_stats> admin_stats = std::make_shared<admin_server_stats>();
  /// Actual admin port once listening; 0 before.
  std::uint16_t admin_port = 0;
  /// The admin credential of this run, and the copy left for the CLI in the runtime dir.
  std::string admin_credential;
  std::filesystem::path admin_cookie_copy;
  /// Where every gossip transport this agent runs (one per membership start) sums its
  /// counters: the sealer's when there is a keyring (its view shows the drops), else ours.
  std::shared_ptr<transport_drop_counters> transport_counters;
  /// The routing table's extension in the membership core, shared by the membership and
  /// routing actors across their restarts.
  std::shared_ptr<routing_relay> relay;
  /// The DNS responder (bound at start, outlives routing actor restarts); null: disabled.
  std::shared_ptr<gossip::discovery::dns_server> dns;
  /// The metrics/status HTTP server (bound at start); null: disabled.
  std::shared_ptr<status_server> status;
  /// The data plane (started before the children; outlives proxy controller restarts and
  /// keeps serving its last configuration whatever the actors do); null: disabled.
  std::shared_ptr<proxy::dataplane> proxy;
  /// /readyz: set with the ready line, cleared at shutdown (read by the status thread).
  std::shared_ptr<std::atomic<bool>> ready_flag = std::make_shared<std::atomic<bool>>(false);
  /// Alive peers and own incarnation last reported: the seeds of a restarted membership.
  std::vector<std::string> last_peers;
  std::uint64_t last_incarnation = 0;
  /// The ready line was printed and agent.json written.
  bool ready = false;
  bool leaving = false;
  bool shutting_down = false;

  static inline const char* name = "node_supervisor";
};

using supervisor_t = caf::stateful_actor<supervisor_state>;

/// Tells a service manager that asked ($NOTIFY_SOCKET) about the agent's state; a failure
/// is logged, never fatal.
void tell_service_manager(const std::string& state) {
  if (auto err = notify_service_manager(state))
    spdlog::warn("{}", *err);
}

void shutdown(supervisor_t* self, int code) {
  auto& st = self->state;
  if (st.shutting_down)
    return;
  st.shutting_down = true;
  st.ready_flag->store(false);
  st.params.outcome->exit_code = code;
  spdlog::info("shutting down (exit code {})", code);
  if (!st.leaving)
    tell_service_manager("STOPPING=1\nSTATUS=shutting down");
  // Stops the listener (joins its thread); responders still in flight do nothing.
  st.admin.reset();
  if (!st.admin_credential.empty())
    withdraw_admin_credential(st.params.cfg.data_dir, st.admin_cookie_copy, st.admin_credential);
  st.dir->clear();
  if (st.dns)
    st.dns->stop();
  if (st.status)
    st.status->stop();
  if (st.proxy)
    st.proxy->stop();
  for (auto& child : st.children)
    if (child.handle)
      self->send_exit(child.handle, caf::exit_reason::user_shutdown);
  self->quit();
}

void announce_ready(supervisor_t* self) {
  auto& st = self->state;
  if (st.ready || st.gossip_address.empty() || st.admin_port == 0)
    return;
  st.ready = true;
  const auto& cfg = st.params.cfg;
  host_port admin{cfg.admin.host, st.admin_port};
  agent_info info{cfg.name,
                  static_cast<long>(::getpid()),
                  st.gossip_address,
                  admin.to_string(),
                  st.dns ? st.dns->local_endpoint() : std::string{},
                  st.status ? st.status->local_endpoint() : std::string{},
                  st.proxy ? st.proxy->inbound_address() : std::string{}};
  if (auto err = write_agent_json(cfg.data_dir, info)) {
    spdlog::error("{}", message_of(err));
    shutdown(self, exit_failed);
    return;
  }
  std::cout << "starling agent " << cfg.name << " ready: gossip " << st.gossip_address << ", admin "
            << info.admin << (info.dns.empty() ? "" : ", dns " + info.dns)
            << (info.metrics.empty() ? "" : ", metrics " + info.metrics)
            << (info.inbound.empty() ? "" : ", inbound " + info.inbound) << std::endl;
  st.ready_flag->store(true);
  spdlog::info("ready: gossip {}, admin {}, data dir {}", st.gossip_address, info.admin,
               cfg.data_dir.string());
  // A systemd unit with Type=notify starts its dependents now (service_notify.hpp).
  tell_service_manager("READY=1\nSTATUS=ready: gossip " + st.gossip_address + ", admin " +
                       info.admin + "\nMAINPID=" + std::to_string(::getpid()));
  // Start-up is over: its pages of code and read-only data go back to the kernel, which maps
  // again whatever the agent runs from now on (resident_pages.hpp).
  const auto released = release_clean_file_pages();
  if (!released.error.empty())
    spdlog::warn("start-up pages: {} ({} ranges handed back; resident file pages {} KiB, "
                 "{} KiB before)",
                 released.error, released.ranges, released.file_kib_after,
                 released.file_kib_before);
  else
    spdlog::debug("start-up pages: {} ranges of the program's and libraries' files handed back "
                  "to the kernel (resident file pages {} KiB, {} KiB before)",
                  released.ranges, released.file_kib_after, released.file_kib_before);
}

/// Hands one admin request to the current admin actor through a short-lived actor, and
/// answers through `reply` (any thread may call it).
void forward_admin_request(caf::actor_system& sys, const directory& dir,
                           std::vector<std::string> args, admin_responder reply) {
  auto admin = dir.find(role::admin);
  if (!admin) {
    reply(admin_reply::failed(
        message_of(make_error(errc::unreachable, "the admin actor is restarting; try again"))));
    return;
  }
  // What the actor needs goes as spawn arguments, not captures: CAF 0.17 spawns a function
  // without arguments through a null tuple pointer (UBSan stops the agent there).
  auto forward = [](caf::event_based_actor* tmp, caf::actor admin, std::vector<std::string> args,
                    admin_responder reply) {
    tmp->request(admin, admin_request_timeout, admin_atom::value, std::move(args))
        .then([reply](std::string& body) { reply(admin_reply::ok(std::move(body))); },
              [reply](caf::error& err) {
                if (err.category() == errc_category &&
                    err.code() == static_cast<std::uint8_t>(errc::bad_request))
                  reply(admin_reply::usage(message_of(err)));
                else
                  reply(admin_reply::failed(message_of(err)));
              });
  };
  sys.spawn(forward, admin, std::move(args), std::move(reply));
}

/// Starts listening on the admin address; false (after shutting down) if binding failed.
bool start_admin_server(supervisor_t* self) {
  auto& st = self->state;
  const auto& cfg = st.params.cfg;
  admin_server_config ac;
  ac.host = cfg.admin.host;
  ac.port = cfg.admin.port;
  // Every command that changes the node needs this run's credential (decision 0012).
  auto credential = make_admin_credential();
  if (!credential) {
    spdlog::error("{}", message_of(credential.error()));
    shutdown(self, exit_failed);
    return false;
  }
  st.admin_credential = *credential;
  ac.credential = *credential;
  if (cfg.admin_open_reads)
    ac.needs_credential = [](const std::vector<std::string>& args) {
      return !is_read_only_command(args);
    };
  ac.stats = st.admin_stats;
  auto* sys = &self->home_system();
  std::shared_ptr<const directory> dir = st.dir;
  auto server =
      admin_server::start(ac, [sys, dir](std::vector<std::string> args, admin_responder reply) {
        forward_admin_request(*sys, *dir, std::move(args), std::move(reply));
      });
  if (!server) {
    spdlog::error("{}", message_of(server.error()));
    shutdown(self, exit_failed);
    return false;
  }
  st.admin = std::move(*server);
  st.admin_port = st.admin->port();
  auto copy = publish_admin_credential(
      cfg.data_dir, admin_runtime_dir([](const char* name) { return std::getenv(name); }),
      st.admin_port, st.admin_credential);
  if (!copy) {
    spdlog::error("{}", message_of(copy.error()));
    shutdown(self, exit_failed);
    return false;
  }
  st.admin_cookie_copy = std::move(*copy);
  spdlog::debug("admin port listening on {}:{}", cfg.admin.host, st.admin_port);
  return true;
}

/// The inbound_tag this node publishes: the listener's port when it listens on every
/// address (peers use the node's gossip host), else its bound "host:port".
std::string inbound_tag_value(const agent_config& cfg, const proxy::dataplane& proxy) {
  const auto bound = proxy.inbound_address();
  const auto& host = cfg.inbound->host;
  if (host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]")
    return bound.substr(bound.rfind(':') + 1);
  return bound;
}

caf::actor start_membership(supervisor_t* self) {
  auto& st = self->state;
  const auto& cfg = st.params.cfg;
  membership_params p;
  p.name = cfg.name;
  p.tags = cfg.tags;
  p.swim = cfg.swim;
  p.join_timeout = cfg.join_timeout;
  p.event_log = cfg.event_log;
  p.data_dir = cfg.data_dir;
  p.rng_seed = std::random_device{}();
  gossip::transport_config tc;
  tc.bind_host = cfg.gossip.host;
  tc.advertise_host = cfg.advertise;
  tc.limits.max_datagram = cfg.swim.max_datagram;
  // Per datagram, the updates a datagram of that size can hold; a push-pull keeps its own
  // members limit (codec_limits::max_push_pull_members, decision 0017).
  tc.limits.max_updates = gossip::datagram_updates_bound(cfg.swim.max_datagram);
  tc.tcp_timeout = cfg.tcp_timeout;
  if (st.params.sealer) {
    tc.sealer = st.params.sealer;
    // The wire limit stays max_datagram: the core packs less, leaving room for sealing.
    p.swim.max_datagram = cfg.swim.max_datagram - identity::sealed_overhead;
  }
  if (st.params.id) {
    tc.security = std::make_shared<tls_security>(st.params.id->tls);
    // A push-pull that arrives under TLS passed the revocation check of the handshake.
    p.authenticated_push_pull = true;
  }
  if (st.params.id && st.params.id->issuer)
    p.tags[std::string{issuer_tag}] = "true";
  if (st.proxy)
    p.tags[std::string{inbound_tag}] = inbound_tag_value(cfg, *st.proxy);
  // Requests of the identity channel go straight to the identity actor of the moment.
  p.on_admission = [dir = std::shared_ptr<const directory>{st.dir}](admission_msg msg) {
    if (auto identity = dir->find(role::identity))
      caf::anon_send(identity, std::move(msg));
    else
      msg.reply(make_error(errc::unreachable, "the identity actor is restarting"));
  };
  if (st.membership_starts++ == 0) {
    p.seeds = cfg.join;
    p.join_required = !cfg.join.empty();
    p.incarnation = st.params.incarnation;
    tc.port = cfg.gossip.port;
  } else {
    // A restart: same port (so the same address), rejoin through the last alive peers,
    // and come back with a higher incarnation than any the mesh saw.
    p.seeds = st.last_peers;
    p.join_required = false;
    p.incarnation = std::max(st.last_incarnation, st.params.incarnation) + 1;
    tc.port = st.gossip_port != 0 ? st.gossip_port : cfg.gossip.port;
    spdlog::info("restarting membership with {} seed(s), incarnation {}", p.seeds.size(),
                 p.incarnation);
  }
  p.make_io = make_transport_io(std::move(tc), st.transport_counters);
  p.extensions.push_back({gossip::routing_extension_kind, "routing", st.relay,
                          gossip::request_types::routing, st.relay->pull_spec()});
  p.on_members = [relay = st.relay,
                  dir = std::shared_ptr<const directory>{st.dir}](member_changes changes) {
    relay->update_members(changes);
    if (auto proxy = dir->find(role::proxy))
      caf::anon_send(proxy, changes);
    if (auto routing = dir->find(role::routing))
      caf::anon_send(routing, std::move(changes));
  };
  return spawn_membership_actor(self->home_system(), caf::actor_cast<caf::actor>(self),
                                std::move(p));
}

caf::actor start_identity(supervisor_t* self) {
  auto& st = self->state;
  identity_params p;
  p.name = st.params.cfg.name;
  p.id = st.params.id;
  p.sealer = st.params.sealer;
  p.tokens_file = st.params.cfg.data_dir / "tokens";
  p.issued_file = st.params.cfg.data_dir / "issued";
  p.revocations_file = st.params.cfg.data_dir / "revocations";
  p.data_dir = st.params.cfg.data_dir;
  p.cert_ttl = st.params.cfg.cert_ttl;
  p.admission_quorum = st.params.cfg.admission_quorum;
  p.rng_seed = std::random_device{}();
  if (st.proxy)
    p.on_ban = [proxy = st.proxy](const std::string& node) {
      spdlog::info("data plane: closing the connections of revoked node {}", node);
      proxy->ban_peer(node);
    };
  return spawn_identity_actor(self->home_system(), self->state.dir, std::move(p));
}

caf::actor start_routing(supervisor_t* self) {
  auto& st = self->state;
  const auto& cfg = st.params.cfg;
  routing_params p;
  p.name = cfg.name;
  p.data_dir = cfg.data_dir;
  p.config_services = cfg.services;
  p.id = st.params.id;
  p.relay = st.relay;
  p.dns = st.dns;
  if (st.proxy) {
    p.outbound = [proxy = st.proxy] { return proxy->outbound_addresses(); };
    p.set_draining = [proxy = st.proxy](bool on) { proxy->set_draining(on); };
  }
  p.max_clock_skew = cfg.max_clock_skew;
  p.inline_section_max = cfg.inline_section_max;
  p.rng_seed = std::random_device{}();
  return spawn_routing_actor(self->home_system(), caf::actor_cast<caf::actor>(self), std::move(p));
}

/// Binds the DNS responder of cfg.dns; false (logged) when it cannot.
bool start_dns(supervisor_t* self) {
  auto& st = self->state;
  const auto& cfg = st.params.cfg;
  if (!cfg.dns)
    return true;
  auto dns = std::make_shared<gossip::discovery::dns_server>(std::random_device{}());
  gossip::discovery::dns_options opts;
  opts.domain = cfg.dns_domain;
  // With a data plane, a service's address is the local outbound proxy's (its port is the
  // service's `outbound` in `starling routes`); SRV still lists the instances.
  if (cfg.inbound)
    opts.proxy_address = outbound_host;
  if (auto err = dns->set_options(opts)) {
    spdlog::error("DNS: {}", wire::render_error(err));
    return false;
  }
  if (auto err = dns->start(cfg.dns->host, cfg.dns->port)) {
    spdlog::error("cannot start the DNS responder on {}: {} (set [dns] address, or \"off\")",
                  cfg.dns->to_string(), wire::render_error(err));
    return false;
  }
  spdlog::info("DNS responder on {} for *.service.{}", dns->local_endpoint(), cfg.dns_domain);
  st.dns = std::move(dns);
  return true;
}

/// Starts the data plane of cfg.inbound; false (logged) when it cannot.
bool start_proxy(supervisor_t* self) {
  auto& st = self->state;
  const auto& cfg = st.params.cfg;
  if (!cfg.inbound)
    return true;
  proxy::dataplane_options opts;
  opts.self = cfg.name;
  opts.threads = cfg.proxy_threads;
  opts.inbound_host = cfg.inbound->host;
  opts.inbound_port = cfg.inbound->port;
  opts.outbound_host = std::string{outbound_host};
  opts.seed = std::random_device{}();
  if (st.params.id)
    opts.tls = std::make_shared<proxy_tls>(st.params.id->tls);
  else
    spdlog::warn("no node certificate: the data plane's inbound listener on {} takes plain TCP "
                 "from anyone who reaches it (docs/proxy.md, \"Between nodes\")",
                 cfg.inbound->to_string());
  if (!cfg.access_log.empty()) {
    auto file = std::make_shared<std::ofstream>(cfg.access_log, std::ios::app);
    if (!*file) {
      spdlog::error("cannot open the access log {} ([proxy] access_log)", cfg.access_log);
      return false;
    }
    // Buffered by the stream (flushed when full and when the data plane stops): an I/O
    // thread never waits for the disk on each request.
    auto mutex = std::make_shared<std::mutex>();
    opts.access_log = [file, mutex](std::string_view line) {
      std::lock_guard guard{*mutex};
      *file << line << '\n';
    };
    opts.access_log_sample = cfg.access_log_sample;
  }
  opts.splice = cfg.proxy_splice;
  opts.h2_to_peers = cfg.proxy_http2;
  opts.tunnel_idle_timeout = cfg.proxy_tunnel_idle_timeout;
  opts.keepalive = cfg.proxy_keepalive;
  opts.io = cfg.proxy_io == "io_uring" ? net::backend::uring : net::backend::epoll;
  std::string error;
  auto plane = proxy::dataplane::start(std::move(opts), error);
  if (!plane) {
    spdlog::error("cannot start the data plane on {}: {} (set [proxy] inbound, or \"off\")",
                  cfg.inbound->to_string(), error);
    return false;
  }
  if (!plane->io_note().empty())
    spdlog::warn("data plane: {} ([proxy] io = \"{}\")", plane->io_note(), cfg.proxy_io);
  spdlog::info("data plane: inbound {}{}, {} I/O thread(s) on {}", plane->inbound_address(),
               st.params.id ? " (mutual TLS)" : " (plain TCP: no certificate)", cfg.proxy_threads,
               net::to_string(plane->io_backend()));
  st.proxy = std::shared_ptr<proxy::dataplane>{std::move(plane)};
  return true;
}

caf::actor start_proxy_controller(supervisor_t* self) {
  auto& st = self->state;
  proxy_controller_params p;
  p.name = st.params.cfg.name;
  p.dataplane = st.proxy;
  p.relay = st.relay;
  p.dir = st.dir;
  return spawn_proxy_controller(self->home_system(), std::move(p));
}

/// Gathers /metrics: the stats and certs views, asked of the admin actor of the moment as
/// `starling stats` and `starling certs` would, rendered in the Prometheus text format.
void gather_metrics(caf::actor_system& sys, const directory& dir,
                    std::shared_ptr<const proxy::dataplane> plane,
                    std::function<void(std::string)> reply) {
  auto admin = dir.find(role::admin);
  if (!admin) {
    reply({});
    return;
  }
  // The data plane's per-service counters are read at render time, off the I/O threads.
  auto render = [plane](const std::string& stats, const nlohmann::json& certs) {
    std::optional<proxy::dataplane_stats> p;
    if (plane)
      p = plane->stats();
    return render_metrics(nlohmann::json::parse(stats, nullptr, false), certs,
                          build_labels{build_version(), build_revision()}, p ? &*p : nullptr);
  };
  // Arguments, not captures: see forward_admin_request.
  auto ask = [render](caf::event_based_actor* tmp, caf::actor admin,
                      std::function<void(std::string)> reply) {
    tmp->request(admin, metrics_request_timeout, admin_atom::value,
                 std::vector<std::string>{"stats"})
        .then(
            [tmp, admin, render, reply](std::string& stats) {
              tmp->request(admin, metrics_request_timeout, admin_atom::value,
                           std::vector<std::string>{"certs"})
                  .then(
                      [render, reply, stats](std::string& certs) {
                        reply(render(stats, nlohmann::json::parse(certs, nullptr, false)));
                      },
                      [render, reply, stats](caf::error&) {
                        // The identity actor restarts: the rest is still worth showing.
                        reply(render(stats, nlohmann::json{}));
                      });
            },
            [reply](caf::error&) { reply({}); });
  };
  sys.spawn(ask, admin, std::move(reply));
}

/// Binds the metrics/status server of cfg.metrics; false (logged) when it cannot.
bool start_status(supervisor_t* self) {
  auto& st = self->state;
  const auto& cfg = st.params.cfg;
  if (!cfg.metrics)
    return true;
  status_server_options opts;
  opts.metrics = [sys = &self->home_system(), dir = std::shared_ptr<const directory>{st.dir},
                  plane = std::shared_ptr<const proxy::dataplane>{st.proxy}](auto reply) {
    gather_metrics(*sys, *dir, plane, std::move(reply));
  };
  opts.ready = [flag = st.ready_flag] { return flag->load(); };
  std::string error;
  auto server = status_server::start(cfg.metrics->host, cfg.metrics->port, std::move(opts), error);
  if (!server) {
    spdlog::error("cannot start the metrics server on {}: {} (set [metrics] address, or \"off\")",
                  cfg.metrics->to_string(), error);
    return false;
  }
  spdlog::info("metrics on http://{}/metrics (also /healthz, /readyz)", server->local_endpoint());
  st.status = std::move(server);
  return true;
}

caf::actor start_admin(supervisor_t* self) {
  auto& st = self->state;
  admin_params p;
  p.dir = st.dir;
  p.sealer = st.params.sealer;
  p.transport_counters = st.transport_counters;
  p.admin_stats = st.admin_stats;
  if (st.status)
    p.metrics_address = st.status->local_endpoint();
  p.proxy = st.proxy;
  return spawn_admin_actor(self->home_system(), std::move(p));
}

/// Starts `slot`'s actor, watches it and lists it in the directory.
void start_child(supervisor_t* self, child_slot& slot) {
  slot.handle = slot.start();
  self->monitor(slot.handle);
  self->state.dir->bind(slot.job, slot.handle);
}

void add_child(supervisor_t* self, role job, std::function<caf::actor()> start) {
  auto& st = self->state;
  st.children.push_back(child_slot{job, {}, std::move(start), {}});
  start_child(self, st.children.back());
}

void on_child_down(supervisor_t* self, const caf::down_msg& dm) {
  auto& st = self->state;
  for (auto& child : st.children) {
    if (child.handle.address() != dm.source)
      continue;
    child.handle = nullptr;
    st.dir->unbind(child.job, dm.source);
    if (st.shutting_down)
      return;
    auto now = steady::now();
    while (!child.restarts.empty() && now - child.restarts.front() > restart_window)
      child.restarts.pop_front();
    if (child.restarts.size() >= max_restarts) {
      spdlog::error("{} actor exited ({}) {} times within {}s; giving up", role_name(child.job),
                    caf::to_string(dm.reason), child.restarts.size() + 1, restart_window.count());
      shutdown(self, exit_failed);
      return;
    }
    child.restarts.push_back(now);
    spdlog::error("{} actor exited ({}); restarting it", role_name(child.job),
                  caf::to_string(dm.reason));
    start_child(self, child);
    return;
  }
}

void leave(supervisor_t* self) {
  auto& st = self->state;
  if (st.leaving || st.shutting_down)
    return;
  st.leaving = true;
  tell_service_manager("STOPPING=1\nSTATUS=leaving the mesh");
  const auto membership = st.dir->find(role::membership);
  if (!membership) {
    shutdown(self, exit_ok);
    return;
  }
  self->request(membership, std::chrono::seconds{5}, leave_atom::value)
      .then([=](left_atom) { shutdown(self, exit_ok); },
            [=](caf::error& err) {
              spdlog::warn("leave did not complete cleanly: {}", message_of(err));
              shutdown(self, exit_ok);
            });
}

caf::behavior supervisor(supervisor_t* self, supervisor_params params) {
  auto& st = self->state;
  st.params = std::move(params);
  st.transport_counters = st.params.sealer ? st.params.sealer->drop_counters()
                                           : std::make_shared<transport_drop_counters>();
  self->set_down_handler([=](caf::down_msg& dm) { on_child_down(self, dm); });
  st.dir->bind(role::supervisor, caf::actor_cast<caf::actor>(self));
  // The relay hands peers' routing bytes to the routing actor of the moment.
  // News of it (fresh payloads) makes the membership actor gossip at once.
  st.relay = std::make_shared<routing_relay>(
      [dir = std::shared_ptr<const directory>{st.dir}](routing_input in) {
        auto routing = dir->find(role::routing);
        if (!routing)
          return false;
        caf::anon_send(routing, std::move(in));
        return true;
      },
      [dir = std::shared_ptr<const directory>{st.dir}] {
        if (auto membership = dir->find(role::membership))
          caf::anon_send(membership, news_atom::value);
      });
  // The data plane before the metrics server, which reads its counters.
  if (!start_dns(self) || !start_proxy(self) || !start_status(self)) {
    st.params.outcome->exit_code = exit_failed;
    self->quit();
    return {};
  }
  add_child(self, role::identity, [=] { return start_identity(self); });
  add_child(self, role::routing, [=] { return start_routing(self); });
  if (st.proxy)
    add_child(self, role::proxy, [=] { return start_proxy_controller(self); });
  add_child(self, role::membership, [=] { return start_membership(self); });
  add_child(self, role::admin, [=] { return start_admin(self); });
  return {
      [=](bound_atom, const std::string& address, std::uint16_t port) {
        auto& st = self->state;
        st.gossip_address = address;
        st.gossip_port = port;
        // The admin port opens once gossip is bound (announce_ready needs both).
        if (!st.admin && !st.ready && !st.shutting_down && start_admin_server(self))
          announce_ready(self);
      },
      [=](failed_atom, const std::string& msg) {
        spdlog::error("{}", msg);
        shutdown(self, exit_failed);
      },
      [=](joined_atom, bool ok, const std::string& msg) {
        if (!ok) {
          spdlog::error("{}", msg);
          shutdown(self, exit_failed);
        }
      },
      [=](peers_atom, std::vector<std::string>& peers, std::uint64_t incarnation) {
        auto& st = self->state;
        if (!peers.empty())
          st.last_peers = std::move(peers);
        st.last_incarnation = incarnation;
      },
      [=](leave_atom) { leave(self); },
      [=](stop_atom) {
        spdlog::warn("second signal: stopping without waiting for the leave to spread");
        shutdown(self, exit_ok);
      },
  };
}

} // namespace

caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_params params) {
  return sys.spawn(supervisor, std::move(params));
}

} // namespace starling::actors
