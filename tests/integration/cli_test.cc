// The rung CLI and /metrics against a real rungd and worker.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"

namespace rung::testing {
namespace {

using ::testing::HasSubstr;

TEST(CliTest, SubmitWatchBestAndErrors) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 2);
  // Registered before anything is submitted, so that submit has nothing to warn about.
  ASSERT_FALSE(WaitForFileLine(c.dir().Sub("w1.log"), "registered with").empty());
  std::string dir = c.dir().Sub("spec");
  std::filesystem::create_directories(dir);
  WriteFile(dir + "/train.sh", "echo \"@rung {\\\"loss\\\": $1}\"\n");
  WriteFile(dir + "/good.yaml", R"(
name: cli
objective: {metric: loss, goal: minimize}
search_space:
  x: {type: int, min: 1, max: 3}
algorithm: {name: grid}
trial:
  command: [sh, train.sh, "{x}"]
  workdir: .
)");
  WriteFile(dir + "/bad.yaml", R"(
objective: {metric: loss, goal: minimize}
search_space:
  x1: {type: float, min: 10, max: -5}
budget: {max_trials: 2}
trial: {command: [sh, train.sh]}
)");

  CliRun bad = Rung(c, "submit " + dir + "/bad.yaml");
  EXPECT_EQ(bad.code, 1);
  EXPECT_THAT(bad.out, HasSubstr("search_space.x1: min (10) must be below max (-5)"));
  CliRun listed = Rung(c, "ls");
  EXPECT_EQ(listed.code, 0);
  EXPECT_THAT(listed.out, ::testing::Not(HasSubstr("e1 ")));  // nothing was stored

  CliRun submit = Rung(c, "submit " + dir + "/good.yaml");
  ASSERT_EQ(submit.code, 0) << submit.out;
  EXPECT_EQ(submit.out, "e1\n");
  CliRun watch = Rung(c, "watch e1");
  EXPECT_EQ(watch.code, 0) << watch.out;
  EXPECT_THAT(watch.out, HasSubstr("e1 completed 3/3 done: 3 completed"));
  EXPECT_THAT(watch.out, HasSubstr("best trial e1-1: loss = 1  x=1"));
  CliRun best = Rung(c, "best e1 -n 2");
  EXPECT_EQ(best.out, "e1-1  1  x=1\ne1-2  2  x=2\n");
  CliRun json = Rung(c, "-o json best e1");
  EXPECT_THAT(json.out, HasSubstr("\"id\": \"e1-1\""));
  EXPECT_THAT(json.out, HasSubstr("\"result\": 1"));
  CliRun show = Rung(c, "show e1");
  EXPECT_THAT(show.out, HasSubstr("state       completed"));
  EXPECT_THAT(show.out, HasSubstr("algorithm   grid"));
  CliRun trials = Rung(c, "trials e1");
  EXPECT_THAT(trials.out, HasSubstr("e1-3       completed  1       3"));
  CliRun logs = Rung(c, "logs e1-2");
  EXPECT_EQ(logs.code, 0);
  EXPECT_THAT(logs.out, HasSubstr("@rung {\"loss\": 2}"));

  CliRun missing = Rung(c, "show e42");
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.out, HasSubstr("rung: no experiment e42"));
  CliRun cancel = Rung(c, "cancel e1");
  EXPECT_EQ(cancel.code, 1);
  EXPECT_THAT(cancel.out, HasSubstr("has already ended"));
  CliRun nofile = Rung(c, "submit /nonexistent.yaml");
  EXPECT_THAT(nofile.out, HasSubstr("cannot read /nonexistent.yaml"));

  // /metrics is real Prometheus text with the figures of what just happened.
  std::string metrics = HttpGet(c.metrics_url());
  EXPECT_THAT(metrics, HasSubstr("rung_trials{state=\"completed\"} 3"));
  EXPECT_THAT(metrics, HasSubstr("rung_experiments{state=\"completed\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("rung_workers_connected 1"));
  EXPECT_THAT(metrics, HasSubstr("rung_slots{state=\"free\"} 2"));
  EXPECT_THAT(metrics, HasSubstr("rung_metric_reports_received_total 3"));
  EXPECT_THAT(metrics, HasSubstr("rung_rpcs_total{code=\"INVALID_ARGUMENT\",method="
                                 "\"ExperimentService.CreateExperiment\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("# TYPE rung_rpcs_total counter"));
  EXPECT_THAT(metrics, HasSubstr("rung_build_info{version=\"0.1.0\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("rung_slot_utilisation 0\n"));  // nothing runs now
  EXPECT_THAT(metrics, HasSubstr("rung_trials_stopped_early_total 0"));
  EXPECT_THAT(metrics, HasSubstr("# TYPE rung_rpc_duration_seconds histogram"));
  // Every CreateExperiment so far (2) was timed, whatever its status.
  EXPECT_THAT(
      metrics,
      HasSubstr(
          "rung_rpc_duration_seconds_count{method=\"ExperimentService.CreateExperiment\"} 2"));
  const size_t size_at = metrics.find("\nrung_store_size_bytes ");
  ASSERT_NE(size_at, std::string::npos);
  EXPECT_GT(std::stod(metrics.substr(size_at + strlen("\nrung_store_size_bytes "))), 0);
}

TEST(CliTest, StandardHealthServiceAnswersServing) {
  Cluster c;
  c.StartRungd();
  // grpc.health.v1.Health/Check with an empty request (all services); the answer
  // HealthCheckResponse{status: SERVING} is the two bytes 0x08 0x01.
  grpc::GenericStub generic(grpc::CreateChannel(c.addr(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice empty;
  grpc::ByteBuffer request(&empty, 1), response;
  absl::Notification done;
  grpc::Status status;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) {
                      status = s;
                      done.Notify();
                    });
  done.WaitForNotification();
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

TEST(RungdTest, ConfigFileSetsFlagsAndFlagsWin) {
  TempDir dir;
  WriteFile(
      dir.Sub("rungd.yaml"),
      absl::StrCat("listen: 127.0.0.1:0\nmetrics-listen: 127.0.0.1:0\nweb-listen: 127.0.0.1:0\n",
                   "data-dir: ", dir.Sub("from-config"), "\n",
                   "lease-timeout: 1m\nlog-level: warning\n"));
  SpawnOptions o;
  o.argv = {BinDir() + "/server/rungd", "--config", dir.Sub("rungd.yaml")};
  o.env = CurrentEnvironment();
  o.stderr_path = dir.Sub("err.log");
  auto p = Subprocess::Spawn(o);
  ASSERT_TRUE(p.ok());
  EXPECT_THAT(WaitForLine(p->get(), "listening on"),
              HasSubstr("data in " + dir.Sub("from-config")));
  p->reset();

  o.argv.push_back("--data-dir");
  o.argv.push_back(dir.Sub("from-flag"));
  auto q = Subprocess::Spawn(o);
  ASSERT_TRUE(q.ok());
  EXPECT_THAT(WaitForLine(q->get(), "listening on"), HasSubstr("data in " + dir.Sub("from-flag")));
  q->reset();

  WriteFile(dir.Sub("bad.yaml"), "listen: 127.0.0.1:0\nlisten-port: 7\n");
  o.argv = {BinDir() + "/server/rungd", "--config", dir.Sub("bad.yaml")};
  o.stderr_path = dir.Sub("bad.log");
  auto bad = Subprocess::Spawn(o);
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(WaitForLine(bad->get(), "listening on"), "");  // exits without serving
  bad->reset();
  std::ifstream log(dir.Sub("bad.log"));
  std::string line;
  std::getline(log, line);
  EXPECT_EQ(line, "rungd: --config " + dir.Sub("bad.yaml") + ": unknown key 'listen-port'");
}

TEST(CliTest, TheWorkerServesItsOwnMetrics) {
  Cluster c;
  c.StartRungd();
  c.set_worker_flags({"--metrics-listen", "127.0.0.1:0"});
  c.StartWorker("w1", 2);
  const std::string line = c.worker_line(0);
  ASSERT_NE(line.find("metrics on http://127.0.0.1:"), std::string::npos) << line;
  const std::string url = line.substr(line.find("http://"));
  std::string dir = c.dir().Sub("spec");
  std::filesystem::create_directories(dir);
  WriteFile(dir + "/ok.yaml", R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: int, min: 1, max: 3}}
algorithm: {name: grid}
trial: {command: [sh, -c, "echo '@rung {\"loss\": {x}}'"], workdir: .}
)");
  WriteFile(dir + "/broken.yaml", R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: categorical, values: [only]}}
algorithm: {name: grid}
trial: {command: [no-such-trainer-rung], workdir: ., max_restarts: 0}
)");
  ASSERT_EQ(Rung(c, "submit " + dir + "/ok.yaml").code, 0);
  ASSERT_EQ(Rung(c, "watch e1").code, 0);
  ASSERT_EQ(Rung(c, "submit " + dir + "/broken.yaml").code, 0);
  EXPECT_EQ(Rung(c, "watch e2").code, 1);  // failed
  // Its one attempt, where it ran and why it failed; and the worker, idle again.
  const CliRun failed = Rung(c, "show e2-1");
  EXPECT_THAT(failed.out, ::testing::ContainsRegex("attempts\n  1  w1  [0-9-]+ [0-9:]+  failed: "))
      << failed.out;
  const CliRun workers = Rung(c, "workers");
  ASSERT_EQ(workers.code, 0) << workers.out;
  EXPECT_THAT(workers.out, ::testing::ContainsRegex("\nw1 +[^ ]+ +connected +2 CPU +0 +[0-9-]+ "))
      << workers.out;
  EXPECT_THAT(Rung(c, "-o json workers").out, HasSubstr("\"id\": \"w1\""));
  const std::string metrics = HttpGet(url);
  EXPECT_THAT(metrics, HasSubstr("rung_worker_slots{worker=\"w1\",state=\"free\"} 2"));
  EXPECT_THAT(metrics, HasSubstr("rung_worker_slots{worker=\"w1\",state=\"busy\"} 0"));
  EXPECT_THAT(metrics, HasSubstr("rung_worker_trials_running{worker=\"w1\"} 0"));
  EXPECT_THAT(metrics, HasSubstr("rung_worker_launch_failures_total{worker=\"w1\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("rung_worker_connected{worker=\"w1\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("# TYPE rung_worker_report_queue gauge"));
}

TEST(CliTest, UnreachableDaemonIsAClearError) {
  Cluster c;  // nothing started: port 1 is closed
  std::string cmd = absl::StrCat(BinDir(), "/client/rung --addr 127.0.0.1:1 ls 2>&1");
  FILE* f = popen(cmd.c_str(), "r");
  char buf[512] = {0};
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  int status = pclose(f);
  EXPECT_EQ(WEXITSTATUS(status), 3);
  EXPECT_THAT(std::string(buf, n), HasSubstr("cannot reach rungd at 127.0.0.1:1"));
}

TEST(CliTest, SortedTrialsExportCompletionHelpAndExitCodes) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 2);
  std::string dir = c.dir().Sub("spec");
  std::filesystem::create_directories(dir);
  // loss = |x - 3|, and a second metric, speed = x, that is not an objective.
  WriteFile(
      dir + "/train.sh",
      "d=$(( $1 > 3 ? $1 - 3 : 3 - $1 )); echo \"@rung {\\\"loss\\\": $d, \\\"speed\\\": $1}\"\n");
  WriteFile(dir + "/grid.yaml", R"(
name: sorted
objective: {metric: loss, goal: minimize}
search_space:
  x: {type: int, min: 1, max: 5}
  opt: {type: categorical, values: ["sgd, momentum"]}
algorithm: {name: grid}
trial:
  command: [sh, train.sh, "{x}"]
  workdir: .
)");
  ASSERT_EQ(Rung(c, "submit " + dir + "/grid.yaml").code, 0);
  ASSERT_EQ(Rung(c, "watch e1").code, 0);

  // Best first for the objective; ascending for another metric; - reverses; --top cuts.
  CliRun top = Rung(c, "trials e1 --sort loss --top 2");
  EXPECT_EQ(top.code, 0) << top.out;
  EXPECT_EQ(std::count(top.out.begin(), top.out.end(), '\n'), 3) << top.out;  // header and 2 trials
  EXPECT_LT(top.out.find("e1-3 "), top.out.find("e1-2 "))
      << top.out;  // loss 0, then 1 (e1-2 before e1-4)
  CliRun speed = Rung(c, "-o json trials e1 --sort -speed --top 1");
  EXPECT_THAT(speed.out, HasSubstr("\"e1-5\""));
  EXPECT_THAT(speed.out, ::testing::Not(HasSubstr("\"e1-4\"")));

  // Export: every parameter and metric as a column; CSV quoting; JSON numbers.
  CliRun csv = Rung(c, "export e1");
  EXPECT_EQ(csv.code, 0) << csv.out;
  std::vector<std::string> lines = absl::StrSplit(csv.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 6u) << csv.out;
  EXPECT_EQ(lines[0],
            "trial,state,attempt,worker,result,param.opt,param.x,metric.loss,metric.speed");
  EXPECT_EQ(lines[3], "e1-3,completed,1,w1,0,\"sgd, momentum\",3,0,3");
  CliRun json = Rung(c, "export e1 --format json");
  google::protobuf::ListValue list;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &list).ok()) << json.out;
  ASSERT_EQ(list.values_size(), 5);
  EXPECT_EQ(list.values(4).struct_value().fields().at("metric.speed").number_value(), 5);
  EXPECT_EQ(list.values(4).struct_value().fields().at("param.opt").string_value(), "sgd, momentum");

  // Completion, help with examples, and one exit code per kind of outcome.
  CliRun completion = Rung(c, "completion bash");
  EXPECT_EQ(completion.code, 0);
  EXPECT_THAT(completion.out, HasSubstr("complete -o default -F _rung rung"));
  EXPECT_THAT(completion.out, HasSubstr("trials) words=\"--help --sort --top\""));
  WriteFile(dir + "/completion.bash", completion.out);
  EXPECT_EQ(
      system(
          ("bash -c 'source " + dir + "/completion.bash && complete -p rung' >/dev/null").c_str()),
      0);
  for (const char* cmd :
       {"submit", "trials", "export", "watch", "best", "cancel", "logs", "admin backup"}) {
    CliRun help = Rung(c, absl::StrCat(cmd, " --help"));
    EXPECT_EQ(help.code, 0) << cmd;
    EXPECT_THAT(help.out, HasSubstr("Example:\n  rung ")) << cmd;
  }
  // On a terminal (script gives it one), watch redraws a live table of the running trials.
  WriteFile(dir + "/slow.yaml", R"(
name: slow
objective: {metric: loss, goal: minimize}
search_space: {x: {type: int, min: 1, max: 4}}
algorithm: {name: grid}
trial: {command: [sh, -c, "sleep 0.5; echo '@rung {\"loss\": {x}}'"], workdir: .}
)");
  ASSERT_EQ(Rung(c, "submit " + dir + "/slow.yaml").code, 0);
  const std::string tty = absl::StrCat("script -qec '", BinDir(), "/client/rung --addr ", c.addr(),
                                       " watch e2' /dev/null");
  FILE* f = popen(tty.c_str(), "r");
  std::string screen;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), f)) > 0;) screen.append(buf, n);
  EXPECT_EQ(WEXITSTATUS(pclose(f)), 0) << screen;
  EXPECT_THAT(screen, HasSubstr("\033[J"));            // frames drawn in place
  EXPECT_THAT(screen, HasSubstr("TRIAL      STATE"));  // with the running trials' table
  EXPECT_THAT(screen, HasSubstr("completed 4/4"));

  EXPECT_EQ(Rung(c, "trials").code, 2);                  // usage: ID missing
  EXPECT_EQ(Rung(c, "export e1 --format xml").code, 2);  // usage: bad value
  EXPECT_EQ(Rung(c, "show e9").code, 1);                 // rungd: no such experiment
  EXPECT_EQ(Rung(c, "ls").code, 0);
}

TEST(CliTest, LogsOfATrialThatCouldNotStartSayWhy) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 1);
  const std::string spec = c.jobs_dir() + "/broken.yaml";
  WriteFile(spec, R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: categorical, values: [only]}}
algorithm: {name: grid}
trial: {command: [no-such-trainer-rung], workdir: ., max_restarts: 0}
)");
  ASSERT_EQ(Rung(c, "submit " + spec).code, 0);
  EXPECT_EQ(Rung(c, "watch e1").code, 1);  // failed
  CliRun logs = Rung(c, "logs e1-1");
  EXPECT_EQ(logs.code, 1) << logs.out;
  // rungd's reason, not "has not started yet".
  EXPECT_THAT(logs.out,
              HasSubstr("rung: trial e1-1 never started, so it has no logs: could not start: "
                        "no-such-trainer-rung"));
  EXPECT_THAT(logs.out, HasSubstr("No such file or directory"));
  EXPECT_THAT(logs.out, ::testing::Not(HasSubstr("has not started yet")));
}

TEST(CliTest, ASpecOverTheSizeLimitIsRefusedBeforeItIsSent) {
  Cluster c;
  c.StartRungd();
  const std::string spec = c.jobs_dir() + "/big.yaml";
  // A valid spec padded with a comment: 1 byte over the limit, and 5 MiB (over gRPC's
  // default message size, which rungd would have refused with "Received message larger
  // than max").
  const std::string head =
      "objective: {metric: loss, goal: minimize}\nsearch_space: {x: {type: int, min: 1, max: 2}}\n"
      "algorithm: {name: grid}\ntrial: {command: [\"true\"]}\n# ";
  for (size_t size : {size_t{1048577}, size_t{5} << 20}) {
    WriteFile(spec, head + std::string(size - head.size() - 1, 'x') + "\n");
    ASSERT_EQ(std::filesystem::file_size(spec), size);
    CliRun submit = Rung(c, "submit " + spec);
    EXPECT_EQ(submit.code, 1) << submit.out;
    EXPECT_EQ(submit.out,
              absl::StrCat("rung: ", spec, ": spec: ", size, " bytes of YAML; at most 1048576\n"));
  }
  // rungd never saw them.
  EXPECT_THAT(HttpGet(c.metrics_url()),
              ::testing::Not(HasSubstr("ExperimentService.CreateExperiment")));
  // One byte less goes through to rungd.
  WriteFile(spec, head + std::string(1048576 - head.size() - 1, 'x') + "\n");
  CliRun ok = Rung(c, "submit " + spec);
  EXPECT_EQ(ok.code, 0) << ok.out.substr(0, 300);
}

TEST(CliTest, GlobalFlagsGoBeforeOrAfterTheCommand) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 2);
  const std::string spec = c.jobs_dir() + "/grid.yaml";
  WriteFile(spec, R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: int, min: 1, max: 2}}
algorithm: {name: grid}
trial: {command: [sh, -c, "echo '@rung {\"loss\": {x}}'"], workdir: .}
)");
  const std::string rung = BinDir() + "/client/rung";
  // No flag before the command at all.
  ASSERT_EQ(Sh(absl::StrCat(rung, " submit ", spec, " --addr ", c.addr())).code, 0);
  ASSERT_EQ(Sh(absl::StrCat(rung, " watch e1 --addr=", c.addr())).code, 0);
  CliRun show = Sh(absl::StrCat(rung, " show e1 -o json --addr ", c.addr()));
  EXPECT_EQ(show.code, 0) << show.out;
  EXPECT_THAT(show.out, HasSubstr("\"id\": \"e1\""));
  EXPECT_THAT(show.out, HasSubstr("\"state\": \"EXPERIMENT_COMPLETED\""));
  CliRun trials = Rung(c, "trials e1 --sort loss --output json --top 1");
  EXPECT_EQ(trials.code, 0) << trials.out;
  EXPECT_THAT(trials.out, HasSubstr("\"id\": \"e1-1\""));
  EXPECT_THAT(trials.out, ::testing::Not(HasSubstr("\"id\": \"e1-2\"")));
  CliRun replay = Rung(c, "admin replay e1 -o json");
  EXPECT_EQ(replay.code, 0) << replay.out;
  EXPECT_THAT(replay.out, HasSubstr("\"identical\": true"));
  // After the command the flags mean what they mean before it: a wrong address is
  // unreachable, a bad value is bad usage.
  EXPECT_EQ(Sh(absl::StrCat(rung, " ls --addr 127.0.0.1:1")).code, 3);
  EXPECT_EQ(Rung(c, "show e1 -o xml").code, 2);
  EXPECT_EQ(Rung(c, "show e1 --no-such-flag").code, 2);
}

TEST(CliTest, ASpecNoConnectedWorkerCanRunSaysWhyAtOnce) {
  // A trial that asks for two GPUs, on a cluster whose only worker has none: it would wait
  // forever. submit warns, show and -o json say why, /metrics counts it for the alert.
  Cluster c;
  c.StartRungd();
  c.StartWorker("cpu-only", 2);
  ASSERT_FALSE(WaitForFileLine(c.dir().Sub("cpu-only.log"), "registered with").empty());
  const std::string dir = c.dir().Sub("spec");
  std::filesystem::create_directories(dir);
  WriteFile(dir + "/gpus.yaml", R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
budget: {max_trials: 2}
resources: {gpus: 2}
trial: {command: [python3, train.py]}
)");
  const std::string why = "no connected worker has 2 GPUs; the largest has none";
  CliRun submit = Rung(c, "submit " + dir + "/gpus.yaml");
  EXPECT_EQ(submit.code, 0) << submit.out;
  EXPECT_EQ(submit.out, "rung: warning: e1 cannot run yet: " + why + "\ne1\n");
  CliRun show = Rung(c, "show e1");
  EXPECT_THAT(show.out, HasSubstr("cannot run  " + why));
  EXPECT_THAT(Rung(c, "show e1 -o json").out, HasSubstr("\"unschedulable\": \"" + why + "\""));
  EXPECT_THAT(HttpGet(c.metrics_url()), HasSubstr("rung_experiments_unschedulable 1"));
  EXPECT_FALSE(WaitForFileLine(c.rungd_log(), "experiment e1 waits: " + why).empty());
  // Its trials stay pending and none is lost; a cancel ends it and the count goes back.
  EXPECT_EQ(c.Trials("e1").size(), 0u);
  ASSERT_EQ(Rung(c, "cancel e1").code, 0);
  EXPECT_THAT(HttpGet(c.metrics_url()), HasSubstr("rung_experiments_unschedulable 0"));
}

}  // namespace
}  // namespace rung::testing
