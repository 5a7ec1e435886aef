// The workers rungd knows: who is connected under which session, which slots each offers and
// which our trials hold, when each was last heard from (on the injected clock), and whether a
// trial could run anywhere at all. In the spirit of kudu's TSManager.
//
// Not thread-safe: the Controller calls it with its lock held. It sends nothing; what must be
// stored goes into the Change it is given.
#ifndef RUNG_SERVER_SCHEDULE_WORKER_REGISTRY_H_
#define RUNG_SERVER_SCHEDULE_WORKER_REGISTRY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rung/v1/types.pb.h"
#include "rung/v1/worker_service.pb.h"
#include "server/schedule/change.h"

namespace rung {

class WorkerRegistry {
 public:
  struct Worker {
    v1::Worker info;         // as stored
    int64_t session = 0;     // the stream's handle; 0 while disconnected
    std::string session_id;  // the worker process's own id (Register.session_id)
    absl::Time last_seen;
    std::set<int> offered;            // slots the worker said are free in its latest Pull
    std::set<int> busy;               // slots that our trials hold
    std::map<int, std::string> warm;  // offered slots with an idle runner: slot -> experiment
    bool connected() const { return session != 0; }
  };

  // A connected worker that has been silent for `live_within` is presumed gone when another
  // process registers under its name; within it, the newcomer is refused.
  explicit WorkerRegistry(absl::Duration live_within) : live_within_(live_within) {}

  // Workers from the store: all disconnected, their leases running from `now`.
  void Load(std::vector<v1::Worker> workers, absl::Time now);

  // A stream opened with `reg` under `session`. INVALID_ARGUMENT for a malformed
  // registration; ALREADY_EXISTS when another live process holds the name. The same process
  // (same session_id) reconnecting, or a new one after the old went silent, takes over.
  absl::StatusOr<Worker*> Connect(const v1::Register& reg, int64_t session, Change* c);
  // The worker of a current session, or null.
  Worker* BySession(int64_t session);
  Worker* Find(const std::string& id);
  // Ends the session (if current): the worker's trials keep their leases.
  Worker* Disconnect(int64_t session);

  // A message came from `w`.
  void Seen(Worker* w, const Change& c);
  // The worker's latest Pull: these slots are free (some with an idle runner). INVALID_ARGUMENT
  // for an unknown slot.
  absl::Status Offer(Worker* w, const v1::Pull& pull);
  // Where one trial of `tt` (resources.ranks ranks) of `experiment` fits in the offered, idle
  // slots now: a share per worker, node 0 first; empty when it does not fit. A trial of one
  // rank takes a slot with an idle runner of its experiment if there is one, else the first
  // worker (by id) with room, sparing other experiments' runners; several ranks go to as few
  // workers as possible (exactly resources.ranks_per_node each when set). Workers in `skip`
  // are left out.
  struct Share {
    Worker* worker;
    std::vector<int> slots;
    int ranks;
  };
  std::vector<Share> Place(const v1::TrialTemplate& tt, const std::string& experiment,
                           const std::set<std::string>& skip);
  // The workers a trial of `tt` that waits too long holds on to: the fewest connected workers
  // outside `skip` whose slots, busy or not, fit it; empty when no such set exists.
  std::vector<std::string> Reserve(const v1::TrialTemplate& tt,
                                   const std::set<std::string>& skip) const;
  void Take(Worker* w, const std::vector<int>& slots);
  void Release(const std::string& worker_id, const std::vector<int>& slots);
  // Workers silent past `lease_timeout` that still hold slots, or are not yet marked lost
  // (they are marked now, stored, and logged).
  std::vector<Worker*> Expired(absl::Duration lease_timeout, Change* c);

  // Why no connected worker could run a trial of `tt` however many of its slots were free,
  // e.g. "no connected worker has 2 GPUs; the largest has 1"; "" when one could.
  std::string Unschedulable(const v1::TrialTemplate& tt) const;

  // Every busy set anew, from the slots that active trials hold: worker id -> slots.
  void SetBusy(const std::map<std::string, std::set<int>>& busy);
  // Forgets every worker and session (their streams end on their next message).
  void Clear() {
    sessions_.clear();
    workers_.clear();
  }

  const std::map<std::string, std::unique_ptr<Worker>>& workers() const { return workers_; }

 private:
  // Why no connected worker could run one rank of `tt`; "" when one could.
  std::string OneRankUnschedulable(const v1::TrialTemplate& tt) const;

  const absl::Duration live_within_;
  std::map<std::string, std::unique_ptr<Worker>> workers_;
  std::map<int64_t, Worker*> sessions_;
};

}  // namespace rung

#endif  // RUNG_SERVER_SCHEDULE_WORKER_REGISTRY_H_
