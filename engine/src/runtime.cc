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
#include "ringline/worker.h"

namespace ringline {
namespace detail {

struct RuntimeShared {
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<Worker*> workers;  // guarded by mu; null until started / after exit
  std::vector<std::unique_ptr<WorkerMetrics>> metrics;  // outlive the workers

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

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Start(const Config& config, WorkerMain main) {
  if (auto st = config.Validate(); !st.ok()) return st;
  if (auto st = CheckKernelSupport(); !st.ok()) return st;
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  const uint32_t n = config.workers ? config.workers : static_cast<uint32_t>(online);

  std::unique_ptr<Runtime> rt(new Runtime());
  auto shared = std::make_shared<detail::RuntimeShared>();
  rt->shared_ = shared;
  shared->workers.assign(n, nullptr);
  for (uint32_t i = 0; i < n; ++i) shared->metrics.push_back(std::make_unique<WorkerMetrics>());

  for (uint32_t i = 0; i < n; ++i) {
    const int cpu =
        config.cpus.empty() ? static_cast<int>(i % online) : config.cpus[i % config.cpus.size()];
    rt->threads_.emplace_back([shared, config, main, i, cpu] {
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
      if (shared->stop.load()) worker->RequestStop();
      Spawn(main(*worker)).Detach();
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

ShutdownHandle Runtime::shutdown_handle() const { return ShutdownHandle(shared_); }

bool Runtime::Post(uint32_t index, Message m) {
  std::lock_guard<std::mutex> lock(shared_->mu);
  if (index >= shared_->workers.size() || !shared_->workers[index]) return false;
  return shared_->workers[index]->Post(std::move(m));
}

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
