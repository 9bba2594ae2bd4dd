// The coroutine shapes ringline's rules (docs/gcc12-coroutines.md) prescribe,
// run on ringline::Task with whichever compiler builds the tree: g++ 12 in the
// main CI pass, clang 14 + ASan/UBSan in the sanitizer pass. The shapes g++ 12
// miscompiles are shown, on both compilers, by tests/engine/gcc12/check_shapes.sh.
#include <gtest/gtest.h>

#include <string>

#include "ringline/ringline.h"

namespace ringline {
namespace {

Task<bool> Positive(int v) {
  co_await Nop();  // suspends through the ring: a real engine round trip
  co_return v > 0;
}
struct Options {  // an aggregate owning memory, like net::ConnectOptions
  std::string name;
  int count = 0;
};
Task<std::size_t> NameLength(const Options& o) {
  co_await Nop();
  co_return o.name.size();
}

// Rule 1: await into a named local, then branch on it, even in a coroutine
// whose outermost block has no other variable.
Task<int> AwaitIntoLocalThenIf(int v) {
  const bool positive = co_await Positive(v);
  if (!positive) co_return -1;
  co_return 1;
}
Task<int> AwaitIntoLocalThenSwitch(int v) {
  const bool positive = co_await Positive(v);
  switch (positive ? 1 : 0) {
    case 1:
      co_return 1;
    default:
      co_return -1;
  }
}
// Rule 2: aggregates that own memory are named before the statement that
// awaits.
Task<std::size_t> NamedAggregate() {
  const Options options{.name = "a name longer than the small-string buffer"};
  const std::size_t n = co_await NameLength(options);
  co_return n;
}

TEST(CoroutineShapesTest, AwaitIntoALocalThenBranch) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->BlockOn(AwaitIntoLocalThenIf(1)), 1);
  EXPECT_EQ((*w)->BlockOn(AwaitIntoLocalThenIf(-1)), -1);
  EXPECT_EQ((*w)->BlockOn(AwaitIntoLocalThenSwitch(1)), 1);
  EXPECT_EQ((*w)->BlockOn(AwaitIntoLocalThenSwitch(-1)), -1);
}

TEST(CoroutineShapesTest, NamedAggregateOwningMemory) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->BlockOn(NamedAggregate()),
            std::string("a name longer than the small-string buffer").size());
}

}  // namespace
}  // namespace ringline
