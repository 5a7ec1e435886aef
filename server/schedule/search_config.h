// What a spec means to the searcher: the search::Config it describes, and conversions between
// the protocol's parameter values and the searcher's.
#ifndef RUNG_SERVER_SCHEDULE_SEARCH_CONFIG_H_
#define RUNG_SERVER_SCHEDULE_SEARCH_CONFIG_H_

#include <vector>

#include "rung/v1/types.pb.h"
#include "server/search/ablation.h"
#include "server/search/searcher.h"

namespace rung {

// The searcher configuration a validated spec describes, warm start aside. The algorithm's
// part comes from its registration (server/search/algorithm.h) and its options; a spec stored
// by rung 0.1 (the deprecated Algorithm fields) gives what it gave then.
search::Config SearchConfig(const v1::ExperimentSpec& spec);

// Rung 0.1 kept an algorithm's settings in typed Algorithm fields (startup_trials,
// multivariate, acquisition, reduction_factor, mode, max_rungs), now deprecated: moves each
// one that is set into algorithm.options (an option already there wins) and clears it, then
// writes back every option the algorithm takes with its default, as ValidateSpec would. A spec
// without them is left as it is. For experiments read from the store, and specs sent by old
// clients; nothing else reads those fields.
void MigrateLegacyAlgorithm(v1::ExperimentSpec* spec);

search::ParamValue ToSearch(const v1::ParamValue& v);
v1::ParamValue FromSearch(const search::ParamValue& v);

// The variants of a validated ablation study, the base first.
std::vector<search::Variant> AblationVariants(const v1::ExperimentSpec& spec);

// Fills e->rung_levels from its spec: the rungs of an asha or hyperband rule, then
// resource.max; none for other searches.
void SetRungLevels(v1::Experiment* e);

}  // namespace rung

#endif  // RUNG_SERVER_SCHEDULE_SEARCH_CONFIG_H_
