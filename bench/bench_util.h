// Shared by rung's benchmarks: start a real rungd on loopback in a temp folder.
#ifndef RUNG_BENCH_BENCH_UTIL_H_
#define RUNG_BENCH_BENCH_UTIL_H_

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "rung/v1/experiment_service.grpc.pb.h"
#include "worker/subprocess.h"

namespace rung::bench {

struct Rungd {
  std::string dir;
  std::unique_ptr<Subprocess> proc;
  std::string addr;

  // Starts rungd with `bin_dir`/server/rungd (and `extra` flags); exits the program on failure.
  explicit Rungd(const std::string& bin_dir, const std::vector<std::string>& extra = {}) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &s, nullptr);
    char tmpl[] = "/tmp/rung-bench-XXXXXX";
    dir = mkdtemp(tmpl);
    SpawnOptions o;
    o.argv = {bin_dir + "/server/rungd",
              "--listen",
              "127.0.0.1:0",
              "--metrics-listen",
              "127.0.0.1:0",
              "--web-listen",
              "127.0.0.1:0",
              "--data-dir",
              dir + "/data",
              "--log-level",
              "warning"};
    o.argv.insert(o.argv.end(), extra.begin(), extra.end());
    o.env = CurrentEnvironment();
    o.stderr_path = dir + "/rungd.log";
    auto p = Subprocess::Spawn(o);
    if (!p.ok()) {
      fprintf(stderr, "cannot start rungd: %s\n", std::string(p.status().message()).c_str());
      exit(1);
    }
    proc = std::move(*p);
    std::string line = WaitForLine(proc.get(), "listening on");
    size_t at = line.find("listening on ") + 13;
    addr = line.substr(at, line.find(',', at) - at);
  }
  // Starts a rung-worker with `slots` CPU slots (and `extra` flags) for this rungd.
  std::unique_ptr<Subprocess> StartWorker(const std::string& bin_dir, int slots,
                                          const std::vector<std::string>& extra = {}) {
    SpawnOptions o;
    o.argv = {bin_dir + "/worker/rung-worker",
              "--controller",
              addr,
              "--slots",
              absl::StrCat(slots),
              "--gpus",
              "none",
              "--name",
              "bench",
              "--work-dir",
              dir + "/worker",
              "--log-level",
              "warning"};
    o.argv.insert(o.argv.end(), extra.begin(), extra.end());
    o.env = CurrentEnvironment();
    o.stderr_path = dir + "/worker.log";
    auto worker = Subprocess::Spawn(o);
    if (!worker.ok() || WaitForLine(worker->get(), "serving").empty()) {
      fprintf(stderr, "cannot start rung-worker; see %s/worker.log\n", dir.c_str());
      exit(1);
    }
    return std::move(*worker);
  }

  std::unique_ptr<v1::ExperimentService::Stub> Stub() const {
    return v1::ExperimentService::NewStub(
        grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  }

  ~Rungd() {
    proc.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

// Submits a spec (YAML); exits the program on failure.
inline v1::Experiment Submit(v1::ExperimentService::Stub* stub, const std::string& yaml) {
  v1::CreateExperimentRequest req;
  req.set_spec_yaml(yaml);
  req.set_base_dir("/tmp");
  v1::Experiment exp;
  grpc::ClientContext ctx;
  auto s = stub->CreateExperiment(&ctx, req, &exp);
  if (!s.ok()) {
    fprintf(stderr, "create: %s\n", s.error_message().c_str());
    exit(1);
  }
  return exp;
}

// Follows the experiment's watch stream until it ends; returns its trials then.
inline std::vector<v1::Trial> WaitForEnd(v1::ExperimentService::Stub* stub, const std::string& id) {
  {
    grpc::ClientContext ctx;
    v1::WatchExperimentRequest req;
    req.set_id(id);
    auto reader = stub->WatchExperiment(&ctx, req);
    v1::WatchEvent ev;
    while (reader->Read(&ev)) {
    }
    reader->Finish();
  }
  v1::ListTrialsRequest req;
  req.set_experiment_id(id);
  v1::ListTrialsResponse list;
  grpc::ClientContext ctx;
  stub->ListTrials(&ctx, req, &list);
  return {list.trials().begin(), list.trials().end()};
}

inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

}  // namespace rung::bench

#endif  // RUNG_BENCH_BENCH_UTIL_H_
