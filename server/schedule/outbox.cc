#include "server/schedule/outbox.h"

#include <utility>

namespace rung {

void Outbox::AddWorker(int64_t session, WorkerSink* sink, uint64_t ticket) {
  absl::MutexLock l(&mu_);
  queued_.insert(session);
  queue_.push_back({ticket, AttachWorker{session, sink}});
}

void Outbox::RemoveWorker(int64_t session) {
  absl::MutexLock d(&deliver_mu_);
  workers_.erase(session);
  absl::MutexLock l(&mu_);
  if (queued_.count(session)) cancelled_.insert(session);
}

void Outbox::AddWatcher(int64_t handle, const std::string& experiment_id, WatchSink* sink,
                        std::vector<v1::WatchEvent> first, bool settled, uint64_t ticket) {
  absl::MutexLock l(&mu_);
  ++watched_[experiment_id];
  queued_.insert(handle);
  queue_.push_back({ticket, AttachWatcher{handle, experiment_id, sink, std::move(first), settled}});
}

void Outbox::RemoveWatcher(int64_t handle) {
  absl::MutexLock d(&deliver_mu_);
  auto it = watchers_.find(handle);
  if (it != watchers_.end()) {
    const std::string experiment_id = it->second.experiment_id;
    watchers_.erase(it);
    Unwatched(experiment_id);
    return;
  }
  absl::MutexLock l(&mu_);
  if (queued_.count(handle)) cancelled_.insert(handle);
}

bool Outbox::Watched(const std::string& experiment_id) const {
  absl::MutexLock l(&mu_);
  auto it = watched_.find(experiment_id);
  return it != watched_.end() && it->second > 0;
}

void Outbox::Unwatched(const std::string& experiment_id) {
  absl::MutexLock l(&mu_);
  auto it = watched_.find(experiment_id);
  if (it != watched_.end() && --it->second <= 0) watched_.erase(it);
}

bool Outbox::Cancelled(int64_t handle) {
  absl::MutexLock l(&mu_);
  queued_.erase(handle);
  return cancelled_.erase(handle) > 0;
}

void Outbox::Push(uint64_t ticket, std::vector<Effect> effects) {
  if (effects.empty()) return;
  absl::MutexLock l(&mu_);
  for (Effect& e : effects) queue_.push_back({ticket, std::move(e)});
}

size_t Outbox::Pending() const {
  absl::MutexLock l(&mu_);
  return queue_.size();
}

void Outbox::Deliver(uint64_t durable) {
  absl::MutexLock d(&deliver_mu_);
  for (;;) {
    std::vector<Item> ready;
    {
      absl::MutexLock l(&mu_);
      while (!queue_.empty() && queue_.front().ticket <= durable) {
        ready.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (ready.empty()) return;
    for (Item& item : ready) Send(&item);
  }
}

void Outbox::Send(Item* item) {
  if (auto* e = std::get_if<Effect>(&item->what)) {
    SendEffect(e);
  } else if (auto* w = std::get_if<AttachWorker>(&item->what)) {
    if (!Cancelled(w->session)) workers_[w->session] = w->sink;
  } else if (auto* a = std::get_if<AttachWatcher>(&item->what)) {
    if (Cancelled(a->handle)) {
      Unwatched(a->experiment_id);
      return;
    }
    for (const v1::WatchEvent& e : a->first) a->sink->Send(e);
    if (a->settled) {
      a->sink->Close();
      Unwatched(a->experiment_id);
      return;
    }
    watchers_[a->handle] = {a->experiment_id, a->sink};
  }
}

void Outbox::SendEffect(Effect* e) {
  if (auto* t = std::get_if<TellWorker>(e)) {
    auto it = workers_.find(t->session);
    if (it != workers_.end()) it->second->Send(t->msg);
  } else if (auto* w = std::get_if<TellWatchers>(e)) {
    for (auto& [handle, watcher] : watchers_) {
      if (watcher.experiment_id == w->experiment_id) watcher.sink->Send(w->event);
    }
  } else if (auto* c = std::get_if<rung::CloseWatchers>(e)) {
    for (auto it = watchers_.begin(); it != watchers_.end();) {
      if (it->second.experiment_id != c->experiment_id) {
        ++it;
        continue;
      }
      it->second.sink->Close();
      Unwatched(c->experiment_id);
      it = watchers_.erase(it);
    }
  } else if (auto* call = std::get_if<Call>(e)) {
    call->fn(absl::OkStatus());
  }
}

void Outbox::Drop(const absl::Status& why) {
  absl::MutexLock d(&deliver_mu_);
  std::deque<Item> dropped;
  {
    absl::MutexLock l(&mu_);
    dropped.swap(queue_);
  }
  for (Item& item : dropped) {
    if (auto* e = std::get_if<Effect>(&item.what)) {
      if (auto* call = std::get_if<Call>(e)) call->fn(why);
    } else if (auto* w = std::get_if<AttachWorker>(&item.what)) {
      // Its registration's reply never goes out: the stream ends, and the worker connects again.
      if (!Cancelled(w->session)) w->sink->End(why);
    } else if (auto* a = std::get_if<AttachWatcher>(&item.what)) {
      if (!Cancelled(a->handle)) a->sink->Close();
      Unwatched(a->experiment_id);
    }
  }
}

int Outbox::CloseAllWatchers() {
  absl::MutexLock d(&deliver_mu_);
  const int n = static_cast<int>(watchers_.size());
  for (auto& [handle, watcher] : watchers_) {
    watcher.sink->Close();
    Unwatched(watcher.experiment_id);
  }
  watchers_.clear();
  return n;
}

int Outbox::EndAllWorkers(const absl::Status& why) {
  absl::MutexLock d(&deliver_mu_);
  const int n = static_cast<int>(workers_.size());
  for (auto& [session, sink] : workers_) sink->End(why);
  workers_.clear();
  return n;
}

}  // namespace rung
