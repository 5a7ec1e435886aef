#include "client/cli/format.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"

namespace rung::cli {

std::string Num(double v) { return absl::StrFormat("%.6g", v); }

std::string Time(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMillis(unix_ms),
                          absl::LocalTimeZone());
}

std::string OneLine(const std::string& s) {
  size_t last = s.find_last_of('\n');
  if (last == std::string::npos) return s;
  return absl::StrCat(s.substr(0, s.find('\n')), " ", s.substr(last + 1));
}

std::string RunBy(const Trial& t) {
  if (!t.client_id.empty()) return absl::StrCat("client:", t.client_id);
  return t.workers.size() > 1 ? absl::StrJoin(t.workers, "+") : t.worker_id;
}

std::string VisitingOrder(const Trial& t, bool workers) {
  std::string out;
  int epoch = 0;
  for (const Hop& h : t.hops) {
    if (!h.done) continue;
    if (epoch != 0) absl::StrAppend(&out, h.epoch != epoch ? " | " : (workers ? " " : ","));
    epoch = h.epoch;
    absl::StrAppend(&out, h.partition, workers ? absl::StrCat("@", h.worker_id) : "");
  }
  return out;
}

std::string Objectives(const Experiment& e) {
  std::vector<std::string> parts;
  for (const Objective& o : e.objectives) parts.push_back(absl::StrCat(o.goal, " ", o.metric));
  return absl::StrJoin(parts, ", ");
}

std::string Progress(const Experiment& e) {
  std::string best = e.best_value.has_value()
                         ? absl::StrCat("best ", Num(*e.best_value), " (", e.best_trial_id, ")")
                     : e.objectives.size() > 1 ? absl::StrCat("Pareto set: rung best ", e.id)
                                               : "no result yet";
  std::string waiting = e.waiting > 0 ? absl::StrCat(", ", e.waiting, " waiting at a rung") : "";
  return absl::StrFormat(
      "%s %-9s %d/%d done: %d completed, %d running, %d failed, %d stopped%s; %s", e.id, e.state,
      e.ended(), e.max_trials, e.completed, e.running, e.failed, e.stopped, waiting, best);
}

std::string RungCounts(const Experiment& e, const std::map<std::string, Trial>& trials) {
  const std::vector<double>& levels = e.rung_levels;
  if (levels.empty()) return "";
  std::vector<int> count(levels.size(), 0);
  for (const auto& [id, t] : trials) {
    for (size_t k = levels.size(); k-- > 0;) {
      if (t.resource_reached >= levels[k] * (1 - 1e-9)) {
        ++count[k];
        break;
      }
    }
  }
  std::string out = e.resource_metric;
  for (size_t k = 0; k < levels.size(); ++k)
    absl::StrAppend(&out, " ", Num(levels[k]), ":", count[k]);
  return out;
}

void PrintTrial(const Trial& t) {
  const std::string run_by = RunBy(t);
  std::cout << "trial       " << t.id << "\n"
            << "state       " << t.state << "\n"
            << "attempt     " << t.attempt << " (" << t.failures << " failed)\n"
            << "params      " << FormatParams(t.params) << "\n"
            << "result      " << (t.result.has_value() ? Num(*t.result) : "-") << "\n"
            << "reports     " << t.reports << " (last step " << Num(t.last_step) << ")\n"
            << "budget      " << (t.budget > 0 ? Num(t.budget) : "-") << ", reached "
            << Num(t.resource_reached) << "\n"
            << "run by      " << (run_by.empty() ? "-" : run_by) << "\n"
            << "started     "
            << Time(t.hops.empty() ? t.started_unix_ms : t.hops[0].started_unix_ms) << "\n"
            << "ended       " << Time(t.ended_unix_ms) << "\n";
  if (!t.hops.empty()) {
    const Hop& now = t.hops.back();
    std::cout << "epochs      " << t.epoch << " done"
              << (now.ended_unix_ms == 0
                      ? absl::StrCat("; training epoch ", now.epoch, " on partition ",
                                     now.partition, " (", now.worker_id, ")")
                      : "")
              << "\n"
              << "visited     " << VisitingOrder(t, /*workers=*/true) << "\n";
  }
  if (!t.stop_reason.empty()) std::cout << "stopped     " << t.stop_reason << "\n";
  if (!t.message.empty())
    std::cout << (t.state == "failed" ? "reason      " : "last failure ") << t.message << "\n";
  if (!t.stdout_path.empty()) std::cout << "logs        " << t.stdout_path << "\n";
  if (!t.segments.empty()) {
    std::cout << "segments    (rung lineage " << t.id << " follows the donors)\n";
    for (const Segment& g : t.segments) {
      std::cout << "  " << Num(g.start) << "-" << Num(g.end) << "  " << FormatParams(g.params)
                << "  " << (g.value.has_value() ? Num(*g.value) : "-")
                << (g.parent_trial_id.empty() ? ""
                                              : absl::StrCat("  from ", g.parent_trial_id, " at ",
                                                             Num(g.parent_resource)))
                << (g.ended_unix_ms == 0 ? "  (now)" : "") << "\n";
    }
  }
  if (t.attempts.size() > 1 || (t.attempts.size() == 1 && !t.attempts[0].message.empty())) {
    std::cout << "attempts\n";
    for (const Attempt& a : t.attempts) {
      const std::string where = a.worker_id.empty() ? a.client_id : a.worker_id;
      std::cout << "  " << a.attempt << "  " << (where.empty() ? "-" : where) << "  "
                << Time(a.started_unix_ms) << "  " << (a.ended_unix_ms == 0 ? "running" : a.outcome)
                << (a.message.empty()
                        ? ""
                        : absl::StrCat(": ", a.message.substr(0, a.message.find('\n'))))
                << "\n";
    }
  }
}

void PrintExperiment(const Experiment& e, const std::vector<Trial>& trials) {
  std::cout << "experiment  " << e.id << " (" << e.name << ")\n"
            << "state       " << e.state << (e.message.empty() ? "" : absl::StrCat(": ", e.message))
            << "\n";
  if (!e.unschedulable.empty()) std::cout << "cannot run  " << e.unschedulable << "\n";
  std::cout << "objective   " << Objectives(e) << "\n"
            << "algorithm   " << e.algorithm.name << " (seed " << e.algorithm.seed << ")\n"
            << "budget      " << e.max_trials << " trials, " << e.max_concurrent << " at once\n"
            << "progress    " << Progress(e) << "\n"
            << "created     " << Time(e.created_unix_ms) << "\n";
  for (const Constraint& c : e.constraints) {
    std::cout << "constraint  " << c.metric
              << (c.min.has_value() ? absl::StrCat(" >= ", Num(*c.min)) : "")
              << (c.max.has_value() ? absl::StrCat(" <= ", Num(*c.max)) : "") << "\n";
  }
  if (e.best_value.has_value()) {
    for (const Trial& t : trials) {
      if (t.id == e.best_trial_id) std::cout << "best params " << FormatParams(t.params) << "\n";
    }
  }
  bool header = false;
  for (const Trial& t : trials) {
    if (t.state != "failed" && t.failures == 0) continue;
    if (!header) std::cout << "failures:\n";
    header = true;
    std::cout << "  " << t.id << " (" << t.state << ", " << t.failures
              << " failed attempts): " << t.message << "\n";
  }
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  return absl::StrCat("\"", absl::StrReplaceAll(s, {{"\"", "\"\""}}), "\"");
}

std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '<':
        out += "\\u003c";
        break;
      case '>':
        out += "\\u003e";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else if (c == 0xe2 && i + 2 < s.size() && s[i + 1] == '\x80' &&
                   (s[i + 2] == '\xa8' || s[i + 2] == '\xa9')) {
          out += s[i + 2] == '\xa8' ? "\\u2028" : "\\u2029";  // line and paragraph separators
          i += 2;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string JsonNumber(double v) {
  std::string text = absl::StrFormat("%.15g", v);
  if (std::strtod(text.c_str(), nullptr) != v) text = absl::StrFormat("%.17g", v);
  return text;
}

std::string JsonList(const std::string& field, const std::vector<std::string>& items) {
  if (items.empty()) return "{}";
  return absl::StrCat("{", JsonQuote(field), ":[", absl::StrJoin(items, ","), "]}");
}

std::string IndentJson(std::string_view compact) {
  std::string out;
  int depth = 0;
  auto newline = [&] { out.append("\n").append(static_cast<size_t>(depth), ' '); };
  for (size_t i = 0; i < compact.size(); ++i) {
    const char c = compact[i];
    if (c == '"') {  // a string, escapes and all, through its closing quote
      size_t end = i + 1;
      while (end < compact.size() && compact[end] != '"') end += compact[end] == '\\' ? 2 : 1;
      out.append(compact.substr(i, end - i + 1));
      i = end;
    } else if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      out += c;
      if (i + 1 < compact.size() && compact[i + 1] == close) {
        out += close;
        ++i;
      } else {
        ++depth;
        newline();
      }
    } else if (c == '}' || c == ']') {
      --depth;
      newline();
      out += c;
    } else if (c == ',') {
      out += c;
      newline();
    } else if (c == ':') {
      out += ": ";
    } else {
      out += c;
    }
  }
  return out + "\n";
}

}  // namespace rung::cli

namespace rung::cli {

namespace {

std::string ParamsJson(const std::map<std::string, ParamValue>& params) {
  std::vector<std::string> fields;
  for (const auto& [k, v] : params) {
    std::string value;
    if (const double* d = std::get_if<double>(&v)) {
      value = JsonNumber(*d);
    } else if (const int64_t* i = std::get_if<int64_t>(&v)) {
      value = absl::StrCat(*i);
    } else {
      value = JsonQuote(std::get<std::string>(v));
    }
    fields.push_back(absl::StrCat(JsonQuote(k), ":", value));
  }
  return absl::StrCat("{", absl::StrJoin(fields, ","), "}");
}

}  // namespace

std::string LineageText(const std::vector<LineageStep>& steps) {
  // Consecutive segments of one member make one stretch.
  std::vector<std::string> parts;
  for (size_t i = 0; i < steps.size(); ++i) {
    size_t j = i;
    while (j + 1 < steps.size() && steps[j + 1].trial_id == steps[i].trial_id &&
           steps[j + 1].segment.parent_trial_id.empty()) {
      ++j;
    }
    parts.push_back(absl::StrCat(steps[i].trial_id, " ", Num(steps[i].segment.start), "-",
                                 Num(steps[j].segment.end)));
    i = j;
  }
  return absl::StrJoin(parts, " | ");
}

void PrintLineage(const Experiment& e, const std::string& trial_id,
                  const std::vector<LineageStep>& steps) {
  std::set<std::string> members;
  int exploits = 0;
  for (const LineageStep& s : steps) {
    members.insert(s.trial_id);
    exploits += !s.segment.parent_trial_id.empty();
  }
  const std::string metric = e.objectives.empty() ? "value" : e.objectives[0].metric;
  std::cout << "lineage of " << trial_id << ": " << steps.size() << " segments trained by "
            << members.size() << (members.size() == 1 ? " member" : " members") << ", " << exploits
            << (exploits == 1 ? " exploit" : " exploits") << "\n";
  std::printf("%-13s %-11s %-12s %s\n", absl::AsciiStrToUpper(e.resource_metric).c_str(),
              "TRAINED BY", absl::AsciiStrToUpper(metric).c_str(), "PARAMS");
  for (const LineageStep& s : steps) {
    const Segment& g = s.segment;
    std::printf("%-13s %-11s %-12s %s%s\n", absl::StrCat(Num(g.start), "-", Num(g.end)).c_str(),
                s.trial_id.c_str(), g.value.has_value() ? Num(*g.value).c_str() : "-",
                FormatParams(g.params).c_str(),
                g.parent_trial_id.empty()
                    ? ""
                    : absl::StrCat("  (took ", g.parent_trial_id, "'s checkpoint at ",
                                   Num(g.parent_resource), ")")
                          .c_str());
  }
}

std::string LineageJson(const std::string& trial_id, const std::vector<LineageStep>& steps) {
  std::vector<std::string> items;
  for (const LineageStep& s : steps) {
    const Segment& g = s.segment;
    std::vector<std::string> f = {
        absl::StrCat("\"trial_id\":", JsonQuote(s.trial_id)),
        absl::StrCat("\"start\":", JsonNumber(g.start)),
        absl::StrCat("\"end\":", JsonNumber(g.end)),
        absl::StrCat("\"params\":", ParamsJson(g.params)),
    };
    if (!g.parent_trial_id.empty()) {
      f.push_back(absl::StrCat("\"parent_trial_id\":", JsonQuote(g.parent_trial_id)));
      f.push_back(absl::StrCat("\"parent_resource\":", JsonNumber(g.parent_resource)));
    }
    if (g.value.has_value()) f.push_back(absl::StrCat("\"value\":", JsonNumber(*g.value)));
    items.push_back(absl::StrCat("{", absl::StrJoin(f, ","), "}"));
  }
  return absl::StrCat("{\"trial_id\":", JsonQuote(trial_id), ",\"segments\":[",
                      absl::StrJoin(items, ","), "]}");
}

}  // namespace rung::cli
