// Dispatch: a real rungd and rung-worker run M trivial trials (one process that prints one
// @rung line and exits) on S slots. Prints trials per second from a free slot to a finished
// process, and the gap between one trial's end and the next start on the same slot.
#include <chrono>
#include <cstdio>
#include <map>

#include "CLI/CLI.hpp"
#include "bench/bench_util.h"
#include "grpcpp/grpcpp.h"
#include "rung/v1/experiment_service.grpc.pb.h"

int main(int argc, char** argv) {
  CLI::App app{"rung dispatch benchmark"};
  std::string bin_dir = "build";
  int slots = 4, trials = 400;
  app.add_option("--bin-dir", bin_dir)->capture_default_str();
  app.add_option("--slots", slots)->capture_default_str();
  app.add_option("--trials", trials)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  rung::bench::Rungd rungd(bin_dir);
  auto worker = rungd.StartWorker(bin_dir, slots);
  auto stub = rungd.Stub();
  auto start = std::chrono::steady_clock::now();
  auto exp = rung::bench::Submit(stub.get(), absl::StrCat(R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
algorithm: {name: random, seed: 1}
budget: {max_trials: )",
                                                          trials, ", max_concurrent: ", slots, R"(}
trial: {command: [/bin/echo, '@rung {"loss": {x}}']}
)"));
  auto list = rung::bench::WaitForEnd(stub.get(), exp.id());
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int completed = 0;
  std::map<int, std::vector<std::pair<int64_t, int64_t>>> by_slot;  // slot -> (start, end) ms
  for (const auto& t : list) {
    completed += t.state() == rung::v1::TRIAL_COMPLETED;
    if (!t.slots().empty()) by_slot[t.slots(0)].push_back({t.started_unix_ms(), t.ended_unix_ms()});
  }
  std::vector<double> gaps, runs;
  for (auto& [slot, v] : by_slot) {
    std::sort(v.begin(), v.end());
    for (size_t i = 0; i < v.size(); ++i) {
      runs.push_back(static_cast<double>(v[i].second - v[i].first));
      if (i > 0) gaps.push_back(static_cast<double>(v[i].first - v[i - 1].second));
    }
  }
  printf("dispatch: %d trivial trials on %d slots of one worker\n", trials, slots);
  printf("  completed %d in %.2f s = %.1f trials/s\n", completed, elapsed, completed / elapsed);
  printf(
      "  slot idle between trials (end of one to start of next, ms resolution): p50 %.0f ms, p99 "
      "%.0f ms\n",
      rung::bench::Percentile(gaps, 0.5), rung::bench::Percentile(gaps, 0.99));
  printf("  trial start to end as the controller saw it: p50 %.0f ms, p99 %.0f ms\n",
         rung::bench::Percentile(runs, 0.5), rung::bench::Percentile(runs, 0.99));
  return completed == trials ? 0 : 1;
}
