#include "rung/client.h"

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/connect.h"
#include "rung/v1/experiment_service.grpc.pb.h"

namespace rung {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Experiment FromProto(const v1::Experiment& e) {
  Experiment x;
  x.id = e.id();
  x.name = e.spec().name();
  x.state = Lower(v1::ExperimentState_Name(e.state()).substr(std::string("EXPERIMENT_").size()));
  x.best_trial_id = e.best_trial_id();
  if (e.has_best()) x.best_value = e.best_value();
  x.pending = e.counts().pending();
  x.running = e.counts().running();
  x.completed = e.counts().completed();
  x.failed = e.counts().failed();
  x.stopped = e.counts().stopped();
  x.message = e.message();
  return x;
}

Trial FromProto(const v1::Trial& t) {
  Trial x;
  x.id = t.id();
  x.experiment_id = t.experiment_id();
  x.index = t.index();
  x.state = Lower(v1::TrialState_Name(t.state()).substr(std::string("TRIAL_").size()));
  for (const auto& [k, v] : t.params()) {
    switch (v.kind_case()) {
      case v1::ParamValue::kFloatValue: x.params[k] = v.float_value(); break;
      case v1::ParamValue::kIntValue: x.params[k] = static_cast<int64_t>(v.int_value()); break;
      case v1::ParamValue::kCategoricalValue: x.params[k] = v.categorical_value(); break;
      default: break;
    }
  }
  x.attempt = t.attempt();
  if (t.has_result()) x.result = t.result();
  x.metrics.insert(t.last_metrics().begin(), t.last_metrics().end());
  x.budget = t.budget();
  x.client_id = t.client_id();
  x.worker_id = t.worker_id();
  x.message = t.message();
  return x;
}

Report FromProto(const v1::MetricReport& r) {
  Report x;
  x.trial_id = r.trial_id();
  x.attempt = r.attempt();
  x.step = r.step();
  x.values.insert(r.values().begin(), r.values().end());
  x.final = r.final();
  return x;
}

absl::Status FromGrpc(const grpc::Status& s, const std::string& address) {
  if (s.ok()) return absl::OkStatus();
  std::string message = s.error_message();
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) message = absl::StrCat("cannot reach rungd at ", address, ": ", message);
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), message);
}

}  // namespace

std::optional<double> Trial::Number(const std::string& name) const {
  auto it = params.find(name);
  if (it == params.end()) return std::nullopt;
  if (const double* d = std::get_if<double>(&it->second)) return *d;
  if (const int64_t* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  return std::nullopt;
}

struct Client::Impl {
  ClientOptions options;
  ConnectOptions connect;
  std::unique_ptr<v1::ExperimentService::Stub> stub;
  std::string client_id;
  std::mutex mu;
  int64_t last_seq = 0;                          // of the last report
  std::map<std::string, std::string> holder;     // trial id -> the client_id that asked for it

  // Calls `method`; a call that is safe to repeat is retried while rungd is unreachable.
  template <typename Req, typename Resp>
  absl::Status Call(grpc::Status (v1::ExperimentService::Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                    const Req& req, Resp* resp, bool retry = true) {
    const absl::Time give_up = absl::Now() + absl::Seconds(retry ? options.retry_seconds : 0);
    absl::Duration pause = absl::Milliseconds(50);
    for (;;) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(options.timeout_seconds * 1000)));
      AddToken(&ctx, connect);
      grpc::Status s = (stub.get()->*method)(&ctx, req, resp);
      const bool transient = s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                             s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
      if (!retry || !transient || absl::Now() + pause > give_up) return FromGrpc(s, options.address);
      absl::SleepFor(pause);  // rungd is down or restarting: try again shortly
      pause = std::min(pause * 2, absl::Seconds(2));
    }
  }

  std::string ClientFor(const std::string& trial_id, const std::string& given) {
    if (!given.empty()) return given;
    std::lock_guard<std::mutex> l(mu);
    auto it = holder.find(trial_id);
    return it != holder.end() ? it->second : client_id;
  }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->connect.token = options.token;
  impl->connect.ca_file = options.ca_file;
  impl->connect.cert_file = options.cert_file;
  impl->connect.key_file = options.key_file;
  auto channel = rung::Connect(options.address, impl->connect);
  if (!channel.ok()) return channel.status();
  impl->stub = v1::ExperimentService::NewStub(*channel);
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  impl->client_id = absl::StrCat(host, "-", getpid());
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

const std::string& Client::client_id() const { return impl_->client_id; }

absl::StatusOr<Experiment> Client::CreateExperiment(const std::string& spec_yaml, const std::string& base_dir) {
  v1::CreateExperimentRequest req;
  req.set_spec_yaml(spec_yaml);
  if (!base_dir.empty()) {
    req.set_base_dir(base_dir);
  } else {
    char cwd[4096];
    if (getcwd(cwd, sizeof(cwd)) != nullptr) req.set_base_dir(cwd);
  }
  v1::Experiment e;
  if (absl::Status s = impl_->Call(&v1::ExperimentService::Stub::CreateExperiment, req, &e, /*retry=*/false); !s.ok()) {
    return s;
  }
  return FromProto(e);
}

absl::StatusOr<Experiment> Client::CreateExperimentFromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read spec file ", path));
  std::stringstream text;
  text << in.rdbuf();
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  if (dir[0] != '/') {
    char cwd[4096];
    if (getcwd(cwd, sizeof(cwd)) != nullptr) dir = absl::StrCat(cwd, "/", dir);
  }
  return CreateExperiment(text.str(), dir);
}

absl::StatusOr<Experiment> Client::GetExperiment(const std::string& id) {
  v1::GetExperimentRequest req;
  req.set_id(id);
  v1::Experiment e;
  if (absl::Status s = impl_->Call(&v1::ExperimentService::Stub::GetExperiment, req, &e); !s.ok()) return s;
  return FromProto(e);
}

absl::StatusOr<std::vector<Experiment>> Client::ListExperiments() {
  v1::ListExperimentsResponse resp;
  if (absl::Status s = impl_->Call(&v1::ExperimentService::Stub::ListExperiments, v1::ListExperimentsRequest(), &resp);
      !s.ok()) {
    return s;
  }
  std::vector<Experiment> out;
  for (const auto& e : resp.experiments()) out.push_back(FromProto(e));
  return out;
}

namespace {

using ExperimentCall = grpc::Status (v1::ExperimentService::Stub::*)(grpc::ClientContext*, const v1::ExperimentRequest&,
                                                                     v1::Experiment*);

}  // namespace

#define RUNG_EXPERIMENT_CALL(Name)                                                       \
  absl::StatusOr<Experiment> Client::Name##Experiment(const std::string& id) {           \
    v1::ExperimentRequest req;                                                           \
    req.set_id(id);                                                                      \
    v1::Experiment e;                                                                    \
    ExperimentCall call = &v1::ExperimentService::Stub::Name##Experiment;                \
    if (absl::Status s = impl_->Call(call, req, &e, /*retry=*/false); !s.ok()) return s; \
    return FromProto(e);                                                                 \
  }
RUNG_EXPERIMENT_CALL(Cancel)
RUNG_EXPERIMENT_CALL(Pause)
RUNG_EXPERIMENT_CALL(Resume)
#undef RUNG_EXPERIMENT_CALL

absl::StatusOr<std::vector<Trial>> Client::ListTrials(const std::string& experiment_id) {
  v1::ListTrialsRequest req;
  req.set_experiment_id(experiment_id);
  v1::ListTrialsResponse resp;
  if (absl::Status s = impl_->Call(&v1::ExperimentService::Stub::ListTrials, req, &resp); !s.ok()) return s;
  std::vector<Trial> out;
  for (const auto& t : resp.trials()) out.push_back(FromProto(t));
  return out;
}

absl::StatusOr<std::vector<Trial>> Client::BestTrials(const std::string& experiment_id, int count) {
  v1::GetBestTrialsRequest req;
  req.set_experiment_id(experiment_id);
  req.set_count(count);
  v1::GetBestTrialsResponse resp;
  if (absl::Status s = impl_->Call(&v1::ExperimentService::Stub::GetBestTrials, req, &resp); !s.ok()) return s;
  std::vector<Trial> out;
  for (const auto& t : resp.trials()) out.push_back(FromProto(t));
  return out;
}

absl::Status Client::Watch(const std::string& experiment_id, const std::function<bool(const Event&)>& on_event) {
  v1::WatchExperimentRequest req;
  req.set_id(experiment_id);
  grpc::ClientContext ctx;
  AddToken(&ctx, impl_->connect);
  auto reader = impl_->stub->WatchExperiment(&ctx, req);
  v1::WatchEvent e;
  while (reader->Read(&e)) {
    bool more = true;
    if (e.has_experiment()) more = on_event(FromProto(e.experiment()));
    if (e.has_trial()) more = on_event(FromProto(e.trial()));
    if (e.has_report()) more = on_event(FromProto(e.report()));
    if (!more) {
      ctx.TryCancel();
      reader->Finish();
      return absl::OkStatus();
    }
  }
  return FromGrpc(reader->Finish(), impl_->options.address);
}

absl::StatusOr<std::vector<Trial>> Client::Suggest(const std::string& experiment_id, int count,
                                                   const std::string& client_id, bool wait) {
  v1::AskTrialsRequest req;
  req.set_experiment_id(experiment_id);
  req.set_client_id(client_id.empty() ? impl_->client_id : client_id);
  req.set_count(count);
  absl::Duration pause = absl::Milliseconds(100);
  for (;;) {
    v1::AskTrialsResponse resp;
    if (absl::Status s = impl_->Call(&v1::ExperimentService::Stub::AskTrials, req, &resp); !s.ok()) return s;
    if (resp.trials_size() > 0 || resp.done() || !wait) {
      std::vector<Trial> out;
      std::lock_guard<std::mutex> l(impl_->mu);
      for (const auto& t : resp.trials()) {
        impl_->holder[t.id()] = req.client_id();
        out.push_back(FromProto(t));
      }
      return out;
    }
    absl::SleepFor(pause);  // rungd said why none can go out yet (max_concurrent, a pause)
    pause = std::min(pause * 2, absl::Seconds(2));
  }
}

absl::StatusOr<bool> Client::Report(const std::string& trial_id, double step,
                                    const std::map<std::string, double>& values, const std::string& client_id) {
  v1::ReportTrialRequest req;
  req.set_trial_id(trial_id);
  req.set_client_id(impl_->ClientFor(trial_id, client_id));
  req.set_step(step);
  req.mutable_values()->insert(values.begin(), values.end());
  {
    // Increasing across calls and across Client objects (microseconds since the epoch), so
    // rungd stores a retried report once and never mistakes a new one for a retry.
    std::lock_guard<std::mutex> l(impl_->mu);
    impl_->last_seq = std::max(impl_->last_seq + 1, absl::ToUnixMicros(absl::Now()));
    req.set_seq(impl_->last_seq);
  }
  v1::ReportTrialResponse resp;
  if (absl::Status s = impl_->Call(&v1::ExperimentService::Stub::ReportTrial, req, &resp); !s.ok()) return s;
  return resp.stop();
}

absl::StatusOr<Trial> Client::Complete(const std::string& trial_id, const std::map<std::string, double>& values,
                                       const std::string& client_id) {
  v1::CompleteTrialRequest req;
  req.set_trial_id(trial_id);
  req.set_client_id(impl_->ClientFor(trial_id, client_id));
  req.mutable_values()->insert(values.begin(), values.end());
  v1::Trial t;
  if (absl::Status s = impl_->Call(&v1::ExperimentService::Stub::CompleteTrial, req, &t); !s.ok()) return s;
  return FromProto(t);
}

absl::StatusOr<Trial> Client::Fail(const std::string& trial_id, const std::string& message, const std::string& client_id) {
  v1::CompleteTrialRequest req;
  req.set_trial_id(trial_id);
  req.set_client_id(impl_->ClientFor(trial_id, client_id));
  req.set_failed(true);
  req.set_message(message);
  v1::Trial t;
  if (absl::Status s = impl_->Call(&v1::ExperimentService::Stub::CompleteTrial, req, &t); !s.ok()) return s;
  return FromProto(t);
}

}  // namespace rung
