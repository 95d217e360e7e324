// A small cache per thread of objects that are costly to make again, for the data plane's
// per-request objects: buffers whose capacity a new HTTP/2 stream or parser would otherwise
// allocate (docs/bench-proxy.md, Run T: a request through a node called malloc 30 to 45
// times, HAProxy's 6, whose pools do the same).
//
// take() gives a cached object or a default-made one; give() keeps an object for the next
// take() on the same thread while the cache holds fewer than `max`, and drops it otherwise.
// An object given back on another thread joins that thread's cache. Once a thread's exit
// has destroyed its cache, give() just drops (a buffer freed by a later thread_local or
// static destructor).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace starling::proxy {

/// Whether the data plane's own pools keep freed memory for reuse (thread_cache of blocks,
/// nghttp2's block pool): not under AddressSanitizer, so that every free goes to the
/// allocator that checks use after free.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool reuse_freed_blocks = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool reuse_freed_blocks = false;
#else
inline constexpr bool reuse_freed_blocks = true;
#endif
#else
inline constexpr bool reuse_freed_blocks = true;
#endif

/// How many streams' per-stream objects a thread's caches keep between requests: what
/// h2load's 4 connections of 32 streams each (128 in flight, gRPC's shape) or one HTTP/2
/// connection's 256 streams (h2::limits::max_concurrent_streams) leave when they end.
/// With 64, a node called malloc 11 to 13 times per request at 128 streams in flight
/// (docs/bench-proxy.md, Run NB); a cache never holds more than the thread's peak used.
inline constexpr std::size_t cached_streams_per_thread = 256;

/// One cache per <T, max, Tag>: caches of the same type whose objects differ in what they
/// hold (a head's buffer, a short name) take a Tag each, so that a take() for one never
/// gets the other's object.
template <class T, std::size_t max, class Tag = void> class thread_cache {
public:
  /// A cached object (as it was given back: the caller clears what it must), or T{}.
  static T take() {
    auto* c = cache();
    if (c == nullptr || c->empty())
      return T{};
    T v = std::move(c->back());
    c->pop_back();
    return v;
  }
  /// Keeps `v` for a later take() on this thread, if there is room.
  static void give(T&& v) {
    auto* c = cache();
    if (c == nullptr || c->size() >= max)
      return;
    if (c->capacity() == 0)
      c->reserve(max);
    c->push_back(std::move(v));
  }

private:
  static std::vector<T>* cache() {
    thread_local bool gone = false; // trivially destructible: readable until the end
    struct holder {
      std::vector<T> items;
      ~holder() { gone = true; }
    };
    if (gone)
      return nullptr;
    thread_local holder h;
    return &h.items;
  }
};

/// The strings of the short names the data plane copies per request (a service name, an
/// instance id such as "node/127.0.0.1:8080", longer than a string's inline bytes): one
/// cache per thread, apart from the buffers' caches, so that a name never takes a buffer's
/// capacity nor a buffer a name's. Used by the HTTP/2 streams and the serving node's stream
/// sessions.
class name_strings {
public:
  /// `to` = `from`, in a cached string when `to` has too little room.
  static void assign(std::string& to, std::string_view from) {
    if (from.size() > to.capacity())
      to = cache::take();
    to.assign(from);
  }
  /// Keeps `s`'s capacity for a later assign() on this thread (when on the heap and small).
  static void give(std::string& s) {
    if (s.capacity() > std::string{}.capacity() && s.capacity() <= max_bytes)
      cache::give(std::move(s));
  }

private:
  struct tag;
  static constexpr std::size_t max_bytes = 1024;
  using cache = thread_cache<std::string, 2 * cached_streams_per_thread, tag>;
};

} // namespace starling::proxy
