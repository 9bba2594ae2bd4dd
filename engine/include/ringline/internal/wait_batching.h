#pragma once
// INTERNAL to ringline: installed only because worker.h holds one by value; not
// part of the API and may change without notice.
//
// WaitBatching: whether a worker's blocking wait asks the kernel for one
// completion or for a batch (docs/architecture.md, "Waiting for
// completions"). A wait that
// asks for one wakes the worker for each arrival. When clients keep many
// requests in flight, asking for `max_batch` completions, for at most a window
// of time, wakes the worker once per batch, and the clients too, since their
// replies leave together: both sides spend less CPU per request. A client that
// waits for each reply before it sends the next gains nothing and would pay
// the window on every request.
//
// So batching is decided by measuring, as a NIC's dynamic interrupt moderation
// does. An epoch (kEpochCompletions completions) yields two figures: bytes
// moved (the completions' results) per second, and per CPU second of the
// worker's thread. Bytes, not completions, because batched replies leave in
// fewer sends. From time to time the worker probes the other mode for one
// epoch: batching is preferred only when it keeps the rate and moves each
// byte for kSignificant less CPU; otherwise waiting for one (lower latency)
// wins. After a probe the mode is parked for a number of epochs, doubled each
// time a probe changed nothing (up to kMaxParkEpochs). kQuietWindows batched
// waits in a row whose whole window brought at most one completion mean the
// clients wait for their replies, or are idle: batching stops at once.
//
// Thread-safety: one owner, the worker's loop (Worker::WaitAndDispatch).

#include <algorithm>
#include <cassert>
#include <cstdint>

namespace ringline::internal {

class WaitBatching {
 public:
  enum class State {
    kDisabled,         // max_batch is 1
    kPlain,            // waits ask for one completion
    kBatching,         // waits ask for max_batch
    kProbingBatching,  // from kPlain, one epoch of batching
    kProbingPlain,     // from kBatching, one epoch without
  };

  static constexpr uint32_t kEpochCompletions = 512;
  static constexpr uint32_t kSettleCompletions = 64;  // after a switch, before measuring
  static constexpr double kSignificant = 0.05;
  static constexpr uint32_t kQuietWindows = 4;
  static constexpr uint32_t kFirstParkEpochs = 16;
  static constexpr uint32_t kMaxParkEpochs = 1024;

  explicit WaitBatching(uint32_t max_batch)
      : state_(max_batch < 2 ? State::kDisabled : State::kPlain), max_batch_(max_batch) {}
  WaitBatching(const WaitBatching&) = delete;
  WaitBatching& operator=(const WaitBatching&) = delete;

  State state() const { return state_; }
  bool batching() const { return state_ == State::kBatching || state_ == State::kProbingBatching; }
  // Completions the next blocking wait asks for beyond those already ready.
  uint32_t target() const { return batching() ? max_batch_ : 1; }

  // After each loop iteration: it dispatched `reaped` completions that moved
  // `bytes`, `arrived` of them after its wait began. `batched`: the wait asked
  // for a batch; `whole_window`: it was bounded by the batching window, not
  // by an earlier deadline. `now_ns()` (a monotonic clock) and `cpu_ns()` (the
  // thread's CPU time) are called only when an epoch ends.
  template <typename NowNs, typename CpuNs>
  void AfterWait(bool batched, uint32_t reaped, uint64_t bytes, uint32_t arrived, bool whole_window,
                 NowNs&& now_ns, CpuNs&& cpu_ns) {
    if (state_ == State::kDisabled) return;
    assert(!batched || batching());
    if (batched && whole_window) {
      quiet_windows_ = arrived <= 1 ? quiet_windows_ + 1 : 0;
      if (quiet_windows_ == kQuietWindows) {
        // Window after window brought at most one completion: the clients
        // wait for their replies, or are idle.
        if (state_ == State::kProbingBatching) LengthenPark();
        Switch(State::kPlain, {});
        return;
      }
    }
    epoch_completions_ += reaped;
    epoch_bytes_ += bytes;
    // The completions right after a switch measure the change, not the mode:
    // the first kSettleCompletions only start the clocks.
    if (epoch_completions_ < (epoch_start_.wall_ns == 0 ? kSettleCompletions : kEpochCompletions))
      return;
    const Sample start = epoch_start_;
    const Sample end{now_ns(), cpu_ns()};
    const double work = static_cast<double>(epoch_bytes_);
    epoch_start_ = end;
    epoch_completions_ = 0;
    epoch_bytes_ = 0;
    if (start.wall_ns == 0 || end.wall_ns <= start.wall_ns || end.cpu_ns <= start.cpu_ns) return;
    const Measure m{work / static_cast<double>(end.wall_ns - start.wall_ns),
                    work / static_cast<double>(end.cpu_ns - start.cpu_ns)};
    switch (state_) {
      case State::kPlain:
      case State::kBatching:
        if (--park_epochs_left_ == 0) {
          Switch(state_ == State::kPlain ? State::kProbingBatching : State::kProbingPlain, m);
        }
        break;
      case State::kProbingBatching:
        if (BatchingWins(/*batching=*/m, /*plain=*/baseline_)) {
          park_epochs_ = kFirstParkEpochs;
          Switch(State::kBatching, {});
        } else {
          LengthenPark();
          Switch(State::kPlain, {});
        }
        break;
      case State::kProbingPlain:
        if (BatchingWins(/*batching=*/baseline_, /*plain=*/m)) {
          LengthenPark();
          Switch(State::kBatching, {});
        } else {
          park_epochs_ = kFirstParkEpochs;
          Switch(State::kPlain, {});
        }
        break;
      case State::kDisabled:
        break;
    }
  }

 private:
  struct Sample {
    int64_t wall_ns = 0;
    int64_t cpu_ns = 0;
  };
  // Bytes moved per nanosecond of wall time, and per nanosecond of CPU time.
  struct Measure {
    double rate = 0;
    double efficiency = 0;
  };

  static bool BatchingWins(const Measure& batching, const Measure& plain) {
    return batching.rate >= plain.rate * (1 - kSignificant) &&
           batching.efficiency > plain.efficiency * (1 + kSignificant);
  }
  // Enters `next` and restarts the epoch; a probe keeps `baseline`, the
  // measure of the mode it left.
  void Switch(State next, const Measure& baseline) {
    assert(next != State::kDisabled);
    state_ = next;
    baseline_ = baseline;
    park_epochs_left_ = park_epochs_;
    quiet_windows_ = 0;
    epoch_start_ = {};
    epoch_completions_ = 0;
    epoch_bytes_ = 0;
  }
  void LengthenPark() { park_epochs_ = std::min(park_epochs_ * 2, kMaxParkEpochs); }

  State state_;
  const uint32_t max_batch_;
  Measure baseline_;  // kProbing*: the measure of the mode the probe left
  uint32_t park_epochs_ = kFirstParkEpochs;
  uint32_t park_epochs_left_ = kFirstParkEpochs;  // kPlain, kBatching: epochs until the probe
  uint32_t quiet_windows_ = 0;  // whole windows in a row that brought at most one completion
  uint32_t epoch_completions_ = 0;
  uint64_t epoch_bytes_ = 0;
  Sample epoch_start_;  // wall_ns 0: settling after a switch, the clocks not started
};

}  // namespace ringline::internal
