// TrialTable: ended trials packed as their records, read back exactly, and summarised from
// the record without a parse as the full message would summarise them.
#include "server/schedule/trial_table.h"

#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace rung {
namespace {

v1::Trial Ended(int index, v1::TrialState state) {
  v1::Trial t;
  t.set_id("e1-" + std::to_string(index));
  t.set_experiment_id("e1");
  t.set_index(index);
  t.set_state(state);
  (*t.mutable_params())["lr"].set_float_value(0.01 * index);
  (*t.mutable_params())["act"].set_categorical_value("relu");
  (*t.mutable_last_metrics())["accuracy"] = 0.5;
  (*t.mutable_last_metrics())["loss"] = 1.0 / index;
  t.set_stdout_path("/var/lib/rung-worker/trials/e1-1/1/stdout.log");
  t.add_attempts()->set_worker_id("gpu-node-001");
  return t;
}

TEST(TrialTableTest, ASummaryReadFromTheRecordEqualsTheMessages) {
  TrialTable table("loss");
  std::vector<v1::Trial> trials = {Ended(1, v1::TRIAL_COMPLETED), Ended(2, v1::TRIAL_STOPPED),
                                   Ended(3, v1::TRIAL_FAILED), Ended(4, v1::TRIAL_COMPLETED),
                                   Ended(300000, v1::TRIAL_COMPLETED)};
  trials[0].set_has_result(true);
  trials[0].set_result(0.25);
  trials[1].mutable_last_metrics()->erase("loss");  // never reported the objective
  trials[2].set_failures(3);
  trials[3].set_has_result(true);
  trials[3].set_result(0.5);
  trials[3].add_results(0.4);  // several objectives: the first one's
  trials[3].add_results(-2);
  trials[3].set_infeasible("memory_gb 17 > max 16");
  trials[4].set_has_result(true);
  trials[4].set_result(-1e300);
  for (const v1::Trial& t : trials) {
    int index = 0;
    TrialTable::Summary s;
    ASSERT_TRUE(table.ReadSummary(t.SerializeAsString(), &index, &s)) << t.id();
    const TrialTable::Summary want = table.Summarize(t);
    EXPECT_EQ(index, t.index());
    EXPECT_EQ(s.state, want.state) << t.id();
    EXPECT_EQ(s.failures, want.failures) << t.id();
    EXPECT_EQ(s.feasible, want.feasible) << t.id();
    EXPECT_EQ(s.has_result, want.has_result) << t.id();
    EXPECT_EQ(s.result, want.result) << t.id();
    EXPECT_EQ(s.has_last, want.has_last) << t.id();
    EXPECT_EQ(s.last, want.last) << t.id();
  }
  EXPECT_EQ(table.Summarize(trials[3]).result, 0.4);
  EXPECT_FALSE(table.Summarize(trials[3]).feasible);
  int index;
  TrialTable::Summary s;
  EXPECT_FALSE(table.ReadSummary("\xff\xff\xff", &index, &s));  // not a record
}

TEST(TrialTableTest, EndedTrialsArePackedAndComeBackExactly) {
  TrialTable table("loss");
  table.Put(Ended(1, v1::TRIAL_COMPLETED));
  v1::Trial running = Ended(2, v1::TRIAL_RUNNING);
  table.Put(running);
  table.Pack(1);
  table.Pack(2);  // running: stays a message
  EXPECT_TRUE(table.Packed(1));
  EXPECT_FALSE(table.Packed(2));
  EXPECT_EQ(table.Live(1), nullptr);
  EXPECT_NE(table.Live(2), nullptr);
  EXPECT_FALSE(table.Has(3));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(table.Copy(1),
                                                                 Ended(1, v1::TRIAL_COMPLETED)));
  EXPECT_EQ(table.SummaryOf(1).last, 1.0);
  std::vector<int> seen;
  table.ForEach([&](const v1::Trial& t) { seen.push_back(t.index()); });
  EXPECT_EQ(seen, (std::vector<int>{1, 2}));
  // A change unpacks it; it is a message again until packed.
  v1::Trial* t = table.Get(1);
  ASSERT_NE(t, nullptr);
  t->set_failures(1);
  EXPECT_FALSE(table.Packed(1));
  table.Pack(1);
  EXPECT_EQ(table.Copy(1).failures(), 1);
  EXPECT_EQ(table.SummaryOf(1).failures, 1);
}

}  // namespace
}  // namespace rung
