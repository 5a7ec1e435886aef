// A ProcessLauncher whose processes are fakes: nothing is started, every signal is recorded
// with the fake clock's time, and a process exits when the test says (or as a real one would
// on SIGKILL, and on SIGTERM unless it ignores it). The environment still comes from the
// real launcher (ProcessLauncherWrapper): only Spawn is faked.
#ifndef RUNG_TESTS_UNIT_FAKE_LAUNCHER_H_
#define RUNG_TESTS_UNIT_FAKE_LAUNCHER_H_

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/clock.h"
#include "worker/launcher.h"

namespace rung::testing {

// What the test sees of one fake process; it outlives the Process object.
struct FakeProcessState {
  SpawnOptions options;
  pid_t pid = 0;
  bool ignore_sigterm = false;
  std::vector<std::pair<int, absl::Time>> signals;  // every SignalGroup(), in order
  std::optional<int> status;                        // waitpid() status once exited
  int stdout_w = -1;                                // the test writes the "process's" stdout here
  int stdin_r = -1;  // with pipe_stdin: what the worker wrote to the "process's" stdin
  bool stdin_closed = false;

  void Exit(int code) {
    if (!status) status = code << 8;  // as W_EXITCODE(code, 0)
  }
  void WriteStdout(absl::string_view text) {
    ssize_t n = write(stdout_w, text.data(), text.size());
    (void)n;
  }
  std::vector<int> signal_numbers() const {
    std::vector<int> out;
    for (const auto& [sig, at] : signals) out.push_back(sig);
    return out;
  }
  // Everything written to its stdin since the last call.
  std::string ReadStdin() {
    std::string out;
    char buf[4096];
    ssize_t n;
    while (stdin_r >= 0 && (n = read(stdin_r, buf, sizeof(buf))) > 0) out.append(buf, n);
    return out;
  }
  ~FakeProcessState() {
    if (stdout_w >= 0) close(stdout_w);
    if (stdin_r >= 0) close(stdin_r);
  }
};

class FakeProcess final : public Process {
 public:
  FakeProcess(std::shared_ptr<FakeProcessState> state, int stdout_r, int stdin_w, Clock* clock)
      : state_(std::move(state)), stdout_r_(stdout_r), stdin_w_(stdin_w), clock_(clock) {}
  ~FakeProcess() override {
    CloseStdout();
    CloseStdin();
  }
  int stdin_fd() const override { return stdin_w_; }
  void CloseStdin() override {
    if (stdin_w_ >= 0) close(stdin_w_);
    if (stdin_w_ >= 0) state_->stdin_closed = true;
    stdin_w_ = -1;
  }
  pid_t pid() const override { return state_->pid; }
  int stdout_fd() const override { return stdout_r_; }
  void CloseStdout() override {
    if (stdout_r_ >= 0) close(stdout_r_);
    stdout_r_ = -1;
  }
  void SignalGroup(int sig) override {
    state_->signals.push_back({sig, clock_->Now()});
    if (state_->status) return;
    if (sig == SIGKILL || (sig == SIGTERM && !state_->ignore_sigterm)) state_->status = sig;
  }
  bool Poll(int* status) override {
    if (!state_->status) return false;
    if (status != nullptr) *status = *state_->status;
    return true;
  }

 private:
  std::shared_ptr<FakeProcessState> state_;
  int stdout_r_;
  int stdin_w_;
  Clock* const clock_;
};

class FakeLauncher final : public ProcessLauncherWrapper {
 public:
  explicit FakeLauncher(Clock* clock)
      : ProcessLauncherWrapper(ProcessLauncher::Real()), clock_(clock) {}

  absl::StatusOr<std::unique_ptr<Process>> Spawn(const SpawnOptions& options) override {
    if (!fail_next_.ok()) return std::exchange(fail_next_, absl::OkStatus());
    auto state = std::make_shared<FakeProcessState>();
    state->options = options;
    state->pid = next_pid_++;
    int p[2] = {-1, -1};
    if (options.pipe_stdout && pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0) state->stdout_w = p[1];
    int in[2] = {-1, -1};
    if (options.pipe_stdin && pipe2(in, O_CLOEXEC | O_NONBLOCK) == 0) state->stdin_r = in[0];
    spawned_.push_back(state);
    return std::unique_ptr<Process>(new FakeProcess(state, p[0], in[1], clock_));
  }

  // The next Spawn fails with `status` (e.g. "train: No such file or directory").
  void FailNextSpawn(absl::Status status) { fail_next_ = std::move(status); }
  // Every process started, in order.
  const std::vector<std::shared_ptr<FakeProcessState>>& spawned() const { return spawned_; }

 private:
  Clock* const clock_;
  absl::Status fail_next_;
  pid_t next_pid_ = 1001;
  std::vector<std::shared_ptr<FakeProcessState>> spawned_;
};

}  // namespace rung::testing

#endif  // RUNG_TESTS_UNIT_FAKE_LAUNCHER_H_
