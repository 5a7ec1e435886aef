#include "server/store/store.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/status.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/utilities/checkpoint.h"
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

// RocksDB's own log goes to rungd's log (warnings and errors only) rather than to a LOG file
// in the data folder: a full disk must not take down the process that reports it (RocksDB
// asserts when its LOG file cannot be written).
class RocksLogger : public rocksdb::Logger {
 public:
  RocksLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::WARN_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char buf[1024];
    vsnprintf(buf, sizeof(buf), format, ap);
    for (size_t n = strlen(buf); n > 0 && buf[n - 1] == '\n'; --n) buf[n - 1] = '\0';
    Log(level >= rocksdb::InfoLogLevel::ERROR_LEVEL ? LogLevel::kError : LogLevel::kWarning,
        absl::StrCat("rocksdb: ", buf));
  }
};

absl::Status Closed() {
  return absl::UnavailableError(
      "store: the database is closed while rungd recovers from a failed write");
}

std::string JournalPrefix(const std::string& exp) { return absl::StrCat("j/", exp, "/"); }

std::string JournalKey(const std::string& exp, int64_t seq) {
  return absl::StrFormat("%s%012d", JournalPrefix(exp), seq);
}

std::string TrialKey(const std::string& exp, int index) {
  return absl::StrFormat("t/%s/%08d", exp, index);
}

template <typename Msg>
absl::Status ParseValue(absl::string_view value, absl::string_view what, Msg* msg) {
  if (!msg->ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(absl::StrCat("store: unreadable ", what, " record"));
  }
  return absl::OkStatus();
}

}  // namespace

// The Store on RocksDB.
class RocksStore final : public Store {
 public:
  RocksStore(rocksdb::DB* db, std::string dir, Options options);
  ~RocksStore() override;

  absl::Status Write(Batch* batch, bool durable) override;
  absl::Status Sync() override;
  bool group_commit() const override { return options_.group_commit; }
  uint64_t LastWrite() const override;
  uint64_t Durable() const override;
  void SetDurableCallback(
      std::function<void(uint64_t durable, const absl::Status& error)> fn) override;
  absl::StatusOr<Space> FreeSpace() const override;
  absl::Status Recover() override;
  uint64_t SizeOnDisk() const override;
  absl::Status Checkpoint(const std::string& dir) override;
  absl::StatusOr<int64_t> GetNextExperiment() override;
  absl::Status ForEachExperiment(const std::function<void(v1::Experiment)>& fn) override;
  absl::Status ForEachTrial(const std::string& experiment_id,
                            const std::function<void(v1::Trial)>& fn) override;
  absl::Status ForEachTrialRecord(
      const std::string& experiment_id,
      const std::function<absl::Status(absl::string_view)>& fn) override;
  absl::Status ForEachWorker(const std::function<void(v1::Worker)>& fn) override;
  absl::StatusOr<std::vector<v1::MetricReport>> GetReports(const std::string& trial_id) override;
  absl::Status ForEachReport(
      const std::string& experiment_id,
      const std::function<absl::Status(const v1::MetricReport&)>& fn) override;
  absl::StatusOr<std::string> GetSearcherState(const std::string& experiment_id) override;
  absl::Status GetJournal(const std::string& experiment_id, int64_t from,
                          std::vector<JournalRecord>* entries) override;
  absl::StatusOr<int64_t> JournalEnd(const std::string& experiment_id) override;

 private:
  absl::Status Scan(const std::string& prefix,
                    const std::function<absl::Status(absl::string_view)>& fn);
  void SyncLoop();

  // Shared by every use of db_, exclusive while Recover() opens it again.
  absl::Mutex db_mu_;
  std::unique_ptr<rocksdb::DB> db_ ABSL_GUARDED_BY(db_mu_);
  const std::string dir_;
  const Options options_;
  mutable absl::Mutex mu_;
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t synced_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time first_unsynced_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // A write failed: RocksDB must not be asked to fsync until Recover() succeeded.
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex callback_mu_;
  std::function<void(uint64_t, const absl::Status&)> callback_ ABSL_GUARDED_BY(callback_mu_);
  std::thread syncer_;
};

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
void Store::Batch::PutSearcherState(const std::string& experiment_id, const std::string& snapshot) {
  wb_->Put("s/" + experiment_id, snapshot);
}
void Store::Batch::PutJournal(const std::string& experiment_id, int64_t seq,
                              const std::string& call, const std::string& answer) {
  wb_->Put(JournalKey(experiment_id, seq), absl::StrCat(call, "\n", answer));
}
void Store::Batch::DeleteJournal(const std::string& experiment_id, int64_t seq) {
  wb_->DeleteRange(JournalKey(experiment_id, 0), JournalKey(experiment_id, seq));
}
void Store::Batch::PutWorker(const v1::Worker& w) {
  wb_->Put("w/" + w.id(), w.SerializeAsString());
}
void Store::Batch::PutNextExperiment(int64_t next) {
  wb_->Put("meta/next_experiment", absl::StrCat(next));
}
int Store::Batch::Count() const { return static_cast<int>(wb_->Count()); }
size_t Store::Batch::Bytes() const { return wb_->GetDataSize(); }
void Store::Batch::Clear() { wb_->Clear(); }

static absl::StatusOr<rocksdb::DB*> OpenDb(const std::string& dir) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.IncreaseParallelism(2);
  // A 64 MiB memtable budget (16 MiB write buffers): rung's records are small, and a smaller
  // write-ahead log is less to replay after a crash and less to find room for after a full disk.
  options.OptimizeLevelStyleCompaction(64 << 20);
  options.info_log = std::make_shared<RocksLogger>();
  // No preallocation: a full disk shows at the next write, not tens of megabytes later when
  // a preallocated WAL runs out.
  options.allow_fallocate = false;
  // A restart after a crash replays the write-ahead log into memtables and serves; the tables
  // are written in the background later, not before rungd answers (seconds at 100 MB of log).
  options.avoid_flush_during_recovery = true;
  // Compactions run niced: what rungd answers and acknowledges (and its start after a crash,
  // which may find compactions to finish) comes first on a small machine.
  options.env->LowerThreadPoolCPUPriority(rocksdb::Env::Priority::LOW);
  rocksdb::DB* db = nullptr;
  RETURN_IF_ERROR(
      FromRocks(rocksdb::DB::Open(options, dir, &db), absl::StrCat("store: opening ", dir)));
  return db;
}

RocksStore::RocksStore(rocksdb::DB* db, std::string dir, Options options)
    : db_(db), dir_(std::move(dir)), options_(options) {
  if (options_.group_commit) syncer_ = std::thread([this] { SyncLoop(); });
}

RocksStore::~RocksStore() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (syncer_.joinable()) syncer_.join();
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& dir, Options store_options) {
  ASSIGN_OR_RETURN(rocksdb::DB * db, OpenDb(dir));
  auto store = std::make_unique<RocksStore>(db, dir, store_options);
  if (auto space = store->FreeSpace(); space.ok() && space->volume < kMinDataVolume) {
    Log(LogLevel::kWarning,
        absl::StrCat("the volume of ", dir, " holds ", Mebibytes(space->volume),
                     "; rungd needs at least ", Mebibytes(kMinDataVolume),
                     " for its write-ahead log, tables and compactions, and may refuse "
                     "changes for lack of room (it resumes once ",
                     Mebibytes(space->resume), " are free)"));
  }
  return std::unique_ptr<Store>(std::move(store));
}

absl::Status RocksStore::Write(Batch* batch, bool durable) {
  rocksdb::WriteOptions wo;
  wo.sync = durable;
  absl::ReaderMutexLock open(&db_mu_);
  // One writer at a time, so that tickets follow the WAL's order.
  absl::MutexLock l(&mu_);
  if (failed_ || db_ == nullptr)
    return absl::UnavailableError("store: an earlier write failed and the store has not recovered");
  absl::Status s = FromRocks(db_->Write(wo, Rep(batch)), "store: write");
  if (!s.ok()) {
    failed_ = true;
    return s;
  }
  ++written_;
  if (wo.sync) {
    synced_ = written_;  // the WAL is sequential: this fsync covered every earlier write
  } else if (synced_ + 1 == written_) {
    first_unsynced_ = absl::Now();
  }
  return absl::OkStatus();
}

absl::Status RocksStore::Sync() {
  uint64_t upto;
  {
    absl::MutexLock l(&mu_);
    if (failed_)
      return absl::UnavailableError(
          "store: an earlier write failed and the store has not recovered");
    upto = written_;
    if (synced_ >= upto) return absl::OkStatus();
  }
  absl::Status s;
  {
    absl::ReaderMutexLock open(&db_mu_);
    s = db_ == nullptr ? Closed()
                       : FromRocks(db_->SyncWAL(), "store: fsync of the write-ahead log");
  }
  absl::MutexLock l(&mu_);
  if (!s.ok()) {
    failed_ = true;
    return s;
  }
  synced_ = std::max(synced_, upto);
  return absl::OkStatus();
}

uint64_t RocksStore::LastWrite() const {
  absl::MutexLock l(&mu_);
  return written_;
}

uint64_t RocksStore::Durable() const {
  absl::MutexLock l(&mu_);
  return synced_;
}

void RocksStore::SetDurableCallback(std::function<void(uint64_t, const absl::Status&)> fn) {
  absl::MutexLock l(&callback_mu_);
  callback_ = std::move(fn);
}

void RocksStore::SyncLoop() {
  for (;;) {
    uint64_t upto;
    {
      absl::MutexLock l(&mu_);
      auto due = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || (written_ > synced_ && !failed_);
      };
      mu_.Await(absl::Condition(&due));
      if (stopping_) return;
      const absl::Time at = first_unsynced_ + options_.group_delay;
      // Gather the group; a stop cuts the wait short.
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithDeadline(absl::Condition(&stop), at)) return;
      if (failed_) continue;
      upto = written_;
    }
    // Outside mu_: writes go on while the fsync runs, and make up the next group.
    absl::Status s;
    {
      absl::ReaderMutexLock open(&db_mu_);
      s = db_ == nullptr ? absl::UnavailableError("store: closed")
                         : FromRocks(db_->SyncWAL(), "store: fsync of the write-ahead log");
    }
    uint64_t durable;
    {
      absl::MutexLock l(&mu_);
      if (s.ok()) synced_ = std::max(synced_, upto);
      durable = synced_;
      failed_ = failed_ || !s.ok();
    }
    absl::MutexLock l(&callback_mu_);
    if (callback_) callback_(durable, s);
  }
}

std::string Mebibytes(uint64_t bytes) {
  return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
}

absl::StatusOr<Store::Space> RocksStore::FreeSpace() const {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::space_info info = fs::space(dir_, ec);
  if (ec)
    return absl::UnavailableError(absl::StrCat("store: free space of ", dir_, ": ", ec.message()));
  Space out;
  out.volume = info.capacity;
  out.free = info.available;
  // What RocksDB writes when it opens: its log replayed into a table, a new manifest, a new log.
  uint64_t reopen = 1 << 20;
  for (const auto& f : fs::directory_iterator(dir_, ec)) {
    const std::string name = f.path().filename().string();
    std::error_code size_ec;
    const uintmax_t size = f.is_regular_file(size_ec) ? f.file_size(size_ec) : 0;
    if (size_ec) continue;
    if (absl::EndsWith(name, ".log") || absl::StartsWith(name, "MANIFEST-")) reopen += size;
  }
  const uint64_t margin = std::clamp<uint64_t>(out.volume / 100, 1 << 20, 64 << 20);
  out.resume = reopen + margin;
  return out;
}

absl::Status RocksStore::Recover() {
  // RocksDB (7.8) cannot append to a WAL after a failed append, even once Resume() has
  // succeeded: close the database and open it again, which replays everything that reached
  // the WAL. Nothing reads or writes meanwhile. While there is too little room to open it
  // again, keep the open database for reads.
  ASSIGN_OR_RETURN(const Space space, FreeSpace());
  if (space.free < space.resume) {
    return absl::ResourceExhaustedError(
        absl::StrCat("store: ", Mebibytes(space.free), " free in ", dir_, "; rungd resumes once ",
                     Mebibytes(space.resume),
                     " are free (what RocksDB writes to open the database again, and 1% of the ",
                     Mebibytes(space.volume), " volume)"));
  }
  // Exclusive use of the database (writers and readers wait), but not of mu_: LastWrite()
  // and Durable() answer meanwhile, without waiting for the reopen.
  absl::WriterMutexLock open(&db_mu_);
  if (db_ != nullptr) {
    db_->Close().PermitUncheckedError();
    db_.reset();
  }
  ASSIGN_OR_RETURN(rocksdb::DB * db, OpenDb(dir_));
  db_.reset(db);
  rocksdb::WriteBatch probe;
  probe.Put("meta/probe", absl::StrCat(absl::ToUnixMillis(absl::Now())));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  RETURN_IF_ERROR(FromRocks(db_->Write(wo, &probe), "store: probe write"));
  absl::MutexLock l(&mu_);
  failed_ = false;
  synced_ = written_;  // the reopened WAL is on disk
  return absl::OkStatus();
}

uint64_t RocksStore::SizeOnDisk() const {
  uint64_t bytes = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir_, ec);
       !ec && it != std::filesystem::end(it); it.increment(ec)) {
    std::error_code size_ec;
    const uintmax_t n = it->is_regular_file(size_ec) ? it->file_size(size_ec) : 0;
    if (!size_ec) bytes += n;
  }
  return bytes;
}

absl::Status RocksStore::Checkpoint(const std::string& dir) {
  absl::ReaderMutexLock open(&db_mu_);
  if (db_ == nullptr) return Closed();
  rocksdb::Checkpoint* raw = nullptr;
  RETURN_IF_ERROR(FromRocks(rocksdb::Checkpoint::Create(db_.get(), &raw), "store: checkpoint"));
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  // log_size_for_flush 0: flush the memtable first, so the copy needs no WAL replay.
  return FromRocks(checkpoint->CreateCheckpoint(dir, 0),
                   absl::StrCat("store: checkpoint to ", dir));
}

absl::StatusOr<int64_t> RocksStore::GetNextExperiment() {
  absl::ReaderMutexLock open(&db_mu_);
  if (db_ == nullptr) return Closed();
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), "meta/next_experiment", &v);
  if (s.IsNotFound()) return 1;
  RETURN_IF_ERROR(FromRocks(s, "store: meta/next_experiment"));
  int64_t n;
  if (!absl::SimpleAtoi(v, &n))
    return absl::DataLossError("store: unreadable meta/next_experiment");
  return n;
}

absl::Status RocksStore::Scan(const std::string& prefix,
                              const std::function<absl::Status(absl::string_view)>& fn) {
  absl::ReaderMutexLock open(&db_mu_);
  if (db_ == nullptr) return Closed();
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;  // a scan reads each block once: it would only push out what is hot
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    RETURN_IF_ERROR(fn(absl::string_view(it->value().data(), it->value().size())));
  }
  return FromRocks(it->status(), absl::StrCat("store: scanning ", prefix));
}

absl::Status RocksStore::ForEachExperiment(const std::function<void(v1::Experiment)>& fn) {
  return Scan("e/", [&](absl::string_view v) {
    v1::Experiment e;
    RETURN_IF_ERROR(ParseValue(v, "experiment", &e));
    fn(std::move(e));
    return absl::OkStatus();
  });
}

absl::Status RocksStore::ForEachTrial(const std::string& experiment_id,
                                      const std::function<void(v1::Trial)>& fn) {
  return Scan(absl::StrCat("t/", experiment_id, "/"), [&](absl::string_view v) {
    v1::Trial t;
    RETURN_IF_ERROR(ParseValue(v, "trial", &t));
    fn(std::move(t));
    return absl::OkStatus();
  });
}

absl::Status RocksStore::ForEachTrialRecord(
    const std::string& experiment_id, const std::function<absl::Status(absl::string_view)>& fn) {
  return Scan(absl::StrCat("t/", experiment_id, "/"), fn);
}

absl::Status RocksStore::ForEachWorker(const std::function<void(v1::Worker)>& fn) {
  return Scan("w/", [&](absl::string_view v) {
    v1::Worker w;
    RETURN_IF_ERROR(ParseValue(v, "worker", &w));
    fn(std::move(w));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<v1::MetricReport>> RocksStore::GetReports(const std::string& trial_id) {
  std::string exp;
  int index;
  if (!ParseTrialId(trial_id, &exp, &index)) {
    return absl::InvalidArgumentError(absl::StrCat("'", trial_id, "' is not a trial id"));
  }
  std::vector<v1::MetricReport> out;
  RETURN_IF_ERROR(Scan(absl::StrFormat("m/%s/%08d/", exp, index), [&](absl::string_view v) {
    v1::MetricReport r;
    RETURN_IF_ERROR(ParseValue(v, "metric report", &r));
    out.push_back(std::move(r));
    return absl::OkStatus();
  }));
  return out;
}

absl::Status RocksStore::ForEachReport(
    const std::string& experiment_id,
    const std::function<absl::Status(const v1::MetricReport&)>& fn) {
  v1::MetricReport r;
  return Scan(absl::StrCat("m/", experiment_id, "/"), [&](absl::string_view v) {
    RETURN_IF_ERROR(ParseValue(v, "metric report", &r));
    return fn(r);
  });
}

absl::StatusOr<std::string> RocksStore::GetSearcherState(const std::string& experiment_id) {
  absl::ReaderMutexLock open(&db_mu_);
  if (db_ == nullptr) return Closed();
  std::string v;
  RETURN_IF_ERROR(FromRocks(db_->Get(rocksdb::ReadOptions(), "s/" + experiment_id, &v),
                            absl::StrCat("store: searcher state of ", experiment_id)));
  return v;
}

absl::Status RocksStore::GetJournal(const std::string& experiment_id, int64_t from,
                                    std::vector<JournalRecord>* entries) {
  absl::ReaderMutexLock open(&db_mu_);
  if (db_ == nullptr) return Closed();
  const std::string prefix = JournalPrefix(experiment_id);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  absl::Status s;
  for (it->Seek(JournalKey(experiment_id, from)); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    const rocksdb::Slice v = it->value();
    const char* nl = static_cast<const char*>(memchr(v.data(), '\n', v.size()));
    JournalRecord r;
    if (nl == nullptr || !absl::SimpleAtoi(absl::string_view(it->key().data() + prefix.size(),
                                                             it->key().size() - prefix.size()),
                                           &r.seq)) {
      return absl::DataLossError(
          absl::StrCat("store: unreadable journal entry ", it->key().ToString()));
    }
    r.call.assign(v.data(), nl);
    r.answer.assign(nl + 1, v.data() + v.size());
    entries->push_back(std::move(r));
  }
  return FromRocks(it->status(), absl::StrCat("store: journal of ", experiment_id));
}

absl::StatusOr<int64_t> RocksStore::JournalEnd(const std::string& experiment_id) {
  absl::ReaderMutexLock open(&db_mu_);
  if (db_ == nullptr) return Closed();
  const std::string prefix = JournalPrefix(experiment_id);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  it->SeekForPrev(prefix + "~");  // past every digit
  if (it->Valid() && it->key().starts_with(prefix)) {
    int64_t seq;
    if (!absl::SimpleAtoi(it->key().ToString().substr(prefix.size()), &seq)) {
      return absl::DataLossError(
          absl::StrCat("store: unreadable journal key ", it->key().ToString()));
    }
    return seq + 1;
  }
  RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("store: journal of ", experiment_id)));
  return 0;
}

}  // namespace rung
