// Ablation studies: which variants of a base configuration to run, each leaving some
// components (input features, layers, groups of them, custom switches) out. A policy turns
// the components into variants; a new policy (say, cumulative removal in a given order) is
// a new class here, not a change to the scheduler.
// Pure: no I/O, no clock; links only the standard library and abseil.
#ifndef RUNG_SERVER_SEARCH_ABLATION_H_
#define RUNG_SERVER_SEARCH_ABLATION_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rung::search {

struct Component {
  std::string kind;                  // feature | layer | group | custom
  std::string name;
  std::vector<std::string> members;  // what removing it drops: a group's members, else {name}
};

// One configuration to run: the base with `dropped` left out.
struct Variant {
  std::string kind;                  // "base" for the base itself, else the removed component's kind
  std::string name;                  // "base", or the component's name
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
inline size_t VariantOf(int index, size_t variants) { return static_cast<size_t>(index) % variants; }
inline int RepeatOf(int index, size_t variants) { return index / static_cast<int>(variants); }

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_ABLATION_H_
