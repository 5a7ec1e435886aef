// TLS, mutual TLS, bearer tokens with roles and /metrics basic auth on a real rungd, worker
// and CLI. The certificates are made with openssl when the test runs.
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rung/v1/admin_service.grpc.pb.h"
#include "tests/integration/cluster.h"

namespace rung::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string QuickSpec(const std::string& name) {
  return absl::StrCat(R"(
name: )",
                      name, R"spec(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
algorithm: {name: random, seed: 1}
budget: {max_trials: 2, max_concurrent: 2}
trial:
  command: [/usr/bin/python3, -c, "import os, json; x = json.loads(os.environ['RUNG_PARAMS'])['x']; print('@rung', json.dumps({'loss': x}))"]
)spec");
}

TEST(SecurityTest, TlsAndTokensLetInOnlyWhoMayAndRefusalsChangeNothing) {
  Cluster c;
  const std::string d = c.dir().path();
  MakeCertificates(d);
  WriteFile(d + "/tokens",
            absl::StrCat("# rung tokens\n", kAdmin, " root admin\n", kAlice, " alice user\n", kBob,
                         " bob user   # a comment\n\n", kWorker, " gpu-node worker\n"));
  c.set_rungd_flags({"--tls-cert", d + "/server.pem", "--tls-key", d + "/server.key",
                     "--auth-tokens", d + "/tokens"});
  ConnectOptions admin;
  admin.ca_file = d + "/ca.pem";
  admin.token = kAdmin;
  c.set_connect(admin);
  c.StartRungd();
  WriteFile(d + "/spec.yaml", QuickSpec("alice-exp"));
  const std::string tls = absl::StrCat("--ca ", d, "/ca.pem ");
  auto as = [&](const char* token) { return absl::StrCat(tls, "--token ", token, " "); };

  // Plaintext cannot talk to a TLS server; a CA that did not sign it is not trusted.
  CliRun plain = Rung(c, absl::StrCat("--token ", kAlice, " ls"));
  EXPECT_EQ(plain.code, 3);  // unreachable: no TLS session
  EXPECT_THAT(plain.out, HasSubstr("cannot reach rungd"));
  CliRun stranger = Rung(c, absl::StrCat("--ca ", d, "/other-ca.pem --token ", kAlice, " ls"));
  EXPECT_EQ(stranger.code, 3);  // unreachable: no TLS session
  EXPECT_THAT(stranger.out, HasSubstr("cannot reach rungd"));
  // No token, a wrong token: UNAUTHENTICATED, and nothing is created.
  CliRun none = Rung(c, tls + "submit " + d + "/spec.yaml");
  EXPECT_EQ(none.code, 1);
  EXPECT_THAT(none.out, HasSubstr("ExperimentService.CreateExperiment: no bearer token"));
  CliRun wrong = Rung(c, as("not-a-token-at-all-0000") + "submit " + d + "/spec.yaml");
  EXPECT_EQ(wrong.code, 1);
  EXPECT_THAT(wrong.out, HasSubstr("unknown token"));
  CliRun worker_ls = Rung(c, as(kWorker) + "ls");
  EXPECT_EQ(worker_ls.code, 1);
  EXPECT_THAT(worker_ls.out, HasSubstr("gpu-node has role worker, which may not call it"));
  CliRun empty = Rung(c, as(kAdmin) + "-o json ls");
  EXPECT_EQ(empty.code, 0) << empty.out;
  EXPECT_THAT(empty.out, Not(HasSubstr("\"id\"")));

  // alice creates; bob can neither see nor touch it; a user may not use admin calls.
  CliRun submitted = Rung(c, as(kAlice) + "submit " + d + "/spec.yaml");
  ASSERT_EQ(submitted.code, 0) << submitted.out;
  // No worker is connected yet: submit says so on stderr, and prints the id last.
  EXPECT_THAT(submitted.out, HasSubstr("cannot run yet: no worker is connected"));
  const std::string id(absl::StripAsciiWhitespace(
      submitted.out.substr(submitted.out.rfind('\n', submitted.out.size() - 2) + 1)));
  EXPECT_THAT(Rung(c, as(kAlice) + "ls").out, HasSubstr("alice-exp"));
  EXPECT_THAT(Rung(c, as(kBob) + "ls").out, Not(HasSubstr("alice-exp")));
  // Someone else's experiment gets the very answer a missing one gets: bob cannot tell which
  // ids exist.
  CliRun bob_show = Rung(c, as(kBob) + "show " + id);
  EXPECT_EQ(bob_show.code, 1);
  CliRun bob_missing = Rung(c, as(kBob) + "show e999");
  EXPECT_EQ(bob_missing.code, 1);
  EXPECT_EQ(bob_show.out, "rung: no experiment " + id + "\n");
  EXPECT_EQ(bob_missing.out, "rung: no experiment e999\n");
  CliRun bob_trial = Rung(c, as(kBob) + "show " + id + "-1");
  EXPECT_EQ(bob_trial.out, "rung: no trial " + id + "-1\n");
  EXPECT_EQ(Rung(c, as(kBob) + "show e999-1").out, "rung: no trial e999-1\n");
  CliRun bob_cancel = Rung(c, as(kBob) + "cancel " + id);
  EXPECT_EQ(bob_cancel.code, 1);
  EXPECT_EQ(bob_cancel.out, "rung: no experiment " + id + "\n");
  // Nor can bob build on alice's experiment (a warm start from it), or learn that it exists.
  auto warm = [&](const std::string& from) {
    std::string spec = QuickSpec("bob-warm");
    spec.replace(spec.find("{name: random, seed: 1}"), 23,
                 "{name: tpe, seed: 1, warm_start: [" + from + "]}");
    WriteFile(d + "/warm.yaml", spec);
    return Rung(c, as(kBob) + "submit " + d + "/warm.yaml").out;
  };
  EXPECT_THAT(warm(id), HasSubstr("algorithm.warm_start: no experiment " + id));
  EXPECT_THAT(warm("e999"), HasSubstr("algorithm.warm_start: no experiment e999"));
  CliRun alice_backup = Rung(c, as(kAlice) + "admin backup " + d + "/backup");
  EXPECT_EQ(alice_backup.code, 1);
  EXPECT_THAT(alice_backup.out,
              HasSubstr("alice has role user, which may not call it (it needs admin)"));
  EXPECT_FALSE(std::filesystem::exists(d + "/backup"));

  // A worker with a user's token is refused; with the worker token it runs alice's trials.
  c.set_worker_flags({"--ca", d + "/ca.pem", "--token", kAlice});
  c.StartWorker("impostor", 1);
  EXPECT_THAT(WaitForFileLine(c.dir().Sub("impostor.log"), "controller refused the stream"),
              HasSubstr("WorkerService.Connect: alice has role user"));
  // Refused for good: it exits with rungd's reason rather than retry for ever.
  const int impostor = c.WaitWorkerExit(0);
  EXPECT_TRUE(WIFEXITED(impostor) && WEXITSTATUS(impostor) == 1) << "status " << impostor;
  EXPECT_THAT(WaitForFileLine(c.dir().Sub("impostor.log"), "rung-worker: rungd at", 1000),
              HasSubstr("refused this worker: WorkerService.Connect: alice has role user"));
  c.KillWorker(0);
  c.set_worker_flags({"--ca", d + "/ca.pem", "--token", kWorker});
  c.StartWorker("gpu-node", 2);
  v1::Experiment e = c.Watch(id);
  EXPECT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();  // bob's cancel changed nothing
  EXPECT_EQ(e.owner(), "alice");
  EXPECT_EQ(e.counts().completed(), 2);
  CliRun replay = Rung(c, as(kAdmin) + "admin replay " + id);
  EXPECT_EQ(replay.code, 0) << replay.out;
}

// rungd refusing a worker's token is for good: no token or an unknown one (UNAUTHENTICATED),
// a user's token (PERMISSION_DENIED). The worker exits non-zero with rungd's reason on
// stderr; a worker with a worker token on the same rungd serves.
TEST(SecurityTest, AWorkerWhoseTokenIsRefusedExitsWithRungdsReason) {
  Cluster c;
  WriteFile(c.dir().Sub("tokens"),
            absl::StrCat(kAlice, " alice user\n", kWorker, " gpu-node worker\n"));
  c.set_rungd_flags({"--auth-tokens", c.dir().Sub("tokens")});
  ConnectOptions alice;
  alice.token = kAlice;
  c.set_connect(alice);
  c.StartRungd();
  const struct {
    const char* name;
    std::vector<std::string> flags;
    const char* reason;
  } refused[] = {
      {"stranger", {"--token", "not-a-token-at-all-0000"}, "WorkerService.Connect: unknown token"},
      {"tokenless", {}, "WorkerService.Connect: no bearer token"},
      {"alice-box", {"--token", kAlice}, "WorkerService.Connect: alice has role user"},
  };
  for (size_t i = 0; i < std::size(refused); ++i) {
    c.set_worker_flags(refused[i].flags);
    c.StartWorker(refused[i].name, 1);
    const int status = c.WaitWorkerExit(i);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1)
        << refused[i].name << ": status " << status;
    EXPECT_THAT(WaitForFileLine(c.dir().Sub(absl::StrCat(refused[i].name, ".log")),
                                "rung-worker: rungd at", 1000),
                HasSubstr(absl::StrCat("rung-worker: rungd at ", c.addr(),
                                       " refused this worker: ", refused[i].reason)))
        << refused[i].name;
  }
  c.set_worker_flags({"--token", kWorker});
  c.StartWorker("gpu-node", 2);
  auto e = c.Submit(QuickSpec("served"), c.dir().path());
  e = c.Watch(e.id());
  EXPECT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  EXPECT_EQ(c.WaitWorkerExit(std::size(refused), 0), -1)
      << "the worker with a worker token stopped";
}

TEST(SecurityTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  Cluster c;
  const std::string d = c.dir().path();
  MakeCertificates(d);
  c.set_rungd_flags({"--tls-cert", d + "/server.pem", "--tls-key", d + "/server.key", "--client-ca",
                     d + "/ca.pem"});
  ConnectOptions o;
  o.ca_file = d + "/ca.pem";
  o.cert_file = d + "/client.pem";
  o.key_file = d + "/client.key";
  c.set_connect(o);
  c.StartRungd();
  CliRun without = Rung(c, absl::StrCat("--ca ", d, "/ca.pem ls"));
  EXPECT_EQ(without.code, 3);  // unreachable: no TLS session
  EXPECT_THAT(without.out, HasSubstr("cannot reach rungd"));
  // A certificate the CA did not sign (its own CA's) is refused as well.
  CliRun selfsigned = Rung(c, absl::StrCat("--ca ", d, "/ca.pem --cert ", d, "/other-ca.pem --key ",
                                           d, "/other-ca.key ls"));
  EXPECT_EQ(selfsigned.code, 3);  // unreachable: no TLS session
  CliRun with = Rung(
      c, absl::StrCat("--ca ", d, "/ca.pem --cert ", d, "/client.pem --key ", d, "/client.key ls"));
  EXPECT_EQ(with.code, 0) << with.out;
  CliRun half = Rung(c, absl::StrCat("--ca ", d, "/ca.pem --cert ", d, "/client.pem ls"));
  EXPECT_EQ(half.code, 2);
  EXPECT_THAT(half.out, HasSubstr("--cert and --key: give both"));
  // Workers use the same flags.
  c.set_worker_flags(
      {"--ca", d + "/ca.pem", "--cert", d + "/client.pem", "--key", d + "/client.key"});
  c.StartWorker("w1", 2);
  WriteFile(d + "/spec.yaml", QuickSpec("mtls"));
  auto e = c.Submit(QuickSpec("mtls"), d);
  e = c.Watch(e.id());
  EXPECT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
}

TEST(SecurityTest, MetricsCanRequireBasicAuth) {
  Cluster c;
  WriteFile(c.dir().Sub("metrics-auth"), "prometheus:s3cret\n");
  c.set_rungd_flags({"--metrics-auth", c.dir().Sub("metrics-auth")});
  c.StartRungd();
  int status = 0;
  HttpGet(c.metrics_url(), "", &status);
  EXPECT_EQ(status, 401);
  HttpGet(c.metrics_url(), "Authorization: Basic cHJvbWV0aGV1czp3cm9uZw==\r\n",
          &status);  // prometheus:wrong
  EXPECT_EQ(status, 401);
  std::string body =
      HttpGet(c.metrics_url(), "Authorization: Basic cHJvbWV0aGV1czpzM2NyZXQ=\r\n", &status);
  EXPECT_EQ(status, 200);
  EXPECT_THAT(body, HasSubstr("rung_"));
  // Without --metrics-listen it listens on loopback only.
  FILE* f = popen((BinDir() + "/server/rungd --help").c_str(), "r");
  std::string help;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), f)) > 0;) help.append(buf, n);
  pclose(f);
  EXPECT_THAT(help, ::testing::ContainsRegex("--metrics-listen TEXT=127\\.0\\.0\\.1:9411"));
}

}  // namespace
}  // namespace rung::testing
