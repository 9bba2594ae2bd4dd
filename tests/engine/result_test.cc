// The result family: one sign convention (error() is a positive errno, a raw
// `res` a negated one) for Result<T> with any T, including int, and IoStatus.
#include "ringline/result.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "ringline/io_result.h"

namespace ringline {
namespace {

TEST(ResultTest, ResultOfIntKeepsValuesAndErrnosApart) {
  Result<int> v = 5;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 5);
  EXPECT_EQ(v.error(), 0);
  EXPECT_TRUE(v.status().ok());

  Result<int> zero = 0;  // a value of 0 is a value, not an end of stream
  EXPECT_TRUE(zero.ok());
  EXPECT_FALSE(zero.eof());

  Result<int> e = Result<int>::Error(EINVAL);
  EXPECT_FALSE(e.ok());
  EXPECT_FALSE(e.eof());
  EXPECT_EQ(e.error(), EINVAL);  // positive
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(e.ErrorString().find("Invalid argument"), std::string::npos) << e.ErrorString();
}

TEST(ResultTest, EndOfStreamIsNoValueAndNoErrno) {
  auto r = Result<std::string>::Eof();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.eof());
  EXPECT_EQ(r.error(), 0);
  EXPECT_EQ(r.ErrorString(), "end of stream");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange);
}

TEST(ResultTest, ADetailIsTheStatusAndTheErrnoStays) {
  auto r = Result<long>::Error(ENOSPC, absl::ResourceExhaustedError("export full at 1 GiB"));
  EXPECT_EQ(r.error(), ENOSPC);
  EXPECT_EQ(r.status().message(), "export full at 1 GiB");
  EXPECT_EQ(r.ErrorString(), "export full at 1 GiB");
}

TEST(ResultTest, IoStatusAndIoResultShareTheConvention) {
  IoStatus s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.error(), 0);
  s.Fail(EIO);
  EXPECT_EQ(s.res, -EIO);  // raw field: negated
  EXPECT_EQ(s.error(), EIO);
  EXPECT_FALSE(s.status.ok());
  s.Fail(EPERM, absl::PermissionDeniedError("read-only export"));
  EXPECT_EQ(s.error(), EPERM);
  EXPECT_EQ(s.status.message(), "read-only export");

  IoResult io{-ECONNRESET, 0};
  EXPECT_EQ(io.error(), ECONNRESET);
  EXPECT_STREQ(ErrnoName(io.error()), "ECONNRESET");
  IoResult n{4096, 0};
  EXPECT_TRUE(n.ok());
  EXPECT_EQ(n.error(), 0);
}

}  // namespace
}  // namespace ringline
