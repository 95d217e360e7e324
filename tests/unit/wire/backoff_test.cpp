#include <random>

#include <gtest/gtest.h>

#include "proto/wire/backoff.hpp"

namespace sw = starling::wire;
using ms = std::chrono::milliseconds;

TEST(backoff, doubles_from_base_to_the_cap) {
  sw::backoff b{{ms{200}, ms{5000}, 0.0}};
  const ms expected[] = {ms{200}, ms{400}, ms{800}, ms{1600}, ms{3200}, ms{5000}, ms{5000}};
  for (auto e : expected)
    EXPECT_EQ(b.next(0.7), e);
  EXPECT_EQ(b.attempts(), 7u);
  b.reset();
  EXPECT_EQ(b.next(0.0), ms{200});
}

TEST(backoff, jitter_takes_off_up_to_its_fraction) {
  sw::backoff low{{ms{1000}, ms{1000}, 0.5}};
  EXPECT_EQ(low.next(0.0), ms{500});
  EXPECT_EQ(low.next(0.5), ms{750});
  EXPECT_LT(low.next(0.999999), ms{1000});
  std::mt19937_64 rng{7};
  sw::backoff b{{ms{100}, ms{800}, 0.5}};
  for (unsigned n = 0; n < 50; ++n) {
    const auto top = b.ceiling(n);
    const auto d = b.next_with(rng);
    EXPECT_GE(d, top / 2) << n;
    EXPECT_LT(d, top) << n;
  }
}

TEST(backoff, never_overflows_and_never_returns_zero) {
  sw::backoff huge{{ms{std::chrono::milliseconds::max().count() / 3},
                    ms{std::chrono::milliseconds::max()}, 0.0}};
  for (int i = 0; i < 200; ++i)
    EXPECT_GT(huge.next(0.0), ms{0});
  EXPECT_EQ(huge.ceiling(1000000u), ms{std::chrono::milliseconds::max()});
  sw::backoff zero{{ms{0}, ms{0}, 0.5}};
  EXPECT_EQ(zero.next(0.0), ms{1});
  sw::backoff odd{{ms{5000}, ms{100}, 2.0}}; // base above cap, jitter clamped to 1
  EXPECT_EQ(odd.ceiling(0), ms{100});
  EXPECT_EQ(odd.next(0.0), ms{1});
  EXPECT_EQ(odd.next(0.5), ms{50});
}
