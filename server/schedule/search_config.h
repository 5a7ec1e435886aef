// What a spec means to the searcher: the search::Config it describes, and conversions between
// the protocol's parameter values and the searcher's.
#ifndef RUNG_SERVER_SCHEDULE_SEARCH_CONFIG_H_
#define RUNG_SERVER_SCHEDULE_SEARCH_CONFIG_H_

#include <vector>

#include "rung/v1/types.pb.h"
#include "server/search/ablation.h"
#include "server/search/searcher.h"

namespace rung {

// The searcher configuration a (validated) spec describes, warm start aside.
search::Config SearchConfig(const v1::ExperimentSpec& spec);

search::ParamValue ToSearch(const v1::ParamValue& v);
v1::ParamValue FromSearch(const search::ParamValue& v);

// The variants of a validated ablation study, the base first.
std::vector<search::Variant> AblationVariants(const v1::ExperimentSpec& spec);

// Fills e->rung_levels from its spec: the rungs of an asha or hyperband rule, then
// resource.max; none for other searches.
void SetRungLevels(v1::Experiment* e);

}  // namespace rung

#endif  // RUNG_SERVER_SCHEDULE_SEARCH_CONFIG_H_
