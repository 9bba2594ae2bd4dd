// TLS 1.3 and 1.2 over the connection's own recv/send paths, against Debian's
// `openssl s_client` and `openssl s_server` as real peers. Certificates are made
// by the test with `openssl req`/`openssl x509`. Loopback only; every external
// process is bounded by `timeout` and killed by pid.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "net/src/net_worker.h"
#include "net_test_util.h"

namespace ringline::net {
namespace {

using namespace std::chrono_literals;
using testing::Bytes;
using testing::NewWorker;
using testing::ParseLine;

std::string Shell(const std::string& cmd, int* rc = nullptr) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = ::pclose(p);
  if (rc) *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Certificates for one test run: a CA, a server certificate for localhost and
// 127.0.0.1 signed by it, a client certificate, and an unrelated CA.
class Certs {
 public:
  static Certs* Get() {
    static Certs* c = [] {
      auto* c = new Certs();
      c->Make();
      return c;
    }();
    return c;
  }
  bool ok() const { return ok_; }
  const std::string& why() const { return why_; }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  const std::string& dir() const { return dir_; }

 private:
  void Make() {
    int rc = 0;
    Shell("command -v openssl >/dev/null 2>&1", &rc);
    if (rc != 0) {
      why_ = "the openssl command is not installed";
      return;
    }
    char tmpl[] = "/tmp/ringline-tls-XXXXXX";
    if (!::mkdtemp(tmpl)) {
      why_ = "mkdtemp failed";
      return;
    }
    dir_ = tmpl;
    static std::string to_remove;
    to_remove = dir_;
    std::atexit([] { Shell("rm -rf '" + to_remove + "'"); });
    const std::string d = dir_;
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    std::ofstream(d + "/server.ext") << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
    std::ofstream(d + "/client.ext") << "extendedKeyUsage=clientAuth\n";
    const std::string script =
        "set -e; cd " + d + "; exec 2>log.txt; " + "openssl req -x509 " + ec +
        " -keyout ca.key -out ca.pem -days 2 -subj /CN=ringline-test-ca; " + "openssl req -x509 " +
        ec + " -keyout other.key -out other.pem -days 2 -subj /CN=other-ca; " +
        "openssl req -new " + ec + " -keyout server.key -out server.csr -subj /CN=localhost; " +
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem "
        "-days 2 -extfile server.ext; " +
        "openssl req -new " + ec +
        " -keyout client.key -out client.csr -subj /CN=ringline-client; " +
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem "
        "-days 2 -extfile client.ext";
    Shell("sh -c '" + script + "'", &rc);
    if (rc != 0) {
      why_ = "generating certificates failed: " + ReadFile(d + "/log.txt");
      return;
    }
    ok_ = true;
  }
  bool ok_ = false;
  std::string why_;
  std::string dir_;
};

#define REQUIRE_CERTS()                                          \
  do {                                                           \
    if (!Certs::Get()->ok()) {                                   \
      std::printf("SKIPPED: %s\n", Certs::Get()->why().c_str()); \
      GTEST_SKIP() << Certs::Get()->why();                       \
    }                                                            \
  } while (0)

std::shared_ptr<TlsServerContext> ServerCtx(TlsVersion min, TlsVersion max,
                                            bool require_client_cert = false) {
  TlsServerOptions o;
  o.cert_file = Certs::Get()->Path("server.pem");
  o.key_file = Certs::Get()->Path("server.key");
  o.min_version = min;
  o.max_version = max;
  if (require_client_cert) {
    o.client_ca_file = Certs::Get()->Path("ca.pem");
    o.require_client_cert = true;
  }
  auto c = TlsServerContext::Create(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : nullptr;
}

std::shared_ptr<TlsClientContext> ClientCtx(const std::string& ca,
                                            TlsVersion min = TlsVersion::kTls12,
                                            TlsVersion max = TlsVersion::kTls13,
                                            bool with_cert = false) {
  TlsClientOptions o;
  o.ca_file = Certs::Get()->Path(ca);
  o.min_version = min;
  o.max_version = max;
  if (with_cert) {
    o.cert_file = Certs::Get()->Path("client.pem");
    o.key_file = Certs::Get()->Path("client.key");
  }
  auto c = TlsClientContext::Create(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : nullptr;
}

// Runs the worker until `done` (set by another thread) or `limit`.
void RunUntil(Worker& w, std::atomic<bool>& done, std::chrono::seconds limit) {
  auto r = w.BlockOn(Timeout(limit, [](std::atomic<bool>& done) -> Task<> {
    while (!done) co_await Sleep(5ms);
  }(done)));
  EXPECT_TRUE(r && *r) << "timed out";
}

NetMetrics& Metrics() { return detail::NetWorker::Get().metrics(); }

// A TLS echo server on the current worker: one line in, "echo: <line>" out,
// then a graceful close (close_notify). Records what it saw.
struct ServerLog {
  std::string version;
  std::string client_subject;
  int handled = 0;
};

Task<> ServeTls(Listener& l, std::shared_ptr<TlsServerContext> ctx, ServerLog& log, int conns) {
  for (int i = 0; i < conns; ++i) {
    auto c = co_await l.Accept();
    if (!c) co_return;
    IoResult hs = co_await c->StartTls(ctx);
    if (!hs.ok()) continue;  // counted and logged by the connection
    log.version = c->tls_version();
    log.client_subject = c->peer_certificate_subject();
    auto line = co_await c->recv(ParseLine);
    if (line) {
      co_await c->send("echo: " + *line + "\n");
      ++log.handled;
    }
    co_await c->close();
  }
}

void ServerAgainstSClient(const char* version_flag, TlsVersion v, const char* expect) {
  auto w = NewWorker();
  ASSERT_NE(w, nullptr);
  auto l = Listener::Bind(SocketAddress::Loopback4(0));
  ASSERT_TRUE(l.ok());
  const uint16_t port = l->local_address().port();
  ServerLog log;
  auto server = Spawn(ServeTls(*l, ServerCtx(v, v), log, 1));
  std::atomic<bool> done{false};
  std::string out, msgs;
  int rc = -1;
  std::thread client([&] {
    const std::string msgfile = Certs::Get()->Path(std::string("smsg") + version_flag + ".txt");
    out = Shell("printf 'hello over tls\\n' | timeout 20 openssl s_client -connect 127.0.0.1:" +
                    std::to_string(port) + " -CAfile " + Certs::Get()->Path("ca.pem") +
                    " -verify_return_error -servername localhost " + version_flag +
                    " -quiet -msg -msgfile " + msgfile + " 2>/dev/null",
                &rc);
    msgs = ReadFile(msgfile);
    done = true;
  });
  RunUntil(*w, done, 30s);
  client.join();
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out, "echo: hello over tls\n");
  EXPECT_EQ(log.version, expect);
  EXPECT_EQ(log.handled, 1);
  EXPECT_NE(
      msgs.find("<<< " + std::string(expect == std::string("TLSv1.3") ? "TLS 1.3" : "TLS 1.2") +
                ", Alert [length 0002], warning close_notify"),
      std::string::npos)
      << "s_client saw no close_notify from us:\n"
      << msgs;
  EXPECT_EQ(Metrics().tls_handshakes.Get(), 1u);
  EXPECT_EQ(Metrics().tls_failures.Get(), 0u);
}

TEST(TlsTest, ServerTls13AgainstOpensslSClient) {
  REQUIRE_CERTS();
  ServerAgainstSClient("-tls1_3", TlsVersion::kTls13, "TLSv1.3");
}

TEST(TlsTest, ServerTls12AgainstOpensslSClient) {
  REQUIRE_CERTS();
  ServerAgainstSClient("-tls1_2", TlsVersion::kTls12, "TLSv1.2");
}

// A PSK-only server (no certificate) against `openssl s_client -psk`: TLS 1.3
// external PSK and TLS 1.2 PSK suites; a wrong key fails the handshake.
void PskServerAgainstSClient(const char* version_flag, bool right_key, const char* expect) {
  const std::string key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  const std::string wrong = "ff112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  const std::string keys = Certs::Get()->Path("keys.psk");
  std::ofstream(keys) << "bob:0011\nalice:" << key << "\n";
  TlsServerOptions o;
  o.psk_file = keys;
  auto ctx = TlsServerContext::Create(o);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  EXPECT_EQ((*ctx)->psk_identities(), 2u);
  auto w = NewWorker();
  ASSERT_NE(w, nullptr);
  auto l = Listener::Bind(SocketAddress::Loopback4(0));
  ASSERT_TRUE(l.ok());
  const uint16_t port = l->local_address().port();
  ServerLog log;
  auto server = Spawn(ServeTls(*l, *ctx, log, 1));
  std::atomic<bool> done{false};
  std::string out;
  int rc = -1;
  std::thread client([&] {
    out = Shell("printf 'hello over psk\\n' | timeout 20 openssl s_client -connect 127.0.0.1:" +
                    std::to_string(port) + " " + version_flag + " -psk_identity alice -psk " +
                    (right_key ? key : wrong) + " -quiet 2>/dev/null",
                &rc);
    done = true;
  });
  RunUntil(*w, done, 30s);
  client.join();
  if (right_key) {
    EXPECT_EQ(out, "echo: hello over psk\n");
    EXPECT_EQ(log.version, expect);
    EXPECT_EQ(Metrics().tls_handshakes.Get(), 1u);
  } else {
    EXPECT_EQ(out, "");
    EXPECT_EQ(log.handled, 0);
    EXPECT_EQ(Metrics().tls_failures.Get(), 1u);
  }
}

TEST(TlsPskTest, Tls13ExternalPsk) {
  REQUIRE_CERTS();
  PskServerAgainstSClient("-tls1_3", true, "TLSv1.3");
}
TEST(TlsPskTest, Tls12PskSuite) {
  REQUIRE_CERTS();
  PskServerAgainstSClient("-tls1_2", true, "TLSv1.2");
}
TEST(TlsPskTest, Tls13WrongKeyFails) {
  REQUIRE_CERTS();
  PskServerAgainstSClient("-tls1_3", false, "");
}
TEST(TlsPskTest, Tls12WrongKeyFails) {
  REQUIRE_CERTS();
  PskServerAgainstSClient("-tls1_2", false, "");
}

TEST(TlsPskTest, KeyFileErrorsNameFileAndLine) {
  REQUIRE_CERTS();
  const std::string keys = Certs::Get()->Path("bad.psk");
  for (const auto& [text, why] : std::vector<std::pair<std::string, std::string>>{
           {"alice:0011\n\nbob:001\n", ":3: the key is not an even number of hex digits"},
           {"alice 0011\n", ":1: no ':' between identity and key"},
           {":0011\n", ":1: empty identity"},
           {"a:00\na:11\n", ":2: identity 'a' appears twice"},
           {"\n", ": no keys in it"}}) {
    std::ofstream(keys) << text;
    TlsServerOptions o;
    o.psk_file = keys;
    auto ctx = TlsServerContext::Create(o);
    ASSERT_FALSE(ctx.ok()) << text;
    EXPECT_NE(ctx.status().message().find(keys + why), std::string_view::npos) << ctx.status();
  }
  TlsServerOptions none;
  EXPECT_FALSE(TlsServerContext::Create(none).ok()) << "neither a certificate nor keys";
}

// `openssl s_server -rev` answers every line with the line reversed.
class SServer {
 public:
  SServer(const std::string& extra) {
    port_ = testing::FreePort();
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return;
    msgfile_ = Certs::Get()->Path("server-msgs-" + std::to_string(port_) + ".txt");
    const std::string cmd =
        "exec timeout 30 openssl s_server -accept 127.0.0.1:" + std::to_string(port_) + " -cert " +
        Certs::Get()->Path("server.pem") + " -key " + Certs::Get()->Path("server.key") +
        " -rev -msg " + extra + " >" + msgfile_ + " 2>&1; ";
    // s_server prints ACCEPT once it listens; a wrapper echoes it to our pipe.
    const std::string wrapper =
        "(timeout 30 tail -F " + msgfile_ + " 2>/dev/null | grep -m1 ACCEPT >&3) & " + cmd;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      ::dup2(out[1], 3);
      ::execl("/bin/sh", "sh", "-c", wrapper.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(out[1]);
    pollfd pfd{out[0], POLLIN, 0};
    char buf[64];
    ready_ = ::poll(&pfd, 1, 10000) == 1 && ::read(out[0], buf, sizeof buf) > 0;
    ::close(out[0]);
  }
  ~SServer() {
    if (pid_ > 0) {
      ::kill(-pid_, SIGTERM);  // its own process group: s_server and the helper
      ::waitpid(pid_, nullptr, 0);
    }
  }
  bool ready() const { return ready_; }
  uint16_t port() const { return port_; }
  std::string messages() const { return ReadFile(msgfile_); }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  bool ready_ = false;
  std::string msgfile_;
};

void ClientAgainstSServer(const char* version_flag, TlsVersion v, const char* expect) {
  SServer server(version_flag);
  ASSERT_TRUE(server.ready()) << "s_server did not start";
  auto w = NewWorker();
  ASSERT_NE(w, nullptr);
  ConnectOptions co;
  co.tls = ClientCtx("ca.pem", v, v);
  co.server_name = "localhost";
  std::string version;
  std::string reply;
  auto r = w->BlockOn(Timeout(
      30s,
      [](uint16_t port, ConnectOptions& co, std::string& version, std::string& reply) -> Task<> {
        auto c = co_await Connect(SocketAddress::Loopback4(port), 5s, co);
        EXPECT_TRUE(c.ok()) << c.ErrorString();
        if (!c) co_return;
        version = c->tls_version();
        EXPECT_NE(c->peer_certificate_subject().find("localhost"), std::string::npos);
        co_await c->send(std::string_view("hello server\n"));
        auto line = co_await c->recv(ParseLine);
        if (line) reply = *line;
        co_await c->close();
      }(server.port(), co, version, reply)));
  EXPECT_TRUE(r && *r);
  EXPECT_EQ(version, expect);
  EXPECT_EQ(reply, "revres olleh");
  // Give s_server a moment to log our close_notify.
  std::string msgs;
  for (int i = 0; i < 100; ++i) {
    msgs = server.messages();
    if (msgs.find("close_notify") != std::string::npos) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_NE(
      msgs.find("<<< " + std::string(expect == std::string("TLSv1.3") ? "TLS 1.3" : "TLS 1.2") +
                ", Alert [length 0002], warning close_notify"),
      std::string::npos)
      << msgs;
  EXPECT_EQ(Metrics().tls_handshakes.Get(), 1u);
}

TEST(TlsTest, ClientTls13AgainstOpensslSServer) {
  REQUIRE_CERTS();
  ClientAgainstSServer("-tls1_3", TlsVersion::kTls13, "TLSv1.3");
}

TEST(TlsTest, ClientTls12AgainstOpensslSServer) {
  REQUIRE_CERTS();
  ClientAgainstSServer("-tls1_2", TlsVersion::kTls12, "TLSv1.2");
}

TEST(TlsTest, WrongCertificateIsRefused) {
  REQUIRE_CERTS();
  SServer server("");
  ASSERT_TRUE(server.ready());
  auto w = NewWorker();
  ASSERT_NE(w, nullptr);
  ConnectOptions wrong_ca;
  wrong_ca.tls = ClientCtx("other.pem");
  wrong_ca.server_name = "localhost";
  ConnectOptions wrong_name;
  wrong_name.tls = ClientCtx("ca.pem");
  wrong_name.server_name = "not-this-host.example";
  auto r =
      w->BlockOn(Timeout(30s, [](uint16_t port, ConnectOptions& a, ConnectOptions& b) -> Task<> {
        auto c1 = co_await Connect(SocketAddress::Loopback4(port), 5s, a);
        EXPECT_FALSE(c1.ok());
        EXPECT_EQ(c1.error(), EPROTO);
        auto c2 = co_await Connect(SocketAddress::Loopback4(port), 5s, b);
        EXPECT_FALSE(c2.ok());
        EXPECT_EQ(c2.error(), EPROTO);
      }(server.port(), wrong_ca, wrong_name)));
  EXPECT_TRUE(r && *r);
  EXPECT_EQ(Metrics().tls_failures.Get(), 2u);
  EXPECT_EQ(Metrics().tls_handshakes.Get(), 0u);
}

TEST(TlsTest, ServerRequiringClientCertificates) {
  REQUIRE_CERTS();
  auto w = NewWorker();
  ASSERT_NE(w, nullptr);
  auto l = Listener::Bind(SocketAddress::Loopback4(0));
  ASSERT_TRUE(l.ok());
  const SocketAddress addr = l->local_address();
  ServerLog log;
  auto server =
      Spawn(ServeTls(*l, ServerCtx(TlsVersion::kTls12, TlsVersion::kTls13, true), log, 3));
  // s_client without a certificate: refused.
  std::atomic<bool> done{false};
  int rc = -1;
  std::thread client([&] {
    Shell("printf 'x\\n' | timeout 20 openssl s_client -connect 127.0.0.1:" +
              std::to_string(addr.port()) + " -CAfile " + Certs::Get()->Path("ca.pem") +
              " -quiet >/dev/null 2>&1",
          &rc);
    done = true;
  });
  RunUntil(*w, done, 30s);
  client.join();
  EXPECT_EQ(log.handled, 0);
  EXPECT_EQ(Metrics().tls_failures.Get(), 1u);
  // Our client with a certificate signed by the CA: accepted, subject seen.
  auto r = w->BlockOn(Timeout(30s, [](SocketAddress addr) -> Task<> {
    ConnectOptions co;
    co.tls = ClientCtx("ca.pem", TlsVersion::kTls12, TlsVersion::kTls13, true);
    co.server_name = "127.0.0.1";  // checked against the certificate's IP address
    auto c = co_await Connect(addr, 5s, co);
    EXPECT_TRUE(c.ok()) << c.ErrorString();
    if (!c) co_return;
    co_await c->send(std::string_view("with cert\n"));
    auto line = co_await c->recv(ParseLine);
    EXPECT_TRUE(line.ok());
    if (line) {
      EXPECT_EQ(*line, "echo: with cert");
    }
    auto eof = co_await c->recv(ParseLine);
    EXPECT_TRUE(eof.eof()) << "the server's close_notify ends the stream cleanly";
  }(addr)));
  EXPECT_TRUE(r && *r);
  EXPECT_EQ(log.handled, 1);
  EXPECT_NE(log.client_subject.find("ringline-client"), std::string::npos) << log.client_subject;
}

// NBD-style STARTTLS: a plaintext exchange, then both sides upgrade mid-stream.
TEST(TlsTest, StartTlsUpgradesAnAcceptedConnection) {
  REQUIRE_CERTS();
  auto w = NewWorker();
  ASSERT_NE(w, nullptr);
  auto l = Listener::Bind(SocketAddress::Loopback4(0));
  ASSERT_TRUE(l.ok());
  const SocketAddress addr = l->local_address();
  auto sctx = ServerCtx(TlsVersion::kTls12, TlsVersion::kTls13);
  auto server = Spawn([](Listener& l, std::shared_ptr<TlsServerContext> ctx) -> Task<> {
    auto c = co_await l.Accept();
    if (!c) co_return;
    auto req = co_await c->recv(ParseLine);
    EXPECT_TRUE(req.ok());
    if (!req || *req != "STARTTLS") co_return;
    co_await c->send(std::string_view("OK go ahead\n"));  // plaintext, queued first
    IoResult hs = co_await c->StartTls(ctx);
    EXPECT_TRUE(hs.ok()) << hs.res;
    if (!hs.ok()) co_return;
    for (;;) {
      auto line = co_await c->recv(ParseLine);
      if (!line) break;
      // Large replies exercise record splitting and the zero-copy path's TLS fallback.
      Buffer b = Buffer::Allocate(100000);
      std::memset(b.data(), 'r', 100000);
      b.set_size(100000);
      co_await c->send_zc(Bytes("secret: " + *line + " "), std::move(b));
      co_await c->send(std::string_view("\n"));
    }
  }(*l, sctx));
  auto r = w->BlockOn(Timeout(30s, [](SocketAddress addr) -> Task<> {
    auto c = co_await Connect(addr, 5s);
    EXPECT_TRUE(c.ok());
    if (!c) co_return;
    co_await c->send(std::string_view("STARTTLS\n"));
    auto ok = co_await c->recv(ParseLine);
    EXPECT_TRUE(ok.ok());
    if (ok) {
      EXPECT_EQ(*ok, "OK go ahead");
    }
    IoResult hs = co_await c->StartTlsClient(ClientCtx("ca.pem"), "localhost");
    EXPECT_TRUE(hs.ok()) << hs.res;
    EXPECT_TRUE(c->is_tls());
    for (int i = 0; i < 5; ++i) {
      co_await c->send("ping " + std::to_string(i) + "\n");
      auto line = co_await c->recv(ParseLine);
      EXPECT_TRUE(line.ok());
      if (!line) co_return;
      EXPECT_EQ(line->substr(0, 16), "secret: ping " + std::to_string(i) + " r");
      EXPECT_EQ(line->size(), 8 + 7 + 100000u);
    }
    co_await c->close();
  }(addr)));
  EXPECT_TRUE(r && *r);
  EXPECT_EQ(Metrics().tls_handshakes.Get(), 2u);  // both ends on this worker
  EXPECT_GT(Metrics().copy_fallbacks.Get(), 0u) << "zero-copy payloads are encrypted copies on TLS";
}

TEST(TlsTest, PlaintextInjectedAfterStartTlsIsNotApplicationData) {
  // A client that pipelines plaintext right behind its STARTTLS request: those
  // bytes must be fed to the handshake (and fail it), never parsed as commands.
  REQUIRE_CERTS();
  auto w = NewWorker();
  ASSERT_NE(w, nullptr);
  auto l = Listener::Bind(SocketAddress::Loopback4(0));
  ASSERT_TRUE(l.ok());
  const SocketAddress addr = l->local_address();
  int fd = testing::BlockingConnect(addr);
  ASSERT_GE(fd, 0);
  testing::WriteAll(fd, "STARTTLS\nINJECTED COMMAND\n");
  bool injected_seen = false;
  IoResult hs{};
  auto r = w->BlockOn(Timeout(
      30s,
      [](Listener& l, std::shared_ptr<TlsServerContext> ctx, bool& seen, IoResult& hs) -> Task<> {
        auto c = co_await l.Accept();
        if (!c) co_return;
        auto req = co_await c->recv(ParseLine);
        if (!req) co_return;
        co_await c->send(std::string_view("OK\n"));
        co_await Sleep(50ms);  // the injected line has arrived by now
        hs = co_await c->StartTls(ctx);
        if (hs.ok()) {
          auto next = co_await c->recv(ParseLine);
          seen = next.ok();
        }
      }(*l, ServerCtx(TlsVersion::kTls12, TlsVersion::kTls13), injected_seen, hs)));
  ::close(fd);
  EXPECT_TRUE(r && *r);
  EXPECT_FALSE(hs.ok());
  EXPECT_FALSE(injected_seen);
  EXPECT_EQ(Metrics().tls_failures.Get(), 1u);
}

}  // namespace
}  // namespace ringline::net
