#include "options.h"

#include <cctype>
#include <cmath>
#include <limits>
#include <optional>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "ringline/block/placement.h"

namespace ringline::blockbench {

const char* RwModeName(RwMode m) {
  switch (m) {
    case RwMode::kRandRead:
      return "randread";
    case RwMode::kRandWrite:
      return "randwrite";
    case RwMode::kRead:
      return "read";
    case RwMode::kWrite:
      return "write";
    case RwMode::kRandRw:
      return "randrw";
  }
  return "?";
}

absl::StatusOr<uint64_t> ParseSize(const std::string& text) {
  std::size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  uint64_t n = 0;
  if (i == 0 || !absl::SimpleAtoi(absl::string_view(text.data(), i), &n)) {
    return absl::InvalidArgumentError(absl::StrCat("not a size: '", text, "' (e.g. 4k, 128k, 1m)"));
  }
  std::string suffix = text.substr(i);
  for (char& c : suffix) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // fio's kb_base=1024: k, kb, kib are all 1024.
  if (suffix.size() > 1 && (suffix.substr(1) == "b" || suffix.substr(1) == "ib")) suffix.resize(1);
  int shift = 0;
  if (suffix.empty() || suffix == "b")
    shift = 0;
  else if (suffix == "k")
    shift = 10;
  else if (suffix == "m")
    shift = 20;
  else if (suffix == "g")
    shift = 30;
  else if (suffix == "t")
    shift = 40;
  else
    return absl::InvalidArgumentError(absl::StrCat("unknown size suffix in '", text, "'"));
  if (shift && n > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return absl::InvalidArgumentError(absl::StrCat("size too large: '", text, "'"));
  }
  return n << shift;
}

absl::StatusOr<double> ParseSeconds(const std::string& text) {
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  double v = 0;
  if (i == 0 || !absl::SimpleAtod(absl::string_view(text.data(), i), &v) || v < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a duration: '", text, "' (e.g. 5, 5s, 500ms)"));
  }
  const std::string suffix = text.substr(i);
  if (suffix.empty() || suffix == "s") return v;
  if (suffix == "ms") return v / 1000;
  if (suffix == "us") return v / 1e6;
  if (suffix == "m") return v * 60;
  if (suffix == "h") return v * 3600;
  return absl::InvalidArgumentError(absl::StrCat("unknown time suffix in '", text, "'"));
}

absl::StatusOr<std::vector<int>> ParseCpuList(const std::string& text) {
  std::optional<block::CpuList> out = block::ParseCpuList(text);
  if (!out) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a CPU list: '", text, "' (e.g. 0 or 0,2 or 0-3)"));
  }
  if (out->empty()) return absl::InvalidArgumentError("empty CPU list");
  return *out;
}

absl::StatusOr<BenchOptions> ParseOptions(int argc, const char* const* argv) {
  BenchOptions o;
  CLI::App app{
      "ringline-blockbench: a load generator on ringline's block layer (O_DIRECT files, block "
      "devices, NVMe generic devices), with fio's option spelling"};
  std::string rw = "randread", bs = "4k", runtime, size, output_format = "normal", cpus;
  std::string ioengine, direct = "1", offload = "0";
  bool flag_ignored = false;
  app.add_option("--filename", o.filename, "file, block device or /dev/ngXnY")->required();
  app.add_option("--rw", rw, "randread|randwrite|read|write|randrw")
      ->check(CLI::IsMember({"randread", "randwrite", "read", "write", "randrw"}));
  app.add_option("--bs", bs, "block size (4k, 128k, ...)");
  app.add_option("--iodepth", o.iodepth, "requests in flight per job")
      ->check(CLI::Range(1u, 65536u));
  app.add_option("--iodepth_batch_submit,--iodepth_batch", o.iodepth_batch_submit,
                 "submit as soon as this many requests wait to be submitted (default 1, like "
                 "fio: each request at once); 0: once per loop iteration, with the block "
                 "layer merging adjacent requests")
      ->check(CLI::Range(0u, 65536u));
  app.add_option("--runtime", runtime, "run time (seconds, or 500ms, 2m)");
  app.add_flag("--time_based", o.time_based, "run for --runtime even after --size bytes");
  app.add_option("--numjobs", o.numjobs, "jobs (one worker thread and ring each)")
      ->check(CLI::Range(1u, 1024u));
  app.add_option("--size", size,
                 "bytes of the target to use (default: all); a missing file is "
                 "created and laid out to this size");
  app.add_option("--rwmixread", o.rwmixread, "percentage of reads for randrw")
      ->check(CLI::Range(0u, 100u));
  app.add_option("--output-format", output_format, "normal|json")
      ->check(CLI::IsMember({"normal", "json"}));
  app.add_option("--output", o.output, "write the report to this file");
  app.add_option("--cpus,--cpus_allowed", cpus,
                 "CPUs for the jobs' workers (0,1 or 0-1); default: the allowed CPUs, those on "
                 "which the target's completions arrive first");
  app.add_option("--direct", direct, "accepted for fio compatibility; must be 1");
  app.add_flag("--hipri", o.hipri,
               "polled completions (NVMe passthrough on a namespace with poll queues; else "
               "interrupts, with a warning)");
  app.add_option("--offload", offload,
                 "of the --iodepth requests in flight, hand at most this many to io_uring's "
                 "io-wq threads, which copy on other CPUs while the worker copies the rest "
                 "(tmpfs and buffered files, whose reads and writes otherwise complete on the "
                 "worker's CPU; no effect on O_DIRECT to a device). Default 0: one CPU per job. "
                 "At most --iodepth")
      ->type_name("N");
  app.add_option("--map_memory_files", o.map_memory_files,
                 "tmpfs: copy reads and writes with memcpy through a mapping of the file where "
                 "its pages exist (1, the default), or with pread/pwrite (0)");
  app.add_option("--name", o.name, "job name (accepted for fio compatibility)");
  app.add_option("--ioengine", ioengine, "accepted and ignored (always ringline's io_uring path)");
  app.add_flag("--group_reporting,--norandommap,--thread", flag_ignored,
               "accepted for fio compatibility (always grouped, no random map, threads)");
  app.add_option("--randrepeat", ioengine, "accepted and ignored");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    return absl::CancelledError(app.help());
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  if (direct != "1") {
    return absl::InvalidArgumentError("--direct must be 1: ringline-blockbench only does O_DIRECT");
  }
  if (rw == "randread")
    o.rw = RwMode::kRandRead;
  else if (rw == "randwrite")
    o.rw = RwMode::kRandWrite;
  else if (rw == "read")
    o.rw = RwMode::kRead;
  else if (rw == "write")
    o.rw = RwMode::kWrite;
  else
    o.rw = RwMode::kRandRw;
  auto b = ParseSize(bs);
  if (!b.ok()) return b.status();
  if (*b == 0 || *b > (1u << 30)) return absl::InvalidArgumentError("--bs must be 1 .. 1g");
  o.bs = static_cast<uint32_t>(*b);
  if (!runtime.empty()) {
    auto t = ParseSeconds(runtime);
    if (!t.ok()) return t.status();
    o.runtime_s = *t;
  }
  if (o.time_based && o.runtime_s <= 0) {
    return absl::InvalidArgumentError("--time_based needs --runtime");
  }
  if (!size.empty()) {
    auto s = ParseSize(size);
    if (!s.ok()) return s.status();
    o.size = *s;
  }
  if (!absl::SimpleAtoi(offload, &o.offload)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--offload=", offload,
                     " is not a number of requests: give --offload=N with N from 0 (none, the "
                     "default) to --iodepth"));
  }
  if (o.offload > o.iodepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("--offload=", o.offload, " is more than --iodepth=", o.iodepth,
                     ": at most --iodepth requests are in flight to hand to io-wq; give "
                     "--offload between 0 and ",
                     o.iodepth, " (or raise --iodepth)"));
  }
  o.json = output_format == "json";
  if (!cpus.empty()) {
    auto c = ParseCpuList(cpus);
    if (!c.ok()) return c.status();
    o.cpus = *c;
  }
  return o;
}

}  // namespace ringline::blockbench
