#include "server/search/algorithm.h"

#include <charconv>
#include <cmath>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/search/stopping.h"

namespace rung::search {

// The registration table: one line per algorithm, in the order errors list them. Each entry is
// defined in the file named after it, beside the algorithm's code. Adding an algorithm takes
// that file (added to rung_search in server/CMakeLists.txt), its name in the declaration below
// and its line in the table.
extern const AlgorithmInfo kRandomAlgorithm, kGridAlgorithm, kTpeAlgorithm, kGpAlgorithm,
    kAshaAlgorithm, kHyperbandAlgorithm, kBohbAlgorithm, kPbtAlgorithm, kPb2Algorithm;

namespace {

constexpr const AlgorithmInfo* kRegistered[] = {
    &kRandomAlgorithm,     // random_algorithm.cc
    &kGridAlgorithm,       // grid_algorithm.cc
    &kTpeAlgorithm,        // tpe_algorithm.cc
    &kGpAlgorithm,         // gp_algorithm.cc
    &kAshaAlgorithm,       // asha_algorithm.cc
    &kHyperbandAlgorithm,  // hyperband_algorithm.cc
    &kBohbAlgorithm,       // bohb_algorithm.cc
    &kPbtAlgorithm,        // pbt_algorithm.cc
    &kPb2Algorithm,        // pbt_algorithm.cc
};

absl::Status Invalid(absl::string_view field, absl::string_view option, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ".", option, ": ", what));
}

const Option* FindOption(const AlgorithmInfo& a, absl::string_view name) {
  for (const Option& o : a.options) {
    if (name == o.name) return &o;
  }
  return nullptr;
}

// "a", "a and b", "a, b and c".
std::string JoinAnd(const std::vector<std::string>& names) {
  if (names.size() < 2) return absl::StrJoin(names, "");
  return absl::StrCat(absl::StrJoin(names.begin(), names.end() - 1, ", "), " and ", names.back());
}

// "(tpe's options: startup_trials, multivariate)", or "(random has no options)".
std::string ItsOptions(const AlgorithmInfo& a) {
  if (a.options.empty()) return absl::StrCat("(", a.name, " has no options)");
  std::vector<std::string> names;
  for (const Option& o : a.options) names.push_back(o.name);
  return absl::StrCat("(", a.name, "'s options: ", absl::StrJoin(names, ", "), ")");
}

// Why `a` refuses `option`: which algorithms take it, if any, and which options `a` takes.
absl::Status UnknownOption(const AlgorithmInfo& a, absl::string_view field,
                           absl::string_view option) {
  std::vector<std::string> takers;
  bool only_rules = true;  // every taker brings its own stopping rule: a rule's setting
  for (const AlgorithmInfo* other : Algorithms()) {
    if (FindOption(*other, option) == nullptr) continue;
    takers.push_back(other->name);
    only_rules = only_rules && other->stops_trials;
  }
  if (takers.empty()) return Invalid(field, option, absl::StrCat("unknown option ", ItsOptions(a)));
  std::string what = absl::StrCat("applies to ", JoinAnd(takers), " only ", ItsOptions(a));
  if (only_rules && !a.stops_trials) {
    absl::StrAppend(&what, "; with ", a.name, " put them under early_stopping");
  }
  return Invalid(field, option, what);
}

// " of at least 2", " from 0 to 1", " of at most 5" or "".
std::string Range(const Option& o) {
  const bool has_min = o.min > -kNoLimit, has_max = o.max < kNoLimit;
  if (has_min && has_max) {
    return absl::StrCat(" from ", DoubleText(o.min), " to ", DoubleText(o.max));
  }
  if (has_min) return absl::StrCat(" of at least ", DoubleText(o.min));
  if (has_max) return absl::StrCat(" of at most ", DoubleText(o.max));
  return "";
}

// `text` as `o`'s type, within its bounds; the canonical text goes to `canonical`.
absl::StatusOr<OptionValues::Value> ParseValue(const Option& o, absl::string_view text,
                                               std::string* canonical) {
  const std::string got = absl::StrCat(" (got \"", text, "\")");
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  switch (o.type) {
    case Option::Type::kInt: {
      int64_t v = 0;
      auto [at, ec] = std::from_chars(begin, end, v);
      const double lo = std::max<double>(o.min, std::numeric_limits<int32_t>::min());
      const double hi = std::min<double>(o.max, std::numeric_limits<int32_t>::max());
      if (ec != std::errc() || at != end || v < lo || v > hi) {
        return absl::InvalidArgumentError(absl::StrCat("must be an integer", Range(o), got));
      }
      *canonical = absl::StrCat(v);
      return OptionValues::Value(v);
    }
    case Option::Type::kDouble: {
      double v = 0;
      if (!ParseDouble(text, &v) || !std::isfinite(v) || v < o.min || v > o.max) {
        return absl::InvalidArgumentError(absl::StrCat("must be a number", Range(o), got));
      }
      *canonical = DoubleText(v);
      return OptionValues::Value(v);
    }
    case Option::Type::kBool: {
      const std::string s = absl::AsciiStrToLower(text);
      const bool yes = s == "true" || s == "yes" || s == "on";
      if (!yes && s != "false" && s != "no" && s != "off") {
        return absl::InvalidArgumentError(absl::StrCat("must be true or false", got));
      }
      *canonical = yes ? "true" : "false";
      return OptionValues::Value(yes);
    }
    case Option::Type::kNumbers: {
      // [0.8, 1.2] as the spec's parser hands a list on; a bare "0.8, 1.2" reads the same.
      absl::string_view list = absl::StripAsciiWhitespace(text);
      if (absl::ConsumePrefix(&list, "[") && !absl::ConsumeSuffix(&list, "]")) list = "x";
      std::vector<double> values;
      std::vector<std::string> texts;
      for (absl::string_view item : absl::StrSplit(list, ',')) {
        double v = 0;
        item = absl::StripAsciiWhitespace(item);
        if (!ParseDouble(item, &v) || !std::isfinite(v) || v < o.min || v > o.max) {
          return absl::InvalidArgumentError(
              absl::StrCat("must be a list of numbers", Range(o), ", e.g. [0.8, 1.2]", got));
        }
        values.push_back(v);
        texts.push_back(DoubleText(v));
      }
      *canonical = absl::StrCat("[", absl::StrJoin(texts, ", "), "]");
      return OptionValues::Value(std::move(values));
    }
    case Option::Type::kChoice:
      for (const char* c : o.choices) {
        if (text == c) {
          *canonical = c;
          return OptionValues::Value(std::string(c));
        }
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown ", o.name, " '", text, "' (known: ", absl::StrJoin(o.choices, ", "), ")"));
  }
  return absl::InternalError("unknown option type");
}

}  // namespace

absl::Span<const AlgorithmInfo* const> Algorithms() { return kRegistered; }

absl::StatusOr<const AlgorithmInfo*> FindAlgorithm(absl::string_view name) {
  std::vector<std::string> known;
  for (const AlgorithmInfo* a : Algorithms()) {
    if (name == a->name) return a;
    known.push_back(a->name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown algorithm '", name, "' (known: ", absl::StrJoin(known, ", "), ")"));
}

absl::StatusOr<OptionValues> ValidateOptions(const AlgorithmInfo& algorithm,
                                             absl::string_view field,
                                             std::map<std::string, std::string>* options) {
  for (const auto& [name, text] : *options) {
    if (FindOption(algorithm, name) == nullptr) return UnknownOption(algorithm, field, name);
  }
  OptionValues values;
  for (const Option& o : algorithm.options) {
    auto given = options->find(o.name);
    const std::string text = given == options->end() ? o.default_value : given->second;
    std::string canonical;
    absl::StatusOr<OptionValues::Value> v = ParseValue(o, text, &canonical);
    if (!v.ok()) return Invalid(field, o.name, v.status().message());
    if (o.fixed && canonical != o.default_value) {
      return Invalid(field, o.name,
                     absl::StrCat("is always ", o.default_value, " with ", algorithm.name,
                                  " (got \"", text, "\")"));
    }
    (*options)[o.name] = canonical;
    values.Set(o.name, *std::move(v));
  }
  return values;
}

absl::Status Configure(const AlgorithmInfo& algorithm, std::map<std::string, std::string> options,
                       Config* config) {
  absl::StatusOr<OptionValues> values = ValidateOptions(algorithm, "algorithm", &options);
  if (!values.ok()) return values.status();
  algorithm.configure(*values, config);
  return absl::OkStatus();
}

}  // namespace rung::search
