#pragma once
// Runtime: N workers, one per CPU, each running its own handler instance.
//
//   auto rt = Runtime::Start(config, [](Worker& w) -> Task<absl::Status> { ... per-worker main ...
//   }); auto signals = SignalShutdown::Install();                    // SIGINT/SIGTERM
//   signals->Attach((*rt)->shutdown_handle());
//   absl::Status st = (*rt)->Wait();   // Join(), and the first error a worker main returned
//
// A worker main returning Task<absl::Status> reports failure by returning an
// error: that stops the whole runtime (as Shutdown() does) and Wait() returns
// it, prefixed with the worker's index. A main returning OK (or a Task<> main)
// just ends; the worker keeps running the tasks it spawned until shutdown. Any
// task can do the same with Worker::StopRuntime(status).
//
// Start probes the kernel first and fails with an actionable message; a worker
// that fails to start stops the ones already started. Shutdown (from any thread,
// or a signal) asks every worker to stop: their stop tokens are cancelled, tasks
// get Config::shutdown_grace to finish, the rest are destroyed and their
// operations cancelled, and the threads are joined.

#include <atomic>
#include <csignal>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ringline/config.h"
#include "ringline/message_queue.h"
#include "ringline/metrics.h"
#include "ringline/task.h"

namespace ringline {

class Worker;

namespace detail {
struct RuntimeShared;
struct PeerRouting;
}  // namespace detail

// Copyable; usable from any thread, including a signal-handling thread.
class ShutdownHandle {
 public:
  ShutdownHandle() = default;
  explicit ShutdownHandle(std::shared_ptr<detail::RuntimeShared> s) : shared_(std::move(s)) {}
  void Shutdown() const;
  bool requested() const;

 private:
  std::shared_ptr<detail::RuntimeShared> shared_;
};

class Runtime {
 public:
  // Called on each worker's thread to build that worker's handler and return its
  // main task (which may spawn more). Must be thread-safe.
  using WorkerMain = std::function<Task<>(Worker&)>;
  // The same, for a main that can fail: an error stops the runtime and is what
  // Wait() returns.
  using FallibleWorkerMain = std::function<Task<absl::Status>(Worker&)>;

  static absl::StatusOr<std::unique_ptr<Runtime>> Start(const Config& config, WorkerMain main);
  static absl::StatusOr<std::unique_ptr<Runtime>> Start(const Config& config,
                                                        FallibleWorkerMain main);
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;
  ~Runtime();  // Shutdown() and Join()

  void Shutdown();
  // Waits for every worker to exit.
  void Join();
  // Join(), then the first error a worker main returned or passed to
  // Worker::StopRuntime() (later ones are logged), else OK. May be called again
  // (returns the same).
  absl::Status Wait();
  ShutdownHandle shutdown_handle() const;

  // Thread-safe: runs `m` on worker `index`; false if its queue is full.
  bool Post(uint32_t index, Message m);
  uint32_t worker_count() const { return static_cast<uint32_t>(threads_.size()); }
  // Thread-safe, lock-free with respect to the workers.
  MetricsSnapshot Metrics() const;

 private:
  friend struct detail::PeerRouting;
  Runtime() = default;
  std::shared_ptr<detail::RuntimeShared> shared_;
  std::vector<std::thread> threads_;
};

// Blocks SIGINT and SIGTERM in the calling thread (call it before
// Runtime::Start so workers inherit the mask) and starts a thread that waits for
// them and calls handle.Shutdown(). Destroying the guard stops that thread and
// restores the mask.
class SignalShutdown {
 public:
  static std::unique_ptr<SignalShutdown> Install();
  ~SignalShutdown();
  void Attach(ShutdownHandle handle);
  // The signal that triggered shutdown, or 0.
  int received() const { return received_.load(); }

 private:
  SignalShutdown() = default;
  void Loop();

  sigset_t old_mask_{};
  std::thread thread_;
  std::atomic<int> received_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  ShutdownHandle handle_;  // guarded by mu_
};

}  // namespace ringline
