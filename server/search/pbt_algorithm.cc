// pbt and pb2: population-based training (pbt.cc). Members are trials that train in segments
// of `interval` resource units; between segments the weak take the strong's checkpoints and
// parameters and explore them, by perturbing (pbt) or with a GP bandit (pb2).
#include "server/search/algorithm.h"

namespace rung::search {
namespace {

constexpr Option kPopulationOption =
    IntOption("population", "8", 2, 1024, "members trained at once (the trials of the experiment)");
constexpr Option kIntervalOption = DoubleOption(
    "interval", "1", 1e-9, kNoLimit,
    "resource units a member trains between ready points, where it may exploit and explore");
constexpr Option kQuantileOption = DoubleOption(
    "quantile", "0.25", 1e-9, 0.5,
    "a member in the bottom quantile of the population takes from one in the top quantile");
constexpr Option kPbtOptions[] = {
    kPopulationOption,
    kIntervalOption,
    kQuantileOption,
    DoubleOption("resample_probability", "0.25", 0, 1,
                 "explore: each parameter is drawn afresh from the search space with this "
                 "probability, else perturbed"),
    NumbersOption("factors", "[0.8, 1.2]", 1e-9, kNoLimit,
                  "explore: a number is multiplied by one of these (kept in its range); a "
                  "category moves to a neighbouring value"),
};
constexpr Option kPb2Options[] = {kPopulationOption, kIntervalOption, kQuantileOption};

void ConfigureCommon(const OptionValues& options, Config* config) {
  config->sampler = Config::Sampler::kPopulation;
  config->pbt.population = static_cast<int>(options.Int("population"));
  config->pbt.interval = options.Double("interval");
  config->pbt.quantile = options.Double("quantile");
}

void ConfigurePbt(const OptionValues& options, Config* config) {
  ConfigureCommon(options, config);
  config->pbt.resample_probability = options.Double("resample_probability");
  config->pbt.factors = options.Numbers("factors");
  config->pbt.pb2 = false;
}

void ConfigurePb2(const OptionValues& options, Config* config) {
  ConfigureCommon(options, config);
  config->pbt.pb2 = true;
}

}  // namespace

extern constexpr AlgorithmInfo kPbtAlgorithm = {
    /*name=*/"pbt",
    /*summary=*/"population-based training: members exploit the best and perturb their parameters",
    /*options=*/kPbtOptions,
    /*learns_from_warm_start=*/false,
    /*stops_trials=*/false,
    /*needs_max_trials=*/false,
    /*configure=*/&ConfigurePbt,
    /*population=*/true,
};

extern constexpr AlgorithmInfo kPb2Algorithm = {
    /*name=*/"pb2",
    /*summary=*/"population-based bandits: pbt whose explore is a GP bandit on recent improvement",
    /*options=*/kPb2Options,
    /*learns_from_warm_start=*/false,
    /*stops_trials=*/false,
    /*needs_max_trials=*/false,
    /*configure=*/&ConfigurePb2,
    /*population=*/true,
};

}  // namespace rung::search
