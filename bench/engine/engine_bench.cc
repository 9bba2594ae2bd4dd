// Engine micro-benchmarks: task spawn+complete, timer arm+fire, and NOPs
// through the ring at batch 1 and 32, each beside a bare-liburing loop doing the
// same NOPs on a ring set up the same way (SQE128|CQE32, SINGLE_ISSUER,
// DEFER_TASKRUN), so the ratio is the engine's own overhead per operation.
#include <benchmark/benchmark.h>

#include <vector>

#include "bench/engine/nop_loops.h"
#include "ringline/ringline.h"

namespace ringline {
namespace {

Worker& TheWorker() {
  static std::unique_ptr<Worker> w = [] {
    auto r = Worker::Create(Config{});
    if (!r.ok()) std::abort();
    return std::move(*r);
  }();
  return *w;
}

Task<> Empty() { co_return; }

void BM_TaskSpawnComplete(benchmark::State& state) {
  Worker& w = TheWorker();
  const int batch = static_cast<int>(state.range(0));
  for (auto _ : state) {
    w.BlockOn([](int n) -> Task<> {
      for (int i = 0; i < n; ++i) Spawn(Empty()).Detach();
      co_return;
    }(batch));
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_TaskSpawnComplete)->Arg(64);

void BM_AwaitNestedTask(benchmark::State& state) {
  Worker& w = TheWorker();
  for (auto _ : state) {
    w.BlockOn([]() -> Task<> {
      for (int i = 0; i < 1000; ++i) co_await Empty();
    }());
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(BM_AwaitNestedTask);

void BM_TimerArmFire(benchmark::State& state) {
  Worker& w = TheWorker();
  const int batch = static_cast<int>(state.range(0));
  for (auto _ : state) {
    w.BlockOn(bench::SpawnAndJoin(batch, []() -> Task<> { co_await SleepUntil(Clock::now()); }));
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_TimerArmFire)->Arg(64);

constexpr int kNopsPerTask = 1024;

void BM_EngineNop(benchmark::State& state) {
  Worker& w = TheWorker();
  const int batch = static_cast<int>(state.range(0));
  for (auto _ : state) {
    w.BlockOn(bench::EngineNops(batch, kNopsPerTask));
  }
  state.SetItemsProcessed(state.iterations() * batch * kNopsPerTask);
}
BENCHMARK(BM_EngineNop)->Arg(1)->Arg(32);

void BM_BareLiburingNop(benchmark::State& state) {
  const unsigned batch = static_cast<unsigned>(state.range(0));
  bench::BareNopRing ring;
  if (ring.error() < 0) {
    state.SkipWithError("io_uring_queue_init_params failed");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(ring.Run(batch, kNopsPerTask));
  state.SetItemsProcessed(state.iterations() * batch * kNopsPerTask);
}
BENCHMARK(BM_BareLiburingNop)->Arg(1)->Arg(32);

}  // namespace
}  // namespace ringline

BENCHMARK_MAIN();
