// Reports from a trial: a JSON object, either a stdout line `@rung {"step": 3, "loss": 0.41}`
// or a line on the report socket (the same object plus "trial_id" and "attempt").
#ifndef RUNG_WORKER_REPORT_PARSE_H_
#define RUNG_WORKER_REPORT_PARSE_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rung {

struct ParsedReport {
  std::string trial_id;  // socket reports only
  int attempt = 0;       // socket reports only
  int rank = 0;          // socket reports only: the distributed trial's rank that reports
  bool has_step = false;
  double step = 0;
  bool final = false;
  std::map<std::string, double> values;
};

// Parses one JSON object. Numbers are metrics, except "step" (the progress), "attempt" and
// "rank";
// "final": true marks the trial's final result; "trial_id" is a string. Anything else, or a
// non-finite number, is INVALID_ARGUMENT naming the key.
absl::StatusOr<ParsedReport> ParseReportJson(absl::string_view json);

// The prefix of a stdout report line.
inline constexpr absl::string_view kReportLinePrefix = "@rung ";

}  // namespace rung

#endif  // RUNG_WORKER_REPORT_PARSE_H_
