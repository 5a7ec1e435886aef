#include "server/schedule/results.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/spec.h"
#include "server/schedule/search_config.h"
#include "server/search/searcher.h"

namespace rung {

using v1::Trial;

const std::string& FirstObjectiveMetric(const v1::ExperimentSpec& spec) {
  return spec.objectives_size() > 0 ? spec.objectives(0).metric() : spec.objective().metric();
}

bool Better(v1::Objective::Goal goal, double a, double b) {
  return goal == v1::Objective::MAXIMIZE ? a > b : a < b;
}

std::string MissingObjective(const v1::ExperimentSpec& spec, const Trial& t) {
  for (const v1::Objective& o : spec.objectives()) {
    if (!t.last_metrics().contains(o.metric())) return o.metric();
  }
  const std::string& metric = spec.objective().metric();
  return t.has_result() || t.last_metrics().contains(metric) ? "" : metric;
}

std::string BrokenConstraints(const v1::ExperimentSpec& spec, const Trial& t) {
  std::vector<std::string> broken;
  for (const v1::Constraint& c : spec.constraints()) {
    auto it = t.last_metrics().find(c.metric());
    if (it == t.last_metrics().end()) {
      broken.push_back(absl::StrCat("never reported ", c.metric()));
    } else if (c.has_max() && !(it->second <= c.max())) {
      broken.push_back(absl::StrCat(c.metric(), " ", FormatDouble(it->second), " > max ",
                                    FormatDouble(c.max())));
    } else if (c.has_min() && !(it->second >= c.min())) {
      broken.push_back(absl::StrCat(c.metric(), " ", FormatDouble(it->second), " < min ",
                                    FormatDouble(c.min())));
    }
  }
  return absl::StrJoin(broken, "; ");
}

std::vector<Trial> BestTrials(const v1::ExperimentSpec& spec, const TrialTable& trials, int count) {
  const auto goal = spec.objective().goal();
  auto by_result = [goal](const Trial& a, const Trial& b) {
    return Better(goal, a.result(), b.result());
  };
  const auto& objectives = spec.objectives();
  if (!objectives.empty()) {
    // The Pareto set, by the first objective; `count` > 0 caps it.
    std::vector<Trial> done;
    trials.ForEach([&](const Trial& t) {
      // A trial that broke a constraint is never best.
      if (t.state() == v1::TRIAL_COMPLETED && t.has_result() && t.infeasible().empty())
        done.push_back(t);
    });
    std::vector<std::vector<double>> points;
    for (const Trial& t : done) {
      std::vector<double> p;
      for (int i = 0; i < objectives.size() && i < t.results_size(); ++i) {
        p.push_back(objectives[i].goal() == v1::Objective::MAXIMIZE ? -t.results(i) : t.results(i));
      }
      points.push_back(std::move(p));
    }
    std::vector<Trial> front;
    for (size_t i : search::ParetoFront(points)) front.push_back(done[i]);
    std::stable_sort(front.begin(), front.end(), by_result);
    if (count > 0 && static_cast<int>(front.size()) > count) front.resize(count);
    return front;
  }
  // One objective: the summaries rank them (a scan, not a read of a million records), and
  // only the chosen are copied.
  std::vector<std::pair<double, int>> done;  // (result, index), in index order
  for (int i = 1; i <= trials.size(); ++i) {
    if (!trials.Has(i)) continue;
    const TrialTable::Summary s = trials.SummaryOf(i);
    if (s.state == v1::TRIAL_COMPLETED && s.has_result && s.feasible)
      done.emplace_back(s.result, i);
  }
  if (count <= 0) count = 1;
  const auto n = static_cast<ptrdiff_t>(std::min<size_t>(done.size(), static_cast<size_t>(count)));
  // Ties: the lower index first.
  std::partial_sort(done.begin(), done.begin() + n, done.end(), [&](const auto& a, const auto& b) {
    return Better(goal, a.first, b.first) || (a.first == b.first && a.second < b.second);
  });
  std::vector<Trial> out;
  for (ptrdiff_t k = 0; k < n; ++k) out.push_back(trials.Copy(done[static_cast<size_t>(k)].second));
  return out;
}

std::vector<TrialKey> SortKeys(const v1::ExperimentSpec& spec, const TrialTable& trials,
                               std::string sort,
                               const std::function<bool(const TrialTable::Summary&)>& wanted) {
  const bool reverse = !sort.empty() && sort[0] == '-';
  if (reverse) sort.erase(0, 1);
  // The objective the metric is, if it is one (the first, when several name it).
  int objective = -1;
  bool maximize = false;
  if (spec.objectives_size() > 0) {
    for (int i = spec.objectives_size() - 1; i >= 0; --i) {
      if (spec.objectives(i).metric() == sort) {
        objective = i;
        maximize = spec.objectives(i).goal() == v1::Objective::MAXIMIZE;
      }
    }
  } else if (spec.objective().metric() == sort) {
    objective = 0;
    maximize = spec.objective().goal() == v1::Objective::MAXIMIZE;
  }
  const bool descending = maximize != reverse;
  std::vector<TrialKey> keys;
  auto add = [&](int index, bool found, double value) {
    TrialKey k;
    k.index = index;
    k.missing = !found;
    k.value = !found ? 0 : descending ? -value : value;
    keys.push_back(k);
  };
  if (objective == 0) {
    // The first objective: its final value, else its last one, are in the summaries.
    for (int i = 1; i <= trials.size(); ++i) {
      if (!trials.Has(i)) continue;
      const TrialTable::Summary s = trials.SummaryOf(i);
      if (!wanted(s)) continue;
      if (s.has_result) {
        add(i, true, s.result);
      } else {
        add(i, s.has_last, s.last);
      }
    }
    return keys;
  }
  trials.ForEach([&](const Trial& t) {
    if (!wanted(trials.Summarize(t))) return;
    if (t.has_result() && objective > 0 && objective < t.results_size()) {
      add(t.index(), true, t.results(objective));
      return;
    }
    auto it = t.last_metrics().find(sort);
    add(t.index(), it != t.last_metrics().end(), it != t.last_metrics().end() ? it->second : 0);
  });
  return keys;
}

std::string StateText(v1::ExperimentState s) {
  std::string n = v1::ExperimentState_Name(s);
  n = n.substr(n.find('_') + 1);
  for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return n;
}

absl::StatusOr<v1::AblationResults> AblationResultsOf(const v1::Experiment& e,
                                                      const TrialTable& table) {
  if (e.spec().kind() != "ablation") {
    return absl::FailedPreconditionError(absl::StrCat(
        "experiment ", e.id(), " is a search, not an ablation study (kind: ablation)"));
  }
  const std::vector<search::Variant> variants = AblationVariants(e.spec());
  std::vector<search::Run> runs;
  for (int i = 1; i <= table.size(); ++i) {
    if (!table.Has(i)) continue;
    const TrialTable::Summary t = table.SummaryOf(i);
    if (t.state != v1::TRIAL_COMPLETED || !t.has_result) continue;
    runs.push_back({search::VariantOf(i - 1, variants.size()),
                    search::RepeatOf(i - 1, variants.size()), t.result});
  }
  const bool minimize = e.spec().objective().goal() != v1::Objective::MAXIMIZE;
  constexpr double kAlpha = 0.05;
  const std::vector<search::VariantResult> results =
      search::Summarize(variants, runs, minimize, kAlpha);
  // The base first, then the removals by rank, then those with no result yet.
  std::vector<const search::VariantResult*> rows = {&results[0]};
  for (size_t rank = 1; rank < results.size(); ++rank) {
    for (const auto& r : results) {
      if (r.rank == static_cast<int>(rank)) rows.push_back(&r);
    }
  }
  for (size_t v = 1; v < results.size(); ++v) {
    if (results[v].rank == 0) rows.push_back(&results[v]);
  }
  v1::AblationResults out;
  out.set_experiment(e.id());
  out.set_name(e.spec().name());
  out.set_state(StateText(e.state()));
  out.set_objective(e.spec().objective().metric());
  out.set_goal(minimize ? "minimize" : "maximize");
  out.set_repeats(e.spec().ablation().repeats());
  out.set_alpha(kAlpha);
  for (const search::VariantResult* r : rows) {
    v1::AblationVariant* v = out.add_variants();
    v->set_kind(r->variant.kind);
    v->set_name(r->variant.name);
    for (const std::string& d : r->variant.dropped) v->add_dropped(d);
    v->set_runs(r->runs);
    if (!std::isnan(r->mean)) v->set_mean(r->mean);
    if (!std::isnan(r->stddev)) v->set_stddev(r->stddev);
    if (!std::isnan(r->delta)) v->set_delta(r->delta);
    if (!std::isnan(r->harm)) v->set_harm(r->harm);
    v->set_test(r->test);
    if (!std::isnan(r->p)) v->set_p(r->p);
    v->set_significant(r->significant);
    v->set_rank(r->rank);
  }
  return out;
}

}  // namespace rung
