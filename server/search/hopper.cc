#include "server/search/hopper.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace rung::search {

HopperSchedule::HopperSchedule(int partitions, int epochs, uint64_t seed)
    : partitions_(partitions), epochs_(epochs), rng_(seed) {}

void HopperSchedule::Add(int config) { configs_.try_emplace(config); }

void HopperSchedule::Remove(int config) {
  auto it = configs_.find(config);
  if (it != configs_.end()) it->second.removed = true;
}

bool HopperSchedule::Wants(const Config& c, int partition) const {
  return !c.removed && c.running < 0 && c.epoch < epochs_ &&
         std::find(c.visited.begin(), c.visited.end(), partition) == c.visited.end();
}

std::vector<HopperSchedule::Unit> HopperSchedule::Next(const std::set<int>& free) {
  // Free partitions in a random order, so none is always served first; each goes to a
  // configuration that needs it, at random among those that do.
  // Only partitions some configuration needs now: with none, the generator is left alone
  // (and the snapshot unchanged).
  std::vector<int> order;
  for (int p : free) {
    if (p < 0 || p >= partitions_ || busy_.count(p)) continue;
    for (const auto& [id, c] : configs_) {
      if (Wants(c, p)) {
        order.push_back(p);
        break;
      }
    }
  }
  for (size_t k = order.size(); k > 1; --k) std::swap(order[k - 1], order[rng_.Below(k)]);
  std::vector<Unit> out;
  for (int p : order) {
    std::vector<int> candidates;
    for (const auto& [id, c] : configs_) {
      if (Wants(c, p)) candidates.push_back(id);
    }
    if (candidates.empty()) continue;
    const int id = candidates[rng_.Below(candidates.size())];
    Config& c = configs_[id];
    c.running = p;
    busy_[p] = id;
    out.push_back({id, p, c.epoch});
  }
  return out;
}

bool HopperSchedule::Done(const Unit& u) {
  auto it = configs_.find(u.config);
  if (it == configs_.end() || it->second.running != u.partition || it->second.epoch != u.epoch)
    return false;  // not a unit in flight: a resend
  Config& c = it->second;
  c.running = -1;
  busy_.erase(u.partition);
  c.visited.push_back(u.partition);
  if (static_cast<int>(c.visited.size()) < partitions_) return false;
  c.visited.clear();
  ++c.epoch;
  return true;
}

void HopperSchedule::Failed(const Unit& u) {
  auto it = configs_.find(u.config);
  if (it == configs_.end() || it->second.running != u.partition) return;
  it->second.running = -1;
  busy_.erase(u.partition);
}

int HopperSchedule::epoch(int config) const {
  auto it = configs_.find(config);
  return it == configs_.end() ? 0 : it->second.epoch;
}

int HopperSchedule::running(int config) const {
  auto it = configs_.find(config);
  return it == configs_.end() ? -1 : it->second.running;
}

bool HopperSchedule::removed(int config) const {
  auto it = configs_.find(config);
  return it != configs_.end() && it->second.removed;
}

std::vector<int> HopperSchedule::visited(int config) const {
  auto it = configs_.find(config);
  return it == configs_.end() ? std::vector<int>() : it->second.visited;
}

bool HopperSchedule::AllDone() const {
  if (!busy_.empty()) return false;
  for (const auto& [id, c] : configs_) {
    if (!c.removed && c.epoch < epochs_) return false;
  }
  return true;
}

// "hopper P E", "rng=<state>", then one line per configuration:
// "c ID EPOCH RUNNING REMOVED v1,v2,...".
std::string HopperSchedule::Snapshot() const {
  std::vector<std::string> lines = {absl::StrCat("hopper ", partitions_, " ", epochs_),
                                    absl::StrCat("rng=", rng_.Save())};
  for (const auto& [id, c] : configs_) {
    lines.push_back(absl::StrCat("c ", id, " ", c.epoch, " ", c.running, " ", c.removed ? 1 : 0,
                                 " ", c.visited.empty() ? "-" : absl::StrJoin(c.visited, ",")));
  }
  return absl::StrJoin(lines, "\n");
}

bool HopperSchedule::Restore(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  if (lines.size() < 2 || lines[0] != absl::StrCat("hopper ", partitions_, " ", epochs_) ||
      !absl::ConsumePrefix(&lines[1], "rng=")) {
    return false;
  }
  Rng rng;
  if (!rng.Load(lines[1])) return false;
  std::map<int, Config> configs;
  std::map<int, int> busy;
  for (size_t i = 2; i < lines.size(); ++i) {
    std::vector<absl::string_view> w = absl::StrSplit(lines[i], ' ');
    int id, removed;
    Config c;
    if (w.size() != 6 || w[0] != "c" || !absl::SimpleAtoi(w[1], &id) ||
        !absl::SimpleAtoi(w[2], &c.epoch) || !absl::SimpleAtoi(w[3], &c.running) ||
        !absl::SimpleAtoi(w[4], &removed)) {
      return false;
    }
    c.removed = removed != 0;
    if (w[5] != "-") {
      for (absl::string_view v : absl::StrSplit(w[5], ',')) {
        int p;
        if (!absl::SimpleAtoi(v, &p)) return false;
        c.visited.push_back(p);
      }
    }
    if (c.running >= 0) busy[c.running] = id;
    configs[id] = std::move(c);
  }
  rng_ = rng;
  configs_ = std::move(configs);
  busy_ = std::move(busy);
  return true;
}

}  // namespace rung::search
