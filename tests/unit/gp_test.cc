// The GP: posterior against a case worked by hand, and the GP sampler's determinism, snapshot,
// conditional validity and sample efficiency against random search (fixed seeds).
#include "server/search/gp.h"

#include <algorithm>
#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/search/searcher.h"
#include "tests/unit/search_fixtures.h"

namespace rung::search {
namespace {

using testing::MixedObjective;
using testing::MixedSpace;
using testing::RunSearch;

TEST(GaussianProcessTest, PosteriorMatchesAHandWorkedCase) {
  // Observations y(0) = 1, y(1) = -1; length scale 1, signal variance 1, noise ~0.
  // K = [[1, a], [a, 1]] with a = m52(1); at x*: k* = [m52(x*), m52(1 - x*)];
  // mean = k*' K^-1 y, variance = 1 - k*' K^-1 k* (worked out separately, in double).
  EXPECT_NEAR(Matern52(1.0), 0.5239941088318203, 1e-12);
  Eigen::MatrixXd x(2, 1);
  x << 0, 1;
  Eigen::VectorXd y(2);
  y << 1, -1;
  GpHyper h;
  h.log_lengthscale = Eigen::VectorXd::Zero(1);
  h.log_signal = 0;
  h.log_noise = std::log(1e-12);
  GaussianProcess gp;
  ASSERT_TRUE(gp.Fit(x, y, h));
  double m, v;
  Eigen::VectorXd q(1);
  q << 0.5;
  gp.Predict(q, &m, &v);
  EXPECT_NEAR(m, 0.0, 1e-7);
  EXPECT_NEAR(v, 0.09886869345362947, 1e-7);
  q << 0.25;
  gp.Predict(q, &m, &v);
  EXPECT_NEAR(m, 0.5783796519499413, 1e-7);
  EXPECT_NEAR(v, 0.0523172768781045, 1e-7);
  q << 0.0;
  gp.Predict(q, &m, &v);
  EXPECT_NEAR(m, 1.0, 1e-6);
  EXPECT_LT(v, 1e-6);
  q << 20.0;  // far away (the Matérn tail is still 0.005 at 4 length scales): the prior
  gp.Predict(q, &m, &v);
  EXPECT_NEAR(m, 0.0, 1e-3);
  EXPECT_NEAR(v, 1.0, 1e-3);
}

TEST(GpSamplerTest, BeatsRandomSearchWithTheSameBudget) {
  for (bool ucb : {false, true}) {
    std::vector<double> gp, random;
    for (uint64_t seed = 1; seed <= 10; ++seed) {
      Config c = MixedSpace(Config::Sampler::kGp, seed);
      c.gp_ucb = ucb;
      gp.push_back(testing::RunSearch(c, 40));
      random.push_back(RunSearch(Config::Sampler::kRandom, seed, 40));
    }
    std::sort(gp.begin(), gp.end());
    std::sort(random.begin(), random.end());
    // Random search's median best is about 10 times the model's here.
    EXPECT_LT(gp[5] * 3, random[5])
        << (ucb ? "ucb" : "ei") << " median best: gp " << gp[5] << ", random " << random[5];
  }
}

TEST(GpSamplerTest, RestoreContinuesExactlyAndConcurrentSuggestionsDiffer) {
  auto a = std::move(NewSearcher(MixedSpace(Config::Sampler::kGp, 2)).value());
  auto b = std::move(NewSearcher(MixedSpace(Config::Sampler::kGp, 2)).value());
  for (int i = 0; i < 20; ++i) {
    auto twin = std::move(NewSearcher(MixedSpace(Config::Sampler::kGp, 2)).value());
    ASSERT_TRUE(twin->Restore(b->Snapshot()).ok());
    b = std::move(twin);
    auto x = std::get<Create>(a->Handle(TrialsWanted{1}).at(0));
    auto y = std::get<Create>(b->Handle(TrialsWanted{1}).at(0));
    ASSERT_EQ(x.params, y.params) << "trial " << i;
    a->Handle(
        TrialClosed{x.index, TrialClosed::Outcome::kCompleted, true, MixedObjective(x.params)});
    b->Handle(
        TrialClosed{y.index, TrialClosed::Outcome::kCompleted, true, MixedObjective(y.params)});
    EXPECT_EQ(a->Snapshot(), b->Snapshot());
  }
  std::set<Params> batch;
  for (const auto& act : a->Handle(TrialsWanted{4})) batch.insert(std::get<Create>(act).params);
  EXPECT_EQ(batch.size(), 4u);  // the kriging believer spreads them
}

TEST(GpSamplerTest, ConditionalSpacesStayValid) {
  Config c;
  c.sampler = Config::Sampler::kGp;
  c.space.push_back(
      {"optimizer", Param::Kind::kCategorical, 0, 0, false, {"sgd", "adam"}, {}, 0, "", {}});
  c.space.push_back(
      {"momentum", Param::Kind::kFloat, 0.0, 0.99, false, {}, {}, 0, "optimizer", {"sgd"}});
  c.space.push_back(
      {"beta1", Param::Kind::kFloat, 0.8, 0.999, false, {}, {}, 0, "optimizer", {"adam"}});
  c.max_trials = 100;
  c.seed = 6;
  auto s = std::move(NewSearcher(c).value());
  for (int i = 0; i < 25; ++i) {
    auto t = std::get<Create>(s->Handle(TrialsWanted{1}).at(0));
    const bool sgd = std::get<std::string>(t.params.at("optimizer")) == "sgd";
    EXPECT_EQ(t.params.count("momentum"), sgd ? 1u : 0u);
    EXPECT_EQ(t.params.count("beta1"), sgd ? 0u : 1u);
    const double v = sgd ? std::abs(std::get<double>(t.params.at("momentum")) - 0.9) : 1.0;
    s->Handle(TrialClosed{t.index, TrialClosed::Outcome::kCompleted, true, v});
  }
}

}  // namespace
}  // namespace rung::search

namespace rung::search {
namespace {

// The first five suggestions of a model started from 40 earlier results are better, on
// average, than a cold start's (which are random start-up trials).
TEST(WarmStartTest, TpeAndGpStartFromEarlierResults) {
  for (auto sampler : {Config::Sampler::kTpe, Config::Sampler::kGp}) {
    int better = 0;
    for (uint64_t seed = 1; seed <= 8; ++seed) {
      auto earlier =
          std::move(NewSearcher(MixedSpace(Config::Sampler::kRandom, 100 + seed)).value());
      std::vector<std::pair<Params, double>> warm;
      for (const auto& a : earlier->Handle(TrialsWanted{40})) {
        const auto& p = std::get<Create>(a).params;
        warm.emplace_back(p, MixedObjective(p));
      }
      auto mean_of_first_five = [&](bool use_warm) {
        Config c = MixedSpace(sampler, seed);
        if (use_warm) c.warm_start = warm;
        auto s = std::move(NewSearcher(c).value());
        double sum = 0;
        for (int i = 0; i < 5; ++i) {
          auto t = std::get<Create>(s->Handle(TrialsWanted{1}).at(0));
          const double v = MixedObjective(t.params);
          sum += v;
          s->Handle(TrialClosed{t.index, TrialClosed::Outcome::kCompleted, true, v});
        }
        return sum / 5;
      };
      better += mean_of_first_five(true) < mean_of_first_five(false);
    }
    EXPECT_GE(better, 7) << (sampler == Config::Sampler::kTpe ? "tpe" : "gp");
  }
}

}  // namespace
}  // namespace rung::search
