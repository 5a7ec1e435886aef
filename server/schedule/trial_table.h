// An experiment's trials by index (1, 2, ...), as ExperimentRun keeps them.
//
// A trial that has ended is kept packed: its record as the store has it (a few hundred bytes)
// and the few figures ranking reads, rather than as a message (kilobytes of maps, strings and
// their allocations). Ended trials are read rarely and changed almost never, so a million of
// them take about what their records take on disk. Get() unpacks one for a change; it stays a
// message until Pack() is called for it again.
#ifndef RUNG_SERVER_SCHEDULE_TRIAL_TABLE_H_
#define RUNG_SERVER_SCHEDULE_TRIAL_TABLE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "rung/v1/types.pb.h"

namespace rung {

class TrialTable {
 public:
  // What ranking reads of a trial, packed or not.
  struct Summary {
    v1::TrialState state = v1::TRIAL_STATE_UNSPECIFIED;
    int failures = 0;
    bool feasible = true;  // infeasible() is empty
    bool has_result = false;
    bool has_last = false;  // it reported the objective (the first one)
    double result = 0;      // the objective's final value (the first one's)
    double last = 0;        // the objective's last reported value
  };
  Summary Summarize(const v1::Trial& t) const;

  // `objective`: the metric of the (first) objective, for Summary::last.
  explicit TrialTable(std::string objective) : objective_(std::move(objective)) {}

  // The highest index.
  int size() const { return static_cast<int>(slots_.size()); }
  bool Has(int index) const;
  // The trial, unpacked when it was packed; null when there is none. The message does not
  // move until Pack() packs it.
  v1::Trial* Get(int index);
  // Trial `index` is now `t` (t.index()), unpacked.
  void Put(v1::Trial t);
  // Trial `index` is now the ended trial stored as `record` (a serialized Trial) with summary
  // `s`, packed.
  void PutPacked(int index, std::string record, const Summary& s);
  // Reads a stored trial record's index and summary without parsing the rest of it (its
  // parameters, attempts and paths): restoring a million ended trials reads just that.
  // False when the record is not a readable Trial.
  bool ReadSummary(absl::string_view record, int* index, Summary* s) const;
  // Packs trial `index` when it has ended and is unpacked. It must not be in use: no pointer
  // Get() gave for it may be used after.
  void Pack(int index);
  Summary SummaryOf(int index) const;
  // Whether it is packed (it has ended, and no change has unpacked it since).
  bool Packed(int index) const;
  // Calls `f` with every trial in index order; packed ones are read into a scratch message.
  void ForEach(const std::function<void(const v1::Trial&)>& f) const;
  // A copy of trial `index` (which must exist), packed or not.
  v1::Trial Copy(int index) const;
  // The message of trial `index` when it is not packed; null when it is (it has ended) or
  // there is none.
  const v1::Trial* Live(int index) const;

 private:
  struct Slot {
    std::unique_ptr<v1::Trial> live;  // null when packed (or when there is no trial)
    std::string record;               // packed: the serialized trial
    Summary summary;                  // packed: its summary
  };
  std::string objective_;
  std::vector<Slot> slots_;  // by index - 1
};

}  // namespace rung

#endif  // RUNG_SERVER_SCHEDULE_TRIAL_TABLE_H_
