// How rung-worker starts trial processes, as an interface so that the supervisor can be
// driven by a test with fake processes (leveldb's Env / EnvWrapper pattern).
//
//   ProcessLauncher           the interface the supervisor uses
//   ProcessLauncher::Real()   real child processes (Subprocess: own process group, killed
//                             with the worker, SIGKILL on destruction)
//   ProcessLauncherWrapper    forwards every call to another launcher; a test fake derives
//                             from it and overrides only what it fakes
#ifndef RUNG_WORKER_LAUNCHER_H_
#define RUNG_WORKER_LAUNCHER_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rung {

struct SpawnOptions {
  std::vector<std::string> argv;           // argv[0] is looked up in the child's PATH
  std::map<std::string, std::string> env;  // the whole environment of the child
  std::string workdir;
  std::string stderr_path;  // stderr is appended to this file
  bool pipe_stdout = true;  // stdout through a pipe (stdout_fd()), else /dev/null
  bool pipe_stdin = false;  // stdin from a pipe (stdin_fd()), else /dev/null
};

// A started child process. Owned by whoever Spawn() returned it to; called from one thread.
class Process {
 public:
  virtual ~Process() = default;
  virtual pid_t pid() const = 0;
  // Read end of the child's stdout, non-blocking; -1 when there is none (or once closed).
  virtual int stdout_fd() const = 0;
  virtual void CloseStdout() = 0;
  // Write end of the child's stdin, non-blocking, with SpawnOptions::pipe_stdin; else -1.
  // Closing it gives the child end of file.
  virtual int stdin_fd() const { return -1; }
  virtual void CloseStdin() {}
  // Sends `sig` to the child's whole process group. Harmless after the child exited.
  virtual void SignalGroup(int sig) = 0;
  // Reaps the child without blocking. True once it has exited; then `status` (if not null)
  // holds its waitpid() status.
  virtual bool Poll(int* status) = 0;
};

class ProcessLauncher {
 public:
  virtual ~ProcessLauncher() = default;
  // Starts a child as SpawnOptions says. Fails with the reason (e.g. "python4: No such file
  // or directory") when it could not be executed; then no child is left behind.
  virtual absl::StatusOr<std::unique_ptr<Process>> Spawn(const SpawnOptions& options) = 0;
  // The environment that children inherit (before a trial's own variables).
  virtual std::map<std::string, std::string> Environment() = 0;

  // The process-wide real launcher. Never deleted; safe from any thread.
  static ProcessLauncher* Real();
};

// Forwards every call to `target`, which must outlive it.
class ProcessLauncherWrapper : public ProcessLauncher {
 public:
  explicit ProcessLauncherWrapper(ProcessLauncher* target) : target_(target) {}
  absl::StatusOr<std::unique_ptr<Process>> Spawn(const SpawnOptions& options) override {
    return target_->Spawn(options);
  }
  std::map<std::string, std::string> Environment() override { return target_->Environment(); }
  ProcessLauncher* target() const { return target_; }

 private:
  ProcessLauncher* const target_;
};

}  // namespace rung

#endif  // RUNG_WORKER_LAUNCHER_H_
