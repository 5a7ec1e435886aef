// ASHA (stop mode), asynchronous Hyperband and the median rule against scenarios worked out
// by hand; every scenario also checks that a snapshot and restore after each event gives the
// same actions as the searcher that never stopped.
#include <optional>

#include <map>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/search/searcher.h"
#include "server/search/stopping.h"

namespace rung::search {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Config Base(Stopping::Rule rule, Goal goal = Goal::kMinimize, int max_trials = 100) {
  Config c;
  c.space.push_back({"x", Param::Kind::kFloat, 0, 1, false, {}, {}, 0, "", {}});
  c.max_trials = max_trials;
  c.seed = 5;
  c.goal = goal;
  c.resource_min = 1;
  c.resource_max = 27;
  c.stopping.rule = rule;
  c.stopping.reduction_factor = 3;
  return c;
}

// Drives a searcher and, beside it, a twin that is rebuilt from a snapshot before each event.
class Driver {
 public:
  explicit Driver(const Config& c) : config_(c) {
    a_ = std::move(NewSearcher(c).value());
    b_ = std::move(NewSearcher(c).value());
  }
  std::vector<Action> Do(const Event& e) {
    auto twin = std::move(NewSearcher(config_).value());
    EXPECT_TRUE(twin->Restore(b_->Snapshot()).ok());
    b_ = std::move(twin);
    auto x = a_->Handle(e);
    auto y = b_->Handle(e);
    EXPECT_EQ(x.size(), y.size());
    for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
      EXPECT_EQ(x[i].index(), y[i].index());
      if (auto* s = std::get_if<Stop>(&x[i])) {
        EXPECT_EQ(s->reason, std::get<Stop>(y[i]).reason);
      }
      if (auto* c = std::get_if<search::Create>(&x[i])) {
        EXPECT_EQ(c->params, std::get<search::Create>(y[i]).params);
        EXPECT_EQ(c->budget, std::get<search::Create>(y[i]).budget);
      }
      if (auto* c = std::get_if<Continue>(&x[i])) {
        EXPECT_EQ(c->index, std::get<Continue>(y[i]).index);
        EXPECT_EQ(c->budget, std::get<Continue>(y[i]).budget);
      }
    }
    EXPECT_EQ(a_->Snapshot(), b_->Snapshot());
    return x;
  }
  void CreateTrials(int n) { Do(TrialsWanted{n}); }
  // The Stop for `index` that reporting `value` at `resource` produced, if any.
  std::optional<Stop> Report(int index, double resource, double value) {
    for (auto& a : Do(TrialReported{index, resource, value})) {
      if (auto* s = std::get_if<Stop>(&a)) return *s;
    }
    return std::nullopt;
  }
  void Close(int index, TrialClosed::Outcome o = TrialClosed::Outcome::kCompleted) {
    Do(TrialClosed{index, o, o == TrialClosed::Outcome::kCompleted, 0});
  }

 private:
  Config config_;
  std::unique_ptr<Searcher> a_, b_;
};

TEST(RungsTest, GeometricBelowMax) {
  EXPECT_THAT(Rungs(1, 81, 3, 0), ElementsAre(1, 3, 9, 27));
  EXPECT_THAT(Rungs(1, 81, 3, 2), ElementsAre(1, 3));
  EXPECT_THAT(Rungs(1, 81, 3, 0, 2), ElementsAre(9, 27));
  EXPECT_TRUE(Rungs(1, 81, 3, 0, 4).empty());  // Hyperband's last bracket: straight to max
  EXPECT_THAT(Rungs(2, 100, 4, 0), ElementsAre(2, 8, 32));
}

TEST(AshaTest, CreatesWithFullBudgetAndStopsOutsideTopThird) {
  Driver d(Base(Stopping::Rule::kAsha));
  auto created = d.Do(TrialsWanted{6});
  ASSERT_EQ(created.size(), 6u);
  EXPECT_EQ(std::get<search::Create>(created[0]).budget, 27);
  // Rung 0 (resource 1): n results so far, keep ceil(n/3), stop when that many are better.
  EXPECT_FALSE(d.Report(0, 1, 0.50));  // n=1 keep 1, 0 better
  EXPECT_FALSE(d.Report(1, 1, 0.40));  // n=2 keep 1, 0 better
  auto s2 = d.Report(2, 1, 0.60);      // n=3 keep 1, 2 better
  ASSERT_TRUE(s2);
  EXPECT_EQ(s2->index, 2);
  EXPECT_THAT(
      s2->reason,
      HasSubstr(
          "rung 0 (resource 1): 0.6 is not in the top 1/3 of the 3 results there (2 better)"));
  EXPECT_FALSE(d.Report(3, 1, 0.45));  // n=4 keep 2, 1 better
  EXPECT_TRUE(d.Report(4, 1, 0.55));   // n=5 keep 2, 3 better
  EXPECT_FALSE(d.Report(5, 1, 0.30));  // n=6 keep 2, 0 better
  // A stopped trial's later reports are ignored; a running one is judged at each new rung.
  EXPECT_FALSE(d.Report(2, 3, 99));
  EXPECT_FALSE(d.Report(1, 2, 0.35));  // between rungs: nothing to decide
  EXPECT_FALSE(d.Report(1, 3, 0.30));  // rung 1: first there
  EXPECT_TRUE(d.Report(0, 3, 0.31));   // rung 1: n=2 keep 1, 1 better
}

TEST(AshaTest, MaximizeTiesAndJumpsOverRungs) {
  Driver d(Base(Stopping::Rule::kAsha, Goal::kMaximize));
  d.CreateTrials(4);
  EXPECT_FALSE(d.Report(0, 1, 0.9));
  EXPECT_FALSE(d.Report(1, 1, 0.9));  // a tie is not "better": it continues
  EXPECT_TRUE(d.Report(2, 1, 0.1));   // n=3 keep 1, 2 better
  // One report that jumps rungs 0, 1 and 2 is judged at each, in order.
  EXPECT_FALSE(d.Report(3, 10, 0.95));  // best at rung 0, first at 1 and 2 (9)
  EXPECT_TRUE(d.Report(0, 9, 0.5));     // rung 1: n=2, 1 better -> stop
}

TEST(AshaTest, FailedTrialsLeaveTheirRecordsAndSearchEnds) {
  Driver d(Base(Stopping::Rule::kAsha, Goal::kMinimize, 3));
  d.CreateTrials(3);
  EXPECT_FALSE(d.Report(0, 1, 0.2));
  d.Close(0, TrialClosed::Outcome::kFailed);  // its rung-0 result still counts
  EXPECT_FALSE(d.Report(1, 1, 0.1));
  EXPECT_TRUE(d.Report(2, 1, 0.3));
  d.Close(1);
  auto last = d.Do(TrialClosed{2, TrialClosed::Outcome::kStopped, false, 0});
  ASSERT_EQ(last.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<Done>(last[0]));
}

// What one free slot gets: "create I@B", "continue I@B", or "" for nothing.
std::string Want(Driver& d) {
  for (const auto& a : d.Do(TrialsWanted{1})) {
    if (auto* c = std::get_if<search::Create>(&a))
      return absl::StrCat("create ", c->index, "@", c->budget);
    if (auto* c = std::get_if<Continue>(&a))
      return absl::StrCat("continue ", c->index, "@", c->budget);
  }
  return "";
}

TEST(AshaPromoteTest, PromotesTheBestPausedTrialOfTheHighestRungElseCreates) {
  Config c = Base(Stopping::Rule::kAsha, Goal::kMinimize, 5);
  c.resource_max = 9;  // rungs at 1 and 3, then max 9
  c.stopping.promote = true;
  Driver d(c);
  EXPECT_EQ(Want(d), "create 0@1");  // new trials train to the first rung only
  EXPECT_EQ(Want(d), "create 1@1");
  EXPECT_EQ(Want(d), "create 2@1");
  EXPECT_FALSE(d.Report(0, 1, 0.5));  // promote mode never stops on a report
  EXPECT_FALSE(d.Report(1, 1, 0.2));
  EXPECT_FALSE(d.Report(2, 1, 0.9));
  for (int i : {0, 1, 2}) d.Do(TrialPaused{i});
  // Rung 0 holds 3 results: its top floor(3/3) = 1 is trial 1, paused there.
  EXPECT_EQ(Want(d), "continue 1@3");
  EXPECT_EQ(Want(d), "create 3@1");  // trial 1 is promoted already; nothing else earned it
  EXPECT_FALSE(d.Report(3, 1, 0.1));
  d.Do(TrialPaused{3});
  EXPECT_EQ(Want(d), "continue 3@3");  // 4 results, top 1: trial 3 now
  EXPECT_FALSE(d.Report(1, 3, 0.15));
  d.Do(TrialPaused{1});
  EXPECT_EQ(Want(d), "create 4@1");  // rung 1 has 1 result: top 0
  EXPECT_FALSE(d.Report(4, 1, 0.3));
  d.Do(TrialPaused{4});
  EXPECT_FALSE(d.Report(3, 3, 0.05));
  // The last running trial pauses: nothing runs, nothing is left to create, and rung 1's
  // top floor(2/3) is empty, so no promotion can ever come: every paused trial is stopped.
  auto end = d.Do(TrialPaused{3});
  std::map<int, std::string> stops;
  for (const auto& a : end) {
    if (auto* s = std::get_if<Stop>(&a)) stops[s->index] = s->reason;
  }
  ASSERT_EQ(stops.size(), 5u);
  EXPECT_THAT(stops[0], HasSubstr("not promoted past rung 0 (resource 1)"));
  EXPECT_THAT(stops[3], HasSubstr("not promoted past rung 1 (resource 3)"));
  for (int i = 0; i < 4; ++i) d.Close(i, TrialClosed::Outcome::kStopped);
  auto last = d.Do(TrialClosed{4, TrialClosed::Outcome::kStopped, false, 0});
  ASSERT_EQ(last.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<Done>(last[0]));
}

TEST(AshaPromoteTest, ATrialPromotedToMaxCompletesAndMaximizeOrders) {
  Config c = Base(Stopping::Rule::kAsha, Goal::kMaximize, 3);
  c.resource_max = 3;  // one rung at 1, then max 3
  c.stopping.promote = true;
  Driver d(c);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Want(d), absl::StrCat("create ", i, "@1"));
  EXPECT_FALSE(d.Report(0, 1, 0.7));
  EXPECT_FALSE(d.Report(1, 1, 0.7));  // a tie: the lower index goes first
  EXPECT_FALSE(d.Report(2, 1, 0.1));
  for (int i : {2, 1, 0}) d.Do(TrialPaused{i});
  EXPECT_EQ(Want(d), "continue 0@3");  // to max
  EXPECT_EQ(Want(d), "");              // top 1 of 3 is used, no trials left to create
  EXPECT_FALSE(d.Report(0, 3, 0.8));
  auto end = d.Do(TrialClosed{0, TrialClosed::Outcome::kCompleted, true, 0.8});
  int stops = 0;
  for (const auto& a : end) stops += std::holds_alternative<Stop>(a);
  EXPECT_EQ(stops, 2);  // the other two can never be promoted now
}

TEST(HyperbandTest, PromoteModeStartsEachBracketAtItsOwnFirstRung) {
  // max 9, eta 3: brackets start at 1, 3 and 9 with weights 9, 5, 3; the round robin deals
  // brackets 0, 1, 0, 2 to the first four trials.
  Config c = Base(Stopping::Rule::kHyperband, Goal::kMinimize, 4);
  c.resource_max = 9;
  c.stopping.promote = true;
  Driver d(c);
  EXPECT_EQ(Want(d), "create 0@1");
  EXPECT_EQ(Want(d), "create 1@3");
  EXPECT_EQ(Want(d), "create 2@1");
  EXPECT_EQ(Want(d), "create 3@9");  // the last bracket trains straight to max
  EXPECT_FALSE(d.Report(0, 1, 0.3));
  EXPECT_FALSE(d.Report(2, 1, 0.2));
  d.Do(TrialPaused{0});
  d.Do(TrialPaused{2});
  EXPECT_EQ(Want(d), "");  // bracket 0's rung holds 2 results: top floor(2/3) = 0
}

TEST(HyperbandTest, BracketsInterleaveAndEachJudgesAtItsOwnRungs) {
  // max 27, eta 3: brackets start at 1, 3, 9 and 27, with Hyperband weights 27, 12, 6, 4.
  // A smooth weighted round robin gives the first six trials brackets 0, 1, 0, 2, 0, 3.
  Driver d(Base(Stopping::Rule::kHyperband));
  d.CreateTrials(6);
  // Bracket 0 (trials 0, 2, 4) judges at 1: each better than all before continues; the
  // third, worst of three, is out.
  EXPECT_FALSE(d.Report(0, 1, 0.1));
  EXPECT_FALSE(d.Report(2, 1, 0.05));
  EXPECT_TRUE(d.Report(4, 1, 0.3));
  // Bracket 1 (trial 1) has no rung at 1; it is first judged at 3, alone there.
  EXPECT_FALSE(d.Report(1, 1, 100));
  EXPECT_FALSE(d.Report(1, 3, 100));
  // Bracket 2 (trial 3) first at 9; bracket 3 (trial 5) runs to max unjudged.
  EXPECT_FALSE(d.Report(3, 3, 100));
  EXPECT_FALSE(d.Report(3, 9, 100));
  EXPECT_FALSE(d.Report(5, 26, 1000));
  // Bracket 0 at 3: trial 0 first, trial 2 worse -> n=2, keep 1, stop.
  EXPECT_FALSE(d.Report(0, 3, 0.05));
  auto s = d.Report(2, 3, 0.5);
  ASSERT_TRUE(s);
  EXPECT_THAT(s->reason, HasSubstr("rung 1 of bracket 0 (resource 3)"));
}

TEST(HyperbandTest, BracketAssignmentIsDeterministicAndProportional) {
  Config c = Base(Stopping::Rule::kHyperband);
  auto s = NewSearcher(c);
  ASSERT_TRUE(s.ok());
  (*s)->Handle(TrialsWanted{49});
  std::string snap = (*s)->Snapshot();
  // The rule's lines "rule t INDEX BRACKET NEXT STOPPED" tell the brackets.
  std::vector<int> per_bracket(4, 0);
  size_t at = 0;
  while ((at = snap.find("\nrule t ", at)) != std::string::npos) {
    int index, bracket;
    ASSERT_EQ(sscanf(snap.c_str() + at, "\nrule t %d %d", &index, &bracket), 2);
    ++per_bracket[bracket];
    ++at;
  }
  EXPECT_THAT(per_bracket, ElementsAre(27, 12, 6, 4));  // one full round of 49
}

TEST(MedianTest, StopsBelowMedianOfCompletedRunningAverages) {
  Config c = Base(Stopping::Rule::kMedian);
  c.stopping.min_trials = 3;
  c.stopping.grace = 2;
  Driver d(c);
  d.CreateTrials(5);
  // Three completed trials with losses at resources 1..3.
  const double curves[3][3] = {{1.0, 0.8, 0.6}, {0.9, 0.7, 0.5}, {2.0, 1.5, 1.0}};
  for (int i = 0; i < 3; ++i) {
    for (int r = 0; r < 3; ++r) EXPECT_FALSE(d.Report(i, r + 1, curves[i][r]));
    // Before 3 have completed, nothing is stopped however bad.
    EXPECT_FALSE(d.Report(3, i + 1, 50.0));
    d.Close(i);
  }
  // Running averages up to 2: 0.9, 0.8, 1.75 -> median 0.9. Up to 3: 0.8, 0.7, 1.5 -> 0.8.
  EXPECT_FALSE(d.Report(4, 1, 5.0));   // within grace (2)
  EXPECT_FALSE(d.Report(4, 2, 0.85));  // best 0.85 beats median 0.9
  auto s = d.Report(4, 3, 0.95);       // best 0.85 is worse than median 0.8
  ASSERT_TRUE(s);
  EXPECT_THAT(s->reason, HasSubstr("best so far 0.85 is worse than the median 0.8"));
  EXPECT_THAT(s->reason, HasSubstr("of 3 completed trials"));
}

TEST(MedianTest, MaximizeAndFailedTrialsDoNotSetTheBar) {
  Config c = Base(Stopping::Rule::kMedian, Goal::kMaximize);
  c.stopping.min_trials = 1;
  Driver d(c);
  d.CreateTrials(3);
  EXPECT_FALSE(d.Report(0, 1, 0.1));
  d.Close(0, TrialClosed::Outcome::kFailed);  // not completed: not a reference
  EXPECT_FALSE(d.Report(1, 1, 0.1));          // no completed trial yet
  EXPECT_FALSE(d.Report(2, 1, 0.9));
  d.Close(2);
  EXPECT_TRUE(d.Report(1, 1, 0.2));  // best 0.2 < median 0.9
}

}  // namespace
// A rung of thousands of results (kept in blocks, for speed at a million trials) decides as the
// rule says: a trial goes on only if fewer than ceil(n / eta) of the n results there, its own
// among them, are strictly better. Checked against a plain count, through a snapshot too.
TEST(StoppingTest, ARungOfThousandsOfResultsDecidesAsAPlainCountWould) {
  Config c = Base(Stopping::Rule::kAsha, Goal::kMinimize, 5000);
  auto rule = NewRungRule(c, /*hyperband=*/false);
  std::vector<double> seen;
  uint64_t x = 12345;
  int stops = 0;
  for (int i = 0; i < 5000; ++i) {
    rule->OnCreate(i);
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    const double v = static_cast<double>(x >> 40 & 1023);  // many ties
    seen.push_back(v);
    int better = 0;
    for (double s : seen) better += s < v;
    const int keep = (static_cast<int>(seen.size()) + 2) / 3;
    const bool stop = rule->OnReport({i, 1, v}).has_value();
    ASSERT_EQ(stop, better >= keep) << "trial " << i;
    stops += stop;
    if (i == 2500) {
      std::vector<std::string> lines;
      rule->Save(&lines);
      rule = NewRungRule(c, false);
      ASSERT_TRUE(rule->Load(lines));
    }
  }
  EXPECT_GT(stops, 1000);
}

}  // namespace rung::search
