// Timers: 100,000 concurrent sleeps all fire, none early; cancelled sleeps vanish.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "ringline/ringline.h"

namespace ringline {
namespace {

TEST(TimerTest, HundredThousandConcurrentSleepsAllFireNoneEarly) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  constexpr int kSleeps = 100000;
  struct Record {
    Clock::time_point deadline;
    Clock::time_point woke;
    bool fired = false;
  };
  std::vector<Record> records(kSleeps);
  auto r = (*w)->BlockOn([](std::vector<Record>* recs) -> Task<int> {
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> us(0, 200000);
    std::vector<JoinHandle<void>> handles;
    handles.reserve(kSleeps);
    const auto start = Clock::now();
    for (int i = 0; i < kSleeps; ++i) {
      (*recs)[i].deadline = start + std::chrono::microseconds(us(rng));
      handles.push_back(Spawn([](Record* rec) -> Task<> {
        co_await SleepUntil(rec->deadline);
        rec->woke = Clock::now();
        rec->fired = true;
      }(&(*recs)[i])));
    }
    int joined = 0;
    for (auto& h : handles) {
      const auto outcome = co_await h;  // not in the condition: docs/gcc12-coroutines.md
      if (outcome.has_value()) ++joined;
    }
    co_return joined;
  }(&records));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, kSleeps);
  int early = 0, missing = 0;
  for (const auto& rec : records) {
    if (!rec.fired)
      ++missing;
    else if (rec.woke < rec.deadline)
      ++early;
  }
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(early, 0);
  EXPECT_EQ((*w)->timers().size(), 0u);
  EXPECT_GE((*w)->metrics().timers_fired.Get(), static_cast<uint64_t>(kSleeps));
}

TEST(TimerTest, SleepZeroAndPastDeadlinesComplete) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok());
  auto r = (*w)->BlockOn([]() -> Task<int> {
    co_await Sleep(std::chrono::nanoseconds(0));
    co_await SleepUntil(Clock::now() - std::chrono::seconds(1));
    co_return 1;
  }());
  EXPECT_EQ(*r, 1);
}

TEST(TimerTest, TimerQueueOrdersEqualDeadlinesFifo) {
  TimerQueue q;
  ReadyQueue ready;
  std::vector<TimerNode> nodes(5);
  const auto t = Clock::now();
  for (auto& n : nodes) {
    n.deadline = t;
    q.Insert(&n);
  }
  q.Remove(&nodes[2]);
  EXPECT_FALSE(nodes[2].queued());
  EXPECT_EQ(q.size(), 4u);
  EXPECT_EQ(q.Expire(t - std::chrono::nanoseconds(1), ready), 0u);
  EXPECT_EQ(q.Expire(t, ready), 4u);
  EXPECT_EQ(q.size(), 0u);
}

}  // namespace
}  // namespace ringline
