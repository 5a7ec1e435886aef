// How trials compare: which is better, what a completed trial lacks or breaks, the best
// trials of an experiment, and an ablation study's results. Pure functions of the records.
#ifndef RUNG_SERVER_SCHEDULE_RESULTS_H_
#define RUNG_SERVER_SCHEDULE_RESULTS_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rung/v1/experiment_service.pb.h"
#include "rung/v1/types.pb.h"
#include "server/schedule/trial_table.h"

namespace rung {

// The metric of the objective, or of the first of several.
const std::string& FirstObjectiveMetric(const v1::ExperimentSpec& spec);

// Whether `a` is a better objective value than `b`.
bool Better(v1::Objective::Goal goal, double a, double b);

// An objective metric the trial has no value of (its last report, or its declared result),
// or "" when it has them all.
std::string MissingObjective(const v1::ExperimentSpec& spec, const v1::Trial& t);

// The constraints a completed trial breaks, judged on the last value of each metric, e.g.
// "memory_gb 17.5 > max 16; never reported latency_ms"; empty when it keeps them all.
std::string BrokenConstraints(const v1::ExperimentSpec& spec, const v1::Trial& t);

// Completed trials within the constraints, best first (ties: lower index first): `count` of
// them (0: 1), or with several objectives the Pareto set (`count` > 0 caps it).
std::vector<v1::Trial> BestTrials(const v1::ExperimentSpec& spec, const TrialTable& trials,
                                  int count);

// A trial's place in an order by one metric (ListTrials' sort): trials that have it first, by
// its value (`value` is negated for a descending order), then by index.
struct TrialKey {
  bool missing = false;
  double value = 0;
  int index = 0;
  bool operator<(const TrialKey& o) const {
    if (missing != o.missing) return !missing;
    if (value != o.value) return value < o.value;
    return index < o.index;
  }
};
// The keys of the trials `wanted` picks, in index order, for `sort`: a metric, best first for
// an objective (its final value once the trial has one) and ascending for another, "-NAME"
// reversed. As `rung trials --sort` orders them. By the (first) objective it reads the trials'
// summaries; by another metric it reads every trial.
std::vector<TrialKey> SortKeys(const v1::ExperimentSpec& spec, const TrialTable& trials,
                               std::string sort,
                               const std::function<bool(const TrialTable::Summary&)>& wanted);

// An ablation study's results (AblationResults). FAILED_PRECONDITION for a search.
absl::StatusOr<v1::AblationResults> AblationResultsOf(const v1::Experiment& e,
                                                      const TrialTable& trials);

// "completed", "running", ...: the state's name as people read it.
std::string StateText(v1::ExperimentState s);

}  // namespace rung

#endif  // RUNG_SERVER_SCHEDULE_RESULTS_H_
