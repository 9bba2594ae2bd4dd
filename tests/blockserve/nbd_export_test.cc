// Tests of transmission-flag derivation and block-size checks
// (blockserve/nbd/export.h).

#include <gtest/gtest.h>

#include "blockserve/nbd/export.h"
#include "blockserve/nbd/protocol.h"

namespace blockserve::nbd {
namespace {

TEST(TransmissionFlagsTest, BareExportHasOnlyHasFlags) {
  EXPECT_EQ(ComputeTransmissionFlags(ExportInfo{}, false), 0x0001);
  EXPECT_EQ(ComputeTransmissionFlags(ExportInfo{}, true), 0x0001);
}

TEST(TransmissionFlagsTest, EveryCapabilitySetsItsBit) {
  ExportInfo info;
  info.can_flush = info.can_fua = info.can_trim = info.can_write_zeroes = true;
  info.can_fast_zero = info.can_cache = info.can_multi_conn = info.rotational = true;
  info.can_df = true;
  // Bits 0,2,3,4,5,6,7,8,10,11 (not 1 read-only, not 9 resize).
  EXPECT_EQ(ComputeTransmissionFlags(info, true), 0x0dfd);
  // DF only with structured replies.
  EXPECT_EQ(ComputeTransmissionFlags(info, false), 0x0d7d);
}

TEST(TransmissionFlagsTest, ReadOnlySuppressesWriteFeatures) {
  ExportInfo info;
  info.read_only = true;
  info.can_flush = info.can_fua = info.can_trim = info.can_write_zeroes = true;
  info.can_fast_zero = info.can_cache = true;
  EXPECT_EQ(ComputeTransmissionFlags(info, false),
            kFlagHasFlags | kFlagReadOnly | kFlagSendFlush | kFlagSendCache);
}

TEST(TransmissionFlagsTest, FastZeroNeedsWriteZeroes) {
  ExportInfo info;
  info.can_fast_zero = true;
  EXPECT_EQ(ComputeTransmissionFlags(info, false), kFlagHasFlags);
}

TEST(EffectiveBlockSizeTest, DefaultsCapTheMaximumAtThePayloadLimit) {
  auto bs = EffectiveBlockSize(BlockSizeConstraints{}, uint64_t{1} << 40);
  ASSERT_TRUE(bs.ok()) << bs.status();
  EXPECT_EQ(*bs, (BlockSizeConstraints{1, 4096, 32u << 20}));
}

TEST(EffectiveBlockSizeTest, SmallerMaximumIsKept) {
  auto bs = EffectiveBlockSize({4096, 4096, 1 << 20}, 1 << 30);
  ASSERT_TRUE(bs.ok()) << bs.status();
  EXPECT_EQ(bs->maximum, 1u << 20);
}

TEST(EffectiveBlockSizeTest, RejectsValuesTheSpecForbids) {
  const uint64_t size = 1 << 30;
  EXPECT_FALSE(EffectiveBlockSize({0, 4096, 1 << 20}, size).ok());           // min 0
  EXPECT_FALSE(EffectiveBlockSize({3, 4096, 1 << 20}, size).ok());           // min not 2^n
  EXPECT_FALSE(EffectiveBlockSize({1 << 17, 1 << 17, 1 << 20}, size).ok());  // min > 64K
  EXPECT_FALSE(EffectiveBlockSize({512, 256, 1 << 20}, size).ok());          // pref < 512
  EXPECT_FALSE(EffectiveBlockSize({4096, 2048, 1 << 20}, size).ok());        // pref < min
  EXPECT_FALSE(EffectiveBlockSize({512, 3000, 1 << 20}, size).ok());         // pref not 2^n
  EXPECT_FALSE(EffectiveBlockSize({512, 4096, 1000}, size).ok());            // max % min
  EXPECT_FALSE(EffectiveBlockSize({512, 8192, 4096}, size).ok());            // max < pref
  // Preferred above the 32 MiB cap cannot be honoured for a large export.
  EXPECT_FALSE(EffectiveBlockSize({512, 64u << 20, kUnlimitedBlockSize}, size).ok());
}

TEST(EffectiveBlockSizeTest, MaximumBelowPreferredIsFineForATinyExport) {
  // max must be >= min(preferred, size): a 2 KiB export needs only 2 KiB.
  auto bs = EffectiveBlockSize({512, 8192, 2048}, 2048);
  EXPECT_TRUE(bs.ok()) << bs.status();
}

TEST(EffectiveBlockSizeTest, ErrorNamesTheRule) {
  auto bs = EffectiveBlockSize({512, 4096, 1000}, 1 << 20);
  ASSERT_FALSE(bs.ok());
  EXPECT_EQ(bs.status().message(), "maximum block size 1000 must be a multiple of the minimum 512");
}

TEST(MakeTransmissionParamsTest, CombinesFlagsSizeAndConstraints) {
  ExportInfo info;
  info.size = 8192;
  info.can_flush = true;
  info.can_df = true;
  info.block_size = {512, 4096, 65536};
  auto params = MakeTransmissionParams(info, true);
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->export_size, 8192u);
  EXPECT_EQ(params->flags, kFlagHasFlags | kFlagSendFlush | kFlagSendDf);
  EXPECT_EQ(params->block_size, (BlockSizeConstraints{512, 4096, 65536}));
  EXPECT_TRUE(params->structured_replies);
  info.block_size.minimum = 100;
  EXPECT_FALSE(MakeTransmissionParams(info, true).ok());
}

}  // namespace
}  // namespace blockserve::nbd
