#include "server/search/history.h"
#include "server/search/sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/search/stopping.h"

namespace rung::search {

bool IsCategory(const Param& p) {
  return p.kind == Param::Kind::kCategorical || !p.grid_values.empty();
}

size_t Categories(const Param& p) {
  return p.kind == Param::Kind::kCategorical ? p.values.size() : p.grid_values.size();
}

void ContinuousDomain(const Param& p, double* lo, double* hi) {
  double a = p.min, b = p.max;
  if (p.kind == Param::Kind::kInt) {
    a -= 0.5;
    b += 0.5;
  }
  if (p.log) {
    a = std::log(std::max(a, 1e-12));
    b = std::log(b);
  }
  *lo = a;
  *hi = b;
}

double History::Encode(const Param& p, const ParamValue& v) const {
  if (p.kind == Param::Kind::kCategorical) {
    const auto& s = std::get<std::string>(v);
    return static_cast<double>(std::find(p.values.begin(), p.values.end(), s) - p.values.begin());
  }
  const double x =
      p.kind == Param::Kind::kInt ? static_cast<double>(std::get<int64_t>(v)) : std::get<double>(v);
  if (!p.grid_values.empty()) {
    return static_cast<double>(std::find(p.grid_values.begin(), p.grid_values.end(), x) -
                               p.grid_values.begin());
  }
  return p.log ? std::log(std::max(x, 1e-300)) : x;
}

Params History::Decode(const std::vector<double>& values) const {
  Params params;
  for (size_t j = 0; j < space_.size() && j < values.size(); ++j) {
    const Param& p = space_[j];
    const double e = values[j];
    if (std::isnan(e)) continue;  // not in this trial (a conditional parameter)
    if (p.kind == Param::Kind::kCategorical) {
      params[p.name] = p.values[static_cast<size_t>(e)];
    } else if (!p.grid_values.empty()) {
      double v = p.grid_values[static_cast<size_t>(e)];
      if (p.kind == Param::Kind::kInt) {
        params[p.name] = static_cast<int64_t>(v);
      } else {
        params[p.name] = v;
      }
    } else {
      double x = p.log ? std::exp(e) : e;
      if (p.kind == Param::Kind::kInt) {
        params[p.name] = std::clamp(static_cast<int64_t>(std::llround(x)),
                                    static_cast<int64_t>(p.min), static_cast<int64_t>(p.max));
      } else {
        params[p.name] = std::clamp(x, p.min, p.max);
      }
    }
  }
  return params;
}

void History::Add(int index, const Params& params) {
  Trial t;
  for (const Param& p : space_) {
    auto it = params.find(p.name);
    t.values.push_back(it == params.end() ? kAbsent : Encode(p, it->second));
  }
  t.at_level.assign(levels_.size(), kAbsent);
  trials_[index] = std::move(t);
}

void History::AddWarmStart(const std::vector<std::pair<Params, double>>& warm) {
  int index = -1;
  for (const auto& [params, value] : warm) {
    Add(index, params);
    Observe(TrialClosed{index, TrialClosed::Outcome::kCompleted, true, value});
    --index;
  }
}

void History::Observe(const TrialClosed& closed) {
  auto it = trials_.find(closed.index);
  if (it == trials_.end()) return;
  const bool has_value = closed.outcome == TrialClosed::Outcome::kCompleted && closed.has_result;
  it->second.state = has_value ? 'c' : 'x';
  it->second.value = closed.result;
  it->second.objectives = has_value ? closed.results : std::vector<double>();
  it->second.feasible = !has_value || closed.feasible;
}

void History::Report(int index, double resource, double value) {
  auto it = trials_.find(index);
  if (it == trials_.end()) return;
  for (size_t k = 0; k < levels_.size() && resource >= levels_[k]; ++k) {
    if (std::isnan(it->second.at_level[k])) it->second.at_level[k] = value;
  }
}

void History::Save(std::vector<std::string>* lines) const {
  for (const auto& [i, t] : trials_) {
    std::string line =
        absl::StrCat("o ", i, " ", std::string(1, t.state), " ", DoubleText(t.value));
    for (double v : t.values) absl::StrAppend(&line, " ", DoubleText(v));
    if (!levels_.empty()) {
      absl::StrAppend(&line, " @");
      for (double v : t.at_level) absl::StrAppend(&line, " ", DoubleText(v));
    }
    if (!t.feasible || !t.objectives.empty()) {
      absl::StrAppend(&line, " # ", t.feasible ? 1 : 0);
      for (double v : t.objectives) absl::StrAppend(&line, " ", DoubleText(v));
    }
    lines->push_back(std::move(line));
  }
}

bool History::Load(const std::vector<std::string>& lines) {
  trials_.clear();
  for (const std::string& line : lines) {
    std::vector<absl::string_view> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
    int index;
    Trial t;
    const size_t d = space_.size();
    if (w.size() < 4 + d || w[0] != "o" || !absl::SimpleAtoi(w[1], &index) || w[2].size() != 1 ||
        !ParseDouble(w[3], &t.value)) {
      return false;
    }
    t.state = w[2][0];
    // Then the encoded values, "@" and the levels (absent in lines written before levels
    // were kept: unknown), and "#", feasibility and the objectives.
    std::vector<double>* into = &t.values;
    for (size_t j = 4; j < w.size(); ++j) {
      if (w[j] == "@" && into == &t.values && t.values.size() == d) {
        into = &t.at_level;
        continue;
      }
      if (w[j] == "#" && into != &t.objectives && j + 1 < w.size() && t.values.size() == d) {
        t.feasible = w[++j] == "1";
        into = &t.objectives;
        continue;
      }
      double v;
      if (!ParseDouble(w[j], &v)) return false;
      into->push_back(v);
    }
    if (t.values.size() != d || t.at_level.size() > levels_.size()) return false;
    t.at_level.resize(levels_.size(), kAbsent);
    trials_[index] = std::move(t);
  }
  return true;
}

namespace {

// The rung levels a model learns from: every rung of an ASHA or Hyperband rule.
std::vector<double> ModelLevels(const Config& c) {
  if (c.stopping.rule != Stopping::Rule::kAsha && c.stopping.rule != Stopping::Rule::kHyperband) {
    return {};
  }
  return Rungs(c.resource_min, c.resource_max, c.stopping.reduction_factor, 0);
}

}  // namespace

ModelSampler::ModelSampler(const Config& c, int startup)
    : space_(c.space),
      goal_(c.goal),
      startup_(startup),
      seed_(c.seed),
      rng_(c.seed),
      history_(c.space, ModelLevels(c)),
      objectives_(c.objectives),
      constrained_(c.constrained),
      rank_by_depth_(c.rank_by_depth && !ModelLevels(c).empty() && c.objectives.size() < 2) {
  history_.AddWarmStart(c.warm_start);
}

Params ModelSampler::StartupDraw(int index) {
  if (index < 0 || index >= startup_) return RandomValid();
  // Latin hypercube over the numeric parameters: start-up trial `index` takes stratum
  // perm_j(index) of startup_ equal slices of parameter j's continuous domain, so the
  // first trials cover each range evenly. The permutations come from the seed alone.
  Params chosen;
  for (size_t j = 0; j < space_.size(); ++j) {
    const Param& p = space_[j];
    if (!Active(p, chosen)) continue;
    if (IsCategory(p)) {
      chosen[p.name] = SampleUniform(p, &rng_);
      continue;
    }
    std::vector<int> perm(static_cast<size_t>(startup_));
    for (int k = 0; k < startup_; ++k) perm[static_cast<size_t>(k)] = k;
    Rng shuffle(seed_ ^ (0x9E3779B97F4A7C15ULL * (j + 1)));
    for (size_t k = perm.size(); k > 1; --k) std::swap(perm[k - 1], perm[shuffle.Below(k)]);
    double lo, hi;
    ContinuousDomain(p, &lo, &hi);
    const double u = (perm[static_cast<size_t>(index)] + rng_.Uniform()) / startup_;
    std::vector<double> one(space_.size(), History::kAbsent);
    one[j] = lo + u * (hi - lo);
    chosen[p.name] = history_.Decode(one).at(p.name);
  }
  return chosen;
}

Params ModelSampler::RandomValid() {
  Params chosen;
  for (const Param& p : space_) {
    if (Active(p, chosen)) chosen[p.name] = SampleUniform(p, &rng_);
  }
  return chosen;
}

int ModelSampler::Basis() const {
  std::vector<int> counts(history_.levels().size() + 1, 0);  // per level, then completed
  for (const auto& [i, t] : history_.trials()) {
    counts.back() += t.state == 'c';
    for (size_t k = 0; k < t.at_level.size(); ++k) counts[k] += !std::isnan(t.at_level[k]);
  }
  // Completed trials first; else (multi-fidelity, BOHB) the highest rung where at least
  // `startup_` trials have a result.
  for (size_t k = counts.size(); k-- > 0;) {
    if (counts[k] >= startup_) return k + 1 == counts.size() ? kCompleted : static_cast<int>(k);
  }
  return kNone;
}

int ModelSampler::ReadyByDepth(std::vector<const Trial*>* done,
                               std::vector<const Trial*>* running) {
  struct Ranked {
    const Trial* t;
    size_t depth;  // rungs reached, and one more for a completed trial
    double value;  // there, in the goal's direction (lower is better)
  };
  std::vector<Ranked> ranked;
  const size_t levels = history_.levels().size();
  for (const auto& [i, t] : history_.trials()) {
    if (t.state == 'r') {
      running->push_back(&t);
      continue;
    }
    size_t depth = 0;
    while (depth < levels && !std::isnan(t.at_level[depth])) ++depth;
    double value = depth > 0 ? t.at_level[depth - 1] : 0;
    if (t.state == 'c') {
      depth = levels + 1;
      value = t.value;
    }
    if (depth == 0) continue;  // ended before its first rung: nothing to learn
    ranked.push_back({&t, depth, goal_ == Goal::kMaximize ? -value : value});
  }
  if (static_cast<int>(ranked.size()) < startup_) {
    running->clear();
    return kNone;
  }
  std::stable_sort(ranked.begin(), ranked.end(), [](const Ranked& a, const Ranked& b) {
    return a.depth != b.depth ? a.depth > b.depth : a.value < b.value;
  });
  level_view_.clear();
  level_view_.reserve(ranked.size());
  for (size_t r = 0; r < ranked.size(); ++r) {
    Trial v = *ranked[r].t;
    v.state = 'c';
    v.value = goal_ == Goal::kMaximize ? -static_cast<double>(r) : static_cast<double>(r);
    level_view_.push_back(std::move(v));
  }
  for (const Trial& v : level_view_) done->push_back(&v);
  return kByDepth;
}

int ModelSampler::Ready(std::vector<const Trial*>* done, std::vector<const Trial*>* running) {
  done->clear();
  running->clear();
  if (rank_by_depth_) return ReadyByDepth(done, running);
  const int basis = Basis();
  if (basis == kCompleted) {
    for (const auto& [i, t] : history_.trials()) {
      if (t.state == 'c') done->push_back(&t);
      if (t.state == 'r') running->push_back(&t);
    }
  } else if (basis != kNone) {
    // The trials as seen at that rung; those that have not reached it and still run are
    // the liar's.
    const auto k = static_cast<size_t>(basis);
    level_view_.clear();
    for (const auto& [i, t] : history_.trials()) {
      if (std::isnan(t.at_level[k])) {
        if (t.state == 'r') running->push_back(&t);
        continue;
      }
      Trial v = t;
      v.state = 'c';
      v.value = t.at_level[k];
      level_view_.push_back(std::move(v));
    }
    for (const Trial& v : level_view_) done->push_back(&v);
  }
  return basis;
}

void ModelSampler::Scalarise(std::vector<const Trial*>* done) {
  const size_t k = objectives_.size() >= 2 ? objectives_.size() : 1;
  // Every objective to minimise, scaled to [0, 1] over the completed trials.
  auto raw = [&](const Trial& t, size_t i) {
    const double v = k == 1 ? t.value : (i < t.objectives.size() ? t.objectives[i] : 0.0);
    const Goal g = k == 1 ? goal_ : objectives_[i];
    return g == Goal::kMaximize ? -v : v;
  };
  std::vector<double> lo(k, std::numeric_limits<double>::infinity()),
      hi(k, -std::numeric_limits<double>::infinity());
  for (const Trial* t : *done) {
    for (size_t i = 0; i < k; ++i) {
      lo[i] = std::min(lo[i], raw(*t, i));
      hi[i] = std::max(hi[i], raw(*t, i));
    }
  }
  // Weights uniform on the simplex, drawn for this suggestion.
  std::vector<double> w(k, 1.0);
  if (k > 1) {
    double sum = 0;
    for (double& x : w) sum += (x = -std::log(std::max(rng_.Uniform(), 1e-300)));
    for (double& x : w) x /= sum;
  }
  scalar_view_.clear();
  double worst_feasible = -std::numeric_limits<double>::infinity();
  for (const Trial* t : *done) {
    double chebyshev = -std::numeric_limits<double>::infinity(), sum = 0;
    for (size_t i = 0; i < k; ++i) {
      const double z = hi[i] > lo[i] ? (raw(*t, i) - lo[i]) / (hi[i] - lo[i]) : 0;
      chebyshev = std::max(chebyshev, w[i] * z);
      sum += w[i] * z;
    }
    Trial v = *t;
    v.value = k == 1 ? raw(*t, 0) : chebyshev + 0.05 * sum;
    if (t->feasible) worst_feasible = std::max(worst_feasible, v.value);
    scalar_view_.push_back(std::move(v));
  }
  // A trial that broke a constraint ranks below every one that kept them all, whatever its
  // objectives; among themselves, breakers keep their order.
  if (std::isfinite(worst_feasible)) {
    double worst_breaker = -std::numeric_limits<double>::infinity();
    for (const Trial& v : scalar_view_) {
      if (!v.feasible) worst_breaker = std::max(worst_breaker, v.value);
    }
    for (Trial& v : scalar_view_) {
      if (!v.feasible) v.value += worst_feasible - worst_breaker + 1 + std::abs(worst_feasible);
    }
  }
  // Models read values in the goal's direction.
  done->clear();
  for (Trial& v : scalar_view_) {
    if (goal_ == Goal::kMaximize) v.value = -v.value;
    done->push_back(&v);
  }
}

Params ModelSampler::Next(int index) {
  std::vector<const Trial*> done, running;
  const int basis = Ready(&done, &running);
  if (basis == kCompleted && (objectives_.size() >= 2 || constrained_)) Scalarise(&done);
  Params chosen = basis != kNone ? Model(done, running) : StartupDraw(index);
  history_.Add(index, chosen);
  return chosen;
}

std::function<Proposal()> ModelSampler::Propose(int index) {
  if (Basis() == kNone) return nullptr;  // start-up: random, cheap
  std::shared_ptr<ModelSampler> copy = Clone();
  copy->rng_ = Rng(rng_.Next());  // the copy draws its own numbers
  return [copy, index] {
    Proposal p;
    p.index = index;
    p.params = copy->Next(index);
    copy->SaveModel(&p.model);
    return p;
  };
}

Params ModelSampler::Adopt(int index, const Proposal* proposal) {
  Params chosen;
  bool valid = proposal != nullptr && proposal->index == index;
  if (valid) {
    // Every active parameter present and fitting, nothing else.
    size_t active = 0;
    for (const Param& p : space_) {
      if (!Active(p, proposal->params)) continue;
      ++active;
      auto it = proposal->params.find(p.name);
      valid = valid && it != proposal->params.end() && Fits(p, it->second);
    }
    valid = valid && active == proposal->params.size() &&
            static_cast<int>(proposal->model.size()) == ModelLineCount() &&
            LoadModel(proposal->model);
  }
  chosen = valid ? proposal->params : RandomValid();
  history_.Add(index, chosen);
  return chosen;
}

void ModelSampler::Report(int index, double resource, double value) {
  history_.Report(index, resource, value);
}

void ModelSampler::Observe(const TrialClosed& closed) { history_.Observe(closed); }

void ModelSampler::Save(std::vector<std::string>* lines) const {
  lines->push_back(absl::StrCat("rng=", rng_.Save()));
  SaveModel(lines);
  history_.Save(lines);
}

bool ModelSampler::Load(const std::vector<std::string>& lines) {
  const size_t own = 1 + static_cast<size_t>(ModelLineCount());
  if (lines.size() < own) return false;
  absl::string_view head = lines[0];
  if (!absl::ConsumePrefix(&head, "rng=") || !rng_.Load(head)) return false;
  if (!LoadModel(std::vector<std::string>(lines.begin() + 1, lines.begin() + own))) return false;
  return history_.Load(std::vector<std::string>(lines.begin() + own, lines.end()));
}

}  // namespace rung::search
