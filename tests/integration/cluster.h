// A real rung cluster for integration tests: rungd and rung-worker processes on loopback,
// port 0, a temp folder. Processes are killed when the Cluster goes away.
#ifndef RUNG_TESTS_INTEGRATION_CLUSTER_H_
#define RUNG_TESTS_INTEGRATION_CLUSTER_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/connect.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "rung/v1/experiment_service.grpc.pb.h"
#include "tests/test_util.h"
#include "worker/subprocess.h"

namespace rung::testing {

// The build and source folders, fixed when the test was built.
inline std::string BinDir() { return RUNG_TEST_BIN_DIR; }
inline std::string SourceDir() { return RUNG_TEST_SOURCE_DIR; }

// Waits up to `timeout_ms` for `p` to exit (SIGCHLD is blocked in tests, so this waits for
// one rather than polling); true once it has, with its waitpid() status in `*status`.
inline bool AwaitExit(Subprocess* p, int* status, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  while (!p->Poll(status)) {
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    const timespec wait{static_cast<time_t>(left.count() / 1000000000),
                        static_cast<long>(left.count() % 1000000000)};
    sigtimedwait(&chld, nullptr, &wait);
  }
  return true;
}

class Cluster {
 public:
  Cluster() {
    // SIGCHLD stays blocked so that Subprocess reaping is explicit.
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &s, nullptr);
    std::filesystem::create_directories(jobs_dir());
  }

  // Where specs "live": trials run here, a folder apart from the workers' own.
  std::string jobs_dir() const { return dir_.Sub("jobs"); }

  // Starts rungd on `port` (0: any free one) with the cluster's data folder.
  void StartRungd(int port = 0, const std::string& lease_timeout = "30s") {
    SpawnOptions o;
    o.argv = rungd_prefix_;
    for (std::string a :
         {BinDir() + "/server/rungd", std::string("--listen"), absl::StrCat("127.0.0.1:", port),
          std::string("--metrics-listen"), std::string("127.0.0.1:0"), std::string("--web-listen"),
          std::string("127.0.0.1:0"), std::string("--data-dir"),
          data_dir_.empty() ? dir_.Sub("data") : data_dir_, std::string("--lease-timeout"),
          lease_timeout, std::string("--heartbeat-interval"), std::string("1s")}) {
      o.argv.push_back(std::move(a));
    }
    o.argv.insert(o.argv.end(), rungd_flags_.begin(), rungd_flags_.end());
    o.env = CurrentEnvironment();
    o.stderr_path = dir_.Sub("rungd.log");
    auto p = Subprocess::Spawn(o);
    ASSERT_TRUE(p.ok()) << p.status();
    rungd_ = std::move(*p);
    std::string line = WaitForLine(rungd_.get(), "listening on");
    ASSERT_FALSE(line.empty()) << "rungd did not start; see " << dir_.Sub("rungd.log");
    // "rungd: listening on 127.0.0.1:PORT, metrics on http://127.0.0.1:PORT/metrics, page on
    // http://127.0.0.1:PORT/, data in ..."
    std::vector<std::string> words = absl::StrSplit(line, ' ');
    addr_ = words[3].substr(0, words[3].size() - 1);
    metrics_url_ = words[6].substr(0, words[6].size() - 1);
    web_url_ = words[9].substr(0, words[9].size() - 1);
    port_ = std::stoi(addr_.substr(addr_.rfind(':') + 1));
    auto channel = Connect(addr_, connect_);
    ASSERT_TRUE(channel.ok()) << channel.status();
    channel_ = *channel;
    stub_ = v1::ExperimentService::NewStub(channel_);
  }

  // kill -9, and reap.
  void KillRungd() {
    rungd_->SignalGroup(SIGKILL);
    rungd_.reset();
  }

  // The worker runs in the cluster's folder with a relative --work-dir (`name`), as a
  // person would start it.
  // `controller`: the address it dials, when not rungd's own (a proxy).
  void StartWorker(const std::string& name, int slots, const std::string& controller = "") {
    SpawnOptions o;
    o.argv = {
        BinDir() + "/worker/rung-worker", "--controller", controller.empty() ? addr_ : controller,
        "--slots", absl::StrCat(slots), "--gpus", "none", "--name", name, "--work-dir", name,
        "--stop-grace", "1s", "--kill-grace", "2s",
        // Clusters of tests that run at once lend their distributed trials apart ports.
        "--rank-ports", absl::StrCat(20000 + port_ % 97 * 100, "-", 20099 + port_ % 97 * 100)};
    o.argv.insert(o.argv.end(), worker_flags_.begin(), worker_flags_.end());
    o.env = CurrentEnvironment();
    o.workdir = dir_.path();
    o.stderr_path = dir_.Sub(name + ".log");
    auto p = Subprocess::Spawn(o);
    ASSERT_TRUE(p.ok()) << p.status();
    const std::string line = WaitForLine(p->get(), "serving");
    ASSERT_FALSE(line.empty());
    worker_lines_.push_back(line);
    workers_.push_back(std::move(*p));
  }

  // More flags for rungd and for the workers started from now on.
  void set_rungd_flags(std::vector<std::string> flags) { rungd_flags_ = std::move(flags); }
  void set_worker_flags(std::vector<std::string> flags) { worker_flags_ = std::move(flags); }
  // How the test's own calls reach rungd (TLS, token).
  void set_connect(const ConnectOptions& o) { connect_ = o; }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  // The web page, "http://127.0.0.1:PORT/" (https with TLS).
  const std::string& web_url() const { return web_url_; }
  // A context for a call of the test's own, with its token.
  std::unique_ptr<grpc::ClientContext> Context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    AddToken(ctx.get(), connect_);
    return ctx;
  }

  // rungd's data folder; default: data/ in the cluster's folder.
  void set_data_dir(const std::string& dir) { data_dir_ = dir; }
  // A command line that rungd's runs under (it ends with "$@"-style argv passing).
  void set_rungd_prefix(std::vector<std::string> prefix) { rungd_prefix_ = std::move(prefix); }
  Subprocess* rungd() { return rungd_.get(); }
  // rungd's log (its stderr).
  std::string rungd_log() const { return dir_.Sub("rungd.log"); }

  pid_t WorkerPid(size_t i) const { return workers_[i]->pid(); }
  size_t workers_started() const { return workers_.size(); }
  // What worker `i` (in start order) printed once it served ("rung-worker: NAME serving ...").
  const std::string& worker_line(size_t i) const { return worker_lines_[i]; }

  // Waits up to `timeout_ms` for worker `i` (in start order) to exit by itself; returns its
  // waitpid() status, or -1 while it still runs.
  int WaitWorkerExit(size_t i, int timeout_ms = 60000) {
    int status = 0;
    return AwaitExit(workers_[i].get(), &status, timeout_ms) ? status : -1;
  }

  // kill -9 of worker `i` (in start order); its trial processes die with it.
  void KillWorker(size_t i) {
    workers_[i]->SignalGroup(SIGKILL);
    workers_[i].reset();
  }

  v1::Experiment Submit(const std::string& yaml, const std::string& base_dir) {
    v1::CreateExperimentRequest req;
    req.set_spec_yaml(yaml);
    req.set_base_dir(base_dir);
    v1::Experiment e;
    grpc::ClientContext ctx;
    AddToken(&ctx, connect_);
    grpc::Status s = stub_->CreateExperiment(&ctx, req, &e);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return e;
  }

  // Hands every event of the experiment's watch stream to `fn` until it returns true or the
  // stream ends. Returns how many events it saw.
  int WatchEvents(const std::string& id, const std::function<bool(const v1::WatchEvent&)>& fn) {
    grpc::ClientContext ctx;
    AddToken(&ctx, connect_);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    v1::WatchExperimentRequest req;
    req.set_id(id);
    auto reader = stub_->WatchExperiment(&ctx, req);
    v1::WatchEvent ev;
    int n = 0;
    while (reader->Read(&ev)) {
      ++n;
      if (fn(ev)) {
        ctx.TryCancel();
        break;
      }
    }
    reader->Finish();
    return n;
  }

  // Follows the experiment's watch stream until it ends, or until `until` says stop.
  // Returns the last experiment state seen.
  v1::Experiment Watch(const std::string& id,
                       const std::function<bool(const v1::Experiment&)>& until = nullptr) {
    grpc::ClientContext ctx;
    AddToken(&ctx, connect_);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    v1::WatchExperimentRequest req;
    req.set_id(id);
    auto reader = stub_->WatchExperiment(&ctx, req);
    v1::WatchEvent ev;
    v1::Experiment last;
    while (reader->Read(&ev)) {
      if (!ev.has_experiment()) continue;
      last = ev.experiment();
      if (until && until(last)) {
        ctx.TryCancel();
        break;
      }
    }
    reader->Finish();
    return last;
  }

  std::vector<v1::Trial> Trials(const std::string& id) {
    v1::ListTrialsRequest req;
    req.set_experiment_id(id);
    v1::ListTrialsResponse resp;
    grpc::ClientContext ctx;
    AddToken(&ctx, connect_);
    EXPECT_TRUE(stub_->ListTrials(&ctx, req, &resp).ok());
    return {resp.trials().begin(), resp.trials().end()};
  }

  std::vector<v1::MetricReport> Metrics(const std::string& trial_id) {
    v1::GetTrialMetricsRequest req;
    req.set_trial_id(trial_id);
    v1::GetTrialMetricsResponse resp;
    grpc::ClientContext ctx;
    AddToken(&ctx, connect_);
    EXPECT_TRUE(stub_->GetTrialMetrics(&ctx, req, &resp).ok());
    return {resp.reports().begin(), resp.reports().end()};
  }

  v1::ExperimentService::Stub* stub() { return stub_.get(); }
  const std::string& addr() const { return addr_; }
  const std::string& metrics_url() const { return metrics_url_; }
  int port() const { return port_; }
  const TempDir& dir() const { return dir_; }

 private:
  TempDir dir_;
  std::unique_ptr<Subprocess> rungd_;
  std::vector<std::unique_ptr<Subprocess>> workers_;
  std::string addr_, metrics_url_, web_url_, data_dir_;
  std::vector<std::string> rungd_prefix_, rungd_flags_, worker_flags_, worker_lines_;
  ConnectOptions connect_;
  std::shared_ptr<grpc::Channel> channel_;
  int port_ = 0;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;
};

// Waits until the file at `path` has a line containing `needle` (woken by inotify, not by
// polling); returns the line, or "" after `timeout_ms`. `nth`: the nth such line.
inline std::string WaitForFileLine(const std::string& path, const std::string& needle,
                                   int timeout_ms = 60000, int nth = 1) {
  const int fd = inotify_init1(IN_CLOEXEC);
  if (fd < 0) return "";
  inotify_add_watch(fd, path.c_str(), IN_MODIFY);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string found;
  for (;;) {
    std::ifstream in(path);
    int seen = 0;
    for (std::string line; found.empty() && std::getline(in, line);) {
      if (line.find(needle) != std::string::npos && ++seen == nth) found = line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (!found.empty() || left.count() <= 0) break;
    pollfd pf{fd, POLLIN, 0};
    if (poll(&pf, 1, static_cast<int>(left.count())) > 0) {
      char buf[4096];
      (void)!read(fd, buf, sizeof(buf));
    }
  }
  close(fd);
  return found;
}

// GET `url` (http://host:port/path) with a plain socket and `headers` ("Name: value\r\n"...);
// returns the body, and the HTTP status in `status` when given.
inline std::string HttpGet(const std::string& url, const std::string& headers = "",
                           int* status = nullptr) {
  std::string rest = url.substr(strlen("http://"));
  std::string hostport = rest.substr(0, rest.find('/'));
  std::string path = rest.substr(rest.find('/'));
  int port = std::stoi(hostport.substr(hostport.find(':') + 1));
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  std::string req =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", hostport, "\r\n", headers, "\r\n");
  send(fd, req.data(), req.size(), 0);
  std::string resp;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  if (status != nullptr) *status = resp.size() > 12 ? std::atoi(resp.substr(9, 3).c_str()) : 0;
  size_t body = resp.find("\r\n\r\n");
  return body == std::string::npos ? resp : resp.substr(body + 4);
}

// A random search whose trials run tests/integration/report_module.py: `steps` reports,
// `step_seconds` apart, the loss ending at (x - 0.3)^2 + 0.1 * depth. `trial_extra` adds
// lines under `trial:` (indented two spaces).
inline std::string ReportModuleSpec(const std::string& name, int max_trials, int steps,
                                    const std::string& step_seconds,
                                    const std::string& trial_extra = "") {
  return absl::StrCat(R"(
name: )",
                      name, R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: -1, max: 1}, depth: {type: int, min: 1, max: 4}}
algorithm: {name: random, seed: 5}
budget: {max_trials: )",
                      max_trials, R"(, max_concurrent: 2}
trial:
  command: [/usr/bin/python3, )",
                      SourceDir(), R"(/tests/integration/report_module.py]
  env: {STEPS: ")",
                      steps, R"(", STEP_SECONDS: ")", step_seconds, R"("}
)",
                      trial_extra);
}

// Every report trial `t` made (the (attempt, step) -> loss lines of its made.jsonl, in the
// folders of `workers`) is stored, exactly once and nothing else; returns how many are stored.
inline size_t ExpectEveryReportStoredOnce(Cluster& c, const v1::Trial& t,
                                          const std::vector<std::string>& workers) {
  std::map<std::pair<int, int>, double> made, stored;
  for (const auto& w : workers) {
    std::ifstream in(c.dir().Sub(absl::StrCat(w, "/trials/", t.id(), "/made.jsonl")));
    for (std::string line; std::getline(in, line);) {
      google::protobuf::Struct s;
      EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &s).ok()) << line;
      made[{static_cast<int>(s.fields().at("attempt").number_value()),
            static_cast<int>(s.fields().at("step").number_value())}] =
          s.fields().at("loss").number_value();
    }
  }
  for (const auto& r : c.Metrics(t.id())) {
    auto key = std::make_pair(r.attempt(), static_cast<int>(r.step()));
    EXPECT_EQ(stored.count(key), 0u) << t.id() << " duplicate report";
    stored[key] = r.values().at("loss");
  }
  EXPECT_EQ(stored, made) << t.id();
  return stored.size();
}

struct CliRun {
  int code;
  std::string out;  // stdout and stderr together
};

// Runs a shell command; its exit code and its stdout and stderr together.
inline CliRun Sh(const std::string& cmd) {
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  int status = pclose(f);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Runs the rung CLI against the cluster's rungd.
inline CliRun Rung(const Cluster& c, const std::string& args) {
  return Sh(absl::StrCat(BinDir(), "/client/rung --addr ", c.addr(), " ", args));
}

inline void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// Tokens for tests with --auth-tokens (each test writes its own token file with them).
inline constexpr char kAdmin[] = "admin-token-0123456789abcdef";
inline constexpr char kAlice[] = "alice-token-0123456789abcdef";
inline constexpr char kBob[] = "bob-token-0123456789abcdef0";
inline constexpr char kWorker[] = "worker-token-0123456789abcdef";

// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA,
// in `dir`: ca.pem, server.pem/.key, client.pem/.key; and a second CA nobody trusts.
inline void MakeCertificates(const std::string& dir) {
  WriteFile(dir + "/server.ext", "subjectAltName=IP:127.0.0.1\n");
  const std::string script = absl::StrCat("set -e; cd '", dir, R"(';
    q() { "$@" >/dev/null 2>&1; }
    q openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=rung-test-ca
    q openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=stranger
    q openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1
    q openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext
    q openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=rung-client
    q openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2
  )");
  ASSERT_EQ(system(script.c_str()), 0) << "openssl failed";
}

// The TCP ports process `pid` listens on (from /proc: its sockets' inodes, in the LISTEN state).
inline std::set<int> ListeningPorts(pid_t pid) {
  std::set<std::string> inodes;
  const std::string fds = absl::StrCat("/proc/", pid, "/fd");
  for (const auto& e : std::filesystem::directory_iterator(fds)) {
    std::error_code ec;
    const std::string target = std::filesystem::read_symlink(e.path(), ec).string();
    if (!ec && target.rfind("socket:[", 0) == 0) inodes.insert(target.substr(8, target.size() - 9));
  }
  std::set<int> ports;
  for (const char* table : {"/net/tcp", "/net/tcp6"}) {
    std::ifstream in(absl::StrCat("/proc/", pid, table));
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() > 9 && f[3] == "0A" && inodes.count(f[9])) {
        ports.insert(std::stoi(f[1].substr(f[1].rfind(':') + 1), nullptr, 16));
      }
    }
  }
  return ports;
}

}  // namespace rung::testing

#endif  // RUNG_TESTS_INTEGRATION_CLUSTER_H_
