// Model hopper parallelism (Cerebro, ../shared/seeds/003): the data is split into partitions
// that stay on their workers, and each configuration (a model being trained) visits every
// partition once per epoch, training one sub-epoch on each. This is the schedule alone: a
// pure, seeded state machine that says which configuration trains on which free partition,
// in the manner of rung's searchers (no I/O, no clock, no threads; snapshotted).
//
// Its invariants, which tests/unit/hopper_test.cc checks under random speeds and failures:
// - within an epoch a configuration trains on every partition exactly once;
// - at any time a configuration is on at most one partition, and a partition trains at most
//   one configuration;
// - a free partition goes to a configuration that still needs it, chosen at random among the
//   candidates with the schedule's own generator (so a run replays from its seed).
#ifndef RUNG_SERVER_SEARCH_HOPPER_H_
#define RUNG_SERVER_SEARCH_HOPPER_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/search/rng.h"

namespace rung::search {

class HopperSchedule {
 public:
  // One sub-epoch of one configuration on one partition.
  struct Unit {
    int config = 0;
    int partition = 0;
    int epoch = 0;  // 0, 1, ... epochs - 1
    bool operator==(const Unit& o) const {
      return config == o.config && partition == o.partition && epoch == o.epoch;
    }
  };

  HopperSchedule(int partitions, int epochs, uint64_t seed);

  // A configuration joins the rotation at epoch 0.
  void Add(int config);
  // A configuration leaves the rotation (a stopping rule ended it): it gets no more units; a
  // unit it is training finishes or fails as usual.
  void Remove(int config);

  // Units to start now on `free` partitions (those whose worker can take one): each free
  // partition that some configuration still needs in its current epoch gets one of them.
  // When it returns none, nothing changed (the generator included).
  std::vector<Unit> Next(const std::set<int>& free);
  // The unit trained. True when it ended its configuration's epoch (its validation is the
  // configuration's report for that epoch).
  bool Done(const Unit& u);
  // The unit did not train (its worker failed): it is run again, on the same partition.
  void Failed(const Unit& u);

  int partitions() const { return partitions_; }
  int epochs() const { return epochs_; }
  // The epoch a configuration is in (epochs() once it has finished all of them).
  int epoch(int config) const;
  // The partition the configuration trains on now, or -1.
  int running(int config) const;
  bool removed(int config) const;
  // Partitions the configuration has trained on in its current epoch, in order.
  std::vector<int> visited(int config) const;
  // Every configuration finished all its epochs or left the rotation, and nothing trains.
  bool AllDone() const;

  // The whole state as text, and back (false: not a snapshot of this schedule).
  std::string Snapshot() const;
  bool Restore(absl::string_view text);

 private:
  struct Config {
    int epoch = 0;
    std::vector<int> visited;  // this epoch, in order
    int running = -1;          // the partition it trains on, or -1
    bool removed = false;
  };
  bool Wants(const Config& c, int partition) const;

  int partitions_;
  int epochs_;
  Rng rng_;
  std::map<int, Config> configs_;
  std::map<int, int> busy_;  // partition -> the configuration training on it
};

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_HOPPER_H_
