#include "common/spec.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <limits>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
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
      return Invalid(field.empty() ? "spec" : field,
                     absl::StrCat("unknown key '", key, "' (known: ", absl::StrJoin(known, ", "),
                                  ")"));
    }
  }
  return absl::OkStatus();
}

std::string Join(absl::string_view a, absl::string_view b) {
  return a.empty() ? std::string(b) : absl::StrCat(a, ".", b);
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

absl::Status ParseStringMap(const YAML::Node& n, absl::string_view field,
                            google::protobuf::Map<std::string, std::string>* out) {
  if (!n.IsMap()) return Invalid(field, absl::StrCat("expected a mapping, got ", Scalar(n)));
  for (const auto& kv : n) {
    std::string key = kv.first.Scalar();
    ASSIGN_OR_RETURN(std::string v, GetString(kv.second, Join(field, key)));
    (*out)[key] = v;
  }
  return absl::OkStatus();
}

absl::Status ParseParam(const std::string& name, const YAML::Node& n, ParamSpec* p) {
  std::string field = absl::StrCat("search_space.", name);
  RETURN_IF_ERROR(
      CheckKeys(n, field, {"type", "min", "max", "log", "values", "grid_points", "when"}));
  if (const YAML::Node w = n["when"]) {
    if (!w.IsMap() || w.size() != 1) {
      return Invalid(field + ".when", "expected one parent and its values, e.g. {optimizer: sgd}");
    }
    for (const auto& kv : w) {
      p->set_parent(kv.first.Scalar());
      if (kv.second.IsSequence()) {
        for (size_t i = 0; i < kv.second.size(); ++i) {
          ASSIGN_OR_RETURN(std::string v, GetString(kv.second[i], absl::StrCat(field, ".when.", p->parent())));
          p->add_parent_values(v);
        }
      } else {
        ASSIGN_OR_RETURN(std::string v, GetString(kv.second, absl::StrCat(field, ".when.", p->parent())));
        p->add_parent_values(v);
      }
    }
  }
  p->set_name(name);
  if (!n["type"]) return Invalid(field, "type is required (float, int or categorical)");
  ASSIGN_OR_RETURN(std::string type, GetString(n["type"], field + ".type"));
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
  bool numeric = p->type() != ParamSpec::CATEGORICAL;
  if (n["min"]) {
    if (!numeric) return Invalid(field, "min applies to float and int parameters only");
    if (p->type() == ParamSpec::INT) {
      ASSIGN_OR_RETURN(int64_t v, GetInt(n["min"], field + ".min"));
      p->set_min(static_cast<double>(v));
    } else {
      ASSIGN_OR_RETURN(double v, GetDouble(n["min"], field + ".min"));
      p->set_min(v);
    }
  }
  if (n["max"]) {
    if (!numeric) return Invalid(field, "max applies to float and int parameters only");
    if (p->type() == ParamSpec::INT) {
      ASSIGN_OR_RETURN(int64_t v, GetInt(n["max"], field + ".max"));
      p->set_max(static_cast<double>(v));
    } else {
      ASSIGN_OR_RETURN(double v, GetDouble(n["max"], field + ".max"));
      p->set_max(v);
    }
  }
  if (n["log"]) {
    ASSIGN_OR_RETURN(bool v, GetBool(n["log"], field + ".log"));
    p->set_log(v);
  }
  if (n["grid_points"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(n["grid_points"], field + ".grid_points", 1));
    p->set_grid_points(v);
  }
  if (n["values"]) {
    const YAML::Node& vs = n["values"];
    if (!vs.IsSequence()) {
      return Invalid(field + ".values", absl::StrCat("expected a list, got ", Scalar(vs)));
    }
    for (size_t i = 0; i < vs.size(); ++i) {
      std::string f = absl::StrCat(field, ".values[", i, "]");
      if (p->type() == ParamSpec::CATEGORICAL) {
        ASSIGN_OR_RETURN(std::string v, GetString(vs[i], f));
        p->add_values(v);
      } else if (p->type() == ParamSpec::INT) {
        ASSIGN_OR_RETURN(int64_t v, GetInt(vs[i], f));
        p->add_grid_values(static_cast<double>(v));
      } else {
        ASSIGN_OR_RETURN(double v, GetDouble(vs[i], f));
        p->add_grid_values(v);
      }
    }
    if (vs.size() == 0) return Invalid(field, "values must not be empty");
  }
  return absl::OkStatus();
}

absl::Status ObjectiveFromYaml(const YAML::Node& o, const std::string& field, v1::Objective* out) {
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
      return Invalid(field + ".goal", absl::StrCat("unknown goal '", g, "' (known: minimize, maximize)"));
    }
  }
  return absl::OkStatus();
}

// kind, and for an ablation study: base, components, policy, repeats.
absl::Status AblationFromYaml(const YAML::Node& root, ExperimentSpec* spec) {
  if (root["kind"]) {
    ASSIGN_OR_RETURN(std::string v, GetString(root["kind"], "kind"));
    spec->set_kind(v);
  }
  if (!root["base"] && !root["components"] && !root["policy"] && !root["repeats"]) return absl::OkStatus();
  v1::Ablation* a = spec->mutable_ablation();
  if (const YAML::Node b = root["base"]) {
    RETURN_IF_ERROR(CheckKeys(b, "base", {"params", "from_experiment"}));
    if (b["from_experiment"]) {
      ASSIGN_OR_RETURN(std::string v, GetString(b["from_experiment"], "base.from_experiment"));
      a->set_base_from_experiment(v);
    }
    if (const YAML::Node ps = b["params"]) {
      if (!ps.IsMap()) return Invalid("base.params", absl::StrCat("expected a mapping, got ", Scalar(ps)));
      for (const auto& kv : ps) {
        const std::string field = absl::StrCat("base.params.", kv.first.Scalar());
        if (!kv.second.IsScalar()) return Invalid(field, "expected a number or a string");
        // A number stays a number (int when it is whole and written without a point).
        const std::string text = kv.second.Scalar();
        v1::ParamValue& v = (*a->mutable_base_params())[kv.first.Scalar()];
        int64_t i;
        double d;
        if (kv.second.Tag() != "!" && absl::SimpleAtoi(text, &i)) {
          v.set_int_value(i);
        } else if (kv.second.Tag() != "!" && absl::SimpleAtod(text, &d) && std::isfinite(d)) {
          v.set_float_value(d);
        } else {
          v.set_categorical_value(text);
        }
      }
    }
  }
  if (const YAML::Node cs = root["components"]) {
    RETURN_IF_ERROR(CheckKeys(cs, "components", {"features", "layers", "groups", "custom"}));
    for (const auto& [key, kind] : std::vector<std::pair<std::string, std::string>>{
             {"features", "feature"}, {"layers", "layer"}, {"custom", "custom"}}) {
      const YAML::Node list = cs[key];
      if (!list) continue;
      const std::string field = absl::StrCat("components.", key);
      if (!list.IsSequence()) return Invalid(field, absl::StrCat("expected a list of names, got ", Scalar(list)));
      for (size_t i = 0; i < list.size(); ++i) {
        ASSIGN_OR_RETURN(std::string name, GetString(list[i], absl::StrCat(field, "[", i, "]")));
        v1::AblationComponent* c = a->add_components();
        c->set_kind(kind);
        c->set_name(name);
        c->add_members(name);
      }
    }
    if (const YAML::Node groups = cs["groups"]) {
      if (!groups.IsMap()) {
        return Invalid("components.groups", "expected a mapping of name to members, e.g. {attention: [attn1, attn2]}");
      }
      for (const auto& kv : groups) {
        const std::string field = absl::StrCat("components.groups.", kv.first.Scalar());
        if (!kv.second.IsSequence()) return Invalid(field, "expected a list of the parts it removes together");
        v1::AblationComponent* c = a->add_components();
        c->set_kind("group");
        c->set_name(kv.first.Scalar());
        for (size_t i = 0; i < kv.second.size(); ++i) {
          ASSIGN_OR_RETURN(std::string m, GetString(kv.second[i], absl::StrCat(field, "[", i, "]")));
          c->add_members(m);
        }
      }
    }
  }
  if (root["policy"]) {
    ASSIGN_OR_RETURN(std::string v, GetString(root["policy"], "policy"));
    a->set_policy(v);
  }
  if (root["repeats"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(root["repeats"], "repeats", 1));
    a->set_repeats(v);
  }
  return absl::OkStatus();
}

absl::Status FromYaml(const YAML::Node& root, ExperimentSpec* spec) {
  RETURN_IF_ERROR(CheckKeys(root, "",
                            {"name", "objective", "objectives", "constraints", "search_space",
                             "algorithm", "budget", "trial", "resources", "resource", "execution",
                             "client_lease_seconds", "kind", "base", "components", "policy", "repeats"}));
  RETURN_IF_ERROR(AblationFromYaml(root, spec));
  if (root["name"]) {
    ASSIGN_OR_RETURN(std::string v, GetString(root["name"], "name"));
    spec->set_name(v);
  }
  if (const YAML::Node o = root["objective"]) {
    RETURN_IF_ERROR(ObjectiveFromYaml(o, "objective", spec->mutable_objective()));
  }
  if (const YAML::Node os = root["objectives"]) {
    if (!os.IsSequence()) {
      return Invalid("objectives", "expected a list, e.g. [{metric: loss, goal: minimize}, ...]");
    }
    for (size_t i = 0; i < os.size(); ++i) {
      RETURN_IF_ERROR(ObjectiveFromYaml(os[i], absl::StrCat("objectives[", i, "]"), spec->add_objectives()));
    }
  }
  if (const YAML::Node cs = root["constraints"]) {
    if (!cs.IsSequence()) {
      return Invalid("constraints", "expected a list, e.g. [{metric: memory_gb, max: 16}]");
    }
    for (size_t i = 0; i < cs.size(); ++i) {
      const std::string field = absl::StrCat("constraints[", i, "]");
      RETURN_IF_ERROR(CheckKeys(cs[i], field, {"metric", "min", "max"}));
      v1::Constraint* c = spec->add_constraints();
      if (cs[i]["metric"]) {
        ASSIGN_OR_RETURN(std::string v, GetString(cs[i]["metric"], field + ".metric"));
        c->set_metric(v);
      }
      if (cs[i]["min"]) {
        ASSIGN_OR_RETURN(double v, GetDouble(cs[i]["min"], field + ".min"));
        c->set_min(v);
      }
      if (cs[i]["max"]) {
        ASSIGN_OR_RETURN(double v, GetDouble(cs[i]["max"], field + ".max"));
        c->set_max(v);
      }
    }
  }
  if (const YAML::Node s = root["search_space"]) {
    if (!s.IsMap()) {
      return Invalid("search_space", absl::StrCat("expected a mapping, got ", Scalar(s)));
    }
    for (const auto& kv : s) {
      RETURN_IF_ERROR(ParseParam(kv.first.Scalar(), kv.second, spec->add_search_space()));
    }
  }
  if (const YAML::Node r = root["resource"]) {
    RETURN_IF_ERROR(CheckKeys(r, "resource", {"metric", "min", "max"}));
    v1::Resource* res = spec->mutable_resource();
    if (r["metric"]) {
      ASSIGN_OR_RETURN(std::string v, GetString(r["metric"], "resource.metric"));
      res->set_metric(v);
    }
    if (r["min"]) {
      ASSIGN_OR_RETURN(double v, GetDouble(r["min"], "resource.min"));
      res->set_min(v);
    }
    if (r["max"]) {
      ASSIGN_OR_RETURN(double v, GetDouble(r["max"], "resource.max"));
      res->set_max(v);
    }
  }
  if (const YAML::Node a = root["algorithm"]) {
    RETURN_IF_ERROR(CheckKeys(a, "algorithm",
                              {"name", "seed", "reduction_factor", "mode", "max_rungs",
                               "early_stopping", "startup_trials", "warm_start", "multivariate",
                               "acquisition"}));
    v1::Algorithm* alg = spec->mutable_algorithm();
    if (const YAML::Node ws = a["warm_start"]) {
      if (!ws.IsSequence()) {
        return Invalid("algorithm.warm_start", "expected a list of experiment ids, e.g. [e1, e4]");
      }
      for (size_t i = 0; i < ws.size(); ++i) {
        ASSIGN_OR_RETURN(std::string v, GetString(ws[i], absl::StrCat("algorithm.warm_start[", i, "]")));
        alg->add_warm_start(v);
      }
    }
    if (a["acquisition"]) {
      ASSIGN_OR_RETURN(std::string v, GetString(a["acquisition"], "algorithm.acquisition"));
      alg->set_acquisition(v);
    }
    if (const YAML::Node mv = a["multivariate"]) {
      bool v = false;
      if (!YAML::convert<bool>::decode(mv, v)) {
        return Invalid("algorithm.multivariate", "expected true or false");
      }
      alg->set_multivariate(v);
    }
    if (a["startup_trials"]) {
      ASSIGN_OR_RETURN(int32_t v, GetInt32(a["startup_trials"], "algorithm.startup_trials", 1));
      alg->set_startup_trials(v);
    }
    if (a["reduction_factor"]) {
      ASSIGN_OR_RETURN(int32_t v, GetInt32(a["reduction_factor"], "algorithm.reduction_factor", 2));
      alg->set_reduction_factor(v);
    }
    if (a["mode"]) {
      ASSIGN_OR_RETURN(std::string v, GetString(a["mode"], "algorithm.mode"));
      alg->set_mode(v);
    }
    if (a["max_rungs"]) {
      ASSIGN_OR_RETURN(int32_t v, GetInt32(a["max_rungs"], "algorithm.max_rungs", 1));
      alg->set_max_rungs(v);
    }
    if (const YAML::Node es = a["early_stopping"]) {
      RETURN_IF_ERROR(CheckKeys(es, "algorithm.early_stopping",
                                {"rule", "reduction_factor", "mode", "max_rungs", "min_trials",
                                 "grace"}));
      v1::EarlyStopping* e = alg->mutable_early_stopping();
      if (es["rule"]) {
        ASSIGN_OR_RETURN(std::string v, GetString(es["rule"], "algorithm.early_stopping.rule"));
        e->set_rule(v);
      }
      if (es["reduction_factor"]) {
        ASSIGN_OR_RETURN(int32_t v, GetInt32(es["reduction_factor"],
                                             "algorithm.early_stopping.reduction_factor", 2));
        e->set_reduction_factor(v);
      }
      if (es["mode"]) {
        ASSIGN_OR_RETURN(std::string v, GetString(es["mode"], "algorithm.early_stopping.mode"));
        e->set_mode(v);
      }
      if (es["max_rungs"]) {
        ASSIGN_OR_RETURN(int32_t v,
                         GetInt32(es["max_rungs"], "algorithm.early_stopping.max_rungs", 1));
        e->set_max_rungs(v);
      }
      if (es["min_trials"]) {
        ASSIGN_OR_RETURN(int32_t v,
                         GetInt32(es["min_trials"], "algorithm.early_stopping.min_trials", 1));
        e->set_min_trials(v);
      }
      if (es["grace"]) {
        ASSIGN_OR_RETURN(double v, GetDouble(es["grace"], "algorithm.early_stopping.grace"));
        e->set_grace(v);
      }
    }
    if (a["name"]) {
      ASSIGN_OR_RETURN(std::string v, GetString(a["name"], "algorithm.name"));
      spec->mutable_algorithm()->set_name(v);
    }
    if (a["seed"]) {
      ASSIGN_OR_RETURN(int64_t v, GetInt(a["seed"], "algorithm.seed"));
      if (v < 0) return Invalid("algorithm.seed", absl::StrCat("must not be negative (got ", v, ")"));
      spec->mutable_algorithm()->set_seed(static_cast<uint64_t>(v));
    }
  }
  if (root["execution"]) {
    ASSIGN_OR_RETURN(std::string v, GetString(root["execution"], "execution"));
    spec->set_execution(v);
  }
  if (root["client_lease_seconds"]) {
    ASSIGN_OR_RETURN(int32_t v, GetInt32(root["client_lease_seconds"], "client_lease_seconds", 1));
    spec->set_client_lease_seconds(v);
  }
  if (const YAML::Node b = root["budget"]) {
    RETURN_IF_ERROR(CheckKeys(b, "budget", {"max_trials", "max_concurrent"}));
    if (b["max_trials"]) {
      ASSIGN_OR_RETURN(int32_t v, GetInt32(b["max_trials"], "budget.max_trials", 1));
      spec->mutable_budget()->set_max_trials(v);
    }
    if (b["max_concurrent"]) {
      ASSIGN_OR_RETURN(int32_t v, GetInt32(b["max_concurrent"], "budget.max_concurrent", 1));
      spec->mutable_budget()->set_max_concurrent(v);
    }
  }
  if (const YAML::Node t = root["trial"]) {
    RETURN_IF_ERROR(
        CheckKeys(t, "trial", {"command", "workdir", "env", "max_restarts", "checkpoint_root"}));
    if (t["checkpoint_root"]) {
      ASSIGN_OR_RETURN(std::string v, GetString(t["checkpoint_root"], "trial.checkpoint_root"));
      spec->mutable_trial()->set_checkpoint_root(v);
    }
    v1::TrialTemplate* tt = spec->mutable_trial();
    if (const YAML::Node c = t["command"]) {
      if (c.IsScalar()) {
        return Invalid("trial.command",
                       "expected a list of arguments, e.g. [python3, train.py, --lr, \"{lr}\"]");
      }
      if (!c.IsSequence()) return Invalid("trial.command", "expected a list of arguments");
      for (size_t i = 0; i < c.size(); ++i) {
        ASSIGN_OR_RETURN(std::string v, GetString(c[i], absl::StrCat("trial.command[", i, "]")));
        tt->add_command(v);
      }
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
  }
  if (const YAML::Node r = root["resources"]) {
    RETURN_IF_ERROR(CheckKeys(r, "resources", {"gpus", "labels"}));
    if (r["gpus"]) {
      ASSIGN_OR_RETURN(int32_t v, GetInt32(r["gpus"], "resources.gpus", 0));
      spec->mutable_trial()->set_gpus(v);
    }
    if (r["labels"]) {
      RETURN_IF_ERROR(
          ParseStringMap(r["labels"], "resources.labels", spec->mutable_trial()->mutable_labels()));
    }
  }
  return absl::OkStatus();
}

bool IsIdentChar(char c, bool first) {
  return absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_' ||
         (!first && (absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '.' || c == '-'));
}

absl::Status ValidateParam(ParamSpec* p, bool grid) {
  std::string field = absl::StrCat("search_space.", p->name());
  if (p->name().empty() || !IsIdentChar(p->name()[0], true)) {
    return Invalid(field, "a parameter name must start with a letter or '_'");
  }
  for (char c : p->name()) {
    if (!IsIdentChar(c, false)) {
      return Invalid(field, absl::StrCat("a parameter name may hold letters, digits, '_', '.' "
                                         "and '-' only (got '", std::string(1, c), "')"));
    }
  }
  switch (p->type()) {
    case ParamSpec::CATEGORICAL: {
      if (p->values().empty()) return Invalid(field, "values must not be empty");
      std::set<std::string> seen;
      for (const auto& v : p->values()) {
        if (!seen.insert(v).second) {
          return Invalid(field, absl::StrCat("value '", v, "' appears twice"));
        }
      }
      if (p->grid_points() != 0) return Invalid(field, "grid_points applies to floats only");
      return absl::OkStatus();
    }
    case ParamSpec::FLOAT:
    case ParamSpec::INT: {
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
        return Invalid(field, absl::StrCat("min (", FormatDouble(p->min()),
                                           ") must be below max (", FormatDouble(p->max()), ")"));
      }
      if (p->log() && p->min() <= 0) {
        return Invalid(field,
                       absl::StrCat("log needs min above 0 (got ", FormatDouble(p->min()), ")"));
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
    default:
      return Invalid(field, "type is required (float, int or categorical)");
  }
}

// Fills the stopping rule's defaults and checks it against the resource. ASHA and Hyperband
// as algorithms are random sampling with that rule; their settings move into
// algorithm.early_stopping so that one place describes the rule.
// `objectives`: each metric named once, with a goal; `objective` becomes the first (a list of
// one is the same as `objective`). Constraints: a metric and at least one bound.
absl::Status ValidateObjectives(ExperimentSpec* spec) {
  if (spec->objectives_size() > 0) {
    if (!spec->objective().metric().empty() || spec->objective().goal() != v1::Objective::GOAL_UNSPECIFIED) {
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
      return Invalid(field, absl::StrCat("min (", FormatDouble(c.min()), ") must not be above max (",
                                         FormatDouble(c.max()), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateStopping(ExperimentSpec* spec) {
  v1::Algorithm* alg = spec->mutable_algorithm();
  const std::string& algo = alg->name();
  v1::EarlyStopping* es = alg->mutable_early_stopping();
  std::string field = "algorithm.early_stopping";
  if (algo == "asha" || algo == "hyperband" || algo == "bohb") {
    if (!es->rule().empty()) {
      return Invalid(field, absl::StrCat(algo, " stops trials itself; early_stopping goes with "
                                               "random, grid, tpe or gp"));
    }
    es->set_rule(algo == "bohb" ? "hyperband" : algo);
    es->set_reduction_factor(alg->reduction_factor());
    es->set_mode(alg->mode());
    es->set_max_rungs(alg->max_rungs());
    field = "algorithm";
  } else if (alg->reduction_factor() != 0 || !alg->mode().empty() || alg->max_rungs() != 0) {
    return Invalid("algorithm", absl::StrCat("reduction_factor, mode and max_rungs apply to asha and "
                                             "hyperband; with ", algo,
                                             " put them under early_stopping"));
  }
  const std::string& rule = es->rule();
  v1::Resource* res = spec->mutable_resource();
  if (res->metric().empty()) res->set_metric("step");
  bool has_range = res->min() != 0 || res->max() != 0;
  if (has_range && !(res->min() > 0 && res->min() < res->max())) {
    return Invalid("resource", absl::StrCat("need 0 < min < max (got min ", FormatDouble(res->min()),
                                            ", max ", FormatDouble(res->max()), ")"));
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
      return Invalid("resource", absl::StrCat("is required for ", rule,
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
      return Invalid(field + ".grace", absl::StrCat("must not be negative (got ",
                                                    FormatDouble(es->grace()), ")"));
    }
    return absl::OkStatus();
  }
  return Invalid(field + ".rule",
                 absl::StrCat("unknown rule '", rule, "' (known: asha, hyperband, median)"));
}

}  // namespace

std::string FormatDouble(double d) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d);
  if (ec != std::errc()) return absl::StrCat(d);
  return std::string(buf, end);
}

std::string FormatParam(const v1::ParamValue& v) {
  switch (v.kind_case()) {
    case v1::ParamValue::kFloatValue:
      return FormatDouble(v.float_value());
    case v1::ParamValue::kIntValue:
      return absl::StrCat(v.int_value());
    case v1::ParamValue::kCategoricalValue:
      return v.categorical_value();
    default:
      return "";
  }
}

std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += "\"";
  return out;
}

std::string ParamsToJson(const google::protobuf::Map<std::string, v1::ParamValue>& params) {
  std::map<std::string, const v1::ParamValue*> sorted;
  for (const auto& [k, v] : params) sorted[k] = &v;
  std::string out = "{";
  for (const auto& [k, v] : sorted) {
    if (out.size() > 1) out += ", ";
    absl::StrAppend(&out, JsonQuote(k), ": ");
    if (v->kind_case() == v1::ParamValue::kCategoricalValue) {
      out += JsonQuote(v->categorical_value());
    } else {
      out += FormatParam(*v);
    }
  }
  out += "}";
  return out;
}

absl::StatusOr<std::string> FillPlaceholders(
    absl::string_view arg, const google::protobuf::Map<std::string, v1::ParamValue>& params) {
  std::string out;
  size_t i = 0;
  while (i < arg.size()) {
    if (arg[i] == '{') {
      size_t j = i + 1;
      while (j < arg.size() && IsIdentChar(arg[j], j == i + 1)) ++j;
      if (j < arg.size() && arg[j] == '}' && j > i + 1) {
        std::string name(arg.substr(i + 1, j - i - 1));
        auto it = params.find(name);
        if (it == params.end()) {
          return absl::InvalidArgumentError(
              absl::StrCat("placeholder {", name, "} names no parameter"));
        }
        out += FormatParam(it->second);
        i = j + 1;
        continue;
      }
    }
    out += arg[i++];
  }
  return out;
}

absl::Status CheckSizes(const google::protobuf::Message& m, const std::string& path, size_t max_string,
                        int max_repeated) {
  auto Invalid = [](absl::string_view field, absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
  };
  const google::protobuf::Reflection* r = m.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const auto* f : fields) {
    const std::string name = path.empty() ? f->name() : absl::StrCat(path, ".", f->name());
    if (f->is_repeated()) {
      const int n = r->FieldSize(m, f);
      if (n > max_repeated) return Invalid(name, absl::StrCat("has ", n, " entries; at most ", max_repeated));
      for (int i = 0; i < n; ++i) {
        if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_STRING) {
          std::string scratch;
          const std::string& v = r->GetRepeatedStringReference(m, f, i, &scratch);
          if (v.size() > max_string) {
            return Invalid(absl::StrCat(name, "[", i, "]"), absl::StrCat("is ", v.size(), " bytes; at most ", max_string));
          }
        } else if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
          RETURN_IF_ERROR(
              CheckSizes(r->GetRepeatedMessage(m, f, i), absl::StrCat(name, "[", i, "]"), max_string, max_repeated));
        }
      }
    } else if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_STRING) {
      std::string scratch;
      const std::string& v = r->GetStringReference(m, f, &scratch);
      if (v.size() > max_string) {
        return Invalid(name, absl::StrCat("is ", v.size(), " bytes; at most ", max_string));
      }
    } else if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
      RETURN_IF_ERROR(CheckSizes(r->GetMessage(m, f), name, max_string, max_repeated));
    }
  }
  return absl::OkStatus();
}

static absl::Status CheckName(absl::string_view field, const std::string& name) {
  if (name.size() > kMaxNameBytes) {
    return Invalid(field, absl::StrCat("is ", name.size(), " bytes long; a name has at most ", kMaxNameBytes));
  }
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return Invalid(field, "contains a control character");
  }
  return absl::OkStatus();
}

absl::Status CheckPlaceholders(const v1::TrialTemplate& t,
                               const google::protobuf::Map<std::string, v1::ParamValue>& params,
                               const std::set<std::string>& conditional) {
  // A conditional parameter is absent from some trials, so it cannot fill a placeholder.
  google::protobuf::Map<std::string, v1::ParamValue> always = params;
  for (const auto& c : conditional) always.erase(c);
  for (int i = 0; i < t.command_size(); ++i) {
    auto filled = FillPlaceholders(t.command(i), params);
    if (!filled.ok()) {
      return Invalid(absl::StrCat("trial.command[", i, "]"), filled.status().message());
    }
    if (!FillPlaceholders(t.command(i), always).ok()) {
      return Invalid(absl::StrCat("trial.command[", i, "]"),
                     "a placeholder names a conditional parameter, which some trials lack; "
                     "read it from RUNG_PARAMS instead");
    }
  }
  for (const auto& [k, v] : t.env()) {
    auto filled = FillPlaceholders(v, params);
    if (!filled.ok()) return Invalid(absl::StrCat("trial.env.", k), filled.status().message());
  }
  return absl::OkStatus();
}

// The search part of a kind: search spec: algorithm, search space and budget. `conditional`
// gets the conditional parameters' names.
absl::Status ValidateSearch(ExperimentSpec* spec, std::set<std::string>* conditional) {
  if (spec->has_ablation()) {
    return Invalid("base", "base, components, policy and repeats belong to kind: ablation");
  }
  std::string algo = spec->algorithm().name().empty() ? "random" : spec->algorithm().name();
  spec->mutable_algorithm()->set_name(algo);
  if (algo != "random" && algo != "grid" && algo != "tpe" && algo != "gp" && algo != "asha" &&
      algo != "hyperband" && algo != "bohb") {
    return Invalid("algorithm.name",
                   absl::StrCat("unknown algorithm '", algo,
                                "' (known: random, grid, tpe, gp, asha, hyperband, bohb)"));
  }
  if (spec->algorithm().multivariate() && algo != "tpe" && algo != "bohb") {
    return Invalid("algorithm.multivariate", "applies to tpe (and bohb, which is always multivariate)");
  }
  if (algo == "bohb") spec->mutable_algorithm()->set_multivariate(true);
  if (algo == "gp") {
    const std::string& acq = spec->algorithm().acquisition();
    if (acq.empty()) spec->mutable_algorithm()->set_acquisition("ei");
    if (!acq.empty() && acq != "ei" && acq != "ucb") {
      return Invalid("algorithm.acquisition", absl::StrCat("unknown acquisition '", acq, "' (known: ei, ucb)"));
    }
  } else if (!spec->algorithm().acquisition().empty()) {
    return Invalid("algorithm.acquisition", "applies to gp only");
  }
  if (algo == "tpe" || algo == "gp" || algo == "bohb") {
    if (spec->algorithm().startup_trials() == 0) spec->mutable_algorithm()->set_startup_trials(10);
  } else if (spec->algorithm().startup_trials() != 0) {
    return Invalid("algorithm.startup_trials", "applies to tpe, gp and bohb only");
  } else if (!spec->algorithm().warm_start().empty()) {
    return Invalid("algorithm.warm_start", "applies to tpe, gp and bohb only (the models that learn)");
  }
  RETURN_IF_ERROR(ValidateStopping(spec));
  if (spec->objectives_size() > 1) {
    if (spec->algorithm().has_early_stopping()) {
      return Invalid("algorithm", "early stopping compares one metric; it needs a single objective");
    }
    if (!spec->algorithm().warm_start().empty()) {
      return Invalid("algorithm.warm_start", "needs a single objective");
    }
  }
  bool grid = algo == "grid";
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
      const std::string field = absl::StrCat("search_space.", p.name(), ".when");
      auto parent = declared.find(p.parent());
      if (parent == declared.end()) {
        return Invalid(field, absl::StrCat("parent '", p.parent(), "' must be a parameter declared before ",
                                           p.name()));
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
      conditional->insert(p.name());
    }
    declared[p.name()] = &p;
  }
  v1::Budget* b = spec->mutable_budget();
  if (b->max_trials() < 0) return Invalid("budget.max_trials", "must be at least 1");
  if (!grid && b->max_trials() == 0) {
    return Invalid("budget.max_trials", absl::StrCat("is required for ", algo, " search"));
  }
  if (b->max_concurrent() < 0) return Invalid("budget.max_concurrent", "must be at least 1");
  // Grid search: max_trials 0 means the whole grid; the controller fills in its size.
  if (b->max_concurrent() == 0 && b->max_trials() > 0) b->set_max_concurrent(b->max_trials());

  return absl::OkStatus();
}

// kind: ablation: the base configuration, the components, the repeats.
absl::Status ValidateAblation(ExperimentSpec* spec) {
  if (!spec->search_space().empty()) {
    return Invalid("search_space", "an ablation study runs its base configuration: put the parameters under base.params");
  }
  const std::string& algo = spec->algorithm().name();
  if ((!algo.empty() && algo != "ablation") || spec->algorithm().has_early_stopping()) {
    return Invalid("algorithm", "an ablation study runs every variant; it has no search algorithm or early stopping");
  }
  spec->mutable_algorithm()->set_name("ablation");
  v1::Ablation* a = spec->mutable_ablation();
  if (a->base_params().empty() == a->base_from_experiment().empty() && !a->base_params().empty()) {
    return Invalid("base", "give params or from_experiment, not both");
  }
  for (const auto& [k, v] : a->base_params()) RETURN_IF_ERROR(CheckName("base.params", k));
  if (!a->base_from_experiment().empty()) RETURN_IF_ERROR(CheckName("base.from_experiment", a->base_from_experiment()));
  if (a->components().empty()) {
    return Invalid("components", "name at least one component to leave out (features, layers, groups or custom)");
  }
  std::set<std::string> names;
  for (const auto& c : a->components()) {
    const std::string field = absl::StrCat("components.", c.kind() == "feature" ? "features" : c.kind() == "layer" ? "layers"
                                                         : c.kind() == "group" ? "groups" : "custom");
    RETURN_IF_ERROR(CheckName(field, c.name()));
    if (!names.insert(c.name()).second) return Invalid(field, absl::StrCat("'", c.name(), "' is named twice"));
    if (c.members().empty()) return Invalid(absl::StrCat(field, ".", c.name()), "needs at least one member");
    for (const auto& m : c.members()) RETURN_IF_ERROR(CheckName(absl::StrCat(field, ".", c.name()), m));
  }
  if (a->policy().empty()) a->set_policy("loco");
  if (a->repeats() == 0) a->set_repeats(1);
  if (a->repeats() < 0 || a->repeats() > 1000) {
    return Invalid("repeats", absl::StrCat("is ", a->repeats(), "; between 1 and 1000"));
  }
  if (spec->budget().max_trials() != 0) {
    return Invalid("budget.max_trials", "an ablation study runs each variant `repeats` times; set repeats instead");
  }
  if (spec->budget().max_concurrent() < 0) return Invalid("budget.max_concurrent", "must be at least 1");
  return absl::OkStatus();
}

absl::Status ValidateSpec(ExperimentSpec* spec, absl::string_view base_dir) {
  RETURN_IF_ERROR(CheckSizes(*spec, "", kMaxStringBytes, kMaxRepeated));
  if (spec->search_space_size() > kMaxParameters) {
    return Invalid("search_space", absl::StrCat("has ", spec->search_space_size(), " parameters; at most ", kMaxParameters));
  }
  RETURN_IF_ERROR(CheckName("name", spec->name()));
  RETURN_IF_ERROR(CheckName("objective.metric", spec->objective().metric()));
  for (int i = 0; i < spec->objectives_size(); ++i) {
    RETURN_IF_ERROR(CheckName(absl::StrCat("objectives[", i, "].metric"), spec->objectives(i).metric()));
  }
  for (const auto& p : spec->search_space()) RETURN_IF_ERROR(CheckName("search_space", p.name()));
  if (spec->budget().max_trials() > kMaxTrials) {
    return Invalid("budget.max_trials", absl::StrCat("is ", spec->budget().max_trials(), "; at most ", kMaxTrials));
  }
  if (spec->name().empty()) spec->set_name("experiment");
  RETURN_IF_ERROR(ValidateObjectives(spec));
  if (spec->objective().metric().empty()) {
    return Invalid("objective.metric", "is required (the metric to optimise, e.g. loss)");
  }
  if (spec->objective().goal() == v1::Objective::GOAL_UNSPECIFIED) {
    return Invalid("objective.goal", "is required (minimize or maximize)");
  }
  if (spec->kind().empty()) spec->set_kind("search");
  std::set<std::string> conditional;
  if (spec->kind() == "ablation") {
    RETURN_IF_ERROR(ValidateAblation(spec));
  } else if (spec->kind() == "search") {
    RETURN_IF_ERROR(ValidateSearch(spec, &conditional));
  } else {
    return Invalid("kind", absl::StrCat("unknown kind '", spec->kind(), "' (known: search, ablation)"));
  }
  v1::TrialTemplate* t = spec->mutable_trial();
  if (spec->execution().empty()) spec->set_execution("workers");
  if (spec->execution() != "workers" && spec->execution() != "external") {
    return Invalid("execution", absl::StrCat("unknown execution '", spec->execution(),
                                             "' (known: workers, external)"));
  }
  if (spec->client_lease_seconds() < 0) return Invalid("client_lease_seconds", "must be at least 1");
  if (spec->execution() == "external") {
    // Clients run the trials (ask and tell): nothing here launches a process.
    if (!t->command().empty() || !t->env().empty() || !t->checkpoint_root().empty() || t->gpus() != 0 ||
        !t->labels().empty()) {
      return Invalid("trial", "execution: external trials are run by the clients that ask for them; only "
                              "trial.max_restarts applies (remove command, env, resources and the rest)");
    }
    if (t->max_restarts() < 0) return Invalid("trial.max_restarts", "must not be negative");
    if (spec->client_lease_seconds() == 0) spec->set_client_lease_seconds(600);
    t->clear_workdir();
    return absl::OkStatus();
  }
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
  if (spec->ablation().base_from_experiment().empty()) RETURN_IF_ERROR(CheckPlaceholders(*t, probe, conditional));
  if (t->max_restarts() < 0) return Invalid("trial.max_restarts", "must not be negative");
  if (t->gpus() < 0) return Invalid("resources.gpus", "must not be negative");
  std::filesystem::path wd = t->workdir().empty() ? "." : t->workdir();
  if (wd.is_relative()) {
    if (base_dir.empty()) {
      return Invalid("trial.workdir", absl::StrCat("'", t->workdir(),
                                                   "' is relative but no spec folder was given"));
    }
    wd = std::filesystem::path(std::string(base_dir)) / wd;
  }
  t->set_workdir(wd.lexically_normal().string());
  if (t->workdir().size() > 1 && t->workdir().back() == '/') {
    t->set_workdir(t->workdir().substr(0, t->workdir().size() - 1));
  }
  if (!t->checkpoint_root().empty()) {
    std::filesystem::path root = t->checkpoint_root();
    if (root.is_relative()) {
      if (base_dir.empty()) {
        return Invalid("trial.checkpoint_root", "is relative but no spec folder was given");
      }
      root = std::filesystem::path(std::string(base_dir)) / root;
    }
    t->set_checkpoint_root(root.lexically_normal().string());
  }
  return absl::OkStatus();
}

absl::StatusOr<ExperimentSpec> ParseSpecYaml(absl::string_view yaml, absl::string_view base_dir) {
  if (yaml.size() > kMaxSpecBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec: ", yaml.size(), " bytes of YAML; at most ", kMaxSpecBytes));
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("spec is not valid YAML: line ",
                                                   e.mark.line + 1, ": ", e.msg));
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
