#include "server/search/stopping.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace rung::search {

std::string DoubleText(double d) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d);
  return ec == std::errc() ? std::string(buf, end) : "nan";
}

bool ParseDouble(absl::string_view s, double* d) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *d);
  return ec == std::errc() && end == s.data() + s.size();
}

std::vector<double> Rungs(double min, double max, int eta, int max_rungs, int bracket) {
  std::vector<double> rungs;
  if (!(min > 0) || !(max > min) || eta < 2) return rungs;
  double r = min * std::pow(static_cast<double>(eta), bracket);
  // A small tolerance so that 1 * 3^4 = 81 counts as reaching max, not below it.
  while (r < max * (1 - 1e-9) && (max_rungs <= 0 || static_cast<int>(rungs.size()) < max_rungs)) {
    rungs.push_back(r);
    r *= eta;
  }
  return rungs;
}

namespace {

bool Better(Goal goal, double a, double b) { return goal == Goal::kMaximize ? a > b : a < b; }

// A value in a message for people.
std::string Short(double d) { return absl::StrFormat("%.6g", d); }

// Results of one rung, (value, trial), in an order the caller's `less` gives, kept in blocks of
// a few hundred: an insert moves one block's entries and a rank reads one entry per block, so
// a rung of a million results costs microseconds where a flat sorted vector's insert moves
// megabytes.
class Ranked {
 public:
  using Entry = std::pair<double, int>;
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const Entry& front() const { return blocks_.front().front(); }
  void clear() {
    blocks_.clear();
    size_ = 0;
  }
  // After every entry `e` is not less than.
  template <typename Less>
  void Insert(const Entry& e, Less less) {
    ++size_;
    if (blocks_.empty()) {
      blocks_.push_back({e});
      return;
    }
    auto b = std::partition_point(blocks_.begin(), blocks_.end(),
                                  [&](const Block& x) { return !less(e, x.back()); });
    if (b == blocks_.end()) --b;
    b->insert(std::upper_bound(b->begin(), b->end(), e, less), e);
    if (b->size() > 2 * kBlock) {
      Block tail(b->begin() + kBlock, b->end());
      b->resize(kBlock);
      blocks_.insert(b + 1, std::move(tail));
    }
  }
  // How many entries `pred` holds for, when it holds for a prefix.
  template <typename Pred>
  size_t PartitionPoint(Pred pred) const {
    size_t n = 0;
    for (const Block& x : blocks_) {
      if (!pred(x.back())) {
        return n + static_cast<size_t>(std::partition_point(x.begin(), x.end(), pred) - x.begin());
      }
      n += x.size();
    }
    return n;
  }
  // The entry of `trial`, if any.
  std::optional<Entry> Find(int trial) const {
    for (const Block& x : blocks_) {
      for (const Entry& e : x) {
        if (e.second == trial) return e;
      }
    }
    return std::nullopt;
  }
  void Erase(int trial) {
    for (auto b = blocks_.begin(); b != blocks_.end(); ++b) {
      auto it =
          std::find_if(b->begin(), b->end(), [&](const Entry& e) { return e.second == trial; });
      if (it == b->end()) continue;
      b->erase(it);
      --size_;
      if (b->empty()) blocks_.erase(b);
      return;
    }
  }
  template <typename F>
  void ForEach(F f) const {
    for (const Block& x : blocks_) {
      for (const Entry& e : x) f(e);
    }
  }

 private:
  static constexpr size_t kBlock = 256;
  using Block = std::vector<Entry>;
  std::vector<Block> blocks_;
  size_t size_ = 0;
};

// ---------------------------------------------------------------------------------------
// ASHA and asynchronous Hyperband (Li et al., "A System for Massively Parallel
// Hyperparameter Tuning").
//
// Each bracket b is an ASHA whose first rung is min * eta^b. When a trial's resource reaches
// a rung of its bracket, its objective at that moment is recorded there.
// Stop mode: every trial trains toward max and continues past a rung only if fewer than
// ceil(n / eta) of the n values recorded there so far are strictly better (ties continue,
// and the first trial at a rung always does).
// Promote mode: a trial trains to its rung's budget and pauses. When a slot frees, the best
// paused trial among the top floor(n / eta) of the highest rung that has one is continued to
// the next rung (ties: the lower index first); otherwise a new trial starts.
// Hyperband deals new trials to brackets in proportion to the classic Hyperband bracket
// sizes, with a smooth weighted round robin: deterministic and interleaved.
class RungRule final : public StoppingRule {
 public:
  RungRule(const Config& c, bool hyperband) : StoppingRule(c.resource_max), config_(c) {
    const auto& st = c.stopping;
    int levels =
        static_cast<int>(Rungs(c.resource_min, c.resource_max, st.reduction_factor, 0).size());
    // Hyperband's brackets start at each rung level and at max itself (that last bracket
    // runs its trials to max without stopping): s_max + 1 = levels + 1.
    const int brackets = hyperband ? levels + 1 : 1;
    const int s_max = brackets - 1;
    for (int b = 0; b < brackets; ++b) {
      rungs_.push_back(Rungs(c.resource_min, c.resource_max, st.reduction_factor, st.max_rungs, b));
      // Classic Hyperband: bracket s' = s_max - b starts ceil((s_max+1)/(s'+1) * eta^s') trials.
      const int sp = s_max - b;
      weight_.push_back(static_cast<int64_t>(std::ceil(
          (s_max + 1.0) / (sp + 1.0) * std::pow(static_cast<double>(st.reduction_factor), sp))));
    }
    current_.assign(brackets, 0);
    recorded_.resize(brackets);
    waiting_.resize(brackets);
    for (int b = 0; b < brackets; ++b) {
      recorded_[b].resize(rungs_[b].size());
      waiting_[b].resize(rungs_[b].size());
    }
  }

  void OnCreate(int index) override {
    int64_t total = 0;
    size_t pick = 0;
    for (size_t b = 0; b < weight_.size(); ++b) {
      current_[b] += weight_[b];
      total += weight_[b];
      if (current_[b] > current_[pick]) pick = b;
    }
    current_[pick] -= total;
    trials_[index] = TrialState{static_cast<int>(pick), 0, false, false};
  }

  double Budget(int index) const override {
    auto it = trials_.find(index);
    if (!config_.stopping.promote || it == trials_.end()) return config_.resource_max;
    return Level(it->second.bracket, 0);
  }

  std::optional<Stop> OnReport(const TrialReported& r) override {
    auto it = trials_.find(r.index);
    if (it == trials_.end() || it->second.stopped) return std::nullopt;
    TrialState& t = it->second;
    const auto& rungs = rungs_[t.bracket];
    while (t.next_rung < static_cast<int>(rungs.size()) &&
           r.resource >= rungs[t.next_rung] * (1 - 1e-9)) {
      const int k = t.next_rung++;
      auto& values = recorded_[t.bracket][k];
      Insert(&values, r.index, r.value);
      if (config_.stopping.promote) continue;  // judged when a slot asks for work
      const int n = static_cast<int>(values.size());
      const int eta = config_.stopping.reduction_factor;
      const int keep = (n + eta - 1) / eta;
      const int better = CountBetter(values, r.value);
      if (better >= keep) {
        t.stopped = true;
        return Stop{r.index,
                    absl::StrCat(Where(t.bracket, k), ": ", Short(r.value), " is not in the top 1/",
                                 eta, " of the ", n, " results there (", better, " better)")};
      }
    }
    return std::nullopt;
  }

  void OnPaused(int index) override {
    auto it = trials_.find(index);
    if (it == trials_.end()) return;
    it->second.paused = true;
    AddWaiting(index, it->second);
  }

  std::optional<Continue> Promote() override {
    auto best = BestCandidate();
    if (!best) return std::nullopt;
    TrialState& t = trials_[best->first];
    RemoveWaiting(best->first, t);
    t.paused = false;
    return Continue{best->first, Level(t.bracket, best->second + 1)};
  }

  bool NothingToPromote() const override { return !BestCandidate().has_value(); }

  std::vector<Stop> StopPaused() override {
    std::vector<Stop> stops;
    for (auto& [i, t] : trials_) {
      if (!t.paused || t.stopped) continue;
      RemoveWaiting(i, t);
      t.stopped = true;
      t.paused = false;
      std::string why =
          t.next_rung == 0
              ? "it never reached its first rung"
              : absl::StrCat("not promoted past ", Where(t.bracket, t.next_rung - 1),
                             ": not in the top 1/", config_.stopping.reduction_factor, " there");
      stops.push_back(Stop{i, absl::StrCat("the search ended; ", why)});
    }
    return stops;
  }

  void OnClosed(const TrialClosed& c) override {
    auto it = trials_.find(c.index);
    if (it == trials_.end()) return;
    if (it->second.paused) RemoveWaiting(c.index, it->second);
    trials_.erase(it);
  }

  // "hb <current...>", "t <index> <bracket> <next_rung> <stopped> <paused>",
  // "r <bracket> <k> <index>:<value>..."
  void Save(std::vector<std::string>* lines) const override {
    lines->push_back(absl::StrCat("hb ", absl::StrJoin(current_, " ")));
    for (const auto& [i, t] : trials_) {
      lines->push_back(absl::StrCat("t ", i, " ", t.bracket, " ", t.next_rung, " ",
                                    t.stopped ? 1 : 0, " ", t.paused ? 1 : 0));
    }
    for (size_t b = 0; b < recorded_.size(); ++b) {
      for (size_t k = 0; k < recorded_[b].size(); ++k) {
        if (recorded_[b][k].empty()) continue;
        std::string line = absl::StrCat("r ", b, " ", k);
        recorded_[b][k].ForEach([&](const auto& e) {
          absl::StrAppend(&line, " ", e.second, ":", DoubleText(e.first));
        });
        lines->push_back(std::move(line));
      }
    }
  }

  bool Load(const std::vector<std::string>& lines) override {
    trials_.clear();
    for (auto& b : recorded_) {
      for (auto& k : b) k.clear();
    }
    for (const std::string& line : lines) {
      std::vector<absl::string_view> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (w.empty()) return false;
      if (w[0] == "hb") {
        if (w.size() != current_.size() + 1) return false;
        for (size_t b = 0; b < current_.size(); ++b) {
          if (!absl::SimpleAtoi(w[b + 1], &current_[b])) return false;
        }
      } else if (w[0] == "t") {
        int i, b, k, stopped, paused;
        if (w.size() != 6 || !absl::SimpleAtoi(w[1], &i) || !absl::SimpleAtoi(w[2], &b) ||
            !absl::SimpleAtoi(w[3], &k) || !absl::SimpleAtoi(w[4], &stopped) ||
            !absl::SimpleAtoi(w[5], &paused) || b < 0 || b >= static_cast<int>(rungs_.size())) {
          return false;
        }
        trials_[i] = TrialState{b, k, stopped != 0, paused != 0};
      } else if (w[0] == "r") {
        size_t b, k;
        if (w.size() < 3 || !absl::SimpleAtoi(w[1], &b) || !absl::SimpleAtoi(w[2], &k) ||
            b >= recorded_.size() || k >= recorded_[b].size()) {
          return false;
        }
        for (size_t j = 3; j < w.size(); ++j) {
          std::pair<absl::string_view, absl::string_view> iv = absl::StrSplit(w[j], ':');
          int i;
          double v;
          if (!absl::SimpleAtoi(iv.first, &i) || !ParseDouble(iv.second, &v)) return false;
          Insert(&recorded_[b][k], i, v);
        }
      } else {
        return false;
      }
    }
    for (auto& b : waiting_) {
      for (auto& k : b) k.clear();
    }
    for (const auto& [i, t] : trials_) {
      if (t.paused && !t.stopped) AddWaiting(i, t);
    }
    return true;
  }

 private:
  struct TrialState {
    int bracket = 0;
    int next_rung = 0;  // rungs of its bracket recorded so far
    bool stopped = false;
    bool paused = false;  // promote mode: trained to its budget, waiting for a promotion
  };

  // The result `t` recorded at the rung it paused on, into / out of waiting_.
  std::optional<std::pair<double, int>> PausedResult(int index, const TrialState& t) const {
    if (t.next_rung == 0) return std::nullopt;  // paused before its first rung: never promoted
    return recorded_[t.bracket][t.next_rung - 1].Find(index);
  }
  void AddWaiting(int index, const TrialState& t) {
    if (auto e = PausedResult(index, t))
      Insert(&waiting_[t.bracket][t.next_rung - 1], index, e->first);
  }
  void RemoveWaiting(int index, const TrialState& t) {
    if (t.next_rung == 0) return;
    waiting_[t.bracket][t.next_rung - 1].Erase(index);
  }

  // The resource of rung k of bracket b, or max past the last rung.
  double Level(int b, int k) const {
    return k < static_cast<int>(rungs_[b].size()) ? rungs_[b][k] : config_.resource_max;
  }

  std::string Where(int b, int k) const {
    std::string bracket = rungs_.size() > 1 ? absl::StrCat(" of bracket ", b) : "";
    return absl::StrCat("rung ", k, bracket, " (resource ", Short(rungs_[b][k]), ")");
  }

  // Rung results are kept best first (ties: lower trial index first).
  using Results = Ranked;
  bool Before(const std::pair<double, int>& a, const std::pair<double, int>& b) const {
    return Better(config_.goal, a.first, b.first) || (a.first == b.first && a.second < b.second);
  }
  void Insert(Results* r, int index, double value) const {
    r->Insert({value, index}, [&](const auto& a, const auto& b) { return Before(a, b); });
  }
  // How many results are strictly better than `value`.
  int CountBetter(const Results& r, double value) const {
    return static_cast<int>(
        r.PartitionPoint([&](const auto& e) { return Better(config_.goal, e.first, value); }));
  }

  // (trial, rung) of the paused trial to promote: from the highest rung level that has one,
  // the best of those in its rung's top floor(n / eta).
  std::optional<std::pair<int, int>> BestCandidate() const {
    std::optional<std::pair<int, int>> best;
    double best_level = -1, best_value = 0;
    const int eta = config_.stopping.reduction_factor;
    for (size_t b = 0; b < rungs_.size(); ++b) {
      for (size_t k = 0; k < recorded_[b].size(); ++k) {
        // The best trial waiting at rung k is a candidate when it ranks in the top
        // floor(n / eta) of all results recorded there; if it does not, none does.
        const Results& waiting = waiting_[b][k];
        if (waiting.empty()) continue;
        const Results& values = recorded_[b][k];
        const size_t top = values.size() / eta;
        const size_t rank =
            values.PartitionPoint([&](const auto& x) { return Before(x, waiting.front()); });
        if (rank >= top) continue;
        const double level = rungs_[b][k];
        if (!best || level > best_level ||
            (level == best_level && Better(config_.goal, waiting.front().first, best_value))) {
          best = std::make_pair(waiting.front().second, static_cast<int>(k));
          best_level = level;
          best_value = waiting.front().first;
        }
      }
    }
    return best;
  }

  const Config config_;
  std::vector<std::vector<double>> rungs_;      // per bracket
  std::vector<int64_t> weight_, current_;       // bracket round robin
  std::vector<std::vector<Results>> recorded_;  // [bracket][rung]
  // [bracket][rung]: results of the trials paused at that rung (derived, not saved).
  std::vector<std::vector<Results>> waiting_;
  std::map<int, TrialState> trials_;  // open trials
};

// ---------------------------------------------------------------------------------------
// The median stopping rule: stop a trial at resource t when its best value so far is worse
// than the median of the running averages, up to t, of the completed trials; only once
// `min_trials` trials have completed, and never before the trial reaches `grace`.
class MedianRule final : public StoppingRule {
 public:
  explicit MedianRule(const Config& c) : StoppingRule(c.resource_max), config_(c) {}

  void OnCreate(int) override {}

  std::optional<Stop> OnReport(const TrialReported& r) override {
    if (stopped_.count(r.index)) return std::nullopt;
    auto& h = history_[r.index];
    h.emplace_back(r.resource, r.value);
    if (r.resource < config_.stopping.grace) return std::nullopt;
    if (static_cast<int>(completed_.size()) < config_.stopping.min_trials) return std::nullopt;
    double best = h[0].second;
    for (const auto& [x, v] : h) {
      if (Better(config_.goal, v, best)) best = v;
    }
    std::vector<double> averages;
    averages.reserve(completed_.size());
    for (const auto& [c, prefix] : prefix_) {
      // prefix[j] = (resource, sum of values, count) over the first j + 1 reports.
      auto it = std::upper_bound(prefix.begin(), prefix.end(), r.resource,
                                 [](double x, const Prefix& p) { return x < p.resource; });
      if (it == prefix.begin()) continue;
      --it;
      averages.push_back(it->sum / it->count);
    }
    if (averages.empty()) return std::nullopt;
    std::sort(averages.begin(), averages.end());
    const size_t m = averages.size();
    const double median = m % 2 ? averages[m / 2] : (averages[m / 2 - 1] + averages[m / 2]) / 2;
    if (!Better(config_.goal, median, best)) return std::nullopt;
    stopped_.insert(r.index);
    return Stop{r.index,
                absl::StrCat("median rule at resource ", Short(r.resource), ": best so far ",
                             Short(best), " is worse than the median ", Short(median),
                             " of the running averages of ", m, " completed trials")};
  }

  void OnClosed(const TrialClosed& c) override {
    stopped_.erase(c.index);
    if (c.outcome == TrialClosed::Outcome::kCompleted) {
      completed_.insert(c.index);
      BuildPrefix(c.index);
    } else {
      history_.erase(c.index);  // only completed trials set the bar
    }
  }

  // "h <index> <resource>:<value> ...", "c <index>...", "s <index>..."
  void Save(std::vector<std::string>* lines) const override {
    for (const auto& [i, h] : history_) {
      std::string line = absl::StrCat("h ", i);
      for (const auto& [x, v] : h) absl::StrAppend(&line, " ", DoubleText(x), ":", DoubleText(v));
      lines->push_back(std::move(line));
    }
    lines->push_back(absl::StrCat("c ", absl::StrJoin(completed_, " ")));
    lines->push_back(absl::StrCat("s ", absl::StrJoin(stopped_, " ")));
  }

  bool Load(const std::vector<std::string>& lines) override {
    history_.clear();
    completed_.clear();
    stopped_.clear();
    for (const std::string& line : lines) {
      std::vector<absl::string_view> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (w.empty()) return false;
      if (w[0] == "h") {
        int i;
        if (w.size() < 2 || !absl::SimpleAtoi(w[1], &i)) return false;
        auto& h = history_[i];
        for (size_t j = 2; j < w.size(); ++j) {
          std::pair<absl::string_view, absl::string_view> xv = absl::StrSplit(w[j], ':');
          double x, v;
          if (!ParseDouble(xv.first, &x) || !ParseDouble(xv.second, &v)) return false;
          h.emplace_back(x, v);
        }
      } else if (w[0] == "c" || w[0] == "s") {
        for (size_t j = 1; j < w.size(); ++j) {
          int i;
          if (!absl::SimpleAtoi(w[j], &i)) return false;
          (w[0] == "c" ? completed_ : stopped_).insert(i);
        }
      } else {
        return false;
      }
    }
    prefix_.clear();
    for (int c : completed_) BuildPrefix(c);
    return true;
  }

 private:
  struct Prefix {
    double resource;
    double sum;
    int count;
  };
  // Running sums of a completed trial's values in resource order, for O(log n) averages.
  void BuildPrefix(int index) {
    auto h = history_[index];
    std::stable_sort(h.begin(), h.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<Prefix>& p = prefix_[index];
    p.clear();
    double sum = 0;
    for (size_t j = 0; j < h.size(); ++j) {
      sum += h[j].second;
      p.push_back({h[j].first, sum, static_cast<int>(j) + 1});
    }
  }

  const Config config_;
  std::map<int, std::vector<Prefix>> prefix_;  // completed trials only; derived, not saved
  std::map<int, std::vector<std::pair<double, double>>> history_;  // (resource, value)
  std::set<int> completed_;
  std::set<int> stopped_;
};

}  // namespace

std::unique_ptr<StoppingRule> NewRungRule(const Config& config, bool hyperband) {
  return std::make_unique<RungRule>(config, hyperband);
}

std::unique_ptr<StoppingRule> NewMedianRule(const Config& config) {
  return std::make_unique<MedianRule>(config);
}

}  // namespace rung::search
