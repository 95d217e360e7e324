// A move-only function with room for its callable inside: what the data plane's loop and
// connections take as completion handlers and tasks.
//
// std::function allocates for any callable that is not trivially copyable and at most 16
// bytes (libstdc++), which is every handler that keeps its owner alive by a shared_ptr, and
// then again for the handler the connection wraps around it. A request through a node made
// about a dozen such allocations (docs/bench-proxy.md, Run T). callback<Sig, N> keeps a
// callable of at most N bytes (alignment at most max_align_t's, nothrow move) in itself and
// allocates only for a larger one. It is never copied, so it also holds move-only callables.
#pragma once

#include <cstddef>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

namespace starling::net {

template <class Sig, std::size_t N> class callback;

template <class R, class... Args, std::size_t N> class callback<R(Args...), N> {
public:
  callback() noexcept = default;
  callback(std::nullptr_t) noexcept {} // NOLINT(google-explicit-constructor): as std::function

  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, callback> &&
           !std::is_same_v<std::remove_cvref_t<F>, std::nullptr_t> &&
           std::is_invocable_r_v<R, std::decay_t<F>&, Args...>)
      callback(F&& f) { // NOLINT(google-explicit-constructor): as std::function
    using T = std::decay_t<F>;
    if constexpr (stored_inside<T>) {
      ::new (static_cast<void*>(storage_)) T(std::forward<F>(f));
      ops_ = &inside_ops<T>;
    } else {
      ::new (static_cast<void*>(storage_)) T*(new T(std::forward<F>(f)));
      ops_ = &outside_ops<T>;
    }
  }

  callback(callback&& o) noexcept { take(o); }
  callback& operator=(callback&& o) noexcept {
    if (this != &o) {
      reset();
      take(o);
    }
    return *this;
  }
  callback& operator=(std::nullptr_t) noexcept {
    reset();
    return *this;
  }
  callback(const callback&) = delete;
  callback& operator=(const callback&) = delete;
  ~callback() { reset(); }

  [[nodiscard]] explicit operator bool() const noexcept { return ops_ != nullptr; }
  friend bool operator==(const callback& c, std::nullptr_t) noexcept { return !c; }

  /// Calls the callable (as std::function does, a const callback calls it as non-const).
  /// Calling an empty callback throws std::bad_function_call.
  R operator()(Args... args) const {
    if (ops_ == nullptr)
      throw std::bad_function_call{};
    return ops_->invoke(const_cast<unsigned char*>(storage_), std::forward<Args>(args)...);
  }

  /// Whether a callable of type F is kept inside (no allocation).
  template <class F>
  static constexpr bool stored_inside =
      sizeof(F) <= N &&
      alignof(F) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<F>;

private:
  struct ops {
    R (*invoke)(unsigned char* s, Args&&... args);
    /// Moves the callable in `from` into the raw storage `to` and destroys the one in `from`.
    void (*relocate)(unsigned char* to, unsigned char* from) noexcept;
    void (*destroy)(unsigned char* s) noexcept;
  };

  template <class T> static T& inside(unsigned char* s) {
    return *std::launder(reinterpret_cast<T*>(s));
  }
  template <class T> static T*& outside(unsigned char* s) {
    return *std::launder(reinterpret_cast<T**>(s));
  }

  template <class T>
  static constexpr ops inside_ops{[](unsigned char* s, Args&&... args) -> R {
                                    return std::invoke(inside<T>(s), std::forward<Args>(args)...);
                                  },
                                  [](unsigned char* to, unsigned char* from) noexcept {
                                    ::new (static_cast<void*>(to)) T(std::move(inside<T>(from)));
                                    inside<T>(from).~T();
                                  },
                                  [](unsigned char* s) noexcept { inside<T>(s).~T(); }};
  template <class T>
  static constexpr ops outside_ops{[](unsigned char* s, Args&&... args) -> R {
                                     return std::invoke(*outside<T>(s),
                                                        std::forward<Args>(args)...);
                                   },
                                   [](unsigned char* to, unsigned char* from) noexcept {
                                     ::new (static_cast<void*>(to)) T*(outside<T>(from));
                                   },
                                   [](unsigned char* s) noexcept { delete outside<T>(s); }};

  void take(callback& o) noexcept {
    if (o.ops_ != nullptr) {
      o.ops_->relocate(storage_, o.storage_);
      ops_ = std::exchange(o.ops_, nullptr);
    }
  }
  void reset() noexcept {
    if (auto* o = std::exchange(ops_, nullptr))
      o->destroy(storage_);
  }

  static_assert(N >= sizeof(void*), "room for at least the pointer to an outside callable");
  const ops* ops_ = nullptr;
  alignas(std::max_align_t) unsigned char storage_[N];
};

} // namespace starling::net
