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

void History::Save(std::vector<std::string>* lines) const {
  for (const auto& [i, t] : trials_) {
    std::string line = absl::StrCat("o ", i, " ", std::string(1, t.state), " ", DoubleText(t.value));
    for (double v : t.values) absl::StrAppend(&line, " ", DoubleText(v));
    lines->push_back(std::move(line));
  }
}

bool History::Load(const std::vector<std::string>& lines) {
  trials_.clear();
  for (const std::string& line : lines) {
    std::vector<absl::string_view> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
    int index;
    Trial t;
    if (w.size() != 4 + space_.size() || w[0] != "o" || !absl::SimpleAtoi(w[1], &index) ||
        w[2].size() != 1 || !ParseDouble(w[3], &t.value)) {
      return false;
    }
    t.state = w[2][0];
    for (size_t j = 4; j < w.size(); ++j) {
      double v;
      if (!ParseDouble(w[j], &v)) return false;
      t.values.push_back(v);
    }
    trials_[index] = std::move(t);
  }
  return true;
}

ModelSampler::ModelSampler(const Config& c, int startup)
    : space_(c.space), goal_(c.goal), startup_(startup), rng_(c.seed), history_(c.space) {
  history_.AddWarmStart(c.warm_start);
}

Params ModelSampler::RandomValid() {
  Params chosen;
  for (const Param& p : space_) {
    if (Active(p, chosen)) chosen[p.name] = SampleUniform(p, &rng_);
  }
  return chosen;
}

Params ModelSampler::Next(int index) {
  std::vector<const Trial*> done, running;
  for (const auto& [i, t] : history_.trials()) {
    if (t.state == 'c') done.push_back(&t);
    if (t.state == 'r') running.push_back(&t);
  }
  Params chosen = static_cast<int>(done.size()) < startup_ ? RandomValid() : Model(done, running);
  history_.Add(index, chosen);
  return chosen;
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
