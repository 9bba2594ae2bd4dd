#pragma once
// Command-line options of ringline-blockbench, spelled like fio's.
//
//   ringline-blockbench --filename=/dev/shm/f --rw=randread --bs=4k --iodepth=32
//       --runtime=5 --time_based --numjobs=1 --output-format=json --cpus=0
//
// Sizes take fio's suffixes with a 1024 base (4k = 4096, 1m = 1 MiB); times
// take s/ms/m suffixes (plain numbers are seconds, like fio).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ringline::blockbench {

enum class RwMode { kRandRead, kRandWrite, kRead, kWrite, kRandRw };
const char* RwModeName(RwMode m);

struct BenchOptions {
  std::string filename;
  RwMode rw = RwMode::kRandRead;
  uint32_t bs = 4096;
  uint32_t iodepth = 1;
  double runtime_s = 0;  // 0: no time limit (then `size` bytes per job)
  bool time_based = false;
  uint32_t numjobs = 1;
  uint64_t size = 0;  // bytes of the target to use; 0 = all of it
  uint32_t rwmixread = 50;
  bool json = false;
  std::string output;  // write the report here instead of stdout
  // Worker i runs on cpus[i % size]. Empty: block::PlaceWorkers chooses from
  // the allowed CPUs, those on which the target's completions arrive first.
  std::vector<int> cpus;
  std::string name = "ringline";
  // fio's --iodepth_batch_submit: submit as soon as this many requests wait
  // (TargetOptions::submit_batch); 1 like fio's default, 0: once per loop
  // iteration of the worker.
  uint32_t iodepth_batch_submit = 1;
  // fio's --hipri: polled completions (TargetOptions::polled; NVMe passthrough).
  bool hipri = false;
  // --offload: of the --iodepth requests in flight, at most this many are
  // handed to io_uring's io-wq threads (TargetOptions::max_offloaded_copies)
  // on a target whose reads and writes complete on the worker's CPU (tmpfs,
  // buffered files); 0 (the default): none. At most --iodepth.
  uint32_t offload = 0;
  // --map_memory_files: tmpfs reads and writes copied through a mapping of the
  // file (TargetOptions::map_memory_files); 0 copies with pread/pwrite.
  bool map_memory_files = true;

  bool random() const {
    return rw == RwMode::kRandRead || rw == RwMode::kRandWrite || rw == RwMode::kRandRw;
  }
  bool reads() const { return rw != RwMode::kRandWrite && rw != RwMode::kWrite; }
  bool writes() const { return rw != RwMode::kRandRead && rw != RwMode::kRead; }
};

// Parses argv. A request for --help comes back as a status whose message is the
// help text and whose code is kCancelled (print it, exit 0).
absl::StatusOr<BenchOptions> ParseOptions(int argc, const char* const* argv);

// "4k" -> 4096, "1m" -> 1048576, "512" -> 512. Fails on junk or overflow.
absl::StatusOr<uint64_t> ParseSize(const std::string& text);
// "5" / "5s" -> 5.0, "500ms" -> 0.5, "2m" -> 120.
absl::StatusOr<double> ParseSeconds(const std::string& text);
// "0,2-3" -> {0, 2, 3} (ascending, block::ParseCpuList).
absl::StatusOr<std::vector<int>> ParseCpuList(const std::string& text);

}  // namespace ringline::blockbench
