// rung: the command-line client. It parses the command line, connects a rung::Client and
// hands over to one command (commands.h); each command is one or a few calls to rungd.
#include <cstdlib>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/commands.h"
#include "rung/client.h"

namespace {

using namespace rung::cli;  // NOLINT: the commands and exit codes

// What the command line says.
struct Args {
  std::string addr = "127.0.0.1:7411";
  std::string output = "table";
  rung::ClientOptions client;  // token and TLS files
  std::string file, id, sort, format = "csv", shell;
  int count = 0, top = 0;
};

// The subcommands, to see which one was given.
struct Commands {
  CLI::App *submit, *ls, *show, *trials, *export_cmd, *completion, *watch, *best, *ablation,
      *lineage, *logs, *checkpoint, *workers, *replay, *backup;
  std::vector<std::pair<std::string, CLI::App*>> controls;  // cancel, pause, resume
};

// The global flags. Subcommands fall through to them, so they go before or after the
// command, as with kubectl and gh: `rung -o json show e1` and `rung show e1 -o json`.
void AddGlobalFlags(CLI::App& app, Args& a) {
  app.fallthrough();
  app.add_option("--addr", a.addr, "rungd address (or RUNG_ADDR)")->capture_default_str();
  app.add_option("--token", a.client.token, "bearer token (or RUNG_TOKEN)");
  app.add_option("--ca", a.client.ca_file,
                 "PEM CA that signed rungd's certificate: connect with TLS (or RUNG_CA)");
  app.add_option("--cert", a.client.cert_file,
                 "PEM client certificate, for mutual TLS (or RUNG_CERT)");
  app.add_option("--key", a.client.key_file, "its PEM private key (or RUNG_KEY)");
  app.add_option("-o,--output", a.output, "table or json (protobuf's JSON mapping)")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
}

Commands AddCommands(CLI::App& app, Args& a) {
  Commands c;
  c.submit = app.add_subcommand("submit", "submit an experiment spec (YAML); prints its id");
  c.submit->add_option("FILE", a.file, "spec file")->required();
  c.ls = app.add_subcommand("ls", "list experiments");
  c.workers = app.add_subcommand("workers", "list the workers: slots, what runs where, heartbeats");
  c.show = app.add_subcommand("show", "show an experiment (e1) or a trial (e1-3)");
  c.show->add_option("ID", a.id)->required();
  c.trials = app.add_subcommand("trials", "list an experiment's trials");
  c.trials->add_option("ID", a.id)->required();
  c.trials->add_option(
      "--sort", a.sort,
      "order by this metric, best first for an objective, else ascending; -METRIC reverses");
  c.trials->add_option("--top", a.top, "only the first N (after --sort)")
      ->check(CLI::NonNegativeNumber);
  c.export_cmd = app.add_subcommand(
      "export", "every trial with every parameter and metric, for a spreadsheet or pandas");
  c.export_cmd->add_option("ID", a.id)->required();
  c.export_cmd->add_option("--format", a.format, "csv or json")
      ->check(CLI::IsMember({"csv", "json"}))
      ->capture_default_str();
  c.completion = app.add_subcommand("completion", "print a shell completion script");
  c.completion->add_option("SHELL", a.shell, "bash")->required()->check(CLI::IsMember({"bash"}));
  c.watch = app.add_subcommand("watch", "follow an experiment until it ends");
  c.watch->add_option("ID", a.id)->required();
  c.best = app.add_subcommand(
      "best",
      "the best completed trials within the constraints (several objectives: the Pareto set)");
  c.best->add_option("ID", a.id)->required();
  c.best->add_option("-n,--count", a.count, "how many (default: 1, or the whole Pareto set)");
  for (const char* verb : {"cancel", "pause", "resume"}) {
    auto* sub = app.add_subcommand(verb, absl::StrCat(verb, " an experiment"));
    sub->add_option("ID", a.id)->required();
    c.controls.emplace_back(verb, sub);
  }
  c.ablation = app.add_subcommand("ablation",
                                  "an ablation study's results: each variant against the base, "
                                  "ranked by how much its removal hurts");
  c.ablation->add_option("ID", a.id)->required();
  c.lineage = app.add_subcommand(
      "lineage",
      "population-based training: the lineage of a trial's model (e1-3), or the best trial's "
      "(e1): each segment, the member that trained it, and its parameters");
  c.lineage->add_option("ID", a.id)->required();
  c.checkpoint = app.add_subcommand(
      "checkpoint",
      "download the checkpoint rungd keeps for a trial (the best trials' when they end; see "
      "trial.keep_checkpoints) into DIR, a new folder");
  c.checkpoint->add_option("TRIAL_ID", a.id)->required();
  c.checkpoint->add_option("DIR", a.file)->required();
  c.logs = app.add_subcommand("logs", "print a trial's stdout and stderr");
  c.logs->add_option("TRIAL_ID", a.id)->required();
  auto* admin = app.add_subcommand("admin", "operations for whoever runs rungd");
  admin->require_subcommand(1);
  c.replay = admin->add_subcommand(
      "replay",
      "replay an experiment's searcher journal through a fresh searcher; exit 0 when every "
      "decision comes out the same (restarts and crashes changed none)");
  c.replay->add_option("ID", a.id)->required();
  c.backup = admin->add_subcommand(
      "backup",
      "copy rungd's data folder, consistently, while it serves, to DIR on rungd's machine "
      "(DIR must not exist)");
  c.backup->add_option("DIR", a.file)->required();
  return c;
}

// Examples under every command's --help.
void AddExamples(CLI::App& app, const Commands& c) {
  const std::pair<CLI::App*, const char*> examples[] = {
      {c.submit, "rung submit config/examples/quickstart.yaml"},
      {c.ls, "rung ls\n  rung -o json ls"},
      {c.workers, "rung workers\n  rung -o json workers | jq '.workers[].running'"},
      {c.show, "rung show e1\n  rung show e1-3\n  rung show e1 -o json"},
      {c.trials, "rung trials e1 --sort loss --top 10"},
      {c.export_cmd, "rung export e1 > e1.csv\n  rung export e1 --format json | jq '.[0]'"},
      {c.watch, "rung watch e1 && echo completed"},
      {c.best, "rung best e1\n  rung best e1 -n 5"},
      {c.logs, "rung logs e1-3"},
      {c.checkpoint,
       "rung checkpoint $(rung -o json best e1 | jq -r '.trials[0].id') ./best-model"},
      {c.ablation, "rung ablation e2\n  rung -o json ablation e2 | jq '.variants[1]'"},
      {c.lineage, "rung lineage e1\n  rung lineage e1-3 -o json | jq '.segments[].params'"},
      {c.replay, "rung admin replay e1"},
      {c.backup, "rung admin backup /var/backups/rung-$(date +%F)"},
      {c.completion, "source <(rung completion bash)"},
  };
  for (const auto& [cmd, text] : examples) cmd->footer(absl::StrCat("\nExample:\n  ", text));
  for (const auto& [verb, cmd] : c.controls)
    cmd->footer(absl::StrCat("\nExample:\n  rung ", verb, " e1"));
  app.footer(
      "\nGlobal flags (--addr, --token, --ca, --cert, --key, -o) go before or after the command.\n"
      "Exit codes: 0 done; 1 rungd refused or the operation failed; 2 bad usage; 3 rungd "
      "unreachable.\n"
      "Example:\n  rung submit config/examples/quickstart.yaml && rung watch e1");
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
    absl::StrAppend(&cases, "    ", sub->get_name(), ") words=\"", absl::StrJoin(words, " "),
                    "\" ;;\n");
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
)",
                      cases, R"(    *) words=")", absl::StrJoin(commands, " "), " ",
                      absl::StrJoin(globals, " "), R"(" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _rung rung
)");
}

absl::StatusOr<int> Run(const Commands& cmd, const Args& a, const Context& c) {
  if (*cmd.submit) return Submit(c, a.file);
  if (*cmd.ls) return Ls(c);
  if (*cmd.workers) return Workers(c);
  if (*cmd.show) return Show(c, a.id);
  if (*cmd.trials) return Trials(c, a.id, a.sort, a.top);
  if (*cmd.export_cmd) return Export(c, a.id, a.format);
  if (*cmd.watch) return Watch(c, a.id);
  if (*cmd.best) return Best(c, a.id, a.count);
  if (*cmd.logs) return Logs(c, a.id);
  if (*cmd.checkpoint) return Checkpoint(c, a.id, a.file);
  if (*cmd.ablation) return Ablation(c, a.id);
  if (*cmd.lineage) return LineageOf(c, a.id);
  if (*cmd.replay) return Replay(c, a.id);
  if (*cmd.backup) return Backup(c, a.file);
  for (const auto& [verb, sub] : cmd.controls) {
    if (*sub) return Control(c, verb, a.id);
  }
  return kExitFailed;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (const char* addr = std::getenv("RUNG_ADDR"); addr && *addr) a.addr = addr;
  CLI::App app{"rung: submit and watch hyperparameter-optimisation experiments"};
  app.require_subcommand(1);
  AddGlobalFlags(app, a);
  const Commands cmd = AddCommands(app, a);
  AddExamples(app, cmd);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  if (*cmd.completion) {
    std::cout << BashCompletion(app);
    return kExitOk;
  }

  a.client.address = a.addr;
  a.client.timeout_seconds = 15;
  a.client.retry_seconds = 0;  // one try: an unreachable rungd is exit code 3 at once
  rung::FillFromEnvironment(&a.client);
  auto client = rung::Client::Connect(a.client);
  if (!client.ok()) {
    std::cerr << "rung: " << client.status().message() << "\n";
    return kExitUsage;
  }
  const Context context{client->get(), a.output == "json"};
  absl::StatusOr<int> code = Run(cmd, a, context);
  if (code.ok()) return *code;
  if (rung::IsUnreachable(code.status())) {
    std::cerr << "rung: " << code.status().message()
              << "; is it running? set --addr or RUNG_ADDR\n";
    return kExitUnreachable;
  }
  std::cerr << "rung: " << code.status().message() << "\n";
  return kExitFailed;
}
