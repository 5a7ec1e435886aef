// gp: Gaussian-process regression with an acquisition function (gp.cc).
#include "server/search/algorithm.h"
#include "server/search/algorithm_options.h"

namespace rung::search {
namespace {

constexpr const char* kAcquisitions[] = {"ei", "ucb"};
constexpr Option kOptions[] = {
    kStartupTrialsOption,
    ChoiceOption("acquisition", "ei", kAcquisitions,
                 "ei: the highest log expected improvement; ucb: the lowest mean - 2 sd"),
};

void Configure(const OptionValues& options, Config* config) {
  config->sampler = Config::Sampler::kGp;
  config->tpe_startup = static_cast<int>(options.Int("startup_trials"));
  config->gp_ucb = options.Choice("acquisition") == "ucb";
}

}  // namespace

extern constexpr AlgorithmInfo kGpAlgorithm = {
    /*name=*/"gp",
    /*summary=*/"Gaussian process (Matern-5/2), after random start-up trials",
    /*options=*/kOptions,
    /*learns_from_warm_start=*/true,
    /*stops_trials=*/false,
    /*needs_max_trials=*/true,
    /*configure=*/&Configure,
};

}  // namespace rung::search
