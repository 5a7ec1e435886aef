// Early-stopping rules, internal to the search library. A rule sees each trial created, each
// report of the objective against the resource, and each trial closed, and may stop a trial.
#ifndef RUNG_SERVER_SEARCH_STOPPING_H_
#define RUNG_SERVER_SEARCH_STOPPING_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/search/searcher.h"

namespace rung::search {

class StoppingRule {
 public:
  virtual ~StoppingRule() = default;
  virtual void OnCreate(int index) = 0;
  // The budget a new trial `index` (just given to OnCreate) trains to.
  virtual double Budget(int /*index*/) const { return config_max_; }
  // Promote mode: a Continue for a paused trial that has earned the next rung, if any.
  virtual std::optional<Continue> Promote() { return std::nullopt; }
  virtual void OnPaused(int /*index*/) {}
  // Whether no trial could ever be continued any more (so the search may end).
  virtual bool NothingToPromote() const { return true; }
  // Stops for every paused trial, when the search ends.
  virtual std::vector<Stop> StopPaused() { return {}; }
  // A Stop for trial `r.index`, or nothing. After a Stop the trial's reports are ignored.
  virtual std::optional<Stop> OnReport(const TrialReported& r) = 0;
  virtual void OnClosed(const TrialClosed& c) = 0;
  // State as lines (no '\n' inside), and back. Load gets exactly the lines Save wrote.
  virtual void Save(std::vector<std::string>* lines) const = 0;
  virtual bool Load(const std::vector<std::string>& lines) = 0;

 protected:
  explicit StoppingRule(double resource_max) : config_max_(resource_max) {}
  const double config_max_;
};

// ASHA over one bracket, or asynchronous Hyperband over brackets 0..s_max, in stop or
// promote mode
// (Li et al., "A System for Massively Parallel Hyperparameter Tuning").
std::unique_ptr<StoppingRule> NewRungRule(const Config& config, bool hyperband);
// The median stopping rule (Golovin et al., "Google Vizier", 2017).
std::unique_ptr<StoppingRule> NewMedianRule(const Config& config);

// Shortest text that reads back as the same double.
std::string DoubleText(double d);
bool ParseDouble(absl::string_view s, double* d);

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_STOPPING_H_
