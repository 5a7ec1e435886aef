// The Controller's part in checkpoints that travel: who may upload, what can be downloaded,
// and which archives are still needed. The bytes are CheckpointFiles' and CheckpointService's.
#include <algorithm>
#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "server/schedule/controller.h"
#include "server/schedule/results.h"

namespace rung {

using v1::Trial;

namespace {

// The ended trials whose checkpoints stay: the trial.keep_checkpoints best completed ones.
std::vector<Trial> KeptOnceEnded(const ExperimentRun& run) {
  const int keep = run.spec().trial().keep_checkpoints();
  if (keep <= 0) return {};  // BestTrials would take 0 as "the best one"
  return BestTrials(run.spec(), run.trials(), keep);
}

// The trial whose attempt wrote the archive `t.checkpoint()` names: t itself, or the member
// of a PBT population it took the checkpoint from.
const std::string& ArchiveOwner(const Trial& t) {
  return t.checkpoint().trial_id().empty() ? t.id() : t.checkpoint().trial_id();
}

// A trial of `run` that has not ended and starts its next attempt from the archive of
// `trial_id`'s attempt `attempt`, or null.
const Trial* WaitingOn(const ExperimentRun& run, const std::string& trial_id, int attempt) {
  for (int i = 1; i <= run.trials().size(); ++i) {
    const Trial* t = run.trials().Live(i);  // packed ones have ended
    if (t != nullptr && !t->id().empty() && !TrialTerminal(t->state()) &&
        t->checkpoint().attempt() == attempt && ArchiveOwner(*t) == trial_id) {
      return t;
    }
  }
  return nullptr;
}

}  // namespace

bool CheckpointsTravel(const v1::ExperimentSpec& spec) {
  return spec.trial().checkpoint_root().empty() && spec.execution() != "external" &&
         (spec.execution() == "hopper" || TrainsInSegments(spec));
}

absl::StatusOr<std::string> Controller::CheckpointUploadTarget(const std::string& trial_id,
                                                               int attempt,
                                                               const std::string& worker_id) {
  absl::MutexLock l(&mu_);
  ExperimentRun* run = nullptr;
  ASSIGN_OR_RETURN(Trial * t, FindTrialLocked(trial_id, &run));
  if (!CheckpointsTravel(run->spec())) {
    return absl::FailedPreconditionError(
        absl::StrCat("experiment ", run->id(), " does not keep its checkpoints in rungd"));
  }
  if (!TrialActive(t->state()) || t->attempt() != attempt || t->worker_id() != worker_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "trial ", trial_id, " attempt ", attempt, " does not run on worker ", worker_id,
        " (now: attempt ", t->attempt(), ", ",
        t->worker_id().empty() ? "no worker" : t->worker_id(), "); its checkpoint is not stored"));
  }
  return run->id();
}

absl::StatusOr<std::pair<std::string, v1::CheckpointRef>> Controller::CheckpointOf(
    const std::string& trial_id, int attempt) {
  absl::MutexLock l(&mu_);
  ExperimentRun* run = nullptr;
  ASSIGN_OR_RETURN(Trial * t, FindTrialLocked(trial_id, &run));
  if (attempt != 0 && CheckpointsTravel(run->spec())) {
    // Another member of a population continues from it (it exploited this trial).
    if (const Trial* taker = WaitingOn(*run, trial_id, attempt); taker != nullptr) {
      return std::make_pair(run->id(), taker->checkpoint());
    }
  }
  if (TrialTerminal(t->state()) && CheckpointsTravel(run->spec())) {
    // Only the best ended trials keep theirs.
    const int keep = run->spec().trial().keep_checkpoints();
    bool kept = false;
    for (const Trial& b : KeptOnceEnded(*run)) kept = kept || b.id() == trial_id;
    if (!kept && keep <= 0) {
      return absl::NotFoundError(
          absl::StrCat("rungd keeps no checkpoint of ", run->id(),
                       "'s trials once they end (trial.keep_checkpoints: 0)"));
    }
    if (!kept) {
      return absl::NotFoundError(
          absl::StrCat("rungd keeps the checkpoints of ", run->id(), "'s ", keep,
                       " best completed trials (trial.keep_checkpoints) once they end; ", trial_id,
                       " is not one of them"));
    }
  }
  if (t->checkpoint().attempt() == 0 || (attempt != 0 && t->checkpoint().attempt() != attempt)) {
    return absl::NotFoundError(
        attempt == 0
            ? absl::StrCat("rungd keeps no checkpoint of trial ", trial_id)
            : absl::StrCat("rungd keeps no checkpoint of trial ", trial_id, " attempt ", attempt));
  }
  return std::make_pair(run->id(), t->checkpoint());
}

void Controller::CollectCheckpoints() {
  if (options_.checkpoints == nullptr) return;
  std::map<std::string, CheckpointFiles::Keep> keep;
  // Uploads that begin after the trials are read below are not in `keep`: files written since
  // (less a second, for coarse timestamps) stay.
  const auto since = std::filesystem::file_time_type::clock::now() - std::chrono::seconds(1);
  uint64_t written;
  {
    absl::MutexLock l(&mu_);
    if (!store_error_.ok() || clock_->Now() < next_collect_) return;
    next_collect_ = clock_->Now() + absl::Seconds(5);
    for (ExperimentRun* run : fifo_) {
      if (!CheckpointsTravel(run->spec())) continue;
      CheckpointFiles::Keep& k = keep[run->id()];
      for (int i = 1; i <= run->trials().size(); ++i) {
        const Trial* live = run->trials().Live(i);  // packed ones have ended
        if (live == nullptr || live->id().empty()) continue;
        const Trial& t = *live;
        if (TrialActive(t.state())) k[t.id()].insert(t.attempt());  // its upload may be coming
        if (!TrialTerminal(t.state()) && t.checkpoint().attempt() > 0)
          k[ArchiveOwner(t)].insert(t.checkpoint().attempt());
      }
      for (const Trial& t : KeptOnceEnded(*run)) {
        if (t.checkpoint().attempt() > 0) k[ArchiveOwner(t)].insert(t.checkpoint().attempt());
      }
    }
    written = store_->LastWrite();
  }
  // What the lock saw is written; once it is durable no restart can bring back a trial that
  // needs an archive removed below. When it cannot be made durable, nothing is removed.
  Flush(/*sync=*/true);
  if (store_->Durable() < written) return;
  options_.checkpoints->Collect(keep, since);
}

}  // namespace rung
