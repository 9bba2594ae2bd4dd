// The end of a loop iteration's batch (WorkerService::BeforeSubmit) waits for
// work the kernel already holds: a socket read that became ready during the
// iteration completes before the service runs, so a reply it would cause
// leaves with the batch (Config::max_batch_extensions). Turned off, the
// service runs first. Real io_uring reads on a real socket pair (a read on an
// empty socket waits on the socket's poll, whose wake-up queues task work).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "ringline/internal/user_data.h"
#include "ringline/operation.h"
#include "ringline/ringline.h"

namespace ringline {
namespace {

void Report(const char* what) {
  std::printf("%s %s\n", ::testing::Test::HasFailure() ? "FAIL" : "PASS", what);
}

// Records, at each end of a batch, whether the socket read had completed.
class BatchEnd : public WorkerService {
 public:
  explicit BatchEnd(const bool& read_done) : read_done_(read_done) {}
  void BeforeSubmit() override {
    ++calls;
    read_done_seen = read_done_;
  }
  int calls = 0;
  bool read_done_seen = false;

 private:
  const bool& read_done_;
};

struct Outcome {
  int calls;
  bool read_done_seen;
  uint64_t extensions;
};

Outcome RunOneBatch(uint32_t max_batch_extensions) {
  Config c;
  c.max_batch_extensions = max_batch_extensions;
  auto w = Worker::Create(c);
  EXPECT_TRUE(w.ok()) << w.status();
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  bool read_done = false;
  auto service = std::make_unique<BatchEnd>(read_done);
  BatchEnd* end = service.get();
  static int key;
  (*w)->SetService(&key, std::move(service));
  auto body = [](Worker& w, int rfd, int wfd, bool& read_done, BatchEnd* end) -> Task<> {
    char byte = 0;
    JoinHandle<void> reader = Spawn([](int fd, char* b, bool& done) -> Task<> {
      const IoResult r = co_await Submit(OpTag::kGeneric, [fd, b](io_uring_sqe* sqe, OpSlot&) {
        io_uring_prep_read(sqe, fd, b, 1, 0);
      });
      EXPECT_EQ(r.res, 1);
      done = true;
    }(rfd, &byte, read_done));
    // Two iterations: the reader, ready from the next one on, submits its
    // read, which reaches the kernel and waits there (no data).
    co_await Nop();
    co_await Nop();
    EXPECT_FALSE(read_done);
    // The socket gets its byte now, in the middle of an iteration that also
    // ends a batch: the kernel queues the read's task work.
    EXPECT_EQ(::write(wfd, "x", 1), 1);
    w.RequestBeforeSubmit(end);
    co_await Nop();
    co_await Nop();
    co_await reader;
  };
  (*w)->BlockOn(body(**w, fds[0], fds[1], read_done, end));
  Outcome o{end->calls, end->read_done_seen, (*w)->metrics().batch_extensions.Get()};
  ::close(fds[0]);
  ::close(fds[1]);
  return o;
}

TEST(BatchTest, WorkThatArrivedDuringTheIterationJoinsTheBatch) {
  const Outcome o = RunOneBatch(Config{}.max_batch_extensions);
  EXPECT_EQ(o.calls, 1);
  EXPECT_TRUE(o.read_done_seen) << "the batch ended before the ready read completed";
  EXPECT_GE(o.extensions, 1u);
  Report("a read that became ready during the iteration completes before the batch ends");
}

TEST(BatchTest, WithoutExtensionsTheBatchEndsAtOnce) {
  const Outcome o = RunOneBatch(0);
  EXPECT_EQ(o.calls, 1);
  EXPECT_FALSE(o.read_done_seen);
  EXPECT_EQ(o.extensions, 0u);
  Report("max_batch_extensions = 0 ends the batch before the ready read completes");
}

}  // namespace
}  // namespace ringline
