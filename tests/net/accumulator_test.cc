#include "net/src/accumulator.h"

#include <gtest/gtest.h>

#include <string>

namespace ringline::net::detail {
namespace {

std::string Str(std::span<const uint8_t> s) {
  return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}
void Add(Accumulator& a, const std::string& s) {
  a.Append(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

TEST(Accumulator, AppendConsumeKeepsBytesContiguousAndInOrder) {
  Accumulator a;
  EXPECT_TRUE(a.empty());
  Add(a, "hello ");
  Add(a, "world");
  EXPECT_EQ(Str(a.data()), "hello world");
  a.Consume(6);
  EXPECT_EQ(Str(a.data()), "world");
  Add(a, "!");
  EXPECT_EQ(Str(a.data()), "world!");
  uint8_t out[3];
  EXPECT_EQ(a.Take(out, 3), 3u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(out), 3), "wor");
  EXPECT_EQ(Str(a.data()), "ld!");
  EXPECT_EQ(a.Take(out, 3), 3u);
  EXPECT_TRUE(a.empty());
}

TEST(Accumulator, CompactsBeforeGrowing) {
  Accumulator a;
  std::string chunk(3000, 'x');
  Add(a, chunk);
  const std::size_t cap = a.capacity();
  // Consume most, append again: the consumed prefix is reused, no growth.
  for (int i = 0; i < 100; ++i) {
    a.Consume(2999);
    Add(a, std::string(2999, static_cast<char>('a' + i % 26)));
    ASSERT_EQ(a.size(), 3000u);
  }
  EXPECT_EQ(a.capacity(), cap);
}

TEST(Accumulator, LargeBufferReleasedWhenEmptied) {
  Accumulator a;
  Add(a, std::string(1 << 20, 'z'));
  EXPECT_GE(a.capacity(), 1u << 20);
  a.Consume(1 << 20);
  EXPECT_EQ(a.capacity(), 0u);
  EXPECT_TRUE(a.empty());
}

TEST(Accumulator, TakeMoreThanHeldReturnsWhatThereIs) {
  Accumulator a;
  Add(a, "abc");
  uint8_t out[10];
  EXPECT_EQ(a.Take(out, 10), 3u);
  EXPECT_EQ(a.Take(out, 10), 0u);
}

}  // namespace
}  // namespace ringline::net::detail
