// A registered Buffer used on another worker's target fails at submission with
// EXDEV and a message naming both workers, never with the kernel's EFAULT (or,
// worse, I/O into the other ring's buffer that has the same registration index).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "ringline/block/direct_file.h"
#include "ringline/ringline.h"

namespace ringline::block {
namespace {

struct CrossOutcome {
  int error = 0;
  std::string message;
  Buffer buffer;  // handed back to worker 0, whose pool it belongs to
};

TEST(CrossWorkerBufferTest, RegisteredBufferOnAnotherWorkerIsExdevNamingBoth) {
  char path[] = "/var/tmp/ringline-xworker-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 1 << 20), 0);
  close(fd);

  Config c;
  c.workers = 2;
  c.shutdown_grace = std::chrono::milliseconds(0);
  const std::string file_path = path;
  auto rt = Runtime::Start(c, [file_path](Worker& w) -> Task<absl::Status> {
    if (w.index() == 0) {
      auto pool = BufferPool::Create(w, {.buffer_size = 4096, .count = 2});
      if (!pool.ok())
        return [](absl::Status s) -> Task<absl::Status> { co_return s; }(pool.status());
      w.EmplaceLocal<std::unique_ptr<BufferPool>>(std::move(*pool));
    } else {
      auto f = DirectFile::Open(w, file_path);
      if (!f.ok()) return [](absl::Status s) -> Task<absl::Status> { co_return s; }(f.status());
      w.EmplaceLocal<std::unique_ptr<DirectFile>>(std::move(*f));
    }
    return [](Worker& w) -> Task<absl::Status> {
      co_await w.stop_token().Cancelled();
      co_return absl::OkStatus();
    }(w);
  });
  ASSERT_TRUE(rt.ok()) << rt.status();

  Result<CrossOutcome> out = SubmitTo(**rt, 0, []() -> Task<Result<CrossOutcome>> {
    BufferPool& pool = **Worker::Current().FindLocal<std::unique_ptr<BufferPool>>();
    if (!pool.registered()) {
      co_return Result<CrossOutcome>::Error(
          ENOTSUP, absl::UnavailableError("the pool fell back to unregistered memory"));
    }
    Buffer b = co_await pool.Acquire();
    // Named, not a temporary in the co_await expression (g++ 12, see task.h).
    auto on_worker_1 = [b = std::move(b)]() mutable -> Task<CrossOutcome> {
      DirectFile& file = **Worker::Current().FindLocal<std::unique_ptr<DirectFile>>();
      BlockResult br = co_await file.Read(0, 4096, std::move(b));
      co_return CrossOutcome{br.error(), std::string(br.status.message()), std::move(br.buffer)};
    };
    Result<CrossOutcome> r = co_await SubmitTo(1, std::move(on_worker_1));
    co_return r;
  });
  if (!out.ok() && out.error() == ENOTSUP) {
    std::printf("SKIPPED registered buffers unavailable (RLIMIT_MEMLOCK): %s\n",
                out.ErrorString().c_str());
    (*rt)->Shutdown();
    (*rt)->Join();
    unlink(path);
    GTEST_SKIP();
  }
  ASSERT_TRUE(out.ok()) << out.ErrorString();
  EXPECT_EQ(out->error, EXDEV);
  EXPECT_NE(out->message.find("registered with worker 0's ring"), std::string::npos)
      << out->message;
  EXPECT_NE(out->message.find("operation on worker 1"), std::string::npos) << out->message;
  std::printf("message: %s\n", out->message.c_str());
  // The pool buffer goes home: destroyed on worker 0's thread.
  Buffer home = std::move(out->buffer);
  EXPECT_TRUE(static_cast<bool>(home));
  Result<Unit> back = SubmitTo(**rt, 0, [b = std::move(home)]() mutable -> Task<> {
    b.Reset();
    co_return;
  });
  EXPECT_TRUE(back.ok());
  (*rt)->Shutdown();
  EXPECT_TRUE((*rt)->Wait().ok());
  unlink(path);
  std::printf("%s cross-worker registered buffer is EXDEV naming both workers\n",
              HasFailure() ? "FAIL" : "PASS");
}

}  // namespace
}  // namespace ringline::block
