// The Supervisor's tests share this fixture: a fake clock, fake processes (tests/unit/
// fake_launcher.h) and helpers that play rungd's part of the stream.
#ifndef RUNG_TESTS_UNIT_SUPERVISOR_FIXTURE_H_
#define RUNG_TESTS_UNIT_SUPERVISOR_FIXTURE_H_

#include <signal.h>
#include <stdlib.h>

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tests/unit/fake_launcher.h"
#include "worker/supervisor.h"

namespace rung {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using Kind = v1::WorkerMessage::KindCase;

// The kinds of `messages`, in order.
inline std::vector<Kind> Kinds(const std::vector<v1::WorkerMessage>& messages) {
  std::vector<Kind> out;
  for (const auto& m : messages) out.push_back(m.kind_case());
  return out;
}

class SupervisorTest : public ::testing::Test {
 protected:
  SupervisorTest() : launcher_(&clock_) {
    setenv("RUNG_TOKEN", "secret-of-the-worker", 1);  // must not reach trials
    o_.name = "w1";
    o_.controller = "rungd:7411";
    o_.cpu_slots = 2;
    o_.stop_grace = absl::Seconds(5);
    o_.kill_grace = absl::Seconds(10);
    o_.orphan_timeout = absl::Hours(1);
    sup_ = std::make_unique<Supervisor>(
        o_, SupervisorPaths{dir_.path(), dir_.Sub("report.sock"), dir_.Sub("python")}, "session-1",
        &clock_, &launcher_);
    unsetenv("RUNG_TOKEN");
  }

  // A stream opens and rungd accepts it (heartbeats every second).
  void Register(std::vector<std::pair<std::string, int>> kill = {}) {
    sup_->OnStreamStarted();
    std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
    ASSERT_THAT(Kinds(out), ElementsAre(Kind::kRegister));
    last_register_ = out[0].register_();
    v1::ControllerMessage m;
    m.mutable_registered()->set_heartbeat_interval_ms(1000);
    for (const auto& [id, attempt] : kill) {
      v1::TrialRef* ref = m.mutable_registered()->add_kill();
      ref->set_trial_id(id);
      ref->set_attempt(attempt);
    }
    sup_->HandleControllerMessage(m);
  }

  void Assign(const std::string& id, int attempt, int slot) {
    v1::ControllerMessage m;
    v1::Assignment* a = m.mutable_assignment();
    a->mutable_trial()->set_id(id);
    a->mutable_trial()->set_attempt(attempt);
    a->mutable_trial()->add_slots(slot);
    a->add_argv("train");
    a->add_argv("--fast");
    a->set_workdir("/jobs");
    (*a->mutable_env())["RUNG_PARAMS"] = "{\"x\": 1}";
    sup_->HandleControllerMessage(m);
  }

  // Trial e1-1's share of a distributed trial on slots 0 and 1, laid out as `layout`.
  void AssignRanks(const v1::RankLayout& layout) {
    v1::ControllerMessage m;
    v1::Assignment* a = m.mutable_assignment();
    a->mutable_trial()->set_id("e1-1");
    a->mutable_trial()->set_attempt(1);
    a->mutable_trial()->add_slots(0);
    a->mutable_trial()->add_slots(1);
    a->add_argv("train");
    *a->mutable_ranks() = layout;
    sup_->HandleControllerMessage(m);
  }

  void Stop(const std::string& id, int attempt) {
    v1::ControllerMessage m;
    m.mutable_stop()->mutable_trial()->set_trial_id(id);
    m.mutable_stop()->mutable_trial()->set_attempt(attempt);
    m.mutable_stop()->set_reason("asha");
    sup_->HandleControllerMessage(m);
  }

  void Ack(int64_t seq) {
    v1::ControllerMessage m;
    m.mutable_ack()->set_seq(seq);
    sup_->HandleControllerMessage(m);
  }

  // Registered, one trial running on slot 0 and everything so far acknowledged.
  testing::FakeProcessState* StartOne(const std::string& id = "e1-1") {
    Register();
    sup_->Tick();
    Assign(id, 1, 0);
    sup_->Tick();
    std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
    // No second pull: slot 1 was offered already and is still free.
    EXPECT_THAT(Kinds(out), ElementsAre(Kind::kPull, Kind::kStarted));
    Ack(out[1].seq());
    return launcher_.spawned().back().get();
  }

  testing::TempDir dir_;
  FakeClock clock_;
  testing::FakeLauncher launcher_;
  AgentOptions o_;
  std::unique_ptr<Supervisor> sup_;
  v1::Register last_register_;
};

}  // namespace rung

#endif  // RUNG_TESTS_UNIT_SUPERVISOR_FIXTURE_H_
