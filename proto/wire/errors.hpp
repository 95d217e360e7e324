// The one renderer of errors (docs/decisions/0015): every module registers its error
// category once (the name of its `errc` codes), and render_error turns any caf::error into
// "<module>.<code name>: <context>" for logs, refusals and the command line. The pair
// (category, code) is what travels on the wire as a structured refusal (error_code); the
// registry only names it.
//
// Registration happens during static initialization, in the module's errc.cpp (the file
// that makes the module's errors, so a binary that can hold such an error has registered
// its names); lookups are read-only afterwards and thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <caf/atom.hpp>
#include <caf/error.hpp>

namespace starling::wire {

/// The name of code `code` of one module, or nullptr when the module has no such code.
using error_code_namer = const char* (*)(std::uint8_t code) noexcept;

/// Registers the codes of category `category` (a module's caf::atom, e.g. "identity"):
/// `namer` names each code. Called once per module, before main (see the module's
/// errc.cpp); a second registration of the same category replaces the first. Returns true
/// (so that it can initialize a static).
bool register_error_category(caf::atom_value category, error_code_namer namer);

/// The registered name of `code` in `category` ("token_expired"), or nothing when the
/// category is not registered or has no such code.
[[nodiscard]] std::optional<std::string_view> error_code_name(caf::atom_value category,
                                                              std::uint8_t code);

/// Renders any error: "identity.token_expired: <context>" for a registered category, else
/// "<category>.<code number>: <context>"; the context part only when the error carries one
/// non-empty string; "no error" for none.
[[nodiscard]] std::string render_error(const caf::error& err);

/// The context text of `err` when it carries one string (what render_error puts after the
/// code), else empty.
[[nodiscard]] std::string context_of(const caf::error& err);

/// A structured error code as it travels on the wire: the category's atom text
/// ("identity") and the code. Empty category: none.
struct error_code {
  std::string category;
  std::uint32_t code = 0;

  friend bool operator==(const error_code&, const error_code&) = default;
};

/// The wire form of `err`'s category and code.
[[nodiscard]] error_code code_of(const caf::error& err);

/// True when `code` names code `x` of category `category`.
[[nodiscard]] bool is_code(const error_code& code, caf::atom_value category, std::uint8_t x);

} // namespace starling::wire
