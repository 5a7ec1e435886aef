// An ablation study end to end: real rungd and rung-worker processes on loopback run every
// variant `repeats` times through tests/integration/ablation_trial.py, which reads what it
// leaves out with rung.ablation; `rung ablation` ranks the feature that matters most first.
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"

namespace rung::testing {
namespace {

using ::testing::HasSubstr;

TEST(AblationEndToEndTest, RealWorkersRunEveryVariantAndTheTableRanksTheFeatureThatMattersFirst) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 3);
  c.StartWorker("w2", 3);
  const std::string spec = c.jobs_dir() + "/ablation.yaml";
  std::ofstream(spec) << absl::StrCat(R"(
name: housing-ablation
kind: ablation
objective: {metric: loss, goal: minimize}
base:
  params: {lr: 0.01, depth: 4}
components:
  features: [floors, area, rooms]
  layers: [conv2]
  groups: {attention: [attn1, attn2]}
repeats: 3
trial:
  command: [/usr/bin/python3, )",
                                      SourceDir(),
                                      R"(/tests/integration/ablation_trial.py, --lr, "{lr}"]
)");
  CliRun submit = Rung(c, "submit " + spec);
  ASSERT_EQ(submit.code, 0) << submit.out;
  CliRun watch = Rung(c, "watch e1");
  ASSERT_EQ(watch.code, 0) << watch.out;
  // 6 variants (the base, 3 features, a layer, a group) x 3 repeats, on both workers.
  auto trials = c.Trials("e1");
  ASSERT_EQ(trials.size(), 18u);
  std::set<std::string> workers;
  for (const auto& t : trials) {
    EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << " " << t.message();
    EXPECT_EQ(t.reports(), 3) << t.id();
    workers.insert(t.worker_id());
  }
  EXPECT_EQ(workers.size(), 2u);
  EXPECT_EQ(trials[1].ablation(),
            R"({"kind": "feature", "name": "floors", "dropped": ["floors"]})");
  EXPECT_EQ(trials[17].seed(), 3);

  CliRun table = Rung(c, "ablation e1");
  ASSERT_EQ(table.code, 0) << table.out;
  // Ranked by harm: area (+1.0), attention (+0.4), rooms (+0.3), conv2 (+0.2), floors (0).
  const std::string out = table.out;
  auto row = [&](const std::string& name) {
    size_t at = out.find(" " + name + " ");
    return at == std::string::npos
               ? std::string()
               : out.substr(out.rfind('\n', at) + 1, out.find('\n', at) - out.rfind('\n', at) - 1);
  };
  EXPECT_THAT(row("area"), ::testing::StartsWith("1 ")) << out;
  EXPECT_THAT(row("attention"), ::testing::StartsWith("2 ")) << out;
  EXPECT_THAT(row("rooms"), ::testing::StartsWith("3 ")) << out;
  EXPECT_THAT(row("conv2"), ::testing::StartsWith("4 ")) << out;
  EXPECT_THAT(row("floors"), ::testing::StartsWith("5 ")) << out;
  EXPECT_THAT(row("area"), HasSubstr("yes (paired t)")) << out;
  EXPECT_THAT(row("floors"), HasSubstr("no (paired t)")) << out;
  EXPECT_THAT(out, HasSubstr("most important: area (feature)")) << out;
  // The same as JSON.
  CliRun json = Rung(c, "-o json ablation e1");
  ASSERT_EQ(json.code, 0) << json.out;
  google::protobuf::Struct s;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &s).ok()) << json.out;
  const auto& variants = s.fields().at("variants").list_value();
  ASSERT_EQ(variants.values_size(), 6);
  EXPECT_EQ(variants.values(0).struct_value().fields().at("name").string_value(), "base");
  const auto& top = variants.values(1).struct_value().fields();
  EXPECT_EQ(top.at("name").string_value(), "area");
  EXPECT_EQ(top.at("rank").number_value(), 1);
  EXPECT_NEAR(top.at("delta").number_value(), 1.0, 0.15);
  EXPECT_TRUE(top.at("significant").bool_value());
  EXPECT_EQ(top.at("runs").number_value(), 3);
  // A search is not a study.
  CliRun wrong = Rung(c, "ablation e99");
  EXPECT_EQ(wrong.code, 1);
  EXPECT_THAT(wrong.out, HasSubstr("no experiment e99"));
}

TEST(AblationEndToEndTest, TheScikitLearnExampleRunsEveryVariant) {
  // config/examples/ablation.yaml as a user runs it: a real network on scikit-learn's
  // diabetes data, with features, a layer, a group and a custom switch really left out.
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 4);
  CliRun submit = Rung(c, absl::StrCat("submit ", SourceDir(), "/config/examples/ablation.yaml"));
  ASSERT_EQ(submit.code, 0) << submit.out;
  CliRun watch = Rung(c, "watch e1");
  ASSERT_EQ(watch.code, 0) << watch.out;
  auto trials = c.Trials("e1");
  ASSERT_EQ(trials.size(), 27u);  // (base + 5 features + a layer + a group + a switch) x 3
  for (const auto& t : trials) {
    EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << " " << t.message();
    EXPECT_EQ(t.reports(), 100) << t.id();
  }
  CliRun table = Rung(c, "ablation e1");
  ASSERT_EQ(table.code, 0) << table.out;
  EXPECT_THAT(table.out, HasSubstr("9 variants x 3 repeats")) << table.out;
  EXPECT_THAT(table.out, HasSubstr("most important: ")) << table.out;
  // Each variant's runs differ from the base's: the script really changed what it trained.
  CliRun json = Rung(c, "-o json ablation e1");
  google::protobuf::Struct s;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &s).ok()) << json.out;
  for (const auto& v : s.fields().at("variants").list_value().values()) {
    const auto& f = v.struct_value().fields();
    EXPECT_EQ(f.at("runs").number_value(), 3) << f.at("name").string_value();
    if (f.at("name").string_value() != "base") {
      EXPECT_NE(f.at("delta").number_value(), 0) << f.at("name").string_value();
    }
  }
}

}  // namespace
}  // namespace rung::testing
