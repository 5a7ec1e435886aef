// rung watch: follows an experiment until it ends. On a terminal, a live table redrawn in
// place; otherwise a line each time trials end or the state or best changes; with -o json,
// every event rungd streams, one JSON object a line.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/commands.h"
#include "client/cli/format.h"
#include "common/status.h"

namespace rung::cli {
namespace {

class Watcher {
 public:
  Watcher(bool json, bool tty) : json_(json), tty_(tty) {}

  // Takes one event from rungd's stream; always wants the next.
  bool OnEvent(const Event& ev) {
    if (const Trial* t = std::get_if<Trial>(&ev)) trials_[t->id] = *t;
    if (const rung::Report* r = std::get_if<rung::Report>(&ev)) Apply(*r);
    if (json_) {
      PrintJsonEvent(ev);
      return true;
    }
    if (const Trial* t = std::get_if<Trial>(&ev); t != nullptr && t->state == "failed") {
      // Above the live table, which is drawn again below it.
      if (tty_ && drawn_ > 0) std::cout << "\033[" << drawn_ << "F\033[J";
      drawn_ = 0;
      std::cout << "  " << t->id << " failed: " << OneLine(t->message) << "\n";
    }
    if (const Experiment* e = std::get_if<Experiment>(&ev)) last_ = *e;
    if (last_.id.empty()) return true;
    std::string line = Progress(last_);
    const std::string rungs = RungCounts(last_, trials_);
    if (!rungs.empty()) absl::StrAppend(&line, "; rungs ", rungs);
    if (tty_) {
      Draw(line);
    } else if (std::holds_alternative<Experiment>(ev)) {
      PrintIfChanged(line, rungs);
    }
    return true;
  }

  const Experiment& last() const { return last_; }
  const std::string& objective() const {
    static const std::string kNone;
    return last_.objectives.empty() ? kNone : last_.objectives[0].metric;
  }

 private:
  // A report moves its trial's resource and last values (a trial event carries them too).
  void Apply(const rung::Report& r) {
    auto it = trials_.find(r.trial_id);
    if (it == trials_.end()) return;
    auto v = r.values.find(last_.resource_metric);
    const double reached = v != r.values.end() ? v->second : r.step;
    it->second.resource_reached = std::max(it->second.resource_reached, reached);
    for (const auto& [k, x] : r.values) it->second.metrics[k] = x;
  }

  // The event as protobuf's JSON mapping of rung.v1.WatchEvent, on one line.
  static void PrintJsonEvent(const Event& ev) {
    if (const Experiment* e = std::get_if<Experiment>(&ev))
      std::cout << "{\"experiment\":" << e->Json() << "}";
    if (const Trial* t = std::get_if<Trial>(&ev)) std::cout << "{\"trial\":" << t->Json() << "}";
    if (const rung::Report* r = std::get_if<rung::Report>(&ev))
      std::cout << "{\"report\":" << r->Json() << "}";
    std::cout << std::endl;
  }

  // A live table: the progress line, then the trials that hold a slot, redrawn in place at
  // most ten times a second (and once more at the end).
  void Draw(const std::string& line) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_draw_ < std::chrono::milliseconds(100) && !last_.done()) return;
    last_draw_ = now;
    std::string frame = absl::StrCat(line, "\n");
    std::vector<const Trial*> live;
    for (const auto& [id, t] : trials_) {
      if (t.state == "running" || t.state == "assigned") live.push_back(&t);
    }
    if (!live.empty()) {
      absl::StrAppend(&frame, absl::StrFormat("  %-10s %-9s %-8s %-12s %s\n", "TRIAL", "STATE",
                                              "REACHED", objective(), "WORKER"));
    }
    const size_t shown = std::min<size_t>(live.size(), 15);
    for (size_t i = 0; i < shown; ++i) {
      const Trial& t = *live[i];
      auto m = t.metrics.find(objective());
      const std::string run_by = RunBy(t);
      absl::StrAppend(&frame,
                      absl::StrFormat("  %-10s %-9s %-8s %-12s %s\n", t.id, t.state,
                                      t.resource_reached > 0 ? Num(t.resource_reached) : "-",
                                      m != t.metrics.end() ? Num(m->second) : "-",
                                      run_by.empty() ? "-" : run_by));
    }
    if (live.size() > shown) absl::StrAppend(&frame, "  ... and ", live.size() - shown, " more\n");
    // Up over the last frame, clear to the end of the screen, draw.
    if (drawn_ > 0) std::cout << "\033[" << drawn_ << "F";
    std::cout << "\033[J" << frame << std::flush;
    drawn_ = static_cast<int>(std::count(frame.begin(), frame.end(), '\n'));
  }

  // Without a terminal: a line only when trials end or the state or best changes, not each
  // time the running count moves.
  void PrintIfChanged(const std::string& line, const std::string& rungs) {
    std::string key =
        absl::StrCat(last_.state, "/", last_.ended(), "/", last_.best_trial_id, "/", rungs);
    if (key == last_line_) return;
    last_line_ = std::move(key);
    std::cout << line << "\n" << std::flush;
  }

  const bool json_, tty_;
  Experiment last_;
  std::map<std::string, Trial> trials_;
  std::string last_line_;
  std::chrono::steady_clock::time_point last_draw_;
  int drawn_ = 0;  // lines of the last frame on the terminal
};

}  // namespace

absl::StatusOr<int> Watch(const Context& c, const std::string& id) {
  Watcher w(c.json, isatty(STDOUT_FILENO) && !c.json);
  RETURN_IF_ERROR(c.client->Watch(id, [&w](const Event& ev) { return w.OnEvent(ev); }));
  const Experiment& last = w.last();
  if (!c.json && last.best_value.has_value()) {
    absl::StatusOr<Trial> t = c.client->GetTrial(last.best_trial_id);
    if (t.ok()) {
      std::cout << "best trial " << t->id << ": " << w.objective() << " = "
                << Num(t->result.value_or(0)) << "  " << FormatParams(t->params) << "\n";
    }
  }
  return last.state == "completed" ? kExitOk : kExitFailed;
}

}  // namespace rung::cli
