// bohb: multivariate TPE (tpe.cc) with asynchronous Hyperband (stopping.cc); the model learns
// from the highest rung with enough results.
#include "server/search/algorithm.h"
#include "server/search/algorithm_options.h"

namespace rung::search {
namespace {

constexpr Option kOptions[] = {
    kStartupTrialsOption,
    Fixed(BoolOption("multivariate", "true", "always true: bohb models the parameters jointly")),
    kReductionFactorOption,
    kModeOption,
    kMaxRungsOption,
};

void Configure(const OptionValues& options, Config* config) {
  config->sampler = Config::Sampler::kTpe;
  config->tpe_startup = static_cast<int>(options.Int("startup_trials"));
  config->tpe_multivariate = options.Bool("multivariate");
  ConfigureRungRule(options, Stopping::Rule::kHyperband, config);
}

}  // namespace

extern constexpr AlgorithmInfo kBohbAlgorithm = {
    /*name=*/"bohb",
    /*summary=*/"multivariate TPE with Hyperband stopping (BOHB)",
    /*options=*/kOptions,
    /*learns_from_warm_start=*/true,
    /*stops_trials=*/true,
    /*needs_max_trials=*/true,
    /*configure=*/&Configure,
};

}  // namespace rung::search
