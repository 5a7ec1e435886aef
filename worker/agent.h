// rung-worker's agent: one stream to the controller, trial processes, the report socket.
//
// Threads: Run() is the event loop (poll on signals, the report socket and the trials'
// stdout); the decisions are the Supervisor's (worker/supervisor.h), which the loop feeds
// and whose queued messages it writes. A second thread owns the gRPC stream (connect, read,
// reconnect as worker/reconnect.h decides) and hands what it reads to the loop. Messages
// that change state stay in an outbox until acknowledged, so a reconnect resends them;
// handling on the controller is idempotent.
#ifndef RUNG_WORKER_AGENT_H_
#define RUNG_WORKER_AGENT_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/connect.h"
#include "worker/launcher.h"

namespace rung {

struct AgentOptions {
  std::string controller = "127.0.0.1:7411";
  ConnectOptions connect;  // TLS, client certificate, token
  std::string name;        // worker id; stable across restarts
  std::string work_dir;    // trial folders, logs, the report socket
  int cpu_slots = 0;
  std::vector<std::string> gpus;  // one slot each
  std::map<std::string, std::string> labels;
  // Where the other workers of a distributed trial reach this one (its MASTER_ADDR when it
  // holds rank 0). Empty: the address this host reaches rungd from.
  std::string advertise_addr;
  // The data partitions it holds, for experiments in hopper mode (--partitions).
  std::vector<int> partitions;
  // The ports it lends distributed trials: MASTER_PORT and one per rank (TF_CONFIG).
  int ports_first = 29500;
  int ports_last = 29999;
  // A stopped trial gets this long to notice (rung.report() returns True) before SIGTERM,
  // then kill_grace before SIGKILL.
  absl::Duration stop_grace = absl::Seconds(5);
  absl::Duration kill_grace = absl::Seconds(10);
  // A runner (trial.reuse_process) idle this long ends (its stdin is closed).
  absl::Duration runner_idle_timeout = absl::Seconds(60);
  // Trials keep running while rungd is unreachable (their reports wait in memory, to be sent
  // once it is back) for this long; then the worker stops them (SIGTERM, SIGKILL after
  // kill_grace), and rungd runs them again, not counting it as their failure.
  absl::Duration orphan_timeout = absl::Hours(1);
  // rungd refusing the name (ALREADY_EXISTS: another live worker has it) is retried this
  // long, for a restarted worker whose old stream rungd has not seen close yet; then the
  // worker exits.
  absl::Duration name_clash_window = absl::Seconds(10);
};

// The world the agent works in (STYLE 3): real by default, fakes in tests.
struct AgentEnv {
  Clock* clock = Clock::Real();                         // must outlive the agent
  ProcessLauncher* launcher = ProcessLauncher::Real();  // must outlive the agent
  // Drives the reconnect jitter and the session id; 0: from std::random_device.
  uint64_t seed = 0;
};

// Figures for the worker's /metrics, updated by the agent and read from any thread.
struct AgentStats {
  std::atomic<int> slots{0};
  std::atomic<int> slots_busy{0};
  std::atomic<int> trials_running{0};
  std::atomic<int64_t> launch_failures{0};  // trial processes that could not be started
  std::atomic<int64_t> outbox{0};  // messages not yet acknowledged by rungd (the report queue)
  std::atomic<bool> connected{false};
};

class Agent {
 public:
  // Locks the work folder (FAILED_PRECONDITION naming the other worker's pid when another
  // rung-worker holds it), prepares it and the report socket. SIGCHLD, SIGINT and SIGTERM
  // must be blocked in every thread before this is called (the agent takes them with
  // signalfd).
  static absl::StatusOr<std::unique_ptr<Agent>> Create(AgentOptions options, AgentEnv env = {});
  virtual ~Agent() = default;
  // Serves until SIGINT or SIGTERM, then stops its trials and returns OK. Returns an error
  // with rungd's reason when rungd refuses the worker for good (its token: UNAUTHENTICATED
  // or PERMISSION_DENIED; its name, past name_clash_window: ALREADY_EXISTS), after stopping
  // its trials. rungd unreachable is retried for ever (trials stop past orphan_timeout).
  virtual absl::Status Run() = 0;
  virtual const AgentStats& stats() const = 0;
};

}  // namespace rung

#endif  // RUNG_WORKER_AGENT_H_
