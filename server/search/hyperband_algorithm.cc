// hyperband: random sampling with asynchronous Hyperband (NewRungRule, stopping.cc).
#include "server/search/algorithm.h"
#include "server/search/algorithm_options.h"

namespace rung::search {
namespace {

constexpr Option kOptions[] = {kReductionFactorOption, kModeOption, kMaxRungsOption};

void Configure(const OptionValues& options, Config* config) {
  config->sampler = Config::Sampler::kRandom;
  ConfigureRungRule(options, Stopping::Rule::kHyperband, config);
}

}  // namespace

extern constexpr AlgorithmInfo kHyperbandAlgorithm = {
    /*name=*/"hyperband",
    /*summary=*/"random sampling, trials dealt to ASHA brackets in Hyperband's proportions",
    /*options=*/kOptions,
    /*learns_from_warm_start=*/false,
    /*stops_trials=*/true,
    /*needs_max_trials=*/true,
    /*configure=*/&Configure,
};

}  // namespace rung::search
