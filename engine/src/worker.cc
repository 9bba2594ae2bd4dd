#include "ringline/worker.h"

#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "ringline/buffer_pool.h"
#include "ringline/cancellation.h"
#include "ringline/internal/poll_ring.h"
#include "ringline/io_result.h"
#include "ringline/log.h"
#include "ringline/spawn.h"

namespace ringline {
namespace {
// How long shutdown waits for the kernel to return cancelled operations before
// giving up on them (their memory is then leaked, never freed under the kernel).
constexpr auto kDrainLimit = std::chrono::seconds(5);
}  // namespace

void Worker::NoCurrentWorker() {
  LogLine(LogLevel::kError, "ringline: an engine operation was used outside a worker thread");
  std::abort();
}

Worker::Worker(const Config& config, uint32_t index, WorkerMetrics* metrics)
    : config_(config),
      index_(index),
      owned_metrics_(metrics ? nullptr : std::make_unique<WorkerMetrics>()),
      metrics_(metrics ? metrics : owned_metrics_.get()),
      wait_batching_(config.wait_batch_max),
      messages_(config.message_queue_capacity) {}

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(const Config& config, uint32_t index,
                                                       WorkerMetrics* metrics) {
  if (auto st = config.Validate(); !st.ok()) return st;
  if (t_current_) {
    return absl::FailedPreconditionError("a worker already runs on this thread");
  }
  std::unique_ptr<Worker> w(new Worker(config, index, metrics));
  if (auto st = w->Init(); !st.ok()) return st;
  return w;
}

absl::Status Worker::Init() {
  auto ring = Ring::Create(config_.ring);
  if (!ring.ok()) return ring.status();
  ring_ = std::move(*ring);
  slab_ = std::make_unique<OpSlab>(*ring_, ready_, config_.op_slots);
  eventfd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (eventfd_ < 0) return ErrnoToStatus(-errno, "eventfd");
  stop_source_ = std::make_unique<CancellationSource>();
  t_current_ = this;
  if (config_.tick.count() > 0) next_tick_ = now() + config_.tick;
  ArmEventfd();
  return absl::OkStatus();
}

Worker::~Worker() {
  if (ring_) {
    DestroyAllTasks();
    DrainRing();
  }
  // Messages never run are destroyed here, on this thread, after the tasks (a
  // message's destructor may answer a SubmitTo caller elsewhere, or post to this
  // worker: the closed queue refuses that, and the refused message is destroyed
  // by its poster).
  messages_.Close(message_batch_);
  while (!message_batch_.empty()) {
    Message m = std::move(message_batch_.front());
    message_batch_.pop_front();
  }
  // Services go after the drain (nothing in flight references them) and while
  // the ring exists (they unregister what they registered), newest first.
  before_submit_.clear();
  while (!services_.empty()) {
    auto s = std::move(services_.back().second);
    services_.pop_back();
    s.reset();
  }
  // Slots (and the buffers they hold) go before the ring they were used with.
  slab_.reset();
  for (BufferPool* pool : pools_) pool->OnWorkerGone();
  if (eventfd_ >= 0) ::close(eventfd_);
  if (t_current_ == this) t_current_ = nullptr;
}

void Worker::ReadClock() const {
  now_ = Clock::now();
  now_read_ = true;
}

void Worker::ArmEventfd() {
  OpSlot& slot = slab_->AllocateWithHandler(OpTag::kEventfdRead, &Worker::OnEventfd, this);
  io_uring_sqe* sqe = ring_->GetSqe();
  // The 8-byte counter lands in the slot, which outlives the read.
  io_uring_prep_read(sqe, eventfd_, &slot.storage.eventfd_value, sizeof(uint64_t), 0);
  io_uring_sqe_set_data64(sqe, slot.user_data().raw());
  eventfd_armed_ = true;
}

void Worker::OnEventfd(void* owner, OpSlot&, int32_t, uint32_t) {
  auto* w = static_cast<Worker*>(owner);
  w->eventfd_armed_ = false;
  w->messages_pending_ = true;
}

bool Worker::PostMessage(Message& m, bool bypass_capacity) {
  if (!messages_.TryPush(m, bypass_capacity)) return false;
  const uint64_t one = 1;
  ssize_t r = ::write(eventfd_, &one, sizeof one);
  (void)r;  // EAGAIN means the counter is already non-zero: a wake-up is pending
  return true;
}

void Worker::RequestStop() {
  stop_flag_.store(true, std::memory_order_release);
  const uint64_t one = 1;
  ssize_t r = ::write(eventfd_, &one, sizeof one);
  (void)r;
}

CancellationToken Worker::stop_token() { return stop_source_->token(); }

void Worker::DrainMessages() {
  messages_pending_ = false;
  messages_.Drain(message_batch_);
  while (!message_batch_.empty()) {
    Message m = std::move(message_batch_.front());
    message_batch_.pop_front();
    metrics_->messages.Add();
    std::move(m)();
  }
  // Messages keep arriving during the shutdown grace (replies to SubmitTo the
  // winding-down tasks await); only the final drain stops listening.
  if (!eventfd_armed_ && !draining_) ArmEventfd();
}

void Worker::RunReadyTasks() {
  // Only what is ready now: a task that wakes itself runs in the next iteration,
  // after the ring has been submitted and reaped.
  for (PromiseBase* p : deferred_) ready_.Push(p);
  deferred_.clear();
  std::size_t n = ready_.size();
  metrics_->tasks_polled.Add(n);
  while (n-- > 0) {
    PromiseBase* p = ready_.Pop();
    if (!p) break;
    p->self().resume();
  }
}

void Worker::RunOnce() {
  RunReady();
  WaitAndDispatch(true);
}

void Worker::RunBeforeSubmit() {
  // A service that asks again while it runs is called in the next iteration.
  before_submit_running_.swap(before_submit_);
  for (WorkerService* s : before_submit_running_) {
    s->before_submit_requested_ = false;
    s->BeforeSubmit();
  }
  before_submit_running_.clear();
}

void Worker::WaitAndDispatch(bool may_block) {
  // In locals: the counters' relaxed atomic stores would otherwise make the
  // compiler load the pointers again after each of them.
  WorkerMetrics& metrics = *metrics_;
  Ring& ring = *ring_;
  OpSlab& slab = *slab_;
  metrics.loop_iterations.Add();
  if (!before_submit_.empty()) RunBeforeSubmit();

  unsigned wait_nr = 0;
  int64_t timeout_ns = -1;
  // Polled commands complete only when polled: never block in the main ring
  // while any is in flight.
  const bool polling = poll_ring_ && poll_ring_->in_flight() > 0;
  if (may_block && !polling && ready_.empty() && deferred_.empty() && !messages_pending_) {
    wait_nr = 1;
    std::optional<Clock::time_point> wake;
    if (timers_.size() != 0) wake = timers_.NextDeadline();
    if (config_.tick.count() > 0 && (!wake || next_tick_ < *wake)) wake = next_tick_;
    if (stopping_ && (!wake || stop_deadline_ < *wake)) wake = stop_deadline_;
    if (wake) {
      const auto d = *wake - Clock::now();
      // Round up so a timer is never found unexpired after the wake-up.
      timeout_ns = d.count() <= 0 ? 0 : std::chrono::ceil<std::chrono::nanoseconds>(d).count();
      if (timeout_ns == 0) wait_nr = 0;
    }
  }
  // A batched wait (internal/wait_batching.h) asks for target() completions
  // beyond those the submit itself posts (sends that complete inline), within
  // the window or the earlier deadline.
  bool batched = false;
  bool whole_window = true;
  unsigned ready_before = 0;
  if (wait_nr == 1 && wait_batching_.target() > 1 && !stopping_ && !ring.has_stash()) {
    const int64_t window_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(config_.wait_batch_window).count();
    whole_window = timeout_ns < 0 || timeout_ns >= window_ns;
    if (whole_window) timeout_ns = window_ns;
    ready_before = ring.SubmitWithoutWait();
    wait_nr = ready_before + wait_batching_.target();
    batched = true;
  }
  ring.SubmitAndWait(wait_nr, timeout_ns);
  // Every io_uring_enter of the ring, the loop's and those made meanwhile (a
  // full SQ, Ring::SubmitNow for block::TargetOptions::submit_batch).
  metrics.submit_calls.Set(ring.submit_calls());
  metrics.sqes_submitted.Set(ring.sqes_submitted());
  metrics.backpressure.Set(ring.backpressure_events());

  // A new iteration's time: read on first use (now()), which is at the
  // earliest here, after the wake-up, so the tasks the completions resume
  // below never see a time from before it.
  now_read_ = false;

  // Counted on the rarer path (a completion that resumes no task), so that
  // the common one carries no counter of its own.
  uint64_t not_resumed = 0;
  // Bytes the completions moved (a receive's, a send's, a read's or write's
  // result), the unit of work batching measures: completions are not one,
  // since batched replies leave in fewer sends and requests arrive in fewer
  // receives.
  uint64_t bytes = 0;
  const uint64_t stale_before = slab.stale_completions();
  // Inlined into both of ForEachCompletion's loops (CQ and stash), so the
  // per-completion path has no call and keeps its state in registers.
  const auto on_completion = [&](const Completion& c) __attribute__((always_inline)) {
    // The task awaiting the operation runs now, not via the ready queue: it
    // was suspended in an OpAwaiter, so nothing else runs it, and it runs to
    // its next suspension and returns here (one level deep: a task cannot
    // re-enter this loop). Its CQE is already consumed, so it may submit
    // freely (Ring::ForEachCompletion).
    bytes += static_cast<uint32_t>(std::max(c.res, 0));
    if (PromiseBase* p =
            slab.DispatchTakingWaiter(c.user_data, c.res, c.flags, c.big[0], c.big[1])) {
      p->self().resume();
    } else {
      ++not_resumed;
    }
  };
  const std::size_t reaped = ring.ForEachCompletion(on_completion);
  metrics.cqes.Add(reaped);
  {
    const uint32_t arrived =
        static_cast<uint32_t>(reaped > ready_before ? reaped - ready_before : 0);
    if (batched) {
      metrics.wait_batches.Add();
      if (arrived < wait_batching_.target()) metrics.wait_batches_unfilled.Add();
    }
    wait_batching_.AfterWait(
        batched, static_cast<uint32_t>(reaped), bytes, arrived, whole_window,
        [&] {
          return std::chrono::duration_cast<std::chrono::nanoseconds>(now().time_since_epoch())
              .count();
        },
        [] {
          timespec ts{};
          clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
          return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
        });
    metrics.workers_batching.Set(wait_batching_.batching() ? 1 : 0);
  }
  metrics.tasks_polled.Add(reaped - not_resumed);
  if (slab.stale_completions() != stale_before) [[unlikely]] {
    metrics.stale_cqes.Add(slab.stale_completions() - stale_before);
  }
  // Inline test: the IOPOLL ring exists only where a polled target asked.
  if (poll_ring_) [[unlikely]]
    PollPollRing();

  metrics.ops_in_flight.Set(slab.in_flight());
  if (timers_.size() != 0) metrics.timers_fired.Add(timers_.Expire(now(), ready_));
  if (messages_pending_) DrainMessages();
  if (tick_hook_ && config_.tick.count() > 0 && now() >= next_tick_) {
    next_tick_ = now() + config_.tick;
    tick_hook_();
  }
}

void Worker::RunUntilStopped() {
  for (;;) {
    RunReady();
    if (stop_requested()) {
      if (!stopping_) {
        stopping_ = true;
        stop_deadline_ = Clock::now() + config_.shutdown_grace;
        stop_source_->Cancel();
        continue;  // let the tasks see the cancelled token
      }
      if (root_count_ == 0 || Clock::now() >= stop_deadline_) break;
    }
    WaitAndDispatch(true);
  }
  DestroyAllTasks();
  DrainRing();
}

void Worker::AdoptRoot(detail::RootPromiseBase* root) {
  root->worker_ = this;
  root->listed_ = true;
  root->next_root_ = roots_;
  root->prev_root_ = nullptr;
  if (roots_) roots_->prev_root_ = root;
  roots_ = root;
  ++root_count_;
  metrics_->tasks_spawned.Add();
  ready_.Push(root);
}

void Worker::ForgetRoot(detail::RootPromiseBase* root) {
  if (root->prev_root_)
    root->prev_root_->next_root_ = root->next_root_;
  else if (roots_ == root)
    roots_ = root->next_root_;
  if (root->next_root_) root->next_root_->prev_root_ = root->prev_root_;
  root->next_root_ = root->prev_root_ = nullptr;
  root->listed_ = false;
  --root_count_;
}

void Worker::DestroyAllTasks() {
  // Destroying a task frame orphans its in-flight operations (cancel submitted,
  // memory kept by the slab until the kernel's final completion).
  while (roots_) roots_->self().destroy();
  while (PromiseBase* p = ready_.Pop()) {
    (void)p;  // only frames owned by destroyed roots could be here; they unlinked
  }
  deferred_.clear();
}

WorkerService* Worker::Service(const void* key) const {
  for (const auto& [k, s] : services_) {
    if (k == key) return s.get();
  }
  return nullptr;
}

void Worker::SetService(const void* key, std::unique_ptr<WorkerService> service) {
  for (auto& [k, s] : services_) {
    if (k == key) {
      std::erase(before_submit_, s.get());
      s = std::move(service);
      return;
    }
  }
  services_.emplace_back(key, std::move(service));
}

void Worker::DrainRing() {
  stopping_ = true;
  draining_ = true;
  slab_->CancelAll();
  const auto limit = Clock::now() + kDrainLimit;
  while (slab_->in_flight() > 0 && Clock::now() < limit) {
    // Polled commands are not cancelled; they finish when polled (below).
    if (poll_ring_ && poll_ring_->in_flight() > 0)
      ring_->SubmitAndWait(0, -1);
    else
      ring_->SubmitAndWait(1, 10'000'000);
    ring_->ForEachCompletion(
        [this](const Completion& c) { slab_->Dispatch(c.user_data, c.res, c.flags, c.big); });
    PollPollRing();
    // Woken waiters belong to destroyed tasks only if something is badly wrong;
    // nothing is resumed during the drain.
    while (ready_.Pop()) {
    }
  }
  if (slab_->in_flight() > 0) {
    RL_LOG_ERROR("worker %u: %u operations still in flight after %ds; leaking their memory", index_,
                 slab_->in_flight(), static_cast<int>(kDrainLimit.count()));
    (void)slab_.release();  // never free memory the kernel may still write
  }
}

}  // namespace ringline
