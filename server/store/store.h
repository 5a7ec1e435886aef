// Persistence of rungd's state in RocksDB. Key schema: server/store/README.md.
#ifndef RUNG_SERVER_STORE_STORE_H_
#define RUNG_SERVER_STORE_STORE_H_

#include <functional>
#include <memory>
#include <string>
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

// A volume smaller than this cannot hold what rungd keeps while it runs: up to 96 MiB of
// write-ahead log (six 16 MiB memtables), the tables they become, and room to compact them.
constexpr uint64_t kMinDataVolume = 256ull << 20;

// "12.5 MiB": bytes as people read them.
std::string Mebibytes(uint64_t bytes);

// Splits "e3-17" into ("e3", 17). False when `trial_id` is not of that form.
bool ParseTrialId(const std::string& trial_id, std::string* experiment_id, int* index);
std::string TrialId(const std::string& experiment_id, int index);

// rungd's persistent state: an interface, so that tests can wrap the real, RocksDB-backed
// store (Store::Open) and fail what they need to.
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
    // Removes the experiment's journal entries before `seq` (a checkpoint has made them
    // unnecessary).
    void DeleteJournal(const std::string& experiment_id, int64_t seq);
    void PutWorker(const v1::Worker& w);
    void PutNextExperiment(int64_t next);
    int Count() const;
    size_t Bytes() const;  // of everything put so far, keys and values
    void Clear();

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

  // Opens (creating when missing) the RocksDB database in `dir`. FAILED_PRECONDITION when
  // another process holds it.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& dir, Options options);
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& dir) {
    return Open(dir, Options());
  }
  virtual ~Store() = default;

  // Applies `batch` atomically, appending it to the write-ahead log. UNAVAILABLE (with
  // RocksDB's words, e.g. "No space left on device") when it could not be written; nothing of
  // it is then applied. `durable`: fsync before returning; else it is durable after Sync() or
  // the syncer's next fsync. Thread-safe.
  virtual absl::Status Write(Batch* batch, bool durable = false) = 0;
  // Makes every write so far durable: fsyncs the write-ahead log now, from the calling
  // thread (under group commit it need not wait for the syncer). Thread-safe.
  virtual absl::Status Sync() = 0;
  // Whether a syncer thread makes writes durable (Options::group_commit).
  virtual bool group_commit() const = 0;

  // Each successful Write has a ticket, 1, 2, ...: the last one's.
  virtual uint64_t LastWrite() const = 0;
  // Every write with a ticket up to this is on disk.
  virtual uint64_t Durable() const = 0;
  // Group commit: `fn` is called from the syncer thread after each fsync with the highest
  // durable ticket, or with the error when the fsync failed. Null stops the calls; it waits
  // for a call in progress to return, so a caller may clear it and then go away.
  virtual void SetDurableCallback(
      std::function<void(uint64_t durable, const absl::Status& error)> fn) = 0;

  // Room on the data folder's volume, in bytes.
  struct Space {
    uint64_t volume = 0;  // the volume's size
    uint64_t free = 0;    // available to rungd now
    // What rungd needs free before it opens the database again after a failed write:
    // RocksDB's own reserve (it replays its write-ahead log into a table and writes a new
    // manifest when it opens: as much as both take now, and a MiB more) and a margin of 1% of
    // the volume (at least 1 MiB, at most 64 MiB), so that it does not fill the disk again at once.
    uint64_t resume = 0;
  };
  virtual absl::StatusOr<Space> FreeSpace() const = 0;

  // After a failed write (a full disk): once FreeSpace().resume bytes are free, opens the
  // database again and proves with an fsynced probe write that writes work again.
  // RESOURCE_EXHAUSTED saying both figures while there is less room.
  virtual absl::Status Recover() = 0;

  // Bytes of every file in the data folder. Thread-safe.
  virtual uint64_t SizeOnDisk() const = 0;

  // A consistent copy of the whole database, taken while it serves, in `dir` (which must not
  // exist; on the same filesystem its files are hard links). rungd opens it as a data folder.
  virtual absl::Status Checkpoint(const std::string& dir) = 0;

  // Reads; thread-safe.
  virtual absl::StatusOr<int64_t> GetNextExperiment() = 0;
  virtual absl::Status ForEachExperiment(const std::function<void(v1::Experiment)>& fn) = 0;
  virtual absl::Status ForEachTrial(const std::string& experiment_id,
                                    const std::function<void(v1::Trial)>& fn) = 0;
  // Each of the experiment's trial records (a serialized Trial) in index order, unparsed;
  // stops at fn's first error.
  virtual absl::Status ForEachTrialRecord(
      const std::string& experiment_id,
      const std::function<absl::Status(absl::string_view)>& fn) = 0;
  virtual absl::Status ForEachWorker(const std::function<void(v1::Worker)>& fn) = 0;
  // Every report of the trial, all attempts, in (attempt, seq) order.
  virtual absl::StatusOr<std::vector<v1::MetricReport>> GetReports(const std::string& trial_id) = 0;
  // Every report of the experiment's trials, in (trial index, attempt, seq) order; stops at
  // fn's first error.
  virtual absl::Status ForEachReport(
      const std::string& experiment_id,
      const std::function<absl::Status(const v1::MetricReport&)>& fn) = 0;
  // NOT_FOUND when the experiment has none.
  virtual absl::StatusOr<std::string> GetSearcherState(const std::string& experiment_id) = 0;
  // The experiment's searcher journal from entry `from` on, in order, read at one moment.
  struct JournalRecord {
    int64_t seq = 0;
    std::string call;
    std::string answer;
  };
  virtual absl::Status GetJournal(const std::string& experiment_id, int64_t from,
                                  std::vector<JournalRecord>* entries) = 0;
  // The seq the experiment's next journal entry takes: 0 when it has none.
  virtual absl::StatusOr<int64_t> JournalEnd(const std::string& experiment_id) = 0;

 protected:
  static rocksdb::WriteBatch* Rep(Batch* b) { return b->wb_.get(); }
};

// A Store that forwards every call to another: tests derive from it and override only what
// they fake (leveldb's EnvWrapper).
class StoreWrapper : public Store {
 public:
  explicit StoreWrapper(Store* target) : target_(target) {}
  absl::Status Write(Batch* batch, bool durable = false) override {
    return target_->Write(batch, durable);
  }
  absl::Status Sync() override { return target_->Sync(); }
  bool group_commit() const override { return target_->group_commit(); }
  uint64_t LastWrite() const override { return target_->LastWrite(); }
  uint64_t Durable() const override { return target_->Durable(); }
  void SetDurableCallback(std::function<void(uint64_t, const absl::Status&)> fn) override {
    target_->SetDurableCallback(std::move(fn));
  }
  absl::StatusOr<Space> FreeSpace() const override { return target_->FreeSpace(); }
  absl::Status Recover() override { return target_->Recover(); }
  uint64_t SizeOnDisk() const override { return target_->SizeOnDisk(); }
  absl::Status Checkpoint(const std::string& dir) override { return target_->Checkpoint(dir); }
  absl::StatusOr<int64_t> GetNextExperiment() override { return target_->GetNextExperiment(); }
  absl::Status ForEachExperiment(const std::function<void(v1::Experiment)>& fn) override {
    return target_->ForEachExperiment(fn);
  }
  absl::Status ForEachTrial(const std::string& experiment_id,
                            const std::function<void(v1::Trial)>& fn) override {
    return target_->ForEachTrial(experiment_id, fn);
  }
  absl::Status ForEachTrialRecord(
      const std::string& experiment_id,
      const std::function<absl::Status(absl::string_view)>& fn) override {
    return target_->ForEachTrialRecord(experiment_id, fn);
  }
  absl::Status ForEachWorker(const std::function<void(v1::Worker)>& fn) override {
    return target_->ForEachWorker(fn);
  }
  absl::StatusOr<std::vector<v1::MetricReport>> GetReports(const std::string& trial_id) override {
    return target_->GetReports(trial_id);
  }
  absl::Status ForEachReport(
      const std::string& experiment_id,
      const std::function<absl::Status(const v1::MetricReport&)>& fn) override {
    return target_->ForEachReport(experiment_id, fn);
  }
  absl::StatusOr<std::string> GetSearcherState(const std::string& experiment_id) override {
    return target_->GetSearcherState(experiment_id);
  }
  absl::Status GetJournal(const std::string& experiment_id, int64_t from,
                          std::vector<JournalRecord>* entries) override {
    return target_->GetJournal(experiment_id, from, entries);
  }
  absl::StatusOr<int64_t> JournalEnd(const std::string& experiment_id) override {
    return target_->JournalEnd(experiment_id);
  }

 private:
  Store* const target_;
};

}  // namespace rung

#endif  // RUNG_SERVER_STORE_STORE_H_
