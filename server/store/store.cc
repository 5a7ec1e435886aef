#include "server/store/store.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"

namespace rung {
namespace {

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat(what, ": not found"));
  if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": ", s.ToString(), " (is another rungd using this data folder?)"));
  }
  return absl::UnavailableError(absl::StrCat(what, ": ", s.ToString()));
}

std::string JournalPrefix(const std::string& exp) { return absl::StrCat("j/", exp, "/"); }

std::string TrialKey(const std::string& exp, int index) {
  return absl::StrFormat("t/%s/%08d", exp, index);
}

template <typename Msg>
absl::Status ParseValue(const std::string& value, absl::string_view what, Msg* msg) {
  if (!msg->ParseFromString(value)) {
    return absl::DataLossError(absl::StrCat("store: unreadable ", what, " record"));
  }
  return absl::OkStatus();
}

}  // namespace

bool ParseTrialId(const std::string& trial_id, std::string* experiment_id, int* index) {
  size_t dash = trial_id.rfind('-');
  if (dash == std::string::npos || dash == 0) return false;
  int i;
  if (!absl::SimpleAtoi(trial_id.substr(dash + 1), &i) || i < 0) return false;
  *experiment_id = trial_id.substr(0, dash);
  *index = i;
  return true;
}

std::string TrialId(const std::string& experiment_id, int index) {
  return absl::StrCat(experiment_id, "-", index);
}

Store::Batch::Batch() : wb_(std::make_unique<rocksdb::WriteBatch>()) {}
Store::Batch::~Batch() = default;

void Store::Batch::PutExperiment(const v1::Experiment& e) {
  wb_->Put("e/" + e.id(), e.SerializeAsString());
}
void Store::Batch::PutTrial(const v1::Trial& t) {
  wb_->Put(TrialKey(t.experiment_id(), t.index()), t.SerializeAsString());
}
void Store::Batch::PutReport(const v1::MetricReport& r) {
  std::string exp;
  int index = 0;
  ParseTrialId(r.trial_id(), &exp, &index);
  wb_->Put(absl::StrFormat("m/%s/%08d/%04d/%010d", exp, index, r.attempt(), r.seq()),
           r.SerializeAsString());
}
void Store::Batch::PutSearcherState(const std::string& experiment_id,
                                    const std::string& snapshot) {
  wb_->Put("s/" + experiment_id, snapshot);
}
void Store::Batch::PutJournal(const std::string& experiment_id, int64_t seq, const std::string& call,
                              const std::string& answer) {
  wb_->Put(absl::StrFormat("%s%012d", JournalPrefix(experiment_id), seq), absl::StrCat(call, "\n", answer));
}
void Store::Batch::PutWorker(const v1::Worker& w) { wb_->Put("w/" + w.id(), w.SerializeAsString()); }
void Store::Batch::PutNextExperiment(int64_t next) {
  wb_->Put("meta/next_experiment", absl::StrCat(next));
}
int Store::Batch::Count() const { return static_cast<int>(wb_->Count()); }

Store::Store(rocksdb::DB* db) : db_(db) {}
Store::~Store() = default;

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& dir) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.IncreaseParallelism(2);
  options.OptimizeLevelStyleCompaction();
  options.keep_log_file_num = 5;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &db);
  RETURN_IF_ERROR(FromRocks(s, absl::StrCat("store: opening ", dir)));
  return std::unique_ptr<Store>(new Store(db));
}

absl::Status Store::Write(Batch* batch) {
  rocksdb::WriteOptions wo;
  wo.sync = false;
  return FromRocks(db_->Write(wo, batch->wb_.get()), "store: write");
}

absl::StatusOr<int64_t> Store::GetNextExperiment() {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), "meta/next_experiment", &v);
  if (s.IsNotFound()) return 1;
  RETURN_IF_ERROR(FromRocks(s, "store: meta/next_experiment"));
  int64_t n;
  if (!absl::SimpleAtoi(v, &n)) return absl::DataLossError("store: unreadable meta/next_experiment");
  return n;
}

absl::Status Store::Scan(const std::string& prefix,
                         const std::function<absl::Status(const std::string&)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    RETURN_IF_ERROR(fn(it->value().ToString()));
  }
  return FromRocks(it->status(), absl::StrCat("store: scanning ", prefix));
}

absl::Status Store::ForEachExperiment(const std::function<void(v1::Experiment)>& fn) {
  return Scan("e/", [&](const std::string& v) {
    v1::Experiment e;
    RETURN_IF_ERROR(ParseValue(v, "experiment", &e));
    fn(std::move(e));
    return absl::OkStatus();
  });
}

absl::Status Store::ForEachTrial(const std::string& experiment_id,
                                 const std::function<void(v1::Trial)>& fn) {
  return Scan(absl::StrCat("t/", experiment_id, "/"), [&](const std::string& v) {
    v1::Trial t;
    RETURN_IF_ERROR(ParseValue(v, "trial", &t));
    fn(std::move(t));
    return absl::OkStatus();
  });
}

absl::Status Store::ForEachWorker(const std::function<void(v1::Worker)>& fn) {
  return Scan("w/", [&](const std::string& v) {
    v1::Worker w;
    RETURN_IF_ERROR(ParseValue(v, "worker", &w));
    fn(std::move(w));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<v1::MetricReport>> Store::GetReports(const std::string& trial_id) {
  std::string exp;
  int index;
  if (!ParseTrialId(trial_id, &exp, &index)) {
    return absl::InvalidArgumentError(absl::StrCat("'", trial_id, "' is not a trial id"));
  }
  std::vector<v1::MetricReport> out;
  RETURN_IF_ERROR(Scan(absl::StrFormat("m/%s/%08d/", exp, index), [&](const std::string& v) {
    v1::MetricReport r;
    RETURN_IF_ERROR(ParseValue(v, "metric report", &r));
    out.push_back(std::move(r));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::string> Store::GetSearcherState(const std::string& experiment_id) {
  std::string v;
  RETURN_IF_ERROR(FromRocks(db_->Get(rocksdb::ReadOptions(), "s/" + experiment_id, &v),
                            absl::StrCat("store: searcher state of ", experiment_id)));
  return v;
}

absl::Status Store::GetJournal(const std::string& experiment_id,
                              std::vector<std::pair<std::string, std::string>>* entries, std::string* snapshot) {
  const rocksdb::Snapshot* at = db_->GetSnapshot();
  rocksdb::ReadOptions ro;
  ro.snapshot = at;
  absl::Status s = FromRocks(db_->Get(ro, "s/" + experiment_id, snapshot),
                             absl::StrCat("store: searcher state of ", experiment_id));
  const std::string prefix = JournalPrefix(experiment_id);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(prefix); s.ok() && it->Valid() && it->key().starts_with(prefix); it->Next()) {
    const std::string v = it->value().ToString();
    const size_t nl = v.find('\n');
    if (nl == std::string::npos) {
      s = absl::DataLossError(absl::StrCat("store: unreadable journal entry ", it->key().ToString()));
    } else {
      entries->emplace_back(v.substr(0, nl), v.substr(nl + 1));
    }
  }
  if (s.ok()) s = FromRocks(it->status(), absl::StrCat("store: journal of ", experiment_id));
  it.reset();
  db_->ReleaseSnapshot(at);
  return s;
}

absl::StatusOr<int64_t> Store::JournalEnd(const std::string& experiment_id) {
  const std::string prefix = JournalPrefix(experiment_id);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  it->SeekForPrev(prefix + "~");  // past every digit
  if (it->Valid() && it->key().starts_with(prefix)) {
    int64_t seq;
    if (!absl::SimpleAtoi(it->key().ToString().substr(prefix.size()), &seq)) {
      return absl::DataLossError(absl::StrCat("store: unreadable journal key ", it->key().ToString()));
    }
    return seq + 1;
  }
  RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("store: journal of ", experiment_id)));
  return 0;
}

}  // namespace rung
