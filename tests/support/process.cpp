#include "tests/support/process.hpp"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace starling::testing {

namespace fs = std::filesystem;

std::string starling_bin() {
  if (const char* bin = std::getenv("STARLING_BIN"); bin != nullptr && *bin != '\0')
    return bin;
  // Run by hand from the build tree: <build>/tests/x -> <build>/bin/starling.
  std::error_code ec;
  auto self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto guess = self.parent_path().parent_path() / "bin" / "starling";
    if (fs::exists(guess, ec))
      return guess.string();
  }
  return "starling";
}

temp_dir::temp_dir(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  fs::path root = base != nullptr && *base != '\0' ? base : "/tmp";
  std::string templ = (root / (prefix + "-XXXXXX")).string();
  if (::mkdtemp(templ.data()) == nullptr)
    throw std::runtime_error("mkdtemp failed: " + std::string{std::strerror(errno)});
  path_ = templ;
}

temp_dir::~temp_dir() {
  bool keep = std::getenv("STARLING_KEEP_TMP") != nullptr || ::testing::Test::HasFailure();
  if (keep) {
    std::cerr << "[ keep     ] test files kept in " << path_ << '\n';
    return;
  }
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_text(const fs::path& file, const std::string& content) {
  if (file.has_parent_path())
    fs::create_directories(file.parent_path());
  std::ofstream out{file, std::ios::binary | std::ios::trunc};
  out << content;
  if (!out)
    throw std::runtime_error("cannot write " + file.string());
}

std::string read_text(const fs::path& file) {
  std::ifstream in{file, std::ios::binary};
  if (!in)
    return {};
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

child_process::child_process(std::vector<std::string> argv, const fs::path& log_dir,
                             std::string label, std::vector<std::string> env, const fs::path& input)
    : label_(std::move(label)), out_file_(log_dir / (label_ + ".out")),
      err_file_(log_dir / (label_ + ".err")) {
  fs::create_directories(log_dir);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, input.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_file_.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_file_.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e)
    envs.emplace_back(*e);
  for (auto& e : env)
    envs.push_back(std::move(e));
  std::vector<char*> cargv;
  for (auto& a : argv)
    cargv.push_back(a.data());
  cargv.push_back(nullptr);
  std::vector<char*> cenv;
  for (auto& e : envs)
    cenv.push_back(e.data());
  cenv.push_back(nullptr);
  int rc = ::posix_spawn(&pid_, cargv[0], &actions, &attr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0)
    throw std::runtime_error("posix_spawn " + argv[0] + ": " + std::strerror(rc));
}

child_process::~child_process() {
  if (!status_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
  }
}

void child_process::kill(int sig) {
  if (!status_ && pid_ > 0)
    ::kill(pid_, sig);
}

bool child_process::running() {
  if (status_)
    return false;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

std::optional<int> child_process::wait(test_clock::duration timeout) {
  auto deadline = test_clock::now() + timeout;
  while (running()) {
    if (test_clock::now() >= deadline)
      return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
  return status_;
}

std::string child_process::stdout_text() const { return read_text(out_file_); }

std::string child_process::stderr_text() const { return read_text(err_file_); }

process_group::~process_group() {
  if (::testing::Test::HasFailure()) {
    // First, in a few lines, which children had already died and how: the tails below
    // can be cut short by whoever shows the log.
    std::cerr << "----- children at the failure -----\n";
    std::vector<const child_process*> in_order, alive; // the dead first
    for (const auto& c : children_) {
      std::cerr << c->label() << " (pid " << c->pid() << "): ";
      if (c->running()) {
        std::cerr << "running\n";
        alive.push_back(c.get());
        continue;
      }
      in_order.push_back(c.get());
      if (const auto code = c->wait(test_clock::duration::zero()); code && *code > 128)
        std::cerr << "killed by signal " << *code - 128 << " (" << ::strsignal(*code - 128)
                  << ")\n";
      else
        std::cerr << "exited with code " << code.value_or(-1) << '\n';
    }
    // The dead first: a crash report is the tail of their stderr.
    in_order.insert(in_order.end(), alive.begin(), alive.end());
    for (const auto* c : in_order) {
      auto err = c->stderr_text();
      if (err.size() > 4000)
        err = "...\n" + err.substr(err.size() - 4000);
      std::cerr << "----- " << c->label() << " (pid " << c->pid() << ") stderr -----\n"
                << err << '\n';
    }
  }
  for (auto& c : children_)
    c->kill(SIGKILL);
  children_.clear(); // reaps
}

child_process& process_group::spawn(std::vector<std::string> argv, std::string label,
                                    std::vector<std::string> env) {
  // Unique log names even when a label is reused (a restarted node).
  label += "." + std::to_string(++spawned_);
  children_.push_back(
      std::make_unique<child_process>(std::move(argv), log_dir_, std::move(label), std::move(env)));
  return *children_.back();
}

void process_group::remove(child_process& child) {
  for (auto i = children_.begin(); i != children_.end(); ++i) {
    if (i->get() == &child) {
      children_.erase(i);
      return;
    }
  }
}

cli_result run_cli_with_input(const std::vector<std::string>& args, const std::string& input,
                              test_clock::duration timeout) {
  static std::atomic<unsigned> counter{0};
  temp_dir logs{"starling-cli"};
  std::vector<std::string> argv{starling_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto input_file = logs.path() / "stdin";
  write_text(input_file, input);
  cli_result res;
  {
    child_process child{argv, logs.path(), "cli" + std::to_string(++counter), {}, input_file};
    auto code = child.wait(timeout);
    if (!code) {
      child.kill(SIGKILL);
      (void)child.wait(5s);
    }
    res.exit_code = code.value_or(-1);
    res.out = child.stdout_text();
    res.err = child.stderr_text();
  }
  return res;
}

cli_result run_cli(const std::vector<std::string>& args, test_clock::duration timeout) {
  return run_cli_with_input(args, {}, timeout);
}

bool poll_until(test_clock::duration timeout, const std::function<bool()>& pred,
                test_clock::duration interval) {
  auto deadline = test_clock::now() + timeout;
  while (true) {
    if (pred())
      return true;
    if (test_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(interval);
  }
}

std::optional<agent_json> read_agent_json(const fs::path& data_dir) {
  auto text = read_text(data_dir / "agent.json");
  if (text.empty())
    return std::nullopt;
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return std::nullopt;
  try {
    agent_json info{doc.at("name").get<std::string>(),
                    doc.at("pid").get<long>(),
                    doc.at("gossip").get<std::string>(),
                    doc.at("admin").get<std::string>(),
                    {},
                    {},
                    {}};
    if (doc.contains("dns") && doc["dns"].is_string())
      info.dns = doc["dns"].get<std::string>();
    if (doc.contains("metrics") && doc["metrics"].is_string())
      info.metrics = doc["metrics"].get<std::string>();
    if (doc.contains("inbound") && doc["inbound"].is_string())
      info.inbound = doc["inbound"].get<std::string>();
    return info;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

std::string http_get(const std::string& endpoint, const std::string& path) {
  const auto colon = endpoint.rfind(':');
  if (colon == std::string::npos)
    return {};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(endpoint.substr(colon + 1))));
  if (::inet_pton(AF_INET, endpoint.substr(0, colon).c_str(), &addr.sin_addr) != 1)
    return {};
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return {};
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const auto request =
        "GET " + path + " HTTP/1.1\r\nHost: " + endpoint + "\r\nConnection: close\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char buf[8192];
      for (;;) {
        const auto n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
          break;
        out.append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(fd);
  return out;
}

std::uint16_t closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("bind failed");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

} // namespace starling::testing
