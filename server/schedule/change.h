// One change to rungd's state in the making: the writes that make it durable and the effects
// (messages to workers, watch events, answers to callers) that may go out only once those
// writes are on disk. ExperimentRun and WorkerRegistry fill a Change; the Controller commits
// its batch and hands its effects to the Outbox, which sends them after the fsync.
#ifndef RUNG_SERVER_SCHEDULE_CHANGE_H_
#define RUNG_SERVER_SCHEDULE_CHANGE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "rung/v1/experiment_service.pb.h"
#include "rung/v1/worker_service.pb.h"
#include "server/store/store.h"

namespace rung {

// A message for one worker. `session` 0: whichever session the worker has when the change
// is committed (none connected: dropped; the worker learns on reconnect). Otherwise only that
// session gets it (an acknowledgement for a stream that has since ended is not resent).
struct TellWorker {
  std::string worker_id;
  int64_t session = 0;
  v1::ControllerMessage msg;
};

// An event for everyone watching the experiment.
struct TellWatchers {
  std::string experiment_id;
  v1::WatchEvent event;
};

// The experiment has settled (ended, no trial runs): its watchers get Close().
struct CloseWatchers {
  std::string experiment_id;
};

// Runs once the change is durable with OK, or with the error when it never will be (the
// write or its fsync failed). Answers to callers and model jobs whose seeds must be on disk
// before they start. It must not block or call into the Controller.
struct Call {
  std::function<void(const absl::Status&)> fn;
};

using Effect = std::variant<TellWorker, TellWatchers, CloseWatchers, Call>;

struct Change {
  explicit Change(absl::Time now) : now(now) {}
  Change(const Change&) = delete;
  Change& operator=(const Change&) = delete;

  const absl::Time now;
  int64_t now_ms() const { return absl::ToUnixMillis(now); }

  Store::Batch batch;
  // Records the change alters (an experiment, a trial), each put once when the change
  // commits, as it is then, however often the change altered it: by key, what puts it.
  std::map<std::string, std::function<void(Store::Batch*)>> records;
  std::vector<Effect> effects;
  // Experiments whose in-memory state this change altered: read back from the store when
  // the write fails, so that memory never runs ahead of the disk.
  std::set<std::string> touched;
  // Whether anyone watches an experiment (null: assume so): unwatched ones get no events.
  std::function<bool(const std::string& experiment_id)> watched;
  // Slots that trials of this change gave back: (worker id, slot ids).
  std::vector<std::pair<std::string, std::vector<int>>> released;
  // Experiments with trial.reuse_process that ended: every connected worker hears it, so that
  // their idle runners of it go.
  std::vector<std::string> runners_done;
  // Counters for /metrics, added once the change is committed.
  int64_t reports = 0;
  int64_t stopped_early = 0;
  int64_t lease_expirations = 0;

  void Tell(TellWorker t) { effects.emplace_back(std::move(t)); }
  // Record `key` is written by `put` when the change commits (a later call for the same key
  // replaces this one).
  void PutLater(std::string key, std::function<void(Store::Batch*)> put) {
    records[std::move(key)] = std::move(put);
  }
  // Puts the records into the batch: the last step before it is written.
  void PutRecords() {
    for (auto& [key, put] : records) put(&batch);
    records.clear();
  }
  // Nothing to write.
  bool Empty() const { return records.empty() && batch.Count() == 0; }
  bool Watching(const std::string& experiment_id) const {
    return !watched || watched(experiment_id);
  }
  void Event(const std::string& experiment_id, v1::WatchEvent e) {
    if (Watching(experiment_id)) effects.emplace_back(TellWatchers{experiment_id, std::move(e)});
  }
  void Then(std::function<void(const absl::Status&)> fn) {
    effects.emplace_back(Call{std::move(fn)});
  }
};

}  // namespace rung

#endif  // RUNG_SERVER_SCHEDULE_CHANGE_H_
