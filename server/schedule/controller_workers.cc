// The Controller's worker streams: registration and reconciliation, the messages of a
// stream, and its end.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/spec.h"
#include "common/status.h"
#include "server/schedule/controller.h"

namespace rung {

using v1::Trial;

std::vector<v1::WorkerStatus> Controller::ListWorkers() {
  absl::MutexLock l(&mu_);
  std::map<std::string, v1::WorkerStatus> out;
  for (const auto& [id, w] : registry_.workers()) {
    v1::WorkerStatus& s = out[id];
    *s.mutable_worker() = w->info;
    if (w->connected()) s.mutable_worker()->set_state(v1::WORKER_CONNECTED);
    if (w->last_seen != absl::Time())
      s.mutable_worker()->set_last_heartbeat_unix_ms(absl::ToUnixMillis(w->last_seen));
  }
  for (const auto& [exp, run] : runs_) {
    for (int index : run->active()) {
      const Trial& t = *run->trial(index);
      for (const Hold& h : Holds(t)) {
        auto it = out.find(h.worker_id);
        if (it == out.end()) continue;
        v1::WorkerTrial* wt = it->second.add_running();
        wt->set_trial_id(t.id());
        wt->set_experiment_id(exp);
        for (int slot : h.slots) wt->add_slots(slot);
      }
    }
  }
  std::vector<v1::WorkerStatus> list;
  for (auto& [id, s] : out) list.push_back(std::move(s));
  return list;
}

absl::StatusOr<int64_t> Controller::WorkerConnected(const v1::Register& reg, WorkerSink* sink) {
  int64_t session = 0;
  absl::Status s;
  {
    absl::MutexLock l(&mu_);
    RETURN_IF_ERROR(store_error_);
    auto c = NewChange();
    session = next_handle_++;
    ASSIGN_OR_RETURN(WorkerRegistry::Worker * w, registry_.Connect(reg, session, c.get()));
    // Messages for the session go out after everything decided before it.
    outbox_.AddWorker(session, sink, store_->LastWrite());
    recheck_unschedulable_ = true;
    // Reconcile: what the worker still has against what we think it has.
    std::set<std::pair<std::string, int>> reported, wanted;
    for (const v1::TrialRef& r : reg.trials()) reported.insert({r.trial_id(), r.attempt()});
    std::set<int> busy;
    for (ExperimentRun* run : fifo_)
      run->Reconcile(w->info.id(), session, reported, c.get(), &wanted, &busy);
    w->busy = busy;
    TellWorker reply{w->info.id(), session, {}};
    v1::RegisterReply* rr = reply.msg.mutable_registered();
    rr->set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
    rr->set_lease_timeout_ms(absl::ToInt64Milliseconds(options_.lease_timeout));
    for (const v1::TrialRef& r : reg.trials()) {
      if (!wanted.count({r.trial_id(), r.attempt()})) *rr->add_kill() = r;
    }
    Log(LogLevel::kInfo, absl::StrCat("worker ", w->info.id(), " connected from ", w->info.host(),
                                      " with ", w->info.slots_size(), " slots, ", wanted.size(),
                                      " trials running, ", rr->kill_size(), " to kill"));
    c->effects.insert(c->effects.begin(), std::move(reply));  // the reply first, then stop orders
    DispatchLocked(c.get());
    s = CommitLocked(c.get());
    if (!s.ok()) registry_.Disconnect(session);
  }
  if (!s.ok()) outbox_.RemoveWorker(session);
  Flush(/*sync=*/false);
  RETURN_IF_ERROR(s);
  return session;
}

void Controller::WorkerDisconnected(int64_t session) {
  outbox_.RemoveWorker(session);
  absl::MutexLock l(&mu_);
  WorkerRegistry::Worker* w = registry_.Disconnect(session);
  if (w == nullptr) return;
  recheck_unschedulable_ = true;
  Log(LogLevel::kInfo, absl::StrCat("worker ", w->info.id(), " disconnected"));
  // Its trials keep their leases until lease_timeout passes without it coming back.
}

Trial* Controller::CurrentTrialLocked(const WorkerRegistry::Worker& w, const v1::TrialRef& ref,
                                      ExperimentRun** run) {
  auto t = FindTrialLocked(ref.trial_id(), run);
  if (!t.ok()) return nullptr;
  Trial* trial = *t;
  if (trial->attempt() != ref.attempt() || !HeldBy(*trial, w.info.id()) ||
      !TrialActive(trial->state())) {
    return nullptr;
  }
  return trial;
}

void Controller::StopStale(const WorkerRegistry::Worker& w, const v1::TrialRef& ref, Change* c) {
  // A copy we gave up on (its lease expired while the stream stayed up, say) is still
  // running there: stop it, so two copies of one trial never both run.
  TellWorker tell{w.info.id(), w.session, {}};
  *tell.msg.mutable_stop()->mutable_trial() = ref;
  tell.msg.mutable_stop()->set_reason("this attempt was given up (lease expired or trial ended)");
  c->Tell(std::move(tell));
}

absl::Status Controller::HandleReportsLocked(const WorkerRegistry::Worker& w,
                                             const v1::ReportBatch& m, Change* c) {
  // Refused whole or taken whole: check every report before anything changes.
  for (const v1::MetricReport& r : m.reports()) {
    for (const auto& [k, v] : r.values()) {
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(absl::StrCat("reports: trial ", r.trial_id(), " metric '",
                                                       k, "' is not a finite number"));
      }
    }
  }
  std::map<Trial*, ExperimentRun*> touched;
  std::set<std::pair<std::string, int>> stale;
  for (const v1::MetricReport& r : m.reports()) {
    ExperimentRun* run = nullptr;
    v1::TrialRef ref;
    ref.set_trial_id(r.trial_id());
    ref.set_attempt(r.attempt());
    Trial* t = CurrentTrialLocked(w, ref, &run);
    if (t == nullptr) {
      if (stale.insert({ref.trial_id(), ref.attempt()}).second) StopStale(w, ref, c);
      continue;
    }
    if (r.seq() <= t->last_report_seq()) continue;                            // a resend
    if (t->placements_size() > 0 && w.info.id() != t->worker_id()) continue;  // rank 0's only
    run->Report(t, r, c);
    touched[t] = run;
  }
  for (auto& [t, run] : touched) run->SaveTrial(t->index(), c);
  return absl::OkStatus();
}

void Controller::AckLocked(int64_t session, int64_t seq, Change* c) {
  // Acknowledged once on disk: the ack goes out after this change's writes, and after every
  // earlier one (a resend that changed nothing waits for what came before).
  TellWorker ack{"", session, {}};
  ack.msg.mutable_ack()->set_seq(seq);
  c->Tell(std::move(ack));
}

absl::Status Controller::HandleWorkerMessageLocked(WorkerRegistry::Worker* w,
                                                   const v1::WorkerMessage& msg, Change* c) {
  RETURN_IF_ERROR(CheckSizes(msg, "", /*max_string=*/64 << 10, /*max_repeated=*/10000));
  registry_.Seen(w, *c);
  if (msg.kind_case() == v1::WorkerMessage::kHeartbeat) return absl::OkStatus();
  RETURN_IF_ERROR(store_error_);  // before anything changes: nothing could be written
  ExperimentRun* run = nullptr;
  Trial* t = nullptr;
  switch (msg.kind_case()) {
    case v1::WorkerMessage::kPull:
      RETURN_IF_ERROR(registry_.Offer(w, msg.pull()));
      DispatchLocked(c);
      return absl::OkStatus();
    case v1::WorkerMessage::kStarted:
      t = CurrentTrialLocked(*w, msg.started().trial(), &run);
      if (t == nullptr) {
        StopStale(*w, msg.started().trial(), c);
      } else {
        run->Started(t, msg.started(), w->info.id(), c);
      }
      break;
    case v1::WorkerMessage::kReports:
      RETURN_IF_ERROR(HandleReportsLocked(*w, msg.reports(), c));
      break;
    case v1::WorkerMessage::kExited:
      t = CurrentTrialLocked(*w, msg.exited().trial(), &run);
      if (t != nullptr)
        run->Exited(t, msg.exited(), w->info.id(), c);  // else stale: handled already
      break;
    case v1::WorkerMessage::kRegister:
      return absl::InvalidArgumentError("register: sent twice on one stream");
    default:
      return absl::InvalidArgumentError("worker message: empty or of an unknown kind");
  }
  if (msg.seq() > 0) AckLocked(w->session, msg.seq(), c);
  if (msg.kind_case() == v1::WorkerMessage::kExited) DispatchLocked(c);
  return absl::OkStatus();
}

absl::Status Controller::HandleWorkerMessage(int64_t session, const v1::WorkerMessage& msg) {
  absl::Status s;
  {
    absl::MutexLock l(&mu_);
    WorkerRegistry::Worker* w = registry_.BySession(session);
    if (w == nullptr) return absl::FailedPreconditionError("stream is no longer current");
    auto c = NewChange();
    s = HandleWorkerMessageLocked(w, msg, c.get());
    if (s.code() == absl::StatusCode::kInvalidArgument && msg.seq() > 0 && store_error_.ok()) {
      // A message the worker would resend forever after every reconnect: acknowledge it so the
      // worker drops it, and say so, instead of ending the stream.
      ++worker_messages_dropped_;
      Log(LogLevel::kWarning,
          absl::StrCat("worker ", w->info.id(), " sent an invalid message (seq ", msg.seq(),
                       "); dropped it: ", s.message()));
      c = NewChange();
      AckLocked(session, msg.seq(), c.get());
      s = absl::OkStatus();
    }
    if (s.ok()) s = CommitLocked(c.get());
  }
  Flush(/*sync=*/false);
  return s;
}

}  // namespace rung
