// Searchers: pure state machines. Events in, actions out; no I/O, no clock, no threads.
// Randomness comes from a seeded generator that is part of the snapshot, so the same events
// give the same actions, and Restore(Snapshot()) continues exactly where the original would.
//
// A searcher is a sampler (random, grid, TPE) that proposes trials, optionally with a stopping rule
// (ASHA, asynchronous Hyperband, the median rule) that stops them early.
// This library links only the standard library and abseil (Eigen joins for GP search).
// Not thread-safe: the owner serialises calls.
#ifndef RUNG_SERVER_SEARCH_SEARCHER_H_
#define RUNG_SERVER_SEARCH_SEARCHER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace rung::search {

using ParamValue = std::variant<double, int64_t, std::string>;
using Params = std::map<std::string, ParamValue>;

struct Param {
  enum class Kind { kFloat, kInt, kCategorical };
  std::string name;
  Kind kind = Kind::kFloat;
  double min = 0;
  double max = 0;
  bool log = false;
  std::vector<std::string> values;  // categorical
  std::vector<double> grid_values;  // an explicit value list for a float or int
  int grid_points = 0;              // float grid: evenly spaced (log-spaced when log)
  // Conditional: exists only when categorical `parent` (earlier in the space) is one of these.
  std::string parent;
  std::vector<std::string> parent_values;
};

// Whether `p` exists given the parameters chosen so far (its parent's among them).
bool Active(const Param& p, const Params& chosen);

enum class Goal { kMinimize, kMaximize };

// How a searcher stops trials early. Rules act on the objective as a function of the resource
// (epochs, steps) that trials report.
struct Stopping {
  enum class Rule { kNone, kAsha, kHyperband, kMedian };
  Rule rule = Rule::kNone;
  int reduction_factor = 3;  // asha, hyperband: eta
  // asha, hyperband: false = stop mode (train toward max, stopped at a rung when not in its
  // top 1/eta); true = promote mode (train to the rung's budget and pause; the best paused
  // trials of a rung are continued to the next one).
  bool promote = false;
  int max_rungs = 0;   // asha, hyperband: 0 = every rung below the resource's max
  int min_trials = 5;  // median: completed trials before it stops anything
  double grace = 0;    // median: resource a trial gets before it can be stopped
};

// Population-based training (algorithm: pbt or pb2; server/search/pbt.h).
struct PbtOptions {
  int population = 8;
  double interval = 1;                 // resource units between a member's ready points
  double quantile = 0.25;              // the bottom (and top) fraction of the population
  double resample_probability = 0.25;  // pbt: a parameter is drawn afresh rather than perturbed
  std::vector<double> factors = {0.8, 1.2};  // pbt: what a number is multiplied by
  // pb2: explore picks the new parameters with a GP bandit on the members' recent
  // improvement (Parker-Holder et al., 2020) rather than by perturbing the donor's.
  bool pb2 = false;
};

struct Config {
  // kFixed: every trial takes `fixed` (an ablation study's base configuration; what each
  // trial leaves out comes from server/search/ablation.h, not from its parameters).
  // kPopulation: population-based training with `pbt`; members start from random parameters.
  enum class Sampler { kRandom, kGrid, kTpe, kGp, kFixed, kPopulation };
  Sampler sampler = Sampler::kRandom;
  Params fixed;
  int tpe_startup = 10;           // tpe, gp: random trials before the model takes over
  bool tpe_multivariate = false;  // tpe: model the unconditional parameters jointly
  // tpe with ASHA or Hyperband: learn from every trial that reached a rung, ranked by the
  // highest rung it reached and then by its value there (as Optuna's TPE with a pruner),
  // rather than from the trials of one level only (bohb keeps the paper's highest level).
  bool rank_by_depth = false;
  bool gp_ucb = false;       // gp: the lower confidence bound rather than log EI
  std::vector<Param> space;  // in spec order
  Goal goal = Goal::kMinimize;
  int max_trials = 0;
  uint64_t seed = 0;
  // The resource range; max is every trial's budget (RUNG_BUDGET). 0, 0: no resource.
  double resource_min = 0;
  double resource_max = 0;
  Stopping stopping;
  // Several objectives (two or more): each one's goal, the first being `goal`. Models fold
  // them into one value with a fresh random weighting for each suggestion (ParEGO).
  std::vector<Goal> objectives;
  // Trials may break constraints: models treat such a trial as worse than any that did not.
  bool constrained = false;
  // tpe, gp: completed trials of earlier experiments, (parameters, objective), to start from.
  std::vector<std::pair<Params, double>> warm_start;
  PbtOptions pbt;  // kPopulation
};

// Whether `v` is a valid value of `p` (type, range, listed values).
bool Fits(const Param& p, const ParamValue& v);

// The resource levels at which ASHA decides, for the bracket whose first rung is
// min * eta^bracket: min * eta^(bracket + k) for k = 0, 1, ... while below max, at most
// max_rungs of them (0: no cap).
std::vector<double> Rungs(double min, double max, int eta, int max_rungs, int bracket = 0);

// ---- Actions ----
// Create trial `index` (0, 1, 2, ... in creation order) with these parameters, to train up to
// `budget` of the resource (0: no resource).
struct Create {
  int index = 0;
  Params params;
  double budget = 0;
};
// Stop trial `index` now (early stopping); it is not completed and not failed. A paused
// trial (promote mode) that will never be continued is stopped the same way.
struct Stop {
  int index = 0;
  std::string reason;
};
// Run paused trial `index` again, from its checkpoint, up to `budget` (promote mode).
// Population-based training may also give it new parameters, and another trial's checkpoint
// to start from: trial `from`'s at its ready point `from_resource`.
struct Continue {
  int index = 0;
  double budget = 0;
  Params params;  // empty: its own
  int from = -1;  // -1: its own checkpoint
  double from_resource = 0;
};
// No trial will be created any more and every trial has closed: the experiment is over.
struct Done {};
using Action = std::variant<Create, Stop, Continue, Done>;

// A model's parameters for new trial `index`, computed by a job from Searcher::Propose off
// the owner's thread; `model` is the model's state after computing them (e.g. the kernel's
// fitted hyperparameters), kept when the trial takes the parameters.
struct Proposal {
  int index = -1;
  Params params;
  std::vector<std::string> model;
};

// ---- Events ----
// The controller has room for `count` more trials of this experiment now.
struct TrialsWanted {
  int count = 0;
  // count 1 only. `proposal`: the parameters a Propose job computed; the new trial takes them
  // when they are still for it. `adopt` with no proposal: the job missed its deadline and the
  // new trial's parameters are drawn at random. Neither: Handle computes them itself.
  std::optional<Proposal> proposal;
  bool adopt = false;
};
// Trial `index` reported its objective metric `value` with its progress at `resource`.
struct TrialReported {
  int index = 0;
  double resource = 0;
  double value = 0;
};
// Trial `index` ended for good (after any restarts).
struct TrialClosed {
  enum class Outcome { kCompleted, kFailed, kStopped };
  int index = 0;
  Outcome outcome = Outcome::kCompleted;
  bool has_result = false;
  double result = 0;            // the (first) objective's final value
  std::vector<double> results;  // several objectives: each one's, in Config::objectives order
  bool feasible = true;         // it completed within every constraint
};
// Trial `index` trained to its budget and exited; it may be continued (promote mode).
struct TrialPaused {
  int index = 0;
};
using Event = std::variant<TrialsWanted, TrialReported, TrialPaused, TrialClosed>;

class Searcher {
 public:
  virtual ~Searcher() = default;
  // Applies one event and returns what to do about it, in order.
  virtual std::vector<Action> Handle(const Event& event) = 0;
  // The whole state as text; Restore() on a searcher made from the same Config resumes it.
  virtual std::string Snapshot() const = 0;
  virtual absl::Status Restore(absl::string_view snapshot) = 0;
  // Whether TrialReported events change anything; the owner may skip them (and the snapshot
  // write they would cost) when not.
  virtual bool WantsReports() const = 0;
  // When the next new trial's parameters need a model (TPE, GP past their start-up trials,
  // no promotion due): a job computing them from a copy of the model, safe to run on any
  // thread while this searcher handles other events. Hand its result to the next
  // TrialsWanted{1, proposal, true}. Null when Handle makes the next trial cheaply itself.
  virtual std::function<Proposal()> Propose() = 0;
};

// The searcher `config` describes, or INVALID_ARGUMENT.
absl::StatusOr<std::unique_ptr<Searcher>> NewSearcher(const Config& config);

// The points that no other point dominates, every coordinate to be minimised, as indexes in
// input order. A point dominates another when it is no worse in every coordinate and better
// in one; equal points are all kept.
std::vector<size_t> ParetoFront(const std::vector<std::vector<double>>& points);

// The number of points in the grid over `space`, saturated at 2^31-1.
int64_t GridSize(const std::vector<Param>& space);

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_SEARCHER_H_
