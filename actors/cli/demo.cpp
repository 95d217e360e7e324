// `starling demo`: a local 3-node mesh that shows what a user sees. It runs real agents
// (this same binary, `starling agent`) on 127.0.0.1 with ports picked by the kernel, creates
// the mesh's root, an issuer and a join token with the real commands, and reads the agents
// through the real one-shot commands (`starling members --json`, `starling certs`), so
// everything it prints is what an operator would get.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actors/cli/commands.hpp"
#include "actors/cli/views.hpp"
#include "actors/node_files.hpp"
#include "actors/views.hpp"

namespace starling::cli {

using namespace starling::actors;

namespace {

namespace fs = std::filesystem;
using std::chrono::steady_clock;
using namespace std::chrono_literals;

/// Set by SIGINT/SIGTERM: the demo tears down at the next step.
std::atomic<bool> stop_requested{false};

extern "C" void on_stop_signal(int) { stop_requested.store(true); }

/// Path of this binary: the demo starts agents and runs queries with it.
std::string self_exe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string{"starling"} : p.string();
}

/// One agent child process of the demo.
struct demo_node {
  std::string name;
  fs::path data_dir;
  pid_t pid = -1;
  agent_info info; ///< valid once started
};

/// Starts `starling agent` for `node` (output to <dir>/<name>.log); waits for its
/// agent.json. Returns an error message, or nothing on success.
std::optional<std::string> start_agent(demo_node& node, const fs::path& dir,
                                       const std::vector<std::string>& extra) {
  std::vector<std::string> args{
      self_exe(),    "agent",       "--name",
      node.name,     "--data-dir",  node.data_dir.string(),
      "--gossip",    "127.0.0.1:0", "--admin",
      "127.0.0.1:0", "--dns",       "127.0.0.1:0",
      "--metrics",   "127.0.0.1:0", "--inbound",
      "127.0.0.1:0", "--event-log", (dir / (node.name + ".events")).string()};
  args.insert(args.end(), extra.begin(), extra.end());
  auto log = dir / (node.name + ".log");
  pid_t pid = fork();
  if (pid < 0)
    return std::string{"fork failed"};
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      close(fd);
    }
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  node.pid = pid;
  auto deadline = steady_clock::now() + 15s;
  while (steady_clock::now() < deadline && !stop_requested) {
    if (auto info = read_agent_json(node.data_dir); info && info->pid == pid) {
      node.info = *info;
      return std::nullopt;
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      node.pid = -1;
      return node.name + " exited during start-up; see " + log.string();
    }
    std::this_thread::sleep_for(50ms);
  }
  return node.name + " did not become ready within 15 s; see " + log.string();
}

/// Runs `starling <args>` (this binary) and returns its stdout; std::nullopt if it failed.
std::optional<std::string> run_self(const std::string& args) {
  auto cmd = self_exe() + " " + args + " 2>/dev/null";
  std::unique_ptr<FILE, decltype(&pclose)> pipe{popen(cmd.c_str(), "r"), pclose};
  if (!pipe)
    return std::nullopt;
  std::string out;
  std::array<char, 4096> buf{};
  while (auto n = fread(buf.data(), 1, buf.size(), pipe.get()))
    out.append(buf.data(), n);
  if (pclose(pipe.release()) != 0)
    return std::nullopt;
  return out;
}

/// Runs `starling members --json` against `node`; the parsed view, or nullopt.
std::optional<nlohmann::json> members_of(const demo_node& node) {
  auto out = run_self("members --json --admin " + node.info.admin);
  if (!out)
    return std::nullopt;
  auto doc = nlohmann::json::parse(*out, nullptr, false);
  if (doc.is_discarded() || !doc.contains("members"))
    return std::nullopt;
  return doc;
}

/// Runs `starling <args>`, echoing the command and its output the way a shell would.
std::optional<std::string> show(const std::string& args) {
  std::cout << "\n$ starling " << args << '\n' << std::flush;
  auto out = run_self(args);
  if (out)
    std::cout << *out << std::flush;
  return out;
}

/// As show, with the command's stderr too (for a command expected to be refused).
void show_refusal(const std::string& args) {
  std::cout << "\n$ starling " << args << '\n' << std::flush;
  auto cmd = self_exe() + " " + args + " 2>&1";
  std::unique_ptr<FILE, decltype(&pclose)> pipe{popen(cmd.c_str(), "r"), pclose};
  std::array<char, 4096> buf{};
  while (pipe && std::fgets(buf.data(), static_cast<int>(buf.size()), pipe.get()) != nullptr)
    std::cout << buf.data();
  std::cout << std::flush;
}

/// The last non-empty line of `text`.
std::string last_line(const std::string& text) {
  auto end = text.find_last_not_of('\n');
  if (end == std::string::npos)
    return {};
  auto start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1,
                     end - (start == std::string::npos ? 0 : start + 1) + 1);
}

/// State of `member` in `view`, or "" if absent.
std::string state_in(const nlohmann::json& view, const std::string& member) {
  for (const auto& m : view["members"])
    if (m.value("name", "") == member)
      return m.value("state", "");
  return "";
}

/// Incarnation of `member` in `view` (0 if absent).
std::uint64_t incarnation_in(const nlohmann::json& view, const std::string& member) {
  for (const auto& m : view["members"])
    if (m.value("name", "") == member)
      return m.value("incarnation", std::uint64_t{0});
  return 0;
}

/// Polls `observer`'s view until `pred(view)` holds or `limit` passes; returns the seconds
/// it took, or nullopt on timeout or stop.
template <class Pred>
std::optional<double> wait_view(const demo_node& observer, Pred pred, std::chrono::seconds limit) {
  auto start = steady_clock::now();
  while (steady_clock::now() - start < limit && !stop_requested) {
    if (auto view = members_of(observer); view && pred(*view))
      return std::chrono::duration<double>(steady_clock::now() - start).count();
    std::this_thread::sleep_for(100ms);
  }
  return std::nullopt;
}

/// Prints the member table as `observer` sees it.
void print_table(const demo_node& observer) {
  auto view = members_of(observer);
  if (!view) {
    std::cout << "  (" << observer.name << " did not answer)\n";
    return;
  }
  auto table = members_table(view->dump());
  std::cout << "\n$ starling members --admin " << observer.info.admin << "    # as "
            << observer.name << " sees the mesh\n"
            << (table ? *table : std::string{"(unreadable view)\n"}) << '\n'
            << std::flush;
}

/// Stops every agent: SIGTERM (graceful leave), then SIGKILL after 5 s.
void stop_all(std::vector<demo_node>& nodes) {
  for (auto& n : nodes)
    if (n.pid > 0)
      kill(n.pid, SIGTERM);
  auto deadline = steady_clock::now() + 5s;
  for (auto& n : nodes) {
    while (n.pid > 0) {
      int status = 0;
      if (waitpid(n.pid, &status, WNOHANG) == n.pid) {
        n.pid = -1;
        break;
      }
      if (steady_clock::now() > deadline) {
        kill(n.pid, SIGKILL);
        waitpid(n.pid, &status, 0);
        n.pid = -1;
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
  }
}

void say(const std::string& line) { std::cout << "==> " << line << '\n' << std::flush; }

/// A sample service for the demo: a tiny HTTP/1.1 server on 127.0.0.1 (a port the kernel
/// picks) answering every request `200 OK` with a line naming its version, on its own
/// thread. Stops (and joins) when destroyed.
class sample_service {
public:
  explicit sample_service(std::string version) : version_(std::move(version)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 64) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      close_fd();
      return;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~sample_service() {
    stop_.store(true);
    if (thread_.joinable())
      thread_.join();
    close_fd();
  }
  sample_service(const sample_service&) = delete;
  sample_service& operator=(const sample_service&) = delete;

  /// The port it listens on; 0 when it could not open.
  [[nodiscard]] std::uint16_t port() const { return port_; }

private:
  void serve() {
    while (!stop_.load()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0)
        continue;
      int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0)
        continue;
      // Read the request head (bounded; a health check sends a few hundred bytes).
      char buf[2048];
      pollfd c{conn, POLLIN, 0};
      if (::poll(&c, 1, 500) > 0)
        static_cast<void>(::recv(conn, buf, sizeof buf, 0));
      const std::string body = "hello from web " + version_ + "\n";
      const std::string reply = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
                                body;
      static_cast<void>(::send(conn, reply.data(), reply.size(), MSG_NOSIGNAL));
      ::close(conn);
    }
  }
  void close_fd() {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
  }

  std::string version_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

/// Polls `observer`'s services view until `pred(view)` holds or `limit` passes; returns the
/// seconds it took, or nullopt on timeout or stop.
template <class Pred>
std::optional<double> wait_services(const demo_node& observer, Pred pred,
                                    std::chrono::seconds limit) {
  const auto start = steady_clock::now();
  while (!stop_requested && steady_clock::now() - start < limit) {
    if (auto out = run_self("services --json --admin " + observer.info.admin)) {
      auto view = nlohmann::json::parse(*out, nullptr, false);
      if (!view.is_discarded() && view.is_object() && pred(view))
        return std::chrono::duration<double>(steady_clock::now() - start).count();
    }
    std::this_thread::sleep_for(100ms);
  }
  return std::nullopt;
}

/// Healthy instances of `service` in a services view.
std::size_t healthy_in(const nlohmann::json& view, const std::string& service) {
  std::size_t n = 0;
  if (view.contains("services") && view["services"].is_array())
    for (const auto& s : view["services"])
      if (s.value("name", "") == service && s.contains("instances") && s["instances"].is_array())
        for (const auto& i : s["instances"])
          n += i.value("healthy", false) ? 1 : 0;
  return n;
}

/// Shows `dig` against `node`'s DNS responder when dig is installed.
void show_dig(const demo_node& node, const std::string& name, const std::string& type) {
  const auto colon = node.info.dns.rfind(':');
  if (node.info.dns.empty() || colon == std::string::npos || ::access("/usr/bin/dig", X_OK) != 0)
    return;
  const auto cmd = "dig @127.0.0.1 -p " + node.info.dns.substr(colon + 1) + " " + name + " " +
                   type + " +short +tries=1 +time=2";
  std::cout << "$ " << cmd << '\n' << std::flush;
  std::unique_ptr<FILE, int (*)(FILE*)> p{::popen((cmd + " 2>&1").c_str(), "r"), ::pclose};
  char buf[256];
  while (p && std::fgets(buf, sizeof buf, p.get()) != nullptr)
    std::cout << buf;
  std::cout << std::flush;
}

/// Shows a few lines of `node`'s /metrics (the Prometheus scrape) when curl is installed.
void show_metrics(const demo_node& node) {
  if (node.info.metrics.empty() || ::access("/usr/bin/curl", X_OK) != 0)
    return;
  const auto cmd = "curl -s http://" + node.info.metrics +
                   "/metrics | grep -E "
                   "'^starling_(membership_members|routing_owners|identity_certificate_expiration|"
                   "proxy_service_requests|proxy_service_responses_total.*2xx)'";
  std::cout << "$ " << cmd << '\n' << std::flush;
  std::unique_ptr<FILE, int (*)(FILE*)> p{::popen((cmd + " 2>&1").c_str(), "r"), ::pclose};
  char buf[512];
  while (p && std::fgets(buf, sizeof buf, p.get()) != nullptr)
    std::cout << buf;
  std::cout << std::flush;
}

/// One `GET /` to "127.0.0.1:PORT" with `Connection: close`: the response's body, or nothing
/// when the connection failed or the status was not 200. Waits at most 5 s.
std::optional<std::string> fetch(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos)
    return std::nullopt;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return std::nullopt;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::atoi(address.c_str() + colon + 1)));
  std::string response;
  if (::inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr) == 1 &&
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string req = "GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      const auto deadline = steady_clock::now() + 5s;
      char buf[4096];
      while (steady_clock::now() < deadline && response.size() < 65536) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0)
          continue;
        const auto n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
          break;
        response.append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(fd);
  const auto body = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.1 200", 0) != 0 || body == std::string::npos)
    return std::nullopt;
  return response.substr(body + 4);
}

/// Sends `count` requests to `outbound` and prints how many each version answered.
void send_traffic(const std::string& outbound, int count) {
  std::map<std::string, int> by_body;
  int failed = 0;
  for (int i = 0; i < count && !stop_requested; ++i) {
    if (auto body = fetch(outbound))
      ++by_body[*body];
    else
      ++failed;
  }
  for (const auto& [body, n] : by_body)
    std::cout << std::setw(7) << n << ' ' << body;
  std::cout << "(" << failed << " failed)\n" << std::flush;
}

/// `node`'s outbound listener of `service` ("" while it has none).
std::string outbound_of(const demo_node& node, const std::string& service) {
  auto out = run_self("routes --json --admin " + node.info.admin);
  if (!out)
    return {};
  auto doc = nlohmann::json::parse(*out, nullptr, false);
  if (doc.is_discarded() || !doc.contains("routes") || !doc["routes"].is_array())
    return {};
  for (const auto& r : doc["routes"])
    if (r.is_object() && r.value("service", "") == service && r.contains("outbound") &&
        r["outbound"].is_string())
      return r["outbound"].get<std::string>();
  return {};
}

/// The story of the demo; returns the exit code. Agents are stopped by the caller.
int tell_story(std::vector<demo_node>& nodes, const fs::path& dir, const demo_options& opts) {
  auto& a = nodes[0];
  auto& b = nodes[1];
  auto& c = nodes[2];
  const auto ca = dir / "ca";
  const auto issuer = dir / "issuer-a";
  say("creating the mesh's root offline, and an issuer certificate for node-a");
  if (!show("ca init --mesh demo.local --out " + ca.string()) ||
      !show("ca issuer --ca " + ca.string() + " --name node-a --out " + issuer.string())) {
    std::cerr << "demo: starling ca failed\n";
    return exit_failed;
  }
  auto key = run_self("keyring generate");
  if (!key) {
    std::cerr << "demo: starling keyring generate failed\n";
    return exit_failed;
  }
  say("starting node-a, the first node of a new mesh: an issuer, with a gossip key");
  if (auto err =
          start_agent(a, dir, {"--issuer", issuer.string(), "--gossip-key", last_line(*key)})) {
    std::cerr << "demo: " << *err << '\n';
    return exit_failed;
  }
  say("node-a ready: gossip " + a.info.gossip + ", admin " + a.info.admin);
  auto created = show("token create --uses 2 --ttl 10m --admin " + a.info.admin);
  if (!created) {
    std::cerr << "demo: starling token create failed; see " << (dir / "node-a.log") << '\n';
    return exit_failed;
  }
  const auto token = last_line(*created);
  say("starting node-b and node-c with that token, each pointed at node-a as its seed: "
      "they check node-a against the root pinned in the token, send a CSR, and get their "
      "certificate and the gossip keyring back");
  for (auto* n : {&b, &c}) {
    if (auto err = start_agent(*n, dir, {"--join", a.info.gossip, "--token", token})) {
      std::cerr << "demo: " << *err << '\n';
      return exit_failed;
    }
  }
  auto all_alive = [&](const nlohmann::json& v) {
    for (auto* n : {&a, &b, &c})
      if (state_in(v, n->name) != "alive")
        return false;
    return true;
  };
  auto t = wait_view(c, all_alive, 20s);
  if (!t) {
    std::cerr << "demo: the mesh did not form within 20 s; logs in " << dir << '\n';
    return exit_failed;
  }
  say("mesh formed: node-c sees all three alive after " + std::to_string(*t).substr(0, 4) +
      " s; every TCP exchange between them is mutual TLS 1.3");
  print_table(c);
  show("certs --admin " + c.info.admin);

  say("two sample HTTP services run here: version v1 for node-b, version v2 for node-c; each "
      "node registers its own, with an HTTP health check it runs itself");
  sample_service v1{"v1"}, v2{"v2"};
  if (v1.port() == 0 || v2.port() == 0) {
    std::cerr << "demo: cannot open the sample services' ports\n";
    return exit_failed;
  }
  for (auto [n, svc, version] : {std::tuple{&b, &v1, "v1"}, std::tuple{&c, &v2, "v2"}}) {
    if (!show("register --name web --port " + std::to_string(svc->port()) + " --version " +
              version + " --protocol http --check http --check-path /healthz " +
              "--check-interval 1s --check-timeout 500ms --rise 1 --admin " + n->info.admin)) {
      std::cerr << "demo: starling register failed; see " << (dir / (n->name + ".log")) << '\n';
      return exit_failed;
    }
  }
  auto both_healthy = [](const nlohmann::json& v) { return healthy_in(v, "web") == 2; };
  t = wait_services(a, both_healthy, 30s);
  if (!t) {
    std::cerr << "demo: node-a did not see both web instances healthy within 30 s; logs in " << dir
              << '\n';
    return exit_failed;
  }
  say("node-a sees both instances healthy after " + std::to_string(*t).substr(0, 4) +
      " s: each is signed by its own node's key, so no node can rewrite another's");
  show("services --admin " + a.info.admin);
  say("every node answers DNS for them (node-a's responder here)");
  show_dig(a, "web.service.starling", "SRV");
  say("node-a is an issuer, so it may sign a traffic split (any other node would be refused)");
  show("split web v1=90 v2=10 --admin " + a.info.admin);
  auto split_seen = [&](const demo_node& n) {
    const auto start = steady_clock::now();
    while (!stop_requested && steady_clock::now() - start < 20s) {
      if (auto out = run_self("routes --json --admin " + n.info.admin);
          out && out->find("\"split_signer\":\"node-a\"") != std::string::npos)
        return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  };
  if (!split_seen(c)) {
    std::cerr << "demo: the split did not reach node-c within 20 s; logs in " << dir << '\n';
    return exit_failed;
  }
  say("the split reached node-c by gossip:");
  show("routes --admin " + c.info.admin);
  const auto outbound = outbound_of(a, "web");
  if (outbound.empty()) {
    std::cerr << "demo: node-a has no outbound listener for web; logs in " << dir << '\n';
    return exit_failed;
  }
  say("traffic: an app on node-a calls web through node-a's outbound listener " + outbound +
      "; node-a's proxy picks v1 or v2 per request by the split and carries it over pooled "
      "mutual TLS to the instance's node, whose inbound proxy hands it to the app");
  std::cout << "$ for i in $(seq 1000); do curl -s http://" << outbound << "/; done | sort | "
            << "uniq -c\n";
  send_traffic(outbound, 1000);
  say("node-b is a member, not an issuer: its agent refuses to sign a split");
  show_refusal("split web v1=50 v2=50 --admin " + b.info.admin);
  say("Prometheus scrapes every node: members by state, the routing table, certificate expiry "
      "(node-a's /metrics, a few lines of it)");
  show_metrics(a);

  say("kill -9 node-c: the others detect the failure (SWIM probes, Lifeguard suspicion)");
  kill(c.pid, SIGKILL);
  int status = 0;
  waitpid(c.pid, &status, 0);
  c.pid = -1;
  auto c_dead = [&](const nlohmann::json& v) { return state_in(v, "node-c") == "dead"; };
  t = wait_view(a, c_dead, 30s);
  if (!t) {
    std::cerr << "demo: node-c was not declared dead within 30 s; logs in " << dir << '\n';
    return exit_failed;
  }
  say("node-a declared node-c dead " + std::to_string(*t).substr(0, 4) + " s after the kill");
  print_table(a);
  if (wait_services(
          a, [](const nlohmann::json& v) { return healthy_in(v, "web") == 1; }, 10s))
    say("its web v2 instance left every routable set with it:");
  show("services --admin " + a.info.admin);
  say("traffic goes on: the split's v2 has no routable instance left, so v1 serves it all");
  std::cout << "$ for i in $(seq 200); do curl -s http://" << outbound << "/; done | sort | "
            << "uniq -c\n";
  send_traffic(outbound, 200);

  say("restarting node-c from its data dir (its certificate is stored there: no token "
      "needed): it rejoins with a higher incarnation");
  auto old_inc = incarnation_in(*members_of(a), "node-c");
  if (auto err = start_agent(c, dir, {"--join", a.info.gossip})) {
    std::cerr << "demo: " << *err << '\n';
    return exit_failed;
  }
  auto c_back = [&](const nlohmann::json& v) {
    return state_in(v, "node-c") == "alive" && incarnation_in(v, "node-c") > old_inc;
  };
  t = wait_view(b, c_back, 30s);
  if (!t) {
    std::cerr << "demo: node-c did not rejoin within 30 s; logs in " << dir << '\n';
    return exit_failed;
  }
  say("node-c is back: node-b sees it alive after " + std::to_string(*t).substr(0, 4) + " s");
  print_table(b);

  say(std::string{"live view every 2 s: the app on node-a keeps calling web (about 20 requests/s), "
                  "and node-a's counters show it as `top` does in `starling console --admin "} +
      a.info.admin + "`" +
      (opts.duration.count() == 0 ? "; Ctrl-C stops the mesh (every node leaves gracefully)" : ""));
  auto end = steady_clock::now() + opts.duration;
  auto next = steady_clock::now() + 2s;
  std::string previous;
  auto previous_at = steady_clock::now();
  int failed = 0;
  bool last_frame = false;
  while (!stop_requested && !last_frame) {
    // A bounded run ends with one more frame, so that it shows at least two (the second with
    // rates) however slowly the machine runs the frames before it.
    last_frame = opts.duration.count() != 0 && steady_clock::now() >= end;
    if (last_frame || steady_clock::now() >= next) {
      const auto stats = run_self("stats --json --admin " + a.info.admin);
      const auto at = steady_clock::now();
      std::string frame = "  (node-a did not answer)\n";
      if (stats)
        if (auto text = top_frame(*stats, previous,
                                  std::chrono::duration<double>(at - previous_at).count()))
          frame = std::move(*text);
      std::cout << "\n$ starling console --admin " << a.info.admin << "    # top, on node-a ("
                << failed << " calls failed so far)\n"
                << frame << std::flush;
      if (stats) {
        previous = *stats;
        previous_at = at;
      }
      next += 2s;
    }
    if (last_frame)
      break;
    if (!fetch(outbound))
      ++failed;
    std::this_thread::sleep_for(50ms);
  }
  return exit_ok;
}

} // namespace

int run_demo(const demo_options& opts) {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  std::string tmpl = (fs::temp_directory_path() / "starling-demo-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    std::cerr << "demo: cannot create a temporary directory\n";
    return exit_failed;
  }
  fs::path dir{tmpl};
  say("a local 3-node Starling mesh in " + dir.string() + " (agents' logs and event logs there)");
  std::vector<demo_node> nodes;
  for (const char* name : {"node-a", "node-b", "node-c"})
    nodes.push_back(demo_node{name, dir / name, -1, {}});
  auto rc = tell_story(nodes, dir, opts);
  say("stopping: every node leaves the mesh gracefully");
  stop_all(nodes);
  if (opts.keep || rc != exit_ok) {
    say("kept " + dir.string());
  } else {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  return rc;
}

} // namespace starling::cli
