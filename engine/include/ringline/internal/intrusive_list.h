#pragma once
// INTERNAL to ringline: installed only because public templates need it; not
// part of the API, may change without notice.
//
// IntrusiveList<T>: a doubly linked FIFO of objects that derive from ListHook.
// The list owns nothing: an element unlinks itself (or is unlinked by its owner)
// before it is destroyed. O(1) push_back, pop_front and remove; no allocation.
// Thread-safety: none (every user is worker-local).

#include <cassert>
#include <cstddef>

namespace ringline::internal {

template <typename T>
class IntrusiveList;

// The links of one element. An element is in at most one list at a time.
class ListHook {
 public:
  ListHook() = default;
  ListHook(const ListHook&) = delete;
  ListHook& operator=(const ListHook&) = delete;
  ~ListHook() { assert(list_ == nullptr && "destroyed while still linked into a list"); }

  bool linked() const { return list_ != nullptr; }

 private:
  template <typename T>
  friend class IntrusiveList;
  ListHook* prev_ = nullptr;
  ListHook* next_ = nullptr;
  void* list_ = nullptr;  // the IntrusiveList<T> this element is in
};

template <typename T>
class IntrusiveList {
 public:
  IntrusiveList() = default;
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;
  // Every element must have left the list.
  ~IntrusiveList() { assert(empty() && "list destroyed with elements still linked"); }

  bool empty() const { return head_ == nullptr; }
  std::size_t size() const { return size_; }
  T* front() const { return head_ ? static_cast<T*>(head_) : nullptr; }

  void push_back(T& element) {
    ListHook& h = element;
    assert(!h.linked() && "element pushed while already in a list");
    h.list_ = this;
    h.next_ = nullptr;
    h.prev_ = tail_;
    if (tail_)
      tail_->next_ = &h;
    else
      head_ = &h;
    tail_ = &h;
    ++size_;
    AssertEnds();
  }

  // `element` must be in this list.
  void remove(T& element) {
    ListHook& h = element;
    assert(h.list_ == this && "element removed from a list it is not in");
    assert(size_ > 0);
    if (h.prev_)
      h.prev_->next_ = h.next_;
    else
      head_ = h.next_;
    if (h.next_)
      h.next_->prev_ = h.prev_;
    else
      tail_ = h.prev_;
    h.next_ = h.prev_ = nullptr;
    h.list_ = nullptr;
    --size_;
    AssertEnds();
  }

  // Removes `element` from whichever list it is in (it must be in one).
  static void Unlink(T& element) {
    ListHook& h = element;
    assert(h.linked());
    static_cast<IntrusiveList*>(h.list_)->remove(element);
  }

  // Removes and returns the first element, or nullptr.
  T* pop_front() {
    T* t = front();
    if (t) remove(*t);
    return t;
  }

 private:
  void AssertEnds() const {
    assert((head_ == nullptr) == (tail_ == nullptr));
    assert((head_ == nullptr) == (size_ == 0));
    assert(head_ == nullptr || head_->prev_ == nullptr);
    assert(tail_ == nullptr || tail_->next_ == nullptr);
  }

  ListHook* head_ = nullptr;
  ListHook* tail_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace ringline::internal
