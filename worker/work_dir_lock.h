// One rung-worker per --work-dir: an exclusive flock on DIR/rung-worker.lock, held for the
// life of the process (the kernel drops it when the process dies, however it dies), with the
// holder's pid written in the file so that a second worker can say who holds it.
#ifndef RUNG_WORKER_WORK_DIR_LOCK_H_
#define RUNG_WORKER_WORK_DIR_LOCK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace rung {

class WorkDirLock {
 public:
  // Locks `dir` (which must exist). FAILED_PRECONDITION naming the folder and the holder's
  // pid when another process holds it; UNAVAILABLE when the lock file cannot be opened.
  // The lock file is not inherited by child processes.
  static absl::StatusOr<std::unique_ptr<WorkDirLock>> Acquire(const std::string& dir);
  // Releases the lock (the file stays).
  ~WorkDirLock();
  WorkDirLock(const WorkDirLock&) = delete;
  WorkDirLock& operator=(const WorkDirLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  WorkDirLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  const std::string path_;
  const int fd_;
};

}  // namespace rung

#endif  // RUNG_WORKER_WORK_DIR_LOCK_H_
