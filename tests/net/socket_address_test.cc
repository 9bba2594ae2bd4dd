#include "ringline/net/socket_address.h"

#include <gtest/gtest.h>

namespace ringline::net {
namespace {

TEST(SocketAddress, ParsesIpv4Ipv6AndUnix) {
  auto a = SocketAddress::Parse("127.0.0.1:8080");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->family(), AF_INET);
  EXPECT_EQ(a->port(), 8080);
  EXPECT_EQ(a->ToString(), "127.0.0.1:8080");

  auto b = SocketAddress::Parse("[::1]:10809");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->family(), AF_INET6);
  EXPECT_EQ(b->ToString(), "[::1]:10809");

  auto any = SocketAddress::Parse(":80");
  ASSERT_TRUE(any.ok());
  EXPECT_EQ(any->ToString(), "0.0.0.0:80");

  auto u = SocketAddress::Parse("unix:/tmp/x.sock");
  ASSERT_TRUE(u.ok());
  EXPECT_TRUE(u->is_unix());
  EXPECT_EQ(u->unix_path(), "/tmp/x.sock");
  EXPECT_EQ(u->ToString(), "unix:/tmp/x.sock");

  auto abs = SocketAddress::Parse("@ringline-test");
  ASSERT_TRUE(abs.ok());
  EXPECT_EQ(abs->unix_path(), "@ringline-test");
}

TEST(SocketAddress, RejectsGarbage) {
  EXPECT_FALSE(SocketAddress::Parse("127.0.0.1").ok());
  EXPECT_FALSE(SocketAddress::Parse("127.0.0.1:99999").ok());
  EXPECT_FALSE(SocketAddress::Parse("[::1]80").ok());
  EXPECT_FALSE(SocketAddress::Parse("example.com:80").ok());
  EXPECT_FALSE(SocketAddress::Parse("unix:").ok());
  EXPECT_FALSE(SocketAddress::Parse("unix:/" + std::string(200, 'a')).ok());
}

TEST(SocketAddress, EqualityAndPort) {
  auto a = SocketAddress::Loopback4(1);
  auto b = SocketAddress::Loopback4(1);
  EXPECT_EQ(a, b);
  b.set_port(2);
  EXPECT_FALSE(a == b);
  EXPECT_EQ(b.port(), 2);
  EXPECT_TRUE(SocketAddress().empty());
  EXPECT_EQ(SocketAddress().ToString(), "(none)");
}

TEST(SocketAddress, LoopbackAndSameHost) {
  EXPECT_TRUE(SocketAddress::Loopback4(1).is_loopback());
  EXPECT_TRUE(SocketAddress::Loopback6(1).is_loopback());
  EXPECT_TRUE(SocketAddress::Parse("127.5.6.7:1")->is_loopback());
  EXPECT_TRUE(SocketAddress::Parse("[::ffff:127.0.0.1]:1")->is_loopback());
  EXPECT_FALSE(SocketAddress::Parse("10.0.0.1:1")->is_loopback());
  EXPECT_FALSE(SocketAddress::Parse("[::ffff:10.0.0.1]:1")->is_loopback());
  EXPECT_FALSE(SocketAddress::Unix("/tmp/x").is_loopback());
  EXPECT_TRUE(SocketAddress::Parse("10.0.0.1:1")->SameHost(*SocketAddress::Parse("10.0.0.1:2")));
  EXPECT_FALSE(SocketAddress::Parse("10.0.0.1:1")->SameHost(*SocketAddress::Parse("10.0.0.2:1")));
  EXPECT_FALSE(SocketAddress::Loopback4(1).SameHost(SocketAddress::Loopback6(1)));
}

}  // namespace
}  // namespace ringline::net
