// Reading and checking experiment specs: YAML for people, rung.v1.ExperimentSpec on the wire.
// Only rungd does this (the search algorithms' options are checked against server/search's
// registry); clients and rung-worker need only common/spec.h (limits, formatting).
#ifndef RUNG_SERVER_SPEC_SPEC_H_
#define RUNG_SERVER_SPEC_SPEC_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/spec.h"
#include "rung/v1/types.pb.h"

namespace rung {

// Parses YAML text into a spec and validates it (ValidateSpec). `base_dir` is the folder a
// relative trial.workdir is relative to. Errors are INVALID_ARGUMENT and name the field and
// the value, e.g. "search_space.x1: min (10) must be below max (-5)".
absl::StatusOr<v1::ExperimentSpec> ParseSpecYaml(absl::string_view yaml,
                                                 absl::string_view base_dir);

// Checks a spec however it arrived and fills defaults: algorithm and every option it takes,
// absolute workdir, max_concurrent (when max_trials is known). Same error form as
// ParseSpecYaml. The deprecated Algorithm fields are not read: a spec that may carry them
// goes through MigrateLegacyAlgorithm (server/schedule/search_config.h) first.
absl::Status ValidateSpec(v1::ExperimentSpec* spec, absl::string_view base_dir);

}  // namespace rung

#endif  // RUNG_SERVER_SPEC_SPEC_H_
