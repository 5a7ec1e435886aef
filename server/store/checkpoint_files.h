// Checkpoint archives (common/checkpoint_archive.h) under rungd's data folder, next to the
// RocksDB files and not inside them: <root>/<experiment>/<trial>/<attempt>.ckpt, one per trial
// attempt that uploaded. An upload grows <attempt>.part chunk by chunk (so a broken upload
// resumes where it stopped); Commit checks its size and CRC-32C, fsyncs it, renames it into
// place and fsyncs the folder, so an archive rungd has acknowledged survives a power cut.
//
// Which archives are still needed is the Controller's to say (Collect); this class only
// keeps the files and counts them. Thread-safe.
#ifndef RUNG_SERVER_STORE_CHECKPOINT_FILES_H_
#define RUNG_SERVER_STORE_CHECKPOINT_FILES_H_

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace rung {

class CheckpointFiles {
 public:
  // The archives of one trial that must stay, by attempt (a stored checkpoint a trial may
  // resume from, or the upload of an attempt still running); trial id -> attempts.
  using Keep = std::map<std::string, std::set<int>>;

  // Opens (creating) the folder and counts what it holds. `max_bytes`: the largest archive
  // accepted (0: no limit).
  static absl::StatusOr<std::unique_ptr<CheckpointFiles>> Open(const std::string& root,
                                                               int64_t max_bytes);

  const std::string& root() const { return root_; }
  int64_t max_bytes() const { return max_bytes_; }

  // OUT_OF_RANGE naming the limit when an archive of `bytes` is too large.
  absl::Status CheckSize(const std::string& trial_id, int64_t bytes) const;
  // Bytes of the attempt's upload received so far (the stored archive's size once committed).
  int64_t Received(const std::string& experiment_id, const std::string& trial_id, int attempt);
  // Appends `data` at `offset`, which must be where the upload stands (FAILED_PRECONDITION
  // with the right offset otherwise).
  absl::Status Append(const std::string& experiment_id, const std::string& trial_id, int attempt,
                      int64_t offset, absl::string_view data);
  // The upload is whole: DATA_LOSS when its size or CRC-32C is not `bytes` / `crc32c` (the
  // partial file is dropped, the worker uploads again); then durable.
  absl::Status Commit(const std::string& experiment_id, const std::string& trial_id, int attempt,
                      int64_t bytes, uint32_t crc32c);
  // The stored archive's size, NOT_FOUND naming it when there is none.
  absl::StatusOr<int64_t> Size(const std::string& experiment_id, const std::string& trial_id,
                               int attempt) const;
  // Up to `n` bytes of the stored archive from `offset`.
  absl::StatusOr<std::string> Read(const std::string& experiment_id, const std::string& trial_id,
                                   int attempt, int64_t offset, size_t n) const;
  // Removes, in the experiments of `keep` (experiment id -> its Keep), every archive and
  // partial upload that is not kept and was last written before `since`; an experiment not
  // named is left alone.
  void Collect(const std::map<std::string, Keep>& keep, std::filesystem::file_time_type since);

  // For /metrics.
  int64_t bytes_stored() const { return bytes_stored_.load(); }
  int64_t archives() const { return archives_.load(); }

 private:
  CheckpointFiles(std::string root, int64_t max_bytes)
      : root_(std::move(root)), max_bytes_(max_bytes) {}
  std::string Path(const std::string& experiment_id, const std::string& trial_id, int attempt,
                   absl::string_view suffix) const;

  const std::string root_;
  const int64_t max_bytes_;
  absl::Mutex mu_;  // one writer at a time: appends, commits and removals
  std::atomic<int64_t> bytes_stored_{0};
  std::atomic<int64_t> archives_{0};
};

}  // namespace rung

#endif  // RUNG_SERVER_STORE_CHECKPOINT_FILES_H_
