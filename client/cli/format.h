// How the rung CLI shows things: numbers, times, progress lines, the experiment and trial
// pages, sorting, CSV cells, and JSON text laid out as protobuf lays it out. Parameters,
// results and states come already formatted from the client library (rung/client.h).
#ifndef RUNG_CLIENT_CLI_FORMAT_H_
#define RUNG_CLIENT_CLI_FORMAT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rung/client.h"

namespace rung::cli {

// 6 significant digits: "0.0312", "1e+06".
std::string Num(double v);
// Local time "2024-05-01 12:00:00"; "-" for 0.
std::string Time(int64_t unix_ms);
// A failure reason on one line: its first line and, when it quotes stderr, stderr's last line.
std::string OneLine(const std::string& s);
// The worker that runs the trial, or the ask-and-tell client that holds it ("client:NAME");
// "" when neither.
std::string RunBy(const Trial& t);
// execution: hopper: the partitions the trial trained on, epoch by epoch ("0,1,3,2 | 2,0"),
// and with `workers` where ("0@w1 1@w1 | ..."); "" for a trial without units.
std::string VisitingOrder(const Trial& t, bool workers = false);
// "minimize loss", or "minimize loss, maximize accuracy".
std::string Objectives(const Experiment& e);
// "e1 running   3/10 done: 2 completed, 2 running, 1 failed, 0 stopped; best 0.31 (e1-2)"
std::string Progress(const Experiment& e);
// "epoch 1:5 3:3 9:2 27:1": how many of `trials` sit at each rung of an experiment that has
// rungs (reached that level of the resource but not the next); "" for other searches.
std::string RungCounts(const Experiment& e, const std::map<std::string, Trial>& trials);

// `rung show` of a trial and of an experiment (with its trials, for the best parameters and
// the failures).
void PrintTrial(const Trial& t);
void PrintExperiment(const Experiment& e, const std::vector<Trial>& trials);

// `rung lineage`: a member's model segment by segment, and the same as JSON
// ({"trial_id": ..., "segments": [{"trial_id", "start", "end", "params", ...}]}).
void PrintLineage(const Experiment& e, const std::string& trial_id,
                  const std::vector<LineageStep>& steps);
std::string LineageJson(const std::string& trial_id, const std::vector<LineageStep>& steps);
// "e1-1 0-4 | e1-3 4-40": the members that trained a model, and over which stretches.
std::string LineageText(const std::vector<LineageStep>& steps);

// RFC 4180: quoted when it holds a comma, a quote or a line break.
std::string CsvField(const std::string& s);

// ---- JSON text ----
// A JSON string literal, escaped as protobuf escapes it.
std::string JsonQuote(std::string_view s);
// A number as protobuf writes one: 15 significant digits when they read back the same, else 17.
std::string JsonNumber(double v);
// {"field":[items...]} from compact JSON items, or {} when there are none (protobuf leaves
// out an empty repeated field).
std::string JsonList(const std::string& field, const std::vector<std::string>& items);
// Compact JSON laid out as protobuf's JSON printer does with add_whitespace: one field per
// line, one space per level, "key": value, {} and [] when empty, a newline at the end.
std::string IndentJson(std::string_view compact);

}  // namespace rung::cli

#endif  // RUNG_CLIENT_CLI_FORMAT_H_
