// YAML to rung.v1.ExperimentSpec: one small parser per top-level key. Parsing checks the
// shape and the types of what it reads; what the values mean is ValidateSpec's (validate.cc).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "server/spec/spec.h"
#include "yaml-cpp/yaml.h"

namespace rung {
namespace {

using v1::ExperimentSpec;
using v1::ParamSpec;

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

std::string Scalar(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return "nothing";
}

absl::Status CheckKeys(const YAML::Node& n, absl::string_view field,
                       std::initializer_list<absl::string_view> known) {
  if (!n.IsMap()) return Invalid(field, absl::StrCat("expected a mapping, got ", Scalar(n)));
  for (const auto& kv : n) {
    std::string key = kv.first.Scalar();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return Invalid(
          field.empty() ? "spec" : field,
          absl::StrCat("unknown key '", key, "' (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GetString(const YAML::Node& n, absl::string_view field) {
  if (!n.IsScalar()) return Invalid(field, absl::StrCat("expected a string, got ", Scalar(n)));
  return n.Scalar();
}

absl::StatusOr<double> GetDouble(const YAML::Node& n, absl::string_view field) {
  if (n.IsScalar()) {
    const std::string& s = n.Scalar();
    double d = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
    if (ec == std::errc() && end == s.data() + s.size() && std::isfinite(d)) return d;
  }
  return Invalid(field, absl::StrCat("expected a number, got '", Scalar(n), "'"));
}

absl::StatusOr<int64_t> GetInt(const YAML::Node& n, absl::string_view field) {
  if (n.IsScalar()) {
    const std::string& s = n.Scalar();
    int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && end == s.data() + s.size()) return v;
  }
  return Invalid(field, absl::StrCat("expected an integer, got '", Scalar(n), "'"));
}

absl::StatusOr<bool> GetBool(const YAML::Node& n, absl::string_view field) {
  if (n.IsScalar()) {
    std::string s = absl::AsciiStrToLower(n.Scalar());
    if (s == "true" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "no" || s == "off") return false;
  }
  return Invalid(field, absl::StrCat("expected true or false, got '", Scalar(n), "'"));
}

absl::StatusOr<int32_t> GetInt32(const YAML::Node& n, absl::string_view field, int64_t lo) {
  ASSIGN_OR_RETURN(int64_t v, GetInt(n, field));
  if (v < lo || v > std::numeric_limits<int32_t>::max()) {
    return Invalid(field, absl::StrCat("must be at least ", lo, " (got ", v, ")"));
  }
  return static_cast<int32_t>(v);
}

// A list of strings into `add`, each named field[i]; with `one_ok`, a single string is a list
// of one and the items are named `field`.
template <typename Add>
absl::Status GetStrings(const YAML::Node& n, absl::string_view field, bool one_ok, Add add) {
  if (!n.IsSequence()) {
    if (!one_ok) return Invalid(field, absl::StrCat("expected a list, got ", Scalar(n)));
    ASSIGN_OR_RETURN(std::string v, GetString(n, field));
    add(std::move(v));
    return absl::OkStatus();
  }
  for (size_t i = 0; i < n.size(); ++i) {
    ASSIGN_OR_RETURN(std::string v,
                     GetString(n[i], one_ok ? field : absl::StrCat(field, "[", i, "]")));
    add(std::move(v));
  }
  return absl::OkStatus();
}

absl::Status ParseStringMap(const YAML::Node& n, absl::string_view field,
                            google::protobuf::Map<std::string, std::string>* out) {
  if (!n.IsMap()) return Invalid(field, absl::StrCat("expected a mapping, got ", Scalar(n)));
  for (const auto& kv : n) {
    std::string key = kv.first.Scalar();
    ASSIGN_OR_RETURN(std::string v, GetString(kv.second, absl::StrCat(field, ".", key)));
    (*out)[key] = v;
  }
  return absl::OkStatus();
}

// A float's number or an int's, by the parameter's type.
absl::StatusOr<double> GetBound(const YAML::Node& n, const std::string& field, const ParamSpec& p) {
  if (p.type() != ParamSpec::INT) return GetDouble(n, field);
  ASSIGN_OR_RETURN(int64_t v, GetInt(n, field));
  return static_cast<double>(v);
}

// `when: {parent: value}` or `when: {parent: [values]}`.
absl::Status ParseWhen(const YAML::Node& w, const std::string& field, ParamSpec* p) {
  if (!w.IsMap() || w.size() != 1) {
    return Invalid(field + ".when", "expected one parent and its values, e.g. {optimizer: sgd}");
  }
  for (const auto& kv : w) {
    p->set_parent(kv.first.Scalar());
    RETURN_IF_ERROR(GetStrings(kv.second, absl::StrCat(field, ".when.", p->parent()),
                               /*one_ok=*/true,
                               [&](std::string v) { p->add_parent_values(std::move(v)); }));
  }
  return absl::OkStatus();
}

absl::Status ParseParamType(const YAML::Node& n, const std::string& field, ParamSpec* p) {
  if (!n) return Invalid(field, "type is required (float, int or categorical)");
  ASSIGN_OR_RETURN(std::string type, GetString(n, field + ".type"));
  if (type == "float" || type == "double") {
    p->set_type(ParamSpec::FLOAT);
  } else if (type == "int" || type == "integer") {
    p->set_type(ParamSpec::INT);
  } else if (type == "categorical" || type == "choice") {
    p->set_type(ParamSpec::CATEGORICAL);
  } else {
    return Invalid(field + ".type",
                   absl::StrCat("unknown type '", type, "' (known: float, int, categorical)"));
  }
  return absl::OkStatus();
}

absl::Status ParseParamValues(const YAML::Node& vs, const std::string& field, ParamSpec* p) {
  if (!vs.IsSequence()) {
    return Invalid(field + ".values", absl::StrCat("expected a list, got ", Scalar(vs)));
  }
  for (size_t i = 0; i < vs.size(); ++i) {
    std::string f = absl::StrCat(field, ".values[", i, "]");
    if (p->type() == ParamSpec::CATEGORICAL) {
      ASSIGN_OR_RETURN(std::string v, GetString(vs[i], f));
      p->add_values(v);
    } else {
      ASSIGN_OR_RETURN(double v, GetBound(vs[i], f, *p));
      p->add_grid_values(v);
    }
  }
  if (vs.size() == 0) return Invalid(field, "values must not be empty");
  return absl::OkStatus();
}

absl::Status ParseParam(const std::string& name, const YAML::Node& n, ParamSpec* p) {
  std::string field = absl::StrCat("search_space.", name);
  RETURN_IF_ERROR(
      CheckKeys(n, field, {"type", "min", "max", "log", "values", "grid_points", "when"}));
  if (const YAML::Node w = n["when"]) RETURN_IF_ERROR(ParseWhen(w, field, p));
  p->set_name(name);
  RETURN_IF_ERROR(ParseParamType(n["type"], field, p));
  bool numeric = p->type() != ParamSpec::CATEGORICAL;
  if (n["min"]) {
    if (!numeric) return Invalid(field, "min applies to float and int parameters only");
    ASSIGN_OR_RETURN(double v, GetBound(n["min"], field + ".min", *p));
    p->set_min(v);
  }
  if (n["max"]) {
    if (!numeric) return Invalid(field, "max applies to float and int parameters only");
    ASSIGN_OR_RETURN(double v, GetBound(n["max"], field + ".max", *p));
    p->set_max(v);
  }
  if (n["log"]) {
    ASSIGN_OR_RETURN(bool v, GetBool(n["log"], field + ".log"));
    p->set_log(v);
  }
  if (n["grid_points"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(n["grid_points"], field + ".grid_points", 1));
    p->set_grid_points(v);
  }
  if (n["values"]) RETURN_IF_ERROR(ParseParamValues(n["values"], field, p));
  return absl::OkStatus();
}

absl::Status ParseObjective(const YAML::Node& o, const std::string& field, v1::Objective* out) {
  RETURN_IF_ERROR(CheckKeys(o, field, {"metric", "goal"}));
  if (o["metric"]) {
    ASSIGN_OR_RETURN(std::string v, GetString(o["metric"], field + ".metric"));
    out->set_metric(v);
  }
  if (o["goal"]) {
    ASSIGN_OR_RETURN(std::string g, GetString(o["goal"], field + ".goal"));
    g = absl::AsciiStrToLower(g);
    if (g == "minimize" || g == "min" || g == "minimise") {
      out->set_goal(v1::Objective::MINIMIZE);
    } else if (g == "maximize" || g == "max" || g == "maximise") {
      out->set_goal(v1::Objective::MAXIMIZE);
    } else {
      return Invalid(field + ".goal",
                     absl::StrCat("unknown goal '", g, "' (known: minimize, maximize)"));
    }
  }
  return absl::OkStatus();
}

// {metric, min, max}: a constraint and the resource have this shape.
template <typename Bounded>
absl::Status ParseMetricRange(const YAML::Node& n, const std::string& field, Bounded* out) {
  RETURN_IF_ERROR(CheckKeys(n, field, {"metric", "min", "max"}));
  if (n["metric"]) {
    ASSIGN_OR_RETURN(std::string v, GetString(n["metric"], field + ".metric"));
    out->set_metric(v);
  }
  if (n["min"]) {
    ASSIGN_OR_RETURN(double v, GetDouble(n["min"], field + ".min"));
    out->set_min(v);
  }
  if (n["max"]) {
    ASSIGN_OR_RETURN(double v, GetDouble(n["max"], field + ".max"));
    out->set_max(v);
  }
  return absl::OkStatus();
}

// ---- algorithm ------------------------------------------------------------------------------

// The keys of early_stopping:, a rule on top of a sampler.
absl::Status ParseEarlyStopping(const YAML::Node& es, v1::EarlyStopping* e) {
  const std::string field = "algorithm.early_stopping";
  RETURN_IF_ERROR(CheckKeys(
      es, field, {"rule", "reduction_factor", "mode", "max_rungs", "min_trials", "grace"}));
  if (es["rule"]) {
    ASSIGN_OR_RETURN(std::string v, GetString(es["rule"], field + ".rule"));
    e->set_rule(v);
  }
  if (es["reduction_factor"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(es["reduction_factor"], field + ".reduction_factor", 2));
    e->set_reduction_factor(v);
  }
  if (es["mode"]) {
    ASSIGN_OR_RETURN(std::string v, GetString(es["mode"], field + ".mode"));
    e->set_mode(v);
  }
  if (es["max_rungs"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(es["max_rungs"], field + ".max_rungs", 1));
    e->set_max_rungs(v);
  }
  if (es["min_trials"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(es["min_trials"], field + ".min_trials", 1));
    e->set_min_trials(v);
  }
  if (es["grace"]) {
    ASSIGN_OR_RETURN(double v, GetDouble(es["grace"], field + ".grace"));
    e->set_grace(v);
  }
  return absl::OkStatus();
}

// name, seed, warm_start and early_stopping are every algorithm's; any other key is an option
// of the named algorithm, kept as written (ValidateSpec checks it against the algorithm).
absl::Status ParseAlgorithmKey(const std::string& key, const YAML::Node& n, v1::Algorithm* alg) {
  const std::string field = absl::StrCat("algorithm.", key);
  if (key == "name") {
    ASSIGN_OR_RETURN(std::string v, GetString(n, field));
    alg->set_name(v);
  } else if (key == "seed") {
    ASSIGN_OR_RETURN(int64_t v, GetInt(n, field));
    if (v < 0) return Invalid(field, absl::StrCat("must not be negative (got ", v, ")"));
    alg->set_seed(static_cast<uint64_t>(v));
  } else if (key == "warm_start") {
    if (!n.IsSequence()) return Invalid(field, "expected a list of experiment ids, e.g. [e1, e4]");
    RETURN_IF_ERROR(GetStrings(n, field, /*one_ok=*/false,
                               [&](std::string v) { alg->add_warm_start(std::move(v)); }));
  } else if (key == "early_stopping") {
    RETURN_IF_ERROR(ParseEarlyStopping(n, alg->mutable_early_stopping()));
  } else if (n.IsSequence()) {
    // A list option (pbt's factors: [0.8, 1.2]): kept as written, for the algorithm to read.
    std::vector<std::string> items;
    for (const YAML::Node& item : n) {
      if (!item.IsScalar()) {
        return Invalid(field, absl::StrCat("expected a list of single values, got ", Scalar(n)));
      }
      items.push_back(item.Scalar());
    }
    (*alg->mutable_options())[key] = absl::StrCat("[", absl::StrJoin(items, ", "), "]");
  } else {
    if (!n.IsScalar()) {
      return Invalid(field, absl::StrCat("expected a single value, got ", Scalar(n)));
    }
    (*alg->mutable_options())[key] = n.Scalar();
  }
  return absl::OkStatus();
}

// ---- the top-level keys ---------------------------------------------------------------------

absl::Status ParseName(const YAML::Node& n, ExperimentSpec* spec) {
  ASSIGN_OR_RETURN(std::string v, GetString(n, "name"));
  spec->set_name(v);
  return absl::OkStatus();
}

absl::Status ParseObjectiveKey(const YAML::Node& n, ExperimentSpec* spec) {
  return ParseObjective(n, "objective", spec->mutable_objective());
}

absl::Status ParseObjectives(const YAML::Node& os, ExperimentSpec* spec) {
  if (!os.IsSequence()) {
    return Invalid("objectives", "expected a list, e.g. [{metric: loss, goal: minimize}, ...]");
  }
  for (size_t i = 0; i < os.size(); ++i) {
    RETURN_IF_ERROR(
        ParseObjective(os[i], absl::StrCat("objectives[", i, "]"), spec->add_objectives()));
  }
  return absl::OkStatus();
}

absl::Status ParseConstraints(const YAML::Node& cs, ExperimentSpec* spec) {
  if (!cs.IsSequence()) {
    return Invalid("constraints", "expected a list, e.g. [{metric: memory_gb, max: 16}]");
  }
  for (size_t i = 0; i < cs.size(); ++i) {
    RETURN_IF_ERROR(
        ParseMetricRange(cs[i], absl::StrCat("constraints[", i, "]"), spec->add_constraints()));
  }
  return absl::OkStatus();
}

absl::Status ParseSearchSpace(const YAML::Node& s, ExperimentSpec* spec) {
  if (!s.IsMap()) {
    return Invalid("search_space", absl::StrCat("expected a mapping, got ", Scalar(s)));
  }
  for (const auto& kv : s) {
    RETURN_IF_ERROR(ParseParam(kv.first.Scalar(), kv.second, spec->add_search_space()));
  }
  return absl::OkStatus();
}

absl::Status ParseResource(const YAML::Node& r, ExperimentSpec* spec) {
  return ParseMetricRange(r, "resource", spec->mutable_resource());
}

absl::Status ParseAlgorithm(const YAML::Node& a, ExperimentSpec* spec) {
  if (!a.IsMap()) return Invalid("algorithm", absl::StrCat("expected a mapping, got ", Scalar(a)));
  for (const auto& kv : a) {
    RETURN_IF_ERROR(ParseAlgorithmKey(kv.first.Scalar(), kv.second, spec->mutable_algorithm()));
  }
  return absl::OkStatus();
}

// execution: workers | external | {mode: hopper, partitions: P, epochs: E}
absl::Status ParseExecution(const YAML::Node& n, ExperimentSpec* spec) {
  if (!n.IsMap()) {
    ASSIGN_OR_RETURN(std::string v, GetString(n, "execution"));
    spec->set_execution(v);
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(CheckKeys(n, "execution", {"mode", "partitions", "epochs"}));
  if (!n["mode"]) {
    return Invalid("execution.mode", "is required (workers, external or hopper)");
  }
  ASSIGN_OR_RETURN(std::string mode, GetString(n["mode"], "execution.mode"));
  spec->set_execution(mode);
  if (n["partitions"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(n["partitions"], "execution.partitions", 1));
    spec->mutable_hopper()->set_partitions(v);
  }
  if (n["epochs"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(n["epochs"], "execution.epochs", 1));
    spec->mutable_hopper()->set_epochs(v);
  }
  return absl::OkStatus();
}

absl::Status ParseClientLease(const YAML::Node& n, ExperimentSpec* spec) {
  ASSIGN_OR_RETURN(int32_t v, GetInt32(n, "client_lease_seconds", 1));
  spec->set_client_lease_seconds(v);
  return absl::OkStatus();
}

absl::Status ParseBudget(const YAML::Node& b, ExperimentSpec* spec) {
  RETURN_IF_ERROR(CheckKeys(b, "budget", {"max_trials", "max_concurrent"}));
  if (b["max_trials"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(b["max_trials"], "budget.max_trials", 1));
    spec->mutable_budget()->set_max_trials(v);
  }
  if (b["max_concurrent"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(b["max_concurrent"], "budget.max_concurrent", 1));
    spec->mutable_budget()->set_max_concurrent(v);
  }
  return absl::OkStatus();
}

absl::Status ParseTrial(const YAML::Node& t, ExperimentSpec* spec) {
  RETURN_IF_ERROR(CheckKeys(t, "trial",
                            {"command", "workdir", "env", "max_restarts", "checkpoint_root",
                             "reuse_process", "keep_checkpoints"}));
  v1::TrialTemplate* tt = spec->mutable_trial();
  if (t["keep_checkpoints"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(t["keep_checkpoints"], "trial.keep_checkpoints", 0));
    tt->set_keep_checkpoints(v == 0 ? -1 : v);  // stored: -1 keeps none, 0 is "not given"
  }
  if (t["reuse_process"]) {
    ASSIGN_OR_RETURN(bool v, GetBool(t["reuse_process"], "trial.reuse_process"));
    tt->set_reuse_process(v);
  }
  if (t["checkpoint_root"]) {
    ASSIGN_OR_RETURN(std::string v, GetString(t["checkpoint_root"], "trial.checkpoint_root"));
    tt->set_checkpoint_root(v);
  }
  if (const YAML::Node c = t["command"]) {
    if (c.IsScalar()) {
      return Invalid("trial.command",
                     "expected a list of arguments, e.g. [python3, train.py, --lr, \"{lr}\"]");
    }
    if (!c.IsSequence()) return Invalid("trial.command", "expected a list of arguments");
    RETURN_IF_ERROR(GetStrings(c, "trial.command", /*one_ok=*/false,
                               [&](std::string v) { tt->add_command(std::move(v)); }));
  }
  if (t["workdir"]) {
    ASSIGN_OR_RETURN(std::string v, GetString(t["workdir"], "trial.workdir"));
    tt->set_workdir(v);
  }
  if (t["env"]) RETURN_IF_ERROR(ParseStringMap(t["env"], "trial.env", tt->mutable_env()));
  if (t["max_restarts"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(t["max_restarts"], "trial.max_restarts", 0));
    tt->set_max_restarts(v);
  }
  return absl::OkStatus();
}

absl::Status ParseResources(const YAML::Node& r, ExperimentSpec* spec) {
  RETURN_IF_ERROR(CheckKeys(r, "resources", {"gpus", "labels", "ranks", "ranks_per_node"}));
  if (r["gpus"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(r["gpus"], "resources.gpus", 0));
    spec->mutable_trial()->set_gpus(v);
  }
  if (r["ranks"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(r["ranks"], "resources.ranks", 1));
    spec->mutable_trial()->set_ranks(v);
  }
  if (r["ranks_per_node"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(r["ranks_per_node"], "resources.ranks_per_node", 0));
    spec->mutable_trial()->set_ranks_per_node(v);
  }
  if (r["labels"]) {
    RETURN_IF_ERROR(
        ParseStringMap(r["labels"], "resources.labels", spec->mutable_trial()->mutable_labels()));
  }
  return absl::OkStatus();
}

// ---- kind, and an ablation study's base, components, policy and repeats ---------------------

absl::Status ParseKind(const YAML::Node& n, ExperimentSpec* spec) {
  ASSIGN_OR_RETURN(std::string v, GetString(n, "kind"));
  spec->set_kind(v);
  return absl::OkStatus();
}

// A base parameter: a number stays a number (int when it is whole and written without a
// point); anything else, or a quoted number, is categorical.
absl::Status ParseBaseParam(const YAML::Node& key, const YAML::Node& value, v1::Ablation* a) {
  const std::string field = absl::StrCat("base.params.", key.Scalar());
  if (!value.IsScalar()) return Invalid(field, "expected a number or a string");
  const std::string text = value.Scalar();
  v1::ParamValue& v = (*a->mutable_base_params())[key.Scalar()];
  int64_t i;
  double d;
  if (value.Tag() != "!" && absl::SimpleAtoi(text, &i)) {
    v.set_int_value(i);
  } else if (value.Tag() != "!" && absl::SimpleAtod(text, &d) && std::isfinite(d)) {
    v.set_float_value(d);
  } else {
    v.set_categorical_value(text);
  }
  return absl::OkStatus();
}

absl::Status ParseBase(const YAML::Node& b, ExperimentSpec* spec) {
  v1::Ablation* a = spec->mutable_ablation();
  RETURN_IF_ERROR(CheckKeys(b, "base", {"params", "from_experiment"}));
  if (b["from_experiment"]) {
    ASSIGN_OR_RETURN(std::string v, GetString(b["from_experiment"], "base.from_experiment"));
    a->set_base_from_experiment(v);
  }
  if (const YAML::Node ps = b["params"]) {
    if (!ps.IsMap()) {
      return Invalid("base.params", absl::StrCat("expected a mapping, got ", Scalar(ps)));
    }
    for (const auto& kv : ps) RETURN_IF_ERROR(ParseBaseParam(kv.first, kv.second, a));
  }
  return absl::OkStatus();
}

absl::Status ParseGroups(const YAML::Node& groups, v1::Ablation* a) {
  if (!groups.IsMap()) {
    return Invalid("components.groups",
                   "expected a mapping of name to members, e.g. {attention: [attn1, attn2]}");
  }
  for (const auto& kv : groups) {
    const std::string field = absl::StrCat("components.groups.", kv.first.Scalar());
    if (!kv.second.IsSequence()) {
      return Invalid(field, "expected a list of the parts it removes together");
    }
    v1::AblationComponent* c = a->add_components();
    c->set_kind("group");
    c->set_name(kv.first.Scalar());
    RETURN_IF_ERROR(GetStrings(kv.second, field, /*one_ok=*/false,
                               [&](std::string m) { c->add_members(std::move(m)); }));
  }
  return absl::OkStatus();
}

absl::Status ParseComponents(const YAML::Node& cs, ExperimentSpec* spec) {
  v1::Ablation* a = spec->mutable_ablation();
  RETURN_IF_ERROR(CheckKeys(cs, "components", {"features", "layers", "groups", "custom"}));
  for (const auto& [key, kind] : std::initializer_list<std::pair<const char*, const char*>>{
           {"features", "feature"}, {"layers", "layer"}, {"custom", "custom"}}) {
    const YAML::Node list = cs[key];
    if (!list) continue;
    const std::string field = absl::StrCat("components.", key);
    if (!list.IsSequence()) {
      return Invalid(field, absl::StrCat("expected a list of names, got ", Scalar(list)));
    }
    RETURN_IF_ERROR(GetStrings(list, field, /*one_ok=*/false, [&, kind = kind](std::string name) {
      v1::AblationComponent* c = a->add_components();
      c->set_kind(kind);
      c->set_name(name);
      c->add_members(std::move(name));
    }));
  }
  if (const YAML::Node groups = cs["groups"]) RETURN_IF_ERROR(ParseGroups(groups, a));
  return absl::OkStatus();
}

absl::Status ParsePolicy(const YAML::Node& n, ExperimentSpec* spec) {
  ASSIGN_OR_RETURN(std::string v, GetString(n, "policy"));
  spec->mutable_ablation()->set_policy(v);
  return absl::OkStatus();
}

absl::Status ParseRepeats(const YAML::Node& n, ExperimentSpec* spec) {
  ASSIGN_OR_RETURN(int32_t v, GetInt32(n, "repeats", 1));
  spec->mutable_ablation()->set_repeats(v);
  return absl::OkStatus();
}

// The top-level keys a spec may have, each with its parser, in the order they are read (and
// listed when a key is unknown).
struct TopLevelKey {
  absl::string_view key;
  absl::Status (*parse)(const YAML::Node& value, ExperimentSpec* spec);
};
constexpr TopLevelKey kTopLevelKeys[] = {
    {"name", ParseName},
    {"objective", ParseObjectiveKey},
    {"objectives", ParseObjectives},
    {"constraints", ParseConstraints},
    {"search_space", ParseSearchSpace},
    {"algorithm", ParseAlgorithm},
    {"budget", ParseBudget},
    {"trial", ParseTrial},
    {"resources", ParseResources},
    {"resource", ParseResource},
    {"execution", ParseExecution},
    {"client_lease_seconds", ParseClientLease},
    {"kind", ParseKind},
    {"base", ParseBase},
    {"components", ParseComponents},
    {"policy", ParsePolicy},
    {"repeats", ParseRepeats},
};

absl::Status FromYaml(const YAML::Node& root, ExperimentSpec* spec) {
  std::vector<absl::string_view> known;
  for (const TopLevelKey& k : kTopLevelKeys) known.push_back(k.key);
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return Invalid("spec", absl::StrCat("unknown key '", key,
                                          "' (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  for (const TopLevelKey& k : kTopLevelKeys) {
    if (const YAML::Node value = root[std::string(k.key)]) RETURN_IF_ERROR(k.parse(value, spec));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ExperimentSpec> ParseSpecYaml(absl::string_view yaml, absl::string_view base_dir) {
  if (yaml.size() > kMaxSpecBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec: ", yaml.size(), " bytes of YAML; at most ", kMaxSpecBytes));
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec is not valid YAML: line ", e.mark.line + 1, ": ", e.msg));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError("spec: expected a YAML mapping at the top");
  ExperimentSpec spec;
  try {
    RETURN_IF_ERROR(FromYaml(root, &spec));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("spec: line ", e.mark.line + 1, ": ", e.msg));
  }
  RETURN_IF_ERROR(ValidateSpec(&spec, base_dir));
  return spec;
}

}  // namespace rung
