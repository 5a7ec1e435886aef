// SearchConfig and the migration of rung 0.1's typed Algorithm fields into options: a spec
// stored by 0.1 (validated by it, its settings in the fields now deprecated) gives the
// searcher configuration it gave then, which is also what the same YAML gives today.
#include "server/schedule/search_config.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "server/schedule/experiment_run.h"
#include "server/spec/spec.h"
#include "server/store/store.h"
#include "tests/test_util.h"

namespace rung {
namespace {

using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// The algorithm's part of a Config, as text.
std::string Describe(const search::Config& c) {
  return absl::StrCat("sampler=", static_cast<int>(c.sampler), " startup=", c.tpe_startup,
                      " multivariate=", c.tpe_multivariate, " ucb=", c.gp_ucb,
                      " rule=", static_cast<int>(c.stopping.rule),
                      " eta=", c.stopping.reduction_factor, " promote=", c.stopping.promote,
                      " max_rungs=", c.stopping.max_rungs, " min_trials=", c.stopping.min_trials,
                      " grace=", c.stopping.grace, " resource=", c.resource_min, "..",
                      c.resource_max, " seed=", c.seed);
}

constexpr char kRest[] = R"(
objective { metric: "loss" goal: MINIMIZE }
search_space { name: "x" type: FLOAT min: 0 max: 1 }
budget { max_trials: 8 max_concurrent: 8 }
trial { command: "train" workdir: "/w" }
resource { metric: "epoch" min: 1 max: 27 }
execution: "workers"
kind: "search"
)";

// A spec as rung 0.1 stored it: `algorithm` in the text format, with the typed fields.
v1::ExperimentSpec Legacy(const std::string& algorithm) {
  v1::ExperimentSpec spec;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      absl::StrCat("algorithm {", algorithm, "}", kRest), &spec))
      << algorithm;
  return spec;
}

// The same experiment written as YAML today.
v1::ExperimentSpec Today(const std::string& algorithm) {
  auto spec = ParseSpecYaml(absl::StrCat(R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
budget: {max_trials: 8}
trial: {command: [train], workdir: /w}
resource: {metric: epoch, min: 1, max: 27}
algorithm: )",
                                         algorithm, "\n"),
                            "/");
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *spec : v1::ExperimentSpec();
}

// Whether any deprecated field of `alg` is set (read by reflection, as the accessors are off
// limits).
bool HasLegacyFields(const v1::Algorithm& alg) {
  const google::protobuf::Reflection* r = alg.GetReflection();
  for (const char* name :
       {"reduction_factor", "mode", "max_rungs", "startup_trials", "multivariate", "acquisition"}) {
    if (r->HasField(alg, alg.GetDescriptor()->FindFieldByName(name))) return true;
  }
  return false;
}

struct Case {
  const char* legacy;  // as rung 0.1 stored it (after its validation filled the defaults)
  const char* yaml;    // as a user writes it, then and now
  const char* config;  // what rung 0.1's SearchConfig made of it
};

TEST(SearchConfigTest, LegacySpecsGiveTheConfigurationTheyGaveInRung01) {
  const Case cases[] = {
      {R"(name: "random" seed: 7)", "{name: random, seed: 7}",
       "sampler=0 startup=10 multivariate=0 ucb=0 rule=0 eta=3 promote=0 max_rungs=0 min_trials=5 "
       "grace=0 "
       "resource=1..27 seed=7"},
      {R"(name: "tpe" seed: 3 startup_trials: 5 multivariate: true)",
       "{name: tpe, seed: 3, startup_trials: 5, multivariate: true}",
       "sampler=2 startup=5 multivariate=1 ucb=0 rule=0 eta=3 promote=0 max_rungs=0 min_trials=5 "
       "grace=0 "
       "resource=1..27 seed=3"},
      {R"(name: "gp" seed: 1 startup_trials: 10 acquisition: "ucb")",
       "{name: gp, seed: 1, acquisition: ucb}",
       "sampler=3 startup=10 multivariate=0 ucb=1 rule=0 eta=3 promote=0 max_rungs=0 min_trials=5 "
       "grace=0 "
       "resource=1..27 seed=1"},
      {R"(name: "asha" seed: 2 reduction_factor: 4 mode: "promote"
          early_stopping { rule: "asha" reduction_factor: 4 mode: "promote" })",
       "{name: asha, seed: 2, reduction_factor: 4, mode: promote}",
       "sampler=0 startup=10 multivariate=0 ucb=0 rule=1 eta=4 promote=1 max_rungs=0 min_trials=5 "
       "grace=0 "
       "resource=1..27 seed=2"},
      {R"(name: "hyperband" seed: 2 max_rungs: 2
          early_stopping { rule: "hyperband" reduction_factor: 3 mode: "stop" max_rungs: 2 })",
       "{name: hyperband, seed: 2, max_rungs: 2}",
       "sampler=0 startup=10 multivariate=0 ucb=0 rule=2 eta=3 promote=0 max_rungs=2 min_trials=5 "
       "grace=0 "
       "resource=1..27 seed=2"},
      {R"(name: "bohb" seed: 9 startup_trials: 10 multivariate: true reduction_factor: 3
          early_stopping { rule: "hyperband" reduction_factor: 3 mode: "stop" })",
       "{name: bohb, seed: 9, reduction_factor: 3}",
       "sampler=2 startup=10 multivariate=1 ucb=0 rule=2 eta=3 promote=0 max_rungs=0 min_trials=5 "
       "grace=0 "
       "resource=1..27 seed=9"},
      {R"(name: "tpe" seed: 4 startup_trials: 6
          early_stopping { rule: "median" min_trials: 5 grace: 2 })",
       "{name: tpe, seed: 4, startup_trials: 6, early_stopping: {rule: median, grace: 2}}",
       "sampler=2 startup=6 multivariate=0 ucb=0 rule=3 eta=3 promote=0 max_rungs=0 min_trials=5 "
       "grace=2 "
       "resource=1..27 seed=4"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.legacy);
    const v1::ExperimentSpec legacy = Legacy(c.legacy);
    ASSERT_TRUE(HasLegacyFields(legacy.algorithm()) ||
                std::string(c.legacy).find("random") != std::string::npos);
    EXPECT_EQ(Describe(SearchConfig(legacy)),
              c.config);  // unmigrated: SearchConfig migrates a copy
    v1::ExperimentSpec migrated = legacy;
    MigrateLegacyAlgorithm(&migrated);
    EXPECT_FALSE(HasLegacyFields(migrated.algorithm()));
    EXPECT_EQ(Describe(SearchConfig(migrated)), c.config);
    const v1::ExperimentSpec today = Today(c.yaml);
    EXPECT_EQ(Describe(SearchConfig(today)), c.config);
    // Migrated, a stored spec carries the options today's validation writes, defaults and all.
    EXPECT_TRUE(
        google::protobuf::util::MessageDifferencer::Equals(migrated.algorithm(), today.algorithm()))
        << migrated.algorithm().ShortDebugString() << "\n"
        << today.algorithm().ShortDebugString();
  }
}

TEST(SearchConfigTest, MigrationMovesTheFieldsAndKeepsOptionsAlreadyThere) {
  v1::ExperimentSpec spec =
      Legacy(R"(name: "tpe" startup_trials: 5 options { key: "startup_trials" value: "7" })");
  MigrateLegacyAlgorithm(&spec);
  EXPECT_THAT(spec.algorithm().options(),
              UnorderedElementsAre(Pair("startup_trials", "7"), Pair("multivariate", "false")));
  EXPECT_FALSE(HasLegacyFields(spec.algorithm()));
  v1::ExperimentSpec again = spec;
  MigrateLegacyAlgorithm(&again);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(again, spec));  // idempotent

  // Settings today's rules refuse are moved but not completed; the searcher takes defaults.
  v1::ExperimentSpec odd = Legacy(R"(name: "random" startup_trials: 5)");
  MigrateLegacyAlgorithm(&odd);
  EXPECT_THAT(odd.algorithm().options(), UnorderedElementsAre(Pair("startup_trials", "5")));
  EXPECT_EQ(SearchConfig(odd).sampler, search::Config::Sampler::kRandom);
  EXPECT_FALSE(ValidateSpec(&odd, "/").ok());

  v1::ExperimentSpec ablation;
  ablation.mutable_algorithm()->set_name("ablation");
  v1::ExperimentSpec copy = ablation;
  MigrateLegacyAlgorithm(&copy);
  EXPECT_EQ(copy.SerializeAsString(), ablation.SerializeAsString());
}

// rungd migrates an experiment when it loads it from the store: `rung show` then tells its
// options like those of a new one.
TEST(SearchConfigTest, LoadingAStoredExperimentMigratesItsSpec) {
  testing::TempDir dir;
  auto store = Store::Open(dir.Sub("db"));
  ASSERT_TRUE(store.ok()) << store.status();
  v1::Experiment e;
  e.set_id("e1");
  *e.mutable_spec() = Legacy(R"(name: "gp" seed: 1 startup_trials: 4 acquisition: "ei")");
  auto searcher = search::NewSearcher(SearchConfig(e.spec()));
  ASSERT_TRUE(searcher.ok()) << searcher.status();
  auto run = ExperimentRun::Load(store->get(), e, std::move(*searcher));
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_FALSE(HasLegacyFields((*run)->spec().algorithm()));
  EXPECT_THAT((*run)->spec().algorithm().options(),
              UnorderedElementsAre(Pair("startup_trials", "4"), Pair("acquisition", "ei")));
}

}  // namespace
}  // namespace rung
