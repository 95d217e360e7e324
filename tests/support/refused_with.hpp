// A GoogleTest predicate for identity refusals: the result failed with the expected
// identity::errc, and its rendered message names what was refused.
#pragma once

#include <string>
#include <string_view>

#include <caf/expected.hpp>
#include <gtest/gtest.h>

#include "identity/errc.hpp"

namespace starling::testing {

/// Success if `result` failed with `code` and its rendered error mentions `needle`.
template <class T>
::testing::AssertionResult refused_with(const caf::expected<T>& result, identity::errc code,
                                        std::string_view needle = {}) {
  if (result)
    return ::testing::AssertionFailure() << "accepted, expected " << identity::to_string(code);
  const auto text = identity::render(result.error());
  if (!identity::is(result.error(), code))
    return ::testing::AssertionFailure()
           << "got " << text << ", expected " << identity::to_string(code);
  if (text.find(needle) == std::string::npos)
    return ::testing::AssertionFailure() << text << " does not mention " << needle;
  return ::testing::AssertionSuccess();
}

} // namespace starling::testing
