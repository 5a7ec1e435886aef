// The Controller's dispatch in hopper mode: free partitions get units of the configurations
// that still need them (the choice is the experiment's HopperSchedule's).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/schedule/controller.h"

namespace rung {

void Controller::PlaceHopperLocked(ExperimentRun* run, const std::set<std::string>& skip,
                                   Change* c) {
  // The rotation: the searcher's trials, up to budget.max_concurrent at once.
  for (;;) {
    std::string why;
    const int index = NextTrialLocked(run, c, &why);
    if (index == 0) break;
    run->HopperAdd(index, c);
  }
  const int partitions = run->spec().hopper().partitions();
  // Partitions a connected worker (outside `skip`) holds, with a slot free for them now.
  std::map<int, std::set<std::string>> holders;
  for (const auto& [id, w] : registry_.workers()) {
    if (!w->connected() || skip.count(id)) continue;
    for (int p : w->info.partitions()) {
      if (p >= 0 && p < partitions) holders[p].insert(id);
    }
  }
  if (holders.empty()) return;
  auto place = [&](int partition) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::set<std::string> others = skip;
    for (const auto& [id, w] : registry_.workers()) {
      if (!holders[partition].count(id)) others.insert(id);
    }
    return registry_.Place(run->spec().trial(), run->id(), others);
  };
  std::set<int> free;
  for (const auto& [p, ids] : holders) {
    if (!place(p).empty()) free.insert(p);
  }
  if (free.empty()) return;
  for (const search::HopperSchedule::Unit& u : run->HopperNext(free, c)) {
    // Two free partitions may share one worker's last free slot: the second waits.
    std::vector<WorkerRegistry::Share> where = place(u.partition);
    if (where.empty()) {
      run->HopperUnplaced(u, c);
      continue;
    }
    registry_.Take(where[0].worker, where[0].slots);
    v1::Placement p;
    p.set_worker_id(where[0].worker->info.id());
    for (int s : where[0].slots) p.add_slots(s);
    p.set_ranks(1);
    p.set_addr(where[0].worker->info.addr());
    run->AssignUnit(u, p, c->now + options_.lease_timeout, c);
  }
}

std::string Controller::HopperUnschedulableLocked(const ExperimentRun& run) {
  const int partitions = run.spec().hopper().partitions();
  std::set<int> held;
  for (const auto& [id, w] : registry_.workers()) {
    if (!w->connected()) continue;
    for (int p : w->info.partitions()) held.insert(p);
  }
  std::vector<int> missing;
  for (int p = 0; p < partitions; ++p) {
    if (!held.count(p)) missing.push_back(p);
  }
  if (missing.empty()) return "";
  return absl::StrCat("no connected worker holds partition", missing.size() > 1 ? "s " : " ",
                      absl::StrJoin(missing, ", "), " of ", partitions,
                      " (start workers with --partitions); every model needs each of them once "
                      "per epoch");
}

}  // namespace rung
