// ExperimentRun with population-based training (algorithm: pbt or pb2): the trials are the
// members, each training in segments; at a member's ready point the searcher continues it,
// perhaps with another member's checkpoint and new parameters, and Trial.segments keeps the
// lineage.
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "server/schedule/experiment_run.h"
#include "server/schedule/search_config.h"
#include "server/search/algorithm.h"

namespace rung {

using v1::Trial;

bool PopulationBased(const v1::ExperimentSpec& spec) {
  for (const search::AlgorithmInfo* a : search::Algorithms()) {
    if (a->name == spec.algorithm().name()) return a->population;
  }
  return false;
}

bool TrainsInSegments(const v1::ExperimentSpec& spec) {
  return PopulationBased(spec) || spec.algorithm().early_stopping().mode() == "promote";
}

void ExperimentRun::BeginSegment(Trial* t, double start, const std::string& parent_trial_id,
                                 double parent_resource, int parent_attempt, Change* c) {
  if (t->segments_size() > 0) EndSegment(t, c->now_ms());
  v1::Segment* s = t->add_segments();
  s->set_start(start);
  s->set_end(t->budget());
  *s->mutable_params() = t->params();
  s->set_parent_trial_id(parent_trial_id);
  s->set_parent_resource(parent_resource);
  s->set_parent_attempt(parent_attempt);
  s->set_attempt(t->attempt());
  s->set_started_unix_ms(c->now_ms());
}

void ExperimentRun::EndSegment(Trial* t, int64_t now_ms) {
  if (t->segments_size() == 0) return;
  v1::Segment* s = t->mutable_segments(t->segments_size() - 1);
  if (s->ended_unix_ms() == 0) s->set_ended_unix_ms(now_ms);
}

void ExperimentRun::SegmentReport(Trial* t, double value) {
  if (t->segments_size() == 0) return;
  v1::Segment* s = t->mutable_segments(t->segments_size() - 1);
  s->set_has_value(true);
  s->set_value(value);
}

void ExperimentRun::ContinueTrial(const search::Continue& cont, Change* c) {
  Trial* t = trial(cont.index + 1);
  if (t == nullptr || t->state() != v1::TRIAL_WAITING) return;
  // It runs again, resuming from its checkpoint folder (or a donor's), to its next budget.
  const double start = t->budget();
  t->set_state(v1::TRIAL_PENDING);
  t->set_budget(cont.budget);
  Requeue(t);
  if (!cont.params.empty()) {
    t->clear_params();
    for (const auto& [k, v] : cont.params) (*t->mutable_params())[k] = FromSearch(v);
  }
  if (!PopulationBased(spec())) {
    queue_.push_front(t->index());  // promoted: ahead of the rest
    PutTrial(*t, c);
    return;
  }
  std::string parent;
  double parent_resource = 0;
  int parent_attempt = 0;
  if (const Trial* donor = cont.from >= 0 ? trial(cont.from + 1) : nullptr; donor != nullptr) {
    if (donor->checkpoint().attempt() > 0) {
      // The donor's archive: rungd keeps it while this reference does
      // (Controller::CollectCheckpoints). A donor that has not trained since it exploited
      // holds its own donor's, and that member's model is the parent.
      *t->mutable_checkpoint() = donor->checkpoint();
      if (t->checkpoint().trial_id().empty()) t->mutable_checkpoint()->set_trial_id(donor->id());
      parent = t->checkpoint().trial_id();
      parent_resource = cont.from_resource;
      parent_attempt = t->checkpoint().attempt();
      // Its own old checkpoint, come back through a donor, is its own.
      if (parent == t->id()) t->mutable_checkpoint()->clear_trial_id();
    } else {
      Log(LogLevel::kWarning,
          absl::StrCat(t->id(), " takes ", donor->id(),
                       "'s parameters, but rungd holds no checkpoint of it; it goes on from "
                       "its own"));
    }
  }
  BeginSegment(t, parent.empty() ? start : parent_resource, parent, parent_resource, parent_attempt,
               c);
  // Behind the members already waiting for a slot: the population trains in turn.
  queue_.push_back(t->index());
  PutTrial(*t, c);
}

}  // namespace rung
