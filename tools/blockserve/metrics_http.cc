#include "blockserve/metrics_http.h"

#include <string_view>

#include "absl/strings/str_cat.h"
#include "ringline/log.h"
#include "ringline/spawn.h"

namespace blockserve {
namespace {

namespace net = ringline::net;

// The request head, up to the blank line; its first line is all we use.
net::ParseResult<std::string> ParseHead(std::span<const uint8_t> bytes) {
  std::string_view s(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const auto end = s.find("\r\n\r\n");
  if (end == std::string_view::npos) return net::ParseResult<std::string>::NeedMore();
  return net::ParseResult<std::string>::Done(std::string(s.substr(0, s.find("\r\n"))), end + 4);
}

ringline::Task<> Answer(net::Connection conn, std::function<std::string()> render) {
  auto head = co_await conn.recv(ParseHead);
  if (head.ok()) {
    const bool get = head->rfind("GET ", 0) == 0;
    const std::string body = get ? render() : "only GET is served here\n";
    const std::string reply =
        absl::StrCat("HTTP/1.1 ", get ? "200 OK" : "405 Method Not Allowed",
                     "\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: ", body.size(),
                     "\r\nConnection: close\r\n\r\n", body);
    co_await conn.send(std::string_view(reply));
  }
  co_await conn.close();
}

}  // namespace

ringline::Task<> ServeMetrics(net::Listener listener, std::function<std::string()> render) {
  for (;;) {
    auto conn = co_await listener.Accept();
    if (!conn.ok()) {
      if (conn.error() == ECANCELED) co_return;
      continue;
    }
    ringline::Spawn(Answer(std::move(*conn), render)).Detach();
  }
}

}  // namespace blockserve
