// Must NOT compile with -Werror=unused-result: a send that is not co_awaited
// sends nothing, so discarding it is an error.
#include "ringline/net/connection.h"

namespace ringline::net {
Task<> Use(Connection& conn) {
  conn.send(std::string_view("lost"));
  co_return;
}
}  // namespace ringline::net
