// Byte-exact tests of the server handshake (blockserve/nbd/negotiation.h)
// against wire images derived by hand from doc/proto.md.

#include <gtest/gtest.h>

#include <string>
#include <variant>

#include "blockserve/nbd/negotiation.h"
#include "blockserve/nbd/protocol.h"
#include "tests/blockserve/nbd_test_util.h"

namespace blockserve::nbd {
namespace {

using test_util::Bytes;
using test_util::Drive;
using test_util::DriveResult;
using test_util::EventAs;
using test_util::FakeCatalog;
using test_util::Greeting;
using test_util::kBoth;
using test_util::kDiskFlags;
using test_util::kDiskSize;
using test_util::Wire;
using test_util::WritableInfo;

ExportInfo ReadOnlyInfo() {
  ExportInfo info;
  info.size = 4096;
  info.read_only = true;
  info.can_flush = true;
  info.can_fua = true;   // Not advertised on a read-only export.
  info.can_trim = true;  // Likewise.
  return info;
}

ExportInfo TlsOnlyInfo() {
  ExportInfo info = WritableInfo();
  info.tls_only = true;
  return info;
}

class NegotiationTest : public ::testing::Test {
 protected:
  NegotiationTest() {
    catalog_.Add("disk", "main disk", WritableInfo())
        .Add("ro", "", ReadOnlyInfo())
        .Add("secret", "tls only", TlsOnlyInfo())
        .SetDefault("disk");
  }

  static NegotiationOptions Options(TlsMode mode = TlsMode::kOff) {
    NegotiationOptions o;
    o.tls_mode = mode;
    return o;
  }

  static Bytes Expect(const Bytes& rest) { return test_util::AfterGreeting(rest); }

  FakeCatalog catalog_;
};

// ---- Greeting and client flags ---------------------------------------------------

TEST_F(NegotiationTest, GreetingIsNbdmagicIhaveoptAndBothHandshakeFlags) {
  Negotiator n(catalog_, Options());
  const Bytes expected = {'N', 'B', 'D', 'M', 'A', 'G', 'I', 'C',  'I',
                          'H', 'A', 'V', 'E', 'O', 'P', 'T', 0x00, 0x03};
  EXPECT_EQ(Bytes(n.PendingOutput().begin(), n.PendingOutput().end()), expected);
  EXPECT_EQ(n.phase(), Negotiator::Phase::kHandshake);
}

TEST_F(NegotiationTest, ConsumeOutputDropsOnlyWhatWasSent) {
  Negotiator n(catalog_, Options());
  n.ConsumeOutput(8);
  EXPECT_EQ(Bytes(n.PendingOutput().begin(), n.PendingOutput().end()),
            Wire().Str("IHAVEOPT").U16(3).bytes());
  n.ConsumeOutput(100);  // More than pending: clamps.
  EXPECT_TRUE(n.PendingOutput().empty());
}

TEST_F(NegotiationTest, UnknownClientFlagClosesWithoutReply) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(0x4).Option(kOptList));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kProtocolError);
  EXPECT_EQ(EventAs<Close>(run).message, "client sent unknown flags 0x00000004");
  EXPECT_EQ(run.boundaries[0], 4u);
  EXPECT_EQ(run.output, Greeting());
  EXPECT_EQ(n.phase(), Negotiator::Phase::kClosed);
}

TEST_F(NegotiationTest, ClientWithoutFixedNewstyleIsStillAnswered) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(0).Option(kOptStructuredReply));
  EXPECT_TRUE(run.events.empty());
  EXPECT_EQ(run.output, Expect(Wire().Reply(kOptStructuredReply, kRepAck)));
}

TEST_F(NegotiationTest, BadOptionMagicCloses) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Str("IHAVEOPX").U32(kOptList).U32(0));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kProtocolError);
  EXPECT_EQ(run.output, Greeting());
}

// ---- NBD_OPT_EXPORT_NAME -------------------------------------------------------

TEST_F(NegotiationTest, ExportNameDefaultSendsSizeFlagsAnd124Zeroes) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kClientFlagFixedNewstyle).Option(kOptExportName));
  const auto& enter = EventAs<EnterTransmission>(run);
  EXPECT_EQ(enter.selected.name, "disk");
  EXPECT_TRUE(enter.via_export_name);
  EXPECT_FALSE(enter.block_size_requested);
  EXPECT_EQ(enter.params.export_size, kDiskSize);
  EXPECT_EQ(enter.params.flags, kDiskFlags);
  Bytes expected = Greeting();
  const Bytes tail = {0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x6d};
  expected.insert(expected.end(), tail.begin(), tail.end());
  expected.insert(expected.end(), 124, 0x00);
  EXPECT_EQ(run.output, expected);
  EXPECT_EQ(n.phase(), Negotiator::Phase::kTransmission);
}

TEST_F(NegotiationTest, ExportNameWithNoZeroesOmitsPadding) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptExportName, Wire().Str("ro")));
  EXPECT_EQ(EventAs<EnterTransmission>(run).selected.name, "ro");
  // Read-only: HAS_FLAGS | READ_ONLY | SEND_FLUSH; FUA and TRIM suppressed.
  EXPECT_EQ(run.output, Expect(Wire().U64(4096).U16(0x0007)));
}

TEST_F(NegotiationTest, ExportNameLeavesFollowingRequestBytesUnconsumed) {
  Negotiator n(catalog_, Options());
  const Bytes handshake = Wire().U32(kBoth).Option(kOptExportName, Wire().Str("disk"));
  const Bytes stream = Wire().Raw(handshake).U32(kRequestMagic).Zeroes(24);
  const DriveResult run = Drive(n, stream);
  ASSERT_EQ(run.events.size(), 1u);
  EXPECT_EQ(run.consumed, handshake.size());
  EXPECT_EQ(n.Feed(std::span<const uint8_t>(stream).subspan(run.consumed)).consumed, 0u);
}

TEST_F(NegotiationTest, ExportNameUnknownClosesWithoutReply) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptExportName, Wire().Str("nope")));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kRefused);
  EXPECT_EQ(EventAs<Close>(run).message, "NBD_OPT_EXPORT_NAME: unknown export \"nope\"");
  EXPECT_EQ(run.output, Greeting());
}

TEST_F(NegotiationTest, ExportNameWithoutDefaultExportCloses) {
  FakeCatalog no_default;
  no_default.Add("disk", "", WritableInfo());
  Negotiator n(no_default, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptExportName));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kRefused);
}

TEST_F(NegotiationTest, ExportNameLongerThanStringLimitClosesBeforeReadingIt) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Str("IHAVEOPT").U32(kOptExportName).U32(4097));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kRefused);
  EXPECT_EQ(run.consumed, 4u + 16u);
  EXPECT_EQ(catalog_.find_calls, 0);
}

TEST_F(NegotiationTest, ExportNameWithNulCloses) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptExportName, Bytes{'d', 0, 'k'}));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kRefused);
}

// ---- NBD_OPT_GO / NBD_OPT_INFO ---------------------------------------------------

TEST_F(NegotiationTest, GoWithoutRequestsSendsExportAndBlockSizeThenAck) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptGo, Wire::InfoData("")));
  // Hand-derived: NBD_REP_INFO(3) for NBD_OPT_GO(7), length 12, type 0.
  const Bytes info_export = {0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9,  // magic
                             0x00, 0x00, 0x00, 0x07,                          // NBD_OPT_GO
                             0x00, 0x00, 0x00, 0x03,                          // NBD_REP_INFO
                             0x00, 0x00, 0x00, 0x0c,                          // length 12
                             0x00, 0x00,                                      // NBD_INFO_EXPORT
                             0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00,  // 1 MiB
                             0x00, 0x6d};                                     // flags
  const Bytes info_block_size = {0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9, 0x00, 0x00, 0x00,
                                 0x07, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x0e,  // length 14
                                 0x00, 0x03,               // BLOCK_SIZE
                                 0x00, 0x00, 0x00, 0x01,   // min 1: not requested
                                 0x00, 0x00, 0x10, 0x00,   // pref 4096
                                 0x00, 0x10, 0x00, 0x00};  // max 1 MiB
  const Bytes ack = {0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9, 0x00, 0x00,
                     0x00, 0x07, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00};
  EXPECT_EQ(run.output, Expect(Wire().Raw(info_export).Raw(info_block_size).Raw(ack)));
  const auto& enter = EventAs<EnterTransmission>(run);
  EXPECT_EQ(enter.selected.name, "disk");
  EXPECT_FALSE(enter.via_export_name);
  EXPECT_FALSE(enter.block_size_requested);
  // Not requested: any alignment is accepted; the server aligns to 512.
  EXPECT_EQ(enter.params.block_size, (BlockSizeConstraints{1, 4096, 1 << 20}));
  EXPECT_EQ(enter.params.device_alignment, 512u);
  EXPECT_FALSE(enter.params.structured_replies);
}

TEST_F(NegotiationTest, GoHonoursNameDescriptionAndBlockSizeRequests) {
  Negotiator n(catalog_, Options());
  // 99 is not an information type: ignored.
  const Bytes go = Wire::InfoData("", {kInfoName, 99, kInfoDescription, kInfoBlockSize});
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptGo, go));
  EXPECT_EQ(run.output, Expect(Wire()
                                   .InfoExport(kOptGo, kDiskSize, kDiskFlags)
                                   .Reply(kOptGo, kRepInfo, Wire().U16(1).Str("disk"))
                                   .Reply(kOptGo, kRepInfo, Wire().U16(2).Str("main disk"))
                                   .InfoBlockSize(kOptGo, 512, 4096, 1 << 20)
                                   .Reply(kOptGo, kRepAck)));
  EXPECT_TRUE(EventAs<EnterTransmission>(run).block_size_requested);
}

TEST_F(NegotiationTest, DescriptionRequestForExportWithoutDescriptionIsSkipped) {
  Negotiator n(catalog_, Options());
  const DriveResult run =
      Drive(n, Wire().U32(kBoth).Option(kOptInfo, Wire::InfoData("ro", {kInfoDescription})));
  EXPECT_EQ(run.output, Expect(Wire()
                                   .InfoExport(kOptInfo, 4096, 0x0007)
                                   .InfoBlockSize(kOptInfo, 1, 4096, kMaxPayloadLength)
                                   .Reply(kOptInfo, kRepAck)));
}

TEST_F(NegotiationTest, InfoStaysInNegotiationAndMatchesLaterGo) {
  Negotiator n(catalog_, Options());
  const Bytes data = Wire::InfoData("disk", {kInfoBlockSize});
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptInfo, data).Option(kOptGo, data));
  const Bytes info_reply = Wire()
                               .InfoExport(kOptInfo, kDiskSize, kDiskFlags)
                               .InfoBlockSize(kOptInfo, 512, 4096, 1 << 20)
                               .Reply(kOptInfo, kRepAck);
  const Bytes go_reply = Wire()
                             .InfoExport(kOptGo, kDiskSize, kDiskFlags)
                             .InfoBlockSize(kOptGo, 512, 4096, 1 << 20)
                             .Reply(kOptGo, kRepAck);
  EXPECT_EQ(run.output, Expect(Wire().Raw(info_reply).Raw(go_reply)));
  ASSERT_EQ(run.events.size(), 1u);
  EXPECT_TRUE(EventAs<EnterTransmission>(run).block_size_requested);
}

TEST_F(NegotiationTest, GoUnknownExportRepliesErrUnknownAndContinues) {
  Negotiator n(catalog_, Options());
  const DriveResult run =
      Drive(n, Wire().U32(kBoth).Option(kOptGo, Wire::InfoData("nope")).Option(kOptAbort));
  EXPECT_EQ(run.output, Expect(Wire()
                                   .Reply(kOptGo, kRepErrUnknown, "unknown export \"nope\"")
                                   .Reply(kOptAbort, kRepAck)));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kClientAbort);
}

TEST_F(NegotiationTest, GoMalformedDataRepliesErrInvalid) {
  struct Case {
    Bytes data;
    std::string message;
  };
  const Case cases[] = {
      {Wire().U32(0).U8(0), "NBD_OPT_GO data is shorter than 6 bytes"},
      {Wire().U32(3).Str("ab").U16(0), "NBD_OPT_GO name length 3 overruns the option data"},
      {Wire().U32(0).U16(2).U16(kInfoName),
       "NBD_OPT_GO data length 8 does not match 2 information requests"},
      {Wire().U32(0).U16(0).U8(0),
       "NBD_OPT_GO data length 7 does not match 0 information "
       "requests"},
      {Wire::InfoData(std::string("a\0b", 3)), "export name is not a valid NBD string"},
  };
  for (const Case& c : cases) {
    Negotiator n(catalog_, Options());
    const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptGo, c.data).Option(kOptList));
    EXPECT_EQ(run.output,
              Expect(Wire()
                         .Reply(kOptGo, kRepErrInvalid, c.message)
                         .Reply(kOptList, kRepServer, Wire().U32(4).Str("disk").Str("main disk"))
                         .Reply(kOptList, kRepServer, Wire().U32(2).Str("ro"))
                         .Reply(kOptList, kRepAck)))
        << c.message;
    EXPECT_TRUE(run.events.empty());
  }
}

TEST_F(NegotiationTest, GoEmptyDataRepliesErrInvalid) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptGo));
  EXPECT_EQ(run.output, Expect(Wire().Reply(kOptGo, kRepErrInvalid,
                                            "NBD_OPT_GO data is shorter than 6 bytes")));
}

TEST_F(NegotiationTest, GoLongerThanTheOptionLimitIsStreamedNotRefused) {
  NegotiationOptions options = Options();
  options.max_option_length = 64;
  Negotiator n(catalog_, options);
  // 100 information requests (200 bytes), none known but BLOCK_SIZE.
  std::vector<uint16_t> requests(100, 0x7777);
  requests[50] = kInfoBlockSize;
  const DriveResult run =
      Drive(n, Wire().U32(kBoth).Option(kOptGo, Wire::InfoData("disk", requests)));
  EXPECT_EQ(run.output, Expect(Wire()
                                   .InfoExport(kOptGo, kDiskSize, kDiskFlags)
                                   .InfoBlockSize(kOptGo, 512, 4096, 1 << 20)
                                   .Reply(kOptGo, kRepAck)));
  EXPECT_TRUE(EventAs<EnterTransmission>(run).block_size_requested);
}

TEST_F(NegotiationTest, GoWith65535UnknownInfoRequestsIsAcknowledged) {
  Negotiator n(catalog_, Options());
  std::vector<uint16_t> requests;
  for (uint32_t i = 0; i < 65535; ++i) requests.push_back(static_cast<uint16_t>(i + 1));
  const Bytes stream = Wire().U32(kBoth).Option(kOptInfo, Wire::InfoData("disk", requests));
  // Fed in odd-sized pieces so a request is split between two Feed calls.
  const DriveResult run = Drive(n, stream, 7);
  EXPECT_EQ(run.output, Expect(Wire()
                                   .InfoExport(kOptInfo, kDiskSize, kDiskFlags)
                                   .Reply(kOptInfo, kRepInfo, Wire().U16(1).Str("disk"))
                                   .Reply(kOptInfo, kRepInfo, Wire().U16(2).Str("main disk"))
                                   .InfoBlockSize(kOptInfo, 512, 4096, 1 << 20)
                                   .Reply(kOptInfo, kRepAck)));
  EXPECT_TRUE(run.events.empty());
}

TEST_F(NegotiationTest, GoNameLongerThanAStringIsInvalidAndSkipped) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(
      n,
      Wire().U32(kBoth).Option(kOptGo, Wire::InfoData(std::string(5000, 'x'))).Option(kOptAbort));
  EXPECT_EQ(run.output,
            Expect(Wire()
                       .Reply(kOptGo, kRepErrInvalid, "export name is not a valid NBD string")
                       .Reply(kOptAbort, kRepAck)));
  EXPECT_EQ(catalog_.find_calls, 0);
}

TEST_F(NegotiationTest, InfoForReadOnlyExportOmitsWriteFeatures) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptGo, Wire::InfoData("ro")));
  const auto& enter = EventAs<EnterTransmission>(run);
  EXPECT_EQ(enter.params.flags, kFlagHasFlags | kFlagReadOnly | kFlagSendFlush);
  EXPECT_EQ(enter.params.block_size, (BlockSizeConstraints{1, 4096, kMaxPayloadLength}));
}

TEST_F(NegotiationTest, BlockSizeRequiredRefusesGoWithoutRequest) {
  ExportInfo strict = WritableInfo();
  strict.block_size_required = true;
  catalog_.Add("strict", "", strict);
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire()
                                       .U32(kBoth)
                                       .Option(kOptGo, Wire::InfoData("strict"))
                                       .Option(kOptGo, Wire::InfoData("strict", {kInfoBlockSize})));
  EXPECT_EQ(run.output, Expect(Wire()
                                   .InfoBlockSize(kOptGo, 512, 4096, 1 << 20)
                                   .Reply(kOptGo, kRepErrBlockSizeReqd,
                                          "export \"strict\" requires the client to request "
                                          "NBD_INFO_BLOCK_SIZE")
                                   .InfoExport(kOptGo, kDiskSize, kDiskFlags)
                                   .InfoBlockSize(kOptGo, 512, 4096, 1 << 20)
                                   .Reply(kOptGo, kRepAck)));
  EXPECT_TRUE(EventAs<EnterTransmission>(run).block_size_requested);
}

TEST_F(NegotiationTest, BlockSizeRequiredClosesExportName) {
  ExportInfo strict = WritableInfo();
  strict.block_size_required = true;
  catalog_.Add("strict", "", strict);
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptExportName, Wire().Str("strict")));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kRefused);
  EXPECT_EQ(run.output, Greeting());
}

TEST_F(NegotiationTest, MisconfiguredExportIsUnavailable) {
  ExportInfo bad = WritableInfo();
  bad.block_size.minimum = 3;
  catalog_.Add("bad", "", bad);
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire()
                                       .U32(kBoth)
                                       .Option(kOptInfo, Wire::InfoData("bad"))
                                       .Option(kOptExportName, Wire().Str("bad")));
  EXPECT_EQ(run.output,
            Expect(Wire().Reply(kOptInfo, kRepErrUnknown,
                                "export \"bad\" is unavailable: minimum block size 3 must be a "
                                "power of two no larger than 65536")));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kRefused);
}

// ---- NBD_OPT_LIST, ABORT, STRUCTURED_REPLY, unknown options ------------------------

TEST_F(NegotiationTest, ListSendsOneServerReplyPerExportThenAck) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptList));
  // Hand-derived first entry: length 4 + 4 + 9 = 17, name length 4, "disk",
  // then the description "main disk". The TLS-only export is hidden.
  const Bytes first = {0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9, 0x00, 0x00, 0x00, 0x03, 0x00,
                       0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x11, 0x00, 0x00, 0x00, 0x04, 'd',  'i',
                       's',  'k',  'm',  'a',  'i',  'n',  ' ',  'd',  'i',  's',  'k'};
  EXPECT_EQ(run.output, Expect(Wire()
                                   .Raw(first)
                                   .Reply(kOptList, kRepServer, Wire().U32(2).Str("ro"))
                                   .Reply(kOptList, kRepAck)));
}

TEST_F(NegotiationTest, ListWithDataRepliesErrInvalid) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptList, Wire().U32(7)));
  EXPECT_EQ(run.output,
            Expect(Wire().Reply(kOptList, kRepErrInvalid, "NBD_OPT_LIST takes no data")));
}

TEST_F(NegotiationTest, AbortIsAcknowledgedThenCloses) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptAbort).Option(kOptList));
  const Bytes ack = {0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9, 0x00, 0x00,
                     0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00};
  EXPECT_EQ(run.output, Expect(ack));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kClientAbort);
  EXPECT_EQ(run.consumed, 4u + 16u);
  EXPECT_EQ(n.phase(), Negotiator::Phase::kClosed);
}

TEST_F(NegotiationTest, AbortDataIsIgnored) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptAbort, Wire().U32(1)));
  EXPECT_EQ(run.output, Expect(Wire().Reply(kOptAbort, kRepAck)));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kClientAbort);
}

TEST_F(NegotiationTest, StructuredReplyEnablesDfOnCapableExport) {
  ExportInfo df = WritableInfo();
  df.can_df = true;
  catalog_.Add("df", "", df);
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire()
                                       .U32(kBoth)
                                       .Option(kOptStructuredReply)
                                       .Option(kOptStructuredReply)  // Repeat: accepted again.
                                       .Option(kOptGo, Wire::InfoData("df")));
  EXPECT_EQ(run.output, Expect(Wire()
                                   .Reply(kOptStructuredReply, kRepAck)
                                   .Reply(kOptStructuredReply, kRepAck)
                                   .InfoExport(kOptGo, kDiskSize, kDiskFlags | kFlagSendDf)
                                   .InfoBlockSize(kOptGo, 1, 4096, 1 << 20)
                                   .Reply(kOptGo, kRepAck)));
  EXPECT_TRUE(EventAs<EnterTransmission>(run).params.structured_replies);
  EXPECT_TRUE(n.structured_replies());
}

TEST_F(NegotiationTest, DfIsNotAdvertisedWithoutStructuredReplies) {
  ExportInfo df = WritableInfo();
  df.can_df = true;
  catalog_.Add("df", "", df);
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptGo, Wire::InfoData("df")));
  EXPECT_EQ(EventAs<EnterTransmission>(run).params.flags, kDiskFlags);
}

TEST_F(NegotiationTest, StructuredReplyWithDataRepliesErrInvalid) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptStructuredReply, Wire().U8(0)));
  EXPECT_EQ(run.output, Expect(Wire().Reply(kOptStructuredReply, kRepErrInvalid,
                                            "NBD_OPT_STRUCTURED_REPLY takes no data")));
  EXPECT_FALSE(n.structured_replies());
}

TEST_F(NegotiationTest, UnknownOptionsAreUnsupportedAndTheirDataSkipped) {
  Negotiator n(catalog_, Options());
  const DriveResult run = Drive(n, Wire()
                                       .U32(kBoth)
                                       .Option(99, Wire().Str("IHAVEOPT garbage"))
                                       .Option(kOptExtendedHeaders, Wire().U32(0).U32(0))
                                       .Option(kOptPeekExport)
                                       .Option(kOptAbort));
  EXPECT_EQ(run.output,
            Expect(Wire()
                       .Reply(99, kRepErrUnsup, "option 99 is not supported")
                       .Reply(kOptExtendedHeaders, kRepErrUnsup, "option 11 is not supported")
                       .Reply(kOptPeekExport, kRepErrUnsup, "option 4 is not supported")
                       .Reply(kOptAbort, kRepAck)));
}

TEST_F(NegotiationTest, TooManyOptionsCloses) {
  NegotiationOptions options = Options();
  options.max_options = 2;
  Negotiator n(catalog_, options);
  const DriveResult run = Drive(n, Wire()
                                       .U32(kBoth)
                                       .Option(kOptStructuredReply)
                                       .Option(kOptStructuredReply)
                                       .Option(kOptStructuredReply));
  EXPECT_EQ(run.output,
            Expect(Wire().Reply(kOptStructuredReply, kRepAck).Reply(kOptStructuredReply, kRepAck)));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kTooManyOptions);
}

TEST_F(NegotiationTest, AnOptionAnnouncingMoreThanTheHardLimitClosesAtOnce) {
  // Up to the limit an unknown option is skipped and answered; one byte more,
  // or 4 GiB, closes before any data arrives, whatever the option.
  NegotiationOptions options = Options();
  options.max_announced_option_length = 1000;
  {
    Negotiator n(catalog_, options);
    const DriveResult run =
        Drive(n, Wire().U32(kBoth).Option(kOptPeekExport, Bytes(1000, 0)).Option(kOptAbort));
    EXPECT_EQ(run.output,
              Expect(Wire()
                         .Reply(kOptPeekExport, kRepErrUnsup, "option 4 is not supported")
                         .Reply(kOptAbort, kRepAck)));
  }
  for (uint32_t option : {kOptPeekExport, kOptGo, kOptExportName, kOptSetMetaContext}) {
    for (uint32_t length : {1001u, 0xffffffffu}) {
      Negotiator n(catalog_, options);
      const DriveResult run = Drive(n, Wire().U32(kBoth).Str("IHAVEOPT").U32(option).U32(length));
      EXPECT_EQ(run.output, Expect(Wire())) << OptionName(option);  // the greeting only
      EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kOptionTooLong) << OptionName(option);
    }
  }
  // The default limit admits the longest option the protocol defines.
  EXPECT_GE(NegotiationOptions().max_announced_option_length, 4u + 4096 + 2 + 2 * 65535);
}

TEST_F(NegotiationTest, ShutdownRefusesOptionsButAcknowledgesAbort) {
  Negotiator n(catalog_, Options());
  n.BeginShutdown();
  const DriveResult run = Drive(
      n, Wire().U32(kBoth).Option(kOptList).Option(kOptGo, Wire::InfoData("")).Option(kOptAbort));
  EXPECT_EQ(run.output, Expect(Wire()
                                   .Reply(kOptList, kRepErrShutdown, "server is shutting down")
                                   .Reply(kOptGo, kRepErrShutdown, "server is shutting down")
                                   .Reply(kOptAbort, kRepAck)));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kClientAbort);
}

TEST_F(NegotiationTest, ShutdownClosesExportName) {
  Negotiator n(catalog_, Options());
  n.BeginShutdown();
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptExportName));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kRefused);
}

// ---- TLS ------------------------------------------------------------------------

TEST_F(NegotiationTest, StartTlsWhenTlsOffIsRefusedByPolicy) {
  Negotiator n(catalog_, Options(TlsMode::kOff));
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptStartTls));
  EXPECT_EQ(run.output,
            Expect(Wire().Reply(kOptStartTls, kRepErrPolicy, "TLS is not enabled on this server")));
  EXPECT_TRUE(run.events.empty());
}

TEST_F(NegotiationTest, StartTlsWithDataIsInvalid) {
  Negotiator n(catalog_, Options(TlsMode::kOn));
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptStartTls, Wire().U8(1)));
  EXPECT_EQ(run.output,
            Expect(Wire().Reply(kOptStartTls, kRepErrInvalid, "NBD_OPT_STARTTLS takes no data")));
  EXPECT_TRUE(run.events.empty());
}

TEST_F(NegotiationTest, StartTlsAcksAndStopsAtTheTlsBoundary) {
  Negotiator n(catalog_, Options(TlsMode::kOn));
  const Bytes handshake = Wire().U32(kBoth).Option(kOptStartTls);
  const Bytes stream = Wire().Raw(handshake).Str("\x16\x03\x01 client hello");
  const FeedResult first = [&] {
    n.ConsumeOutput(n.PendingOutput().size());
    return n.Feed(stream);
  }();
  EXPECT_TRUE(std::holds_alternative<StartTls>(first.event));
  EXPECT_EQ(first.consumed, handshake.size());
  EXPECT_EQ(Bytes(n.PendingOutput().begin(), n.PendingOutput().end()),
            Wire().Reply(kOptStartTls, kRepAck).bytes());
  EXPECT_EQ(n.phase(), Negotiator::Phase::kAwaitingTls);

  // Feeding before the TLS handshake finished is a caller bug.
  const FeedResult early = n.Feed(Wire().Option(kOptList).bytes());
  EXPECT_EQ(early.consumed, 0u);
  ASSERT_TRUE(std::holds_alternative<Close>(early.event));
  EXPECT_EQ(std::get<Close>(early.event).reason, CloseReason::kMisuse);

  n.TlsEstablished();
  EXPECT_TRUE(n.tls_active());
  n.ConsumeOutput(n.PendingOutput().size());
  const FeedResult again = n.Feed(Wire().Option(kOptStartTls).bytes());
  EXPECT_TRUE(std::holds_alternative<NeedInput>(again.event));
  EXPECT_EQ(Bytes(n.PendingOutput().begin(), n.PendingOutput().end()),
            Wire().Reply(kOptStartTls, kRepErrInvalid, "TLS is already active").bytes());
}

TEST_F(NegotiationTest, StartTlsForgetsStructuredReplies) {
  ExportInfo df = WritableInfo();
  df.can_df = true;
  catalog_.Add("df", "", df);
  Negotiator n(catalog_, Options(TlsMode::kOn));
  const DriveResult run = Drive(n, Wire()
                                       .U32(kBoth)
                                       .Option(kOptStructuredReply)
                                       .Option(kOptStartTls)
                                       .Option(kOptGo, Wire::InfoData("df")));
  ASSERT_EQ(run.events.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<StartTls>(run.events[0]));
  const auto& enter = EventAs<EnterTransmission>(run, 1);
  EXPECT_FALSE(enter.params.structured_replies);
  EXPECT_EQ(enter.params.flags & kFlagSendDf, 0);
}

TEST_F(NegotiationTest, SelectiveTlsHidesAndRefusesTlsOnlyExportUntilUpgrade) {
  Negotiator n(catalog_, Options(TlsMode::kOn));
  const DriveResult run = Drive(n, Wire()
                                       .U32(kBoth)
                                       .Option(kOptInfo, Wire::InfoData("secret"))
                                       .Option(kOptStartTls)
                                       .Option(kOptList)
                                       .Option(kOptGo, Wire::InfoData("secret")));
  EXPECT_EQ(run.output,
            Expect(Wire()
                       .Reply(kOptInfo, kRepErrTlsReqd, "export \"secret\" requires TLS")
                       .Reply(kOptStartTls, kRepAck)
                       .Reply(kOptList, kRepServer, Wire().U32(4).Str("disk").Str("main disk"))
                       .Reply(kOptList, kRepServer, Wire().U32(2).Str("ro"))
                       .Reply(kOptList, kRepServer, Wire().U32(6).Str("secret").Str("tls only"))
                       .Reply(kOptList, kRepAck)
                       .InfoExport(kOptGo, kDiskSize, kDiskFlags)
                       .InfoBlockSize(kOptGo, 1, 4096, 1 << 20)
                       .Reply(kOptGo, kRepAck)));
  ASSERT_EQ(run.events.size(), 2u);
  EXPECT_EQ(EventAs<EnterTransmission>(run, 1).selected.name, "secret");
}

TEST_F(NegotiationTest, NoTlsNeverRepliesTlsReqdEvenForTlsOnlyExport) {
  Negotiator n(catalog_, Options(TlsMode::kOff));
  const DriveResult run = Drive(n, Wire()
                                       .U32(kBoth)
                                       .Option(kOptInfo, Wire::InfoData("secret"))
                                       .Option(kOptGo, Wire::InfoData("secret")));
  const std::string policy = "export \"secret\" requires TLS, which is not enabled";
  EXPECT_EQ(
      run.output,
      Expect(Wire().Reply(kOptInfo, kRepErrPolicy, policy).Reply(kOptGo, kRepErrPolicy, policy)));
  EXPECT_TRUE(run.events.empty());
}

TEST_F(NegotiationTest, SelectiveTlsClosesExportNameOfTlsOnlyExport) {
  Negotiator n(catalog_, Options(TlsMode::kOn));
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptExportName, Wire().Str("secret")));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kRefused);
  EXPECT_EQ(run.output, Greeting());
}

TEST_F(NegotiationTest, ForcedTlsRefusesEverythingButStartTlsAndAbort) {
  Negotiator n(catalog_, Options(TlsMode::kRequire));
  const DriveResult run = Drive(n, Wire()
                                       .U32(kBoth)
                                       .Option(kOptList)
                                       .Option(kOptInfo, Wire::InfoData(""))
                                       .Option(kOptGo, Wire::InfoData(""))
                                       .Option(kOptStructuredReply)
                                       .Option(99, Wire().U32(5))
                                       .Option(kOptStartTls)
                                       .Option(kOptGo, Wire::InfoData("")));
  const std::string reqd = "TLS is required";
  EXPECT_EQ(run.output, Expect(Wire()
                                   .Reply(kOptList, kRepErrTlsReqd, reqd)
                                   .Reply(kOptInfo, kRepErrTlsReqd, reqd)
                                   .Reply(kOptGo, kRepErrTlsReqd, reqd)
                                   .Reply(kOptStructuredReply, kRepErrTlsReqd, reqd)
                                   .Reply(99, kRepErrTlsReqd, reqd)
                                   .Reply(kOptStartTls, kRepAck)
                                   .InfoExport(kOptGo, kDiskSize, kDiskFlags)
                                   .InfoBlockSize(kOptGo, 1, 4096, 1 << 20)
                                   .Reply(kOptGo, kRepAck)));
  ASSERT_EQ(run.events.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<StartTls>(run.events[0]));
  EXPECT_TRUE(std::holds_alternative<EnterTransmission>(run.events[1]));
}

TEST_F(NegotiationTest, ForcedTlsClosesExportNameBeforeUpgrade) {
  Negotiator n(catalog_, Options(TlsMode::kRequire));
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptExportName));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kRefused);
  EXPECT_EQ(run.output, Greeting());
}

TEST_F(NegotiationTest, ForcedTlsStillAcknowledgesAbort) {
  Negotiator n(catalog_, Options(TlsMode::kRequire));
  const DriveResult run = Drive(n, Wire().U32(kBoth).Option(kOptAbort));
  EXPECT_EQ(run.output, Expect(Wire().Reply(kOptAbort, kRepAck)));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kClientAbort);
}

TEST_F(NegotiationTest, ForcedTlsClosesClientWithoutFixedNewstyle) {
  Negotiator n(catalog_, Options(TlsMode::kRequire));
  const DriveResult run = Drive(n, Wire().U32(kClientFlagNoZeroes).Option(kOptStartTls));
  EXPECT_EQ(EventAs<Close>(run).reason, CloseReason::kRefused);
  EXPECT_EQ(run.output, Greeting());
}

TEST_F(NegotiationTest, SelectiveTlsWithoutFixedNewstyleRefusesStartTls) {
  Negotiator n(catalog_, Options(TlsMode::kOn));
  const DriveResult run = Drive(n, Wire().U32(0).Option(kOptStartTls));
  EXPECT_EQ(run.output,
            Expect(Wire().Reply(kOptStartTls, kRepErrPolicy, "TLS is not enabled on this server")));
}

TEST_F(NegotiationTest, FeedAfterTransmissionIsMisuse) {
  Negotiator n(catalog_, Options());
  Drive(n, Wire().U32(kBoth).Option(kOptExportName));
  const FeedResult r = n.Feed(Bytes{1, 2, 3});
  EXPECT_EQ(r.consumed, 0u);
  ASSERT_TRUE(std::holds_alternative<Close>(r.event));
  EXPECT_EQ(std::get<Close>(r.event).reason, CloseReason::kMisuse);
}

// ---- Incremental feeding --------------------------------------------------------

// A conversation touching every buffering path: client flags, options with and
// without data, skipped data (unknown and oversized), STARTTLS, then GO with
// requests pipelined behind it.
Bytes LongConversation() {
  return Wire()
      .U32(kBoth)
      .Option(kOptList)
      .Option(kOptInfo, Wire::InfoData("disk", {kInfoName, kInfoDescription}))
      .Option(42, Wire().Str("skip me please"))
      .Option(kOptGo, Wire::InfoData(std::string(80, 'y')))  // Streamed past the cap.
      .Option(kOptGo, Wire::InfoData("nope"))
      // Meta contexts: one over the 64-byte cap (TOO_BIG), a LIST, a SET.
      .Option(kOptListMetaContext,
              Wire().U32(4).Str("disk").U32(1).U32(70).Str(std::string(70, 'q')))
      .Option(kOptListMetaContext, Wire().U32(4).Str("disk").U32(1).U32(5).Str("base:"))
      .Option(kOptStructuredReply)
      .Option(kOptStartTls)
      .Option(kOptStructuredReply)
      .Option(kOptSetMetaContext, Wire().U32(0).U32(1).U32(15).Str("base:allocation"))
      .Option(kOptGo, Wire::InfoData("", {7, kInfoBlockSize, 9, 1000, kInfoName}))
      .U32(kRequestMagic)
      .Zeroes(24);
}

void ExpectSameRun(const DriveResult& a, const DriveResult& b, const std::string& where) {
  EXPECT_EQ(a.output, b.output) << where;
  EXPECT_EQ(a.boundaries, b.boundaries) << where;
  EXPECT_EQ(a.consumed, b.consumed) << where;
  ASSERT_EQ(a.events.size(), b.events.size()) << where;
  for (size_t i = 0; i < a.events.size(); ++i) {
    EXPECT_EQ(a.events[i].index(), b.events[i].index()) << where;
  }
}

TEST_F(NegotiationTest, SplittingTheStreamAnywhereGivesTheSameResult) {
  NegotiationOptions options = Options(TlsMode::kOn);
  options.max_option_length = 64;
  const Bytes stream = LongConversation();
  Negotiator whole_n(catalog_, options);
  const DriveResult whole = Drive(whole_n, stream);
  ASSERT_EQ(whole.events.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<EnterTransmission>(whole.events[1]));
  EXPECT_EQ(whole.consumed, stream.size() - 28);

  // Every split into two pieces.
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    Negotiator n(catalog_, options);
    DriveResult run;
    run.output = Greeting();
    n.ConsumeOutput(n.PendingOutput().size());
    size_t pos = 0;
    for (const size_t end : {cut, stream.size()}) {
      while (pos < end) {
        FeedResult r = n.Feed(std::span<const uint8_t>(stream).subspan(pos, end - pos));
        pos += r.consumed;
        const Bytes out = n.TakeOutput();
        run.output.insert(run.output.end(), out.begin(), out.end());
        if (std::holds_alternative<NeedInput>(r.event)) break;
        run.events.push_back(r.event);
        run.boundaries.push_back(pos);
        if (std::holds_alternative<StartTls>(r.event)) {
          n.TlsEstablished();
        } else {
          break;
        }
      }
      if (!run.events.empty() && !std::holds_alternative<StartTls>(run.events.back())) break;
    }
    run.consumed = pos;
    ExpectSameRun(whole, run, "cut at " + std::to_string(cut));
  }

  // Byte by byte, and a few other chunk sizes.
  for (const size_t chunk : {1, 2, 3, 7, 16, 29}) {
    Negotiator n(catalog_, options);
    ExpectSameRun(whole, Drive(n, stream, chunk), "chunk " + std::to_string(chunk));
  }
}

TEST_F(NegotiationTest, OptionNamesAreSpelledAsInTheSpec) {
  EXPECT_STREQ(OptionName(kOptGo), "NBD_OPT_GO");
  EXPECT_STREQ(OptionName(kOptExtendedHeaders), "NBD_OPT_EXTENDED_HEADERS");
  EXPECT_STREQ(OptionName(1234), "unknown");
  EXPECT_STREQ(ReplyTypeName(kRepErrBlockSizeReqd), "NBD_REP_ERR_BLOCK_SIZE_REQD");
  EXPECT_STREQ(ReplyTypeName(kRepAck), "NBD_REP_ACK");
  EXPECT_STREQ(ReplyTypeName(77), "unknown");
}

}  // namespace
}  // namespace blockserve::nbd
