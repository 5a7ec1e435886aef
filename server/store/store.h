// Persistence of rungd's state in RocksDB. Key schema: server/store/README.md.
#ifndef RUNG_SERVER_STORE_STORE_H_
#define RUNG_SERVER_STORE_STORE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
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

  // Opens (creating when missing) the database in `dir`. FAILED_PRECONDITION when another
  // process holds it.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& dir);
  ~Store();

  // Applies `batch` atomically. UNAVAILABLE (with RocksDB's words, e.g. "No space left on
  // device") when it could not be written; nothing of it is then applied. Thread-safe.
  absl::Status Write(Batch* batch);

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
  explicit Store(rocksdb::DB* db);
  absl::Status Scan(const std::string& prefix,
                    const std::function<absl::Status(const std::string&)>& fn);
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace rung

#endif  // RUNG_SERVER_STORE_STORE_H_
