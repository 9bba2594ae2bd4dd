// Buffer's knowledge of where it is registered (the rest of Buffer lives with
// BufferPool in buffer_pool.cc).
#include "ringline/buffer.h"

#include "absl/strings/str_cat.h"
#include "ringline/buffer_pool.h"
#include "ringline/worker.h"

namespace ringline {

const Worker* Buffer::registered_on() const {
  return registered() && pool_ ? pool_->worker_ : nullptr;
}

absl::Status Buffer::CheckUsableOn(const Worker& w) const {
  if (!registered()) return absl::OkStatus();
  const Worker* owner = registered_on();
  if (owner == &w) return absl::OkStatus();
  const std::string where = owner ? absl::StrCat("worker ", owner->index(), "'s ring")
                                  : "the ring of a worker that is gone";
  return absl::FailedPreconditionError(absl::StrCat(
      "a buffer registered with ", where, " (registration ", reg_index_,
      ") was used by an operation on worker ", w.index(),
      ": a registered buffer works only on the worker whose pool it came from; acquire one from "
      "worker ",
      w.index(), "'s pool, or run the I/O on worker ",
      owner ? absl::StrCat(owner->index()) : std::string("that owns it"), " (SubmitTo)"));
}

}  // namespace ringline
