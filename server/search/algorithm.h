// The search algorithms a spec may name, and the options each one takes.
//
// An algorithm is one AlgorithmInfo, defined in its own file beside its code
// (tpe_algorithm.cc, ...) and listed once in the registration table in algorithm.cc. What the
// spec layer needs to know about an algorithm (its options and their types, defaults and
// bounds; whether it learns from warm_start, brings its own stopping rule, needs
// budget.max_trials) and how its options become a search::Config live there, so that adding
// one touches neither the spec's parser and validator nor the controller.
//
// Pure like the rest of this library: the standard library and abseil only. Everything here
// is constant and may be used from any thread.
#ifndef RUNG_SERVER_SEARCH_ALGORITHM_H_
#define RUNG_SERVER_SEARCH_ALGORITHM_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "server/search/searcher.h"

namespace rung::search {

// One setting of an algorithm, written in the spec beside its name:
// `algorithm: {name: tpe, startup_trials: 5}`.
struct Option {
  // kNumbers: a list of numbers, written [0.8, 1.2]; min and max bound each one.
  enum class Type { kInt, kDouble, kBool, kChoice, kNumbers };
  const char* name = "";
  Type type = Type::kInt;
  // As a spec would write it; a test checks that every registered default is valid.
  const char* default_value = "";
  // kInt, kDouble: the inclusive range. kInt is at most int32's range in any case.
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  absl::Span<const char* const> choices;  // kChoice: the values it takes
  // The value is always the default; the option exists so that a spec may say so (bohb is
  // always multivariate).
  bool fixed = false;
  const char* help = "";
};

constexpr double kNoLimit = std::numeric_limits<double>::infinity();

constexpr Option IntOption(const char* name, const char* default_value, double min, double max,
                           const char* help) {
  return {name, Option::Type::kInt, default_value, min, max, {}, false, help};
}
constexpr Option DoubleOption(const char* name, const char* default_value, double min, double max,
                              const char* help) {
  return {name, Option::Type::kDouble, default_value, min, max, {}, false, help};
}
constexpr Option NumbersOption(const char* name, const char* default_value, double min, double max,
                               const char* help) {
  return {name, Option::Type::kNumbers, default_value, min, max, {}, false, help};
}
constexpr Option BoolOption(const char* name, const char* default_value, const char* help) {
  return {name, Option::Type::kBool, default_value, -kNoLimit, kNoLimit, {}, false, help};
}
constexpr Option ChoiceOption(const char* name, const char* default_value,
                              absl::Span<const char* const> choices, const char* help) {
  return {name, Option::Type::kChoice, default_value, -kNoLimit, kNoLimit, choices, false, help};
}
// `option`, always at its default.
constexpr Option Fixed(Option option) {
  option.fixed = true;
  return option;
}

// An algorithm's options after ValidateOptions: every option it takes, typed. Reading one it
// does not take, or as another type, gives 0, false or "" (a test checks that every option of
// every algorithm changes what its configure makes).
class OptionValues {
 public:
  using Value = std::variant<int64_t, double, bool, std::string, std::vector<double>>;

  int64_t Int(absl::string_view name) const { return Get<int64_t>(name); }
  std::vector<double> Numbers(absl::string_view name) const {
    return Get<std::vector<double>>(name);
  }
  double Double(absl::string_view name) const { return Get<double>(name); }
  bool Bool(absl::string_view name) const { return Get<bool>(name); }
  std::string Choice(absl::string_view name) const { return Get<std::string>(name); }

  void Set(absl::string_view name, Value v) { values_[std::string(name)] = std::move(v); }
  const std::map<std::string, Value, std::less<>>& values() const { return values_; }

 private:
  template <typename T>
  T Get(absl::string_view name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return T();
    const T* v = std::get_if<T>(&it->second);
    return v == nullptr ? T() : *v;
  }

  std::map<std::string, Value, std::less<>> values_;
};

struct AlgorithmInfo {
  const char* name = "";
  const char* summary = "";  // one line, for people
  absl::Span<const Option> options;
  // It starts its model from the trials of the experiments in algorithm.warm_start.
  bool learns_from_warm_start = false;
  // It brings its own early-stopping rule (Config::stopping), so a spec's early_stopping: is
  // refused with it; the others take one there.
  bool stops_trials = false;
  // A spec must give budget.max_trials (grid runs the whole grid without one).
  bool needs_max_trials = true;
  // Fills the algorithm's part of `config` from its validated options: the sampler, the
  // model's settings, its stopping rule when stops_trials. Leaves the rest (space, goal,
  // budget, resource, seed) alone.
  void (*configure)(const OptionValues& options, Config* config) = nullptr;
  // Its trials are a population trained in segments that change parameters as they go (pbt,
  // pb2): no early_stopping, and budget.max_trials is the population.
  bool population = false;
};

// Every registered algorithm, in the registration table's order (the order errors list them).
absl::Span<const AlgorithmInfo* const> Algorithms();

// The algorithm called `name`; INVALID_ARGUMENT "unknown algorithm 'x' (known: random, ...)"
// when none is. The pointer is to a constant that lives as long as the program.
absl::StatusOr<const AlgorithmInfo*> FindAlgorithm(absl::string_view name);

// Checks `options` (each value as a spec wrote it, by option name) against what `algorithm`
// takes, rewrites each value in its canonical form (3, true, 0.5) and adds every option the
// spec left out with its default, so that `options` tells the whole configuration. Returns
// the typed values for `algorithm.configure`. Errors are INVALID_ARGUMENT and name the option
// under `field` (the options' path in the spec, e.g. "algorithm"):
//   algorithm.startup_trials: must be an integer of at least 1 (got "x")
//   algorithm.acquisition: applies to gp only (tpe's options: startup_trials, multivariate)
// On error `options` may be partly rewritten.
absl::StatusOr<OptionValues> ValidateOptions(const AlgorithmInfo& algorithm,
                                             absl::string_view field,
                                             std::map<std::string, std::string>* options);

// `algorithm`'s part of `config` from `options` as ValidateOptions leaves them (options it
// leaves out take their defaults). INVALID_ARGUMENT as ValidateOptions when they are not valid;
// `config` is then untouched.
absl::Status Configure(const AlgorithmInfo& algorithm, std::map<std::string, std::string> options,
                       Config* config);

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_ALGORITHM_H_
