// rung's metrics as an operator sees them: a real Prometheus server (Debian's prometheus)
// scrapes rungd and a rung-worker on loopback, loads deploy/prometheus/rung-alerts.yml, and
// the test reads the values back through Prometheus's HTTP query API. Every expression of the
// Grafana dashboard and of the alert rules must evaluate there and name metrics that rung
// exports.
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_format.h"

#include "gtest/gtest.h"
#include "tests/integration/cluster.h"

namespace rung::testing {
namespace {

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      out += absl::StrFormat("%%%02X", ch);
    }
  }
  return out;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class Prometheus {
 public:
  // Starts Prometheus with `config` (YAML) in `dir`; waits for its ready line.
  Prometheus(const TempDir& dir, const std::string& config) {
    const std::string config_path = dir.Sub("prometheus.yml"), log = dir.Sub("prometheus.log");
    std::ofstream(config_path) << config;
    SpawnOptions o;
    o.argv = {"prometheus", "--config.file=" + config_path,
              "--storage.tsdb.path=" + dir.Sub("tsdb"), "--web.listen-address=127.0.0.1:0",
              "--log.level=info"};
    o.env = CurrentEnvironment();
    o.stderr_path = log;
    o.pipe_stdout = false;
    std::ofstream(log).flush();  // exists before inotify watches it
    auto p = Subprocess::Spawn(o);
    EXPECT_TRUE(p.ok()) << p.status();
    if (p.ok()) process_ = std::move(*p);
    ready_ = !WaitForFileLine(log, "Server is ready to receive web requests.").empty();
    // level=info component=web msg="Listening on" address=127.0.0.1:PORT
    const std::string line = WaitForFileLine(log, "msg=\"Listening on\"", 1000);
    const std::string key = "address=127.0.0.1:";
    if (size_t at = line.find(key); at != std::string::npos) {
      url_ = "http://127.0.0.1:" +
             line.substr(at + key.size(),
                         line.find_first_not_of("0123456789", at + key.size()) - at - key.size());
    }
    EXPECT_TRUE(ready_ && !url_.empty()) << ReadAll(log);
  }

  bool ok() const { return ready_ && !url_.empty(); }

  // GET /api/v1/PATH as JSON.
  google::protobuf::Struct Api(const std::string& path_and_query) {
    google::protobuf::Struct s;
    const std::string body = HttpGet(url_ + "/api/v1/" + path_and_query);
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(body, &s).ok()) << body;
    return s;
  }

  // An instant query: status "success" or the error Prometheus gives.
  google::protobuf::Struct Query(const std::string& promql) {
    return Api("query?query=" + UrlEncode(promql));
  }

  // The single value of an instant query that returns one series; NaN otherwise.
  double Value(const std::string& promql) {
    auto s = Query(promql);
    const auto& result = s.fields().at("data").struct_value().fields().at("result").list_value();
    if (result.values_size() != 1) return std::nan("");
    const auto& value = result.values(0).struct_value().fields().at("value").list_value();
    return std::stod(value.values(1).string_value());
  }

  // Waits until Prometheus has scraped a value of `promql` that equals `want` (Prometheus
  // cannot say when it scrapes, so this asks again every 100 ms, for up to a minute).
  bool WaitFor(const std::string& promql, double want) {
    for (int i = 0; i < 600; ++i) {
      if (Value(promql) == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

 private:
  std::unique_ptr<Subprocess> process_;
  std::string url_;
  bool ready_ = false;
};

std::string HostPort(const std::string& url) {  // http://HOST:PORT/metrics -> HOST:PORT
  std::string rest = url.substr(strlen("http://"));
  return rest.substr(0, rest.find('/'));
}

// Every expression of the dashboard and of the alert rules evaluates in `prom` and names only
// metrics that rung exports; every alert rule is loaded and evaluated, and none fires.
void ExpectDashboardAndAlertsEvaluate(Prometheus& prom, const std::string& alerts) {
  // Every metric name the dashboard and the alerts use is one that rung exports.
  std::set<std::string> exported;
  const google::protobuf::Struct names = prom.Api("label/__name__/values");
  for (const auto& v : names.fields().at("data").list_value().values()) {
    exported.insert(v.string_value());
  }
  auto check_expr = [&](const std::string& where, const std::string& expr) {
    auto q = prom.Query(expr);
    EXPECT_EQ(q.fields().at("status").string_value(), "success") << where << ": " << expr;
    for (size_t at = 0; (at = expr.find("rung_", at)) != std::string::npos;) {
      size_t end = at;
      while (end < expr.size() &&
             (std::islower(static_cast<unsigned char>(expr[end])) || expr[end] == '_'))
        ++end;
      const std::string metric = expr.substr(at, end - at);
      EXPECT_TRUE(exported.count(metric))
          << where << " uses " << metric << ", which nothing exports";
      at = end;
    }
  };
  google::protobuf::Struct dashboard;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  ReadAll(SourceDir() + "/deploy/grafana/rung-dashboard.json"), &dashboard)
                  .ok());
  int exprs = 0;
  for (const auto& panel : dashboard.fields().at("panels").list_value().values()) {
    const auto& p = panel.struct_value().fields();
    for (const auto& target : p.at("targets").list_value().values()) {
      check_expr("dashboard panel '" + p.at("title").string_value() + "'",
                 target.struct_value().fields().at("expr").string_value());
      ++exprs;
    }
  }
  EXPECT_GE(exprs, 16);

  // The alert rules: all loaded, all evaluated without error, and none fires on a healthy cluster.
  const std::string alert_text = ReadAll(alerts);
  int declared = 0;
  for (size_t at = 0; (at = alert_text.find("- alert: ", at)) != std::string::npos; ++at)
    ++declared;
  int evaluated = 0;
  for (int i = 0; i < 600 && evaluated < declared; ++i) {
    evaluated = 0;
    const google::protobuf::Struct rules = prom.Api("rules");
    for (const auto& g :
         rules.fields().at("data").struct_value().fields().at("groups").list_value().values()) {
      for (const auto& r : g.struct_value().fields().at("rules").list_value().values()) {
        const auto& f = r.struct_value().fields();
        evaluated += f.at("health").string_value() == "ok" &&
                     f.at("lastEvaluation").string_value().rfind("0001-", 0) != 0;
      }
    }
    if (evaluated < declared) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(evaluated, declared) << "some alert rules did not evaluate";
  EXPECT_EQ(declared, 10);
  const google::protobuf::Struct rules = prom.Api("rules");
  for (const auto& g :
       rules.fields().at("data").struct_value().fields().at("groups").list_value().values()) {
    for (const auto& r : g.struct_value().fields().at("rules").list_value().values()) {
      const auto& f = r.struct_value().fields();
      check_expr("alert " + f.at("name").string_value(), f.at("query").string_value());
      EXPECT_EQ(f.at("state").string_value(), "inactive") << f.at("name").string_value();
    }
  }
}

TEST(MetricsTest, ARealPrometheusScrapesRungdAndAWorkerAndEvaluatesTheDashboardAndAlerts) {
  Cluster c;
  c.StartRungd();
  c.set_worker_flags({"--metrics-listen", "127.0.0.1:0"});
  c.StartWorker("w1", 2);
  const std::string worker_line = c.worker_line(0);
  ASSERT_NE(worker_line.find("metrics on http://"), std::string::npos) << worker_line;
  const std::string worker_url = worker_line.substr(worker_line.find("http://"));

  // A TPE experiment, one trial at a time: 2 random start-up trials, then 3 model proposals.
  const std::string spec = c.jobs_dir() + "/tpe.yaml";
  std::ofstream(spec) << absl::StrCat(R"(
name: scraped
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: -1, max: 1}, depth: {type: int, min: 1, max: 4}}
algorithm: {name: tpe, startup_trials: 2, seed: 4}
budget: {max_trials: 5, max_concurrent: 1}
trial:
  command: [/usr/bin/python3, )",
                                      SourceDir(), R"(/tests/integration/report_module.py]
  env: {STEPS: "3", STEP_SECONDS: "0"}
)");
  ASSERT_EQ(Rung(c, "submit " + spec).code, 0);
  ASSERT_EQ(Rung(c, "watch e1").code, 0);
  int64_t reports = 0;
  for (const auto& t : c.Trials("e1")) reports += t.reports();

  const std::string alerts = SourceDir() + "/deploy/prometheus/rung-alerts.yml";
  Prometheus prom(c.dir(), absl::StrCat(R"(
global: {scrape_interval: 200ms, scrape_timeout: 200ms, evaluation_interval: 200ms}
rule_files: [")",
                                        alerts, R"("]
scrape_configs:
  - job_name: rungd
    static_configs: [{targets: [")",
                                        HostPort(c.metrics_url()), R"("]}]
  - job_name: rung-worker
    static_configs: [{targets: [")",
                                        HostPort(worker_url), R"("]}]
)"));
  ASSERT_TRUE(prom.ok());
  ASSERT_TRUE(prom.WaitFor("up{job=\"rungd\"}", 1));
  ASSERT_TRUE(prom.WaitFor("up{job=\"rung-worker\"}", 1));

  // rungd's figures, as Prometheus stored them.
  EXPECT_TRUE(prom.WaitFor("rung_trials{state=\"completed\"}", 5));
  EXPECT_EQ(prom.Value("rung_experiments{state=\"completed\"}"), 1);
  EXPECT_EQ(prom.Value("rung_trials{state=\"failed\"}"), 0);
  EXPECT_EQ(prom.Value("rung_workers_connected"), 1);
  EXPECT_EQ(prom.Value("rung_slots{state=\"free\"}"), 2);
  EXPECT_EQ(prom.Value("rung_slot_utilisation"), 0);
  EXPECT_EQ(prom.Value("rung_metric_reports_received_total"), static_cast<double>(reports));
  EXPECT_EQ(prom.Value("rung_suggestions_total + rung_suggestion_fallbacks_total"), 3);
  EXPECT_EQ(prom.Value("sum(rung_suggestion_duration_seconds_count{algorithm=\"tpe\"})"),
            prom.Value("rung_suggestions_total"));
  EXPECT_EQ(
      prom.Value("rung_rpc_duration_seconds_count{method=\"ExperimentService.CreateExperiment\"}"),
      1);
  EXPECT_EQ(
      prom.Value("rung_rpcs_total{method=\"ExperimentService.CreateExperiment\",code=\"OK\"}"), 1);
  EXPECT_EQ(prom.Value("rung_lease_expirations_total"), 0);
  EXPECT_EQ(prom.Value("rung_trials_stopped_early_total"), 0);
  EXPECT_EQ(prom.Value("count(rung_build_info{version=~\".+\"})"), 1);
  EXPECT_GT(prom.Value("rung_store_size_bytes"), 0);
  // The worker's own.
  EXPECT_EQ(prom.Value("rung_worker_slots{worker=\"w1\",state=\"free\"}"), 2);
  EXPECT_EQ(prom.Value("rung_worker_connected{worker=\"w1\"}"), 1);
  EXPECT_EQ(prom.Value("rung_worker_trials_running{worker=\"w1\"}"), 0);
  EXPECT_EQ(prom.Value("rung_worker_launch_failures_total{worker=\"w1\"}"), 0);
  EXPECT_EQ(prom.Value("rung_worker_report_queue{worker=\"w1\"}"), 0);

  EXPECT_EQ(prom.Value("rung_experiments_unschedulable"), 0);
  EXPECT_EQ(prom.Value("rung_store_recoveries_total"), 0);
  ExpectDashboardAndAlertsEvaluate(prom, alerts);
}

}  // namespace
}  // namespace rung::testing
