// Persistence of rungd's state in RocksDB. Key schema: server/store/README.md.
#ifndef RUNG_SERVER_STORE_STORE_H_
#define RUNG_SERVER_STORE_STORE_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rung/v1/types.pb.h"

namespace rocksdb {
class DB;
class WriteBatch;
}  // namespace rocksdb

namespace rung {

// Splits "e3-17" into ("e3", 17). False when `trial_id` is not of that form.
bool ParseTrialId(const std::string& trial_id, std::string* experiment_id, int* index);
std::string TrialId(const std::string& experiment_id, int index);

class Store {
 public:
  // A set of writes that land together or not at all.
  class Batch {
   public:
    Batch();
    ~Batch();
    void PutExperiment(const v1::Experiment& e);
    void PutTrial(const v1::Trial& t);
    void PutReport(const v1::MetricReport& r);  // r.trial_id must parse
    void PutSearcherState(const std::string& experiment_id, const std::string& snapshot);
    // Entry `seq` (0, 1, 2, ...) of the experiment's searcher journal
    // (server/search/journal.h): what the searcher was asked and what it answered.
    void PutJournal(const std::string& experiment_id, int64_t seq, const std::string& call,
                    const std::string& answer);
    void PutWorker(const v1::Worker& w);
    void PutNextExperiment(int64_t next);
    int Count() const;

   private:
    friend class Store;
    std::unique_ptr<rocksdb::WriteBatch> wb_;
  };

  // How writes reach the disk (the WAL's fsync) before anything is acknowledged.
  struct Options {
    // True: group commit: a syncer thread fsyncs the WAL for every write made so far at most
    // `group_delay` after the first unsynced one, then reports them durable
    // (SetDurableCallback). Acknowledging only what is durable loses nothing on a power cut,
    // at one fsync per group instead of one per write. False: no syncer; whoever writes
    // calls Sync() (rungd's --wal-sync write: every change fsynced by its own caller).
    bool group_commit = true;
    absl::Duration group_delay = absl::ZeroDuration();
  };

  // Opens (creating when missing) the database in `dir`. FAILED_PRECONDITION when another
  // process holds it.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& dir, Options options);
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& dir) { return Open(dir, Options()); }
  ~Store();

  // Applies `batch` atomically, appending it to the write-ahead log. UNAVAILABLE (with
  // RocksDB's words, e.g. "No space left on device") when it could not be written; nothing of
  // it is then applied. `durable`: fsync before returning; else it is durable after Sync() or
  // the syncer's next fsync. Thread-safe.
  absl::Status Write(Batch* batch, bool durable = false);

  // Makes every write so far durable: fsyncs the write-ahead log now, from the calling
  // thread (under group commit it need not wait for the syncer). Thread-safe.
  absl::Status Sync();
  // Whether a syncer thread makes writes durable (Options::group_commit).
  bool group_commit() const { return options_.group_commit; }

  // Each successful Write has a ticket, 1, 2, ...: the last one's.
  uint64_t LastWrite() const;
  // Every write with a ticket up to this is on disk.
  uint64_t Durable() const;
  // Group commit: `fn` is called from the syncer thread after each fsync with the highest
  // durable ticket, or with the error when the fsync failed. Null stops the calls; it waits
  // for a call in progress to return, so a caller may clear it and then go away.
  void SetDurableCallback(std::function<void(uint64_t durable, const absl::Status& error)> fn);

  // After a failed write (a full disk): clears RocksDB's error state and proves with an
  // fsynced probe write that writes work again.
  absl::Status Recover();

  // Bytes of every file in the data folder. Thread-safe.
  uint64_t SizeOnDisk() const;

  // A consistent copy of the whole database, taken while it serves, in `dir` (which must not
  // exist; on the same filesystem its files are hard links). rungd opens it as a data folder.
  absl::Status Checkpoint(const std::string& dir);

  // Reads; thread-safe.
  absl::StatusOr<int64_t> GetNextExperiment();
  absl::Status ForEachExperiment(const std::function<void(v1::Experiment)>& fn);
  absl::Status ForEachTrial(const std::string& experiment_id,
                            const std::function<void(v1::Trial)>& fn);
  absl::Status ForEachWorker(const std::function<void(v1::Worker)>& fn);
  // Every report of the trial, all attempts, in (attempt, seq) order.
  absl::StatusOr<std::vector<v1::MetricReport>> GetReports(const std::string& trial_id);
  // NOT_FOUND when the experiment has none.
  absl::StatusOr<std::string> GetSearcherState(const std::string& experiment_id);
  // The experiment's searcher journal in order, as (call, answer) pairs, and the searcher
  // snapshot written with its last entry, read at one moment.
  absl::Status GetJournal(const std::string& experiment_id,
                          std::vector<std::pair<std::string, std::string>>* entries, std::string* snapshot);
  // The seq the experiment's next journal entry takes: 0 when it has none.
  absl::StatusOr<int64_t> JournalEnd(const std::string& experiment_id);

 private:
  Store(rocksdb::DB* db, std::string dir, Options options);
  absl::Status Scan(const std::string& prefix,
                    const std::function<absl::Status(const std::string&)>& fn);
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

}  // namespace rung

#endif  // RUNG_SERVER_STORE_STORE_H_
