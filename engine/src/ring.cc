#include "ringline/internal/ring.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "ringline/io_result.h"

namespace ringline {

absl::StatusOr<std::unique_ptr<Ring>> Ring::Create(const RingOptions& o) {
  std::unique_ptr<Ring> ring(new Ring(o));
  io_uring_params p{};
  p.flags =
      IORING_SETUP_SQE128 | IORING_SETUP_CQE32 | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
  p.cq_entries = o.cq_entries;
  if (o.sqpoll) {
    // DEFER_TASKRUN requires the submitting task to run completions itself,
    // which SQPOLL's kernel thread does not; SINGLE_ISSUER still applies.
    p.flags |= IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER;
    p.sq_thread_idle = o.sqpoll_idle_ms;
    if (o.sqpoll_cpu >= 0) {
      p.flags |= IORING_SETUP_SQ_AFF;
      p.sq_thread_cpu = static_cast<uint32_t>(o.sqpoll_cpu);
    }
  } else {
    p.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  }
  if (o.iopoll) p.flags |= IORING_SETUP_IOPOLL;
  int ret = io_uring_queue_init_params(o.sq_entries, &ring->ring_, &p);
  if (ret < 0) {
    return ErrnoToStatus(ret, absl::StrCat("io_uring_setup(entries=", o.sq_entries, ", flags=0x",
                                           absl::Hex(p.flags), ")"));
  }
  ring->initialized_ = true;
  // The ring's own descriptor, registered with the thread that creates and
  // enters it (SINGLE_ISSUER: the worker's): io_uring_enter then finds the
  // ring without looking up and reference-counting its file on every call
  // (IORING_ENTER_REGISTERED_RING, which liburing adds). Linux 5.18; without
  // it, plain descriptor lookups as before. io_uring_queue_exit (~Ring, on the
  // same thread: workers are created and destroyed on theirs) unregisters it.
  if (!o.sqpoll) (void)io_uring_register_ring_fd(&ring->ring_);

  // The fixed-file table counts against RLIMIT_NOFILE: raise the soft limit
  // toward the hard one if the table would not fit (1024 is a common default).
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < o.fixed_files + 64u) {
    nofile.rlim_cur = std::min<rlim_t>(nofile.rlim_max, o.fixed_files + 64u);
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  ret = io_uring_register_files_sparse(&ring->ring_, o.fixed_files);
  if (ret < 0) {
    return ErrnoToStatus(ret, absl::StrCat("registering a sparse table of ", o.fixed_files,
                                           " fixed files (needs Linux 5.19; raise `ulimit -n` "
                                           "if EMFILE)"));
  }
  const uint32_t user_files = o.fixed_files - o.direct_alloc_files;
  if (o.direct_alloc_files > 0) {
    ret = io_uring_register_file_alloc_range(&ring->ring_, user_files, o.direct_alloc_files);
    if (ret < 0) return ErrnoToStatus(ret, "io_uring_register_file_alloc_range (Linux 6.0)");
  }
  ring->file_used_.assign(user_files, 0);

  if (o.registered_buffers > 0) {
    ret = io_uring_register_buffers_sparse(&ring->ring_, o.registered_buffers);
    if (ret < 0) {
      return ErrnoToStatus(ret, absl::StrCat("registering a sparse table of ", o.registered_buffers,
                                             " buffers (Linux 5.19)"));
    }
    ring->buf_used_.assign(o.registered_buffers, 0);
  }
  ring->stash_.reserve(o.cq_entries);
  ring->stash_running_.reserve(o.cq_entries);
  return ring;
}

Ring::~Ring() {
  if (initialized_) io_uring_queue_exit(&ring_);
}

void Ring::Stash() {
  io_uring_cqe* cqe;
  unsigned head;
  unsigned n = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    stash_.push_back(
        Completion{cqe->user_data, cqe->res, cqe->flags, {cqe->big_cqe[0], cqe->big_cqe[1]}});
    ++n;
  }
  io_uring_cq_advance(&ring_, n);
}

int Ring::SubmitPending() {
  internal::FenceStores();
  for (;;) {
    ++submit_calls_;
    int ret = io_uring_submit(&ring_);
    if (ret >= 0) {
      sqes_submitted_ += static_cast<uint64_t>(ret);
      return ret;
    }
    if (ret == -EINTR) continue;
    if (ret == -EBUSY || ret == -EAGAIN) {
      // Backpressure (docs/io_uring-rules.md R7): the CQ is full or overflowing. Copy completions
      // out so the kernel can post more, flush its overflow list, and retry.
      ++backpressure_events_;
      Stash();
      ++submit_calls_;
      io_uring_get_events(&ring_);
      Stash();
      continue;
    }
    return ret;
  }
}

void Ring::ReadSqHead() {
  // Acquire: with SQPOLL the kernel thread moves the head concurrently, and
  // the SQEs before it must be seen as consumed before they are reused.
  sqe_limit_ = io_uring_smp_load_acquire(ring_.sq.khead) + ring_.sq.ring_entries;
}

io_uring_sqe* Ring::GetSqeSlow() {
  ReadSqHead();
  while (static_cast<int>(sqe_limit_ - ring_.sq.sqe_tail) <= 0) {
    SubmitPending();  // a full SQ is submitted, never reported as a failure
    ReadSqHead();
  }
  return Take();
}

int Ring::SubmitNow() {
  internal::FenceStores();
  ++submit_calls_;
  const int ret = io_uring_submit_and_get_events(&ring_);
  if (ret > 0) sqes_submitted_ += static_cast<uint64_t>(ret);
  return ret;
}

unsigned Ring::SubmitWithoutWait() {
  if (io_uring_sq_ready(&ring_) != 0) SubmitPending();
  return io_uring_cq_ready(&ring_);
}

int Ring::EnterOnce(unsigned wait_nr, int64_t timeout_ns) {
  internal::FenceStores();
  ++submit_calls_;
  int ret;
  if (wait_nr == 0) {
    ret = io_uring_submit_and_get_events(&ring_);
  } else if (timeout_ns >= 0) {
    __kernel_timespec ts{timeout_ns / 1'000'000'000, timeout_ns % 1'000'000'000};
    const unsigned pending = io_uring_sq_ready(&ring_);
    io_uring_cqe* cqe = nullptr;
    ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, wait_nr, &ts, nullptr);
    // With EXT_ARG this returns 0 or -errno, not a count; every queued SQE
    // was handed to the kernel either way.
    if (ret >= 0 || ret == -ETIME) ret = static_cast<int>(pending);
  } else {
    ret = io_uring_submit_and_wait(&ring_, wait_nr);
  }
  if (ret >= 0) sqes_submitted_ += static_cast<uint64_t>(ret);
  return ret;
}

int Ring::SubmitAndWaitSlow(unsigned wait_nr, int64_t timeout_ns) {
  const int ret = EnterOnce(wait_nr, timeout_ns);
  return ret >= 0 ? ret : SubmitAndWaitFailed(ret, wait_nr, timeout_ns);
}

int Ring::SubmitAndWaitFailed(int ret, unsigned wait_nr, int64_t timeout_ns) {
  while (ret == -EBUSY || ret == -EAGAIN) {
    // Backpressure (docs/io_uring-rules.md R7): the CQ is full or
    // overflowing. Copy completions out so the kernel can post more, and
    // submit again.
    ++backpressure_events_;
    Stash();
    ret = EnterOnce(wait_nr, timeout_ns);
  }
  return ret;  // the count, -EINTR (a signal: the loop simply goes round) or an error
}

absl::StatusOr<int> Ring::InstallFixedFile(int fd) {
  const uint32_t n = static_cast<uint32_t>(file_used_.size());
  for (uint32_t k = 0; k < n; ++k) {
    const uint32_t i = (file_search_ + k) % n;
    if (file_used_[i]) continue;
    int ret = io_uring_register_files_update(&ring_, i, &fd, 1);
    if (ret < 0) return ErrnoToStatus(ret, "io_uring_register_files_update");
    file_used_[i] = 1;
    file_search_ = i + 1;
    return static_cast<int>(i);
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("fixed file table full: all ", n,
                   " slots for installed files are in use (raise ring.fixed_files)"));
}

absl::Status Ring::RemoveFixedFile(int index) {
  if (index < 0 || static_cast<std::size_t>(index) >= file_used_.size() || !file_used_[index]) {
    return absl::InvalidArgumentError(absl::StrCat("fixed file ", index, " is not installed"));
  }
  int minus_one = -1;
  int ret = io_uring_register_files_update(&ring_, static_cast<unsigned>(index), &minus_one, 1);
  if (ret < 0) return ErrnoToStatus(ret, "io_uring_register_files_update(remove)");
  file_used_[index] = 0;
  return absl::OkStatus();
}

absl::StatusOr<int> Ring::RegisterBuffer(void* addr, std::size_t len) {
  for (std::size_t i = 0; i < buf_used_.size(); ++i) {
    if (buf_used_[i]) continue;
    iovec iov{addr, len};
    int ret =
        io_uring_register_buffers_update_tag(&ring_, static_cast<unsigned>(i), &iov, nullptr, 1);
    if (ret < 0) {
      if (ret == -ENOMEM || ret == -EPERM || ret == -EFAULT) {
        rlimit rl{};
        getrlimit(RLIMIT_MEMLOCK, &rl);
        return absl::ResourceExhaustedError(absl::StrCat(
            "registering ", len, " bytes of buffers failed (", ErrnoName(-ret),
            "): RLIMIT_MEMLOCK is ",
            rl.rlim_cur == RLIM_INFINITY ? std::string("unlimited") : absl::StrCat(rl.rlim_cur),
            " bytes; raise it with `ulimit -l unlimited` or LimitMEMLOCK=infinity"));
      }
      return ErrnoToStatus(ret, "io_uring_register_buffers_update_tag");
    }
    buf_used_[i] = 1;
    return static_cast<int>(i);
  }
  return absl::ResourceExhaustedError(absl::StrCat("registered buffer table full (",
                                                   buf_used_.size(),
                                                   " entries; raise ring.registered_buffers)"));
}

void Ring::UnregisterBuffer(int index) {
  if (index < 0 || static_cast<std::size_t>(index) >= buf_used_.size()) return;
  iovec iov{nullptr, 0};
  io_uring_register_buffers_update_tag(&ring_, static_cast<unsigned>(index), &iov, nullptr, 1);
  buf_used_[index] = 0;
}

}  // namespace ringline
