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

int main(int argc, char** argv) {
  CLI::App app{"rung ingest benchmark"};
  std::string bin_dir = "build";
  int workers = 8, slots = 4, batch = 64, inflight = 4;
  double seconds = 10;
  app.add_option("--bin-dir", bin_dir)->capture_default_str();
  app.add_option("--workers", workers)->capture_default_str();
  app.add_option("--slots", slots, "trials per simulated worker")->capture_default_str();
  app.add_option("--batch", batch, "reports per stream message")->capture_default_str();
  app.add_option("--inflight", inflight, "unacknowledged messages per worker")->capture_default_str();
  app.add_option("--seconds", seconds)->capture_default_str();
  std::string wal_sync = "0s";
  app.add_option("--wal-sync", wal_sync, "rungd's --wal-sync: write, or a group-commit delay")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  rung::bench::Rungd rungd(bin_dir, {"--wal-sync", wal_sync});
  auto channel_args = [] {
    grpc::ChannelArguments a;
    a.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // one connection per worker, as in reality
    return a;
  };
  auto exp_stub = rung::v1::ExperimentService::NewStub(
      grpc::CreateChannel(rungd.addr, grpc::InsecureChannelCredentials()));
  rung::v1::CreateExperimentRequest req;
  req.set_spec_yaml(absl::StrCat(R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
algorithm: {name: random, seed: 1}
budget: {max_trials: )", workers * slots, R"(}
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

  std::atomic<bool> stop{false};
  std::atomic<int64_t> acked_reports{0};
  absl::Mutex lat_mu;
  std::vector<double> latencies_us;
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  Clock::time_point measure_start;
  std::atomic<bool> measuring{false};

  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      auto stub = rung::v1::WorkerService::NewStub(grpc::CreateCustomChannel(
          rungd.addr, grpc::InsecureChannelCredentials(), channel_args()));
      grpc::ClientContext ctx;
      auto stream = stub->Connect(&ctx);
      rung::v1::WorkerMessage m;
      auto* reg = m.mutable_register_();
      reg->set_worker_id(absl::StrCat("sim-", w));
      for (int s = 0; s < slots; ++s) reg->add_slots()->set_id(s);
      stream->Write(m);
      m.Clear();
      for (int s = 0; s < slots; ++s) m.mutable_pull()->add_free_slots(s);
      stream->Write(m);
      std::vector<rung::v1::TrialRef> trials;
      rung::v1::ControllerMessage in;
      while (static_cast<int>(trials.size()) < slots && stream->Read(&in)) {
        if (!in.has_assignment()) continue;
        rung::v1::TrialRef ref;
        ref.set_trial_id(in.assignment().trial().id());
        ref.set_attempt(in.assignment().trial().attempt());
        trials.push_back(ref);
      }
      int64_t seq = 0;
      for (const auto& t : trials) {
        rung::v1::WorkerMessage st;
        st.set_seq(++seq);
        *st.mutable_started()->mutable_trial() = t;
        stream->Write(st);
      }
      ++ready;
      while (ready.load() < workers) std::this_thread::yield();

      absl::Mutex mu;
      std::map<int64_t, std::pair<Clock::time_point, int>> pending;  // seq -> (sent, reports)
      int64_t acked_upto = seq;
      std::thread reader([&] {
        rung::v1::ControllerMessage msg;
        std::vector<double> local;
        while (stream->Read(&msg)) {
          if (!msg.has_ack()) continue;
          auto now = Clock::now();
          absl::MutexLock l(&mu);
          for (auto it = pending.begin(); it != pending.end() && it->first <= msg.ack().seq();) {
            if (measuring) {
              local.push_back(std::chrono::duration<double, std::micro>(now - it->second.first).count());
              acked_reports += it->second.second;
            }
            it = pending.erase(it);
          }
          acked_upto = std::max(acked_upto, msg.ack().seq());
        }
        absl::MutexLock l(&lat_mu);
        latencies_us.insert(latencies_us.end(), local.begin(), local.end());
      });
      std::vector<int64_t> report_seq(trials.size(), 0);
      double step = 0;
      while (!stop) {
        {
          absl::MutexLock l(&mu);
          auto room = [&] { return static_cast<int>(pending.size()) < inflight || stop; };
          mu.Await(absl::Condition(&room));
          if (stop) break;
        }
        rung::v1::WorkerMessage b;
        b.set_seq(++seq);
        step += 1;
        for (int i = 0; i < batch; ++i) {
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
          pending[seq] = {Clock::now(), batch};
        }
        if (!stream->Write(b)) break;
      }
      stream->WritesDone();
      ctx.TryCancel();
      reader.join();
    });
  }
  while (ready.load() < workers) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::seconds(1));  // warm-up
  acked_reports = 0;
  measuring = true;
  measure_start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  int64_t total = acked_reports.load();
  double elapsed = std::chrono::duration<double>(Clock::now() - measure_start).count();
  measuring = false;
  stop = true;
  for (auto& t : threads) t.join();

  // Per report: a report waits for its batch's acknowledgement.
  printf("ingest (--wal-sync %s): %d workers x %d trials, %d reports/message, %d messages in flight each\n",
         wal_sync.c_str(),
         workers, slots, batch, inflight);
  printf("  reports acknowledged: %lld in %.2f s = %.0f reports/s\n",
         static_cast<long long>(total), elapsed, static_cast<double>(total) / elapsed);
  printf("  report -> ack latency: p50 %.2f ms, p99 %.2f ms (%zu messages)\n",
         rung::bench::Percentile(latencies_us, 0.50) / 1000,
         rung::bench::Percentile(latencies_us, 0.99) / 1000, latencies_us.size());
  return 0;
}
