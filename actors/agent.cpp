// `starling agent`: the actor system, the node supervisor, and the signal thread.
#include "actors/agent.hpp"

#include <atomic>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include "actors/atoms.hpp"
#include "actors/crash_report.hpp"
#include "actors/errc.hpp"
#include "actors/keyring_sealer.hpp"
#include "actors/logging.hpp"
#include "actors/node_files.hpp"
#include "actors/node_identity.hpp"
#include "actors/supervisor_actor.hpp"
#include "actors/views.hpp"
#include "identity/errc.hpp"

namespace starling::actors {

namespace {

/// Waits for SIGINT/SIGTERM (blocked in every thread, see run_agent) and turns them into
/// messages: the first asks the supervisor to leave, the next ones to stop now.
class signal_thread {
public:
  explicit signal_thread(caf::actor supervisor) : supervisor_(std::move(supervisor)) {
    thread_ = std::thread{[this] { run(); }};
  }

  ~signal_thread() {
    done_ = true;
    thread_.join();
  }

  signal_thread(const signal_thread&) = delete;
  signal_thread& operator=(const signal_thread&) = delete;

private:
  void run() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    unsigned seen = 0;
    while (!done_) {
      // Bounded wait so the destructor's flag is noticed.
      timespec pause{0, 200'000'000};
      int sig = sigtimedwait(&set, nullptr, &pause);
      if (sig < 0)
        continue;
      if (seen++ == 0) {
        spdlog::info("received {}: leaving the mesh", sig == SIGINT ? "SIGINT" : "SIGTERM");
        caf::anon_send(supervisor_, leave_atom::value);
      } else {
        caf::anon_send(supervisor_, stop_atom::value);
      }
    }
  }

  /// Target of the signal messages.
  caf::actor supervisor_;
  /// Set by the destructor to end run().
  std::atomic<bool> done_{false};
  std::thread thread_;
};

/// Raises the soft RLIMIT_NOFILE to the hard one, as Go's runtime and nginx's
/// worker_rlimit_nofile do: a service starts with a soft limit of 1,024, which a few
/// hundred proxied connections use up. The data plane keeps an eighth of whatever the
/// limit is for the rest of the agent (dataplane_options::max_descriptor).
void raise_descriptor_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0)
    return;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit want = lim;
    want.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &want) == 0)
      lim = want;
  }
  spdlog::info("up to {} open descriptors (RLIMIT_NOFILE)",
               static_cast<std::uint64_t>(lim.rlim_cur));
}

} // namespace

int run_agent(const agent_config& cfg) {
  install_crash_report();
  setup_logging(cfg.level, cfg.format);
  raise_descriptor_limit();
  for (const auto& warning : cfg.warnings)
    spdlog::warn("config: {}", warning);
  auto lock = data_dir_lock::acquire(cfg.data_dir);
  if (!lock) {
    spdlog::error("{}", message_of(lock.error()));
    return exit_failed;
  }
  if (!cfg.event_log.empty()) {
    std::ofstream probe{cfg.event_log, std::ios::app};
    if (!probe) {
      spdlog::error("cannot open event log {}: {}", cfg.event_log.string(), std::strerror(errno));
      return exit_failed;
    }
  }
  // Restarting with the same data dir: come back with a higher incarnation than any the
  // mesh may hold for us (it may have declared us dead at the last one).
  std::uint64_t incarnation = 0;
  if (auto last = read_incarnation(cfg.data_dir))
    incarnation = *last < std::numeric_limits<std::uint64_t>::max() ? *last + 1 : *last;
  // The node's certificate first: an admission also brings the mesh's gossip keyring.
  std::shared_ptr<const node_identity> id;
  {
    auto prepared = prepare_node_identity(cfg, std::chrono::system_clock::now());
    if (!prepared) {
      spdlog::error("{}", message_of(prepared.error()));
      return exit_failed;
    }
    if (*prepared) {
      const auto& leaf = (*prepared)->creds.certs.front();
      auto until = identity::not_after(leaf);
      spdlog::info("node certificate {} ({}), valid until {}; TCP between nodes is mutual TLS",
                   identity::spiffe_id_of(leaf) ? identity::spiffe_id_of(leaf)->to_uri() : "?",
                   (*prepared)->source, until ? iso8601_utc(*until) : "?");
      id = std::make_shared<const node_identity>(std::move(**prepared));
    } else {
      spdlog::warn("no node certificate (no --issuer, --token or stored certificate): TCP "
                   "between nodes is not authenticated (docs/operations.md, Certificates)");
    }
  }
  // The gossip keyring: the persisted one (it carries rotations) wins over the config.
  std::shared_ptr<keyring_sealer> sealer;
  {
    auto start = load_startup_keyring(cfg);
    if (!start) {
      spdlog::error("gossip keyring: {}", message_of(start.error()));
      return exit_failed;
    }
    if (start->ring.empty()) {
      spdlog::warn("gossip is not encrypted: no gossip_key or keyring configured "
                   "(docs/operations.md, Gossip encryption)");
    } else {
      const auto primary = identity::to_hex(*start->ring.primary_id());
      const auto keys = start->ring.size();
      auto made = keyring_sealer::make(std::move(start->ring), keyring_path(cfg.data_dir));
      if (!made) {
        spdlog::error("gossip keyring: {}", identity::render(made.error()));
        return exit_failed;
      }
      sealer = std::move(*made);
      if (auto err = sealer->persist()) {
        spdlog::error("gossip keyring: {}", message_of(err));
        return exit_failed;
      }
      spdlog::info("gossip encryption on: {} key(s), primary {} (from the {} keyring)", keys,
                   primary, start->source);
    }
  }
  // Block the termination signals before any thread starts; the signal thread takes them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto outcome = std::make_shared<agent_outcome>();
  {
    caf::actor_system_config sys_cfg;
    // No caf-application.ini: an empty stream (CAF-NOTES.md).
    std::istringstream no_ini;
    if (auto err = sys_cfg.parse(caf::actor_system_config::string_list{}, no_ini)) {
      spdlog::error("actor system config: {}", caf::to_string(err));
      return exit_failed;
    }
    // An agent has a handful of actors. CAF's default work-stealing scheduler polls on
    // every worker thread even when idle (measured: ~6% CPU per idle agent, 20 agents
    // saturated 2 cores); the sharing policy sleeps on a condition variable instead.
    sys_cfg.set("scheduler.policy", caf::atom("sharing"));
    sys_cfg.set("scheduler.max-threads", std::size_t{2});
    caf::actor_system sys{sys_cfg};
    spdlog::info("starling agent {} starting (data dir {}, incarnation {})", cfg.name,
                 cfg.data_dir.string(), incarnation);
    auto sup = spawn_supervisor(sys, supervisor_params{cfg, incarnation, outcome, sealer, id});
    {
      signal_thread signals{sup};
      caf::scoped_actor self{sys};
      self->wait_for(sup);
    }
  }
  auto code = outcome->exit_code.load();
  spdlog::info("agent stopped (exit code {})", code);
  return code;
}

} // namespace starling::actors
