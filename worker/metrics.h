// rung-worker's Prometheus metrics (--metrics-listen).
#ifndef RUNG_WORKER_METRICS_H_
#define RUNG_WORKER_METRICS_H_

#include <memory>
#include <string>

#include "prometheus/collectable.h"
#include "worker/agent.h"

namespace rung {

// Reads `stats` (which must outlive it) at each scrape; every metric has a worker="NAME" label.
std::shared_ptr<prometheus::Collectable> WorkerCollectable(const AgentStats* stats,
                                                           const std::string& worker);

}  // namespace rung

#endif  // RUNG_WORKER_METRICS_H_
