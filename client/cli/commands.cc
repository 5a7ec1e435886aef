#include "client/cli/commands.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/cli/format.h"
#include "common/status.h"

namespace rung::cli {
namespace {

void PrintJson(const std::string& compact) { std::cout << IndentJson(compact); }

template <typename T>
std::vector<std::string> JsonOfEach(const std::vector<T>& items) {
  std::vector<std::string> out;
  out.reserve(items.size());
  for (const T& x : items) out.push_back(x.Json());
  return out;
}

// Export writes every number with 17 significant digits, so that it reads back exactly.
std::string Exact(double v) { return absl::StrFormat("%.17g", v); }

std::string ExportParam(const ParamValue& v) {
  if (const double* d = std::get_if<double>(&v)) return Exact(*d);
  return FormatParam(v);
}

using Row = std::vector<std::pair<std::string, std::string>>;  // column -> cell ("" when empty)

// A trial as export's cells: its id, state, attempt, worker, result, then each of `params`
// and `metrics` (in name order).
Row ExportRow(const Trial& t, const std::set<std::string>& params,
              const std::set<std::string>& metrics, bool hopper,
              const std::vector<Trial>* population) {
  Row cells = {{"trial", t.id},
               {"state", t.state},
               {"attempt", absl::StrCat(t.attempt)},
               {"worker", RunBy(t)},
               {"result", t.result.has_value() ? Exact(*t.result) : ""}};
  if (hopper) {  // execution: hopper: the visiting order, epoch by epoch
    cells.push_back({"epoch", absl::StrCat(t.epoch)});
    cells.push_back({"partitions", VisitingOrder(t)});
  }
  if (population != nullptr) {  // pbt, pb2: the members that trained its model, and when
    absl::StatusOr<std::vector<LineageStep>> steps = Lineage(*population, t.id);
    cells.push_back({"lineage", steps.ok() ? LineageText(*steps) : ""});
  }
  for (const auto& p : params) {
    auto it = t.params.find(p);
    cells.push_back({"param." + p, it == t.params.end() ? "" : ExportParam(it->second)});
  }
  for (const auto& m : metrics) {
    auto it = t.metrics.find(m);
    cells.push_back({"metric." + m, it == t.metrics.end() ? "" : Exact(it->second)});
  }
  return cells;
}

// One JSON object per row: numbers stay numbers, empty cells are left out.
std::string ExportJson(const std::vector<Row>& rows) {
  std::vector<std::string> objects;
  for (const Row& row : rows) {
    std::vector<std::string> fields;
    for (const auto& [k, v] : row) {
      if (v.empty()) continue;
      double d;
      const bool number = k != "trial" && k != "state" && k != "worker" && k != "partitions" &&
                          k != "lineage" && absl::SimpleAtod(v, &d) && std::isfinite(d);
      fields.push_back(absl::StrCat(JsonQuote(k), ":", number ? JsonNumber(d) : JsonQuote(v)));
    }
    objects.push_back(absl::StrCat("{", absl::StrJoin(fields, ","), "}"));
  }
  return absl::StrCat("[", absl::StrJoin(objects, ","), "]");
}

// A figure of an ablation variant, or "-" when too few runs gave it.
template <typename Format>
std::string OrDash(const std::optional<double>& v, Format format) {
  return v.has_value() ? format(*v) : "-";
}
std::string Spread(double v) { return absl::StrFormat("%.3g", v); }  // sd, p
std::string Change(double v) { return absl::StrFormat("%+.4g", v); }

void PrintAblationTable(const AblationResults& a) {
  std::cout << absl::StrFormat(
      "%s %s: %s, %d variants x %d repeats; %s (%s), mean over completed runs\n"
      "change against the base: a two-sided t-test, paired on the repeats' shared seeds "
      "(Welch's when runs do not pair), significant at p < %.2g\n\n",
      a.experiment_id, a.name, a.state, a.variants.size(), a.repeats, a.objective, a.goal, a.alpha);
  std::printf("%-5s %-22s %-8s %-5s %-12s %-10s %-12s %-10s %s\n", "RANK", "LEFT OUT", "KIND",
              "RUNS", "MEAN", "SD", "CHANGE", "P", "SIGNIFICANT");
  for (size_t i = 0; i < a.variants.size(); ++i) {
    const AblationVariant& v = a.variants[i];
    const bool base = i == 0;  // rungd lists the base first
    const std::string significant =
        base || v.test.empty() ? "-"
                               : absl::StrCat(v.significant ? "yes" : "no", " (", v.test, ")");
    std::printf("%-5s %-22s %-8s %-5d %-12s %-10s %-12s %-10s %s\n",
                v.rank > 0 ? absl::StrCat(v.rank).c_str() : "-", v.name.substr(0, 22).c_str(),
                v.kind.c_str(), v.runs, OrDash(v.mean, Num).c_str(),
                OrDash(v.stddev, Spread).c_str(), base ? "-" : OrDash(v.delta, Change).c_str(),
                base ? "-" : OrDash(v.p, Spread).c_str(), significant.c_str());
  }
  if (a.variants.size() > 1 && a.variants[1].rank == 1) {
    const AblationVariant& top = a.variants[1];
    std::cout << "\nmost important: " << top.name << " (" << top.kind << "): without it "
              << a.objective << " is " << (top.harm.value_or(0) > 0 ? "worse" : "no worse")
              << " by "
              << OrDash(top.delta, [](double d) { return absl::StrFormat("%.4g", std::fabs(d)); })
              << (top.significant ? "" : ", within the noise of these repeats") << "\n";
  }
}

}  // namespace

absl::StatusOr<int> Submit(const Context& c, const std::string& file) {
  absl::StatusOr<Experiment> e = c.client->CreateExperimentFromFile(file);
  if (e.status().code() == absl::StatusCode::kInvalidArgument) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", e.status().message()));
  }
  if (!e.ok()) return e.status();
  if (!e->unschedulable.empty()) {
    std::cerr << "rung: warning: " << e->id << " cannot run yet: " << e->unschedulable << "\n";
  }
  if (c.json) {
    PrintJson(e->Json());
  } else {
    std::cout << e->id << "\n";
  }
  return kExitOk;
}

absl::StatusOr<int> Ls(const Context& c) {
  ASSIGN_OR_RETURN(const std::vector<Experiment> experiments, c.client->ListExperiments());
  if (c.json) {
    PrintJson(JsonList("experiments", JsonOfEach(experiments)));
    return kExitOk;
  }
  std::printf("%-6s %-20s %-10s %-8s %-12s %s\n", "ID", "NAME", "STATE", "TRIALS", "BEST",
              "CREATED");
  for (const Experiment& e : experiments) {
    std::printf("%-6s %-20s %-10s %-8s %-12s %s\n", e.id.c_str(), e.name.substr(0, 20).c_str(),
                e.state.c_str(), absl::StrCat(e.ended(), "/", e.max_trials).c_str(),
                e.best_value.has_value() ? Num(*e.best_value).c_str() : "-",
                Time(e.created_unix_ms).c_str());
  }
  return kExitOk;
}

absl::StatusOr<int> Workers(const Context& c) {
  ASSIGN_OR_RETURN(const std::vector<Worker> workers, c.client->ListWorkers());
  if (c.json) {
    PrintJson(JsonList("workers", JsonOfEach(workers)));
    return kExitOk;
  }
  std::printf("%-16s %-16s %-13s %-10s %-5s %-20s %s\n", "ID", "HOST", "STATE", "SLOTS", "BUSY",
              "HEARTBEAT", "RUNNING");
  for (const Worker& w : workers) {
    int gpus = 0;
    for (const std::string& g : w.gpus) gpus += !g.empty();
    std::vector<std::string> running;
    for (const Worker::Running& r : w.running) {
      running.push_back(absl::StrCat(r.trial_id.empty() ? "(another user's)" : r.trial_id, "@",
                                     absl::StrJoin(r.slots, ",")));
    }
    std::printf(
        "%-16s %-16s %-13s %-10s %-5s %-20s %s\n", w.id.c_str(), w.host.c_str(), w.state.c_str(),
        (gpus > 0 ? absl::StrCat(gpus, " GPU") : absl::StrCat(w.gpus.size(), " CPU")).c_str(),
        absl::StrCat(w.busy()).c_str(), Time(w.last_heartbeat_unix_ms).c_str(),
        running.empty() ? "-" : absl::StrJoin(running, " ").c_str());
  }
  return kExitOk;
}

absl::StatusOr<int> Show(const Context& c, const std::string& id) {
  if (id.find('-') != std::string::npos) {
    ASSIGN_OR_RETURN(const Trial t, c.client->GetTrial(id));
    if (c.json) {
      PrintJson(t.Json());
    } else {
      PrintTrial(t);
    }
    return kExitOk;
  }
  ASSIGN_OR_RETURN(const Experiment e, c.client->GetExperiment(id));
  if (c.json) {
    PrintJson(e.Json());
    return kExitOk;
  }
  // The best trial and those that failed: not every trial, of which there may be a million.
  ASSIGN_OR_RETURN(std::vector<Trial> trials, c.client->ListTrials(id, {"", 0, true}));
  if (!e.best_trial_id.empty()) {
    ASSIGN_OR_RETURN(Trial best, c.client->GetTrial(e.best_trial_id));
    if (best.failures == 0) trials.push_back(std::move(best));
  }
  PrintExperiment(e, trials);
  return kExitOk;
}

absl::StatusOr<int> Trials(const Context& c, const std::string& id, const std::string& sort,
                           int top) {
  ASSIGN_OR_RETURN(const Experiment e, c.client->GetExperiment(id));
  ASSIGN_OR_RETURN(const std::vector<Trial> trials, c.client->ListTrials(id, {sort, top}));
  if (c.json) {
    PrintJson(JsonList("trials", JsonOfEach(trials)));
    return kExitOk;
  }
  std::printf("%-10s %-10s %-7s %-12s %-8s %-16s %s\n", "TRIAL", "STATE", "ATTEMPT", "RESULT",
              "REACHED", "RUN BY", "PARAMS");
  for (const Trial& t : trials) {
    const std::string run_by = RunBy(t);
    std::printf(
        "%-10s %-10s %-7d %-12s %-8s %-16s %s\n", t.id.c_str(), t.state.c_str(), t.attempt,
        FormatResult(e, t).c_str(), t.resource_reached > 0 ? Num(t.resource_reached).c_str() : "-",
        run_by.empty() ? "-" : run_by.substr(0, 16).c_str(), FormatParams(t.params).c_str());
    if (!t.hops.empty()) {
      std::printf("%10s epoch %d done, partitions %s\n", "", t.epoch, VisitingOrder(t).c_str());
    }
    if (t.state == "failed") std::printf("%10s %s\n", "", OneLine(t.message).c_str());
    if (t.state == "stopped") std::printf("%10s stopped: %s\n", "", t.stop_reason.c_str());
    if (!t.infeasible.empty())
      std::printf("%10s breaks constraints: %s\n", "", t.infeasible.c_str());
  }
  return kExitOk;
}

// Every trial as a row: its id, state, attempt, worker, result(s), then every parameter and
// every metric it reported (the last value) as a column, in name order.
absl::StatusOr<int> Export(const Context& c, const std::string& id, const std::string& format) {
  RETURN_IF_ERROR(c.client->GetExperiment(id).status());  // "no experiment e9" before anything else
  ASSIGN_OR_RETURN(const std::vector<Trial> trials, c.client->ListTrials(id));
  std::set<std::string> params, metrics;
  for (const Trial& t : trials) {
    for (const auto& [k, v] : t.params) params.insert(k);
    for (const auto& [k, v] : t.metrics) metrics.insert(k);
  }
  bool hopper = false, population = false;
  for (const Trial& t : trials) {
    hopper = hopper || !t.hops.empty();
    population = population || !t.segments.empty();
  }
  std::vector<Row> rows;
  for (const Trial& t : trials)
    rows.push_back(ExportRow(t, params, metrics, hopper, population ? &trials : nullptr));
  if (format == "json") {
    PrintJson(ExportJson(rows));
    return kExitOk;
  }
  std::vector<std::string> header = {"trial", "state", "attempt", "worker", "result"};
  if (hopper) header.insert(header.end(), {"epoch", "partitions"});
  if (population) header.push_back("lineage");
  for (const auto& p : params) header.push_back(CsvField("param." + p));
  for (const auto& m : metrics) header.push_back(CsvField("metric." + m));
  std::cout << absl::StrJoin(header, ",") << "\n";
  for (const Row& row : rows) {
    std::vector<std::string> out;
    for (const auto& [k, v] : row) out.push_back(CsvField(v));
    std::cout << absl::StrJoin(out, ",") << "\n";
  }
  return kExitOk;
}

absl::StatusOr<int> Best(const Context& c, const std::string& id, int count) {
  ASSIGN_OR_RETURN(const std::vector<Trial> best, c.client->BestTrials(id, count));
  if (c.json) {
    PrintJson(JsonList("trials", JsonOfEach(best)));
    return kExitOk;
  }
  if (best.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("experiment ", id, " has no completed trial within its constraints yet"));
  }
  ASSIGN_OR_RETURN(const Experiment e, c.client->GetExperiment(id));
  if (e.objectives.size() > 1)
    std::cout << "Pareto set (" << Objectives(e) << "): " << best.size() << " trials\n";
  for (const Trial& t : best)
    std::cout << t.id << "  " << FormatResult(e, t) << "  " << FormatParams(t.params) << "\n";
  return kExitOk;
}

absl::StatusOr<int> LineageOf(const Context& c, const std::string& id) {
  const std::string experiment_id = id.substr(0, id.rfind('-'));
  ASSIGN_OR_RETURN(const Experiment e, c.client->GetExperiment(experiment_id));
  std::string trial_id = id;
  if (id == experiment_id) {
    if (e.best_trial_id.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("experiment ", id, " has no best trial yet; name a trial (", id, "-1)"));
    }
    trial_id = e.best_trial_id;
  }
  ASSIGN_OR_RETURN(const std::vector<Trial> trials, c.client->ListTrials(experiment_id));
  ASSIGN_OR_RETURN(const std::vector<LineageStep> steps, Lineage(trials, trial_id));
  if (c.json) {
    PrintJson(LineageJson(trial_id, steps));
    return kExitOk;
  }
  PrintLineage(e, trial_id, steps);
  return kExitOk;
}

absl::StatusOr<int> Control(const Context& c, const std::string& verb, const std::string& id) {
  ASSIGN_OR_RETURN(const Experiment e, verb == "cancel"  ? c.client->CancelExperiment(id)
                                       : verb == "pause" ? c.client->PauseExperiment(id)
                                                         : c.client->ResumeExperiment(id));
  if (c.json) {
    PrintJson(e.Json());
  } else {
    std::cout << e.id << " " << e.state << "\n";
  }
  return kExitOk;
}

absl::StatusOr<int> Logs(const Context& c, const std::string& trial_id) {
  ASSIGN_OR_RETURN(const TrialLogs logs, c.client->GetTrialLogs(trial_id));
  if (c.json) {
    PrintJson(logs.Json());
    return kExitOk;
  }
  if (logs.stdout_path.empty()) {
    // No attempt started. rungd keeps why the last one could not ("could not start:
    // python4: No such file or directory").
    if (!logs.stderr_tail.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "trial ", trial_id, " never started, so it has no logs: ", logs.stderr_tail));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("trial ", trial_id, " has not started yet: no logs"));
  }
  bool printed = false;
  for (const auto& [label, path] : {std::pair<std::string, std::string>{"stdout", logs.stdout_path},
                                    {"stderr", logs.stderr_path}}) {
    std::ifstream in(path);
    if (!in) continue;
    printed = true;
    std::cout << "==> " << label << " (" << path << ") <==\n" << in.rdbuf() << "\n";
  }
  if (!printed) {
    return absl::FailedPreconditionError(
        absl::StrCat("the logs of ", trial_id, " are on worker ", logs.worker_id, " at ",
                     logs.stdout_path, " and ", logs.stderr_path, ", not readable from here"));
  }
  return kExitOk;
}

// An ablation study's results, as rungd computes them: every variant's runs, mean and
// spread, its change against the base, whether that change stands out of the noise between
// repeats, and the ranking.
absl::StatusOr<int> Ablation(const Context& c, const std::string& id) {
  ASSIGN_OR_RETURN(const AblationResults a, c.client->Ablation(id));
  if (c.json) {
    PrintJson(a.Json());
  } else {
    PrintAblationTable(a);
  }
  return kExitOk;
}

absl::StatusOr<int> Replay(const Context& c, const std::string& id) {
  ASSIGN_OR_RETURN(const ReplayResult r, c.client->ReplaySearch(id));
  if (c.json) {
    PrintJson(r.Json());
  } else if (r.identical) {
    std::cout << id << ": all " << r.entries << " searcher decisions replay identically\n";
  } else {
    std::cout << id << ": the replay differs after " << r.entries
              << " identical decisions: " << r.mismatch << "\n";
  }
  return r.identical ? kExitOk : kExitFailed;
}

absl::StatusOr<int> Backup(const Context& c, const std::string& dir) {
  // rungd writes it on its own machine; a relative path means the same folder as it would
  // for a local rungd.
  ASSIGN_OR_RETURN(const BackupResult b,
                   c.client->Backup(std::filesystem::absolute(dir).lexically_normal().string()));
  if (c.json) {
    PrintJson(b.Json());
  } else {
    std::cout << "backup in " << b.dir << " (" << b.files << " files, " << b.bytes
              << " bytes); to restore, stop rungd and start it with --data-dir " << b.dir << "\n";
  }
  return kExitOk;
}

absl::StatusOr<int> Checkpoint(const Context& c, const std::string& trial_id,
                               const std::string& dir) {
  ASSIGN_OR_RETURN(const int64_t bytes, c.client->DownloadCheckpoint(trial_id, dir));
  std::cout << "checkpoint of " << trial_id << " (" << bytes << " bytes) in " << dir << "\n";
  return kExitOk;
}

}  // namespace rung::cli
