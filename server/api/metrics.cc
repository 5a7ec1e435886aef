#include "server/api/metrics.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace rung {
namespace {

const char* CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {
      "OK",           "CANCELLED",          "UNKNOWN",           "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",     "ALREADY_EXISTS",    "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",    "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",          "UNAVAILABLE",       "DATA_LOSS",
      "UNAUTHENTICATED"};
  int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : "UNKNOWN";
}

// "TRIAL_RUNNING" -> "running"
std::string StateLabel(const std::string& enum_name, absl::string_view prefix) {
  absl::string_view s = enum_name;
  if (s.substr(0, prefix.size()) == prefix) s.remove_prefix(prefix.size());
  return absl::AsciiStrToLower(s);
}

prometheus::ClientMetric Value(double v, std::vector<prometheus::ClientMetric::Label> labels,
                               bool counter) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  return m;
}

class ControllerCollectable : public prometheus::Collectable {
 public:
  explicit ControllerCollectable(Controller* c) : controller_(c) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    ControllerStats s = controller_->Stats();
    std::vector<prometheus::MetricFamily> out;
    auto family = [&](const char* name, const char* help, prometheus::MetricType type) {
      out.push_back({name, help, type, {}});
      return &out.back();
    };
    auto* exps = family("rung_experiments", "Experiments by state.", prometheus::MetricType::Gauge);
    for (int st = v1::EXPERIMENT_PENDING; st <= v1::EXPERIMENT_FAILED; ++st) {
      auto it = s.experiments.find(static_cast<v1::ExperimentState>(st));
      exps->metric.push_back(
          Value(it == s.experiments.end() ? 0 : it->second,
                {{"state", StateLabel(v1::ExperimentState_Name(st), "EXPERIMENT_")}}, false));
    }
    auto* trials = family("rung_trials", "Trials by state.", prometheus::MetricType::Gauge);
    for (int st = v1::TRIAL_PENDING; st <= v1::TrialState_MAX; ++st) {
      auto it = s.trials.find(static_cast<v1::TrialState>(st));
      trials->metric.push_back(
          Value(it == s.trials.end() ? 0 : it->second,
                {{"state", StateLabel(v1::TrialState_Name(st), "TRIAL_")}}, false));
    }
    family("rung_workers_connected", "Workers with an open stream.", prometheus::MetricType::Gauge)
        ->metric.push_back(Value(s.workers_connected, {}, false));
    auto* slots = family("rung_slots", "Slots of connected workers, busy or free.",
                         prometheus::MetricType::Gauge);
    slots->metric.push_back(Value(s.slots_busy, {{"state", "busy"}}, false));
    slots->metric.push_back(Value(s.slots_free, {{"state", "free"}}, false));
    family("rung_metric_reports_received_total", "Metric reports stored.",
           prometheus::MetricType::Counter)
        ->metric.push_back(Value(static_cast<double>(s.reports_received), {}, true));
    family("rung_lease_expirations_total", "Trial leases that expired with a silent worker.",
           prometheus::MetricType::Counter)
        ->metric.push_back(Value(static_cast<double>(s.lease_expirations), {}, true));
    family("rung_suggestions_total", "New trials whose parameters a model (tpe, gp) proposed.",
           prometheus::MetricType::Counter)
        ->metric.push_back(Value(static_cast<double>(s.suggestions), {}, true));
    family("rung_suggestion_seconds_total",
           "Time from asking a model for a trial to its proposal, summed over rung_suggestions_total.",
           prometheus::MetricType::Counter)
        ->metric.push_back(Value(s.suggestion_seconds, {}, true));
    family("rung_suggestion_fallbacks_total",
           "Model proposals that missed --suggest-deadline; those trials were drawn at random.",
           prometheus::MetricType::Counter)
        ->metric.push_back(Value(static_cast<double>(s.suggestion_fallbacks), {}, true));
    family("rung_worker_messages_dropped_total",
           "Invalid messages from workers, acknowledged so that they are not resent, and ignored.",
           prometheus::MetricType::Counter)
        ->metric.push_back(Value(static_cast<double>(s.worker_messages_dropped), {}, true));
    return out;
  }

 private:
  Controller* const controller_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ServerMetrics>> ServerMetrics::Start(const std::string& listen,
                                                                    Controller* controller,
                                                                    const std::string& user_password) {
  std::unique_ptr<ServerMetrics> m(new ServerMetrics());
  m->registry_ = std::make_shared<prometheus::Registry>();
  m->rpcs_ = &prometheus::BuildCounter()
                  .Name("rung_rpcs_total")
                  .Help("Finished RPCs by method and status code.")
                  .Register(*m->registry_);
  m->state_ = std::make_shared<ControllerCollectable>(controller);
  try {
    m->exposer_ = std::make_unique<prometheus::Exposer>(listen, 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("--metrics-listen ", listen, ": cannot listen: ", e.what()));
  }
  if (!user_password.empty()) {
    const std::string user = user_password.substr(0, user_password.find(':'));
    const std::string password = user_password.substr(user_password.find(':') + 1);
    m->exposer_->RegisterAuth([user, password](const std::string& u, const std::string& p) {
      return u == user && p == password;
    }, "rungd");
  }
  m->exposer_->RegisterCollectable(m->registry_);
  m->exposer_->RegisterCollectable(m->state_);
  auto ports = m->exposer_->GetListeningPorts();
  m->port_ = ports.empty() ? 0 : ports[0];
  return m;
}

ServerMetrics::~ServerMetrics() = default;

void ServerMetrics::CountRpc(absl::string_view method, grpc::StatusCode code) {
  rpcs_->Add({{"method", std::string(method)}, {"code", CodeName(code)}}).Increment();
}

}  // namespace rung
