// ValidateSpec: what a spec's values mean, and the defaults it leaves out. The algorithm's
// own options are checked against server/search's registry, which knows each algorithm.
#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "server/search/algorithm.h"
#include "server/spec/spec.h"

namespace rung {
namespace {

using v1::ExperimentSpec;
using v1::ParamSpec;

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status CheckName(absl::string_view field, const std::string& name) {
  if (name.size() > kMaxNameBytes) {
    return Invalid(
        field, absl::StrCat("is ", name.size(), " bytes long; a name has at most ", kMaxNameBytes));
  }
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return Invalid(field, "contains a control character");
    }
  }
  return absl::OkStatus();
}

// "a", "a or b", "a, b or c" (`last` "or"), or with "and".
std::string JoinLast(const std::vector<std::string>& names, absl::string_view last) {
  if (names.size() < 2) return absl::StrJoin(names, "");
  return absl::StrCat(absl::StrJoin(names.begin(), names.end() - 1, ", "), " ", last, " ",
                      names.back());
}

// The registered algorithms for which `pick` holds, e.g. "tpe, gp and bohb".
template <typename Pick>
std::string AlgorithmsWhere(Pick pick, absl::string_view last) {
  std::vector<std::string> names;
  for (const search::AlgorithmInfo* a : search::Algorithms()) {
    if (pick(*a)) names.push_back(a->name);
  }
  return JoinLast(names, last);
}

// ---- search_space -------------------------------------------------------------------------

absl::Status CheckParamName(const std::string& field, const std::string& name) {
  if (name.empty() || !IsParamNameChar(name[0], true)) {
    return Invalid(field, "a parameter name must start with a letter or '_'");
  }
  for (char c : name) {
    if (!IsParamNameChar(c, false)) {
      return Invalid(field, absl::StrCat("a parameter name may hold letters, digits, '_', '.' "
                                         "and '-' only (got '",
                                         std::string(1, c), "')"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateCategorical(const ParamSpec& p, const std::string& field) {
  if (p.values().empty()) return Invalid(field, "values must not be empty");
  std::set<std::string> seen;
  for (const auto& v : p.values()) {
    if (!seen.insert(v).second) {
      return Invalid(field, absl::StrCat("value '", v, "' appears twice"));
    }
  }
  if (p.grid_points() != 0) return Invalid(field, "grid_points applies to floats only");
  return absl::OkStatus();
}

// `grid`: the sampler walks a grid, so a float needs points to walk.
absl::Status ValidateNumeric(ParamSpec* p, const std::string& field, bool grid) {
  bool is_int = p->type() == ParamSpec::INT;
  if (!p->grid_values().empty()) {
    if (p->log() && *std::min_element(p->grid_values().begin(), p->grid_values().end()) <= 0) {
      return Invalid(field, "log needs values above 0");
    }
    if (p->min() == 0 && p->max() == 0) {
      auto [lo, hi] = std::minmax_element(p->grid_values().begin(), p->grid_values().end());
      p->set_min(*lo);
      p->set_max(*hi);
    }
    return absl::OkStatus();
  }
  if (!(p->min() < p->max())) {
    return Invalid(field, absl::StrCat("min (", FormatDouble(p->min()), ") must be below max (",
                                       FormatDouble(p->max()), ")"));
  }
  if (p->log() && p->min() <= 0) {
    return Invalid(field, absl::StrCat("log needs min above 0 (got ", FormatDouble(p->min()), ")"));
  }
  if (is_int && p->grid_points() != 0) {
    return Invalid(field, "grid_points applies to floats only; a grid uses every integer");
  }
  if (grid && !is_int && p->grid_points() == 0) {
    return Invalid(field, "grid search needs grid_points (or values) for a float");
  }
  if (p->grid_points() == 1) return Invalid(field, "grid_points must be at least 2 (got 1)");
  return absl::OkStatus();
}

absl::Status ValidateParam(ParamSpec* p, bool grid) {
  std::string field = absl::StrCat("search_space.", p->name());
  RETURN_IF_ERROR(CheckParamName(field, p->name()));
  switch (p->type()) {
    case ParamSpec::CATEGORICAL:
      return ValidateCategorical(*p, field);
    case ParamSpec::FLOAT:
    case ParamSpec::INT:
      return ValidateNumeric(p, field, grid);
    default:
      return Invalid(field, "type is required (float, int or categorical)");
  }
}

// A conditional parameter's parent: declared before it, categorical, with those values.
absl::Status ValidateParent(const ParamSpec& p,
                            const std::map<std::string, const ParamSpec*>& declared) {
  const std::string field = absl::StrCat("search_space.", p.name(), ".when");
  auto parent = declared.find(p.parent());
  if (parent == declared.end()) {
    return Invalid(field, absl::StrCat("parent '", p.parent(),
                                       "' must be a parameter declared before ", p.name()));
  }
  if (parent->second->type() != ParamSpec::CATEGORICAL) {
    return Invalid(field, absl::StrCat("parent '", p.parent(), "' must be categorical"));
  }
  if (p.parent_values().empty()) return Invalid(field, "needs at least one value");
  for (const auto& v : p.parent_values()) {
    const auto& vs = parent->second->values();
    if (std::find(vs.begin(), vs.end(), v) == vs.end()) {
      return Invalid(field, absl::StrCat("'", v, "' is not a value of ", p.parent()));
    }
  }
  return absl::OkStatus();
}

// `conditional` gets the conditional parameters' names.
absl::Status ValidateSearchSpace(ExperimentSpec* spec, bool grid,
                                 std::set<std::string>* conditional) {
  if (spec->search_space().empty()) {
    return Invalid("search_space", "is required and must name at least one parameter");
  }
  std::set<std::string> names;
  std::map<std::string, const ParamSpec*> declared;
  for (auto& p : *spec->mutable_search_space()) {
    if (!names.insert(p.name()).second) {
      return Invalid(absl::StrCat("search_space.", p.name()), "is defined twice");
    }
    RETURN_IF_ERROR(ValidateParam(&p, grid));
    if (!p.parent().empty()) {
      RETURN_IF_ERROR(ValidateParent(p, declared));
      conditional->insert(p.name());
    }
    declared[p.name()] = &p;
  }
  return absl::OkStatus();
}

// ---- objectives ---------------------------------------------------------------------------

// `objectives`: each metric named once, with a goal; `objective` becomes the first (a list of
// one is the same as `objective`). Constraints: a metric and at least one bound.
absl::Status ValidateObjectives(ExperimentSpec* spec) {
  if (spec->objectives_size() > 0) {
    if (!spec->objective().metric().empty() ||
        spec->objective().goal() != v1::Objective::GOAL_UNSPECIFIED) {
      return Invalid("objectives", "give objective or objectives, not both");
    }
    std::set<std::string> seen;
    for (int i = 0; i < spec->objectives_size(); ++i) {
      const v1::Objective& o = spec->objectives(i);
      const std::string field = absl::StrCat("objectives[", i, "]");
      if (o.metric().empty()) return Invalid(field + ".metric", "is required");
      if (o.goal() == v1::Objective::GOAL_UNSPECIFIED) {
        return Invalid(field + ".goal", "is required (minimize or maximize)");
      }
      if (!seen.insert(o.metric()).second) {
        return Invalid(field + ".metric", absl::StrCat("'", o.metric(), "' is named twice"));
      }
    }
    *spec->mutable_objective() = spec->objectives(0);
    if (spec->objectives_size() == 1) spec->clear_objectives();
  }
  for (int i = 0; i < spec->constraints_size(); ++i) {
    const v1::Constraint& c = spec->constraints(i);
    const std::string field = absl::StrCat("constraints[", i, "]");
    if (c.metric().empty()) return Invalid(field + ".metric", "is required");
    if (!c.has_min() && !c.has_max()) return Invalid(field, "needs min, max or both");
    if (c.has_min() && c.has_max() && c.min() > c.max()) {
      return Invalid(field, absl::StrCat("min (", FormatDouble(c.min()),
                                         ") must not be above max (", FormatDouble(c.max()), ")"));
    }
  }
  return absl::OkStatus();
}

// ---- the algorithm and its stopping rule --------------------------------------------------

// An algorithm that stops trials itself describes its rule in early_stopping, from its
// options (`stopping`, as its configure made it), so that one place describes the rule.
absl::Status TakeRuleFrom(const search::AlgorithmInfo& info, const search::Stopping& stopping,
                          v1::Algorithm* alg) {
  v1::EarlyStopping* es = alg->mutable_early_stopping();
  if (!es->rule().empty()) {
    return Invalid(
        "algorithm.early_stopping",
        absl::StrCat(
            info.name, " stops trials itself; early_stopping goes with ",
            AlgorithmsWhere([](const auto& a) { return !a.stops_trials && !a.population; }, "or")));
  }
  using Rule = search::Stopping::Rule;
  es->set_rule(stopping.rule == Rule::kAsha        ? "asha"
               : stopping.rule == Rule::kHyperband ? "hyperband"
               : stopping.rule == Rule::kMedian    ? "median"
                                                   : "");
  if (stopping.rule == Rule::kMedian) {
    es->set_min_trials(stopping.min_trials);
    es->set_grace(stopping.grace);
  } else {
    es->set_reduction_factor(stopping.reduction_factor);
    es->set_mode(stopping.promote ? "promote" : "stop");
    es->set_max_rungs(stopping.max_rungs);
  }
  return absl::OkStatus();
}

// The algorithm's name and options against the registry: an unknown name or option, a wrong
// value, or what the algorithm does not allow is refused, and every option it takes is written
// back with its default. `info` and `config` get the algorithm and its part of the searcher's
// configuration.
absl::Status ValidateAlgorithm(ExperimentSpec* spec, const search::AlgorithmInfo** info,
                               search::Config* config) {
  v1::Algorithm* alg = spec->mutable_algorithm();
  if (alg->name().empty()) alg->set_name("random");
  absl::StatusOr<const search::AlgorithmInfo*> found = search::FindAlgorithm(alg->name());
  if (!found.ok()) return Invalid("algorithm.name", found.status().message());
  *info = *found;
  std::map<std::string, std::string> options(alg->options().begin(), alg->options().end());
  ASSIGN_OR_RETURN(search::OptionValues values,
                   search::ValidateOptions(**info, "algorithm", &options));
  alg->mutable_options()->clear();
  alg->mutable_options()->insert(options.begin(), options.end());
  (*info)->configure(values, config);
  if ((*info)->stops_trials) RETURN_IF_ERROR(TakeRuleFrom(**info, config->stopping, alg));
  if (!(*info)->learns_from_warm_start && !alg->warm_start().empty()) {
    return Invalid(
        "algorithm.warm_start",
        absl::StrCat("applies to ",
                     AlgorithmsWhere([](const auto& a) { return a.learns_from_warm_start; }, "and"),
                     " only (the models that learn)"));
  }
  return absl::OkStatus();
}

// Fills the stopping rule's defaults and checks it against the resource. `own_rule`: the
// algorithm brought the rule (asha, hyperband, bohb), so errors name its options.
absl::Status ValidateStopping(ExperimentSpec* spec, bool own_rule) {
  v1::Algorithm* alg = spec->mutable_algorithm();
  v1::EarlyStopping* es = alg->mutable_early_stopping();
  const std::string field = own_rule ? "algorithm" : "algorithm.early_stopping";
  const std::string& rule = es->rule();
  v1::Resource* res = spec->mutable_resource();
  if (res->metric().empty()) res->set_metric("step");
  bool has_range = res->min() != 0 || res->max() != 0;
  if (has_range && !(res->min() > 0 && res->min() < res->max())) {
    return Invalid("resource",
                   absl::StrCat("need 0 < min < max (got min ", FormatDouble(res->min()), ", max ",
                                FormatDouble(res->max()), ")"));
  }
  if (rule.empty()) {
    if (es->reduction_factor() || !es->mode().empty() || es->max_rungs() || es->min_trials() ||
        es->grace() != 0) {
      return Invalid(field + ".rule", "is required (asha, hyperband or median)");
    }
    alg->clear_early_stopping();
    return absl::OkStatus();
  }
  if (rule == "asha" || rule == "hyperband") {
    if (!has_range) {
      return Invalid("resource",
                     absl::StrCat("is required for ", rule,
                                  " (e.g. resource: {metric: epoch, min: 1, max: 81})"));
    }
    if (es->min_trials() || es->grace() != 0) {
      return Invalid(field, "min_trials and grace apply to the median rule");
    }
    if (es->reduction_factor() == 0) es->set_reduction_factor(3);
    if (es->reduction_factor() < 2) {
      return Invalid(field + ".reduction_factor",
                     absl::StrCat("must be at least 2 (got ", es->reduction_factor(), ")"));
    }
    if (es->mode().empty()) es->set_mode("stop");
    if (es->mode() != "stop" && es->mode() != "promote") {
      return Invalid(field + ".mode",
                     absl::StrCat("unknown mode '", es->mode(), "' (known: stop, promote)"));
    }
    if (es->max_rungs() < 0) return Invalid(field + ".max_rungs", "must not be negative");
    return absl::OkStatus();
  }
  if (rule == "median") {
    if (es->reduction_factor() || !es->mode().empty() || es->max_rungs()) {
      return Invalid(field, "reduction_factor, mode and max_rungs apply to asha and hyperband");
    }
    if (es->min_trials() == 0) es->set_min_trials(5);
    if (es->grace() < 0) {
      return Invalid(field + ".grace",
                     absl::StrCat("must not be negative (got ", FormatDouble(es->grace()), ")"));
    }
    return absl::OkStatus();
  }
  return Invalid(field + ".rule",
                 absl::StrCat("unknown rule '", rule, "' (known: asha, hyperband, median)"));
}

// pbt and pb2: members train in segments of the resource to its max, keep their checkpoints in
// rungd (a donor's is copied as it was at its ready point), and are the experiment's trials.
absl::Status ValidatePopulation(ExperimentSpec* spec, const search::Config& config) {
  const std::string& name = spec->algorithm().name();
  if (spec->algorithm().has_early_stopping()) {
    return Invalid("algorithm.early_stopping",
                   absl::StrCat(name,
                                " trains every member to resource.max; the weak take "
                                "over the strong's checkpoints instead of stopping"));
  }
  if (spec->objectives_size() > 1) {
    return Invalid("objectives", absl::StrCat(name, " ranks its members by one objective"));
  }
  v1::Resource* res = spec->mutable_resource();
  if (res->max() <= 0) {
    return Invalid("resource", absl::StrCat("is required for ", name,
                                            ": its members train in segments of it (e.g. "
                                            "resource: {metric: epoch, max: 40})"));
  }
  if (config.pbt.interval >= res->max()) {
    return Invalid("algorithm.interval",
                   absl::StrCat("must be below resource.max (", FormatDouble(res->max()),
                                ") so that members have ready points (got ",
                                FormatDouble(config.pbt.interval), ")"));
  }
  if (res->min() == 0) res->set_min(config.pbt.interval);  // the first ready point
  if (!spec->execution().empty() && spec->execution() != "workers") {
    return Invalid("execution", absl::StrCat(name, " runs its members' segments on workers"));
  }
  if (!spec->trial().checkpoint_root().empty()) {
    return Invalid("trial.checkpoint_root",
                   absl::StrCat(name,
                                " keeps its members' checkpoints in rungd, which hands a member "
                                "a donor's checkpoint as it was at the donor's ready point (a "
                                "shared folder is overwritten by the donor's next segment); "
                                "leave checkpoint_root out"));
  }
  v1::Budget* b = spec->mutable_budget();
  if (b->max_trials() != 0 && b->max_trials() != config.pbt.population) {
    return Invalid("budget.max_trials",
                   absl::StrCat(name, "'s trials are its members (algorithm.population: ",
                                config.pbt.population, "); leave max_trials out"));
  }
  b->set_max_trials(config.pbt.population);
  return absl::OkStatus();
}

absl::Status ValidateBudget(ExperimentSpec* spec, const search::AlgorithmInfo& info) {
  v1::Budget* b = spec->mutable_budget();
  if (b->max_trials() < 0) return Invalid("budget.max_trials", "must be at least 1");
  if (info.needs_max_trials && b->max_trials() == 0) {
    return Invalid("budget.max_trials", absl::StrCat("is required for ", info.name, " search"));
  }
  if (b->max_concurrent() < 0) return Invalid("budget.max_concurrent", "must be at least 1");
  // Grid search: max_trials 0 means the whole grid; the controller fills in its size.
  if (b->max_concurrent() == 0 && b->max_trials() > 0) b->set_max_concurrent(b->max_trials());
  return absl::OkStatus();
}

// kind: search: the algorithm, the search space and the budget. `conditional` gets the
// conditional parameters' names.
absl::Status ValidateSearch(ExperimentSpec* spec, std::set<std::string>* conditional) {
  if (spec->has_ablation()) {
    return Invalid("base", "base, components, policy and repeats belong to kind: ablation");
  }
  const search::AlgorithmInfo* info = nullptr;
  search::Config config;
  RETURN_IF_ERROR(ValidateAlgorithm(spec, &info, &config));
  if (info->population) {
    RETURN_IF_ERROR(ValidatePopulation(spec, config));
  }
  RETURN_IF_ERROR(ValidateStopping(spec, info->stops_trials));
  if (spec->objectives_size() > 1) {
    if (spec->algorithm().has_early_stopping()) {
      return Invalid("algorithm",
                     "early stopping compares one metric; it needs a single objective");
    }
    if (!spec->algorithm().warm_start().empty()) {
      return Invalid("algorithm.warm_start", "needs a single objective");
    }
  }
  RETURN_IF_ERROR(
      ValidateSearchSpace(spec, config.sampler == search::Config::Sampler::kGrid, conditional));
  return ValidateBudget(spec, *info);
}

// ---- kind: ablation -----------------------------------------------------------------------

absl::Status ValidateComponents(const v1::Ablation& a) {
  if (a.components().empty()) {
    return Invalid("components",
                   "name at least one component to leave out (features, layers, groups or custom)");
  }
  std::set<std::string> names;
  for (const auto& c : a.components()) {
    const std::string field = absl::StrCat("components.", c.kind() == "feature" ? "features"
                                                          : c.kind() == "layer" ? "layers"
                                                          : c.kind() == "group" ? "groups"
                                                                                : "custom");
    RETURN_IF_ERROR(CheckName(field, c.name()));
    if (!names.insert(c.name()).second) {
      return Invalid(field, absl::StrCat("'", c.name(), "' is named twice"));
    }
    if (c.members().empty()) {
      return Invalid(absl::StrCat(field, ".", c.name()), "needs at least one member");
    }
    for (const auto& m : c.members()) {
      RETURN_IF_ERROR(CheckName(absl::StrCat(field, ".", c.name()), m));
    }
  }
  return absl::OkStatus();
}

// The base configuration, the components, the repeats.
absl::Status ValidateAblation(ExperimentSpec* spec) {
  if (!spec->search_space().empty()) {
    return Invalid(
        "search_space",
        "an ablation study runs its base configuration: put the parameters under base.params");
  }
  const v1::Algorithm& alg = spec->algorithm();
  if ((!alg.name().empty() && alg.name() != "ablation") || alg.has_early_stopping() ||
      !alg.options().empty()) {
    return Invalid(
        "algorithm",
        "an ablation study runs every variant; it has no search algorithm or early stopping");
  }
  spec->mutable_algorithm()->set_name("ablation");
  v1::Ablation* a = spec->mutable_ablation();
  if (a->base_params().empty() == a->base_from_experiment().empty() && !a->base_params().empty()) {
    return Invalid("base", "give params or from_experiment, not both");
  }
  for (const auto& [k, v] : a->base_params()) RETURN_IF_ERROR(CheckName("base.params", k));
  if (!a->base_from_experiment().empty()) {
    RETURN_IF_ERROR(CheckName("base.from_experiment", a->base_from_experiment()));
  }
  RETURN_IF_ERROR(ValidateComponents(*a));
  if (a->policy().empty()) a->set_policy("loco");
  if (a->repeats() == 0) a->set_repeats(1);
  if (a->repeats() < 0 || a->repeats() > 1000) {
    return Invalid("repeats", absl::StrCat("is ", a->repeats(), "; between 1 and 1000"));
  }
  if (spec->budget().max_trials() != 0) {
    return Invalid("budget.max_trials",
                   "an ablation study runs each variant `repeats` times; set repeats instead");
  }
  if (spec->budget().max_concurrent() < 0) {
    return Invalid("budget.max_concurrent", "must be at least 1");
  }
  return absl::OkStatus();
}

// ---- the whole spec -----------------------------------------------------------------------

// The limits, whatever the kind: sizes, names, the number of parameters and trials.
absl::Status CheckLimits(const ExperimentSpec& spec) {
  RETURN_IF_ERROR(CheckSizes(spec, "", kMaxStringBytes, kMaxRepeated));
  if (spec.search_space_size() > kMaxParameters) {
    return Invalid("search_space", absl::StrCat("has ", spec.search_space_size(),
                                                " parameters; at most ", kMaxParameters));
  }
  RETURN_IF_ERROR(CheckName("name", spec.name()));
  RETURN_IF_ERROR(CheckName("objective.metric", spec.objective().metric()));
  for (int i = 0; i < spec.objectives_size(); ++i) {
    RETURN_IF_ERROR(
        CheckName(absl::StrCat("objectives[", i, "].metric"), spec.objectives(i).metric()));
  }
  for (const auto& p : spec.search_space()) RETURN_IF_ERROR(CheckName("search_space", p.name()));
  if (spec.budget().max_trials() > kMaxTrials) {
    return Invalid("budget.max_trials",
                   absl::StrCat("is ", spec.budget().max_trials(), "; at most ", kMaxTrials));
  }
  return absl::OkStatus();
}

// `path`, made absolute against `base_dir` when relative.
absl::StatusOr<std::filesystem::path> Absolute(const std::string& field, const std::string& path,
                                               absl::string_view base_dir) {
  std::filesystem::path p = path.empty() ? "." : path;
  if (p.is_relative()) {
    if (base_dir.empty()) {
      return Invalid(field, absl::StrCat("'", path, "' is relative but no spec folder was given"));
    }
    p = std::filesystem::path(std::string(base_dir)) / p;
  }
  return p.lexically_normal();
}

absl::Status ValidateRanks(v1::TrialTemplate* t) {
  if (t->ranks() == 0) t->set_ranks(1);
  if (t->ranks() < 1 || t->ranks() > kMaxRanks) {
    return Invalid("resources.ranks", absl::StrCat("must be between 1 and ", kMaxRanks));
  }
  const int per_node = t->ranks_per_node();
  if (per_node < 0) return Invalid("resources.ranks_per_node", "must not be negative");
  if (per_node > t->ranks() || (per_node > 0 && t->ranks() % per_node != 0)) {
    return Invalid("resources.ranks_per_node",
                   absl::StrCat(per_node, " does not divide resources.ranks (", t->ranks(),
                                ") into whole workers"));
  }
  if (t->reuse_process() && t->ranks() > 1) {
    return Invalid("trial.reuse_process",
                   "applies to trials of one rank (the ranks of a distributed trial start "
                   "together, for each attempt)");
  }
  return absl::OkStatus();
}

// The trial template of trials that rung-worker launches.
absl::Status ValidateLaunchedTrial(ExperimentSpec* spec, absl::string_view base_dir,
                                   const std::set<std::string>& conditional) {
  v1::TrialTemplate* t = spec->mutable_trial();
  if (spec->client_lease_seconds() != 0) {
    return Invalid("client_lease_seconds", "applies to execution: external only");
  }
  if (t->command().empty()) {
    return Invalid("trial.command", "is required (the argv of the training process)");
  }
  google::protobuf::Map<std::string, v1::ParamValue> probe;
  for (const auto& p : spec->search_space()) probe[p.name()].set_int_value(0);
  for (const auto& [k, v] : spec->ablation().base_params()) probe[k] = v;
  // A base taken from another experiment is known only when the study is created; rungd
  // checks the placeholders against it then.
  if (spec->ablation().base_from_experiment().empty()) {
    RETURN_IF_ERROR(CheckPlaceholders(*t, probe, conditional));
  }
  if (t->max_restarts() < 0) return Invalid("trial.max_restarts", "must not be negative");
  if (t->gpus() < 0) return Invalid("resources.gpus", "must not be negative");
  RETURN_IF_ERROR(ValidateRanks(t));
  ASSIGN_OR_RETURN(std::filesystem::path wd, Absolute("trial.workdir", t->workdir(), base_dir));
  t->set_workdir(wd.string());
  if (t->workdir().size() > 1 && t->workdir().back() == '/') {
    t->set_workdir(t->workdir().substr(0, t->workdir().size() - 1));
  }
  if (!t->checkpoint_root().empty()) {
    absl::StatusOr<std::filesystem::path> root =
        Absolute("trial.checkpoint_root", t->checkpoint_root(), base_dir);
    if (!root.ok()) {
      return Invalid("trial.checkpoint_root", "is relative but no spec folder was given");
    }
    t->set_checkpoint_root(root->string());
  }
  return absl::OkStatus();
}

// execution: {mode: hopper}: its partitions and epochs, and the resource they imply: the
// epoch, which stopping rules (asha, hyperband, median) judge the models at.
absl::Status ValidateHopper(ExperimentSpec* spec) {
  if (spec->execution() != "hopper") return absl::OkStatus();
  const v1::Hopper& h = spec->hopper();
  if (h.partitions() < 1 || h.partitions() > 10000) {
    return Invalid("execution.partitions",
                   "is required for hopper mode: how many partitions the data is split into "
                   "(1 to 10000)");
  }
  if (h.epochs() < 1 || h.epochs() > 100000) {
    return Invalid("execution.epochs",
                   "is required for hopper mode: how many passes over every partition (1 to "
                   "100000)");
  }
  v1::Resource* r = spec->mutable_resource();
  if (r->metric().empty()) r->set_metric("epoch");
  if (r->min() == 0 && r->max() == 0 && h.epochs() > 1) {
    r->set_min(1);
    r->set_max(h.epochs());
  }
  return absl::OkStatus();
}

// execution: workers (rung-worker launches the trials), hopper (the same, one unit at a time)
// or external (clients ask and tell).
absl::Status ValidateExecution(ExperimentSpec* spec, absl::string_view base_dir,
                               const std::set<std::string>& conditional) {
  v1::TrialTemplate* t = spec->mutable_trial();
  if (spec->execution().empty()) spec->set_execution("workers");
  if (spec->execution() != "workers" && spec->execution() != "external" &&
      spec->execution() != "hopper") {
    return Invalid("execution", absl::StrCat("unknown execution '", spec->execution(),
                                             "' (known: workers, external, hopper)"));
  }
  if (spec->client_lease_seconds() < 0) {
    return Invalid("client_lease_seconds", "must be at least 1");
  }
  if (spec->execution() != "hopper" && spec->has_hopper()) {
    return Invalid("execution", "partitions and epochs apply to mode: hopper");
  }
  if (t->keep_checkpoints() > 10000) {
    return Invalid("trial.keep_checkpoints", "must be at most 10000");
  }
  if (t->keep_checkpoints() == 0) t->set_keep_checkpoints(1);
  if (spec->execution() == "hopper") {
    if (t->ranks() > 1) {
      return Invalid("execution", "hopper mode trains each model in one process (trial.ranks: 1)");
    }
    if (spec->algorithm().early_stopping().mode() == "promote") {
      return Invalid("algorithm.mode",
                     "promote does not combine with hopper mode, where every model trains epoch "
                     "after epoch in the rotation; use mode: stop (a stopped model leaves it)");
    }
  }
  if (spec->execution() == "hopper" || spec->execution() == "workers") {
    return ValidateLaunchedTrial(spec, base_dir, conditional);
  }
  // Clients run the trials (ask and tell): nothing here launches a process.
  if (!t->command().empty() || !t->env().empty() || !t->checkpoint_root().empty() ||
      t->gpus() != 0 || !t->labels().empty() || t->ranks() != 0 || t->ranks_per_node() != 0 ||
      t->reuse_process()) {
    return Invalid("trial",
                   "execution: external trials are run by the clients that ask for them; only "
                   "trial.max_restarts applies (remove command, env, resources and the rest)");
  }
  if (t->max_restarts() < 0) return Invalid("trial.max_restarts", "must not be negative");
  if (spec->client_lease_seconds() == 0) spec->set_client_lease_seconds(600);
  t->clear_workdir();
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateSpec(ExperimentSpec* spec, absl::string_view base_dir) {
  RETURN_IF_ERROR(CheckLimits(*spec));
  if (spec->name().empty()) spec->set_name("experiment");
  RETURN_IF_ERROR(ValidateObjectives(spec));
  if (spec->objective().metric().empty()) {
    return Invalid("objective.metric", "is required (the metric to optimise, e.g. loss)");
  }
  if (spec->objective().goal() == v1::Objective::GOAL_UNSPECIFIED) {
    return Invalid("objective.goal", "is required (minimize or maximize)");
  }
  if (spec->kind().empty()) spec->set_kind("search");
  RETURN_IF_ERROR(ValidateHopper(spec));
  std::set<std::string> conditional;
  if (spec->kind() == "ablation") {
    RETURN_IF_ERROR(ValidateAblation(spec));
  } else if (spec->kind() == "search") {
    RETURN_IF_ERROR(ValidateSearch(spec, &conditional));
  } else {
    return Invalid("kind",
                   absl::StrCat("unknown kind '", spec->kind(), "' (known: search, ablation)"));
  }
  return ValidateExecution(spec, base_dir, conditional);
}

}  // namespace rung
