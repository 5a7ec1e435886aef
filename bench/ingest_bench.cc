// Ingest: N simulated workers on real gRPC streams against a real rungd (WAL on). Each
// registers, takes trials for its slots, then streams metric reports in batches the way
// rung-worker does, keeping a few batches in flight. Prints reports per second sustained
// and p50/p99 from a report's creation to its acknowledgement.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "bench/bench_util.h"
#include "grpcpp/grpcpp.h"
#include "rung/v1/experiment_service.grpc.pb.h"
#include "rung/v1/worker_service.grpc.pb.h"

using Clock = std::chrono::steady_clock;
using Stream = grpc::ClientReaderWriter<rung::v1::WorkerMessage, rung::v1::ControllerMessage>;

namespace {

struct Setup {
  std::string addr;
  int workers = 8, slots = 4, batch = 64, inflight = 4;
};

// What the simulated workers share with main.
struct Shared {
  std::atomic<bool> stop{false};
  std::atomic<bool> measuring{false};
  std::atomic<int> ready{0};
  std::atomic<int64_t> acked_reports{0};
  absl::Mutex lat_mu;
  std::vector<double> latencies_us ABSL_GUARDED_BY(lat_mu);
};

// Registers worker `w`, offers its slots and starts the trials rungd assigns; returns them and
// the last message seq used.
std::vector<rung::v1::TrialRef> Register(Stream* stream, const Setup& setup, int w, int64_t* seq) {
  rung::v1::WorkerMessage m;
  auto* reg = m.mutable_register_();
  reg->set_worker_id(absl::StrCat("sim-", w));
  for (int s = 0; s < setup.slots; ++s) reg->add_slots()->set_id(s);
  stream->Write(m);
  m.Clear();
  for (int s = 0; s < setup.slots; ++s) m.mutable_pull()->add_free_slots(s);
  stream->Write(m);
  std::vector<rung::v1::TrialRef> trials;
  rung::v1::ControllerMessage in;
  while (static_cast<int>(trials.size()) < setup.slots && stream->Read(&in)) {
    if (!in.has_assignment()) continue;
    rung::v1::TrialRef ref;
    ref.set_trial_id(in.assignment().trial().id());
    ref.set_attempt(in.assignment().trial().attempt());
    trials.push_back(ref);
  }
  for (const auto& t : trials) {
    rung::v1::WorkerMessage st;
    st.set_seq(++*seq);
    *st.mutable_started()->mutable_trial() = t;
    stream->Write(st);
  }
  return trials;
}

// One simulated worker: registers, then streams report batches, `inflight` unacknowledged at
// most, until told to stop; a reader thread takes the acknowledgements.
void SimulateWorker(const Setup& setup, Shared* shared, int w) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // one connection per worker, as in reality
  auto stub = rung::v1::WorkerService::NewStub(
      grpc::CreateCustomChannel(setup.addr, grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext ctx;
  std::unique_ptr<Stream> stream = stub->Connect(&ctx);
  int64_t seq = 0;
  const std::vector<rung::v1::TrialRef> trials = Register(stream.get(), setup, w, &seq);
  ++shared->ready;
  while (shared->ready.load() < setup.workers) std::this_thread::yield();

  absl::Mutex mu;
  std::map<int64_t, std::pair<Clock::time_point, int>> pending;  // seq -> (sent, reports)
  std::thread reader([&] {
    rung::v1::ControllerMessage msg;
    std::vector<double> local;
    while (stream->Read(&msg)) {
      if (!msg.has_ack()) continue;
      auto now = Clock::now();
      absl::MutexLock l(&mu);
      for (auto it = pending.begin(); it != pending.end() && it->first <= msg.ack().seq();) {
        if (shared->measuring) {
          local.push_back(
              std::chrono::duration<double, std::micro>(now - it->second.first).count());
          shared->acked_reports += it->second.second;
        }
        it = pending.erase(it);
      }
    }
    absl::MutexLock l(&shared->lat_mu);
    shared->latencies_us.insert(shared->latencies_us.end(), local.begin(), local.end());
  });
  std::vector<int64_t> report_seq(trials.size(), 0);
  double step = 0;
  while (!shared->stop) {
    {
      absl::MutexLock l(&mu);
      auto room = [&] { return static_cast<int>(pending.size()) < setup.inflight || shared->stop; };
      mu.Await(absl::Condition(&room));
      if (shared->stop) break;
    }
    rung::v1::WorkerMessage b;
    b.set_seq(++seq);
    step += 1;
    for (int i = 0; i < setup.batch; ++i) {
      size_t t = static_cast<size_t>(i) % trials.size();
      auto* r = b.mutable_reports()->add_reports();
      r->set_trial_id(trials[t].trial_id());
      r->set_attempt(trials[t].attempt());
      r->set_seq(++report_seq[t]);
      r->set_step(step);
      (*r->mutable_values())["loss"] = 1.0 / step;
      (*r->mutable_values())["accuracy"] = 1.0 - 1.0 / step;
    }
    {
      absl::MutexLock l(&mu);
      pending[seq] = {Clock::now(), setup.batch};
    }
    if (!stream->Write(b)) break;
  }
  stream->WritesDone();
  ctx.TryCancel();
  reader.join();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rung ingest benchmark"};
  std::string bin_dir = "build";
  Setup setup;
  double seconds = 10;
  app.add_option("--bin-dir", bin_dir)->capture_default_str();
  app.add_option("--workers", setup.workers)->capture_default_str();
  app.add_option("--slots", setup.slots, "trials per simulated worker")->capture_default_str();
  app.add_option("--batch", setup.batch, "reports per stream message")->capture_default_str();
  app.add_option("--inflight", setup.inflight, "unacknowledged messages per worker")
      ->capture_default_str();
  app.add_option("--seconds", seconds)->capture_default_str();
  std::string wal_sync = "0s";
  app.add_option("--wal-sync", wal_sync, "rungd's --wal-sync: write, or a group-commit delay")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  rung::bench::Rungd rungd(bin_dir, {"--wal-sync", wal_sync});
  setup.addr = rungd.addr;
  auto exp_stub = rung::v1::ExperimentService::NewStub(
      grpc::CreateChannel(rungd.addr, grpc::InsecureChannelCredentials()));
  rung::v1::CreateExperimentRequest req;
  req.set_spec_yaml(absl::StrCat(R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
algorithm: {name: random, seed: 1}
budget: {max_trials: )",
                                 setup.workers * setup.slots, R"(}
trial: {command: [unused]}
)"));
  req.set_base_dir("/tmp");
  rung::v1::Experiment exp;
  {
    grpc::ClientContext ctx;
    auto s = exp_stub->CreateExperiment(&ctx, req, &exp);
    if (!s.ok()) {
      fprintf(stderr, "create: %s\n", s.error_message().c_str());
      return 1;
    }
  }

  Shared shared;
  std::vector<std::thread> threads;
  for (int w = 0; w < setup.workers; ++w)
    threads.emplace_back([&, w] { SimulateWorker(setup, &shared, w); });
  while (shared.ready.load() < setup.workers)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::seconds(1));  // warm-up
  shared.acked_reports = 0;
  shared.measuring = true;
  const Clock::time_point measure_start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const int64_t total = shared.acked_reports.load();
  const double elapsed = std::chrono::duration<double>(Clock::now() - measure_start).count();
  shared.measuring = false;
  shared.stop = true;
  for (auto& t : threads) t.join();

  // Per report: a report waits for its batch's acknowledgement.
  printf(
      "ingest (--wal-sync %s): %d workers x %d trials, %d reports/message, %d messages in flight "
      "each\n",
      wal_sync.c_str(), setup.workers, setup.slots, setup.batch, setup.inflight);
  printf("  reports acknowledged: %lld in %.2f s = %.0f reports/s\n", static_cast<long long>(total),
         elapsed, static_cast<double>(total) / elapsed);
  absl::MutexLock l(&shared.lat_mu);
  printf("  report -> ack latency: p50 %.2f ms, p99 %.2f ms (%zu messages)\n",
         rung::bench::Percentile(shared.latencies_us, 0.50) / 1000,
         rung::bench::Percentile(shared.latencies_us, 0.99) / 1000, shared.latencies_us.size());
  return 0;
}
