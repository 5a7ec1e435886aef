// Ablation studies: the spec's components, and the variants a policy makes of them.
#include "server/search/ablation.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/spec/spec.h"

namespace rung {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The issue's example, as a user writes it.
constexpr char kHousing[] = R"(
name: housing-ablation
kind: ablation
objective: {metric: val_loss, goal: minimize}
base:
  params: {lr: 0.01, depth: 4, optimizer: adam}
components:
  features: [floors, area, rooms]
  layers: [conv2, dense1]
  groups: {attention: [attn1, attn2]}
  custom: [no_dropout, no_augmentation]
policy: loco
repeats: 3
trial:
  command: [python3, train.py, --lr, "{lr}"]
)";

std::vector<search::Component> ComponentsOf(const v1::ExperimentSpec& spec) {
  std::vector<search::Component> out;
  for (const auto& c : spec.ablation().components()) {
    out.push_back({c.kind(), c.name(), {c.members().begin(), c.members().end()}});
  }
  return out;
}

TEST(AblationSpecTest, TheExampleParsesIntoComponentsOfEachKind) {
  auto spec = ParseSpecYaml(kHousing, "/work");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->kind(), "ablation");
  EXPECT_EQ(spec->algorithm().name(), "ablation");
  const auto& a = spec->ablation();
  EXPECT_EQ(a.policy(), "loco");
  EXPECT_EQ(a.repeats(), 3);
  EXPECT_EQ(a.base_params().at("lr").float_value(), 0.01);
  EXPECT_EQ(a.base_params().at("depth").int_value(), 4);
  EXPECT_EQ(a.base_params().at("optimizer").categorical_value(), "adam");
  std::vector<std::string> kinds, names;
  for (const auto& c : a.components()) {
    kinds.push_back(c.kind());
    names.push_back(c.name());
  }
  EXPECT_THAT(kinds, ElementsAre("feature", "feature", "feature", "layer", "layer", "custom",
                                 "custom", "group"));
  EXPECT_THAT(names, ElementsAre("floors", "area", "rooms", "conv2", "dense1", "no_dropout",
                                 "no_augmentation", "attention"));
  EXPECT_THAT(a.components(7).members(), ElementsAre("attn1", "attn2"));
  EXPECT_THAT(a.components(0).members(), ElementsAre("floors"));
}

TEST(AblationSpecTest, MistakesAreNamed) {
  auto err = [](const std::string& yaml) {
    auto spec = ParseSpecYaml(
        absl::StrCat("objective: {metric: loss, goal: minimize}\ntrial: {command: [t]}\n", yaml),
        "/w");
    return spec.ok() ? std::string("ok") : std::string(spec.status().message());
  };
  EXPECT_THAT(err("kind: ablation\n"), HasSubstr("components: name at least one component"));
  EXPECT_THAT(err("kind: ablation\ncomponents: {features: [a, a]}\n"),
              HasSubstr("'a' is named twice"));
  EXPECT_THAT(err("kind: ablation\ncomponents: {groups: {g: []}}\n"),
              HasSubstr("needs at least one member"));
  EXPECT_THAT(err("kind: ablation\ncomponents: {features: a}\n"),
              HasSubstr("expected a list of names"));
  EXPECT_THAT(err("kind: ablation\ncomponents: {heads: [a]}\n"), HasSubstr("unknown key 'heads'"));
  EXPECT_THAT(err("kind: ablation\ncomponents: {features: [a]}\nrepeats: 0\n"),
              HasSubstr("repeats"));
  EXPECT_THAT(err("kind: ablation\ncomponents: {features: [a]}\nbudget: {max_trials: 4}\n"),
              HasSubstr("set repeats instead"));
  EXPECT_THAT(err("kind: ablation\ncomponents: {features: [a]}\nsearch_space: {x: {type: float, "
                  "min: 0, max: 1}}\n"),
              HasSubstr("put the parameters under base.params"));
  EXPECT_THAT(err("kind: ablation\ncomponents: {features: [a]}\nalgorithm: {name: tpe}\n"),
              HasSubstr("no search algorithm"));
  EXPECT_THAT(err("kind: ablation\ncomponents: {features: [a]}\nbase: {params: {x: 1}, "
                  "from_experiment: e1}\n"),
              HasSubstr("not both"));
  EXPECT_THAT(err("kind: studies\n"), HasSubstr("unknown kind 'studies'"));
  EXPECT_THAT(err("search_space: {x: {type: float, min: 0, max: 1}}\nbudget: {max_trials: "
                  "2}\nrepeats: 2\n"),
              HasSubstr("belong to kind: ablation"));
  EXPECT_EQ(err("kind: ablation\ncomponents: {features: [a]}\n"),
            "ok");  // a base with no parameters
}

TEST(AblationPolicyTest, LeaveOneComponentOutMakesTheBaseAndOneVariantPerComponent) {
  auto spec = ParseSpecYaml(kHousing, "/work");
  ASSERT_TRUE(spec.ok());
  auto policy = search::NewAblationPolicy(spec->ablation().policy());
  ASSERT_TRUE(policy.ok());
  auto variants = (*policy)->Variants(ComponentsOf(*spec));
  ASSERT_EQ(variants.size(), 9u);  // the base, 3 features, 2 layers, 2 custom, 1 group
  EXPECT_EQ(variants[0].Json(), R"({"kind": "base", "name": "base", "dropped": []})");
  EXPECT_EQ(variants[1].Json(), R"({"kind": "feature", "name": "floors", "dropped": ["floors"]})");
  EXPECT_EQ(variants[4].Json(), R"({"kind": "layer", "name": "conv2", "dropped": ["conv2"]})");
  EXPECT_EQ(variants[6].Json(),
            R"({"kind": "custom", "name": "no_dropout", "dropped": ["no_dropout"]})");
  // A group is removed as one: one variant that drops all its members.
  EXPECT_EQ(variants[8].Json(),
            R"({"kind": "group", "name": "attention", "dropped": ["attn1", "attn2"]})");
  EXPECT_THAT(std::string(search::NewAblationPolicy("cumulative").status().message()),
              HasSubstr("unknown ablation policy 'cumulative' (known: loco)"));
}

TEST(AblationPolicyTest, TrialsCoverEveryVariantBeforeAnyRepeat) {
  // 3 variants, 2 repeats: trials 0..5 are variants 0,1,2,0,1,2 in repeats 0,0,0,1,1,1.
  std::vector<std::pair<size_t, int>> got;
  for (int i = 0; i < 6; ++i) got.push_back({search::VariantOf(i, 3), search::RepeatOf(i, 3)});
  EXPECT_THAT(got, ElementsAre(std::pair<size_t, int>{0, 0}, std::pair<size_t, int>{1, 0},
                               std::pair<size_t, int>{2, 0}, std::pair<size_t, int>{0, 1},
                               std::pair<size_t, int>{1, 1}, std::pair<size_t, int>{2, 1}));
}

TEST(AblationPolicyTest, JsonEscapesNames) {
  search::Variant v{"custom", "say \"hi\"\\", {"a\nb"}};
  EXPECT_EQ(v.Json(), R"({"kind": "custom", "name": "say \"hi\"\\", "dropped": ["a\u000ab"]})");
}

TEST(AblationStatsTest, StudentTTailsMatchClosedFormsAndTheNormalLimit) {
  EXPECT_NEAR(search::TwoSidedP(1.0, 1), 0.5, 1e-12);  // Cauchy: 1 - 2 atan(t) / pi
  EXPECT_NEAR(search::TwoSidedP(2.0, 2), 1 - 2 / std::sqrt(6.0),
              1e-12);  // df 2: 1 - t / sqrt(2 + t^2)
  EXPECT_NEAR(search::TwoSidedP(-2.0, 2), 1 - 2 / std::sqrt(6.0), 1e-12);
  EXPECT_NEAR(search::TwoSidedP(1.959963984540054, 1e7), 0.05, 1e-6);  // the normal limit
  EXPECT_NEAR(search::TwoSidedP(0, 3), 1, 1e-12);
  // Welch's fractional df: against a numerical integral of the density (Simpson, 2e5 steps).
  EXPECT_NEAR(search::TwoSidedP(3.5355339059327373, 4.075471698113207), 0.0233767676, 1e-8);
  EXPECT_TRUE(std::isnan(search::TwoSidedP(1, 0)));
}

TEST(AblationStatsTest, PairedTestOnSharedSeedsWorkedOutByHand) {
  const std::vector<search::Variant> variants = {{"base", "base", {}},
                                                 {"feature", "area", {"area"}}};
  // Repeats 0, 1, 2 of each (seeds 1, 2, 3). Differences 0.5, 0.9, 0.4: mean 0.6, sd
  // sqrt(0.07), t = 0.6 / (sqrt(0.07) / sqrt(3)) = 3.92792, df 2, p = 1 - t / sqrt(2 + t^2).
  std::vector<search::Run> runs = {{0, 0, 1.0}, {0, 1, 2.0}, {0, 2, 3.0},
                                   {1, 0, 1.5}, {1, 1, 2.9}, {1, 2, 3.4}};
  auto r = search::Summarize(variants, runs, /*minimize=*/true);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_DOUBLE_EQ(r[0].mean, 2.0);
  EXPECT_DOUBLE_EQ(r[0].stddev, 1.0);
  EXPECT_EQ(r[0].rank, 0);
  EXPECT_NEAR(r[1].mean, 2.6, 1e-12);
  EXPECT_NEAR(r[1].stddev, std::sqrt(0.97), 1e-12);  // deviations -1.1, 0.3, 0.8
  EXPECT_NEAR(r[1].delta, 0.6, 1e-12);
  EXPECT_NEAR(r[1].harm, 0.6, 1e-12);  // a higher loss without it: removing it hurts
  EXPECT_EQ(r[1].test, "paired t");
  const double t = 0.6 / (std::sqrt(0.07) / std::sqrt(3.0));
  EXPECT_NEAR(r[1].p, 1 - t / std::sqrt(2 + t * t), 1e-9);
  EXPECT_NEAR(r[1].p, 0.0591249277, 1e-9);
  EXPECT_FALSE(r[1].significant);  // 3 repeats cannot tell 0.6 from this noise at 5%
  EXPECT_EQ(r[1].rank, 1);
  // Maximising the same numbers: removing it helps, so its harm is negative.
  EXPECT_NEAR(search::Summarize(variants, runs, /*minimize=*/false)[1].harm, -0.6, 1e-12);
}

TEST(AblationStatsTest, WelchWhenRunsDoNotPairAndRanksByHarm) {
  const std::vector<search::Variant> variants = {{"base", "base", {}},
                                                 {"feature", "area", {"area"}},
                                                 {"layer", "conv2", {"conv2"}},
                                                 {"custom", "x", {"x"}}};
  // Base 1, 2, 3 (repeats 0-2); area 4, 6, 8, 10 in repeats 3-6, which the base lacks:
  // Welch, t = 5 / sqrt(20/3/4 + 1/3) = 3.53553, df = 4.07547.
  std::vector<search::Run> runs = {{0, 0, 1},   {0, 1, 2},  {0, 2, 3},  {1, 3, 4},
                                   {1, 4, 6},   {1, 5, 8},  {1, 6, 10}, {2, 0, 1.5},
                                   {2, 1, 2.5}, {2, 2, 3.5}};  // conv2: +0.5 every time
  auto r = search::Summarize(variants, runs, /*minimize=*/true);
  EXPECT_EQ(r[1].test, "Welch t");
  EXPECT_NEAR(r[1].p, 0.0233767676, 1e-8);
  EXPECT_TRUE(r[1].significant);
  // Identical differences: no noise at all, so any difference is significant.
  EXPECT_EQ(r[2].test, "paired t");
  EXPECT_EQ(r[2].p, 0);
  EXPECT_TRUE(r[2].significant);
  EXPECT_EQ(r[1].rank, 1);  // +5 hurts more than +0.5
  EXPECT_EQ(r[2].rank, 2);
  // A variant with no completed run: no mean, no test, no rank.
  EXPECT_EQ(r[3].runs, 0);
  EXPECT_TRUE(std::isnan(r[3].mean));
  EXPECT_EQ(r[3].test, "");
  EXPECT_EQ(r[3].rank, 0);
}

}  // namespace
}  // namespace rung
