// rung-worker: the agent on each node. Parses flags, discovers slots, runs the Agent.
#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "prometheus/exposer.h"
#include "worker/agent.h"
#include "worker/gpus.h"
#include "worker/metrics.h"

namespace {
int Fail(const std::string& msg) {
  std::cerr << "rung-worker: " << msg << "\n";
  return 1;
}

// The address this host reaches `host`:`port` from (no packet is sent); "" when none.
std::string SourceAddress(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) return "";
  std::string out;
  const int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  // connect() on a datagram socket sends nothing; it only picks the route and source address.
  if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    sockaddr_storage local{};
    socklen_t len = sizeof(local);
    char buf[INET6_ADDRSTRLEN] = {0};
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0 &&
        getnameinfo(reinterpret_cast<sockaddr*>(&local), len, buf, sizeof(buf), nullptr, 0,
                    NI_NUMERICHOST) == 0) {
      out = buf;
    }
  }
  if (fd >= 0) close(fd);
  freeaddrinfo(res);
  return out;
}

// The address this host reaches `controller` (HOST:PORT) from: what the other workers of a
// distributed trial most likely reach it at. A loopback address (rungd on this host) is
// replaced by the one that the default route leaves from, when there is one, so that ranks
// on other hosts can reach a rank 0 here. Empty when none is found (rungd then uses the host
// name).
std::string LocalAddressFor(const std::string& controller) {
  const size_t colon = controller.rfind(':');
  std::string host = controller.substr(0, colon);
  const std::string port = colon == std::string::npos ? "7411" : controller.substr(colon + 1);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  std::string addr = SourceAddress(host, port);
  if (addr.rfind("127.", 0) == 0 || addr == "::1") {
    const std::string routed = SourceAddress("192.0.2.1", "9");  // TEST-NET-1: never sent to
    if (!routed.empty()) addr = routed;
  }
  return addr;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rung-worker: runs rung trials on this node"};
  rung::AgentOptions o;
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  o.name = host;
  o.work_dir = "rung-worker";
  if (const char* x = std::getenv("XDG_STATE_HOME"); x && *x) {
    o.work_dir = absl::StrCat(x, "/rung-worker");
  } else if (const char* h = std::getenv("HOME"); h && *h) {
    o.work_dir = absl::StrCat(h, "/.local/state/rung-worker");
  }
  if (const char* a = std::getenv("RUNG_ADDR"); a && *a) o.controller = a;
  int slots = -1;
  std::string gpus, labels, stop_grace = "5s", kill_grace = "10s", orphan_timeout = "1h",
                            runner_idle = "60s", log_level = "info";
  app.add_option("--controller", o.controller, "rungd address (or RUNG_ADDR)")
      ->capture_default_str();
  app.add_option("--slots", slots, "CPU slots (default: 1 without GPUs, 0 with)");
  app.add_option("--gpus", gpus,
                 "GPUs to use, e.g. 0,1 (default: all that nvidia-smi lists; 'none')");
  app.add_option("--work-dir", o.work_dir, "trial folders, logs and the report socket")
      ->capture_default_str();
  app.add_option("--labels", labels, "k=v,... matched against a spec's resources.labels");
  app.add_option("--name", o.name, "worker id, stable across restarts")->capture_default_str();
  app.add_option("--runner-idle-timeout", runner_idle,
                 "a runner (trial.reuse_process) idle this long ends")
      ->capture_default_str();
  app.add_option("--stop-grace", stop_grace, "time a stopped trial gets before SIGTERM")
      ->capture_default_str();
  app.add_option("--kill-grace", kill_grace, "time between SIGTERM and SIGKILL")
      ->capture_default_str();
  app.add_option(
         "--orphan-timeout", orphan_timeout,
         "how long trials keep running while rungd is unreachable; then they are stopped and "
         "rungd runs them again")
      ->capture_default_str();
  std::string rank_ports = "29500-29999", partitions;
  app.add_option("--partitions", partitions,
                 "data partitions this worker holds, e.g. 0,3 (experiments in hopper mode send it "
                 "units that train on them)");
  app.add_option("--advertise-addr", o.advertise_addr,
                 "address the other workers of a distributed trial reach this one at (its "
                 "MASTER_ADDR when it holds rank 0; default: the address it reaches rungd from)");
  app.add_option("--rank-ports", rank_ports,
                 "ports lent to distributed trials: MASTER_PORT and one per rank (TF_CONFIG)")
      ->capture_default_str();
  std::string metrics_listen;
  app.add_option("--metrics-listen", metrics_listen,
                 "serve Prometheus /metrics on HOST:PORT (slots, running trials, launch failures, "
                 "report queue)");
  app.add_option("--token", o.connect.token, "bearer token with role worker (or RUNG_TOKEN)");
  app.add_option("--ca", o.connect.ca_file,
                 "PEM CA that signed rungd's certificate: connect with TLS (or RUNG_CA)");
  app.add_option("--cert", o.connect.cert_file,
                 "PEM client certificate, for mutual TLS (or RUNG_CERT)");
  app.add_option("--key", o.connect.key_file, "its PEM private key (or RUNG_KEY)");
  app.add_option("--log-level", log_level, "debug|info|warning|error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  rung::ConnectFromEnvironment(&o.connect);

  auto level = rung::ParseLogLevel(log_level);
  if (!level.ok()) return Fail(std::string(level.status().message()));
  rung::SetLogLevel(*level);
  rung::SetLogTag(absl::StrCat("rung-worker ", o.name));
  if (!absl::ParseDuration(stop_grace, &o.stop_grace) || o.stop_grace < absl::ZeroDuration()) {
    return Fail(absl::StrCat("--stop-grace: '", stop_grace, "' is not a duration"));
  }
  if (!absl::ParseDuration(orphan_timeout, &o.orphan_timeout) ||
      o.orphan_timeout <= absl::ZeroDuration()) {
    return Fail(
        absl::StrCat("--orphan-timeout: '", orphan_timeout, "' is not a positive duration"));
  }
  if (!absl::ParseDuration(runner_idle, &o.runner_idle_timeout) ||
      o.runner_idle_timeout < absl::ZeroDuration()) {
    return Fail(absl::StrCat("--runner-idle-timeout: '", runner_idle, "' is not a duration"));
  }
  if (!absl::ParseDuration(kill_grace, &o.kill_grace) || o.kill_grace < absl::ZeroDuration()) {
    return Fail(absl::StrCat("--kill-grace: '", kill_grace, "' is not a duration"));
  }
  {
    std::pair<std::string, std::string> range = absl::StrSplit(rank_ports, '-');
    if (!absl::SimpleAtoi(range.first, &o.ports_first) ||
        !absl::SimpleAtoi(range.second, &o.ports_last) || o.ports_first < 1 ||
        o.ports_last > 65535 || o.ports_last <= o.ports_first) {
      return Fail(absl::StrCat("--rank-ports: '", rank_ports, "' is not a range like 29500-29999"));
    }
  }
  if (!partitions.empty()) {
    for (absl::string_view p : absl::StrSplit(partitions, ',')) {
      int n = -1;
      if (!absl::SimpleAtoi(p, &n) || n < 0 || n > 100000) {
        return Fail(absl::StrCat("--partitions: '", partitions,
                                 "' is not a list of partition numbers like 0,3"));
      }
      if (std::find(o.partitions.begin(), o.partitions.end(), n) == o.partitions.end())
        o.partitions.push_back(n);
    }
  }
  if (o.advertise_addr.empty()) o.advertise_addr = LocalAddressFor(o.controller);
  if (!labels.empty()) {
    for (absl::string_view kv : absl::StrSplit(labels, ',')) {
      std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
      if (p.first.empty() || kv.find('=') == absl::string_view::npos) {
        return Fail(absl::StrCat("--labels: '", kv, "' is not k=v"));
      }
      o.labels[p.first] = p.second;
    }
  }
  if (!gpus.empty()) {
    auto list = rung::ParseGpuList(gpus);
    if (!list.ok()) return Fail(std::string(list.status().message()));
    o.gpus = *list;
  } else {
    o.gpus = rung::DiscoverGpus();
  }
  o.cpu_slots = slots >= 0 ? slots : (o.gpus.empty() ? 1 : 0);
  if (slots < -1) return Fail("--slots must not be negative");

  // Taken by the agent's signalfd; blocked before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGCHLD);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto agent = rung::Agent::Create(o);
  if (!agent.ok()) return Fail(std::string(agent.status().message()));
  std::unique_ptr<prometheus::Exposer> exposer;
  std::shared_ptr<prometheus::Collectable> collectable;
  std::string metrics_url;
  if (!metrics_listen.empty()) {
    try {
      exposer = std::make_unique<prometheus::Exposer>(metrics_listen, 1);
    } catch (const std::exception& e) {
      return Fail(absl::StrCat("--metrics-listen ", metrics_listen, ": cannot listen: ", e.what()));
    }
    collectable = rung::WorkerCollectable(&(*agent)->stats(), o.name);
    exposer->RegisterCollectable(collectable);
    const auto ports = exposer->GetListeningPorts();
    metrics_url =
        absl::StrCat(", metrics on http://", metrics_listen.substr(0, metrics_listen.rfind(':')),
                     ":", ports.empty() ? 0 : ports[0], "/metrics");
  }
  std::cout << "rung-worker: " << o.name << " serving " << o.cpu_slots << " CPU slots"
            << (o.gpus.empty() ? "" : absl::StrCat(" and GPUs ", absl::StrJoin(o.gpus, ",")))
            << " for " << o.controller << ", work in " << o.work_dir << metrics_url << std::endl;
  absl::Status s = (*agent)->Run();
  if (!s.ok()) return Fail(std::string(s.message()));
  return 0;
}
