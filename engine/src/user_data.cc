#include "ringline/internal/user_data.h"

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace ringline {
namespace {

// Owner name per tag value. Written under the mutex, read without it.
struct OwnerTable {
  OwnerTable() {
    for (int i = 0; i < 256; ++i) names[i].store(i < kFirstSubsystemTag ? "engine" : nullptr);
  }
  std::array<std::atomic<const char*>, 256> names;
};
std::array<std::atomic<const char*>, 256>& Owners() {
  static OwnerTable table;
  return table.names;
}

std::mutex& RegistryMutex() {
  static std::mutex m;
  return m;
}

}  // namespace

void RegisterOpTags(const OpTagBlock& block) {
  auto& owners = Owners();
  std::lock_guard<std::mutex> lock(RegistryMutex());
  const unsigned end = unsigned{block.first} + block.count;
  for (unsigned t = block.first; t < end; ++t) {
    const char* o = t < 256 ? owners[t].load() : "nothing (past 255)";
    if (t >= 256 || (o != nullptr && std::strcmp(o, block.owner) != 0)) {
      std::fprintf(stderr,
                   "ringline: operation tags %u..%u of \"%s\" overlap tag %u owned by %s; "
                   "give the subsystem a block of its own\n",
                   unsigned{block.first}, end - 1, block.owner, t, o);
      std::abort();
    }
  }
  for (unsigned t = block.first; t < end; ++t) owners[t].store(block.owner);
}

const char* OpTagOwner(OpTag tag) { return Owners()[static_cast<uint8_t>(tag)].load(); }

}  // namespace ringline
