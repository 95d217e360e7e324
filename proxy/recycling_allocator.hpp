// An allocator for the data plane's per-request objects made with std::allocate_shared (an
// HTTP/2 stream, the session serving it, the upstream end of a request to a peer): single
// blocks are kept in the thread's cache (thread_cache) when freed and handed to the next
// object of the same size, instead of a malloc and a free per object and request
// (docs/bench-proxy.md, Run AE: three of a node's four to five `malloc` calls per request
// were these objects and the strings they copied).
//
// At most `cached_blocks` blocks of each size per thread (what the thread's peak of
// concurrent streams left); a block freed on another thread joins that thread's cache.
// Under AddressSanitizer nothing is kept, so that a use after free is still caught.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <utility>

#include "proxy/thread_cache.hpp"

namespace starling::proxy {

namespace detail {

/// A free block of `size` bytes (from operator new), owned: freed unless taken back.
template <std::size_t size> class free_block {
public:
  free_block() noexcept = default;
  explicit free_block(void* p) noexcept : p_(p) {}
  free_block(free_block&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  free_block& operator=(free_block&& o) noexcept {
    if (this != &o) {
      ::operator delete(p_);
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  free_block(const free_block&) = delete;
  free_block& operator=(const free_block&) = delete;
  ~free_block() { ::operator delete(p_); }
  /// The block, no longer owned (null for an empty one).
  void* release() noexcept { return std::exchange(p_, nullptr); }

private:
  void* p_ = nullptr;
};

} // namespace detail

template <class T> class recycling_allocator {
public:
  using value_type = T;
  static constexpr std::size_t cached_blocks = cached_streams_per_thread;

  recycling_allocator() noexcept = default;
  template <class U> recycling_allocator(const recycling_allocator<U>& /*other*/) noexcept {}

  T* allocate(std::size_t n) {
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
    if (n == 1 && reuse_freed_blocks)
      if (void* p = cache::take().release())
        return static_cast<T*>(p);
    if (n > static_cast<std::size_t>(-1) / sizeof(T))
      throw std::bad_array_new_length();
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }

  void deallocate(T* p, std::size_t n) noexcept {
    if (n == 1 && reuse_freed_blocks)
      cache::give(block{p}); // freed by `block` when the cache is full or gone
    else
      ::operator delete(p);
  }

  template <class U> bool operator==(const recycling_allocator<U>& /*other*/) const noexcept {
    return true;
  }

private:
  using block = detail::free_block<sizeof(T)>;
  using cache = thread_cache<block, cached_blocks>;
};

/// std::make_shared with the object and its count in a recycled block.
template <class T, class... Args> std::shared_ptr<T> make_recycled(Args&&... args) {
  return std::allocate_shared<T>(recycling_allocator<T>{}, std::forward<Args>(args)...);
}

} // namespace starling::proxy
