#pragma once
// Device faults made on demand: FaultyTarget forwards to another block::Target
// and, by rule, fails requests with an errno (EIO, ENOSPC, ...) or delays them,
// on chosen operation kinds, at chosen offsets, on the nth matching request or
// with a seeded probability. It is for tests of whatever sits above a Target (a
// server must answer each fault with an error, never with success, and keep
// serving), in the manner of LevelDB's fault-injection Env.
//
//   FaultRule eio{.ops = OpBit(OpKind::kWrite), .offset = 1 << 20, .length = 4096,
//                 .error = EIO};
//   auto plan = FaultPlan::Create({eio}, /*seed=*/7);   // StatusOr
//   FaultyTarget disk(std::move(file), *plan);
//   co_await disk.Write(1 << 20, std::move(buf));       // res == -EIO
//
// Two parts:
//  - FaultPlan: the rules and their counters. Immutable rules, atomic
//    counters: one plan may be shared by FaultyTargets on several workers (a
//    server that opens one target per worker on the same file), and the nth
//    matching request is then counted across all of them.
//  - FaultyTarget: one per inner target, on the inner target's worker.
//
// Added latency waits on the worker's timer heap (ringline/sleep.h), never
// blocking the thread. Destroying a task that waits there removes the timer;
// destroying one whose request is in the inner target is the inner target's
// business (its operation's memory stays with the engine until the kernel is
// done, docs/io_uring-rules.md R1).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ringline/block/target.h"

namespace ringline::block {

// A set of operation kinds: OpBit(OpKind::kWrite) | OpBit(OpKind::kFlush).
constexpr uint32_t OpBit(OpKind kind) { return 1u << static_cast<unsigned>(kind); }
inline constexpr uint32_t kAllOps = (1u << kOpKinds) - 1;

// When an injected error takes effect.
enum class FaultTiming : uint8_t {
  // The request never reaches the inner target: nothing is read or written,
  // like a device that refuses the command (or a filesystem out of space).
  kInstead,
  // The request runs on the inner target, then a success is replaced by the
  // error: the device did the work but reported failure (a write that may have
  // landed, a flush whose outcome is unknown). A failure of the inner request
  // is returned as it is.
  kAfter,
};
// "instead", "after".
const char* FaultTimingName(FaultTiming timing);

// One rule. A request *matches* a rule when its kind is in `ops` and its byte
// range overlaps [offset, offset + length) (length 0: every request of those
// kinds, flushes included; a flush has no range, so a rule with a range never
// matches one). Of the matching requests, counted from 0 in the order the plan
// sees them, the rule *applies* to number `skip` and on (at most `limit` of
// them; 0: no limit) and, of those, *hits* each with `probability`, decided
// by the plan's seed and the request's number (deterministic: the same
// sequence of requests gives the same hits).
struct FaultRule {
  uint32_t ops = kAllOps;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t skip = 0;
  uint64_t limit = 0;
  double probability = 1.0;  // [0, 1]
  // A hit fails the request with this errno (positive; 0: no error, only the
  // latency below).
  int error = 0;
  FaultTiming timing = FaultTiming::kInstead;
  // A hit waits this long before the request goes on (or fails, kInstead).
  std::chrono::nanoseconds latency{0};
};

// What the plan decided for one request: the sum of the latencies of every
// rule that hit it, and the error of the first such rule that has one.
struct FaultDecision {
  int error = 0;  // positive errno, 0: none
  FaultTiming timing = FaultTiming::kInstead;
  std::chrono::nanoseconds latency{0};
  int rule = -1;  // the index of the rule whose error applies, -1: none
  bool any() const { return error != 0 || latency.count() > 0; }
};

// The rules and their counters.
// Thread-safety: Decide() and the counters may be used from any thread at
// once (the rules never change after Create; the counters are atomics).
// Lifetime: shared (std::shared_ptr) by the targets that use it.
class FaultPlan {
 public:
  // Fails naming the rule and the field when a rule is invalid (ops empty or
  // outside kAllOps, probability outside [0, 1], negative error or latency, an
  // offset range that wraps around).
  static absl::StatusOr<std::shared_ptr<FaultPlan>> Create(std::vector<FaultRule> rules,
                                                           uint64_t seed = 1);
  FaultPlan(const FaultPlan&) = delete;
  FaultPlan& operator=(const FaultPlan&) = delete;

  // Counts the request against every rule it matches and returns what to do.
  // `length` is ignored for flushes.
  FaultDecision Decide(OpKind kind, uint64_t offset, uint64_t length);

  std::size_t size() const { return rules_.size(); }
  const FaultRule& rule(std::size_t i) const { return rules_[i].rule; }
  uint64_t seed() const { return seed_; }
  // Requests that matched rule i, and how many of them it hit.
  uint64_t matched(std::size_t i) const {
    return rules_[i].matched.load(std::memory_order_relaxed);
  }
  uint64_t hits(std::size_t i) const { return rules_[i].hits.load(std::memory_order_relaxed); }
  // Requests failed with an injected error (by any rule), and requests delayed.
  uint64_t errors_injected() const { return errors_.load(std::memory_order_relaxed); }
  uint64_t delays_injected() const { return delays_.load(std::memory_order_relaxed); }
  // "write,flush at [0, 4096) from #2, at most 1, p=0.5: EIO after, +10 ms".
  std::string Describe(std::size_t i) const;

 private:
  struct RuleState {
    FaultRule rule;
    std::atomic<uint64_t> matched{0};
    std::atomic<uint64_t> hits{0};
  };
  FaultPlan(std::vector<FaultRule> rules, uint64_t seed);
  // True when the rule hits its match number `n`.
  bool Hits(std::size_t i, uint64_t n) const;

  std::vector<RuleState> rules_;  // sized once in the constructor, never resized
  uint64_t seed_;
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> delays_{0};
};

// A Target that forwards to `inner` and injects what its plan decides.
// Ownership: owns the inner target. Requests that no rule hits go straight to
// the inner target (its task is returned as it is: no extra coroutine). An
// injected failure hands the request's buffer back like any failure, and its
// status names the rule ("injected by fault rule 0").
// metrics() and queue() are the inner target's: requests failed kInstead never
// reach it and are not counted there (the plan counts them).
// Thread-safety and lifetime: those of the inner target (one worker; destroy
// the tasks that use it first). set_plan() only on that worker's thread.
class FaultyTarget final : public Target {
 public:
  // `plan` may be null: no faults until set_plan().
  FaultyTarget(std::unique_ptr<Target> inner, std::shared_ptr<FaultPlan> plan);

  const Geometry& geometry() const override { return inner_->geometry(); }
  const std::string& name() const override { return inner_->name(); }

  Task<BlockResult> Read(uint64_t offset, uint32_t length, Buffer buffer) override;
  Task<BlockResult> Write(uint64_t offset, Buffer buffer, WriteOptions options = {}) override;
  Task<BlockResult> Flush() override;
  Task<BlockResult> Discard(uint64_t offset, uint64_t length) override;
  Task<BlockResult> WriteZeroes(uint64_t offset, uint64_t length,
                                WriteOptions options = {}) override;
  // Advisory and extent queries are forwarded without faults (they have no
  // OpKind).
  Task<BlockResult> Cache(uint64_t offset, uint64_t length) override;
  Task<ExtentResult> Extents(uint64_t offset, uint64_t length, std::span<Extent> out) override;

  const TargetMetrics* metrics() const override { return inner_->metrics(); }
  const QueueDepthLimiter* queue() const override { return inner_->queue(); }

  Target& inner() { return *inner_; }
  FaultPlan* plan() const { return plan_.get(); }
  // Requests decided after this call use `plan` (null: none); requests already
  // decided keep their decision.
  void set_plan(std::shared_ptr<FaultPlan> plan) { plan_ = std::move(plan); }

 private:
  // One request, as handed in.
  struct Request {
    OpKind kind;
    uint64_t offset;
    uint64_t length;
    Buffer buffer;
    WriteOptions options;
  };
  FaultDecision Decide(OpKind kind, uint64_t offset, uint64_t length) {
    return plan_ ? plan_->Decide(kind, offset, length) : FaultDecision{};
  }
  // The inner target's task for `r` (not started).
  Task<BlockResult> Forward(Request r);
  // A request some rule hit: waits, then fails it or forwards it.
  Task<BlockResult> Faulted(Request r, FaultDecision d);
  // The injected failure of `r`.
  BlockResult Injected(const Request& r, const FaultDecision& d, Buffer buffer) const;

  std::unique_ptr<Target> inner_;
  std::shared_ptr<FaultPlan> plan_;
};

}  // namespace ringline::block
