// The Supervisor's runners (trial.reuse_process): one long-lived process of an experiment on
// fixed slots runs its trials one after another. The protocol, for a program in any language:
//
//   rung-worker -> runner, stdin:  one JSON object per trial, on one line:
//       {"trial_id": "e1-4", "attempt": 1, "experiment_id": "e1",
//        "env": {"RUNG_TRIAL_ID": "e1-4", "RUNG_PARAMS": "{...}", "RUNG_BUDGET": "9", ...}}
//     `env` holds the variables a fresh process of that trial would have had that differ from
//     the runner's own (RUNG_* and the spec's trial.env). End of file: no more trials; exit.
//   runner -> rung-worker: reports as any trial makes them (the report socket, or @rung lines
//     on stdout), then, when the trial is done, the line `@rung-end {"trial_id": "e1-4"}` on
//     stdout. A runner that exits instead ends its trial with its exit status.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "worker/supervisor.h"
#include "worker/supervisor_state.h"

namespace rung {
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kEndLine = "@rung-end";

// Writes the whole line to a non-blocking pipe; false when the reader is gone or not reading.
bool WriteLine(int fd, const std::string& line) {
  absl::string_view rest = line;
  while (!rest.empty()) {
    ssize_t n = write(fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    rest.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

std::string Supervisor::TrialLine(const v1::Assignment& a, const SpawnOptions& so) const {
  google::protobuf::Struct s;
  auto& f = *s.mutable_fields();
  f["trial_id"].set_string_value(a.trial().id());
  f["attempt"].set_number_value(a.trial().attempt());
  f["experiment_id"].set_string_value(a.trial().experiment_id());
  auto& env = *f["env"].mutable_struct_value()->mutable_fields();
  // What differs from the worker's environment, and every variable the trial's assignment
  // sets (the same keys for every trial of an experiment), so none keeps a previous value.
  for (const auto& [k, v] : so.env) {
    auto base = base_env_.find(k);
    if (base == base_env_.end() || base->second != v || a.env().count(k)) {
      env[k].set_string_value(v);
    }
  }
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(s, &json);
  return json + "\n";
}

void Supervisor::LaunchInRunner(const v1::Assignment& a, TrialRun* r,
                                std::unique_ptr<RankProc> proc, const SpawnOptions& so) {
  const std::string& experiment = a.trial().experiment_id();
  Runner* runner = nullptr;
  for (auto& x : runners_) {
    if (x->exited || x->ending || x->trial != nullptr) continue;
    const bool overlaps = std::any_of(x->slots.begin(), x->slots.end(), [&](int s) {
      return std::find(r->slots.begin(), r->slots.end(), s) != r->slots.end();
    });
    if (!overlaps) continue;
    if (x->slots == r->slots && x->experiment_id == experiment) {
      runner = x.get();
    } else {
      EndRunner(x.get(), absl::StrCat("its slot went to a trial of ", experiment));
    }
  }
  const std::string line = TrialLine(a, so);
  // An idle runner first; when it cannot take the line (it died meanwhile), a fresh one.
  for (int tries = 0; tries < 2; ++tries) {
    if (runner == nullptr) {
      SpawnOptions start = so;
      start.pipe_stdin = true;
      start.env["RUNG_RUNNER"] = "1";
      const int id = next_runner_++;
      const fs::path dir = fs::path(paths_.work_dir) / "runners";
      std::error_code ec;
      fs::create_directories(dir, ec);
      start.stderr_path = (dir / absl::StrCat("runner-", id, ".stderr.log")).string();
      auto spawned = launcher_->Spawn(start);
      if (!spawned.ok()) {
        r->procs.push_back(std::move(proc));
        LaunchFailed(r, start, spawned.status());
        return;
      }
      auto fresh = std::make_unique<Runner>();
      fresh->id = id;
      fresh->experiment_id = experiment;
      fresh->slots = r->slots;
      fresh->proc = std::move(*spawned);
      fresh->stderr_path = start.stderr_path;
      runner = fresh.get();
      runners_.push_back(std::move(fresh));
      Log(LogLevel::kInfo,
          absl::StrCat("runner ", id, " of ", experiment, " started, pid ", runner->proc->pid(),
                       ", slots ", absl::StrJoin(r->slots, ",")));
    }
    if (runner->proc->stdin_fd() >= 0 && WriteLine(runner->proc->stdin_fd(), line)) break;
    EndRunner(runner, "it did not take its next trial");
    runner = nullptr;
  }
  if (runner == nullptr) {
    r->procs.push_back(std::move(proc));
    LaunchFailed(r, so, absl::UnavailableError("no runner took the trial"));
    return;
  }
  proc->stderr_path = runner->stderr_path;
  r->procs.push_back(std::move(proc));
  r->runner = runner;
  runner->trial = r;
  runner->idle_since = absl::InfiniteFuture();
  ++runner->trials;
  Log(LogLevel::kInfo,
      absl::StrCat("trial ", r->id, " attempt ", r->attempt, " started in runner ", runner->id,
                   " (pid ", runner->proc->pid(), ", its trial ", runner->trials, ")"));
  v1::WorkerMessage m;
  v1::TrialStarted* st = m.mutable_started();
  st->mutable_trial()->set_trial_id(r->id);
  st->mutable_trial()->set_attempt(r->attempt);
  st->set_pid(runner->proc->pid());
  st->set_stdout_path(r->procs[0]->stdout_path);
  st->set_stderr_path(runner->stderr_path);
  SendState(std::move(m));
}

void Supervisor::EndRunner(Runner* runner, const std::string& why) {
  if (runner->ending || runner->exited) return;
  Log(LogLevel::kInfo, absl::StrCat("ending runner ", runner->id, " of ", runner->experiment_id,
                                    " after ", runner->trials, " trials: ", why));
  runner->ending = true;
  runner->proc->CloseStdin();  // its loop sees end of file and the script goes on to exit
  runner->kill_at = clock_->Now() + o_.kill_grace;
}

void Supervisor::ReadRunner(Runner* runner) {
  if (runner->proc->stdout_fd() < 0) return;
  // Its trial's stdout log gets it line by line (HandleRunnerLine): lines go to the trial
  // they belong to.
  const bool more = ReadLines(
      runner->proc->stdout_fd(), &runner->line, [](absl::string_view) {},
      [&](absl::string_view line) { HandleRunnerLine(runner, line); });
  if (!more) runner->proc->CloseStdout();
}

void Supervisor::HandleRunnerLine(Runner* runner, absl::string_view line) {
  TrialRun* r = runner->trial;
  if (r == nullptr) return;  // between trials: nobody's output
  RankProc* p = r->procs[0].get();
  if (p->stdout_log >= 0) {
    const std::string with_nl = absl::StrCat(line, "\n");
    (void)!write(p->stdout_log, with_nl.data(), with_nl.size());
  }
  if (line.substr(0, kEndLine.size()) == kEndLine) {
    EndRunnerTrial(runner, 0);
    return;
  }
  HandleStdoutLine(r, p, line);
}

void Supervisor::EndRunnerTrial(Runner* runner, int status) {
  TrialRun* r = runner->trial;
  runner->trial = nullptr;
  runner->idle_since = clock_->Now();
  r->runner = nullptr;
  RankProc* p = r->procs[0].get();
  p->exited = true;
  p->status = status;
  if (p->stdout_log >= 0) close(p->stdout_log);
  p->stdout_log = -1;
  if (status != 0) r->failed = 0;
  Finish(r);
  if (ended_experiments_.count(runner->experiment_id)) {
    EndRunner(runner, "its experiment has ended");
    bool busy = false;  // another runner of it still has a trial
    for (const auto& x : runners_) busy |= x->experiment_id == runner->experiment_id && x->trial;
    if (!busy) ended_experiments_.erase(runner->experiment_id);
  }
}

void Supervisor::ReapRunners() {
  for (auto& runner : runners_) {
    int status;
    if (runner->exited || !runner->proc->Poll(&status)) continue;
    ReadRunner(runner.get());  // its last lines (perhaps its trial's end) first
    runner->exited = true;
    runner->proc->SignalGroup(SIGKILL);  // what it left in its group
    Log(runner->ending ? LogLevel::kInfo : LogLevel::kWarning,
        absl::StrCat("runner ", runner->id, " of ", runner->experiment_id, " exited after ",
                     runner->trials, " trials",
                     runner->trial ? absl::StrCat(", in trial ", runner->trial->id) : ""));
    if (runner->trial != nullptr) EndRunnerTrial(runner.get(), status);
  }
  runners_.erase(std::remove_if(runners_.begin(), runners_.end(),
                                [](const std::unique_ptr<Runner>& x) { return x->exited; }),
                 runners_.end());
}

void Supervisor::RunRunnerTimers(absl::Time now) {
  for (auto& runner : runners_) {
    if (runner->exited) continue;
    if (!runner->ending && runner->trial == nullptr &&
        now >= runner->idle_since + o_.runner_idle_timeout) {
      EndRunner(runner.get(),
                absl::StrCat("idle for ", absl::FormatDuration(o_.runner_idle_timeout),
                             " (--runner-idle-timeout)"));
    }
    if (runner->ending && now >= runner->kill_at) {
      runner->proc->SignalGroup(SIGKILL);
      runner->kill_at = absl::InfiniteFuture();
    }
  }
}

absl::Time Supervisor::RunnerWake() const {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& runner : runners_) {
    if (runner->exited) continue;
    if (runner->ending) {
      next = std::min(next, runner->kill_at);
    } else if (runner->trial == nullptr) {
      next = std::min(next, runner->idle_since + o_.runner_idle_timeout);
    }
  }
  return next;
}

void Supervisor::OnRunnersDone(const std::string& experiment_id) {
  for (auto& runner : runners_) {
    if (runner->experiment_id != experiment_id) continue;
    if (runner->trial == nullptr) {
      EndRunner(runner.get(), "its experiment has ended");
    } else {
      ended_experiments_.insert(experiment_id);  // it ends after its trial
    }
  }
}

std::map<int, std::string> Supervisor::WarmSlots() const {
  std::map<int, std::string> warm;
  for (const auto& runner : runners_) {
    if (runner->exited || runner->ending || runner->trial != nullptr) continue;
    for (int s : runner->slots) {
      if (free_.count(s)) warm[s] = runner->experiment_id;
    }
  }
  return warm;
}

}  // namespace rung
