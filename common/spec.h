// The experiment spec: YAML for people, rung.v1.ExperimentSpec on the wire.
#ifndef RUNG_COMMON_SPEC_H_
#define RUNG_COMMON_SPEC_H_

#include <map>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "rung/v1/types.pb.h"

namespace rung {

// Parses YAML text into a spec and validates it (ValidateSpec). `base_dir` is the folder a
// relative trial.workdir is relative to. Errors are INVALID_ARGUMENT and name the field and
// the value, e.g. "search_space.x1: min (10) must be below max (-5)".
absl::StatusOr<v1::ExperimentSpec> ParseSpecYaml(absl::string_view yaml, absl::string_view base_dir);

// Checks a spec however it arrived and fills defaults: algorithm, absolute workdir,
// max_concurrent (when max_trials is known). Same error form as ParseSpecYaml.
absl::Status ValidateSpec(v1::ExperimentSpec* spec, absl::string_view base_dir);

// The text a parameter value takes in a command line and in logs: shortest round-trip
// decimal for floats.
std::string FormatParam(const v1::ParamValue& v);
std::string FormatDouble(double d);

// Replaces each "{name}" in `arg` with the parameter's value. Braces around anything that is
// not an identifier are left alone. Fails when a placeholder names no parameter.
absl::StatusOr<std::string> FillPlaceholders(
    absl::string_view arg, const google::protobuf::Map<std::string, v1::ParamValue>& params);

// {"name": value, ...} with keys sorted: the RUNG_PARAMS document.
std::string ParamsToJson(const google::protobuf::Map<std::string, v1::ParamValue>& params);

// JSON string literal for `s`, quotes included.
std::string JsonQuote(absl::string_view s);

}  // namespace rung

#endif  // RUNG_COMMON_SPEC_H_
