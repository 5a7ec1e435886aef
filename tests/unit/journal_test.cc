// The searcher journal: its text round-trips every event, and a replay through a fresh
// searcher repeats the decisions of one that was torn down and restored from its snapshot
// again and again, as rungd is when killed.
#include "server/search/journal.h"

#include <cmath>
#include <deque>
#include <map>
#include <random>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/search_fixtures.h"

namespace rung::search {
namespace {

using ::testing::HasSubstr;

TEST(JournalTest, EventTextRoundTripsEveryKind) {
  Proposal p;
  p.index = 7;
  p.params = {{"lr", 0.001},
              {"depth", int64_t{-3}},
              {"act", std::string("a b\\c\n\"")},
              {"empty", std::string()}};
  p.model = {"hyp 0.1 0.2", "", "warp=1"};
  const std::vector<Event> events = {
      TrialsWanted{3},
      TrialsWanted{1, std::nullopt, true},
      TrialsWanted{1, p, true},
      TrialReported{4, 2.5, -1e-300},
      TrialPaused{9},
      TrialClosed{2, TrialClosed::Outcome::kStopped, false, 0, {}, true},
      TrialClosed{
          5, TrialClosed::Outcome::kCompleted, true, 0.1 + 0.2, {0.30000000000000004, 17}, false},
      TrialClosed{6, TrialClosed::Outcome::kFailed, false, 0, {}, true},
  };
  for (const Event& e : events) {
    const std::string text = EventText(e);
    auto back = ParseEvent(text);
    ASSERT_TRUE(back.ok()) << text << ": " << back.status();
    EXPECT_EQ(EventText(*back), text);
    EXPECT_EQ(text.find('\n'), std::string::npos) << text;
  }
  auto wanted = std::get<TrialsWanted>(*ParseEvent(EventText(TrialsWanted{1, p, true})));
  ASSERT_TRUE(wanted.proposal.has_value());
  EXPECT_EQ(wanted.proposal->params, p.params);
  EXPECT_EQ(wanted.proposal->model, p.model);
  auto closed = std::get<TrialClosed>(*ParseEvent(EventText(events[6])));
  EXPECT_EQ(closed.result, 0.1 + 0.2);  // exact, not rounded
  EXPECT_FALSE(closed.feasible);
}

TEST(JournalTest, GarbageIsRefusedWithTheTextQuoted) {
  for (const char* bad : {"", "wanted", "wanted 1", "wanted 1 2", "reported 1 x 2",
                          "closed 1 q 0 0 1 0", "closed 1 c 0 0 1 2 0.5", "paused 1 extra",
                          "launch 1", "wanted 1 1 proposal 0 1 lr z:1 0"}) {
    auto e = ParseEvent(bad);
    EXPECT_FALSE(e.ok()) << bad;
    EXPECT_THAT(e.status().message(), HasSubstr("not a searcher event")) << bad;
  }
}

// Drives a TPE + ASHA searcher the way rungd does, with a journal entry and a snapshot for
// every call; "crashes" (a new searcher restored from the last snapshot, any model job in
// flight lost) at random moments.
std::vector<JournalEntry> DriveWithCrashes(const Config& config, uint64_t seed, int* crashes,
                                           std::string* final_snapshot) {
  std::mt19937_64 rng(seed);
  auto s = std::move(NewSearcher(config).value());
  std::string snapshot = s->Snapshot();
  std::vector<JournalEntry> journal = {{"start", snapshot}};
  struct Running {
    int index;
    Params params;
    double budget;
    int step = 0;
  };
  std::deque<Running> running;
  auto apply = [&](const std::vector<Action>& actions) {
    for (const Action& a : actions) {
      if (const auto* c = std::get_if<Create>(&a))
        running.push_back({c->index, c->params, c->budget});
      if (const auto* st = std::get_if<Stop>(&a)) {
        for (auto it = running.begin(); it != running.end(); ++it) {
          if (it->index == st->index) {
            running.erase(it);
            break;
          }
        }
      }
    }
  };
  auto handle = [&](const Event& e) {
    auto actions = s->Handle(e);
    journal.push_back({EventText(e), ActionsText(actions)});
    snapshot = s->Snapshot();
    apply(actions);
  };
  std::function<Proposal()> job;
  int done = 0;
  while (done < config.max_trials) {
    if (rng() % 7 == 0) {  // kill -9: memory is lost, the store keeps what was committed
      ++*crashes;
      s = std::move(NewSearcher(config).value());
      EXPECT_TRUE(s->Restore(snapshot).ok());
      job = nullptr;
    }
    if (running.size() < 4 && !job) {
      if ((job = s->Propose())) {
        journal.push_back({"propose", ""});
        snapshot = s->Snapshot();
        continue;
      }
      const size_t before = running.size();
      handle(TrialsWanted{1});
      if (running.size() > before) continue;
    }
    if (job && rng() % 2 == 0) {
      handle(TrialsWanted{1, job(), true});
      job = nullptr;
      continue;
    }
    if (running.empty()) break;
    Running& r = running[rng() % running.size()];
    const double value = testing::MixedObjective(r.params) + 1.0 / (1 + r.step);
    const int reporter = r.index;
    ++r.step;
    handle(TrialReported{reporter, static_cast<double>(r.step), value});  // may stop it: r dangles
    for (Running& x : running) {
      if (x.index == reporter && x.step >= x.budget) {
        const int index = x.index;
        apply({Stop{index, ""}});
        handle(TrialClosed{index, TrialClosed::Outcome::kCompleted, true, value});
        ++done;
        break;
      }
    }
  }
  *final_snapshot = snapshot;
  return journal;
}

Config AshaTpe(uint64_t seed) {
  Config c = testing::MixedSpace(Config::Sampler::kTpe, seed);
  c.max_trials = 40;
  c.tpe_startup = 5;
  c.resource_min = 1;
  c.resource_max = 9;
  c.stopping.rule = Stopping::Rule::kAsha;
  c.stopping.reduction_factor = 3;
  return c;
}

TEST(JournalTest, ReplayRepeatsEveryDecisionOfASearcherRestoredAfterCrashes) {
  for (uint64_t seed : {1, 2, 3}) {
    const Config config = AshaTpe(seed);
    int crashes = 0;
    std::string last;
    const auto journal = DriveWithCrashes(config, seed, &crashes, &last);
    EXPECT_GT(crashes, 5);
    int proposals = 0, stops = 0;
    for (const auto& e : journal) {
      proposals += e.call == "propose";
      stops += e.actions.find("stop ") != std::string::npos;
    }
    EXPECT_GT(proposals, 10);  // the model's jobs are in the journal
    EXPECT_GT(stops, 3);       // and so are ASHA's decisions
    int64_t replayed = 0;
    EXPECT_TRUE(Replay(config, journal, last, &replayed).ok());
    EXPECT_EQ(replayed, static_cast<int64_t>(journal.size()) - 1);
  }
}

TEST(JournalTest, ReplayNamesTheFirstDecisionThatDiffers) {
  const Config config = AshaTpe(4);
  int crashes = 0;
  std::string last;
  auto journal = DriveWithCrashes(config, 4, &crashes, &last);
  int64_t replayed = 0;
  ASSERT_TRUE(Replay(config, journal, last, &replayed).ok());
  // State the decisions do not show yet must match as well.
  EXPECT_THAT(Replay(config, journal, last + "x", &replayed).message(), HasSubstr("state differs"));
  // A decision recorded differently (as a lost-and-remade proposal would be).
  size_t at = 0;
  for (size_t i = 1; i < journal.size() && at == 0; ++i) {
    if (absl::StartsWith(journal[i].actions, "create ")) at = i;
  }
  ASSERT_GT(at, 0u);
  journal[at].actions += " x=d:1";
  absl::Status s = Replay(config, journal, last, &replayed);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("journal entry ", at, " (wanted 1")));
  EXPECT_EQ(replayed, static_cast<int64_t>(at) - 1);
  // A journal must start from the searcher's first snapshot.
  journal.erase(journal.begin());
  EXPECT_THAT(Replay(config, journal, last, &replayed).message(), HasSubstr("does not begin"));
}

// rungd writes a checkpoint (the searcher's snapshot) into the journal now and then and
// drops what came before the previous one: a replay begins at a checkpoint and checks every
// later one against the state it replayed to.
TEST(JournalTest, ReplayBeginsAtACheckpointAndChecksEachOneOnTheWay) {
  const Config config = AshaTpe(5);
  int crashes = 0;
  std::string last;
  const auto journal = DriveWithCrashes(config, 5, &crashes, &last);
  ASSERT_GT(journal.size(), 40u);
  // The snapshot after the first k entries, as a checkpoint entry.
  auto checkpoint = [&](size_t k) {
    auto s = NewSearcher(config);
    int64_t n = 0;
    EXPECT_TRUE(ReplayInto(s->get(), {journal.begin(), journal.begin() + k}, &n).ok());
    return JournalEntry{"checkpoint", (*s)->Snapshot()};
  };
  const size_t a = journal.size() / 3, b = 2 * journal.size() / 3;
  std::vector<JournalEntry> kept = {checkpoint(a)};
  kept.insert(kept.end(), journal.begin() + a, journal.begin() + b);
  kept.push_back(checkpoint(b));
  kept.insert(kept.end(), journal.begin() + b, journal.end());
  int64_t replayed = 0;
  ASSERT_TRUE(Replay(config, kept, last, &replayed).ok());
  EXPECT_EQ(replayed, static_cast<int64_t>(kept.size()) - 1);
  // A checkpoint that does not match what the entries before it decided is named.
  kept[b - a + 1].actions = kept[0].actions;
  absl::Status s = Replay(config, kept, last, &replayed);
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("journal entry ", b - a + 1, " (a checkpoint)")));
  EXPECT_EQ(replayed, static_cast<int64_t>(b - a));
}

// Population-based training (pbt, pb2) the way rungd drives it: members report, pause at
// their ready points and are continued (with a donor and new parameters when they exploit),
// in an order drawn at random, with crashes; the journal replays every decision.
TEST(JournalTest, PopulationBasedTrainingReplaysAfterCrashes) {
  for (bool pb2 : {false, true}) {
    SCOPED_TRACE(pb2 ? "pb2" : "pbt");
    Config config;
    config.sampler = Config::Sampler::kPopulation;
    config.space = {{"lr", Param::Kind::kFloat, 1e-4, 1, true},
                    {"opt", Param::Kind::kCategorical, 0, 0, false, {"sgd", "adam", "rms"}}};
    config.goal = Goal::kMinimize;
    config.seed = 9;
    config.max_trials = 6;
    config.resource_max = 20;
    config.pbt.population = 6;
    config.pbt.interval = 2;
    config.pbt.pb2 = pb2;
    std::mt19937_64 rng(pb2 ? 2 : 1);
    auto s = std::move(NewSearcher(config).value());
    std::string snapshot = s->Snapshot();
    std::vector<JournalEntry> journal = {{"start", snapshot}};
    std::map<int, std::pair<Params, double>> members;  // index -> (params, budget)
    std::vector<int> runnable;
    int crashes = 0, exploits = 0;
    auto handle = [&](const Event& e) {
      auto actions = s->Handle(e);
      journal.push_back({EventText(e), ActionsText(actions)});
      snapshot = s->Snapshot();
      for (const Action& a : actions) {
        if (const auto* c = std::get_if<Create>(&a)) {
          members[c->index] = {c->params, c->budget};
          runnable.push_back(c->index);
        } else if (const auto* c = std::get_if<Continue>(&a)) {
          if (!c->params.empty()) members[c->index].first = c->params;
          members[c->index].second = c->budget;
          exploits += c->from >= 0;
          runnable.push_back(c->index);
        }
      }
    };
    handle(TrialsWanted{1});
    while (!runnable.empty()) {
      if (rng() % 3 == 0) {
        ++crashes;
        s = std::move(NewSearcher(config).value());
        ASSERT_TRUE(s->Restore(snapshot).ok());
      }
      const size_t pick = rng() % runnable.size();
      const int i = runnable[pick];
      runnable.erase(runnable.begin() + static_cast<std::ptrdiff_t>(pick));
      const auto& [params, budget] = members[i];
      const double lr = std::get<double>(params.at("lr"));
      const double value = std::fabs(std::log10(lr) + 2) + 1 / budget;
      handle(TrialReported{i, budget, value});
      if (budget >= config.resource_max) {
        handle(TrialClosed{i, TrialClosed::Outcome::kCompleted, true, value});
      } else {
        handle(TrialPaused{i});
      }
    }
    EXPECT_EQ(journal.back().actions, "done");
    EXPECT_GT(crashes, 10);
    EXPECT_GT(exploits, 5);
    int64_t replayed = 0;
    EXPECT_TRUE(Replay(config, journal, snapshot, &replayed).ok());
    EXPECT_EQ(replayed, static_cast<int64_t>(journal.size()) - 1);
  }
}

}  // namespace
}  // namespace rung::search
