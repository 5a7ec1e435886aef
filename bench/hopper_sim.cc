// A discrete-event simulation of training C configurations for E epochs on W workers three
// ways, with the data and model sizes as parameters (issue: model hopper parallelism):
//
// - hopper: the data is split into W partitions, one per worker; the models hop, one unit
//   (one pass over a partition) at a time, as rungd's schedule (server/search/hopper.h, the
//   same code) hands them out; each unit moves the model up to rungd and down to the next
//   worker;
// - task: every worker holds all the data and trains whole configurations, one at a time;
// - data: each configuration in turn is trained by all W workers together, each on its share
//   of every batch, with a ring all-reduce of the gradients per step; a step waits for the
//   slowest worker.
//
// Workers differ in speed (a seeded factor each); the network is one bandwidth per link.
// Prints, per W and mode: the makespan, the workers' compute utilisation (time spent
// training over W x makespan), bytes moved over the network (data shipped to workers, model
// state, gradients), copies of the data stored, and what each worker stores.
#include <algorithm>
#include <cstdio>
#include <queue>
#include <set>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "server/search/hopper.h"
#include "server/search/rng.h"

namespace rung::bench {
namespace {

struct Params {
  int configs = 16;
  int epochs = 10;
  double samples = 1.28e6;       // training samples
  double sample_bytes = 110e3;   // bytes per sample as stored
  double model_bytes = 100e6;    // model (and optimizer) state that hops, and gradient size
  double sample_seconds = 1e-3;  // compute per sample on a speed-1 worker
  double batch = 32;             // per worker and step (data parallelism)
  double bandwidth = 1.25e9;     // bytes per second per link (10 Gbit/s)
  double latency = 50e-6;        // seconds per message (all-reduce steps)
  double spread = 0.2;           // worker speeds uniform in [1 - spread, 1 + spread]
  uint64_t seed = 1;
};

struct Outcome {
  double makespan = 0, compute = 0, bytes = 0, copies = 0, per_worker = 0;
};

std::vector<double> Speeds(const Params& p, int workers) {
  search::Rng rng(p.seed);
  std::vector<double> s(workers);
  for (double& v : s) v = 1 - p.spread + 2 * p.spread * rng.Uniform();
  return s;
}

Outcome Hopper(const Params& p, int workers) {
  const std::vector<double> speed = Speeds(p, workers);
  search::HopperSchedule schedule(workers, p.epochs, p.seed);
  for (int c = 0; c < p.configs; ++c) schedule.Add(c);
  const double unit_compute = p.samples / workers * p.sample_seconds;
  const double hop = 2 * p.model_bytes / p.bandwidth;  // up to rungd, down to the next worker
  Outcome o;
  // Events: (time, partition) when a worker finishes a unit.
  using Event = std::pair<double, int>;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events;
  std::vector<search::HopperSchedule::Unit> running(workers);
  std::set<int> free;
  for (int w = 0; w < workers; ++w) free.insert(w);
  double now = 0;
  int units = 0;
  for (;;) {
    for (const auto& u : schedule.Next(free)) {
      free.erase(u.partition);
      running[u.partition] = u;
      const double compute = unit_compute / speed[u.partition];
      o.compute += compute;
      // The first unit of a model has nothing to download.
      events.push({now + compute + (units < p.configs ? hop / 2 : hop), u.partition});
      o.bytes += units < p.configs ? p.model_bytes : 2 * p.model_bytes;
      ++units;
    }
    if (events.empty()) break;
    auto [t, w] = events.top();
    events.pop();
    now = t;
    schedule.Done(running[w]);
    free.insert(w);
  }
  o.makespan = now;
  o.bytes += p.samples * p.sample_bytes;  // each partition shipped once, to its worker
  o.copies = 1;
  o.per_worker = p.samples * p.sample_bytes / workers + p.model_bytes;
  return o;
}

Outcome Task(const Params& p, int workers) {
  const std::vector<double> speed = Speeds(p, workers);
  const double whole = p.epochs * p.samples * p.sample_seconds;
  // Longest-processing-first onto the earliest free worker (the fastest on ties).
  std::vector<double> free_at(workers, 0);
  Outcome o;
  for (int c = 0; c < p.configs; ++c) {
    int best = 0;
    for (int w = 1; w < workers; ++w) {
      const double end_w = free_at[w] + whole / speed[w];
      const double end_b = free_at[best] + whole / speed[best];
      if (end_w < end_b) best = w;
    }
    free_at[best] += whole / speed[best];
    o.compute += whole / speed[best];
  }
  o.makespan = *std::max_element(free_at.begin(), free_at.end());
  o.bytes = workers * p.samples * p.sample_bytes;  // the whole dataset to every worker
  o.copies = workers;
  o.per_worker = p.samples * p.sample_bytes + p.model_bytes;
  return o;
}

Outcome Data(const Params& p, int workers) {
  const std::vector<double> speed = Speeds(p, workers);
  const double slowest = *std::min_element(speed.begin(), speed.end());
  const double steps = p.samples / (p.batch * workers);  // per epoch
  const double step_compute = p.batch * p.sample_seconds / slowest;
  // Ring all-reduce: 2 (W - 1) messages of M / W bytes each way per worker.
  const double allreduce =
      workers > 1 ? 2.0 * (workers - 1) * (p.model_bytes / workers / p.bandwidth + p.latency) : 0;
  Outcome o;
  o.makespan = p.configs * p.epochs * steps * (step_compute + allreduce);
  for (double s : speed) o.compute += p.configs * p.epochs * steps * p.batch * p.sample_seconds / s;
  o.bytes = p.samples * p.sample_bytes +  // each share shipped once
            p.configs * p.epochs * steps * (workers > 1 ? 2.0 * (workers - 1) * p.model_bytes : 0);
  o.copies = 1;
  o.per_worker = p.samples * p.sample_bytes / workers + p.model_bytes;
  return o;
}

void Print(const char* mode, int workers, const Outcome& o) {
  std::printf("%-7s %3d %12.2f %7.1f%% %14.1f %7.0f %12.2f\n", mode, workers, o.makespan / 3600,
              100 * o.compute / (workers * o.makespan), o.bytes / 1e9, o.copies,
              o.per_worker / 1e9);
}

}  // namespace
}  // namespace rung::bench

int main(int argc, char** argv) {
  rung::bench::Params p;
  std::vector<int> workers = {4, 16};
  CLI::App app("hopper_sim: model hopper vs task vs data parallelism, simulated");
  app.add_option("--configs", p.configs)->capture_default_str();
  app.add_option("--epochs", p.epochs)->capture_default_str();
  app.add_option("--samples", p.samples, "training samples")->capture_default_str();
  app.add_option("--sample-bytes", p.sample_bytes)->capture_default_str();
  app.add_option("--model-bytes", p.model_bytes, "model state, and gradients")
      ->capture_default_str();
  app.add_option("--sample-seconds", p.sample_seconds, "compute per sample")->capture_default_str();
  app.add_option("--batch", p.batch, "per worker and step (data parallelism)")
      ->capture_default_str();
  app.add_option("--bandwidth", p.bandwidth, "bytes/s per link")->capture_default_str();
  app.add_option("--spread", p.spread, "worker speed spread")->capture_default_str();
  app.add_option("--workers", workers)->capture_default_str();
  app.add_option("--seed", p.seed)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::printf(
      "%d configurations, %d epochs, %.3g samples of %.3g bytes, model %.3g bytes, "
      "%.3g s/sample, %.3g bytes/s links, speeds 1 +- %.2f\n",
      p.configs, p.epochs, p.samples, p.sample_bytes, p.model_bytes, p.sample_seconds, p.bandwidth,
      p.spread);
  std::printf("%-7s %3s %12s %8s %14s %7s %12s\n", "mode", "W", "makespan_h", "util", "moved_GB",
              "copies", "per_worker_GB");
  for (int w : workers) {
    rung::bench::Print("hopper", w, rung::bench::Hopper(p, w));
    rung::bench::Print("task", w, rung::bench::Task(p, w));
    rung::bench::Print("data", w, rung::bench::Data(p, w));
  }
  return 0;
}
