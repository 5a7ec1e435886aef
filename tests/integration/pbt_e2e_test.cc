// Population-based training with real rungd, workers and trial processes on loopback: the PBT
// paper's toy problem (config/examples/pbt_toy.py) against grid search, the lineage against
// what the checkpoints themselves went through, the journal's replay, and kill -9 of rungd
// and of a worker in the middle.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"

namespace rung::testing {
namespace {

using ::testing::HasSubstr;
using Stretch = std::tuple<std::string, double, double>;  // member, from, to

std::string Toy() { return SourceDir() + "/config/examples/pbt_toy.py"; }

google::protobuf::Struct ParseJson(const std::string& text) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &s).ok()) << text;
  return s;
}

// What the checkpoint went through, as pbt_toy.py writes it: who trained which steps.
std::vector<Stretch> TraceOf(const std::string& checkpoint_dir) {
  std::ifstream in(checkpoint_dir + "/theta.json");
  std::stringstream text;
  text << in.rdbuf();
  std::vector<Stretch> out;
  const google::protobuf::Struct state = ParseJson(text.str());
  if (!state.fields().contains("trace")) return out;
  for (const auto& e : state.fields().at("trace").list_value().values()) {
    const auto& v = e.list_value().values();
    out.emplace_back(v[0].string_value(), v[1].number_value(), v[2].number_value());
  }
  return out;
}

// `rung lineage ID -o json` as (member, from, to), and how many segments exploited.
std::vector<Stretch> LineageOf(const Cluster& c, const std::string& id, int* exploits) {
  CliRun r = Rung(c, absl::StrCat("lineage ", id, " -o json"));
  EXPECT_EQ(r.code, 0) << r.out;
  std::vector<Stretch> out;
  *exploits = 0;
  const google::protobuf::Struct lineage = ParseJson(r.out);
  if (!lineage.fields().contains("segments")) return out;
  for (const auto& s : lineage.fields().at("segments").list_value().values()) {
    const auto& f = s.struct_value().fields();
    out.emplace_back(f.at("trial_id").string_value(), f.at("start").number_value(),
                     f.at("end").number_value());
    *exploits += f.count("parent_trial_id");
  }
  return out;
}

// The best trial's model, downloaded from rungd, went through exactly what its lineage says:
// the donors' checkpoints travelled through rungd. Returns the lineage's exploits.
int ExpectLineageIsTheCheckpoints(const Cluster& c, const v1::Experiment& e) {
  const std::string dir = c.dir().Sub("best-" + e.id());
  CliRun r = Rung(c, absl::StrCat("checkpoint ", e.best_trial_id(), " ", dir));
  EXPECT_EQ(r.code, 0) << r.out;
  int exploits = 0;
  const std::vector<Stretch> lineage = LineageOf(c, e.best_trial_id(), &exploits);
  EXPECT_EQ(TraceOf(dir), lineage);
  if (lineage.empty()) {
    ADD_FAILURE() << "no lineage for " << e.best_trial_id();
    return 0;
  }
  // From scratch to the end, without a gap.
  EXPECT_EQ(std::get<1>(lineage.front()), 0);
  EXPECT_EQ(std::get<2>(lineage.back()), 40);
  for (size_t i = 1; i < lineage.size(); ++i)
    EXPECT_EQ(std::get<1>(lineage[i]), std::get<2>(lineage[i - 1])) << i;
  return exploits;
}

std::string ToySpec(const std::string& algorithm, const std::string& space, int concurrent) {
  return absl::StrCat(R"(
objective: {metric: Q, goal: maximize}
resource: {metric: step, min: 4, max: 40}
search_space: )",
                      space, R"(
algorithm: )",
                      algorithm, R"(
budget: {max_concurrent: )",
                      concurrent, R"(}
trial:
  command: [/usr/bin/python3, )",
                      Toy(), R"(]
  max_restarts: 3
)");
}

// The paper's figure 2: two members start from h = (1, 0) and (0, 1), each of which shrinks
// one coordinate of theta. Grid search over the two reaches Q = 1.2 - 0.81 at best; PBT, its
// weaker member taking the stronger's theta and moving to the other h, shrinks both. One
// slot, so that the members alternate and the run is the same every time. Then pb2, in a
// warm runner.
TEST(PbtTest, ThePapersToyProblemBeatsGridSearchWithRealWorkers) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 1);
  const std::string space = R"({h: {type: categorical, values: ["1,0", "0,1"]}})";
  v1::Experiment grid =
      c.Submit(ToySpec("{name: grid}", space, 1) + "budget: {max_trials: 2, max_concurrent: 1}\n",
               c.jobs_dir());
  grid = c.Watch(grid.id());
  ASSERT_EQ(grid.state(), v1::EXPERIMENT_COMPLETED) << grid.message();
  EXPECT_NEAR(grid.best_value(), 1.2 - 0.81, 0.01);

  v1::Experiment pbt = c.Submit(ToySpec("{name: pbt, population: 2, interval: 4, quantile: 0.5, "
                                        "resample_probability: 0, seed: 5}",
                                        space, 1),
                                c.jobs_dir());
  ASSERT_EQ(pbt.spec().budget().max_trials(), 2);
  pbt = c.Watch(pbt.id());
  ASSERT_EQ(pbt.state(), v1::EXPERIMENT_COMPLETED) << pbt.message();
  EXPECT_GT(pbt.best_value(), grid.best_value() + 0.3);
  for (const v1::Trial& t : c.Trials(pbt.id())) {
    EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << ": " << t.message();
    EXPECT_EQ(t.resource_reached(), 40);
    ASSERT_GE(t.segments_size(), 2) << t.id();
    EXPECT_EQ(t.segments(t.segments_size() - 1).end(), 40) << t.id();
  }
  EXPECT_GE(ExpectLineageIsTheCheckpoints(c, pbt), 1);
  CliRun replay = Rung(c, absl::StrCat("admin replay ", pbt.id()));
  EXPECT_EQ(replay.code, 0) << replay.out;
  EXPECT_THAT(replay.out, HasSubstr("replay identically"));
  CliRun lineage = Rung(c, absl::StrCat("lineage ", pbt.id()));
  EXPECT_THAT(lineage.out, HasSubstr("checkpoint at"));

  // PB2: the same loop, its explore a GP bandit; in a warm runner, which downloads each
  // segment's checkpoint (its own or its donor's) between segments.
  v1::Experiment pb2 = c.Submit(
      ToySpec("{name: pb2, population: 2, interval: 4, quantile: 0.5, seed: 5}", space, 1) +
          "  reuse_process: true\n",
      c.jobs_dir());
  pb2 = c.Watch(pb2.id());
  ASSERT_EQ(pb2.state(), v1::EXPERIMENT_COMPLETED) << pb2.message();
  EXPECT_GT(pb2.best_value(), grid.best_value() + 0.3);
  EXPECT_GE(ExpectLineageIsTheCheckpoints(c, pb2), 1);
  replay = Rung(c, absl::StrCat("admin replay ", pb2.id()));
  EXPECT_EQ(replay.code, 0) << replay.out;
}

// Four members on two workers; once segments are under way, kill -9 one worker and rungd.
// rungd comes back from its store, a new worker joins, and every member reaches the end with
// a lineage that its checkpoint confirms; the searcher's decisions replay identically.
TEST(PbtTest, SurvivesKillingRungdAndAWorker) {
  Cluster c;
  c.StartRungd(0, "3s");
  c.StartWorker("w1", 2);
  c.StartWorker("w2", 2);
  v1::Experiment e =
      c.Submit(ToySpec("{name: pbt, population: 4, interval: 4, seed: 11}",
                       "{h0: {type: float, min: 0, max: 1}, h1: {type: float, min: 0, max: 1}}", 4),
               c.jobs_dir());
  int segments = 0;
  c.WatchEvents(e.id(), [&](const v1::WatchEvent& ev) {
    if (ev.has_trial()) segments = std::max(segments, ev.trial().segments_size());
    return segments >= 4;
  });
  c.KillWorker(0);
  c.KillRungd();
  c.StartRungd(c.port(), "3s");
  c.StartWorker("w3", 2);
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  for (const v1::Trial& t : c.Trials(e.id())) {
    EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << ": " << t.message();
    EXPECT_EQ(t.resource_reached(), 40) << t.id();
    // Each segment begins where the model it continues stood.
    for (int i = 1; i < t.segments_size(); ++i) {
      const v1::Segment& s = t.segments(i);
      EXPECT_EQ(s.start(),
                s.parent_trial_id().empty() ? t.segments(i - 1).end() : s.parent_resource())
          << t.id() << " segment " << i;
    }
  }
  ExpectLineageIsTheCheckpoints(c, e);
  CliRun replay = Rung(c, absl::StrCat("admin replay ", e.id()));
  EXPECT_EQ(replay.code, 0) << replay.out;
}

}  // namespace
}  // namespace rung::testing
