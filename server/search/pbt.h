// Population-based training (Jaderberg et al., 2017), asynchronous as in Ray Tune: what a
// member of the population does at each of its ready points (every `interval` units of the
// resource). A member in the bottom `quantile` of the population, ranked by each member's
// latest score, exploits: it takes the checkpoint and the parameters of a member drawn from
// the top `quantile`, and explores them: each parameter is drawn afresh from the search space
// with `resample_probability`; otherwise a number is multiplied by one of `factors` (kept in
// its range; an integer rounded) and a category moves to a neighbouring value. Nobody waits
// for a generation.
//
// This is the decision alone: a pure, seeded state machine in the manner of rung's searchers
// (no I/O, no clock, no threads; snapshotted). NewPbtSearcher drives it with members that are
// trials continuing in segments; pb2.cc has PB2's explore.
#ifndef RUNG_SERVER_SEARCH_PBT_H_
#define RUNG_SERVER_SEARCH_PBT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "server/search/rng.h"
#include "server/search/searcher.h"

namespace rung::search {

class Population {
 public:
  Population(std::vector<Param> space, Goal goal, PbtOptions options, uint64_t seed);

  // What a member does after a ready point.
  struct Decision {
    bool exploit = false;  // false: it goes on from its own checkpoint, with its parameters
    int donor = -1;        // exploit: the member whose checkpoint and parameters it takes
    double donor_at = 0;   // the donor's ready point (resource) whose checkpoint it takes
    Params params;         // the parameters of its next segment
  };

  // Member `member` (0 .. population - 1) trained with `params` to resource `at` and scored
  // `value` there.
  Decision Ready(int member, double at, double value, const Params& params);
  // A member left the population (it completed or failed): it is neither ranked nor a donor.
  void Remove(int member);

  // `from` perturbed as explore does it (also for PB2's fallback and the tests).
  Params Explore(const Params& from);
  // PB2's explore (pb2.cc): of random parameters and perturbations of `from`, those with the
  // highest upper confidence bound on the improvement a segment makes at `at`, under a GP
  // fitted to the members' recent segments (time and parameters in, improvement out), the
  // other members' current parameters counted in as pending (GP-BUCB). Explore() until
  // there are two segments to learn from.
  Params Pb2Explore(const Params& from, double at, int member);

  const PbtOptions& options() const { return options_; }

  // One line for the generator, then a line a member: "m <member> <at> <value> <baseline> <v0>
  // <v1> ...",
  // each parameter encoded as a number (a category by its index; nan when absent); pb2's
  // observations as "o <at> <improvement> <v0> <v1> ...".
  void Save(std::vector<std::string>* lines) const;
  bool Load(const std::vector<std::string>& lines);

 private:
  struct Member {
    double at = 0;        // the ready point its checkpoint stands at
    double value = 0;     // the score it is ranked by: its own latest
    double baseline = 0;  // the score of the model it holds (after an exploit, the donor's)
    Params params;
  };
  // pb2: a segment that ended at `at` after training with `params`, and how much the objective
  // improved over it (positive: better, whatever the goal).
  struct Observation {
    double at = 0;
    double improvement = 0;
    Params params;
  };
  static constexpr size_t kObservations = 256;  // pb2 learns from the most recent ones
  bool Better(double a, double b) const;
  // A parameter set as a point of the unit cube (pb2's GP input), in space order.
  std::vector<double> Unit(const Params& params) const;

  const std::vector<Param> space_;
  const Goal goal_;
  const PbtOptions options_;
  Rng rng_;
  std::map<int, Member> members_;          // those with a ready point behind them
  std::vector<Observation> observations_;  // pb2, oldest first
};

// The searcher of `algorithm: pbt`: `options.population` members, trials created at once up to
// the budget of their first ready point (`interval`, the resource's units), paused there as
// in promote mode; at each pause the Population decides, and the member goes on to its next
// ready point (Continue, with new parameters and a donor's checkpoint when it exploits), until
// `config.resource_max`, where it completes. Snapshotted with the Population.
std::unique_ptr<Searcher> NewPbtSearcher(const Config& config, const PbtOptions& options);

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_PBT_H_
