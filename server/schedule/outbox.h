// The Outbox holds what the controller has to tell others until the writes behind it are on
// disk, then tells it, in the order it was decided: "nothing is visible before it is durable".
//
// Thread-safety: every method may be called from any thread, the controller's lock held or
// not: nothing the Outbox calls (sinks, Calls) takes that lock. Deliver, Drop, the Close/End
// calls and the Remove* calls wait for a delivery in progress. Sinks are called from the
// thread that delivers, one call at a time; they must not block and must not call back into
// the controller or the Outbox.
#ifndef RUNG_SERVER_SCHEDULE_OUTBOX_H_
#define RUNG_SERVER_SCHEDULE_OUTBOX_H_

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/schedule/change.h"

namespace rung {

// One worker's stream, as the Outbox sees it.
class WorkerSink {
 public:
  virtual ~WorkerSink() = default;
  virtual void Send(const v1::ControllerMessage& msg) = 0;
  // Ends the stream with `why` after what was sent (rungd is shutting down).
  virtual void End(const absl::Status& why) { (void)why; }
};

// One watcher's stream. Close() follows the last event.
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  virtual void Send(const v1::WatchEvent& event) = 0;
  virtual void Close() = 0;
};

class Outbox {
 public:
  Outbox() = default;
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Messages for `session` go to `sink` (from the effects queued after this call on) until
  // RemoveWorker(session). `ticket`: the store's last write now.
  void AddWorker(int64_t session, WorkerSink* sink, uint64_t ticket);
  // After it returns, the session's sink is never called again.
  void RemoveWorker(int64_t session);

  // A watcher of `experiment_id` under `handle`: once every effect queued before it has gone
  // out, it gets `first` (the experiment as it was when it came), then every event of that
  // experiment, then Close() when the experiment settles (`settled`: right after `first`).
  // `ticket`: the store's last write when `first` was taken.
  void AddWatcher(int64_t handle, const std::string& experiment_id, WatchSink* sink,
                  std::vector<v1::WatchEvent> first, bool settled, uint64_t ticket);
  // After it returns, the watcher's sink is never called again.
  void RemoveWatcher(int64_t handle);
  // Whether anyone watches the experiment (or is about to).
  bool Watched(const std::string& experiment_id) const;

  // Queues `effects`, to go out once every write up to `ticket` is durable. TellWorker
  // effects must name their session (0: dropped).
  void Push(uint64_t ticket, std::vector<Effect> effects);
  // Sends, in order, every queued effect whose ticket is at most `durable`.
  void Deliver(uint64_t durable);
  // The writes behind every queued effect will never be durable (a write or fsync failed, or
  // rungd reloaded its state): Calls run with `why`, watchers not yet started get Close(),
  // worker streams not yet started get End(why), the rest is dropped. Workers resend what was
  // not acknowledged.
  void Drop(const absl::Status& why);
  // Every watcher gets Close() and is forgotten (they watch again and see the reloaded state).
  // Returns how many there were.
  int CloseAllWatchers();
  // Every worker stream gets End(why) and is forgotten. Returns how many there were.
  int EndAllWorkers(const absl::Status& why);
  // Effects queued and not yet delivered, for tests and /metrics.
  size_t Pending() const;

 private:
  struct AttachWorker {
    int64_t session;
    WorkerSink* sink;
  };
  struct AttachWatcher {
    int64_t handle;
    std::string experiment_id;
    WatchSink* sink;
    std::vector<v1::WatchEvent> first;
    bool settled;
  };
  struct Item {
    uint64_t ticket;
    std::variant<Effect, AttachWorker, AttachWatcher> what;
  };
  struct Watcher {
    std::string experiment_id;
    WatchSink* sink;
  };

  void Send(Item* item) ABSL_EXCLUSIVE_LOCKS_REQUIRED(deliver_mu_);
  void SendEffect(Effect* e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(deliver_mu_);
  // True (and forgets it) when `handle` was removed before its attach was delivered.
  bool Cancelled(int64_t handle) ABSL_LOCKS_EXCLUDED(mu_);
  void Unwatched(const std::string& experiment_id) ABSL_LOCKS_EXCLUDED(mu_);

  // Held while sinks are called; taken before mu_ when both are needed.
  absl::Mutex deliver_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::map<int64_t, WorkerSink*> workers_ ABSL_GUARDED_BY(deliver_mu_);
  std::map<int64_t, Watcher> watchers_ ABSL_GUARDED_BY(deliver_mu_);

  mutable absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> watched_ ABSL_GUARDED_BY(mu_);  // watchers per experiment
  std::set<int64_t> cancelled_ ABSL_GUARDED_BY(mu_);         // removed before attached
  std::set<int64_t> queued_ ABSL_GUARDED_BY(mu_);            // attaches still queued
};

}  // namespace rung

#endif  // RUNG_SERVER_SCHEDULE_OUTBOX_H_
