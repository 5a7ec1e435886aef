// The controller's tests share this fixture: a real RocksDB store (wrapped, so that a test can
// make its writes fail), a FakeClock, and sinks that record what the controller sends.
#ifndef RUNG_TESTS_UNIT_CONTROLLER_FIXTURE_H_
#define RUNG_TESTS_UNIT_CONTROLLER_FIXTURE_H_

#include <atomic>

#include <cmath>
#include <memory>
#include <optional>

#include "common/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/schedule/controller.h"
#include "server/spec/spec.h"
#include "tests/test_util.h"

namespace rung::testing {

using ::testing::HasSubstr;

// The real store, whose writes fail while `fail_writes` is set, as they do on a full disk.
class FailingStore : public StoreWrapper {
 public:
  explicit FailingStore(std::unique_ptr<Store> real)
      : StoreWrapper(real.get()), real_(std::move(real)) {}
  absl::Status Write(Batch* batch, bool durable) override {
    if (fail_writes) {
      return absl::UnavailableError("store: write: IO error: No space left on device");
    }
    entries_written += batch->Count();
    bytes_written += static_cast<int64_t>(batch->Bytes());
    return StoreWrapper::Write(batch, durable);
  }
  std::atomic<bool> fail_writes{false};
  std::atomic<int64_t> entries_written{0};  // keys put by successful writes
  std::atomic<int64_t> bytes_written{0};    // their batches' bytes

 private:
  std::unique_ptr<Store> real_;
};

class RecordingSink : public WorkerSink {
 public:
  void Send(const v1::ControllerMessage& m) override { sent.push_back(m); }
  std::vector<v1::Assignment> TakeAssignments() {
    std::vector<v1::Assignment> out;
    for (const auto& m : sent) {
      if (m.has_assignment()) out.push_back(m.assignment());
    }
    sent.clear();
    return out;
  }
  std::vector<v1::ControllerMessage> sent;
};

class ControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLogLevel(LogLevel::kWarning);
    Open();
  }

  // `group`: the store's group commit with this delay; none: every write fsynced at once.
  void Open(ControllerOptions o = ControllerOptions(),
            std::optional<absl::Duration> group = std::nullopt) {
    controller_.reset();
    store_.reset();
    Store::Options so;
    so.group_commit = group.has_value();
    so.group_delay = group.value_or(absl::ZeroDuration());
    auto store = Store::Open(dir_.path(), so);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::make_unique<FailingStore>(std::move(*store));
    o.lease_timeout = absl::Seconds(30);
    auto c = Controller::Create(store_.get(), &clock_, o);
    ASSERT_TRUE(c.ok()) << c.status();
    controller_ = std::move(*c);
  }

  std::string Create(int max_trials, int max_concurrent, int max_restarts = 0) {
    auto spec = ParseSpecYaml(absl::StrCat(R"(
objective: {metric: loss, goal: minimize}
search_space:
  x: {type: float, min: 0, max: 1}
algorithm: {name: random, seed: 3}
budget: {max_trials: )",
                                           max_trials, ", max_concurrent: ", max_concurrent, R"(}
trial: {command: [train, --x, "{x}"], max_restarts: )",
                                           max_restarts, "}\n"),
                              "/work");
    EXPECT_TRUE(spec.ok()) << spec.status();
    auto e = CreateExperiment(*spec);
    EXPECT_TRUE(e.ok()) << e.status();
    return e->id();
  }

  int64_t Connect(const std::string& id, int slots, WorkerSink* sink,
                  std::vector<std::pair<std::string, int>> running = {}) {
    v1::Register reg;
    reg.set_worker_id(id);
    for (int i = 0; i < slots; ++i) reg.add_slots()->set_id(i);
    for (auto& [t, a] : running) {
      auto* r = reg.add_trials();
      r->set_trial_id(t);
      r->set_attempt(a);
    }
    auto s = controller_->WorkerConnected(reg, sink);
    EXPECT_TRUE(s.ok()) << s.status();
    return *s;
  }

  absl::Status Send(int64_t session, v1::WorkerMessage m) {
    m.set_seq(++seq_);
    return controller_->HandleWorkerMessage(session, m);
  }
  absl::Status Pull(int64_t session, std::vector<int> slots) {
    v1::WorkerMessage m;
    auto* p = m.mutable_pull();
    for (int s : slots) p->add_free_slots(s);
    return controller_->HandleWorkerMessage(session, m);
  }
  absl::Status Started(int64_t session, const v1::Trial& t) {
    v1::WorkerMessage m;
    m.mutable_started()->mutable_trial()->set_trial_id(t.id());
    m.mutable_started()->mutable_trial()->set_attempt(t.attempt());
    return Send(session, m);
  }
  absl::Status Report(int64_t session, const v1::Trial& t, int64_t seq, double loss) {
    v1::WorkerMessage m;
    auto* r = m.mutable_reports()->add_reports();
    r->set_trial_id(t.id());
    r->set_attempt(t.attempt());
    r->set_seq(seq);
    r->set_step(static_cast<double>(seq));
    (*r->mutable_values())["loss"] = loss;
    return Send(session, m);
  }
  absl::Status Exited(int64_t session, const v1::Trial& t, int code, const std::string& tail = "") {
    v1::WorkerMessage m;
    m.mutable_exited()->mutable_trial()->set_trial_id(t.id());
    m.mutable_exited()->mutable_trial()->set_attempt(t.attempt());
    m.mutable_exited()->set_exit_code(code);
    m.mutable_exited()->set_stderr_tail(tail);
    return Send(session, m);
  }

  // The controller's calls that change state answer once the change is durable; the store
  // here fsyncs in the caller, so the answer has come when the call returns.
  template <typename T, typename F>
  static absl::StatusOr<T> Await(F&& call) {
    std::optional<absl::StatusOr<T>> out;
    call([&](absl::StatusOr<T> r) { out = std::move(r); });
    EXPECT_TRUE(out.has_value()) << "not answered before the call returned";
    return out.value_or(absl::InternalError("not answered"));
  }
  absl::StatusOr<v1::Experiment> CreateExperiment(const v1::ExperimentSpec& spec) {
    return Await<v1::Experiment>([&](auto done) { controller_->CreateExperiment(spec, "", done); });
  }
  absl::StatusOr<v1::Experiment> CancelExperiment(const std::string& id) {
    return Await<v1::Experiment>([&](auto done) { controller_->CancelExperiment(id, done); });
  }
  absl::StatusOr<v1::Experiment> PauseExperiment(const std::string& id) {
    return Await<v1::Experiment>([&](auto done) { controller_->PauseExperiment(id, done); });
  }
  absl::StatusOr<v1::Experiment> ResumeExperiment(const std::string& id) {
    return Await<v1::Experiment>([&](auto done) { controller_->ResumeExperiment(id, done); });
  }

  testing::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<FailingStore> store_;
  std::unique_ptr<Controller> controller_;
  int64_t seq_ = 0;
};

// Acknowledges what it is sent, from any thread, and lets a test wait for acknowledgements.
class AckSink : public WorkerSink {
 public:
  void Send(const v1::ControllerMessage& m) override {
    absl::MutexLock l(&mu_);
    if (m.has_ack()) acked_ = std::max(acked_, m.ack().seq());
    if (m.has_assignment()) assignments_.push_back(m.assignment());
  }
  int64_t Acked() {
    absl::MutexLock l(&mu_);
    return acked_;
  }
  void AwaitAck(int64_t seq) {
    absl::MutexLock l(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return acked_ >= seq; };
    mu_.Await(absl::Condition(&done));
  }
  v1::Assignment First() {
    absl::MutexLock l(&mu_);
    auto any = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !assignments_.empty(); };
    mu_.Await(absl::Condition(&any));
    return assignments_.at(0);
  }
  size_t Assignments() {
    absl::MutexLock l(&mu_);
    return assignments_.size();
  }

 private:
  absl::Mutex mu_;
  int64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<v1::Assignment> assignments_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rung::testing

#endif  // RUNG_TESTS_UNIT_CONTROLLER_FIXTURE_H_
