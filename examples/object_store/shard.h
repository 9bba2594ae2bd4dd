#pragma once
// Shard: one worker's part of the object store: its slots of the slab file,
// the index of the keys it owns, and its registered buffers.
//
// Ownership and lifetime: a Shard is per-worker state, worker.Local<Shard>:
// created on its worker's thread and owned by the worker, which destroys it
// after every task of the worker has been destroyed and the ring drained (no
// task or kernel operation can still use its file or buffers), and before the
// ring goes (the file leaves the fixed-file table cleanly). See
// ringline/worker.h, Worker::Local.
// Thread-safety: none needed and none taken: only its worker's tasks call it.
// Requests for its keys from other workers come in through SubmitTo and run
// as tasks of this worker.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "ringline/block/direct_file.h"
#include "ringline/buffer_pool.h"
#include "ringline/task.h"
#include "ringline/worker.h"
#include "slab.h"

namespace object_store {

// kUnavailable is never a shard's: a request forwarded to a worker that could
// not run it (stopping, or its message queue full) was not served.
enum class Outcome : uint8_t { kOk, kNotFound, kFull, kIoError, kUnavailable };

class Shard {
 public:
  Shard(ringline::Worker& worker, const Superblock& sb) : worker_(worker), sb_(sb) {}
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  // Creates this worker's shard and opens the slab for it (on the worker's
  // thread); then Recover() must run before any request.
  static absl::StatusOr<Shard*> Install(ringline::Worker& worker, const std::string& path,
                                        const Superblock& sb);
  // This worker's shard (null before Install).
  static Shard* Of(ringline::Worker& worker) { return worker.FindLocal<Shard>(); }

  // Reads every slot this worker owns and rebuilds the index: the newest
  // valid copy of each key wins; older copies are cleared.
  ringline::Task<absl::Status> Recover();

  // The largest value a slot holds.
  uint32_t max_value() const { return sb_.slot_size - kHeaderSpace; }
  // Registered buffers of one slot each. A request's value is received into
  // one ([0, size)), written from it, read into it and sent from it.
  ringline::BufferPool& buffers() { return *pool_; }

  // Stores buffer[0, size()) under `key` (the buffer comes from buffers()):
  // kOk once it is on stable storage (FUA).
  ringline::Task<Outcome> Put(std::string_view key, ringline::Buffer value);
  // kOk with the value in `out` ([0, size())), or kNotFound.
  struct Got {
    Outcome outcome = Outcome::kNotFound;
    ringline::Buffer value;
  };
  ringline::Task<Got> Get(std::string_view key);
  // kOk once the deletion is on stable storage, or kNotFound.
  ringline::Task<Outcome> Delete(std::string_view key);

  std::size_t objects() const { return index_.size(); }

 private:
  struct Entry {
    uint32_t slot;
    uint64_t seq;
  };
  uint64_t SlotOffset(uint32_t slot) const;
  // Writes zeroes over the slot's last block (its header), with FUA.
  ringline::Task<bool> Clear(uint32_t slot);
  // Checks a slot image read from disk; its header, or null.
  const SlotHeader* Valid(const ringline::Buffer& image) const;

  ringline::Worker& worker_;
  Superblock sb_;
  std::unique_ptr<ringline::BufferPool> pool_;
  std::unique_ptr<ringline::block::DirectFile> file_;
  absl::flat_hash_map<std::string, Entry> index_;
  std::vector<uint32_t> free_;  // slots (of this worker's) holding nothing
  uint64_t next_seq_ = 1;
};

}  // namespace object_store
