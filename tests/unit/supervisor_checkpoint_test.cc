// The Supervisor with checkpoints that travel (Assignment.upload_checkpoint): the download
// before the process starts, the upload after it exits, and what a stop, a replacement or a
// failed transfer does meanwhile. The transfers are the test's: it decides when they end.
#include <filesystem>
#include <fstream>

#include "tests/unit/supervisor_fixture.h"

namespace rung {
namespace {

struct Transfer {
  bool upload;
  std::string trial_id;
  int attempt;
  v1::CheckpointRef ref;
  std::string dir;
};

class TestTransfers : public CheckpointTransfers {
 public:
  void Fetch(const std::string& trial_id, int attempt, const v1::CheckpointRef& ref,
             const std::string& dir) override {
    asked.push_back({false, trial_id, attempt, ref, dir});
  }
  void Store(const std::string& trial_id, int attempt, const std::string& dir) override {
    asked.push_back({true, trial_id, attempt, {}, dir});
  }
  std::vector<Transfer> asked;
};

class SupervisorCheckpointTest : public SupervisorTest {
 protected:
  SupervisorCheckpointTest() { sup_->set_transfers(&transfers_); }

  // Trial `id` attempt `attempt` on slot 0, its checkpoint travelling; `from`: the stored
  // checkpoint it starts from (0: none yet).
  void AssignTravelling(const std::string& id, int attempt, int from) {
    v1::ControllerMessage m;
    v1::Assignment* a = m.mutable_assignment();
    a->mutable_trial()->set_id(id);
    a->mutable_trial()->set_attempt(attempt);
    a->mutable_trial()->add_slots(0);
    a->add_argv("train");
    a->set_upload_checkpoint(true);
    if (from > 0) {
      a->mutable_checkpoint()->set_attempt(from);
      a->mutable_checkpoint()->set_bytes(100);
    }
    sup_->HandleControllerMessage(m);
  }

  TransferDone Done(const Transfer& t, absl::StatusOr<v1::CheckpointRef> result) {
    TransferDone d;
    d.trial_id = t.trial_id;
    d.attempt = t.attempt;
    d.upload = t.upload;
    d.result = std::move(result);
    return d;
  }

  TestTransfers transfers_;
};

TEST_F(SupervisorCheckpointTest, FetchesBeforeTheStartAndUploadsBeforeTheExitGoesOut) {
  Register();
  sup_->Tick();
  sup_->TakeOutgoing();
  AssignTravelling("e1-1", 2, 1);
  // Nothing starts until the checkpoint is in place.
  EXPECT_TRUE(launcher_.spawned().empty());
  ASSERT_EQ(transfers_.asked.size(), 1u);
  EXPECT_FALSE(transfers_.asked[0].upload);
  EXPECT_EQ(transfers_.asked[0].ref.attempt(), 1);
  EXPECT_EQ(transfers_.asked[0].dir, dir_.Sub("trials/e1-1/checkpoint"));
  sup_->Tick();
  EXPECT_THAT(sup_->TakeOutgoing(), IsEmpty());
  EXPECT_EQ(sup_->stats().slots_busy, 1);

  sup_->OnTransferDone(Done(transfers_.asked[0], transfers_.asked[0].ref));
  ASSERT_EQ(launcher_.spawned().size(), 1u);
  testing::FakeProcessState* p = launcher_.spawned()[0].get();
  EXPECT_EQ(p->options.env.at("RUNG_CHECKPOINT_DIR"), dir_.Sub("trials/e1-1/checkpoint"));
  EXPECT_THAT(Kinds(sup_->TakeOutgoing()), ElementsAre(Kind::kStarted));

  // It exits 0: the upload comes first, the slot stays taken, and no exit is sent yet.
  p->Exit(0);
  sup_->Tick();
  EXPECT_THAT(sup_->TakeOutgoing(), IsEmpty());
  ASSERT_EQ(transfers_.asked.size(), 2u);
  EXPECT_TRUE(transfers_.asked[1].upload);
  EXPECT_EQ(transfers_.asked[1].attempt, 2);
  EXPECT_EQ(sup_->stats().slots_busy, 1);

  v1::CheckpointRef stored;
  stored.set_attempt(2);
  stored.set_bytes(200);
  sup_->OnTransferDone(Done(transfers_.asked[1], stored));
  sup_->Tick();
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kExited, Kind::kPull));
  EXPECT_EQ(out[0].exited().checkpoint().attempt(), 2);
  EXPECT_EQ(out[0].exited().checkpoint().bytes(), 200);
  EXPECT_THAT(out[1].pull().free_slots(), ElementsAre(0, 1));
}

TEST_F(SupervisorCheckpointTest, AFailedUploadGoesOutWithTheExitAndAFailedAttemptUploadsNothing) {
  Register();
  sup_->Tick();
  sup_->TakeOutgoing();
  AssignTravelling("e1-1", 1, 0);
  ASSERT_EQ(launcher_.spawned().size(), 1u);  // nothing stored yet: it starts at once
  EXPECT_TRUE(transfers_.asked.empty());
  launcher_.spawned()[0]->Exit(0);
  sup_->Tick();
  ASSERT_EQ(transfers_.asked.size(), 1u);
  sup_->OnTransferDone(Done(transfers_.asked[0], absl::ResourceExhaustedError("too big")));
  sup_->Tick();
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kStarted, Kind::kExited, Kind::kPull));
  EXPECT_EQ(out[1].exited().checkpoint_error(), "too big");

  AssignTravelling("e1-2", 1, 0);
  launcher_.spawned()[1]->Exit(3);
  sup_->Tick();
  out = sup_->TakeOutgoing();
  EXPECT_THAT(Kinds(out), ElementsAre(Kind::kStarted, Kind::kExited, Kind::kPull));
  EXPECT_EQ(transfers_.asked.size(), 1u);  // its half-trained state stays here
}

TEST_F(SupervisorCheckpointTest, AStopWhileFetchingEndsTheAttemptWithoutAProcess) {
  Register();
  sup_->Tick();
  sup_->TakeOutgoing();
  AssignTravelling("e1-1", 2, 1);
  Stop("e1-1", 2);
  sup_->Tick();
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kExited, Kind::kPull));
  EXPECT_TRUE(out[0].exited().stopped());
  EXPECT_THAT(out[1].pull().free_slots(), ElementsAre(0, 1));
  // The download that ends later changes nothing.
  sup_->OnTransferDone(Done(transfers_.asked[0], transfers_.asked[0].ref));
  EXPECT_TRUE(launcher_.spawned().empty());
}

TEST_F(SupervisorCheckpointTest, AFailedDownloadFailsTheAttemptSayingWhy) {
  Register();
  sup_->Tick();
  sup_->TakeOutgoing();
  AssignTravelling("e1-1", 2, 1);
  sup_->OnTransferDone(
      Done(transfers_.asked[0], absl::NotFoundError("rungd keeps no checkpoint of trial e1-1")));
  sup_->Tick();
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kExited, Kind::kPull));
  EXPECT_TRUE(out[0].exited().launch_failed());
  EXPECT_THAT(out[0].exited().message(),
              HasSubstr("could not fetch its checkpoint (attempt 1) from rungd: rungd keeps no"));
}

TEST_F(SupervisorCheckpointTest, ANewerAttemptReplacesOneThatIsFetchingAndFreesItsSlot) {
  Register();
  sup_->Tick();
  sup_->TakeOutgoing();
  AssignTravelling("e1-1", 2, 1);
  AssignTravelling("e1-1", 3, 0);  // rungd gave up on attempt 2 (its lease) and runs 3 here
  ASSERT_EQ(launcher_.spawned().size(), 1u);
  sup_->OnTransferDone(Done(transfers_.asked[0], transfers_.asked[0].ref));
  EXPECT_EQ(launcher_.spawned().size(), 1u);
  launcher_.spawned()[0]->Exit(1);
  sup_->Tick();
  EXPECT_EQ(sup_->stats().slots_busy, 0);
}

}  // namespace
}  // namespace rung
