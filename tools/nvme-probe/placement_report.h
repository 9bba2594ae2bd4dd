// How nvme-probe reports completion placement (ringline/block/placement.h):
// `info` for each namespace, `check` for its target and the CPU it measured
// on. Single-threaded program: nothing here is thread-safe.
#pragma once

#include <optional>
#include <string>

#include "output.h"
#include "ringline/block/placement.h"

namespace ringline::nvme_probe {

// {"kind": "found"|"unknown"|"no_device", "device", "reason", "local_cpus",
//  "has_preference", "queues": [{index, cpus, irq, irq_name, irq_cpus}],
//  "summary"}.
Json PlacementJson(const block::CompletionPlacement& p);

// The text line: the summary, highlighted as a warning when choosing the CPU
// matters.
Cell PlacementCell(const block::CompletionPlacement& p);

}  // namespace ringline::nvme_probe
