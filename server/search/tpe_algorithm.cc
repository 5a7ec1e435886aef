// tpe: the tree-structured Parzen estimator (tpe.cc).
#include "server/search/algorithm.h"
#include "server/search/algorithm_options.h"

namespace rung::search {
namespace {

constexpr Option kOptions[] = {
    kStartupTrialsOption,
    BoolOption("multivariate", "false",
               "model the parameters every trial has jointly, one kernel per trial (Optuna's "
               "multivariate); conditional ones on their own"),
};

void Configure(const OptionValues& options, Config* config) {
  config->sampler = Config::Sampler::kTpe;
  config->tpe_startup = static_cast<int>(options.Int("startup_trials"));
  config->tpe_multivariate = options.Bool("multivariate");
  config->rank_by_depth = true;
}

}  // namespace

extern constexpr AlgorithmInfo kTpeAlgorithm = {
    /*name=*/"tpe",
    /*summary=*/"tree-structured Parzen estimator, after random start-up trials",
    /*options=*/kOptions,
    /*learns_from_warm_start=*/true,
    /*stops_trials=*/false,
    /*needs_max_trials=*/true,
    /*configure=*/&Configure,
};

}  // namespace rung::search
