#include "server/api/metrics.h"

#include <chrono>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace rung {
namespace {

// absl and gRPC share the canonical codes and their names.
std::string CodeName(grpc::StatusCode code) {
  const std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "UNKNOWN" : name;
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
      trials->metric.push_back(Value(it == s.trials.end() ? 0 : it->second,
                                     {{"state", StateLabel(v1::TrialState_Name(st), "TRIAL_")}},
                                     false));
    }
    family("rung_experiments_unschedulable",
           "Running experiments whose trials no connected worker can run (too few GPUs, missing "
           "labels, no "
           "worker); `rung show` says why.",
           prometheus::MetricType::Gauge)
        ->metric.push_back(Value(s.experiments_unschedulable, {}, false));
    family("rung_store_recoveries_total",
           "Times rungd could not write its data folder (a full disk) and later could again.",
           prometheus::MetricType::Counter)
        ->metric.push_back(Value(static_cast<double>(s.store_recoveries), {}, true));
    family("rung_workers_connected", "Workers with an open stream.", prometheus::MetricType::Gauge)
        ->metric.push_back(Value(s.workers_connected, {}, false));
    auto* slots = family("rung_slots", "Slots of connected workers, busy or free.",
                         prometheus::MetricType::Gauge);
    slots->metric.push_back(Value(s.slots_busy, {{"state", "busy"}}, false));
    slots->metric.push_back(Value(s.slots_free, {{"state", "free"}}, false));
    family("rung_metric_reports_received_total", "Metric reports stored.",
           prometheus::MetricType::Counter)
        ->metric.push_back(Value(static_cast<double>(s.reports_received), {}, true));
    family("rung_lease_expirations_total",
           "Trial leases that expired with a silent worker or ask-and-tell client.",
           prometheus::MetricType::Counter)
        ->metric.push_back(Value(static_cast<double>(s.lease_expirations), {}, true));
    family("rung_suggestions_total", "New trials whose parameters a model (tpe, gp) proposed.",
           prometheus::MetricType::Counter)
        ->metric.push_back(Value(static_cast<double>(s.suggestions), {}, true));
    family(
        "rung_suggestion_seconds_total",
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
    family("rung_trials_stopped_early_total",
           "Trials that a stopping rule (ASHA, Hyperband, median) ended.",
           prometheus::MetricType::Counter)
        ->metric.push_back(Value(static_cast<double>(s.trials_stopped_early), {}, true));
    family("rung_slot_utilisation", "Busy slots over all slots of connected workers (0 to 1).",
           prometheus::MetricType::Gauge)
        ->metric.push_back(
            Value(s.slots_busy + s.slots_free > 0
                      ? static_cast<double>(s.slots_busy) / (s.slots_busy + s.slots_free)
                      : 0,
                  {}, false));
    family("rung_store_size_bytes", "Size on disk of rungd's data folder.",
           prometheus::MetricType::Gauge)
        ->metric.push_back(Value(static_cast<double>(s.store_bytes), {}, false));
    family(
        "rung_checkpoint_bytes_stored",
        "Bytes of checkpoint archives in rungd's data folder (trials' model state that travels).",
        prometheus::MetricType::Gauge)
        ->metric.push_back(Value(static_cast<double>(s.checkpoint_bytes), {}, false));
    family("rung_checkpoints_stored", "Checkpoint archives in rungd's data folder.",
           prometheus::MetricType::Gauge)
        ->metric.push_back(Value(static_cast<double>(s.checkpoints), {}, false));
    family("rung_build_info", "rungd's version, as a label; the value is always 1.",
           prometheus::MetricType::Gauge)
        ->metric.push_back(Value(1, {{"version", RUNG_VERSION}}, false));
    auto* hist = family(
        "rung_suggestion_duration_seconds",
        "Time from asking a model (tpe, gp, bohb) for a trial to its proposal, by algorithm.",
        prometheus::MetricType::Histogram);
    for (const auto& [algorithm, h] : s.suggestion_seconds_by_algorithm) {
      prometheus::ClientMetric m;
      m.label = {{"algorithm", algorithm}};
      uint64_t cumulative = 0;
      const auto& bounds = SuggestionBuckets();
      for (size_t i = 0; i <= bounds.size(); ++i) {
        cumulative += i < h.counts.size() ? static_cast<uint64_t>(h.counts[i]) : 0;
        prometheus::ClientMetric::Bucket b;
        b.cumulative_count = cumulative;
        b.upper_bound = i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity();
        m.histogram.bucket.push_back(b);
      }
      m.histogram.sample_count = cumulative;
      m.histogram.sample_sum = h.sum;
      hist->metric.push_back(std::move(m));
    }
    return out;
  }

 private:
  Controller* const controller_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ServerMetrics>> ServerMetrics::Start(
    const std::string& listen, Controller* controller, const std::string& user_password) {
  std::unique_ptr<ServerMetrics> m(new ServerMetrics());
  m->registry_ = std::make_shared<prometheus::Registry>();
  m->rpcs_ = &prometheus::BuildCounter()
                  .Name("rung_rpcs_total")
                  .Help("Finished RPCs by method and status code.")
                  .Register(*m->registry_);
  m->rpc_seconds_ =
      &prometheus::BuildHistogram()
           .Name("rung_rpc_duration_seconds")
           .Help("Time from an RPC's arrival to its status, by method (streams: their whole life).")
           .Register(*m->registry_);
  m->checkpoint_bytes_ =
      &prometheus::BuildCounter()
           .Name("rung_checkpoint_bytes_moved_total")
           .Help("Checkpoint archive bytes workers uploaded to rungd or downloaded from it.")
           .Register(*m->registry_);
  m->checkpoint_seconds_ =
      &prometheus::BuildHistogram()
           .Name("rung_checkpoint_transfer_seconds")
           .Help("Time of each checkpoint upload (to durable) or download, by direction.")
           .Register(*m->registry_);
  for (const char* d : {"upload", "download"}) m->ObserveCheckpoint(d, 0, -1);
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
    m->exposer_->RegisterAuth(
        [user, password](const std::string& u, const std::string& p) {
          return u == user && p == password;
        },
        "rungd");
  }
  m->exposer_->RegisterCollectable(m->registry_);
  m->exposer_->RegisterCollectable(m->state_);
  auto ports = m->exposer_->GetListeningPorts();
  m->port_ = ports.empty() ? 0 : ports[0];
  return m;
}

void ServerMetrics::DetachController() {
  // Waits for a scrape in progress (the exposer collects under its own lock).
  exposer_->RemoveCollectable(state_);
}

ServerMetrics::~ServerMetrics() = default;

namespace {

class RpcTimer final : public grpc::experimental::Interceptor {
 public:
  RpcTimer(ServerMetrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_->ObserveRpc(
          method_,
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
    }
    methods->Proceed();
  }

 private:
  ServerMetrics* const metrics_;
  const std::string method_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

class RpcTimerFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcTimerFactory(ServerMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    // "/rung.v1.ExperimentService/GetExperiment" -> "ExperimentService.GetExperiment"
    std::string m = info->method() == nullptr ? "" : info->method();
    const size_t slash = m.rfind('/');
    std::string service = m.substr(0, slash == std::string::npos ? 0 : slash);
    service = service.substr(service.rfind('.') == std::string::npos ? 1 : service.rfind('.') + 1);
    return new RpcTimer(metrics_, absl::StrCat(service, ".", m.substr(slash + 1)));
  }

 private:
  ServerMetrics* const metrics_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> ServerMetrics::RpcTimer() {
  return std::make_unique<RpcTimerFactory>(this);
}

void ServerMetrics::ObserveRpc(const std::string& method, double seconds) {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  rpc_seconds_->Add({{"method", method}}, kBuckets).Observe(seconds);
}

void ServerMetrics::ObserveCheckpoint(const std::string& direction, int64_t bytes, double seconds) {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300};
  checkpoint_bytes_->Add({{"direction", direction}}).Increment(static_cast<double>(bytes));
  auto& h = checkpoint_seconds_->Add({{"direction", direction}}, kBuckets);
  if (seconds >= 0) h.Observe(seconds);  // seconds < 0: only create the series
}

void ServerMetrics::CountRpc(absl::string_view method, grpc::StatusCode code) {
  rpcs_->Add({{"method", std::string(method)}, {"code", CodeName(code)}}).Increment();
}

}  // namespace rung
