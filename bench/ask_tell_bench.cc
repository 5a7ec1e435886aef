// Ask and tell through the C++ client (rung/client.h) against a real rungd (WAL fsynced):
// C client threads each ask for one trial, report it R times and complete it, until the
// experiment's N trials are done. Prints each call's latency (p50, p99) and the trials and
// calls per second. Every ask, report and complete is durable before it is answered.
// --batch B: each client asks for B trials at once and tells their R reports and their
// completions in one TellTrials call (Client::Tell).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>

#include "CLI/CLI.hpp"
#include "bench/bench_util.h"
#include "rung/client.h"

namespace {

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ask-and-tell latency and throughput against a real rungd"};
  std::string bin_dir = "build", algorithm = "random";
  int trials = 2000, clients = 4, reports = 3, batch = 1;
  app.add_option("--bin-dir", bin_dir, "the build folder")->capture_default_str();
  app.add_option("--trials", trials, "trials in the experiment")->capture_default_str();
  app.add_option("--clients", clients, "client threads, each with its own Client and client_id")
      ->capture_default_str();
  app.add_option("--reports", reports, "reports per trial before it completes")
      ->capture_default_str();
  app.add_option("--algorithm", algorithm, "random or tpe")->capture_default_str();
  app.add_option("--batch", batch,
                 "trials asked for and told in one call each (1: one call an operation)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  rung::bench::Rungd rungd(bin_dir);
  rung::ClientOptions options;
  options.address = rungd.addr;
  auto admin = rung::Client::Connect(options);
  auto exp = (*admin)->CreateExperiment(absl::StrCat(R"(
execution: external
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}, y: {type: int, min: 1, max: 8}}
algorithm: {name: )",
                                                     algorithm, R"(, seed: 1}
budget: {max_trials: )",
                                                     trials, ", max_concurrent: ", clients * batch,
                                                     "}\n"));
  if (!exp.ok()) {
    std::fprintf(stderr, "%s\n", exp.status().ToString().c_str());
    return 1;
  }
  std::mutex mu;
  std::vector<double> ask_ms, report_ms, complete_ms;
  auto ms_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
  };
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      auto c = rung::Client::Connect(options);
      std::vector<double> a, r, d;
      const std::string me = absl::StrCat("bench-", i);
      while (batch > 1) {
        auto t0 = std::chrono::steady_clock::now();
        auto got = (*c)->Suggest(exp->id, batch, me);
        a.push_back(ms_since(t0));
        if (!got.ok() || got->empty()) break;
        std::vector<rung::Client::TellReport> told;
        std::vector<rung::Client::TellCompletion> ended;
        for (const rung::Trial& t : *got) {
          const double loss = *t.Number("x") + *t.Number("y");
          for (int step = 1; step <= reports; ++step)
            told.push_back({t.id, static_cast<double>(step), {{"loss", loss + reports - step}}});
          ended.push_back({t.id, {}, false, ""});
        }
        t0 = std::chrono::steady_clock::now();
        auto results = (*c)->Tell(exp->id, told, ended, me);
        d.push_back(ms_since(t0));
        if (!results.ok()) {
          std::fprintf(stderr, "tell: %s\n", results.status().ToString().c_str());
          break;
        }
      }
      for (; batch == 1;) {
        auto t0 = std::chrono::steady_clock::now();
        auto got = (*c)->Suggest(exp->id, 1, me);
        a.push_back(ms_since(t0));
        if (!got.ok() || got->empty()) break;
        const rung::Trial& t = got->front();
        const double loss = *t.Number("x") + *t.Number("y");
        for (int step = 1; step <= reports; ++step) {
          t0 = std::chrono::steady_clock::now();
          (void)(*c)->Report(t.id, step, {{"loss", loss + reports - step}});
          r.push_back(ms_since(t0));
        }
        t0 = std::chrono::steady_clock::now();
        (void)(*c)->Complete(t.id);
        d.push_back(ms_since(t0));
      }
      std::lock_guard<std::mutex> l(mu);
      ask_ms.insert(ask_ms.end(), a.begin(), a.end());
      report_ms.insert(report_ms.end(), r.begin(), r.end());
      complete_ms.insert(complete_ms.end(), d.begin(), d.end());
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = ms_since(start) / 1000;
  auto done = (*admin)->GetExperiment(exp->id);
  const size_t calls = ask_ms.size() + report_ms.size() + complete_ms.size();
  std::printf(
      "ask/tell (%s): %d trials, %d clients, %d reports each, batch %d: %s in %.2f s; %.0f "
      "trials/s, %.0f calls/s\n",
      algorithm.c_str(), trials, clients, reports, batch, done.ok() ? done->state.c_str() : "?",
      seconds, done.ok() ? done->completed / seconds : 0, static_cast<double>(calls) / seconds);
  if (batch > 1) {
    std::printf("  latency ms p50/p99: ask %.2f/%.2f, tell %.2f/%.2f\n", Percentile(ask_ms, 0.5),
                Percentile(ask_ms, 0.99), Percentile(complete_ms, 0.5),
                Percentile(complete_ms, 0.99));
  } else {
    std::printf("  latency ms p50/p99: ask %.2f/%.2f, report %.2f/%.2f, complete %.2f/%.2f\n",
                Percentile(ask_ms, 0.5), Percentile(ask_ms, 0.99), Percentile(report_ms, 0.5),
                Percentile(report_ms, 0.99), Percentile(complete_ms, 0.5),
                Percentile(complete_ms, 0.99));
  }
  return done.ok() && done->state == "completed" ? 0 : 1;
}
