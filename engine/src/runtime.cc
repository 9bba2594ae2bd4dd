#include "ringline/runtime.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "ringline/io_result.h"
#include "ringline/log.h"
#include "ringline/probe.h"
#include "ringline/spawn.h"
#include "ringline/submit_to.h"
#include "ringline/worker.h"

namespace ringline {
namespace detail {

struct RuntimeShared {
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<Worker*> workers;  // guarded by mu; null until started / after exit
  std::vector<std::unique_ptr<WorkerMetrics>> metrics;  // outlive the workers

  // The first error a worker main returned (guarded by mu).
  absl::Status exit_error;

  // Records `why` (if it is an error and the first) and stops every worker.
  void StopWith(uint32_t worker, const absl::Status& why) {
    if (!why.ok()) {
      std::lock_guard<std::mutex> lock(mu);
      const absl::Status tagged(why.code(), absl::StrCat("worker ", worker, ": ", why.message()));
      if (exit_error.ok()) {
        exit_error = tagged;
      } else {
        RL_LOG_ERROR("after the first error, %s", tagged.ToString().c_str());
      }
    }
    StopAll();
  }

  // Start-up handshake.
  std::condition_variable started_cv;
  uint32_t started = 0;
  absl::Status first_error;

  void StopAll() {
    stop.store(true);
    std::lock_guard<std::mutex> lock(mu);
    for (Worker* w : workers) {
      if (w) w->RequestStop();
    }
  }
};

}  // namespace detail

void ShutdownHandle::Shutdown() const {
  if (shared_) shared_->StopAll();
}
bool ShutdownHandle::requested() const { return shared_ && shared_->stop.load(); }

namespace {

Task<absl::Status> RunVoidMain(Task<> main) {
  co_await std::move(main);
  co_return absl::OkStatus();
}

// The root task of a worker main: an error stops the runtime.
Task<> RunMain(Worker& worker, Task<absl::Status> main) {
  absl::Status st = co_await std::move(main);
  if (!st.ok()) worker.StopRuntime(std::move(st));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Start(const Config& config, WorkerMain main) {
  return Start(config, FallibleWorkerMain(
                           [main = std::move(main)](Worker& w) { return RunVoidMain(main(w)); }));
}

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Start(const Config& config,
                                                        FallibleWorkerMain main) {
  if (auto st = config.Validate(); !st.ok()) return st;
  if (auto st = CheckKernelSupport(); !st.ok()) return st;
  const std::vector<int> allowed = AllowedCpus();
  const uint32_t n = config.workers ? config.workers : static_cast<uint32_t>(allowed.size());

  std::unique_ptr<Runtime> rt(new Runtime());
  auto shared = std::make_shared<detail::RuntimeShared>();
  rt->shared_ = shared;
  shared->workers.assign(n, nullptr);
  for (uint32_t i = 0; i < n; ++i) shared->metrics.push_back(std::make_unique<WorkerMetrics>());

  for (uint32_t i = 0; i < n; ++i) {
    const int cpu =
        config.cpus.empty() ? allowed[i % allowed.size()] : config.cpus[i % config.cpus.size()];
    rt->threads_.emplace_back([shared, config, main, i, cpu, n] {
      absl::Status st;
      if (config.pin_workers) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (int e = pthread_setaffinity_np(pthread_self(), sizeof set, &set); e != 0) {
          st = ErrnoToStatus(-e, absl::StrCat("pinning worker ", i, " to CPU ", cpu));
        }
      }
      std::unique_ptr<Worker> worker;
      if (st.ok()) {
        auto w = Worker::Create(config, i, shared->metrics[i].get());
        if (w.ok())
          worker = std::move(*w);
        else
          st = w.status();
      }
      {
        std::lock_guard<std::mutex> lock(shared->mu);
        if (!st.ok() && shared->first_error.ok()) {
          shared->first_error =
              absl::Status(st.code(), absl::StrCat("worker ", i, ": ", st.message()));
        }
        if (worker) shared->workers[i] = worker.get();
        ++shared->started;
      }
      shared->started_cv.notify_all();
      if (!worker) return;
      worker->internals().set_runtime(shared.get());
      {
        // Every worker is in the table before any main task runs, so a main may
        // SubmitTo any worker at once.
        std::unique_lock<std::mutex> lock(shared->mu);
        shared->started_cv.wait(lock, [&] { return shared->started == n; });
      }
      if (shared->stop.load()) worker->RequestStop();
      Spawn(RunMain(*worker, main(*worker))).Detach();
      worker->RunUntilStopped();
      {
        std::lock_guard<std::mutex> lock(shared->mu);
        shared->workers[i] = nullptr;
      }
      worker.reset();
    });
  }

  std::unique_lock<std::mutex> lock(shared->mu);
  shared->started_cv.wait(lock, [&] { return shared->started == n; });
  if (!shared->first_error.ok()) {
    absl::Status err = shared->first_error;
    lock.unlock();
    rt->Shutdown();  // roll back the workers that did start
    rt->Join();
    return err;
  }
  return rt;
}

Runtime::~Runtime() {
  Shutdown();
  Join();
}

void Runtime::Shutdown() { shared_->StopAll(); }

void Runtime::Join() {
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

absl::Status Runtime::Wait() {
  Join();
  std::lock_guard<std::mutex> lock(shared_->mu);
  return shared_->exit_error;
}

void Worker::StopRuntime(absl::Status why) {
  if (runtime_) {
    runtime_->StopWith(index_, why);
    return;
  }
  if (!why.ok() && exit_status_.ok()) exit_status_ = std::move(why);
  RequestStop();
}

ShutdownHandle Runtime::shutdown_handle() const { return ShutdownHandle(shared_); }

bool Runtime::Post(uint32_t index, Message m) {
  absl::Status why;
  // A refused message is destroyed here, after the table's lock is released.
  return detail::PeerRouting::Post(shared_.get(), nullptr, index, m, /*reply=*/false, &why) == 0;
}

uint32_t Worker::worker_count() const {
  return runtime_ ? static_cast<uint32_t>(runtime_->workers.size()) : 1;  // size fixed at Start
}

namespace detail {

int PeerRouting::Post(RuntimeShared* rt, Worker* self, uint32_t index, Message& m, bool reply,
                      absl::Status* why) {
  if (!rt) {
    if (self && self->index() == index) {
      if (self->PostMessage(m, reply)) return 0;
      *why = absl::ResourceExhaustedError(absl::StrCat(
          "SubmitTo: worker ", index, "'s message queue is full (config.message_queue_capacity = ",
          self->config().message_queue_capacity, "); retry later or raise the capacity"));
      return EAGAIN;
    }
    *why = absl::InvalidArgumentError(
        absl::StrCat("SubmitTo: there is no worker ", index,
                     ": this worker runs on its own (no Runtime), so only its own index ",
                     self ? self->index() : 0, " is valid"));
    return EINVAL;
  }
  std::lock_guard<std::mutex> lock(rt->mu);
  if (index >= rt->workers.size()) {
    *why = absl::InvalidArgumentError(
        absl::StrCat("SubmitTo: there is no worker ", index, " (the runtime has ",
                     rt->workers.size(), "; valid indexes are 0..", rt->workers.size() - 1, ")"));
    return EINVAL;
  }
  Worker* w = rt->workers[index];
  if (!w) {
    *why = absl::UnavailableError(absl::StrCat("SubmitTo: worker ", index, " has stopped"));
    return ESHUTDOWN;
  }
  // A worker in the table has not closed its queue (it leaves the table first).
  if (w->PostMessage(m, reply)) return 0;
  *why = absl::ResourceExhaustedError(absl::StrCat(
      "SubmitTo: worker ", index, "'s message queue is full (config.message_queue_capacity = ",
      w->config().message_queue_capacity, "); retry later or raise the capacity"));
  return EAGAIN;
}

RuntimeShared* PeerRouting::Of(Runtime& runtime) { return runtime.shared_.get(); }

}  // namespace detail

MetricsSnapshot Runtime::Metrics() const {
  std::vector<const WorkerMetrics*> ms;
  for (const auto& m : shared_->metrics) ms.push_back(m.get());
  return SnapshotOf(ms);
}

std::unique_ptr<SignalShutdown> SignalShutdown::Install() {
  std::unique_ptr<SignalShutdown> s(new SignalShutdown());
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, &s->old_mask_);
  s->thread_ = std::thread([raw = s.get()] { raw->Loop(); });
  return s;
}

void SignalShutdown::Loop() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  while (!stop_.load()) {
    timespec ts{0, 100'000'000};
    const int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig <= 0) continue;
    received_.store(sig);
    RL_LOG_INFO("received %s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    std::lock_guard<std::mutex> lock(mu_);
    handle_.Shutdown();
  }
}

void SignalShutdown::Attach(ShutdownHandle handle) {
  std::lock_guard<std::mutex> lock(mu_);
  handle_ = std::move(handle);
}

SignalShutdown::~SignalShutdown() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
}

}  // namespace ringline
