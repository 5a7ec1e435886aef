// The trial side of rung in C++: a training program's parameters, its reports, and the loop
// that runs trial after trial in one process (trial: {reuse_process: true}), as the Python
// module's rung.trials() does.
//
//   #include "rung/trials.h"
//   rung::Trials trials;                                  // reads the RUNG_* environment
//   while (std::optional<rung::CurrentTrial> t = trials.Next()) {
//     double lr = t->Number("lr", 0.01);
//     for (int epoch = 1; epoch <= t->BudgetOr(27); ++epoch) {
//       if (t->Report(epoch, {{"loss", TrainOneEpoch(lr)}})) break;  // rung says stop
//     }
//   }
//
// In a runner Next() reads each trial from stdin (one JSON line, see the README's
// "Long-lived trial processes"), sets the environment that a process of that trial would
// have had, and ends the previous trial with a `@rung-end` line on stdout. Otherwise (a trial
// of its own process, or run by hand) it returns one trial from the environment, then none.
// Not thread-safe.
#ifndef RUNG_TRIALS_H_
#define RUNG_TRIALS_H_

#include <map>
#include <optional>
#include <string>

namespace rung {

class CurrentTrial {
 public:
  const std::string& id() const { return id_; }  // empty when run by hand
  int attempt() const { return attempt_; }
  // The parameters: numbers as numbers, the rest (categorical values) as text.
  const std::map<std::string, double>& numbers() const { return numbers_; }
  const std::map<std::string, std::string>& texts() const { return texts_; }
  double Number(const std::string& name, double fallback) const;
  std::string Text(const std::string& name, const std::string& fallback) const;
  // RUNG_BUDGET (how far to train) when the search sets one.
  std::optional<double> budget() const { return budget_; }
  int BudgetOr(int fallback) const { return budget_ ? static_cast<int>(*budget_) : fallback; }
  const std::string& checkpoint_dir() const { return checkpoint_dir_; }  // empty by hand
  const std::string& ablation() const { return ablation_; }  // RUNG_ABLATION's JSON, or empty

  // Reports metrics at `step`; true when rung wants the trial to stop. Does nothing (false)
  // when run by hand. Throws std::runtime_error when the worker refuses the report.
  bool Report(double step, const std::map<std::string, double>& metrics, bool final = false) const;

 private:
  friend class Trials;
  static CurrentTrial FromEnvironment();
  std::string id_;
  int attempt_ = 1;
  std::map<std::string, double> numbers_;
  std::map<std::string, std::string> texts_;
  std::optional<double> budget_;
  std::string checkpoint_dir_, ablation_;
};

class Trials {
 public:
  Trials();
  ~Trials();
  Trials(const Trials&) = delete;
  Trials& operator=(const Trials&) = delete;
  // The next trial; nullopt when there are no more (then return from main).
  std::optional<CurrentTrial> Next();

 private:
  bool runner_ = false;
  bool given_one_ = false;
  std::string current_id_;
  int current_attempt_ = 0;
};

}  // namespace rung

#endif  // RUNG_TRIALS_H_
