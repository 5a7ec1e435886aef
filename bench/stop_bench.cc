// The stop path, decision to process exit: a real rungd and rung-worker run ASHA experiments
// whose trials report every 5 ms. For each trial ASHA stops, the controller stamps the
// moment it decided and the worker the moment it reaped the process. Two paths:
// cooperative (the trial exits when rung.report() returns True) and forced (the trial
// ignores it; the worker sends SIGTERM after --stop-grace 0s).
#include <cstdio>

#include "CLI/CLI.hpp"
#include "bench/bench_util.h"
#include "grpcpp/grpcpp.h"
#include "rung/v1/experiment_service.grpc.pb.h"

namespace {

std::vector<double> RunOnce(const std::string& bin_dir, const std::string& src_dir, int trials,
                            bool forced) {
  rung::bench::Rungd rungd(bin_dir);
  auto worker = rungd.StartWorker(bin_dir, 4, {"--stop-grace", "0s", "--kill-grace", "5s"});
  auto stub = rungd.Stub();
  auto exp = rung::bench::Submit(stub.get(), absl::StrCat(R"(
objective: {metric: loss, goal: minimize}
resource: {metric: epoch, min: 1, max: 81}
search_space: {x: {type: float, min: -1, max: 1}}
algorithm: {name: asha, reduction_factor: 3, seed: 3}
budget: {max_trials: )",
                                                          trials, R"(, max_concurrent: 4}
trial: {command: [/usr/bin/python3, )",
                                                          src_dir, "/bench/stop_trial.py",
                                                          forced ? ", --ignore-stop" : "", "]}\n"));
  auto list = rung::bench::WaitForEnd(stub.get(), exp.id());
  std::vector<double> ms;
  int failed = 0;
  for (const auto& t : list) {
    failed += t.state() == rung::v1::TRIAL_FAILED;
    if (t.state() == rung::v1::TRIAL_STOPPED && t.stop_decided_unix_us() > 0 &&
        t.exited_unix_us() > 0) {
      ms.push_back((t.exited_unix_us() - t.stop_decided_unix_us()) / 1000.0);
    }
  }
  if (failed > 0)
    fprintf(stderr, "warning: %d trials failed; see %s/worker\n", failed, rungd.dir.c_str());
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rung stop-path benchmark"};
  std::string bin_dir = "build", src_dir = ".";
  int trials = 60;
  app.add_option("--bin-dir", bin_dir)->capture_default_str();
  app.add_option("--source-dir", src_dir)->capture_default_str();
  app.add_option("--trials", trials, "trials per experiment")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  src_dir = std::filesystem::absolute(src_dir).string();  // trials run in another folder
  for (bool forced : {false, true}) {
    std::vector<double> ms = RunOnce(bin_dir, src_dir, trials, forced);
    printf(
        "stop path, %s: %zu trials stopped; decision -> process exit p50 %.1f ms, p99 %.1f ms, max "
        "%.1f ms\n",
        forced ? "forced (SIGTERM at once, --stop-grace 0s)"
               : "cooperative (rung.report() returns True)",
        ms.size(), rung::bench::Percentile(ms, 0.5), rung::bench::Percentile(ms, 0.99),
        ms.empty() ? 0.0 : *std::max_element(ms.begin(), ms.end()));
  }
  return 0;
}
