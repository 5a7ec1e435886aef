// The model hopper schedule (server/search/hopper.h) in a discrete-event simulation: workers
// of random speeds that fail now and then, each holding one partition. Every configuration
// trains on every partition exactly once per epoch, never on two at once, and no partition
// trains two configurations at once; a removed configuration leaves the rotation; a restored
// snapshot schedules what the original would have.
#include "server/search/hopper.h"

#include <map>
#include <queue>
#include <set>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/search/rng.h"

namespace rung::search {
namespace {

using Unit = HopperSchedule::Unit;

struct SimResult {
  std::vector<Unit> done;  // in the order they finished
  double makespan = 0;
  int failures = 0;
};

// Runs the schedule to the end: partition p's worker takes speed[p] * (0.8..1.2) seconds per
// unit, and a unit fails with probability `fail` (its worker then rests 5 s).
SimResult Simulate(HopperSchedule* s, const std::vector<double>& speed, double fail,
                   uint64_t seed) {
  Rng rng(seed);
  SimResult r;
  struct Event {
    double at;
    Unit unit;
    bool ok;
    bool operator>(const Event& o) const { return at > o.at; }
  };
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events;
  std::map<int, double> up_at;  // partition -> when its worker can take a unit again
  std::set<int> running_configs, busy_partitions;
  double now = 0;
  for (int step = 0; step < 100000 && !s->AllDone(); ++step) {
    std::set<int> free;
    for (int p = 0; p < s->partitions(); ++p) {
      if (!busy_partitions.count(p) && up_at[p] <= now) free.insert(p);
    }
    for (const Unit& u : s->Next(free)) {
      EXPECT_TRUE(free.count(u.partition)) << "a unit on a partition that was not free";
      EXPECT_TRUE(running_configs.insert(u.config).second)
          << "configuration " << u.config << " on two partitions at once";
      EXPECT_TRUE(busy_partitions.insert(u.partition).second)
          << "partition " << u.partition << " trains two configurations at once";
      const double took = speed[u.partition] * (0.8 + 0.4 * rng.Uniform());
      events.push({now + took, u, rng.Uniform() >= fail});
    }
    if (events.empty()) {  // every free worker is resting: wait for the first to come back
      double next = 1e300;
      for (const auto& [p, at] : up_at) {
        if (at > now) next = std::min(next, at);
      }
      if (next == 1e300) break;
      now = next;
      continue;
    }
    const Event e = events.top();
    events.pop();
    now = e.at;
    running_configs.erase(e.unit.config);
    busy_partitions.erase(e.unit.partition);
    if (e.ok) {
      s->Done(e.unit);
      r.done.push_back(e.unit);
    } else {
      s->Failed(e.unit);
      ++r.failures;
      up_at[e.unit.partition] = now + 5;
    }
  }
  r.makespan = now;
  return r;
}

// Every configuration trained on every partition exactly once in each of its epochs.
void ExpectEachPartitionOncePerEpoch(const SimResult& r, int configs, int partitions, int epochs) {
  std::map<std::pair<int, int>, std::multiset<int>> seen;  // (config, epoch) -> partitions
  for (const Unit& u : r.done) seen[{u.config, u.epoch}].insert(u.partition);
  for (int c = 0; c < configs; ++c) {
    for (int e = 0; e < epochs; ++e) {
      std::multiset<int> want;
      for (int p = 0; p < partitions; ++p) want.insert(p);
      EXPECT_EQ(seen[std::make_pair(c, e)], want) << "configuration " << c << ", epoch " << e;
    }
  }
}

TEST(HopperTest, InvariantsHoldUnderRandomSpeedsAndFailures) {
  constexpr int kPartitions = 4, kConfigs = 8, kEpochs = 3;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    HopperSchedule s(kPartitions, kEpochs, seed);
    for (int c = 0; c < kConfigs; ++c) s.Add(c);
    Rng rng(seed * 7919);
    std::vector<double> speed;
    for (int p = 0; p < kPartitions; ++p) speed.push_back(0.5 + 1.5 * rng.Uniform());
    SimResult r = Simulate(&s, speed, /*fail=*/0.05, seed);
    ASSERT_TRUE(s.AllDone()) << "seed " << seed;
    EXPECT_EQ(r.done.size(), static_cast<size_t>(kConfigs * kEpochs * kPartitions));
    ExpectEachPartitionOncePerEpoch(r, kConfigs, kPartitions, kEpochs);
    for (int c = 0; c < kConfigs; ++c) EXPECT_EQ(s.epoch(c), kEpochs);
  }
}

// Equal workers, no failures: how busy the schedule keeps the partitions (Cerebro's point is
// that with at least as many configurations as partitions they seldom wait).
TEST(HopperTest, EqualWorkersStayBusy) {
  constexpr int kPartitions = 4, kConfigs = 8, kEpochs = 5;
  double worst = 1;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    HopperSchedule s(kPartitions, kEpochs, seed);
    for (int c = 0; c < kConfigs; ++c) s.Add(c);
    SimResult r = Simulate(&s, std::vector<double>(kPartitions, 1.0), /*fail=*/0, seed);
    ASSERT_TRUE(s.AllDone());
    ExpectEachPartitionOncePerEpoch(r, kConfigs, kPartitions, kEpochs);
    // Every unit takes 0.8 to 1.2 s (1 s on average): the work is the units' count.
    worst = std::min(worst, static_cast<double>(r.done.size()) / (kPartitions * r.makespan));
  }
  std::printf(
      "hopper: partitions busy %.0f %% of the makespan, worst of 20 seeds (4 equal "
      "workers, 8 configurations, 5 epochs)\n",
      100 * worst);
  EXPECT_GT(worst, 0.8);
}

TEST(HopperTest, ARemovedConfigurationLeavesTheRotation) {
  HopperSchedule s(3, 4, 5);
  for (int c = 0; c < 5; ++c) s.Add(c);
  // Train until configuration 2 ends its first epoch, then remove it (a stopping rule).
  std::vector<Unit> flight;
  auto refill = [&](bool removed) {
    std::set<int> free = {0, 1, 2};
    for (const Unit& u : flight) free.erase(u.partition);
    for (const Unit& n : s.Next(free)) {
      if (removed) {
        EXPECT_NE(n.config, 2) << "a removed configuration got a unit";
      }
      flight.push_back(n);
    }
  };
  refill(false);
  while (s.epoch(2) < 1) {
    ASSERT_FALSE(flight.empty());
    s.Done(flight.front());
    flight.erase(flight.begin());
    refill(false);
  }
  s.Remove(2);
  for (int i = 0; i < 1000 && !flight.empty(); ++i) {
    s.Done(flight.front());
    flight.erase(flight.begin());
    refill(true);
  }
  EXPECT_TRUE(s.AllDone());
  EXPECT_EQ(s.epoch(2), 1);
  for (int c : {0, 1, 3, 4}) EXPECT_EQ(s.epoch(c), 4);
}

TEST(HopperTest, ARestoredSnapshotSchedulesWhatTheOriginalWould) {
  HopperSchedule a(4, 2, 42);
  for (int c = 0; c < 6; ++c) a.Add(c);
  std::vector<Unit> first = a.Next({0, 1, 2, 3});
  a.Done(first[0]);
  a.Failed(first[1]);
  HopperSchedule b(4, 2, 0);
  ASSERT_TRUE(b.Restore(a.Snapshot()));
  EXPECT_EQ(b.Snapshot(), a.Snapshot());
  const std::set<int> free = {first[0].partition, first[1].partition};
  EXPECT_EQ(a.Next(free), b.Next(free));
  EXPECT_FALSE(HopperSchedule(5, 2, 0).Restore(a.Snapshot()));  // another shape
  // A unit reported twice counts once.
  EXPECT_FALSE(a.Done(first[0]));
  EXPECT_EQ(a.visited(first[0].config).size(), 1u);
}

}  // namespace
}  // namespace rung::search
