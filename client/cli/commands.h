// The rung CLI's commands, each on rung::Client. A command prints its output and returns its
// exit code, or the error for main to show ("rung: MESSAGE"; exit 3 when IsUnreachable, else 1).
#ifndef RUNG_CLIENT_CLI_COMMANDS_H_
#define RUNG_CLIENT_CLI_COMMANDS_H_

#include <string>

#include "absl/status/statusor.h"
#include "rung/client.h"

namespace rung::cli {

// Exit codes, the same for every command.
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;  // rungd refused or the operation failed (not found, invalid...)
constexpr int kExitUsage = 2;   // bad command line
constexpr int kExitUnreachable = 3;  // rungd could not be reached

// What every command works with. `client` is owned by main and outlives the commands.
struct Context {
  Client* client = nullptr;
  bool json = false;  // -o json: protobuf's JSON mapping of what rungd answered
};

absl::StatusOr<int> Submit(const Context& c, const std::string& file);
absl::StatusOr<int> Ls(const Context& c);
absl::StatusOr<int> Workers(const Context& c);
// An experiment ("e1") or a trial ("e1-3").
absl::StatusOr<int> Show(const Context& c, const std::string& id);
absl::StatusOr<int> Trials(const Context& c, const std::string& id, const std::string& sort,
                           int top);
absl::StatusOr<int> Export(const Context& c, const std::string& id, const std::string& format);
absl::StatusOr<int> Best(const Context& c, const std::string& id, int count);
// verb: cancel, pause or resume.
absl::StatusOr<int> Control(const Context& c, const std::string& verb, const std::string& id);
absl::StatusOr<int> Logs(const Context& c, const std::string& trial_id);
absl::StatusOr<int> Checkpoint(const Context& c, const std::string& trial_id,
                               const std::string& dir);
absl::StatusOr<int> Ablation(const Context& c, const std::string& id);
// Population-based training: the lineage of a trial's model ("e1-3"), or of the best trial's
// ("e1"): each segment from scratch, the member that trained it and its parameters.
absl::StatusOr<int> LineageOf(const Context& c, const std::string& id);
// 0 when the replay is identical, 1 when it differs.
absl::StatusOr<int> Replay(const Context& c, const std::string& id);
absl::StatusOr<int> Backup(const Context& c, const std::string& dir);
// Follows the experiment until it ends (watch.cc); 0 when it completed, else 1.
absl::StatusOr<int> Watch(const Context& c, const std::string& id);

}  // namespace rung::cli

#endif  // RUNG_CLIENT_CLI_COMMANDS_H_
