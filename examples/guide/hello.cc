// The guide's first program (docs/guide.md, step 1): Config::workers workers,
// each running its own main task on its own thread until SIGINT or SIGTERM.
// [snippet:hello]
#include <cstdio>

#include "ringline/ringline.h"

ringline::Task<int> Answer() {
  co_await ringline::Sleep(std::chrono::milliseconds(1));  // a timer on this worker's ring
  ringline::IoResult r = co_await ringline::Nop();         // an operation through the ring
  co_return r.ok() ? 42 : -1;
}

// Runs once on every worker, on that worker's thread.
ringline::Task<> WorkerMain(ringline::Worker& worker) {
  const int answer = co_await Answer();
  std::printf("worker %u of %u: %d\n", worker.index(), worker.worker_count(), answer);
  std::fflush(stdout);
  co_await worker.stop_token().Cancelled();  // until shutdown
}

int main() {
  auto signals = ringline::SignalShutdown::Install();  // before any thread starts
  ringline::Config config;  // workers: one per CPU we may use; shutdown grace: 5 s
  auto rt = ringline::Runtime::Start(config, WorkerMain);
  if (!rt.ok()) {
    std::fprintf(stderr, "%s\n", rt.status().ToString().c_str());
    return 1;
  }
  signals->Attach((*rt)->shutdown_handle());
  (*rt)->Join();  // returns when every worker has stopped
  return 0;
}
// [/snippet:hello]
