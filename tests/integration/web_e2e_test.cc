// The web page in a real browser: Debian's chromium, driven by playwright-core
// (tests/web/page_test.mjs), against a real rungd with TLS and tokens and two real workers
// that run an ASHA search, an ablation study and a trial that waits for the page.
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"

namespace rung::testing {
namespace {

std::string Trial(const std::string& mode) {
  return absl::StrCat("[/usr/bin/python3, ", SourceDir(),
                      "/tests/web/trial.py]\n  env: {WEB_MODE: ", mode);
}

v1::Experiment SubmitAs(Cluster& c, const char* token, const std::string& yaml) {
  v1::CreateExperimentRequest req;
  req.set_spec_yaml(yaml);
  req.set_base_dir(c.jobs_dir());
  v1::Experiment e;
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", token));
  grpc::Status s = c.stub()->CreateExperiment(&ctx, req, &e);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return e;
}

TEST(WebPageTest, ABrowserSeesCurvesParallelCoordinatesAblationsAndLiveReports) {
  Cluster c;
  const std::string d = c.dir().path();
  ASSERT_EQ(Sh(absl::StrCat("cd ", d,
                            " && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out "
                            "cert.pem -days 2 -subj /CN=localhost -addext "
                            "subjectAltName=IP:127.0.0.1,DNS:localhost"))
                .code,
            0);
  WriteFile(d + "/tokens", absl::StrCat(kAdmin, " root admin\n", kAlice, " alice user\n", kBob,
                                        " bob user\n", kWorker, " node worker\n"));
  c.set_rungd_flags(
      {"--tls-cert", d + "/cert.pem", "--tls-key", d + "/key.pem", "--auth-tokens", d + "/tokens"});
  ConnectOptions admin;
  admin.ca_file = d + "/cert.pem";
  admin.token = kAdmin;
  c.set_connect(admin);
  c.StartRungd();
  ASSERT_EQ(c.web_url().rfind("https://127.0.0.1:", 0), 0u) << c.web_url();
  c.set_worker_flags({"--ca", d + "/cert.pem", "--token", kWorker});
  c.StartWorker("w1", 3);
  c.StartWorker("w2", 3);

  const v1::Experiment asha = SubmitAs(c, kAlice,
                                       absl::StrCat(R"(
name: web-asha
objective: {metric: loss, goal: minimize}
resource: {metric: step, min: 1, max: 9}
search_space:
  x: {type: float, min: 0.1, max: 10, log: true}
  opt: {type: categorical, values: [sgd, adam]}
algorithm: {name: asha, reduction_factor: 3, seed: 5}
budget: {max_trials: 12, max_concurrent: 6}
trial:
  command: )",
                                                    Trial("curve"), "}\n"));
  const v1::Experiment ablation = SubmitAs(c, kAlice,
                                           absl::StrCat(R"(
name: web-ablation
kind: ablation
objective: {metric: loss, goal: minimize}
base:
  params: {lr: 0.01, depth: 4}
components:
  features: [floors, area]
repeats: 2
trial:
  command: [/usr/bin/python3, )",
                                                        SourceDir(),
                                                        R"(/tests/integration/ablation_trial.py]
)"));
  const std::string gate = d + "/gate";
  const v1::Experiment live = SubmitAs(c, kAlice,
                                       absl::StrCat(R"(
name: web-live
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 1, max: 2}}
algorithm: {name: random, seed: 1}
budget: {max_trials: 1}
trial:
  command: )",
                                                    Trial("gated"), ", WEB_GATE: ", gate, "}\n"));
  const v1::Experiment bobs = SubmitAs(c, kBob,
                                       absl::StrCat(R"(
name: bobs-secret
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 1, max: 2}}
algorithm: {name: random, seed: 2}
budget: {max_trials: 1}
trial:
  command: )",
                                                    Trial("curve"), "}\n"));
  const v1::Experiment pbt = SubmitAs(c, kAlice,
                                      absl::StrCat(R"(
name: web-pbt
objective: {metric: Q, goal: maximize}
resource: {metric: step, max: 16}
search_space: {h0: {type: float, min: 0, max: 1}, h1: {type: float, min: 0, max: 1}}
algorithm: {name: pbt, population: 4, interval: 4, seed: 3}
trial:
  command: [/usr/bin/python3, )",
                                                   SourceDir(), R"(/config/examples/pbt_toy.py]
)"));
  for (const v1::Experiment* e : {&asha, &ablation, &bobs, &pbt}) {
    EXPECT_EQ(c.Watch(e->id()).state(), v1::EXPERIMENT_COMPLETED) << e->id();
  }
  // The gated trial has made its first three reports, and waits.
  bool waiting = false;
  c.WatchEvents(live.id(), [&](const v1::WatchEvent& ev) {
    waiting = (ev.has_trial() && ev.trial().reports() == 3) ||
              (ev.has_report() && ev.report().step() == 3);
    return waiting;
  });
  ASSERT_TRUE(waiting) << "the gated trial never made its third report";

  // What the page must show, from the gRPC API: every ASHA trial's points, the completed ones.
  namespace pb = google::protobuf;
  pb::Struct expect;
  auto& f = *expect.mutable_fields();
  f["url"].set_string_value(c.web_url());
  f["alice"].set_string_value(kAlice);
  f["bob"].set_string_value(kBob);
  f["asha"].set_string_value(asha.id());
  f["ablation"].set_string_value(ablation.id());
  f["live"].set_string_value(live.id());
  f["bobs"].set_string_value(bobs.id());
  f["pbt"].set_string_value(pbt.id());
  f["gate"].set_string_value(gate);
  f["screenshots"].set_string_value(BinDir() + "/web-screenshots");
  pb::Struct* curves = f["curves"].mutable_struct_value();
  pb::ListValue* completed = f["completed"].mutable_list_value();
  for (const v1::Trial& t : c.Trials(asha.id())) {
    if (t.state() == v1::TRIAL_COMPLETED) completed->add_values()->set_string_value(t.id());
    pb::ListValue* points = (*curves->mutable_fields())[t.id()].mutable_list_value();
    for (const v1::MetricReport& r : c.Metrics(t.id())) {
      if (!r.values().count("loss")) continue;
      pb::ListValue* p = points->add_values()->mutable_list_value();
      p->add_values()->set_number_value(r.step());
      p->add_values()->set_number_value(r.values().at("loss"));
    }
  }
  ASSERT_GE(completed->values_size(), 1);
  // The numbers `rung ablation` prints, which the page's ablation table must show.
  const CliRun table = Sh(absl::StrCat(BinDir(), "/client/rung --addr ", c.addr(), " --ca ", d,
                                       "/cert.pem --token ", kAlice, " ablation ", ablation.id()));
  ASSERT_EQ(table.code, 0) << table.out;
  f["ablationCli"].set_string_value(table.out);
  // The best PBT member's lineage, as `rung lineage` finds it: the page must draw the same.
  const CliRun lineage =
      Sh(absl::StrCat(BinDir(), "/client/rung --addr ", c.addr(), " --ca ", d, "/cert.pem --token ",
                      kAlice, " lineage ", pbt.id(), " -o json"));
  ASSERT_EQ(lineage.code, 0) << lineage.out;
  pb::Struct lineage_json;
  ASSERT_TRUE(pb::util::JsonStringToMessage(lineage.out, &lineage_json).ok()) << lineage.out;
  f["pbtBest"].set_string_value(lineage_json.fields().at("trial_id").string_value());
  pb::ListValue* stretches = f["pbtLineage"].mutable_list_value();
  for (const auto& seg : lineage_json.fields().at("segments").list_value().values()) {
    stretches->add_values()->set_string_value(
        seg.struct_value().fields().at("trial_id").string_value());
  }
  std::string json;
  ASSERT_TRUE(pb::util::MessageToJsonString(expect, &json).ok());
  WriteFile(d + "/expect.json", json);

  // Plain HTTP on the page's port gets nothing: it speaks TLS only.
  EXPECT_EQ(Sh(absl::StrCat("curl -s -m 5 -o /dev/null -w '%{http_code}' http://",
                            c.web_url().substr(8), " ; true"))
                .out.substr(0, 3),
            "000");

  const CliRun page =
      Sh(absl::StrCat("node ", SourceDir(), "/tests/web/page_test.mjs ", d, "/expect.json"));
  EXPECT_EQ(page.code, 0) << page.out;
  std::cout << page.out;
}

// The page's port speaks TLS only, and with --client-ca it wants the CA's client certificate
// (as gRPC does); the HTTP server behind it on loopback serves nothing to anyone else.
TEST(WebPageTest, WithMutualTlsThePageWantsACertificateAndItsLoopbackServerServesNoOneElse) {
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
  const std::string curl = absl::StrCat("curl -sS -m 10 --cacert ", d, "/ca.pem ");
  const std::string cert = absl::StrCat("--cert ", d, "/client.pem --key ", d, "/client.key ");
  const CliRun without = Sh(curl + c.web_url());
  EXPECT_NE(without.code, 0) << without.out;
  EXPECT_THAT(without.out, ::testing::Not(::testing::HasSubstr("<html")));
  const CliRun page = Sh(curl + cert + c.web_url());
  EXPECT_EQ(page.code, 0) << page.out;
  EXPECT_THAT(page.out, ::testing::HasSubstr("<html"));
  const CliRun api = Sh(curl + cert + "-X POST -H 'Content-Type: application/json' -d '{}' " +
                        c.web_url() + "api/rung.v1.ExperimentService/ListExperiments");
  EXPECT_EQ(api.code, 0) << api.out;
  EXPECT_THAT(api.out, ::testing::HasSubstr("{\"experiments\":[]}"));

  // Every other port rungd listens on: gRPC, /metrics, and the page's HTTP server, which
  // answers a connection that did not come through the TLS front with 403.
  std::set<int> known = {c.port(), std::stoi(c.web_url().substr(c.web_url().rfind(':') + 1)),
                         std::stoi(c.metrics_url().substr(c.metrics_url().rfind(':') + 1))};
  int behind = 0;
  for (int port : ListeningPorts(c.rungd()->pid())) {
    if (known.count(port)) continue;
    const CliRun plain = Sh(absl::StrCat("curl -s -m 10 -w ' %{http_code}' http://127.0.0.1:", port,
                                         "/api/rung.v1.ExperimentService/ListExperiments"
                                         " -X POST -H 'Content-Type: application/json' -d '{}'"));
    EXPECT_THAT(plain.out, ::testing::HasSubstr("served over TLS only")) << port;
    EXPECT_THAT(plain.out, ::testing::EndsWith(" 403")) << port;
    ++behind;
  }
  EXPECT_EQ(behind, 1);
}

// Without tokens the page is anyone's who reaches it, so it answers only requests that name
// it by IP address or as localhost: another site's name made to point at 127.0.0.1 (DNS
// rebinding) gets nothing.
TEST(WebPageTest, WithoutTokensOnlyAnIpOrLocalhostIsAnswered) {
  Cluster c;
  c.StartRungd();
  const std::string port = c.web_url().substr(c.web_url().rfind(':') + 1);
  auto get = [&](const std::string& host) {
    return Sh(absl::StrCat("curl -s -m 10 -o /dev/null -w '%{http_code}' -H 'Host: ", host, "' ",
                           c.web_url()))
        .out;
  };
  EXPECT_EQ(get("127.0.0.1:" + port), "200");
  EXPECT_EQ(get("localhost:" + port), "200");
  EXPECT_EQ(get("[::1]:" + port), "200");
  EXPECT_EQ(get("evil.example:" + port), "403");
}

}  // namespace
}  // namespace rung::testing
