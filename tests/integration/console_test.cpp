// `starling console` with real agents on 127.0.0.1 (DESIGN.md, "Command line"): commands
// from a pipe, one a line, against the console's agent; the console's own `help`, `top` and
// `quit`; clear refusals that do not stop the script; and on a terminal (a pseudo-terminal
// here) libedit's completion and history.
#include <cerrno>
#include <cstdlib>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/mesh_test.hpp"

extern char** environ;

namespace st = starling::testing;
using namespace std::chrono_literals;

namespace {

class console_test : public st::mesh_test {
protected:
  console_test() : mesh_test("starling-it-console") {}

  /// Starts issuer a and member b, a 2-node mesh with certificates.
  void start_mesh() {
    const auto ca = make_root("c.mesh", "ca");
    a_ = &start("a", {}, {"--issuer", make_issuer(ca, "a").string(), "--gossip-key", key_});
    ASSERT_FALSE(HasFailure());
    start("b", {a_->info.gossip}, {"--token", token_of(*a_, "1")});
    ASSERT_FALSE(HasFailure());
    ASSERT_TRUE(st::poll_until(30s, [&] { return all_alive(2); }));
  }

  /// Occurrences of `what` in `text`.
  static std::size_t count_of(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
      ++n;
    return n;
  }

  st::agent_node* a_ = nullptr;
};

TEST_F(console_test, a_piped_script_runs_every_line_against_the_consoles_agent) {
  start_mesh();
  ASSERT_FALSE(HasFailure());
  const std::string script = "members\n"
                             "# a comment, then a blank line\n"
                             "\n"
                             "starling register --name web --port 18080 --protocol http\n"
                             "bogus command\n"
                             "\x1b[2Jevil\n"
                             "agent --name x\n"
                             "split web v1=70\n"
                             "members --admin 127.0.0.1:1\n"
                             "services --json\n"
                             "top --count 2 --interval 100ms\n"
                             "help\n"
                             "help top\n"
                             "quit\n"
                             "leave\n";
  auto res = st::run_cli_with_input({"console", "--admin", a_->info.admin}, script, 60s);
  // Every line ran: the first failure's code is the exit code (bogus: usage, 2).
  EXPECT_EQ(res.exit_code, 2) << res.out << res.err;
  // members, against the console's agent, which sees both nodes.
  EXPECT_NE(res.out.find("NAME"), std::string::npos) << res.out;
  EXPECT_NE(res.out.find("alive"), std::string::npos) << res.out;
  // A mutating command (needs the agent's credential) pasted with `starling` in front.
  EXPECT_NE(res.out.find("registered web (id web) on port 18080"), std::string::npos) << res.out;
  // The refusals, each with its reason, none stopping the script.
  EXPECT_NE(res.err.find("unknown command `bogus`"), std::string::npos) << res.err;
  // A terminal escape in a command is echoed harmless.
  EXPECT_NE(res.err.find("unknown command `?[2Jevil`"), std::string::npos) << res.err;
  EXPECT_EQ(res.err.find('\x1b'), std::string::npos) << res.err;
  EXPECT_NE(res.err.find("`agent` does not run inside the console"), std::string::npos) << res.err;
  EXPECT_NE(res.err.find("sum to 100"), std::string::npos) << res.err;
  EXPECT_NE(res.err.find("cannot reach the agent's admin port at 127.0.0.1:1"), std::string::npos)
      << res.err;
  // services --json: one line of JSON with the registered service.
  bool saw_web = false;
  std::istringstream lines{res.out};
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("{\"services\"", 0) != 0)
      continue;
    auto doc = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(doc.is_discarded()) << line;
    for (const auto& s : doc.at("services"))
      saw_web = saw_web || s.at("name") == "web";
  }
  EXPECT_TRUE(saw_web) << res.out;
  // top: two frames, the second with rates.
  EXPECT_EQ(count_of(res.out, "starling top: " + a_->info.admin), 2u) << res.out;
  // Each frame counts both members of a's view. Not necessarily both alive: on a busy
  // machine (CI runs two TSan tests at once) a may suspect b for a moment during the frames.
  const std::regex members_row{R"(members +alive (\d+) +suspect (\d+) +dead (\d+))"};
  std::size_t frames = 0;
  for (std::sregex_iterator it{res.out.begin(), res.out.end(), members_row}, done; it != done;
       ++it, ++frames)
    EXPECT_EQ(std::stoul((*it)[1]) + std::stoul((*it)[2]) + std::stoul((*it)[3]), 2u) << res.out;
  EXPECT_EQ(frames, 2u) << res.out;
  EXPECT_NE(res.out.find("(0.0/s)"), std::string::npos) << res.out;
  EXPECT_NE(res.out.find("  register "), std::string::npos) << "help lists the commands";
  EXPECT_NE(res.out.find("time between frames"), std::string::npos) << "help top shows its flags";
  // quit stopped the script: `leave` never ran, a is still a member of b's view.
  EXPECT_TRUE(st::poll_until(5s, [&] { return all_alive(2); }));
  // The registration went to a (the console's agent) and spread to b.
  EXPECT_TRUE(st::poll_until(20s, [&] {
    auto view = st::cli_json({"services", "--json", "--admin", nodes_.at("b").info.admin});
    if (!view)
      return false;
    for (const auto& s : view->at("services"))
      for (const auto& i : s.at("instances"))
        if (s.at("name") == "web" && i.at("node") == "a")
          return true;
    return false;
  }));
}

TEST_F(console_test, a_clean_script_exits_0_and_an_overlong_line_is_skipped_alone) {
  start_mesh();
  ASSERT_FALSE(HasFailure());
  auto clean = st::run_cli_with_input({"console", "--admin", a_->info.admin},
                                      "stats --json\nkeyring list\n", 30s);
  EXPECT_EQ(clean.exit_code, 0) << clean.err;
  EXPECT_NE(clean.out.find("\"metrics_address\""), std::string::npos) << clean.out;
  EXPECT_EQ(clean.err, "");
  // 100,000 bytes on one line: refused whole, and the next line still runs.
  auto longer = st::run_cli_with_input({"console", "--admin", a_->info.admin},
                                       "members " + std::string(100'000, 'x') + "\nmembers\n", 30s);
  EXPECT_EQ(longer.exit_code, 2);
  EXPECT_NE(longer.err.find("longer than 65536 bytes"), std::string::npos) << longer.err;
  EXPECT_EQ(count_of(longer.out, "NAME"), 1u) << longer.out;
  // A bad --admin is a usage error before reading anything.
  auto bad = st::run_cli_with_input({"console", "--admin", "nowhere"}, "members\n", 30s);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--admin"), std::string::npos) << bad.err;
}

/// A console on a pseudo-terminal: what it printed so far, and a way to type.
class terminal {
public:
  terminal(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env) {
    std::vector<std::string> env_text;
    for (char** e = environ; *e != nullptr; ++e)
      env_text.emplace_back(*e);
    env_text.insert(env_text.end(), extra_env.begin(), extra_env.end());
    std::vector<char*> args;
    for (const auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    std::vector<char*> envp;
    for (const auto& e : env_text)
      envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    winsize size{};
    size.ws_row = 40;
    size.ws_col = 160;
    pid_ = ::forkpty(&master_, nullptr, nullptr, &size);
    if (pid_ == 0) {
      ::execve(args[0], args.data(), envp.data());
      ::_exit(127);
    }
  }
  ~terminal() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      (void)::waitpid(pid_, &status, 0);
    }
    if (master_ >= 0)
      ::close(master_);
  }
  terminal(const terminal&) = delete;
  terminal& operator=(const terminal&) = delete;

  [[nodiscard]] bool started() const { return pid_ > 0 && master_ >= 0; }

  void type(const std::string& keys) const {
    ASSERT_EQ(::write(master_, keys.data(), keys.size()), static_cast<ssize_t>(keys.size()));
  }

  /// Reads until the output since `from` holds `what`, or `timeout` passes.
  bool wait_for(const std::string& what, std::size_t from, st::test_clock::duration timeout) {
    const auto deadline = st::test_clock::now() + timeout;
    while (output_.find(what, from) == std::string::npos) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - st::test_clock::now());
      if (left.count() <= 0)
        return false;
      pollfd p{master_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        continue;
      char buf[4096];
      const auto n = ::read(master_, buf, sizeof buf);
      if (n <= 0)
        return output_.find(what, from) != std::string::npos; // the console exited
      output_.append(buf, static_cast<std::size_t>(n));
    }
    return true;
  }

  /// The exit code, or -1 when it does not exit within `timeout`.
  int wait_exit(st::test_clock::duration timeout) {
    return st::poll_until(timeout,
                          [&] {
                            int status = 0;
                            if (::waitpid(pid_, &status, WNOHANG) != pid_)
                              return false;
                            reaped_ = true;
                            code_ =
                                WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                            return true;
                          })
               ? code_
               : -1;
  }

  [[nodiscard]] const std::string& output() const { return output_; }

private:
  pid_t pid_ = -1;
  int master_ = -1;
  bool reaped_ = false;
  int code_ = -1;
  std::string output_;
};

TEST_F(console_test, on_a_terminal_it_completes_keeps_history_and_runs_top_until_enter) {
  start_mesh();
  ASSERT_FALSE(HasFailure());
  const auto history = tmp_.path() / "history";
  terminal term{{st::starling_bin(), "console", "--admin", a_->info.admin},
                {"STARLING_HISTORY=" + history.string(), "TERM=dumb"}};
  ASSERT_TRUE(term.started());
  // libedit loaded: the banner offers completion, then the prompt.
  ASSERT_TRUE(term.wait_for("Tab completes", 0, 20s)) << term.output();
  const std::string prompt = "starling " + a_->info.admin + "> ";
  ASSERT_TRUE(term.wait_for(prompt, 0, 10s)) << term.output();
  // "memb" and Tab complete to "members" (libedit writes the rest, "ers "); Enter runs it
  // against a ("memb" alone would be an unknown command).
  auto mark = term.output().size();
  term.type("memb\t");
  ASSERT_TRUE(term.wait_for("ers ", mark, 10s)) << term.output();
  mark = term.output().size();
  term.type("\r");
  ASSERT_TRUE(term.wait_for("INCARNATION", mark, 20s)) << term.output();
  ASSERT_TRUE(term.wait_for(prompt, mark, 10s)) << term.output();
  // top refreshes until Enter, then the prompt comes back.
  mark = term.output().size();
  term.type("top --interval 100ms\r");
  ASSERT_TRUE(term.wait_for("(Enter or Ctrl-C stops)", mark, 20s)) << term.output();
  ASSERT_TRUE(term.wait_for("(0.0/s)", mark, 20s)) << term.output();
  mark = term.output().size();
  term.type("\r");
  ASSERT_TRUE(term.wait_for(prompt, mark, 20s)) << term.output();
  term.type("quit\r");
  EXPECT_EQ(term.wait_exit(20s), 0) << term.output();
  // The history file (libedit's format: blanks as \040) holds what was typed, in order.
  const auto kept = st::read_text(history);
  const auto members_at = kept.find("members");
  const auto top_at = kept.find("top\\040--interval\\040100ms");
  EXPECT_NE(members_at, std::string::npos) << kept;
  EXPECT_NE(top_at, std::string::npos) << kept;
  EXPECT_LT(members_at, top_at) << kept;
}

} // namespace
