// Suggestion latency of each sampler with N completed observations and 10 parameters: the
// searcher alone (no RPC), as rungd calls it when a slot frees. Observations come in through
// warm start; each suggestion is followed by its result, so the model's periodic refits are
// in the figures.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "CLI/CLI.hpp"
#include "server/search/searcher.h"

int main(int argc, char** argv) {
  using namespace rung::search;
  CLI::App app{"rung suggestion latency"};
  std::vector<int> sizes = {100, 1000, 10000};
  int suggestions = 20;
  app.add_option("--observations", sizes)->capture_default_str();
  app.add_option("--suggestions", suggestions, "timed suggestions per case")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto space = [](Config::Sampler s) {
    Config c;
    c.sampler = s;
    for (int i = 0; i < 10; ++i) {
      c.space.push_back(
          {"x" + std::to_string(i), Param::Kind::kFloat, 0, 1, false, {}, {}, 0, "", {}});
    }
    c.max_trials = 1'000'000;
    c.seed = 1;
    return c;
  };
  auto objective = [](const Params& p) {
    double s = 0;
    for (const auto& [k, v] : p) s += (std::get<double>(v) - 0.3) * (std::get<double>(v) - 0.3);
    return s;
  };
  printf("%-8s %12s %12s %12s %12s\n", "sampler", "observations", "p50 ms", "p90 ms", "max ms");
  for (auto [name, sampler] :
       {std::pair{"random", Config::Sampler::kRandom}, std::pair{"tpe", Config::Sampler::kTpe},
        std::pair{"tpe-mv", Config::Sampler::kTpe}, std::pair{"gp", Config::Sampler::kGp}}) {
    for (int n : sizes) {
      Config c = space(sampler);
      c.tpe_multivariate = std::string(name) == "tpe-mv";
      auto source = std::move(NewSearcher(space(Config::Sampler::kRandom)).value());
      for (const auto& a : source->Handle(TrialsWanted{n})) {
        const auto& p = std::get<Create>(a).params;
        c.warm_start.emplace_back(p, objective(p));
      }
      auto s = std::move(NewSearcher(c).value());
      std::vector<double> ms;
      for (int i = 0; i < suggestions; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        auto t = std::get<Create>(s->Handle(TrialsWanted{1}).at(0));
        ms.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count());
        s->Handle(
            TrialClosed{t.index, TrialClosed::Outcome::kCompleted, true, objective(t.params)});
      }
      std::sort(ms.begin(), ms.end());
      printf("%-8s %12d %12.2f %12.2f %12.2f\n", name, n, ms[ms.size() / 2], ms[ms.size() * 9 / 10],
             ms.back());
      fflush(stdout);
    }
  }
  return 0;
}
