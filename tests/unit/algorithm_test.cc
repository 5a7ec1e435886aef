// The algorithm registry (server/search/algorithm.h): lookups, the generic checks of options,
// the defaults written back, and each registered algorithm's configuration.
#include "server/search/algorithm.h"

#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rung::search {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using Options = std::map<std::string, std::string>;

const AlgorithmInfo& Get(absl::string_view name) {
  static const AlgorithmInfo kNone;
  absl::StatusOr<const AlgorithmInfo*> a = FindAlgorithm(name);
  EXPECT_TRUE(a.ok()) << a.status();
  return a.ok() ? **a : kNone;
}

// The error ValidateOptions gives for `options` of algorithm `name` (under "algorithm").
std::string Error(absl::string_view name, Options options) {
  absl::StatusOr<OptionValues> v = ValidateOptions(Get(name), "algorithm", &options);
  EXPECT_FALSE(v.ok());
  if (v.ok()) return "ok";
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(v.status().message());
}

// Config made by `name` from `options` (defaults for the rest).
Config Configured(absl::string_view name, Options options = {}) {
  Config c;
  absl::Status s = Configure(Get(name), std::move(options), &c);
  EXPECT_TRUE(s.ok()) << s;
  return c;
}

// What an algorithm sets in a Config, as text, so that two can be compared and printed.
std::string Describe(const Config& c) {
  return absl::StrCat("sampler=", static_cast<int>(c.sampler), " startup=", c.tpe_startup,
                      " multivariate=", c.tpe_multivariate, " ucb=", c.gp_ucb,
                      " rule=", static_cast<int>(c.stopping.rule),
                      " eta=", c.stopping.reduction_factor, " promote=", c.stopping.promote,
                      " max_rungs=", c.stopping.max_rungs, " min_trials=", c.stopping.min_trials,
                      " grace=", c.stopping.grace, " population=", c.pbt.population,
                      " interval=", c.pbt.interval, " quantile=", c.pbt.quantile,
                      " resample=", c.pbt.resample_probability,
                      " factors=", absl::StrJoin(c.pbt.factors, ","), " pb2=", c.pbt.pb2);
}

TEST(AlgorithmTest, UnknownAlgorithmListsTheRegisteredOnes) {
  absl::StatusOr<const AlgorithmInfo*> a = FindAlgorithm("bayes");
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.status().message(),
            "unknown algorithm 'bayes' (known: random, grid, tpe, gp, asha, hyperband, bohb, pbt, "
            "pb2)");
  EXPECT_FALSE(FindAlgorithm("").ok());
  EXPECT_EQ(Get("tpe").name, std::string("tpe"));
}

// The registrations themselves: unique names, a summary, options named once with a valid
// default, and an option shared by several algorithms has one type everywhere.
TEST(AlgorithmTest, RegistrationsAreWellFormed) {
  std::set<std::string> names;
  std::map<std::string, Option::Type> types;
  for (const AlgorithmInfo* a : Algorithms()) {
    SCOPED_TRACE(a->name);
    EXPECT_TRUE(names.insert(a->name).second);
    EXPECT_STRNE(a->summary, "");
    EXPECT_NE(a->configure, nullptr);
    std::set<std::string> options;
    for (const Option& o : a->options) {
      EXPECT_TRUE(options.insert(o.name).second) << o.name;
      EXPECT_STRNE(o.help, "") << o.name;
      auto [it, inserted] = types.emplace(o.name, o.type);
      EXPECT_EQ(it->second, o.type) << o.name << " has two types";
      if (o.type == Option::Type::kChoice) {
        EXPECT_FALSE(o.choices.empty()) << o.name;
      }
    }
  }
}

// An empty spec gets every option the algorithm takes, at its default, in canonical form.
TEST(AlgorithmTest, DefaultsAreFilledIn) {
  for (const AlgorithmInfo* a : Algorithms()) {
    SCOPED_TRACE(a->name);
    Options options;
    absl::StatusOr<OptionValues> v = ValidateOptions(*a, "algorithm", &options);
    ASSERT_TRUE(v.ok()) << v.status();
    Options defaults;
    for (const Option& o : a->options) defaults[o.name] = o.default_value;
    EXPECT_EQ(options, defaults);  // the written defaults are canonical already
    EXPECT_EQ(v->values().size(), a->options.size());
  }
  Options tpe = {{"multivariate", "on"}};
  ASSERT_TRUE(ValidateOptions(Get("tpe"), "algorithm", &tpe).ok());
  EXPECT_THAT(tpe, ElementsAre(Pair("multivariate", "true"), Pair("startup_trials", "10")));
  Options gp = {{"startup_trials", "007"}};
  ASSERT_TRUE(ValidateOptions(Get("gp"), "algorithm", &gp).ok());
  EXPECT_THAT(gp, ElementsAre(Pair("acquisition", "ei"), Pair("startup_trials", "7")));
}

TEST(AlgorithmTest, UnknownOptionsNameTheOptionAndListTheAlgorithms) {
  EXPECT_EQ(
      Error("tpe", {{"startup_trails", "5"}}),
      "algorithm.startup_trails: unknown option (tpe's options: startup_trials, multivariate)");
  EXPECT_EQ(Error("random", {{"startup_trials", "5"}}),
            "algorithm.startup_trials: applies to tpe, gp and bohb only (random has no options)");
  EXPECT_EQ(Error("gp", {{"multivariate", "true"}}),
            "algorithm.multivariate: applies to tpe and bohb only (gp's options: startup_trials, "
            "acquisition)");
  // A rung rule's setting beside a sampler without a rule: early_stopping is where it goes.
  EXPECT_EQ(Error("grid", {{"reduction_factor", "3"}}),
            "algorithm.reduction_factor: applies to asha, hyperband and bohb only (grid has no "
            "options); with grid "
            "put them under early_stopping");
  EXPECT_EQ(Error("asha", {{"acquisition", "ucb"}}),
            "algorithm.acquisition: applies to gp only (asha's options: reduction_factor, mode, "
            "max_rungs)");
}

// Each registered option refuses a value of the wrong type and one out of its range, naming
// itself, the range and the value as written.
TEST(AlgorithmTest, EachOptionChecksItsTypeAndBounds) {
  for (const AlgorithmInfo* a : Algorithms()) {
    for (const Option& o : a->options) {
      SCOPED_TRACE(absl::StrCat(a->name, ".", o.name));
      const std::string field = absl::StrCat("algorithm.", o.name, ": ");
      switch (o.type) {
        case Option::Type::kInt:
          EXPECT_THAT(Error(a->name, {{o.name, "x"}}), HasSubstr(field + "must be an integer"));
          EXPECT_THAT(Error(a->name, {{o.name, "1.5"}}), HasSubstr("(got \"1.5\")"));
          EXPECT_THAT(Error(a->name, {{o.name, absl::StrCat(o.min - 1)}}),
                      HasSubstr(absl::StrCat(o.max < kNoLimit ? "from " : "of at least ", o.min,
                                             o.max < kNoLimit ? absl::StrCat(" to ", o.max) : "",
                                             " (got \"", o.min - 1, "\")")));
          EXPECT_THAT(Error(a->name, {{o.name, "3000000000"}}), HasSubstr(field));  // beyond int32
          break;
        case Option::Type::kBool:
          EXPECT_EQ(Error(a->name, {{o.name, "maybe"}}),
                    field + "must be true or false (got \"maybe\")");
          break;
        case Option::Type::kChoice:
          EXPECT_EQ(Error(a->name, {{o.name, "nope"}}),
                    absl::StrCat(field, "unknown ", o.name,
                                 " 'nope' (known: ", absl::StrJoin(o.choices, ", "), ")"));
          break;
        case Option::Type::kDouble:
          EXPECT_THAT(Error(a->name, {{o.name, "x"}}), HasSubstr(field + "must be a number"));
          break;
        case Option::Type::kNumbers:
          EXPECT_THAT(Error(a->name, {{o.name, "[1, x]"}}),
                      HasSubstr(field + "must be a list of numbers"));
          EXPECT_THAT(Error(a->name, {{o.name, "[]"}}), HasSubstr("(got \"[]\")"));
          break;
      }
    }
  }
  EXPECT_EQ(Error("tpe", {{"startup_trials", "x"}}),
            "algorithm.startup_trials: must be an integer of at least 1 (got \"x\")");
  EXPECT_EQ(Error("asha", {{"reduction_factor", "1"}}),
            "algorithm.reduction_factor: must be an integer of at least 2 (got \"1\")");
  EXPECT_EQ(Error("hyperband", {{"max_rungs", "-1"}}),
            "algorithm.max_rungs: must be an integer of at least 0 (got \"-1\")");
  EXPECT_EQ(Error("gp", {{"acquisition", "pi"}}),
            "algorithm.acquisition: unknown acquisition 'pi' (known: ei, ucb)");
  EXPECT_EQ(Error("bohb", {{"multivariate", "false"}}),
            "algorithm.multivariate: is always true with bohb (got \"false\")");
  Options bohb = {{"multivariate", "yes"}};
  EXPECT_TRUE(ValidateOptions(Get("bohb"), "algorithm", &bohb).ok());
}

// The types no algorithm uses yet, on an algorithm of the test's own.
TEST(AlgorithmTest, DoubleAndBoundedIntOptions) {
  constexpr Option kOptions[] = {DoubleOption("temperature", "0.5", 0, 1, "how far to wander"),
                                 IntOption("population", "8", 2, 64, "candidates kept")};
  AlgorithmInfo info;
  info.name = "annealing";
  info.options = kOptions;
  auto error = [&](Options o) {
    absl::StatusOr<OptionValues> v = ValidateOptions(info, "algorithm", &o);
    return v.ok() ? std::string("ok") : std::string(v.status().message());
  };
  EXPECT_EQ(error({{"temperature", "2"}}),
            "algorithm.temperature: must be a number from 0 to 1 (got \"2\")");
  EXPECT_EQ(error({{"temperature", "nan"}}),
            "algorithm.temperature: must be a number from 0 to 1 (got \"nan\")");
  EXPECT_EQ(error({{"population", "65"}}),
            "algorithm.population: must be an integer from 2 to 64 (got \"65\")");
  Options o = {{"temperature", "0.250"}};
  absl::StatusOr<OptionValues> v = ValidateOptions(info, "algorithm", &o);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_THAT(o, ElementsAre(Pair("population", "8"), Pair("temperature", "0.25")));
  EXPECT_EQ(v->Double("temperature"), 0.25);
  EXPECT_EQ(v->Int("population"), 8);
  EXPECT_EQ(v->Int("temperature"), 0);  // not an int: the zero value
  EXPECT_EQ(v->Choice("absent"), "");
}

// What each algorithm makes of its defaults: the configuration rung 0.1 made of the same spec
// (its SearchConfig's string switch), pinned here.
TEST(AlgorithmTest, EachAlgorithmsDefaultConfiguration) {
  Config base;
  EXPECT_EQ(Describe(Configured("random")), Describe(base));
  Config grid = base;
  grid.sampler = Config::Sampler::kGrid;
  EXPECT_EQ(Describe(Configured("grid")), Describe(grid));
  Config tpe = base;
  tpe.sampler = Config::Sampler::kTpe;
  tpe.tpe_startup = 10;
  EXPECT_EQ(Describe(Configured("tpe")), Describe(tpe));
  Config gp = tpe;
  gp.sampler = Config::Sampler::kGp;
  EXPECT_EQ(Describe(Configured("gp")), Describe(gp));
  Config asha = base;
  asha.stopping.rule = Stopping::Rule::kAsha;
  asha.stopping.reduction_factor = 3;
  EXPECT_EQ(Describe(Configured("asha")), Describe(asha));
  Config hyperband = asha;
  hyperband.stopping.rule = Stopping::Rule::kHyperband;
  EXPECT_EQ(Describe(Configured("hyperband")), Describe(hyperband));
  Config bohb = hyperband;
  bohb.sampler = Config::Sampler::kTpe;
  bohb.tpe_multivariate = true;
  EXPECT_EQ(Describe(Configured("bohb")), Describe(bohb));

  Config promote = asha;
  promote.stopping.reduction_factor = 4;
  promote.stopping.promote = true;
  promote.stopping.max_rungs = 2;
  EXPECT_EQ(Describe(Configured(
                "asha", {{"reduction_factor", "4"}, {"mode", "promote"}, {"max_rungs", "2"}})),
            Describe(promote));
  Config ucb = gp;
  ucb.gp_ucb = true;
  ucb.tpe_startup = 3;
  EXPECT_EQ(Describe(Configured("gp", {{"acquisition", "ucb"}, {"startup_trials", "3"}})),
            Describe(ucb));
}

// Each option that can change changes the configuration: none is declared and then ignored
// (or read under another name) by its algorithm's configure.
TEST(AlgorithmTest, EveryOptionChangesTheConfiguration) {
  for (const AlgorithmInfo* a : Algorithms()) {
    const std::string defaults = Describe(Configured(a->name));
    for (const Option& o : a->options) {
      if (o.fixed) continue;
      SCOPED_TRACE(absl::StrCat(a->name, ".", o.name));
      std::string other;
      switch (o.type) {
        case Option::Type::kInt:
        case Option::Type::kDouble: {
          const double d = std::stod(o.default_value);
          other = absl::StrCat(d + 1 <= o.max ? d + 1 : (d + std::max(o.min, 0.0)) / 2);
          break;
        }
        case Option::Type::kNumbers:
          other = "[2]";
          break;
        case Option::Type::kBool:
          other = std::string(o.default_value) == "true" ? "false" : "true";
          break;
        case Option::Type::kChoice:
          other = o.choices[0] == std::string(o.default_value) ? o.choices[1] : o.choices[0];
          break;
      }
      EXPECT_NE(Describe(Configured(a->name, {{o.name, other}})), defaults);
    }
  }
}

// stops_trials says what configure does: an algorithm either brings a rule or takes one from
// early_stopping. The searcher it describes can be made.
TEST(AlgorithmTest, FlagsAgreeWithTheConfiguration) {
  for (const AlgorithmInfo* a : Algorithms()) {
    SCOPED_TRACE(a->name);
    Config c = Configured(a->name);
    EXPECT_EQ(a->stops_trials, c.stopping.rule != Stopping::Rule::kNone);
    EXPECT_EQ(a->learns_from_warm_start,
              c.sampler == Config::Sampler::kTpe || c.sampler == Config::Sampler::kGp);
    EXPECT_EQ(a->needs_max_trials, c.sampler != Config::Sampler::kGrid && !a->population);
    EXPECT_EQ(a->population, c.sampler == Config::Sampler::kPopulation);
    c.space = {{"x", Param::Kind::kFloat, 0, 1, false, {}, {}, 4}};
    c.max_trials = 4;
    c.resource_min = 1;
    c.resource_max = 9;
    absl::StatusOr<std::unique_ptr<Searcher>> s = NewSearcher(c);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_FALSE((*s)->Handle(TrialsWanted{1}).empty());
  }
}

}  // namespace
}  // namespace rung::search
