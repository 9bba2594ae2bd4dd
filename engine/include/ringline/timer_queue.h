#pragma once
// TimerQueue: a worker's deadlines, in an intrusive binary min-heap.
//
// Nodes live in the awaiting coroutine's frame (a sleep awaiter) and remove
// themselves when destroyed early, so a cancelled sleep leaves nothing behind.
// The worker bounds its kernel wait by NextDeadline(); a timer fires when its
// deadline is <= the clock read after waking, never early.
// Thread-safety: owned by one worker; used only on its thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace ringline {

using Clock = std::chrono::steady_clock;
class PromiseBase;
class ReadyQueue;

class TimerNode {
 public:
  static constexpr std::size_t kNotQueued = SIZE_MAX;
  TimerNode() = default;
  TimerNode(const TimerNode&) = delete;
  TimerNode& operator=(const TimerNode&) = delete;

  Clock::time_point deadline{};
  PromiseBase* waiter = nullptr;
  bool queued() const { return heap_index_ != kNotQueued; }

 private:
  friend class TimerQueue;
  std::size_t heap_index_ = kNotQueued;
  uint64_t seq_ = 0;  // FIFO among equal deadlines
};

class TimerQueue {
 public:
  TimerQueue() = default;
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  void Insert(TimerNode* node);
  void Remove(TimerNode* node);
  // Schedules the waiters of every node with deadline <= now; returns how many.
  std::size_t Expire(Clock::time_point now, ReadyQueue& ready);
  std::optional<Clock::time_point> NextDeadline() const;
  std::size_t size() const { return heap_.size(); }

 private:
  bool Less(std::size_t a, std::size_t b) const;
  void Place(std::size_t i, TimerNode* n);
  void SiftUp(std::size_t i);
  void SiftDown(std::size_t i);

  std::vector<TimerNode*> heap_;
  uint64_t next_seq_ = 0;
};

}  // namespace ringline
