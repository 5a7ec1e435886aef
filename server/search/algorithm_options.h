// Options that several algorithms take, so that they read and behave the same in each.
#ifndef RUNG_SERVER_SEARCH_ALGORITHM_OPTIONS_H_
#define RUNG_SERVER_SEARCH_ALGORITHM_OPTIONS_H_

#include "server/search/algorithm.h"

namespace rung::search {

// The models (tpe, gp, bohb).
inline constexpr Option kStartupTrialsOption =
    IntOption("startup_trials", "10", 1, kNoLimit,
              "random trials before the model takes over (warm-start trials count)");

// The rung rules (asha, hyperband, bohb); early_stopping: {rule: asha|hyperband} takes the
// same settings.
inline constexpr const char* kRungModes[] = {"stop", "promote"};
inline constexpr Option kReductionFactorOption =
    IntOption("reduction_factor", "3", 2, kNoLimit,
              "eta: a rung keeps the best 1/eta of the trials that reach it");
inline constexpr Option kModeOption = ChoiceOption(
    "mode", "stop", kRungModes,
    "stop: train toward resource.max, stopped at a rung when not in its top 1/eta; promote: "
    "train to the rung's budget and wait to be promoted");
inline constexpr Option kMaxRungsOption =
    IntOption("max_rungs", "0", 0, kNoLimit, "at most this many rungs (0: every one that fits)");

// config->stopping: `rule` with the rung options above.
inline void ConfigureRungRule(const OptionValues& options, Stopping::Rule rule, Config* config) {
  config->stopping.rule = rule;
  config->stopping.reduction_factor = static_cast<int>(options.Int("reduction_factor"));
  config->stopping.promote = options.Choice("mode") == "promote";
  config->stopping.max_rungs = static_cast<int>(options.Int("max_rungs"));
}

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_ALGORITHM_OPTIONS_H_
