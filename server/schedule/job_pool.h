// A fixed set of threads that run jobs in the order they were queued. The controller runs
// its searchers' model jobs here, off the RPC threads and off its lock.
#ifndef RUNG_SERVER_SCHEDULE_JOB_POOL_H_
#define RUNG_SERVER_SCHEDULE_JOB_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace rung {

class JobPool {
 public:
  explicit JobPool(int threads);
  // Waits for the running jobs; queued ones that have not started are dropped.
  ~JobPool();
  JobPool(const JobPool&) = delete;
  JobPool& operator=(const JobPool&) = delete;

  void Run(std::function<void()> job);

 private:
  void Loop();
  bool Ready() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); }

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace rung

#endif  // RUNG_SERVER_SCHEDULE_JOB_POOL_H_
