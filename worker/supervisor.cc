#include "worker/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
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
#include "worker/supervisor_state.h"

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

// Whether a TCP port is free to listen on, on every address of this host.
bool PortFree(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return true;  // cannot tell: let the trial find out
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  const bool free = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return free;
}

void SetRef(v1::TrialRef* ref, const std::string& id, int attempt) {
  ref->set_trial_id(id);
  ref->set_attempt(attempt);
}

}  // namespace

bool ReadLines(int fd, std::string* line, const std::function<void(absl::string_view)>& on_bytes,
               const std::function<void(absl::string_view)>& on_line) {
  char buf[65536];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return true;  // EAGAIN: nothing more now
    if (n == 0) {            // end of file: the last line, even without its newline
      if (!line->empty()) on_line(*line);
      line->clear();
      return false;
    }
    absl::string_view chunk(buf, static_cast<size_t>(n));
    on_bytes(chunk);
    size_t nl;
    while ((nl = chunk.find('\n')) != absl::string_view::npos) {
      if (line->size() + nl <= kMaxLine) {
        line->append(chunk.data(), nl);
        on_line(*line);
      }
      line->clear();
      chunk.remove_prefix(nl + 1);
    }
    if (line->size() + chunk.size() <= kMaxLine) line->append(chunk.data(), chunk.size());
  }
}

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
  // A worker started inside a launcher (torchrun, a PyTorchJob) must not hand its own rank to
  // every trial: rank variables come from a distributed trial's layout only.
  for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK",
                        "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT", "TF_CONFIG", "RUNG_RUNNER"}) {
    base_env_.erase(k);
  }
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
  r->set_addr(o_.advertise_addr);
  r->set_ports_first(o_.ports_first);
  r->set_ports_last(o_.ports_last);
  for (int p : o_.partitions) r->add_partitions(p);
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
    case v1::ControllerMessage::kRunnersDone:
      OnRunnersDone(m.runners_done().experiment_id());
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
    if (!run->exited) run->Signal(SIGKILL);
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
    if (done && run->uploading) FreeSlots(run);  // discarded while its checkpoint uploads
    it = done ? trials_.erase(it) : std::next(it);
  }
}

void Supervisor::OnStop(const v1::StopTrial& s) {
  TrialRun* run = Find(s.trial().trial_id(), s.trial().attempt());
  if (run == nullptr || run->exited) return;
  // No grace when a cooperative stop cannot help: another rank failed (`now`), or the trial
  // reports only with @rung lines on stdout, which answer nothing.
  const bool deaf = run->stdout_reports && !run->socket_reports;
  const absl::Time term = clock_->Now() + (s.now() || deaf ? absl::ZeroDuration() : o_.stop_grace);
  if (run->stop_requested) {
    if (run->kill_at == absl::InfiniteFuture()) run->term_at = std::min(run->term_at, term);
    return;
  }
  Log(LogLevel::kInfo, absl::StrCat("stopping trial ", run->id, ": ", s.reason()));
  run->stop_requested = true;
  if (run->fetching) {  // no process yet: it ends here
    EndWithoutProcess(run, /*tell=*/true);
    return;
  }
  run->term_at = term;
}

void Supervisor::Pull() {
  if (!registered_ || shutting_down_) return;
  std::map<int, std::string> warm = WarmSlots();
  if (free_ == last_pull_ && warm == last_warm_) return;
  v1::WorkerMessage m;
  v1::Pull* pull = m.mutable_pull();  // an empty list is a valid pull: "nothing free"
  for (int s : free_) pull->add_free_slots(s);
  for (const auto& [slot, experiment] : warm) (*pull->mutable_warm())[slot] = experiment;
  Queue(std::move(m));
  last_pull_ = free_;
  last_warm_ = std::move(warm);
}

Supervisor::TrialRun* Supervisor::Find(const std::string& id, int attempt) {
  auto it = trials_.find(id);
  if (it == trials_.end() || it->second->attempt != attempt) return nullptr;
  return it->second.get();
}

// ---------------------------------------------------------------------------------------
// Launching

SpawnOptions Supervisor::TrialSpawnOptions(const v1::Assignment& a, const RankProc& proc,
                                           const std::vector<std::string>& gpus) {
  const v1::Trial& t = a.trial();
  fs::path trial_dir = fs::path(paths_.work_dir) / "trials" / t.id();
  fs::path attempt_dir = trial_dir / absl::StrCat("attempt-", t.attempt());
  fs::path checkpoint = CheckpointDir(t.id());
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
  so.stderr_path = proc.stderr_path;
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
  if (a.has_ranks()) AddRankEnv(a.ranks(), proc.rank, &so.env);
  return so;
}

void AddRankEnv(const v1::RankLayout& r, int rank, std::map<std::string, std::string>* env) {
  // torchrun's names, so that torch.distributed's env:// (and most launch helpers) just work.
  (*env)["RANK"] = absl::StrCat(rank);
  (*env)["WORLD_SIZE"] = absl::StrCat(r.world_size());
  (*env)["LOCAL_RANK"] = absl::StrCat(rank - r.first_rank());
  (*env)["LOCAL_WORLD_SIZE"] = absl::StrCat(r.local_world_size());
  (*env)["NODE_RANK"] = absl::StrCat(r.node_rank());
  (*env)["GROUP_RANK"] = absl::StrCat(r.node_rank());
  (*env)["MASTER_ADDR"] = r.master_addr();
  (*env)["MASTER_PORT"] = absl::StrCat(r.master_port());
  // TensorFlow's MultiWorkerMirroredStrategy: every rank a worker at its own port.
  std::vector<std::string> quoted;
  for (const std::string& addr : r.rank_addrs()) quoted.push_back(absl::StrCat("\"", addr, "\""));
  (*env)["TF_CONFIG"] =
      absl::StrCat("{\"cluster\": {\"worker\": [", absl::StrJoin(quoted, ", "),
                   "]}, \"task\": {\"type\": \"worker\", \"index\": ", rank, "}}");
}

void Supervisor::Launch(const v1::Assignment& a) {
  const v1::Trial& t = a.trial();
  auto existing = trials_.find(t.id());
  if (existing != trials_.end()) {
    if (existing->second->attempt == t.attempt()) return;  // a resend
    if (existing->second->fetching) EndWithoutProcess(existing->second.get(), /*tell=*/false);
    if (existing->second->uploading) {  // its upload's end finds nothing: its slots go now
      existing->second->uploading = false;
      FreeSlots(existing->second.get());
    }
    if (!existing->second->exited) existing->second->Signal(SIGKILL);
    existing->second->discard = true;
    if (Runner* runner = existing->second->runner) {  // killed with it; reaped as idle
      runner->trial = nullptr;
      runner->ending = true;
      existing->second->runner = nullptr;
    }
    // The old attempt keeps its slots until its processes are reaped.
    if (!existing->second->exited) dropped_.push_back(std::move(existing->second));
  }
  auto run = std::make_unique<TrialRun>();
  run->assignment = a;
  run->id = t.id();
  run->attempt = t.attempt();
  for (int s : t.slots()) {
    run->slots.push_back(s);
    free_.erase(s);
    last_pull_.erase(s);  // the controller took it out of our offer, so it must be offered anew
  }
  // Rank 0's worker: MASTER_PORT must be free here, or every rank would wait for a store that
  // is not theirs.
  if (a.has_ranks() && a.ranks().first_rank() == 0 && !PortFree(a.ranks().master_port())) {
    TrialRun* r = run.get();
    trials_[t.id()] = std::move(run);
    // Not the trial's fault: rungd tries again, with the next ports.
    LaunchFailed(r, SpawnOptions(),
                 absl::UnavailableError(absl::StrCat("MASTER_PORT ", a.ranks().master_port(),
                                                     " is in use on this host (--rank-ports)")),
                 /*trials_fault=*/false);
    return;
  }
  TrialRun* r = run.get();
  trials_[t.id()] = std::move(run);
  // A checkpoint that travels through rungd is in place before the process starts.
  if (FetchCheckpoint(r)) return;
  StartProcesses(r);
}

void Supervisor::StartProcesses(TrialRun* r) {
  const v1::Assignment& a = r->assignment;
  const v1::Trial& t = a.trial();
  if (a.upload_checkpoint()) {
    // The folder is the trial's from now on: it no longer matches a stored checkpoint.
    std::error_code ec;
    fs::remove(CheckpointMarker(CheckpointDir(t.id())), ec);
  }
  const fs::path attempt_dir =
      fs::path(paths_.work_dir) / "trials" / t.id() / absl::StrCat("attempt-", t.attempt());
  if (a.reuse_process() && !a.has_ranks()) {
    auto proc = std::make_unique<RankProc>();
    proc->stdout_path = (attempt_dir / "stdout.log").string();
    std::vector<std::string> gpus;
    for (int s : r->slots) {
      if (s >= 0 && s < static_cast<int>(slots_.size()) && !slots_[s].gpu().empty())
        gpus.push_back(slots_[s].gpu());
    }
    const SpawnOptions so = TrialSpawnOptions(a, *proc, gpus);
    proc->stdout_log =
        open(proc->stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    LaunchInRunner(a, r, std::move(proc), so);
    return;
  }
  for (auto& runner : runners_) {  // an idle runner on these slots has lost them
    if (runner->ending || runner->exited || runner->trial != nullptr) continue;
    for (int s : runner->slots) {
      if (std::find(r->slots.begin(), r->slots.end(), s) != r->slots.end()) {
        EndRunner(runner.get(), absl::StrCat("its slot went to a trial of ", t.experiment_id()));
        break;
      }
    }
  }
  SpawnRanks(a, r, attempt_dir.string());
}

void Supervisor::SpawnRanks(const v1::Assignment& a, TrialRun* r, const std::string& attempt_dir) {
  const v1::Trial& t = a.trial();
  // One process per local rank, each with its own share of the slots (in order).
  const int local = a.has_ranks() ? std::max(1, a.ranks().local_world_size()) : 1;
  const size_t per_rank = std::max<size_t>(1, r->slots.size() / local);
  std::vector<std::string> all_gpus;
  for (int i = 0; i < local; ++i) {
    auto proc = std::make_unique<RankProc>();
    proc->rank = a.has_ranks() ? a.ranks().first_rank() + i : 0;
    const std::string prefix = local == 1 ? "" : absl::StrCat("rank-", proc->rank, ".");
    proc->stdout_path = (fs::path(attempt_dir) / absl::StrCat(prefix, "stdout.log")).string();
    proc->stderr_path = (fs::path(attempt_dir) / absl::StrCat(prefix, "stderr.log")).string();
    std::vector<std::string> gpus;
    for (size_t k = i * per_rank; k < (i + 1) * per_rank && k < r->slots.size(); ++k) {
      const int s = r->slots[k];
      if (s >= 0 && s < static_cast<int>(slots_.size()) && !slots_[s].gpu().empty())
        gpus.push_back(slots_[s].gpu());
    }
    all_gpus.insert(all_gpus.end(), gpus.begin(), gpus.end());
    const SpawnOptions so = TrialSpawnOptions(a, *proc, gpus);
    proc->stdout_log =
        open(proc->stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    auto spawned = launcher_->Spawn(so);
    if (!spawned.ok()) {
      // All ranks start or none does: those already started go with it.
      r->Signal(SIGKILL);
      for (auto& p : r->procs) {
        if (p->proc) p->proc->Poll(nullptr);
      }
      r->procs.clear();
      LaunchFailed(r, so, spawned.status());
      return;
    }
    proc->proc = std::move(*spawned);
    r->procs.push_back(std::move(proc));
  }
  std::vector<std::string> pids;
  for (const auto& p : r->procs) pids.push_back(absl::StrCat(p->proc->pid()));
  Log(LogLevel::kInfo,
      absl::StrCat(
          "trial ", t.id(), " attempt ", t.attempt(), " started, pid ", absl::StrJoin(pids, ","),
          a.has_ranks() ? absl::StrCat(", ranks ", r->procs.front()->rank, "-",
                                       r->procs.back()->rank, " of ", a.ranks().world_size())
                        : "",
          all_gpus.empty() ? "" : absl::StrCat(", GPUs ", absl::StrJoin(all_gpus, ","))));
  v1::WorkerMessage m;
  v1::TrialStarted* st = m.mutable_started();
  SetRef(st->mutable_trial(), r->id, r->attempt);
  st->set_pid(r->procs.front()->proc->pid());
  st->set_stdout_path(r->procs.front()->stdout_path);
  st->set_stderr_path(r->procs.front()->stderr_path);
  SendState(std::move(m));
}

void Supervisor::LaunchFailed(TrialRun* r, const SpawnOptions& so, const absl::Status& why,
                              bool trials_fault) {
  Log(LogLevel::kWarning, absl::StrCat("trial ", r->id, " could not start: ", why.message()));
  r->exited = true;
  v1::WorkerMessage m;
  v1::TrialExited* ex = m.mutable_exited();
  SetRef(ex->mutable_trial(), r->id, r->attempt);
  ex->set_launch_failed(true);
  ++stats_.launch_failures;
  ex->set_message(trials_fault && !so.argv.empty()
                      ? absl::StrCat(absl::StrJoin(so.argv, " "), ": ", why.message())
                      : std::string(why.message()));
  ex->set_worker_shutdown(!trials_fault);
  if (r->assignment.has_ranks()) ex->set_rank(r->assignment.ranks().first_rank());
  FreeSlots(r);
  SendState(std::move(m));
  r->exit_seq = next_seq_ - 1;
}

// ---------------------------------------------------------------------------------------
// Reports

void Supervisor::QueueReport(TrialRun* run, const ParsedReport& p) {
  if (run->discard) return;  // an attempt rungd gave up on
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

void Supervisor::HandleStdoutLine(TrialRun* run, RankProc* proc, absl::string_view line) {
  if (line.substr(0, kReportLinePrefix.size()) != kReportLinePrefix) return;
  if (proc->rank != 0) return;  // rank 0's reports are the trial's
  auto parsed = ParseReportJson(line.substr(kReportLinePrefix.size()));
  if (!parsed.ok()) {
    std::string note =
        absl::StrCat("rung-worker: ignored a report line: ", parsed.status().message(), "\n");
    int fd = open(proc->stderr_path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd >= 0) {
      WriteAll(fd, note);
      close(fd);
    }
    return;
  }
  run->stdout_reports = true;
  QueueReport(run, *parsed);
}

std::vector<int> Supervisor::StdoutFds() const {
  std::vector<int> fds;
  for (const auto& runner : runners_) {
    if (!runner->exited && runner->proc->stdout_fd() >= 0) fds.push_back(runner->proc->stdout_fd());
  }
  for (const auto& [id, run] : trials_) {
    for (const auto& p : run->procs) {
      if (p->proc && p->proc->stdout_fd() >= 0) fds.push_back(p->proc->stdout_fd());
    }
  }
  return fds;
}

void Supervisor::ReadStdout(int fd) {
  for (auto& runner : runners_) {
    if (!runner->exited && runner->proc->stdout_fd() == fd) {
      ReadRunner(runner.get());
      return;
    }
  }
  for (auto& [id, run] : trials_) {
    for (auto& p : run->procs) {
      if (p->proc && p->proc->stdout_fd() == fd) {
        ReadStdout(run.get(), p.get());
        return;
      }
    }
  }
}

void Supervisor::ReadStdout(TrialRun* run, RankProc* p) {
  if (!p->proc || p->proc->stdout_fd() < 0) return;
  const bool more = ReadLines(
      p->proc->stdout_fd(), &p->line,
      [p](absl::string_view bytes) {
        if (p->stdout_log >= 0) WriteAll(p->stdout_log, bytes);
      },
      [&](absl::string_view line) { HandleStdoutLine(run, p, line); });
  if (!more) p->proc->CloseStdout();
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
  run->socket_reports = true;
  // Every rank hears stop; rank 0's reports are the trial's (a trial of one rank has no other).
  if (parsed->rank == 0 || !run->assignment.has_ranks()) QueueReport(run, *parsed);
  return run->stop_requested ? "{\"stop\": true}\n" : "{\"stop\": false}\n";
}

// ---------------------------------------------------------------------------------------
// Exits and timers

void Supervisor::ProcExited(TrialRun* run, RankProc* p, int status) {
  ReadStdout(run, p);  // what it wrote before exiting
  if (!p->line.empty()) HandleStdoutLine(run, p, p->line);
  p->line.clear();
  p->proc->CloseStdout();
  if (p->stdout_log >= 0) close(p->stdout_log);
  p->stdout_log = -1;
  p->exited = true;
  p->status = status;
  // Anything the process left in its group goes with it.
  p->proc->SignalGroup(SIGKILL);
  if (status == 0 && p->rank == 0 && run->procs.size() > 1) {
    // Rank 0 decides the attempt: the ranks beside it get the stop grace, then SIGTERM, and
    // how they end no longer matters.
    run->rank0_done = true;
    if (run->term_at == absl::InfiniteFuture() && run->kill_at == absl::InfiniteFuture())
      run->term_at = clock_->Now() + o_.stop_grace;
  }
  if (status == 0 || run->failed >= 0 || run->rank0_done) return;
  run->failed = static_cast<int>(
      std::find_if(run->procs.begin(), run->procs.end(), [p](auto& q) { return q.get() == p; }) -
      run->procs.begin());
  // One rank failed: the others cannot go on without it (they would wait in a collective).
  if (run->procs.size() > 1) {
    Log(LogLevel::kWarning, absl::StrCat("trial ", run->id, " rank ", p->rank,
                                         " failed; stopping the other ranks here"));
    run->Signal(SIGTERM);
    run->term_at = absl::InfiniteFuture();
    run->kill_at = std::min(run->kill_at, clock_->Now() + o_.kill_grace);
  }
}

void Supervisor::Finish(TrialRun* run) {
  const RankProc& decided = *run->procs[run->failed >= 0 ? run->failed : 0];
  const int status = decided.status;
  run->exited = true;
  const v1::Assignment& a = run->assignment;
  // The attempt's exit goes to rungd once the folder it left is stored there (the next
  // attempt, wherever it runs, starts from it); its slots stay taken until then.
  const bool upload = transfers_ != nullptr && a.upload_checkpoint() && status == 0 &&
                      !run->stop_requested && !run->shutdown && !run->discard &&
                      (!a.has_ranks() || a.ranks().first_rank() == 0);
  if (!upload) FreeSlots(run);
  FlushReports();  // its reports go before its exit
  std::string how = WIFSIGNALED(status) ? absl::StrCat("signal ", WTERMSIG(status))
                                        : absl::StrCat("code ", WEXITSTATUS(status));
  Log(LogLevel::kInfo,
      absl::StrCat("trial ", run->id, " attempt ", run->attempt, " exited (",
                   run->procs.size() > 1 ? absl::StrCat("rank ", decided.rank, " ") : "", how, ")",
                   run->discard ? ", dropped" : ""));
  if (run->discard) return;
  v1::WorkerMessage m;
  v1::TrialExited* ex = m.mutable_exited();
  SetRef(ex->mutable_trial(), run->id, run->attempt);
  if (WIFSIGNALED(status)) {
    ex->set_signal(WTERMSIG(status));
  } else {
    ex->set_exit_code(WEXITSTATUS(status));
  }
  ex->set_rank(decided.rank);
  ex->set_stopped(run->stop_requested);
  ex->set_exit_unix_us(absl::ToUnixMicros(clock_->Now()));
  ex->set_worker_shutdown(run->shutdown);
  if (run->orphaned) {
    ex->set_message("rungd was unreachable longer than the worker's --orphan-timeout");
  }
  if (status != 0) ex->set_stderr_tail(StderrTail(decided.stderr_path, 12));
  if (upload) {
    run->uploading = true;
    run->pending_exit = std::move(m);
    transfers_->Store(run->id, run->attempt, CheckpointDir(run->id));
    return;
  }
  SendState(std::move(m));
  run->exit_seq = next_seq_ - 1;
}

void Supervisor::Reap() {
  ReapRunners();
  auto reap = [this](TrialRun* run) {
    if (run->exited || run->procs.empty() || run->runner != nullptr) return;
    bool all = true;
    for (auto& p : run->procs) {
      int status;
      if (!p->exited && p->proc && p->proc->Poll(&status)) ProcExited(run, p.get(), status);
      all = all && p->exited;
    }
    if (all) Finish(run);
  };
  for (auto& [id, run] : trials_) reap(run.get());
  for (auto& run : dropped_) reap(run.get());
  dropped_.erase(std::remove_if(dropped_.begin(), dropped_.end(),
                                [](const std::unique_ptr<TrialRun>& r) { return r->exited; }),
                 dropped_.end());
}

void Supervisor::FreeSlots(const TrialRun* run) {
  for (int s : run->slots) {
    bool taken = false;  // by a newer attempt that came while this one was dying
    for (const auto& [id, other] : trials_) {
      if (other.get() != run && !other->exited &&
          std::find(other->slots.begin(), other->slots.end(), s) != other->slots.end()) {
        taken = true;
      }
    }
    if (!taken) free_.insert(s);
  }
}

void Supervisor::RunTimers() {
  const absl::Time now = clock_->Now();
  RunRunnerTimers(now);
  for (auto& [id, run] : trials_) {
    if (run->exited) continue;
    if (run->fetching && (run->discard || run->shutdown || now >= run->term_at)) {
      EndWithoutProcess(run.get(), !run->discard);  // stopped before it started
      continue;
    }
    if (now >= run->term_at) {
      run->Signal(SIGTERM);
      run->term_at = absl::InfiniteFuture();
      run->kill_at = now + o_.kill_grace;
    }
    if (now >= run->kill_at) {
      Log(LogLevel::kWarning, absl::StrCat("trial ", run->id, " ignored SIGTERM; sending SIGKILL"));
      run->Signal(SIGKILL);
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
  absl::Time next = std::min({next_heartbeat_, shutdown_deadline_, RunnerWake()});
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
    run->Signal(SIGTERM);
    run->kill_at = now + o_.kill_grace;
  }
  for (auto& runner : runners_) {
    if (runner->trial == nullptr) EndRunner(runner.get(), "the worker is shutting down");
  }
  shutdown_deadline_ = now + o_.kill_grace + absl::Seconds(5);
}

bool Supervisor::ShutdownComplete() const {
  if (!shutting_down_) return false;
  bool all_exited = true;
  for (const auto& [id, run] : trials_) all_exited = all_exited && run->exited && !run->uploading;
  all_exited = all_exited && runners_.empty();
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
