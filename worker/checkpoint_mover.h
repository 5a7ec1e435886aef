// Moves trial checkpoint folders between this worker and rungd (CheckpointService), off the
// agent's I/O loop: a download before an attempt starts, an upload after it exits. Two
// threads take the jobs in order, so one large upload does not hold up a download. A broken
// call is resumed where it stopped (an upload from what rungd says it holds, a download from
// what the local archive holds), with capped backoff while rungd is unreachable; a refusal (a
// stale attempt, a checkpoint over the size limit, one rungd no longer keeps) ends the job
// with rungd's words.
//
// A folder that matches a checkpoint (it was just uploaded from, or unpacked from, that
// archive, and no process has run in it since) carries a marker file; fetching that same
// checkpoint again is then free.
#ifndef RUNG_WORKER_CHECKPOINT_MOVER_H_
#define RUNG_WORKER_CHECKPOINT_MOVER_H_

#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/connect.h"
#include "grpcpp/grpcpp.h"
#include "rung/v1/worker_service.grpc.pb.h"

namespace rung {

struct TransferDone {
  std::string trial_id;
  int attempt = 0;
  bool upload = false;
  // upload: the checkpoint rungd stored; download: the one now in the folder.
  absl::StatusOr<v1::CheckpointRef> result;
  int64_t bytes = 0;  // over the network (a download already in place moves none)
  double seconds = 0;
};

// What the Supervisor asks of the mover (the real one below; tests give their own).
class CheckpointTransfers {
 public:
  virtual ~CheckpointTransfers() = default;
  // Fills `dir` (emptied first) with checkpoint `ref` of the trial, for `attempt`.
  virtual void Fetch(const std::string& trial_id, int attempt, const v1::CheckpointRef& ref,
                     const std::string& dir) = 0;
  // Stores `dir` in rungd as the checkpoint the trial's `attempt` left.
  virtual void Store(const std::string& trial_id, int attempt, const std::string& dir) = 0;
};

// The marker file that says which checkpoint `dir` holds ("" when none is known).
std::string CheckpointMarker(const std::string& dir);

class CheckpointMover final : public CheckpointTransfers {
 public:
  // `scratch`: a folder for archives in transit. `wake` is called (from the mover's thread)
  // when a job is done; TakeDone() then has it.
  CheckpointMover(std::shared_ptr<grpc::Channel> channel, ConnectOptions connect,
                  std::string worker_id, std::string scratch, std::function<void()> wake);
  ~CheckpointMover() override;  // abandons what is queued; waits for the job in progress

  void Fetch(const std::string& trial_id, int attempt, const v1::CheckpointRef& ref,
             const std::string& dir) override;
  void Store(const std::string& trial_id, int attempt, const std::string& dir) override;
  std::vector<TransferDone> TakeDone();

 private:
  struct Job {
    bool upload = false;
    std::string trial_id;
    int attempt = 0;
    v1::CheckpointRef ref;
    std::string dir;
  };
  void Loop();
  TransferDone Run(const Job& job);
  absl::StatusOr<v1::CheckpointRef> Upload(const Job& job, int64_t* moved);
  absl::StatusOr<v1::CheckpointRef> Download(const Job& job, int64_t* moved);
  // Waits before the next try of a call that failed with `s` (`backoff` grows while rungd
  // is unreachable); false when it is not worth another (a refusal, too many broken uploads,
  // or the mover is stopping).
  bool Retry(const absl::Status& s, int* tries, int* backoff);

  std::unique_ptr<v1::CheckpointService::Stub> stub_;
  const ConnectOptions connect_;
  const std::string worker_id_;
  const std::string scratch_;
  const std::function<void()> wake_;
  absl::Mutex mu_;
  std::deque<Job> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<TransferDone> done_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);  // in flight, to cancel
  std::vector<std::thread> threads_;
};

}  // namespace rung

#endif  // RUNG_WORKER_CHECKPOINT_MOVER_H_
