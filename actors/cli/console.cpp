// `starling console`: the operator's interactive console on one agent (DESIGN.md, "Command
// line"). Each line is a `starling` command run against the console's agent (its --admin and
// --admin-cookie are the defaults of every command), plus `help`, `top` and `quit`. On a
// terminal it reads lines with libedit (history in ~/.starling_history, completion of
// commands, subcommands and flags); from a pipe it reads one command a line.
//
// libedit is loaded with dlopen when an interactive console starts, never linked: the agent
// is the same binary, and a linked library's pages count in its RSS (decision 0019).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include <CLI/CLI.hpp>
#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include "actors/admin_server.hpp"
#include "actors/cli/command_line.hpp"
#include "actors/cli/commands.hpp"
#include "actors/cli/views.hpp"
#include "actors/config.hpp"
#include "actors/errc.hpp"
#include "actors/logging.hpp"

namespace starling::cli {

using namespace starling::actors;

namespace {

/// Longest command line read from a pipe; a longer one is refused (and skipped whole).
constexpr std::size_t max_line = 64 * 1024;

/// Lines kept in the history file.
constexpr int history_lines = 1000;

/// The commands that run the console's own process, never on a line.
bool runs_a_process(const std::string& word) {
  return word == "agent" || word == "demo" || word == "console";
}

/// The first word of `line` (blank-separated) and the rest after it.
std::pair<std::string, std::string> first_word(const std::string& line) {
  const auto begin = line.find_first_not_of(" \t\r");
  if (begin == std::string::npos)
    return {};
  const auto end = line.find_first_of(" \t\r", begin);
  if (end == std::string::npos)
    return {line.substr(begin), {}};
  return {line.substr(begin, end - begin), line.substr(end)};
}

/// The part of libedit's readline interface the console uses, loaded at run time.
struct editline {
  using entry_fn = char* (*)(const char*, int);
  using completion_fn = char** (*)(const char*, int, int);
  char* (*readline)(const char*) = nullptr;
  int (*add_history)(const char*) = nullptr;
  void (*stifle_history)(int) = nullptr;
  int (*read_history)(const char*) = nullptr;
  int (*write_history)(const char*) = nullptr;
  int (*history_truncate_file)(const char*, int) = nullptr;
  char** (*completion_matches)(const char*, entry_fn) = nullptr;
  completion_fn* attempted_completion_function = nullptr;
  char** line_buffer = nullptr;
  int* attempted_completion_over = nullptr;
  const char** readline_name = nullptr;

  /// libedit.so.2 (Debian's libedit2), or nullopt with the reason when it cannot be used.
  static std::optional<editline> load(std::string& why) {
    void* lib = ::dlopen("libedit.so.2", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* err = ::dlerror();
      why = err != nullptr ? err : "dlopen failed";
      return std::nullopt;
    }
    editline e;
    bool complete = true;
    const auto get = [&](auto& into, const char* name) {
      void* sym = ::dlsym(lib, name);
      if (sym == nullptr)
        complete = false;
      // POSIX: a function's address from dlsym converts to a function pointer.
      into = reinterpret_cast<std::remove_reference_t<decltype(into)>>(sym);
    };
    get(e.readline, "readline");
    get(e.add_history, "add_history");
    get(e.stifle_history, "stifle_history");
    get(e.read_history, "read_history");
    get(e.write_history, "write_history");
    get(e.history_truncate_file, "history_truncate_file");
    get(e.completion_matches, "rl_completion_matches");
    get(e.attempted_completion_function, "rl_attempted_completion_function");
    get(e.line_buffer, "rl_line_buffer");
    get(e.attempted_completion_over, "rl_attempted_completion_over");
    get(e.readline_name, "rl_readline_name");
    if (!complete) {
      why = "libedit.so.2 lacks a readline function";
      ::dlclose(lib);
      return std::nullopt;
    }
    return e; // the library stays loaded for the process
  }
};

/// Words the console completes: the commands (key ""), and per command its subcommands and
/// long flags, read from the command line itself.
std::map<std::string, std::vector<std::string>> completion_words() {
  std::map<std::string, std::vector<std::string>> words;
  auto& top = words[""];
  top = {"help", "quit", "exit", "top"};
  (void)with_command_line({}, true, [&](CLI::App& app) {
    const auto all = [](const CLI::App*) { return true; };
    for (const auto* cmd : app.get_subcommands(all)) {
      const auto& name = cmd->get_name();
      if (runs_a_process(name))
        continue;
      top.push_back(name);
      auto& own = words[name];
      for (const auto* sub : cmd->get_subcommands(all))
        own.push_back(sub->get_name());
      for (const auto* opt : cmd->get_options())
        for (const auto& flag : opt->get_lnames())
          own.push_back("--" + flag);
    }
    return false; // read the commands, run nothing
  });
  words["top"] = {"--interval", "--count"};
  words["help"] = top;
  for (auto& [_, list] : words)
    std::sort(list.begin(), list.end());
  return words;
}

// libedit calls back into plain functions: the words to complete and the library live here
// (one console per process).
std::optional<editline> edit;
std::map<std::string, std::vector<std::string>> complete_from;
std::vector<std::string> candidates;

char* next_candidate(const char* text, int state) {
  static std::size_t at = 0;
  if (state == 0)
    at = 0;
  const std::string_view prefix{text};
  while (at < candidates.size()) {
    const auto& word = candidates[at++];
    if (word.compare(0, prefix.size(), prefix) == 0)
      return ::strdup(word.c_str());
  }
  return nullptr;
}

char** complete(const char* text, int start, int /*end*/) {
  *edit->attempted_completion_over = 1; // never fall back to file names
  const std::string_view line{*edit->line_buffer != nullptr ? *edit->line_buffer : ""};
  const std::string before{
      line.substr(0, std::min(line.size(), static_cast<std::size_t>(std::max(start, 0))))};
  const auto [command, rest] = first_word(before);
  const auto it = complete_from.find(command);
  if (it == complete_from.end())
    return nullptr;
  candidates = it->second;
  return edit->completion_matches(text, next_candidate);
}

/// Where the history is kept: $STARLING_HISTORY, else ~/.starling_history; empty without
/// either (no history file).
std::string history_file() {
  if (const char* file = std::getenv("STARLING_HISTORY"); file != nullptr)
    return file;
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
    return std::string{home} + "/.starling_history";
  return {};
}

/// Reads one line of a pipe, at most max_line bytes of it kept; nullopt at the end of input.
std::optional<std::string> read_piped_line(std::istream& in, bool& too_long) {
  too_long = false;
  std::string line;
  bool any = false;
  for (int c = in.get(); c != std::char_traits<char>::eof(); c = in.get()) {
    any = true;
    if (c == '\n')
      return line;
    if (line.size() < max_line)
      line.push_back(static_cast<char>(c));
    else
      too_long = true;
  }
  if (!any)
    return std::nullopt;
  return line;
}

volatile std::sig_atomic_t top_interrupted = 0;

extern "C" void on_top_interrupt(int) { top_interrupted = 1; }

/// Waits up to `wait` for the end of `top`: a line on a terminal's stdin (read and dropped)
/// or Ctrl-C. True when the operator asked to stop.
bool operator_stops(std::chrono::milliseconds wait, bool interactive) {
  const auto until = std::chrono::steady_clock::now() + wait;
  while (!top_interrupted) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return false;
    pollfd in{STDIN_FILENO, POLLIN, 0};
    const int ready = ::poll(&in, interactive ? 1 : 0, static_cast<int>(left.count()));
    if (ready > 0 && interactive) {
      std::string dropped;
      std::getline(std::cin, dropped);
      return true;
    }
    if (ready < 0 && errno != EINTR)
      return false;
  }
  return true;
}

/// `top [--interval D] [--count N]`: frames of top_frame, one per interval, until N frames
/// (default: until Enter or Ctrl-C on a terminal, one frame from a pipe).
int run_top(const client_options& base, const std::string& args, bool interactive) {
  CLI::App app{"live view of the agent's members, proxy and routing", "top"};
  std::string interval_text = "1s";
  unsigned count = interactive ? 0 : 1;
  app.add_option("--interval", interval_text, "time between frames (default 1s)")->type_name("D");
  app.add_option("--count", count, "frames to show (default: until Enter or Ctrl-C)")
      ->type_name("N");
  try {
    app.parse(args, false);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto interval = parse_duration(interval_text, "--interval");
  if (!interval) {
    std::cerr << "starling: " << message_of(interval.error()) << '\n';
    return exit_usage;
  }
  const auto every = std::chrono::duration_cast<std::chrono::milliseconds>(*interval);
  if (every < std::chrono::milliseconds{100} || every > std::chrono::hours{1}) {
    std::cerr << "starling: --interval must be 100ms to 1h\n";
    return exit_usage;
  }
  top_interrupted = 0;
  struct sigaction on_int {};
  on_int.sa_handler = on_top_interrupt; // no SA_RESTART: poll returns at once
  struct sigaction before {};
  ::sigaction(SIGINT, &on_int, &before);
  std::string previous;
  auto previous_at = std::chrono::steady_clock::now();
  int code = exit_ok;
  for (unsigned frame = 0; count == 0 || frame < count; ++frame) {
    if (frame > 0 && operator_stops(every, interactive))
      break;
    auto reply = ask_agent(base, {"stats"});
    const auto at = std::chrono::steady_clock::now();
    if (auto* failed = std::get_if<int>(&reply)) {
      code = *failed;
      break;
    }
    auto& stats = std::get<std::string>(reply);
    auto text = top_frame(stats, previous, std::chrono::duration<double>(at - previous_at).count());
    if (!text) {
      std::cerr << "starling: " << message_of(text.error()) << '\n';
      code = exit_failed;
      break;
    }
    if (interactive)
      std::cout << "\x1b[H\x1b[2J"; // home, clear the screen
    else if (frame > 0)
      std::cout << '\n';
    std::cout << "starling top: " << base.admin << ", every " << format_duration(*interval)
              << (interactive ? " (Enter or Ctrl-C stops)" : "") << '\n'
              << *text << std::flush;
    previous = std::move(stats);
    previous_at = at;
  }
  ::sigaction(SIGINT, &before, nullptr);
  return code;
}

/// `help [COMMAND...]`: the console's own commands and the command list, or a command's help.
int run_help(const client_options& base, const std::string& args) {
  const auto [topic, _] = first_word(args);
  if (topic == "top")
    return run_top(base, "--help", false);
  if (topic == "quit" || topic == "exit" || topic == "help") {
    std::cout << "`help [COMMAND]` lists the commands or shows one's flags; `quit` and `exit` "
                 "leave the console\n";
    return exit_ok;
  }
  if (!topic.empty())
    return with_command_line(base, true, [&](CLI::App& app) {
      app.parse(args + " --help", false);
      return true;
    });
  std::cout << "Every `starling` command runs here without the `starling`, against\n"
            << base.admin << " unless it gives --admin: `members`, `stats --json`,\n"
            << "`split web v1=90 v2=10`... `help COMMAND` shows a command's flags. And:\n"
            << "  top [--interval 1s] [--count N]   live view: members, proxy, services\n"
            << "  quit | exit                       leave the console\n\n";
  return with_command_line(base, true, [&](CLI::App& app) {
    std::cout << "Commands:\n";
    for (const auto* cmd : app.get_subcommands([](const CLI::App*) { return true; }))
      if (!runs_a_process(cmd->get_name()))
        std::cout << "  " << cmd->get_name()
                  << std::string(cmd->get_name().size() < 12 ? 12 - cmd->get_name().size() : 1, ' ')
                  << cmd->get_description() << '\n';
    return false;
  });
}

/// Runs one line; sets `quit` on quit/exit. Returns the exit code of what it ran.
int run_line(const client_options& base, const std::string& line, bool interactive, bool& quit) {
  const auto [command, rest] = first_word(line);
  if (command.empty() || command.front() == '#')
    return exit_ok;
  if (command == "quit" || command == "exit") {
    quit = true;
    return exit_ok;
  }
  if (command == "help" || command == "?")
    return run_help(base, rest);
  if (command == "top")
    return run_top(base, rest, interactive);
  if (command == "starling") // a line pasted from a shell
    return run_line(base, rest, interactive, quit);
  if (runs_a_process(command)) {
    std::cerr << "starling: `" << command
              << "` does not run inside the console; run it from a shell\n";
    return exit_usage;
  }
  static const auto known = completion_words()[""];
  if (!std::binary_search(known.begin(), known.end(), command)) {
    std::cerr << "starling: unknown command `" << printable(command)
              << "` (`help` lists the commands)\n";
    return exit_usage;
  }
  return with_command_line(base, true, [&](CLI::App& app) {
    app.parse(line, false);
    return true;
  });
}

/// The agent's certificate expiry warnings (expiry_warnings); none when it cannot be asked
/// (ask_agent said why on stderr).
std::vector<std::string> warnings_of(const client_options& opts) {
  auto reply = ask_agent(opts, {"certs"});
  if (const auto* certs = std::get_if<std::string>(&reply))
    return expiry_warnings(*certs);
  return {};
}

} // namespace

int run_console(const client_options& opts) {
  setup_logging(log_level::warn, log_format::text);
  if (auto hp = parse_host_port(opts.admin, "--admin"); !hp) {
    std::cerr << "starling: " << message_of(hp.error()) << '\n';
    return exit_usage;
  }
  const bool interactive = ::isatty(STDIN_FILENO) == 1;
  // Certificate expiry is worth a warning before anything else (DESIGN.md: "a metric and a
  // console warning well before it bites"); on stderr from a pipe, so that output stays
  // the commands'.
  const auto warnings = warnings_of(opts);
  if (!interactive) {
    for (const auto& w : warnings)
      std::cerr << "starling: " << w << '\n';
    // From a pipe: every line runs, whatever the one before returned; the exit code is the
    // first failure's (0 when all succeeded).
    int first_failure = exit_ok;
    bool too_long = false;
    bool quit = false;
    while (!quit) {
      auto line = read_piped_line(std::cin, too_long);
      if (!line)
        break;
      int code = exit_ok;
      if (too_long) {
        std::cerr << "starling: a line longer than " << max_line << " bytes: skipped\n";
        code = exit_usage;
      } else {
        code = run_line(opts, *line, false, quit);
      }
      std::cout << std::flush;
      if (code != exit_ok && first_failure == exit_ok)
        first_failure = code;
    }
    return first_failure;
  }
  std::string why;
  edit = editline::load(why);
  const auto history = history_file();
  if (edit) {
    complete_from = completion_words();
    *edit->readline_name = "starling";
    *edit->attempted_completion_function = complete;
    edit->stifle_history(history_lines);
    if (!history.empty())
      (void)edit->read_history(history.c_str());
  }
  std::cout << "starling console on " << opts.admin << ": `help` lists the commands"
            << (edit ? ", Tab completes" : "") << ", `quit` leaves" << std::endl;
  if (!edit)
    std::cout << "(no line editing, history or completion: " << why << ")" << std::endl;
  for (const auto& w : warnings)
    std::cout << w << '\n';
  const std::string prompt = "starling " + opts.admin + "> ";
  bool quit = false;
  while (!quit) {
    std::string line;
    if (edit) {
      char* raw = edit->readline(prompt.c_str());
      if (raw == nullptr) { // Ctrl-D
        std::cout << '\n';
        break;
      }
      line = raw;
      std::free(raw);
    } else {
      std::cout << prompt << std::flush;
      if (!std::getline(std::cin, line)) {
        std::cout << '\n';
        break;
      }
    }
    if (line.find_first_not_of(" \t\r") == std::string::npos)
      continue;
    if (edit)
      (void)edit->add_history(line.c_str());
    (void)run_line(opts, line, true, quit);
    std::cout << std::flush;
  }
  if (edit && !history.empty()) {
    (void)edit->write_history(history.c_str());
    (void)edit->history_truncate_file(history.c_str(), history_lines);
  }
  return exit_ok;
}

} // namespace starling::cli
