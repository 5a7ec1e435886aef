// The plain structs of rung/client.h from rungd's messages, their JSON, and the text the
// rung CLI shows for parameters and results.
#include "client/cpp/convert.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"

namespace rung {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "EXPERIMENT_RUNNING" -> "running", "TRIAL_WAITING" -> "waiting".
std::string StateText(const std::string& enum_name) {
  return Lower(enum_name.substr(enum_name.find('_') + 1));
}

std::string GoalText(v1::Objective::Goal g) {
  return g == v1::Objective::MAXIMIZE ? "maximize" : "minimize";
}

std::optional<double> Optional(bool has, double v) {
  return has ? std::optional<double>(v) : std::nullopt;
}

// protobuf's JSON mapping of the `M` serialized in `bytes`, compact, with the .proto's field
// names; `all_fields`: fields without presence too, at their defaults.
template <typename M>
std::string JsonOf(const std::string& bytes, bool all_fields = false) {
  M m;
  if (!m.ParseFromString(bytes)) return "{}";
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = all_fields;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(m, &out, o).ok()) return "{}";
  return out;
}

std::string Num(double v) { return absl::StrFormat("%.6g", v); }

std::optional<ParamValue> ParamOf(const v1::ParamValue& v) {
  switch (v.kind_case()) {
    case v1::ParamValue::kFloatValue:
      return ParamValue(v.float_value());
    case v1::ParamValue::kIntValue:
      return ParamValue(static_cast<int64_t>(v.int_value()));
    case v1::ParamValue::kCategoricalValue:
      return ParamValue(v.categorical_value());
    default:
      return std::nullopt;
  }
}

}  // namespace

std::string Experiment::Json() const { return JsonOf<v1::Experiment>(proto_bytes); }
std::string Trial::Json() const { return JsonOf<v1::Trial>(proto_bytes); }
std::string Report::Json() const { return JsonOf<v1::MetricReport>(proto_bytes); }
std::string TrialLogs::Json() const { return JsonOf<v1::GetTrialLogsResponse>(proto_bytes); }
std::string AblationResults::Json() const {
  return JsonOf<v1::AblationResults>(proto_bytes, /*all_fields=*/true);
}
std::string Worker::Json() const { return JsonOf<v1::WorkerStatus>(proto_bytes); }
std::string ReplayResult::Json() const { return JsonOf<v1::ReplaySearchResponse>(proto_bytes); }
std::string BackupResult::Json() const { return JsonOf<v1::BackupResponse>(proto_bytes); }

std::optional<double> Trial::Number(const std::string& name) const {
  auto it = params.find(name);
  if (it == params.end()) return std::nullopt;
  if (const double* d = std::get_if<double>(&it->second)) return *d;
  if (const int64_t* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  return std::nullopt;
}

std::string FormatParam(const ParamValue& value) {
  if (const double* d = std::get_if<double>(&value)) {
    // The same text a trial's command line gets (common/spec.cc's FormatDouble).
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), *d);
    if (ec != std::errc()) return absl::StrCat(*d);
    return std::string(buf, end);
  }
  if (const int64_t* i = std::get_if<int64_t>(&value)) return absl::StrCat(*i);
  return std::get<std::string>(value);
}

std::string FormatParams(const std::map<std::string, ParamValue>& params) {
  std::vector<std::string> parts;
  for (const auto& [k, v] : params) parts.push_back(absl::StrCat(k, "=", FormatParam(v)));
  return absl::StrJoin(parts, " ");
}

std::string FormatResult(const Experiment& experiment, const Trial& trial) {
  if (!trial.result.has_value()) return "-";
  if (experiment.objectives.size() < 2 || trial.results.empty()) return Num(*trial.result);
  std::vector<std::string> parts;
  for (size_t i = 0; i < experiment.objectives.size() && i < trial.results.size(); ++i) {
    parts.push_back(absl::StrCat(experiment.objectives[i].metric, "=", Num(trial.results[i])));
  }
  return absl::StrJoin(parts, " ");
}

int Worker::busy() const {
  int n = 0;
  for (const Running& r : running) n += static_cast<int>(r.slots.size());
  return n;
}

namespace client_internal {

Experiment FromProto(const v1::Experiment& e) {
  Experiment x;
  const v1::ExperimentSpec& s = e.spec();
  x.id = e.id();
  x.name = s.name();
  x.kind = s.kind();
  x.state = StateText(v1::ExperimentState_Name(e.state()));
  x.owner = e.owner();
  if (s.objectives().empty()) {
    x.objectives.push_back({s.objective().metric(), GoalText(s.objective().goal())});
  } else {
    for (const auto& o : s.objectives()) x.objectives.push_back({o.metric(), GoalText(o.goal())});
  }
  for (const auto& c : s.constraints()) {
    x.constraints.push_back(
        {c.metric(), Optional(c.has_min(), c.min()), Optional(c.has_max(), c.max())});
  }
  x.algorithm.name = s.algorithm().name();
  x.algorithm.seed = s.algorithm().seed();
  x.algorithm.options.insert(s.algorithm().options().begin(), s.algorithm().options().end());
  x.max_trials = s.budget().max_trials();
  x.max_concurrent = s.budget().max_concurrent();
  x.resource_metric = s.resource().metric();
  x.rung_levels.assign(e.rung_levels().begin(), e.rung_levels().end());
  x.best_trial_id = e.best_trial_id();
  x.best_value = Optional(e.has_best(), e.best_value());
  const v1::TrialCounts& c = e.counts();
  x.pending = c.pending();
  x.running = c.running();
  x.completed = c.completed();
  x.failed = c.failed();
  x.stopped = c.stopped();
  x.waiting = c.waiting();
  x.message = e.message();
  x.unschedulable = e.unschedulable();
  x.created_unix_ms = e.created_unix_ms();
  x.updated_unix_ms = e.updated_unix_ms();
  x.proto_bytes = e.SerializeAsString();
  return x;
}

Trial FromProto(const v1::Trial& t) {
  Trial x;
  x.id = t.id();
  x.experiment_id = t.experiment_id();
  x.index = t.index();
  x.state = StateText(v1::TrialState_Name(t.state()));
  for (const auto& [k, v] : t.params()) {
    if (auto value = ParamOf(v); value.has_value()) x.params[k] = *value;
  }
  x.attempt = t.attempt();
  x.failures = t.failures();
  x.result = Optional(t.has_result(), t.result());
  x.results.assign(t.results().begin(), t.results().end());
  x.metrics.insert(t.last_metrics().begin(), t.last_metrics().end());
  x.reports = t.reports();
  x.last_step = t.last_step();
  x.budget = t.budget();
  x.resource_reached = t.resource_reached();
  x.client_id = t.client_id();
  x.worker_id = t.worker_id();
  for (const v1::Placement& p : t.placements()) x.workers.push_back(p.worker_id());
  x.epoch = t.epoch();
  for (const v1::Hop& h : t.hops()) {
    x.hops.push_back({h.epoch(), h.partition(), h.worker_id(), h.attempt(), h.done(), h.validated(),
                      h.started_unix_ms(), h.ended_unix_ms()});
  }
  for (const v1::AttemptRecord& a : t.attempts()) {
    x.attempts.push_back({a.attempt(), a.worker_id(), a.client_id(), a.started_unix_ms(),
                          a.ended_unix_ms(), a.outcome(), a.message()});
  }
  for (const v1::Segment& g : t.segments()) {
    Segment y;
    y.start = g.start();
    y.end = g.end();
    for (const auto& [k, v] : g.params()) {
      if (auto value = ParamOf(v); value.has_value()) y.params[k] = *value;
    }
    y.parent_trial_id = g.parent_trial_id();
    y.parent_resource = g.parent_resource();
    y.parent_attempt = g.parent_attempt();
    y.attempt = g.attempt();
    y.started_unix_ms = g.started_unix_ms();
    y.ended_unix_ms = g.ended_unix_ms();
    y.value = Optional(g.has_value(), g.value());
    x.segments.push_back(std::move(y));
  }
  x.message = t.message();
  x.stop_reason = t.stop_reason();
  x.infeasible = t.infeasible();
  x.stdout_path = t.stdout_path();
  x.stderr_path = t.stderr_path();
  x.created_unix_ms = t.created_unix_ms();
  x.started_unix_ms = t.started_unix_ms();
  x.ended_unix_ms = t.ended_unix_ms();
  x.ablation = t.ablation();
  x.seed = t.seed();
  x.proto_bytes = t.SerializeAsString();
  return x;
}

Report FromProto(const v1::MetricReport& r) {
  Report x;
  x.trial_id = r.trial_id();
  x.attempt = r.attempt();
  x.step = r.step();
  x.values.insert(r.values().begin(), r.values().end());
  x.final = r.final();
  x.unix_ms = r.unix_ms();
  x.proto_bytes = r.SerializeAsString();
  return x;
}

TrialLogs FromProto(const v1::GetTrialLogsResponse& l) {
  return {l.worker_id(), l.stdout_path(), l.stderr_path(), l.stderr_tail(), l.SerializeAsString()};
}

AblationResults FromProto(const v1::AblationResults& a) {
  AblationResults x;
  x.experiment_id = a.experiment();
  x.name = a.name();
  x.state = a.state();
  x.objective = a.objective();
  x.goal = a.goal();
  x.repeats = a.repeats();
  x.alpha = a.alpha();
  for (const v1::AblationVariant& v : a.variants()) {
    AblationVariant y;
    y.kind = v.kind();
    y.name = v.name();
    y.dropped.assign(v.dropped().begin(), v.dropped().end());
    y.runs = v.runs();
    y.mean = Optional(v.has_mean(), v.mean());
    y.stddev = Optional(v.has_stddev(), v.stddev());
    y.delta = Optional(v.has_delta(), v.delta());
    y.harm = Optional(v.has_harm(), v.harm());
    y.p = Optional(v.has_p(), v.p());
    y.test = v.test();
    y.significant = v.significant();
    y.rank = v.rank();
    x.variants.push_back(std::move(y));
  }
  x.proto_bytes = a.SerializeAsString();
  return x;
}

Worker FromProto(const v1::WorkerStatus& w) {
  Worker x;
  const v1::Worker& info = w.worker();
  x.id = info.id();
  x.host = info.host();
  x.state = StateText(v1::WorkerState_Name(info.state()));
  for (const v1::Slot& s : info.slots()) x.gpus.push_back(s.gpu());
  x.labels.insert(info.labels().begin(), info.labels().end());
  x.version = info.version();
  x.last_heartbeat_unix_ms = info.last_heartbeat_unix_ms();
  x.partitions.assign(info.partitions().begin(), info.partitions().end());
  for (const v1::WorkerTrial& t : w.running()) {
    x.running.push_back({t.trial_id(), t.experiment_id(), {t.slots().begin(), t.slots().end()}});
  }
  x.proto_bytes = w.SerializeAsString();
  return x;
}

ReplayResult FromProto(const v1::ReplaySearchResponse& r) {
  return {r.entries(), r.identical(), r.mismatch(), r.SerializeAsString()};
}

BackupResult FromProto(const v1::BackupResponse& b) {
  return {b.dir(), b.files(), b.bytes(), b.SerializeAsString()};
}

}  // namespace client_internal
}  // namespace rung

namespace rung {

absl::StatusOr<std::vector<LineageStep>> Lineage(const std::vector<Trial>& trials,
                                                 const std::string& trial_id) {
  std::map<std::string, const Trial*> by_id;
  size_t segments = 0;
  for (const Trial& t : trials) {
    by_id[t.id] = &t;
    segments += t.segments.size();
  }
  auto it = by_id.find(trial_id);
  if (it == by_id.end()) return absl::NotFoundError(absl::StrCat("no trial ", trial_id));
  if (it->second->segments.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("trial ", trial_id,
                     " has no lineage: only population-based training (algorithm: pbt or pb2) "
                     "trains trials in segments that take other members' checkpoints"));
  }
  std::vector<LineageStep> out;
  const Trial* t = it->second;
  // Walking back: the model of `t` as its attempt `attempt` left it (the segment whose attempts
  // include it); without one (stored before rungd kept it), the model as it stood at `upto`
  // (its segment ending there) before `before` (when the member that took it began).
  int attempt = 0;  // 0 and upto -1: its latest segment
  double upto = -1;
  int64_t before = std::numeric_limits<int64_t>::max();
  while (out.size() <= segments) {
    int i = static_cast<int>(t->segments.size()) - 1;
    if (attempt > 0) {
      while (i >= 0 && t->segments[i].attempt > attempt) --i;
      if (i >= 0 && t->segments[i].end != upto) i = -1;
    } else if (upto >= 0) {
      while (i >= 0 && !(t->segments[i].end == upto && t->segments[i].ended_unix_ms != 0 &&
                         t->segments[i].ended_unix_ms <= before)) {
        --i;
      }
    }
    if (i < 0) {
      return absl::DataLossError(absl::StrCat("the lineage of ", trial_id, " breaks at ", t->id,
                                              ": no segment of it ended at ", Num(upto),
                                              " with the checkpoint a member took"));
    }
    for (; i >= 0; --i) {
      const Segment& s = t->segments[i];
      out.push_back({t->id, s});
      if (!s.parent_trial_id.empty()) break;  // before it: the donor's model
      if (s.start == 0) break;                // trained from scratch
    }
    const Segment& first = out.back().segment;
    if (i < 0 || first.parent_trial_id.empty()) {
      std::reverse(out.begin(), out.end());
      return out;
    }
    auto parent = by_id.find(first.parent_trial_id);
    if (parent == by_id.end()) {
      return absl::DataLossError(absl::StrCat("the lineage of ", trial_id, " names ",
                                              first.parent_trial_id,
                                              ", which is not among the experiment's trials"));
    }
    t = parent->second;
    attempt = first.parent_attempt;
    upto = first.parent_resource;
    before = first.started_unix_ms;
  }
  return absl::DataLossError(absl::StrCat("the lineage of ", trial_id, " goes round in a loop"));
}

}  // namespace rung
