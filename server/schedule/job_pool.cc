#include "server/schedule/job_pool.h"

namespace rung {

JobPool::JobPool(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

JobPool::~JobPool() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    queue_.clear();
  }
  for (std::thread& t : threads_) t.join();
}

void JobPool::Run(std::function<void()> job) {
  absl::MutexLock l(&mu_);
  queue_.push_back(std::move(job));
}

void JobPool::Loop() {
  for (;;) {
    std::function<void()> job;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(this, &JobPool::Ready));
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job();
  }
}

}  // namespace rung
