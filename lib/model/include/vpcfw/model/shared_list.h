// A list that copies share until one of them is changed (copy on write). A
// security group's rules are the bulk of a large model, and a daemon reload
// builds a new model in which almost every group is as it was: the groups of
// the new model share their rules with the config cache and the model in
// force instead of copying tens of thousands of rules per edit, and comparing
// two shared lists is a pointer comparison.
#pragma once

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <utility>
#include <vector>

namespace vpcfw::model {

template <class T>
class SharedList {
 public:
  using value_type = T;
  using const_iterator = typename std::vector<T>::const_iterator;
  using iterator = const_iterator;  // reading never copies; changes go through edit()

  SharedList() = default;
  SharedList(std::initializer_list<T> items) : SharedList(std::vector<T>(items)) {}
  SharedList(std::vector<T> items)  // NOLINT(google-explicit-constructor): a list is a list
      : items_(items.empty() ? nullptr : std::make_shared<std::vector<T>>(std::move(items))) {}

  const std::vector<T>& get() const { return items_ ? *items_ : emptyList(); }
  operator const std::vector<T>&() const { return get(); }  // NOLINT(google-explicit-constructor)

  const_iterator begin() const { return get().begin(); }
  const_iterator end() const { return get().end(); }
  std::size_t size() const { return items_ ? items_->size() : 0; }
  bool empty() const { return size() == 0; }
  const T& operator[](std::size_t i) const { return (*items_)[i]; }
  const T& front() const { return items_->front(); }
  const T& back() const { return items_->back(); }

  // The list to change, copied first when another list shares it.
  std::vector<T>& edit() {
    if (!items_)
      items_ = std::make_shared<std::vector<T>>();
    else if (items_.use_count() > 1)
      items_ = std::make_shared<std::vector<T>>(*items_);
    return *items_;
  }
  void push_back(T item) { edit().push_back(std::move(item)); }
  template <class... A>
  T& emplace_back(A&&... args) {
    return edit().emplace_back(std::forward<A>(args)...);
  }

  // Whether both hold the very same list (then they are equal without looking).
  bool shares(const SharedList& o) const { return items_ == o.items_; }
  bool operator==(const SharedList& o) const {
    return items_ == o.items_ || std::equal(begin(), end(), o.begin(), o.end());
  }

 private:
  static const std::vector<T>& emptyList() {
    static const std::vector<T> kEmpty;
    return kEmpty;
  }
  // Never changed while shared: edit() copies first.
  std::shared_ptr<std::vector<T>> items_;
};

}  // namespace vpcfw::model
