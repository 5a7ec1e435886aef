// ExperimentRun in hopper mode (execution: hopper; Cerebro's model hopper parallelism): the
// trials are the configurations of a HopperSchedule, each unit of work an attempt.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "server/schedule/experiment_run.h"
#include "server/schedule/results.h"

namespace rung {

using search::HopperSchedule;
using v1::Trial;

void ExperimentRun::PutHopper(Change* c) {
  exp_.set_hopper_schedule(hopper_->Snapshot());
  PutExperiment(c);
}

void ExperimentRun::HopperAdd(int index, Change* c) {
  hopper_->Add(index);
  PutHopper(c);
}

void ExperimentRun::HopperSync(Change* c) {
  bool changed = false;
  for (int index = 1; index <= trials_.size(); ++index) {
    if (!trials_.Has(index)) continue;
    if (trials_.Packed(index) && hopper_->running(index) < 0) {  // ended, no unit open
      if (!hopper_->removed(index)) {
        hopper_->Remove(index);
        changed = true;
      }
      continue;
    }
    Trial* unpacked = trial(index);  // packed again once ended, if it is
    if (unpacked == nullptr) continue;
    Trial& t = *unpacked;
    const int running = hopper_->running(t.index());
    if (running >= 0 && !TrialActive(t.state())) {
      // Its unit did not train (a failure, a lost worker, a pause or a stop): it runs again
      // from the checkpoint the previous unit left, so no sub-epoch is trained twice.
      HopperSchedule::Unit u{t.index(), running, hopper_->epoch(t.index())};
      hopper_->Failed(u);
      changed = true;
      if (t.hops_size() > 0 && t.hops(t.hops_size() - 1).ended_unix_ms() == 0) {
        t.mutable_hops(t.hops_size() - 1)->set_ended_unix_ms(c->now_ms());
        PutTrial(t, c);
      }
    }
    if (TrialTerminal(t.state()) && !hopper_->removed(t.index())) {
      hopper_->Remove(t.index());
      changed = true;
    }
  }
  if (changed) PutHopper(c);
}

std::vector<HopperSchedule::Unit> ExperimentRun::HopperNext(const std::set<int>& free, Change* c) {
  HopperSync(c);
  // Next() changes nothing (not even its generator) when it hands out no unit.
  const std::vector<HopperSchedule::Unit> next = hopper_->Next(free);
  std::vector<HopperSchedule::Unit> units;
  for (const HopperSchedule::Unit& u : next) {
    const Trial* t = trial(u.config);
    if (t == nullptr || t->state() != v1::TRIAL_PENDING) {
      hopper_->Failed(u);  // not in a state to train (paused meanwhile): it waits
      continue;
    }
    units.push_back(u);
  }
  if (!next.empty()) PutHopper(c);
  return units;
}

void ExperimentRun::HopperUnplaced(const HopperSchedule::Unit& u, Change* c) {
  hopper_->Failed(u);
  PutHopper(c);
}

void ExperimentRun::AssignUnit(const HopperSchedule::Unit& u, const v1::Placement& where,
                               absl::Time lease_deadline, Change* c) {
  Trial& t = *trials_.Get(u.config);
  v1::Hop* hop = t.add_hops();
  hop->set_epoch(u.epoch + 1);
  hop->set_partition(u.partition);
  hop->set_worker_id(where.worker_id());
  hop->set_attempt(t.attempt());
  hop->set_started_unix_ms(c->now_ms());
  // The epoch's last partition: its validation is the epoch's report.
  hop->set_validated(static_cast<int>(hopper_->visited(u.config).size()) ==
                     spec().hopper().partitions() - 1);
  if (hop->validated()) {
    // The epoch's result must come from this unit's validation, not an earlier epoch's.
    t.mutable_last_metrics()->erase(spec().objective().metric());
    for (const v1::Objective& o : spec().objectives()) t.mutable_last_metrics()->erase(o.metric());
  }
  Assign(u.config, {where}, 0, lease_deadline, c);
}

void ExperimentRun::HopperUnitDone(Trial* t, const v1::TrialExited& m, Change* c) {
  const int running = hopper_->running(t->index());
  v1::Hop* hop = t->hops_size() > 0 ? t->mutable_hops(t->hops_size() - 1) : nullptr;
  if (running < 0 || hop == nullptr || hop->attempt() != t->attempt()) {
    RetryOrFail(t, "hopper mode: the unit this attempt trained is not in the schedule", true, c);
    return;
  }
  hop->set_done(true);
  hop->set_ended_unix_ms(c->now_ms());
  Release(t, c);
  const bool epoch_done = hopper_->Done({t->index(), running, hopper_->epoch(t->index())});
  // The next unit starts from the model this one left.
  if (m.checkpoint().attempt() == t->attempt()) *t->mutable_checkpoint() = m.checkpoint();
  t->set_epoch(hopper_->epoch(t->index()));
  PutHopper(c);
  if (epoch_done) {
    const std::string metric = MissingObjective(spec(), *t);
    if (!metric.empty()) {
      // The model has moved on; training this epoch again would see its data twice.
      t->set_state(v1::TRIAL_FAILED);
      t->set_message(absl::StrCat("epoch ", t->epoch(), " ended without a report of '", metric,
                                  "' (report it when RUNG_VALIDATE is 1)"));
      Close(t, c);
      return;
    }
    if (t->epoch() >= spec().hopper().epochs()) {
      Finish(t, c);
      return;
    }
  }
  // Back in the rotation, as the next attempt: it waits for a partition it still needs.
  t->set_state(v1::TRIAL_PENDING);
  t->set_attempt(t->attempt() + 1);
  t->set_last_report_seq(0);
  t->clear_worker_id();
  t->clear_slots();
  PutTrial(*t, c);
  PutExperiment(c);
}

}  // namespace rung
