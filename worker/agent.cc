#include "worker/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/log.h"
#include "grpcpp/grpcpp.h"
#include "rung/v1/worker_service.grpc.pb.h"
#include "worker/python_module.h"
#include "worker/report_parse.h"
#include "worker/subprocess.h"

namespace rung {
namespace {

namespace fs = std::filesystem;
using Stream = grpc::ClientReaderWriter<v1::WorkerMessage, v1::ControllerMessage>;

constexpr size_t kMaxLine = 1 << 20;  // a longer line is cut and not parsed

struct TrialRun {
  v1::Assignment assignment;
  std::string id;
  int attempt = 0;
  std::vector<int> slots;
  std::unique_ptr<Subprocess> proc;
  std::string stdout_path, stderr_path;
  int stdout_log = -1;
  std::string line;
  int64_t report_seq = 0;
  bool stop_requested = false;
  absl::Time term_at = absl::InfiniteFuture();
  absl::Time kill_at = absl::InfiniteFuture();
  bool exited = false;
  int64_t exit_seq = 0;   // seq of our TrialExited message; erase once acknowledged
  bool discard = false;   // the controller no longer wants this attempt
  bool shutdown = false;  // killed because the worker is stopping
  bool orphaned = false;  // stopped because rungd was unreachable past --orphan-timeout
};

struct Conn {
  int fd;
  std::string buf;
};

std::string StderrTail(const std::string& path, int max_lines) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  off_t size = lseek(fd, 0, SEEK_END);
  off_t start = std::max<off_t>(0, size - 4096);
  std::string data(size - start, '\0');
  ssize_t n = pread(fd, data.data(), data.size(), start);
  close(fd);
  if (n <= 0) return "";
  data.resize(n);
  std::vector<std::string> lines = absl::StrSplit(data, '\n', absl::SkipEmpty());
  if (static_cast<int>(lines.size()) > max_lines) {
    lines.erase(lines.begin(), lines.end() - max_lines);
  }
  return absl::StrJoin(lines, "\n");
}

void WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data.remove_prefix(n);
  }
}

class AgentImpl final : public Agent {
 public:
  explicit AgentImpl(AgentOptions o) : o_(std::move(o)) {}
  ~AgentImpl() override {
    for (int fd : {wake_r_, wake_w_, signal_fd_, listen_fd_}) {
      if (fd >= 0) close(fd);
    }
    for (auto& c : conns_) close(c.fd);
  }

  absl::Status Init();
  absl::Status Run() override;
  const AgentStats& stats() const override { return stats_; }

 private:
  // ---- stream thread ----
  void StreamThread();
  bool Write(const v1::WorkerMessage& m);
  void Wake() {
    char c = 1;
    ssize_t unused = write(wake_w_, &c, 1);
    (void)unused;
  }

  // ---- loop ----
  void OnConnected();
  void HandleControllerMessage(const v1::ControllerMessage& m);
  void Launch(const v1::Assignment& a);
  void SendState(v1::WorkerMessage m);  // gives it a seq, keeps it until acknowledged
  void Pull();
  void ReadStdout(TrialRun* run);
  void HandleStdoutLine(TrialRun* run, absl::string_view line);
  void QueueReport(TrialRun* run, const ParsedReport& r);
  void FlushReports();
  void Reap();
  void Finish(TrialRun* run, int status);
  void HandleConn(Conn* c, bool* close_it);
  void RunTimers();
  void BeginShutdown();
  TrialRun* Find(const std::string& id, int attempt);

  const AgentOptions o_;
  std::vector<v1::Slot> slots_;
  std::set<int> free_;
  std::set<int> last_pull_;
  std::map<std::string, std::unique_ptr<TrialRun>> trials_;  // by trial id
  std::deque<v1::WorkerMessage> outbox_;
  int64_t next_seq_ = 1;
  v1::ReportBatch pending_;
  bool registered_ = false;
  AgentStats stats_;
  void UpdateStats();
  absl::Time unregistered_since_ = absl::Now();  // while not registered: since when
  bool shutting_down_ = false;
  absl::Time shutdown_deadline_ = absl::InfiniteFuture();
  absl::Duration heartbeat_ = absl::Seconds(5);
  absl::Time next_heartbeat_ = absl::InfiniteFuture();
  std::string socket_path_, python_dir_;
  std::map<std::string, std::string> base_env_;
  int wake_r_ = -1, wake_w_ = -1, signal_fd_ = -1, listen_fd_ = -1;
  std::vector<Conn> conns_;
  uint64_t seen_gen_ = 0;

  // Shared with the stream thread.
  absl::Mutex mu_;
  std::deque<v1::ControllerMessage> inbox_ ABSL_GUARDED_BY(mu_);
  uint64_t gen_ ABSL_GUARDED_BY(mu_) = 0;  // raised by each new stream
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex stream_mu_;
  Stream* stream_ ABSL_GUARDED_BY(stream_mu_) = nullptr;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(stream_mu_) = nullptr;
  absl::Notification stop_stream_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
};

absl::Status AgentImpl::Init() {
  for (const std::string& g : o_.gpus) {
    v1::Slot s;
    s.set_id(static_cast<int>(slots_.size()));
    s.set_gpu(g);
    slots_.push_back(s);
  }
  for (int i = 0; i < o_.cpu_slots; ++i) {
    v1::Slot s;
    s.set_id(static_cast<int>(slots_.size()));
    slots_.push_back(s);
  }
  if (slots_.empty()) {
    return absl::InvalidArgumentError("no slots: give --slots N or --gpus LIST (no GPU was found)");
  }
  for (const auto& s : slots_) free_.insert(s.id());

  std::error_code ec;
  fs::create_directories(fs::path(o_.work_dir) / "trials", ec);
  if (ec) return absl::UnavailableError(absl::StrCat("--work-dir ", o_.work_dir, ": ", ec.message()));
  python_dir_ = (fs::path(o_.work_dir) / "python").string();
  fs::create_directories(fs::path(python_dir_) / "rung", ec);
  for (int i = 0; i < kPythonModuleFiles; ++i) {
    std::ofstream py(fs::path(python_dir_) / "rung" / kPythonModule[i].name, std::ios::trunc);
    py << kPythonModule[i].source;
    if (!py) return absl::UnavailableError(absl::StrCat("cannot write the rung module in ", python_dir_));
  }
  base_env_ = CurrentEnvironment();
  // The worker's credentials are not the trials' business.
  for (const char* k : {"RUNG_TOKEN", "RUNG_CA", "RUNG_CERT", "RUNG_KEY"}) base_env_.erase(k);

  // The report socket.
  socket_path_ = (fs::absolute(o_.work_dir) / "report.sock").string();
  sockaddr_un addr{};
  if (socket_path_.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("--work-dir ", o_.work_dir, ": the socket path ",
                                                   socket_path_, " is longer than ",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  }
  unlink(socket_path_.c_str());
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
  if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listen_fd_, 128) != 0) {
    return absl::UnavailableError(absl::StrCat("report socket ", socket_path_, ": ", strerror(errno)));
  }

  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return absl::InternalError(strerror(errno));
  wake_r_ = p[0];
  wake_w_ = p[1];
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGCHLD);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  signal_fd_ = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ < 0) return absl::InternalError(absl::StrCat("signalfd: ", strerror(errno)));

  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  auto channel = Connect(o_.controller, o_.connect, args);
  if (!channel.ok()) return channel.status();
  stub_ = v1::WorkerService::NewStub(*channel);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Stream thread

void AgentImpl::StreamThread() {
  absl::Duration backoff = absl::Milliseconds(100);
  while (!stop_stream_.HasBeenNotified()) {
    grpc::ClientContext ctx;
    AddToken(&ctx, o_.connect);
    std::unique_ptr<Stream> stream = stub_->Connect(&ctx);
    {
      absl::MutexLock l(&stream_mu_);
      stream_ = stream.get();
      ctx_ = &ctx;
    }
    {
      absl::MutexLock l(&mu_);
      ++gen_;
      connected_ = true;
    }
    Wake();
    v1::ControllerMessage m;
    bool got_any = false;
    while (stream->Read(&m)) {
      got_any = true;
      absl::MutexLock l(&mu_);
      inbox_.push_back(std::move(m));
      Wake();
    }
    {
      absl::MutexLock l(&stream_mu_);
      stream_ = nullptr;
      ctx_ = nullptr;
    }
    {
      absl::MutexLock l(&mu_);
      connected_ = false;
      ++gen_;
    }
    Wake();
    grpc::Status s = stream->Finish();
    if (got_any) {
      Log(LogLevel::kWarning, absl::StrCat("lost the controller at ", o_.controller, ": ",
                                           s.error_message(), "; reconnecting"));
      backoff = absl::Milliseconds(100);
    } else if (!s.ok() && s.error_code() != grpc::StatusCode::UNAVAILABLE) {
      Log(LogLevel::kError, absl::StrCat("controller refused the stream: ", s.error_message()));
    }
    stop_stream_.WaitForNotificationWithTimeout(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

bool AgentImpl::Write(const v1::WorkerMessage& m) {
  absl::MutexLock l(&stream_mu_);
  if (stream_ == nullptr) return false;
  return stream_->Write(m);
}

// ---------------------------------------------------------------------------------------
// Loop

void AgentImpl::SendState(v1::WorkerMessage m) {
  m.set_seq(next_seq_++);
  outbox_.push_back(m);
  if (registered_) Write(outbox_.back());
}

void AgentImpl::OnConnected() {
  registered_ = false;
  v1::WorkerMessage m;
  v1::Register* r = m.mutable_register_();
  r->set_worker_id(o_.name);
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  r->set_host(host);
  for (const auto& s : slots_) *r->add_slots() = s;
  for (const auto& [k, v] : o_.labels) (*r->mutable_labels())[k] = v;
  r->set_version(RUNG_VERSION);
  r->set_work_dir(o_.work_dir);
  for (const auto& [id, run] : trials_) {
    if (run->discard) continue;
    v1::TrialRef* ref = r->add_trials();
    ref->set_trial_id(run->id);
    ref->set_attempt(run->attempt);
  }
  if (!Write(m)) return;  // the stream thread will notice and reconnect
}

void AgentImpl::Pull() {
  if (!registered_ || shutting_down_) return;
  if (free_ == last_pull_) return;
  v1::WorkerMessage m;
  v1::Pull* pull = m.mutable_pull();  // an empty list is a valid pull: "nothing free"
  for (int s : free_) pull->add_free_slots(s);
  if (Write(m)) last_pull_ = free_;
}

TrialRun* AgentImpl::Find(const std::string& id, int attempt) {
  auto it = trials_.find(id);
  if (it == trials_.end() || it->second->attempt != attempt) return nullptr;
  return it->second.get();
}

void AgentImpl::HandleControllerMessage(const v1::ControllerMessage& m) {
  switch (m.kind_case()) {
    case v1::ControllerMessage::kRegistered: {
      const auto& r = m.registered();
      if (r.heartbeat_interval_ms() > 0) heartbeat_ = absl::Milliseconds(r.heartbeat_interval_ms());
      for (const v1::TrialRef& ref : r.kill()) {
        TrialRun* run = Find(ref.trial_id(), ref.attempt());
        if (run == nullptr) continue;
        Log(LogLevel::kWarning, absl::StrCat("controller gave trial ", ref.trial_id(), " attempt ",
                                             ref.attempt(), " to others; killing our copy"));
        run->discard = true;
        if (!run->exited) run->proc->SignalGroup(SIGKILL);
      }
      registered_ = true;
      unregistered_since_ = absl::InfiniteFuture();
      Log(LogLevel::kInfo, absl::StrCat("registered with ", o_.controller, " as ", o_.name, " (",
                                        slots_.size(), " slots, ", trials_.size(), " trials known)"));
      for (const auto& msg : outbox_) Write(msg);
      last_pull_.clear();
      last_pull_.insert(-1);  // force a pull
      next_heartbeat_ = absl::Now() + heartbeat_;
      break;
    }
    case v1::ControllerMessage::kAck: {
      int64_t seq = m.ack().seq();
      while (!outbox_.empty() && outbox_.front().seq() <= seq) outbox_.pop_front();
      for (auto it = trials_.begin(); it != trials_.end();) {
        TrialRun* run = it->second.get();
        bool done = run->exited && (run->discard || (run->exit_seq > 0 && run->exit_seq <= seq));
        it = done ? trials_.erase(it) : std::next(it);
      }
      break;
    }
    case v1::ControllerMessage::kAssignment:
      Launch(m.assignment());
      break;
    case v1::ControllerMessage::kStop: {
      TrialRun* run = Find(m.stop().trial().trial_id(), m.stop().trial().attempt());
      if (run == nullptr || run->exited || run->stop_requested) break;
      Log(LogLevel::kInfo, absl::StrCat("stopping trial ", run->id, ": ", m.stop().reason()));
      run->stop_requested = true;
      run->term_at = absl::Now() + o_.stop_grace;
      break;
    }
    default:
      break;
  }
}

void AgentImpl::Launch(const v1::Assignment& a) {
  const v1::Trial& t = a.trial();
  auto existing = trials_.find(t.id());
  if (existing != trials_.end()) {
    if (existing->second->attempt == t.attempt()) return;  // a resend
    if (!existing->second->exited) existing->second->proc->SignalGroup(SIGKILL);
    existing->second->discard = true;
  }
  auto run = std::make_unique<TrialRun>();
  run->assignment = a;
  run->id = t.id();
  run->attempt = t.attempt();
  std::vector<std::string> gpus;
  for (int s : t.slots()) {
    run->slots.push_back(s);
    free_.erase(s);
    last_pull_.erase(s);  // the controller took it out of our offer, so it must be offered anew
    if (s >= 0 && s < static_cast<int>(slots_.size()) && !slots_[s].gpu().empty()) {
      gpus.push_back(slots_[s].gpu());
    }
  }
  fs::path trial_dir = fs::absolute(o_.work_dir) / "trials" / t.id();
  fs::path attempt_dir = trial_dir / absl::StrCat("attempt-", t.attempt());
  fs::path checkpoint = trial_dir / "checkpoint";
  std::error_code ec;
  fs::create_directories(attempt_dir, ec);
  fs::create_directories(checkpoint, ec);
  run->stdout_path = (attempt_dir / "stdout.log").string();
  run->stderr_path = (attempt_dir / "stderr.log").string();
  std::string params_file = (attempt_dir / "params.json").string();
  auto env_it = a.env().find("RUNG_PARAMS");
  {
    std::ofstream f(params_file, std::ios::trunc);
    f << (env_it == a.env().end() ? "{}" : env_it->second) << "\n";
  }

  SpawnOptions so;
  so.argv.assign(a.argv().begin(), a.argv().end());
  so.workdir = a.workdir();
  so.stderr_path = run->stderr_path;
  so.env = base_env_;
  for (const auto& [k, v] : a.env()) so.env[k] = v;
  so.env["RUNG_PARAMS_FILE"] = params_file;
  // A spec's trial.checkpoint_root (shared storage) wins over the local folder.
  auto ckpt = a.env().find("RUNG_CHECKPOINT_DIR");
  if (ckpt != a.env().end()) {
    fs::create_directories(ckpt->second, ec);
    if (ec) {
      Log(LogLevel::kWarning, absl::StrCat("trial ", t.id(), ": cannot create ", ckpt->second, ": ",
                                           ec.message()));
    }
  } else {
    so.env["RUNG_CHECKPOINT_DIR"] = checkpoint.string();
  }
  so.env["RUNG_TRIAL_DIR"] = trial_dir.string();
  so.env["RUNG_REPORT_SOCKET"] = socket_path_;
  so.env["RUNG_WORKER"] = o_.name;
  so.env["CUDA_VISIBLE_DEVICES"] = absl::StrJoin(gpus, ",");
  so.env["PYTHONUNBUFFERED"] = "1";
  auto py = so.env.find("PYTHONPATH");
  so.env["PYTHONPATH"] =
      py == so.env.end() || py->second.empty() ? python_dir_ : absl::StrCat(python_dir_, ":", py->second);

  run->stdout_log = open(run->stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  auto proc = Subprocess::Spawn(so);
  TrialRun* r = run.get();
  trials_[t.id()] = std::move(run);
  if (!proc.ok()) {
    Log(LogLevel::kWarning, absl::StrCat("trial ", t.id(), " could not start: ", proc.status().message()));
    r->exited = true;
    v1::WorkerMessage m;
    v1::TrialExited* ex = m.mutable_exited();
    ex->mutable_trial()->set_trial_id(r->id);
    ex->mutable_trial()->set_attempt(r->attempt);
    ex->set_launch_failed(true);
    ++stats_.launch_failures;
    ex->set_message(absl::StrCat(absl::StrJoin(so.argv, " "), ": ", proc.status().message()));
    for (int s : r->slots) free_.insert(s);
    if (r->stdout_log >= 0) close(r->stdout_log);
    r->stdout_log = -1;
    SendState(m);
    r->exit_seq = next_seq_ - 1;
    return;
  }
  r->proc = std::move(*proc);
  Log(LogLevel::kInfo, absl::StrCat("trial ", t.id(), " attempt ", t.attempt(), " started, pid ",
                                    r->proc->pid(), gpus.empty() ? "" : absl::StrCat(", GPUs ", absl::StrJoin(gpus, ","))));
  v1::WorkerMessage m;
  v1::TrialStarted* st = m.mutable_started();
  st->mutable_trial()->set_trial_id(r->id);
  st->mutable_trial()->set_attempt(r->attempt);
  st->set_pid(r->proc->pid());
  st->set_stdout_path(r->stdout_path);
  st->set_stderr_path(r->stderr_path);
  SendState(m);
}

void AgentImpl::QueueReport(TrialRun* run, const ParsedReport& p) {
  v1::MetricReport* r = pending_.add_reports();
  r->set_trial_id(run->id);
  r->set_attempt(run->attempt);
  r->set_seq(++run->report_seq);
  r->set_step(p.has_step ? p.step : static_cast<double>(run->report_seq));
  for (const auto& [k, v] : p.values) (*r->mutable_values())[k] = v;
  r->set_final(p.final);
  r->set_unix_ms(absl::ToUnixMillis(absl::Now()));
}

void AgentImpl::FlushReports() {
  if (pending_.reports().empty()) return;
  v1::WorkerMessage m;
  *m.mutable_reports() = std::move(pending_);
  pending_.Clear();
  SendState(std::move(m));
}

void AgentImpl::HandleStdoutLine(TrialRun* run, absl::string_view line) {
  if (line.substr(0, kReportLinePrefix.size()) != kReportLinePrefix) return;
  auto parsed = ParseReportJson(line.substr(kReportLinePrefix.size()));
  if (!parsed.ok()) {
    std::string note = absl::StrCat("rung-worker: ignored a report line: ", parsed.status().message(), "\n");
    int fd = open(run->stderr_path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd >= 0) {
      WriteAll(fd, note);
      close(fd);
    }
    return;
  }
  QueueReport(run, *parsed);
}

void AgentImpl::ReadStdout(TrialRun* run) {
  if (!run->proc || run->proc->stdout_fd() < 0) return;
  char buf[65536];
  while (true) {
    ssize_t n = read(run->proc->stdout_fd(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;  // EAGAIN: nothing more now
    if (n == 0) {       // EOF
      if (!run->line.empty()) HandleStdoutLine(run, run->line);
      run->line.clear();
      run->proc->CloseStdout();
      return;
    }
    if (run->stdout_log >= 0) WriteAll(run->stdout_log, absl::string_view(buf, n));
    absl::string_view chunk(buf, n);
    size_t nl;
    while ((nl = chunk.find('\n')) != absl::string_view::npos) {
      if (run->line.size() + nl <= kMaxLine) {
        run->line.append(chunk.data(), nl);
        HandleStdoutLine(run, run->line);
      }
      run->line.clear();
      chunk.remove_prefix(nl + 1);
    }
    if (run->line.size() + chunk.size() <= kMaxLine) run->line.append(chunk.data(), chunk.size());
  }
}

void AgentImpl::Finish(TrialRun* run, int status) {
  ReadStdout(run);  // what it wrote before exiting
  if (!run->line.empty()) HandleStdoutLine(run, run->line);
  run->line.clear();
  run->proc->CloseStdout();
  if (run->stdout_log >= 0) close(run->stdout_log);
  run->stdout_log = -1;
  run->exited = true;
  // Anything the process left in its group goes with it.
  run->proc->SignalGroup(SIGKILL);
  for (int s : run->slots) free_.insert(s);
  FlushReports();  // its reports go before its exit
  std::string how = WIFSIGNALED(status) ? absl::StrCat("signal ", WTERMSIG(status))
                                        : absl::StrCat("code ", WEXITSTATUS(status));
  Log(LogLevel::kInfo, absl::StrCat("trial ", run->id, " attempt ", run->attempt, " exited (", how, ")",
                                    run->discard ? ", dropped" : ""));
  if (run->discard) return;
  v1::WorkerMessage m;
  v1::TrialExited* ex = m.mutable_exited();
  ex->mutable_trial()->set_trial_id(run->id);
  ex->mutable_trial()->set_attempt(run->attempt);
  if (WIFSIGNALED(status)) {
    ex->set_signal(WTERMSIG(status));
  } else {
    ex->set_exit_code(WEXITSTATUS(status));
  }
  ex->set_stopped(run->stop_requested);
  ex->set_exit_unix_us(absl::ToUnixMicros(absl::Now()));
  ex->set_worker_shutdown(run->shutdown);
  if (run->orphaned) ex->set_message("rungd was unreachable longer than the worker's --orphan-timeout");
  if (status != 0) ex->set_stderr_tail(StderrTail(run->stderr_path, 12));
  SendState(m);
  run->exit_seq = next_seq_ - 1;
}

void AgentImpl::Reap() {
  for (auto& [id, run] : trials_) {
    int status;
    if (run->exited || !run->proc) continue;
    if (run->proc->Poll(&status)) Finish(run.get(), status);
  }
}

void AgentImpl::HandleConn(Conn* c, bool* close_it) {
  char buf[65536];
  while (true) {
    ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) {
      *close_it = true;
      break;
    }
    c->buf.append(buf, n);
    if (c->buf.size() > kMaxLine) {
      *close_it = true;
      return;
    }
  }
  size_t nl;
  while ((nl = c->buf.find('\n')) != std::string::npos) {
    std::string line = c->buf.substr(0, nl);
    c->buf.erase(0, nl + 1);
    std::string reply;
    auto parsed = ParseReportJson(line);
    if (!parsed.ok()) {
      reply = absl::StrCat("{\"stop\": false, \"error\": ", "\"", parsed.status().message(), "\"}\n");
    } else {
      TrialRun* run = Find(parsed->trial_id, parsed->attempt);
      if (run == nullptr || run->exited || run->discard) {
        reply = absl::StrCat("{\"stop\": true, \"error\": \"trial ", parsed->trial_id, " attempt ",
                             parsed->attempt, " is not running on this worker\"}\n");
      } else {
        QueueReport(run, *parsed);
        reply = run->stop_requested ? "{\"stop\": true}\n" : "{\"stop\": false}\n";
      }
    }
    WriteAll(c->fd, reply);
  }
}

void AgentImpl::RunTimers() {
  absl::Time now = absl::Now();
  for (auto& [id, run] : trials_) {
    if (run->exited) continue;
    if (now >= run->term_at) {
      run->proc->SignalGroup(SIGTERM);
      run->term_at = absl::InfiniteFuture();
      run->kill_at = now + o_.kill_grace;
    }
    if (now >= run->kill_at) {
      Log(LogLevel::kWarning, absl::StrCat("trial ", run->id, " ignored SIGTERM; sending SIGKILL"));
      run->proc->SignalGroup(SIGKILL);
      run->kill_at = absl::InfiniteFuture();
    }
  }
  if (!registered_ && now >= unregistered_since_ + o_.orphan_timeout) {
    for (auto& [id, run] : trials_) {
      if (run->exited || run->shutdown) continue;
      Log(LogLevel::kWarning, absl::StrCat("rungd unreachable for ", absl::FormatDuration(o_.orphan_timeout),
                                           " (--orphan-timeout): stopping trial ", run->id,
                                           "; rungd runs it again when it is back"));
      run->shutdown = true;  // not the trial's fault
      run->orphaned = true;
      run->stop_requested = true;
      run->term_at = std::min(run->term_at, now + o_.stop_grace);
    }
  }
  if (registered_ && now >= next_heartbeat_) {
    v1::WorkerMessage m;
    m.mutable_heartbeat();
    Write(m);
    next_heartbeat_ = now + heartbeat_;
  }
}

void AgentImpl::BeginShutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  Log(LogLevel::kInfo, "shutting down: stopping trials");
  absl::Time now = absl::Now();
  for (auto& [id, run] : trials_) {
    if (run->exited) continue;
    run->shutdown = true;
    run->proc->SignalGroup(SIGTERM);
    run->kill_at = now + o_.kill_grace;
  }
  shutdown_deadline_ = now + o_.kill_grace + absl::Seconds(5);
}

void AgentImpl::UpdateStats() {
  stats_.slots = static_cast<int>(slots_.size());
  stats_.slots_busy = static_cast<int>(slots_.size() - free_.size());
  int running = 0;
  for (const auto& [id, run] : trials_) running += !run->exited;
  stats_.trials_running = running;
  stats_.outbox = static_cast<int64_t>(outbox_.size());
  stats_.connected = registered_;
}

absl::Status AgentImpl::Run() {
  std::thread stream_thread([this] { StreamThread(); });
  while (true) {
    UpdateStats();
    std::vector<pollfd> fds;
    fds.push_back({wake_r_, POLLIN, 0});
    fds.push_back({signal_fd_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    const size_t conn_base = fds.size();
    for (const Conn& c : conns_) fds.push_back({c.fd, POLLIN, 0});
    const size_t trial_base = fds.size();
    std::vector<TrialRun*> readers;
    for (auto& [id, run] : trials_) {
      if (run->proc && run->proc->stdout_fd() >= 0) {
        fds.push_back({run->proc->stdout_fd(), POLLIN, 0});
        readers.push_back(run.get());
      }
    }
    absl::Time next = std::min(next_heartbeat_, shutdown_deadline_);
    if (!registered_) {
      bool running = false;
      for (auto& [id, run] : trials_) running |= !run->exited && !run->shutdown;
      if (running) next = std::min(next, unregistered_since_ + o_.orphan_timeout);
    }
    for (auto& [id, run] : trials_) next = std::min({next, run->term_at, run->kill_at});
    int timeout = -1;
    if (next != absl::InfiniteFuture()) {
      timeout = static_cast<int>(std::clamp<int64_t>(
          absl::ToInt64Milliseconds(next - absl::Now()) + 1, 0, 60000));
    }
    int n = poll(fds.data(), fds.size(), timeout);
    if (n < 0 && errno != EINTR) return absl::InternalError(absl::StrCat("poll: ", strerror(errno)));

    if (fds[1].revents) {
      signalfd_siginfo si;
      while (read(signal_fd_, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM) BeginShutdown();
      }
    }
    if (fds[0].revents) {
      char buf[256];
      while (read(wake_r_, buf, sizeof(buf)) > 0) {
      }
    }
    // What the stream thread brought.
    std::deque<v1::ControllerMessage> inbox;
    uint64_t gen;
    bool connected;
    {
      absl::MutexLock l(&mu_);
      inbox.swap(inbox_);
      gen = gen_;
      connected = connected_;
    }
    if (gen != seen_gen_) {
      seen_gen_ = gen;
      if (registered_) unregistered_since_ = absl::Now();
      registered_ = false;
      if (connected) OnConnected();
    }
    for (const auto& m : inbox) HandleControllerMessage(m);

    if (fds[2].revents & POLLIN) {
      int fd;
      while ((fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        conns_.push_back({fd, ""});
      }
    }
    std::vector<Conn> keep;
    for (size_t i = 0; i < conns_.size(); ++i) {
      bool close_it = false;
      if (i + conn_base < trial_base && fds[i + conn_base].revents) HandleConn(&conns_[i], &close_it);
      if (close_it) {
        close(conns_[i].fd);
      } else {
        keep.push_back(std::move(conns_[i]));
      }
    }
    conns_.swap(keep);
    for (size_t i = 0; i < readers.size(); ++i) {
      if (fds[trial_base + i].revents) ReadStdout(readers[i]);
    }
    Reap();
    RunTimers();
    FlushReports();
    Pull();

    if (shutting_down_) {
      bool all_exited = true;
      for (auto& [id, run] : trials_) all_exited = all_exited && run->exited;
      if ((all_exited && outbox_.empty()) || absl::Now() >= shutdown_deadline_) break;
    }
  }
  stop_stream_.Notify();
  {
    absl::MutexLock l(&stream_mu_);
    if (ctx_ != nullptr) ctx_->TryCancel();
  }
  stream_thread.join();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(AgentOptions options) {
  // Trials run in their own folders, so every path handed to them must be absolute.
  std::error_code ec;
  options.work_dir = fs::absolute(options.work_dir, ec).lexically_normal().string();
  if (ec) return absl::InvalidArgumentError(absl::StrCat("--work-dir: ", ec.message()));
  auto agent = std::make_unique<AgentImpl>(std::move(options));
  absl::Status s = agent->Init();
  if (!s.ok()) return s;
  return std::unique_ptr<Agent>(std::move(agent));
}

}  // namespace rung
