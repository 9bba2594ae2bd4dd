#include "placement_report.h"

namespace ringline::nvme_probe {
namespace {

const char* KindName(block::CompletionPlacement::Kind kind) {
  switch (kind) {
    case block::CompletionPlacement::Kind::kFound:
      return "found";
    case block::CompletionPlacement::Kind::kUnknown:
      return "unknown";
    case block::CompletionPlacement::Kind::kNoDevice:
      break;
  }
  return "no_device";
}

}  // namespace

Json PlacementJson(const block::CompletionPlacement& p) {
  Json queues = Json::array();
  for (const block::CompletionQueue& q : p.queues) {
    queues.push_back(Json{{"index", q.index},
                          {"cpus", q.cpus},
                          {"irq", q.irq},
                          {"irq_name", q.irq_name},
                          {"irq_cpus", q.irq_cpus}});
  }
  return Json{{"kind", KindName(p.kind)},
              {"device", p.device},
              {"reason", p.reason},
              {"local_cpus", p.local_cpus},
              {"has_preference", p.HasPreference()},
              {"queues", std::move(queues)},
              {"summary", p.Describe()}};
}

Cell PlacementCell(const block::CompletionPlacement& p) {
  return Cell(p.Describe(), p.HasPreference() ? Highlight::kWarn : Highlight::kNone);
}

}  // namespace ringline::nvme_probe
