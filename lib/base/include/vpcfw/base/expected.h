// One error-return type for all of vpcfw: std::expected where the standard
// library has it (g++ 12 in C++23 mode), and a small stand-in with the same
// surface where it does not (clang 14 on libstdc++ 12 hides <expected> because
// it lacks C++20 conditionally-trivial special members; the fuzzers build there).
#pragma once

#include <version>

#if defined(__cpp_lib_expected)
#include <expected>
namespace vpcfw {
using std::expected;
using std::unexpected;
}  // namespace vpcfw
#else
#include <utility>
#include <variant>
namespace vpcfw {

template <class E>
class unexpected {
 public:
  explicit unexpected(E e) : error_(std::move(e)) {}
  const E& error() const& { return error_; }
  E& error() & { return error_; }
  E&& error() && { return std::move(error_); }

 private:
  E error_;
};
template <class E>
unexpected(E) -> unexpected<E>;

// Only the members vpcfw uses; the semantics match std::expected's.
template <class T, class E>
class [[nodiscard]] expected {
 public:
  using value_type = T;
  using error_type = E;

  expected() : v_(std::in_place_index<0>) {}
  template <class U = T>
  requires std::is_constructible_v<T, U&&> expected(U&& v) : v_(std::in_place_index<0>, std::forward<U>(v)) {}
  template <class G>
  expected(const unexpected<G>& u) : v_(std::in_place_index<1>, u.error()) {}
  template <class G>
  expected(unexpected<G>&& u) : v_(std::in_place_index<1>, std::move(u).error()) {}

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }
  T&& operator*() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  E& error() & { return std::get<1>(v_); }
  const E& error() const& { return std::get<1>(v_); }
  template <class U>
  T value_or(U&& d) const& {
    return has_value() ? value() : static_cast<T>(std::forward<U>(d));
  }

 private:
  std::variant<T, E> v_;
};

template <class E>
class [[nodiscard]] expected<void, E> {
 public:
  expected() = default;
  template <class G>
  expected(const unexpected<G>& u) : err_(u.error()), ok_(false) {}
  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const E& error() const& { return err_; }

 private:
  E err_{};
  bool ok_ = true;
};

}  // namespace vpcfw
#endif
