// Ablation studies: which variants of a base configuration to run, each leaving some
// components (input features, layers, groups of them, custom switches) out. A policy turns
// the components into variants; a new policy (say, cumulative removal in a given order) is
// a new class here, not a change to the scheduler.
// Pure: no I/O, no clock; links only the standard library and abseil.
#ifndef RUNG_SERVER_SEARCH_ABLATION_H_
#define RUNG_SERVER_SEARCH_ABLATION_H_

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rung::search {

struct Component {
  std::string kind;  // feature | layer | group | custom
  std::string name;
  std::vector<std::string> members;  // what removing it drops: a group's members, else {name}
};

// One configuration to run: the base with `dropped` left out.
struct Variant {
  std::string kind;  // "base" for the base itself, else the removed component's kind
  std::string name;  // "base", or the component's name
  std::vector<std::string> dropped;  // empty for the base

  // RUNG_ABLATION: {"kind": "feature", "name": "area", "dropped": ["area"]}, or for the base
  // {"kind": "base", "name": "base", "dropped": []}. Keys in that order.
  std::string Json() const;
};

class AblationPolicy {
 public:
  virtual ~AblationPolicy() = default;
  virtual std::string name() const = 0;
  // The variants to run, the base first; deterministic in `components`.
  virtual std::vector<Variant> Variants(const std::vector<Component>& components) const = 0;
};

// Leave one component out: the base, then one variant per component (a group as one).
class LeaveOneComponentOut final : public AblationPolicy {
 public:
  std::string name() const override { return "loco"; }
  std::vector<Variant> Variants(const std::vector<Component>& components) const override;
};

// The policy named `name`, or INVALID_ARGUMENT listing the known ones.
absl::StatusOr<std::unique_ptr<AblationPolicy>> NewAblationPolicy(absl::string_view name);

// Trial `index` (0, 1, ...) of a study with `variants` variants: every variant's first run,
// then every variant's second, and so on, so that a study cut short still covers them all.
inline size_t VariantOf(int index, size_t variants) {
  return static_cast<size_t>(index) % variants;
}
inline int RepeatOf(int index, size_t variants) { return index / static_cast<int>(variants); }

// ---- Results ----

// One completed run: variant `variant` (an index into the policy's variants) in repeat
// `repeat` (0, 1, ...; its seed is repeat + 1) ended with objective `value`.
struct Run {
  size_t variant = 0;
  int repeat = 0;
  double value = 0;
};

struct VariantResult {
  Variant variant;
  int runs = 0;                  // completed runs
  double mean = std::nan("");    // of the objective over the runs
  double stddev = std::nan("");  // sample standard deviation (n - 1); NaN below 2 runs
  double delta = std::nan("");   // mean - the base's mean
  double harm = std::nan("");    // delta signed so that positive means worse than the base
  // How delta was tested against the noise between repeats: "paired t" (at least 2 repeats
  // where both this variant and the base completed, which share a seed), "Welch t" (else, at
  // least 2 runs on each side), or "" (too few runs). p: two-sided; NaN when untested.
  std::string test;
  double p = std::nan("");
  bool significant = false;  // p < alpha
  int rank = 0;              // 1: the removal that hurts most; the base has 0
};

// The results of every variant (the base first, in the policy's order), ranked by harm. A
// variant with no completed run gets no rank.
std::vector<VariantResult> Summarize(const std::vector<Variant>& variants,
                                     const std::vector<Run>& runs, bool minimize,
                                     double alpha = 0.05);

// Student's t distribution: P(|T| >= |t|) with `df` degrees of freedom (df > 0, not
// necessarily whole, as Welch's test gives).
double TwoSidedP(double t, double df);

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_ABLATION_H_
