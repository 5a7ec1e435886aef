#include "worker/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/log.h"

namespace rung {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxLine = 1 << 20;  // a longer line is cut and not parsed

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

void SetRef(v1::TrialRef* ref, const std::string& id, int attempt) {
  ref->set_trial_id(id);
  ref->set_attempt(attempt);
}

}  // namespace

struct Supervisor::TrialRun {
  v1::Assignment assignment;
  std::string id;
  int attempt = 0;
  std::vector<int> slots;
  std::unique_ptr<Process> proc;
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

  ~TrialRun() {
    if (stdout_log >= 0) close(stdout_log);
  }
};

Supervisor::Supervisor(const AgentOptions& options, SupervisorPaths paths, std::string session_id,
                       Clock* clock, ProcessLauncher* launcher)
    : o_(options),
      paths_(std::move(paths)),
      session_id_(std::move(session_id)),
      clock_(clock),
      launcher_(launcher),
      unregistered_since_(clock->Now()) {
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
  for (const auto& s : slots_) free_.insert(s.id());
  base_env_ = launcher_->Environment();
  // The worker's credentials are not the trials' business.
  for (const char* k : {"RUNG_TOKEN", "RUNG_CA", "RUNG_CERT", "RUNG_KEY"}) base_env_.erase(k);
  UpdateStats();
}

Supervisor::~Supervisor() = default;

// ---------------------------------------------------------------------------------------
// The stream

void Supervisor::Queue(v1::WorkerMessage m) {
  if (registered_) outgoing_.push_back(std::move(m));
}

void Supervisor::SendState(v1::WorkerMessage m) {
  m.set_seq(next_seq_++);
  outbox_.push_back(m);
  Queue(std::move(m));
}

std::vector<v1::WorkerMessage> Supervisor::TakeOutgoing() {
  std::vector<v1::WorkerMessage> out;
  out.swap(outgoing_);
  return out;
}

void Supervisor::OnStreamStarted() {
  OnStreamLost();  // whatever was queued belonged to the previous stream
  v1::WorkerMessage m;
  v1::Register* r = m.mutable_register_();
  r->set_worker_id(o_.name);
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  r->set_host(host);
  for (const auto& s : slots_) *r->add_slots() = s;
  for (const auto& [k, v] : o_.labels) (*r->mutable_labels())[k] = v;
  r->set_version(RUNG_VERSION);
  r->set_work_dir(paths_.work_dir);
  r->set_session_id(session_id_);
  for (const auto& [id, run] : trials_) {
    if (!run->discard) SetRef(r->add_trials(), run->id, run->attempt);
  }
  outgoing_.push_back(std::move(m));
}

void Supervisor::OnStreamLost() {
  if (registered_) unregistered_since_ = clock_->Now();
  registered_ = false;
  next_heartbeat_ = absl::InfiniteFuture();
  outgoing_.clear();
  UpdateStats();
}

void Supervisor::HandleControllerMessage(const v1::ControllerMessage& m) {
  switch (m.kind_case()) {
    case v1::ControllerMessage::kRegistered:
      OnRegistered(m.registered());
      break;
    case v1::ControllerMessage::kAck:
      OnAck(m.ack().seq());
      break;
    case v1::ControllerMessage::kAssignment:
      Launch(m.assignment());
      break;
    case v1::ControllerMessage::kStop:
      OnStop(m.stop());
      break;
    default:
      break;
  }
  UpdateStats();
}

void Supervisor::OnRegistered(const v1::RegisterReply& r) {
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
  Log(LogLevel::kInfo,
      absl::StrCat("registered with ", o_.controller, " as ", o_.name, " (session ", session_id_,
                   ", ", slots_.size(), " slots, ", trials_.size(), " trials known)"));
  for (const auto& msg : outbox_) outgoing_.push_back(msg);
  last_pull_.clear();
  last_pull_.insert(-1);  // force a pull
  next_heartbeat_ = clock_->Now() + heartbeat_;
}

void Supervisor::OnAck(int64_t seq) {
  while (!outbox_.empty() && outbox_.front().seq() <= seq) outbox_.pop_front();
  for (auto it = trials_.begin(); it != trials_.end();) {
    TrialRun* run = it->second.get();
    bool done = run->exited && (run->discard || (run->exit_seq > 0 && run->exit_seq <= seq));
    it = done ? trials_.erase(it) : std::next(it);
  }
}

void Supervisor::OnStop(const v1::StopTrial& s) {
  TrialRun* run = Find(s.trial().trial_id(), s.trial().attempt());
  if (run == nullptr || run->exited || run->stop_requested) return;
  Log(LogLevel::kInfo, absl::StrCat("stopping trial ", run->id, ": ", s.reason()));
  run->stop_requested = true;
  run->term_at = clock_->Now() + o_.stop_grace;
}

void Supervisor::Pull() {
  if (!registered_ || shutting_down_) return;
  if (free_ == last_pull_) return;
  v1::WorkerMessage m;
  v1::Pull* pull = m.mutable_pull();  // an empty list is a valid pull: "nothing free"
  for (int s : free_) pull->add_free_slots(s);
  Queue(std::move(m));
  last_pull_ = free_;
}

Supervisor::TrialRun* Supervisor::Find(const std::string& id, int attempt) {
  auto it = trials_.find(id);
  if (it == trials_.end() || it->second->attempt != attempt) return nullptr;
  return it->second.get();
}

// ---------------------------------------------------------------------------------------
// Launching

SpawnOptions Supervisor::TrialSpawnOptions(const v1::Assignment& a, const TrialRun& run,
                                           const std::vector<std::string>& gpus) {
  const v1::Trial& t = a.trial();
  fs::path trial_dir = fs::path(paths_.work_dir) / "trials" / t.id();
  fs::path attempt_dir = trial_dir / absl::StrCat("attempt-", t.attempt());
  fs::path checkpoint = trial_dir / "checkpoint";
  std::error_code ec;
  fs::create_directories(attempt_dir, ec);
  fs::create_directories(checkpoint, ec);
  std::string params_file = (attempt_dir / "params.json").string();
  auto env_it = a.env().find("RUNG_PARAMS");
  {
    std::ofstream f(params_file, std::ios::trunc);
    f << (env_it == a.env().end() ? "{}" : env_it->second) << "\n";
  }

  SpawnOptions so;
  so.argv.assign(a.argv().begin(), a.argv().end());
  so.workdir = a.workdir();
  so.stderr_path = run.stderr_path;
  so.env = base_env_;
  for (const auto& [k, v] : a.env()) so.env[k] = v;
  so.env["RUNG_PARAMS_FILE"] = params_file;
  // A spec's trial.checkpoint_root (shared storage) wins over the local folder.
  auto ckpt = a.env().find("RUNG_CHECKPOINT_DIR");
  if (ckpt != a.env().end()) {
    fs::create_directories(ckpt->second, ec);
    if (ec) {
      Log(LogLevel::kWarning,
          absl::StrCat("trial ", t.id(), ": cannot create ", ckpt->second, ": ", ec.message()));
    }
  } else {
    so.env["RUNG_CHECKPOINT_DIR"] = checkpoint.string();
  }
  so.env["RUNG_TRIAL_DIR"] = trial_dir.string();
  so.env["RUNG_REPORT_SOCKET"] = paths_.socket_path;
  so.env["RUNG_WORKER"] = o_.name;
  so.env["CUDA_VISIBLE_DEVICES"] = absl::StrJoin(gpus, ",");
  so.env["PYTHONUNBUFFERED"] = "1";
  auto py = so.env.find("PYTHONPATH");
  so.env["PYTHONPATH"] = py == so.env.end() || py->second.empty()
                             ? paths_.python_dir
                             : absl::StrCat(paths_.python_dir, ":", py->second);
  return so;
}

void Supervisor::Launch(const v1::Assignment& a) {
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
  const fs::path attempt_dir =
      fs::path(paths_.work_dir) / "trials" / t.id() / absl::StrCat("attempt-", t.attempt());
  run->stdout_path = (attempt_dir / "stdout.log").string();
  run->stderr_path = (attempt_dir / "stderr.log").string();
  const SpawnOptions so = TrialSpawnOptions(a, *run, gpus);
  run->stdout_log = open(run->stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  auto proc = launcher_->Spawn(so);
  TrialRun* r = run.get();
  trials_[t.id()] = std::move(run);
  if (!proc.ok()) {
    LaunchFailed(r, so, proc.status());
    return;
  }
  r->proc = std::move(*proc);
  Log(LogLevel::kInfo,
      absl::StrCat("trial ", t.id(), " attempt ", t.attempt(), " started, pid ", r->proc->pid(),
                   gpus.empty() ? "" : absl::StrCat(", GPUs ", absl::StrJoin(gpus, ","))));
  v1::WorkerMessage m;
  v1::TrialStarted* st = m.mutable_started();
  SetRef(st->mutable_trial(), r->id, r->attempt);
  st->set_pid(r->proc->pid());
  st->set_stdout_path(r->stdout_path);
  st->set_stderr_path(r->stderr_path);
  SendState(std::move(m));
}

void Supervisor::LaunchFailed(TrialRun* r, const SpawnOptions& so, const absl::Status& why) {
  Log(LogLevel::kWarning, absl::StrCat("trial ", r->id, " could not start: ", why.message()));
  r->exited = true;
  v1::WorkerMessage m;
  v1::TrialExited* ex = m.mutable_exited();
  SetRef(ex->mutable_trial(), r->id, r->attempt);
  ex->set_launch_failed(true);
  ++stats_.launch_failures;
  ex->set_message(absl::StrCat(absl::StrJoin(so.argv, " "), ": ", why.message()));
  for (int s : r->slots) free_.insert(s);
  if (r->stdout_log >= 0) close(r->stdout_log);
  r->stdout_log = -1;
  SendState(std::move(m));
  r->exit_seq = next_seq_ - 1;
}

// ---------------------------------------------------------------------------------------
// Reports

void Supervisor::QueueReport(TrialRun* run, const ParsedReport& p) {
  v1::MetricReport* r = pending_.add_reports();
  r->set_trial_id(run->id);
  r->set_attempt(run->attempt);
  r->set_seq(++run->report_seq);
  r->set_step(p.has_step ? p.step : static_cast<double>(run->report_seq));
  for (const auto& [k, v] : p.values) (*r->mutable_values())[k] = v;
  r->set_final(p.final);
  r->set_unix_ms(clock_->NowUnixMs());
}

void Supervisor::FlushReports() {
  if (pending_.reports().empty()) return;
  v1::WorkerMessage m;
  *m.mutable_reports() = std::move(pending_);
  pending_.Clear();
  SendState(std::move(m));
}

void Supervisor::HandleStdoutLine(TrialRun* run, absl::string_view line) {
  if (line.substr(0, kReportLinePrefix.size()) != kReportLinePrefix) return;
  auto parsed = ParseReportJson(line.substr(kReportLinePrefix.size()));
  if (!parsed.ok()) {
    std::string note =
        absl::StrCat("rung-worker: ignored a report line: ", parsed.status().message(), "\n");
    int fd = open(run->stderr_path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd >= 0) {
      WriteAll(fd, note);
      close(fd);
    }
    return;
  }
  QueueReport(run, *parsed);
}

std::vector<int> Supervisor::StdoutFds() const {
  std::vector<int> fds;
  for (const auto& [id, run] : trials_) {
    if (run->proc && run->proc->stdout_fd() >= 0) fds.push_back(run->proc->stdout_fd());
  }
  return fds;
}

void Supervisor::ReadStdout(int fd) {
  for (auto& [id, run] : trials_) {
    if (run->proc && run->proc->stdout_fd() == fd) {
      ReadStdout(run.get());
      return;
    }
  }
}

void Supervisor::ReadStdout(TrialRun* run) {
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
    if (run->line.size() + chunk.size() <= kMaxLine) {
      run->line.append(chunk.data(), chunk.size());
    }
  }
}

std::string Supervisor::HandleReportLine(absl::string_view line) {
  auto parsed = ParseReportJson(line);
  if (!parsed.ok()) {
    return absl::StrCat("{\"stop\": false, \"error\": ", "\"", parsed.status().message(), "\"}\n");
  }
  TrialRun* run = Find(parsed->trial_id, parsed->attempt);
  if (run == nullptr || run->exited || run->discard) {
    return absl::StrCat("{\"stop\": true, \"error\": \"trial ", parsed->trial_id, " attempt ",
                        parsed->attempt, " is not running on this worker\"}\n");
  }
  QueueReport(run, *parsed);
  return run->stop_requested ? "{\"stop\": true}\n" : "{\"stop\": false}\n";
}

// ---------------------------------------------------------------------------------------
// Exits and timers

void Supervisor::Finish(TrialRun* run, int status) {
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
  Log(LogLevel::kInfo, absl::StrCat("trial ", run->id, " attempt ", run->attempt, " exited (", how,
                                    ")", run->discard ? ", dropped" : ""));
  if (run->discard) return;
  v1::WorkerMessage m;
  v1::TrialExited* ex = m.mutable_exited();
  SetRef(ex->mutable_trial(), run->id, run->attempt);
  if (WIFSIGNALED(status)) {
    ex->set_signal(WTERMSIG(status));
  } else {
    ex->set_exit_code(WEXITSTATUS(status));
  }
  ex->set_stopped(run->stop_requested);
  ex->set_exit_unix_us(absl::ToUnixMicros(clock_->Now()));
  ex->set_worker_shutdown(run->shutdown);
  if (run->orphaned) {
    ex->set_message("rungd was unreachable longer than the worker's --orphan-timeout");
  }
  if (status != 0) ex->set_stderr_tail(StderrTail(run->stderr_path, 12));
  SendState(std::move(m));
  run->exit_seq = next_seq_ - 1;
}

void Supervisor::Reap() {
  for (auto& [id, run] : trials_) {
    int status;
    if (run->exited || !run->proc) continue;
    if (run->proc->Poll(&status)) Finish(run.get(), status);
  }
}

void Supervisor::RunTimers() {
  const absl::Time now = clock_->Now();
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
      Log(LogLevel::kWarning,
          absl::StrCat("rungd unreachable for ", absl::FormatDuration(o_.orphan_timeout),
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
    Queue(std::move(m));
    next_heartbeat_ = now + heartbeat_;
  }
}

void Supervisor::Tick() {
  Reap();
  RunTimers();
  FlushReports();
  Pull();
  UpdateStats();
}

absl::Time Supervisor::NextWake() const {
  absl::Time next = std::min(next_heartbeat_, shutdown_deadline_);
  if (!registered_) {
    bool running = false;
    for (const auto& [id, run] : trials_) running |= !run->exited && !run->shutdown;
    if (running) next = std::min(next, unregistered_since_ + o_.orphan_timeout);
  }
  for (const auto& [id, run] : trials_) {
    if (!run->exited) next = std::min({next, run->term_at, run->kill_at});
  }
  return next;
}

void Supervisor::BeginShutdown(bool deliver) {
  deliver_on_shutdown_ = deliver_on_shutdown_ && deliver;
  if (shutting_down_) return;
  shutting_down_ = true;
  Log(LogLevel::kInfo, "shutting down: stopping trials");
  const absl::Time now = clock_->Now();
  for (auto& [id, run] : trials_) {
    if (run->exited) continue;
    run->shutdown = true;
    run->proc->SignalGroup(SIGTERM);
    run->kill_at = now + o_.kill_grace;
  }
  shutdown_deadline_ = now + o_.kill_grace + absl::Seconds(5);
}

bool Supervisor::ShutdownComplete() const {
  if (!shutting_down_) return false;
  bool all_exited = true;
  for (const auto& [id, run] : trials_) all_exited = all_exited && run->exited;
  if (all_exited && (outbox_.empty() || !deliver_on_shutdown_)) return true;
  return clock_->Now() >= shutdown_deadline_;
}

void Supervisor::UpdateStats() {
  stats_.slots = static_cast<int>(slots_.size());
  stats_.slots_busy = static_cast<int>(slots_.size() - free_.size());
  int running = 0;
  for (const auto& [id, run] : trials_) running += !run->exited;
  stats_.trials_running = running;
  stats_.outbox = static_cast<int64_t>(outbox_.size());
  stats_.connected = registered_;
}

}  // namespace rung
