#include "server/search/searcher.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include <functional>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/search/pbt.h"
#include "server/search/rng.h"
#include "server/search/sampler.h"
#include "server/search/stopping.h"

namespace rung::search {
namespace {

// The values a parameter takes in a grid, in order.
// The number of values a parameter takes in a grid. Computed, never materialised, so an
// int range of a billion costs nothing until its values are asked for one by one.
int64_t AxisSize(const Param& p) {
  switch (p.kind) {
    case Param::Kind::kCategorical:
      return static_cast<int64_t>(p.values.size());
    case Param::Kind::kInt:
      if (!p.grid_values.empty()) return static_cast<int64_t>(p.grid_values.size());
      return static_cast<int64_t>(p.max) - static_cast<int64_t>(p.min) + 1;
    case Param::Kind::kFloat:
      if (!p.grid_values.empty()) return static_cast<int64_t>(p.grid_values.size());
      return std::max(p.grid_points, 2);
  }
  return 0;
}

// Value k (0 <= k < AxisSize(p)) of a parameter's grid axis, in order.
ParamValue AxisValue(const Param& p, int64_t k) {
  switch (p.kind) {
    case Param::Kind::kCategorical:
      return p.values[static_cast<size_t>(k)];
    case Param::Kind::kInt:
      if (!p.grid_values.empty())
        return static_cast<int64_t>(p.grid_values[static_cast<size_t>(k)]);
      return static_cast<int64_t>(p.min) + k;
    case Param::Kind::kFloat: {
      if (!p.grid_values.empty()) return p.grid_values[static_cast<size_t>(k)];
      const int64_t n = AxisSize(p);
      if (k == n - 1) return p.max;  // exact end point despite rounding
      const double f = static_cast<double>(k) / static_cast<double>(n - 1);
      return p.log ? std::exp(std::log(p.min) + f * (std::log(p.max) - std::log(p.min)))
                   : p.min + f * (p.max - p.min);
    }
  }
  return 0.0;
}

}  // namespace

bool Active(const Param& p, const Params& chosen) {
  if (p.parent.empty()) return true;
  auto it = chosen.find(p.parent);
  if (it == chosen.end()) return false;
  const auto* v = std::get_if<std::string>(&it->second);
  return v &&
         std::find(p.parent_values.begin(), p.parent_values.end(), *v) != p.parent_values.end();
}

bool Fits(const Param& p, const ParamValue& v) {
  switch (p.kind) {
    case Param::Kind::kCategorical: {
      const auto* s = std::get_if<std::string>(&v);
      return s && std::find(p.values.begin(), p.values.end(), *s) != p.values.end();
    }
    case Param::Kind::kInt: {
      const auto* i = std::get_if<int64_t>(&v);
      if (!i) return false;
      if (!p.grid_values.empty()) {
        return std::find(p.grid_values.begin(), p.grid_values.end(), static_cast<double>(*i)) !=
               p.grid_values.end();
      }
      return *i >= static_cast<int64_t>(p.min) && *i <= static_cast<int64_t>(p.max);
    }
    case Param::Kind::kFloat: {
      const auto* d = std::get_if<double>(&v);
      if (!d) return false;
      if (!p.grid_values.empty()) {
        return std::find(p.grid_values.begin(), p.grid_values.end(), *d) != p.grid_values.end();
      }
      return *d >= p.min && *d <= p.max;
    }
  }
  return false;
}

ParamValue SampleUniform(const Param& p, Rng* rng) {
  if (p.kind == Param::Kind::kCategorical) return p.values[rng->Below(p.values.size())];
  if (!p.grid_values.empty()) {
    double v = p.grid_values[rng->Below(p.grid_values.size())];
    if (p.kind == Param::Kind::kInt) return static_cast<int64_t>(v);
    return v;
  }
  if (p.kind == Param::Kind::kInt) {
    const auto lo = static_cast<int64_t>(p.min), hi = static_cast<int64_t>(p.max);
    if (!p.log) return lo + static_cast<int64_t>(rng->Below(static_cast<uint64_t>(hi - lo + 1)));
    // Log-uniform over [lo - 0.5, hi + 0.5) so each integer gets its share of the log scale.
    const double a = std::log(std::max(lo - 0.5, 1e-12)), b = std::log(hi + 0.5);
    const auto v = static_cast<int64_t>(std::llround(std::exp(a + rng->Uniform() * (b - a))));
    return std::clamp(v, lo, hi);
  }
  if (p.log) {
    const double a = std::log(p.min), b = std::log(p.max);
    return std::clamp(std::exp(a + rng->Uniform() * (b - a)), p.min, p.max);
  }
  return p.min + rng->Uniform() * (p.max - p.min);
}

Params SampleSpace(const std::vector<Param>& space, Rng* rng) {
  Params params;
  for (const Param& p : space) {
    if (Active(p, params)) params[p.name] = SampleUniform(p, rng);
  }
  return params;
}

namespace {

class RandomSampler final : public Sampler {
 public:
  explicit RandomSampler(const Config& config) : space_(config.space), rng_(config.seed) {}

  Params Next(int /*index*/) override { return SampleSpace(space_, &rng_); }
  void Save(std::vector<std::string>* lines) const override {
    lines->push_back(absl::StrCat("rng=", rng_.Save()));
  }
  bool Load(const std::vector<std::string>& lines) override {
    if (lines.size() != 1) return false;
    absl::string_view token = lines[0];
    return absl::ConsumePrefix(&token, "rng=") && rng_.Load(token);
  }

 private:
  const std::vector<Param> space_;
  Rng rng_;
};

// The same parameters for every trial.
class FixedSampler final : public Sampler {
 public:
  explicit FixedSampler(const Config& config) : fixed_(config.fixed) {}
  Params Next(int /*index*/) override { return fixed_; }
  void Save(std::vector<std::string>* lines) const override {
    lines->push_back("fixed");
  }  // no state
  bool Load(const std::vector<std::string>& lines) override {
    return lines.size() == 1 && lines[0] == "fixed";
  }

 private:
  const Params fixed_;
};

bool Conditional(const std::vector<Param>& space) {
  for (const Param& p : space) {
    if (!p.parent.empty()) return true;
  }
  return false;
}

// Walks the valid combinations of a conditional space in order (the last parameter
// fastest); an inactive parameter takes no value. `visit` returns false to stop.
bool Expand(const std::vector<Param>& space, size_t i, Params* chosen,
            const std::function<bool(const Params&)>& visit) {
  if (i == space.size()) return visit(*chosen);
  if (!Active(space[i], *chosen)) return Expand(space, i + 1, chosen, visit);
  for (int64_t k = 0; k < AxisSize(space[i]); ++k) {
    (*chosen)[space[i].name] = AxisValue(space[i], k);
    bool go_on = Expand(space, i + 1, chosen, visit);
    chosen->erase(space[i].name);
    if (!go_on) return false;
  }
  return true;
}

constexpr int64_t kMaxGrid = std::numeric_limits<int32_t>::max();

// Point `index` of the grid, the last parameter varying fastest: by mixed-radix arithmetic,
// or, for a conditional space, from the list of its valid combinations.
class GridSampler final : public Sampler {
 public:
  // `config.max_trials` is at most the grid's size: a conditional space keeps that many
  // points, an unconditional one keeps none.
  explicit GridSampler(const Config& config) : space_(config.space) {
    if (Conditional(space_)) {
      Params chosen;
      Expand(space_, 0, &chosen, [&](const Params& p) {
        points_.push_back(p);
        return static_cast<int>(points_.size()) < config.max_trials;
      });
    }
  }
  Params Next(int index) override {
    if (!points_.empty()) return points_[static_cast<size_t>(index) % points_.size()];
    Params params;
    int64_t rest = index;
    for (size_t i = space_.size(); i-- > 0;) {
      const int64_t n = AxisSize(space_[i]);
      params[space_[i].name] = AxisValue(space_[i], rest % n);
      rest /= n;
    }
    return params;
  }
  void Save(std::vector<std::string>* lines) const override { lines->push_back("-"); }
  bool Load(const std::vector<std::string>& lines) override {
    return lines.size() == 1 && lines[0] == "-";
  }

 private:
  const std::vector<Param> space_;
  std::vector<Params> points_;  // conditional spaces only
};

// A sampler, optionally with a stopping rule. Creates trials while the controller has room
// and max_trials allows; says Done once every trial it created has closed.
//
// Snapshot, one item a line:
//   searcher v2
//   created N / closed N / done 0|1 / paused N
//   sampler ... (the sampler's own lines, each behind "sampler ")
//   rule ... (the rule's own lines, each behind "rule ")
class ComposedSearcher final : public Searcher {
 public:
  ComposedSearcher(const Config& config, std::unique_ptr<Sampler> sampler,
                   std::unique_ptr<StoppingRule> rule)
      : config_(config), sampler_(std::move(sampler)), rule_(std::move(rule)) {}

  std::vector<Action> Handle(const Event& event) override {
    std::vector<Action> actions;
    if (const auto* want = std::get_if<TrialsWanted>(&event)) {
      for (int i = 0; i < want->count; ++i) {
        // A paused trial that earned the next rung goes before a new one.
        if (auto promote = rule_ ? rule_->Promote() : std::nullopt) {
          --paused_;
          actions.push_back(*promote);
          continue;
        }
        if (created_ >= config_.max_trials) break;
        if (rule_) rule_->OnCreate(created_);
        Params params = want->adopt
                            ? sampler_->Adopt(created_, want->proposal ? &*want->proposal : nullptr)
                            : sampler_->Next(created_);
        actions.push_back(Create{created_, std::move(params),
                                 rule_ ? rule_->Budget(created_) : config_.resource_max});
        ++created_;
      }
    } else if (const auto* report = std::get_if<TrialReported>(&event)) {
      if (rule_) {
        sampler_->Report(report->index, report->resource, report->value);
        if (auto stop = rule_->OnReport(*report)) actions.push_back(std::move(*stop));
      }
    } else if (const auto* paused = std::get_if<TrialPaused>(&event)) {
      ++paused_;
      if (rule_) rule_->OnPaused(paused->index);
    } else if (const auto* closed = std::get_if<TrialClosed>(&event)) {
      ++closed_;
      if (rule_) rule_->OnClosed(*closed);
      sampler_->Observe(*closed);
    }
    // Promote mode: nothing runs, nothing is left to create, and no paused trial earned a
    // promotion: none ever will, so the paused ones are stopped where they are.
    if (rule_ && paused_ > 0 && created_ == config_.max_trials && closed_ + paused_ == created_ &&
        rule_->NothingToPromote()) {
      for (Stop& s : rule_->StopPaused()) actions.push_back(std::move(s));
      paused_ = 0;
    }
    if (!done_ && created_ == config_.max_trials && closed_ >= created_) {
      done_ = true;
      actions.push_back(Done{});
    }
    return actions;
  }

  std::string Snapshot() const override {
    std::vector<std::string> lines = {
        "searcher v2", absl::StrCat("created ", created_), absl::StrCat("closed ", closed_),
        absl::StrCat("done ", done_ ? 1 : 0), absl::StrCat("paused ", paused_)};
    std::vector<std::string> sampler_lines;
    sampler_->Save(&sampler_lines);
    for (auto& l : sampler_lines) lines.push_back(absl::StrCat("sampler ", l));
    if (rule_) {
      std::vector<std::string> rule_lines;
      rule_->Save(&rule_lines);
      for (auto& l : rule_lines) lines.push_back(absl::StrCat("rule ", l));
    }
    return absl::StrJoin(lines, "\n");
  }

  absl::Status Restore(absl::string_view snapshot) override {
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("searcher: unreadable snapshot (", why, ")"));
    };
    std::vector<absl::string_view> lines = absl::StrSplit(snapshot, '\n');
    if (lines.size() < 6 || lines[0] != "searcher v2") return bad("header");
    int created, closed, done, paused;
    if (!absl::SimpleAtoi(absl::StripPrefix(lines[1], "created "), &created) ||
        !absl::SimpleAtoi(absl::StripPrefix(lines[2], "closed "), &closed) ||
        !absl::SimpleAtoi(absl::StripPrefix(lines[3], "done "), &done) ||
        !absl::SimpleAtoi(absl::StripPrefix(lines[4], "paused "), &paused)) {
      return bad("counters");
    }
    std::vector<std::string> sampler_lines;
    size_t i = 5;
    while (i < lines.size() && absl::ConsumePrefix(&lines[i], "sampler ")) {
      sampler_lines.emplace_back(lines[i++]);
    }
    if (!sampler_->Load(sampler_lines)) return bad("sampler");
    std::vector<std::string> rule_lines;
    for (; i < lines.size(); ++i) {
      if (!absl::ConsumePrefix(&lines[i], "rule ") || !rule_) return bad("rule");
      rule_lines.emplace_back(lines[i]);
    }
    if (rule_ && !rule_->Load(rule_lines)) return bad("rule state");
    created_ = created;
    closed_ = closed;
    done_ = done != 0;
    paused_ = paused;
    return absl::OkStatus();
  }

  bool WantsReports() const override { return rule_ != nullptr; }

  std::function<Proposal()> Propose() override {
    if (created_ >= config_.max_trials || (rule_ && !rule_->NothingToPromote())) return nullptr;
    return sampler_->Propose(created_);
  }

 private:
  const Config config_;
  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<StoppingRule> rule_;
  int created_ = 0;
  int closed_ = 0;
  int paused_ = 0;  // promote mode: trials trained to their budget, waiting
  bool done_ = false;
};

}  // namespace

std::vector<size_t> ParetoFront(const std::vector<std::vector<double>>& points) {
  auto dominates = [](const std::vector<double>& a, const std::vector<double>& b) {
    bool better = false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i] > b[i]) return false;
      better = better || a[i] < b[i];
    }
    return better;
  };
  std::vector<size_t> front;
  for (size_t i = 0; i < points.size(); ++i) {
    bool dominated = false;
    for (size_t j = 0; j < points.size() && !dominated; ++j)
      dominated = j != i && dominates(points[j], points[i]);
    if (!dominated) front.push_back(i);
  }
  return front;
}

int64_t GridSize(const std::vector<Param>& space) {
  if (Conditional(space)) {
    // Counted by walking the combinations (a conditional grid has no closed form here), up
    // to a cap; nothing is kept.
    int64_t n = 0;
    Params chosen;
    Expand(space, 0, &chosen, [&](const Params&) { return ++n < 1'000'000; });
    return n;
  }
  int64_t n = 1;
  for (const Param& p : space) {
    const int64_t k = AxisSize(p);
    n = k > 0 && n > kMaxGrid / k ? kMaxGrid : std::min(n * k, kMaxGrid);
  }
  return n;
}

absl::StatusOr<std::unique_ptr<Searcher>> NewSearcher(const Config& config) {
  if (config.max_trials <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_trials must be at least 1 (got ", config.max_trials, ")"));
  }
  if (config.space.empty() && config.sampler != Config::Sampler::kFixed) {
    return absl::InvalidArgumentError("the search space is empty");
  }
  Config c = config;
  if (c.sampler == Config::Sampler::kPopulation) {
    if (!(c.resource_max > 0) || !(c.pbt.interval < c.resource_max)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "population-based training needs a resource whose max is above the interval (got "
          "interval ",
          c.pbt.interval, ", max ", c.resource_max, ")"));
    }
    if (c.pbt.factors.empty()) c.pbt.factors = {1};
    return NewPbtSearcher(c, c.pbt);
  }
  std::unique_ptr<Sampler> sampler;
  if (c.sampler == Config::Sampler::kGrid) {
    c.max_trials = static_cast<int>(std::min<int64_t>(c.max_trials, GridSize(c.space)));
    sampler = std::make_unique<GridSampler>(c);
  } else if (c.sampler == Config::Sampler::kTpe) {
    sampler = NewTpeSampler(c, c.tpe_startup);
  } else if (c.sampler == Config::Sampler::kGp) {
    sampler = NewGpSampler(c, c.tpe_startup);
  } else if (c.sampler == Config::Sampler::kFixed) {
    sampler = std::make_unique<FixedSampler>(c);
  } else {
    sampler = std::make_unique<RandomSampler>(c);
  }
  std::unique_ptr<StoppingRule> rule;
  switch (c.stopping.rule) {
    case Stopping::Rule::kAsha:
    case Stopping::Rule::kHyperband:
      if (Rungs(c.resource_min, c.resource_max, c.stopping.reduction_factor, 0).empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "early stopping needs a resource range with 0 < min < max and reduction_factor >= 2 "
            "(got min ",
            c.resource_min, ", max ", c.resource_max, ", reduction_factor ",
            c.stopping.reduction_factor, ")"));
      }
      rule = NewRungRule(c, c.stopping.rule == Stopping::Rule::kHyperband);
      break;
    case Stopping::Rule::kMedian:
      rule = NewMedianRule(c);
      break;
    case Stopping::Rule::kNone:
      break;
  }
  return std::make_unique<ComposedSearcher>(c, std::move(sampler), std::move(rule));
}

}  // namespace rung::search
