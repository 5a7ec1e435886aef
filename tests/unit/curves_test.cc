#include "server/schedule/curves.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rung {
namespace {

using ::testing::ElementsAre;

v1::MetricReport Report(const std::string& trial, double step, double loss,
                        double epoch = std::nan("")) {
  v1::MetricReport r;
  r.set_trial_id(trial);
  r.set_step(step);
  (*r.mutable_values())["loss"] = loss;
  if (!std::isnan(epoch)) (*r.mutable_values())["epoch"] = epoch;
  return r;
}

TEST(LttbTest, KeepsFirstLastAndThePeaks) {
  std::vector<double> x, y;
  for (int i = 0; i < 100; ++i) {
    x.push_back(i);
    y.push_back(i == 37 ? 50 : (i == 71 ? -40 : 0));  // two spikes on a flat line
  }
  const std::vector<size_t> kept = Lttb(x, y, 10);
  ASSERT_EQ(kept.size(), 10u);
  EXPECT_EQ(kept.front(), 0u);
  EXPECT_EQ(kept.back(), 99u);
  EXPECT_TRUE(std::is_sorted(kept.begin(), kept.end()));
  EXPECT_NE(std::find(kept.begin(), kept.end(), 37u), kept.end());
  EXPECT_NE(std::find(kept.begin(), kept.end(), 71u), kept.end());
}

TEST(LttbTest, FewPointsAreAllKept) {
  EXPECT_THAT(Lttb({1, 2, 3}, {3, 2, 1}, 5), ElementsAre(0, 1, 2));
  EXPECT_THAT(Lttb({1, 2, 3, 4}, {3, 2, 1, 0}, 2), ElementsAre(0, 1, 2, 3));  // below 3: all
  EXPECT_TRUE(Lttb({}, {}, 10).empty());
}

TEST(CurveBuilderTest, OneCurvePerTrialWithEveryPointUnderTheBudget) {
  CurveBuilder b("loss", "step");
  b.Add(Report("e1-1", 1, 0.9));
  b.Add(Report("e1-1", 2, 0.5));
  v1::MetricReport other = Report("e1-2", 1, 0.7);
  other.mutable_values()->erase("loss");  // a report without the metric adds no point
  b.Add(other);
  b.Add(Report("e1-3", 1, 0.8));
  const v1::GetCurvesResponse r = b.Finish(100);
  EXPECT_EQ(r.points(), 3);
  EXPECT_FALSE(r.downsampled());
  ASSERT_EQ(r.curves_size(), 2);
  EXPECT_EQ(r.curves(0).trial_id(), "e1-1");
  EXPECT_THAT(r.curves(0).x(), ElementsAre(1, 2));
  EXPECT_THAT(r.curves(0).y(), ElementsAre(0.9, 0.5));
  EXPECT_EQ(r.curves(1).trial_id(), "e1-3");
}

TEST(CurveBuilderTest, EachCurveNamesItsLastReport) {
  CurveBuilder b("loss", "step");
  v1::MetricReport r = Report("e1-1", 1, 0.9);
  r.set_attempt(1);
  r.set_seq(4);
  b.Add(r);
  r.set_attempt(2);
  r.set_seq(1);
  b.Add(r);
  const v1::GetCurvesResponse out = b.Finish(0);
  EXPECT_EQ(out.curves(0).last_attempt(), 2);
  EXPECT_EQ(out.curves(0).last_seq(), 1);
}

TEST(CurveBuilderTest, TheResourceMetricIsTheXAxisWhereReported) {
  CurveBuilder b("loss", "epoch");
  b.Add(Report("e1-1", 10, 0.9, /*epoch=*/1));
  b.Add(Report("e1-1", 20, 0.5));  // no epoch: its step
  const v1::GetCurvesResponse r = b.Finish(0);
  EXPECT_EQ(r.x_metric(), "epoch");
  EXPECT_THAT(r.curves(0).x(), ElementsAre(1, 20));
}

TEST(CurveBuilderTest, OverTheBudgetEachCurveGetsAnEqualShareAndAtLeast16) {
  CurveBuilder b("loss", "step");
  for (int i = 0; i < 1000; ++i) b.Add(Report("e1-1", i, 1.0 / (i + 1)));
  for (int i = 0; i < 10; ++i) b.Add(Report("e1-2", i, 1.0));
  const v1::GetCurvesResponse r = b.Finish(100);
  EXPECT_TRUE(r.downsampled());
  EXPECT_EQ(r.points(), 1010);
  EXPECT_EQ(r.curves(0).x_size(), 50);
  EXPECT_EQ(r.curves(0).reported(), 1000);
  EXPECT_EQ(r.curves(0).x(0), 0);
  EXPECT_EQ(r.curves(0).x(49), 999);
  EXPECT_EQ(r.curves(1).x_size(), 10);  // under its share: untouched

  CurveBuilder many("loss", "step");
  for (int t = 1; t <= 100; ++t)
    for (int i = 0; i < 40; ++i) many.Add(Report("e1-" + std::to_string(t), i, i));
  EXPECT_EQ(many.Finish(100).curves(0).x_size(), 16);
}

}  // namespace
}  // namespace rung
