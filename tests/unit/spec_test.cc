#include "server/spec/spec.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace rung {
namespace {

using ::testing::HasSubstr;

constexpr char kQuickstart[] = R"(
name: quickstart
objective: {metric: loss, goal: minimize}
search_space:
  x1: {type: float, min: -5, max: 10}
  x2: {type: float, min: 0, max: 15}
  lr: {type: float, min: 1.0e-5, max: 1.0e-1, log: true}
  depth: {type: int, min: 1, max: 8}
  act: {type: categorical, values: [relu, tanh, gelu]}
algorithm: {name: random, seed: 7}
budget: {max_trials: 20, max_concurrent: 4}
trial:
  command: [python3, train.py, --x1, "{x1}", --x2, "{x2}"]
  workdir: .
  max_restarts: 1
)";

// The quickstart spec with `from` replaced by `to`.
std::string Edit(const std::string& from, const std::string& to) {
  std::string s = kQuickstart;
  size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

std::string Error(const std::string& yaml) {
  auto spec = ParseSpecYaml(yaml, "/base");
  EXPECT_FALSE(spec.ok());
  if (spec.ok()) return "";
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(spec.status().message());
}

TEST(SpecTest, RanksOfADistributedTrial) {
  auto one = ParseSpecYaml(kQuickstart, "/base");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->trial().ranks(), 1);  // no resources.ranks: one rank, as ever
  auto four = ParseSpecYaml(
      std::string(kQuickstart) + "resources: {ranks: 4, ranks_per_node: 2, gpus: 1}\n", "/base");
  ASSERT_TRUE(four.ok()) << four.status();
  EXPECT_EQ(four->trial().ranks(), 4);
  EXPECT_EQ(four->trial().ranks_per_node(), 2);
  EXPECT_EQ(four->trial().gpus(), 1);
  EXPECT_THAT(Error(std::string(kQuickstart) + "resources: {ranks: 0}\n"),
              HasSubstr("resources.ranks: must be at least 1"));
  EXPECT_THAT(Error(std::string(kQuickstart) + "resources: {ranks: 5000}\n"),
              HasSubstr("resources.ranks: must be between 1 and 4096"));
  EXPECT_THAT(Error(std::string(kQuickstart) + "resources: {ranks: 4, ranks_per_node: 3}\n"),
              HasSubstr("resources.ranks_per_node: 3 does not divide resources.ranks (4)"));
  auto warm =
      ParseSpecYaml(Edit("max_restarts: 1", "max_restarts: 1\n  reuse_process: true"), "/b");
  ASSERT_TRUE(warm.ok()) << warm.status();
  EXPECT_TRUE(warm->trial().reuse_process());
  EXPECT_THAT(Error(Edit("max_restarts: 1", "max_restarts: 1\n  reuse_process: true") +
                    "resources: {ranks: 2}\n"),
              HasSubstr("trial.reuse_process: applies to trials of one rank"));
}

TEST(SpecTest, HopperModeAndKeptCheckpoints) {
  auto h = ParseSpecYaml(
      std::string(kQuickstart) + "execution: {mode: hopper, partitions: 4, epochs: 10}\n", "/b");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->execution(), "hopper");
  EXPECT_EQ(h->hopper().partitions(), 4);
  EXPECT_EQ(h->hopper().epochs(), 10);
  // The epoch is the resource a stopping rule judges models at.
  EXPECT_EQ(h->resource().metric(), "epoch");
  EXPECT_EQ(h->resource().min(), 1);
  EXPECT_EQ(h->resource().max(), 10);
  EXPECT_EQ(h->trial().keep_checkpoints(), 1);
  auto plain = ParseSpecYaml(std::string(kQuickstart) + "execution: {mode: workers}\n", "/b");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->execution(), "workers");
  EXPECT_THAT(Error(std::string(kQuickstart) + "execution: {mode: hopper, epochs: 3}\n"),
              HasSubstr("execution.partitions: is required for hopper mode"));
  EXPECT_THAT(Error(std::string(kQuickstart) + "execution: {mode: hopper, partitions: 2}\n"),
              HasSubstr("execution.epochs: is required for hopper mode"));
  EXPECT_THAT(Error(std::string(kQuickstart) + "execution: {mode: workers, partitions: 2}\n"),
              HasSubstr("partitions and epochs apply to mode: hopper"));
  EXPECT_THAT(Error(std::string(kQuickstart) + "execution: {mode: hopper, parts: 2}\n"),
              HasSubstr("parts"));
  EXPECT_THAT(Error(std::string(kQuickstart) +
                    "execution: {mode: hopper, partitions: 2, epochs: 2}\nresources: {ranks: 2}\n"),
              HasSubstr("hopper mode trains each model in one process"));
  EXPECT_THAT(Error(Edit("{name: random, seed: 7}", "{name: asha, mode: promote}") +
                    "execution: {mode: hopper, partitions: 2, epochs: 9}\n"),
              HasSubstr("promote does not combine with hopper mode"));
  auto none =
      ParseSpecYaml(Edit("max_restarts: 1", "max_restarts: 1\n  keep_checkpoints: 0"), "/b");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->trial().keep_checkpoints(), -1);
}

TEST(SpecTest, QuickstartParsesAsWritten) {
  auto spec = ParseSpecYaml(kQuickstart, "/home/me/exp");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "quickstart");
  EXPECT_EQ(spec->objective().metric(), "loss");
  EXPECT_EQ(spec->objective().goal(), v1::Objective::MINIMIZE);
  ASSERT_EQ(spec->search_space_size(), 5);
  EXPECT_EQ(spec->search_space(0).name(), "x1");
  EXPECT_EQ(spec->search_space(0).type(), v1::ParamSpec::FLOAT);
  EXPECT_EQ(spec->search_space(0).min(), -5);
  EXPECT_EQ(spec->search_space(0).max(), 10);
  EXPECT_TRUE(spec->search_space(2).log());
  EXPECT_EQ(spec->search_space(2).min(), 1e-5);
  EXPECT_EQ(spec->search_space(3).type(), v1::ParamSpec::INT);
  EXPECT_THAT(spec->search_space(4).values(), ::testing::ElementsAre("relu", "tanh", "gelu"));
  EXPECT_EQ(spec->algorithm().name(), "random");
  EXPECT_EQ(spec->algorithm().seed(), 7u);
  EXPECT_EQ(spec->budget().max_trials(), 20);
  EXPECT_EQ(spec->budget().max_concurrent(), 4);
  EXPECT_THAT(spec->trial().command(),
              ::testing::ElementsAre("python3", "train.py", "--x1", "{x1}", "--x2", "{x2}"));
  EXPECT_EQ(spec->trial().workdir(), "/home/me/exp");  // relative to the spec's folder
  EXPECT_EQ(spec->trial().max_restarts(), 1);
}

TEST(SpecTest, RelativeWorkdirJoinsBaseAndAbsoluteStays) {
  auto rel = ParseSpecYaml(Edit("workdir: .", "workdir: sub/dir"), "/base");
  ASSERT_TRUE(rel.ok()) << rel.status();
  EXPECT_EQ(rel->trial().workdir(), "/base/sub/dir");
  auto abs = ParseSpecYaml(Edit("workdir: .", "workdir: /srv/train"), "/base");
  ASSERT_TRUE(abs.ok());
  EXPECT_EQ(abs->trial().workdir(), "/srv/train");
}

TEST(SpecTest, MinNotBelowMaxNamesFieldAndValues) {
  EXPECT_EQ(
      Error(Edit("x1: {type: float, min: -5, max: 10}", "x1: {type: float, min: 10, max: -5}")),
      "search_space.x1: min (10) must be below max (-5)");
  EXPECT_EQ(Error(Edit("depth: {type: int, min: 1, max: 8}", "depth: {type: int, min: 3, max: 3}")),
            "search_space.depth: min (3) must be below max (3)");
}

TEST(SpecTest, LogNeedsPositiveMin) {
  EXPECT_EQ(Error(Edit("min: 1.0e-5, max: 1.0e-1, log: true", "min: 0, max: 1.0e-1, log: true")),
            "search_space.lr: log needs min above 0 (got 0)");
}

TEST(SpecTest, EmptyCategoricalRejected) {
  EXPECT_EQ(Error(Edit("values: [relu, tanh, gelu]", "values: []")),
            "search_space.act: values must not be empty");
}

TEST(SpecTest, UnknownKeysRejectedAtEveryLevel) {
  EXPECT_THAT(Error(Edit("name: quickstart", "name: quickstart\nnmae: x")),
              HasSubstr("spec: unknown key 'nmae'"));
  EXPECT_THAT(Error(Edit("{type: float, min: -5, max: 10}", "{type: float, mn: -5, max: 10}")),
              HasSubstr("search_space.x1: unknown key 'mn'"));
  EXPECT_THAT(Error(Edit("max_concurrent: 4", "max_concurent: 4")),
              HasSubstr("budget: unknown key 'max_concurent'"));
  EXPECT_THAT(Error(Edit("max_restarts: 1", "max_restart: 1")),
              HasSubstr("trial: unknown key 'max_restart'"));
}

TEST(SpecTest, WrongTypesRejected) {
  EXPECT_EQ(Error(Edit("max_trials: 20", "max_trials: twenty")),
            "budget.max_trials: expected an integer, got 'twenty'");
  EXPECT_EQ(Error(Edit("x1: {type: float, min: -5", "x1: {type: float, min: abc")),
            "search_space.x1.min: expected a number, got 'abc'");
  EXPECT_EQ(Error(Edit("depth: {type: int, min: 1,", "depth: {type: int, min: 1.5,")),
            "search_space.depth.min: expected an integer, got '1.5'");
  EXPECT_EQ(Error(Edit("log: true", "log: maybe")),
            "search_space.lr.log: expected true or false, got 'maybe'");
  EXPECT_THAT(Error(Edit("type: categorical", "type: enum")),
              HasSubstr("search_space.act.type: unknown type 'enum'"));
  EXPECT_THAT(Error(Edit("command: [python3, train.py, --x1, \"{x1}\", --x2, \"{x2}\"]",
                         "command: python3 train.py")),
              HasSubstr("trial.command: expected a list of arguments"));
}

TEST(SpecTest, PlaceholderNamingNoParameterRejected) {
  EXPECT_EQ(Error(Edit("\"{x2}\"]", "\"{x3}\"]")),
            "trial.command[5]: placeholder {x3} names no parameter");
}

TEST(SpecTest, UnknownAlgorithmRejected) {
  EXPECT_EQ(Error(Edit("name: random", "name: bayes")),
            "algorithm.name: unknown algorithm 'bayes' (known: random, grid, tpe, gp, asha, "
            "hyperband, bohb, pbt, pb2)");
}

TEST(SpecTest, MissingPartsRejected) {
  EXPECT_THAT(Error(Edit("objective: {metric: loss, goal: minimize}", "")),
              HasSubstr("objective.metric: is required"));
  EXPECT_THAT(Error(Edit("goal: minimize", "goal: smallest")),
              HasSubstr("objective.goal: unknown goal 'smallest'"));
  EXPECT_THAT(Error(Edit("max_trials: 20, ", "")),
              HasSubstr("budget.max_trials: is required for random search"));
  EXPECT_THAT(Error("name: [a"), HasSubstr("spec is not valid YAML"));
  EXPECT_THAT(Error("- 1\n- 2\n"), HasSubstr("expected a YAML mapping"));
}

TEST(SpecTest, GridNeedsPointsForFloatsOnly) {
  std::string grid = Edit("name: random, seed: 7", "name: grid");
  EXPECT_EQ(Error(grid), "search_space.x1: grid search needs grid_points (or values) for a float");
  auto ok = ParseSpecYaml(R"(
objective: {metric: acc, goal: maximize}
search_space:
  lr: {type: float, min: 0.001, max: 0.1, log: true, grid_points: 3}
  bs: {type: int, values: [32, 64]}
  depth: {type: int, min: 1, max: 3}
  opt: {type: categorical, values: [sgd, adam]}
algorithm: {name: grid}
trial: {command: [train, "{lr}"]}
)",
                          "/b");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->budget().max_trials(), 0);  // the controller fills in the grid's size
  EXPECT_EQ(ok->search_space(0).grid_points(), 3);
  EXPECT_THAT(ok->search_space(1).grid_values(), ::testing::ElementsAre(32, 64));
  EXPECT_EQ(ok->objective().goal(), v1::Objective::MAXIMIZE);
}

TEST(SpecTest, EarlyStoppingFormsFromTheIssue) {
  const std::string resource = "resource: {metric: epoch, min: 1, max: 81}\n";
  auto asha = ParseSpecYaml(
      resource + Edit("algorithm: {name: random, seed: 7}",
                      "algorithm: {name: asha, reduction_factor: 3, mode: stop, seed: 1}"),
      "/b");
  ASSERT_TRUE(asha.ok()) << asha.status();
  EXPECT_EQ(asha->resource().metric(), "epoch");
  EXPECT_EQ(asha->resource().max(), 81);
  EXPECT_EQ(asha->algorithm().early_stopping().rule(), "asha");
  EXPECT_EQ(asha->algorithm().early_stopping().reduction_factor(), 3);
  EXPECT_EQ(asha->algorithm().early_stopping().mode(), "stop");

  auto hb = ParseSpecYaml(
      resource + Edit("algorithm: {name: random, seed: 7}",
                      "algorithm: {name: hyperband, reduction_factor: 3, mode: stop}"),
      "/b");
  ASSERT_TRUE(hb.ok()) << hb.status();
  EXPECT_EQ(hb->algorithm().early_stopping().rule(), "hyperband");

  auto median = ParseSpecYaml(
      Edit("algorithm: {name: random, seed: 7}",
           "algorithm: {name: random, early_stopping: {rule: median, min_trials: 5, grace: 2}}"),
      "/b");
  ASSERT_TRUE(median.ok()) << median.status();
  EXPECT_EQ(median->resource().metric(), "step");  // progress is "step" when none is named
  EXPECT_EQ(median->algorithm().early_stopping().min_trials(), 5);
  EXPECT_EQ(median->algorithm().early_stopping().grace(), 2);

  auto grid = ParseSpecYaml(R"(
objective: {metric: loss, goal: minimize}
resource: {min: 1, max: 16}
search_space: {depth: {type: int, min: 1, max: 4}}
algorithm: {name: grid, early_stopping: {rule: asha, reduction_factor: 4}}
trial: {command: [train]}
)",
                            "/b");
  ASSERT_TRUE(grid.ok()) << grid.status();
  EXPECT_EQ(grid->algorithm().early_stopping().reduction_factor(), 4);
  EXPECT_EQ(grid->algorithm().early_stopping().mode(), "stop");
}

TEST(SpecTest, TpeWithDefaultsAndWithEarlyStopping) {
  auto tpe = ParseSpecYaml(
      Edit("algorithm: {name: random, seed: 7}", "algorithm: {name: tpe, seed: 7}"), "/b");
  ASSERT_TRUE(tpe.ok()) << tpe.status();
  EXPECT_EQ(tpe->algorithm().options().at("startup_trials"), "10");
  auto bohb_like = ParseSpecYaml(
      "resource: {metric: epoch, min: 1, max: 27}\n" +
          Edit("algorithm: {name: random, seed: 7}",
               "algorithm: {name: tpe, startup_trials: 5, early_stopping: {rule: asha}}"),
      "/b");
  ASSERT_TRUE(bohb_like.ok()) << bohb_like.status();
  EXPECT_EQ(bohb_like->algorithm().options().at("startup_trials"), "5");
  EXPECT_EQ(bohb_like->algorithm().early_stopping().rule(), "asha");
  EXPECT_EQ(Error(Edit("algorithm: {name: random, seed: 7}",
                       "algorithm: {name: random, startup_trials: 3}")),
            "algorithm.startup_trials: applies to tpe, gp and bohb only (random has no options)");
  auto warm = ParseSpecYaml(
      Edit("algorithm: {name: random, seed: 7}", "algorithm: {name: gp, warm_start: [e1, e4]}"),
      "/b");
  ASSERT_TRUE(warm.ok()) << warm.status();
  EXPECT_THAT(warm->algorithm().warm_start(), ::testing::ElementsAre("e1", "e4"));
  EXPECT_THAT(Error(Edit("algorithm: {name: random, seed: 7}",
                         "algorithm: {name: random, warm_start: [e1]}")),
              HasSubstr("algorithm.warm_start: applies to tpe, gp and bohb only"));
}

TEST(SpecTest, SeveralObjectivesAndConstraintsAsInTheIssue) {
  constexpr char kSpec[] = R"(
objectives:
  - {metric: loss, goal: minimize}
  - {metric: latency_ms, goal: minimize}
constraints:
  - {metric: memory_gb, max: 16}
search_space:
  x: {type: float, min: 0, max: 1}
algorithm: {name: gp}
budget: {max_trials: 20}
trial: {command: [train]}
)";
  auto spec = ParseSpecYaml(kSpec, "/b");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->objectives_size(), 2);
  EXPECT_EQ(spec->objective().metric(), "loss");  // the first, for whatever reads one
  EXPECT_EQ(spec->objectives(1).metric(), "latency_ms");
  ASSERT_EQ(spec->constraints_size(), 1);
  EXPECT_TRUE(spec->constraints(0).has_max());
  EXPECT_FALSE(spec->constraints(0).has_min());
  EXPECT_EQ(spec->constraints(0).max(), 16);
  auto error = [&](absl::string_view from, absl::string_view to) {
    auto s = ParseSpecYaml(absl::StrReplaceAll(kSpec, {{from, to}}), "/b");
    return s.ok() ? std::string("ok") : std::string(s.status().message());
  };
  EXPECT_EQ(error("{metric: latency_ms, goal: minimize}", "{metric: loss, goal: maximize}"),
            "objectives[1].metric: 'loss' is named twice");
  EXPECT_EQ(error("{metric: latency_ms, goal: minimize}", "{metric: latency_ms}"),
            "objectives[1].goal: is required (minimize or maximize)");
  EXPECT_EQ(error("{metric: memory_gb, max: 16}", "{metric: memory_gb}"),
            "constraints[0]: needs min, max or both");
  EXPECT_EQ(error("{metric: memory_gb, max: 16}", "{metric: memory_gb, min: 20, max: 16}"),
            "constraints[0]: min (20) must not be above max (16)");
  EXPECT_EQ(error("{metric: memory_gb, max: 16}", "{max: 16}"),
            "constraints[0].metric: is required");
  EXPECT_EQ(error("constraints:", "objective: {metric: loss, goal: minimize}\nconstraints:"),
            "objectives: give objective or objectives, not both");
  EXPECT_EQ(
      error("algorithm: {name: gp}", "algorithm: {name: random, early_stopping: {rule: median}}"),
      "algorithm: early stopping compares one metric; it needs a single objective");
}

TEST(SpecTest, BohbIsMultivariateTpeWithHyperband) {
  auto bohb = ParseSpecYaml("resource: {metric: epoch, min: 1, max: 27}\n" +
                                Edit("algorithm: {name: random, seed: 7}",
                                     "algorithm: {name: bohb, reduction_factor: 3, mode: promote}"),
                            "/b");
  ASSERT_TRUE(bohb.ok()) << bohb.status();
  EXPECT_EQ(bohb->algorithm().name(), "bohb");
  EXPECT_EQ(bohb->algorithm().options().at("multivariate"), "true");
  EXPECT_EQ(bohb->algorithm().options().at("startup_trials"), "10");
  EXPECT_EQ(bohb->algorithm().early_stopping().rule(), "hyperband");
  EXPECT_EQ(bohb->algorithm().early_stopping().mode(), "promote");
  EXPECT_EQ(
      Error(Edit("algorithm: {name: random, seed: 7}", "algorithm: {name: bohb}")),
      "resource: is required for hyperband (e.g. resource: {metric: epoch, min: 1, max: 81})");
  auto mv = ParseSpecYaml(
      Edit("algorithm: {name: random, seed: 7}", "algorithm: {name: tpe, multivariate: true}"),
      "/b");
  ASSERT_TRUE(mv.ok()) << mv.status();
  EXPECT_EQ(mv->algorithm().options().at("multivariate"), "true");
  EXPECT_EQ(Error(Edit("algorithm: {name: random, seed: 7}",
                       "algorithm: {name: gp, multivariate: true}")),
            "algorithm.multivariate: applies to tpe and bohb only (gp's options: startup_trials, "
            "acquisition)");
  EXPECT_EQ(Error(Edit("algorithm: {name: random, seed: 7}",
                       "algorithm: {name: tpe, multivariate: maybe}")),
            "algorithm.multivariate: must be true or false (got \"maybe\")");
  auto gp =
      ParseSpecYaml(Edit("algorithm: {name: random, seed: 7}", "algorithm: {name: gp}"), "/b");
  ASSERT_TRUE(gp.ok()) << gp.status();
  EXPECT_EQ(gp->algorithm().options().at("acquisition"), "ei");
  EXPECT_EQ(
      Error(Edit("algorithm: {name: random, seed: 7}", "algorithm: {name: gp, acquisition: pi}")),
      "algorithm.acquisition: unknown acquisition 'pi' (known: ei, ucb)");
  EXPECT_EQ(
      Error(Edit("algorithm: {name: random, seed: 7}", "algorithm: {name: tpe, acquisition: ucb}")),
      "algorithm.acquisition: applies to gp only (tpe's options: startup_trials, multivariate)");
}

TEST(SpecTest, ConditionalParametersAsInTheIssue) {
  constexpr char kBase[] = R"(
objective: {metric: loss, goal: minimize}
search_space:
  optimizer: {type: categorical, values: [sgd, adam]}
  momentum: {type: float, min: 0.0, max: 0.99, when: {optimizer: sgd}}
  beta1: {type: float, min: 0.8, max: 0.999, when: {optimizer: [adam]}}
budget: {max_trials: 4}
trial: {command: [train, --opt, "{optimizer}"]}
)";
  auto spec = ParseSpecYaml(kBase, "/b");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->search_space(1).parent(), "optimizer");
  EXPECT_THAT(spec->search_space(1).parent_values(), ::testing::ElementsAre("sgd"));
  EXPECT_THAT(spec->search_space(2).parent_values(), ::testing::ElementsAre("adam"));
  auto edit = [&](const std::string& from, const std::string& to) {
    std::string s = kBase;
    return s.replace(s.find(from), from.size(), to);
  };
  EXPECT_THAT(Error(edit("when: {optimizer: sgd}", "when: {optimiser: sgd}")),
              HasSubstr("search_space.momentum.when: parent 'optimiser' must be a parameter "
                        "declared before momentum"));
  EXPECT_THAT(Error(edit("when: {optimizer: sgd}", "when: {optimizer: rmsprop}")),
              HasSubstr("search_space.momentum.when: 'rmsprop' is not a value of optimizer"));
  EXPECT_THAT(Error(edit("when: {optimizer: sgd}", "when: {beta1: sgd}")),
              HasSubstr("parent 'beta1' must be a parameter declared before momentum"));
  EXPECT_THAT(Error(edit("\"{optimizer}\"]", "\"{momentum}\"]")),
              HasSubstr("names a conditional parameter, which some trials lack"));
}

TEST(SpecTest, EarlyStoppingRejections) {
  const std::string asha = "algorithm: {name: asha}";
  const std::string random = "algorithm: {name: random, seed: 7}";
  EXPECT_THAT(Error(Edit(random, asha)), HasSubstr("resource: is required for asha"));
  const std::string res = "resource: {metric: epoch, min: 1, max: 81}\n";
  EXPECT_THAT(Error("resource: {min: 5, max: 1}\n" + Edit(random, asha)),
              HasSubstr("resource: need 0 < min < max (got min 5, max 1)"));
  EXPECT_THAT(
      Error(res + Edit(random, "algorithm: {name: asha, reduction_factor: 1}")),
      HasSubstr("algorithm.reduction_factor: must be an integer of at least 2 (got \"1\")"));
  auto promote = ParseSpecYaml(res + Edit(random, "algorithm: {name: asha, mode: promote}"), "/b");
  ASSERT_TRUE(promote.ok()) << promote.status();
  EXPECT_EQ(promote->algorithm().early_stopping().mode(), "promote");
  EXPECT_THAT(Error(res + Edit(random, "algorithm: {name: asha, mode: fast}")),
              HasSubstr("unknown mode 'fast' (known: stop, promote)"));
  EXPECT_THAT(
      Error(res + Edit(random, "algorithm: {name: random, early_stopping: {rule: best}}")),
      HasSubstr(
          "algorithm.early_stopping.rule: unknown rule 'best' (known: asha, hyperband, median)"));
  EXPECT_THAT(Error(res + Edit(random, "algorithm: {name: asha, early_stopping: {rule: median}}")),
              HasSubstr("asha stops trials itself"));
  EXPECT_THAT(Error(res + Edit(random, "algorithm: {name: random, reduction_factor: 3}")),
              HasSubstr("put them under early_stopping"));
  EXPECT_THAT(
      Error(res +
            Edit(random,
                 "algorithm: {name: random, early_stopping: {rule: median, reduction_factor: 3}}")),
      HasSubstr("apply to asha and hyperband"));
  EXPECT_THAT(
      Error(res +
            Edit(random, "algorithm: {name: random, early_stopping: {rule: median, grace: -1}}")),
      HasSubstr("grace: must not be negative (got -1)"));
}

// Population-based training: the issue's spec as written, its options written back, the
// population as max_trials, and what it refuses.
TEST(SpecTest, PopulationBasedTraining) {
  using ::testing::Pair;
  using ::testing::UnorderedElementsAre;
  const std::string random = "algorithm: {name: random, seed: 7}";
  const std::string res = "resource: {metric: epoch, max: 40}\n";
  const std::string pbt =
      "algorithm: {name: pbt, population: 16, interval: 4, quantile: 0.25, "
      "resample_probability: 0.25, factors: [0.8, 1.2]}";
  std::string yaml = res + Edit(random, pbt);
  yaml.replace(yaml.find("max_trials: 20, "), 16, "");
  auto spec = ParseSpecYaml(yaml, "/b");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_THAT(spec->algorithm().options(),
              UnorderedElementsAre(Pair("population", "16"), Pair("interval", "4"),
                                   Pair("quantile", "0.25"), Pair("resample_probability", "0.25"),
                                   Pair("factors", "[0.8, 1.2]")));
  EXPECT_EQ(spec->budget().max_trials(), 16);     // its members
  EXPECT_EQ(spec->budget().max_concurrent(), 4);  // as the spec says
  EXPECT_EQ(spec->resource().min(), 4);           // the first ready point
  EXPECT_FALSE(spec->algorithm().has_early_stopping());
  std::string pb2_yaml = res + Edit(random, "algorithm: {name: pb2, population: 4}");
  pb2_yaml.replace(pb2_yaml.find("max_trials: 20, "), 16, "");
  auto pb2 = ParseSpecYaml(pb2_yaml, "/b");
  ASSERT_TRUE(pb2.ok()) << pb2.status();
  EXPECT_THAT(pb2->algorithm().options(),
              UnorderedElementsAre(Pair("population", "4"), Pair("interval", "1"),
                                   Pair("quantile", "0.25")));

  EXPECT_EQ(Error(Edit(random, pbt)),
            "resource: is required for pbt: its members train in segments of it (e.g. "
            "resource: {metric: epoch, max: 40})");
  EXPECT_EQ(Error("resource: {metric: epoch, max: 4}\n" + Edit(random, pbt)),
            "algorithm.interval: must be below resource.max (4) so that members have ready "
            "points (got 4)");
  EXPECT_EQ(Error(res + Edit(random, "algorithm: {name: pbt, factors: [0.8, x]}")),
            "algorithm.factors: must be a list of numbers of at least 1e-09, e.g. [0.8, 1.2] "
            "(got \"[0.8, x]\")");
  EXPECT_EQ(Error(res + Edit(random, "algorithm: {name: pbt, factors: [[1]]}")),
            "algorithm.factors: expected a list of single values, got a list");
  EXPECT_EQ(Error(res + Edit(random, "algorithm: {name: pbt, early_stopping: {rule: median}}")),
            "algorithm.early_stopping: pbt trains every member to resource.max; the weak take "
            "over the strong's checkpoints instead of stopping");
  EXPECT_EQ(Error(res + Edit(random, "algorithm: {name: pbt, population: 4}")),
            "budget.max_trials: pbt's trials are its members (algorithm.population: 4); leave "
            "max_trials out");
  EXPECT_EQ(Error(res + Edit(random, "algorithm: {name: pb2, resample_probability: 0.5}")),
            "algorithm.resample_probability: applies to pbt only (pb2's options: population, "
            "interval, quantile)");
  const std::string max_trials = "budget: {max_trials: 20, max_concurrent: 4}";
  const std::string pop = "budget: {max_concurrent: 4}";
  std::string shared = res + Edit(random, pbt);
  shared.replace(shared.find(max_trials), max_trials.size(), pop);
  ASSERT_TRUE(ParseSpecYaml(shared, "/b").ok());
  shared.replace(shared.find("workdir: ."), 10, "workdir: .\n  checkpoint_root: /shared");
  EXPECT_THAT(Error(shared), HasSubstr("trial.checkpoint_root: pbt keeps its members' "
                                       "checkpoints in rungd"));
}

// Every key of algorithm: other than name, seed, warm_start and early_stopping is an option of
// the named algorithm, checked against its registration and written back in full.
TEST(SpecTest, AlgorithmOptionsAreCheckedAndWrittenBackWithDefaults) {
  const std::string random = "algorithm: {name: random, seed: 7}";
  using ::testing::Pair;
  using ::testing::UnorderedElementsAre;
  auto tpe = ParseSpecYaml(
      Edit(random, "algorithm: {name: tpe, startup_trials: 05, multivariate: yes, seed: 3}"), "/b");
  ASSERT_TRUE(tpe.ok()) << tpe.status();
  EXPECT_EQ(tpe->algorithm().seed(), 3u);
  EXPECT_THAT(tpe->algorithm().options(),
              UnorderedElementsAre(Pair("startup_trials", "5"), Pair("multivariate", "true")));
  auto rand = ParseSpecYaml(kQuickstart, "/b");
  ASSERT_TRUE(rand.ok());
  EXPECT_TRUE(rand->algorithm().options().empty());  // random takes none

  const std::string res = "resource: {metric: epoch, min: 1, max: 81}\n";
  auto asha = ParseSpecYaml(res + Edit(random, "algorithm: {name: asha, mode: promote}"), "/b");
  ASSERT_TRUE(asha.ok()) << asha.status();
  EXPECT_THAT(asha->algorithm().options(),
              UnorderedElementsAre(Pair("reduction_factor", "3"), Pair("mode", "promote"),
                                   Pair("max_rungs", "0")));
  EXPECT_EQ(asha->algorithm().early_stopping().rule(), "asha");  // the rule, from the options
  EXPECT_EQ(asha->algorithm().early_stopping().reduction_factor(), 3);
  EXPECT_EQ(asha->algorithm().early_stopping().max_rungs(), 0);

  EXPECT_EQ(Error(Edit(random, "algorithm: {name: tpe, startup_trails: 5}")),
            "algorithm.startup_trails: unknown option (tpe's options: startup_trials, "
            "multivariate)");
  EXPECT_EQ(Error(Edit(random, "algorithm: {name: tpe, startup_trials: 0}")),
            "algorithm.startup_trials: must be an integer of at least 1 (got \"0\")");
  EXPECT_EQ(Error(Edit(random, "algorithm: {name: tpe, startup_trials: [1]}")),
            "algorithm.startup_trials: must be an integer of at least 1 (got \"[1]\")");
  EXPECT_EQ(Error(res + Edit(random, "algorithm: {name: bohb, multivariate: false}")),
            "algorithm.multivariate: is always true with bohb (got \"false\")");
  EXPECT_EQ(Error(res + Edit(random, "algorithm: {name: hyperband, min_trials: 3}")),
            "algorithm.min_trials: unknown option (hyperband's options: reduction_factor, mode, "
            "max_rungs)");
  EXPECT_EQ(Error(res + Edit(random, "algorithm: {name: bohb, early_stopping: {rule: asha}}")),
            "algorithm.early_stopping: bohb stops trials itself; early_stopping goes with random, "
            "grid, tpe or gp");
  EXPECT_EQ(Error(res + Edit(random, "algorithm: {name: random, mode: promote}")),
            "algorithm.mode: applies to asha, hyperband and bohb only (random has no options); "
            "with random put them under early_stopping");
}

TEST(SpecTest, ValidatingAgainKeepsTheOptions) {
  auto gp = ParseSpecYaml(
      Edit("algorithm: {name: random, seed: 7}", "algorithm: {name: gp, acquisition: ucb}"), "/b");
  ASSERT_TRUE(gp.ok()) << gp.status();
  v1::ExperimentSpec again = *gp;
  ASSERT_TRUE(ValidateSpec(&again, "/b").ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(again, *gp))
      << again.ShortDebugString();
}

TEST(SpecTest, AnAblationStudyTakesNoAlgorithmOptions) {
  EXPECT_EQ(Error(R"(
kind: ablation
objective: {metric: loss, goal: minimize}
base: {params: {lr: 0.1}}
components: {features: [age]}
algorithm: {startup_trials: 3}
trial: {command: [train]}
)"),
            "algorithm: an ablation study runs every variant; it has no search algorithm or early "
            "stopping");
}

TEST(SpecTest, FillPlaceholdersFormatsEachType) {
  google::protobuf::Map<std::string, v1::ParamValue> p;
  p["lr"].set_float_value(0.001);
  p["depth"].set_int_value(4);
  p["act"].set_categorical_value("gelu");
  EXPECT_EQ(*FillPlaceholders("--lr={lr} --depth {depth} {act}", p), "--lr=0.001 --depth 4 gelu");
  EXPECT_EQ(*FillPlaceholders("{\"json\": 1} {}", p), "{\"json\": 1} {}");  // not placeholders
  EXPECT_EQ(ParamsToJson(p), "{\"act\": \"gelu\", \"depth\": 4, \"lr\": 0.001}");
  EXPECT_FALSE(FillPlaceholders("{nope}", p).ok());
}

}  // namespace
}  // namespace rung

namespace rung {
namespace {

// Every example users are pointed at is a valid spec.
TEST(SpecTest, ExamplesAreValid) {
  int seen = 0;
  const std::string dir = std::string(RUNG_TEST_SOURCE_DIR) + "/config/examples";
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    auto spec = ParseSpecYaml(text.str(), dir);
    EXPECT_TRUE(spec.ok()) << entry.path() << ": " << spec.status();
    ++seen;
  }
  EXPECT_GE(seen, 3);
}

}  // namespace
}  // namespace rung

namespace rung {
namespace {

TEST(SpecLimitsTest, OversizedSpecsAreRefusedNamingTheField) {
  std::string huge = std::string(kQuickstart) + "# " + std::string(kMaxSpecBytes, 'x') + "\n";
  EXPECT_THAT(Error(huge), ::testing::HasSubstr("bytes of YAML; at most 1048576"));
  std::string many =
      "objective: {metric: loss, goal: minimize}\nbudget: {max_trials: 1}\n"
      "trial: {command: [x]}\nsearch_space:\n";
  for (int i = 0; i <= kMaxParameters; ++i)
    absl::StrAppend(&many, "  p", i, ": {type: float, min: 0, max: 1}\n");
  EXPECT_THAT(Error(many), ::testing::HasSubstr("search_space: has 257 parameters; at most 256"));
  EXPECT_THAT(Error(Edit("name: quickstart", "name: " + std::string(200, 'n'))),
              ::testing::HasSubstr("name: is 200 bytes long; a name has at most 128"));
  EXPECT_THAT(Error(Edit("command: [", "command: [" + std::string(5000, 'a') + ", ")),
              ::testing::HasSubstr("trial.command[0]: is 5000 bytes; at most 4096"));
  EXPECT_THAT(Error(Edit("max_trials: 20", "max_trials: 2000000000")),
              ::testing::HasSubstr("budget.max_trials: is 2000000000; at most 10000000"));
}

}  // namespace
}  // namespace rung
