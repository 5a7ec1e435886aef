#include "server/api/services.h"

#include <deque>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/spec.h"
#include "server/schedule/search_config.h"
#include "server/spec/spec.h"

namespace rung {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

namespace {

absl::Status NeedId(const std::string& id, const char* field) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": must not be empty"));
  if (id.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", id.size(), " bytes is too long for an id"));
  }
  return absl::OkStatus();
}

// A streaming call refused before it began: finishes at once with `status`.
template <typename Reactor>
class Refused final : public Reactor {
 public:
  explicit Refused(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

// One worker's stream. Reads one message at a time and hands it to the Controller; writes
// what the Controller sends, one at a time, from a queue. Deletes itself in OnDone.
class WorkerStream final : public grpc::ServerBidiReactor<v1::WorkerMessage, v1::ControllerMessage>,
                           public WorkerSink {
 public:
  WorkerStream(Controller* controller, ServerMetrics* metrics)
      : controller_(controller), metrics_(metrics) {
    StartRead(&in_);
  }

  // Called by the Outbox (one call at a time, never with the controller's lock): only queues.
  void Send(const v1::ControllerMessage& msg) override {
    absl::MutexLock l(&mu_);
    if (finished_) return;
    out_.push_back(msg);
    if (!writing_) {
      writing_ = true;
      StartWrite(&out_.front());
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      FinishOnce(grpc::Status::OK);
      return;
    }
    absl::Status s;
    if (session_ == 0) {
      if (!in_.has_register_()) {
        s = absl::InvalidArgumentError("the first message on a worker stream must be register");
      } else {
        auto session = controller_->WorkerConnected(in_.register_(), this);
        if (session.ok()) session_ = *session;
        s = session.status();
      }
    } else {
      s = controller_->HandleWorkerMessage(session_, in_);
    }
    if (!s.ok()) {
      FinishOnce(ToGrpc(s));
      return;
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    out_.pop_front();
    if (ok && !out_.empty()) {
      StartWrite(&out_.front());
      return;
    }
    writing_ = false;
    if (finish_pending_) {
      finish_pending_ = false;
      Finish(final_status_);
    }
  }

  void OnCancel() override { FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled")); }

  // rungd is shutting down: the stream ends after what is queued (the worker reconnects).
  void End(const absl::Status& why) override { FinishOnce(ToGrpc(why)); }

  void OnDone() override {
    if (session_ != 0) controller_->WorkerDisconnected(session_);
    metrics_->CountRpc("WorkerService.Connect", final_status_.error_code());
    delete this;
  }

 private:
  void FinishOnce(const grpc::Status& status) {
    absl::MutexLock l(&mu_);
    if (finished_) return;
    finished_ = true;
    final_status_ = status;
    if (writing_) {
      finish_pending_ = true;  // Finish after the write in flight completes
    } else {
      Finish(status);
    }
  }

  Controller* const controller_;
  ServerMetrics* const metrics_;
  v1::WorkerMessage in_;
  int64_t session_ = 0;  // only touched by the read callbacks, which never overlap
  absl::Mutex mu_;
  std::deque<v1::ControllerMessage> out_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_pending_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_;
};

// One WatchExperiment call: the Controller's events, written in order.
class WatchStream final : public grpc::ServerWriteReactor<v1::WatchEvent>, public WatchSink {
 public:
  WatchStream(Controller* controller, ServerMetrics* metrics, const std::string& id)
      : controller_(controller), metrics_(metrics) {
    auto handle = controller_->Watch(id, this);
    absl::MutexLock l(&mu_);
    if (!handle.ok()) {
      status_ = ToGrpc(handle.status());
      closing_ = true;
      if (!writing_) DoFinish();
      return;
    }
    handle_ = *handle;
  }

  void Send(const v1::WatchEvent& e) override {
    absl::MutexLock l(&mu_);
    if (closing_) return;
    out_.push_back(e);
    if (!writing_) {
      writing_ = true;
      StartWrite(&out_.front());
    }
  }

  void Close() override {
    absl::MutexLock l(&mu_);
    if (closing_) return;
    closing_ = true;
    if (!writing_) DoFinish();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    out_.pop_front();
    if (!ok) {
      out_.clear();
      closing_ = true;
      status_ = grpc::Status(grpc::StatusCode::CANCELLED, "watcher went away");
    }
    if (!out_.empty()) {
      StartWrite(&out_.front());
      return;
    }
    writing_ = false;
    if (closing_) DoFinish();
  }

  void OnCancel() override {
    absl::MutexLock l(&mu_);
    closing_ = true;
    status_ = grpc::Status(grpc::StatusCode::CANCELLED, "watcher went away");
    if (!writing_) DoFinish();
  }

  void OnDone() override {
    if (handle_ != 0) controller_->Unwatch(handle_);
    grpc::StatusCode code;
    {
      absl::MutexLock l(&mu_);
      code = status_.error_code();
    }
    metrics_->CountRpc("ExperimentService.WatchExperiment", code);
    delete this;
  }

 private:
  void DoFinish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status_);
  }

  Controller* const controller_;
  ServerMetrics* const metrics_;
  int64_t handle_ = 0;
  absl::Mutex mu_;
  std::deque<v1::WatchEvent> out_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerUnaryReactor* ExperimentServiceImpl::Done(grpc::CallbackServerContext* ctx,
                                                      const char* method, const absl::Status& s) {
  grpc::Status gs = ToGrpc(s);
  metrics_->CountRpc(method, gs.error_code());
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(gs);
  return reactor;
}

absl::StatusOr<Caller> ExperimentServiceImpl::Allow(grpc::CallbackServerContext* ctx,
                                                    const char* method,
                                                    const std::string& experiment_id,
                                                    const std::string& trial_id) {
  auto caller = auth_->Check(*ctx, method, Role::kUser);
  if (!caller.ok() || caller->role != Role::kUser || experiment_id.empty()) return caller;
  auto e = controller_->GetExperiment(experiment_id);
  if (e.ok() && e->owner() != caller->name) {
    // A user may use only its own experiments, and cannot tell someone else's from one that
    // does not exist: the answer is the one a missing experiment (or trial) gets.
    return absl::NotFoundError(trial_id.empty() ? absl::StrCat("no experiment ", experiment_id)
                                                : absl::StrCat("no trial ", trial_id));
  }
  return caller;
}

// The experiment a trial id belongs to, or "" when it is not a trial id.
static std::string ExperimentOf(const std::string& trial_id) {
  std::string exp;
  int index;
  return ParseTrialId(trial_id, &exp, &index) ? exp : "";
}

// Checks the caller; returns from the handler with the refusal when it may not.
#define RUNG_ALLOW(method, experiment_id)                                     \
  auto caller = Allow(ctx, "ExperimentService." method, (experiment_id), ""); \
  if (!caller.ok()) return Done(ctx, "ExperimentService." method, caller.status())
// The same for a call about one trial.
#define RUNG_ALLOW_TRIAL(method, trial_id)                                                   \
  auto caller = Allow(ctx, "ExperimentService." method, ExperimentOf(trial_id), (trial_id)); \
  if (!caller.ok()) return Done(ctx, "ExperimentService." method, caller.status())

// Finishes `reactor` with the controller's answer, counting the call. For the controller's
// asynchronous calls, whose answer comes once the change is durable.
template <typename T>
std::function<void(absl::StatusOr<T>)> Reply(grpc::ServerUnaryReactor* reactor, T* resp,
                                             ServerMetrics* metrics, const char* method) {
  return [reactor, resp, metrics, method](absl::StatusOr<T> r) {
    if (r.ok()) *resp = std::move(*r);
    grpc::Status gs = ToGrpc(r.status());
    metrics->CountRpc(method, gs.error_code());
    reactor->Finish(gs);
  };
}

// Runs `expr` (an absl::StatusOr<T>); on success moves its value into *resp.
#define RUNG_UNARY(method, expr)                                    \
  do {                                                              \
    auto result = (expr);                                           \
    if (result.ok()) *resp = std::move(result).value();             \
    return Done(ctx, "ExperimentService." method, result.status()); \
  } while (0)

grpc::ServerUnaryReactor* ExperimentServiceImpl::CreateExperiment(
    grpc::CallbackServerContext* ctx, const v1::CreateExperimentRequest* req,
    v1::Experiment* resp) {
  RUNG_ALLOW("CreateExperiment", "");
  absl::StatusOr<v1::ExperimentSpec> spec;
  if (req->has_spec()) {
    v1::ExperimentSpec s = req->spec();
    MigrateLegacyAlgorithm(&s);  // a client of rung 0.1 may still set the typed fields
    absl::Status valid = ValidateSpec(&s, req->base_dir());
    spec = valid.ok() ? absl::StatusOr<v1::ExperimentSpec>(std::move(s))
                      : absl::StatusOr<v1::ExperimentSpec>(valid);
  } else if (!req->spec_yaml().empty()) {
    spec = ParseSpecYaml(req->spec_yaml(), req->base_dir());
  } else {
    spec = absl::InvalidArgumentError("spec: give spec or spec_yaml");
  }
  if (req->base_dir().size() > 4096) {
    spec = absl::InvalidArgumentError(
        absl::StrCat("base_dir: ", req->base_dir().size(), " bytes; at most 4096"));
  }
  if (spec.ok() && caller->role == Role::kUser) {
    // A user builds only on its own experiments, and cannot tell someone else's from a
    // missing one: the refusal is the one a missing experiment gets from the controller.
    std::vector<std::pair<const char*, std::string>> refs;
    for (const std::string& id : spec->algorithm().warm_start())
      refs.push_back({"algorithm.warm_start", id});
    const std::string& base = spec->ablation().base_from_experiment();
    if (!base.empty()) refs.push_back({"base.from_experiment", base});
    for (const auto& [field, id] : refs) {
      auto e = controller_->GetExperiment(id);
      if (e.ok() && e->owner() != caller->name) {
        spec = absl::InvalidArgumentError(absl::StrCat(field, ": no experiment ", id));
        break;
      }
    }
  }
  if (!spec.ok()) return Done(ctx, "ExperimentService.CreateExperiment", spec.status());
  auto* reactor = ctx->DefaultReactor();
  controller_->CreateExperiment(
      std::move(spec).value(), caller->name,
      Reply(reactor, resp, metrics_, "ExperimentService.CreateExperiment"));
  return reactor;
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::GetExperiment(grpc::CallbackServerContext* ctx,
                                                               const v1::GetExperimentRequest* req,
                                                               v1::Experiment* resp) {
  RUNG_ALLOW("GetExperiment", req->id());
  if (auto s = NeedId(req->id(), "id"); !s.ok())
    return Done(ctx, "ExperimentService.GetExperiment", s);
  RUNG_UNARY("GetExperiment", controller_->GetExperiment(req->id()));
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::ListExperiments(
    grpc::CallbackServerContext* ctx, const v1::ListExperimentsRequest*,
    v1::ListExperimentsResponse* resp) {
  RUNG_ALLOW("ListExperiments", "");
  for (auto& e : controller_->ListExperiments()) {
    if (caller->role == Role::kUser && e.owner() != caller->name) continue;  // a user sees its own
    *resp->add_experiments() = std::move(e);
  }
  return Done(ctx, "ExperimentService.ListExperiments", absl::OkStatus());
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::CancelExperiment(grpc::CallbackServerContext* ctx,
                                                                  const v1::ExperimentRequest* req,
                                                                  v1::Experiment* resp) {
  RUNG_ALLOW("CancelExperiment", req->id());
  if (auto s = NeedId(req->id(), "id"); !s.ok())
    return Done(ctx, "ExperimentService.CancelExperiment", s);
  auto* reactor = ctx->DefaultReactor();
  controller_->CancelExperiment(
      req->id(), Reply(reactor, resp, metrics_, "ExperimentService.CancelExperiment"));
  return reactor;
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::PauseExperiment(grpc::CallbackServerContext* ctx,
                                                                 const v1::ExperimentRequest* req,
                                                                 v1::Experiment* resp) {
  RUNG_ALLOW("PauseExperiment", req->id());
  if (auto s = NeedId(req->id(), "id"); !s.ok())
    return Done(ctx, "ExperimentService.PauseExperiment", s);
  auto* reactor = ctx->DefaultReactor();
  controller_->PauseExperiment(req->id(),
                               Reply(reactor, resp, metrics_, "ExperimentService.PauseExperiment"));
  return reactor;
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::ResumeExperiment(grpc::CallbackServerContext* ctx,
                                                                  const v1::ExperimentRequest* req,
                                                                  v1::Experiment* resp) {
  RUNG_ALLOW("ResumeExperiment", req->id());
  if (auto s = NeedId(req->id(), "id"); !s.ok())
    return Done(ctx, "ExperimentService.ResumeExperiment", s);
  auto* reactor = ctx->DefaultReactor();
  controller_->ResumeExperiment(
      req->id(), Reply(reactor, resp, metrics_, "ExperimentService.ResumeExperiment"));
  return reactor;
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::ListTrials(grpc::CallbackServerContext* ctx,
                                                            const v1::ListTrialsRequest* req,
                                                            v1::ListTrialsResponse* resp) {
  RUNG_ALLOW("ListTrials", req->experiment_id());
  if (auto s = NeedId(req->experiment_id(), "experiment_id"); !s.ok())
    return Done(ctx, "ExperimentService.ListTrials", s);
  auto page = controller_->ListTrials(*req);
  if (page.ok()) *resp = std::move(*page);
  return Done(ctx, "ExperimentService.ListTrials", page.status());
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::GetTrial(grpc::CallbackServerContext* ctx,
                                                          const v1::GetTrialRequest* req,
                                                          v1::Trial* resp) {
  RUNG_ALLOW_TRIAL("GetTrial", req->id());
  if (auto s = NeedId(req->id(), "id"); !s.ok()) return Done(ctx, "ExperimentService.GetTrial", s);
  RUNG_UNARY("GetTrial", controller_->GetTrial(req->id()));
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::GetTrialMetrics(
    grpc::CallbackServerContext* ctx, const v1::GetTrialMetricsRequest* req,
    v1::GetTrialMetricsResponse* resp) {
  RUNG_ALLOW_TRIAL("GetTrialMetrics", req->trial_id());
  if (auto s = NeedId(req->trial_id(), "trial_id"); !s.ok())
    return Done(ctx, "ExperimentService.GetTrialMetrics", s);
  auto reports = controller_->GetTrialMetrics(req->trial_id());
  if (reports.ok()) {
    for (auto& r : *reports) *resp->add_reports() = std::move(r);
  }
  return Done(ctx, "ExperimentService.GetTrialMetrics", reports.status());
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::GetCurves(grpc::CallbackServerContext* ctx,
                                                           const v1::GetCurvesRequest* req,
                                                           v1::GetCurvesResponse* resp) {
  RUNG_ALLOW("GetCurves", req->experiment_id());
  if (auto s = NeedId(req->experiment_id(), "experiment_id"); !s.ok())
    return Done(ctx, "ExperimentService.GetCurves", s);
  if (req->max_points() < 0) {
    return Done(ctx, "ExperimentService.GetCurves",
                absl::InvalidArgumentError(
                    absl::StrCat("max_points: ", req->max_points(), " is negative; 0 is all")));
  }
  RUNG_UNARY("GetCurves", controller_->GetCurves(*req));
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::ListWorkers(grpc::CallbackServerContext* ctx,
                                                             const v1::ListWorkersRequest*,
                                                             v1::ListWorkersResponse* resp) {
  RUNG_ALLOW("ListWorkers", "");
  std::set<std::string> own;  // a user sees which of its own trials run where, not others'
  if (caller->role == Role::kUser) {
    for (const v1::Experiment& e : controller_->ListExperiments()) {
      if (e.owner() == caller->name) own.insert(e.id());
    }
  }
  for (v1::WorkerStatus& w : controller_->ListWorkers()) {
    if (caller->role == Role::kUser) {
      for (v1::WorkerTrial& t : *w.mutable_running()) {
        if (own.count(t.experiment_id()) == 0) {
          t.clear_trial_id();
          t.clear_experiment_id();
        }
      }
    }
    *resp->add_workers() = std::move(w);
  }
  return Done(ctx, "ExperimentService.ListWorkers", absl::OkStatus());
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::GetBestTrials(grpc::CallbackServerContext* ctx,
                                                               const v1::GetBestTrialsRequest* req,
                                                               v1::GetBestTrialsResponse* resp) {
  RUNG_ALLOW("GetBestTrials", req->experiment_id());
  if (auto s = NeedId(req->experiment_id(), "experiment_id"); !s.ok())
    return Done(ctx, "ExperimentService.GetBestTrials", s);
  if (req->count() < 0) {
    return Done(ctx, "ExperimentService.GetBestTrials",
                absl::InvalidArgumentError(
                    absl::StrCat("count: must not be negative (got ", req->count(), ")")));
  }
  auto best = controller_->GetBestTrials(req->experiment_id(), req->count());
  if (best.ok()) {
    for (auto& t : *best) *resp->add_trials() = std::move(t);
  }
  return Done(ctx, "ExperimentService.GetBestTrials", best.status());
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::GetTrialLogs(grpc::CallbackServerContext* ctx,
                                                              const v1::GetTrialLogsRequest* req,
                                                              v1::GetTrialLogsResponse* resp) {
  RUNG_ALLOW_TRIAL("GetTrialLogs", req->trial_id());
  if (auto s = NeedId(req->trial_id(), "trial_id"); !s.ok())
    return Done(ctx, "ExperimentService.GetTrialLogs", s);
  auto t = controller_->GetTrial(req->trial_id());
  if (t.ok()) {
    resp->set_worker_id(t->worker_id());
    resp->set_stdout_path(t->stdout_path());
    resp->set_stderr_path(t->stderr_path());
    resp->set_stderr_tail(t->message());
  }
  return Done(ctx, "ExperimentService.GetTrialLogs", t.status());
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::GetAblation(grpc::CallbackServerContext* ctx,
                                                             const v1::GetAblationRequest* req,
                                                             v1::AblationResults* resp) {
  RUNG_ALLOW("GetAblation", req->experiment_id());
  if (auto s = NeedId(req->experiment_id(), "experiment_id"); !s.ok())
    return Done(ctx, "ExperimentService.GetAblation", s);
  RUNG_UNARY("GetAblation", controller_->GetAblation(req->experiment_id()));
}

grpc::ServerWriteReactor<v1::WatchEvent>* ExperimentServiceImpl::WatchExperiment(
    grpc::CallbackServerContext* ctx, const v1::WatchExperimentRequest* req) {
  const absl::Status id_ok = NeedId(req->id(), "id");
  absl::StatusOr<Caller> caller =
      id_ok.ok() ? Allow(ctx, "ExperimentService.WatchExperiment", req->id(), "")
                 : absl::StatusOr<Caller>(id_ok);
  if (!caller.ok()) {
    grpc::Status gs = ToGrpc(caller.status());
    metrics_->CountRpc("ExperimentService.WatchExperiment", gs.error_code());
    return new Refused<grpc::ServerWriteReactor<v1::WatchEvent>>(gs);
  }
  return new WatchStream(controller_, metrics_, req->id());
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::AskTrials(grpc::CallbackServerContext* ctx,
                                                           const v1::AskTrialsRequest* req,
                                                           v1::AskTrialsResponse* resp) {
  RUNG_ALLOW("AskTrials", req->experiment_id());
  if (auto s = NeedId(req->experiment_id(), "experiment_id"); !s.ok())
    return Done(ctx, "ExperimentService.AskTrials", s);
  // The answer may wait for a model's proposal: the controller finishes the call then.
  auto* reactor = ctx->DefaultReactor();
  controller_->AskTrials(*req, Reply(reactor, resp, metrics_, "ExperimentService.AskTrials"));
  return reactor;
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::ReportTrial(grpc::CallbackServerContext* ctx,
                                                             const v1::ReportTrialRequest* req,
                                                             v1::ReportTrialResponse* resp) {
  RUNG_ALLOW_TRIAL("ReportTrial", req->trial_id());
  if (auto s = NeedId(req->trial_id(), "trial_id"); !s.ok())
    return Done(ctx, "ExperimentService.ReportTrial", s);
  if (auto s = CheckSizes(*req, "", /*max_string=*/4096, /*max_repeated=*/10000); !s.ok()) {
    return Done(ctx, "ExperimentService.ReportTrial", s);
  }
  auto* reactor = ctx->DefaultReactor();
  controller_->ReportTrial(*req, Reply(reactor, resp, metrics_, "ExperimentService.ReportTrial"));
  return reactor;
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::CompleteTrial(grpc::CallbackServerContext* ctx,
                                                               const v1::CompleteTrialRequest* req,
                                                               v1::Trial* resp) {
  RUNG_ALLOW_TRIAL("CompleteTrial", req->trial_id());
  if (auto s = NeedId(req->trial_id(), "trial_id"); !s.ok())
    return Done(ctx, "ExperimentService.CompleteTrial", s);
  if (auto s = CheckSizes(*req, "", /*max_string=*/64 << 10, /*max_repeated=*/10000); !s.ok()) {
    return Done(ctx, "ExperimentService.CompleteTrial", s);
  }
  auto* reactor = ctx->DefaultReactor();
  controller_->CompleteTrial(*req,
                             Reply(reactor, resp, metrics_, "ExperimentService.CompleteTrial"));
  return reactor;
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::TellTrials(grpc::CallbackServerContext* ctx,
                                                            const v1::TellTrialsRequest* req,
                                                            v1::TellTrialsResponse* resp) {
  RUNG_ALLOW("TellTrials", req->experiment_id());
  if (auto s = NeedId(req->experiment_id(), "experiment_id"); !s.ok())
    return Done(ctx, "ExperimentService.TellTrials", s);
  if (req->reports_size() + req->completions_size() > 10000) {
    return Done(ctx, "ExperimentService.TellTrials",
                absl::InvalidArgumentError(
                    absl::StrCat("at most 10000 reports and completions a call (got ",
                                 req->reports_size() + req->completions_size(), ")")));
  }
  if (auto s = CheckSizes(*req, "", /*max_string=*/64 << 10, /*max_repeated=*/10000); !s.ok()) {
    return Done(ctx, "ExperimentService.TellTrials", s);
  }
  auto* reactor = ctx->DefaultReactor();
  controller_->TellTrials(*req, Reply(reactor, resp, metrics_, "ExperimentService.TellTrials"));
  return reactor;
}

namespace {

// Finishes an admin call with `result`, counting it.
template <typename T>
grpc::ServerUnaryReactor* FinishAdmin(grpc::CallbackServerContext* ctx, ServerMetrics* metrics,
                                      const char* method, absl::StatusOr<T> result, T* resp) {
  if (result.ok()) *resp = std::move(*result);
  grpc::Status gs = ToGrpc(result.status());
  metrics->CountRpc(method, gs.error_code());
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(gs);
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* AdminServiceImpl::ReplaySearch(grpc::CallbackServerContext* ctx,
                                                         const v1::ReplaySearchRequest* req,
                                                         v1::ReplaySearchResponse* resp) {
  if (auto c = auth_->Check(*ctx, "AdminService.ReplaySearch", Role::kAdmin); !c.ok()) {
    return FinishAdmin(ctx, metrics_, "AdminService.ReplaySearch",
                       absl::StatusOr<v1::ReplaySearchResponse>(c.status()), resp);
  }
  return FinishAdmin(ctx, metrics_, "AdminService.ReplaySearch",
                     controller_->ReplaySearch(req->experiment_id()), resp);
}

grpc::ServerUnaryReactor* AdminServiceImpl::Backup(grpc::CallbackServerContext* ctx,
                                                   const v1::BackupRequest* req,
                                                   v1::BackupResponse* resp) {
  if (auto c = auth_->Check(*ctx, "AdminService.Backup", Role::kAdmin); !c.ok()) {
    return FinishAdmin(ctx, metrics_, "AdminService.Backup",
                       absl::StatusOr<v1::BackupResponse>(c.status()), resp);
  }
  return FinishAdmin(ctx, metrics_, "AdminService.Backup", controller_->Backup(req->dir()), resp);
}

grpc::ServerBidiReactor<v1::WorkerMessage, v1::ControllerMessage>* WorkerServiceImpl::Connect(
    grpc::CallbackServerContext* ctx) {
  if (auto c = auth_->Check(*ctx, "WorkerService.Connect", Role::kWorker); !c.ok()) {
    grpc::Status gs = ToGrpc(c.status());
    metrics_->CountRpc("WorkerService.Connect", gs.error_code());
    return new Refused<grpc::ServerBidiReactor<v1::WorkerMessage, v1::ControllerMessage>>(gs);
  }
  return new WorkerStream(controller_, metrics_);
}

}  // namespace rung
