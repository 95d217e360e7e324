#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "proxy/recycling_allocator.hpp"
#include "proxy/thread_cache.hpp"

namespace starling::proxy {
namespace {

int alive = 0;

struct counted : std::enable_shared_from_this<counted> {
  explicit counted(int v) : value(v) { ++alive; }
  ~counted() { --alive; }
  counted(const counted&) = delete;
  counted& operator=(const counted&) = delete;
  int value;
  std::array<char, 200> payload{};
};

TEST(recycling_allocator, objects_are_made_and_destroyed_as_with_make_shared) {
  {
    auto a = make_recycled<counted>(7);
    EXPECT_EQ(a->value, 7);
    EXPECT_EQ(alive, 1);
    auto again = a->shared_from_this(); // enable_shared_from_this works through it
    EXPECT_EQ(again.get(), a.get());
    EXPECT_EQ(a.use_count(), 2);
  }
  EXPECT_EQ(alive, 0);
}

TEST(recycling_allocator, a_freed_block_serves_the_next_object_of_its_size) {
  const void* first = nullptr;
  {
    auto a = make_recycled<counted>(1);
    first = a.get();
  }
  auto b = make_recycled<counted>(2);
  EXPECT_EQ(b->value, 2);
  if (reuse_freed_blocks)
    EXPECT_EQ(b.get(), first);
  else // AddressSanitizer: every block goes back to the allocator that checks its use
    SUCCEED();
}

TEST(recycling_allocator, keeps_at_most_its_bound_and_frees_the_rest) {
  // More objects at once than the cache keeps: all are made, all are destroyed, and the
  // blocks beyond the bound are freed (AddressSanitizer's leak check would see a leak).
  constexpr std::size_t n = recycling_allocator<counted>::cached_blocks * 2;
  std::vector<std::shared_ptr<counted>> many;
  for (std::size_t i = 0; i < n; ++i)
    many.push_back(make_recycled<counted>(static_cast<int>(i)));
  EXPECT_EQ(alive, static_cast<int>(n));
  for (std::size_t i = 0; i < n; ++i)
    EXPECT_EQ(many[i]->value, static_cast<int>(i));
  many.clear();
  EXPECT_EQ(alive, 0);
}

TEST(recycling_allocator, an_object_freed_on_another_thread_joins_that_threads_cache) {
  auto a = make_recycled<counted>(3);
  std::thread t([p = std::move(a)]() mutable {
    p.reset(); // its block goes to this thread's cache, freed when the thread ends
  });
  t.join();
  EXPECT_EQ(alive, 0);
}

TEST(recycling_allocator, arrays_bypass_the_cache) {
  recycling_allocator<int> alloc;
  int* p = alloc.allocate(16);
  for (int i = 0; i < 16; ++i)
    p[i] = i;
  EXPECT_EQ(p[15], 15);
  alloc.deallocate(p, 16);
  EXPECT_THROW((void)alloc.allocate(static_cast<std::size_t>(-1) / 2), std::bad_array_new_length);
}

TEST(name_strings, a_given_name_string_serves_the_next_long_name_and_a_buffer_never_does) {
  const std::string_view id = "node-b/127.0.0.1:38561"; // longer than a string holds inline
  std::string first;
  name_strings::assign(first, id);
  EXPECT_EQ(first, id);
  const auto* storage = first.data();
  name_strings::give(first);
  // A buffer's cache of the same type is another cache: a name never gets its capacity.
  thread_cache<std::string, 128>::give(std::string(4096, 'x'));
  std::string second;
  name_strings::assign(second, id);
  EXPECT_EQ(second, id);
  EXPECT_EQ(second.data(), storage) << "the given string's buffer, not a new one";
  EXPECT_LT(second.capacity(), 4096U);
  // A string too large for a name is not kept.
  std::string big(4096, 'y');
  name_strings::give(big);
  std::string third;
  name_strings::assign(third, id);
  EXPECT_LT(third.capacity(), 4096U);
  (void)thread_cache<std::string, 128>::take();
}

} // namespace
} // namespace starling::proxy
