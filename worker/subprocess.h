// A child process that cannot leak: it runs in its own process group, dies with the worker
// (PR_SET_PDEATHSIG), is signalled as a whole group, and is killed on destruction.
#ifndef RUNG_WORKER_SUBPROCESS_H_
#define RUNG_WORKER_SUBPROCESS_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/launcher.h"

namespace rung {

// This process's environment as a map (the usual base of SpawnOptions::env).
class Subprocess;

std::map<std::string, std::string> CurrentEnvironment();

// Reads the child's stdout line by line until a line contains `needle` and returns that
// line; "" on EOF or after `timeout_ms` without output. For tools and tests that wait for a
// daemon's "ready" line. Blocks.
std::string WaitForLine(Subprocess* p, const std::string& needle, int timeout_ms = 60000);

// The real Process (ProcessLauncher::Real() returns these).
class Subprocess final : public Process {
 public:
  // Starts the child. Fails (with the reason, e.g. "python4: No such file or directory")
  // when it could not be executed; then no child is left behind.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Spawn(const SpawnOptions& options);
  // Kills the group with SIGKILL and reaps the child if it is still running.
  ~Subprocess() override;

  pid_t pid() const override { return pid_; }
  // Read end of the child's stdout, non-blocking; owned by this object (-1 once closed).
  int stdout_fd() const override { return stdout_fd_; }
  void CloseStdout() override;
  int stdin_fd() const override { return stdin_fd_; }
  void CloseStdin() override;

  // Sends `sig` to the whole process group. Harmless after the child exited.
  void SignalGroup(int sig) override;
  // Reaps the child without blocking. True once it has exited; then `status` holds the
  // waitpid() status.
  bool Poll(int* status) override;
  bool exited() const { return exited_; }

 private:
  Subprocess() = default;
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int stdin_fd_ = -1;
  bool exited_ = false;
  int status_ = 0;
};

}  // namespace rung

#endif  // RUNG_WORKER_SUBPROCESS_H_
