// A discrete-event simulation of a cluster of K workers running trials whose learning curves
// come from bench/curves.h, driven by the same searcher code as rungd (server/search). Each
// epoch is an event; a worker that frees up asks the searcher for work at once, as rungd's
// pull does. Synchronous successive halving (a barrier per rung) is simulated beside it.
//
// Prints, per K and method: worker utilisation over the simulated time, the simulated time
// until the incumbent (the best trial trained to max) is within the target regret, trials
// evaluated, and the regret at the end.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/curves.h"
#include "server/search/rng.h"
#include "server/search/searcher.h"

namespace rung::bench {
namespace {

using search::Action;
using search::Config;

struct Result {
  double utilisation = 0;
  double time_to_target = -1;  // -1: not reached
  int trials = 0;
  double final_regret = -1;
};

constexpr double kMin = 1, kMax = 81;
constexpr int kEta = 3;

Config BaseConfig(uint64_t seed) {
  Config c;
  for (int i = 0; i < kDims; ++i) {
    c.space.push_back(
        {"x" + std::to_string(i), search::Param::Kind::kFloat, 0, 1, false, {}, {}, 0, "", {}});
  }
  c.max_trials = 1'000'000;  // time, not trials, bounds each run
  c.seed = seed;
  c.resource_min = kMin;
  c.resource_max = kMax;
  c.stopping.reduction_factor = kEta;
  return c;
}

// The lowest expected loss at max: dense random sampling, then coordinate descent.
double BestAtMax() {
  search::Rng rng(12345);
  double x[kDims], best[kDims], v = 1e300;
  for (int n = 0; n < 200000; ++n) {
    for (double& xi : x) xi = rng.Uniform();
    double f = MeanLoss(x, static_cast<int>(kMax));
    if (f < v) {
      v = f;
      std::copy(x, x + kDims, best);
    }
  }
  for (double step = 0.05; step > 1e-7; step /= 2) {
    for (bool improved = true; improved;) {
      improved = false;
      for (int i = 0; i < kDims; ++i) {
        for (double d : {-step, step}) {
          double y[kDims];
          std::copy(best, best + kDims, y);
          y[i] = std::clamp(y[i] + d, 0.0, 1.0);
          double f = MeanLoss(y, static_cast<int>(kMax));
          if (f < v - 1e-15) {
            v = f;
            std::copy(y, y + kDims, best);
            improved = true;
          }
        }
      }
    }
  }
  return v;
}

// The incumbent is the trial trained to max with the lowest observed loss (what a user would
// pick); its regret is its expected loss at max minus the best possible. Tracks when the
// regret first came within the target.
struct Incumbent {
  double target;
  double reference;
  double observed = 1e300;
  double regret = -1;
  double reached_at = -1;
  void Offer(const double* x, double observed_value, double now) {
    if (observed_value >= observed) return;
    observed = observed_value;
    regret = MeanLoss(x, static_cast<int>(kMax)) - reference;
    if (reached_at < 0 && regret <= target) reached_at = now;
  }
};

Result Summarise(double busy, int workers, double horizon, const Incumbent& inc, int created) {
  Result r;
  r.utilisation = busy / (static_cast<double>(workers) * horizon);
  r.time_to_target = inc.reached_at;
  r.trials = created;
  r.final_regret = inc.regret;
  return r;
}

// Whether `actions` stop trial `index`.
bool Stops(const std::vector<Action>& actions, int index) {
  for (const Action& a : actions) {
    if (const auto* s = std::get_if<search::Stop>(&a); s && s->index == index) return true;
  }
  return false;
}

// Runs a rung searcher on K simulated workers for `horizon` simulated seconds.
Result SimulateSearcher(const Config& config, int workers, double horizon, double target,
                        double reference) {
  auto searcher = std::move(search::NewSearcher(config).value());
  struct TrialSim {
    double x[kDims];
    int epoch = 0;  // epochs trained so far
    double budget = 0;
    bool running = false, closed = false;
  };
  std::map<int, TrialSim> trials;
  struct Ev {
    double time;
    int worker, trial;
    bool operator>(const Ev& o) const { return time != o.time ? time > o.time : worker > o.worker; }
  };
  std::priority_queue<Ev, std::vector<Ev>, std::greater<Ev>> events;
  std::set<int> idle;
  for (int w = 0; w < workers; ++w) idle.insert(w);
  double busy = 0, now = 0;
  Incumbent inc{target, reference};
  int created = 0;
  bool done = false;

  // Stops and closes in the searcher's actions; returns nothing else of interest.
  std::function<void(const std::vector<Action>&)> apply;
  apply = [&](const std::vector<Action>& actions) {
    for (const Action& a : actions) {
      if (const auto* s = std::get_if<search::Stop>(&a)) {
        TrialSim& t = trials[s->index];
        if (t.closed) continue;
        if (t.running) {
          t.budget = -1;  // ends at its next epoch event; the worker frees then
        } else {          // waiting at a rung
          t.closed = true;
          apply(searcher->Handle(
              search::TrialClosed{s->index, search::TrialClosed::Outcome::kStopped, false, 0}));
        }
      } else if (std::holds_alternative<search::Done>(a)) {
        done = true;
      }
    }
  };
  auto start = [&](int worker, int index) {
    TrialSim& t = trials[index];
    t.running = true;
    events.push({now + EpochSeconds(t.x), worker, index});  // busy time counts per epoch
  };
  auto fill = [&] {
    while (!idle.empty() && !done) {
      auto actions = searcher->Handle(search::TrialsWanted{1});
      std::optional<int> job;
      for (const Action& a : actions) {
        if (const auto* c = std::get_if<search::Create>(&a)) {
          TrialSim t;
          for (int i = 0; i < kDims; ++i)
            t.x[i] = std::get<double>(c->params.at("x" + std::to_string(i)));
          t.budget = c->budget;
          trials[c->index] = t;
          job = c->index;
          ++created;
        } else if (const auto* c = std::get_if<search::Continue>(&a)) {
          trials[c->index].budget = c->budget;
          job = c->index;
        }
      }
      apply(actions);
      if (!job) break;
      int w = *idle.begin();
      idle.erase(idle.begin());
      start(w, *job);
    }
  };
  fill();
  while (!events.empty() && events.top().time <= horizon) {
    Ev ev = events.top();
    events.pop();
    now = ev.time;
    TrialSim& t = trials[ev.trial];
    busy += EpochSeconds(t.x);
    t.epoch += 1;
    const double value = Loss(t.x, t.epoch);
    bool ended = false;
    auto acts =
        searcher->Handle(search::TrialReported{ev.trial, static_cast<double>(t.epoch), value});
    const bool stopped_now = Stops(acts, ev.trial);
    apply(acts);
    if (stopped_now || t.budget < 0) {
      t.running = false;
      t.closed = true;
      ended = true;
      apply(searcher->Handle(
          search::TrialClosed{ev.trial, search::TrialClosed::Outcome::kStopped, false, 0}));
    } else if (t.epoch >= t.budget - 1e-9) {
      t.running = false;
      ended = true;
      if (t.budget >= kMax - 1e-9) {
        t.closed = true;
        inc.Offer(t.x, value, now);
        apply(searcher->Handle(
            search::TrialClosed{ev.trial, search::TrialClosed::Outcome::kCompleted, true, value}));
      } else {
        apply(searcher->Handle(search::TrialPaused{ev.trial}));
      }
    }
    if (ended) {
      idle.insert(ev.worker);
      fill();
    } else {
      events.push({now + EpochSeconds(t.x), ev.worker, ev.trial});
    }
  }
  // Work in flight at the horizon counts as busy up to it.
  while (!events.empty()) {
    Ev ev = events.top();
    events.pop();
    busy += std::max(0.0, horizon - (ev.time - EpochSeconds(trials[ev.trial].x)));
  }
  return Summarise(busy, workers, horizon, inc, created);
}

// Synchronous successive halving: brackets of n configurations at 1 epoch; after each rung
// every worker waits until the whole rung is done, then the top 1/eta continue (from their
// checkpoints) with eta times the epochs. A new bracket starts when the last one ends.
Result SimulateSyncSH(uint64_t seed, int workers, double horizon, double target, double reference) {
  search::Config c = BaseConfig(seed);
  auto sampler = std::move(search::NewSearcher(c).value());
  const int n0 = 81 * ((workers + 80) / 81);
  double now = 0, busy = 0;
  Incumbent inc{target, reference};
  int created = 0;
  while (now < horizon) {
    std::vector<std::array<double, kDims>> configs;
    for (const auto& a : sampler->Handle(search::TrialsWanted{n0})) {
      const auto& p = std::get<search::Create>(a).params;
      std::array<double, kDims> x;
      for (int i = 0; i < kDims; ++i) x[i] = std::get<double>(p.at("x" + std::to_string(i)));
      configs.push_back(x);
    }
    created += n0;
    std::vector<int> alive(configs.size());
    for (size_t i = 0; i < alive.size(); ++i) alive[i] = static_cast<int>(i);
    std::vector<int> trained(configs.size(), 0);
    for (double r = kMin; r <= kMax + 1e-9 && now < horizon; r *= kEta) {
      // Longest-first list scheduling of this rung's jobs on the workers, then a barrier.
      std::vector<std::pair<double, int>> jobs;
      for (int i : alive) jobs.push_back({(r - trained[i]) * EpochSeconds(configs[i].data()), i});
      std::sort(jobs.rbegin(), jobs.rend());
      std::priority_queue<double, std::vector<double>, std::greater<double>> free_at;
      for (int w = 0; w < workers; ++w) free_at.push(now);
      double end = now;
      for (auto& [len, i] : jobs) {
        double s = free_at.top();
        free_at.pop();
        double e = s + len;
        busy += std::max(0.0, std::min(e, horizon) - std::min(s, horizon));
        free_at.push(e);
        end = std::max(end, e);
      }
      now = end;
      std::vector<std::pair<double, int>> ranked;
      for (int i : alive) {
        trained[i] = static_cast<int>(r);
        ranked.push_back({Loss(configs[i].data(), trained[i]), i});
      }
      std::sort(ranked.begin(), ranked.end());
      if (r >= kMax - 1e-9) {
        if (now <= horizon) inc.Offer(configs[ranked[0].second].data(), ranked[0].first, now);
        break;
      }
      alive.clear();
      for (size_t j = 0; j < std::max<size_t>(1, ranked.size() / kEta); ++j)
        alive.push_back(ranked[j].second);
    }
  }
  return Summarise(busy, workers, horizon, inc, created);
}

}  // namespace
}  // namespace rung::bench

int main(int argc, char** argv) {
  using namespace rung::bench;
  CLI::App app{"rung cluster simulation: early-stopping searchers on synthetic learning curves"};
  std::vector<int> ks = {8, 32, 128};
  double target = 0.002;
  double horizon_work = 800000;  // simulated worker-seconds; the horizon is this / K
  int seeds = 5;
  app.add_option("--workers", ks, "cluster sizes")->capture_default_str();
  app.add_option("--target", target, "target regret")->capture_default_str();
  app.add_option("--seeds", seeds, "runs per method and K (median reported)")
      ->capture_default_str();
  app.add_option("--work", horizon_work, "simulated seconds x workers per run")
      ->capture_default_str();
  std::vector<std::string> only;
  app.add_option("--methods", only, "run only these methods");
  CLI11_PARSE(app, argc, argv);

  const double reference = BestAtMax();
  struct Method {
    std::string name;
    std::function<Result(uint64_t, int, double)> run;
  };
  auto rule = [&](rung::search::Stopping::Rule r, bool promote) {
    return [=](uint64_t seed, int k, double horizon) {
      rung::search::Config c = BaseConfig(seed);
      c.stopping.rule = r;
      c.stopping.promote = promote;
      c.stopping.min_trials = 5;
      c.stopping.grace = 3;
      return SimulateSearcher(c, k, horizon, target, reference);
    };
  };
  std::vector<Method> methods = {
      {"asha-stop", rule(rung::search::Stopping::Rule::kAsha, false)},
      {"asha-promote", rule(rung::search::Stopping::Rule::kAsha, true)},
      {"hyperband-stop", rule(rung::search::Stopping::Rule::kHyperband, false)},
      {"hyperband-promote", rule(rung::search::Stopping::Rule::kHyperband, true)},
      {"median", rule(rung::search::Stopping::Rule::kMedian, false)},
      {"sync-sh", [&](uint64_t seed, int k,
                      double h) { return SimulateSyncSH(seed, k, h, target, reference); }},
      {"random-full", rule(rung::search::Stopping::Rule::kNone, false)},
  };
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? -1 : v[v.size() / 2];
  };
  std::printf(
      "curves: 4 parameters, resource 1..81 epochs, eta 3; best expected loss at 81 "
      "epochs %.6f; target regret %.3g; median of %d seeds; horizon = %.0f "
      "worker-seconds / K\n",
      reference, target, seeds, horizon_work);
  std::printf("%-6s %-18s %12s %16s %10s %12s\n", "K", "method", "utilisation", "time-to-target",
              "trials", "end-regret");
  std::map<std::string, std::map<int, double>> ttt;
  for (int k : ks) {
    const double horizon = horizon_work / k;
    for (const Method& m : methods) {
      if (!only.empty() && std::find(only.begin(), only.end(), m.name) == only.end()) continue;
      std::vector<double> util, time, trials, regret;
      int missed = 0;
      for (int s = 1; s <= seeds; ++s) {
        Result r = m.run(static_cast<uint64_t>(s), k, horizon);
        util.push_back(r.utilisation);
        if (r.time_to_target < 0) {
          ++missed;
          time.push_back(1e300);
        } else {
          time.push_back(r.time_to_target);
        }
        trials.push_back(r.trials);
        regret.push_back(r.final_regret);
      }
      double t = median(time);
      ttt[m.name][k] = t;
      std::printf("%-6d %-18s %11.2f%% %16s %10.0f %12.4f\n", k, m.name.c_str(), 100 * median(util),
                  t >= 1e299 ? "not reached" : std::to_string(static_cast<int>(t)).c_str(),
                  median(trials), median(regret));
      if (missed)
        std::printf("%-6s   (%d of %d seeds did not reach the target)\n", "", missed, seeds);
    }
  }
  if (ks.size() >= 2) {
    int lo = ks.front(), hi = ks.back();
    for (const char* m : {"asha-stop", "asha-promote", "hyperband-stop"}) {
      double a = ttt[m][lo], b = ttt[m][hi];
      if (a < 1e299 && b < 1e299) {
        std::printf("speed-up %s K=%d -> K=%d: %.1fx\n", m, lo, hi, a / b);
      }
    }
    for (int k : ks) {
      double a = ttt["asha-stop"][k], s = ttt["sync-sh"][k];
      if (a < 1e299 && s < 1e299)
        std::printf("K=%d: asha-stop time-to-target / sync-sh = %.2f\n", k, a / s);
    }
  }
  return 0;
}
