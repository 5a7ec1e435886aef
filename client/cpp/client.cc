#include "rung/client.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cpp/convert.h"
#include "common/checkpoint_archive.h"
#include "common/connect.h"
#include "common/spec.h"
#include "rung/v1/admin_service.grpc.pb.h"
#include "rung/v1/experiment_service.grpc.pb.h"
#include "rung/v1/worker_service.grpc.pb.h"

namespace rung {

static_assert(Client::kMaxSpecBytes == kMaxSpecBytes,
              "the client checks the size rungd checks (common/spec.h)");

namespace {

using client_internal::FromProto;

// Marks a status that says rungd could not be reached (IsUnreachable).
constexpr char kUnreachableUrl[] = "rung.dev/unreachable";

// gRPC reconnects a lost channel with exponential backoff (default: from 1 s up to 2
// minutes, so a client could go on failing for many seconds after rungd came back). These
// keep the first attempts close together and at most about a second apart; gRPC adds its
// own jitter of 20%.
constexpr int kInitialReconnectBackoffMs = 100;
constexpr int kMaxReconnectBackoffMs = 1000;
// Between tries of a call that rungd itself answered UNAVAILABLE ("shutting down; ask again").
constexpr absl::Duration kFirstPause = absl::Milliseconds(50);
constexpr absl::Duration kMaxPause = absl::Seconds(1);

absl::Status FromGrpc(const grpc::Status& s, const std::string& address) {
  if (s.ok()) return absl::OkStatus();
  const auto code = static_cast<absl::StatusCode>(s.error_code());
  // rungd's own refusals that say UNAVAILABLE ("rungd is not accepting changes: ...") start
  // with "rungd "; any other UNAVAILABLE, and a call that got no answer in time, is the
  // connection.
  const bool unreachable = (s.error_code() == grpc::StatusCode::UNAVAILABLE &&
                            !absl::StartsWith(s.error_message(), "rungd ")) ||
                           s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
  if (!unreachable) return absl::Status(code, s.error_message());
  absl::Status out(code,
                   absl::StrCat("cannot reach rungd at ", address, " (", s.error_message(), ")"));
  out.SetPayload(kUnreachableUrl, absl::Cord(address));
  return out;
}

bool Transient(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

absl::Status SpecTooLarge(size_t bytes) {
  return absl::InvalidArgumentError(
      absl::StrCat("spec: ", bytes, " bytes of YAML; at most ", Client::kMaxSpecBytes));
}

}  // namespace

void FillFromEnvironment(ClientOptions* options) {
  const std::pair<const char*, std::string*> vars[] = {{"RUNG_TOKEN", &options->token},
                                                       {"RUNG_CA", &options->ca_file},
                                                       {"RUNG_CERT", &options->cert_file},
                                                       {"RUNG_KEY", &options->key_file}};
  for (const auto& [name, field] : vars) {
    const char* v = std::getenv(name);
    if (field->empty() && v != nullptr) *field = v;
  }
}

bool IsUnreachable(const absl::Status& status) {
  return status.GetPayload(kUnreachableUrl).has_value();
}

struct Client::Impl {
  ClientOptions options;
  ConnectOptions connect;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::ExperimentService::Stub> stub;
  std::unique_ptr<v1::AdminService::Stub> admin;
  std::string client_id;
  std::mutex mu;
  int64_t last_seq = 0;                       // of the last report
  std::map<std::string, std::string> holder;  // trial id -> the client_id that asked for it
  std::mt19937_64 jitter{std::random_device{}()};

  // Calls `method` with the options' timeout (or `timeout` when given). A call that is
  // safe to repeat (`retry`) is tried again while rungd is unreachable or says UNAVAILABLE,
  // for up to options.retry_seconds.
  template <typename Stub, typename Req, typename Resp>
  absl::Status Call(Stub* s, grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                    const Req& req, Resp* resp, bool retry = true,
                    absl::Duration timeout = absl::ZeroDuration()) {
    const absl::Duration per_call =
        timeout > absl::ZeroDuration() ? timeout : absl::Seconds(options.timeout_seconds);
    const absl::Time give_up =
        absl::Now() + (retry ? absl::Seconds(options.retry_seconds) : absl::ZeroDuration());
    absl::Duration pause = kFirstPause;
    for (;;) {
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + per_call));
      AddToken(&ctx, connect);
      const grpc::Status status = (s->*method)(&ctx, req, resp);
      if (!retry || !Transient(status) || absl::Now() >= give_up)
        return FromGrpc(status, options.address);
      WaitToRetry(give_up, &pause);
    }
  }

  // Between two tries of a call. While the channel is not connected, waits until it is (no
  // sleeping past the moment rungd serves again, and no hammering: gRPC's reconnect
  // attempts stay about a second apart). When it is connected, rungd itself answered
  // UNAVAILABLE: pauses with jitter, doubling up to kMaxPause.
  void WaitToRetry(absl::Time give_up, absl::Duration* pause) {
    if (channel->GetState(/*try_to_connect=*/true) != GRPC_CHANNEL_READY) {
      channel->WaitForConnected(absl::ToChronoTime(give_up));
      return;
    }
    double factor;
    {
      std::lock_guard<std::mutex> l(mu);
      factor = std::uniform_real_distribution<double>(0.5, 1.5)(jitter);
    }
    absl::SleepFor(std::min(*pause * factor, give_up - absl::Now()));
    *pause = std::min(*pause * 2, kMaxPause);
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
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);  // a large experiment's trials
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  auto channel = rung::Connect(options.address, impl->connect, args);
  if (!channel.ok()) return channel.status();
  impl->channel = *channel;
  impl->stub = v1::ExperimentService::NewStub(impl->channel);
  impl->admin = v1::AdminService::NewStub(impl->channel);
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  impl->client_id = absl::StrCat(host, "-", getpid());
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

const std::string& Client::client_id() const { return impl_->client_id; }

absl::StatusOr<Experiment> Client::CreateExperiment(const std::string& spec_yaml,
                                                    const std::string& base_dir) {
  if (spec_yaml.size() > kMaxSpecBytes) return SpecTooLarge(spec_yaml.size());
  v1::CreateExperimentRequest req;
  req.set_spec_yaml(spec_yaml);
  if (!base_dir.empty()) {
    req.set_base_dir(base_dir);
  } else {
    std::error_code ec;
    const auto cwd = std::filesystem::current_path(ec);
    if (!ec) req.set_base_dir(cwd.string());
  }
  v1::Experiment e;
  auto* stub = impl_->stub.get();
  if (absl::Status s = impl_->Call(stub, &v1::ExperimentService::Stub::CreateExperiment, req, &e,
                                   /*retry=*/false);
      !s.ok()) {
    return s;
  }
  return FromProto(e);
}

absl::StatusOr<Experiment> Client::CreateExperimentFromFile(const std::string& path) {
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxSpecBytes) return SpecTooLarge(size);  // without reading it all
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return CreateExperiment(
      text.str(), std::filesystem::absolute(path).parent_path().lexically_normal().string());
}

absl::StatusOr<Experiment> Client::GetExperiment(const std::string& id) {
  v1::GetExperimentRequest req;
  req.set_id(id);
  v1::Experiment e;
  if (absl::Status s =
          impl_->Call(impl_->stub.get(), &v1::ExperimentService::Stub::GetExperiment, req, &e);
      !s.ok()) {
    return s;
  }
  return FromProto(e);
}

absl::StatusOr<std::vector<Experiment>> Client::ListExperiments() {
  v1::ListExperimentsResponse resp;
  if (absl::Status s = impl_->Call(impl_->stub.get(), &v1::ExperimentService::Stub::ListExperiments,
                                   v1::ListExperimentsRequest(), &resp);
      !s.ok()) {
    return s;
  }
  std::vector<Experiment> out;
  for (const auto& e : resp.experiments()) out.push_back(FromProto(e));
  return out;
}

namespace {

using ExperimentCall = grpc::Status (v1::ExperimentService::Stub::*)(grpc::ClientContext*,
                                                                     const v1::ExperimentRequest&,
                                                                     v1::Experiment*);

}  // namespace

#define RUNG_EXPERIMENT_CALL(Name)                                                                \
  absl::StatusOr<Experiment> Client::Name##Experiment(const std::string& id) {                    \
    v1::ExperimentRequest req;                                                                    \
    req.set_id(id);                                                                               \
    v1::Experiment e;                                                                             \
    ExperimentCall call = &v1::ExperimentService::Stub::Name##Experiment;                         \
    if (absl::Status s = impl_->Call(impl_->stub.get(), call, req, &e, /*retry=*/false); !s.ok()) \
      return s;                                                                                   \
    return FromProto(e);                                                                          \
  }
RUNG_EXPERIMENT_CALL(Cancel)
RUNG_EXPERIMENT_CALL(Pause)
RUNG_EXPERIMENT_CALL(Resume)
#undef RUNG_EXPERIMENT_CALL

absl::StatusOr<std::vector<Trial>> Client::ListTrials(const std::string& experiment_id,
                                                      const TrialQuery& query) {
  v1::ListTrialsRequest req;
  req.set_experiment_id(experiment_id);
  req.set_sort(query.sort);
  req.set_with_failures(query.with_failures);
  std::vector<Trial> out;
  // Page after page (rungd answers at most 10,000 trials a call) until `limit` or the end.
  do {
    if (query.limit > 0) req.set_limit(query.limit - static_cast<int>(out.size()));
    v1::ListTrialsResponse resp;
    if (absl::Status s =
            impl_->Call(impl_->stub.get(), &v1::ExperimentService::Stub::ListTrials, req, &resp);
        !s.ok()) {
      return s;
    }
    for (const auto& t : resp.trials()) out.push_back(FromProto(t));
    req.set_page(resp.next_page());
  } while (!req.page().empty() && (query.limit == 0 || static_cast<int>(out.size()) < query.limit));
  return out;
}

absl::StatusOr<Trial> Client::GetTrial(const std::string& trial_id) {
  v1::GetTrialRequest req;
  req.set_id(trial_id);
  v1::Trial t;
  if (absl::Status s =
          impl_->Call(impl_->stub.get(), &v1::ExperimentService::Stub::GetTrial, req, &t);
      !s.ok()) {
    return s;
  }
  return FromProto(t);
}

absl::StatusOr<std::vector<rung::Report>> Client::TrialMetrics(const std::string& trial_id) {
  v1::GetTrialMetricsRequest req;
  req.set_trial_id(trial_id);
  v1::GetTrialMetricsResponse resp;
  if (absl::Status s =
          impl_->Call(impl_->stub.get(), &v1::ExperimentService::Stub::GetTrialMetrics, req, &resp);
      !s.ok()) {
    return s;
  }
  std::vector<rung::Report> out;
  for (const auto& r : resp.reports()) out.push_back(FromProto(r));
  return out;
}

absl::StatusOr<TrialLogs> Client::GetTrialLogs(const std::string& trial_id) {
  v1::GetTrialLogsRequest req;
  req.set_trial_id(trial_id);
  v1::GetTrialLogsResponse resp;
  if (absl::Status s =
          impl_->Call(impl_->stub.get(), &v1::ExperimentService::Stub::GetTrialLogs, req, &resp);
      !s.ok()) {
    return s;
  }
  return FromProto(resp);
}

absl::StatusOr<int64_t> Client::DownloadCheckpoint(const std::string& trial_id,
                                                   const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " is not empty; give a new folder for the checkpoint"));
  }
  const std::string archive = absl::StrCat(dir, ".rung-download");
  auto stub = v1::CheckpointService::NewStub(impl_->channel);
  v1::DownloadCheckpointRequest req;
  req.set_trial_id(trial_id);
  grpc::ClientContext ctx;
  AddToken(&ctx, impl_->connect);
  v1::CheckpointChunk chunk;
  int64_t bytes = 0;
  uint32_t crc = 0;
  {
    std::ofstream out(archive, std::ios::binary | std::ios::trunc);
    if (!out) return absl::InvalidArgumentError(absl::StrCat("cannot write ", archive));
    auto reader = stub->DownloadCheckpoint(&ctx, req);
    while (reader->Read(&chunk)) {
      out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
      crc = Crc32c(crc, chunk.data().data(), chunk.data().size());
      bytes += static_cast<int64_t>(chunk.data().size());
    }
    absl::Status s = FromGrpc(reader->Finish(), impl_->options.address);
    if (!s.ok()) {
      fs::remove(archive, ec);
      return s;
    }
  }
  if (bytes != chunk.total_bytes() || crc != chunk.crc32c()) {
    fs::remove(archive, ec);
    return absl::DataLossError(absl::StrCat("the checkpoint of ", trial_id,
                                            " arrived damaged (size or CRC-32C); try again"));
  }
  absl::Status s = UnpackArchive(archive, dir);
  fs::remove(archive, ec);
  if (!s.ok()) return s;
  return bytes;
}

absl::StatusOr<std::vector<Trial>> Client::BestTrials(const std::string& experiment_id, int count) {
  v1::GetBestTrialsRequest req;
  req.set_experiment_id(experiment_id);
  req.set_count(count);
  v1::GetBestTrialsResponse resp;
  if (absl::Status s =
          impl_->Call(impl_->stub.get(), &v1::ExperimentService::Stub::GetBestTrials, req, &resp);
      !s.ok()) {
    return s;
  }
  std::vector<Trial> out;
  for (const auto& t : resp.trials()) out.push_back(FromProto(t));
  return out;
}

absl::StatusOr<AblationResults> Client::Ablation(const std::string& experiment_id) {
  v1::GetAblationRequest req;
  req.set_experiment_id(experiment_id);
  v1::AblationResults resp;
  if (absl::Status s =
          impl_->Call(impl_->stub.get(), &v1::ExperimentService::Stub::GetAblation, req, &resp);
      !s.ok()) {
    return s;
  }
  return FromProto(resp);
}

absl::StatusOr<std::vector<Worker>> Client::ListWorkers() {
  v1::ListWorkersResponse resp;
  if (absl::Status s = impl_->Call(impl_->stub.get(), &v1::ExperimentService::Stub::ListWorkers,
                                   v1::ListWorkersRequest(), &resp);
      !s.ok()) {
    return s;
  }
  std::vector<Worker> out;
  for (const v1::WorkerStatus& w : resp.workers()) out.push_back(FromProto(w));
  return out;
}

absl::Status Client::Watch(const std::string& experiment_id,
                           const std::function<bool(const Event&)>& on_event) {
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
    if (absl::Status s =
            impl_->Call(impl_->stub.get(), &v1::ExperimentService::Stub::AskTrials, req, &resp);
        !s.ok()) {
      return s;
    }
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
                                    const std::map<std::string, double>& values,
                                    const std::string& client_id) {
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
  if (absl::Status s =
          impl_->Call(impl_->stub.get(), &v1::ExperimentService::Stub::ReportTrial, req, &resp);
      !s.ok()) {
    return s;
  }
  return resp.stop();
}

absl::StatusOr<Trial> Client::Complete(const std::string& trial_id,
                                       const std::map<std::string, double>& values,
                                       const std::string& client_id) {
  v1::CompleteTrialRequest req;
  req.set_trial_id(trial_id);
  req.set_client_id(impl_->ClientFor(trial_id, client_id));
  req.mutable_values()->insert(values.begin(), values.end());
  v1::Trial t;
  if (absl::Status s =
          impl_->Call(impl_->stub.get(), &v1::ExperimentService::Stub::CompleteTrial, req, &t);
      !s.ok()) {
    return s;
  }
  return FromProto(t);
}

absl::StatusOr<Trial> Client::Fail(const std::string& trial_id, const std::string& message,
                                   const std::string& client_id) {
  v1::CompleteTrialRequest req;
  req.set_trial_id(trial_id);
  req.set_client_id(impl_->ClientFor(trial_id, client_id));
  req.set_failed(true);
  req.set_message(message);
  v1::Trial t;
  if (absl::Status s =
          impl_->Call(impl_->stub.get(), &v1::ExperimentService::Stub::CompleteTrial, req, &t);
      !s.ok()) {
    return s;
  }
  return FromProto(t);
}

absl::StatusOr<Client::TellResults> Client::Tell(const std::string& experiment_id,
                                                 const std::vector<TellReport>& reports,
                                                 const std::vector<TellCompletion>& completions,
                                                 const std::string& client_id) {
  v1::TellTrialsRequest req;
  req.set_experiment_id(experiment_id);
  const std::string& first = !reports.empty()       ? reports[0].trial_id
                             : !completions.empty() ? completions[0].trial_id
                                                    : std::string();
  req.set_client_id(impl_->ClientFor(first, client_id));
  {
    // As Report: increasing sequence numbers, so a retried call stores each report once.
    std::lock_guard<std::mutex> l(impl_->mu);
    for (const TellReport& r : reports) {
      v1::ReportTrialRequest* item = req.add_reports();
      item->set_trial_id(r.trial_id);
      item->set_step(r.step);
      item->mutable_values()->insert(r.values.begin(), r.values.end());
      impl_->last_seq = std::max(impl_->last_seq + 1, absl::ToUnixMicros(absl::Now()));
      item->set_seq(impl_->last_seq);
    }
  }
  for (const TellCompletion& c : completions) {
    v1::CompleteTrialRequest* item = req.add_completions();
    item->set_trial_id(c.trial_id);
    item->mutable_values()->insert(c.values.begin(), c.values.end());
    item->set_failed(c.failed);
    item->set_message(c.message);
  }
  v1::TellTrialsResponse resp;
  if (absl::Status s =
          impl_->Call(impl_->stub.get(), &v1::ExperimentService::Stub::TellTrials, req, &resp);
      !s.ok()) {
    return s;
  }
  TellResults out;
  auto status = [](const v1::TellResult& r) {
    return absl::Status(static_cast<absl::StatusCode>(r.code()), r.message());
  };
  for (const v1::TellResult& r : resp.reports()) {
    if (r.code() != 0) {
      out.reports.emplace_back(status(r));
    } else {
      out.reports.emplace_back(r.stop());
    }
  }
  for (const v1::TellResult& r : resp.completions()) {
    if (r.code() != 0) {
      out.completions.emplace_back(status(r));
    } else {
      out.completions.emplace_back(FromProto(r.trial()));
    }
  }
  return out;
}

absl::StatusOr<ReplayResult> Client::ReplaySearch(const std::string& experiment_id,
                                                  double timeout_seconds) {
  v1::ReplaySearchRequest req;
  req.set_experiment_id(experiment_id);
  v1::ReplaySearchResponse resp;
  if (absl::Status s =
          impl_->Call(impl_->admin.get(), &v1::AdminService::Stub::ReplaySearch, req, &resp,
                      /*retry=*/false, absl::Seconds(timeout_seconds));
      !s.ok()) {
    return s;
  }
  return FromProto(resp);
}

absl::StatusOr<BackupResult> Client::Backup(const std::string& dir, double timeout_seconds) {
  v1::BackupRequest req;
  req.set_dir(dir);
  v1::BackupResponse resp;
  if (absl::Status s = impl_->Call(impl_->admin.get(), &v1::AdminService::Stub::Backup, req, &resp,
                                   /*retry=*/false, absl::Seconds(timeout_seconds));
      !s.ok()) {
    return s;
  }
  return FromProto(resp);
}

}  // namespace rung
