#include "actors/config.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>
#include <caf/message.hpp>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
// toml++ checks its own parser state with assert() outside NDEBUG builds, and one check is
// wrong: a table header such as "[:" aborts the process (found by config_fuzz) where the
// NDEBUG build, which turns that check into no code under g++, reports a parse error. A bad
// config file must get a clear error in every build, so the checks are off.
#define TOML_ASSERT(expr) static_cast<void>(0)
#include <toml++/toml.h>
#include <unistd.h>

#include "actors/errc.hpp"
#include "gossip/routing_gossip.hpp"
#include "identity/endorsement.hpp"
#include "identity/errc.hpp"
#include "identity/files.hpp"
#include "identity/keyring.hpp"
#include "identity/names.hpp"
#include "identity/revocation.hpp"
#include "identity/token.hpp"

namespace starling::actors {

namespace {

using namespace std::chrono_literals;

caf::error bad(std::string_view key, std::string_view what) {
  std::string msg{key};
  msg += ": ";
  msg += what;
  return make_error(errc::invalid_config, std::move(msg));
}

/// `text` in double quotes, with control characters and quotes escaped.
std::string quote_text(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += '?';
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

/// A short rendering of a TOML value for "got ..." in messages.
std::string describe(const toml::node& n) {
  if (auto s = n.value_exact<std::string>())
    return quote_text(*s);
  if (auto i = n.value_exact<std::int64_t>())
    return std::to_string(*i);
  if (auto b = n.value_exact<bool>())
    return *b ? "true" : "false";
  if (auto d = n.value_exact<double>()) {
    std::ostringstream os;
    os << *d;
    return os.str();
  }
  if (n.is_table())
    return "a table";
  if (n.is_array())
    return "an array";
  return "a value of another type";
}

bool is_valid_host(std::string_view host) {
  if (host.empty() || host.size() > 253)
    return false;
  for (char c : host)
    if (c <= ' ' || c == '/' || c == '[' || c == ']' || c == '"' || c == '\'' || c == '\\')
      return false;
  return true;
}

caf::expected<std::string> validate_name(std::string_view name, std::string_view key) {
  if (!identity::is_valid_node_name(name)) // one rule for members and certificates
    return bad(key, "expected a member name of letters, digits, '.', '_' or '-' (at most 64, "
                    "starting with a letter or digit), got " +
                        quote_text(name));
  return std::string{name};
}

caf::expected<log_level> parse_level(std::string_view text, std::string_view key) {
  static constexpr std::array<std::string_view, 6> names{"trace", "debug", "info",
                                                         "warn",  "error", "off"};
  for (std::size_t i = 0; i < names.size(); ++i)
    if (text == names[i])
      return static_cast<log_level>(i);
  return bad(key, "expected one of trace, debug, info, warn, error, off, got " + quote_text(text));
}

caf::expected<log_format> parse_format(std::string_view text, std::string_view key) {
  if (text == "text")
    return log_format::text;
  if (text == "json")
    return log_format::json;
  return bad(key, "expected text or json, got " + quote_text(text));
}

caf::expected<std::string> parse_seed(std::string_view text, std::string_view key) {
  auto hp = parse_host_port(text, key);
  if (!hp)
    return hp.error();
  if (hp->port == 0)
    return bad(key, "a seed needs a port other than 0, got " + quote_text(text));
  return hp->to_string();
}

caf::error parse_tag(std::string_view kv, std::string_view key, gossip::tag_map& tags) {
  auto eq = kv.find('=');
  if (eq == std::string_view::npos || eq == 0)
    return bad(key, "expected key=value, got " + quote_text(kv));
  auto k = kv.substr(0, eq);
  auto v = kv.substr(eq + 1);
  if (k.size() > 128 || v.size() > 512)
    return bad(key, "tag too long (key at most 128 bytes, value at most 512)");
  tags[std::string{k}] = std::string{v};
  return {};
}

std::string hostname_or_empty() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0)
    return {};
  std::string name{buf.data()};
  // A fully qualified hostname: keep the first label, as member names are short.
  if (auto dot = name.find('.'); dot != std::string::npos)
    name.resize(dot);
  return name;
}

/// Checks a gossip key without echoing it (a secret).
caf::error validate_gossip_key(std::string_view text, std::string_view key) {
  auto k = identity::parse_gossip_key(text);
  if (!k) {
    const auto& ctx = k.error().context();
    std::string why = ctx.match_elements<std::string>() ? ctx.get_as<std::string>(0)
                                                        : std::string{"not a gossip key"};
    return bad(key, why);
  }
  return {};
}

/// Checks that an issuer directory holds the files of `starling ca issuer` (their content is
/// checked when the agent loads them).
caf::error validate_issuer_dir(const std::string& path, std::string_view key) {
  if (path.empty())
    return bad(key, "must not be empty");
  for (const char* file : {"issuer.key", "issuer.crt", "bundle.crt"})
    if (!std::filesystem::exists(std::filesystem::path{path} / file))
      return bad(key, quote_text(path) + " has no " + file + " (made by `starling ca issuer`)");
  return {};
}

/// Checks that a join token decodes, without echoing it (a secret).
caf::error validate_token(std::string_view text, std::string_view key) {
  auto t = identity::decode(text);
  if (!t)
    return bad(key, "not a join token: " + identity::render(t.error()));
  return {};
}

/// Cross-checks of the join tokens (already decoded one by one): at most
/// max_admission_quorum, all pinning the same mesh root, and, with admission_quorum = k, at
/// least k made by distinct issuers (fewer would be refused by the mesh anyway: say so
/// before a token is spent).
caf::error check_tokens(const std::vector<std::string>& tokens, std::size_t quorum) {
  if (tokens.empty())
    return {};
  if (tokens.size() > identity::max_admission_quorum)
    return bad("token", "at most " + std::to_string(identity::max_admission_quorum) +
                            " join tokens, got " + std::to_string(tokens.size()));
  std::set<std::string> issuers;
  std::optional<identity::sha256_digest> pin;
  for (const auto& text : tokens) {
    auto t = identity::decode(text);
    if (!t)
      return bad("token", "not a join token: " + identity::render(t.error()));
    if (pin && t->pin != *pin)
      return bad("token", "the join tokens pin different mesh roots: they must all come from "
                          "issuers of one mesh");
    pin = t->pin;
    issuers.insert(t->issuer);
  }
  if (issuers.size() < quorum)
    return bad("token", "admission_quorum is " + std::to_string(quorum) + ": give " +
                            std::to_string(quorum) + " join tokens made by distinct issuers (got " +
                            std::to_string(tokens.size()) + " from " +
                            std::to_string(issuers.size()) + ")");
  return {};
}

// Revocations are kept at least this long after they are made (revocation_log::prune).
static_assert(max_cert_ttl == identity::max_node_certificate_lifetime);

/// Parses cert_ttl: a duration from min_cert_ttl to max_cert_ttl, in whole seconds.
caf::expected<std::chrono::seconds> parse_cert_ttl(std::string_view text, std::string_view key) {
  auto d = parse_duration(text, key);
  if (!d)
    return d.error();
  if (*d < min_cert_ttl || *d > max_cert_ttl || *d % std::chrono::seconds{1} != d->zero())
    return bad(key, "expected whole seconds from " + format_duration(min_cert_ttl) + " to " +
                        format_duration(max_cert_ttl) + " (30 days), got " + quote_text(text));
  return std::chrono::duration_cast<std::chrono::seconds>(*d);
}

/// Checks that a keyring file exists and parses (the agent reads it again at start).
caf::error validate_keyring_file(const std::string& path, std::string_view key) {
  if (path.empty())
    return bad(key, "must not be empty");
  // Bounded, regular files only: "/dev/zero" or a FIFO must fail, not hang the agent's start.
  constexpr std::size_t max_keyring_file = 64 * 1024; // 32 keys take under 2 KiB
  auto text = identity::read_file(path, max_keyring_file);
  if (!text)
    return bad(key, "cannot read " + quote_text(path) + ": " + identity::render(text.error()));
  auto ring = identity::keyring::from_text(*text);
  if (!ring)
    return bad(key, quote_text(path) + ": " + identity::render(ring.error()));
  if (ring->empty())
    return bad(key, quote_text(path) + " holds no key");
  return {};
}

// -- secrets from files and the environment ------------------------------------------------

/// Bound on a token or gossip key file: far above 16 tokens of ~150 characters.
constexpr std::size_t max_secret_file = 64 * 1024;

std::string_view trim(std::string_view text) {
  constexpr std::string_view space = " \t\r\n\v\f";
  auto b = text.find_first_not_of(space);
  if (b == std::string_view::npos)
    return {};
  auto e = text.find_last_not_of(space);
  return text.substr(b, e - b + 1);
}

/// Reads a file holding a secret (bounded). One readable by group or others adds a warning
/// (the secret is then exposed to other users, which the file form is meant to avoid).
caf::expected<std::string> read_secret_file(const std::string& path, std::string_view key,
                                            std::vector<std::string>& warnings) {
  if (path.empty())
    return bad(key, "must not be empty");
  auto text = identity::read_file(path, max_secret_file);
  if (!text)
    return bad(key, identity::render(text.error()));
  struct ::stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    warnings.push_back(std::string{key} + ": " + quote_text(path) + " is readable by group or " +
                       "others (mode " + mode + "): it holds a secret, chmod 0600 it");
  }
  return std::move(*text);
}

/// Decodes and checks the join tokens of one text (a file or STARLING_TOKEN) named `key`.
caf::expected<std::vector<std::string>>
tokens_from_text(std::string_view text, std::string_view key, std::string_view where) {
  auto tokens = split_tokens(text);
  if (tokens.empty())
    return bad(key, std::string{where} + " holds no join token");
  for (const auto& t : tokens)
    if (auto err = validate_token(t, key))
      return err;
  return tokens;
}

caf::expected<std::vector<std::string>>
read_token_file(const std::string& path, std::string_view key, std::vector<std::string>& warnings) {
  auto text = read_secret_file(path, key, warnings);
  if (!text)
    return text.error();
  return tokens_from_text(*text, key, quote_text(path));
}

caf::expected<std::string> read_gossip_key_file(const std::string& path, std::string_view key,
                                                std::vector<std::string>& warnings) {
  auto text = read_secret_file(path, key, warnings);
  if (!text)
    return text.error();
  auto k = std::string{trim(*text)};
  if (k.empty())
    return bad(key, quote_text(path) + " holds no gossip key");
  if (auto err = validate_gossip_key(k, key))
    return err;
  return k;
}

/// A value and its file form at one level (both flags, or both config keys).
caf::error both_forms(std::string_view value_key, std::string_view file_key) {
  return bad(std::string{value_key} + ", " + std::string{file_key},
             "give one of the two, not both (the file keeps the secret out of `ps`)");
}

// -- the TOML file ------------------------------------------------------------------------

struct file_state {
  agent_config& cfg;
  std::optional<std::string> name;
  std::optional<std::string> data_dir;
  /// Which of a secret's two forms the file gave (both is an error).
  bool token = false;
  bool token_file = false;
  bool gossip_key = false;
  bool gossip_key_file = false;
};

caf::expected<std::string> get_string(const toml::node& n, std::string_view key,
                                      std::string_view what) {
  if (auto s = n.value_exact<std::string>())
    return *s;
  return bad(key, std::string{"expected "} + std::string{what} + ", got " + describe(n));
}

/// Reads `n` as a string and parses it with `parse`, whose errors name `key`.
template <class Parse>
auto read_parsed(const toml::node& n, std::string_view key, std::string_view what, Parse parse)
    -> decltype(parse(std::string_view{}, key)) {
  auto s = get_string(n, key, what);
  if (!s)
    return s.error();
  return parse(*s, key);
}

caf::error read_duration(const toml::node& n, std::string_view key, gossip::duration& out,
                         bool allow_zero) {
  auto s = n.value_exact<std::string>();
  if (!s)
    return bad(key, "expected a duration like \"500ms\", got " + describe(n));
  auto d = parse_duration(*s, key);
  if (!d)
    return d.error();
  if (!allow_zero && *d <= gossip::duration::zero())
    return bad(key, "must be greater than 0, got " + quote_text(*s));
  out = *d;
  return {};
}

/// Reads a duration of whole `Unit`s, 0 to `max`, into `out` ("0s": off, for the caller).
template <class Unit>
caf::error read_whole_duration(const toml::node& n, std::string_view key, Unit& out, Unit max,
                               std::string_view units) {
  gossip::duration d{};
  if (auto err = read_duration(n, key, d, true))
    return err;
  if (d % Unit{1} != gossip::duration::zero() || d > max)
    return bad(key, "expected whole " + std::string{units} + " up to " + format_duration(max) +
                        ", got " + quote_text(format_duration(d)));
  out = std::chrono::duration_cast<Unit>(d);
  return {};
}

template <class Int>
caf::error read_int(const toml::node& n, std::string_view key, Int& out, std::int64_t lo,
                    std::int64_t hi) {
  auto v = n.value_exact<std::int64_t>();
  if (!v || *v < lo || *v > hi)
    return bad(key, "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                        ", got " + describe(n));
  out = static_cast<Int>(*v);
  return {};
}

caf::error read_bool(const toml::node& n, std::string_view key, bool& out) {
  auto v = n.value_exact<bool>();
  if (!v)
    return bad(key, "expected true or false, got " + describe(n));
  out = *v;
  return {};
}

caf::error read_gossip_table(const toml::table& tbl, file_state& st) {
  auto& sw = st.cfg.swim;
  struct dur_key {
    std::string_view name;
    gossip::duration gossip::swim_config::*member;
    bool allow_zero;
  };
  static const std::array<dur_key, 7> durations{{
      {"probe_interval", &gossip::swim_config::probe_interval, false},
      {"probe_timeout", &gossip::swim_config::probe_timeout, false},
      {"gossip_interval", &gossip::swim_config::gossip_interval, false},
      {"gossip_to_dead", &gossip::swim_config::gossip_to_dead, true},
      {"push_pull_interval", &gossip::swim_config::push_pull_interval, true},
      {"reap_after", &gossip::swim_config::reap_after, true},
      {"reaped_memory", &gossip::swim_config::reaped_memory, true},
  }};
  struct uint_key {
    std::string_view name;
    unsigned gossip::swim_config::*member;
    std::int64_t lo, hi;
  };
  static const std::array<uint_key, 6> uints{{
      {"gossip_fanout", &gossip::swim_config::gossip_fanout, 1, 64},
      {"indirect_checks", &gossip::swim_config::indirect_checks, 0, 64},
      {"retransmit_mult", &gossip::swim_config::retransmit_mult, 1, 100},
      {"suspicion_mult", &gossip::swim_config::suspicion_mult, 1, 100},
      {"suspicion_max_mult", &gossip::swim_config::suspicion_max_mult, 1, 100},
      {"awareness_max", &gossip::swim_config::awareness_max, 0, 100},
  }};
  for (auto&& [k, node] : tbl) {
    const std::string_view name = k.str();
    const std::string key = "gossip." + std::string{name};
    bool done = false;
    for (const auto& d : durations) {
      if (d.name == name) {
        if (auto err = read_duration(node, key, sw.*(d.member), d.allow_zero))
          return err;
        done = true;
      }
    }
    for (const auto& u : uints) {
      if (u.name == name) {
        if (auto err = read_int(node, key, sw.*(u.member), u.lo, u.hi))
          return err;
        done = true;
      }
    }
    if (done)
      continue;
    if (name == "address") {
      auto hp = read_parsed(node, key, "HOST:PORT", parse_host_port);
      if (!hp)
        return hp.error();
      st.cfg.gossip = *hp;
    } else if (name == "lifeguard") {
      if (auto err = read_bool(node, key, sw.lifeguard))
        return err;
    } else if (name == "reaped_memory_max") {
      if (auto err = read_int(node, key, sw.reaped_memory_max, 0, 10'000'000))
        return err;
    } else if (name == "max_datagram") {
      if (auto err = read_int(node, key, sw.max_datagram, 512, 65'000))
        return err;
    } else if (name == "tcp_timeout") {
      gossip::duration d{};
      if (auto err = read_duration(node, key, d, false))
        return err;
      st.cfg.tcp_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(d);
    } else {
      return bad(key, "unknown key (docs/operations.md lists the keys)");
    }
  }
  return {};
}

// -- [[service]], [dns], [routing] ---------------------------------------------------------

/// A TOML value as JSON, so that a [[service]] table is read by service_from_json, the one
/// reader of the fielded form (services.json uses it too). Dates and times have no JSON
/// form: refused, naming `key`.
caf::expected<nlohmann::json> toml_to_json(const toml::node& n, const std::string& key) {
  if (auto s = n.value_exact<std::string>())
    return nlohmann::json(*s);
  if (auto i = n.value_exact<std::int64_t>())
    return nlohmann::json(*i);
  if (auto b = n.value_exact<bool>())
    return nlohmann::json(*b);
  if (auto d = n.value_exact<double>())
    return nlohmann::json(*d);
  if (const auto* tbl = n.as_table()) {
    auto out = nlohmann::json::object();
    for (auto&& [k, v] : *tbl) {
      const std::string name{k.str()};
      auto value = toml_to_json(v, key + "." + name);
      if (!value)
        return value.error();
      out[name] = std::move(*value);
    }
    return out;
  }
  if (const auto* arr = n.as_array()) {
    auto out = nlohmann::json::array();
    for (std::size_t i = 0; i < arr->size(); ++i) {
      auto value = toml_to_json(*arr->get(i), key + "[" + std::to_string(i) + "]");
      if (!value)
        return value.error();
      out.push_back(std::move(*value));
    }
    return out;
  }
  return bad(key, "expected a string, a number, an array or a table, got " + describe(n));
}

/// Reads the `[[service]]` tables: each through service_from_json (errors name
/// "service[i].<key>"), distinct by (name, id), at most gossip::max_instances_per_owner.
caf::error read_services(const toml::node& node, agent_config& cfg) {
  const auto* arr = node.as_array();
  if (arr == nullptr) // the elements' types are service_from_json's to refuse
    return bad("service", "expected [[service]] tables, got " + describe(node));
  if (arr->size() > gossip::max_instances_per_owner)
    return bad("service", std::to_string(arr->size()) + " services, at most " +
                              std::to_string(gossip::max_instances_per_owner));
  cfg.services.clear();
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const std::string where = "service[" + std::to_string(i) + "]";
    auto j = toml_to_json(*arr->get(i), where);
    if (!j)
      return j.error();
    auto spec = service_from_json(*j, where);
    if (!spec)
      return spec.error();
    spec->from_config = true;
    for (std::size_t k = 0; k < cfg.services.size(); ++k) {
      const auto& other = cfg.services[k].reg;
      if (other.service == spec->reg.service && other.id == spec->reg.id)
        return bad(where, "same name and id as service[" + std::to_string(k) + "] (name " +
                              quote_text(other.service) + ", id " + quote_text(other.id) +
                              "): give one of them another id");
    }
    cfg.services.push_back(std::move(*spec));
  }
  return {};
}

/// True for a DNS name of lowercase labels ("starling", "mesh.internal"): each label 1 to 63
/// of [a-z0-9-], not starting or ending with '-'; at most 253 bytes; no trailing dot.
bool is_dns_name(std::string_view name) {
  if (name.empty() || name.size() > 253)
    return false;
  while (true) {
    const auto dot = name.find('.');
    const auto label = name.substr(0, dot);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
      return false;
    for (char c : label)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
        return false;
    if (dot == std::string_view::npos)
      return true;
    name.remove_prefix(dot + 1);
  }
}

/// Parses a DNS server address: "HOST:PORT" (port 0 picks a free one), or "" / "off" for
/// no DNS server.
/// "HOST:PORT", or "off" (or empty) for no server: the address of an optional server
/// (`what` names it in the error).
caf::expected<std::optional<host_port>>
parse_optional_address(std::string_view text, std::string_view key, std::string_view what) {
  if (text.empty() || text == "off")
    return std::optional<host_port>{};
  auto hp = parse_host_port(text, key);
  if (!hp)
    return bad(key, "expected HOST:PORT, or \"off\" for no " + std::string{what} + ", got " +
                        quote_text(text));
  return std::optional<host_port>{std::move(*hp)};
}

caf::expected<std::optional<host_port>> parse_dns_address(std::string_view text,
                                                          std::string_view key) {
  return parse_optional_address(text, key, "DNS server");
}

caf::expected<std::optional<host_port>> parse_metrics_address(std::string_view text,
                                                              std::string_view key) {
  return parse_optional_address(text, key, "metrics server");
}

caf::error read_metrics_table(const toml::node& node, agent_config& cfg) {
  const auto* tbl = node.as_table();
  if (tbl == nullptr)
    return bad("metrics", "expected a [metrics] table, got " + describe(node));
  for (auto&& [k, v] : *tbl) {
    const std::string_view name = k.str();
    const std::string key = "metrics." + std::string{name};
    if (name == "address") {
      auto address = read_parsed(v, key, "HOST:PORT or \"off\"", parse_metrics_address);
      if (!address)
        return address.error();
      cfg.metrics = *address;
    } else if (name == "metrics_allow_remote") {
      if (auto err = read_bool(v, key, cfg.metrics_allow_remote))
        return err;
    } else {
      return bad(key, "unknown key (docs/operations.md lists the keys)");
    }
  }
  return {};
}

caf::error read_dns_table(const toml::node& node, agent_config& cfg) {
  const auto* tbl = node.as_table();
  if (tbl == nullptr)
    return bad("dns", "expected a [dns] table, got " + describe(node));
  for (auto&& [k, v] : *tbl) {
    const std::string_view name = k.str();
    const std::string key = "dns." + std::string{name};
    if (name == "address") {
      auto address = read_parsed(v, key, "HOST:PORT or \"off\"", parse_dns_address);
      if (!address)
        return address.error();
      cfg.dns = *address;
    } else if (name == "domain") {
      auto s = get_string(v, key, "a DNS name");
      if (!s)
        return s.error();
      if (!is_dns_name(*s))
        return bad(key, "expected a DNS name of lowercase labels (letters, digits, '-') joined "
                        "by '.', got " +
                            quote_text(*s));
      cfg.dns_domain = *s;
    } else if (name == "dns_allow_remote") {
      if (auto err = read_bool(v, key, cfg.dns_allow_remote))
        return err;
    } else {
      return bad(key, "unknown key (docs/operations.md lists the keys)");
    }
  }
  return {};
}

/// Parses max_clock_skew: whole milliseconds from min_clock_skew to max_clock_skew_bound.
caf::expected<std::chrono::milliseconds> parse_clock_skew(std::string_view text,
                                                          std::string_view key) {
  auto d = parse_duration(text, key);
  if (!d)
    return d.error();
  if (*d < min_clock_skew || *d > max_clock_skew_bound ||
      *d % std::chrono::milliseconds{1} != gossip::duration::zero())
    return bad(key, "expected whole milliseconds from " + format_duration(min_clock_skew) + " to " +
                        format_duration(max_clock_skew_bound) + ", got " + quote_text(text));
  return std::chrono::duration_cast<std::chrono::milliseconds>(*d);
}

static_assert(default_inline_section_max == gossip::default_inline_section_max);

caf::error read_routing_table(const toml::node& node, agent_config& cfg) {
  const auto* tbl = node.as_table();
  if (tbl == nullptr)
    return bad("routing", "expected a [routing] table, got " + describe(node));
  for (auto&& [k, v] : *tbl) {
    const std::string_view name = k.str();
    const std::string key = "routing." + std::string{name};
    if (name == "max_clock_skew") {
      auto skew = read_parsed(v, key, "a duration like \"10m\"", parse_clock_skew);
      if (!skew)
        return skew.error();
      cfg.max_clock_skew = *skew;
    } else if (name == "inline_section_max") {
      if (auto err =
              read_int(v, key, cfg.inline_section_max, 0, gossip::max_extension_section_bytes))
        return err;
    } else {
      return bad(key, "unknown key (docs/operations.md lists the keys)");
    }
  }
  return {};
}

caf::expected<std::optional<host_port>> parse_inbound_address(std::string_view text,
                                                              std::string_view key) {
  return parse_optional_address(text, key, "data plane");
}

caf::error read_proxy_table(const toml::node& node, agent_config& cfg) {
  const auto* tbl = node.as_table();
  if (tbl == nullptr)
    return bad("proxy", "expected a [proxy] table, got " + describe(node));
  for (auto&& [k, v] : *tbl) {
    const std::string_view name = k.str();
    const std::string key = "proxy." + std::string{name};
    if (name == "inbound") {
      auto address = read_parsed(v, key, "HOST:PORT or \"off\"", parse_inbound_address);
      if (!address)
        return address.error();
      cfg.inbound = *address;
    } else if (name == "threads") {
      if (auto err = read_int(v, key, cfg.proxy_threads, 1, max_proxy_threads))
        return err;
    } else if (name == "access_log") {
      auto s = get_string(v, key, "a file path, or \"\" for none");
      if (!s)
        return s.error();
      cfg.access_log = *s;
    } else if (name == "access_log_sample") {
      const auto* d = v.as_floating_point();
      const auto* i = v.as_integer();
      const double x = d ? d->get() : i ? static_cast<double>(i->get()) : -1.0;
      if ((d == nullptr && i == nullptr) || !(x >= 0.0 && x <= 1.0))
        return bad(key, "expected a number from 0 to 1, got " + describe(v));
      cfg.access_log_sample = x;
    } else if (name == "splice") {
      if (auto err = read_bool(v, key, cfg.proxy_splice))
        return err;
    } else if (name == "http2_between_nodes") {
      if (auto err = read_bool(v, key, cfg.proxy_http2))
        return err;
    } else if (name == "tunnel_idle_timeout") {
      if (auto err = read_whole_duration(v, key, cfg.proxy_tunnel_idle_timeout,
                                         std::chrono::milliseconds{std::chrono::hours{720}},
                                         "milliseconds"))
        return err;
    } else if (name == "keepalive") {
      if (auto err = read_whole_duration(v, key, cfg.proxy_keepalive, std::chrono::seconds{32767},
                                         "seconds"))
        return err;
    } else if (name == "io") {
      auto s = get_string(v, key, "\"epoll\" or \"io_uring\"");
      if (!s)
        return s.error();
      if (*s != "epoll" && *s != "io_uring")
        return bad(key, "expected \"epoll\" or \"io_uring\", got \"" + *s + "\"");
      cfg.proxy_io = *s;
    } else {
      return bad(key, "unknown key (docs/operations.md lists the keys)");
    }
  }
  return {};
}

caf::error read_file_table(const toml::table& root, file_state& st) {
  auto& cfg = st.cfg;
  for (auto&& [k, node] : root) {
    const std::string key{k.str()};
    if (key == "name") {
      auto s = get_string(node, key, "a string");
      if (!s)
        return s.error();
      auto n = validate_name(*s, key);
      if (!n)
        return n.error();
      st.name = *n;
    } else if (key == "data_dir") {
      auto s = get_string(node, key, "a path");
      if (!s)
        return s.error();
      if (s->empty())
        return bad(key, "must not be empty");
      st.data_dir = *s;
    } else if (key == "gossip") {
      if (const auto* tbl = node.as_table()) {
        if (auto err = read_gossip_table(*tbl, st))
          return err;
      } else {
        auto hp = read_parsed(node, key, "HOST:PORT or a [gossip] table", parse_host_port);
        if (!hp)
          return hp.error();
        cfg.gossip = *hp;
      }
    } else if (key == "advertise") {
      auto s = get_string(node, key, "a host name or address");
      if (!s)
        return s.error();
      if (!is_valid_host(*s))
        return bad(key, "expected a host name or address (no port), got " + quote_text(*s));
      cfg.advertise = *s;
    } else if (key == "admin") {
      auto hp = read_parsed(node, key, "HOST:PORT", parse_host_port);
      if (!hp)
        return hp.error();
      cfg.admin = *hp;
    } else if (key == "admin_allow_remote") {
      if (auto err = read_bool(node, key, cfg.admin_allow_remote))
        return err;
    } else if (key == "admin_open_reads") {
      if (auto err = read_bool(node, key, cfg.admin_open_reads))
        return err;
    } else if (key == "join") {
      const auto* arr = node.as_array();
      if (!arr)
        return bad(key, "expected an array of \"HOST:PORT\" strings, got " + describe(node));
      cfg.join.clear();
      for (std::size_t i = 0; i < arr->size(); ++i) {
        const std::string ikey = key + "[" + std::to_string(i) + "]";
        auto seed = read_parsed(*arr->get(i), ikey, "\"HOST:PORT\"", parse_seed);
        if (!seed)
          return seed.error();
        cfg.join.push_back(*seed);
      }
    } else if (key == "join_timeout") {
      gossip::duration d{};
      if (auto err = read_duration(node, key, d, false))
        return err;
      cfg.join_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(d);
    } else if (key == "log_level") {
      auto l = read_parsed(node, key, "a log level", parse_level);
      if (!l)
        return l.error();
      cfg.level = *l;
    } else if (key == "log_format") {
      auto f = read_parsed(node, key, "text or json", parse_format);
      if (!f)
        return f.error();
      cfg.format = *f;
    } else if (key == "event_log") {
      auto s = get_string(node, key, "a path");
      if (!s)
        return s.error();
      cfg.event_log = *s;
    } else if (key == "gossip_key") {
      auto s = get_string(node, key, "a base64 key");
      if (!s)
        return s.error();
      if (auto err = validate_gossip_key(*s, key))
        return err;
      cfg.gossip_key = *s;
      st.gossip_key = true;
    } else if (key == "gossip_key_file") {
      auto s = get_string(node, key, "a path");
      if (!s)
        return s.error();
      auto k = read_gossip_key_file(*s, key, cfg.warnings);
      if (!k)
        return k.error();
      cfg.gossip_key = *k;
      st.gossip_key_file = true;
    } else if (key == "keyring_file") {
      auto s = get_string(node, key, "a path");
      if (!s)
        return s.error();
      if (auto err = validate_keyring_file(*s, key))
        return err;
      cfg.keyring_file = *s;
    } else if (key == "issuer") {
      auto s = get_string(node, key, "a directory");
      if (!s)
        return s.error();
      if (auto err = validate_issuer_dir(*s, key))
        return err;
      cfg.issuer_dir = *s;
    } else if (key == "cert_ttl") {
      auto ttl = read_parsed(node, key, "a duration like \"24h\"", parse_cert_ttl);
      if (!ttl)
        return ttl.error();
      cfg.cert_ttl = *ttl;
    } else if (key == "token_file") {
      auto s = get_string(node, key, "a path");
      if (!s)
        return s.error();
      auto tokens = read_token_file(*s, key, cfg.warnings);
      if (!tokens)
        return tokens.error();
      cfg.tokens = std::move(*tokens);
      st.token_file = true;
    } else if (key == "token") {
      // One token, or an array of them (admission quorum).
      st.token = true;
      cfg.tokens.clear();
      auto add = [&cfg](const toml::node& n, const std::string& k,
                        std::string_view expected) -> caf::error {
        auto s = get_string(n, k, expected);
        if (!s)
          return s.error();
        if (auto err = validate_token(*s, k))
          return err;
        cfg.tokens.push_back(*s);
        return {};
      };
      if (const auto* arr = node.as_array()) {
        for (std::size_t i = 0; i < arr->size(); ++i)
          if (auto err = add(*arr->get(i), key + "[" + std::to_string(i) + "]", "a join token"))
            return err;
      } else if (auto err = add(node, key, "a join token or an array of them")) {
        return err;
      }
    } else if (key == "admission_quorum") {
      if (auto err = read_int(node, key, cfg.admission_quorum, 1,
                              static_cast<std::int64_t>(identity::max_admission_quorum)))
        return err;
    } else if (key == "tags") {
      const auto* tbl = node.as_table();
      if (!tbl)
        return bad(key, "expected a table of strings, got " + describe(node));
      for (auto&& [tk, tv] : *tbl) {
        const std::string tkey = "tags." + std::string{tk.str()};
        auto s = get_string(tv, tkey, "a string");
        if (!s)
          return s.error();
        if (auto err = parse_tag(std::string{tk.str()} + "=" + *s, tkey, cfg.tags))
          return err;
      }
    } else if (key == "service") {
      if (auto err = read_services(node, cfg))
        return err;
    } else if (key == "metrics") {
      if (auto err = read_metrics_table(node, cfg))
        return err;
    } else if (key == "dns") {
      if (auto err = read_dns_table(node, cfg))
        return err;
    } else if (key == "routing") {
      if (auto err = read_routing_table(node, cfg))
        return err;
    } else if (key == "proxy") {
      if (auto err = read_proxy_table(node, cfg))
        return err;
    } else {
      return bad(key, "unknown key (docs/operations.md lists the keys)");
    }
  }
  return {};
}

} // namespace

// -- public -------------------------------------------------------------------------------

std::string_view to_string(log_level l) noexcept {
  switch (l) {
  case log_level::trace:
    return "trace";
  case log_level::debug:
    return "debug";
  case log_level::info:
    return "info";
  case log_level::warn:
    return "warn";
  case log_level::error:
    return "error";
  case log_level::off:
    return "off";
  }
  return "info";
}

std::string_view to_string(log_format f) noexcept {
  return f == log_format::json ? "json" : "text";
}

caf::expected<gossip::duration> parse_duration(std::string_view text, std::string_view key) {
  auto fail = [&] {
    return bad(key, "expected a duration like \"500ms\", got " + quote_text(text));
  };
  if (text == "0")
    return gossip::duration::zero();
  if (text.empty())
    return fail();
  long double total_ns = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    // number: digits with an optional fraction
    std::size_t start = i;
    while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.'))
      ++i;
    if (i == start)
      return fail();
    auto num_text = std::string{text.substr(start, i - start)};
    if (std::count(num_text.begin(), num_text.end(), '.') > 1 || num_text.front() == '.' ||
        num_text.back() == '.')
      return fail();
    long double num = std::strtold(num_text.c_str(), nullptr);
    std::size_t ustart = i;
    while (i < text.size() && ((text[i] >= 'a' && text[i] <= 'z')))
      ++i;
    auto unit = text.substr(ustart, i - ustart);
    long double scale = 0;
    if (unit == "ns")
      scale = 1;
    else if (unit == "us")
      scale = 1e3L;
    else if (unit == "ms")
      scale = 1e6L;
    else if (unit == "s")
      scale = 1e9L;
    else if (unit == "m")
      scale = 60e9L;
    else if (unit == "h")
      scale = 3600e9L;
    else
      return fail();
    total_ns += num * scale;
  }
  // Bound: 100 years, far beyond any sensible setting and within int64 nanoseconds.
  if (total_ns > 100.0L * 365 * 24 * 3600e9L)
    return bad(key, "duration too large: " + quote_text(text));
  return gossip::duration{static_cast<gossip::duration::rep>(std::llround(total_ns))};
}

std::vector<config_value> plain_values(const agent_config& cfg) {
  const auto quoted = [](std::string_view text) { return '"' + std::string{text} + '"'; };
  const auto dur = [&](gossip::duration d) { return quoted(format_duration(d)); };
  const auto flag = [](bool b) { return std::string{b ? "true" : "false"}; };
  const auto num = [](std::uint64_t n) { return std::to_string(n); };
  const auto fraction = [](double x) {
    auto text = std::to_string(x); // "1.000000"
    while (text.size() > 3 && text.back() == '0' && text[text.size() - 2] != '.')
      text.pop_back();
    return text;
  };
  const auto& sw = cfg.swim;
  return {
      {"", "gossip", quoted(cfg.gossip.to_string())},
      {"", "admin", quoted(cfg.admin.to_string())},
      {"", "admin_allow_remote", flag(cfg.admin_allow_remote)},
      {"", "admin_open_reads", flag(cfg.admin_open_reads)},
      {"", "join_timeout", dur(cfg.join_timeout)},
      {"", "log_level", quoted(to_string(cfg.level))},
      {"", "log_format", quoted(to_string(cfg.format))},
      {"", "admission_quorum", num(cfg.admission_quorum)},
      {"", "cert_ttl", dur(cfg.cert_ttl)},
      {"gossip", "address", quoted(cfg.gossip.to_string())},
      {"gossip", "probe_interval", dur(sw.probe_interval)},
      {"gossip", "probe_timeout", dur(sw.probe_timeout)},
      {"gossip", "gossip_interval", dur(sw.gossip_interval)},
      {"gossip", "gossip_fanout", num(sw.gossip_fanout)},
      {"gossip", "gossip_to_dead", dur(sw.gossip_to_dead)},
      {"gossip", "indirect_checks", num(sw.indirect_checks)},
      {"gossip", "retransmit_mult", num(sw.retransmit_mult)},
      {"gossip", "suspicion_mult", num(sw.suspicion_mult)},
      {"gossip", "suspicion_max_mult", num(sw.suspicion_max_mult)},
      {"gossip", "awareness_max", num(sw.awareness_max)},
      {"gossip", "lifeguard", flag(sw.lifeguard)},
      {"gossip", "push_pull_interval", dur(sw.push_pull_interval)},
      {"gossip", "reap_after", dur(sw.reap_after)},
      {"gossip", "reaped_memory", dur(sw.reaped_memory)},
      {"gossip", "reaped_memory_max", num(sw.reaped_memory_max)},
      {"gossip", "max_datagram", num(sw.max_datagram)},
      {"gossip", "tcp_timeout", dur(cfg.tcp_timeout)},
      {"dns", "address", quoted(cfg.dns ? cfg.dns->to_string() : std::string{"off"})},
      {"dns", "domain", quoted(cfg.dns_domain)},
      {"dns", "dns_allow_remote", flag(cfg.dns_allow_remote)},
      {"metrics", "address", quoted(cfg.metrics ? cfg.metrics->to_string() : std::string{"off"})},
      {"metrics", "metrics_allow_remote", flag(cfg.metrics_allow_remote)},
      {"routing", "max_clock_skew", dur(cfg.max_clock_skew)},
      {"routing", "inline_section_max", num(cfg.inline_section_max)},
      {"proxy", "inbound", quoted(cfg.inbound ? cfg.inbound->to_string() : std::string{"off"})},
      {"proxy", "threads", num(cfg.proxy_threads)},
      {"proxy", "access_log", quoted(cfg.access_log)},
      {"proxy", "access_log_sample", fraction(cfg.access_log_sample)},
      {"proxy", "splice", flag(cfg.proxy_splice)},
      {"proxy", "http2_between_nodes", flag(cfg.proxy_http2)},
      {"proxy", "tunnel_idle_timeout", dur(cfg.proxy_tunnel_idle_timeout)},
      {"proxy", "keepalive", dur(cfg.proxy_keepalive)},
      {"proxy", "io", quoted(cfg.proxy_io)},
  };
}

std::string format_duration(gossip::duration d) {
  using namespace std::chrono;
  auto ns = duration_cast<nanoseconds>(d).count();
  if (ns == 0)
    return "0s";
  std::string out;
  if (ns % 1'000'000'000 != 0) {
    if (ns % 1'000'000 == 0)
      return std::to_string(ns / 1'000'000) + "ms";
    if (ns % 1'000 == 0)
      return std::to_string(ns / 1'000) + "us";
    return std::to_string(ns) + "ns";
  }
  auto s = ns / 1'000'000'000;
  if (s >= 3600) {
    out += std::to_string(s / 3600) + "h";
    s %= 3600;
  }
  if (s >= 60) {
    out += std::to_string(s / 60) + "m";
    s %= 60;
  }
  if (s > 0)
    out += std::to_string(s) + "s";
  return out;
}

caf::expected<host_port> parse_host_port(std::string_view text, std::string_view key) {
  auto parsed = wire::parse_host_port(text);
  if (!parsed) {
    if (parsed.problem == "port out of range")
      return bad(key, "expected HOST:PORT with a port from 0 to 65535, got " + quote_text(text));
    return bad(key, "expected HOST:PORT, got " + quote_text(text));
  }
  if (!is_valid_host(parsed.address->host))
    return bad(key, "expected HOST:PORT, got " + quote_text(text));
  return std::move(*parsed.address);
}

bool is_loopback_host(std::string_view host) {
  return host == "localhost" || host == "::1" || host.starts_with("127.");
}

void add_agent_flags(CLI::App& app, agent_flags& f) {
  auto str = [&app](const char* name, std::optional<std::string>& slot, const char* desc) {
    app.add_option_function<std::string>(
           name, [&slot](const std::string& v) { slot = v; }, desc)
        ->type_name("");
  };
  str("--config", f.config_file, "TOML config file (keys mirror these flags)");
  str("--name", f.name, "member name (default: the hostname)");
  str("--data-dir", f.data_dir, "state directory (default: ./starling-data/<name>)");
  str("--gossip", f.gossip, "gossip bind HOST:PORT, UDP+TCP (default 0.0.0.0:7946)");
  str("--advertise", f.advertise, "host other members use to reach this node");
  str("--admin", f.admin, "admin HOST:PORT (default 127.0.0.1:7947)");
  app.add_option("--join", f.join, "seed HOST:PORT to join through (repeatable)")->type_name("");
  str("--join-timeout", f.join_timeout, "give up joining after this long (default 60s)");
  app.add_option("--tag", f.tags, "tag k=v published with this node (repeatable)")->type_name("");
  str("--log-level", f.log_level, "trace|debug|info|warn|error|off (default info)");
  str("--log-format", f.log_format, "text|json (default text)");
  str("--event-log", f.event_log, "append member events as JSON lines to FILE");
  str("--gossip-key", f.gossip_key,
      "initial gossip encryption key, base64 (`starling keyring generate`); visible in "
      "`ps`: prefer --gossip-key-file or STARLING_GOSSIP_KEY");
  str("--gossip-key-file", f.gossip_key_file,
      "file holding the initial gossip key (mode 0600); env STARLING_GOSSIP_KEY also works");
  str("--keyring-file", f.keyring_file, "initial gossip keyring file");
  str("--issuer", f.issuer_dir, "issuer DIR (`starling ca issuer`): this node admits others");
  app.add_option("--token", f.tokens,
                 "join token from `starling token create` (first start only; repeatable: one "
                 "per issuer when admission_quorum > 1); visible in `ps`: prefer "
                 "--token-file or STARLING_TOKEN")
      ->type_name("");
  str("--token-file", f.token_file,
      "file of join tokens, one per line (mode 0600); env STARLING_TOKEN (tokens separated "
      "by commas or spaces) also works. Precedence: flags > environment > config file");
  str("--admission-quorum", f.admission_quorum,
      "distinct issuers that must vouch for every node certificate, 1 to 16 (default 1)");
  str("--cert-ttl", f.cert_ttl,
      "validity of the node certificates this issuer signs, 30s to 720h (default 24h)");
  str("--dns", f.dns,
      "DNS server HOST:PORT for <service>.<domain> names (default 127.0.0.1:8600; port 0 "
      "picks a free one; \"off\" disables it)");
  str("--metrics", f.metrics,
      "metrics/status HTTP server HOST:PORT for /metrics, /healthz, /readyz (default "
      "127.0.0.1:7949; port 0 picks a free one; \"off\" disables it)");
  str("--inbound", f.inbound,
      "data plane's inbound listener HOST:PORT, where peers' proxies reach this node's "
      "services (default 0.0.0.0:7948; port 0 picks a free one; \"off\" runs no proxy)");
}

std::vector<std::string> split_tokens(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (line.starts_with('#'))
      continue;
    std::string current;
    for (char c : line) {
      if (c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
        if (!current.empty())
          out.push_back(std::move(current));
        current.clear();
      } else {
        current += c;
      }
    }
    if (!current.empty())
      out.push_back(std::move(current));
  }
  return out;
}

agent_env agent_env::from_process() {
  agent_env env;
  auto get = [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0')
      return std::nullopt;
    return std::string{v};
  };
  env.token = get("STARLING_TOKEN");
  env.gossip_key = get("STARLING_GOSSIP_KEY");
  return env;
}

caf::expected<agent_config> make_agent_config(std::string_view toml_text, std::string_view source,
                                              const agent_flags& flags, const agent_env& env) {
  agent_config cfg;
  file_state st{cfg, std::nullopt, std::nullopt};
  if (!toml_text.empty()) {
    // Debian 12's toml++ (3.x) reaches __builtin_unreachable() on some non-ASCII characters
    // (its is_non_ascii_horizontal_whitespace misses cases; found by config_fuzz), which is
    // undefined behaviour in the agent. Every value Starling reads is ASCII except file
    // paths, which the command line can give; the file must be ASCII, comments included.
    for (std::size_t i = 0, line = 1, column = 1; i < toml_text.size(); ++i, ++column) {
      const auto byte = static_cast<unsigned char>(toml_text[i]);
      if (byte == '\n') {
        ++line;
        column = 0;
      } else if (byte >= 0x80) {
        return make_error(errc::invalid_config,
                          std::string{source} + ":" + std::to_string(line) + ":" +
                              std::to_string(column) +
                              ": the config file must be ASCII (a non-ASCII byte here); give "
                              "paths with other characters on the command line");
      }
    }
    toml::table root;
    try {
      root = toml::parse(toml_text, source);
    } catch (const toml::parse_error& e) {
      const auto& where = e.source().begin;
      return make_error(errc::invalid_config,
                        std::string{source} + ":" + std::to_string(where.line) + ":" +
                            std::to_string(where.column) + ": " + std::string{e.description()});
    }
    if (auto err = read_file_table(root, st))
      return err;
    if (st.token && st.token_file)
      return both_forms("token", "token_file");
    if (st.gossip_key && st.gossip_key_file)
      return both_forms("gossip_key", "gossip_key_file");
  }
  // The environment overrides the file (secrets kept out of `ps`), flags override both.
  if (env.token) {
    auto tokens = tokens_from_text(*env.token, "STARLING_TOKEN", "STARLING_TOKEN");
    if (!tokens)
      return tokens.error();
    cfg.tokens = std::move(*tokens);
  }
  if (env.gossip_key) {
    auto k = std::string{trim(*env.gossip_key)};
    if (auto err = validate_gossip_key(k, "STARLING_GOSSIP_KEY"))
      return err;
    cfg.gossip_key = k;
  }
  // Flags override the file.
  if (flags.name) {
    auto n = validate_name(*flags.name, "--name");
    if (!n)
      return n.error();
    st.name = *n;
  }
  if (flags.data_dir) {
    if (flags.data_dir->empty())
      return bad("--data-dir", "must not be empty");
    st.data_dir = *flags.data_dir;
  }
  if (flags.gossip) {
    auto hp = parse_host_port(*flags.gossip, "--gossip");
    if (!hp)
      return hp.error();
    cfg.gossip = *hp;
  }
  if (flags.advertise) {
    if (!is_valid_host(*flags.advertise))
      return bad("--advertise",
                 "expected a host name or address (no port), got " + quote_text(*flags.advertise));
    cfg.advertise = *flags.advertise;
  }
  if (flags.admin) {
    auto hp = parse_host_port(*flags.admin, "--admin");
    if (!hp)
      return hp.error();
    cfg.admin = *hp;
  }
  if (!flags.join.empty()) {
    cfg.join.clear();
    for (const auto& j : flags.join) {
      auto seed = parse_seed(j, "--join");
      if (!seed)
        return seed.error();
      cfg.join.push_back(*seed);
    }
  }
  if (flags.join_timeout) {
    auto d = parse_duration(*flags.join_timeout, "--join-timeout");
    if (!d)
      return d.error();
    if (*d <= gossip::duration::zero())
      return bad("--join-timeout",
                 "must be greater than 0, got " + quote_text(*flags.join_timeout));
    cfg.join_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  }
  for (const auto& t : flags.tags)
    if (auto err = parse_tag(t, "--tag", cfg.tags))
      return err;
  if (flags.log_level) {
    auto l = parse_level(*flags.log_level, "--log-level");
    if (!l)
      return l.error();
    cfg.level = *l;
  }
  if (flags.log_format) {
    auto f = parse_format(*flags.log_format, "--log-format");
    if (!f)
      return f.error();
    cfg.format = *f;
  }
  if (flags.event_log)
    cfg.event_log = *flags.event_log;
  if (flags.gossip_key && flags.gossip_key_file)
    return both_forms("--gossip-key", "--gossip-key-file");
  if (flags.gossip_key) {
    if (auto err = validate_gossip_key(*flags.gossip_key, "--gossip-key"))
      return err;
    cfg.gossip_key = *flags.gossip_key;
  } else if (flags.gossip_key_file) {
    auto k = read_gossip_key_file(*flags.gossip_key_file, "--gossip-key-file", cfg.warnings);
    if (!k)
      return k.error();
    cfg.gossip_key = *k;
  }
  if (flags.keyring_file) {
    if (auto err = validate_keyring_file(*flags.keyring_file, "--keyring-file"))
      return err;
    cfg.keyring_file = *flags.keyring_file;
  }
  if (flags.issuer_dir) {
    if (auto err = validate_issuer_dir(*flags.issuer_dir, "--issuer"))
      return err;
    cfg.issuer_dir = *flags.issuer_dir;
  }
  if (!flags.tokens.empty() && flags.token_file)
    return both_forms("--token", "--token-file");
  if (!flags.tokens.empty()) {
    cfg.tokens.clear();
    for (const auto& t : flags.tokens) {
      if (auto err = validate_token(t, "--token"))
        return err;
      cfg.tokens.push_back(t);
    }
  } else if (flags.token_file) {
    auto tokens = read_token_file(*flags.token_file, "--token-file", cfg.warnings);
    if (!tokens)
      return tokens.error();
    cfg.tokens = std::move(*tokens);
  }
  if (flags.admission_quorum) {
    const auto& text = *flags.admission_quorum;
    std::size_t q = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), q);
    if (ec != std::errc{} || ptr != text.data() + text.size() || q < 1 ||
        q > identity::max_admission_quorum)
      return bad("--admission-quorum", "expected an integer from 1 to " +
                                           std::to_string(identity::max_admission_quorum) +
                                           ", got " + quote_text(text));
    cfg.admission_quorum = q;
  }
  if (flags.cert_ttl) {
    auto ttl = parse_cert_ttl(*flags.cert_ttl, "--cert-ttl");
    if (!ttl)
      return ttl.error();
    cfg.cert_ttl = *ttl;
  }
  if (flags.dns) {
    auto address = parse_dns_address(*flags.dns, "--dns");
    if (!address)
      return address.error();
    cfg.dns = *address;
  }
  if (flags.metrics) {
    auto address = parse_metrics_address(*flags.metrics, "--metrics");
    if (!address)
      return address.error();
    cfg.metrics = *address;
  }
  if (flags.inbound) {
    auto address = parse_inbound_address(*flags.inbound, "--inbound");
    if (!address)
      return address.error();
    cfg.inbound = *address;
  }
  // Defaults that depend on other values.
  if (st.name) {
    cfg.name = *st.name;
  } else {
    auto host = hostname_or_empty();
    auto n = validate_name(host, "name");
    if (!n)
      return bad("name", "the hostname " + quote_text(host) +
                             " is not a valid member name: set name or --name");
    cfg.name = *n;
  }
  cfg.data_dir = st.data_dir ? std::filesystem::path{*st.data_dir}
                             : std::filesystem::path{"starling-data"} / cfg.name;
  // Cross-key checks.
  if (cfg.swim.probe_timeout > cfg.swim.probe_interval)
    return bad("gossip.probe_timeout", "must not exceed gossip.probe_interval (" +
                                           format_duration(cfg.swim.probe_interval) + "), got " +
                                           format_duration(cfg.swim.probe_timeout));
  if (cfg.swim.suspicion_max_mult < 1)
    return bad("gossip.suspicion_max_mult", "must be at least 1");
  if (!cfg.tokens.empty() && cfg.join.empty())
    return bad("token", "a join token needs a seed to present it to: set join or --join");
  if (auto err = check_tokens(cfg.tokens, cfg.admission_quorum))
    return err;
  if (!is_loopback_host(cfg.admin.host) && !cfg.admin_allow_remote)
    return bad("admin", cfg.admin.to_string() +
                            " is not a loopback address and the admin credential would travel "
                            "in the clear; set admin_allow_remote = true to allow it (or reach "
                            "the loopback port through SSH)");
  if (cfg.dns && !is_loopback_host(cfg.dns->host) && !cfg.dns_allow_remote)
    return bad(flags.dns ? "--dns" : "dns.address",
               cfg.dns->to_string() +
                   " is not a loopback address and the DNS server would tell whoever reaches it "
                   "the mesh's service addresses; set dns_allow_remote = true in [dns] to allow "
                   "it");
  if (cfg.metrics && !is_loopback_host(cfg.metrics->host) && !cfg.metrics_allow_remote)
    return bad(flags.metrics ? "--metrics" : "metrics.address",
               cfg.metrics->to_string() +
                   " is not a loopback address and the metrics would tell whoever reaches it "
                   "the mesh's members and services; set metrics_allow_remote = true in "
                   "[metrics] to allow it");
  return cfg;
}

caf::expected<agent_config> load_agent_config(const agent_flags& flags) {
  std::string text;
  std::string source = "(no config file)";
  if (flags.config_file) {
    source = *flags.config_file;
    std::ifstream in{*flags.config_file, std::ios::binary};
    if (!in)
      return bad("--config", "cannot read " + quote_text(*flags.config_file));
    std::ostringstream buf;
    buf << in.rdbuf();
    text = buf.str();
  }
  return make_agent_config(text, source, flags, agent_env::from_process());
}

} // namespace starling::actors
