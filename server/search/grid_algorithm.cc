// grid: every combination of the space's values in turn (GridSampler, searcher.cc).
#include "server/search/algorithm.h"

namespace rung::search {
namespace {

void Configure(const OptionValues& /*options*/, Config* config) {
  config->sampler = Config::Sampler::kGrid;
}

}  // namespace

extern constexpr AlgorithmInfo kGridAlgorithm = {
    /*name=*/"grid",
    /*summary=*/"every combination in turn; floats need grid_points or values",
    /*options=*/{},
    /*learns_from_warm_start=*/false,
    /*stops_trials=*/false,
    /*needs_max_trials=*/false,  // the whole grid
    /*configure=*/&Configure,
};

}  // namespace rung::search
