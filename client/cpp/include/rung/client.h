// rung's C++ client: submit and watch experiments, and run trials yourself (ask and tell).
//
//   rung::ClientOptions o;
//   o.address = "127.0.0.1:7411";
//   auto c = rung::Client::Connect(o);
//   auto exp = (*c)->CreateExperimentFromFile("spec.yaml");
//   for (const rung::Trial& t : *(*c)->Suggest(exp->id, 2, "laptop")) {
//     bool stop = *(*c)->Report(t.id, 1, {{"loss", 0.9}});   // true when rung says stop
//     (*c)->Complete(t.id, {{"loss", 0.5}});
//   }
//
// The header needs only the standard library and Abseil's status types; gRPC and the
// generated protocol code stay inside the library. CMake: find_package(rung) and link
// rung::client. Errors are rungd's own words (NOT_FOUND: no experiment e9, ...). A Client
// is safe to use from several threads.
//
// Every struct that comes from one of rungd's messages keeps that message whole in
// `proto_bytes` (protobuf's wire format of the rung.v1 message named beside it), and Json()
// gives protobuf's JSON mapping of it (field names as in the .proto, compact), so a program
// can show or store every field, including those the struct does not copy, without
// compiling the protocol. Bytes rather than JSON text: a serialisation costs little on the
// ask-and-tell path, and the JSON is made only when someone asks for it.
#ifndef RUNG_CLIENT_H_
#define RUNG_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rung {

struct ClientOptions {
  std::string address = "127.0.0.1:7411";
  std::string token;            // sent as "authorization: Bearer TOKEN"
  std::string ca_file;          // TLS, trusting this CA (plaintext when empty)
  std::string cert_file;        // a client certificate, for mutual TLS
  std::string key_file;         // its private key
  double timeout_seconds = 30;  // per call (ReplaySearch and Backup take their own)
  // How long a call that is safe to repeat is retried while rungd is unreachable or restarting
  // (0: never). The retry waits for the connection to come back (reconnect attempts at most
  // about a second apart), so a retried call gets through within about a second of rungd
  // serving again.
  double retry_seconds = 60;
};

// Fills the fields of `options` that are still empty from RUNG_TOKEN, RUNG_CA, RUNG_CERT and
// RUNG_KEY, as the rung CLI and rung-worker do.
void FillFromEnvironment(ClientOptions* options);

// True when `status` (from a Client call) says that rungd could not be reached (no
// connection, or no answer within the call's timeout), rather than that rungd refused the
// call. Its message then reads "cannot reach rungd at ADDRESS (gRPC's words)".
bool IsUnreachable(const absl::Status& status);

// A parameter's value: float, int or categorical.
using ParamValue = std::variant<double, int64_t, std::string>;

struct Objective {
  std::string metric;
  std::string goal;  // minimize | maximize
};

// A bound on a trial's last reported value of `metric`.
struct Constraint {
  std::string metric;
  std::optional<double> min, max;
};

struct Algorithm {
  std::string name;  // random, grid, tpe, gp, asha, hyperband, bohb, pbt, pb2; ablation for a study
  uint64_t seed = 0;
  std::map<std::string, std::string> options;  // the algorithm's own settings, defaults filled in
};

// rung.v1.Experiment, with the parts of its spec that people look at.
struct Experiment {
  std::string id;
  std::string name;
  std::string kind;   // search | ablation
  std::string state;  // pending, running, paused, completed, cancelled, failed
  std::string owner;  // the name of the token that created it (empty without --auth-tokens)
  std::vector<Objective> objectives;  // one, or several compared by Pareto dominance
  std::vector<Constraint> constraints;
  Algorithm algorithm;
  int max_trials = 0, max_concurrent = 0;
  std::string resource_metric;  // the reported metric that carries progress ("step" by default)
  std::vector<double>
      rung_levels;  // asha, hyperband, bohb: the rungs, lowest first, then resource.max
  std::string best_trial_id;
  std::optional<double> best_value;
  int pending = 0, running = 0, completed = 0, failed = 0, stopped = 0;
  int waiting = 0;            // trained to a rung's budget, waiting for a promotion
  std::string message;        // why it ended, when it did not complete
  std::string unschedulable;  // why no connected worker can run its trials now; empty when one can
  int64_t created_unix_ms = 0, updated_unix_ms = 0;
  std::string proto_bytes;  // rung.v1.Experiment

  bool done() const { return state == "completed" || state == "cancelled" || state == "failed"; }
  int ended() const { return completed + failed + stopped; }
  std::string Json() const;
};

// rung.v1.Trial.
// execution: hopper: one unit of a trial, a sub-epoch on one data partition.
struct Hop {
  int epoch = 0;  // 1, 2, ...
  int partition = 0;
  std::string worker_id;
  int attempt = 0;
  bool done = false;       // it trained (false: it failed or was stopped, and ran again)
  bool validated = false;  // the epoch's last unit
  int64_t started_unix_ms = 0, ended_unix_ms = 0;
};

// One attempt of a trial (rung.v1.AttemptRecord): where it ran and how it ended.
struct Attempt {
  int attempt = 0;
  std::string worker_id;  // rank 0's; empty for an ask-and-tell client
  std::string client_id;
  int64_t started_unix_ms = 0, ended_unix_ms = 0;  // ended 0: it runs
  std::string outcome;  // completed, stopped, failed, retried, paused, waiting; "" while it runs
  std::string message;  // why it failed or stopped
};

// algorithm: pbt or pb2 (rung.v1.Segment): a stretch of a member's training with one set of
// parameters, from `start` to `end` of the resource.
struct Segment {
  double start = 0, end = 0;
  std::map<std::string, ParamValue> params;
  // It exploited: it continued from this member's checkpoint at `parent_resource`, with that
  // member's parameters explored. Empty: it continued from its own (or started afresh).
  std::string parent_trial_id;
  double parent_resource = 0;
  int parent_attempt = 0;                          // the parent's attempt whose checkpoint it took
  int attempt = 0;                                 // the attempt that began it
  int64_t started_unix_ms = 0, ended_unix_ms = 0;  // ended 0: it trains or waits to
  std::optional<double> value;                     // the objective's last value in it
};

struct Trial {
  std::string id;
  std::string experiment_id;
  int index = 0;
  std::string state;  // pending, assigned, running, paused, completed, stopped, failed, waiting
  std::map<std::string, ParamValue> params;
  int attempt = 0;
  int failures = 0;                       // failed attempts so far
  std::optional<double> result;           // the (first) objective's final value
  std::vector<double> results;            // several objectives: each one's, in spec order
  std::map<std::string, double> metrics;  // the last reported values
  int64_t reports = 0;                    // reports stored, all attempts
  double last_step = 0;
  double budget = 0;                 // the resource to train up to; 0: none set
  double resource_reached = 0;       // the highest resource value reported
  std::string client_id;             // ask and tell: the client that holds it
  std::string worker_id;             // rank 0's, for a distributed trial
  std::vector<std::string> workers;  // a distributed trial: every rank's worker, node 0 first
  std::string message;               // why the latest failed attempt failed (or could not start)
  std::string stop_reason;
  std::string infeasible;                // completed: the constraints it breaks
  std::string stdout_path, stderr_path;  // on worker_id's machine
  int64_t created_unix_ms = 0, started_unix_ms = 0, ended_unix_ms = 0;
  std::string ablation;  // kind: ablation: what it leaves out, as JSON
  int64_t seed = 0;      // kind: ablation: its repeat's seed (RUNG_SEED)
  // execution: hopper: epochs trained, and every unit in order (the visiting order).
  int epoch = 0;
  std::vector<Hop> hops;
  std::vector<Attempt> attempts;  // every attempt, in order (hopper mode: see hops)
  std::vector<Segment> segments;  // pbt, pb2: every segment, in order
  std::string proto_bytes;        // rung.v1.Trial

  // The parameter as a double (an int converts); nullopt when absent or categorical.
  std::optional<double> Number(const std::string& name) const;
  std::string Json() const;
};

// rung.v1.MetricReport.
struct Report {
  std::string trial_id;
  int attempt = 0;
  double step = 0;
  std::map<std::string, double> values;
  bool final = false;
  int64_t unix_ms = 0;
  std::string proto_bytes;  // rung.v1.MetricReport

  std::string Json() const;
};

// rung.v1.GetTrialLogsResponse: where a trial's output is (on the worker's machine).
struct TrialLogs {
  std::string worker_id;
  std::string stdout_path, stderr_path;  // empty until an attempt started
  std::string stderr_tail;               // why the latest attempt failed, or could not start
  std::string proto_bytes;

  std::string Json() const;
};

// One variant of an ablation study (rung.v1.AblationVariant): the base with `dropped` left out.
struct AblationVariant {
  std::string kind;  // base | feature | layer | group | custom
  std::string name;
  std::vector<std::string> dropped;
  int runs = 0;                                  // completed runs
  std::optional<double> mean, stddev, delta, p;  // absent when too few runs
  std::optional<double> harm;                    // delta signed so that positive is worse
  std::string test;                              // "paired t", "Welch t", or "" (untested)
  bool significant = false;                      // p < alpha
  int rank = 0;  // 1: the removal that hurts most; 0: the base, or no runs
};

// rung.v1.AblationResults, as rungd computes them.
struct AblationResults {
  std::string experiment_id;
  std::string name;
  std::string state;
  std::string objective;
  std::string goal;  // minimize | maximize
  int repeats = 0;
  double alpha = 0;  // the significance level
  // The base first, then the variants by rank, then those with no completed run yet.
  std::vector<AblationVariant> variants;
  std::string proto_bytes;

  // Unlike the other structs' Json(), this one shows every field of every variant, zeros and
  // false included (the optional numbers only when known), so each row has every column.
  std::string Json() const;
};

// rung.v1.WorkerStatus: a worker and the trials on its slots now.
struct Worker {
  struct Running {
    std::string trial_id;  // empty: another user's trial
    std::string experiment_id;
    std::vector<int> slots;
  };
  std::string id;
  std::string host;
  std::string state;              // connected, disconnected, lost
  std::vector<std::string> gpus;  // each slot's GPU; "" for a CPU slot
  std::map<std::string, std::string> labels;
  std::string version;
  int64_t last_heartbeat_unix_ms = 0;
  std::vector<int> partitions;  // hopper mode's data partitions it holds
  std::vector<Running> running;
  std::string proto_bytes;  // rung.v1.WorkerStatus

  int busy() const;  // slots that trials hold
  std::string Json() const;
};

// rung.v1.ReplaySearchResponse.
struct ReplayResult {
  int64_t entries = 0;  // journal entries checked
  bool identical = false;
  std::string mismatch;  // the first entry that differs, and how
  std::string proto_bytes;

  std::string Json() const;
};

// rung.v1.BackupResponse.
struct BackupResult {
  std::string dir;
  int files = 0;
  int64_t bytes = 0;
  std::string proto_bytes;

  std::string Json() const;
};

// The lineage of a population member's model (algorithm: pbt or pb2): every segment that
// trained the model trial `trial_id` holds now, from scratch, in order, with the member that
// trained it. When a member exploited, what its donor's model went through up to the donor's
// ready point comes first. The segments' parameters are the model's hyperparameter schedule.
struct LineageStep {
  std::string trial_id;  // the member that trained this segment
  Segment segment;
};
// NOT_FOUND when `trial_id` is not among `trials` (an experiment's, from ListTrials);
// FAILED_PRECONDITION when it has no segments (not population-based training).
absl::StatusOr<std::vector<LineageStep>> Lineage(const std::vector<Trial>& trials,
                                                 const std::string& trial_id);

// What WatchExperiment streams: the experiment, a trial, or a report changed.
using Event = std::variant<Experiment, Trial, Report>;

// ---- text, formatted as the rung CLI shows it ----
// A parameter value: the shortest decimal that reads back as the same double, the integer,
// or the category.
std::string FormatParam(const ParamValue& value);
// "lr=0.01 opt=adam": every parameter in name order.
std::string FormatParams(const std::map<std::string, ParamValue>& params);
// A trial's result with 6 significant digits: "0.31", or "loss=0.31 latency_ms=12" for an
// experiment with several objectives; "-" before it has one.
std::string FormatResult(const Experiment& experiment, const Trial& trial);

// Which trials Client::ListTrials returns, and in what order.
struct TrialQuery {
  // A metric to order by: best first for an objective, ascending for another, "-NAME"
  // reverses; trials without it last. Empty: by index.
  std::string sort;
  int limit = 0;               // at most this many (0: all)
  bool with_failures = false;  // only trials that failed or had a failed attempt
};

class Client {
 public:
  // The most YAML a spec may have (rungd refuses more); CreateExperiment checks it first.
  static constexpr size_t kMaxSpecBytes = size_t{1} << 20;

  // INVALID_ARGUMENT when a certificate file cannot be read. Connecting is lazy: an
  // unreachable rungd shows up as UNAVAILABLE on the first call.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options);
  ~Client();

  // ---- experiments ----
  // A YAML spec; a relative trial.workdir is relative to base_dir (default: the cwd).
  // INVALID_ARGUMENT ("spec: N bytes of YAML; at most 1048576") for a spec over
  // kMaxSpecBytes, before anything is sent. Not retried.
  absl::StatusOr<Experiment> CreateExperiment(const std::string& spec_yaml,
                                              const std::string& base_dir = "");
  // The same from a file, relative to its folder; NOT_FOUND ("cannot read PATH") when it
  // cannot be read.
  absl::StatusOr<Experiment> CreateExperimentFromFile(const std::string& path);
  absl::StatusOr<Experiment> GetExperiment(const std::string& id);
  absl::StatusOr<std::vector<Experiment>> ListExperiments();
  // Not retried (a repeat would answer that the experiment has already ended, or is paused).
  absl::StatusOr<Experiment> CancelExperiment(const std::string& id);
  absl::StatusOr<Experiment> PauseExperiment(const std::string& id);
  absl::StatusOr<Experiment> ResumeExperiment(const std::string& id);
  // The experiment's trials: every one in index order, or as `query` says.
  absl::StatusOr<std::vector<Trial>> ListTrials(const std::string& experiment_id,
                                                const TrialQuery& query = TrialQuery());
  absl::StatusOr<Trial> GetTrial(const std::string& trial_id);
  // Every report the trial made, all attempts, in order.
  absl::StatusOr<std::vector<rung::Report>> TrialMetrics(const std::string& trial_id);
  // Where the trial's stdout and stderr are, and why its latest attempt failed.
  absl::StatusOr<TrialLogs> GetTrialLogs(const std::string& trial_id);
  // The checkpoint rungd stores for the trial (checkpoints that travel; the best trials' are
  // kept when they end, trial.keep_checkpoints) unpacked into `dir`, which must be missing or
  // empty. Returns its size in bytes; NOT_FOUND when rungd keeps none.
  absl::StatusOr<int64_t> DownloadCheckpoint(const std::string& trial_id, const std::string& dir);
  // Completed trials, best first (several objectives: the Pareto set, `count` capping it).
  absl::StatusOr<std::vector<Trial>> BestTrials(const std::string& experiment_id, int count = 1);
  // An ablation study's results; FAILED_PRECONDITION for an experiment that is a search.
  absl::StatusOr<AblationResults> Ablation(const std::string& experiment_id);
  // The workers rungd knows, with what runs on each (a user sees only its own trials there).
  absl::StatusOr<std::vector<Worker>> ListWorkers();
  // Calls `on_event` with the experiment and its trials now, then with every change, until
  // the experiment has ended and none of its trials runs (OK), or `on_event` returns false.
  // No deadline and no retry: it lasts as long as the experiment.
  absl::Status Watch(const std::string& experiment_id,
                     const std::function<bool(const Event&)>& on_event);

  // ---- ask and tell (execution: external) ----
  // Up to `count` trials for `client_id` (default: host-pid) to run: those it holds first,
  // so a retried ask never leaks trials. With `wait`, waits until one comes or the
  // experiment is done; empty means done.
  absl::StatusOr<std::vector<Trial>> Suggest(const std::string& experiment_id, int count = 1,
                                             const std::string& client_id = "", bool wait = true);
  // Reports metrics of a held trial; true when rung says stop (a stopping rule, a pause, a
  // cancel, or the trial is no longer this client's). client_id: default, the one that asked.
  absl::StatusOr<bool> Report(const std::string& trial_id, double step,
                              const std::map<std::string, double>& values,
                              const std::string& client_id = "");
  // Completes a held trial with its final metrics (or those it reported).
  absl::StatusOr<Trial> Complete(const std::string& trial_id,
                                 const std::map<std::string, double>& values = {},
                                 const std::string& client_id = "");
  // The client could not run the trial: rung retries it while trial.max_restarts allows.
  absl::StatusOr<Trial> Fail(const std::string& trial_id, const std::string& message,
                             const std::string& client_id = "");
  // Many reports and completions of one experiment's trials in one call, for clients that run
  // many trials at once: the reports first, in order, then the completions, all durable when
  // it returns (rung's fastest way to tell). One result per item, in order: a report's says
  // whether to stop, a completion's is the trial; an item refused does not refuse the others.
  // client_id: default, the one that asked for the first item's trial.
  struct TellReport {
    std::string trial_id;
    double step = 0;
    std::map<std::string, double> values;
  };
  struct TellCompletion {
    std::string trial_id;
    std::map<std::string, double> values;  // final metrics; may be empty when reported
    bool failed = false;                   // the client could not run it (retried)
    std::string message;
  };
  struct TellResults {
    std::vector<absl::StatusOr<bool>> reports;
    std::vector<absl::StatusOr<Trial>> completions;
  };
  absl::StatusOr<TellResults> Tell(const std::string& experiment_id,
                                   const std::vector<TellReport>& reports,
                                   const std::vector<TellCompletion>& completions,
                                   const std::string& client_id = "");

  // ---- administration (an admin token when rungd checks tokens) ----
  // Replays the experiment's searcher journal through a fresh searcher; `identical` says
  // whether every recorded decision came out the same. Not retried.
  absl::StatusOr<ReplayResult> ReplaySearch(const std::string& experiment_id,
                                            double timeout_seconds = 600);
  // A consistent copy of rungd's data folder in `dir`, an absolute path on rungd's machine
  // that does not exist yet. Not retried.
  absl::StatusOr<BackupResult> Backup(const std::string& dir, double timeout_seconds = 1800);

  // The client_id used when a call names none.
  const std::string& client_id() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rung

#endif  // RUNG_CLIENT_H_
