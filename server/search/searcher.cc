#include "server/search/searcher.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/search/rng.h"

namespace rung::search {
namespace {

// The values a parameter takes in a grid, in order.
std::vector<ParamValue> GridAxis(const Param& p) {
  std::vector<ParamValue> axis;
  switch (p.kind) {
    case Param::Kind::kCategorical:
      for (const auto& v : p.values) axis.emplace_back(v);
      break;
    case Param::Kind::kInt:
      if (!p.grid_values.empty()) {
        for (double v : p.grid_values) axis.emplace_back(static_cast<int64_t>(v));
      } else {
        for (int64_t v = static_cast<int64_t>(p.min); v <= static_cast<int64_t>(p.max); ++v) {
          axis.emplace_back(v);
        }
      }
      break;
    case Param::Kind::kFloat:
      if (!p.grid_values.empty()) {
        for (double v : p.grid_values) axis.emplace_back(v);
      } else {
        const int n = std::max(p.grid_points, 2);
        for (int i = 0; i < n; ++i) {
          double f = static_cast<double>(i) / (n - 1);
          double v = p.log ? std::exp(std::log(p.min) + f * (std::log(p.max) - std::log(p.min)))
                           : p.min + f * (p.max - p.min);
          if (i == n - 1) v = p.max;  // exact end point despite rounding
          axis.emplace_back(v);
        }
      }
      break;
  }
  return axis;
}

// Counts trials created and closed against max_trials and says Done when all have closed.
// Subclasses say what the next trial is.
class BudgetedSearcher : public Searcher {
 public:
  explicit BudgetedSearcher(const Config& config) : config_(config) {}

  std::vector<Action> Handle(const Event& event) final {
    std::vector<Action> actions;
    if (const auto* want = std::get_if<TrialsWanted>(&event)) {
      for (int i = 0; i < want->count && created_ < config_.max_trials; ++i) {
        actions.push_back(Create{created_, Next(created_)});
        ++created_;
      }
    } else if (std::holds_alternative<TrialClosed>(event)) {
      ++closed_;
    }
    if (!done_ && created_ == config_.max_trials && closed_ >= created_) {
      done_ = true;
      actions.push_back(Done{});
    }
    return actions;
  }

  std::string Snapshot() const final {
    return absl::StrCat(Kind(), " v1 created=", created_, " closed=", closed_,
                        " done=", done_ ? 1 : 0, " ", SaveExtra());
  }

  absl::Status Restore(absl::string_view snapshot) final {
    std::vector<absl::string_view> parts = absl::StrSplit(snapshot, ' ', absl::SkipEmpty());
    auto bad = [&] {
      return absl::InvalidArgumentError(
          absl::StrCat(Kind(), " searcher: unreadable snapshot '", snapshot, "'"));
    };
    if (parts.size() != 6 || parts[0] != Kind() || parts[1] != "v1") return bad();
    int created, closed, done;
    if (!absl::SimpleAtoi(absl::StripPrefix(parts[2], "created="), &created) ||
        !absl::SimpleAtoi(absl::StripPrefix(parts[3], "closed="), &closed) ||
        !absl::SimpleAtoi(absl::StripPrefix(parts[4], "done="), &done) || !LoadExtra(parts[5])) {
      return bad();
    }
    created_ = created;
    closed_ = closed;
    done_ = done != 0;
    return absl::OkStatus();
  }

  bool WantsReports() const final { return false; }

 protected:
  virtual absl::string_view Kind() const = 0;
  virtual Params Next(int index) = 0;
  // One token (no spaces) of subclass state.
  virtual std::string SaveExtra() const = 0;
  virtual bool LoadExtra(absl::string_view token) = 0;

  const Config config_;

 private:
  int created_ = 0;
  int closed_ = 0;
  bool done_ = false;
};

class RandomSearcher final : public BudgetedSearcher {
 public:
  explicit RandomSearcher(const Config& config) : BudgetedSearcher(config), rng_(config.seed) {}

 private:
  absl::string_view Kind() const override { return "random"; }
  std::string SaveExtra() const override { return absl::StrCat("rng=", rng_.Save()); }
  bool LoadExtra(absl::string_view token) override {
    return absl::ConsumePrefix(&token, "rng=") && rng_.Load(token);
  }

  Params Next(int /*index*/) override {
    Params params;
    for (const Param& p : config_.space) params[p.name] = Sample(p);
    return params;
  }

  ParamValue Sample(const Param& p) {
    if (p.kind == Param::Kind::kCategorical) return p.values[rng_.Below(p.values.size())];
    if (!p.grid_values.empty()) {
      double v = p.grid_values[rng_.Below(p.grid_values.size())];
      if (p.kind == Param::Kind::kInt) return static_cast<int64_t>(v);
      return v;
    }
    if (p.kind == Param::Kind::kInt) {
      const auto lo = static_cast<int64_t>(p.min), hi = static_cast<int64_t>(p.max);
      if (!p.log) return lo + static_cast<int64_t>(rng_.Below(static_cast<uint64_t>(hi - lo + 1)));
      // Log-uniform over [lo - 0.5, hi + 0.5) so each integer gets its share of the log scale.
      const double a = std::log(std::max(lo - 0.5, 1e-12)), b = std::log(hi + 0.5);
      const auto v = static_cast<int64_t>(std::llround(std::exp(a + rng_.Uniform() * (b - a))));
      return std::clamp(v, lo, hi);
    }
    if (p.log) {
      const double a = std::log(p.min), b = std::log(p.max);
      return std::clamp(std::exp(a + rng_.Uniform() * (b - a)), p.min, p.max);
    }
    return p.min + rng_.Uniform() * (p.max - p.min);
  }

  Rng rng_;
};

class GridSearcher final : public BudgetedSearcher {
 public:
  explicit GridSearcher(const Config& config) : BudgetedSearcher(config) {
    for (const Param& p : config.space) axes_.push_back(GridAxis(p));
  }

 private:
  absl::string_view Kind() const override { return "grid"; }
  std::string SaveExtra() const override { return "-"; }
  bool LoadExtra(absl::string_view token) override { return token == "-"; }

  // Point `index` in mixed-radix order, the last parameter varying fastest.
  Params Next(int index) override {
    Params params;
    int64_t rest = index;
    for (size_t i = axes_.size(); i-- > 0;) {
      const auto n = static_cast<int64_t>(axes_[i].size());
      params[config_.space[i].name] = axes_[i][rest % n];
      rest /= n;
    }
    return params;
  }

  std::vector<std::vector<ParamValue>> axes_;
};

}  // namespace

int64_t GridSize(const std::vector<Param>& space) {
  int64_t n = 1;
  for (const Param& p : space) {
    n = std::min<int64_t>(n * static_cast<int64_t>(GridAxis(p).size()),
                          std::numeric_limits<int32_t>::max());
  }
  return n;
}

absl::StatusOr<std::unique_ptr<Searcher>> NewSearcher(absl::string_view algorithm,
                                                      const Config& config) {
  if (config.max_trials <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_trials must be at least 1 (got ", config.max_trials, ")"));
  }
  if (config.space.empty()) return absl::InvalidArgumentError("the search space is empty");
  if (algorithm == "random") return std::make_unique<RandomSearcher>(config);
  if (algorithm == "grid") {
    Config c = config;
    c.max_trials = static_cast<int>(std::min<int64_t>(c.max_trials, GridSize(c.space)));
    return std::make_unique<GridSearcher>(c);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown algorithm '", algorithm, "' (known: random, grid)"));
}

}  // namespace rung::search
