// Config validation: a bad value fails naming the field, the value and the range.
#include "ringline/config.h"

#include <gtest/gtest.h>

namespace ringline {
namespace {

std::string ErrorOf(const Config& c) { return std::string(c.Validate().message()); }

TEST(ConfigTest, DefaultsAreValid) { EXPECT_TRUE(Config{}.Validate().ok()); }

TEST(ConfigTest, BadValuesNameFieldValueAndRange) {
  Config c;
  c.ring.sq_entries = 100;
  EXPECT_EQ(ErrorOf(c),
            "config.ring.sq_entries = 100 is invalid: must be a power of two in [8, 32768]");

  c = Config{};
  c.ring.cq_entries = c.ring.sq_entries;
  EXPECT_NE(ErrorOf(c).find("config.ring.cq_entries = 256 is invalid: must be a power of two "
                            "larger than ring.sq_entries (256)"),
            std::string::npos);

  c = Config{};
  c.cpus = {0, 4096};
  EXPECT_NE(ErrorOf(c).find("config.cpus[1] = 4096 is invalid: allowed range is [0, "),
            std::string::npos);

  c = Config{};
  c.ring.direct_alloc_files = c.ring.fixed_files;
  EXPECT_NE(ErrorOf(c).find("config.ring.direct_alloc_files = 4096"), std::string::npos);

  c = Config{};
  c.tick = std::chrono::milliseconds(-5);
  EXPECT_EQ(ErrorOf(c),
            "config.tick = -5ms is invalid: must not be negative (0 disables the tick)");

  c = Config{};
  c.wait_batch_max = 0;
  EXPECT_EQ(ErrorOf(c),
            "config.wait_batch_max = 0 is invalid: allowed range is [1, 256] (1 turns completion "
            "batching off)");
  c = Config{};
  c.wait_batch_window = std::chrono::microseconds(0);
  EXPECT_EQ(ErrorOf(c),
            "config.wait_batch_window = 0us is invalid: allowed range is [1us, 10000us]");

  c = Config{};
  c.message_queue_capacity = 0;
  EXPECT_EQ(ErrorOf(c),
            "config.message_queue_capacity = 0 is invalid: allowed range is [1, 1048576]");
  EXPECT_EQ(c.Validate().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ringline
