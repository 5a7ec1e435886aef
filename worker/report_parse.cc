#include "worker/report_parse.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace rung {

absl::StatusOr<ParsedReport> ParseReportJson(absl::string_view json) {
  google::protobuf::Struct s;
  auto st = google::protobuf::util::JsonStringToMessage(std::string(json), &s);
  if (!st.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("report is not a JSON object: ", std::string(st.message())));
  }
  ParsedReport r;
  for (const auto& [key, v] : s.fields()) {
    if (key == "trial_id") {
      if (v.kind_case() != google::protobuf::Value::kStringValue) {
        return absl::InvalidArgumentError("report: trial_id must be a string");
      }
      r.trial_id = v.string_value();
      continue;
    }
    if (key == "final") {
      if (v.kind_case() != google::protobuf::Value::kBoolValue) {
        return absl::InvalidArgumentError("report: final must be true or false");
      }
      r.final = v.bool_value();
      continue;
    }
    if (v.kind_case() != google::protobuf::Value::kNumberValue) {
      return absl::InvalidArgumentError(
          absl::StrCat("report: '", key, "' must be a number (metrics are numbers)"));
    }
    double d = v.number_value();
    if (!std::isfinite(d)) {
      return absl::InvalidArgumentError(absl::StrCat("report: '", key, "' is not finite"));
    }
    if (key == "step") {
      r.has_step = true;
      r.step = d;
    } else if (key == "attempt") {
      r.attempt = static_cast<int>(d);
    } else if (key == "rank") {
      r.rank = static_cast<int>(d);
    } else {
      r.values[key] = d;
    }
  }
  return r;
}

}  // namespace rung
