#include "actors/service_spec.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <utility>

#include <caf/message.hpp>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include "actors/config.hpp"
#include "actors/errc.hpp"
#include "actors/node_files.hpp"
#include "identity/errc.hpp"
#include "identity/files.hpp"

namespace starling::actors {

namespace {

namespace fs = std::filesystem;
using gossip::health_check_kind;
using gossip::service_protocol;
using json = nlohmann::json;

/// Bounds of a `register` request: above the 16 keys a registration has, and above any
/// value but a long list of long tags (16 tags of 64 bytes join to 1,039): such a list goes
/// in the config file.
constexpr std::size_t max_args = 32;
constexpr std::size_t max_arg_bytes = 512;
/// Bound on services.json: 64 registrations of a few KiB at most each.
constexpr std::size_t max_store_bytes = std::size_t{1} << 20;
constexpr const char* store_name = "services.json";
constexpr std::uint64_t store_format = 1;

/// The keys of a registration. `key_name` spells each the way a source does.
enum class field : std::uint8_t {
  name,
  id,
  address,
  port,
  protocol,
  tags,
  version,
  weight,
  check,
  check_path,
  check_expect,
  check_interval,
  check_timeout,
  check_rise,
  check_fall,
  check_grpc_service,
};
constexpr std::size_t field_count = 16;

/// How a source spells keys: `register`'s arguments ("check_path"), or the fields of the
/// JSON form and of the config's [[service]] tables ("check.path").
enum class spelling : std::uint8_t { args, fields };

constexpr std::array<std::string_view, field_count> arg_keys{
    "name",          "id",         "address",      "port",
    "protocol",      "tags",       "version",      "weight",
    "check",         "check_path", "check_expect", "check_interval",
    "check_timeout", "check_rise", "check_fall",   "check_grpc_service"};
constexpr std::array<std::string_view, field_count> field_keys{
    "name",          "id",         "address",      "port",
    "protocol",      "tags",       "version",      "weight",
    "check.type",    "check.path", "check.expect", "check.interval",
    "check.timeout", "check.rise", "check.fall",   "check.grpc_service"};

std::string_view key_name(field f, spelling s) {
  const auto i = static_cast<std::size_t>(f);
  return s == spelling::args ? arg_keys[i] : field_keys[i];
}

/// `text` for a message: at most 64 bytes, control characters and non-ASCII bytes as '?'
/// (the text may come from a request or a file and ends up on a terminal).
std::string printable(std::string_view text) {
  constexpr std::size_t max_shown = 64;
  std::string out;
  for (char c : text.substr(0, max_shown)) {
    const auto u = static_cast<unsigned char>(c);
    out += u < 0x20 || u >= 0x7f ? '?' : c;
  }
  if (text.size() > max_shown)
    out += "...";
  return out;
}

/// A value in single quotes for a message ("'0'").
std::string shown(std::string_view text) { return "'" + printable(text) + "'"; }

/// A JSON value for a message.
std::string rendered(const json& j) {
  return printable(j.dump(-1, ' ', true, json::error_handler_t::replace));
}

/// Names keys in errors: "register: port: ...", "service[0].port: ...", "port: ...".
struct reporter {
  /// What holds the keys: "register", "service[0]", "/x/services.json: services[1]", or
  /// empty.
  std::string where;
  spelling keys;
  errc code;

  [[nodiscard]] std::string key(std::string_view k) const {
    if (where.empty())
      return std::string{k};
    return where + (keys == spelling::args ? ": " : ".") + std::string{k};
  }
  [[nodiscard]] std::string key(field f) const { return key(key_name(f, keys)); }
  /// The name of the whole registration in messages.
  [[nodiscard]] std::string whole() const { return where.empty() ? "service" : where; }

  [[nodiscard]] caf::error fail(std::string_view k, std::string_view why) const {
    return make_error(code, key(k) + ": " + std::string{why});
  }
  [[nodiscard]] caf::error fail(field f, std::string_view why) const {
    return fail(key_name(f, keys), why);
  }
};

/// A decimal unsigned integer of digits only, at most `max`.
std::optional<std::uint64_t> parse_uint(std::string_view text, std::uint64_t max) {
  std::uint64_t v = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc{} || ptr != end || v > max)
    return std::nullopt;
  return v;
}

/// The range of an integer key, as its message says it ("is not 1 to 65535").
std::string_view range_of(field f) {
  switch (f) {
  case field::port:
    return "1 to 65535";
  case field::weight:
    return "1 to 1000";
  case field::check_expect:
    return "0 (any 2xx) or 100 to 599";
  default:
    return "1 to 10";
  }
}

/// The bound an integer key is read within before the checks of gossip decide (what its
/// type holds).
std::uint64_t type_max(field f) {
  switch (f) {
  case field::port:
  case field::check_expect:
    return std::numeric_limits<std::uint16_t>::max();
  default:
    return std::numeric_limits<std::uint32_t>::max();
  }
}

caf::expected<gossip::duration> read_duration_text(std::string_view text, field f,
                                                   const reporter& r) {
  auto d = parse_duration(text, r.key(f));
  if (!d) // parse_duration's message names the key; the code is the source's
    return make_error(r.code, message_of(d.error()));
  return *d;
}

/// The field of check_health_spec's message "health check <field>: <why>" and its <why>.
std::pair<std::optional<field>, std::string> health_refusal(const caf::error& err) {
  std::string text;
  if (err.context().match_elements<std::string>())
    text = err.context().get_as<std::string>(0);
  constexpr std::string_view lead = "health check ";
  static constexpr std::array<std::pair<std::string_view, field>, 8> names{{
      {"kind", field::check},
      {"grpc_service", field::check_grpc_service},
      {"path", field::check_path},
      {"expected_status", field::check_expect},
      {"interval", field::check_interval},
      {"timeout", field::check_timeout},
      {"rise", field::check_rise},
      {"fall", field::check_fall},
  }};
  if (std::string_view{text}.starts_with(lead)) {
    const auto rest = std::string_view{text}.substr(lead.size());
    for (const auto& [name, f] : names)
      if (rest.starts_with(name) && rest.substr(name.size()).starts_with(": "))
        return {f, std::string{rest.substr(name.size() + 2)}};
  }
  return {std::nullopt, text.empty() ? std::string{"invalid health check"} : text};
}

/// Fills the defaults (an empty id is the name; tags sorted and distinct) and checks `spec`
/// with gossip::check_registration and gossip::check_health_spec, naming the key at fault.
caf::error complete(service_spec& spec, const reporter& r) {
  auto& reg = spec.reg;
  if (reg.id.empty())
    reg.id = reg.service;
  std::sort(reg.tags.begin(), reg.tags.end());
  reg.tags.erase(std::unique(reg.tags.begin(), reg.tags.end()), reg.tags.end());
  // gossip decides what is valid. Each field is put alone on a registration that passes, so
  // that a refusal names the key at fault.
  gossip::service_registration base;
  base.service = "x";
  base.id = "x";
  base.port = 1;
  const auto passes = [&base](auto set) {
    auto probe = base;
    set(probe);
    return !gossip::check_registration(probe);
  };
  using reg_t = gossip::service_registration;
  if (!passes([&](reg_t& p) { p.service = reg.service; }))
    return r.fail(field::name, shown(reg.service) +
                                   " is not a DNS label (1 to 63 lowercase letters, digits, '-')");
  if (!passes([&](reg_t& p) { p.id = reg.id; }))
    return r.fail(field::id, shown(reg.id) + " is not 1 to 64 of [A-Za-z0-9._-]");
  if (!passes([&](reg_t& p) { p.address = reg.address; }))
    return r.fail(field::address,
                  shown(reg.address) + " is not an IP literal (leave it out for the node's)");
  if (!passes([&](reg_t& p) { p.port = reg.port; }))
    return r.fail(field::port, shown(std::to_string(reg.port)) + " is not 1 to 65535");
  if (!passes([&](reg_t& p) { p.protocol = reg.protocol; }))
    return r.fail(field::protocol, std::to_string(static_cast<unsigned>(reg.protocol)) +
                                       " is not tcp, http or http2");
  if (reg.tags.size() > gossip::max_tags)
    return r.fail(field::tags, std::to_string(reg.tags.size()) + " tags, more than " +
                                   std::to_string(gossip::max_tags));
  for (const auto& tag : reg.tags) {
    // A comma would split the tag in register's tags=a,b: one tag, one meaning everywhere.
    if (!passes([&](reg_t& p) { p.tags = {tag}; }) || tag.find(',') != std::string::npos)
      return r.fail(field::tags, shown(tag) + " is not a tag (1 to " +
                                     std::to_string(gossip::max_tag_bytes) +
                                     " printable ASCII characters, no space or ',')");
  }
  if (!passes([&](reg_t& p) { p.version = reg.version; }))
    return r.fail(field::version, shown(reg.version) + " is not at most 32 of [A-Za-z0-9._-]");
  if (!passes([&](reg_t& p) { p.weight = reg.weight; }))
    return r.fail(field::weight, shown(std::to_string(reg.weight)) + " is not 1 to 1000");
  if (auto err = gossip::check_registration(reg)) // what no single key explains
    return make_error(r.code, r.whole() + ": " + message_of(err));
  if (!spec.check)
    return {};
  const auto& check = *spec.check;
  if (check.kind != health_check_kind::http) {
    // Ignored by a tcp or grpc check: refused rather than silently dropped.
    if (check.path != gossip::health_check_spec{}.path)
      return r.fail(field::check_path, "only for an http check");
    if (check.expected_status != 0)
      return r.fail(field::check_expect, "only for an http check");
  }
  if (auto err = gossip::check_health_spec(check)) {
    auto [f, why] = health_refusal(err);
    return r.fail(f ? key_name(*f, r.keys) : std::string_view{"check"}, why);
  }
  return {};
}

// -- the JSON form -------------------------------------------------------------------------

caf::expected<std::string> json_string(const json& v, field f, const reporter& r) {
  if (!v.is_string())
    return r.fail(f, "expected a string, got " + rendered(v));
  return v.get<std::string>();
}

caf::expected<std::uint64_t> json_uint(const json& v, field f, const reporter& r) {
  if (!v.is_number_integer())
    return r.fail(f, "expected an integer, got " + rendered(v));
  if (v.is_number_unsigned() ? v.get<std::uint64_t>() > type_max(f) : v.get<std::int64_t>() < 0)
    return r.fail(f, shown(rendered(v)) + " is not " + std::string{range_of(f)});
  if (v.is_number_unsigned())
    return v.get<std::uint64_t>();
  const auto n = static_cast<std::uint64_t>(v.get<std::int64_t>());
  if (n > type_max(f))
    return r.fail(f, shown(rendered(v)) + " is not " + std::string{range_of(f)});
  return n;
}

caf::expected<gossip::duration> json_duration(const json& v, field f, const reporter& r) {
  if (!v.is_string())
    return r.fail(f, "expected a duration like \"10s\", got " + rendered(v));
  return read_duration_text(v.get_ref<const std::string&>(), f, r);
}

caf::expected<gossip::health_check_spec> json_check(const json& j, const reporter& r) {
  if (!j.is_object())
    return r.fail("check", "expected an object or null, got " + rendered(j));
  static constexpr std::array<std::string_view, 8> known{
      "type", "path", "expect", "interval", "timeout", "rise", "fall", "grpc_service"};
  for (const auto& [k, v] : j.items())
    if (std::find(known.begin(), known.end(), k) == known.end())
      return r.fail("check." + printable(k), "unknown key (type, path, expect, interval, "
                                             "timeout, rise, fall, grpc_service)");
  gossip::health_check_spec spec;
  auto type = j.find("type");
  if (type == j.end())
    return r.fail(field::check, "missing (tcp, http or grpc)");
  auto kind_text = json_string(*type, field::check, r);
  if (!kind_text)
    return kind_text.error();
  auto kind = gossip::parse_health_check_kind(*kind_text);
  if (!kind)
    return r.fail(field::check, shown(*kind_text) + " is not tcp, http or grpc");
  spec.kind = *kind;
  if (auto it = j.find("path"); it != j.end()) {
    auto s = json_string(*it, field::check_path, r);
    if (!s)
      return s.error();
    spec.path = std::move(*s);
  }
  if (auto it = j.find("grpc_service"); it != j.end()) {
    auto s = json_string(*it, field::check_grpc_service, r);
    if (!s)
      return s.error();
    spec.grpc_service = std::move(*s);
  }
  struct uint_key {
    const char* name;
    field f;
  };
  for (const auto& [name, f] :
       {uint_key{"expect", field::check_expect}, uint_key{"rise", field::check_rise},
        uint_key{"fall", field::check_fall}}) {
    auto it = j.find(name);
    if (it == j.end())
      continue;
    auto n = json_uint(*it, f, r);
    if (!n)
      return n.error();
    if (f == field::check_expect)
      spec.expected_status = static_cast<std::uint16_t>(*n);
    else
      (f == field::check_rise ? spec.rise : spec.fall) = static_cast<std::uint32_t>(*n);
  }
  for (const auto& [name, f] :
       {uint_key{"interval", field::check_interval}, uint_key{"timeout", field::check_timeout}}) {
    auto it = j.find(name);
    if (it == j.end())
      continue;
    auto d = json_duration(*it, f, r);
    if (!d)
      return d.error();
    (f == field::check_interval ? spec.interval : spec.timeout) = *d;
  }
  return spec;
}

caf::expected<service_spec> from_json(const json& j, const reporter& r) {
  if (!j.is_object())
    return make_error(r.code, r.whole() + ": expected an object, got " + rendered(j));
  static constexpr std::array<std::string_view, 9> known{
      "name", "id", "address", "port", "protocol", "tags", "version", "weight", "check"};
  for (const auto& [k, v] : j.items())
    if (std::find(known.begin(), known.end(), k) == known.end())
      return r.fail(printable(k), "unknown key (name, id, address, port, protocol, tags, "
                                  "version, weight, check)");
  service_spec spec;
  auto& reg = spec.reg;
  struct string_key {
    field f;
    std::string* out;
    bool required;
  };
  for (const auto& [f, out, required] :
       {string_key{field::name, &reg.service, true}, string_key{field::id, &reg.id, false},
        string_key{field::address, &reg.address, false},
        string_key{field::version, &reg.version, false}}) {
    auto it = j.find(key_name(f, spelling::fields));
    if (it == j.end()) {
      if (required)
        return r.fail(f, "missing");
      continue;
    }
    auto s = json_string(*it, f, r);
    if (!s)
      return s.error();
    *out = std::move(*s);
  }
  auto port = j.find("port");
  if (port == j.end())
    return r.fail(field::port, "missing");
  auto p = json_uint(*port, field::port, r);
  if (!p)
    return p.error();
  reg.port = static_cast<std::uint16_t>(*p);
  if (auto it = j.find("weight"); it != j.end()) {
    auto w = json_uint(*it, field::weight, r);
    if (!w)
      return w.error();
    reg.weight = static_cast<std::uint32_t>(*w);
  }
  if (auto it = j.find("protocol"); it != j.end()) {
    auto s = json_string(*it, field::protocol, r);
    if (!s)
      return s.error();
    auto named = gossip::service_protocol_named(*s);
    if (!named)
      return r.fail(field::protocol, shown(*s) + " is not tcp, http, http2 or grpc");
    reg.protocol = *named;
  }
  if (auto it = j.find("tags"); it != j.end()) {
    if (!it->is_array())
      return r.fail(field::tags, "expected an array of strings, got " + rendered(*it));
    if (it->size() > gossip::max_tags) // before copying any of them
      return r.fail(field::tags, std::to_string(it->size()) + " tags, more than " +
                                     std::to_string(gossip::max_tags));
    for (const auto& t : *it) {
      auto s = json_string(t, field::tags, r);
      if (!s)
        return s.error();
      reg.tags.push_back(std::move(*s));
    }
  }
  if (auto it = j.find("check"); it != j.end() && !it->is_null()) {
    auto check = json_check(*it, r);
    if (!check)
      return check.error();
    spec.check = std::move(*check);
  }
  if (auto err = complete(spec, r))
    return err;
  return spec;
}

// -- services.json -------------------------------------------------------------------------

caf::error io_failure(std::string what, const fs::path& file, int err) {
  return make_error(errc::io_failure,
                    std::move(what) + " " + file.string() + ": " + std::strerror(err));
}

/// Refuses two services of one (name, id), naming both entries after `file`.
caf::error check_distinct(const std::vector<service_spec>& services, const std::string& file) {
  std::map<std::pair<std::string, std::string>, std::size_t> seen;
  for (std::size_t i = 0; i < services.size(); ++i) {
    const auto& reg = services[i].reg;
    auto [it, fresh] = seen.emplace(std::pair{reg.service, reg.id}, i);
    if (!fresh)
      return make_error(errc::invalid_config, file + ": services[" + std::to_string(i) +
                                                  "]: same name and id as services[" +
                                                  std::to_string(it->second) + "] (name " +
                                                  printable(reg.service) + ", id " +
                                                  printable(reg.id) + ")");
  }
  return {};
}

} // namespace

// -- public --------------------------------------------------------------------------------

caf::expected<service_spec> parse_service_args(const std::vector<std::string>& kv) {
  const reporter r{"register", spelling::args, errc::bad_request};
  if (kv.size() > max_args)
    return make_error(r.code, "register: " + std::to_string(kv.size()) + " arguments, at most " +
                                  std::to_string(max_args));
  std::array<std::optional<std::string_view>, field_count> given;
  for (const auto& entry : kv) {
    const auto eq = entry.find('=');
    if (entry.size() > max_arg_bytes)
      return r.fail(printable(std::string_view{entry}.substr(0, eq)),
                    std::to_string(entry.size()) + " bytes, more than " +
                        std::to_string(max_arg_bytes));
    if (eq == std::string::npos || eq == 0)
      return make_error(r.code, "register: expected key=value, got " + shown(entry));
    const std::string_view key = std::string_view{entry}.substr(0, eq);
    const auto at = std::find(arg_keys.begin(), arg_keys.end(), key);
    if (at == arg_keys.end())
      return r.fail(printable(key), "unknown key (name, port, protocol, tags, version, weight, "
                                    "address, id, check, check_path, check_expect, "
                                    "check_interval, check_timeout, check_rise, check_fall, "
                                    "check_grpc_service)");
    auto& slot = given[static_cast<std::size_t>(at - arg_keys.begin())];
    if (slot)
      return r.fail(key, "given twice");
    slot = std::string_view{entry}.substr(eq + 1);
  }
  const auto value = [&given](field f) -> const std::optional<std::string_view>& {
    return given[static_cast<std::size_t>(f)];
  };
  service_spec spec;
  auto& reg = spec.reg;
  if (!value(field::name))
    return r.fail(field::name, "missing (name=<service>)");
  if (!value(field::port))
    return r.fail(field::port, "missing (port=<1 to 65535>)");
  reg.service = *value(field::name);
  if (value(field::id))
    reg.id = *value(field::id);
  if (value(field::address))
    reg.address = *value(field::address);
  if (value(field::version))
    reg.version = *value(field::version);
  // Integers: read within their type here; gossip's checks decide the range below.
  const auto integer = [&](field f) -> caf::expected<std::uint64_t> {
    auto n = parse_uint(*value(f), type_max(f));
    if (!n)
      return r.fail(f, shown(*value(f)) + " is not " + std::string{range_of(f)});
    return *n;
  };
  auto port = integer(field::port);
  if (!port)
    return port.error();
  reg.port = static_cast<std::uint16_t>(*port);
  if (value(field::weight)) {
    auto w = integer(field::weight);
    if (!w)
      return w.error();
    reg.weight = static_cast<std::uint32_t>(*w);
  }
  if (const auto& p = value(field::protocol)) {
    auto named = gossip::service_protocol_named(*p);
    if (!named)
      return r.fail(field::protocol, shown(*p) + " is not tcp, http, http2 or grpc");
    reg.protocol = *named;
  }
  if (const auto& t = value(field::tags); t && !t->empty()) {
    std::string_view rest = *t;
    for (;;) {
      const auto comma = rest.find(',');
      reg.tags.emplace_back(rest.substr(0, comma));
      if (comma == std::string_view::npos)
        break;
      rest.remove_prefix(comma + 1);
    }
  }
  if (!value(field::check)) {
    for (auto f :
         {field::check_path, field::check_expect, field::check_interval, field::check_timeout,
          field::check_rise, field::check_fall, field::check_grpc_service})
      if (value(f))
        return r.fail(f, "needs check=tcp, check=http or check=grpc");
  } else {
    gossip::health_check_spec check;
    auto kind = gossip::parse_health_check_kind(*value(field::check));
    if (!kind)
      return r.fail(field::check, shown(*value(field::check)) + " is not tcp, http or grpc");
    check.kind = *kind;
    if (value(field::check_path))
      check.path = *value(field::check_path);
    if (value(field::check_grpc_service))
      check.grpc_service = *value(field::check_grpc_service);
    for (auto f : {field::check_expect, field::check_rise, field::check_fall}) {
      if (!value(f))
        continue;
      auto n = integer(f);
      if (!n)
        return n.error();
      if (f == field::check_expect)
        check.expected_status = static_cast<std::uint16_t>(*n);
      else
        (f == field::check_rise ? check.rise : check.fall) = static_cast<std::uint32_t>(*n);
    }
    for (auto f : {field::check_interval, field::check_timeout}) {
      if (!value(f))
        continue;
      auto d = read_duration_text(*value(f), f, r);
      if (!d)
        return d.error();
      (f == field::check_interval ? check.interval : check.timeout) = *d;
    }
    spec.check = std::move(check);
  }
  if (auto err = complete(spec, r))
    return err;
  return spec;
}

std::vector<std::string> service_args(const service_spec& spec) {
  const auto& reg = spec.reg;
  std::vector<std::string> out{"name=" + reg.service, "port=" + std::to_string(reg.port),
                               "protocol=" + std::string{gossip::to_string(reg.protocol)}};
  if (reg.id != reg.service)
    out.push_back("id=" + reg.id);
  if (!reg.address.empty())
    out.push_back("address=" + reg.address);
  if (!reg.tags.empty()) {
    std::string tags = "tags=";
    for (std::size_t i = 0; i < reg.tags.size(); ++i)
      tags += (i == 0 ? "" : ",") + reg.tags[i];
    out.push_back(std::move(tags));
  }
  if (!reg.version.empty())
    out.push_back("version=" + reg.version);
  out.push_back("weight=" + std::to_string(reg.weight));
  if (spec.check) {
    const auto& c = *spec.check;
    out.push_back("check=" + std::string{gossip::to_string(c.kind)});
    if (c.kind == health_check_kind::http) {
      out.push_back("check_path=" + c.path);
      out.push_back("check_expect=" + std::to_string(c.expected_status));
    }
    if (c.kind == health_check_kind::grpc && !c.grpc_service.empty())
      out.push_back("check_grpc_service=" + c.grpc_service);
    out.push_back("check_interval=" + format_duration(c.interval));
    out.push_back("check_timeout=" + format_duration(c.timeout));
    out.push_back("check_rise=" + std::to_string(c.rise));
    out.push_back("check_fall=" + std::to_string(c.fall));
  }
  return out;
}

nlohmann::json service_json(const service_spec& spec) {
  const auto& reg = spec.reg;
  json j{{"name", reg.service},
         {"id", reg.id},
         {"address", reg.address},
         {"port", reg.port},
         {"protocol", gossip::to_string(reg.protocol)},
         {"tags", reg.tags},
         {"version", reg.version},
         {"weight", reg.weight},
         {"check", nullptr}};
  if (spec.check) {
    const auto& c = *spec.check;
    json check{{"type", gossip::to_string(c.kind)},
               {"interval", format_duration(c.interval)},
               {"timeout", format_duration(c.timeout)},
               {"rise", c.rise},
               {"fall", c.fall}};
    if (c.kind == health_check_kind::http) {
      check["path"] = c.path;
      check["expect"] = c.expected_status;
    }
    if (c.kind == health_check_kind::grpc)
      check["grpc_service"] = c.grpc_service;
    j["check"] = std::move(check);
  }
  return j;
}

caf::expected<service_spec> service_from_json(const nlohmann::json& j, std::string_view where) {
  return from_json(j, reporter{std::string{where}, spelling::fields, errc::invalid_config});
}

caf::expected<service_store> load_service_store(const fs::path& data_dir) {
  const auto file = data_dir / store_name;
  const auto name = file.string();
  struct ::stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return service_store{};
    return io_failure("cannot stat", file, errno);
  }
  if (!S_ISREG(st.st_mode))
    return make_error(errc::io_failure, "cannot read " + name + ": not a regular file");
  // Refused before reading: a services.json is far smaller (read_file bounds it again).
  if (static_cast<std::uintmax_t>(st.st_size) > max_store_bytes)
    return make_error(errc::io_failure, "cannot read " + name + ": " + std::to_string(st.st_size) +
                                            " bytes, more than " + std::to_string(max_store_bytes));
  auto text = identity::read_file(file, max_store_bytes);
  if (!text)
    return make_error(errc::io_failure, identity::render(text.error()));
  const auto doc = json::parse(*text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return make_error(errc::invalid_config, name + ": not a JSON object (a services.json)");
  const auto refuse = [&name](std::string_view key, std::string why) {
    return make_error(errc::invalid_config, name + ": " + std::string{key} + ": " + why);
  };
  for (const auto& [k, v] : doc.items())
    if (k != "version" && k != "last_version" && k != "services")
      return refuse(printable(k), "unknown key (version, last_version, services)");
  auto version = doc.find("version");
  if (version == doc.end() || !version->is_number_unsigned() ||
      version->get<std::uint64_t>() != store_format)
    return refuse("version", "expected 1, got " + (version == doc.end() ? std::string{"nothing"}
                                                                        : rendered(*version)));
  service_store store;
  auto last = doc.find("last_version");
  if (last == doc.end() || !last->is_number_unsigned())
    return refuse("last_version",
                  "expected an unsigned integer, got " +
                      (last == doc.end() ? std::string{"nothing"} : rendered(*last)));
  store.last_version = last->get<std::uint64_t>();
  auto services = doc.find("services");
  if (services == doc.end() || !services->is_array())
    return refuse("services", "expected an array");
  if (services->size() > gossip::max_instances_per_owner)
    return refuse("services", std::to_string(services->size()) + " services, more than " +
                                  std::to_string(gossip::max_instances_per_owner));
  const auto where = [&name](std::size_t i) {
    return name + ": services[" + std::to_string(i) + "]";
  };
  for (std::size_t i = 0; i < services->size(); ++i) {
    auto spec = service_from_json((*services)[i], where(i));
    if (!spec)
      return spec.error();
    store.services.push_back(std::move(*spec));
  }
  if (auto err = check_distinct(store.services, name))
    return err;
  return store;
}

caf::error save_service_store(const fs::path& data_dir, const service_store& store) {
  const auto file = data_dir / store_name;
  const auto name = file.string();
  // Runtime registrations only: the config's services come from the config at each start.
  std::vector<service_spec> kept;
  for (const auto& s : store.services)
    if (!s.from_config)
      kept.push_back(s);
  if (kept.size() > gossip::max_instances_per_owner)
    return make_error(errc::invalid_config, name + ": services: " + std::to_string(kept.size()) +
                                                " services, more than " +
                                                std::to_string(gossip::max_instances_per_owner));
  const auto where = [&name](std::size_t i) {
    return name + ": services[" + std::to_string(i) + "]";
  };
  // What is written loads back: every entry as load_service_store checks it.
  json services = json::array();
  for (std::size_t i = 0; i < kept.size(); ++i) {
    auto checked = kept[i];
    if (auto err = complete(checked, reporter{where(i), spelling::fields, errc::invalid_config}))
      return err;
    if (!(checked == kept[i]))
      return make_error(errc::invalid_config,
                        where(i) + ": not in its complete form (id set, tags sorted and distinct)");
    services.push_back(service_json(kept[i]));
  }
  if (auto err = check_distinct(kept, name))
    return err;
  const json doc{{"version", store_format},
                 {"last_version", store.last_version},
                 {"services", std::move(services)}};
  auto text = doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  if (text.size() > max_store_bytes)
    return make_error(errc::invalid_config, name + ": " + std::to_string(text.size()) +
                                                " bytes, more than " +
                                                std::to_string(max_store_bytes));
  return write_file_atomic(file, text, 0600);
}

} // namespace starling::actors
