#include <string>

#include <gtest/gtest.h>

#include "proto/wire/framing.hpp"

namespace sw = starling::wire;
using status = sw::frame_reader::status;

TEST(framing, the_prefix_is_four_big_endian_bytes) {
  char out[4];
  sw::put_length(0x01020304u, out);
  EXPECT_EQ(std::string(out, 4), std::string("\x01\x02\x03\x04", 4));
  EXPECT_EQ(sw::read_length(out), 0x01020304u);
  sw::put_length(0xffffffffu, out);
  EXPECT_EQ(sw::read_length(out), 0xffffffffu);
  EXPECT_EQ(sw::framed("abc"), std::string("\0\0\0\x03"
                                           "abc",
                                           7));
  EXPECT_EQ(sw::framed(""), std::string(4, '\0'));
}

TEST(framing, frames_split_anywhere_come_out_whole_and_in_order) {
  const std::string stream =
      sw::framed("first") + sw::framed(std::string(300, 'x')) + sw::framed("third");
  for (std::size_t chunk = 1; chunk <= stream.size(); chunk += 7) {
    sw::frame_reader reader{1024};
    std::vector<std::string> out;
    for (std::size_t at = 0; at < stream.size(); at += chunk) {
      reader.feed(std::string_view{stream}.substr(at, chunk));
      for (auto r = reader.next(); r.what == status::frame; r = reader.next())
        out.push_back(r.body);
    }
    ASSERT_EQ(out.size(), 3u) << "chunk " << chunk;
    EXPECT_EQ(out[0], "first");
    EXPECT_EQ(out[1], std::string(300, 'x'));
    EXPECT_EQ(out[2], "third");
    EXPECT_EQ(reader.next().what, status::need_more);
  }
}

TEST(framing, an_oversized_frame_fails_at_its_prefix_and_for_good) {
  sw::frame_reader reader{16};
  EXPECT_EQ(reader.announced(), std::nullopt);
  reader.feed(std::string("\0\0\0", 3));
  EXPECT_EQ(reader.announced(), std::nullopt);
  EXPECT_EQ(reader.next().what, status::need_more);
  reader.feed(std::string("\x11", 1)); // 17 > 16: refused before any body byte arrives
  EXPECT_EQ(reader.announced(), 17u);
  auto r = reader.next();
  EXPECT_EQ(r.what, status::oversized);
  EXPECT_EQ(r.length, 17u);
  EXPECT_TRUE(reader.failed());
  reader.feed(std::string(1000, 'y')); // nothing more is kept
  EXPECT_EQ(reader.next().what, status::oversized);
  EXPECT_EQ(reader.announced(), 17u);
}

TEST(framing, a_frame_at_the_bound_passes_and_an_empty_one_fails) {
  sw::frame_reader at_bound{16};
  at_bound.feed(sw::framed(std::string(16, 'z')));
  auto r = at_bound.next();
  ASSERT_EQ(r.what, status::frame);
  EXPECT_EQ(r.body, std::string(16, 'z'));

  sw::frame_reader empty{16};
  empty.feed(sw::framed(""));
  EXPECT_EQ(empty.next().what, status::empty);
  EXPECT_TRUE(empty.failed());
  EXPECT_EQ(empty.next().what, status::empty);
}
