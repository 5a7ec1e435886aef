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
#include "worker/subprocess.h"

namespace rung::bench {

struct Rungd {
  std::string dir;
  std::unique_ptr<Subprocess> proc;
  std::string addr;

  // Starts rungd with `bin_dir`/server/rungd; exits the program on failure.
  explicit Rungd(const std::string& bin_dir) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &s, nullptr);
    char tmpl[] = "/tmp/rung-bench-XXXXXX";
    dir = mkdtemp(tmpl);
    SpawnOptions o;
    o.argv = {bin_dir + "/server/rungd", "--listen", "127.0.0.1:0", "--metrics-listen",
              "127.0.0.1:0", "--data-dir", dir + "/data", "--log-level", "warning"};
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
  ~Rungd() {
    proc.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

}  // namespace rung::bench

#endif  // RUNG_BENCH_BENCH_UTIL_H_
