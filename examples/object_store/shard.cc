#include "shard.h"

#include <cstring>

#include "ringline/log.h"

namespace object_store {
using ringline::Buffer;
using ringline::Task;

// [snippet:shard-install]
absl::StatusOr<Shard*> Shard::Install(ringline::Worker& worker, const std::string& path,
                                      const Superblock& sb) {
  // Owned by the worker from here on: destroyed after all of its tasks.
  Shard& shard = worker.EmplaceLocal<Shard>(worker, sb);
  // Registered with this worker's ring: reads and writes are READ_FIXED /
  // WRITE_FIXED, no page pinning per request. A request waits for a free one.
  auto pool = ringline::BufferPool::Create(worker, {.buffer_size = sb.slot_size, .count = 64});
  if (!pool.ok()) return pool.status();
  shard.pool_ = std::move(*pool);
  // O_DIRECT or nothing: the store's durability argument is about the device.
  ringline::block::TargetOptions options;
  options.cache = ringline::block::CacheMode::kDirect;
  options.queue_depth = 64;
  auto file = ringline::block::DirectFile::Open(worker, path, options);
  if (!file.ok()) return file.status();
  shard.file_ = std::move(*file);
  return &shard;
}
// [/snippet:shard-install]

uint64_t Shard::SlotOffset(uint32_t slot) const {
  return kSuperSize + (uint64_t{worker_.index()} * sb_.slots + slot) * sb_.slot_size;
}

const SlotHeader* Shard::Valid(const Buffer& image) const {
  const auto* h = reinterpret_cast<const SlotHeader*>(image.data() + sb_.slot_size - kHeaderSpace);
  if (h->magic != kSlotMagic || h->value_size > max_value() || h->key_size == 0 ||
      h->key_size > kMaxKey || h->checksum != SlotChecksum(image.data(), *h)) {
    return nullptr;
  }
  return h;
}

Task<absl::Status> Shard::Recover() {
  uint64_t stale = 0;
  for (uint32_t slot = 0; slot < sb_.slots; ++slot) {
    Buffer buf = co_await pool_->Acquire();
    ringline::block::BlockResult r =
        co_await file_->Read(SlotOffset(slot), sb_.slot_size, std::move(buf));
    if (!r.ok()) co_return r.status;
    const SlotHeader* h = Valid(r.buffer);
    if (h == nullptr) {
      free_.push_back(slot);
      continue;
    }
    next_seq_ = std::max(next_seq_, h->seq + 1);
    auto [it, inserted] = index_.try_emplace(std::string(h->key, h->key_size), Entry{slot, h->seq});
    if (inserted) continue;
    // Two copies of one key: a crash between an overwrite and the clearing of
    // the copy it replaced. The newer one wins; the older is cleared.
    uint32_t loser = slot;
    if (h->seq > it->second.seq) loser = std::exchange(it->second, Entry{slot, h->seq}).slot;
    const bool cleared = co_await Clear(loser);
    if (!cleared) co_return absl::DataLossError("cannot clear a stale slot");
    free_.push_back(loser);
    ++stale;
  }
  RL_LOG_INFO("worker %u: %zu objects recovered, %zu free slots, %llu stale copies cleared",
              worker_.index(), index_.size(), free_.size(), static_cast<unsigned long long>(stale));
  co_return absl::OkStatus();
}

Task<bool> Shard::Clear(uint32_t slot) {
  Buffer buf = co_await pool_->Acquire();
  std::memset(buf.data(), 0, kClearSize);
  buf.set_size(kClearSize);
  ringline::block::BlockResult r = co_await file_->Write(
      SlotOffset(slot) + sb_.slot_size - kClearSize, std::move(buf), {.fua = true});
  co_return r.ok();
}

// [snippet:shard-put]
Task<Outcome> Shard::Put(std::string_view key, Buffer value) {
  if (free_.empty()) co_return Outcome::kFull;
  const uint32_t slot = free_.back();
  free_.pop_back();
  // The header goes in the slot's last bytes, behind the value, so that the
  // whole slot leaves in one write from the buffer the value arrived in.
  const auto size = static_cast<uint32_t>(value.size());
  std::memset(value.data() + size, 0, sb_.slot_size - size);
  auto* h = reinterpret_cast<SlotHeader*>(value.data() + sb_.slot_size - kHeaderSpace);
  h->magic = kSlotMagic;
  h->seq = next_seq_++;
  h->value_size = size;
  h->key_size = static_cast<uint16_t>(key.size());
  std::memcpy(h->key, key.data(), key.size());
  h->checksum = SlotChecksum(value.data(), *h);
  const uint64_t seq = h->seq;
  value.set_size(sb_.slot_size);
  // FUA: on stable storage when the result arrives; only then is it indexed.
  ringline::block::BlockResult r =
      co_await file_->Write(SlotOffset(slot), std::move(value), {.fua = true});
  if (!r.ok()) {
    RL_LOG_WARN("put: writing slot %u failed: %s", slot, std::string(r.status.message()));
    free_.push_back(slot);
    co_return Outcome::kIoError;
  }
  auto [it, inserted] = index_.try_emplace(std::string(key), Entry{slot, seq});
  if (inserted) co_return Outcome::kOk;
  // An overwrite: the old copy (lower sequence) is cleared before its slot is
  // reused, so at most one copy of the key survives a later delete.
  const uint32_t old = std::exchange(it->second, Entry{slot, seq}).slot;
  const bool cleared = co_await Clear(old);
  if (cleared) free_.push_back(old);  // else leaked until restart: recovery clears it
  co_return Outcome::kOk;
}
// [/snippet:shard-put]

Task<Shard::Got> Shard::Get(std::string_view key) {
  for (;;) {
    auto it = index_.find(absl::string_view(key.data(), key.size()));
    if (it == index_.end()) co_return Got{};
    const Entry want = it->second;
    Buffer buf = co_await pool_->Acquire();
    ringline::block::BlockResult r =
        co_await file_->Read(SlotOffset(want.slot), sb_.slot_size, std::move(buf));
    if (!r.ok()) co_return Got{Outcome::kIoError, {}};
    const SlotHeader* h = Valid(r.buffer);
    if (h && h->seq == want.seq && std::string_view(h->key, h->key_size) == key) {
      r.buffer.set_size(h->value_size);
      co_return Got{Outcome::kOk, std::move(r.buffer)};
    }
    // The key was overwritten or deleted (and its slot perhaps reused) while
    // we read: look again. The same entry with other bytes is damage.
    it = index_.find(absl::string_view(key.data(), key.size()));
    if (it != index_.end() && it->second.slot == want.slot && it->second.seq == want.seq) {
      RL_LOG_ERROR("get: slot %u fails its checksum", want.slot);
      co_return Got{Outcome::kIoError, {}};
    }
  }
}

Task<Outcome> Shard::Delete(std::string_view key) {
  auto it = index_.find(absl::string_view(key.data(), key.size()));
  if (it == index_.end()) co_return Outcome::kNotFound;
  const uint32_t slot = it->second.slot;
  index_.erase(it);
  const bool cleared = co_await Clear(slot);
  if (!cleared) co_return Outcome::kIoError;  // the slot stays used until restart
  free_.push_back(slot);
  co_return Outcome::kOk;
}

}  // namespace object_store
