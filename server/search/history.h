// What a model-based sampler remembers: every trial it proposed, each parameter encoded as a
// number (NaN when a conditional parameter is absent), its state and its objective.
#ifndef RUNG_SERVER_SEARCH_HISTORY_H_
#define RUNG_SERVER_SEARCH_HISTORY_H_

#include <limits>
#include <map>
#include <string>
#include <vector>

#include "server/search/searcher.h"

namespace rung::search {

// A categoricals or a numeric parameter given as a value list: modelled by category.
bool IsCategory(const Param& p);
size_t Categories(const Param& p);
// The continuous domain of a numeric parameter: [min, max] ([min - 0.5, max + 0.5] for an
// int), in log space for a log parameter. Encoded values live in it.
void ContinuousDomain(const Param& p, double* lo, double* hi);

class History {
 public:
  static constexpr double kAbsent = std::numeric_limits<double>::quiet_NaN();
  struct Trial {
    char state = 'r';  // 'r' running, 'c' completed with a value, 'x' closed without one
    double value = 0;
    std::vector<double> values;  // encoded, in space order
    // The objective at each rung level (the first report at or past it); NaN until then.
    std::vector<double> at_level;
    std::vector<double> objectives;  // several objectives: each one's final value
    bool feasible = true;            // completed within every constraint
  };

  // `levels`: the resource levels (rungs) at which the history keeps each trial's objective,
  // ascending; empty when trials are not stopped at rungs.
  History(const std::vector<Param>& space, std::vector<double> levels = {})
      : space_(space), levels_(std::move(levels)) {}

  // Encoding: a category's index (categoricals and value lists), else the value in the
  // continuous domain (log of it for a log parameter).
  double Encode(const Param& p, const ParamValue& v) const;
  // Encoded values (NaN for absent) back to parameters.
  Params Decode(const std::vector<double>& values) const;

  void Add(int index, const Params& params);
  // Completed trials of earlier experiments, as trials -1, -2, ...
  void AddWarmStart(const std::vector<std::pair<Params, double>>& warm);
  void Observe(const TrialClosed& closed);
  // Trial `index` reported `value` at `resource`.
  void Report(int index, double resource, double value);
  const std::vector<double>& levels() const { return levels_; }
  const std::map<int, Trial>& trials() const { return trials_; }
  const std::vector<Param>& space() const { return space_; }

  // One line a trial: "o <index> <state> <value> <v0> <v1> ...", then, with levels,
  // " @ <value at level 0> <value at level 1> ...", then, for an infeasible trial or one with
  // several objectives, " # <feasible 0|1> <objective 0> <objective 1> ...".
  void Save(std::vector<std::string>* lines) const;
  bool Load(const std::vector<std::string>& lines);

 private:
  const std::vector<Param> space_;
  const std::vector<double> levels_;
  std::map<int, Trial> trials_;
};

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_HISTORY_H_
