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
  // A Stop for trial `r.index`, or nothing. After a Stop the trial's reports are ignored.
  virtual std::optional<Stop> OnReport(const TrialReported& r) = 0;
  virtual void OnClosed(const TrialClosed& c) = 0;
  // State as lines (no '\n' inside), and back. Load gets exactly the lines Save wrote.
  virtual void Save(std::vector<std::string>* lines) const = 0;
  virtual bool Load(const std::vector<std::string>& lines) = 0;
};

// ASHA in stop mode over one bracket, or asynchronous Hyperband over brackets 0..s_max
// (Li et al., "A System for Massively Parallel Hyperparameter Tuning").
std::unique_ptr<StoppingRule> NewRungRule(const Config& config, bool hyperband);
// The median stopping rule (Golovin et al., "Google Vizier", 2017).
std::unique_ptr<StoppingRule> NewMedianRule(const Config& config);

// Shortest text that reads back as the same double.
std::string DoubleText(double d);
bool ParseDouble(absl::string_view s, double* d);

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_STOPPING_H_
