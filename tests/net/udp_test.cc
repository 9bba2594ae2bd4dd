// UDP: bind, multishot recvmsg on the socket's own ring, recv_from/send_to.
#include <thread>

#include "net/src/net_worker.h"
#include "net_test_util.h"

namespace ringline::net {
namespace {

using namespace std::chrono_literals;

TEST(UdpTest, RoundTripsBetweenTwoSockets) {
  auto w = testing::NewWorker();
  ASSERT_NE(w, nullptr);
  auto a = UdpSocket::Bind(SocketAddress::Loopback4(0));
  auto b = UdpSocket::Bind(SocketAddress::Loopback4(0));
  ASSERT_TRUE(a.ok() && b.ok());
  auto r = w->BlockOn(Timeout(30s, [](UdpSocket& a, UdpSocket& b) -> Task<int> {
    // b echoes whatever it receives.
    auto echo = Spawn([](UdpSocket& b) -> Task<> {
      for (;;) {
        auto d = co_await b.recv_from();
        if (!d) co_return;
        co_await b.send_to(d->data, d->peer);
      }
    }(b));
    int good = 0;
    for (int i = 0; i < 1000; ++i) {
      std::vector<uint8_t> msg(1 + i % 1400);
      testing::FillPattern(i, 0, msg.data(), msg.size());
      IoResult s = co_await a.send_to(msg, b.local_address());
      EXPECT_EQ(s.res, static_cast<int32_t>(msg.size()));
      auto d = co_await Timeout(2s, a.recv_from());
      if (!d || !*d) continue;  // UDP may drop; loopback normally does not
      good += (*d)->data == msg && (*d)->peer == b.local_address();
    }
    echo.Abort();
    co_return good;
  }(*a, *b)));
  ASSERT_TRUE(r && *r);
  EXPECT_GE(**r, 990);
  auto& m = detail::NetWorker::Get().metrics();
  EXPECT_GE(m.udp_datagrams_in.Get(), 1980u);
  EXPECT_GE(m.udp_datagrams_out.Get(), 1980u);
}

TEST(UdpTest, RoundTripWithPlainSocketPeerAndTinyRing) {
  auto w = testing::NewWorker();
  ASSERT_NE(w, nullptr);
  UdpOptions o;
  o.buffer_count = 2;  // forces ENOBUFS under a burst
  o.max_datagram = 512;
  auto s = UdpSocket::Bind(SocketAddress::Loopback4(0), o);
  ASSERT_TRUE(s.ok());
  const SocketAddress addr = s->local_address();
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const int big = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  sockaddr_in me{};
  me.sin_family = AF_INET;
  me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&me), sizeof me), 0);
  socklen_t len = sizeof me;
  getsockname(fd, reinterpret_cast<sockaddr*>(&me), &len);
  const SocketAddress peer = SocketAddress::Loopback4(ntohs(me.sin_port));
  constexpr int kBurst = 200;
  for (int i = 0; i < kBurst; ++i) {
    std::string m = "datagram " + std::to_string(i);
    ::sendto(fd, m.data(), m.size(), 0, addr.sockaddr_ptr(), addr.length());
  }
  auto r = w->BlockOn(Timeout(30s, [](UdpSocket& s, SocketAddress peer) -> Task<int> {
    int n = 0;
    for (;;) {
      auto d = co_await Timeout(500ms, s.recv_from());
      if (!d) break;
      if (!*d) break;
      EXPECT_EQ((*d)->peer, peer);
      ++n;
      co_await s.send_to((*d)->data, (*d)->peer);  // echo back to the plain socket
    }
    co_return n;
  }(*s, peer)));
  ASSERT_TRUE(r && *r);
  EXPECT_EQ(**r, kBurst) << "the socket's queue holds a burst even with a 2-buffer ring";
  int back = 0;
  char buf[600];
  while (::recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) ++back;
  EXPECT_EQ(back, kBurst);
  ::close(fd);
}

TEST(UdpTest, OversizedDatagramIsDroppedAndCounted) {
  auto w = testing::NewWorker();
  ASSERT_NE(w, nullptr);
  UdpOptions o;
  o.max_datagram = 256;
  auto s = UdpSocket::Bind(SocketAddress::Loopback4(0), o);
  ASSERT_TRUE(s.ok());
  const SocketAddress addr = s->local_address();
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  std::string big(4000, 'B');
  std::string ok = "fits";
  ::sendto(fd, big.data(), big.size(), 0, addr.sockaddr_ptr(), addr.length());
  ::sendto(fd, ok.data(), ok.size(), 0, addr.sockaddr_ptr(), addr.length());
  auto r = w->BlockOn(Timeout(10s, [](UdpSocket& s) -> Task<std::string> {
    auto d = co_await s.recv_from();
    co_return d ? std::string(d->data.begin(), d->data.end()) : std::string();
  }(*s)));
  ASSERT_TRUE(r && *r);
  EXPECT_EQ(**r, "fits");
  EXPECT_EQ(detail::NetWorker::Get().metrics().udp_dropped.Get(), 1u);
  ::close(fd);
}

}  // namespace
}  // namespace ringline::net
