// The experiment spec's limits and the text its values take, for everything that handles a
// spec: rungd, rung-worker, the CLI and the clients. Parsing and validation are rungd's
// (server/spec/spec.h).
#ifndef RUNG_COMMON_SPEC_H_
#define RUNG_COMMON_SPEC_H_

#include <map>
#include <set>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "rung/v1/types.pb.h"

namespace rung {

// What a spec may hold at most, so that a mistaken or hostile one cannot exhaust rungd.
constexpr size_t kMaxSpecBytes = 1 << 20;  // the YAML text
constexpr int kMaxParameters = 256;
constexpr int kMaxRepeated = 10000;       // entries of any list (values, arguments, objectives...)
constexpr size_t kMaxNameBytes = 128;     // the experiment's, parameters', metrics' names
constexpr size_t kMaxStringBytes = 4096;  // any other string
constexpr int kMaxTrials = 10000000;
constexpr int kMaxRanks = 4096;  // processes of one distributed trial

// OK when every string in `m` (recursively) has at most `max_string` bytes and every list or
// map at most `max_repeated` entries; else INVALID_ARGUMENT naming the field by its path
// under `path` ("trial.command[3]").
absl::Status CheckSizes(const google::protobuf::Message& m, const std::string& path,
                        size_t max_string, int max_repeated);

// That every "{name}" in the trial's command and env names one of `params`, and no command
// placeholder a `conditional` one; INVALID_ARGUMENT naming the field otherwise.
absl::Status CheckPlaceholders(const v1::TrialTemplate& t,
                               const google::protobuf::Map<std::string, v1::ParamValue>& params,
                               const std::set<std::string>& conditional);

// The text a parameter value takes in a command line and in logs: shortest round-trip
// decimal for floats.
std::string FormatParam(const v1::ParamValue& v);
std::string FormatDouble(double d);

// Whether `c` may appear in a parameter's name (`first`: as its first character), so that
// "{name}" in a command names it: letters and '_', then digits, '.' and '-' too.
bool IsParamNameChar(char c, bool first);

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
