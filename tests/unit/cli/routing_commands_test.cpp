// The service and routing commands of `starling` (issue 16) against an admin port (a real
// admin_server on 127.0.0.1, port 0, answering as the agent does): the exact request each
// command line sends, the command-line checks that refuse before anything is sent (exit 2),
// what is printed, and the exit codes of the agent's answers. The last tests run the real
// `starling` binary, so main.cpp's flags are covered too.
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "actors/admin_server.hpp"
#include "actors/build_info.hpp"
#include "actors/cli/commands.hpp"
#include "actors/errc.hpp"
#include "tests/support/process.hpp"

namespace sa = starling::actors;
namespace sc = starling::cli;
using args_t = std::vector<std::string>;

namespace {

/// The message of a refused command line ("" when it was accepted).
std::string refusal(const caf::expected<args_t>& args) {
  return args ? std::string{} : sa::message_of(args.error());
}

// -- the requests, built and checked ---------------------------------------------------------

TEST(register_request, one_key_per_flag_given) {
  sc::register_options svc;
  svc.name = "web";
  svc.port = "8080";
  EXPECT_EQ(sc::register_args(svc), (args_t{"register", "name=web", "port=8080"}));
  svc.protocol = "http";
  svc.tags = "a,b";
  svc.version = "v1";
  svc.weight = "50";
  svc.address = "10.0.0.5";
  svc.id = "web-1";
  svc.check = "http";
  svc.check_path = "/healthz";
  svc.check_expect = "204";
  svc.check_interval = "10s";
  svc.check_timeout = "2s";
  svc.rise = "2";
  svc.fall = "3";
  EXPECT_EQ(sc::register_args(svc),
            (args_t{"register", "name=web", "port=8080", "protocol=http", "tags=a,b", "version=v1",
                    "weight=50", "address=10.0.0.5", "id=web-1", "check=http",
                    "check_path=/healthz", "check_expect=204", "check_interval=10s",
                    "check_timeout=2s", "check_rise=2", "check_fall=3"}));
}

TEST(register_request, refuses_a_missing_name_or_port_and_a_check_flag_without_a_check) {
  sc::register_options svc;
  svc.port = "8080";
  EXPECT_EQ(refusal(sc::register_args(svc)), "register: --name is required (the service's name)");
  svc.name = "web";
  svc.port.clear();
  EXPECT_EQ(refusal(sc::register_args(svc)),
            "register: --port is required (where the instance listens)");
  svc.port = "8080";
  svc.fall = "3";
  EXPECT_EQ(refusal(sc::register_args(svc)),
            "register: --fall configures a health check: add --check tcp|http|grpc");
  svc.check = "icmp";
  EXPECT_EQ(refusal(sc::register_args(svc)),
            "register: --check: expected tcp, http or grpc, got \"icmp\"");
  svc.check = "tcp";
  EXPECT_EQ(sc::register_args(svc),
            (args_t{"register", "name=web", "port=8080", "check=tcp", "check_fall=3"}));
}

TEST(deregister_request, positional_or_flags_but_not_two_different_names) {
  EXPECT_EQ(sc::deregister_args({"web", "", "", ""}), (args_t{"deregister", "web"}));
  EXPECT_EQ(sc::deregister_args({"web", "web-2", "", ""}), (args_t{"deregister", "web", "web-2"}));
  EXPECT_EQ(sc::deregister_args({"", "", "web", "web-2"}), (args_t{"deregister", "web", "web-2"}));
  EXPECT_EQ(sc::deregister_args({"web", "", "web", ""}), (args_t{"deregister", "web"}));
  EXPECT_EQ(refusal(sc::deregister_args({"web", "", "api", ""})),
            "deregister: SVC \"web\" and --name \"api\" differ");
  EXPECT_EQ(refusal(sc::deregister_args({"web", "a", "", "b"})),
            "deregister: ID \"a\" and --id \"b\" differ");
  EXPECT_EQ(refusal(sc::deregister_args({"", "", "", "web-2"})),
            "deregister: give the service (`starling deregister SVC [ID]`)");
}

TEST(split_request, weights_are_sent_as_given_or_cleared) {
  EXPECT_EQ(sc::split_args("web", {"v1=90", "v2=10"}, false),
            (args_t{"split", "web", "v1=90", "v2=10"}));
  EXPECT_EQ(sc::split_args("web", {"v1=100"}, false), (args_t{"split", "web", "v1=100"}));
  EXPECT_EQ(sc::split_args("web", {"v1=0", "v2=100"}, false),
            (args_t{"split", "web", "v1=0", "v2=100"}));
  EXPECT_EQ(sc::split_args("web", {}, true), (args_t{"split", "web", "--clear"}));
}

TEST(split_request, refuses_weights_that_do_not_make_a_split) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
      {{}, "split: give at least one VERSION=WEIGHT (e.g. v1=90 v2=10), or --clear"},
      {{"v1=90", "v2=20"}, "split: the weights must sum to 100, they sum to 110"},
      {{"v1=90"}, "split: the weights must sum to 100, they sum to 90"},
      {{"v1=50", "v1=50"}, "split: version v1 is given twice"},
      {{"v1=101"}, "split: the weight of v1 must be an integer 0..100, got \"101\""},
      {{"v1=-10", "v2=110"}, "split: the weight of v1 must be an integer 0..100, got \"-10\""},
      {{"v1=9.5", "v2=90.5"}, "split: the weight of v1 must be an integer 0..100, got \"9.5\""},
      {{"v1=", "v2=100"}, "split: the weight of v1 must be an integer 0..100, got \"\""},
      {{"v1=1e2"}, "split: the weight of v1 must be an integer 0..100, got \"1e2\""},
      {{"v1=99999999999999999999"},
       "split: the weight of v1 must be an integer 0..100, got \"99999999999999999999\""},
      {{"v1"}, "split: expected VERSION=WEIGHT (e.g. v1=90), got \"v1\""},
      {{"=100"}, "split: expected VERSION=WEIGHT (e.g. v1=90), got \"=100\""},
  };
  for (const auto& [weights, message] : cases)
    EXPECT_EQ(refusal(sc::split_args("web", weights, false)), message)
        << ::testing::PrintToString(weights);
  EXPECT_EQ(refusal(sc::split_args("web", {"v1=100"}, true)),
            "split: --clear takes no VERSION=WEIGHT");
  EXPECT_FALSE(sc::split_args("", {"v1=100"}, false));
  std::vector<std::string> many{"v0=100"};
  for (int i = 1; i < 70; ++i)
    many.push_back("v" + std::to_string(i) + "=0");
  EXPECT_EQ(refusal(sc::split_args("web", many, false)), "split: at most 62 versions");
}

TEST(route_request, a_header_route_or_its_removal) {
  EXPECT_EQ(sc::route_args("web", "beta", {"x-user-group=beta", "v2", false}),
            (args_t{"route", "web", "beta", "header=x-user-group", "value=beta", "version=v2"}));
  // Only the first '=' separates the header's name from its value.
  EXPECT_EQ(sc::route_args("web", "b", {"x-q=a=b", "v2", false}),
            (args_t{"route", "web", "b", "header=x-q", "value=a=b", "version=v2"}));
  EXPECT_EQ(sc::route_args("web", "none", {"x-user-group=", "v1", false}),
            (args_t{"route", "web", "none", "header=x-user-group", "value=", "version=v1"}));
  EXPECT_EQ(sc::route_args("web", "beta", {"", "", true}),
            (args_t{"route", "web", "beta", "--delete"}));
}

TEST(route_request, refuses_an_incomplete_route) {
  EXPECT_EQ(refusal(sc::route_args("web", "beta", {"", "v2", false})),
            "route: give --header NAME=VALUE and --to VERSION (or --delete)");
  for (const char* header : {"x-user-group", "=beta", "="})
    EXPECT_EQ(refusal(sc::route_args("web", "beta", {header, "v2", false})),
              "route: --header expects NAME=VALUE (e.g. x-user-group=beta), got \"" +
                  std::string{header} + "\"");
  EXPECT_EQ(refusal(sc::route_args("web", "beta", {"x-user-group=beta", "", false})),
            "route: --to VERSION is required (where matching requests go)");
  EXPECT_EQ(refusal(sc::route_args("web", "beta", {"x-user-group=beta", "", true})),
            "route: --delete takes no --header or --to");
  EXPECT_FALSE(sc::route_args("web", "", {"x-user-group=beta", "v2", false}));
  EXPECT_FALSE(sc::route_args("", "beta", {"x-user-group=beta", "v2", false}));
}

TEST(resilience_request, the_options_given_in_a_fixed_order) {
  sc::resilience_options res;
  res.timeout = "2s";
  res.per_try_timeout = "500ms";
  res.retries = "2";
  res.retry_budget = "20%";
  res.min_retries = "10";
  EXPECT_EQ(sc::resilience_args("web", res),
            (args_t{"resilience", "web", "timeout=2s", "per_try_timeout=500ms", "retries=2",
                    "budget=20", "min_retries=10"}));
  sc::resilience_options limits;
  limits.max_connections = "50";
  limits.max_requests = "100";
  limits.max_pending = "20";
  limits.eject_5xx = "0";
  limits.eject_connect_failures = "3";
  limits.ejection_time = "10s";
  limits.max_ejected = "30%";
  EXPECT_EQ(
      sc::resilience_args("web", limits),
      (args_t{"resilience", "web", "max_connections=50", "max_requests=100", "max_pending=20",
              "eject_5xx=0", "eject_connect_failures=3", "ejection_time=10s", "max_ejected=30"}));
  sc::resilience_options one;
  one.retry_budget = "35";
  EXPECT_EQ(sc::resilience_args("web", one), (args_t{"resilience", "web", "budget=35"}));
  sc::resilience_options clear;
  clear.clear = true;
  EXPECT_EQ(sc::resilience_args("web", clear), (args_t{"resilience", "web", "--clear"}));
}

TEST(resilience_request, needs_one_option_and_checks_each) {
  EXPECT_EQ(refusal(sc::resilience_args("web", {})),
            "resilience: give at least one of --timeout, --per-try-timeout, --retries, "
            "--retry-budget, --min-retries, --max-connections, --max-requests, --max-pending, "
            "--eject-after-5xx, --eject-after-connect-failures, --ejection-time, --max-ejected "
            "(or --clear)");
  sc::resilience_options both;
  both.clear = true;
  both.retries = "2";
  EXPECT_EQ(refusal(sc::resilience_args("web", both)), "resilience: --clear takes no other option");
  sc::resilience_options res;
  res.timeout = "2";
  EXPECT_EQ(refusal(sc::resilience_args("web", res)),
            "resilience: --timeout: expected a duration like \"500ms\", got \"2\"");
  res.timeout.clear();
  res.per_try_timeout = "fast";
  EXPECT_EQ(refusal(sc::resilience_args("web", res)),
            "resilience: --per-try-timeout: expected a duration like \"500ms\", got \"fast\"");
  res.per_try_timeout.clear();
  res.retries = "-1";
  EXPECT_EQ(refusal(sc::resilience_args("web", res)),
            "resilience: --retries: expected a number of retries, got \"-1\"");
  res.retries.clear();
  for (const char* budget : {"101%", "20%%", "%", "x", "-5"}) {
    res.retry_budget = budget;
    EXPECT_EQ(refusal(sc::resilience_args("web", res)),
              "resilience: --retry-budget: expected a percentage 0..100 (e.g. 20%), got \"" +
                  std::string{budget} + "\"");
  }
  res.retry_budget.clear();
  res.min_retries = "ten";
  EXPECT_EQ(refusal(sc::resilience_args("web", res)),
            "resilience: --min-retries: expected retries per second, got \"ten\"");
  res.min_retries.clear();
  res.max_requests = "0";
  EXPECT_EQ(refusal(sc::resilience_args("web", res)),
            "resilience: --max-requests: expected a cap from 1 to 1000000, got \"0\"");
  res.max_requests.clear();
  res.eject_5xx = "many";
  EXPECT_EQ(refusal(sc::resilience_args("web", res)),
            "resilience: --eject-after-5xx: expected failures in a row, 0 (off) to 1000, got "
            "\"many\"");
  res.eject_5xx.clear();
  res.ejection_time = "30";
  EXPECT_EQ(refusal(sc::resilience_args("web", res)),
            "resilience: --ejection-time: expected a duration like \"500ms\", got \"30\"");
  res.ejection_time.clear();
  res.max_ejected = "200%";
  EXPECT_EQ(refusal(sc::resilience_args("web", res)),
            "resilience: --max-ejected: expected a percentage 0..100 (e.g. 50%), got \"200%\"");
}

TEST(authz_request, allow_or_deny_a_list_of_spiffe_ids_or_remove_the_rule) {
  EXPECT_EQ(sc::authz_args("web", "frontend-only", {{"spiffe://m/svc/frontend"}, {}, false}),
            (args_t{"authz", "web", "frontend-only", "allow", "spiffe://m/svc/frontend"}));
  EXPECT_EQ(
      sc::authz_args("web", "no-batch",
                     {{}, {"spiffe://m/svc/batch", "spiffe://m/svc/cron"}, false}),
      (args_t{"authz", "web", "no-batch", "deny", "spiffe://m/svc/batch", "spiffe://m/svc/cron"}));
  EXPECT_EQ(sc::authz_args("web", "no-batch", {{}, {}, true}),
            (args_t{"authz", "web", "no-batch", "--delete"}));
}

TEST(authz_request, refuses_what_is_not_one_rule_of_spiffe_ids) {
  EXPECT_EQ(refusal(sc::authz_args("web", "r", {{"spiffe://m/a"}, {"spiffe://m/b"}, false})),
            "authz: a rule allows or denies: give --allow or --deny, not both");
  EXPECT_EQ(refusal(sc::authz_args("web", "r", {{}, {}, false})),
            "authz: give --allow FROM or --deny FROM (spiffe:// URIs), or --delete");
  EXPECT_EQ(refusal(sc::authz_args("web", "r", {{"spiffe://m/a"}, {}, true})),
            "authz: --delete takes no --allow or --deny");
  for (const char* from :
       {"frontend", "http://m/svc/frontend", "spiffe://", "SPIFFE://m/a", " spiffe://m/a"})
    EXPECT_EQ(refusal(sc::authz_args("web", "r", {{"spiffe://m/ok", from}, {}, false})),
              "authz: FROM must be a spiffe:// URI (e.g. spiffe://MESH/svc/frontend), got \"" +
                  std::string{from} + "\"")
        << from;
  EXPECT_FALSE(sc::authz_args("web", "", {{"spiffe://m/a"}, {}, false}));
  std::vector<std::string> many(61, "spiffe://m/a");
  EXPECT_EQ(refusal(sc::authz_args("web", "r", {many, {}, false})),
            "authz: at most 60 callers per rule");
  many.pop_back();
  EXPECT_TRUE(sc::authz_args("web", "r", {many, {}, false}));
}

// -- against an admin port -------------------------------------------------------------------

/// What the fake agent was asked (written on the admin server's I/O thread).
struct request_log {
  std::mutex mutex;
  std::vector<args_t> asked;

  args_t only() {
    std::lock_guard guard{mutex};
    EXPECT_EQ(asked.size(), 1u);
    return asked.empty() ? args_t{} : asked.front();
  }
  std::size_t count() {
    std::lock_guard guard{mutex};
    return asked.size();
  }
};

const char* const services_json =
    R"({"services":[{"name":"web","instances":[{"node":"node-a","id":"web",)"
    R"("address":"10.0.0.5","port":8080,"protocol":"http","tags":[],"version":"v1",)"
    R"("weight":100,"health":"passing","last_check":"HTTP 200","node_alive":true,)"
    R"("healthy":true}]}]})";

const char* const routes_json =
    R"({"routes":[{"service":"web","outbound":"127.0.0.1:15001","split":[{"version":"v1",)"
    R"("weight":90},{"version":"v2","weight":10}],"split_signer":"node-a","routes":[],)"
    R"("resilience":null,"authz":[]}]})";

/// Answers like an agent: the views, a registration, and a text for every other command;
/// `refuse` (when set) answers instead.
struct fake_agent {
  request_log log;
  /// Set before the server starts: read on its I/O thread.
  const std::function<std::optional<sa::admin_reply>(const args_t&)> refuse;
  std::unique_ptr<sa::admin_server> server;

  explicit fake_agent(std::function<std::optional<sa::admin_reply>(const args_t&)> r = {})
      : refuse(std::move(r)) {
    sa::admin_server_config cfg;
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    auto started = sa::admin_server::start(
        cfg, [this](std::vector<std::string> args, sa::admin_responder reply) {
          {
            std::lock_guard guard{log.mutex};
            log.asked.push_back(args);
          }
          if (refuse)
            if (auto r = refuse(args))
              return reply(*r);
          if (args[0] == "services")
            return reply(sa::admin_reply::ok(services_json));
          if (args[0] == "routes")
            return reply(sa::admin_reply::ok(routes_json));
          if (args[0] == "register")
            return reply(sa::admin_reply::ok(
                R"({"name":"web","id":"web","address":"","port":8080,"protocol":"http",)"
                R"("tags":[],"version":"v1","weight":100,"check":{"type":"http",)"
                R"("path":"/healthz","expect":200,"interval":"10s","timeout":"2s","rise":2,)"
                R"("fall":3}})"));
          if (args[0] == "split")
            return reply(sa::admin_reply::ok("split of web: v1 90%, v2 10% (signed by node-a)"));
          reply(sa::admin_reply::ok(args[0] + " done\n"));
        });
    EXPECT_TRUE(started);
    if (started)
      server = std::move(*started);
  }

  sc::client_options options() const {
    sc::client_options opts;
    opts.admin = "127.0.0.1:" + std::to_string(server ? server->port() : 1);
    opts.timeout = std::chrono::seconds{5};
    return opts;
  }
  std::string admin() const { return options().admin; }
};

/// Runs `fn` capturing what it prints; returns {exit code, stdout, stderr}.
struct printed {
  int code;
  std::string out;
  std::string err;
};
printed capture(const std::function<int()>& fn) {
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  const int code = fn();
  auto out = ::testing::internal::GetCapturedStdout();
  auto err = ::testing::internal::GetCapturedStderr();
  return {code, std::move(out), std::move(err)};
}

TEST(routing_commands, split_sends_the_weights_and_prints_the_answer) {
  fake_agent agent;
  ASSERT_TRUE(agent.server);
  auto r = capture([&] {
    return sc::run_split(agent.options(), "web", {"v1=90", "v2=10"}, false);
  });
  EXPECT_EQ(r.code, sa::exit_ok) << r.err;
  EXPECT_EQ(r.out, "split of web: v1 90%, v2 10% (signed by node-a)\n");
  EXPECT_EQ(agent.log.only(), (args_t{"split", "web", "v1=90", "v2=10"}));
}

TEST(routing_commands, a_refused_command_line_sends_nothing_and_exits_2) {
  fake_agent agent;
  ASSERT_TRUE(agent.server);
  const auto opts = agent.options();
  auto split = capture([&] { return sc::run_split(opts, "web", {"v1=90", "v2=20"}, false); });
  EXPECT_EQ(split.code, sa::exit_usage);
  EXPECT_EQ(split.err, "starling: split: the weights must sum to 100, they sum to 110\n");
  EXPECT_TRUE(split.out.empty());
  auto authz = capture([&] { return sc::run_authz(opts, "web", "r", {{"frontend"}, {}, false}); });
  EXPECT_EQ(authz.code, sa::exit_usage);
  EXPECT_NE(authz.err.find("FROM must be a spiffe:// URI"), std::string::npos) << authz.err;
  auto res = capture([&] { return sc::run_resilience(opts, "web", {}); });
  EXPECT_EQ(res.code, sa::exit_usage);
  EXPECT_NE(res.err.find("give at least one of --timeout"), std::string::npos) << res.err;
  auto route = capture([&] { return sc::run_route(opts, "web", "beta", {"x=1", "", false}); });
  EXPECT_EQ(route.code, sa::exit_usage);
  auto reg = capture([&] { return sc::run_register(opts, {}); });
  EXPECT_EQ(reg.code, sa::exit_usage);
  auto dereg = capture([&] { return sc::run_deregister(opts, {}); });
  EXPECT_EQ(dereg.code, sa::exit_usage);
  EXPECT_EQ(agent.log.count(), 0u);
}

TEST(routing_commands, the_agents_refusals_map_to_exit_codes) {
  fake_agent agent{[](const args_t& args) -> std::optional<sa::admin_reply> {
    if (args[0] == "route")
      return sa::admin_reply::usage("route: version v9 has no instance of web");
    if (args[0] == "authz")
      return sa::admin_reply::failed("routing.not_signer: this node holds no issuer key");
    return std::nullopt;
  }};
  ASSERT_TRUE(agent.server);
  auto route = capture([&] {
    return sc::run_route(agent.options(), "web", "b", {"x-a=1", "v9", false});
  });
  EXPECT_EQ(route.code, sa::exit_usage);
  EXPECT_EQ(route.err, "starling: route: version v9 has no instance of web\n");
  EXPECT_TRUE(route.out.empty());
  auto authz = capture([&] {
    return sc::run_authz(agent.options(), "web", "r", {{}, {"spiffe://m/svc/x"}, false});
  });
  EXPECT_EQ(authz.code, sa::exit_failed);
  EXPECT_EQ(authz.err, "starling: the agent at " + agent.admin() +
                           " refused: routing.not_signer: this node holds no issuer key\n");
  std::lock_guard guard{agent.log.mutex};
  ASSERT_EQ(agent.log.asked.size(), 2u);
  EXPECT_EQ(agent.log.asked[0],
            (args_t{"route", "web", "b", "header=x-a", "value=1", "version=v9"}));
  EXPECT_EQ(agent.log.asked[1], (args_t{"authz", "web", "r", "deny", "spiffe://m/svc/x"}));
}

TEST(routing_commands, register_prints_what_was_registered) {
  fake_agent agent;
  ASSERT_TRUE(agent.server);
  sc::register_options svc;
  svc.name = "web";
  svc.port = "8080";
  svc.check = "http";
  svc.check_path = "/healthz";
  auto r = capture([&] { return sc::run_register(agent.options(), svc); });
  EXPECT_EQ(r.code, sa::exit_ok) << r.err;
  EXPECT_EQ(r.out, "registered web (id web) on port 8080: spreading to the mesh\n"
                   "health check: http GET /healthz every 10s\n");
  EXPECT_EQ(agent.log.only(),
            (args_t{"register", "name=web", "port=8080", "check=http", "check_path=/healthz"}));
}

TEST(routing_commands, services_and_routes_render_or_print_the_json) {
  fake_agent agent;
  ASSERT_TRUE(agent.server);
  auto opts = agent.options();
  auto services = capture([&] { return sc::run_services(opts); });
  EXPECT_EQ(services.code, sa::exit_ok) << services.err;
  EXPECT_EQ(services.out, "NAME  INSTANCE    ADDRESS:PORT   PROTO  VERSION  HEALTH\n"
                          "web   node-a/web  10.0.0.5:8080  http   v1       passing\n");
  auto routes = capture([&] { return sc::run_routes(opts); });
  EXPECT_EQ(routes.code, sa::exit_ok) << routes.err;
  EXPECT_EQ(routes.out, "web  outbound 127.0.0.1:15001\n"
                        "  split: v1 90%, v2 10% (by node-a)\n");
  opts.json = true;
  auto json = capture([&] { return sc::run_routes(opts); });
  EXPECT_EQ(json.code, sa::exit_ok);
  EXPECT_EQ(json.out, std::string{routes_json} + "\n");
  std::lock_guard guard{agent.log.mutex};
  EXPECT_EQ(agent.log.asked, (std::vector<args_t>{{"services"}, {"routes"}, {"routes"}}));
}

TEST(routing_commands, an_answer_that_is_not_a_view_exits_1) {
  fake_agent agent{[](const args_t&) -> std::optional<sa::admin_reply> {
    return sa::admin_reply::ok(R"({"services":"none"})");
  }};
  ASSERT_TRUE(agent.server);
  auto r = capture([&] { return sc::run_services(agent.options()); });
  EXPECT_EQ(r.code, sa::exit_failed);
  EXPECT_EQ(r.err, "starling: the agent's answer is not a services view\n");
  EXPECT_TRUE(r.out.empty());
}

TEST(routing_commands, deregister_prints_the_answer_and_register_shows_an_odd_one) {
  fake_agent agent{[](const args_t& args) -> std::optional<sa::admin_reply> {
    if (args[0] == "register")
      return sa::admin_reply::ok("registered"); // not the JSON of a service
    return std::nullopt;
  }};
  ASSERT_TRUE(agent.server);
  auto dereg = capture([&] {
    return sc::run_deregister(agent.options(), {"web", "web-2", "", ""});
  });
  EXPECT_EQ(dereg.code, sa::exit_ok) << dereg.err;
  EXPECT_EQ(dereg.out, "deregister done\n");
  sc::register_options svc;
  svc.name = "web";
  svc.port = "8080";
  auto reg = capture([&] { return sc::run_register(agent.options(), svc); });
  // The agent's status says it registered: exit 0, with what it said.
  EXPECT_EQ(reg.code, sa::exit_ok);
  EXPECT_EQ(reg.out, "registered\n");
  EXPECT_EQ(reg.err, "starling: the agent's answer is not a registered service; it answered:\n");
}

// -- the real binary: main.cpp's flags make the same requests --------------------------------

TEST(routing_command_line, each_command_line_sends_its_request) {
  fake_agent agent;
  ASSERT_TRUE(agent.server);
  const auto admin = agent.admin();
  const std::vector<std::pair<std::vector<std::string>, args_t>> cases{
      {{"split", "web", "v1=90", "v2=10"}, {"split", "web", "v1=90", "v2=10"}},
      {{"split", "web", "--clear"}, {"split", "web", "--clear"}},
      {{"route", "web", "beta", "--header", "x-user-group=beta", "--to", "v2"},
       {"route", "web", "beta", "header=x-user-group", "value=beta", "version=v2"}},
      {{"route", "web", "beta", "--delete"}, {"route", "web", "beta", "--delete"}},
      {{"resilience", "web", "--timeout", "2s", "--per-try-timeout", "500ms", "--retries", "2",
        "--retry-budget", "20%", "--min-retries", "10"},
       {"resilience", "web", "timeout=2s", "per_try_timeout=500ms", "retries=2", "budget=20",
        "min_retries=10"}},
      {{"resilience", "web", "--clear"}, {"resilience", "web", "--clear"}},
      {{"authz", "web", "frontend-only", "--allow", "spiffe://m/svc/frontend", "--allow",
        "spiffe://m/svc/admin"},
       {"authz", "web", "frontend-only", "allow", "spiffe://m/svc/frontend",
        "spiffe://m/svc/admin"}},
      {{"authz", "web", "no-batch", "--deny", "spiffe://m/svc/batch"},
       {"authz", "web", "no-batch", "deny", "spiffe://m/svc/batch"}},
      {{"authz", "web", "no-batch", "--delete"}, {"authz", "web", "no-batch", "--delete"}},
      {{"deregister", "web"}, {"deregister", "web"}},
      {{"deregister", "web", "web-2"}, {"deregister", "web", "web-2"}},
      {{"deregister", "--name", "web", "--id", "web-2"}, {"deregister", "web", "web-2"}},
      {{"register", "--name",          "web",      "--port",         "8080",  "--protocol",
        "http",     "--tags",          "a,b",      "--version",      "v1",    "--weight",
        "50",       "--address",       "10.0.0.5", "--id",           "web-1", "--check",
        "http",     "--check-path",    "/healthz", "--check-expect", "200",   "--check-interval",
        "10s",      "--check-timeout", "2s",       "--rise",         "2",     "--fall",
        "3"},
       {"register", "name=web", "port=8080", "protocol=http", "tags=a,b", "version=v1", "weight=50",
        "address=10.0.0.5", "id=web-1", "check=http", "check_path=/healthz", "check_expect=200",
        "check_interval=10s", "check_timeout=2s", "check_rise=2", "check_fall=3"}},
      {{"services", "--json"}, {"services"}},
      {{"routes"}, {"routes"}},
  };
  for (const auto& [line, request] : cases) {
    auto argv = line;
    argv.insert(argv.end(), {"--admin", admin});
    const auto r = starling::testing::run_cli(argv);
    EXPECT_EQ(r.exit_code, sa::exit_ok) << ::testing::PrintToString(line) << ": " << r.err;
    std::lock_guard guard{agent.log.mutex};
    ASSERT_FALSE(agent.log.asked.empty()) << ::testing::PrintToString(line) << ": " << r.err;
    EXPECT_EQ(agent.log.asked.back(), request) << ::testing::PrintToString(line);
    agent.log.asked.clear();
  }
}

TEST(routing_command_line, usage_errors_exit_2_before_sending) {
  fake_agent agent;
  ASSERT_TRUE(agent.server);
  const std::vector<std::vector<std::string>> lines{
      {"split", "web", "v1=90", "v2=20"},
      {"split", "web"},
      {"route", "web", "beta", "--to", "v2"},
      {"resilience", "web"},
      {"resilience", "web", "--retry-budget", "150%"},
      {"authz", "web", "r", "--allow", "frontend"},
      {"authz", "web", "r", "--allow", "spiffe://m/a", "--deny", "spiffe://m/b"},
      {"register", "--name", "web"},
      {"register", "--name", "web", "--port", "80", "--rise", "2"},
      {"deregister"},
  };
  for (const auto& line : lines) {
    auto argv = line;
    argv.insert(argv.end(), {"--admin", agent.admin()});
    const auto r = starling::testing::run_cli(argv);
    EXPECT_EQ(r.exit_code, sa::exit_usage) << ::testing::PrintToString(line) << ": " << r.out;
    EXPECT_EQ(r.err.rfind("starling: ", 0), 0u) << r.err;
  }
  EXPECT_EQ(agent.log.count(), 0u);
}

TEST(command_line, version_names_the_release_and_the_source_revision) {
  const auto r = starling::testing::run_cli({"--version"});
  EXPECT_EQ(r.exit_code, sa::exit_ok) << r.err;
  EXPECT_EQ(r.out, "starling " + std::string{starling::build_version()} + " (" +
                       std::string{starling::build_revision()} + ")\n");
  // A commit (12 hex digits, "-dirty" if tracked files differed) or "unknown" outside git.
  EXPECT_TRUE(std::regex_match(std::string{starling::build_revision()},
                               std::regex{"[0-9a-f]{12}(-dirty)?|unknown"}))
      << starling::build_revision();
  EXPECT_TRUE(std::regex_match(std::string{starling::build_version()},
                               std::regex{"[0-9]+\\.[0-9]+\\.[0-9]+"}))
      << starling::build_version();
}

} // namespace
