// Must NOT compile: a parser that does not return ParseResult<T>. The error
// must name the RecvParser concept (checked by check_compile.cmake).
#include "ringline/net/connection.h"

namespace ringline::net {
int NotAParser(std::span<const uint8_t> bytes) { return static_cast<int>(bytes.size()); }
Task<> Use(Connection& conn) {
  auto r = co_await conn.recv(NotAParser);
  (void)r;
}
}  // namespace ringline::net
