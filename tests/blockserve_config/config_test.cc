// blockserve configuration: flags, TOML and validation give errors that name
// the flag or field, the value and the fix.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "blockserve/server_config.h"
#include "ringline/block/placement.h"
#include "tests/cpu_outside_affinity.h"

namespace blockserve {
namespace {

std::string WriteTemp(const std::string& text) {
  char path[] = "/tmp/blockserve-config-XXXXXX.toml";
  int fd = mkstemps(path, 5);
  EXPECT_GE(fd, 0);
  FILE* f = fdopen(fd, "w");
  fputs(text.c_str(), f);
  fclose(f);
  return path;
}

TEST(ConfigTest, ExportSpecs) {
  auto e = ParseExportSpec("disk=/var/lib/disk.img,ro");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->name, "disk");
  EXPECT_EQ(e->path, "/var/lib/disk.img");
  EXPECT_TRUE(e->read_only);
  auto rw = ParseExportSpec("a=/x,y");
  EXPECT_FALSE(rw.ok());
  EXPECT_NE(rw.status().message().find("unknown option 'y'"), std::string::npos);
  auto bad = ParseExportSpec("noequals");
  EXPECT_NE(bad.status().message().find("expected NAME=PATH[,ro]"), std::string::npos);
}

TEST(ConfigTest, Sizes) {
  EXPECT_EQ(*ParseSize("1G"), 1ull << 30);
  EXPECT_EQ(*ParseSize("512M"), 512ull << 20);
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_NE(ParseSize("12Q").status().message().find("unknown size suffix 'Q'"), std::string::npos);
}

TEST(ConfigTest, TomlFileFillsEveryField) {
  const std::string path = WriteTemp(R"(
listen = "::1"
port = 10900
workers = 1
metrics_port = 9109
log_level = "debug"
default_size = "64M"
[tls]
mode = "require"
cert = "/c.pem"
key = "/k.pem"
[[export]]
name = "a"
path = "/a.img"
read_only = true
queue_depth = 32
cache = "writeback"
[[export]]
name = "b"
path = "/b.img"
)");
  ServerConfig c;
  ASSERT_TRUE(LoadConfigFile(path, &c).ok());
  EXPECT_EQ(c.listen, "::1");
  EXPECT_EQ(c.port, 10900);
  EXPECT_EQ(c.workers, 1u);
  EXPECT_EQ(c.metrics_port, 9109);
  EXPECT_EQ(c.default_size, 64ull << 20);
  EXPECT_EQ(c.tls, TlsMode::kRequire);
  ASSERT_EQ(c.exports.size(), 2u);
  EXPECT_TRUE(c.exports[0].read_only);
  EXPECT_EQ(c.exports[0].queue_depth, 32u);
  EXPECT_EQ(c.exports[0].cache, ringline::block::CacheMode::kWriteback);
  EXPECT_EQ(c.exports[1].cache, ringline::block::CacheMode::kAuto) << "auto is the default";
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  std::remove(path.c_str());
}

TEST(ConfigTest, TomlErrorsNameTheKey) {
  ServerConfig c;
  std::string p = WriteTemp("prot = 1\n");
  EXPECT_NE(LoadConfigFile(p, &c).message().find("unknown key 'prot'"), std::string::npos);
  p = WriteTemp("port = 70000\n");
  EXPECT_NE(LoadConfigFile(p, &c).message().find("'port' must be an integer in [0, 65535]"),
            std::string::npos);
  p = WriteTemp("[tls]\nmode = \"maybe\"\n");
  EXPECT_NE(LoadConfigFile(p, &c).message().find("'tls.mode' must be one of"), std::string::npos);
  p = WriteTemp("[[export]]\nname = \"x\"\n");
  EXPECT_NE(LoadConfigFile(p, &c).message().find("export[0].path"), std::string::npos);
  p = WriteTemp("port = \n");
  EXPECT_NE(LoadConfigFile(p, &c).message().find(":1:"), std::string::npos) << "line number";
}

TEST(ConfigTest, FaultRulesFillTheExportOrNameTheBuildOption) {
  namespace blk = ringline::block;
  ServerConfig c;
  const std::string p = WriteTemp(
      "[[export]]\nname = \"f\"\npath = \"/tmp/f.img\"\nfault_seed = 9\n"
      "[[export.fault]]\nops = [\"flush\"]\nskip = 1\nlimit = 2\nerror = \"EIO\"\n"
      "when = \"after\"\n"
      "[[export.fault]]\nops = [\"write\", \"trim\"]\noffset = \"1M\"\nlength = 4096\n"
      "probability = 0.25\nerror = \"ENOSPC\"\nlatency_ms = 2.5\n");
  const absl::Status st = LoadConfigFile(p, &c);
  if (!FaultInjectionBuiltIn()) {
    EXPECT_NE(st.message().find("export[0].fault: fault injection is not built into this "
                                "blockserve: configure it with -DRINGLINE_FAULT_INJECTION=ON"),
              std::string::npos)
        << st;
    return;
  }
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(c.exports.size(), 1u);
  const ExportConfig& e = c.exports[0];
  EXPECT_EQ(e.fault_seed, 9u);
  ASSERT_EQ(e.faults.size(), 2u);
  EXPECT_EQ(e.faults[0].ops, blk::OpBit(blk::OpKind::kFlush));
  EXPECT_EQ(e.faults[0].skip, 1u);
  EXPECT_EQ(e.faults[0].limit, 2u);
  EXPECT_EQ(e.faults[0].error, EIO);
  EXPECT_EQ(e.faults[0].timing, blk::FaultTiming::kAfter);
  EXPECT_EQ(e.faults[1].ops, blk::OpBit(blk::OpKind::kWrite) | blk::OpBit(blk::OpKind::kDiscard));
  EXPECT_EQ(e.faults[1].offset, 1u << 20);
  EXPECT_EQ(e.faults[1].length, 4096u);
  EXPECT_DOUBLE_EQ(e.faults[1].probability, 0.25);
  EXPECT_EQ(e.faults[1].error, ENOSPC);
  EXPECT_EQ(e.faults[1].timing, blk::FaultTiming::kInstead);
  EXPECT_EQ(e.faults[1].latency, std::chrono::microseconds(2500));
}

TEST(ConfigTest, BadCacheModeNamesTheField) {
  const std::string p =
      WriteTemp("[[export]]\nname = \"a\"\npath = \"/a.img\"\ncache = \"none\"\n");
  ServerConfig c;
  const absl::Status st = LoadConfigFile(p, &c);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(
      st.message().find("'export[0].cache' must be one of \"direct\", \"writeback\", \"auto\""),
      std::string::npos)
      << st;
  std::remove(p.c_str());
}

TEST(ConfigTest, ValidateNamesFieldAndFix) {
  ServerConfig c;
  c.listen = "not-an-address";
  EXPECT_NE(c.Validate().message().find("listen: 'not-an-address' is not an IPv4 or IPv6"),
            std::string::npos);
  c = ServerConfig{};
  c.tls = TlsMode::kOn;
  EXPECT_NE(c.Validate().message().find("--tls=on needs --tls-cert and --tls-key"),
            std::string::npos);
  c = ServerConfig{};
  c.exports = {{.name = "a", .path = "/a"}, {.name = "a", .path = "/b"}};
  EXPECT_NE(c.Validate().message().find("'a' is exported twice"), std::string::npos);
  c = ServerConfig{};
  c.metrics_port = c.port;
  EXPECT_NE(c.Validate().message().find("metrics_port"), std::string::npos);
}

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice),
// for tests that get as far as listening: fixed ports collide with whatever
// else runs on the machine.
uint16_t FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

int RunBlockserve(const std::string& args, std::string* output) {
  const std::string cmd = std::string(BLOCKSERVE_BIN) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  char buf[512];
  while (fgets(buf, sizeof buf, p)) *output += buf;
  const int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(CliTest, BadFlagsExitTwoNamingTheFlag) {
  std::string out;
  EXPECT_EQ(RunBlockserve("--port 0", &out), 2);
  EXPECT_NE(out.find("--port"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunBlockserve("--tls=sometimes", &out), 2);
  EXPECT_NE(out.find("--tls"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunBlockserve("--export justaname", &out), 2);
  EXPECT_NE(out.find("expected NAME=PATH"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunBlockserve("--cache=none", &out), 2);
  EXPECT_NE(out.find("--cache"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunBlockserve("--no-such-flag", &out), 2);
  out.clear();
  EXPECT_EQ(RunBlockserve("--help", &out), 0);
  EXPECT_NE(out.find("--export"), std::string::npos);
}

TEST(CliTest, MissingExportFileFailsNamingTheExport) {
  std::string out;
  EXPECT_EQ(
      RunBlockserve("--port " + std::to_string(FreePort()) + " --export gone=/nonexistent/disk.img",
                    &out),
      1);
  EXPECT_NE(out.find("export 'gone' (/nonexistent/disk.img)"), std::string::npos) << out;
}

// ---- operating it as a service: sockets, limits, timeouts, TLS-PSK -------------

TEST(ServiceConfigTest, TomlKeysForEveryServiceFlag) {
  const std::string path = WriteTemp(R"(
unix = "/run/bs.sock"
pid_file = "/run/bs.pid"
handshake_timeout = 3
keepalive = false
keepalive_idle = 30
[tls]
mode = "require"
psk = "/etc/keys.psk"
)");
  ServerConfig c;
  ASSERT_TRUE(LoadConfigFile(path, &c).ok());
  EXPECT_EQ(c.unix_socket, "/run/bs.sock");
  EXPECT_FALSE(c.ServesTcp()) << "a Unix socket alone: no TCP";
  EXPECT_EQ(c.pid_file, "/run/bs.pid");
  EXPECT_EQ(c.handshake_timeout_s, 3u);
  EXPECT_FALSE(c.keepalive);
  EXPECT_EQ(c.keepalive_idle_s, 30u);
  EXPECT_EQ(c.tls_psk, "/etc/keys.psk");
  EXPECT_TRUE(c.Validate().ok()) << c.Validate() << " (PSK alone is enough for TLS)";
  std::remove(path.c_str());
}

TEST(ServiceConfigTest, TcpStaysOnWhenAskedForAlongsideUnix) {
  ServerConfig c;
  EXPECT_TRUE(c.ServesTcp());
  std::string p = WriteTemp("unix = \"/run/bs.sock\"\nport = 10900\n");
  ASSERT_TRUE(LoadConfigFile(p, &c).ok());
  EXPECT_TRUE(c.ServesTcp());
  c = ServerConfig{};
  p = WriteTemp("unix = \"/run/bs.sock\"\ntcp = true\n");
  ASSERT_TRUE(LoadConfigFile(p, &c).ok());
  EXPECT_TRUE(c.ServesTcp());
  c = ServerConfig{};
  p = WriteTemp("tcp = false\n");
  ASSERT_TRUE(LoadConfigFile(p, &c).ok());
  EXPECT_NE(c.Validate().message().find("tcp: false, and no Unix socket"), std::string::npos)
      << c.Validate();
}

TEST(ServiceConfigTest, BadValuesNameTheKey) {
  ServerConfig c;
  std::string p = WriteTemp("handshake_timeout = -1\n");
  EXPECT_NE(LoadConfigFile(p, &c).message().find("'handshake_timeout' must be an integer"),
            std::string::npos);
  p = WriteTemp("keepalive = \"yes\"\n");
  EXPECT_NE(LoadConfigFile(p, &c).message().find("'keepalive' must be true or false"),
            std::string::npos);
  p = WriteTemp("keepalive_idle = 40000\n");
  EXPECT_NE(LoadConfigFile(p, &c).message().find("'keepalive_idle' must be an integer"),
            std::string::npos);
  p = WriteTemp("unix = 5\n");
  EXPECT_NE(LoadConfigFile(p, &c).message().find("'unix' must be a string"), std::string::npos);
  p = WriteTemp("[tls]\npsk = true\n");
  EXPECT_NE(LoadConfigFile(p, &c).message().find("'tls.psk' must be a string"), std::string::npos);
  c = ServerConfig{};
  c.keepalive_idle_s = 0;
  EXPECT_NE(c.Validate().message().find("keepalive_idle"), std::string::npos);
  c = ServerConfig{};
  c.handshake_timeout_s = 7200;
  EXPECT_NE(c.Validate().message().find("handshake_timeout"), std::string::npos);
  c = ServerConfig{};
  c.unix_socket = std::string(200, 'x');
  EXPECT_NE(c.Validate().message().find("unix: "), std::string::npos);
}

TEST(ServiceCliTest, FlagsAndTheirErrors) {
  std::string out;
  EXPECT_EQ(RunBlockserve("--version", &out), 0);
  EXPECT_EQ(out, std::string("blockserve ") + BLOCKSERVE_VERSION + "\n");
  out.clear();
  EXPECT_EQ(RunBlockserve("--handshake-timeout 5000", &out), 2);
  EXPECT_NE(out.find("--handshake-timeout"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunBlockserve("--keepalive maybe", &out), 2);
  EXPECT_NE(out.find("--keepalive"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunBlockserve("--keepalive-idle 0", &out), 2);
  EXPECT_NE(out.find("--keepalive-idle"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunBlockserve("--tls-psk /nonexistent/keys.psk", &out), 2);
  EXPECT_NE(out.find("--tls-psk"), std::string::npos) << out;
  // A malformed key file names the file and line.
  const std::string bad = WriteTemp("alice:00112233\nbob:xyz\n");
  out.clear();
  EXPECT_EQ(RunBlockserve(
                "--port " + std::to_string(FreePort()) + " --tls require --tls-psk " + bad, &out),
            1);
  EXPECT_NE(out.find(bad + ":2: the key is not an even number of hex digits"), std::string::npos)
      << out;
  std::remove(bad.c_str());
}

// ---- fairness: per-connection budgets, buffer memory, io-timeout ----------------

TEST(FairnessConfigTest, DefaultsAdmitANormalClientAndOneRequestUpToTheLimit) {
  const ServerConfig c;
  // Twice what fio QD128 x 128k (16 MiB) or nbdcopy (64 x 256k) keep in
  // flight: a request counts until its reply's send completes, which the
  // client may see before the server reaps it.
  EXPECT_EQ(c.max_in_flight, 256u);
  EXPECT_EQ(c.max_in_flight_bytes, 64u << 20);
  EXPECT_EQ(c.buffer_memory, uint64_t{1} << 30);
  EXPECT_EQ(c.io_timeout_s, 30u);
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
}

TEST(FairnessConfigTest, TomlKeysTakeSizesAsTextOrBytes) {
  const std::string p = WriteTemp(
      "max_in_flight = 16\nmax_in_flight_bytes = \"8M\"\nbuffer_memory = 268435456\n"
      "io_timeout = 0\n");
  ServerConfig c;
  ASSERT_TRUE(LoadConfigFile(p, &c).ok());
  EXPECT_EQ(c.max_in_flight, 16u);
  EXPECT_EQ(c.max_in_flight_bytes, 8u << 20);
  EXPECT_EQ(c.buffer_memory, 256u << 20);
  EXPECT_EQ(c.io_timeout_s, 0u);
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  std::remove(p.c_str());
}

TEST(FairnessConfigTest, BadValuesNameTheKeyAndTheRange) {
  ServerConfig c;
  std::string p = WriteTemp("max_in_flight = 2000\n");
  EXPECT_NE(LoadConfigFile(p, &c).message().find("'max_in_flight' must be an integer"),
            std::string::npos);
  p = WriteTemp("buffer_memory = \"a lot\"\n");
  EXPECT_NE(LoadConfigFile(p, &c).message().find("'buffer_memory'"), std::string::npos);
  p = WriteTemp("io_timeout = 4000\n");
  EXPECT_NE(LoadConfigFile(p, &c).message().find("'io_timeout' must be an integer"),
            std::string::npos);
  c = ServerConfig{};
  c.max_in_flight = 0;
  EXPECT_NE(c.Validate().message().find("max_in_flight: 0 is out of range: use 1..1024"),
            std::string::npos)
      << c.Validate();
  c = ServerConfig{};
  c.max_in_flight_bytes = 4096;
  EXPECT_NE(c.Validate().message().find("max_in_flight_bytes"), std::string::npos);
  c = ServerConfig{};
  c.buffer_memory = uint64_t{2} << 40;
  EXPECT_NE(c.Validate().message().find("buffer_memory"), std::string::npos);
  c = ServerConfig{};
  c.io_timeout_s = 3601;
  EXPECT_NE(c.Validate().message().find("io_timeout"), std::string::npos);
  std::string out;
  EXPECT_EQ(RunBlockserve("--max-in-flight-bytes 12Q", &out), 2);
  EXPECT_NE(out.find("--max-in-flight-bytes"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunBlockserve("--io-timeout -3", &out), 2);
  EXPECT_NE(out.find("--io-timeout"), std::string::npos) << out;
}

// ---- --batch-window-us: completion batching ------------------------------------

TEST(BatchWindowConfigTest, DefaultTomlFlagAndBadValues) {
  ServerConfig c;
  EXPECT_EQ(c.batch_window_us, 50u);
  std::string p = WriteTemp("batch_window_us = 0\n");
  ASSERT_TRUE(LoadConfigFile(p, &c).ok());
  EXPECT_EQ(c.batch_window_us, 0u) << "0 turns batching off";
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  std::remove(p.c_str());
  p = WriteTemp("batch_window_us = 20000\n");
  EXPECT_NE(
      LoadConfigFile(p, &c).message().find("'batch_window_us' must be an integer in [0, 10000]"),
      std::string::npos);
  std::remove(p.c_str());
  c = ServerConfig{};
  c.batch_window_us = 10001;
  EXPECT_NE(c.Validate().message().find("batch_window_us: 10001 us is out of range"),
            std::string::npos)
      << c.Validate();
  std::string out;
  EXPECT_EQ(RunBlockserve("--batch-window-us 20000", &out), 2);
  EXPECT_NE(out.find("--batch-window-us"), std::string::npos) << out;
}

// ---- --cpus: the CPUs the workers may run on -----------------------------------

TEST(CpusConfigTest, FlagAndTomlTakeACpuList) {
  auto v = ParseCpus("0,2-3", "--cpus");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, (std::vector<int>{0, 2, 3}));
  for (const char* bad : {"", "x", "3-1", "-1", "0-70000"}) {
    auto b = ParseCpus(bad, "--cpus");
    ASSERT_FALSE(b.ok()) << bad;
    EXPECT_NE(b.status().message().find("--cpus: '" + std::string(bad) +
                                        "' is not a list of CPUs: use e.g. 1, 0,2 or 0-3"),
              std::string::npos)
        << b.status();
  }
  ServerConfig c;
  EXPECT_TRUE(c.cpus.empty()) << "default: every CPU the process may use";
  std::string p = WriteTemp("cpus = \"1,3-4\"\n");
  ASSERT_TRUE(LoadConfigFile(p, &c).ok());
  EXPECT_EQ(c.cpus, (std::vector<int>{1, 3, 4}));
  std::remove(p.c_str());
  c = ServerConfig{};
  p = WriteTemp("cpus = [2, 0]\n");
  ASSERT_TRUE(LoadConfigFile(p, &c).ok());
  EXPECT_EQ(c.cpus, (std::vector<int>{0, 2}));
  std::remove(p.c_str());
  for (const char* bad : {"cpus = \"zero\"\n", "cpus = 1\n", "cpus = [-1]\n", "cpus = []\n"}) {
    p = WriteTemp(bad);
    const absl::Status st = LoadConfigFile(p, &c);
    EXPECT_NE(st.message().find("cpus"), std::string::npos) << bad << ": " << st;
    std::remove(p.c_str());
  }
}

TEST(CpusConfigTest, CpusOutsideTheAffinityAreAConfigError) {
  using ringline::block::CheckCpusAllowed;
  EXPECT_TRUE(CheckCpusAllowed({1}, {0, 1}, "cpus", "--cpus LIST").ok());
  const absl::Status one = CheckCpusAllowed({1, 5}, {0, 1, 2, 3}, "cpus", "--cpus LIST");
  EXPECT_EQ(one.message(),
            "cpus: CPU 5 is not among the CPUs this process may run on (0-3): choose from those "
            "(--cpus 0-3), or allow more (taskset, the cgroup's cpuset)");
  const absl::Status two = CheckCpusAllowed({4, 6, 7}, {0, 1}, "cpus", "--cpus LIST");
  EXPECT_NE(two.message().find("CPUs 4,6-7 are not among"), std::string::npos) << two;
  // Validate() checks against this process's affinity.
  const int outside = CpuOutsideAffinity();
  if (outside < 0) GTEST_SKIP() << "every CPU is allowed: no CPU outside the affinity to try";
  ServerConfig c;
  c.cpus = {outside};
  EXPECT_NE(c.Validate().message().find("cpus: CPU " + std::to_string(outside) + " is not among"),
            std::string::npos)
      << c.Validate();
  std::string out;
  EXPECT_EQ(RunBlockserve("--cpus " + std::to_string(outside), &out), 2);
  EXPECT_NE(out.find("cpus: CPU " + std::to_string(outside) + " is not among"), std::string::npos)
      << out;
  out.clear();
  EXPECT_EQ(RunBlockserve("--cpus 1-x", &out), 2);
  EXPECT_NE(out.find("--cpus: '1-x' is not a list of CPUs"), std::string::npos) << out;
}

}  // namespace
}  // namespace blockserve
