#include "server/schedule/search_config.h"

#include <map>
#include <string>
#include <variant>

#include "absl/strings/str_cat.h"
#include "server/search/algorithm.h"

namespace rung {
namespace {

// Option text of a legacy field that is set; nothing for one at its default.
void MoveLegacy(bool set, std::string text, const char* option, v1::Algorithm* alg) {
  if (set) alg->mutable_options()->insert({option, std::move(text)});
}

// The only reader of the deprecated fields (see MigrateLegacyAlgorithm).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
void MoveLegacyFields(v1::Algorithm* alg) {
  MoveLegacy(alg->startup_trials() != 0, absl::StrCat(alg->startup_trials()), "startup_trials",
             alg);
  MoveLegacy(alg->multivariate(), "true", "multivariate", alg);
  MoveLegacy(!alg->acquisition().empty(), alg->acquisition(), "acquisition", alg);
  MoveLegacy(alg->reduction_factor() != 0, absl::StrCat(alg->reduction_factor()),
             "reduction_factor", alg);
  MoveLegacy(!alg->mode().empty(), alg->mode(), "mode", alg);
  MoveLegacy(alg->max_rungs() != 0, absl::StrCat(alg->max_rungs()), "max_rungs", alg);
  alg->clear_startup_trials();
  alg->clear_multivariate();
  alg->clear_acquisition();
  alg->clear_reduction_factor();
  alg->clear_mode();
  alg->clear_max_rungs();
}
#pragma GCC diagnostic pop

}  // namespace

void MigrateLegacyAlgorithm(v1::ExperimentSpec* spec) {
  v1::Algorithm* alg = spec->mutable_algorithm();
  MoveLegacyFields(alg);
  absl::StatusOr<const search::AlgorithmInfo*> info = search::FindAlgorithm(alg->name());
  if (!info.ok()) return;  // an ablation study, or a spec that will be refused
  std::map<std::string, std::string> options(alg->options().begin(), alg->options().end());
  // Rung 0.1 checked these settings; should one not pass today, it stays as it was and the
  // searcher takes the defaults (SearchConfig).
  if (!search::ValidateOptions(**info, "algorithm", &options).ok()) return;
  alg->mutable_options()->clear();
  alg->mutable_options()->insert(options.begin(), options.end());
}

search::ParamValue ToSearch(const v1::ParamValue& v) {
  switch (v.kind_case()) {
    case v1::ParamValue::kIntValue:
      return v.int_value();
    case v1::ParamValue::kCategoricalValue:
      return v.categorical_value();
    default:
      return v.float_value();
  }
}

v1::ParamValue FromSearch(const search::ParamValue& v) {
  v1::ParamValue out;
  if (const auto* d = std::get_if<double>(&v)) out.set_float_value(*d);
  if (const auto* i = std::get_if<int64_t>(&v)) out.set_int_value(*i);
  if (const auto* s = std::get_if<std::string>(&v)) out.set_categorical_value(*s);
  return out;
}

search::Config SearchConfig(const v1::ExperimentSpec& spec) {
  search::Config c;
  for (const auto& p : spec.search_space()) {
    search::Param q;
    q.name = p.name();
    q.kind = p.type() == v1::ParamSpec::INT           ? search::Param::Kind::kInt
             : p.type() == v1::ParamSpec::CATEGORICAL ? search::Param::Kind::kCategorical
                                                      : search::Param::Kind::kFloat;
    q.min = p.min();
    q.max = p.max();
    q.log = p.log();
    q.values.assign(p.values().begin(), p.values().end());
    q.grid_values.assign(p.grid_values().begin(), p.grid_values().end());
    q.grid_points = p.grid_points();
    q.parent = p.parent();
    q.parent_values.assign(p.parent_values().begin(), p.parent_values().end());
    c.space.push_back(std::move(q));
  }
  c.goal = spec.objective().goal() == v1::Objective::MAXIMIZE ? search::Goal::kMaximize
                                                              : search::Goal::kMinimize;
  for (const v1::Objective& o : spec.objectives()) {
    c.objectives.push_back(o.goal() == v1::Objective::MAXIMIZE ? search::Goal::kMaximize
                                                               : search::Goal::kMinimize);
  }
  c.constrained = spec.constraints_size() > 0;
  c.max_trials = spec.budget().max_trials();
  c.seed = spec.algorithm().seed();
  for (const auto& [k, v] : spec.ablation().base_params()) c.fixed[k] = ToSearch(v);
  c.resource_min = spec.resource().min();
  c.resource_max = spec.resource().max();
  const v1::EarlyStopping& es = spec.algorithm().early_stopping();
  c.stopping.rule = es.rule() == "asha"        ? search::Stopping::Rule::kAsha
                    : es.rule() == "hyperband" ? search::Stopping::Rule::kHyperband
                    : es.rule() == "median"    ? search::Stopping::Rule::kMedian
                                               : search::Stopping::Rule::kNone;
  if (es.reduction_factor() > 0) c.stopping.reduction_factor = es.reduction_factor();
  c.stopping.max_rungs = es.max_rungs();
  c.stopping.promote = es.mode() == "promote";
  if (es.min_trials() > 0) c.stopping.min_trials = es.min_trials();
  c.stopping.grace = es.grace();
  // After early_stopping: an algorithm that stops trials itself sets the rule from its options
  // (which ValidateSpec copied into early_stopping too).
  if (spec.kind() == "ablation") {
    c.sampler = search::Config::Sampler::kFixed;
  } else if (absl::StatusOr<const search::AlgorithmInfo*> info =
                 search::FindAlgorithm(spec.algorithm().name());
             info.ok()) {
    v1::ExperimentSpec migrated;
    *migrated.mutable_algorithm() = spec.algorithm();
    MigrateLegacyAlgorithm(&migrated);  // a no-op unless rung 0.1 stored the spec
    const auto& options = migrated.algorithm().options();
    if (!search::Configure(**info, {options.begin(), options.end()}, &c).ok()) {
      search::Configure(**info, {}, &c).IgnoreError();  // the defaults: see MigrateLegacyAlgorithm
    }
  }
  return c;
}

std::vector<search::Variant> AblationVariants(const v1::ExperimentSpec& spec) {
  std::vector<search::Component> components;
  for (const auto& c : spec.ablation().components()) {
    components.push_back({c.kind(), c.name(), {c.members().begin(), c.members().end()}});
  }
  auto policy = search::NewAblationPolicy(spec.ablation().policy());
  // The policy was checked when the study was created.
  return policy.ok() ? (*policy)->Variants(components)
                     : std::vector<search::Variant>{{"base", "base", {}}};
}

void SetRungLevels(v1::Experiment* e) {
  e->clear_rung_levels();
  const v1::EarlyStopping& es = e->spec().algorithm().early_stopping();
  if (es.rule() != "asha" && es.rule() != "hyperband") return;
  const v1::Resource& r = e->spec().resource();
  for (double level : search::Rungs(r.min(), r.max(), es.reduction_factor(), es.max_rungs())) {
    e->add_rung_levels(level);
  }
  e->add_rung_levels(r.max());
}

}  // namespace rung
