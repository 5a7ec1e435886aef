// Sample efficiency: regret (best value found minus the known minimum) after 25, 50 and 100
// evaluations, median and quartiles over seeds, with 4 trials in flight: the oldest running
// trial reports, a new one is asked for, as on a 4-slot cluster. Runs rung's searchers
// directly (no RPC). bench/optuna_regret.py runs Optuna 3.1 on the same functions (the
// same formulas, repeated there) with the same protocol; `--check` in both prints each
// function at fixed points so the two can be compared.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "server/search/searcher.h"

namespace {

using namespace rung::search;
constexpr double kPi = 3.14159265358979323846;

struct Problem {
  std::string name;
  std::vector<Param> space;
  std::function<double(const Params&)> f;
  double minimum = 0;
};

Param Float(const std::string& name, double lo, double hi, bool log = false) {
  return {name, Param::Kind::kFloat, lo, hi, log, {}, {}, 0, "", {}};
}

double X(const Params& p, const std::string& name) { return std::get<double>(p.at(name)); }

std::vector<double> Vec(const Params& p, int d) {
  std::vector<double> x;
  for (int i = 0; i < d; ++i) x.push_back(X(p, "x" + std::to_string(i)));
  return x;
}

Problem Box(const std::string& name, int d, double lo, double hi,
            std::function<double(const std::vector<double>&)> f, double minimum) {
  Problem pr{name, {}, nullptr, minimum};
  for (int i = 0; i < d; ++i) pr.space.push_back(Float("x" + std::to_string(i), lo, hi));
  pr.f = [f, d](const Params& p) { return f(Vec(p, d)); };
  return pr;
}

std::vector<Problem> Problems() {
  std::vector<Problem> out;
  {
    Problem b{"branin", {Float("x0", -5, 10), Float("x1", 0, 15)}, nullptr, 0.397887357729739};
    b.f = [](const Params& p) {
      const double x1 = X(p, "x0"), x2 = X(p, "x1");
      const double a = 1, bb = 5.1 / (4 * kPi * kPi), c = 5 / kPi, r = 6, s = 10, t = 1 / (8 * kPi);
      return a * std::pow(x2 - bb * x1 * x1 + c * x1 - r, 2) + s * (1 - t) * std::cos(x1) + s;
    };
    out.push_back(b);
  }
  out.push_back(Box(
      "hartmann6", 6, 0, 1,
      [](const std::vector<double>& x) {
        static const double alpha[4] = {1.0, 1.2, 3.0, 3.2};
        static const double a[4][6] = {{10, 3, 17, 3.5, 1.7, 8},
                                       {0.05, 10, 17, 0.1, 8, 14},
                                       {3, 3.5, 1.7, 10, 17, 8},
                                       {17, 8, 0.05, 10, 0.1, 14}};
        static const double p[4][6] = {{1312, 1696, 5569, 124, 8283, 5886},
                                       {2329, 4135, 8307, 3736, 1004, 9991},
                                       {2348, 1451, 3522, 2883, 3047, 6650},
                                       {4047, 8828, 8732, 5743, 1091, 381}};
        double f = 0;
        for (int i = 0; i < 4; ++i) {
          double e = 0;
          for (int j = 0; j < 6; ++j) e += a[i][j] * std::pow(x[j] - 1e-4 * p[i][j], 2);
          f -= alpha[i] * std::exp(-e);
        }
        return f;
      },
      -3.32236801141551));
  out.push_back(Box(
      "rosenbrock5", 5, -5, 10,
      [](const std::vector<double>& x) {
        double f = 0;
        for (size_t i = 0; i + 1 < x.size(); ++i)
          f += 100 * std::pow(x[i + 1] - x[i] * x[i], 2) + std::pow(1 - x[i], 2);
        return f;
      },
      0));
  out.push_back(Box(
      "ackley10", 10, -32.768, 32.768,
      [](const std::vector<double>& x) {
        double s1 = 0, s2 = 0;
        for (double v : x) {
          s1 += v * v;
          s2 += std::cos(2 * kPi * v);
        }
        const double d = static_cast<double>(x.size());
        return -20 * std::exp(-0.2 * std::sqrt(s1 / d)) - std::exp(s2 / d) + 20 + std::exp(1.0);
      },
      0));
  out.push_back(Box(
      "levy8", 8, -10, 10,
      [](const std::vector<double>& x) {
        auto w = [&](size_t i) { return 1 + (x[i] - 1) / 4; };
        const size_t d = x.size();
        double f = std::pow(std::sin(kPi * w(0)), 2);
        for (size_t i = 0; i + 1 < d; ++i) {
          f += std::pow(w(i) - 1, 2) * (1 + 10 * std::pow(std::sin(kPi * w(i) + 1), 2));
        }
        f += std::pow(w(d - 1) - 1, 2) * (1 + std::pow(std::sin(2 * kPi * w(d - 1)), 2));
        return f;
      },
      0));
  {
    // Mixed: a float, a log float, an int and a categorical; 0 at x = 0.3, lr = 10^-2.5,
    // layers = 7, act = gelu.
    Problem m{"mixed",
              {Float("x", 0, 1),
               Float("lr", 1e-5, 1, true),
               {"layers", Param::Kind::kInt, 1, 12, false, {}, {}, 0, "", {}},
               {"act",
                Param::Kind::kCategorical,
                0,
                0,
                false,
                {"relu", "tanh", "gelu", "elu"},
                {},
                0,
                "",
                {}}},
              nullptr,
              0};
    m.f = [](const Params& p) {
      static const std::map<std::string, double> act = {
          {"relu", 0.3}, {"tanh", 0.6}, {"gelu", 0}, {"elu", 0.15}};
      const double layers = static_cast<double>(std::get<int64_t>(p.at("layers")));
      return std::pow(X(p, "x") - 0.3, 2) + 0.1 * std::pow(std::log10(X(p, "lr")) + 2.5, 2) +
             0.02 * std::pow(layers - 7, 2) + act.at(std::get<std::string>(p.at("act")));
    };
    out.push_back(m);
  }
  {
    // Conditional: sgd (momentum, lr_sgd) or adam (beta1, lr_adam); 0 with adam at
    // beta1 = 0.95, lr_adam = 1e-3; sgd's best is 0.1.
    Problem c{
        "conditional",
        {{"optimizer", Param::Kind::kCategorical, 0, 0, false, {"sgd", "adam"}, {}, 0, "", {}},
         {"momentum", Param::Kind::kFloat, 0, 0.99, false, {}, {}, 0, "optimizer", {"sgd"}},
         {"lr_sgd", Param::Kind::kFloat, 1e-4, 1, true, {}, {}, 0, "optimizer", {"sgd"}},
         {"beta1", Param::Kind::kFloat, 0.8, 0.999, false, {}, {}, 0, "optimizer", {"adam"}},
         {"lr_adam", Param::Kind::kFloat, 1e-5, 1e-1, true, {}, {}, 0, "optimizer", {"adam"}}},
        nullptr,
        0};
    c.f = [](const Params& p) {
      if (std::get<std::string>(p.at("optimizer")) == "sgd") {
        return 0.1 + std::pow(X(p, "momentum") - 0.9, 2) +
               0.1 * std::pow(std::log10(X(p, "lr_sgd")) + 1.5, 2);
      }
      return 10 * std::pow(X(p, "beta1") - 0.95, 2) +
             0.1 * std::pow(std::log10(X(p, "lr_adam")) + 3, 2);
    };
    out.push_back(c);
  }
  return out;
}

// Every parameter at the low end, the middle, or the high end of its range (categoricals:
// the first value; conditionals: the first branch), for --check.
Params At(const std::vector<Param>& space, double where) {
  Params p;
  for (const Param& q : space) {
    if (!Active(q, p)) continue;
    if (q.kind == Param::Kind::kCategorical) {
      p[q.name] = q.values[0];
    } else if (q.kind == Param::Kind::kInt) {
      p[q.name] = static_cast<int64_t>(std::llround(q.min + where * (q.max - q.min)));
    } else {
      p[q.name] = q.log ? std::exp(std::log(q.min) + where * (std::log(q.max) - std::log(q.min)))
                        : q.min + where * (q.max - q.min);
    }
  }
  return p;
}

// Best-so-far regret after each of `evals` evaluations.
std::vector<double> Run(const Problem& pr, Config::Sampler sampler, bool variant, uint64_t seed,
                        int evals, int in_flight) {
  Config c;
  c.sampler = sampler;
  c.tpe_multivariate = variant;
  c.gp_ucb = variant;
  c.space = pr.space;
  c.max_trials = evals;
  c.seed = seed;
  auto s = std::move(NewSearcher(c).value());
  std::deque<Create> running;
  auto ask = [&](int n) {
    for (const auto& a : s->Handle(TrialsWanted{n})) {
      if (const auto* cr = std::get_if<Create>(&a)) running.push_back(*cr);
    }
  };
  ask(in_flight);
  std::vector<double> best;
  double b = 1e300;
  while (!running.empty()) {
    Create t = running.front();
    running.pop_front();
    const double v = pr.f(t.params);
    b = std::min(b, v);
    best.push_back(b - pr.minimum);
    s->Handle(TrialClosed{t.index, TrialClosed::Outcome::kCompleted, true, v});
    ask(1);
  }
  return best;
}

double Quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t i = static_cast<size_t>(pos);
  const double frac = pos - static_cast<double>(i);
  return i + 1 < v.size() ? v[i] * (1 - frac) + v[i + 1] * frac : v[i];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rung regret benchmark"};
  int seeds = 20, evals = 100, in_flight = 4;
  bool check = false;
  std::vector<std::string> only, which;
  app.add_option("--seeds", seeds)->capture_default_str();
  app.add_option("--evals", evals)->capture_default_str();
  app.add_option("--in-flight", in_flight)->capture_default_str();
  app.add_option("--functions", only, "run only these");
  app.add_option(
      "--samplers", which,
      "run only these samplers (rung-random, rung-tpe, rung-tpe-mv, rung-gp, rung-gp-ucb)");
  app.add_flag("--check", check,
               "print each function at its range's low end, middle and high end, and exit");
  CLI11_PARSE(app, argc, argv);

  const auto problems = Problems();
  if (check) {
    for (const Problem& pr : problems) {
      printf("check %-12s %.10g %.10g %.10g\n", pr.name.c_str(), pr.f(At(pr.space, 0)),
             pr.f(At(pr.space, 0.5)), pr.f(At(pr.space, 1)));
    }
    return 0;
  }
  struct S {
    const char* name;
    Config::Sampler sampler;
    bool variant;  // tpe: multivariate; gp: ucb
  };
  const S samplers[] = {{"rung-random", Config::Sampler::kRandom, false},
                        {"rung-tpe", Config::Sampler::kTpe, false},
                        {"rung-tpe-mv", Config::Sampler::kTpe, true},
                        {"rung-gp", Config::Sampler::kGp, false},
                        {"rung-gp-ucb", Config::Sampler::kGp, true}};
  printf("%-12s %-12s %6s %12s %12s %12s %10s\n", "function", "sampler", "evals", "median", "q25",
         "q75", "s/run");
  for (const Problem& pr : problems) {
    if (!only.empty() && std::find(only.begin(), only.end(), pr.name) == only.end()) continue;
    for (const S& s : samplers) {
      if (!which.empty() && std::find(which.begin(), which.end(), s.name) == which.end()) continue;
      std::vector<std::vector<double>> runs;
      const auto t0 = std::chrono::steady_clock::now();
      for (int seed = 1; seed <= seeds; ++seed) {
        runs.push_back(
            Run(pr, s.sampler, s.variant, static_cast<uint64_t>(seed), evals, in_flight));
      }
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / seeds;
      for (int at : {25, 50, 100}) {
        if (at > evals) continue;
        std::vector<double> r;
        for (const auto& run : runs) r.push_back(run[static_cast<size_t>(at - 1)]);
        printf("%-12s %-12s %6d %12.4g %12.4g %12.4g %10.2f\n", pr.name.c_str(), s.name, at,
               Quantile(r, 0.5), Quantile(r, 0.25), Quantile(r, 0.75), secs);
      }
      fflush(stdout);
    }
  }
  return 0;
}
