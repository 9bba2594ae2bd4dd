#pragma once
// A minimal HTTP/1.1 endpoint for Prometheus: every GET is answered with the
// metrics text (Content-Type text/plain; version=0.0.4) and the connection is
// closed. Served by the engine itself on one worker.

#include <functional>
#include <memory>
#include <string>

#include "ringline/net/listener.h"
#include "ringline/task.h"

namespace blockserve {

ringline::Task<> ServeMetrics(ringline::net::Listener listener,
                              std::function<std::string()> render);

}  // namespace blockserve
