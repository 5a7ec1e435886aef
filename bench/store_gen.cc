// Writes a large, realistic data folder for the restart and memory benchmark (bench/scale.sh):
// one running experiment (random search with ASHA, five parameters) whose trials ran on
// simulated workers' slots, each reporting loss, accuracy and its epoch ten times an epoch.
//
// The records are rungd's own: the trials go through rungd's ExperimentRun (NextTrial, Assign,
// Started, Report, Exited), with the real searcher deciding which trials ASHA stops, into the
// real store. Only the workers and the gRPC streams are left out, and a round of every
// slot's work is one write rather than one a message. The program ends the way a killed rungd
// does: its last writes are in the write-ahead log, not yet in tables, and the trials of the
// last round still run.
//
//   store_gen --data-dir DIR --trials 1000000
#include <sys/resource.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "server/schedule/experiment_run.h"
#include "server/schedule/search_config.h"
#include "server/spec/spec.h"

namespace rung {
namespace {

constexpr char kSpec[] = R"(
name: scale
objective: {metric: loss, goal: minimize}
resource: {metric: epoch, min: 1, max: 81}
search_space:
  lr: {type: float, min: 1.0e-5, max: 1.0e-1, log: true}
  weight_decay: {type: float, min: 1.0e-6, max: 1.0e-2, log: true}
  layers: {type: int, min: 1, max: 8}
  activation: {type: categorical, values: [relu, tanh, gelu]}
  dropout: {type: float, min: 0, max: 0.5}
algorithm: {name: asha, reduction_factor: 3, seed: 11}
budget: {max_trials: 2000000, max_concurrent: 10000}
trial:
  command: [python3, train.py, --lr, "{lr}", --weight-decay, "{weight_decay}", --layers, "{layers}"]
  workdir: /srv/models/resnet
)";

// The simulated model: a loss that falls with the epochs toward a floor set by the
// parameters, with noise, so that ASHA's rankings mean something.
double Loss(const v1::Trial& t, double epoch, std::mt19937_64* rng) {
  const double lr = t.params().at("lr").float_value();
  const double layers = static_cast<double>(t.params().at("layers").int_value());
  const double floor = 0.1 + 0.05 * std::pow(std::log10(lr) + 2.5, 2) + 0.02 * std::abs(layers - 5);
  std::normal_distribution<double> noise(0, 0.01);
  return floor + 1.5 / (1 + epoch) + noise(*rng);
}

int Main(int argc, char** argv) {
  CLI::App app("Writes a large data folder made the way rungd makes it");
  std::string dir;
  int trials = 1000000;
  int workers = 20, slots = 10;
  int per_epoch = 10;
  app.add_option("--data-dir", dir, "the data folder to make (must not exist)")->required();
  app.add_option("--trials", trials, "trials that end");
  app.add_option("--workers", workers, "simulated workers");
  app.add_option("--slots", slots, "slots a worker");
  app.add_option("--reports-per-epoch", per_epoch, "reports a trial makes each epoch");
  CLI11_PARSE(app, argc, argv);
  SetLogLevel(LogLevel::kWarning);
  if (std::filesystem::exists(dir)) {
    fprintf(stderr, "%s exists\n", dir.c_str());
    return 2;
  }
  auto spec = ParseSpecYaml(kSpec, "/srv/models");
  if (!spec.ok()) {
    fprintf(stderr, "spec: %s\n", std::string(spec.status().message()).c_str());
    return 1;
  }
  std::filesystem::create_directories(dir);
  auto store = Store::Open(dir);
  if (!store.ok()) {
    fprintf(stderr, "%s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  absl::Time now = absl::FromUnixSeconds(1790000000);  // simulated time: a second a round
  v1::Experiment e;
  e.set_id("e1");
  e.set_seq(1);
  *e.mutable_spec() = *spec;
  e.set_state(v1::EXPERIMENT_PENDING);
  e.set_owner("platform");
  e.set_created_unix_ms(absl::ToUnixMillis(now));
  e.set_updated_unix_ms(e.created_unix_ms());
  SetRungLevels(&e);
  auto searcher = search::NewSearcher(SearchConfig(*spec));
  if (!searcher.ok()) return 1;
  ExperimentRun run(e, std::move(*searcher));
  {
    Change c(now);
    c.batch.PutNextExperiment(2);
    run.Start(&c);
    for (int w = 1; w <= workers; ++w) {
      v1::Worker rec;
      rec.set_id(absl::StrFormat("gpu-node-%03d", w));
      rec.set_host(absl::StrFormat("gpu-node-%03d", w));
      rec.set_addr(absl::StrFormat("10.0.%d.%d", w / 250, w % 250));
      rec.set_state(v1::WORKER_CONNECTED);
      rec.set_last_heartbeat_unix_ms(absl::ToUnixMillis(now));
      for (int s = 0; s < slots; ++s) {
        v1::Slot* slot = rec.add_slots();
        slot->set_id(s);
        slot->set_gpu(absl::StrCat(s));
      }
      c.batch.PutWorker(rec);
    }
    c.PutRecords();
    if (!(*store)->Write(&c.batch).ok()) return 1;
  }

  struct Running {
    int index;
    std::string worker;
    int slot;
    int reports = 0;
  };
  std::vector<Running> running;
  std::vector<std::pair<std::string, int>> free;
  for (int w = 1; w <= workers; ++w) {
    for (int s = 0; s < slots; ++s) free.emplace_back(absl::StrFormat("gpu-node-%03d", w), s);
  }
  std::mt19937_64 rng(7);
  const int64_t pid0 = 40000;
  int ended = 0;
  int64_t reports = 0;
  int next_print = 50000;
  const absl::Time wall = absl::Now();
  while (ended < trials) {
    Change c(now);
    c.watched = [](const std::string&) { return false; };  // nobody watches
    // Every free slot gets a trial (the controller's dispatch), which starts at once.
    while (!free.empty()) {
      std::string why;
      std::function<search::Proposal()> job;
      const int index = run.NextTrial(&c, &why, &job);
      if (index == 0) break;
      auto [worker, slot] = free.back();
      free.pop_back();
      v1::Placement p;
      p.set_worker_id(worker);
      p.add_slots(slot);
      run.Assign(index, {p}, 0, now + absl::Seconds(30), &c);
      v1::Trial* t = run.trial(index);
      v1::TrialStarted m;
      m.mutable_trial()->set_trial_id(t->id());
      m.mutable_trial()->set_attempt(t->attempt());
      m.set_pid(static_cast<int32_t>(pid0 + index % 100000));
      const std::string logs =
          absl::StrCat("/var/lib/rung-worker/trials/", t->id(), "/", t->attempt());
      m.set_stdout_path(logs + "/stdout.log");
      m.set_stderr_path(logs + "/stderr.log");
      run.Started(t, m, worker, &c);
      running.push_back({index, worker, slot});
    }
    if (ended + static_cast<int>(running.size()) > trials + 10000) break;  // cannot happen
    // A round: each running trial trains one epoch and reports `per_epoch` times.
    std::vector<Running> still;
    for (Running& r : running) {
      v1::Trial* t = run.trial(r.index);
      bool stop = false;
      for (int k = 0; k < per_epoch && !stop; ++k) {
        ++r.reports;
        const double epoch = static_cast<double>(r.reports) / per_epoch;
        v1::MetricReport m;
        m.set_trial_id(t->id());
        m.set_attempt(t->attempt());
        m.set_seq(r.reports);
        m.set_step(r.reports);
        const double loss = Loss(*t, epoch, &rng);
        (*m.mutable_values())["loss"] = loss;
        (*m.mutable_values())["accuracy"] = std::max(0.0, 1 - loss);
        (*m.mutable_values())["epoch"] = epoch;
        m.set_unix_ms(absl::ToUnixMillis(now) + k * 100);
        run.Report(t, m, &c);
        ++reports;
        stop = t->stop_requested() || epoch >= 81;
      }
      run.PutTrial(*t, &c);
      if (!stop) {
        still.push_back(r);
        continue;
      }
      v1::TrialExited m;
      m.mutable_trial()->set_trial_id(t->id());
      m.mutable_trial()->set_attempt(t->attempt());
      if (t->stop_requested()) {
        m.set_signal(15);
        m.set_stopped(true);
      }
      m.set_exit_unix_us(absl::ToUnixMicros(now) + 500000);
      run.Exited(t, m, r.worker, &c);
      free.emplace_back(r.worker, r.slot);
      ++ended;
    }
    running = std::move(still);
    c.PutRecords();
    absl::Status s = (*store)->Write(&c.batch);
    if (!s.ok()) {
      fprintf(stderr, "%s\n", std::string(s.message()).c_str());
      return 1;
    }
    now += absl::Seconds(1);
    if (ended >= next_print || ended >= trials) {
      next_print += 50000;
      fprintf(stderr, "%d trials ended, %lld reports, %.0f s\n", ended,
              static_cast<long long>(reports), absl::ToDoubleSeconds(absl::Now() - wall));
    }
  }
  if (!(*store)->Sync().ok()) return 1;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf(
      "trials_ended=%d trials_running=%zu reports=%lld points=%lld seconds=%.1f max_rss_mb=%ld\n",
      ended, running.size(), static_cast<long long>(reports), static_cast<long long>(reports) * 3,
      absl::ToDoubleSeconds(absl::Now() - wall), ru.ru_maxrss / 1024);
  fflush(stdout);
  _exit(0);  // as a killed rungd: no flush of the memtables
}

}  // namespace
}  // namespace rung

int main(int argc, char** argv) { return rung::Main(argc, argv); }
