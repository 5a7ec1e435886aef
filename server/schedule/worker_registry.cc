#include "server/schedule/worker_registry.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status.h"

namespace rung {
namespace {

int GpuSlots(const v1::Worker& w) {
  int n = 0;
  for (const v1::Slot& s : w.slots()) n += !s.gpu().empty();
  return n;
}

bool HasLabels(const v1::TrialTemplate& tt, const v1::Worker& w) {
  for (const auto& [k, v] : tt.labels()) {
    auto it = w.labels().find(k);
    if (it == w.labels().end() || it->second != v) return false;
  }
  return true;
}

std::string Labels(const google::protobuf::Map<std::string, std::string>& labels) {
  std::map<std::string, std::string> sorted(labels.begin(), labels.end());
  return absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

absl::Status CheckRegister(const v1::Register& reg) {
  if (reg.worker_id().empty())
    return absl::InvalidArgumentError("register.worker_id: must not be empty");
  std::set<int> ids;
  for (const v1::Slot& s : reg.slots()) {
    if (!ids.insert(s.id()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("register.slots: slot id ", s.id(), " appears twice"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

void WorkerRegistry::Load(std::vector<v1::Worker> workers, absl::Time now) {
  for (v1::Worker& info : workers) {
    auto w = std::make_unique<Worker>();
    w->info = std::move(info);
    w->info.set_state(v1::WORKER_DISCONNECTED);
    w->last_seen = now;
    workers_[w->info.id()] = std::move(w);
  }
}

absl::StatusOr<WorkerRegistry::Worker*> WorkerRegistry::Connect(const v1::Register& reg,
                                                                int64_t session, Change* c) {
  RETURN_IF_ERROR(CheckRegister(reg));
  auto& slot = workers_[reg.worker_id()];
  if (slot == nullptr) slot = std::make_unique<Worker>();
  Worker* w = slot.get();
  if (w->connected()) {
    const bool same_process = w->session_id == reg.session_id() || reg.session_id().empty();
    const absl::Duration silent = c->now - w->last_seen;
    if (!same_process && silent <= live_within_) {
      const std::string why = absl::StrCat(
          "worker name '", reg.worker_id(), "' is already connected (host ", w->info.host(),
          ", heard from ", absl::FormatDuration(absl::Trunc(silent, absl::Milliseconds(100))),
          " ago): two rung-workers share one name; give each its own --name (the default is the "
          "host name)");
      Log(LogLevel::kWarning, absl::StrCat("refused a worker from ", reg.host(), ": ", why));
      return absl::AlreadyExistsError(why);
    }
    // The same process on a new stream (the old one broke before we noticed), or a new
    // process after the old one went silent (it restarted): the newcomer takes over.
    if (!same_process) {
      Log(LogLevel::kInfo,
          absl::StrCat("worker ", reg.worker_id(), " came back as a new process (silent for ",
                       absl::FormatDuration(absl::Trunc(silent, absl::Seconds(1))),
                       "); its old session is dropped"));
    }
    sessions_.erase(w->session);
  }
  w->session = session;
  w->session_id = reg.session_id();
  w->last_seen = c->now;
  w->offered.clear();
  w->warm.clear();
  v1::Worker& info = w->info;
  info.set_id(reg.worker_id());
  info.set_host(reg.host());
  *info.mutable_slots() = reg.slots();
  *info.mutable_labels() = reg.labels();
  info.set_version(reg.version());
  info.set_addr(reg.addr().empty() ? reg.host() : reg.addr());
  info.set_ports_first(reg.ports_first());
  info.set_ports_last(reg.ports_last());
  *info.mutable_partitions() = reg.partitions();
  info.set_state(v1::WORKER_CONNECTED);
  info.set_last_heartbeat_unix_ms(c->now_ms());
  c->batch.PutWorker(info);
  sessions_[session] = w;
  return w;
}

WorkerRegistry::Worker* WorkerRegistry::BySession(int64_t session) {
  auto it = sessions_.find(session);
  return it == sessions_.end() ? nullptr : it->second;
}

WorkerRegistry::Worker* WorkerRegistry::Find(const std::string& id) {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : it->second.get();
}

WorkerRegistry::Worker* WorkerRegistry::Disconnect(int64_t session) {
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return nullptr;
  Worker* w = it->second;
  sessions_.erase(it);
  w->session = 0;
  w->offered.clear();
  w->warm.clear();
  w->info.set_state(v1::WORKER_DISCONNECTED);
  return w;
}

void WorkerRegistry::Seen(Worker* w, const Change& c) {
  w->last_seen = c.now;
  w->info.set_last_heartbeat_unix_ms(c.now_ms());
  if (w->info.state() != v1::WORKER_CONNECTED) w->info.set_state(v1::WORKER_CONNECTED);
}

absl::Status WorkerRegistry::Offer(Worker* w, const v1::Pull& pull) {
  std::set<int> known;
  for (const v1::Slot& s : w->info.slots()) known.insert(s.id());
  std::set<int> offered;
  for (int s : pull.free_slots()) {
    if (!known.count(s)) {
      return absl::InvalidArgumentError(
          absl::StrCat("pull.free_slots: slot ", s, " was not registered"));
    }
    // A slot our trials hold was taken after the worker wrote this Pull: it is offered again
    // only by a Pull written after the worker's process there has exited.
    if (!w->busy.count(s)) offered.insert(s);
  }
  w->offered = std::move(offered);
  w->warm.clear();
  for (const auto& [slot, experiment] : pull.warm()) {
    if (w->offered.count(slot)) w->warm[slot] = experiment;
  }
  return absl::OkStatus();
}

namespace {

// The slots of `w` for which `usable` holds that ranks of `tt` may take, in the order they
// take them: GPU ranks take `gpus` GPU slots each; CPU ranks take CPU slots first, then GPU
// slots when no CPU slot is left.
template <typename Pred>
std::vector<int> Usable(const v1::TrialTemplate& tt, const v1::Worker& w, Pred usable) {
  std::vector<int> cpu, gpu;
  for (const v1::Slot& s : w.slots()) {
    if (usable(s.id())) (s.gpu().empty() ? cpu : gpu).push_back(s.id());
  }
  if (tt.gpus() > 0) return gpu;
  cpu.insert(cpu.end(), gpu.begin(), gpu.end());
  return cpu;
}

int SlotsPerRank(const v1::TrialTemplate& tt) { return std::max(1, tt.gpus()); }

// How many ranks go on each of these workers (their room in ranks, largest first, ties by
// id) so that a trial of `tt` uses as few workers as possible; empty when it does not fit.
std::vector<int> Split(const v1::TrialTemplate& tt, const std::vector<int>& room) {
  const int ranks = std::max(1, tt.ranks());
  const int per_node = tt.ranks_per_node();
  std::vector<int> take(room.size(), 0);
  int left = ranks;
  for (size_t i = 0; i < room.size() && left > 0; ++i) {
    if (per_node > 0) {
      if (room[i] < per_node) continue;
      take[i] = per_node;
    } else {
      take[i] = std::min(room[i], left);
    }
    left -= take[i];
  }
  if (left > 0) take.clear();
  return take;
}

}  // namespace

std::vector<WorkerRegistry::Share> WorkerRegistry::Place(const v1::TrialTemplate& tt,
                                                         const std::string& experiment,
                                                         const std::set<std::string>& skip) {
  struct Candidate {
    Worker* w;
    std::vector<int> free;
    int room;
  };
  std::vector<Candidate> candidates;
  const int per_rank = SlotsPerRank(tt);
  // One rank: its experiment's idle runner (0) before a slot without one (1) before another
  // experiment's runner (2), which would have to end.
  std::optional<Share> best;
  int best_score = 3;
  auto score = [&experiment](const Worker& w, int slot) {
    auto it = w.warm.find(slot);
    return it == w.warm.end() ? 1 : it->second == experiment ? 0 : 2;
  };
  // With no idle runner anywhere, the first free slot is as good as any: stop there.
  int good_enough = 1;
  for (const auto& [id, w] : workers_) {
    if (!w->warm.empty()) good_enough = 0;
  }
  for (auto& [id, w] : workers_) {
    if (!w->connected() || w->offered.empty() || skip.count(id) || !HasLabels(tt, w->info))
      continue;
    Worker* worker = w.get();
    std::vector<int> free = Usable(tt, w->info, [worker](int s) {
      return worker->offered.count(s) > 0 && worker->busy.count(s) == 0;
    });
    const int room = static_cast<int>(free.size()) / per_rank;
    if (room == 0) continue;
    if (std::max(1, tt.ranks()) == 1) {
      if (per_rank > 1) {  // several GPUs: the first worker with room
        free.resize(per_rank);
        return {{worker, std::move(free), 1}};
      }
      for (int slot : free) {
        if (score(*worker, slot) < best_score) {
          best_score = score(*worker, slot);
          best = Share{worker, {slot}, 1};
        }
      }
      if (best_score <= good_enough) break;
      continue;
    }
    candidates.push_back({worker, std::move(free), room});
  }
  if (best) return {*std::move(best)};
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.room > b.room; });
  std::vector<int> room;
  for (const Candidate& c : candidates) room.push_back(c.room);
  const std::vector<int> take = Split(tt, room);
  std::vector<Share> out;
  for (size_t i = 0; i < take.size(); ++i) {
    if (take[i] == 0) continue;
    std::vector<int> slots = std::move(candidates[i].free);
    slots.resize(static_cast<size_t>(take[i] * per_rank));
    out.push_back({candidates[i].w, std::move(slots), take[i]});
  }
  return out;
}

std::vector<std::string> WorkerRegistry::Reserve(const v1::TrialTemplate& tt,
                                                 const std::set<std::string>& skip) const {
  std::vector<std::pair<int, std::string>> room;  // (-room, id): largest first, ties by id
  for (const auto& [id, w] : workers_) {
    if (!w->connected() || skip.count(id) || !HasLabels(tt, w->info)) continue;
    const int r =
        static_cast<int>(Usable(tt, w->info, [](int) { return true; }).size()) / SlotsPerRank(tt);
    if (r > 0) room.emplace_back(-r, id);
  }
  std::sort(room.begin(), room.end());
  std::vector<int> rooms;
  for (const auto& [r, id] : room) rooms.push_back(-r);
  const std::vector<int> take = Split(tt, rooms);
  std::vector<std::string> out;
  for (size_t i = 0; i < take.size(); ++i) {
    if (take[i] > 0) out.push_back(room[i].second);
  }
  return out;
}

void WorkerRegistry::Take(Worker* w, const std::vector<int>& slots) {
  for (int s : slots) {
    w->busy.insert(s);
    w->offered.erase(s);
    w->warm.erase(s);
  }
}

void WorkerRegistry::Release(const std::string& worker_id, const std::vector<int>& slots) {
  Worker* w = Find(worker_id);
  if (w == nullptr) return;
  for (int s : slots) w->busy.erase(s);
}

std::vector<WorkerRegistry::Worker*> WorkerRegistry::Expired(absl::Duration lease_timeout,
                                                             Change* c) {
  std::vector<Worker*> out;
  for (auto& [id, w] : workers_) {
    if (c->now - w->last_seen <= lease_timeout) continue;
    if (w->info.state() != v1::WORKER_LOST) {
      Log(LogLevel::kWarning,
          absl::StrCat("worker ", id, " lost: silent for ",
                       absl::FormatDuration(absl::Trunc(c->now - w->last_seen, absl::Seconds(1)))));
      w->info.set_state(v1::WORKER_LOST);
      c->batch.PutWorker(w->info);
    }
    if (!w->busy.empty()) out.push_back(w.get());
  }
  return out;
}

std::string WorkerRegistry::Unschedulable(const v1::TrialTemplate& tt) const {
  const std::string one = OneRankUnschedulable(tt);
  if (!one.empty() || std::max(1, tt.ranks()) == 1) return one;
  // Several ranks: do the connected workers hold them all at once?
  if (!Reserve(tt, {}).empty()) return "";
  const int per_rank = SlotsPerRank(tt);
  int total = 0;
  std::vector<std::string> rooms;
  for (const auto& [id, w] : workers_) {
    if (!w->connected() || !HasLabels(tt, w->info)) continue;
    const int r = static_cast<int>(Usable(tt, w->info, [](int) { return true; }).size()) / per_rank;
    total += tt.ranks_per_node() == 0 ? r : r >= tt.ranks_per_node() ? tt.ranks_per_node() : 0;
    rooms.push_back(absl::StrCat(id, ": ", r));
  }
  const std::string unit =
      tt.gpus() > 0 ? absl::StrCat(tt.gpus(), tt.gpus() == 1 ? " GPU" : " GPUs") : "one slot";
  return absl::StrCat(
      "a trial needs ", tt.ranks(), " ranks of ", unit, " each",
      tt.ranks_per_node() > 0 ? absl::StrCat(", ", tt.ranks_per_node(), " on each worker") : "",
      "; the connected workers have room for ", total, " (", absl::StrJoin(rooms, ", "), ")");
}

std::string WorkerRegistry::OneRankUnschedulable(const v1::TrialTemplate& tt) const {
  int connected = 0, labelled = 0, most_gpus = 0;
  for (const auto& [id, w] : workers_) {
    if (!w->connected()) continue;
    ++connected;
    if (!HasLabels(tt, w->info)) continue;
    ++labelled;
    if (tt.gpus() == 0 && w->info.slots_size() > 0) return "";
    most_gpus = std::max(most_gpus, GpuSlots(w->info));
  }
  if (connected == 0) return "no worker is connected";
  if (labelled == 0) {
    return absl::StrCat("no connected worker has the labels ", Labels(tt.labels()),
                        " (resources.labels)");
  }
  if (tt.gpus() == 0) return "no connected worker has a slot";
  if (most_gpus >= tt.gpus()) return "";
  return absl::StrCat("no connected worker has ", tt.gpus(), tt.gpus() == 1 ? " GPU" : " GPUs",
                      "; the largest has ", most_gpus == 0 ? "none" : absl::StrCat(most_gpus));
}

void WorkerRegistry::SetBusy(const std::map<std::string, std::set<int>>& busy) {
  for (auto& [id, w] : workers_) {
    auto it = busy.find(id);
    w->busy = it == busy.end() ? std::set<int>() : it->second;
  }
}

}  // namespace rung
