// rung: the command-line client. Each subcommand is one or a few RPCs to rungd.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/spec.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "common/connect.h"
#include "rung/v1/admin_service.grpc.pb.h"
#include "rung/v1/experiment_service.grpc.pb.h"
#include "server/search/ablation.h"
#include "server/search/searcher.h"

namespace {

using rung::v1::Experiment;
using rung::v1::Trial;

struct Globals {
  std::string addr = "127.0.0.1:7411";
  std::string output = "table";
  std::unique_ptr<rung::v1::ExperimentService::Stub> stub;
  std::unique_ptr<rung::v1::AdminService::Stub> admin;
};

// An error to show the user; main prints it and exits 1.
// Exit codes, the same for every command.
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;       // rungd refused or the operation failed (not found, invalid...)
constexpr int kExitUsage = 2;        // bad command line
constexpr int kExitUnreachable = 3;  // rungd could not be reached

// An error to show the user; main prints it and exits with `code`.
struct CliError {
  std::string message;
  int code = kExitFailed;
};

rung::ConnectOptions g_connect;  // set once in main, before any call

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  rung::AddToken(ctx.get(), g_connect);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
  return ctx;
}

void Check(const grpc::Status& s, const Globals& g) {
  if (s.ok()) return;
  // rungd's own refusals start with "rungd"; anything else UNAVAILABLE is the connection.
  if ((s.error_code() == grpc::StatusCode::UNAVAILABLE && !absl::StartsWith(s.error_message(), "rungd ")) ||
      s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    throw CliError{absl::StrCat("cannot reach rungd at ", g.addr, " (", s.error_message(),
                                "); is it running? set --addr or RUNG_ADDR"),
                   kExitUnreachable};
  }
  throw CliError{s.error_message()};
}

void PrintJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  google::protobuf::util::MessageToJsonString(m, &out, o);
  std::cout << out;
}

std::string StateName(rung::v1::ExperimentState s) {
  std::string n = rung::v1::ExperimentState_Name(s);
  n = n.substr(n.find('_') + 1);
  for (auto& c : n) c = static_cast<char>(tolower(c));
  return n;
}
std::string StateName(rung::v1::TrialState s) {
  std::string n = rung::v1::TrialState_Name(s);
  n = n.substr(n.find('_') + 1);
  for (auto& c : n) c = static_cast<char>(tolower(c));
  return n;
}

// The worker that runs the trial, or the ask-and-tell client that holds it ("client:NAME").
std::string RunBy(const Trial& t) {
  return t.client_id().empty() ? t.worker_id() : absl::StrCat("client:", t.client_id());
}

std::string Params(const Trial& t) {
  std::map<std::string, std::string> sorted;
  for (const auto& [k, v] : t.params()) sorted[k] = rung::FormatParam(v);
  std::vector<std::string> parts;
  for (const auto& [k, v] : sorted) parts.push_back(absl::StrCat(k, "=", v));
  return absl::StrJoin(parts, " ");
}

std::string Num(double v) { return absl::StrFormat("%.6g", v); }

std::string Time(int64_t ms) {
  if (ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMillis(ms), absl::LocalTimeZone());
}

std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

// A failure reason on one line: its first line and, when it quotes stderr, stderr's last line.
std::string OneLine(const std::string& s) {
  size_t last = s.find_last_of('\n');
  if (last == std::string::npos) return s;
  std::string tail = s.substr(last + 1);
  return absl::StrCat(FirstLine(s), " ", tail);
}

std::string Progress(const Experiment& e) {
  const auto& c = e.counts();
  int ended = c.completed() + c.failed() + c.stopped();
  std::string best = e.has_best() ? absl::StrCat("best ", Num(e.best_value()), " (",
                                                  e.best_trial_id(), ")")
                     : e.spec().objectives_size() > 1 ? absl::StrCat("Pareto set: rung best ", e.id())
                                                      : "no result yet";
  std::string waiting = c.waiting() > 0 ? absl::StrCat(", ", c.waiting(), " waiting at a rung") : "";
  return absl::StrFormat("%s %-9s %d/%d done: %d completed, %d running, %d failed, %d stopped%s; %s",
                         e.id(), StateName(e.state()), ended, e.spec().budget().max_trials(),
                         c.completed(), c.running(), c.failed(), c.stopped(), waiting, best);
}

// "epoch 1:5 3:3 9:2 27:1": how many trials sit at each rung of an ASHA or Hyperband
// experiment (reached that level of the resource but not the next); "" for other searches.
std::string RungCounts(const Experiment& e, const std::map<std::string, Trial>& trials) {
  const auto& es = e.spec().algorithm().early_stopping();
  if (es.rule() != "asha" && es.rule() != "hyperband") return "";
  const auto& r = e.spec().resource();
  std::vector<double> levels =
      rung::search::Rungs(r.min(), r.max(), es.reduction_factor(), es.max_rungs());
  levels.push_back(r.max());
  std::vector<int> count(levels.size(), 0);
  for (const auto& [id, t] : trials) {
    for (size_t k = levels.size(); k-- > 0;) {
      if (t.resource_reached() >= levels[k] * (1 - 1e-9)) {
        ++count[k];
        break;
      }
    }
  }
  std::string out = r.metric();
  for (size_t k = 0; k < levels.size(); ++k) absl::StrAppend(&out, " ", Num(levels[k]), ":", count[k]);
  return out;
}

Experiment GetExperiment(Globals& g, const std::string& id) {
  rung::v1::GetExperimentRequest req;
  req.set_id(id);
  Experiment e;
  Check(g.stub->GetExperiment(Ctx().get(), req, &e), g);
  return e;
}

std::vector<Trial> ListTrials(Globals& g, const std::string& id) {
  rung::v1::ListTrialsRequest req;
  req.set_experiment_id(id);
  rung::v1::ListTrialsResponse resp;
  Check(g.stub->ListTrials(Ctx().get(), req, &resp), g);
  return {resp.trials().begin(), resp.trials().end()};
}

void PrintTrial(const Trial& t) {
  std::cout << "trial       " << t.id() << "\n"
            << "state       " << StateName(t.state()) << "\n"
            << "attempt     " << t.attempt() << " (" << t.failures() << " failed)\n"
            << "params      " << Params(t) << "\n"
            << "result      " << (t.has_result() ? Num(t.result()) : "-") << "\n"
            << "reports     " << t.reports() << " (last step " << Num(t.last_step()) << ")\n"
            << "budget      " << (t.budget() > 0 ? Num(t.budget()) : "-") << ", reached "
            << Num(t.resource_reached()) << "\n"
            << "run by      " << (RunBy(t).empty() ? "-" : RunBy(t)) << "\n"
            << "started     " << Time(t.started_unix_ms()) << "\n"
            << "ended       " << Time(t.ended_unix_ms()) << "\n";
  if (!t.stop_reason().empty()) std::cout << "stopped     " << t.stop_reason() << "\n";
  if (!t.message().empty()) {
    std::cout << (t.state() == rung::v1::TRIAL_FAILED ? "reason      " : "last failure ")
              << t.message() << "\n";
  }
  if (!t.stdout_path().empty()) std::cout << "logs        " << t.stdout_path() << "\n";
}

// "minimize loss", or "minimize loss, maximize accuracy".
std::string Objectives(const rung::v1::ExperimentSpec& s) {
  auto one = [](const rung::v1::Objective& o) {
    return absl::StrCat(o.goal() == rung::v1::Objective::MAXIMIZE ? "maximize " : "minimize ", o.metric());
  };
  if (s.objectives().empty()) return one(s.objective());
  std::vector<std::string> parts;
  for (const auto& o : s.objectives()) parts.push_back(one(o));
  return absl::StrJoin(parts, ", ");
}

// A trial's result: "0.31", or "loss=0.31 latency_ms=12" with several objectives.
std::string Result(const rung::v1::ExperimentSpec& s, const Trial& t) {
  if (!t.has_result()) return "-";
  if (s.objectives().empty() || t.results().empty()) return Num(t.result());
  std::vector<std::string> parts;
  for (int i = 0; i < s.objectives_size() && i < t.results_size(); ++i) {
    parts.push_back(absl::StrCat(s.objectives(i).metric(), "=", Num(t.results(i))));
  }
  return absl::StrJoin(parts, " ");
}

void PrintExperiment(const Experiment& e, const std::vector<Trial>& trials) {
  const auto& s = e.spec();
  std::cout << "experiment  " << e.id() << " (" << s.name() << ")\n"
            << "state       " << StateName(e.state())
            << (e.message().empty() ? "" : absl::StrCat(": ", e.message())) << "\n"
            << "objective   " << Objectives(s) << "\n"
            << "algorithm   " << s.algorithm().name() << " (seed " << s.algorithm().seed() << ")\n"
            << "budget      " << s.budget().max_trials() << " trials, " << s.budget().max_concurrent()
            << " at once\n"
            << "progress    " << Progress(e) << "\n"
            << "created     " << Time(e.created_unix_ms()) << "\n";
  for (const auto& c : s.constraints()) {
    std::cout << "constraint  " << c.metric()
              << (c.has_min() ? absl::StrCat(" >= ", Num(c.min())) : "")
              << (c.has_max() ? absl::StrCat(" <= ", Num(c.max())) : "") << "\n";
  }
  if (e.has_best()) {
    for (const Trial& t : trials) {
      if (t.id() == e.best_trial_id()) std::cout << "best params " << Params(t) << "\n";
    }
  }
  bool header = false;
  for (const Trial& t : trials) {
    if (t.state() != rung::v1::TRIAL_FAILED && t.failures() == 0) continue;
    if (!header) std::cout << "failures:\n";
    header = true;
    std::cout << "  " << t.id() << " (" << StateName(t.state()) << ", " << t.failures()
              << " failed attempts): " << t.message() << "\n";
  }
}

int Submit(Globals& g, const std::string& file) {
  std::ifstream in(file);
  if (!in) throw CliError{absl::StrCat("cannot read ", file)};
  std::stringstream ss;
  ss << in.rdbuf();
  rung::v1::CreateExperimentRequest req;
  req.set_spec_yaml(ss.str());
  req.set_base_dir(std::filesystem::absolute(file).parent_path().string());
  Experiment e;
  grpc::Status s = g.stub->CreateExperiment(Ctx().get(), req, &e);
  if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
    throw CliError{absl::StrCat(file, ": ", s.error_message())};
  }
  Check(s, g);
  if (g.output == "json") {
    PrintJson(e);
  } else {
    std::cout << e.id() << "\n";
  }
  return 0;
}

int Ls(Globals& g) {
  rung::v1::ListExperimentsResponse resp;
  Check(g.stub->ListExperiments(Ctx().get(), {}, &resp), g);
  if (g.output == "json") {
    PrintJson(resp);
    return 0;
  }
  std::printf("%-6s %-20s %-10s %-8s %-12s %s\n", "ID", "NAME", "STATE", "TRIALS", "BEST", "CREATED");
  for (const auto& e : resp.experiments()) {
    const auto& c = e.counts();
    std::printf("%-6s %-20s %-10s %-8s %-12s %s\n", e.id().c_str(), e.spec().name().substr(0, 20).c_str(),
                StateName(e.state()).c_str(),
                absl::StrCat(c.completed() + c.failed() + c.stopped(), "/", e.spec().budget().max_trials()).c_str(),
                e.has_best() ? Num(e.best_value()).c_str() : "-", Time(e.created_unix_ms()).c_str());
  }
  return 0;
}

int Show(Globals& g, const std::string& id) {
  if (id.find('-') != std::string::npos) {
    rung::v1::GetTrialRequest req;
    req.set_id(id);
    Trial t;
    Check(g.stub->GetTrial(Ctx().get(), req, &t), g);
    if (g.output == "json") {
      PrintJson(t);
    } else {
      PrintTrial(t);
    }
    return 0;
  }
  Experiment e = GetExperiment(g, id);
  if (g.output == "json") {
    PrintJson(e);
    return 0;
  }
  PrintExperiment(e, ListTrials(g, id));
  return 0;
}

// The trial's value of `metric`: its objective result when `metric` is an objective, else the
// last value it reported; none when it has neither.
std::optional<double> MetricOf(const rung::v1::ExperimentSpec& spec, const Trial& t, const std::string& metric) {
  if (t.has_result()) {
    if (spec.objectives_size() > 1) {
      for (int i = 0; i < spec.objectives_size() && i < t.results_size(); ++i) {
        if (spec.objectives(i).metric() == metric) return t.results(i);
      }
    } else if (spec.objective().metric() == metric) {
      return t.result();
    }
  }
  auto it = t.last_metrics().find(metric);
  if (it != t.last_metrics().end()) return it->second;
  return std::nullopt;
}

// Sorts by `sort` ("loss": best first for an objective, else ascending; "-loss" the other
// way), trials without the metric last; keeps the first `top` (0: all).
std::vector<Trial> SortTrials(const rung::v1::ExperimentSpec& spec, std::vector<Trial> trials, std::string sort,
                              int top) {
  if (!sort.empty()) {
    const bool reverse = sort[0] == '-';
    if (reverse) sort.erase(0, 1);
    bool maximize = false;
    for (const auto& o : spec.objectives()) maximize |= o.metric() == sort && o.goal() == rung::v1::Objective::MAXIMIZE;
    if (spec.objective().metric() == sort) maximize = spec.objective().goal() == rung::v1::Objective::MAXIMIZE;
    const bool descending = maximize != reverse;
    std::stable_sort(trials.begin(), trials.end(), [&](const Trial& a, const Trial& b) {
      auto x = MetricOf(spec, a, sort), y = MetricOf(spec, b, sort);
      if (!x || !y) return x.has_value() && !y.has_value();
      return descending ? *x > *y : *x < *y;
    });
  }
  if (top > 0 && static_cast<size_t>(top) < trials.size()) trials.resize(static_cast<size_t>(top));
  return trials;
}

int Trials(Globals& g, const std::string& id, const std::string& sort, int top) {
  const Experiment e = GetExperiment(g, id);
  const std::vector<Trial> trials = SortTrials(e.spec(), ListTrials(g, id), sort, top);
  if (g.output == "json") {
    rung::v1::ListTrialsResponse resp;
    for (const auto& t : trials) *resp.add_trials() = t;
    PrintJson(resp);
    return 0;
  }
  std::printf("%-10s %-10s %-7s %-12s %-8s %-16s %s\n", "TRIAL", "STATE", "ATTEMPT", "RESULT",
              "REACHED", "RUN BY", "PARAMS");
  for (const auto& t : trials) {
    std::printf("%-10s %-10s %-7d %-12s %-8s %-16s %s\n", t.id().c_str(), StateName(t.state()).c_str(),
                t.attempt(), Result(e.spec(), t).c_str(),
                t.resource_reached() > 0 ? Num(t.resource_reached()).c_str() : "-",
                RunBy(t).empty() ? "-" : RunBy(t).substr(0, 16).c_str(), Params(t).c_str());
    if (t.state() == rung::v1::TRIAL_FAILED) std::printf("%10s %s\n", "", OneLine(t.message()).c_str());
    if (t.state() == rung::v1::TRIAL_STOPPED) std::printf("%10s stopped: %s\n", "", t.stop_reason().c_str());
    if (!t.infeasible().empty()) std::printf("%10s breaks constraints: %s\n", "", t.infeasible().c_str());
  }
  return 0;
}

std::string ParamText(const rung::v1::ParamValue& v) {
  switch (v.kind_case()) {
    case rung::v1::ParamValue::kFloatValue: return absl::StrFormat("%.17g", v.float_value());
    case rung::v1::ParamValue::kIntValue: return absl::StrCat(v.int_value());
    case rung::v1::ParamValue::kCategoricalValue: return v.categorical_value();
    default: return "";
  }
}

// RFC 4180: quoted when it holds a comma, a quote or a line break.
std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  return absl::StrCat("\"", absl::StrReplaceAll(s, {{"\"", "\"\""}}), "\"");
}

// Every trial as a row: its id, state, attempt, worker, result(s), then every parameter and
// every metric it reported (the last value) as a column, in name order.
int Export(Globals& g, const std::string& id, const std::string& format) {
  const Experiment e = GetExperiment(g, id);
  const std::vector<Trial> trials = ListTrials(g, id);
  std::set<std::string> params, metrics;
  for (const auto& t : trials) {
    for (const auto& [k, v] : t.params()) params.insert(k);
    for (const auto& [k, v] : t.last_metrics()) metrics.insert(k);
  }
  std::vector<std::string> header = {"trial", "state", "attempt", "worker", "result"};
  for (const auto& p : params) header.push_back("param." + p);
  for (const auto& m : metrics) header.push_back("metric." + m);
  auto row = [&](const Trial& t) {
    std::vector<std::pair<std::string, std::string>> cells = {
        {"trial", t.id()}, {"state", StateName(t.state())}, {"attempt", absl::StrCat(t.attempt())},
        {"worker", RunBy(t)}, {"result", t.has_result() ? absl::StrFormat("%.17g", t.result()) : ""}};
    for (const auto& p : params) {
      auto it = t.params().find(p);
      cells.push_back({"param." + p, it == t.params().end() ? "" : ParamText(it->second)});
    }
    for (const auto& m : metrics) {
      auto it = t.last_metrics().find(m);
      cells.push_back({"metric." + m, it == t.last_metrics().end() ? "" : absl::StrFormat("%.17g", it->second)});
    }
    return cells;
  };
  if (format == "csv") {
    std::vector<std::string> h;
    for (const auto& c : header) h.push_back(CsvField(c));
    std::cout << absl::StrJoin(h, ",") << "\n";
    for (const auto& t : trials) {
      std::vector<std::string> out;
      for (const auto& [k, v] : row(t)) out.push_back(CsvField(v));
      std::cout << absl::StrJoin(out, ",") << "\n";
    }
    return 0;
  }
  // json: one object per trial; numbers stay numbers, empty cells are left out.
  google::protobuf::ListValue list;
  for (const auto& t : trials) {
    google::protobuf::Struct obj;
    for (const auto& [k, v] : row(t)) {
      if (v.empty()) continue;
      double d;
      const bool number = k != "trial" && k != "state" && k != "worker" && absl::SimpleAtod(v, &d);
      auto& field = (*obj.mutable_fields())[k];
      if (number) {
        field.set_number_value(d);
      } else {
        field.set_string_value(v);
      }
    }
    *list.add_values()->mutable_struct_value() = std::move(obj);
  }
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  google::protobuf::util::MessageToJsonString(list, &out, o);
  std::cout << out;
  return 0;
}

// An ablation study's results: every variant's runs, mean and spread, its change against the
// base, whether that change stands out of the noise between repeats, and the ranking.
int Ablation(Globals& g, const std::string& id) {
  rung::v1::GetExperimentRequest ereq;
  ereq.set_id(id);
  Experiment e;
  Check(g.stub->GetExperiment(Ctx().get(), ereq, &e), g);
  if (e.spec().kind() != "ablation") {
    throw CliError{absl::StrCat("experiment ", id, " is a search, not an ablation study (kind: ablation)")};
  }
  rung::v1::ListTrialsRequest treq;
  treq.set_experiment_id(id);
  rung::v1::ListTrialsResponse tresp;
  Check(g.stub->ListTrials(Ctx().get(), treq, &tresp), g);
  std::vector<rung::search::Component> components;
  for (const auto& c : e.spec().ablation().components()) {
    components.push_back({c.kind(), c.name(), {c.members().begin(), c.members().end()}});
  }
  auto policy = rung::search::NewAblationPolicy(e.spec().ablation().policy());
  if (!policy.ok()) throw CliError{std::string(policy.status().message())};
  const std::vector<rung::search::Variant> variants = (*policy)->Variants(components);
  std::vector<rung::search::Run> runs;
  for (const Trial& t : tresp.trials()) {
    if (t.state() != rung::v1::TRIAL_COMPLETED || !t.has_result()) continue;
    runs.push_back({rung::search::VariantOf(t.index() - 1, variants.size()),
                    rung::search::RepeatOf(t.index() - 1, variants.size()), t.result()});
  }
  const bool minimize = e.spec().objective().goal() != rung::v1::Objective::MAXIMIZE;
  constexpr double kAlpha = 0.05;
  const auto results = rung::search::Summarize(variants, runs, minimize, kAlpha);
  // The base first, then the removals by rank, then those with no result yet.
  std::vector<const rung::search::VariantResult*> rows = {&results[0]};
  for (size_t rank = 1; rank < results.size(); ++rank) {
    for (const auto& r : results) {
      if (r.rank == static_cast<int>(rank)) rows.push_back(&r);
    }
  }
  for (size_t v = 1; v < results.size(); ++v) {
    if (results[v].rank == 0) rows.push_back(&results[v]);
  }
  auto number = [](double v, const char* fmt = "%.6g") { return std::isnan(v) ? std::string("-") : absl::StrFormat(fmt, v); };
  if (g.output == "json") {
    google::protobuf::Struct out;
    auto& f = *out.mutable_fields();
    f["experiment"].set_string_value(e.id());
    f["state"].set_string_value(StateName(e.state()));
    f["objective"].set_string_value(e.spec().objective().metric());
    f["goal"].set_string_value(minimize ? "minimize" : "maximize");
    f["repeats"].set_number_value(e.spec().ablation().repeats());
    f["alpha"].set_number_value(kAlpha);
    auto* list = f["variants"].mutable_list_value();
    for (const auto* r : rows) {
      google::protobuf::Struct row;
      auto& rf = *row.mutable_fields();
      rf["kind"].set_string_value(r->variant.kind);
      rf["name"].set_string_value(r->variant.name);
      auto* dropped = rf["dropped"].mutable_list_value();
      for (const auto& d : r->variant.dropped) dropped->add_values()->set_string_value(d);
      rf["runs"].set_number_value(r->runs);
      auto put = [&](const char* k, double v) {
        if (std::isnan(v)) {
          rf[k].set_null_value(google::protobuf::NULL_VALUE);
        } else {
          rf[k].set_number_value(v);
        }
      };
      put("mean", r->mean);
      put("stddev", r->stddev);
      put("delta", r->delta);
      put("p", r->p);
      rf["test"].set_string_value(r->test);
      rf["significant"].set_bool_value(r->significant);
      rf["rank"].set_number_value(r->rank);
      *list->add_values()->mutable_struct_value() = std::move(row);
    }
    std::string text;
    google::protobuf::util::JsonPrintOptions o;
    o.add_whitespace = true;
    google::protobuf::util::MessageToJsonString(out, &text, o);
    std::cout << text;
    return 0;
  }
  std::cout << absl::StrFormat(
      "%s %s: %s, %d variants x %d repeats; %s (%s), mean over completed runs\n"
      "change against the base: a two-sided t-test, paired on the repeats' shared seeds "
      "(Welch's when runs do not pair), significant at p < %.2g\n\n",
      e.id(), e.spec().name(), StateName(e.state()), variants.size(), e.spec().ablation().repeats(),
      e.spec().objective().metric(), minimize ? "minimize" : "maximize", kAlpha);
  std::printf("%-5s %-22s %-8s %-5s %-12s %-10s %-12s %-10s %s\n", "RANK", "LEFT OUT", "KIND", "RUNS", "MEAN", "SD",
              "CHANGE", "P", "SIGNIFICANT");
  for (const auto* r : rows) {
    const bool base = r == &results[0];
    std::printf("%-5s %-22s %-8s %-5d %-12s %-10s %-12s %-10s %s\n",
                r->rank > 0 ? absl::StrCat(r->rank).c_str() : "-", r->variant.name.substr(0, 22).c_str(),
                r->variant.kind.c_str(), r->runs, number(r->mean).c_str(), number(r->stddev, "%.3g").c_str(),
                base ? "-" : number(r->delta, "%+.4g").c_str(), base ? "-" : number(r->p, "%.3g").c_str(),
                base || r->test.empty() ? "-" : absl::StrCat(r->significant ? "yes" : "no", " (", r->test, ")").c_str());
  }
  if (rows.size() > 1 && rows[1]->rank == 1) {
    const auto& top = *rows[1];
    std::cout << "\nmost important: " << top.variant.name << " (" << top.variant.kind << "): without it "
              << e.spec().objective().metric() << " is " << (top.harm > 0 ? "worse" : "no worse") << " by "
              << number(std::fabs(top.delta), "%.4g")
              << (top.significant ? "" : ", within the noise of these repeats") << "\n";
  }
  return 0;
}

int Best(Globals& g, const std::string& id, int n) {
  rung::v1::GetBestTrialsRequest req;
  req.set_experiment_id(id);
  req.set_count(n);
  rung::v1::GetBestTrialsResponse resp;
  Check(g.stub->GetBestTrials(Ctx().get(), req, &resp), g);
  if (g.output == "json") {
    PrintJson(resp);
    return 0;
  }
  if (resp.trials().empty()) {
    throw CliError{absl::StrCat("experiment ", id, " has no completed trial within its constraints yet")};
  }
  const Experiment e = GetExperiment(g, id);
  if (e.spec().objectives_size() > 1) {
    std::cout << "Pareto set (" << Objectives(e.spec()) << "): " << resp.trials_size() << " trials\n";
  }
  for (const auto& t : resp.trials()) {
    std::cout << t.id() << "  " << Result(e.spec(), t) << "  " << Params(t) << "\n";
  }
  return 0;
}

bool ExperimentEnded(const Experiment& e) {
  return e.state() == rung::v1::EXPERIMENT_COMPLETED || e.state() == rung::v1::EXPERIMENT_FAILED ||
         e.state() == rung::v1::EXPERIMENT_CANCELLED;
}

int Watch(Globals& g, const std::string& id) {
  grpc::ClientContext ctx;  // no deadline: it runs until the experiment ends
  rung::AddToken(&ctx, g_connect);
  rung::v1::WatchExperimentRequest req;
  req.set_id(id);
  auto reader = g.stub->WatchExperiment(&ctx, req);
  rung::v1::WatchEvent ev;
  Experiment last;
  std::map<std::string, Trial> trials;
  const bool tty = isatty(STDOUT_FILENO) && g.output != "json";
  std::string last_line;
  std::chrono::steady_clock::time_point last_draw;
  int drawn = 0;  // lines of the last frame on the terminal
  while (reader->Read(&ev)) {
    if (ev.has_trial()) trials[ev.trial().id()] = ev.trial();
    if (ev.has_report()) {
      auto it = trials.find(ev.report().trial_id());
      const auto& metric = last.spec().resource().metric();
      auto v = ev.report().values().find(metric);
      double reached = v != ev.report().values().end() ? v->second : ev.report().step();
      if (it != trials.end()) {
        it->second.set_resource_reached(std::max(it->second.resource_reached(), reached));
        for (const auto& [k, v] : ev.report().values()) (*it->second.mutable_last_metrics())[k] = v;
      }
    }
    if (g.output == "json") {
      std::string out;
      google::protobuf::util::JsonPrintOptions o;
      o.preserve_proto_field_names = true;
      google::protobuf::util::MessageToJsonString(ev, &out, o);
      std::cout << out << std::endl;
      continue;
    }
    if (ev.has_trial() && (ev.trial().state() == rung::v1::TRIAL_FAILED)) {
      // Above the live table, which is drawn again below it.
      if (tty && drawn > 0) std::cout << "\033[" << drawn << "F\033[J";
      drawn = 0;
      std::cout << "  " << ev.trial().id() << " failed: " << OneLine(ev.trial().message()) << "\n";
    }
    if (ev.has_experiment()) last = ev.experiment();
    if (last.id().empty()) continue;
    std::string line = Progress(last);
    std::string rungs = RungCounts(last, trials);
    if (!rungs.empty()) absl::StrAppend(&line, "; rungs ", rungs);
    if (tty) {
      // A live table: the progress line, then the trials that hold a slot, redrawn in place
      // at most ten times a second (and once more at the end).
      const auto now = std::chrono::steady_clock::now();
      if (now - last_draw < std::chrono::milliseconds(100) && !ExperimentEnded(last)) continue;
      last_draw = now;
      std::string frame = absl::StrCat(line, "\n");
      std::vector<const Trial*> live;
      for (const auto& [tid, t] : trials) {
        if (t.state() == rung::v1::TRIAL_RUNNING || t.state() == rung::v1::TRIAL_ASSIGNED) live.push_back(&t);
      }
      if (!live.empty()) {
        absl::StrAppend(&frame, absl::StrFormat("  %-10s %-9s %-8s %-12s %s\n", "TRIAL", "STATE", "REACHED",
                                                last.spec().objective().metric(), "WORKER"));
      }
      const size_t shown = std::min<size_t>(live.size(), 15);
      for (size_t i = 0; i < shown; ++i) {
        const Trial& t = *live[i];
        auto m = t.last_metrics().find(last.spec().objective().metric());
        absl::StrAppend(&frame, absl::StrFormat("  %-10s %-9s %-8s %-12s %s\n", t.id(), StateName(t.state()),
                                                t.resource_reached() > 0 ? Num(t.resource_reached()) : "-",
                                                m != t.last_metrics().end() ? Num(m->second) : "-",
                                                RunBy(t).empty() ? "-" : RunBy(t)));
      }
      if (live.size() > shown) absl::StrAppend(&frame, "  ... and ", live.size() - shown, " more\n");
      // Up over the last frame, clear to the end of the screen, draw.
      if (drawn > 0) std::cout << "\033[" << drawn << "F";
      std::cout << "\033[J" << frame << std::flush;
      drawn = static_cast<int>(std::count(frame.begin(), frame.end(), '\n'));
      continue;
    }
    if (!ev.has_experiment()) continue;
    // Without a terminal, print a line only when trials end or the state or best changes,
    // not each time the running count moves.
    const auto& c = last.counts();
    std::string key = absl::StrCat(last.state(), "/", c.completed() + c.failed() + c.stopped(), "/",
                                   last.best_trial_id(), "/", rungs);
    if (key == last_line) continue;
    last_line = key;
    std::cout << line << "\n" << std::flush;
  }
  Check(reader->Finish(), g);
  if (g.output != "json" && last.has_best()) {
    rung::v1::GetTrialRequest treq;
    treq.set_id(last.best_trial_id());
    Trial t;
    if (g.stub->GetTrial(Ctx().get(), treq, &t).ok()) {
      std::cout << "best trial " << t.id() << ": " << last.spec().objective().metric() << " = "
                << Num(t.result()) << "  " << Params(t) << "\n";
    }
  }
  return last.state() == rung::v1::EXPERIMENT_COMPLETED ? 0 : 1;
}

int Control(Globals& g, const std::string& verb, const std::string& id) {
  rung::v1::ExperimentRequest req;
  req.set_id(id);
  Experiment e;
  grpc::Status s = verb == "cancel" ? g.stub->CancelExperiment(Ctx().get(), req, &e)
                   : verb == "pause" ? g.stub->PauseExperiment(Ctx().get(), req, &e)
                                     : g.stub->ResumeExperiment(Ctx().get(), req, &e);
  Check(s, g);
  if (g.output == "json") {
    PrintJson(e);
  } else {
    std::cout << e.id() << " " << StateName(e.state()) << "\n";
  }
  return 0;
}

int Logs(Globals& g, const std::string& trial_id) {
  rung::v1::GetTrialLogsRequest req;
  req.set_trial_id(trial_id);
  rung::v1::GetTrialLogsResponse resp;
  Check(g.stub->GetTrialLogs(Ctx().get(), req, &resp), g);
  if (g.output == "json") {
    PrintJson(resp);
    return 0;
  }
  if (resp.stdout_path().empty()) {
    throw CliError{absl::StrCat("trial ", trial_id, " has not started yet: no logs")};
  }
  bool printed = false;
  for (const auto& [label, path] : {std::pair<std::string, std::string>{"stdout", resp.stdout_path()},
                                    {"stderr", resp.stderr_path()}}) {
    std::ifstream in(path);
    if (!in) continue;
    printed = true;
    std::cout << "==> " << label << " (" << path << ") <==\n" << in.rdbuf() << "\n";
  }
  if (!printed) {
    throw CliError{absl::StrCat("the logs of ", trial_id, " are on worker ", resp.worker_id(), " at ",
                                resp.stdout_path(), " and ", resp.stderr_path(),
                                ", not readable from here")};
  }
  return 0;
}

int Replay(const Globals& g, const std::string& id) {
  rung::v1::ReplaySearchRequest req;
  req.set_experiment_id(id);
  rung::v1::ReplaySearchResponse resp;
  auto ctx = Ctx();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
  Check(g.admin->ReplaySearch(ctx.get(), req, &resp), g);
  if (g.output == "json") {
    PrintJson(resp);
  } else if (resp.identical()) {
    std::cout << id << ": all " << resp.entries() << " searcher decisions replay identically\n";
  } else {
    std::cout << id << ": the replay differs after " << resp.entries() << " identical decisions: " << resp.mismatch()
              << "\n";
  }
  return resp.identical() ? 0 : 1;
}

int Backup(const Globals& g, const std::string& dir) {
  rung::v1::BackupRequest req;
  // rungd writes it on its own machine; a relative path means the same folder as it would
  // for a local rungd.
  req.set_dir(std::filesystem::absolute(dir).lexically_normal().string());
  rung::v1::BackupResponse resp;
  auto ctx = Ctx();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(30));
  Check(g.admin->Backup(ctx.get(), req, &resp), g);
  if (g.output == "json") {
    PrintJson(resp);
  } else {
    std::cout << "backup in " << resp.dir() << " (" << resp.files() << " files, " << resp.bytes()
              << " bytes); to restore, stop rungd and start it with --data-dir " << resp.dir() << "\n";
  }
  return 0;
}

// A bash completion script for `rung`: commands, their flags, experiment-free.
std::string BashCompletion(const CLI::App& app) {
  std::vector<std::string> commands;
  std::string cases;
  for (const CLI::App* sub : app.get_subcommands({})) {
    commands.push_back(sub->get_name());
    std::vector<std::string> words;
    for (const CLI::Option* o : sub->get_options()) {
      for (const std::string& n : o->get_lnames()) words.push_back("--" + n);
    }
    for (const CLI::App* subsub : sub->get_subcommands({})) words.push_back(subsub->get_name());
    absl::StrAppend(&cases, "    ", sub->get_name(), ") words=\"", absl::StrJoin(words, " "), "\" ;;\n");
  }
  std::vector<std::string> globals;
  for (const CLI::Option* o : app.get_options()) {
    for (const std::string& n : o->get_lnames()) globals.push_back("--" + n);
  }
  return absl::StrCat(R"(# bash completion for rung: source <(rung completion bash)
_rung() {
  local cur="${COMP_WORDS[COMP_CWORD]}" cmd="" words="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${COMP_WORDS[i]}" in -*) ;; *) cmd="${COMP_WORDS[i]}"; break ;; esac
  done
  case "$cmd" in
)", cases, R"(    *) words=")", absl::StrJoin(commands, " "), " ", absl::StrJoin(globals, " "), R"(" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _rung rung
)");
}

}  // namespace

int main(int argc, char** argv) {
  Globals g;
  if (const char* a = std::getenv("RUNG_ADDR"); a && *a) g.addr = a;
  CLI::App app{"rung: submit and watch hyperparameter-optimisation experiments"};
  app.require_subcommand(1);
  app.add_option("--addr", g.addr, "rungd address (or RUNG_ADDR)")->capture_default_str();
  app.add_option("--token", g_connect.token, "bearer token (or RUNG_TOKEN)");
  app.add_option("--ca", g_connect.ca_file, "PEM CA that signed rungd's certificate: connect with TLS (or RUNG_CA)");
  app.add_option("--cert", g_connect.cert_file, "PEM client certificate, for mutual TLS (or RUNG_CERT)");
  app.add_option("--key", g_connect.key_file, "its PEM private key (or RUNG_KEY)");
  app.add_option("-o,--output", g.output, "table or json (protobuf's JSON mapping)")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  std::string file, id;
  int n = 0;
  auto* submit = app.add_subcommand("submit", "submit an experiment spec (YAML); prints its id");
  submit->add_option("FILE", file, "spec file")->required();
  auto* ls = app.add_subcommand("ls", "list experiments");
  auto* show = app.add_subcommand("show", "show an experiment (e1) or a trial (e1-3)");
  show->add_option("ID", id)->required();
  auto* trials = app.add_subcommand("trials", "list an experiment's trials");
  trials->add_option("ID", id)->required();
  std::string sort, format = "csv";
  int top = 0;
  trials->add_option("--sort", sort,
                     "order by this metric, best first for an objective, else ascending; -METRIC reverses");
  trials->add_option("--top", top, "only the first N (after --sort)")->check(CLI::NonNegativeNumber);
  auto* export_cmd = app.add_subcommand("export", "every trial with every parameter and metric, for a spreadsheet or pandas");
  export_cmd->add_option("ID", id)->required();
  export_cmd->add_option("--format", format, "csv or json")->check(CLI::IsMember({"csv", "json"}))->capture_default_str();
  auto* completion = app.add_subcommand("completion", "print a shell completion script");
  std::string shell;
  completion->add_option("SHELL", shell, "bash")->required()->check(CLI::IsMember({"bash"}));
  auto* watch = app.add_subcommand("watch", "follow an experiment until it ends");
  watch->add_option("ID", id)->required();
  auto* best = app.add_subcommand(
      "best", "the best completed trials within the constraints (several objectives: the Pareto set)");
  best->add_option("ID", id)->required();
  best->add_option("-n,--count", n, "how many (default: 1, or the whole Pareto set)");
  std::vector<std::pair<std::string, CLI::App*>> controls;
  for (const char* verb : {"cancel", "pause", "resume"}) {
    auto* c = app.add_subcommand(verb, absl::StrCat(verb, " an experiment"));
    c->add_option("ID", id)->required();
    controls.emplace_back(verb, c);
  }
  auto* ablation = app.add_subcommand(
      "ablation", "an ablation study's results: each variant against the base, ranked by how much its removal hurts");
  ablation->add_option("ID", id)->required();
  auto* logs = app.add_subcommand("logs", "print a trial's stdout and stderr");
  logs->add_option("TRIAL_ID", id)->required();
  auto* admin = app.add_subcommand("admin", "operations for whoever runs rungd");
  admin->require_subcommand(1);
  auto* replay = admin->add_subcommand(
      "replay", "replay an experiment's searcher journal through a fresh searcher; exit 0 when every "
                "decision comes out the same (restarts and crashes changed none)");
  replay->add_option("ID", id)->required();
  auto* backup = admin->add_subcommand(
      "backup", "copy rungd's data folder, consistently, while it serves, to DIR on rungd's machine "
                "(DIR must not exist)");
  backup->add_option("DIR", file)->required();
  // Examples under every command's --help.
  const std::pair<CLI::App*, const char*> examples[] = {
      {submit, "rung submit config/examples/quickstart.yaml"},
      {ls, "rung ls\n  rung -o json ls"},
      {show, "rung show e1\n  rung show e1-3"},
      {trials, "rung trials e1 --sort loss --top 10"},
      {export_cmd, "rung export e1 > e1.csv\n  rung export e1 --format json | jq '.[0]'"},
      {watch, "rung watch e1 && echo completed"},
      {best, "rung best e1\n  rung best e1 -n 5"},
      {logs, "rung logs e1-3"},
      {ablation, "rung ablation e2\n  rung -o json ablation e2 | jq '.variants[1]'"},
      {replay, "rung admin replay e1"},
      {backup, "rung admin backup /var/backups/rung-$(date +%F)"},
      {completion, "source <(rung completion bash)"},
  };
  for (const auto& [cmd, text] : examples) cmd->footer(absl::StrCat("\nExample:\n  ", text));
  for (auto& [verb, c] : controls) c->footer(absl::StrCat("\nExample:\n  rung ", verb, " e1"));
  app.footer(
      "\nExit codes: 0 done; 1 rungd refused or the operation failed; 2 bad usage; 3 rungd unreachable.\n"
      "Example:\n  rung submit config/examples/quickstart.yaml && rung watch e1");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (*completion) {
    std::cout << BashCompletion(app);
    return kExitOk;
  }

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  rung::ConnectFromEnvironment(&g_connect);
  auto connected = rung::Connect(g.addr, g_connect, args);
  if (!connected.ok()) {
    std::cerr << "rung: " << connected.status().message() << "\n";
    return kExitUsage;
  }
  auto channel = *connected;
  g.stub = rung::v1::ExperimentService::NewStub(channel);
  g.admin = rung::v1::AdminService::NewStub(channel);
  try {
    if (*submit) return Submit(g, file);
    if (*ls) return Ls(g);
    if (*show) return Show(g, id);
    if (*trials) return Trials(g, id, sort, top);
    if (*export_cmd) return Export(g, id, format);
    if (*watch) return Watch(g, id);
    if (*best) return Best(g, id, n);
    if (*logs) return Logs(g, id);
    if (*ablation) return Ablation(g, id);
    if (*replay) return Replay(g, id);
    if (*backup) return Backup(g, file);
    for (auto& [verb, c] : controls) {
      if (*c) return Control(g, verb, id);
    }
  } catch (const CliError& e) {
    std::cerr << "rung: " << e.message << "\n";
    return e.code;
  }
  return kExitFailed;
}
