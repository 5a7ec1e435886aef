// The Supervisor's part in checkpoints that travel through rungd: the download before an
// attempt starts and the upload after it exits (the bytes move in CheckpointMover).
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/checkpoint_archive.h"
#include "common/log.h"
#include "worker/supervisor.h"
#include "worker/supervisor_state.h"

namespace rung {

namespace fs = std::filesystem;

std::string Supervisor::CheckpointDir(const std::string& trial_id) const {
  return (fs::path(paths_.work_dir) / "trials" / trial_id / "checkpoint").string();
}

bool Supervisor::FetchCheckpoint(TrialRun* r) {
  const v1::Assignment& a = r->assignment;
  if (transfers_ == nullptr || !a.upload_checkpoint()) return false;
  const std::string dir = CheckpointDir(r->id);
  if (a.checkpoint().attempt() == 0) {
    // Nothing stored yet: the attempt starts from an empty folder, whatever an earlier
    // attempt here left in it.
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::remove(CheckpointMarker(dir), ec);
    fs::create_directories(dir, ec);
    return false;
  }
  r->fetching = true;
  transfers_->Fetch(r->id, r->attempt, a.checkpoint(), dir);
  return true;
}

void Supervisor::EndWithoutProcess(TrialRun* r, bool tell) {
  r->fetching = false;
  r->exited = true;
  FreeSlots(r);
  if (!tell || r->discard) return;
  v1::WorkerMessage m;
  v1::TrialExited* ex = m.mutable_exited();
  ex->mutable_trial()->set_trial_id(r->id);
  ex->mutable_trial()->set_attempt(r->attempt);
  ex->set_stopped(r->stop_requested);
  ex->set_worker_shutdown(r->shutdown);
  ex->set_exit_unix_us(absl::ToUnixMicros(clock_->Now()));
  ex->set_message("it ended before it started, while its checkpoint was being fetched");
  SendState(std::move(m));
  r->exit_seq = next_seq_ - 1;
}

void Supervisor::OnTransferDone(const TransferDone& d) {
  TrialRun* r = Find(d.trial_id, d.attempt);
  if (r == nullptr) return;  // acknowledged and forgotten, or replaced by a newer attempt
  if (!d.upload) {
    if (!r->fetching) return;  // it ended meanwhile
    r->fetching = false;
    if (r->discard || r->stop_requested || r->shutdown) {
      EndWithoutProcess(r, !r->discard);
    } else if (!d.result.ok()) {
      LaunchFailed(r, SpawnOptions(),
                   absl::Status(d.result.status().code(),
                                absl::StrCat("could not fetch its checkpoint (attempt ",
                                             r->assignment.checkpoint().attempt(),
                                             ") from rungd: ", d.result.status().message())));
    } else {
      StartProcesses(r);
    }
    return;
  }
  if (!r->uploading) return;
  r->uploading = false;
  FreeSlots(r);
  if (r->discard) return;
  v1::TrialExited* ex = r->pending_exit.mutable_exited();
  if (d.result.ok()) {
    *ex->mutable_checkpoint() = *d.result;
  } else {
    ex->set_checkpoint_error(std::string(d.result.status().message()));
    // Over rungd's size limit, or a folder that cannot be packed: the trial's doing.
    const absl::StatusCode code = d.result.status().code();
    ex->set_checkpoint_trials_fault(code == absl::StatusCode::kOutOfRange ||
                                    code == absl::StatusCode::kInvalidArgument);
  }
  SendState(std::move(r->pending_exit));
  r->exit_seq = next_seq_ - 1;
}

}  // namespace rung
