// The TPE sampler: seeded determinism, snapshot and restore, the constant liar, and that it
// beats random search on a small mixed problem (fixed seeds: the outcome is fixed too).
#include <algorithm>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/search/searcher.h"
#include "tests/unit/search_fixtures.h"

namespace rung::search {
namespace {

using testing::MixedObjective;
using testing::MixedSpace;
using testing::RunSearch;

// Univariate (false) and multivariate (true) TPE.
class TpeTest : public ::testing::TestWithParam<bool> {
 protected:
  Config Space(uint64_t seed) const {
    Config c = MixedSpace(Config::Sampler::kTpe, seed);
    c.tpe_multivariate = GetParam();
    return c;
  }
};

INSTANTIATE_TEST_SUITE_P(Modes, TpeTest, ::testing::Bool(), [](const auto& info) {
  return info.param ? "Multivariate" : "Univariate";
});

TEST_P(TpeTest, BeatsRandomSearchWithTheSameBudget) {
  std::vector<double> tpe, random;
  int tanh = 0;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    tpe.push_back(RunSearch(Space(seed), 60, &tanh));
    random.push_back(RunSearch(Config::Sampler::kRandom, seed, 60));
  }
  std::sort(tpe.begin(), tpe.end());
  std::sort(random.begin(), random.end());
  EXPECT_LT(tpe[5], random[5]) << "median best: tpe " << tpe[5] << ", random " << random[5];
  EXPECT_GT(tanh, 10 * 50 / 2);  // after start-up, most suggestions use the best category
}

TEST_P(TpeTest, SameSeedSameSuggestionsAndRestoreContinuesExactly) {
  auto a = std::move(NewSearcher(Space(3)).value());
  auto b = std::move(NewSearcher(Space(3)).value());
  for (int i = 0; i < 30; ++i) {
    // b is rebuilt from a snapshot before every step.
    auto twin = std::move(NewSearcher(Space(3)).value());
    ASSERT_TRUE(twin->Restore(b->Snapshot()).ok());
    b = std::move(twin);
    auto x = std::get<Create>(a->Handle(TrialsWanted{1}).at(0));
    auto y = std::get<Create>(b->Handle(TrialsWanted{1}).at(0));
    ASSERT_EQ(x.params, y.params) << "trial " << i;
    const double v = MixedObjective(x.params);
    a->Handle(TrialClosed{x.index, TrialClosed::Outcome::kCompleted, true, v});
    b->Handle(TrialClosed{y.index, TrialClosed::Outcome::kCompleted, true, v});
    EXPECT_EQ(a->Snapshot(), b->Snapshot());
  }
}

TEST_P(TpeTest, ConcurrentSuggestionsDifferAndFailuresAreTolerated) {
  auto s = std::move(NewSearcher(Space(9)).value());
  for (int i = 0; i < 12; ++i) {
    auto c = std::get<Create>(s->Handle(TrialsWanted{1}).at(0));
    // Every third trial fails: it informs nothing.
    bool ok = i % 3 != 0;
    s->Handle(TrialClosed{c.index,
                          ok ? TrialClosed::Outcome::kCompleted : TrialClosed::Outcome::kFailed, ok,
                          ok ? MixedObjective(c.params) : 0});
  }
  // Still in start-up (8 completed of 10): random. Complete a few more.
  for (int i = 0; i < 4; ++i) {
    auto c = std::get<Create>(s->Handle(TrialsWanted{1}).at(0));
    s->Handle(
        TrialClosed{c.index, TrialClosed::Outcome::kCompleted, true, MixedObjective(c.params)});
  }
  // Four at once: the running ones count as bad (constant liar), so they spread out.
  std::set<Params> batch;
  for (const auto& a : s->Handle(TrialsWanted{4})) batch.insert(std::get<Create>(a).params);
  EXPECT_EQ(batch.size(), 4u);
}

}  // namespace
}  // namespace rung::search

namespace rung::search {
namespace {

Config ConditionalSpace(Config::Sampler sampler) {
  Config c;
  c.sampler = sampler;
  c.space.push_back(
      {"optimizer", Param::Kind::kCategorical, 0, 0, false, {"sgd", "adam"}, {}, 0, "", {}});
  c.space.push_back(
      {"momentum", Param::Kind::kFloat, 0.0, 0.99, false, {}, {}, 2, "optimizer", {"sgd"}});
  c.space.push_back(
      {"beta1", Param::Kind::kFloat, 0.8, 0.999, false, {}, {}, 3, "optimizer", {"adam"}});
  c.space.push_back({"lr", Param::Kind::kFloat, 1e-4, 1e-1, true, {}, {0.001, 0.01}, 0, "", {}});
  c.max_trials = 200;
  c.seed = 4;
  return c;
}

void ExpectValid(const Params& p) {
  const std::string& opt = std::get<std::string>(p.at("optimizer"));
  EXPECT_EQ(p.count("momentum"), opt == "sgd" ? 1u : 0u);
  EXPECT_EQ(p.count("beta1"), opt == "adam" ? 1u : 0u);
  EXPECT_EQ(p.count("lr"), 1u);
}

TEST(ConditionalTest, RandomAndTpeProposeOnlyValidCombinations) {
  for (int mode = 0; mode < 3; ++mode) {
    // Random, univariate TPE, multivariate TPE (optimizer and lr jointly, the rest alone).
    const auto sampler = mode == 0 ? Config::Sampler::kRandom : Config::Sampler::kTpe;
    Config config = ConditionalSpace(sampler);
    config.tpe_multivariate = mode == 2;
    auto s = std::move(NewSearcher(config).value());
    int sgd = 0;
    for (int i = 0; i < 60; ++i) {
      auto c = std::get<Create>(s->Handle(TrialsWanted{1}).at(0));
      ExpectValid(c.params);
      const bool is_sgd = std::get<std::string>(c.params.at("optimizer")) == "sgd";
      sgd += is_sgd;
      // sgd with momentum near 0.9 is best; adam trials teach the model too.
      const double v = is_sgd ? std::abs(std::get<double>(c.params.at("momentum")) - 0.9)
                              : 0.5 + std::abs(std::get<double>(c.params.at("beta1")) - 0.9);
      s->Handle(TrialClosed{c.index, TrialClosed::Outcome::kCompleted, true, v});
      if (sampler == Config::Sampler::kTpe && i == 30) {
        // Absent values survive a snapshot and restore.
        auto twin = std::move(NewSearcher(config).value());
        ASSERT_TRUE(twin->Restore(s->Snapshot()).ok());
        EXPECT_EQ(twin->Snapshot(), s->Snapshot());
      }
    }
    if (sampler == Config::Sampler::kTpe) {
      EXPECT_GT(sgd, 35) << "mode " << mode;  // it learned the better branch
    }
  }
}

TEST(ConditionalTest, GridEnumeratesEachValidCombinationOnce) {
  Config c = ConditionalSpace(Config::Sampler::kGrid);
  // sgd: 2 momenta x 2 lrs; adam: 3 beta1s x 2 lrs.
  EXPECT_EQ(GridSize(c.space), 10);
  auto s = std::move(NewSearcher(c).value());
  std::set<Params> seen;
  for (const auto& a : s->Handle(TrialsWanted{100})) {
    const auto& p = std::get<Create>(a).params;
    ExpectValid(p);
    seen.insert(p);
  }
  EXPECT_EQ(seen.size(), 10u);
}

}  // namespace
}  // namespace rung::search

namespace rung::search {
namespace {

using testing::MixedObjective;
using testing::MixedSpace;

// BOHB-style: with a rung rule, the model starts from the highest rung that has enough
// results, long before any trial reaches the end.
TEST(MultiFidelityTest, ModelLearnsFromRungResultsBeforeAnyTrialCompletes) {
  Config c = MixedSpace(Config::Sampler::kTpe, 5);
  c.tpe_multivariate = true;
  c.tpe_startup = 5;
  c.resource_min = 1;
  c.resource_max = 9;  // rungs at 1 and 3
  c.stopping.rule = Stopping::Rule::kAsha;
  auto s = std::move(NewSearcher(c).value());
  std::vector<Create> first;
  for (const auto& a : s->Handle(TrialsWanted{8})) first.push_back(std::get<Create>(a));
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(s->Propose()) << "only " << i << " results at rung 0";
    s->Handle(TrialReported{first[i].index, 1, MixedObjective(first[i].params)});
  }
  EXPECT_TRUE(s->Propose());  // 5 results at resource 1: the model takes over
  // The rung results survive a snapshot.
  auto twin = std::move(NewSearcher(c).value());
  ASSERT_TRUE(twin->Restore(s->Snapshot()).ok());
  EXPECT_EQ(twin->Snapshot(), s->Snapshot());
  EXPECT_TRUE(twin->Propose());
  // Trials reported at rung 0 only and then stopped: the model learns the best category from
  // those results alone (random search picks it a third of the time).
  int tanh = 0;
  for (int i = 0; i < 40; ++i) {
    auto t = std::get<Create>(s->Handle(TrialsWanted{1}).at(0));
    tanh += std::get<std::string>(t.params.at("act")) == "tanh";
    s->Handle(TrialReported{t.index, 1, MixedObjective(t.params)});
    s->Handle(TrialClosed{t.index, TrialClosed::Outcome::kStopped, false, 0});
  }
  EXPECT_GT(tanh, 24);
}

// Propose() hands out the model's work as a job; Handle adopts its result when it is for
// the next trial, and draws at random otherwise.
TEST(ProposeTest, ProposalsAreAdoptedWhenCurrentAndRandomOtherwise) {
  for (auto sampler : {Config::Sampler::kTpe, Config::Sampler::kGp}) {
    Config c = MixedSpace(sampler, 2);
    c.tpe_startup = 3;
    auto s = std::move(NewSearcher(c).value());
    for (int i = 0; i < 3; ++i) {
      EXPECT_FALSE(s->Propose()) << "start-up trials are random and made at once";
      auto t = std::get<Create>(s->Handle(TrialsWanted{1}).at(0));
      s->Handle(
          TrialClosed{t.index, TrialClosed::Outcome::kCompleted, true, MixedObjective(t.params)});
    }
    auto job = s->Propose();
    ASSERT_TRUE(job);
    const std::string before = s->Snapshot();
    Proposal p = job();  // rungd runs it on a pool thread
    EXPECT_EQ(s->Snapshot(), before) << "the job works on a copy";
    EXPECT_EQ(p.index, 3);
    auto adopted = std::get<Create>(s->Handle(TrialsWanted{1, p, true}).at(0));
    EXPECT_EQ(adopted.index, 3);
    EXPECT_EQ(adopted.params, p.params);
    // The same proposal again is stale (trial 4 is next); so is none at all. Both random.
    for (const auto& stale : {std::optional<Proposal>(p), std::optional<Proposal>()}) {
      auto t = std::get<Create>(s->Handle(TrialsWanted{1, stale, true}).at(0));
      EXPECT_NE(t.params, p.params);
      for (const Param& q : c.space) EXPECT_TRUE(Fits(q, t.params.at(q.name))) << q.name;
    }
    // Adopted and random trials restore like any other.
    auto twin = std::move(NewSearcher(c).value());
    ASSERT_TRUE(twin->Restore(s->Snapshot()).ok());
    EXPECT_EQ(twin->Snapshot(), s->Snapshot());
  }
}

}  // namespace
}  // namespace rung::search

namespace rung::search {
namespace {

Config TwoFloats(Config::Sampler sampler, uint64_t seed) {
  Config c;
  c.sampler = sampler;
  c.space.push_back({"x", Param::Kind::kFloat, 0, 1, false, {}, {}, 0, "", {}});
  c.space.push_back({"y", Param::Kind::kFloat, 0, 1, false, {}, {}, 0, "", {}});
  c.max_trials = 200;
  c.seed = seed;
  return c;
}

TEST(ParetoTest, FrontOfAHandMadeSet) {
  // Minimise both: (1,5) (2,3) (4,1) are the front; (3,4) is dominated by (2,3); (2,6) by
  // (1,5); (4,1) twice: equal points are both kept; (5,1) is dominated by (4,1).
  const std::vector<std::vector<double>> points = {{3, 4}, {1, 5}, {2, 3}, {2, 6},
                                                   {4, 1}, {5, 1}, {4, 1}};
  EXPECT_THAT(ParetoFront(points), ::testing::ElementsAre(1, 2, 4, 6));
  EXPECT_THAT(ParetoFront({{1, 1, 1}, {0, 2, 2}, {2, 2, 0}, {2, 2, 2}}),
              ::testing::ElementsAre(0, 1, 2));
  EXPECT_TRUE(ParetoFront({}).empty());
}

// Several objectives (ParEGO): with f1 = x and f2 = 1 - x + y, every Pareto-optimal point
// has y = 0; the models learn to keep y low while spreading x.
TEST(MultiObjectiveTest, ModelsFindTheFrontAndRestoreExactly) {
  for (auto sampler : {Config::Sampler::kTpe, Config::Sampler::kGp}) {
    Config c = TwoFloats(sampler, 7);
    c.objectives = {Goal::kMinimize, Goal::kMinimize};
    auto s = std::move(NewSearcher(c).value());
    std::vector<double> late_y, late_x;
    for (int i = 0; i < 50; ++i) {
      if (i % 10 == 5) {
        auto twin = std::move(NewSearcher(c).value());
        ASSERT_TRUE(twin->Restore(s->Snapshot()).ok());
        EXPECT_EQ(twin->Snapshot(), s->Snapshot());
        s = std::move(twin);
      }
      auto t = std::get<Create>(s->Handle(TrialsWanted{1}).at(0));
      const double x = std::get<double>(t.params.at("x")), y = std::get<double>(t.params.at("y"));
      if (i >= 30) {
        late_x.push_back(x);
        late_y.push_back(y);
      }
      TrialClosed closed{t.index, TrialClosed::Outcome::kCompleted, true, x};
      closed.results = {x, 1 - x + y};
      s->Handle(closed);
    }
    std::sort(late_y.begin(), late_y.end());
    std::sort(late_x.begin(), late_x.end());
    EXPECT_LT(late_y[late_y.size() / 2], 0.2) << "sampler " << static_cast<int>(sampler);
    EXPECT_GT(late_x.back() - late_x.front(), 0.3) << "the front is spread, not one point";
  }
}

// Constraints: x < 0.4 breaks one. Minimising x + y, the models learn to stay near the
// boundary on its feasible side, however good the breakers' objective looks; a model blind
// to the constraint would chase x = 0 and rarely be feasible late on.
TEST(ConstraintTest, ModelsAvoidTheInfeasibleRegion) {
  for (auto sampler : {Config::Sampler::kTpe, Config::Sampler::kGp}) {
    for (bool constrained : {true, false}) {
      int feasible_late = 0;
      std::vector<double> bests;
      for (uint64_t seed = 1; seed <= 5; ++seed) {
        Config c = TwoFloats(sampler, seed);
        c.constrained = constrained;
        auto s = std::move(NewSearcher(c).value());
        double best = 1e9;
        for (int i = 0; i < 50; ++i) {
          auto t = std::get<Create>(s->Handle(TrialsWanted{1}).at(0));
          const double x = std::get<double>(t.params.at("x")),
                       y = std::get<double>(t.params.at("y"));
          TrialClosed closed{t.index, TrialClosed::Outcome::kCompleted, true, x + y};
          closed.feasible = x >= 0.4;
          if (closed.feasible) best = std::min(best, x + y);
          feasible_late += i >= 30 && closed.feasible;
          s->Handle(closed);
        }
        bests.push_back(best);
      }
      std::sort(bests.begin(), bests.end());
      // Random search keeps about 60 of 100 late trials feasible, with a median best near 0.5.
      if (constrained) {
        EXPECT_GE(feasible_late, 65) << "sampler " << static_cast<int>(sampler);
        EXPECT_LT(bests[2], 0.47) << "sampler " << static_cast<int>(sampler);
      } else {
        EXPECT_LT(feasible_late, 40)
            << "blind to the constraint, sampler " << static_cast<int>(sampler);
      }
    }
  }
}

}  // namespace
}  // namespace rung::search
