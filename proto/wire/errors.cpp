#include "proto/wire/errors.hpp"

#include <array>
#include <map>
#include <mutex>
#include <shared_mutex>

#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace starling::wire {

namespace {

/// The registered categories. A function-local static: registrations run during static
/// initialization of other translation units, in no particular order.
struct registry {
  registry();
  std::shared_mutex mutex;
  std::map<caf::atom_value, error_code_namer> namers;
};

/// CAF's own codes (category "system": request_timeout, ...), named by CAF: kept here so
/// that a timeout or a lost actor renders with a name like a module's error.
const char* caf_sec_name(std::uint8_t code) noexcept {
  static const auto names = [] {
    std::array<std::string, 256> out;
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = caf::to_string(static_cast<caf::sec>(i));
    return out;
  }();
  const auto& name = names[code];
  // CAF writes an unknown code as "<unknown>" (or leaves it empty): not a name.
  return name.empty() || name.front() == '<' || name.front() == '?' ? nullptr : name.c_str();
}

registry::registry() { namers[caf::atom("system")] = caf_sec_name; }

registry& the_registry() {
  static registry r;
  return r;
}

} // namespace

bool register_error_category(caf::atom_value category, error_code_namer namer) {
  auto& r = the_registry();
  std::unique_lock lock{r.mutex};
  r.namers[category] = namer;
  return true;
}

std::optional<std::string_view> error_code_name(caf::atom_value category, std::uint8_t code) {
  auto& r = the_registry();
  std::shared_lock lock{r.mutex};
  auto it = r.namers.find(category);
  if (it == r.namers.end() || it->second == nullptr)
    return std::nullopt;
  const char* name = it->second(code);
  if (name == nullptr)
    return std::nullopt;
  return std::string_view{name};
}

std::string render_error(const caf::error& err) {
  if (!err)
    return "no error";
  std::string out = caf::to_string(err.category());
  out += '.';
  if (auto name = error_code_name(err.category(), err.code()))
    out += *name;
  else
    out += std::to_string(err.code());
  if (auto ctx = context_of(err); !ctx.empty()) {
    out += ": ";
    out += ctx;
  }
  return out;
}

std::string context_of(const caf::error& err) {
  const auto& ctx = err.context();
  if (ctx.match_elements<std::string>())
    return ctx.get_as<std::string>(0);
  return {};
}

error_code code_of(const caf::error& err) {
  if (!err)
    return {};
  return {caf::to_string(err.category()), err.code()};
}

bool is_code(const error_code& code, caf::atom_value category, std::uint8_t x) {
  return code.code == x && code.category == caf::to_string(category);
}

} // namespace starling::wire
