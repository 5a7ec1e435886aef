// asha: random sampling with asynchronous successive halving (NewRungRule, stopping.cc).
#include "server/search/algorithm.h"
#include "server/search/algorithm_options.h"

namespace rung::search {
namespace {

constexpr Option kOptions[] = {kReductionFactorOption, kModeOption, kMaxRungsOption};

void Configure(const OptionValues& options, Config* config) {
  config->sampler = Config::Sampler::kRandom;
  ConfigureRungRule(options, Stopping::Rule::kAsha, config);
}

}  // namespace

extern constexpr AlgorithmInfo kAshaAlgorithm = {
    /*name=*/"asha",
    /*summary=*/"random sampling, trials stopped (or promoted) at rungs of the resource",
    /*options=*/kOptions,
    /*learns_from_warm_start=*/false,
    /*stops_trials=*/true,
    /*needs_max_trials=*/true,
    /*configure=*/&Configure,
};

}  // namespace rung::search
