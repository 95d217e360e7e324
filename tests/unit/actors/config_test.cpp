// Config loading: TOML keys, flag precedence, durations, and one clear message per error.
#include <filesystem>
#include <fstream>
#include <string>

#include <CLI/CLI.hpp>
#include <gtest/gtest.h>
#include <unistd.h>

#include "actors/config.hpp"
#include "actors/errc.hpp"
#include "identity/token.hpp"

namespace sa = starling::actors;
using namespace std::chrono_literals;

namespace {

/// The message of a failed load, or "" when it succeeded.
std::string error_of(std::string_view toml, const sa::agent_flags& flags = {}) {
  auto cfg = sa::make_agent_config(toml, "test.toml", flags);
  return cfg ? std::string{} : sa::message_of(cfg.error());
}

sa::agent_config load(std::string_view toml, const sa::agent_flags& flags = {}) {
  auto cfg = sa::make_agent_config(toml, "test.toml", flags);
  EXPECT_TRUE(cfg) << (cfg ? "" : sa::message_of(cfg.error()));
  return cfg ? *cfg : sa::agent_config{};
}

} // namespace

TEST(config, defaults) {
  sa::agent_flags flags;
  flags.name = "node-a";
  auto cfg = load("", flags);
  EXPECT_EQ(cfg.name, "node-a");
  EXPECT_EQ(cfg.data_dir, std::filesystem::path{"starling-data/node-a"});
  EXPECT_EQ(cfg.gossip, (sa::host_port{"0.0.0.0", 7946}));
  EXPECT_EQ(cfg.admin, (sa::host_port{"127.0.0.1", 7947}));
  EXPECT_TRUE(cfg.join.empty());
  EXPECT_EQ(cfg.join_timeout, 60s);
  EXPECT_EQ(cfg.level, sa::log_level::info);
  EXPECT_EQ(cfg.format, sa::log_format::text);
  EXPECT_TRUE(cfg.event_log.empty());
  EXPECT_EQ(cfg.swim.probe_interval, starling::gossip::swim_config{}.probe_interval);
}

TEST(config, default_name_is_a_valid_hostname_label) {
  auto cfg = sa::make_agent_config("", "x", {});
  // The build machine's hostname is normally a valid name; if not, the message names `name`.
  if (cfg)
    EXPECT_FALSE(cfg->name.empty());
  else
    EXPECT_EQ(sa::message_of(cfg.error()).rfind("name:", 0), 0u);
}

TEST(config, reads_every_key) {
  auto cfg = load(R"(
name = "edge-1"
data_dir = "/var/lib/starling"
advertise = "10.0.0.5"
admin = "127.0.0.1:9000"
join = ["10.0.0.1:7946", "[fe80::1]:7946"]
join_timeout = "30s"
log_level = "debug"
log_format = "json"
event_log = "/tmp/events.jsonl"

[tags]
role = "edge"
zone = "eu-1"

[gossip]
address = "0.0.0.0:8000"
probe_interval = "200ms"
probe_timeout = "100ms"
gossip_interval = "50ms"
gossip_fanout = 4
gossip_to_dead = "1m30s"
indirect_checks = 2
retransmit_mult = 3
suspicion_mult = 5
suspicion_max_mult = 4
awareness_max = 6
lifeguard = false
push_pull_interval = "0"
reap_after = "1h"
reaped_memory = "2h"
reaped_memory_max = 100
max_datagram = 1200
tcp_timeout = "2s"
)");
  EXPECT_EQ(cfg.name, "edge-1");
  EXPECT_EQ(cfg.data_dir, std::filesystem::path{"/var/lib/starling"});
  EXPECT_EQ(cfg.advertise, "10.0.0.5");
  EXPECT_EQ(cfg.admin, (sa::host_port{"127.0.0.1", 9000}));
  EXPECT_EQ(cfg.join, (std::vector<std::string>{"10.0.0.1:7946", "[fe80::1]:7946"}));
  EXPECT_EQ(cfg.join_timeout, 30s);
  EXPECT_EQ(cfg.level, sa::log_level::debug);
  EXPECT_EQ(cfg.format, sa::log_format::json);
  EXPECT_EQ(cfg.event_log, std::filesystem::path{"/tmp/events.jsonl"});
  EXPECT_EQ(cfg.tags.at("role"), "edge");
  EXPECT_EQ(cfg.tags.at("zone"), "eu-1");
  EXPECT_EQ(cfg.gossip, (sa::host_port{"0.0.0.0", 8000}));
  EXPECT_EQ(cfg.swim.probe_interval, 200ms);
  EXPECT_EQ(cfg.swim.probe_timeout, 100ms);
  EXPECT_EQ(cfg.swim.gossip_interval, 50ms);
  EXPECT_EQ(cfg.swim.gossip_fanout, 4u);
  EXPECT_EQ(cfg.swim.gossip_to_dead, 90s);
  EXPECT_EQ(cfg.swim.indirect_checks, 2u);
  EXPECT_EQ(cfg.swim.retransmit_mult, 3u);
  EXPECT_EQ(cfg.swim.suspicion_mult, 5u);
  EXPECT_EQ(cfg.swim.suspicion_max_mult, 4u);
  EXPECT_EQ(cfg.swim.awareness_max, 6u);
  EXPECT_FALSE(cfg.swim.lifeguard);
  EXPECT_EQ(cfg.swim.push_pull_interval, 0s);
  EXPECT_EQ(cfg.swim.reap_after, 1h);
  EXPECT_EQ(cfg.swim.reaped_memory, 2h);
  EXPECT_EQ(cfg.swim.reaped_memory_max, 100u);
  EXPECT_EQ(cfg.swim.max_datagram, 1200u);
  EXPECT_EQ(cfg.tcp_timeout, 2s);
}

TEST(config, gossip_address_as_top_level_string) {
  auto cfg = load("name = \"a\"\ngossip = \"127.0.0.1:0\"\n");
  EXPECT_EQ(cfg.gossip, (sa::host_port{"127.0.0.1", 0}));
}

TEST(config, flags_override_the_file) {
  sa::agent_flags flags;
  flags.name = "from-flag";
  flags.gossip = "127.0.0.1:0";
  flags.admin = "127.0.0.1:0";
  flags.join = {"127.0.0.1:9999"};
  flags.join_timeout = "1s";
  flags.tags = {"zone=b", "extra=1"};
  flags.log_level = "warn";
  flags.log_format = "json";
  flags.data_dir = "/tmp/x";
  flags.event_log = "/tmp/ev";
  flags.advertise = "127.0.0.2";
  auto cfg = load(R"(
name = "from-file"
gossip = "0.0.0.0:7000"
admin = "127.0.0.1:7001"
join = ["10.0.0.1:1", "10.0.0.2:2"]
join_timeout = "9s"
log_level = "debug"
log_format = "text"
data_dir = "/elsewhere"
event_log = "/elsewhere/ev"
advertise = "10.1.1.1"
[tags]
zone = "a"
role = "db"
)",
                  flags);
  EXPECT_EQ(cfg.name, "from-flag");
  EXPECT_EQ(cfg.gossip, (sa::host_port{"127.0.0.1", 0}));
  EXPECT_EQ(cfg.admin, (sa::host_port{"127.0.0.1", 0}));
  EXPECT_EQ(cfg.join, (std::vector<std::string>{"127.0.0.1:9999"}));
  EXPECT_EQ(cfg.join_timeout, 1s);
  // Tags merge per key, flags winning.
  EXPECT_EQ(cfg.tags, (starling::gossip::tag_map{{"zone", "b"}, {"role", "db"}, {"extra", "1"}}));
  EXPECT_EQ(cfg.level, sa::log_level::warn);
  EXPECT_EQ(cfg.format, sa::log_format::json);
  EXPECT_EQ(cfg.data_dir, std::filesystem::path{"/tmp/x"});
  EXPECT_EQ(cfg.event_log, std::filesystem::path{"/tmp/ev"});
  EXPECT_EQ(cfg.advertise, "127.0.0.2");
}

TEST(config, file_values_survive_when_flags_are_absent) {
  auto cfg = load("name = \"f\"\njoin = [\"10.0.0.1:7946\"]\n");
  EXPECT_EQ(cfg.join, (std::vector<std::string>{"10.0.0.1:7946"}));
  EXPECT_EQ(cfg.data_dir, std::filesystem::path{"starling-data/f"});
}

TEST(config, durations) {
  auto ok = [](std::string_view text, starling::gossip::duration want) {
    auto d = sa::parse_duration(text, "k");
    ASSERT_TRUE(d) << text;
    EXPECT_EQ(*d, want) << text;
  };
  ok("0", 0s);
  ok("0s", 0s);
  ok("200ms", 200ms);
  ok("1s", 1s);
  ok("1.5s", 1500ms);
  ok("15m", 15min);
  ok("2h", 2h);
  ok("1m30s", 90s);
  ok("250us", 250us);
  ok("10ns", 10ns);
  for (auto bad : {"", "fast", "10", "1x", "s", "-1s", "1.2.3s", ".5s", "1 s", "1S", "5s."}) {
    auto d = sa::parse_duration(bad, "gossip.probe_interval");
    ASSERT_FALSE(d) << bad;
    EXPECT_EQ(sa::message_of(d.error()).rfind("gossip.probe_interval: expected a duration", 0), 0u)
        << sa::message_of(d.error());
  }
  EXPECT_EQ(sa::format_duration(90s), "1m30s");
  EXPECT_EQ(sa::format_duration(250ms), "250ms");
  EXPECT_EQ(sa::format_duration(0s), "0s");
  EXPECT_EQ(sa::format_duration(2h), "2h");
}

TEST(config, host_port) {
  auto hp = sa::parse_host_port("[::1]:7946", "k");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 7946);
  EXPECT_EQ(hp->to_string(), "[::1]:7946");
  for (auto bad : {"", "host", ":7946", "host:", "host:65536", "host:x", "::1:7946", "a b:1"})
    EXPECT_FALSE(sa::parse_host_port(bad, "k")) << bad;
}

TEST(config, the_example_message) {
  EXPECT_EQ(error_of("name = \"a\"\n[gossip]\nprobe_interval = \"fast\"\n"),
            "gossip.probe_interval: expected a duration like \"500ms\", got \"fast\"");
}

TEST(config, each_error_names_its_key) {
  struct error_case {
    const char* toml;
    const char* key;
  };
  const error_case cases[] = {
      {"name = 42", "name:"},
      {"name = \"bad name!\"", "name:"},
      {"data_dir = \"\"", "data_dir:"},
      {"gossip = \"nope\"", "gossip:"},
      {"gossip = 7946", "gossip:"},
      {"advertise = \"a:b c\"", "advertise:"},
      {"admin = \"127.0.0.1\"", "admin:"},
      {"admin = \"0.0.0.0:7947\"", "admin:"},
      {"admin_allow_remote = \"yes\"", "admin_allow_remote:"},
      {"join = \"10.0.0.1:1\"", "join:"},
      {"join = [\"10.0.0.1:1\", 5]", "join[1]:"},
      {"join = [\"10.0.0.1:0\"]", "join[0]:"},
      {"join_timeout = \"0s\"", "join_timeout:"},
      {"join_timeout = 60", "join_timeout:"},
      {"log_level = \"loud\"", "log_level:"},
      {"log_format = \"xml\"", "log_format:"},
      {"event_log = 1", "event_log:"},
      {"tags = \"a=b\"", "tags:"},
      {"[tags]\nrole = 1", "tags.role:"},
      {"[gossip]\naddress = \"x\"", "gossip.address:"},
      {"[gossip]\nprobe_timeout = \"fast\"", "gossip.probe_timeout:"},
      {"[gossip]\nprobe_interval = \"0s\"", "gossip.probe_interval:"},
      {"[gossip]\ngossip_fanout = 0", "gossip.gossip_fanout:"},
      {"[gossip]\ngossip_fanout = \"3\"", "gossip.gossip_fanout:"},
      {"[gossip]\nsuspicion_mult = 1000", "gossip.suspicion_mult:"},
      {"[gossip]\nlifeguard = 1", "gossip.lifeguard:"},
      {"[gossip]\nmax_datagram = 10", "gossip.max_datagram:"},
      {"[gossip]\nreaped_memory_max = -1", "gossip.reaped_memory_max:"},
      {"[gossip]\ntcp_timeout = \"soon\"", "gossip.tcp_timeout:"},
      {"cert_ttl = \"29s\"", "cert_ttl:"},
      {"cert_ttl = \"721h\"", "cert_ttl:"},
      {"cert_ttl = 3600", "cert_ttl:"},
      {"[gossip]\nprobe_interval = \"100ms\"\nprobe_timeout = \"200ms\"", "gossip.probe_timeout:"},
  };
  for (const auto& c : cases) {
    auto msg = error_of(std::string{"name = \"n\"\n"}.append(c.toml).c_str());
    // `name = 42` etc. redefine name: TOML refuses duplicate keys, so test those alone.
    if (std::string_view{c.key} == "name:")
      msg = error_of(c.toml);
    EXPECT_EQ(msg.rfind(c.key, 0), 0u) << c.toml << " -> " << msg;
  }
}

TEST(config, unknown_keys_are_refused) {
  EXPECT_EQ(error_of("name = \"a\"\nprobe_interval = \"1s\"\n"),
            "probe_interval: unknown key (docs/operations.md lists the keys)");
  EXPECT_EQ(error_of("name = \"a\"\n[gossip]\nprobe_intervall = \"1s\"\n"),
            "gossip.probe_intervall: unknown key (docs/operations.md lists the keys)");
  EXPECT_EQ(error_of("name = \"a\"\n[extra]\nx = 1\n").rfind("extra: unknown key", 0), 0u);
}

TEST(config, toml_syntax_error_names_the_place) {
  auto msg = error_of("name = \"a\"\nthis is not toml\n");
  EXPECT_EQ(msg.rfind("test.toml:2:", 0), 0u) << msg;
}

TEST(config, flag_errors_name_the_flag) {
  auto with = [](auto set) {
    sa::agent_flags f;
    f.name = "n";
    set(f);
    return error_of("", f);
  };
  EXPECT_EQ(with([](auto& f) { f.name = "no way"; }).rfind("--name:", 0), 0u);
  EXPECT_EQ(with([](auto& f) { f.gossip = "x"; }).rfind("--gossip:", 0), 0u);
  EXPECT_EQ(with([](auto& f) { f.admin = "x"; }).rfind("--admin:", 0), 0u);
  EXPECT_EQ(with([](auto& f) { f.join = {"x"}; }).rfind("--join:", 0), 0u);
  EXPECT_EQ(with([](auto& f) { f.join_timeout = "soon"; }).rfind("--join-timeout:", 0), 0u);
  EXPECT_EQ(with([](auto& f) { f.tags = {"novalue"}; }).rfind("--tag:", 0), 0u);
  EXPECT_EQ(with([](auto& f) { f.log_level = "x"; }).rfind("--log-level:", 0), 0u);
  EXPECT_EQ(with([](auto& f) { f.log_format = "x"; }).rfind("--log-format:", 0), 0u);
  EXPECT_EQ(with([](auto& f) { f.advertise = "a b"; }).rfind("--advertise:", 0), 0u);
  EXPECT_EQ(with([](auto& f) { f.cert_ttl = "1m30.5s"; }).rfind("--cert-ttl:", 0), 0u);
}

TEST(config, cert_ttl_is_bounded_and_the_flag_wins) {
  sa::agent_flags flags;
  flags.name = "n";
  EXPECT_EQ(load("", flags).cert_ttl, 24h);
  EXPECT_EQ(load("cert_ttl = \"30s\"", flags).cert_ttl, 30s);
  EXPECT_EQ(load("cert_ttl = \"720h\"", flags).cert_ttl, 720h);
  EXPECT_EQ(load("cert_ttl = \"1h30m\"", flags).cert_ttl, 90min);
  flags.cert_ttl = "45s";
  EXPECT_EQ(load("cert_ttl = \"2h\"", flags).cert_ttl, 45s);
  flags.cert_ttl = "721h";
  auto msg = error_of("", flags);
  EXPECT_EQ(msg.rfind("--cert-ttl:", 0), 0u) << msg;
  EXPECT_NE(msg.find("from 30s to 720h"), std::string::npos) << msg;
  EXPECT_EQ(error_of("name = \"n\"\ncert_ttl = \"10s\"").rfind("cert_ttl: expected whole", 0), 0u);
}

TEST(config, remote_admin_needs_opt_in) {
  EXPECT_EQ(error_of("name = \"a\"\nadmin = \"0.0.0.0:7947\"\n").rfind("admin:", 0), 0u);
  auto cfg = load("name = \"a\"\nadmin = \"0.0.0.0:7947\"\nadmin_allow_remote = true\n");
  EXPECT_EQ(cfg.admin, (sa::host_port{"0.0.0.0", 7947}));
}

TEST(config, missing_config_file_names_the_flag) {
  sa::agent_flags f;
  f.config_file = "/nonexistent/starling.toml";
  auto cfg = sa::load_agent_config(f);
  ASSERT_FALSE(cfg);
  EXPECT_EQ(sa::message_of(cfg.error()).rfind("--config:", 0), 0u);
}

// -- gossip encryption ----------------------------------------------------------------------

TEST(config, gossip_key_from_file_or_flag_flag_wins) {
  const std::string k1 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  const std::string k2 = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
  auto cfg = load("name = \"a\"\ngossip_key = \"" + k1 + "\"\n");
  EXPECT_EQ(cfg.gossip_key, k1);
  sa::agent_flags f;
  f.gossip_key = k2;
  cfg = load("name = \"a\"\ngossip_key = \"" + k1 + "\"\n", f);
  EXPECT_EQ(cfg.gossip_key, k2);
  EXPECT_TRUE(load("name = \"a\"\n").gossip_key.empty());
}

TEST(config, bad_gossip_key_names_the_key_and_hides_the_value) {
  auto msg = error_of("name = \"a\"\ngossip_key = \"c2VjcmV0LXRvby1zaG9ydA==\"\n");
  EXPECT_EQ(msg.rfind("gossip_key: expected a base64 key of 32 bytes", 0), 0u) << msg;
  EXPECT_EQ(msg.find("c2VjcmV0"), std::string::npos) << msg;
  EXPECT_EQ(error_of("name = \"a\"\ngossip_key = 5\n").rfind("gossip_key:", 0), 0u);
  sa::agent_flags f;
  f.name = "a";
  f.gossip_key = "nope";
  EXPECT_EQ(error_of("", f).rfind("--gossip-key:", 0), 0u);
}

TEST(config, keyring_file_is_checked_at_load) {
  auto dir = std::filesystem::temp_directory_path() /
             ("starling-config-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto good = dir / "good.keyring";
  const auto bad_file = dir / "bad.keyring";
  {
    std::ofstream{good} << "primary AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    std::ofstream{bad_file} << "primary nope\n";
  }
  auto cfg = load("name = \"a\"\nkeyring_file = \"" + good.string() + "\"\n");
  EXPECT_EQ(cfg.keyring_file, good);
  auto msg = error_of("name = \"a\"\nkeyring_file = \"" + bad_file.string() + "\"\n");
  EXPECT_EQ(msg.rfind("keyring_file:", 0), 0u) << msg;
  EXPECT_NE(msg.find("line 1"), std::string::npos) << msg;
  msg = error_of("name = \"a\"\nkeyring_file = \"" + (dir / "missing").string() + "\"\n");
  EXPECT_EQ(msg.rfind("keyring_file: cannot read", 0), 0u) << msg;
  sa::agent_flags f;
  f.name = "a";
  f.keyring_file = bad_file.string();
  EXPECT_EQ(error_of("", f).rfind("--keyring-file:", 0), 0u);
  std::filesystem::remove_all(dir);
}

TEST(config, issuer_dir_needs_the_files_of_ca_issuer) {
  auto dir = std::filesystem::temp_directory_path() /
             ("starling-config-issuer-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto msg = error_of("name = \"a\"\nissuer = \"" + dir.string() + "\"\n");
  EXPECT_EQ(msg.rfind("issuer:", 0), 0u) << msg;
  EXPECT_NE(msg.find("issuer.key"), std::string::npos) << msg;
  for (const char* f : {"issuer.key", "issuer.crt", "bundle.crt"})
    std::ofstream{dir / f} << "x\n";
  EXPECT_EQ(load("name = \"a\"\nissuer = \"" + dir.string() + "\"\n").issuer_dir, dir);
  sa::agent_flags f;
  f.name = "a";
  f.issuer_dir = (dir / "missing").string();
  EXPECT_EQ(error_of("", f).rfind("--issuer:", 0), 0u);
  std::filesystem::remove_all(dir);
}

TEST(config, token_must_decode_hides_its_value_and_needs_a_seed) {
  const std::string garbage = "stl1.c2VjcmV0LXRvby1zaG9ydA";
  auto msg = error_of("name = \"a\"\njoin = [\"127.0.0.1:1\"]\ntoken = \"" + garbage + "\"\n");
  EXPECT_EQ(msg.rfind("token: not a join token", 0), 0u) << msg;
  EXPECT_EQ(msg.find("c2VjcmV0"), std::string::npos) << msg;
  sa::agent_flags f;
  f.name = "a";
  f.tokens = {"nope"};
  EXPECT_EQ(error_of("", f).rfind("--token:", 0), 0u);
  // A well-formed token is checked by the issuer, not here; without a seed it has nowhere
  // to go.
  starling::identity::join_token t;
  t.expiry = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()) + 1h;
  t.uses = 1;
  t.issuer = "issuer-1";
  auto text = starling::identity::encode(t);
  ASSERT_TRUE(text);
  f.tokens = {*text};
  msg = error_of("", f);
  EXPECT_EQ(msg.rfind("token: a join token needs a seed", 0), 0u) << msg;
  f.join = {"127.0.0.1:7946"};
  EXPECT_EQ(load("", f).tokens, std::vector<std::string>{*text});
}

TEST(config, admission_quorum_needs_tokens_from_as_many_issuers_of_one_mesh) {
  auto token_of = [](std::string issuer, std::uint8_t pin_byte) {
    starling::identity::join_token t;
    t.expiry = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()) + 1h;
    t.uses = 1;
    t.issuer = std::move(issuer);
    t.pin.fill(pin_byte);
    auto text = starling::identity::encode(t);
    EXPECT_TRUE(text);
    return text ? *text : std::string{};
  };
  const auto a = token_of("issuer-1", 1);
  const auto b = token_of("issuer-2", 1);
  const auto a2 = token_of("issuer-1", 1);
  const auto foreign = token_of("issuer-3", 2);
  const std::string head = "name = \"n\"\njoin = [\"127.0.0.1:1\"]\n";
  // Defaults: quorum 1.
  EXPECT_EQ(load(head).admission_quorum, 1u);
  // An array of tokens from two issuers meets a quorum of 2.
  auto cfg = load(head + "admission_quorum = 2\ntoken = [\"" + a + "\", \"" + b + "\"]\n");
  EXPECT_EQ(cfg.admission_quorum, 2u);
  EXPECT_EQ(cfg.tokens, (std::vector<std::string>{a, b}));
  // Two tokens of one issuer do not.
  auto msg = error_of(head + "admission_quorum = 2\ntoken = [\"" + a + "\", \"" + a2 + "\"]\n");
  EXPECT_EQ(
      msg.rfind("token: admission_quorum is 2: give 2 join tokens made by distinct issuers", 0), 0u)
      << msg;
  // Tokens of two meshes never mix.
  msg = error_of(head + "token = [\"" + a + "\", \"" + foreign + "\"]\n");
  EXPECT_EQ(msg.rfind("token: the join tokens pin different mesh roots", 0), 0u) << msg;
  // Bounds, in the file and on the command line; flags win.
  msg = error_of(head + "admission_quorum = 0\n");
  EXPECT_EQ(msg.rfind("admission_quorum: expected an integer from 1 to 16", 0), 0u) << msg;
  msg = error_of(head + "token = [\"" + a + "\", 3]\n");
  EXPECT_EQ(msg.rfind("token[1]:", 0), 0u) << msg;
  sa::agent_flags f;
  f.admission_quorum = "17";
  msg = error_of(head, f);
  EXPECT_EQ(msg.rfind("--admission-quorum: expected an integer from 1 to 16", 0), 0u) << msg;
  f.admission_quorum = "2";
  f.tokens = {b, a};
  cfg = load(head + "token = \"" + a + "\"\n", f);
  EXPECT_EQ(cfg.admission_quorum, 2u);
  EXPECT_EQ(cfg.tokens, (std::vector<std::string>{b, a}));
}

// -- secrets out of `ps`: files and the environment (issue 13) -------------------------------

namespace {

/// A temporary directory removed at scope exit.
struct scratch_dir {
  std::filesystem::path path;
  explicit scratch_dir(const std::string& tag)
      : path(std::filesystem::temp_directory_path() /
             ("starling-config-" + tag + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~scratch_dir() { std::filesystem::remove_all(path); }
  /// Writes `content` to `name` with `mode`; returns its path.
  std::string file(const std::string& name, const std::string& content,
                   std::filesystem::perms mode = std::filesystem::perms(0600)) const {
    auto p = path / name;
    std::ofstream{p} << content;
    std::filesystem::permissions(p, mode);
    return p.string();
  }
};

std::string token_of(std::string issuer) {
  starling::identity::join_token t;
  t.expiry = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()) + 1h;
  t.uses = 1;
  t.issuer = std::move(issuer);
  auto text = starling::identity::encode(t);
  EXPECT_TRUE(text);
  return text ? *text : std::string{};
}

caf::expected<sa::agent_config> make(std::string_view toml, const sa::agent_flags& flags,
                                     const sa::agent_env& env) {
  return sa::make_agent_config(toml, "test.toml", flags, env);
}

} // namespace

TEST(config, split_tokens_by_lines_commas_and_spaces) {
  EXPECT_EQ(sa::split_tokens("a\nb\n"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(sa::split_tokens("  a, b c\t,d  "), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(sa::split_tokens("# comment\r\n\na\r\n"), (std::vector<std::string>{"a"}));
  EXPECT_TRUE(sa::split_tokens(" \n,\n").empty());
}

TEST(config, tokens_from_a_file_the_environment_or_flags_flags_win) {
  scratch_dir dir{"tokens"};
  const auto a = token_of("issuer-1"), b = token_of("issuer-2"), c = token_of("issuer-3");
  const std::string head = "name = \"n\"\njoin = [\"127.0.0.1:1\"]\n";
  const auto path = dir.file("tokens", "# tokens\n" + a + "\n" + b + "\n");
  // The config file's token_file: one token per line.
  auto cfg = make(head + "token_file = \"" + path + "\"\n", {}, {});
  ASSERT_TRUE(cfg) << sa::message_of(cfg.error());
  EXPECT_EQ(cfg->tokens, (std::vector<std::string>{a, b}));
  EXPECT_TRUE(cfg->warnings.empty());
  // The environment overrides the file; comma or whitespace separated.
  sa::agent_env env;
  env.token = c + ", " + a;
  cfg = make(head + "token_file = \"" + path + "\"\n", {}, env);
  ASSERT_TRUE(cfg) << sa::message_of(cfg.error());
  EXPECT_EQ(cfg->tokens, (std::vector<std::string>{c, a}));
  // --token-file overrides the environment, --token too.
  sa::agent_flags f;
  f.token_file = dir.file("one", b + "\n");
  cfg = make(head, f, env);
  ASSERT_TRUE(cfg) << sa::message_of(cfg.error());
  EXPECT_EQ(cfg->tokens, (std::vector<std::string>{b}));
  sa::agent_flags g;
  g.tokens = {a};
  cfg = make(head + "token_file = \"" + path + "\"\n", g, env);
  ASSERT_TRUE(cfg) << sa::message_of(cfg.error());
  EXPECT_EQ(cfg->tokens, (std::vector<std::string>{a}));
}

TEST(config, a_value_and_its_file_form_together_are_a_usage_error_naming_both) {
  scratch_dir dir{"both"};
  const auto a = token_of("issuer-1");
  const std::string key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  const auto tokens = dir.file("tokens", a + "\n");
  const auto key_file = dir.file("key", key + "\n");
  const std::string head = "name = \"n\"\njoin = [\"127.0.0.1:1\"]\n";
  auto cfg = make(head + "token = \"" + a + "\"\ntoken_file = \"" + tokens + "\"\n", {}, {});
  ASSERT_FALSE(cfg);
  auto msg = sa::message_of(cfg.error());
  EXPECT_EQ(msg.rfind("token, token_file: give one of the two, not both", 0), 0u) << msg;
  cfg =
      make(head + "gossip_key = \"" + key + "\"\ngossip_key_file = \"" + key_file + "\"\n", {}, {});
  ASSERT_FALSE(cfg);
  EXPECT_EQ(sa::message_of(cfg.error()).rfind("gossip_key, gossip_key_file:", 0), 0u);
  sa::agent_flags f;
  f.tokens = {a};
  f.token_file = tokens;
  cfg = make(head, f, {});
  ASSERT_FALSE(cfg);
  EXPECT_EQ(sa::message_of(cfg.error()).rfind("--token, --token-file:", 0), 0u);
  sa::agent_flags g;
  g.gossip_key = key;
  g.gossip_key_file = key_file;
  cfg = make(head, g, {});
  ASSERT_FALSE(cfg);
  EXPECT_EQ(sa::message_of(cfg.error()).rfind("--gossip-key, --gossip-key-file:", 0), 0u);
}

TEST(config, gossip_key_from_a_file_the_environment_or_flags_flags_win) {
  scratch_dir dir{"key"};
  const std::string k1 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  const std::string k2 = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
  const std::string k3 = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
  const auto f1 = dir.file("k1", k1 + "\n");
  auto cfg = make("name = \"n\"\ngossip_key_file = \"" + f1 + "\"\n", {}, {});
  ASSERT_TRUE(cfg) << sa::message_of(cfg.error());
  EXPECT_EQ(cfg->gossip_key, k1);
  sa::agent_env env;
  env.gossip_key = k2 + "\n";
  cfg = make("name = \"n\"\ngossip_key = \"" + k1 + "\"\n", {}, env);
  ASSERT_TRUE(cfg) << sa::message_of(cfg.error());
  EXPECT_EQ(cfg->gossip_key, k2);
  sa::agent_flags f;
  f.gossip_key_file = dir.file("k3", k3);
  cfg = make("name = \"n\"\n", f, env);
  ASSERT_TRUE(cfg) << sa::message_of(cfg.error());
  EXPECT_EQ(cfg->gossip_key, k3);
  // Errors name the source and never echo the key.
  env.gossip_key = "c2VjcmV0LXRvby1zaG9ydA==";
  cfg = make("name = \"n\"\n", {}, env);
  ASSERT_FALSE(cfg);
  auto msg = sa::message_of(cfg.error());
  EXPECT_EQ(msg.rfind("STARLING_GOSSIP_KEY: expected a base64 key", 0), 0u) << msg;
  EXPECT_EQ(msg.find("c2VjcmV0"), std::string::npos) << msg;
  sa::agent_flags g;
  g.gossip_key_file = dir.file("empty", "\n");
  cfg = make("name = \"n\"\n", g, {});
  ASSERT_FALSE(cfg);
  EXPECT_EQ(sa::message_of(cfg.error()).rfind("--gossip-key-file:", 0), 0u);
  g.gossip_key_file = (dir.path / "missing").string();
  cfg = make("name = \"n\"\n", g, {});
  ASSERT_FALSE(cfg);
  EXPECT_EQ(sa::message_of(cfg.error()).rfind("--gossip-key-file:", 0), 0u);
  sa::agent_env bad_tokens;
  bad_tokens.token = "nope";
  cfg = make("name = \"n\"\njoin = [\"127.0.0.1:1\"]\n", {}, bad_tokens);
  ASSERT_FALSE(cfg);
  EXPECT_EQ(sa::message_of(cfg.error()).rfind("STARLING_TOKEN: not a join token", 0), 0u);
}

TEST(config, a_secret_file_readable_by_others_gives_a_warning) {
  scratch_dir dir{"modes"};
  const std::string key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  sa::agent_flags f;
  f.gossip_key_file = dir.file("key", key, std::filesystem::perms(0644));
  f.token_file = dir.file("tokens", token_of("issuer-1"), std::filesystem::perms(0640));
  f.join = {"127.0.0.1:1"};
  auto cfg = make("name = \"n\"\n", f, {});
  ASSERT_TRUE(cfg) << sa::message_of(cfg.error());
  ASSERT_EQ(cfg->warnings.size(), 2u);
  EXPECT_EQ(cfg->warnings[0].rfind("--gossip-key-file:", 0), 0u) << cfg->warnings[0];
  EXPECT_NE(cfg->warnings[0].find("mode 0644"), std::string::npos) << cfg->warnings[0];
  EXPECT_EQ(cfg->warnings[1].rfind("--token-file:", 0), 0u) << cfg->warnings[1];
  EXPECT_EQ(cfg->warnings[0].find(key), std::string::npos);
}

TEST(config, a_table_header_toml_asserts_on_is_a_clear_error) {
  // Found by config_fuzz: toml++'s own assert() aborted the process on "[:" in builds
  // without NDEBUG (actors/config.cpp switches those checks off).
  for (const char* text : {"[:\n", "name = \"a\"\n[::1]:7946\"\n", "[gossip]\n[:x]\n"}) {
    const auto why = error_of(text);
    EXPECT_NE(why.find("test.toml"), std::string::npos) << text << " -> " << why;
  }
}

TEST(config, a_non_ascii_config_is_refused_with_its_place) {
  // Found by config_fuzz: Debian's toml++ reaches __builtin_unreachable() on some non-ASCII
  // characters, so the agent reads ASCII config files only.
  EXPECT_NE(error_of("name = \"a\"\ndata_dir = \"/srv/jos\xc3\xa9\"\n").find("test.toml:2:21: "),
            std::string::npos)
      << error_of("name = \"a\"\ndata_dir = \"/srv/jos\xc3\xa9\"\n");
  EXPECT_NE(error_of("# caf\xc3\xa9\n").find("must be ASCII"), std::string::npos);
}

// -- [[service]], [dns], [routing] (issue 16) -----------------------------------------------

TEST(config, services_dns_and_routing_defaults) {
  auto cfg = load("name = \"a\"\n");
  EXPECT_TRUE(cfg.services.empty());
  EXPECT_EQ(cfg.dns, (sa::host_port{"127.0.0.1", 8600}));
  EXPECT_EQ(cfg.dns_domain, "starling");
  EXPECT_FALSE(cfg.dns_allow_remote);
  EXPECT_EQ(cfg.max_clock_skew, starling::gossip::default_max_clock_skew);
  EXPECT_EQ(cfg.max_clock_skew, 10min);
  EXPECT_EQ(cfg.inline_section_max, 65536u);
  EXPECT_EQ(cfg.metrics, (sa::host_port{"127.0.0.1", 7949}));
  EXPECT_FALSE(load("name = \"a\"\n[metrics]\naddress = \"off\"\n").metrics);
  EXPECT_EQ(load("name = \"a\"\n[metrics]\naddress = \"0.0.0.0:9\"\nmetrics_allow_remote = true\n")
                .metrics,
            (sa::host_port{"0.0.0.0", 9}));
  EXPECT_EQ(load("name = \"a\"\n[routing]\ninline_section_max = 0\n").inline_section_max, 0u);
}

TEST(config, reads_service_tables_with_their_checks) {
  auto cfg = load(R"(
name = "a"

[[service]]
name = "web"
port = 8080
protocol = "http"
tags = ["b", "a", "b"]
version = "v2"
weight = 50
address = "10.0.0.5"
id = "web-1"
[service.check]
type = "http"
path = "/healthz"
expect = 204
interval = "5s"
timeout = "500ms"
rise = 1
fall = 4

[[service]]
name = "db"
port = 5432

[[service]]
name = "web"
id = "web-2"
port = 8081
[service.check]
type = "tcp"
)");
  ASSERT_EQ(cfg.services.size(), 3u);
  const auto& web = cfg.services[0];
  EXPECT_TRUE(web.from_config);
  EXPECT_EQ(web.reg.service, "web");
  EXPECT_EQ(web.reg.id, "web-1");
  EXPECT_EQ(web.reg.address, "10.0.0.5");
  EXPECT_EQ(web.reg.port, 8080);
  EXPECT_EQ(web.reg.protocol, starling::gossip::service_protocol::http);
  EXPECT_EQ(web.reg.tags, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(web.reg.version, "v2");
  EXPECT_EQ(web.reg.weight, 50u);
  ASSERT_TRUE(web.check);
  EXPECT_EQ(web.check->kind, starling::gossip::health_check_kind::http);
  EXPECT_EQ(web.check->path, "/healthz");
  EXPECT_EQ(web.check->expected_status, 204);
  EXPECT_EQ(web.check->interval, 5s);
  EXPECT_EQ(web.check->timeout, 500ms);
  EXPECT_EQ(web.check->rise, 1u);
  EXPECT_EQ(web.check->fall, 4u);
  // Defaults: the id is the name, tcp, weight 100, no check.
  const auto& db = cfg.services[1];
  EXPECT_TRUE(db.from_config);
  EXPECT_EQ(db.reg.id, "db");
  EXPECT_EQ(db.reg.protocol, starling::gossip::service_protocol::tcp);
  EXPECT_EQ(db.reg.weight, 100u);
  EXPECT_TRUE(db.reg.tags.empty());
  EXPECT_FALSE(db.check);
  // A check table with its type alone takes the check defaults.
  ASSERT_TRUE(cfg.services[2].check);
  EXPECT_EQ(*cfg.services[2].check, starling::gossip::health_check_spec{});
  // Inline tables are the same thing.
  auto inline_cfg = load("name = \"a\"\nservice = [{name = \"db\", port = 5432}]\n");
  ASSERT_EQ(inline_cfg.services.size(), 1u);
  EXPECT_EQ(inline_cfg.services[0], db);
}

TEST(config, each_service_error_names_its_key) {
  struct error_case {
    const char* toml;
    const char* key;
  };
  const error_case cases[] = {
      {"[[service]]\nport = 80", "service[0].name: missing"},
      {"[[service]]\nname = \"web\"", "service[0].port: missing"},
      {"[[service]]\nname = \"Web\"\nport = 80", "service[0].name: 'Web' is not a DNS label"},
      {"[[service]]\nname = \"web\"\nport = \"80\"", "service[0].port: expected an integer"},
      {"[[service]]\nname = \"web\"\nport = 0", "service[0].port: '0' is not 1 to 65535"},
      {"[[service]]\nname = \"web\"\nport = 70000", "service[0].port: '70000' is not 1 to 65535"},
      {"[[service]]\nname = \"web\"\nport = 80\nprotocol = \"udp\"", "service[0].protocol:"},
      {"[[service]]\nname = \"web\"\nport = 80\ntags = \"a\"", "service[0].tags:"},
      {"[[service]]\nname = \"web\"\nport = 80\ntags = [\"a b\"]", "service[0].tags:"},
      {"[[service]]\nname = \"web\"\nport = 80\nversion = \"v 1\"", "service[0].version:"},
      {"[[service]]\nname = \"web\"\nport = 80\nweight = 0", "service[0].weight:"},
      {"[[service]]\nname = \"web\"\nport = 80\nweight = 1.5", "service[0].weight:"},
      {"[[service]]\nname = \"web\"\nport = 80\naddress = \"db.local\"", "service[0].address:"},
      {"[[service]]\nname = \"web\"\nport = 80\nid = \"a b\"", "service[0].id:"},
      {"[[service]]\nname = \"web\"\nport = 80\ncolour = \"red\"", "service[0].colour: unknown"},
      {"[[service]]\nname = \"web\"\nport = 80\nwhen = 1979-05-27", "service[0].when:"},
      {"[[service]]\nname = 1979-05-27\nport = 80", "service[0].name:"},
      {"[[service]]\nname = \"web\"\nport = 80\n[service.check]\npath = \"/\"",
       "service[0].check.type: missing"},
      {"[[service]]\nname = \"web\"\nport = 80\n[service.check]\ntype = \"icmp\"",
       "service[0].check.type:"},
      {"[[service]]\nname = \"web\"\nport = 80\n[service.check]\ntype = \"tcp\"\npath = \"/x\"",
       "service[0].check.path: only for an http check"},
      {"[[service]]\nname = \"web\"\nport = 80\n[service.check]\ntype = \"http\"\npath = \"x\"",
       "service[0].check.path:"},
      {"[[service]]\nname = \"web\"\nport = 80\n[service.check]\ntype = \"http\"\nexpect = 700",
       "service[0].check.expect:"},
      {"[[service]]\nname = \"web\"\nport = 80\n[service.check]\ntype = \"tcp\"\ninterval = 10",
       "service[0].check.interval:"},
      {"[[service]]\nname = \"web\"\nport = 80\n[service.check]\ntype = \"tcp\"\n"
       "interval = \"fast\"",
       "service[0].check.interval: expected a duration like \"500ms\", got \"fast\""},
      {"[[service]]\nname = \"web\"\nport = 80\n[service.check]\ntype = \"tcp\"\n"
       "interval = \"2s\"\ntimeout = \"3s\"",
       "service[0].check.timeout:"},
      {"[[service]]\nname = \"web\"\nport = 80\n[service.check]\ntype = \"tcp\"\nrise = 0",
       "service[0].check.rise:"},
      {"[[service]]\nname = \"web\"\nport = 80\n[service.check]\ntype = \"tcp\"\nfall = 11",
       "service[0].check.fall:"},
      {"[[service]]\nname = \"web\"\nport = 80\n[service.check]\ntype = \"tcp\"\nevery = \"1s\"",
       "service[0].check.every: unknown"},
      {"[[service]]\nname = \"web\"\nport = 80\ncheck = \"tcp\"", "service[0].check:"},
      {"[[service]]\nname = \"a\"\nport = 1\n[[service]]\nname = \"web\"\nport = 0",
       "service[1].port:"},
      {"service = 5", "service: expected [[service]] tables"},
      {"service = [1]", "service[0]: expected an object"},
      {"[service]\nname = \"web\"\nport = 80", "service: expected [[service]] tables"},
  };
  for (const auto& c : cases) {
    auto msg = error_of(std::string{"name = \"n\"\n"}.append(c.toml));
    EXPECT_EQ(msg.rfind(c.key, 0), 0u) << c.toml << " -> " << msg;
  }
}

TEST(config, two_services_of_one_name_and_id_are_refused_naming_both) {
  EXPECT_EQ(error_of(R"(name = "n"
[[service]]
name = "web"
port = 80
[[service]]
name = "db"
port = 81
[[service]]
name = "web"
id = "web"
port = 82
)"),
            "service[2]: same name and id as service[0] (name \"web\", id \"web\"): give one of "
            "them another id");
  // Another id makes them two instances.
  auto cfg = load("name = \"n\"\n[[service]]\nname = \"web\"\nport = 80\n[[service]]\n"
                  "name = \"web\"\nid = \"web-2\"\nport = 80\n");
  EXPECT_EQ(cfg.services.size(), 2u);
}

TEST(config, at_most_64_services) {
  std::string toml = "name = \"n\"\n";
  for (int i = 0; i < 64; ++i)
    toml += "[[service]]\nname = \"s" + std::to_string(i) + "\"\nport = 80\n";
  EXPECT_EQ(load(toml).services.size(), 64u);
  toml += "[[service]]\nname = \"one-more\"\nport = 80\n";
  EXPECT_EQ(error_of(toml), "service: 65 services, at most 64");
}

TEST(config, dns_table) {
  auto cfg = load("name = \"a\"\n[dns]\naddress = \"127.0.0.1:0\"\ndomain = \"mesh.internal\"\n");
  EXPECT_EQ(cfg.dns, (sa::host_port{"127.0.0.1", 0}));
  EXPECT_EQ(cfg.dns_domain, "mesh.internal");
  EXPECT_EQ(load("name = \"a\"\n[dns]\naddress = \"[::1]:53\"\n").dns, (sa::host_port{"::1", 53}));
  EXPECT_EQ(load("name = \"a\"\n[dns]\naddress = \"localhost:53\"\n").dns,
            (sa::host_port{"localhost", 53}));
  // "off" or "" disables DNS.
  EXPECT_FALSE(load("name = \"a\"\n[dns]\naddress = \"off\"\n").dns);
  EXPECT_FALSE(load("name = \"a\"\n[dns]\naddress = \"\"\n").dns);
  // A remote address needs the opt-in, like admin.
  EXPECT_EQ(error_of("name = \"a\"\n[dns]\naddress = \"0.0.0.0:53\"\n").rfind("dns.address: ", 0),
            0u);
  EXPECT_EQ(error_of("name = \"a\"\n[dns]\naddress = \"10.0.0.5:53\"\ndns_allow_remote = false\n")
                .rfind("dns.address: 10.0.0.5:53 is not a loopback address", 0),
            0u);
  cfg = load("name = \"a\"\n[dns]\naddress = \"0.0.0.0:53\"\ndns_allow_remote = true\n");
  EXPECT_EQ(cfg.dns, (sa::host_port{"0.0.0.0", 53}));
  EXPECT_TRUE(cfg.dns_allow_remote);
  // The domain is kept with the server off (a flag may turn it on).
  cfg = load("name = \"a\"\n[dns]\naddress = \"off\"\ndomain = \"x\"\n");
  EXPECT_FALSE(cfg.dns);
  EXPECT_EQ(cfg.dns_domain, "x");
}

TEST(config, each_dns_and_routing_error_names_its_key) {
  struct error_case {
    const char* toml;
    const char* key;
  };
  const error_case cases[] = {
      {"dns = \"127.0.0.1:53\"", "dns: expected a [dns] table"},
      {"[dns]\naddress = \"127.0.0.1\"", "dns.address: expected HOST:PORT, or \"off\""},
      {"[dns]\naddress = \"127.0.0.1:65536\"", "dns.address:"},
      {"[dns]\naddress = 53", "dns.address:"},
      {"[dns]\naddress = \"on\"", "dns.address:"},
      {"[dns]\ndomain = \"Starling\"", "dns.domain: expected a DNS name"},
      {"[dns]\ndomain = \"\"", "dns.domain:"},
      {"[dns]\ndomain = \"a..b\"", "dns.domain:"},
      {"[dns]\ndomain = \"-a\"", "dns.domain:"},
      {"[dns]\ndomain = \"a-.b\"", "dns.domain:"},
      {"[dns]\ndomain = \"starling.\"", "dns.domain:"},
      {"[dns]\ndomain = \"a_b\"", "dns.domain:"},
      {"[dns]\ndomain = 1", "dns.domain:"},
      {"[dns]\ndns_allow_remote = \"yes\"", "dns.dns_allow_remote:"},
      {"[dns]\nport = 53", "dns.port: unknown key"},
      {"routing = 1", "routing: expected a [routing] table"},
      {"[routing]\nmax_clock_skew = \"999ms\"", "routing.max_clock_skew: expected whole"},
      {"[routing]\nmax_clock_skew = \"24h1ms\"", "routing.max_clock_skew:"},
      {"[routing]\nmax_clock_skew = \"10s500us\"", "routing.max_clock_skew:"},
      {"[routing]\nmax_clock_skew = \"0\"", "routing.max_clock_skew:"},
      {"[routing]\ninline_section_max = -1", "routing.inline_section_max:"},
      {"[metrics]\naddress = \"nope\"", "metrics.address: expected HOST:PORT"},
      {"[metrics]\naddress = \"0.0.0.0:7949\"", "metrics.address: 0.0.0.0:7949 is not a loopback"},
      {"[metrics]\nport = 1", "metrics.port: unknown key"},
      {"[routing]\ninline_section_max = 8388609", "routing.inline_section_max:"},
      {"[routing]\ninline_section_max = \"64k\"", "routing.inline_section_max:"},
      {"[routing]\nmax_clock_skew = \"soon\"", "routing.max_clock_skew:"},
      {"[routing]\nmax_clock_skew = 600", "routing.max_clock_skew:"},
      {"[routing]\nskew = \"1m\"", "routing.skew: unknown key"},
  };
  for (const auto& c : cases) {
    auto msg = error_of(std::string{"name = \"n\"\n"}.append(c.toml));
    EXPECT_EQ(msg.rfind(c.key, 0), 0u) << c.toml << " -> " << msg;
  }
  std::string long_domain;
  for (int i = 0; i < 4; ++i)
    long_domain += std::string(63, 'a') + ".";
  long_domain.pop_back(); // 255 bytes
  EXPECT_EQ(
      error_of("name = \"n\"\n[dns]\ndomain = \"" + long_domain + "\"\n").rfind("dns.domain:", 0),
      0u);
  long_domain.resize(253);
  EXPECT_EQ(load("name = \"n\"\n[dns]\ndomain = \"" + long_domain + "\"\n").dns_domain,
            long_domain);
}

TEST(config, routing_max_clock_skew) {
  EXPECT_EQ(load("name = \"a\"\n[routing]\nmax_clock_skew = \"1s\"\n").max_clock_skew, 1s);
  EXPECT_EQ(load("name = \"a\"\n[routing]\nmax_clock_skew = \"24h\"\n").max_clock_skew, 24h);
  EXPECT_EQ(load("name = \"a\"\n[routing]\nmax_clock_skew = \"1.5s\"\n").max_clock_skew, 1500ms);
  EXPECT_EQ(error_of("name = \"a\"\n[routing]\nmax_clock_skew = \"25h\"\n"),
            "routing.max_clock_skew: expected whole milliseconds from 1s to 24h, got \"25h\"");
}

TEST(config, the_dns_flag_overrides_the_file) {
  sa::agent_flags flags;
  flags.name = "a";
  flags.dns = "127.0.0.1:0";
  EXPECT_EQ(load("[dns]\naddress = \"off\"\n", flags).dns, (sa::host_port{"127.0.0.1", 0}));
  flags.dns = "off";
  EXPECT_FALSE(load("[dns]\naddress = \"127.0.0.1:53\"\n", flags).dns);
  // A remote address from the flag needs the file's opt-in, and the message names the flag.
  flags.dns = "0.0.0.0:53";
  EXPECT_EQ(error_of("", flags).rfind("--dns: 0.0.0.0:53 is not a loopback address", 0), 0u);
  auto cfg = load("[dns]\ndns_allow_remote = true\n", flags);
  EXPECT_EQ(cfg.dns, (sa::host_port{"0.0.0.0", 53}));
  flags.dns = "nowhere";
  EXPECT_EQ(error_of("", flags).rfind("--dns: expected HOST:PORT", 0), 0u);
  // Declared on the command line.
  CLI::App app;
  sa::agent_flags parsed;
  sa::add_agent_flags(app, parsed);
  std::vector<std::string> args{"127.0.0.1:5353", "--dns"}; // CLI11 parses a reversed vector
  ASSERT_NO_THROW(app.parse(args));
  EXPECT_EQ(parsed.dns, std::optional<std::string>{"127.0.0.1:5353"});
}

// -- [proxy] (issue 17) ----------------------------------------------------------------------

TEST(config, proxy_table_and_inbound_flag) {
  auto cfg = load("name = \"a\"\n");
  EXPECT_EQ(cfg.inbound, (sa::host_port{"0.0.0.0", 7948}));
  EXPECT_EQ(cfg.proxy_threads, 1u);
  EXPECT_EQ(cfg.access_log, "");
  EXPECT_EQ(cfg.access_log_sample, 1.0);
  cfg = load("name = \"a\"\n[proxy]\ninbound = \"127.0.0.1:0\"\nthreads = 4\naccess_log = "
             "\"/tmp/access.jsonl\"\naccess_log_sample = 0.25\n");
  EXPECT_EQ(cfg.inbound, (sa::host_port{"127.0.0.1", 0}));
  EXPECT_EQ(cfg.proxy_threads, 4u);
  EXPECT_EQ(cfg.access_log, "/tmp/access.jsonl");
  EXPECT_EQ(cfg.access_log_sample, 0.25);
  EXPECT_EQ(load("name = \"a\"\n[proxy]\naccess_log_sample = 0\n").access_log_sample, 0.0);
  EXPECT_FALSE(cfg.proxy_splice);
  EXPECT_TRUE(load("name = \"a\"\n[proxy]\nsplice = true\n").proxy_splice);
  EXPECT_EQ(cfg.proxy_io, "io_uring");
  EXPECT_EQ(load("name = \"a\"\n[proxy]\nio = \"epoll\"\n").proxy_io, "epoll");
  EXPECT_EQ(cfg.proxy_tunnel_idle_timeout, std::chrono::hours{1});
  EXPECT_EQ(
      load("name = \"a\"\n[proxy]\ntunnel_idle_timeout = \"90s\"\n").proxy_tunnel_idle_timeout,
      std::chrono::seconds{90});
  EXPECT_EQ(load("name = \"a\"\n[proxy]\ntunnel_idle_timeout = \"0s\"\n").proxy_tunnel_idle_timeout,
            std::chrono::milliseconds{0});
  EXPECT_EQ(cfg.proxy_keepalive, std::chrono::seconds{10});
  EXPECT_EQ(load("name = \"a\"\n[proxy]\nkeepalive = \"2m\"\n").proxy_keepalive,
            std::chrono::seconds{120});
  EXPECT_EQ(load("name = \"a\"\n[proxy]\nkeepalive = \"0s\"\n").proxy_keepalive,
            std::chrono::seconds{0});
  EXPECT_FALSE(load("name = \"a\"\n[proxy]\ninbound = \"off\"\n").inbound);
  sa::agent_flags flags;
  flags.name = "a";
  flags.inbound = "127.0.0.1:0";
  EXPECT_EQ(load("[proxy]\ninbound = \"off\"\n", flags).inbound, (sa::host_port{"127.0.0.1", 0}));
  flags.inbound = "off";
  EXPECT_FALSE(load("", flags).inbound);
  flags.inbound = "nowhere";
  EXPECT_EQ(error_of("", flags).rfind("--inbound: expected HOST:PORT", 0), 0u);
  const std::pair<const char*, const char*> cases[] = {
      {"proxy = 1", "proxy: expected a [proxy] table"},
      {"[proxy]\ninbound = \"7948\"", "proxy.inbound: expected HOST:PORT"},
      {"[proxy]\nthreads = 0", "proxy.threads:"},
      {"[proxy]\nthreads = 65", "proxy.threads:"},
      {"[proxy]\nthreads = \"2\"", "proxy.threads:"},
      {"[proxy]\naccess_log = 1", "proxy.access_log:"},
      {"[proxy]\naccess_log_sample = 1.5", "proxy.access_log_sample: expected a number from 0"},
      {"[proxy]\naccess_log_sample = -0.1", "proxy.access_log_sample:"},
      {"[proxy]\naccess_log_sample = \"all\"", "proxy.access_log_sample:"},
      {"[proxy]\nsplice = \"yes\"", "proxy.splice:"},
      {"[proxy]\nio = \"kqueue\"", "proxy.io:"},
      {"[proxy]\nio = 1", "proxy.io:"},
      {"[proxy]\ntunnel_idle_timeout = 60", "proxy.tunnel_idle_timeout: expected a duration"},
      {"[proxy]\ntunnel_idle_timeout = \"1.5ms\"", "proxy.tunnel_idle_timeout:"},
      {"[proxy]\ntunnel_idle_timeout = \"-1s\"", "proxy.tunnel_idle_timeout:"},
      {"[proxy]\ntunnel_idle_timeout = \"721h\"", "proxy.tunnel_idle_timeout: expected whole"},
      {"[proxy]\nkeepalive = \"1500ms\"", "proxy.keepalive: expected whole seconds"},
      {"[proxy]\nkeepalive = \"10h\"", "proxy.keepalive: expected whole seconds"},
      {"[proxy]\nkeepalive = true", "proxy.keepalive: expected a duration"},
      {"[proxy]\nport = 1", "proxy.port: unknown key"},
  };
  for (const auto& [toml, key] : cases) {
    auto msg = error_of(std::string{"name = \"n\"\n"}.append(toml));
    EXPECT_EQ(msg.rfind(key, 0), 0u) << toml << " -> " << msg;
  }
}
