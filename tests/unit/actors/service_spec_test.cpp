// The three forms of a service registration (issue 16): register's key=value arguments, the
// JSON form and <data-dir>/services.json. Round trips over many seeded specs, every refusal
// naming its key, and the store's file handling (atomic, 0600, bounded, all or nothing).
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "actors/errc.hpp"
#include "actors/service_spec.hpp"
#include "tests/support/file_modes.hpp"
#include "tests/support/process.hpp"

namespace starling::actors {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using gossip::health_check_kind;
using gossip::service_protocol;
using json = nlohmann::json;
using testing::mode_of;
using testing::read_text;
using testing::temp_dir;
using testing::umask_scope;
using testing::write_text;

/// The message of a failed result ("" when it succeeded).
template <class T> std::string message(const caf::expected<T>& result) {
  return result ? std::string{} : message_of(result.error());
}

/// The actors errc of a failed result.
template <class T> errc code_of(const caf::expected<T>& result) {
  EXPECT_FALSE(result);
  if (result)
    return errc{};
  EXPECT_EQ(result.error().category(), errc_category);
  return static_cast<errc>(result.error().code());
}

std::vector<std::string> seeds_for_test() {
  std::vector<std::string> out;
  for (std::uint64_t s = 1; s <= 200; ++s)
    out.push_back(std::to_string(s));
  return out;
}

std::string random_word(std::mt19937_64& rng, std::string_view alphabet, std::size_t lo,
                        std::size_t hi) {
  std::uniform_int_distribution<std::size_t> len(lo, hi), pick(0, alphabet.size() - 1);
  std::string out;
  for (std::size_t n = len(rng); n > 0; --n)
    out += alphabet[pick(rng)];
  return out;
}

/// A valid spec in its complete form, within register's bounds (tags join under 512 bytes,
/// no ',' in a tag).
service_spec random_spec(std::uint64_t seed) {
  std::mt19937_64 rng{seed};
  auto coin = [&rng] { return (rng() & 1) == 1; };
  auto in = [&rng](std::uint64_t lo, std::uint64_t hi) {
    return std::uniform_int_distribution<std::uint64_t>{lo, hi}(rng);
  };
  constexpr std::string_view lower = "abcdefghijklmnopqrstuvwxyz0123456789";
  constexpr std::string_view token = "abcXYZ019._-";
  constexpr std::string_view printable = "abcXYZ09!#$%&'()*+-./:;<=>?@[]^_`{|}~\"\\";
  service_spec spec;
  auto& reg = spec.reg;
  reg.service = random_word(rng, lower, 1, 1) + random_word(rng, "ab-9", 0, 30);
  if (reg.service.back() == '-')
    reg.service += 'z';
  reg.id = coin() ? reg.service : random_word(rng, token, 1, 64);
  switch (in(0, 2)) {
  case 0:
    break;
  case 1:
    reg.address = "10." + std::to_string(in(0, 255)) + "." + std::to_string(in(0, 255)) + ".1";
    break;
  default:
    reg.address = "fe80::" + std::to_string(in(1, 9999));
  }
  reg.port = static_cast<std::uint16_t>(in(1, 65535));
  const service_protocol protocols[] = {service_protocol::tcp, service_protocol::http,
                                        service_protocol::http2};
  reg.protocol = protocols[in(0, 2)];
  for (auto n = in(0, 6); n > 0; --n)
    reg.tags.push_back(random_word(rng, printable, 1, 20));
  std::sort(reg.tags.begin(), reg.tags.end());
  reg.tags.erase(std::unique(reg.tags.begin(), reg.tags.end()), reg.tags.end());
  if (coin())
    reg.version = random_word(rng, token, 1, 32);
  reg.weight = static_cast<std::uint32_t>(in(1, 1000));
  if (in(0, 2) > 0) {
    gossip::health_check_spec c;
    c.kind = static_cast<health_check_kind>(in(1, 3));
    if (c.kind == health_check_kind::http) {
      c.path = "/" + random_word(rng, token, 0, 40);
      c.expected_status = coin() ? 0 : static_cast<std::uint16_t>(in(100, 599));
    }
    if (c.kind == health_check_kind::grpc && coin())
      c.grpc_service = random_word(rng, token, 1, 40);
    c.interval = coin() ? gossip::duration{std::chrono::seconds{in(1, 3600)}}
                        : gossip::duration{std::chrono::milliseconds{in(1000, 90'000)}};
    const auto interval_ms = std::chrono::duration_cast<std::chrono::milliseconds>(c.interval);
    c.timeout = std::chrono::milliseconds{in(100, static_cast<std::uint64_t>(interval_ms.count()))};
    c.rise = static_cast<std::uint32_t>(in(1, 10));
    c.fall = static_cast<std::uint32_t>(in(1, 10));
    spec.check = c;
  }
  return spec;
}

service_spec web() {
  service_spec spec;
  spec.reg.service = "web";
  spec.reg.id = "web";
  spec.reg.port = 8080;
  return spec;
}

// -- register's arguments --------------------------------------------------------------------

TEST(service_spec, parses_the_documented_register_request) {
  auto spec = parse_service_args(
      {"name=web", "port=8080", "protocol=http", "tags=b,a,b", "version=v1", "weight=100",
       "address=10.0.0.5", "id=web-1", "check=http", "check_path=/healthz", "check_expect=200",
       "check_interval=10s", "check_timeout=2s", "check_rise=2", "check_fall=3"});
  ASSERT_TRUE(spec) << message(spec);
  EXPECT_EQ(spec->reg.service, "web");
  EXPECT_EQ(spec->reg.id, "web-1");
  EXPECT_EQ(spec->reg.address, "10.0.0.5");
  EXPECT_EQ(spec->reg.port, 8080);
  EXPECT_EQ(spec->reg.protocol, service_protocol::http);
  EXPECT_EQ(spec->reg.tags, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(spec->reg.version, "v1");
  EXPECT_EQ(spec->reg.weight, 100u);
  EXPECT_EQ(spec->reg.health, gossip::health_status::none);
  EXPECT_FALSE(spec->from_config);
  ASSERT_TRUE(spec->check);
  EXPECT_EQ(spec->check->kind, health_check_kind::http);
  EXPECT_EQ(spec->check->path, "/healthz");
  EXPECT_EQ(spec->check->expected_status, 200);
  EXPECT_EQ(spec->check->interval, 10s);
  EXPECT_EQ(spec->check->timeout, 2s);
  EXPECT_EQ(spec->check->rise, 2u);
  EXPECT_EQ(spec->check->fall, 3u);
}

TEST(service_spec, name_and_port_alone_take_the_defaults) {
  auto spec = parse_service_args({"port=80", "name=api"});
  ASSERT_TRUE(spec) << message(spec);
  EXPECT_EQ(spec->reg.id, "api"); // the id defaults to the name
  EXPECT_TRUE(spec->reg.address.empty());
  EXPECT_EQ(spec->reg.protocol, service_protocol::tcp);
  EXPECT_TRUE(spec->reg.tags.empty());
  EXPECT_EQ(spec->reg.weight, 100u);
  EXPECT_FALSE(spec->check);
  // A check takes health_check_spec's defaults for what is not given.
  spec = parse_service_args({"name=api", "port=80", "check=tcp", "tags="});
  ASSERT_TRUE(spec) << message(spec);
  EXPECT_TRUE(spec->reg.tags.empty());
  ASSERT_TRUE(spec->check);
  EXPECT_EQ(*spec->check, gossip::health_check_spec{});
  // Durations in any unit parse_duration reads.
  spec = parse_service_args(
      {"name=api", "port=80", "check=tcp", "check_interval=1m", "check_timeout=500ms"});
  ASSERT_TRUE(spec) << message(spec);
  EXPECT_EQ(spec->check->interval, 1min);
  EXPECT_EQ(spec->check->timeout, 500ms);
  spec = parse_service_args({"name=api", "port=80", "check=tcp", "check_interval=1h"});
  ASSERT_TRUE(spec) << message(spec);
  EXPECT_EQ(spec->check->interval, 1h);
}

TEST(service_spec, args_and_json_round_trip_over_many_specs) {
  for (const auto& seed : seeds_for_test()) {
    SCOPED_TRACE("seed " + seed);
    const auto spec = random_spec(std::stoull(seed));
    auto args = service_args(spec);
    auto back = parse_service_args(args);
    ASSERT_TRUE(back) << message(back);
    EXPECT_EQ(*back, spec);
    auto j = service_json(spec);
    auto from = service_from_json(j);
    ASSERT_TRUE(from) << message(from) << "\n" << j.dump();
    EXPECT_EQ(*from, spec);
    // Through the text, as services.json holds it.
    auto reparsed = service_from_json(json::parse(j.dump()));
    ASSERT_TRUE(reparsed) << message(reparsed);
    EXPECT_EQ(*reparsed, spec);
  }
}

TEST(service_spec, renders_the_documented_json_form) {
  auto spec = parse_service_args({"name=web", "port=8080", "protocol=http", "tags=a,b",
                                  "version=v1", "id=web-1", "check=http", "check_path=/healthz",
                                  "check_interval=1m30s", "check_timeout=500ms"});
  ASSERT_TRUE(spec) << message(spec);
  const auto j = service_json(*spec);
  EXPECT_EQ(j, json::parse(R"({"name":"web","id":"web-1","address":"","port":8080,
    "protocol":"http","tags":["a","b"],"version":"v1","weight":100,
    "check":{"type":"http","path":"/healthz","expect":0,"interval":"1m30s",
             "timeout":"500ms","rise":2,"fall":3}})"));
  EXPECT_TRUE(service_json(web()).at("check").is_null());
  // A tcp check has no path nor expect to show.
  auto tcp = web();
  tcp.check = gossip::health_check_spec{};
  EXPECT_FALSE(service_json(tcp).at("check").contains("path"));
  EXPECT_EQ(service_args(tcp),
            (std::vector<std::string>{"name=web", "port=8080", "protocol=tcp", "weight=100",
                                      "check=tcp", "check_interval=10s", "check_timeout=2s",
                                      "check_rise=2", "check_fall=3"}));
  // A grpc check shows the service it asks about ("": the whole server), in both forms.
  auto grpc = parse_service_args(
      {"name=echo", "port=50051", "protocol=grpc", "check=grpc", "check_grpc_service=echo.Echo"});
  ASSERT_TRUE(grpc) << message(grpc);
  EXPECT_EQ(grpc->check->kind, health_check_kind::grpc);
  EXPECT_EQ(grpc->check->grpc_service, "echo.Echo");
  EXPECT_EQ(service_json(*grpc).at("check"),
            json::parse(R"({"type":"grpc","grpc_service":"echo.Echo","interval":"10s",
                            "timeout":"2s","rise":2,"fall":3})"));
  EXPECT_EQ(
      service_args(*grpc),
      (std::vector<std::string>{"name=echo", "port=50051", "protocol=http2", "weight=100",
                                "check=grpc", "check_grpc_service=echo.Echo", "check_interval=10s",
                                "check_timeout=2s", "check_rise=2", "check_fall=3"}));
  grpc->check->grpc_service.clear();
  EXPECT_EQ(service_json(*grpc).at("check").at("grpc_service"), "");
}

TEST(service_spec, the_documented_message) {
  auto spec = parse_service_args({"name=web", "port=0"});
  EXPECT_EQ(message(spec), "register: port: '0' is not 1 to 65535");
  EXPECT_EQ(code_of(spec), errc::bad_request);
}

TEST(service_spec, every_refusal_of_register_names_its_key) {
  struct refusal {
    std::vector<std::string> args;
    std::string key; ///< the message starts with "register: <key>:"
  };
  const std::string long_value(600, 'a');
  std::vector<std::string> too_many;
  for (int i = 0; i < 33; ++i)
    too_many.push_back("name=web");
  std::string many_tags = "tags=";
  for (int i = 0; i < 17; ++i)
    many_tags += (i == 0 ? "t" : ",t") + std::to_string(i);
  const std::vector<refusal> refusals{
      {{"port=80"}, "name"},
      {{"name=web"}, "port"},
      {{"name=Web", "port=80"}, "name"},
      {{"name=-web", "port=80"}, "name"},
      {{"name=", "port=80"}, "name"},
      {{"name=" + std::string(64, 'a'), "port=80"}, "name"},
      {{"name=web", "port=80", "id=a b"}, "id"},
      {{"name=web", "port=80", "id=" + std::string(65, 'a')}, "id"},
      {{"name=web", "port=80", "address=example.com"}, "address"},
      {{"name=web", "port=80", "address=10.0.0.256"}, "address"},
      {{"name=web", "port=0"}, "port"},
      {{"name=web", "port=65536"}, "port"},
      {{"name=web", "port=-1"}, "port"},
      {{"name=web", "port=8o"}, "port"},
      {{"name=web", "port="}, "port"},
      {{"name=web", "port=80", "protocol=udp"}, "protocol"},
      {{"name=web", "port=80", "tags=a,,b"}, "tags"},
      {{"name=web", "port=80", "tags=a b"}, "tags"},
      {{"name=web", "port=80", many_tags}, "tags"},
      {{"name=web", "port=80", "tags=" + std::string(65, 't')}, "tags"},
      {{"name=web", "port=80", "version=v 1"}, "version"},
      {{"name=web", "port=80", "version=" + std::string(33, 'v')}, "version"},
      {{"name=web", "port=80", "weight=0"}, "weight"},
      {{"name=web", "port=80", "weight=1001"}, "weight"},
      {{"name=web", "port=80", "weight=99999999999"}, "weight"},
      {{"name=web", "port=80", "check=udp"}, "check"},
      {{"name=web", "port=80", "check="}, "check"},
      {{"name=web", "port=80", "check_path=/x"}, "check_path"},
      {{"name=web", "port=80", "check_expect=200"}, "check_expect"},
      {{"name=web", "port=80", "check_interval=10s"}, "check_interval"},
      {{"name=web", "port=80", "check_timeout=1s"}, "check_timeout"},
      {{"name=web", "port=80", "check_rise=1"}, "check_rise"},
      {{"name=web", "port=80", "check_fall=1"}, "check_fall"},
      {{"name=web", "port=80", "check=tcp", "check_path=/x"}, "check_path"},
      {{"name=web", "port=80", "check=tcp", "check_expect=200"}, "check_expect"},
      {{"name=web", "port=80", "check=grpc", "check_path=/x"}, "check_path"},
      {{"name=web", "port=80", "check=grpc", "check_expect=200"}, "check_expect"},
      {{"name=web", "port=80", "check=tcp", "check_grpc_service=a"}, "check_grpc_service"},
      {{"name=web", "port=80", "check=http", "check_grpc_service=a"}, "check_grpc_service"},
      {{"name=web", "port=80", "check_grpc_service=a"}, "check_grpc_service"},
      {{"name=web", "port=80", "check=grpc", "check_grpc_service=a b"}, "check_grpc_service"},
      {{"name=web", "port=80", "check=grpc", "check_grpc_service=" + std::string(257, 'a')},
       "check_grpc_service"},
      {{"name=web", "port=80", "check=http", "check_path=healthz"}, "check_path"},
      {{"name=web", "port=80", "check=http", "check_path=/a b"}, "check_path"},
      {{"name=web", "port=80", "check=http", "check_expect=600"}, "check_expect"},
      {{"name=web", "port=80", "check=http", "check_expect=99"}, "check_expect"},
      {{"name=web", "port=80", "check=http", "check_expect=70000"}, "check_expect"},
      {{"name=web", "port=80", "check=tcp", "check_interval=fast"}, "check_interval"},
      {{"name=web", "port=80", "check=tcp", "check_interval=0"}, "check_interval"},
      {{"name=web", "port=80", "check=tcp", "check_interval=2h"}, "check_interval"},
      {{"name=web", "port=80", "check=tcp", "check_interval=500ms"}, "check_interval"},
      {{"name=web", "port=80", "check=tcp", "check_timeout=50ms"}, "check_timeout"},
      {{"name=web", "port=80", "check=tcp", "check_interval=5s", "check_timeout=6s"},
       "check_timeout"},
      {{"name=web", "port=80", "check=tcp", "check_rise=0"}, "check_rise"},
      {{"name=web", "port=80", "check=tcp", "check_rise=x"}, "check_rise"},
      {{"name=web", "port=80", "check=tcp", "check_fall=11"}, "check_fall"},
      {{"name=web", "port=80", "colour=blue"}, "colour"},
      {{"name=web", "port=80", "port=81"}, "port"},
      {{"name=web", "port=80", "tags=" + long_value}, "tags"},
  };
  for (const auto& r : refusals) {
    std::string shown;
    for (const auto& a : r.args)
      shown += a.substr(0, 40) + " ";
    SCOPED_TRACE(shown);
    auto spec = parse_service_args(r.args);
    ASSERT_FALSE(spec);
    EXPECT_EQ(code_of(spec), errc::bad_request);
    const auto msg = message(spec);
    EXPECT_EQ(msg.rfind("register: " + r.key + ": ", 0), 0u) << msg;
    EXPECT_LT(msg.size(), 400u) << "a refusal quotes a bounded part of the value: " << msg;
  }
  // Refusals of the whole list, not of one key.
  EXPECT_EQ(message(parse_service_args(too_many)), "register: 33 arguments, at most 32");
  EXPECT_EQ(message(parse_service_args({"name=web", "port=80", "tcp"})),
            "register: expected key=value, got 'tcp'");
  EXPECT_EQ(message(parse_service_args({"name=web", "port=80", "=tcp"})),
            "register: expected key=value, got '=tcp'");
  // Bounds: 32 arguments are looked at (the repeat is refused), 33 are not; 512 bytes pass,
  // 513 do not.
  too_many.pop_back();
  EXPECT_EQ(message(parse_service_args(too_many)), "register: name: given twice");
  std::string tags = "tags=";
  for (int i = 0; tags.size() + 33 <= 512; ++i)
    tags += (i == 0 ? "" : ",") + std::string(31, static_cast<char>('a' + i));
  tags += "," + std::string(512 - tags.size() - 1, 'z');
  ASSERT_EQ(tags.size(), 512u);
  EXPECT_TRUE(parse_service_args({"name=web", "port=80", tags})) << tags;
  EXPECT_EQ(message(parse_service_args({"name=web", "port=80", tags + "x"}))
                .rfind("register: tags: 513 bytes", 0),
            0u);
  // A control character in a refused value is not echoed.
  auto msg = message(parse_service_args({"name=web\x1b[2J", "port=80"}));
  EXPECT_EQ(msg.find('\x1b'), std::string::npos) << msg;
  EXPECT_EQ(msg.rfind("register: name: 'web?[2J'", 0), 0u) << msg;
}

TEST(service_spec, the_messages_say_what_is_expected) {
  EXPECT_EQ(message(parse_service_args({"name=web", "port=80", "weight=0"})),
            "register: weight: '0' is not 1 to 1000");
  EXPECT_EQ(message(parse_service_args({"name=web", "port=80", "colour=blue"})),
            "register: colour: unknown key (name, port, protocol, tags, version, weight, "
            "address, id, check, check_path, check_expect, check_interval, check_timeout, "
            "check_rise, check_fall, check_grpc_service)");
  EXPECT_EQ(message(parse_service_args(
                {"name=web", "port=80", "check=tcp", "check_interval=5s", "check_timeout=6s"})),
            "register: check_timeout: 6s is longer than the interval 5s");
  EXPECT_EQ(
      message(parse_service_args({"name=web", "port=80", "check=tcp", "check_interval=fast"})),
      "register: check_interval: expected a duration like \"500ms\", got \"fast\"");
  EXPECT_EQ(message(parse_service_args({"name=web", "port=80", "check_path=/x"})),
            "register: check_path: needs check=tcp, check=http or check=grpc");
  EXPECT_EQ(message(parse_service_args({"name=web", "port=80", "port=81"})),
            "register: port: given twice");
}

TEST(service_spec, grpc_is_http2_by_another_name) {
  for (const std::string name : {"http2", "grpc"}) {
    auto spec = parse_service_args({"name=api", "port=50051", "protocol=" + name});
    ASSERT_TRUE(spec) << message(spec);
    EXPECT_EQ(spec->reg.protocol, service_protocol::http2) << name;
    EXPECT_EQ(service_json(*spec)["protocol"], "http2") << name;
    auto from_json = service_from_json(
        json::parse(R"({"name":"api","port":50051,"protocol":")" + name + R"("})"));
    ASSERT_TRUE(from_json) << message(from_json);
    EXPECT_EQ(from_json->reg.protocol, service_protocol::http2) << name;
  }
  EXPECT_EQ(message(parse_service_args({"name=api", "port=80", "protocol=h2"})),
            "register: protocol: 'h2' is not tcp, http, http2 or grpc");
}

// -- the JSON form ---------------------------------------------------------------------------

TEST(service_spec, json_takes_the_same_defaults) {
  auto spec = service_from_json(json::parse(R"({"name":"web","port":80,"tags":["b","a","b"]})"));
  ASSERT_TRUE(spec) << message(spec);
  auto expected = web();
  expected.reg.port = 80;
  expected.reg.tags = {"a", "b"};
  EXPECT_EQ(*spec, expected);
  spec = service_from_json(json::parse(R"({"name":"web","port":8080,"check":null})"));
  ASSERT_TRUE(spec) << message(spec);
  EXPECT_EQ(*spec, web());
}

TEST(service_spec, every_refusal_of_json_names_its_field) {
  struct refusal {
    const char* text;
    const char* key; ///< the message starts with "service[3].<key>:"
  };
  const refusal refusals[] = {
      {R"({"port":80})", "name"},
      {R"({"name":"web"})", "port"},
      {R"({"name":5,"port":80})", "name"},
      {R"({"name":"web","port":"80"})", "port"},
      {R"({"name":"web","port":80.5})", "port"},
      {R"({"name":"web","port":-80})", "port"},
      {R"({"name":"web","port":65536})", "port"},
      {R"({"name":"web","port":18446744073709551615})", "port"},
      {R"({"name":"web","port":0})", "port"},
      {R"({"name":"web","port":80,"id":"a/b"})", "id"},
      {R"({"name":"web","port":80,"address":"localhost"})", "address"},
      {R"({"name":"web","port":80,"protocol":"udp"})", "protocol"},
      {R"({"name":"web","port":80,"tags":"a,b"})", "tags"},
      {R"({"name":"web","port":80,"tags":["a",1]})", "tags"},
      {R"({"name":"web","port":80,"tags":["a,b"]})", "tags"},
      {R"({"name":"web","port":80,"version":1})", "version"},
      {R"({"name":"web","port":80,"weight":true})", "weight"},
      {R"({"name":"web","port":80,"weight":0})", "weight"},
      {R"({"name":"web","port":80,"check":"tcp"})", "check"},
      {R"({"name":"web","port":80,"check":{}})", "check.type"},
      {R"({"name":"web","port":80,"check":{"type":"udp"}})", "check.type"},
      {R"({"name":"web","port":80,"check":{"type":"tcp","path":"/x"}})", "check.path"},
      {R"({"name":"web","port":80,"check":{"type":"grpc","path":"/x"}})", "check.path"},
      {R"({"name":"web","port":80,"check":{"type":"grpc","grpc_service":3}})",
       "check.grpc_service"},
      {R"({"name":"web","port":80,"check":{"type":"http","grpc_service":"a"}})",
       "check.grpc_service"},
      {R"({"name":"web","port":80,"check":{"type":"http","path":3}})", "check.path"},
      {R"({"name":"web","port":80,"check":{"type":"http","expect":600}})", "check.expect"},
      {R"({"name":"web","port":80,"check":{"type":"tcp","interval":10}})", "check.interval"},
      {R"({"name":"web","port":80,"check":{"type":"tcp","interval":"10"}})", "check.interval"},
      {R"({"name":"web","port":80,"check":{"type":"tcp","timeout":"20s"}})", "check.timeout"},
      {R"({"name":"web","port":80,"check":{"type":"tcp","rise":0}})", "check.rise"},
      {R"({"name":"web","port":80,"check":{"type":"tcp","fall":-1}})", "check.fall"},
      {R"({"name":"web","port":80,"check":{"type":"tcp","every":"1s"}})", "check.every"},
      {R"({"name":"web","port":80,"colour":"blue"})", "colour"},
  };
  for (const auto& r : refusals) {
    SCOPED_TRACE(r.text);
    auto spec = service_from_json(json::parse(r.text), "service[3]");
    ASSERT_FALSE(spec);
    EXPECT_EQ(code_of(spec), errc::invalid_config);
    const auto msg = message(spec);
    EXPECT_EQ(msg.rfind(std::string{"service[3]."} + r.key + ": ", 0), 0u) << msg;
  }
  // An empty id is the name, as an absent one.
  auto spec = service_from_json(json::parse(R"({"name":"web","port":80,"id":""})"));
  ASSERT_TRUE(spec) << message(spec);
  EXPECT_EQ(spec->reg.id, "web");
  EXPECT_EQ(message(service_from_json(json::array(), "service[3]")),
            "service[3]: expected an object, got []");
  EXPECT_EQ(message(service_from_json(json::parse(R"({"name":"web"})"))), "port: missing");
}

// -- services.json ---------------------------------------------------------------------------

service_store sample_store() {
  service_store store;
  store.last_version = 42;
  for (std::uint64_t seed = 1; store.services.size() < 10; ++seed) {
    auto spec = random_spec(seed);
    bool clash = false;
    for (const auto& s : store.services)
      clash = clash || (s.reg.service == spec.reg.service && s.reg.id == spec.reg.id);
    if (!clash)
      store.services.push_back(std::move(spec));
  }
  return store;
}

TEST(service_store, an_absent_file_is_an_empty_store) {
  temp_dir tmp{"starling-services"};
  auto store = load_service_store(tmp.path());
  ASSERT_TRUE(store) << message(store);
  EXPECT_TRUE(store->services.empty());
  EXPECT_EQ(store->last_version, 0u);
}

TEST(service_store, saves_and_loads_back_atomically_with_mode_0600) {
  temp_dir tmp{"starling-services"};
  umask_scope permissive{0};
  const auto store = sample_store();
  ASSERT_FALSE(save_service_store(tmp.path(), store));
  const auto file = tmp.path() / "services.json";
  EXPECT_EQ(mode_of(file), 0600u);
  auto back = load_service_store(tmp.path());
  ASSERT_TRUE(back) << message(back);
  EXPECT_EQ(back->last_version, 42u);
  EXPECT_EQ(back->services, store.services);
  // No temporary file is left beside it.
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator{tmp.path()})
    ++files;
  EXPECT_EQ(files, 1u);
  // The documented layout.
  const auto doc = json::parse(read_text(file));
  EXPECT_EQ(doc.at("version"), 1);
  EXPECT_EQ(doc.at("last_version"), 42);
  ASSERT_EQ(doc.at("services").size(), store.services.size());
  EXPECT_EQ(doc.at("services")[0], service_json(store.services[0]));
  // Saving again replaces the content (and an empty store is a valid file).
  ASSERT_FALSE(save_service_store(tmp.path(), service_store{{}, 43}));
  back = load_service_store(tmp.path());
  ASSERT_TRUE(back) << message(back);
  EXPECT_TRUE(back->services.empty());
  EXPECT_EQ(back->last_version, 43u);
  EXPECT_EQ(mode_of(file), 0600u);
}

TEST(service_store, config_services_and_run_time_state_are_not_stored) {
  temp_dir tmp{"starling-services"};
  service_store store;
  auto from_config = web();
  from_config.from_config = true;
  auto runtime = web();
  runtime.reg.id = "web-2";
  runtime.reg.health = gossip::health_status::passing;
  runtime.reg.last_check = "HTTP 200";
  store.services = {from_config, runtime};
  ASSERT_FALSE(save_service_store(tmp.path(), store));
  auto back = load_service_store(tmp.path());
  ASSERT_TRUE(back) << message(back);
  ASSERT_EQ(back->services.size(), 1u);
  EXPECT_EQ(back->services[0].reg.id, "web-2");
  EXPECT_FALSE(back->services[0].from_config);
  EXPECT_EQ(back->services[0].reg.health, gossip::health_status::none);
  EXPECT_TRUE(back->services[0].reg.last_check.empty());
}

TEST(service_store, save_refuses_what_would_not_load_back) {
  temp_dir tmp{"starling-services"};
  auto bad = web();
  bad.reg.port = 0;
  auto err = save_service_store(tmp.path(), service_store{{web(), bad}, 1});
  ASSERT_TRUE(err);
  EXPECT_NE(message_of(err).find("services[1].port: '0' is not 1 to 65535"), std::string::npos)
      << message_of(err);
  err = save_service_store(tmp.path(), service_store{{web(), web()}, 1});
  ASSERT_TRUE(err);
  EXPECT_NE(message_of(err).find("services[1]: same name and id as"), std::string::npos)
      << message_of(err);
  auto incomplete = web();
  incomplete.reg.id.clear();
  EXPECT_TRUE(save_service_store(tmp.path(), service_store{{incomplete}, 1}));
  std::vector<service_spec> many;
  for (int i = 0; i < 65; ++i) {
    many.push_back(web());
    many.back().reg.id = "web-" + std::to_string(i);
  }
  EXPECT_TRUE(save_service_store(tmp.path(), service_store{many, 1}));
  many.pop_back();
  EXPECT_FALSE(save_service_store(tmp.path(), service_store{many, 1}));
  // Nothing was written by the refusals before the last save, and no temporary file is left.
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator{tmp.path()})
    ++files;
  EXPECT_EQ(files, 1u);
  auto back = load_service_store(tmp.path());
  ASSERT_TRUE(back) << message(back);
  EXPECT_EQ(back->services.size(), 64u);
  // A data dir that does not exist is an I/O error naming the file.
  err = save_service_store(tmp.path() / "missing", service_store{});
  ASSERT_TRUE(err);
  EXPECT_EQ(err.code(), static_cast<std::uint8_t>(errc::io_failure));
  EXPECT_NE(message_of(err).find("services.json"), std::string::npos) << message_of(err);
}

TEST(service_store, an_oversized_file_is_refused_before_it_is_read) {
  temp_dir tmp{"starling-services"};
  const auto file = tmp.path() / "services.json";
  {
    std::ofstream out{file, std::ios::binary};
    out << R"({"version":1,"last_version":1,"services":[]})";
    out << std::string((1 << 20), ' ');
  }
  auto store = load_service_store(tmp.path());
  ASSERT_FALSE(store);
  EXPECT_EQ(code_of(store), errc::io_failure);
  EXPECT_NE(message(store).find("more than 1048576"), std::string::npos) << message(store);
  // Exactly 1 MiB is read.
  fs::resize_file(file, 1 << 20);
  store = load_service_store(tmp.path());
  EXPECT_TRUE(store) << message(store);
}

TEST(service_store, garbage_is_refused_naming_what_is_wrong) {
  temp_dir tmp{"starling-services"};
  const auto file = tmp.path() / "services.json";
  const auto entry = [](std::string name, std::string id) {
    return R"({"name":")" + name + R"(","id":")" + id + R"(","port":80})";
  };
  struct garbage {
    std::string text;
    std::string needle; ///< in the message
  };
  const std::vector<garbage> cases{
      {"", "not a JSON object"},
      {"not json", "not a JSON object"},
      {"[]", "not a JSON object"},
      {std::string(100'000, '[') + std::string(100'000, ']'), "not a JSON object"},
      {"{\"version\":1,\"last_version\":1,\"services\":[]}\xff", "not a JSON object"},
      {R"({"last_version":1,"services":[]})", "version: expected 1, got nothing"},
      {R"({"version":2,"last_version":1,"services":[]})", "version: expected 1, got 2"},
      {R"({"version":1,"services":[]})", "last_version: expected an unsigned integer"},
      {R"({"version":1,"last_version":-1,"services":[]})", "last_version: expected an unsigned"},
      {R"({"version":1,"last_version":1})", "services: expected an array"},
      {R"({"version":1,"last_version":1,"services":{}})", "services: expected an array"},
      {R"({"version":1,"last_version":1,"services":[],"extra":0})", "extra: unknown key"},
      {R"({"version":1,"last_version":1,"services":[)" + entry("web", "a") + "," +
           R"({"name":"web","port":0}]})",
       "services[1].port: '0' is not 1 to 65535"},
      {R"({"version":1,"last_version":1,"services":[)" + entry("web", "a") + "," +
           entry("api", "a") + "," + entry("web", "a") + "]}",
       "services[2]: same name and id as services[0] (name web, id a)"},
      {R"({"version":1,"last_version":1,"services":[5]})", "services[0]: expected an object"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text.substr(0, 80));
    write_text(file, c.text);
    auto store = load_service_store(tmp.path());
    ASSERT_FALSE(store);
    EXPECT_EQ(code_of(store), errc::invalid_config);
    const auto msg = message(store);
    EXPECT_EQ(msg.rfind(file.string() + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(c.needle), std::string::npos) << msg;
  }
  // More entries than one owner may have.
  std::string many = R"({"version":1,"last_version":1,"services":[)";
  for (int i = 0; i < 65; ++i)
    many += (i == 0 ? "" : ",") + entry("web", "w" + std::to_string(i));
  write_text(file, many + "]}");
  EXPECT_NE(message(load_service_store(tmp.path())).find("65 services, more than 64"),
            std::string::npos);
  // A directory in its place.
  fs::remove(file);
  fs::create_directory(file);
  auto store = load_service_store(tmp.path());
  ASSERT_FALSE(store);
  EXPECT_EQ(code_of(store), errc::io_failure);
}

} // namespace
} // namespace starling::actors
