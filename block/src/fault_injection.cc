#include "ringline/block/fault_injection.h"

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ringline/io_result.h"
#include "ringline/sleep.h"

namespace ringline::block {
namespace {

// splitmix64's finaliser: a well-mixed 64-bit value from any input, so the
// hit of match n depends only on (seed, rule, n), not on what ran before or
// on which worker.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string OpsText(uint32_t ops) {
  if (ops == kAllOps) return "any operation";
  std::string s;
  for (int k = 0; k < kOpKinds; ++k) {
    if (ops & OpBit(static_cast<OpKind>(k))) {
      absl::StrAppend(&s, s.empty() ? "" : ",", OpKindName(static_cast<OpKind>(k)));
    }
  }
  return s;
}

}  // namespace

const char* FaultTimingName(FaultTiming timing) {
  return timing == FaultTiming::kAfter ? "after" : "instead";
}

// ---- FaultPlan ---------------------------------------------------------------------

absl::StatusOr<std::shared_ptr<FaultPlan>> FaultPlan::Create(std::vector<FaultRule> rules,
                                                             uint64_t seed) {
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const FaultRule& r = rules[i];
    const std::string where = absl::StrCat("fault rule ", i, ": ");
    if (r.ops == 0 || (r.ops & ~kAllOps) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, "ops 0x", absl::Hex(r.ops),
                                                     " names no operation kind or an unknown one"));
    }
    if (!(r.probability >= 0.0 && r.probability <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "probability ", r.probability, " is outside [0, 1]"));
    }
    if (r.error < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "error ", r.error, " must be a positive errno (or 0 for none)"));
    }
    if (r.latency.count() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, "latency must not be negative"));
    }
    if (r.length != 0 && r.offset > UINT64_MAX - r.length) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "offset ", r.offset, " + length ", r.length, " wraps around"));
    }
  }
  return std::shared_ptr<FaultPlan>(new FaultPlan(std::move(rules), seed));
}

FaultPlan::FaultPlan(std::vector<FaultRule> rules, uint64_t seed)
    : rules_(rules.size()), seed_(seed) {
  for (std::size_t i = 0; i < rules.size(); ++i) rules_[i].rule = rules[i];
}

bool FaultPlan::Hits(std::size_t i, uint64_t n) const {
  const FaultRule& r = rules_[i].rule;
  if (n < r.skip) return false;
  if (r.limit != 0 && n - r.skip >= r.limit) return false;
  if (r.probability >= 1.0) return true;
  if (r.probability <= 0.0) return false;
  // 53 random bits as a double in [0, 1).
  const uint64_t h = Mix(seed_ ^ Mix(i ^ Mix(n)));
  return static_cast<double>(h >> 11) * 0x1.0p-53 < r.probability;
}

FaultDecision FaultPlan::Decide(OpKind kind, uint64_t offset, uint64_t length) {
  FaultDecision d;
  const uint32_t bit = OpBit(kind);
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    RuleState& s = rules_[i];
    const FaultRule& r = s.rule;
    if ((r.ops & bit) == 0) continue;
    if (r.length != 0) {
      // A flush has no range; other requests overlap [offset, offset + length).
      if (kind == OpKind::kFlush) continue;
      const uint64_t end = length > UINT64_MAX - offset ? UINT64_MAX : offset + length;
      if (end <= r.offset || offset >= r.offset + r.length) continue;
    }
    const uint64_t n = s.matched.fetch_add(1, std::memory_order_relaxed);
    if (!Hits(i, n)) continue;
    s.hits.fetch_add(1, std::memory_order_relaxed);
    d.latency += r.latency;
    if (d.error == 0 && r.error != 0) {
      d.error = r.error;
      d.timing = r.timing;
      d.rule = static_cast<int>(i);
    }
  }
  if (d.error != 0) errors_.fetch_add(1, std::memory_order_relaxed);
  if (d.latency.count() > 0) delays_.fetch_add(1, std::memory_order_relaxed);
  return d;
}

std::string FaultPlan::Describe(std::size_t i) const {
  const FaultRule& r = rules_[i].rule;
  std::string s = OpsText(r.ops);
  if (r.length != 0) absl::StrAppend(&s, " at [", r.offset, ", ", r.offset + r.length, ")");
  if (r.skip != 0) absl::StrAppend(&s, " from match #", r.skip);
  if (r.limit != 0) absl::StrAppend(&s, ", at most ", r.limit);
  if (r.probability < 1.0) absl::StrAppend(&s, ", p=", r.probability);
  absl::StrAppend(&s, ":");
  if (r.error != 0) absl::StrAppend(&s, " ", ErrnoName(r.error), " ", FaultTimingName(r.timing));
  if (r.latency.count() > 0) {
    absl::StrAppend(&s, " +", absl::StrFormat("%.3f", r.latency.count() / 1e6), " ms");
  }
  return s;
}

// ---- FaultyTarget --------------------------------------------------------------------

FaultyTarget::FaultyTarget(std::unique_ptr<Target> inner, std::shared_ptr<FaultPlan> plan)
    : inner_(std::move(inner)), plan_(std::move(plan)) {}

Task<BlockResult> FaultyTarget::Read(uint64_t offset, uint32_t length, Buffer buffer) {
  const FaultDecision d = Decide(OpKind::kRead, offset, length);
  if (!d.any()) [[likely]]
    return inner_->Read(offset, length, std::move(buffer));
  return Faulted({OpKind::kRead, offset, length, std::move(buffer), {}}, d);
}

Task<BlockResult> FaultyTarget::Write(uint64_t offset, Buffer buffer, WriteOptions options) {
  const uint64_t length = buffer.size();
  const FaultDecision d = Decide(OpKind::kWrite, offset, length);
  if (!d.any()) [[likely]]
    return inner_->Write(offset, std::move(buffer), options);
  return Faulted({OpKind::kWrite, offset, length, std::move(buffer), options}, d);
}

Task<BlockResult> FaultyTarget::Flush() {
  const FaultDecision d = Decide(OpKind::kFlush, 0, 0);
  if (!d.any()) [[likely]]
    return inner_->Flush();
  return Faulted({OpKind::kFlush, 0, 0, Buffer(), {}}, d);
}

Task<BlockResult> FaultyTarget::Discard(uint64_t offset, uint64_t length) {
  const FaultDecision d = Decide(OpKind::kDiscard, offset, length);
  if (!d.any()) [[likely]]
    return inner_->Discard(offset, length);
  return Faulted({OpKind::kDiscard, offset, length, Buffer(), {}}, d);
}

Task<BlockResult> FaultyTarget::WriteZeroes(uint64_t offset, uint64_t length,
                                            WriteOptions options) {
  const FaultDecision d = Decide(OpKind::kWriteZeroes, offset, length);
  if (!d.any()) [[likely]]
    return inner_->WriteZeroes(offset, length, options);
  return Faulted({OpKind::kWriteZeroes, offset, length, Buffer(), options}, d);
}

Task<BlockResult> FaultyTarget::Cache(uint64_t offset, uint64_t length) {
  return inner_->Cache(offset, length);
}

Task<ExtentResult> FaultyTarget::Extents(uint64_t offset, uint64_t length, std::span<Extent> out) {
  return inner_->Extents(offset, length, out);
}

Task<BlockResult> FaultyTarget::Forward(Request r) {
  switch (r.kind) {
    case OpKind::kRead:
      return inner_->Read(r.offset, static_cast<uint32_t>(r.length), std::move(r.buffer));
    case OpKind::kWrite:
      return inner_->Write(r.offset, std::move(r.buffer), r.options);
    case OpKind::kFlush:
      return inner_->Flush();
    case OpKind::kDiscard:
      return inner_->Discard(r.offset, r.length);
    case OpKind::kWriteZeroes:
      break;
  }
  return inner_->WriteZeroes(r.offset, r.length, r.options);
}

BlockResult FaultyTarget::Injected(const Request& r, const FaultDecision& d, Buffer buffer) const {
  std::string context = r.kind == OpKind::kFlush
                            ? absl::StrCat("flush of ", name())
                            : absl::StrCat(OpKindName(r.kind), " of ", r.length,
                                           " bytes at offset ", r.offset, " on ", name());
  absl::StrAppend(&context, ": injected by fault rule ", d.rule,
                  d.timing == FaultTiming::kAfter ? " (after the request ran)" : "");
  BlockResult out;
  out.res = -d.error;
  out.status = ErrnoToStatus(-d.error, context);
  out.buffer = std::move(buffer);
  return out;
}

// The request lives in this frame while it waits (its buffer included: no
// kernel operation refers to it yet); destroying the task then frees it and
// removes the timer.
Task<BlockResult> FaultyTarget::Faulted(Request r, FaultDecision d) {
  if (d.latency.count() > 0) co_await Sleep(d.latency);
  if (d.error != 0 && d.timing == FaultTiming::kInstead) {
    Buffer buffer = std::move(r.buffer);
    co_return Injected(r, d, std::move(buffer));
  }
  const Request shape{r.kind, r.offset, r.length, Buffer(), r.options};
  BlockResult result = co_await Forward(std::move(r));
  if (d.error != 0 && result.ok()) result = Injected(shape, d, std::move(result.buffer));
  co_return result;
}

}  // namespace ringline::block
