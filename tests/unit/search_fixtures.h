// A small mixed search problem shared by the model-based samplers' tests.
#ifndef RUNG_TESTS_UNIT_SEARCH_FIXTURES_H_
#define RUNG_TESTS_UNIT_SEARCH_FIXTURES_H_

#include <algorithm>
#include <cmath>

#include "server/search/searcher.h"

namespace rung::search::testing {

// A float, a log float, an int and a categorical.
inline Config MixedSpace(Config::Sampler sampler, uint64_t seed) {
  Config c;
  c.sampler = sampler;
  c.space.push_back({"x", Param::Kind::kFloat, 0, 1, false, {}, {}, 0, "", {}});
  c.space.push_back({"lr", Param::Kind::kFloat, 1e-4, 1, true, {}, {}, 0, "", {}});
  c.space.push_back({"depth", Param::Kind::kInt, 1, 8, false, {}, {}, 0, "", {}});
  c.space.push_back(
      {"act", Param::Kind::kCategorical, 0, 0, false, {"relu", "tanh", "gelu"}, {}, 0, "", {}});
  c.max_trials = 1000;
  c.seed = seed;
  return c;
}

// Best (0) at x = 0.3, lr = 0.01, depth = 5, act = tanh.
inline double MixedObjective(const Params& p) {
  const double x = std::get<double>(p.at("x"));
  const double lr = std::log10(std::get<double>(p.at("lr")));
  const double depth = static_cast<double>(std::get<int64_t>(p.at("depth")));
  const double act = std::get<std::string>(p.at("act")) == "tanh" ? 0 : 0.3;
  return (x - 0.3) * (x - 0.3) + 0.1 * (lr + 2) * (lr + 2) + 0.02 * (depth - 5) * (depth - 5) + act;
}

// Runs `n` trials one at a time; returns the best value seen. Counts, when asked, the
// suggestions after the first 10 that chose act = tanh.
inline double RunSearch(const Config& config, int n, int* tanh_after_startup = nullptr) {
  auto s = std::move(NewSearcher(config).value());
  double best = 1e300;
  for (int i = 0; i < n; ++i) {
    auto c = std::get<Create>(s->Handle(TrialsWanted{1}).at(0));
    const double v = MixedObjective(c.params);
    best = std::min(best, v);
    if (tanh_after_startup && i >= 10) {
      *tanh_after_startup += std::get<std::string>(c.params.at("act")) == "tanh";
    }
    s->Handle(TrialClosed{c.index, TrialClosed::Outcome::kCompleted, true, v});
  }
  return best;
}

inline double RunSearch(Config::Sampler sampler, uint64_t seed, int n,
                        int* tanh_after_startup = nullptr) {
  return RunSearch(MixedSpace(sampler, seed), n, tanh_after_startup);
}

}  // namespace rung::search::testing

#endif  // RUNG_TESTS_UNIT_SEARCH_FIXTURES_H_
