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
    Observe(index, true, value);
    --index;
  }
}

void History::Observe(int index, bool has_value, double value) {
  auto it = trials_.find(index);
  if (it == trials_.end()) return;
  it->second.state = has_value ? 'c' : 'x';
  it->second.value = value;
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
    std::string line = absl::StrCat("o ", i, " ", std::string(1, t.state), " ", DoubleText(t.value));
    for (double v : t.values) absl::StrAppend(&line, " ", DoubleText(v));
    if (!levels_.empty()) {
      absl::StrAppend(&line, " @");
      for (double v : t.at_level) absl::StrAppend(&line, " ", DoubleText(v));
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
    // Lines written before levels were kept have none: the trial's levels are unknown.
    const size_t want = 4 + space_.size() + (levels_.empty() ? 0 : 1 + levels_.size());
    if ((w.size() != want && w.size() != 4 + space_.size()) || w[0] != "o" || !absl::SimpleAtoi(w[1], &index) ||
        w[2].size() != 1 || !ParseDouble(w[3], &t.value)) {
      return false;
    }
    t.state = w[2][0];
    for (size_t j = 4; j < w.size(); ++j) {
      double v;
      if (j == 4 + space_.size()) {
        if (w[j] != "@") return false;
        continue;
      }
      if (!ParseDouble(w[j], &v)) return false;
      (j < 4 + space_.size() ? t.values : t.at_level).push_back(v);
    }
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
      rng_(c.seed),
      history_(c.space, ModelLevels(c)) {
  history_.AddWarmStart(c.warm_start);
}

Params ModelSampler::RandomValid() {
  Params chosen;
  for (const Param& p : space_) {
    if (Active(p, chosen)) chosen[p.name] = SampleUniform(p, &rng_);
  }
  return chosen;
}

bool ModelSampler::Ready(std::vector<const Trial*>* done, std::vector<const Trial*>* running) {
  done->clear();
  running->clear();
  for (const auto& [i, t] : history_.trials()) {
    if (t.state == 'c') done->push_back(&t);
    if (t.state == 'r') running->push_back(&t);
  }
  if (static_cast<int>(done->size()) >= startup_) return true;
  // Multi-fidelity (BOHB): too few trials finished, so the model learns from the highest
  // rung where at least `startup_` trials have a result. Trials that have not reached it and
  // still run are the liar's.
  for (size_t k = history_.levels().size(); k-- > 0;) {
    level_view_.clear();
    for (const auto& [i, t] : history_.trials()) {
      if (std::isnan(t.at_level[k])) continue;
      Trial v = t;
      v.state = 'c';
      v.value = t.at_level[k];
      level_view_.push_back(std::move(v));
    }
    if (static_cast<int>(level_view_.size()) < startup_) continue;
    done->clear();
    running->clear();
    for (const Trial& v : level_view_) done->push_back(&v);
    for (const auto& [i, t] : history_.trials()) {
      if (t.state == 'r' && std::isnan(t.at_level[k])) running->push_back(&t);
    }
    return true;
  }
  return false;
}

Params ModelSampler::Next(int index) {
  std::vector<const Trial*> done, running;
  Params chosen = Ready(&done, &running) ? Model(done, running) : RandomValid();
  history_.Add(index, chosen);
  return chosen;
}

std::function<Proposal()> ModelSampler::Propose(int index) {
  std::vector<const Trial*> done, running;
  if (!Ready(&done, &running)) return nullptr;  // start-up trials are random: cheap
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
            static_cast<int>(proposal->model.size()) == ModelLineCount() && LoadModel(proposal->model);
  }
  chosen = valid ? proposal->params : RandomValid();
  history_.Add(index, chosen);
  return chosen;
}

void ModelSampler::Report(int index, double resource, double value) {
  history_.Report(index, resource, value);
}

void ModelSampler::Observe(int index, bool has_value, double value) {
  history_.Observe(index, has_value, value);
}

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
