#include <gtest/gtest.h>

#include "proto/wire/time_text.hpp"

namespace sw = starling::wire;
using std::chrono::milliseconds;
using std::chrono::system_clock;

TEST(time_text, iso8601_utc_with_milliseconds_before_and_after_the_epoch) {
  EXPECT_EQ(sw::iso8601_utc(system_clock::time_point{}), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(sw::iso8601_utc(system_clock::time_point{milliseconds{1'945'926'489'250}}),
            "2031-08-31T07:08:09.250Z");
  EXPECT_EQ(sw::iso8601_utc(system_clock::time_point{milliseconds{-1}}),
            "1969-12-31T23:59:59.999Z");
}
