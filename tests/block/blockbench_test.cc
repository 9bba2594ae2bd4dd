// ringline-blockbench: option parsing (fio's spelling) and a short real run
// whose JSON report has the documented keys.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include "nlohmann/json.hpp"
#include "options.h"
#include "tests/cpu_outside_affinity.h"

namespace ringline::blockbench {
namespace {

TEST(BlockbenchOptionsTest, SizesTimesAndCpuLists) {
  EXPECT_EQ(*ParseSize("4k"), 4096u);
  EXPECT_EQ(*ParseSize("128K"), 131072u);
  EXPECT_EQ(*ParseSize("1m"), 1u << 20);
  EXPECT_EQ(*ParseSize("2GiB"), 2ull << 30);
  EXPECT_EQ(*ParseSize("512"), 512u);
  EXPECT_FALSE(ParseSize("4x").ok());
  EXPECT_FALSE(ParseSize("").ok());
  EXPECT_FALSE(ParseSize("99999999999999999999t").ok());
  EXPECT_DOUBLE_EQ(*ParseSeconds("5"), 5.0);
  EXPECT_DOUBLE_EQ(*ParseSeconds("5s"), 5.0);
  EXPECT_DOUBLE_EQ(*ParseSeconds("500ms"), 0.5);
  EXPECT_DOUBLE_EQ(*ParseSeconds("2m"), 120.0);
  EXPECT_FALSE(ParseSeconds("soon").ok());
  EXPECT_EQ(*ParseCpuList("0"), (std::vector<int>{0}));
  EXPECT_EQ(*ParseCpuList("0,2-4"), (std::vector<int>{0, 2, 3, 4}));
  EXPECT_FALSE(ParseCpuList("3-1").ok());
  EXPECT_FALSE(ParseCpuList("a").ok());
}

TEST(BlockbenchOptionsTest, FioSpelling) {
  const char* argv[] = {"ringline-blockbench",  "--name=x",     "--filename=/dev/shm/f",
                        "--rw=randwrite",       "--bs=8k",      "--iodepth=16",
                        "--runtime=3",          "--time_based", "--numjobs=2",
                        "--size=64m",           "--direct=1",   "--ioengine=io_uring",
                        "--output-format=json", "--cpus=0-1",   "--norandommap",
                        "--group_reporting"};
  auto o = ParseOptions(static_cast<int>(std::size(argv)), argv);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->filename, "/dev/shm/f");
  EXPECT_EQ(o->rw, RwMode::kRandWrite);
  EXPECT_EQ(o->bs, 8192u);
  EXPECT_EQ(o->iodepth, 16u);
  EXPECT_DOUBLE_EQ(o->runtime_s, 3.0);
  EXPECT_TRUE(o->time_based);
  EXPECT_EQ(o->numjobs, 2u);
  EXPECT_EQ(o->size, 64u << 20);
  EXPECT_TRUE(o->json);
  EXPECT_EQ(o->cpus, (std::vector<int>{0, 1}));

  const char* bad_rw[] = {"b", "--filename=f", "--rw=trim"};
  EXPECT_FALSE(ParseOptions(3, bad_rw).ok());
  const char* buffered[] = {"b", "--filename=f", "--direct=0"};
  auto st = ParseOptions(3, buffered);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("O_DIRECT"), std::string::npos);
  const char* no_file[] = {"b", "--rw=read"};
  EXPECT_FALSE(ParseOptions(2, no_file).ok());
  const char* tb_without_runtime[] = {"b", "--filename=f", "--time_based"};
  EXPECT_FALSE(ParseOptions(3, tb_without_runtime).ok());
}

// --offload: a number of requests from 0 to --iodepth; anything else is
// refused with a message naming the flag and what to give instead.
TEST(BlockbenchOptionsTest, OffloadIsValidated) {
  const char* ok[] = {"b", "--filename=f", "--iodepth=32", "--offload=24"};
  auto o = ParseOptions(4, ok);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->offload, 24u);
  const char* none[] = {"b", "--filename=f"};
  EXPECT_EQ(ParseOptions(2, none)->offload, 0u) << "off by default";
  const char* too_many[] = {"b", "--filename=f", "--iodepth=8", "--offload=9"};
  auto st = ParseOptions(4, too_many);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("--offload=9 is more than --iodepth=8"), std::string::npos)
      << st.status();
  EXPECT_NE(st.status().message().find("between 0 and 8"), std::string::npos) << st.status();
  const char* empty[] = {"b", "--filename=f", "--offload="};
  auto e = ParseOptions(3, empty);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("--offload"), std::string::npos) << e.status();
  for (const char* bad :
       {"--offload=abc", "--offload=-1", "--offload=1.5", "--offload=99999999999"}) {
    const char* argv[] = {"b", "--filename=f", "--iodepth=8", bad};
    auto r = ParseOptions(4, argv);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("is not a number of requests: give --offload=N"),
              std::string::npos)
        << bad << ": " << r.status();
  }
}

std::string DiskDir() {
  struct statfs fs;
  if (statfs("/var/tmp", &fs) == 0 && fs.f_type != TMPFS_MAGIC) return "/var/tmp";
  return ".";
}

// Runs blockbench on `file` with `args` and a JSON report, which it parses
// into *report; the file and the report are removed.
void RunForJsonReport(const std::string& file, const std::string& args, nlohmann::json* report) {
  const std::string out = file + ".json";
  const std::string cmd = std::string(BLOCKBENCH_PATH) + " --filename=" + file + " " + args +
                          " --output-format=json --output=" + out;
  const int rc = std::system(cmd.c_str());
  unlink(file.c_str());
  ASSERT_EQ(rc, 0) << cmd;
  std::ifstream in(out);
  ASSERT_TRUE(in.good()) << out;
  *report = nlohmann::json::parse(in);
  unlink(out.c_str());
}

// A 1 s randrw run on a file: the JSON report has the documented keys and
// plausible values.
TEST(BlockbenchRunTest, JsonReportHasTheDocumentedKeys) {
  nlohmann::json j;
  ASSERT_NO_FATAL_FAILURE(
      RunForJsonReport(DiskDir() + "/ringline_blockbench_test." + std::to_string(getpid()),
                       "--size=16m --rw=randrw --bs=4k --iodepth=8 --runtime=1 --time_based"
                       " --numjobs=1 --direct=1",
                       &j));
  for (const char* key :
       {"iops", "bw_bytes", "ios", "elapsed_s", "errors", "lat_ns", "read", "write", "cpu_user_s",
        "cpu_sys_s", "cpu_s_per_million_ios", "jobs", "options", "placement"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  for (const char* p : {"min", "mean", "max", "p50", "p90", "p99", "p99.9"}) {
    EXPECT_TRUE(j["lat_ns"].contains(p)) << p;
    EXPECT_TRUE(j["read"]["lat_ns"].contains(p)) << p;
  }
  EXPECT_GT(j["iops"].get<double>(), 0);
  EXPECT_GT(j["read"]["ios"].get<uint64_t>(), 0u);
  EXPECT_GT(j["write"]["ios"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["errors"].get<uint64_t>(), 0u);
  EXPECT_NEAR(j["bw_bytes"].get<double>(), j["iops"].get<double>() * 4096, 1.0);
  EXPECT_GE(j["elapsed_s"].get<double>(), 1.0);
  EXPECT_LE(j["lat_ns"]["p50"].get<uint64_t>(), j["lat_ns"]["p99"].get<uint64_t>());
  EXPECT_LE(j["lat_ns"]["p99"].get<uint64_t>(), j["lat_ns"]["p99.9"].get<uint64_t>());
  EXPECT_GT(j["cpu_user_s"].get<double>() + j["cpu_sys_s"].get<double>(), 0);
  EXPECT_GT(j["cpu_s_per_million_ios"].get<double>(), 0);
  EXPECT_EQ(j["jobs"].size(), 1u);
  // The job ran where the placement put it; a target with a completion
  // preference gets its worker on one of those CPUs (one job, no --cpus),
  // unless the CPUs allowed exclude them (then a warning says so).
  ASSERT_EQ(j["placement"]["worker_cpus"].size(), 1u);
  EXPECT_EQ(j["jobs"][0]["cpu"], j["placement"]["worker_cpus"][0]);
  const auto local = j["jobs"][0]["completion_cpus"].get<std::vector<int>>();
  if (!local.empty() && j["placement"]["warnings"].empty()) {
    EXPECT_NE(std::find(local.begin(), local.end(), j["jobs"][0]["cpu"].get<int>()), local.end())
        << j["placement"].dump();
  }
}

// --offload on tmpfs: the report says how many requests went to io-wq, under
// which cap, and how much CPU the worker thread used; the job runs clean.
TEST(BlockbenchRunTest, OffloadIsReported) {
  nlohmann::json j;
  ASSERT_NO_FATAL_FAILURE(
      RunForJsonReport("/dev/shm/ringline_blockbench_offload." + std::to_string(getpid()),
                       "--size=16m --rw=randrw --bs=4k --iodepth=8 --offload=4 --runtime=0.5"
                       " --time_based",
                       &j));
  EXPECT_EQ(j["options"]["offload"], 4);
  EXPECT_EQ(j["errors"].get<uint64_t>(), 0u);
  const auto& job = j["jobs"][0];
  EXPECT_EQ(job["offload"], 4) << "tmpfs takes the offload";
  EXPECT_GE(job["offload_threads"].get<uint32_t>(), 1u);
  EXPECT_GT(job["offloaded_ios"].get<uint64_t>(), 0u);
  EXPECT_LT(job["offloaded_ios"].get<uint64_t>(), job["ios"].get<uint64_t>());
  EXPECT_GT(job["worker_cpu_s"].get<double>(), 0);
  EXPECT_LE(job["worker_cpu_s"].get<double>(),
            j["cpu_user_s"].get<double>() + j["cpu_sys_s"].get<double>() + 0.01);
}

// --cpus outside the process's affinity: exit 2 before touching the file,
// with blockserve's wording (block::CheckCpusAllowed).
TEST(BlockbenchRunTest, CpusOutsideTheAffinityAreRefused) {
  const int outside = CpuOutsideAffinity();
  if (outside < 0) GTEST_SKIP() << "every CPU is allowed: no CPU outside the affinity to try";
  const std::string file = DiskDir() + "/ringline_blockbench_cpus." + std::to_string(getpid());
  const std::string cmd = std::string(BLOCKBENCH_PATH) + " --filename=" + file +
                          " --size=1m --rw=read --runtime=0.1 --cpus=0," + std::to_string(outside) +
                          " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  const int st = pclose(p);
  ASSERT_TRUE(WIFEXITED(st)) << out;
  EXPECT_EQ(WEXITSTATUS(st), 2) << out;
  EXPECT_NE(out.find("--cpus: CPU " + std::to_string(outside) +
                     " is not among the CPUs this process may run on"),
            std::string::npos)
      << out;
  EXPECT_NE(access(file.c_str(), F_OK), 0) << "the file was created before the check";
  unlink(file.c_str());
}

}  // namespace
}  // namespace ringline::blockbench
