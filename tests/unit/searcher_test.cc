#include "server/search/searcher.h"

#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rung::search {
namespace {

Config QuickstartConfig(int max_trials = 20, uint64_t seed = 7) {
  Config c;
  c.space.push_back({"x1", Param::Kind::kFloat, -5, 10, false, {}, {}, 0, "", {}});
  c.space.push_back({"lr", Param::Kind::kFloat, 1e-5, 1e-1, true, {}, {}, 0, "", {}});
  c.space.push_back({"depth", Param::Kind::kInt, 1, 8, false, {}, {}, 0, "", {}});
  c.space.push_back(
      {"act", Param::Kind::kCategorical, 0, 0, false, {"relu", "tanh", "gelu"}, {}, 0, "", {}});
  c.max_trials = max_trials;
  c.seed = seed;
  return c;
}

Config Grid(Config c) {
  c.sampler = Config::Sampler::kGrid;
  return c;
}

std::vector<Create> Creates(const std::vector<Action>& actions) {
  std::vector<Create> out;
  for (const auto& a : actions) {
    if (const auto* c = std::get_if<Create>(&a)) out.push_back(*c);
  }
  return out;
}

bool HasDone(const std::vector<Action>& actions) {
  for (const auto& a : actions) {
    if (std::holds_alternative<Done>(a)) return true;
  }
  return false;
}

TEST(RandomSearcherTest, SameSeedSameTrialsOtherSeedOthers) {
  auto a = NewSearcher(QuickstartConfig());
  auto b = NewSearcher(QuickstartConfig());
  auto c = NewSearcher(QuickstartConfig(20, 8));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  auto ta = Creates((*a)->Handle(TrialsWanted{5}));
  auto tb = Creates((*b)->Handle(TrialsWanted{5}));
  auto tc = Creates((*c)->Handle(TrialsWanted{5}));
  ASSERT_EQ(ta.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(ta[i].index, i);
    EXPECT_EQ(ta[i].params, tb[i].params);
  }
  EXPECT_NE(ta[0].params, tc[0].params);
}

TEST(RandomSearcherTest, SamplesStayInRangeAndCoverCategories) {
  auto s = NewSearcher(QuickstartConfig(2000));
  ASSERT_TRUE(s.ok());
  auto trials = Creates((*s)->Handle(TrialsWanted{2000}));
  ASSERT_EQ(trials.size(), 2000u);
  std::set<std::string> acts;
  std::set<int64_t> depths;
  int small_lr = 0;
  for (const auto& t : trials) {
    double x1 = std::get<double>(t.params.at("x1"));
    double lr = std::get<double>(t.params.at("lr"));
    int64_t depth = std::get<int64_t>(t.params.at("depth"));
    EXPECT_GE(x1, -5);
    EXPECT_LT(x1, 10);
    EXPECT_GE(lr, 1e-5);
    EXPECT_LE(lr, 1e-1);
    EXPECT_GE(depth, 1);
    EXPECT_LE(depth, 8);
    depths.insert(depth);
    acts.insert(std::get<std::string>(t.params.at("act")));
    small_lr += lr < 1e-3;
  }
  EXPECT_EQ(acts.size(), 3u);
  EXPECT_EQ(depths.size(), 8u);
  // Log scale: half the decades lie below 1e-3, so about half the samples do.
  EXPECT_GT(small_lr, 900);
  EXPECT_LT(small_lr, 1100);
}

TEST(RandomSearcherTest, StopsAtMaxTrialsAndSaysDoneWhenAllClosed) {
  auto s = NewSearcher(QuickstartConfig(3));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(Creates((*s)->Handle(TrialsWanted{2})).size(), 2u);
  EXPECT_EQ(Creates((*s)->Handle(TrialsWanted{5})).size(), 1u);
  EXPECT_TRUE(Creates((*s)->Handle(TrialsWanted{1})).empty());
  EXPECT_FALSE(HasDone((*s)->Handle(TrialClosed{0, TrialClosed::Outcome::kCompleted, true, 1})));
  EXPECT_FALSE(HasDone((*s)->Handle(TrialClosed{1, TrialClosed::Outcome::kFailed, false, 0})));
  EXPECT_TRUE(HasDone((*s)->Handle(TrialClosed{2, TrialClosed::Outcome::kCompleted, true, 2})));
  EXPECT_FALSE(HasDone((*s)->Handle(TrialsWanted{1})));  // Done is said once
}

TEST(RandomSearcherTest, RestoreContinuesExactly) {
  auto a = NewSearcher(QuickstartConfig());
  ASSERT_TRUE(a.ok());
  (*a)->Handle(TrialsWanted{3});
  (*a)->Handle(TrialClosed{0, TrialClosed::Outcome::kCompleted, true, 1.5});
  std::string snap = (*a)->Snapshot();
  auto b = NewSearcher(QuickstartConfig());
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->Restore(snap).ok());
  EXPECT_EQ((*b)->Snapshot(), snap);
  auto next_a = Creates((*a)->Handle(TrialsWanted{4}));
  auto next_b = Creates((*b)->Handle(TrialsWanted{4}));
  ASSERT_EQ(next_a.size(), 4u);
  for (size_t i = 0; i < next_a.size(); ++i) {
    EXPECT_EQ(next_a[i].index, next_b[i].index);
    EXPECT_EQ(next_a[i].params, next_b[i].params);
  }
  EXPECT_EQ(next_a[0].index, 3);
}

TEST(RandomSearcherTest, RestoreRejectsGarbage) {
  auto s = NewSearcher(QuickstartConfig());
  ASSERT_TRUE(s.ok());
  absl::Status st = (*s)->Restore("searcher v2\ncreated 1\nclosed 0\ndone 0\npaused 0\nsampler -");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("unreadable snapshot (sampler)"));
  EXPECT_FALSE(
      (*s)->Restore("searcher v2\ncreated x\nclosed 0\ndone 0\npaused 0\nsampler rng=1,2,3,4")
          .ok());
  EXPECT_FALSE((*s)->Restore("garbage").ok());
}

TEST(GridSearcherTest, CoversEveryPointOnceInOrder) {
  Config c;
  c.space.push_back({"lr", Param::Kind::kFloat, 0.001, 0.1, true, {}, {}, 3, "", {}});
  c.space.push_back({"depth", Param::Kind::kInt, 1, 2, false, {}, {}, 0, "", {}});
  c.space.push_back(
      {"opt", Param::Kind::kCategorical, 0, 0, false, {"sgd", "adam"}, {}, 0, "", {}});
  c.max_trials = 1000;
  EXPECT_EQ(GridSize(c.space), 12);
  auto s = NewSearcher(Grid(c));
  ASSERT_TRUE(s.ok());
  auto trials = Creates((*s)->Handle(TrialsWanted{100}));
  ASSERT_EQ(trials.size(), 12u);  // capped at the grid's size
  std::set<Params> seen;
  for (const auto& t : trials) seen.insert(t.params);
  EXPECT_EQ(seen.size(), 12u);
  // The last parameter varies fastest.
  EXPECT_EQ(std::get<std::string>(trials[0].params.at("opt")), "sgd");
  EXPECT_EQ(std::get<std::string>(trials[1].params.at("opt")), "adam");
  EXPECT_EQ(std::get<int64_t>(trials[2].params.at("depth")), 2);
  EXPECT_DOUBLE_EQ(std::get<double>(trials[0].params.at("lr")), 0.001);
  EXPECT_NEAR(std::get<double>(trials[4].params.at("lr")), 0.01, 1e-12);  // log-spaced
  EXPECT_DOUBLE_EQ(std::get<double>(trials[11].params.at("lr")), 0.1);
}

TEST(GridSearcherTest, HugeAxesCostNothingUntilUsed) {
  Config c;
  c.sampler = Config::Sampler::kGrid;
  c.space.push_back({"n", Param::Kind::kInt, 0, 1e9, false, {}, {}, 0, "", {}});
  EXPECT_EQ(GridSize(c.space), 1'000'000'001);
  c.space.push_back({"m", Param::Kind::kInt, 0, 1e9, false, {}, {}, 0, "", {}});
  EXPECT_EQ(GridSize(c.space), 2147483647);  // saturates, no overflow
  c.max_trials = 3;
  auto s = NewSearcher(c);
  ASSERT_TRUE(s.ok());
  auto trials = Creates((*s)->Handle(TrialsWanted{5}));
  ASSERT_EQ(trials.size(), 3u);
  EXPECT_EQ(std::get<int64_t>(trials[2].params.at("m")), 2);
  EXPECT_EQ(std::get<int64_t>(trials[2].params.at("n")), 0);
}

TEST(GridSearcherTest, ExplicitValuesAndSnapshot) {
  Config c;
  c.space.push_back({"bs", Param::Kind::kInt, 0, 0, false, {}, {32, 64, 128}, 0, "", {}});
  c.max_trials = 3;
  auto a = NewSearcher(Grid(c));
  ASSERT_TRUE(a.ok());
  auto first = Creates((*a)->Handle(TrialsWanted{1}));
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(std::get<int64_t>(first[0].params.at("bs")), 32);
  auto b = NewSearcher(Grid(c));
  ASSERT_TRUE((*b)->Restore((*a)->Snapshot()).ok());
  auto rest = Creates((*b)->Handle(TrialsWanted{5}));
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(std::get<int64_t>(rest[0].params.at("bs")), 64);
  EXPECT_EQ(std::get<int64_t>(rest[1].params.at("bs")), 128);
}

TEST(SearcherTest, BadConfigsRejected) {
  EXPECT_FALSE(NewSearcher(QuickstartConfig(0)).ok());
  Config c = QuickstartConfig();
  c.stopping.rule = Stopping::Rule::kAsha;  // no resource range
  auto s = NewSearcher(c);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), ::testing::HasSubstr("resource range"));
}

}  // namespace
}  // namespace rung::search
