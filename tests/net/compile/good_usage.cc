// MUST compile: the control for the two snippets that must not (so a failure
// of those is the concept's or [[nodiscard]]'s doing, not a broken harness).
#include "ringline/net/connection.h"

namespace ringline::net {
ParseResult<int> ParseByte(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return ParseResult<int>::NeedMore(1);
  return ParseResult<int>::Done(bytes[0], 1);
}
Task<> Use(Connection& conn) {
  auto r = co_await conn.recv(ParseByte);
  (void)r;
  IoResult sent = co_await conn.send(std::string_view("kept"));
  (void)sent;
}
}  // namespace ringline::net
