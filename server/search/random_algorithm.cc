// random: every trial's parameters drawn at random (RandomSampler, searcher.cc).
#include "server/search/algorithm.h"

namespace rung::search {
namespace {

void Configure(const OptionValues& /*options*/, Config* config) {
  config->sampler = Config::Sampler::kRandom;
}

}  // namespace

extern constexpr AlgorithmInfo kRandomAlgorithm = {
    /*name=*/"random",
    /*summary=*/"parameters drawn at random (log-uniform where log: true)",
    /*options=*/{},
    /*learns_from_warm_start=*/false,
    /*stops_trials=*/false,
    /*needs_max_trials=*/true,
    /*configure=*/&Configure,
};

}  // namespace rung::search
