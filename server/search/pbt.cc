#include "server/search/pbt.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/search/sampler.h"

namespace rung::search {

namespace {

double EncodeParam(const Param& p, const Params& params) {
  auto it = params.find(p.name);
  if (it == params.end()) return std::nan("");
  if (const auto* s = std::get_if<std::string>(&it->second)) {
    auto at = std::find(p.values.begin(), p.values.end(), *s);
    return at == p.values.end() ? std::nan("") : static_cast<double>(at - p.values.begin());
  }
  if (const auto* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  return std::get<double>(it->second);
}

bool DecodeParam(const Param& p, double v, Params* out) {
  if (std::isnan(v)) return true;
  switch (p.kind) {
    case Param::Kind::kCategorical:
      if (v < 0 || v >= static_cast<double>(p.values.size())) return false;
      (*out)[p.name] = p.values[static_cast<size_t>(v)];
      return true;
    case Param::Kind::kInt:
      (*out)[p.name] = static_cast<int64_t>(std::llround(v));
      return true;
    case Param::Kind::kFloat:
      (*out)[p.name] = v;
      return true;
  }
  return false;
}

}  // namespace

Population::Population(std::vector<Param> space, Goal goal, PbtOptions options, uint64_t seed)
    : space_(std::move(space)), goal_(goal), options_(std::move(options)), rng_(seed) {}

bool Population::Better(double a, double b) const {
  return goal_ == Goal::kMaximize ? a > b : a < b;
}

Population::Decision Population::Ready(int member, double at, double value, const Params& params) {
  if (auto before = members_.find(member);
      options_.pb2 && before != members_.end() && at > before->second.at) {
    // The segment it just trained, from the model it held at its last ready point.
    const double gain = goal_ == Goal::kMaximize ? value - before->second.baseline
                                                 : before->second.baseline - value;
    if (std::isfinite(gain)) observations_.push_back({at, gain, params});
    if (observations_.size() > kObservations) observations_.erase(observations_.begin());
  }
  members_[member] = {at, value, value, params};
  Decision d;
  d.params = params;
  // Ranked best first; ties by member, so that a replay ranks the same.
  std::vector<int> ranked;
  for (const auto& [m, s] : members_) ranked.push_back(m);
  std::sort(ranked.begin(), ranked.end(), [&](int a, int b) {
    const double va = members_[a].value, vb = members_[b].value;
    if (va != vb) return Better(va, vb);
    return a < b;
  });
  // As Ray Tune: a quantile of the members ranked so far, and none while there are too few to
  // have a top and a bottom apart.
  const int n = static_cast<int>(ranked.size());
  const int cut = static_cast<int>(std::ceil(n * options_.quantile));
  if (cut < 1 || 2 * cut > n) return d;
  const int rank =
      static_cast<int>(std::find(ranked.begin(), ranked.end(), member) - ranked.begin());
  if (rank < n - cut) return d;  // not in the bottom quantile: it goes on as it is
  const int donor = ranked[rng_.Below(static_cast<uint64_t>(cut))];
  d.exploit = true;
  d.donor = donor;
  d.donor_at = members_[donor].at;
  d.params = options_.pb2 ? Pb2Explore(members_[donor].params, d.donor_at, member)
                          : Explore(members_[donor].params);
  // It holds the donor's model now, with the explored parameters, and is given as such; but
  // it keeps its own score until its next ready point, as in Ray Tune. (Ranked with the
  // donor's, a lucky early score would be copied from member to member, and a score that
  // worsens as models train on would send every member back to it for ever.) PB2 measures its
  // next segment from the donor's score.
  members_[member] = {d.donor_at, value, members_[donor].baseline, d.params};
  return d;
}

void Population::Remove(int member) { members_.erase(member); }

Params Population::Explore(const Params& from) {
  Params out;
  for (const Param& p : space_) {
    if (!Active(p, out)) continue;  // a child whose parent's new value does not have it
    auto it = from.find(p.name);
    if (it == from.end() || rng_.Uniform() < options_.resample_probability) {
      out[p.name] = SampleUniform(p, &rng_);
      continue;
    }
    if (p.kind == Param::Kind::kCategorical || !p.grid_values.empty()) {
      // A neighbour in the list of values (the first and last have one).
      const std::vector<std::string>& cats = p.values;
      const size_t count = p.kind == Param::Kind::kCategorical ? cats.size() : p.grid_values.size();
      size_t at = 0;
      if (p.kind == Param::Kind::kCategorical) {
        at = static_cast<size_t>(
            std::find(cats.begin(), cats.end(), std::get<std::string>(it->second)) - cats.begin());
      } else {
        const double v = EncodeParam(p, from);
        at = static_cast<size_t>(std::min_element(p.grid_values.begin(), p.grid_values.end(),
                                                  [&](double a, double b) {
                                                    return std::fabs(a - v) < std::fabs(b - v);
                                                  }) -
                                 p.grid_values.begin());
      }
      if (at >= count) at = 0;
      if (count > 1) {
        const bool up = at == 0 || (at + 1 < count && rng_.Below(2) == 1);
        at = up ? at + 1 : at - 1;
      }
      if (p.kind == Param::Kind::kCategorical) {
        out[p.name] = cats[at];
      } else if (p.kind == Param::Kind::kInt) {
        out[p.name] = static_cast<int64_t>(p.grid_values[at]);
      } else {
        out[p.name] = p.grid_values[at];
      }
      continue;
    }
    const double factor = options_.factors[rng_.Below(options_.factors.size())];
    const double v = std::clamp(EncodeParam(p, from) * factor, p.min, p.max);
    if (p.kind == Param::Kind::kInt) {
      // Rounded, but moved by at least one when the factor moves it at all.
      const auto before = std::get<int64_t>(it->second);
      auto after = static_cast<int64_t>(std::llround(v));
      if (after == before && factor != 1) after += factor > 1 ? 1 : -1;
      out[p.name] = std::clamp(after, static_cast<int64_t>(p.min), static_cast<int64_t>(p.max));
    } else {
      out[p.name] = v;
    }
  }
  return out;
}

void Population::Save(std::vector<std::string>* lines) const {
  lines->push_back(rng_.Save());
  for (const auto& [m, s] : members_) {
    std::string line =
        absl::StrCat("m ", m, " ", absl::StrFormat("%.17g %.17g %.17g", s.at, s.value, s.baseline));
    for (const Param& p : space_)
      absl::StrAppend(&line, absl::StrFormat(" %.17g", EncodeParam(p, s.params)));
    lines->push_back(std::move(line));
  }
  for (const Observation& o : observations_) {
    std::string line = absl::StrFormat("o %.17g %.17g", o.at, o.improvement);
    for (const Param& p : space_)
      absl::StrAppend(&line, absl::StrFormat(" %.17g", EncodeParam(p, o.params)));
    lines->push_back(std::move(line));
  }
}

bool Population::Load(const std::vector<std::string>& lines) {
  if (lines.empty() || !rng_.Load(lines[0])) return false;
  members_.clear();
  observations_.clear();
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> f = absl::StrSplit(lines[i], ' ');
    // "m <member> <at> <value> <baseline> <params...>" or "o <at> <improvement> <params...>".
    const bool member = f[0] == "m";
    const size_t first = member ? 5 : 3;  // the first parameter's field
    if ((!member && f[0] != "o") || f.size() != first + space_.size()) return false;
    int m = 0;
    double at, number, baseline = 0;
    if ((member && (!absl::SimpleAtoi(f[1], &m) || !absl::SimpleAtod(f[4], &baseline))) ||
        !absl::SimpleAtod(f[member ? 2 : 1], &at) ||
        !absl::SimpleAtod(f[member ? 3 : 2], &number)) {
      return false;
    }
    Params params;
    for (size_t k = 0; k < space_.size(); ++k) {
      double v;
      if (!absl::SimpleAtod(f[first + k], &v) || !DecodeParam(space_[k], v, &params)) return false;
    }
    if (member) {
      members_[m] = {at, number, baseline, std::move(params)};
    } else {
      observations_.push_back({at, number, std::move(params)});
    }
  }
  return true;
}

namespace {

class PbtSearcher final : public Searcher {
 public:
  PbtSearcher(const Config& config, const PbtOptions& options)
      : config_(config),
        options_(options),
        population_(config.space, config.goal, options, config.seed ^ 0x5bd1e995u),
        rng_(config.seed) {}

  std::vector<Action> Handle(const Event& event) override {
    std::vector<Action> actions;
    if (std::holds_alternative<TrialsWanted>(event)) {
      // The whole population at once: members queue for slots and train in turn.
      while (created_ < options_.population) {
        Member& m = members_[created_];
        m.params = SampleSpace(config_.space, &rng_);
        m.budget = NextBudget(0);
        actions.push_back(Create{created_, m.params, m.budget});
        ++created_;
      }
    } else if (const auto* report = std::get_if<TrialReported>(&event)) {
      Member& m = members_[report->index];
      m.has_value = true;
      m.value = report->value;
    } else if (const auto* paused = std::get_if<TrialPaused>(&event)) {
      Member& m = members_[paused->index];
      // A member that paused without reporting is ranked last: it can only take from others.
      const double worst = config_.goal == Goal::kMaximize ? -kInf : kInf;
      Population::Decision d =
          population_.Ready(paused->index, m.budget, m.has_value ? m.value : worst, m.params);
      Continue c;
      c.index = paused->index;
      c.budget = NextBudget(m.budget);
      if (d.exploit) {
        // It goes on from where the donor's checkpoint stands.
        c.budget = NextBudget(d.donor_at);
        c.params = d.params;
        c.from = d.donor;
        c.from_resource = d.donor_at;
        m.params = d.params;
        m.has_value = false;  // its old score was another model's
      }
      m.budget = c.budget;
      actions.push_back(std::move(c));
    } else if (const auto* closed = std::get_if<TrialClosed>(&event)) {
      ++closed_;
      // Its checkpoint is past its last ready point now (or it has none): no longer a donor.
      population_.Remove(closed->index);
    }
    if (!done_ && created_ == options_.population && closed_ >= created_) {
      done_ = true;
      actions.push_back(Done{});
    }
    return actions;
  }

  std::string Snapshot() const override {
    std::vector<std::string> lines = {
        "pbt v1", absl::StrCat("created ", created_, " closed ", closed_, " done ", done_ ? 1 : 0),
        absl::StrCat("rng ", rng_.Save())};
    for (const auto& [index, m] : members_) {
      std::string line = absl::StrFormat("member %d %.17g %d %.17g", index, m.budget,
                                         m.has_value ? 1 : 0, m.value);
      for (const Param& p : config_.space)
        absl::StrAppend(&line, absl::StrFormat(" %.17g", EncodeParam(p, m.params)));
      lines.push_back(std::move(line));
    }
    std::vector<std::string> population;
    population_.Save(&population);
    for (const std::string& l : population) lines.push_back(absl::StrCat("population ", l));
    return absl::StrJoin(lines, "\n");
  }

  absl::Status Restore(absl::string_view snapshot) override {
    auto bad = [](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("pbt: unreadable snapshot (", why, ")"));
    };
    std::vector<std::string> lines = absl::StrSplit(snapshot, '\n');
    if (lines.size() < 3 || lines[0] != "pbt v1") return bad("header");
    int done = 0;
    std::vector<std::string> counts = absl::StrSplit(lines[1], ' ');
    if (counts.size() != 6 || !absl::SimpleAtoi(counts[1], &created_) ||
        !absl::SimpleAtoi(counts[3], &closed_) || !absl::SimpleAtoi(counts[5], &done)) {
      return bad("counts");
    }
    done_ = done != 0;
    if (!absl::StartsWith(lines[2], "rng ") || !rng_.Load(lines[2].substr(4))) return bad("rng");
    members_.clear();
    std::vector<std::string> population;
    for (size_t i = 3; i < lines.size(); ++i) {
      if (absl::StartsWith(lines[i], "population ")) {
        population.push_back(lines[i].substr(11));
        continue;
      }
      std::vector<std::string> f = absl::StrSplit(lines[i], ' ');
      int index, has;
      Member m;
      if (f.size() != 5 + config_.space.size() || f[0] != "member" ||
          !absl::SimpleAtoi(f[1], &index) || !absl::SimpleAtod(f[2], &m.budget) ||
          !absl::SimpleAtoi(f[3], &has) || !absl::SimpleAtod(f[4], &m.value)) {
        return bad("member");
      }
      m.has_value = has != 0;
      for (size_t k = 0; k < config_.space.size(); ++k) {
        double v;
        if (!absl::SimpleAtod(f[5 + k], &v) || !DecodeParam(config_.space[k], v, &m.params))
          return bad("member parameters");
      }
      members_[index] = std::move(m);
    }
    if (!population_.Load(population)) return bad("population");
    return absl::OkStatus();
  }

  bool WantsReports() const override { return true; }
  std::function<Proposal()> Propose() override { return nullptr; }

 private:
  static constexpr double kInf = std::numeric_limits<double>::infinity();
  struct Member {
    Params params;
    double budget = 0;  // the resource it trains to now (its next ready point)
    bool has_value = false;
    double value = 0;  // its latest report
  };

  double NextBudget(double at) const {
    return std::min(at + options_.interval, config_.resource_max);
  }

  const Config config_;
  const PbtOptions options_;
  Population population_;
  Rng rng_;
  std::map<int, Member> members_;
  int created_ = 0, closed_ = 0;
  bool done_ = false;
};

}  // namespace

std::unique_ptr<Searcher> NewPbtSearcher(const Config& config, const PbtOptions& options) {
  return std::make_unique<PbtSearcher>(config, options);
}

}  // namespace rung::search
