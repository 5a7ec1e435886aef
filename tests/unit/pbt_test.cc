#include "server/search/pbt.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rung::search {
namespace {

Param Float(const std::string& name, double lo, double hi, bool log = false) {
  Param p;
  p.name = name;
  p.min = lo;
  p.max = hi;
  p.log = log;
  return p;
}

Param Int(const std::string& name, double lo, double hi) {
  Param p = Float(name, lo, hi);
  p.kind = Param::Kind::kInt;
  return p;
}

Param Cat(const std::string& name, std::vector<std::string> values) {
  Param p;
  p.name = name;
  p.kind = Param::Kind::kCategorical;
  p.values = std::move(values);
  return p;
}

PbtOptions Options(int population, double resample = 0.25) {
  PbtOptions o;
  o.population = population;
  o.resample_probability = resample;
  return o;
}

TEST(PbtTest, NobodyExploitsUntilThereIsATopAndABottom) {
  Population pop({Float("lr", 0.001, 1)}, Goal::kMinimize, Options(4), 1);
  // One member ranked: the bottom quantile and the top are the same member.
  EXPECT_FALSE(pop.Ready(0, 4, 0.9, {{"lr", 0.1}}).exploit);
  // Two ranked (a quarter of 2 rounds up to 1): the worse exploits the better.
  Population::Decision d = pop.Ready(1, 4, 0.5, {{"lr", 0.2}});
  EXPECT_FALSE(d.exploit);  // member 1 is the better one
  d = pop.Ready(0, 8, 0.95, {{"lr", 0.1}});
  ASSERT_TRUE(d.exploit);
  EXPECT_EQ(d.donor, 1);
  EXPECT_EQ(d.donor_at, 4);
}

TEST(PbtTest, TheBottomQuantileTakesFromTheTopQuantileOnly) {
  Population pop({Float("lr", 0.001, 1)}, Goal::kMaximize, Options(8), 3);
  for (int m = 0; m < 8; ++m) pop.Ready(m, 4, m, {{"lr", 0.01 * (m + 1)}});  // 7 is the best
  std::set<int> donors;
  for (int round = 0; round < 50; ++round) {
    Population::Decision d = pop.Ready(0, 8 + round, 0, {{"lr", 0.01}});
    ASSERT_TRUE(d.exploit);
    donors.insert(d.donor);
    // The middle of the population goes on as it is.
    EXPECT_FALSE(pop.Ready(4, 8 + round, 4, {{"lr", 0.05}}).exploit);
  }
  EXPECT_EQ(donors, (std::set<int>{6, 7}));  // the top quarter of 8
}

TEST(PbtTest, ExploreMultipliesByAFactorMovesCategoriesAndKeepsTheRange) {
  Population pop({Float("lr", 0.001, 1, /*log=*/true), Int("width", 1, 64),
                  Cat("act", {"relu", "tanh", "gelu"})},
                 Goal::kMinimize, Options(4, /*resample=*/0), 7);
  std::set<std::string> acts;
  for (int i = 0; i < 200; ++i) {
    const Params out = pop.Explore({{"lr", 0.5}, {"width", int64_t{10}}, {"act", "tanh"}});
    const double lr = std::get<double>(out.at("lr"));
    EXPECT_TRUE(std::fabs(lr - 0.4) < 1e-12 || std::fabs(lr - 0.6) < 1e-12) << lr;
    const int64_t width = std::get<int64_t>(out.at("width"));
    EXPECT_TRUE(width == 8 || width == 12) << width;
    acts.insert(std::get<std::string>(out.at("act")));
  }
  EXPECT_EQ(acts, (std::set<std::string>{"relu", "gelu"}));  // tanh's neighbours
  // At the ends of the ranges: clipped, and the first category's only neighbour.
  const Params edge = pop.Explore({{"lr", 1.0}, {"width", int64_t{1}}, {"act", "relu"}});
  EXPECT_LE(std::get<double>(edge.at("lr")), 1.0);
  EXPECT_GE(std::get<int64_t>(edge.at("width")), 1);
  EXPECT_EQ(std::get<std::string>(edge.at("act")), "tanh");
}

TEST(PbtTest, ResamplingDrawsFromTheSearchSpaceAndConditionsHold) {
  Param child = Float("momentum", 0.5, 0.99);
  child.parent = "opt";
  child.parent_values = {"sgd"};
  Population pop({Cat("opt", {"sgd", "adam"}), child, Float("lr", 0.001, 1, true)}, Goal::kMinimize,
                 Options(4, /*resample=*/1), 11);
  int with_momentum = 0;
  for (int i = 0; i < 200; ++i) {
    const Params out = pop.Explore({{"opt", "adam"}, {"lr", 0.5}});
    const double lr = std::get<double>(out.at("lr"));
    EXPECT_GE(lr, 0.001);
    EXPECT_LE(lr, 1);
    const bool sgd = std::get<std::string>(out.at("opt")) == "sgd";
    EXPECT_EQ(out.count("momentum"), sgd ? 1u : 0u);  // a child exists with its parent's value
    with_momentum += sgd;
  }
  EXPECT_GT(with_momentum, 50);
  EXPECT_LT(with_momentum, 150);
}

TEST(PbtTest, SameSeedSameDecisionsAndASnapshotGoesOnIdentically) {
  auto run = [](Population* pop, int from, int to, std::vector<std::string>* log) {
    for (int step = from; step < to; ++step) {
      const int m = step % 6;
      Population::Decision d =
          pop->Ready(m, step, std::sin(step * 1.7 + m), {{"lr", 0.01 * (m + 1)}, {"act", "relu"}});
      log->push_back(absl::StrCat(d.exploit, " ", d.donor, " ", d.donor_at, " ",
                                  std::get<double>(d.params.at("lr")), " ",
                                  std::get<std::string>(d.params.at("act"))));
    }
  };
  const std::vector<Param> space = {Float("lr", 0.0001, 1, true), Cat("act", {"relu", "tanh"})};
  Population a(space, Goal::kMinimize, Options(6), 42), b(space, Goal::kMinimize, Options(6), 42);
  std::vector<std::string> la, lb;
  run(&a, 0, 60, &la);
  run(&b, 0, 30, &lb);
  std::vector<std::string> saved;
  b.Save(&saved);
  Population c(space, Goal::kMinimize, Options(6), 999);  // its own seed is overwritten
  ASSERT_TRUE(c.Load(saved));
  run(&c, 30, 60, &lb);
  EXPECT_EQ(la, lb);
  EXPECT_GT(std::count_if(la.begin(), la.end(), [](const std::string& s) { return s[0] == '1'; }),
            5);
  EXPECT_FALSE(c.Load({"not a generator"}));
}

// The toy problem of the PBT paper (Jaderberg et al., 2017, figure 2): maximise
// Q(θ) = 1.2 − (θ₀² + θ₁²) by gradient ascent on the surrogate Q̂(θ|h) = 1.2 − (h₀θ₀² + h₁θ₁²).
// Two members start at θ = (0.9, 0.9) with h = (1, 0) and h = (0, 1). Kept fixed (grid
// search over those h), each can only shrink one coordinate; with PBT a member copies the
// better θ (exploit) and moves its h (explore), so both shrink.
TEST(PbtTest, ThePapersToyProblemBeatsGridSearch) {
  struct Member {
    double theta[2] = {0.9, 0.9};
    double h[2];
  };
  const double step = 0.01;
  const int steps = 200, interval = 4;
  auto q = [](const Member& m) {
    return 1.2 - (m.theta[0] * m.theta[0] + m.theta[1] * m.theta[1]);
  };
  auto train = [&](Member* m) {
    for (int k = 0; k < 2; ++k) m->theta[k] -= step * 2 * m->h[k] * m->theta[k];
  };

  // Grid search: h fixed.
  Member grid[2];
  grid[0].h[0] = 1, grid[0].h[1] = 0;
  grid[1].h[0] = 0, grid[1].h[1] = 1;
  for (int s = 0; s < steps; ++s) {
    for (Member& m : grid) train(&m);
  }
  const double grid_best = std::max(q(grid[0]), q(grid[1]));

  // PBT, population 2: at every ready point the worse member takes the better one's θ and
  // explores its h.
  PbtOptions o = Options(2);
  o.quantile = 0.5;
  Population pop({Float("h0", 0, 1), Float("h1", 0, 1)}, Goal::kMaximize, o, 5);
  Member pbt[2] = {grid[0], grid[1]};
  for (Member& m : pbt) m.theta[0] = m.theta[1] = 0.9;
  std::vector<Member> at_ready(2);
  int exploits = 0;
  for (int s = 1; s <= steps; ++s) {
    for (int i = 0; i < 2; ++i) {
      train(&pbt[i]);
      if (s % interval != 0) continue;
      at_ready[i] = pbt[i];  // its checkpoint at this ready point
      Population::Decision d =
          pop.Ready(i, s, q(pbt[i]), {{"h0", pbt[i].h[0]}, {"h1", pbt[i].h[1]}});
      if (!d.exploit) continue;
      ++exploits;
      std::copy(at_ready[d.donor].theta, at_ready[d.donor].theta + 2, pbt[i].theta);
      pbt[i].h[0] = std::get<double>(d.params.at("h0"));
      pbt[i].h[1] = std::get<double>(d.params.at("h1"));
    }
  }
  const double pbt_best = std::max(q(pbt[0]), q(pbt[1]));
  EXPECT_GT(exploits, 0);
  EXPECT_LT(grid_best, 0.5);  // one coordinate stays at 0.9: Q ≤ 1.2 − 0.81
  EXPECT_GT(pbt_best, 1.15);  // both shrink: close to the optimum 1.2
  EXPECT_GT(pbt_best, grid_best + 0.5);
}

}  // namespace
}  // namespace rung::search

namespace rung::search {
namespace {

// The toy problem through the searcher, with a stand-in for the controller: each member trains
// `interval` steps a segment, reports Q, and pauses; Continue says whether it goes on with its
// own θ or a donor's θ at the donor's ready point, and with which h. Beside it, the same
// members with the h they were created with, never changed (the grid point each started at).
struct ToyRun {
  double best = 0;
  int exploits = 0;
  std::vector<std::string> actions;
};

ToyRun RunToy(bool pbt, uint64_t seed, Searcher* resume_into = nullptr, int stop_after = -1,
              bool pb2 = false) {
  Config c;
  c.space = {Float("h0", 0, 1), Float("h1", 0, 1)};
  c.goal = Goal::kMaximize;
  c.seed = seed;
  c.max_trials = 2;
  c.resource_max = 200;
  PbtOptions o;
  o.population = 2;
  o.interval = 4;
  o.quantile = 0.5;
  o.pb2 = pb2;
  std::unique_ptr<Searcher> owned = NewPbtSearcher(c, o);
  Searcher* s = owned.get();
  struct State {
    double theta[2] = {0.9, 0.9};
    double h[2] = {0, 0};
    double budget = 0;
  };
  std::map<int, State> members;
  std::map<std::pair<int, double>, State> checkpoints;  // (member, ready point) -> its state
  std::deque<int> runnable;
  ToyRun run;
  auto q = [](const State& m) { return 1.2 - (m.theta[0] * m.theta[0] + m.theta[1] * m.theta[1]); };
  auto apply = [&](const std::vector<Action>& actions) {
    for (const Action& a : actions) {
      if (const auto* create = std::get_if<Create>(&a)) {
        State& m = members[create->index];
        m.h[0] = std::get<double>(create->params.at("h0"));
        m.h[1] = std::get<double>(create->params.at("h1"));
        m.budget = create->budget;
        runnable.push_back(create->index);
        run.actions.push_back(absl::StrCat("create ", create->index, " ", m.h[0], " ", m.h[1]));
      } else if (const auto* cont = std::get_if<Continue>(&a)) {
        State& m = members[cont->index];
        // From its own ready point, or, when it exploits, from the donor's.
        EXPECT_EQ(cont->budget,
                  std::min((cont->from >= 0 ? cont->from_resource : m.budget) + 4, 200.0));
        if (pbt && cont->from >= 0) {
          const auto at = checkpoints.find({cont->from, cont->from_resource});
          EXPECT_NE(at, checkpoints.end())
              << "no checkpoint of " << cont->from << " at " << cont->from_resource;
          std::copy(at->second.theta, at->second.theta + 2, m.theta);
          m.h[0] = std::get<double>(cont->params.at("h0"));
          m.h[1] = std::get<double>(cont->params.at("h1"));
          ++run.exploits;
        }
        m.budget = cont->budget;
        runnable.push_back(cont->index);
        run.actions.push_back(absl::StrCat("continue ", cont->index, " ", cont->budget, " from ",
                                           cont->from, "@", cont->from_resource));
      } else if (std::holds_alternative<Done>(a)) {
        run.actions.push_back("done");
      }
    }
  };
  apply(s->Handle(TrialsWanted{2}));
  int events = 0;
  while (!runnable.empty()) {
    const int i = runnable.front();
    runnable.pop_front();
    State& m = members[i];
    for (int step = 0; step < 4; ++step) {
      for (int k = 0; k < 2; ++k) m.theta[k] -= 0.01 * 2 * m.h[k] * m.theta[k];
    }
    apply(s->Handle(TrialReported{i, m.budget, q(m)}));
    checkpoints[{i, m.budget}] = m;
    if (m.budget >= 200) {
      TrialClosed closed;
      closed.index = i;
      closed.has_result = true;
      closed.result = q(m);
      apply(s->Handle(closed));
    } else {
      apply(s->Handle(TrialPaused{i}));
    }
    if (++events == stop_after && resume_into != nullptr) {
      EXPECT_TRUE(resume_into->Restore(s->Snapshot()).ok());
      s = resume_into;  // the rest of the run on a searcher restored from the snapshot
    }
  }
  for (const auto& [i, m] : members) run.best = std::max(run.best, q(m));
  return run;
}

TEST(PbtSearcherTest, ThePapersToyProblemThroughTheSearcherBeatsFixedParameters) {
  // Asynchronous PBT ranks a member against the others' latest scores, one interval older; with
  // two members that improve at nearly the same rate each looks the better at its own ready
  // points, and neither exploits (as in Ray Tune). Over seeds, PBT wins where it exploits.
  int wins = 0, exploited = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const ToyRun with = RunToy(/*pbt=*/true, seed), fixed = RunToy(/*pbt=*/false, seed);
    EXPECT_EQ(with.actions.back(), "done");
    if (with.exploits == 0) {
      EXPECT_EQ(with.best, fixed.best) << seed;
      continue;
    }
    ++exploited;
    wins += with.best > fixed.best;
  }
  EXPECT_GE(exploited, 15);
  EXPECT_GE(wins, exploited - 1);
}

TEST(PbtSearcherTest, Pb2OnThePapersToyProblemBeatsFixedParameters) {
  int wins = 0, exploited = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const ToyRun with = RunToy(true, seed, nullptr, -1, /*pb2=*/true);
    const ToyRun fixed = RunToy(false, seed);
    EXPECT_EQ(with.actions.back(), "done");
    if (with.exploits == 0) continue;
    ++exploited;
    wins += with.best > fixed.best;
  }
  EXPECT_GE(exploited, 15);
  EXPECT_GE(wins, exploited * 3 / 4);  // its explore is a model's guess from few segments
}

// A member's segment improves its score by 1 - 4 (lr - 0.3)^2: the best learning rate is 0.3
// wherever the model stands. After a run of such segments over the range, PB2's explore from
// a donor at lr = 0.9 picks learning rates near 0.3, where PBT's perturbation stays near 0.9.
TEST(Pb2Test, TheBanditAimsWhereSegmentsImproveMost) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    PbtOptions o = Options(8);
    o.pb2 = true;
    Population pop({Float("lr", 0.001, 1)}, Goal::kMaximize, o, seed);
    Rng rng(seed);
    struct State {
      double at = 0, value = 0, lr = 0;
    };
    std::vector<State> m(8);
    // Spread over the range, so that the segments show the whole curve.
    for (int i = 0; i < 8; ++i) m[i].lr = (i + rng.Uniform()) / 8;
    for (int round = 0; round < 10; ++round) {
      for (int i = 0; i < 8; ++i) {
        State& s = m[i];
        s.at += 1;
        s.value += 1 - 4 * (s.lr - 0.3) * (s.lr - 0.3);
        Population::Decision d = pop.Ready(i, s.at, s.value, {{"lr", s.lr}});
        if (!d.exploit) continue;
        s.at = d.donor_at;
        s.value = m[d.donor].value;
        s.lr = std::get<double>(d.params.at("lr"));
      }
    }
    double pb2 = 0, pbt = 0;
    for (int k = 0; k < 20; ++k) {
      pb2 += std::fabs(std::get<double>(pop.Pb2Explore({{"lr", 0.9}}, 10, 0).at("lr")) - 0.3);
      pbt += std::fabs(std::get<double>(pop.Explore({{"lr", 0.9}}).at("lr")) - 0.3);
    }
    EXPECT_LT(pb2 / 20, 0.1) << seed;
    EXPECT_LT(pb2, pbt / 2) << seed;
  }
}

TEST(Pb2Test, ObservationsSurviveASnapshot) {
  PbtOptions o = Options(4);
  o.pb2 = true;
  Population a({Float("lr", 0.001, 1), Cat("opt", {"sgd", "adam"})}, Goal::kMinimize, o, 5);
  Population b({Float("lr", 0.001, 1), Cat("opt", {"sgd", "adam"})}, Goal::kMinimize, o, 9);
  for (int round = 1; round <= 6; ++round) {
    for (int i = 0; i < 4; ++i)
      a.Ready(i, round, 1.0 / (round + i), {{"lr", 0.1 * (i + 1)}, {"opt", "sgd"}});
  }
  std::vector<std::string> saved;
  a.Save(&saved);
  EXPECT_GT(
      std::count_if(saved.begin(), saved.end(), [](const std::string& l) { return l[0] == 'o'; }),
      10);
  ASSERT_TRUE(b.Load(saved));
  for (int round = 7; round <= 9; ++round) {
    for (int i = 0; i < 4; ++i) {
      const Params p = {{"lr", 0.1 * (i + 1)}, {"opt", "adam"}};
      Population::Decision da = a.Ready(i, round, 1.0 / (round - i), p);
      Population::Decision db = b.Ready(i, round, 1.0 / (round - i), p);
      EXPECT_EQ(da.exploit, db.exploit);
      EXPECT_EQ(da.donor, db.donor);
      EXPECT_EQ(da.params, db.params);
    }
  }
}

// A score that is best early and worsens as members train on (a model that overfits): the
// members that train past the lucky point rank last and take it back. The lucky score stays
// with the one member that earned it, so the population still moves on and ends (when those
// who took it were ranked by it too, they sent one another back to it for ever).
TEST(PbtSearcherTest, AScoreThatPeaksEarlyDoesNotHoldThePopulationBack) {
  for (bool pb2 : {false, true}) {
    for (uint64_t seed = 1; seed <= 10; ++seed) {
      SCOPED_TRACE(absl::StrCat(pb2 ? "pb2" : "pbt", " seed ", seed));
      Config c;
      c.space = {Float("lr", 0.001, 1, true)};
      c.goal = Goal::kMinimize;
      c.seed = seed;
      c.max_trials = 8;
      c.resource_max = 20;
      PbtOptions o = Options(8);
      o.interval = 2;
      o.pb2 = pb2;
      std::unique_ptr<Searcher> s = NewPbtSearcher(c, o);
      std::mt19937_64 order(seed);
      std::map<int, std::pair<double, double>> members;  // index -> (lr, budget)
      std::vector<int> runnable;
      bool done = false;
      int events = 0;
      auto apply = [&](const std::vector<Action>& actions) {
        for (const Action& a : actions) {
          if (const auto* create = std::get_if<Create>(&a)) {
            members[create->index] = {std::get<double>(create->params.at("lr")), create->budget};
            runnable.push_back(create->index);
          } else if (const auto* cont = std::get_if<Continue>(&a)) {
            auto& [lr, budget] = members[cont->index];
            if (!cont->params.empty()) lr = std::get<double>(cont->params.at("lr"));
            budget = cont->budget;
            runnable.push_back(cont->index);
          } else if (std::holds_alternative<Done>(a)) {
            done = true;
          }
        }
      };
      apply(s->Handle(TrialsWanted{1}));
      while (!runnable.empty() && ++events < 5000) {
        const size_t pick = order() % runnable.size();
        const int i = runnable[pick];
        runnable.erase(runnable.begin() + static_cast<std::ptrdiff_t>(pick));
        const auto [lr, budget] = members[i];
        // Best at 4, then worse each step; members differ a little by lr.
        const double value = std::fabs(budget - 4) * 0.01 + 0.001 * std::fabs(std::log(lr));
        apply(s->Handle(TrialReported{i, budget, value}));
        if (budget >= 20) {
          apply(s->Handle(TrialClosed{i, TrialClosed::Outcome::kCompleted, true, value}));
        } else {
          apply(s->Handle(TrialPaused{i}));
        }
      }
      EXPECT_TRUE(done) << "still running after " << events << " segments";
    }
  }
}

TEST(PbtSearcherTest, ASnapshotMidRunGoesOnIdentically) {
  Config c;
  c.space = {Float("h0", 0, 1), Float("h1", 0, 1)};
  c.goal = Goal::kMaximize;
  c.seed = 3;
  c.max_trials = 2;
  c.resource_max = 200;
  PbtOptions o;
  o.population = 2;
  o.interval = 4;
  o.quantile = 0.5;
  std::unique_ptr<Searcher> fresh = NewPbtSearcher(c, o);
  const ToyRun whole = RunToy(true, 3);
  const ToyRun resumed = RunToy(true, 3, fresh.get(), /*stop_after=*/17);
  EXPECT_EQ(whole.actions, resumed.actions);
  EXPECT_EQ(whole.best, resumed.best);
  EXPECT_FALSE(fresh->Restore("pbt v0").ok());
}

}  // namespace
}  // namespace rung::search
