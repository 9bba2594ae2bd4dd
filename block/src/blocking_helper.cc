#include "blocking_helper.h"

#include <chrono>

namespace ringline::block {

BlockingHelper::~BlockingHelper() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BlockingHelper::Enqueue(Worker* worker, std::shared_ptr<CallState> state,
                             absl::AnyInvocable<int()> call) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(Job{worker, std::move(state), std::move(call)});
    if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
  }
  cv_.notify_one();
}

void BlockingHelper::Loop() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Queued jobs still run after stop_: their callers wait for a result.
      cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    const int result = job.call();
    job.call = nullptr;
    // Deliver on the worker's thread; a full message queue is backpressure,
    // so retry until it has room (each attempt builds a fresh message: a
    // refused one is destroyed by Post).
    while (!job.worker->Post([state = job.state, result] {
      if (state->abandoned) return;
      state->result = result;
      state->done = true;
      Worker::Current().internals().Schedule(state->waiter);
    })) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
}

}  // namespace ringline::block
