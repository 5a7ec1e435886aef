#include "worker/metrics.h"

#include <vector>

#include "prometheus/metric_family.h"

namespace rung {
namespace {

class WorkerMetrics final : public prometheus::Collectable {
 public:
  WorkerMetrics(const AgentStats* stats, std::string worker)
      : stats_(stats), worker_(std::move(worker)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    auto add = [&](const char* name, const char* help, prometheus::MetricType type, double v,
                   std::vector<prometheus::ClientMetric::Label> labels = {}) {
      if (out.empty() || out.back().name != name) out.push_back({name, help, type, {}});
      prometheus::ClientMetric m;
      m.label = {{"worker", worker_}};
      m.label.insert(m.label.end(), labels.begin(), labels.end());
      if (type == prometheus::MetricType::Counter) {
        m.counter.value = v;
      } else {
        m.gauge.value = v;
      }
      out.back().metric.push_back(std::move(m));
    };
    const int slots = stats_->slots, busy = stats_->slots_busy;
    add("rung_worker_slots", "This worker's slots, busy or free.", prometheus::MetricType::Gauge,
        busy, {{"state", "busy"}});
    add("rung_worker_slots", "This worker's slots, busy or free.", prometheus::MetricType::Gauge,
        slots - busy, {{"state", "free"}});
    add("rung_worker_trials_running", "Trial processes running now.", prometheus::MetricType::Gauge,
        stats_->trials_running);
    add("rung_worker_launch_failures_total", "Trial processes that could not be started.",
        prometheus::MetricType::Counter, static_cast<double>(stats_->launch_failures.load()));
    add("rung_worker_report_queue", "Messages (reports, trial news) not yet acknowledged by rungd.",
        prometheus::MetricType::Gauge, static_cast<double>(stats_->outbox.load()));
    add("rung_worker_connected", "1 while registered with rungd.", prometheus::MetricType::Gauge,
        stats_->connected ? 1 : 0);
    return out;
  }

 private:
  const AgentStats* const stats_;
  const std::string worker_;
};

}  // namespace

std::shared_ptr<prometheus::Collectable> WorkerCollectable(const AgentStats* stats,
                                                           const std::string& worker) {
  return std::make_shared<WorkerMetrics>(stats, worker);
}

}  // namespace rung
