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
#ifndef RUNG_CLIENT_H_
#define RUNG_CLIENT_H_

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
  std::string token;      // sent as "authorization: Bearer TOKEN"
  std::string ca_file;    // TLS, trusting this CA (plaintext when empty)
  std::string cert_file;  // a client certificate, for mutual TLS
  std::string key_file;   // its private key
  double timeout_seconds = 30;   // per call
  double retry_seconds = 60;     // how long a call that is safe to repeat is retried while rungd is unreachable
};

// A parameter's value: float, int or categorical.
using ParamValue = std::variant<double, int64_t, std::string>;

struct Experiment {
  std::string id;
  std::string name;
  std::string state;  // pending, running, paused, completed, cancelled, failed
  std::string best_trial_id;
  std::optional<double> best_value;
  int pending = 0, running = 0, completed = 0, failed = 0, stopped = 0;
  std::string message;  // why it ended, when it did not complete
  bool done() const { return state == "completed" || state == "cancelled" || state == "failed"; }
};

struct Trial {
  std::string id;
  std::string experiment_id;
  int index = 0;
  std::string state;  // pending, running, completed, stopped, failed, paused, waiting
  std::map<std::string, ParamValue> params;
  int attempt = 0;
  std::optional<double> result;
  std::map<std::string, double> metrics;  // the last reported values
  double budget = 0;                      // the resource to train up to; 0: none set
  std::string client_id;                  // ask and tell: the client that holds it
  std::string worker_id;
  std::string message;

  // The parameter as a double (an int converts); nullopt when absent or categorical.
  std::optional<double> Number(const std::string& name) const;
};

struct Report {
  std::string trial_id;
  int attempt = 0;
  double step = 0;
  std::map<std::string, double> values;
  bool final = false;
};

// What WatchExperiment streams: the experiment, a trial, or a report changed.
using Event = std::variant<Experiment, Trial, Report>;

class Client {
 public:
  // INVALID_ARGUMENT when a certificate file cannot be read. Connecting is lazy: an
  // unreachable rungd shows up as UNAVAILABLE on the first call.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options);
  ~Client();

  // ---- experiments ----
  // A YAML spec; a relative trial.workdir is relative to base_dir (default: the cwd).
  absl::StatusOr<Experiment> CreateExperiment(const std::string& spec_yaml, const std::string& base_dir = "");
  absl::StatusOr<Experiment> CreateExperimentFromFile(const std::string& path);
  absl::StatusOr<Experiment> GetExperiment(const std::string& id);
  absl::StatusOr<std::vector<Experiment>> ListExperiments();
  absl::StatusOr<Experiment> CancelExperiment(const std::string& id);
  absl::StatusOr<Experiment> PauseExperiment(const std::string& id);
  absl::StatusOr<Experiment> ResumeExperiment(const std::string& id);
  absl::StatusOr<std::vector<Trial>> ListTrials(const std::string& experiment_id);
  // Completed trials, best first.
  absl::StatusOr<std::vector<Trial>> BestTrials(const std::string& experiment_id, int count = 1);
  // Calls `on_event` with the experiment and its trials now, then with every change, until
  // the experiment has ended and none of its trials runs (OK), or `on_event` returns false.
  absl::Status Watch(const std::string& experiment_id, const std::function<bool(const Event&)>& on_event);

  // ---- ask and tell (execution: external) ----
  // Up to `count` trials for `client_id` (default: host-pid) to run: those it holds first,
  // so a retried ask never leaks trials. With `wait`, waits until one comes or the
  // experiment is done; empty means done.
  absl::StatusOr<std::vector<Trial>> Suggest(const std::string& experiment_id, int count = 1,
                                             const std::string& client_id = "", bool wait = true);
  // Reports metrics of a held trial; true when rung says stop (a stopping rule, a pause, a
  // cancel, or the trial is no longer this client's). client_id: default, the one that asked.
  absl::StatusOr<bool> Report(const std::string& trial_id, double step, const std::map<std::string, double>& values,
                              const std::string& client_id = "");
  // Completes a held trial with its final metrics (or those it reported).
  absl::StatusOr<Trial> Complete(const std::string& trial_id, const std::map<std::string, double>& values = {},
                                 const std::string& client_id = "");
  // The client could not run the trial: rung retries it while trial.max_restarts allows.
  absl::StatusOr<Trial> Fail(const std::string& trial_id, const std::string& message,
                             const std::string& client_id = "");

  // The client_id used when a call names none.
  const std::string& client_id() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rung

#endif  // RUNG_CLIENT_H_
