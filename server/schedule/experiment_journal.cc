// How an experiment outlives rungd: the searcher's journal and its checkpoints as changes
// write them, and an experiment read back from the store (its trials, ended ones packed, and
// its searcher from the latest checkpoint and the journal since).
#include <algorithm>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/log.h"
#include "common/status.h"
#include "server/schedule/experiment_run.h"
#include "server/schedule/search_config.h"
#include "server/search/journal.h"

namespace rung {

using v1::Trial;

absl::StatusOr<std::unique_ptr<ExperimentRun>> ExperimentRun::Load(
    Store* store, v1::Experiment exp, std::unique_ptr<search::Searcher> searcher) {
  auto run = std::make_unique<ExperimentRun>(std::move(exp), std::move(searcher));
  const std::string id = run->id();
  MigrateLegacyAlgorithm(run->exp_.mutable_spec());  // rung 0.1 kept the options in typed fields
  if (run->exp_.rung_levels().empty()) SetRungLevels(&run->exp_);  // stored before rungd kept them
  const absl::Time began = absl::Now();
  // Ended trials stay packed as they are stored, read only for their summaries; the others
  // are parsed. The searcher comes back from its checkpoint and journal meanwhile.
  absl::Status searcher_loaded_ok;
  std::thread load_searcher([&] { searcher_loaded_ok = run->LoadSearcher(store); });
  Trial t;
  absl::Status trials = store->ForEachTrialRecord(id, [&](absl::string_view record) {
    int index;
    TrialTable::Summary summary;
    if (!run->trials_.ReadSummary(record, &index, &summary) ||
        (!TrialTerminal(summary.state) &&
         !t.ParseFromArray(record.data(), static_cast<int>(record.size())))) {
      return absl::DataLossError(absl::StrCat("store: unreadable trial record of ", id));
    }
    if (summary.state == v1::TRIAL_PENDING) run->queue_.push_back(index);
    run->Count(index, summary.state);
    if (TrialTerminal(summary.state)) {
      run->trials_.PutPacked(index, std::string(record), summary);
    } else {
      run->trials_.Put(t);
    }
    return absl::OkStatus();
  });
  load_searcher.join();
  RETURN_IF_ERROR(searcher_loaded_ok);
  RETURN_IF_ERROR(trials);
  const absl::Time searcher_loaded = began + run->searcher_load_time_;
  run->ended_ = {};  // packed already (and its capacity goes)
  Log(LogLevel::kInfo,
      absl::StrCat(
          id, ": loaded ", run->trials_.size(), " trials in ",
          absl::FormatDuration(absl::Trunc(absl::Now() - began, absl::Milliseconds(1))),
          ", its searcher (a checkpoint of ", run->snapshot_bytes_, " bytes and ",
          run->journal_next_ - run->checkpoint_ - 1, " journal entries) in ",
          absl::FormatDuration(absl::Trunc(searcher_loaded - began, absl::Milliseconds(1)))));
  return run;
}

// ---------------------------------------------------------------------------------------
// The searcher's journal and its checkpoints

namespace {
// The searcher state key (s/) names the journal entry of the latest checkpoint.
constexpr absl::string_view kCheckpointAt = "checkpoint ";
// Checkpoints come no closer than this much journal apart.
constexpr int64_t kCheckpointMinBytes = 16 << 10;
}  // namespace

void ExperimentRun::Journal(const std::string& call, const std::string& answer, Change* c) {
  c->touched.insert(id());
  c->batch.PutJournal(id(), journal_next_++, call, answer);
  journal_bytes_ += static_cast<int64_t>(call.size() + answer.size());
  if (journal_bytes_ >= std::max(snapshot_bytes_, kCheckpointMinBytes)) Checkpoint(&c->batch);
}

void ExperimentRun::Checkpoint(Store::Batch* batch) {
  const std::string snapshot = searcher_->Snapshot();
  const int64_t seq = journal_next_++;
  batch->PutJournal(id(), seq, seq == 0 ? "start" : "checkpoint", snapshot);
  batch->PutSearcherState(id(), absl::StrCat(kCheckpointAt, seq));
  // A restart begins at this checkpoint, and `rung admin replay` checks it from the one
  // before: what precedes that one is needed no more.
  if (checkpoint_ > 0) batch->DeleteJournal(id(), checkpoint_);
  checkpoint_ = seq;
  snapshot_bytes_ = static_cast<int64_t>(snapshot.size());
  journal_bytes_ = 0;
}

absl::Status ExperimentRun::LoadSearcher(Store* store) {
  const absl::Time began = absl::Now();
  absl::Cleanup timed = [&] { searcher_load_time_ = absl::Now() - began; };
  auto state = store->GetSearcherState(id());
  if (!state.ok() && !absl::IsNotFound(state.status())) return state.status();
  absl::string_view at = state.ok() ? absl::string_view(*state) : "";
  int64_t from = 0;
  if (absl::ConsumePrefix(&at, kCheckpointAt) && absl::SimpleAtoi(at, &from)) {
    std::vector<Store::JournalRecord> records;
    RETURN_IF_ERROR(store->GetJournal(id(), from, &records));
    if (records.empty() || records[0].seq != from) {
      return absl::DataLossError(
          absl::StrCat(id(), ": the searcher's checkpoint (journal entry ", from, ") is missing"));
    }
    std::vector<search::JournalEntry> entries;
    entries.reserve(records.size());
    for (Store::JournalRecord& r : records) {
      if (&r != &records[0])
        journal_bytes_ += static_cast<int64_t>(r.call.size() + r.answer.size());
      entries.push_back({std::move(r.call), std::move(r.answer)});
    }
    checkpoint_ = from;
    snapshot_bytes_ = static_cast<int64_t>(entries[0].actions.size());
    journal_next_ = records.back().seq + 1;
    int64_t replayed = 0;
    const absl::Status s = search::ReplayInto(searcher_.get(), entries, &replayed);
    if (absl::IsInvalidArgument(s)) return s;
    if (!s.ok()) {
      // The decisions were made and acted on; the searcher goes on from the events as they
      // replayed. Only a build that decides differently from the one that wrote the journal
      // gets here.
      Log(LogLevel::kError, absl::StrCat(id(),
                                         ": the searcher's journal since its checkpoint "
                                         "does not replay identically: ",
                                         s.message()));
    }
    return absl::OkStatus();
  }
  // Stored before checkpoints: the searcher state is its snapshot after every journal entry
  // (none when the experiment was made before either). A checkpoint of it begins the journal
  // anew.
  if (state.ok()) RETURN_IF_ERROR(searcher_->Restore(*state));
  ASSIGN_OR_RETURN(journal_next_, store->JournalEnd(id()));
  Store::Batch batch;
  Checkpoint(&batch);
  return store->Write(&batch, /*durable=*/true);
}

}  // namespace rung
