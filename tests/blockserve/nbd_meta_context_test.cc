// NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT (negotiation.h),
// NBD_CMD_BLOCK_STATUS validation (request.h), descriptors (block_status.h),
// the block status chunk (reply.h), and the any-alignment and request-limit
// rules, against wire images derived by hand from doc/proto.md.

#include <gtest/gtest.h>

#include <string>
#include <variant>
#include <vector>

#include "blockserve/nbd/block_status.h"
#include "blockserve/nbd/negotiation.h"
#include "blockserve/nbd/protocol.h"
#include "blockserve/nbd/reply.h"
#include "blockserve/nbd/request.h"
#include "tests/blockserve/nbd_test_util.h"

namespace blockserve::nbd {
namespace {

using test_util::Bytes;
using test_util::Drive;
using test_util::DriveResult;
using test_util::EventAs;
using test_util::FakeCatalog;
using test_util::kBoth;
using test_util::kDiskFlags;
using test_util::kDiskSize;
using test_util::Wire;
using test_util::WritableInfo;

// Meta context option data: name length, name, query count, queries.
Bytes MetaData(std::string_view name, const std::vector<std::string>& queries) {
  Wire w;
  w.U32(static_cast<uint32_t>(name.size())).Str(name).U32(static_cast<uint32_t>(queries.size()));
  for (const auto& q : queries) w.U32(static_cast<uint32_t>(q.size())).Str(q);
  return w.bytes();
}

// NBD_REP_META_CONTEXT: context id, name.
Bytes MetaReply(uint32_t option, uint32_t id) {
  return Wire().Reply(option, kRepMetaContext, Wire().U32(id).Str("base:allocation").bytes());
}

class MetaContextTest : public ::testing::Test {
 protected:
  MetaContextTest() {
    catalog_.Add("disk", "", WritableInfo()).Add("other", "", WritableInfo()).SetDefault("disk");
  }
  static Bytes Expect(const Bytes& rest) { return test_util::AfterGreeting(rest); }
  DriveResult Run(const Bytes& options) {
    n_ = std::make_unique<Negotiator>(catalog_, NegotiationOptions{});
    return Drive(*n_, Wire().U32(kBoth).Raw(options));
  }
  const EnterTransmission& Enter(const DriveResult& run) {
    EXPECT_EQ(run.events.size(), 1u);
    return EventAs<EnterTransmission>(run);
  }

  FakeCatalog catalog_;
  std::unique_ptr<Negotiator> n_;
};

TEST_F(MetaContextTest, ListWithNoQueriesListsBaseAllocationWithIdZero) {
  const DriveResult run = Run(Wire().Option(kOptListMetaContext, MetaData("disk", {})));
  // Hand-derived: magic, option 9, type 4, length 19, id 0, "base:allocation".
  const Bytes reply = {0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9, 0x00, 0x00, 0x00, 0x09, 0x00,
                       0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x13, 0x00, 0x00, 0x00, 0x00, 'b',  'a',
                       's',  'e',  ':',  'a',  'l',  'l',  'o',  'c',  'a',  't',  'i',  'o',  'n'};
  EXPECT_EQ(run.output, Expect(Wire().Raw(reply).Reply(kOptListMetaContext, kRepAck)));
}

TEST_F(MetaContextTest, ListMatchesNamespaceAndExactNameButNotOthers) {
  for (const std::string q : {"base:", "base:allocation"}) {
    const DriveResult run = Run(Wire().Option(kOptListMetaContext, MetaData("", {q})));
    EXPECT_EQ(
        run.output,
        Expect(Wire().Raw(MetaReply(kOptListMetaContext, 0)).Reply(kOptListMetaContext, kRepAck)))
        << q;
  }
  const DriveResult run = Run(Wire().Option(
      kOptListMetaContext, MetaData("disk", {"qemu:dirty-bitmap:x", "base:nope", "base"})));
  EXPECT_EQ(run.output, Expect(Wire().Reply(kOptListMetaContext, kRepAck)));
}

TEST_F(MetaContextTest, ListWorksWithoutStructuredRepliesButSetDoesNot) {
  const DriveResult run =
      Run(Wire()
              .Option(kOptListMetaContext, MetaData("disk", {"base:allocation"}))
              .Option(kOptSetMetaContext, MetaData("disk", {"base:allocation"}))
              .Option(kOptGo, Wire::InfoData("disk")));
  EXPECT_EQ(run.output,
            Expect(Wire()
                       .Raw(MetaReply(kOptListMetaContext, 0))
                       .Reply(kOptListMetaContext, kRepAck)
                       .Reply(kOptSetMetaContext, kRepErrInvalid,
                              "NBD_OPT_SET_META_CONTEXT needs NBD_OPT_STRUCTURED_REPLY first")
                       .InfoExport(kOptGo, kDiskSize, kDiskFlags)
                       .InfoBlockSize(kOptGo, 1, 4096, 1 << 20)
                       .Reply(kOptGo, kRepAck)));
  EXPECT_EQ(Enter(run).params.base_allocation_context, 0u);
}

TEST_F(MetaContextTest, SetSelectsBaseAllocationForTheSameExport) {
  const DriveResult run = Run(Wire()
                                  .Option(kOptStructuredReply)
                                  .Option(kOptSetMetaContext, MetaData("disk", {"base:allocation"}))
                                  .Option(kOptGo, Wire::InfoData("disk")));
  const Bytes go = Wire()
                       .InfoExport(kOptGo, kDiskSize, kDiskFlags)
                       .InfoBlockSize(kOptGo, 1, 4096, 1 << 20)
                       .Reply(kOptGo, kRepAck);
  EXPECT_EQ(run.output, Expect(Wire()
                                   .Reply(kOptStructuredReply, kRepAck)
                                   .Raw(MetaReply(kOptSetMetaContext, kBaseAllocationContextId))
                                   .Reply(kOptSetMetaContext, kRepAck)
                                   .Raw(go)));
  EXPECT_EQ(Enter(run).params.base_allocation_context, kBaseAllocationContextId);
}

TEST_F(MetaContextTest, SetForAnotherExportOrEmptyOrNamespaceOnlySelectsNothing) {
  const Bytes cases[] = {MetaData("other", {"base:allocation"}), MetaData("disk", {}),
                         MetaData("disk", {"base:"})};
  for (const Bytes& data : cases) {
    const DriveResult run = Run(Wire()
                                    .Option(kOptStructuredReply)
                                    .Option(kOptSetMetaContext, data)
                                    .Option(kOptGo, Wire::InfoData("disk")));
    EXPECT_EQ(Enter(run).params.base_allocation_context, 0u);
  }
}

TEST_F(MetaContextTest, ALaterFailedSetClearsTheSelection) {
  const DriveResult run = Run(Wire()
                                  .Option(kOptStructuredReply)
                                  .Option(kOptSetMetaContext, MetaData("disk", {"base:allocation"}))
                                  .Option(kOptSetMetaContext, MetaData("nope", {"base:allocation"}))
                                  .Option(kOptGo, Wire::InfoData("disk")));
  EXPECT_EQ(Enter(run).params.base_allocation_context, 0u);
}

TEST_F(MetaContextTest, ExportNameAfterSetKeepsTheContext) {
  const DriveResult run = Run(Wire()
                                  .Option(kOptStructuredReply)
                                  .Option(kOptSetMetaContext, MetaData("", {"base:allocation"}))
                                  .Option(kOptExportName, Wire().Str("disk")));
  EXPECT_EQ(Enter(run).params.base_allocation_context, kBaseAllocationContextId);
}

TEST_F(MetaContextTest, MalformedAndUnknownAreRefused) {
  struct Case {
    Bytes data;
    uint32_t reply;
    std::string message;
  };
  const Case cases[] = {
      {Wire().U8(0), kRepErrInvalid, "NBD_OPT_LIST_META_CONTEXT data is shorter than 4 bytes"},
      {Wire().U32(5).Str("disk").U32(0), kRepErrInvalid,
       "NBD_OPT_LIST_META_CONTEXT name length 5 overruns the option data"},
      {Wire().U32(4).Str("disk").U32(1), kRepErrInvalid, "query list overruns the option data"},
      {Wire().U32(4).Str("disk").U32(1).U32(20).Str("base:"), kRepErrInvalid,
       "query length overruns the option data"},
      {Wire().Raw(MetaData("disk", {"base:"})).U8(1), kRepErrInvalid,
       "data follows the last query"},
      {MetaData("nope", {}), kRepErrUnknown, "unknown export \"nope\""},
  };
  for (const Case& c : cases) {
    const DriveResult run = Run(Wire().Option(kOptListMetaContext, c.data).Option(kOptAbort));
    EXPECT_EQ(
        run.output,
        Expect(Wire().Reply(kOptListMetaContext, c.reply, c.message).Reply(kOptAbort, kRepAck)))
        << c.message;
  }
}

TEST_F(MetaContextTest, StartTlsForgetsTheSelection) {
  auto n = Negotiator(catalog_, NegotiationOptions{.tls_mode = TlsMode::kOn});
  const DriveResult run =
      Drive(n, Wire()
                   .U32(kBoth)
                   .Option(kOptStructuredReply)
                   .Option(kOptSetMetaContext, MetaData("disk", {"base:allocation"}))
                   .Option(kOptStartTls)
                   .Option(kOptStructuredReply)
                   .Option(kOptGo, Wire::InfoData("disk")));
  ASSERT_EQ(run.events.size(), 2u);
  EXPECT_EQ(EventAs<EnterTransmission>(run, 1).params.base_allocation_context, 0u);
}

// ---- NBD_CMD_BLOCK_STATUS validation --------------------------------------------

TransmissionParams StatusParams(uint32_t context) {
  TransmissionParams p;
  p.export_size = 1 << 20;
  p.block_size = {1, 4096, 1 << 20};
  p.structured_replies = true;
  p.base_allocation_context = context;
  return p;
}

TEST(BlockStatusValidationTest, NeedsAContextAndAtLeastOneByteInsideTheExport) {
  const auto check = [](const Request& r, const TransmissionParams& p) {
    return ValidateRequest(r, p);
  };
  RequestCheck c = check({0, kCmdBlockStatus, 1, 0, 512}, StatusParams(0));
  EXPECT_EQ(c.verdict, Verdict::kReplyError);
  EXPECT_EQ(c.refusal, Refusal::kNoMetaContext);
  c = check({kCmdFlagReqOne, kCmdBlockStatus, 1, 3, 1000}, StatusParams(1));
  EXPECT_EQ(c.verdict, Verdict::kExecute) << c.reason;
  c = check({0, kCmdBlockStatus, 1, 0, 0}, StatusParams(1));
  EXPECT_EQ(c.refusal, Refusal::kEmptyBlockStatus);
  c = check({0, kCmdBlockStatus, 1, (1 << 20) - 1, 2}, StatusParams(1));
  EXPECT_EQ(c.error, NbdError::kInval);
  EXPECT_EQ(c.refusal, Refusal::kPastEnd);
  c = check({kCmdFlagFua | kCmdFlagDf, kCmdBlockStatus, 1, 0, 1}, StatusParams(1));
  EXPECT_EQ(c.refusal, Refusal::kBadFlags);
  // Not held to the maximum block size: no payload.
  TransmissionParams small = StatusParams(1);
  small.block_size.maximum = 4096;
  EXPECT_EQ(check({0, kCmdBlockStatus, 1, 0, 1 << 20}, small).verdict, Verdict::kExecute);
}

// ---- Alignment and the request limit ---------------------------------------------

TEST(AlignmentRuleTest, OnlyAClientThatAskedIsHeldToTheMinimum) {
  ExportInfo info = WritableInfo();
  info.size = 5000;  // not a multiple of 512: the tail is exported too
  auto asked = MakeTransmissionParams(info, true, true);
  auto not_asked = MakeTransmissionParams(info, true, false);
  ASSERT_TRUE(asked.ok() && not_asked.ok());
  EXPECT_EQ(asked->block_size.minimum, 512u);
  EXPECT_EQ(not_asked->block_size.minimum, 1u);
  EXPECT_EQ(not_asked->device_alignment, 512u);
  const Request odd{0, kCmdWrite, 1, 3, 14};
  EXPECT_EQ(ValidateRequest(odd, *asked).refusal, Refusal::kMisaligned);
  EXPECT_EQ(ValidateRequest(odd, *not_asked).verdict, Verdict::kExecute);
  // Aligned start, ending at the export's end mid-block: allowed even then.
  EXPECT_EQ(ValidateRequest({0, kCmdRead, 1, 4608, 392}, *asked).verdict, Verdict::kExecute);
  EXPECT_EQ(ValidateRequest({0, kCmdRead, 1, 4608, 391}, *asked).refusal, Refusal::kMisaligned);
}

TEST(RequestLimitTest, MaximumFollowsTheConfiguredLimitAndOneBlockMoreIsRefused) {
  ExportInfo info = WritableInfo();
  info.size = uint64_t{1} << 30;
  info.block_size.maximum = kUnlimitedBlockSize;
  info.max_request_length = 64u << 20;
  auto p = MakeTransmissionParams(info, false, false);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->block_size.maximum, 64u << 20);
  RequestCheck c = ValidateRequest({0, kCmdWrite, 1, 0, 48u << 20}, *p);
  EXPECT_EQ(c.verdict, Verdict::kExecute);
  c = ValidateRequest({0, kCmdRead, 1, 0, 64u << 20}, *p);
  EXPECT_EQ(c.verdict, Verdict::kExecute);
  c = ValidateRequest({0, kCmdWrite, 1, 0, (64u << 20) + 512}, *p);
  EXPECT_EQ(c.error, NbdError::kInval);
  EXPECT_EQ(c.refusal, Refusal::kTooLong);
  // Its payload is not read: the server answers and closes.
  EXPECT_EQ(c.verdict, Verdict::kReplyErrorThenClose);
  EXPECT_EQ(c.payload_length, (64u << 20) + 512);
  info.max_request_length = 1000;  // not a multiple of 512
  EXPECT_FALSE(MakeTransmissionParams(info, false).ok());
}

// ---- Descriptors and the chunk ------------------------------------------------------

TEST(ToDescriptorsTest, ClipsMergesAndHonoursReqOne) {
  std::vector<BlockStatusDescriptor> out;
  const ExtentIn extents[] = {{4096, 0}, {4096, 0}, {8192, 3}, {0, 0}, {1 << 20, 0}};
  ToDescriptors(extents, 12288, false, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].length, 8192u);  // equal neighbours merged
  EXPECT_EQ(out[0].flags, 0u);
  EXPECT_EQ(out[1].length, 4096u);  // clipped to the request
  EXPECT_EQ(out[1].flags, kStateHole | kStateZero);
  ToDescriptors(extents, 1 << 20, true, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].length, 8192u);
  ToDescriptors({}, 777, true, out);  // nothing reported: all data
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].length, 777u);
  EXPECT_EQ(out[0].flags, 0u);
  const ExtentIn unknown_bits[] = {{10, 0xf4}};
  ToDescriptors(unknown_bits, 10, false, out);
  EXPECT_EQ(out[0].flags, 0u);
  std::vector<ExtentIn> many;
  for (int i = 0; i < 1000; ++i) many.push_back({1, static_cast<uint32_t>(i % 2)});
  ToDescriptors(many, 1000, false, out);
  EXPECT_EQ(out.size(), kMaxBlockStatusDescriptors);
}

TEST(BlockStatusChunkTest, HandDerivedBytes) {
  const BlockStatusDescriptor d[] = {{4096, 0}, {0x10000, 3}};
  std::vector<uint8_t> out;
  EncodeBlockStatusChunk(0x0102030405060708ULL, 1, d, true, out);
  // magic, flags DONE, type 5, cookie, length 4 + 2 * 8, id, descriptors.
  EXPECT_EQ(out, Wire()
                     .U32(0x668e33ef)
                     .U16(1)
                     .U16(5)
                     .U64(0x0102030405060708ULL)
                     .U32(20)
                     .U32(1)
                     .U32(4096)
                     .U32(0)
                     .U32(0x10000)
                     .U32(3)
                     .bytes());
}

}  // namespace
}  // namespace blockserve::nbd
