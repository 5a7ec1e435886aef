// rung's C++ client, ask and tell: this program runs every trial itself (no rung-worker).
// It minimises (x - 0.3)^2 + (y + 1)^2 with rung's TPE, reporting three "epochs" per trial.
//
//   ask_tell [ADDRESS]        (default 127.0.0.1:7411, with rungd running)
#include <cstdio>

#include "rung/client.h"

int main(int argc, char** argv) {
  rung::ClientOptions options;
  if (argc > 1) options.address = argv[1];
  auto client = rung::Client::Connect(options);
  if (!client.ok()) {
    std::fprintf(stderr, "ask_tell: %s\n", client.status().ToString().c_str());
    return 1;
  }
  rung::Client& c = **client;
  auto exp = c.CreateExperiment(R"(
name: cpp-ask-tell
execution: external
objective: {metric: loss, goal: minimize}
search_space:
  x: {type: float, min: -2, max: 2}
  y: {type: float, min: -2, max: 2}
algorithm: {name: tpe, startup_trials: 5, seed: 7}
budget: {max_trials: 20, max_concurrent: 2}
)");
  if (!exp.ok()) {
    std::fprintf(stderr, "ask_tell: %s\n", exp.status().ToString().c_str());
    return 1;
  }
  int ran = 0;
  for (;;) {
    auto trials = c.Suggest(exp->id, 2);  // waits for a trial; empty when the experiment is done
    if (!trials.ok()) {
      std::fprintf(stderr, "ask_tell: %s\n", trials.status().ToString().c_str());
      return 1;
    }
    if (trials->empty()) break;
    for (const rung::Trial& t : *trials) {
      const double x = *t.Number("x"), y = *t.Number("y");
      const double loss = (x - 0.3) * (x - 0.3) + (y + 1) * (y + 1);
      bool stopped = false;
      for (int epoch = 1; epoch <= 3 && !stopped; ++epoch) {
        auto stop = c.Report(t.id, epoch, {{"loss", loss + (3 - epoch) * 0.5}});
        if (!stop.ok()) {
          std::fprintf(stderr, "ask_tell: %s\n", stop.status().ToString().c_str());
          return 1;
        }
        stopped = *stop;
      }
      auto done = c.Complete(t.id);
      if (!done.ok()) {
        std::fprintf(stderr, "ask_tell: %s\n", done.status().ToString().c_str());
        return 1;
      }
      ++ran;
    }
  }
  auto final = c.GetExperiment(exp->id);
  auto best = c.BestTrials(exp->id, 1);
  if (!final.ok() || !best.ok() || best->empty()) {
    std::fprintf(stderr, "ask_tell: no best trial\n");
    return 1;
  }
  const rung::Trial& b = best->front();
  std::printf("experiment %s %s after %d trials; best %s loss %.4f at x %.3f, y %.3f\n",
              final->id.c_str(), final->state.c_str(), ran, b.id.c_str(), *b.result, *b.Number("x"),
              *b.Number("y"));
  return final->state == "completed" ? 0 : 1;
}
