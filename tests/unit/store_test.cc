#include "server/store/store.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace rung {
namespace {

TEST(StoreTest, TrialIdsRoundTrip) {
  std::string exp;
  int index;
  ASSERT_TRUE(ParseTrialId("e12-7", &exp, &index));
  EXPECT_EQ(exp, "e12");
  EXPECT_EQ(index, 7);
  EXPECT_EQ(TrialId("e12", 7), "e12-7");
  EXPECT_FALSE(ParseTrialId("e12", &exp, &index));
  EXPECT_FALSE(ParseTrialId("e12-x", &exp, &index));
  EXPECT_FALSE(ParseTrialId("-3", &exp, &index));
}

TEST(StoreTest, EverythingSurvivesReopen) {
  testing::TempDir dir;
  {
    auto store = Store::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    Store::Batch b;
    v1::Experiment e;
    e.set_id("e1");
    e.set_seq(1);
    e.mutable_spec()->set_name("demo");
    b.PutExperiment(e);
    b.PutNextExperiment(2);
    b.PutSearcherState("e1", "random v1 created=2 closed=0 done=0 rng=1,2,3,4");
    for (int i = 1; i <= 12; ++i) {
      v1::Trial t;
      t.set_id(TrialId("e1", i));
      t.set_experiment_id("e1");
      t.set_index(i);
      b.PutTrial(t);
    }
    // Reports of trial 2 out of order, across two attempts; one of trial 10 beside them.
    for (auto [attempt, seq] : {std::pair{2, 1}, {1, 2}, {1, 1}, {1, 10}}) {
      v1::MetricReport r;
      r.set_trial_id("e1-2");
      r.set_attempt(attempt);
      r.set_seq(seq);
      (*r.mutable_values())["loss"] = attempt * 100 + seq;
      b.PutReport(r);
    }
    v1::MetricReport other;
    other.set_trial_id("e1-10");
    other.set_attempt(1);
    other.set_seq(1);
    b.PutReport(other);
    v1::Worker w;
    w.set_id("w1");
    b.PutWorker(w);
    EXPECT_EQ(b.Count(), 1 + 1 + 1 + 12 + 5 + 1);
    ASSERT_TRUE((*store)->Write(&b).ok());
  }
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(*(*store)->GetNextExperiment(), 2);
  std::vector<v1::Experiment> exps;
  ASSERT_TRUE((*store)->ForEachExperiment([&](v1::Experiment e) { exps.push_back(e); }).ok());
  ASSERT_EQ(exps.size(), 1u);
  EXPECT_EQ(exps[0].spec().name(), "demo");
  std::vector<int> indexes;
  ASSERT_TRUE(
      (*store)->ForEachTrial("e1", [&](v1::Trial t) { indexes.push_back(t.index()); }).ok());
  EXPECT_EQ(indexes, (std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));  // numeric order
  auto reports = (*store)->GetReports("e1-2");
  ASSERT_TRUE(reports.ok());
  std::vector<double> values;
  for (const auto& r : *reports) values.push_back(r.values().at("loss"));
  EXPECT_EQ(values, (std::vector<double>{101, 102, 110, 201}));  // (attempt, seq) order
  EXPECT_EQ((*store)->GetSearcherState("e1").value(),
            "random v1 created=2 closed=0 done=0 rng=1,2,3,4");
  EXPECT_TRUE(absl::IsNotFound((*store)->GetSearcherState("e2").status()));
  int workers = 0;
  ASSERT_TRUE((*store)->ForEachWorker([&](v1::Worker) { ++workers; }).ok());
  EXPECT_EQ(workers, 1);
}

TEST(StoreTest, SecondOpenOfSameFolderIsRefusedClearly) {
  testing::TempDir dir;
  auto first = Store::Open(dir.path());
  ASSERT_TRUE(first.ok());
  auto second = Store::Open(dir.path());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()), ::testing::HasSubstr("another rungd"));
}

TEST(StoreTest, ResentReportOverwritesItself) {
  testing::TempDir dir;
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok());
  for (int i = 0; i < 2; ++i) {
    Store::Batch b;
    v1::MetricReport r;
    r.set_trial_id("e1-1");
    r.set_attempt(1);
    r.set_seq(1);
    b.PutReport(r);
    ASSERT_TRUE((*store)->Write(&b).ok());
  }
  EXPECT_EQ((*store)->GetReports("e1-1")->size(), 1u);
}

}  // namespace
}  // namespace rung
