#pragma once
// Worker: one thread, one ring, and everything that runs on it.
//
// A worker owns its ring, operation slab, ready queue, timers, the tasks spawned
// on it and its message queue. Nothing in it is shared with another worker; other
// threads reach it only through Post() and RequestStop(). One loop iteration is:
// run the ready tasks, submit and wait in a single io_uring_enter (bounded by the
// next timer or tick), dispatch every completion (a task awaiting an operation is
// resumed there and then, not queued), fire expired timers, run posted messages
// and the tick hook.
//
// A Worker can be used on its own (tests, single-threaded programs: BlockOn) or
// by a Runtime, which starts one per CPU.
// Thread-safety: everything except Post(), RequestStop() and metrics() must be
// called on the worker's thread.

#include <sys/eventfd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "ringline/config.h"
#include "ringline/internal/op_slab.h"
#include "ringline/internal/promise_base.h"
#include "ringline/internal/ring.h"
#include "ringline/internal/wait_batching.h"
#include "ringline/message_queue.h"
#include "ringline/metrics.h"
#include "ringline/task.h"
#include "ringline/timer_queue.h"

namespace ringline {

namespace detail {
class RootPromiseBase;
struct RuntimeShared;
struct PeerRouting;
}  // namespace detail
namespace internal {
class WorkerInternals;
}
class BufferPool;
class PollRing;
class CancellationSource;
class CancellationToken;

// A worker-local subsystem (e.g. the network layer's connection table and
// provided buffer rings) owned by the worker. Services are destroyed by ~Worker
// after every task has been destroyed and the ring drained (so no kernel
// operation still references their memory) but before the ring itself goes, so
// they may still unregister what they registered with it.
class WorkerService {
 public:
  WorkerService() = default;
  WorkerService(const WorkerService&) = delete;
  WorkerService& operator=(const WorkerService&) = delete;
  virtual ~WorkerService() = default;

  // Runs on the worker's thread after the ready tasks of a loop iteration and
  // right before its io_uring_enter, when requested with
  // Worker::RequestBeforeSubmit(): the place to turn what the tasks queued
  // during the iteration into as few SQEs as possible (e.g. one send for many
  // replies).
  virtual void BeforeSubmit() {}

 private:
  friend class Worker;
  bool before_submit_requested_ = false;
};

class Worker {
 public:
  // Creates a worker bound to the calling thread. `metrics` (may be null: the
  // worker then owns its own) must outlive the worker.
  static absl::StatusOr<std::unique_ptr<Worker>> Create(const Config& config, uint32_t index = 0,
                                                        WorkerMetrics* metrics = nullptr);
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  // Destroys every task still on the worker, cancels their operations and waits
  // (bounded) for the kernel to finish with their memory.
  ~Worker();

  // The worker running on this thread. Current() requires one.
  static Worker& Current() {
    if (t_current_ == nullptr) [[unlikely]]
      NoCurrentWorker();
    return *t_current_;
  }
  static Worker* CurrentOrNull() { return t_current_; }

  // Runs the loop until `task` completes and returns its value. If the worker
  // is stopped first, the task is destroyed and std::nullopt is returned.
  template <typename T>
  std::optional<NonVoid<T>> BlockOn(Task<T> task);

  // Runs the loop until RequestStop(), the grace period (Config::shutdown_grace)
  // and the destruction of the remaining tasks.
  void RunUntilStopped();

  // Thread-safe. Runs `m` on this worker's thread; false if the queue is full
  // (or the worker is being destroyed).
  bool Post(Message m) { return TryPost(m); }
  // Thread-safe. Post() that leaves `m` with the caller when it fails.
  bool TryPost(Message& m) { return PostMessage(m, /*bypass_capacity=*/false); }
  // Thread-safe. Starts shutdown: the stop token is cancelled, and once every
  // task is done or the grace period is over, the loop ends.
  void RequestStop();
  bool stop_requested() const { return stop_flag_.load(std::memory_order_acquire); }
  // Worker thread. Stops the whole Runtime this worker belongs to (every
  // worker's stop token is cancelled, then the grace period, as on SIGTERM);
  // an error in `why` is what Runtime::Wait() returns (the first one wins). On
  // a worker created on its own: RequestStop(), and exit_status() keeps `why`.
  void StopRuntime(absl::Status why = absl::OkStatus());
  // The first error given to StopRuntime() on a worker created on its own.
  const absl::Status& exit_status() const { return exit_status_; }
  // Cancelled when a stop is requested; tasks watch it to wind down.
  CancellationToken stop_token();

  // Called once per loop iteration at most every Config::tick.
  void SetTickHook(absl::AnyInvocable<void()> hook) { tick_hook_ = std::move(hook); }

  // `service` (owned by this worker) gets one BeforeSubmit() call before the
  // next io_uring_enter; repeated requests before then are one request.
  void RequestBeforeSubmit(WorkerService* service) {
    if (service->before_submit_requested_) return;
    service->before_submit_requested_ = true;
    before_submit_.push_back(service);
  }
  // Yields: the task is resumed after the others that are ready, in a later
  // iteration (after the ring was submitted and reaped).
  class [[nodiscard]] YieldAwaiter {
   public:
    explicit YieldAwaiter(Worker* w) : w_(w) {}
    bool await_ready() const noexcept { return false; }
    template <EnginePromise P>
    void await_suspend(std::coroutine_handle<P> h) {
      w_->deferred_.push_back(&h.promise());
    }
    void await_resume() const noexcept {}

   private:
    Worker* w_;
  };
  YieldAwaiter Yield() { return YieldAwaiter(this); }

  // The engine's internals (ring, operation slab, scheduling, spawned-task and
  // pool bookkeeping), for the engine's own layers (net, block) and its public
  // templates. Not part of the API: applications never need them.
  internal::WorkerInternals internals();
  TimerQueue& timers() { return timers_; }
  WorkerMetrics& metrics() { return *metrics_; }
  const Config& config() const { return config_; }
  uint32_t index() const { return index_; }
  // How many workers the Runtime this worker belongs to has (1 for a worker
  // created on its own): the valid indexes for SubmitTo (submit_to.h).
  uint32_t worker_count() const;
  // The clock as read after the latest wake-up of the loop: every call in one
  // loop iteration returns the same time, read at the first call after the
  // wake-up (or at the wake-up, when timers or the tick need it), so the clock
  // is read at most once per iteration and not at all when nothing asks.
  // Monotonic.
  Clock::time_point now() const {
    if (!now_read_) [[unlikely]]
      ReadClock();
    return now_;
  }
  std::size_t task_count() const { return root_count_; }

  // Worker-local services, keyed by the address of a per-subsystem tag object.
  // Service() returns null when none was set. SetService() replaces (and
  // destroys) an existing one with the same key.
  WorkerService* Service(const void* key) const;
  void SetService(const void* key, std::unique_ptr<WorkerService> service);

  // Per-worker application state: one T per worker (a buffer pool, open files,
  // a shard of an index), created on first use by T's default constructor (or
  // by EmplaceLocal) and owned by the worker. Where such state must live: a task
  // frame (a task-local unique_ptr) is destroyed at shutdown while the kernel
  // may still hold buffers of a pool in it, so the buffers come back to freed
  // memory. A local is destroyed by ~Worker AFTER every task of the worker has
  // been destroyed and AFTER the kernel's last completion (the ring is drained:
  // every buffer an operation held is back), and BEFORE the ring itself (so T
  // may still unregister what it registered). Locals and services are
  // destroyed newest first. Worker thread only; the reference is valid until
  // the worker is destroyed.
  template <typename T>
  T& Local();
  // Creates the local T from `args` (replacing, and destroying, an existing one).
  template <typename T, typename... Args>
  T& EmplaceLocal(Args&&... args);
  // The local T, or null if none was created.
  template <typename T>
  T* FindLocal() const;

  // True once the worker is cancelling every remaining operation and waiting for
  // the kernel to return them (shutdown or destruction): completion handlers
  // must not start new operations then.
  bool draining() const { return draining_; }

 private:
  friend class internal::WorkerInternals;
  friend struct detail::PeerRouting;
  bool PostMessage(Message& m, bool bypass_capacity);
  Ring& ring() { return *ring_; }
  OpSlab& slab() { return *slab_; }
  void Schedule(PromiseBase* p) { ready_.Push(p); }
  // Buffer pools registered with this worker's ring (buffer_pool.cc): they are
  // told when the ring goes away so they never touch it afterwards.
  void AttachPool(BufferPool* pool) { pools_.push_back(pool); }
  void DetachPool(BufferPool* pool) { std::erase(pools_, pool); }
  // Spawned tasks (spawn.h).
  void AdoptRoot(detail::RootPromiseBase* root);
  void ForgetRoot(detail::RootPromiseBase* root);
  // The IOPOLL ring, created on first use (internal/poll_ring.h).
  absl::StatusOr<PollRing*> GetPollRing();
  // Polls it when anything is in flight there (poll_ring.cc).
  void PollPollRing();

  // Inline: every operation looks its worker up (Current()) on submission.
  static inline thread_local Worker* t_current_ = nullptr;
  [[noreturn]] static void NoCurrentWorker();

  Worker(const Config& config, uint32_t index, WorkerMetrics* metrics);
  absl::Status Init();
  // One loop iteration: RunReady() then WaitAndDispatch(true).
  void RunOnce();
  // Runs the tasks that are ready now (inline: the loop calls it every
  // iteration, and mostly nothing is ready).
  void RunReady() {
    if (!ready_.empty() || !deferred_.empty()) RunReadyTasks();
  }
  void RunReadyTasks();
  // Submits, waits (unless `may_block` is false or work is ready) and
  // dispatches completions, timers, messages and the tick.
  void WaitAndDispatch(bool may_block);
  void RunBeforeSubmit();  // only when before_submit_ is not empty
  void ArmEventfd();
  static void OnEventfd(void* owner, OpSlot& slot, int32_t res, uint32_t flags);
  void DrainMessages();
  void DestroyAllTasks();
  void DrainRing();
  bool root_done(detail::RootPromiseBase* root) const;

  Config config_;
  uint32_t index_;
  std::unique_ptr<WorkerMetrics> owned_metrics_;
  WorkerMetrics* metrics_;
  std::unique_ptr<Ring> ring_;
  ReadyQueue ready_;
  std::vector<PromiseBase*> deferred_;         // yielded tasks, scheduled next iteration
  std::vector<WorkerService*> before_submit_;  // services owned by services_
  std::vector<WorkerService*> before_submit_running_;
  std::unique_ptr<OpSlab> slab_;
  std::unique_ptr<PollRing> poll_ring_;  // null until a polled target asks for it
  TimerQueue timers_;
  internal::WaitBatching wait_batching_;  // driven only by WaitAndDispatch
  void ReadClock() const;                 // now_ = Clock::now(), now_read_ = true
  // now(): the time of this iteration, valid while now_read_ (cleared at every
  // wake-up). Mutable: now() is a const read of "the time now".
  mutable Clock::time_point now_;
  mutable bool now_read_ = false;

  detail::RuntimeShared* runtime_ = nullptr;  // the Runtime's shared state; null when standalone
  MessageQueue messages_;
  std::deque<Message> message_batch_;
  int eventfd_ = -1;
  bool eventfd_armed_ = false;
  bool messages_pending_ = false;
  std::atomic<bool> stop_flag_{false};
  absl::Status exit_status_;
  std::unique_ptr<CancellationSource> stop_source_;
  bool stopping_ = false;
  Clock::time_point stop_deadline_{};

  absl::AnyInvocable<void()> tick_hook_;
  Clock::time_point next_tick_{};

  std::vector<BufferPool*> pools_;
  std::vector<std::pair<const void*, std::unique_ptr<WorkerService>>> services_;
  bool draining_ = false;
  detail::RootPromiseBase* roots_ = nullptr;  // intrusive list of spawned tasks
  std::size_t root_count_ = 0;
};

namespace detail {
template <typename T>
class LocalService final : public WorkerService {
 public:
  template <typename... Args>
  explicit LocalService(Args&&... args) : value(Construct(std::forward<Args>(args)...)) {}
  T value;

 private:
  // T(args...) or, for an aggregate, T{args...} (clang 14 has no parenthesized
  // aggregate initialization). Returned as a prvalue: T need not be movable.
  template <typename... Args>
  static T Construct(Args&&... args) {
    if constexpr (std::is_constructible_v<T, Args&&...>) {
      return T(std::forward<Args>(args)...);
    } else {
      return T{std::forward<Args>(args)...};
    }
  }
};
// The address of key<T> identifies T's local (one object per type in the program).
template <typename T>
struct LocalKey {
  static constexpr char key = 0;
};
}  // namespace detail

template <typename T>
T* Worker::FindLocal() const {
  auto* s = static_cast<detail::LocalService<T>*>(Service(&detail::LocalKey<T>::key));
  return s ? &s->value : nullptr;
}

template <typename T, typename... Args>
T& Worker::EmplaceLocal(Args&&... args) {
  auto s = std::make_unique<detail::LocalService<T>>(std::forward<Args>(args)...);
  T& ref = s->value;
  SetService(&detail::LocalKey<T>::key, std::move(s));
  return ref;
}

template <typename T>
T& Worker::Local() {
  if (T* t = FindLocal<T>()) return *t;
  return EmplaceLocal<T>();
}

namespace internal {

// INTERNAL: the entry points of a Worker that only the engine's layers use
// (Worker::internals()). A view; valid while the worker lives; worker thread only.
class WorkerInternals {
 public:
  explicit WorkerInternals(Worker& w) : w_(w) {}
  Ring& ring() { return w_.ring(); }
  OpSlab& slab() { return w_.slab(); }
  // Puts `p` on the ready queue (a second call before it runs is a no-op).
  void Schedule(PromiseBase* p) { w_.Schedule(p); }
  void AttachPool(BufferPool* pool) { w_.AttachPool(pool); }
  void DetachPool(BufferPool* pool) { w_.DetachPool(pool); }
  void AdoptRoot(detail::RootPromiseBase* root) { w_.AdoptRoot(root); }
  void ForgetRoot(detail::RootPromiseBase* root) { w_.ForgetRoot(root); }
  // The worker's IOPOLL ring (internal/poll_ring.h), created on first call;
  // fails when the kernel refuses one.
  absl::StatusOr<PollRing*> poll_ring() { return w_.GetPollRing(); }
  // Set once by Runtime before the worker runs anything; outlives the worker.
  void set_runtime(detail::RuntimeShared* rt) { w_.runtime_ = rt; }
  detail::RuntimeShared* runtime() const { return w_.runtime_; }

 private:
  Worker& w_;
};

}  // namespace internal

inline internal::WorkerInternals Worker::internals() { return internal::WorkerInternals(*this); }

}  // namespace ringline

#include "ringline/spawn.h"  // BlockOn needs Spawn and JoinHandle

namespace ringline {

template <typename T>
std::optional<NonVoid<T>> Worker::BlockOn(Task<T> task) {
  JoinHandle<T> handle = Spawn(std::move(task));
  while (!handle.done()) {
    if (stop_requested()) {
      handle.Abort();
      return std::nullopt;
    }
    RunReady();
    if (handle.done()) break;
    WaitAndDispatch(true);
  }
  return handle.TakeResult();
}

}  // namespace ringline
