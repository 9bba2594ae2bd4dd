#pragma once
// Process-wide list of every worker's NetMetrics, for totals read from any
// thread (e.g. a Prometheus endpoint). Registration happens at set-up only.

#include <memory>

#include "ringline/net/net_metrics.h"

namespace ringline::net::detail {

void RegisterMetrics(std::shared_ptr<NetMetrics> m);
// The worker is gone: its counters are folded into the retired totals.
void RetireMetrics(const std::shared_ptr<NetMetrics>& m);

}  // namespace ringline::net::detail
