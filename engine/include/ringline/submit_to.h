#pragma once
// SubmitTo: run a task on another worker and await its result.
//
//   // On a worker (inside a task): the shard that owns `key` looks it up.
//   Result<Entry> e = co_await SubmitTo(shard_of(key), [key]() -> Task<Result<Entry>> {
//     co_return LocalIndex().Find(key);            // runs on that worker's thread
//   });
//
//   // From a thread that is not a worker: the same, blocking until it is done.
//   absl::Status st = SubmitTo(*runtime, 1, []() -> Task<absl::Status> { ... });
//
// `fn` is a callable taking no arguments and returning Task<T>. It is moved to
// the target worker, called there, and the task it returns runs there as a task
// of that worker (it may do I/O, spawn, await anything a task of that worker
// may). `fn` and its captures are destroyed on the target worker's thread; the
// result is moved back to the caller. Capture values, not references to the
// caller's frame (the caller may be cancelled while the task runs, see below),
// and nothing that belongs to another worker (a pool Buffer, a Connection).
//
// What the caller gets for a task returning T: the task's result, in the same
// channel as the errors of the trip itself.
//   T = Result<U>             -> Result<U>
//   T = absl::Status          -> absl::Status
//   T = absl::StatusOr<U>     -> absl::StatusOr<U>
//   T = void                  -> Result<Unit>
//   any other T               -> Result<T>
// Errors of the trip:
//   EINVAL      (InvalidArgument)    no worker with that index
//   EAGAIN      (ResourceExhausted)  the target's message queue is full
//                                    (Config::message_queue_capacity): the
//                                    call did nothing; retry or raise the limit
//   ESHUTDOWN   (Unavailable)        the target worker has stopped
//   ECANCELED   (Cancelled)          the target stopped before the task finished
//                                    (the task was destroyed at shutdown)
//   EDEADLK     (FailedPrecondition) the blocking form called on a worker thread
//
// Cancellation: destroying the awaiting task (WhenAny, timeout, Abort,
// shutdown) while the remote task runs is safe. The remote task runs to its end
// on its worker; its result is dropped there when the reply reaches the
// caller's worker (or, if that worker is gone, where the reply was made). The
// remote task is not cancelled with the caller.
//
// Cost: one message to the target (Worker::Post's queue and eventfd) and one
// back; the call's state (~100 bytes plus the callable and the result) and the
// remote task's frame come from the thread-local frame allocator, so steady
// state allocates nothing new; the message queue's std::deque allocates a block
// every few dozen messages. The blocking form keeps its state on the caller's
// stack.
// Replies bypass the target's queue capacity (their number is bounded by the
// calls the caller made), so a reply is never lost to a full queue.
//
// Thread-safety: the awaitable form is used on a worker thread; the blocking
// form on any other thread (it must not be called on a worker: it would stop
// that worker's loop while it waits).

#include <cerrno>
#include <condition_variable>
#include <coroutine>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "ringline/frame_allocator.h"
#include "ringline/internal/promise_base.h"
#include "ringline/result.h"
#include "ringline/runtime.h"
#include "ringline/spawn.h"
#include "ringline/task.h"
#include "ringline/worker.h"

namespace ringline {

namespace detail {

template <typename T>
struct IsTask : std::false_type {};
template <typename T>
struct IsTask<Task<T>> : std::true_type {
  using Value = T;
};

}  // namespace detail

// A callable SubmitTo can run on another worker: no arguments, returns Task<T>.
template <typename F>
concept TaskFactory = std::move_constructible<F> && std::invocable<F&> &&
    detail::IsTask<std::invoke_result_t<F&>>::value;

namespace detail {

// How the outcome of a SubmitTo is built for a task returning T.
template <typename T>
struct SubmitTraits {
  using Outcome = Result<NonVoid<T>>;
  static Outcome FromValue(NonVoid<T>&& v) { return Outcome(std::move(v)); }
  static Outcome FromFailure(int errnum, absl::Status why) {
    return Outcome::Error(errnum, std::move(why));
  }
};
template <typename U>
struct SubmitTraits<Result<U>> {
  using Outcome = Result<U>;
  static Outcome FromValue(Result<U>&& v) { return std::move(v); }
  static Outcome FromFailure(int errnum, absl::Status why) {
    return Outcome::Error(errnum, std::move(why));
  }
};
template <>
struct SubmitTraits<absl::Status> {
  using Outcome = absl::Status;
  static Outcome FromValue(absl::Status&& v) { return std::move(v); }
  static Outcome FromFailure(int, absl::Status why) { return why; }
};
template <typename U>
struct SubmitTraits<absl::StatusOr<U>> {
  using Outcome = absl::StatusOr<U>;
  static Outcome FromValue(absl::StatusOr<U>&& v) { return std::move(v); }
  static Outcome FromFailure(int, absl::Status why) { return why; }
};

// The one way SubmitTo reaches a worker: the target's message queue (the same
// one Worker::Post uses), looked up in the Runtime's table of running workers.
struct PeerRouting {
  // Posts `m` to worker `index` of `rt` (or, when `rt` is null, to `self` if
  // `index` is its own). Returns 0, or an errno with `why` set and `m` left with
  // the caller. `reply`: bypass the queue's capacity.
  static int Post(RuntimeShared* rt, Worker* self, uint32_t index, Message& m, bool reply,
                  absl::Status* why);
  static RuntimeShared* Of(Runtime& runtime);
};

// Where a blocking caller waits for its reply (on its own stack).
struct ThreadReply {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;  // guarded by mu
  void Wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [this] { return done; });
  }
};

// The state of one SubmitTo, shared by the caller's side (origin) and the
// target worker. Ownership moves with the messages, never shared at once:
//  - origin worker: the awaiter; then the request message (leg kRequest);
//  - target worker: the message, then the remote task's frame; then the reply
//    message (leg kReply) back to the origin worker, which frees the call
//    unless its awaiter still holds it.
// Fields of each side are touched only on that side's thread; the message
// queue's mutex orders the hand-overs.
class CrossCall {
 public:
  CrossCall(const CrossCall&) = delete;
  CrossCall& operator=(const CrossCall&) = delete;

  // Origin: posts the request. False: the trip failed at once and the failure
  // is the outcome already (no reply will come).
  bool PostRequest();
  // Origin (worker): the awaiting task parks.
  void Park(PromiseBase* waiter) { waiter_ = waiter; }
  // Origin (worker): the awaiter is destroyed (or has taken the outcome).
  void AwaiterGone();
  // Target: the outcome is set; send it home. The call may be freed when this
  // returns.
  void Reply();
  // A message carrying this call ran (Arrived) or was destroyed unrun (Dropped).
  void Arrived();
  void Dropped();

 protected:
  CrossCall(RuntimeShared* rt, Worker* origin, uint32_t target, ThreadReply* thread_reply)
      : rt_(rt), origin_(origin), target_(target), thread_reply_(thread_reply) {}
  virtual ~CrossCall() = default;
  // Target: spawns the remote task.
  virtual void Start() = 0;
  // Any side: records a failure of the trip as the outcome.
  virtual void Fail(int errnum, absl::Status why) = 0;
  // Frees a heap call (never called for a blocking caller's stack call).
  virtual void Delete() = 0;

  uint32_t target() const { return target_; }

 private:
  enum class Leg : uint8_t { kNone, kRequest, kReply };  // the message holding it
  enum class OriginState : uint8_t {
    kIdle,       // not posted, or the post failed
    kWaiting,    // request out, no reply yet
    kAbandoned,  // request out, the awaiter is gone: the reply frees the call
    kDone        // the reply arrived
  };
  void FinishOnOrigin();

  RuntimeShared* rt_;  // null for a standalone worker (then target == origin)
  Worker* origin_;     // the caller's worker, null for a blocking caller
  uint32_t origin_index_ = 0;
  uint32_t target_;
  ThreadReply* thread_reply_;  // the blocking caller's, else null
  Leg leg_ = Leg::kNone;
  OriginState origin_state_ = OriginState::kIdle;
  PromiseBase* waiter_ = nullptr;
};

// The message body that carries a call (one pointer: stored inline in the
// Message, no allocation).
class CallCarrier {
 public:
  explicit CallCarrier(CrossCall* c) noexcept : c_(c) {}
  CallCarrier(CallCarrier&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  CallCarrier& operator=(CallCarrier&&) = delete;
  ~CallCarrier() {
    if (c_) c_->Dropped();
  }
  void operator()() && { std::exchange(c_, nullptr)->Arrived(); }

 private:
  CrossCall* c_;
};

template <typename F, typename T>
class SubmitCall final : public CrossCall {
 public:
  using Traits = SubmitTraits<T>;
  using Outcome = typename Traits::Outcome;

  SubmitCall(RuntimeShared* rt, Worker* origin, uint32_t target, F fn, ThreadReply* thread_reply)
      : CrossCall(rt, origin, target, thread_reply), fn_(std::move(fn)) {}

  static void* operator new(std::size_t size) { return FrameAllocator::Allocate(size); }
  static void operator delete(void* p, std::size_t size) noexcept { FrameAllocator::Free(p, size); }

  Outcome TakeOutcome() { return std::move(*outcome_); }

 private:
  // A parameter of the remote task, so it is destroyed with the task's frame
  // even if the frame never started: a task destroyed before it finished (its
  // worker shut down) still answers its caller.
  class ReplyGuard {
   public:
    explicit ReplyGuard(SubmitCall* call) : call_(call) {}
    ReplyGuard(ReplyGuard&& o) noexcept : call_(std::exchange(o.call_, nullptr)) {}
    ReplyGuard& operator=(ReplyGuard&&) = delete;
    ~ReplyGuard() {
      if (!call_) return;
      call_->Fail(ECANCELED,
                  absl::CancelledError(absl::StrCat("SubmitTo: worker ", call_->target(),
                                                    " stopped before the task finished")));
      call_->Reply();
    }
    SubmitCall* call() const { return call_; }
    // The outcome is set: sends it. The call may be gone when this returns.
    void Reply() { std::exchange(call_, nullptr)->Reply(); }

   private:
    SubmitCall* call_;
  };

  static Task<> RunOnTarget(ReplyGuard guard) {
    SubmitCall* call = guard.call();
    F fn = std::move(call->fn_);  // destroyed here, on the target
    {
      Task<T> task = fn();
      if constexpr (std::is_void_v<T>) {
        co_await std::move(task);
        call->outcome_.emplace(Traits::FromValue(Unit{}));
      } else {
        T value = co_await std::move(task);
        call->outcome_.emplace(Traits::FromValue(std::move(value)));
      }
    }
    guard.Reply();
  }

  void Start() override { Spawn(RunOnTarget(ReplyGuard(this))).Detach(); }
  void Fail(int errnum, absl::Status why) override {
    outcome_.emplace(Traits::FromFailure(errnum, std::move(why)));
  }
  void Delete() override { delete this; }

  F fn_;
  std::optional<Outcome> outcome_;
};

}  // namespace detail

// Awaitable of SubmitTo(worker, fn). Movable until awaited; destroying it at
// any point is safe (see the cancellation note at the top).
template <typename F, typename T>
class [[nodiscard]] SubmitAwaiter {
 public:
  using Call = detail::SubmitCall<F, T>;
  using Outcome = typename Call::Outcome;

  SubmitAwaiter(Worker& origin, uint32_t target, F fn)
      : call_(new Call(origin.internals().runtime(), &origin, target, std::move(fn), nullptr)) {}
  SubmitAwaiter(SubmitAwaiter&& o) noexcept : call_(std::exchange(o.call_, nullptr)) {}
  SubmitAwaiter& operator=(SubmitAwaiter&&) = delete;
  ~SubmitAwaiter() {
    if (call_) call_->AwaiterGone();
  }

  bool await_ready() { return !call_->PostRequest(); }
  template <EnginePromise P>
  void await_suspend(std::coroutine_handle<P> h) {
    call_->Park(&h.promise());
  }
  Outcome await_resume() {
    Outcome out = call_->TakeOutcome();
    std::exchange(call_, nullptr)->AwaiterGone();
    return out;
  }

 private:
  Call* call_;
};

// On a worker: runs the task `fn()` returns on worker `worker` (an index below
// Worker::worker_count(); the calling worker's own index works too) and yields
// its result. See the top of this file.
template <TaskFactory F>
auto SubmitTo(uint32_t worker, F fn) {
  using T = typename detail::IsTask<std::invoke_result_t<F&>>::Value;
  return SubmitAwaiter<F, T>(Worker::Current(), worker, std::move(fn));
}

// From a thread that is not a worker: the same, blocking until the task has
// finished (or the trip failed). `runtime` must outlive the call.
template <TaskFactory F>
auto SubmitTo(Runtime& runtime, uint32_t worker, F fn) {
  using T = typename detail::IsTask<std::invoke_result_t<F&>>::Value;
  using Call = detail::SubmitCall<F, T>;
  if (Worker* w = Worker::CurrentOrNull()) {
    return Call::Traits::FromFailure(
        EDEADLK,
        absl::FailedPreconditionError(absl::StrCat(
            "SubmitTo(runtime, ", worker, ", fn) blocks and was called on worker ", w->index(),
            "'s thread; on a worker use co_await SubmitTo(", worker, ", fn)")));
  }
  detail::ThreadReply reply;
  Call call(detail::PeerRouting::Of(runtime), nullptr, worker, std::move(fn), &reply);
  if (call.PostRequest()) reply.Wait();
  return call.TakeOutcome();
}

}  // namespace ringline
