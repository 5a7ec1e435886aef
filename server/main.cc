// rungd: the controller. Parses flags, opens the store, wires the parts, serves.
#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/connect.h"
#include "common/log.h"
#include "common/status.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/api/checkpoint_service.h"
#include "server/api/metrics.h"
#include "server/api/services.h"
#include "server/schedule/controller.h"
#include "server/store/store.h"
#include "server/web/web_server.h"
#include "yaml-cpp/yaml.h"

namespace {

std::string DefaultDataDir() {
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return absl::StrCat(x, "/rung");
  if (const char* h = std::getenv("HOME"); h && *h) return absl::StrCat(h, "/.local/share/rung");
  return "./rung-data";
}

// The flags as given, and each one's option (a --config key sets a flag not given).
struct Flags {
  std::string config_file,
      listen = "127.0.0.1:7411", data_dir = DefaultDataDir(), metrics_listen = "127.0.0.1:9411",
      web_listen = "127.0.0.1:7412", lease_timeout = "30s", heartbeat = "5s",
      suggest_deadline = "2s", reserve_after = "60s", log_level = "info", wal_sync = "0s",
      checkpoint_max = "4GiB", tls_cert, tls_key, client_ca, auth_tokens, metrics_auth;
  // --config key -> (its flag's option, its value).
  std::vector<std::pair<std::string, std::pair<CLI::Option*, std::string*>>> keys;
};

void AddFlags(CLI::App* app, Flags* f) {
  app->add_option("--config", f->config_file, "YAML file with any of the flags below as keys");
  auto add = [&](const char* name, std::string* value, const std::string& help,
                 bool show_default = true) {
    CLI::Option* o = app->add_option(absl::StrCat("--", name), *value, help);
    if (show_default) o->capture_default_str();
    f->keys.push_back({name, {o, value}});
  };
  add("listen", &f->listen, "gRPC address");
  add("data-dir", &f->data_dir, "RocksDB folder");
  add("metrics-listen", &f->metrics_listen, "Prometheus /metrics address");
  add("web-listen", &f->web_listen,
      "the web page's address (HTTPS with --tls-cert); 'off': no page");
  add("lease-timeout", &f->lease_timeout,
      "a worker silent this long loses its trials (e.g. 30s, 2m)");
  add("heartbeat-interval", &f->heartbeat, "how often workers heartbeat");
  add("suggest-deadline", &f->suggest_deadline,
      "how long tpe or gp may take to propose a trial before it is drawn at random instead");
  add("reserve-after", &f->reserve_after,
      "a distributed trial waiting this long for its ranks' slots holds the workers it needs "
      "(smaller trials stop starting there)");
  add("wal-sync", &f->wal_sync,
      "when acknowledged writes reach the disk: 'write' fsyncs each change; a duration is group "
      "commit, one "
      "fsync for every write of up to that long (0s: as soon as the previous fsync ends); either "
      "way nothing "
      "is acknowledged before it is on disk");
  add("checkpoint-max-bytes", &f->checkpoint_max,
      "the largest trial checkpoint rungd stores (checkpoints that travel between workers, under "
      "DATA-DIR/checkpoints), e.g. 500MiB, 4GiB; 0: no limit");
  add("tls-cert", &f->tls_cert, "PEM certificate (chain): serve gRPC over TLS", false);
  add("tls-key", &f->tls_key, "PEM private key of --tls-cert", false);
  add("client-ca", &f->client_ca,
      "PEM CA: require every client and worker to present a certificate it signed (mutual TLS)",
      false);
  add("auth-tokens", &f->auth_tokens,
      "token file, one 'TOKEN NAME ROLE' per line (admin|user|worker; # comments): every call "
      "needs a bearer "
      "token",
      false);
  add("metrics-auth", &f->metrics_auth,
      "file with one 'USER:PASSWORD' line: /metrics requires HTTP basic auth", false);
  add("log-level", &f->log_level, "debug|info|warning|error");
}

// The keys of --config set the flags not given on the command line.
absl::Status ApplyConfigFile(Flags* f) {
  if (f->config_file.empty()) return absl::OkStatus();
  YAML::Node cfg;
  try {
    cfg = YAML::LoadFile(f->config_file);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("--config ", f->config_file, ": ", e.what()));
  }
  if (!cfg.IsMap())
    return absl::InvalidArgumentError(
        absl::StrCat("--config ", f->config_file, ": expected a mapping"));
  for (const auto& kv : cfg) {
    const std::string key = kv.first.Scalar();
    auto it =
        std::find_if(f->keys.begin(), f->keys.end(), [&](const auto& k) { return k.first == key; });
    if (it == f->keys.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--config ", f->config_file, ": unknown key '", key, "'"));
    }
    if (it->second.first->count() == 0) *it->second.second = kv.second.Scalar();  // flags win
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Duration> PositiveDuration(const char* flag, const std::string& text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", text, "' is not a positive duration"));
  }
  return d;
}

// What the flags ask for, checked.
struct Settings {
  rung::ControllerOptions controller;
  rung::Store::Options store;
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  rung::Auth auth;
  std::string metrics_user_password;
  int64_t checkpoint_max_bytes = 0;
};

// "4GiB", "500MiB", "64KiB", "1000": bytes.
absl::StatusOr<int64_t> ParseBytes(const char* flag, const std::string& text) {
  absl::string_view v = absl::StripAsciiWhitespace(text);
  int64_t unit = 1;
  for (const auto& [suffix, size] :
       std::vector<std::pair<const char*, int64_t>>{{"KiB", int64_t{1} << 10},
                                                    {"MiB", int64_t{1} << 20},
                                                    {"GiB", int64_t{1} << 30},
                                                    {"TiB", int64_t{1} << 40}}) {
    if (absl::ConsumeSuffix(&v, suffix)) {
      unit = size;
      break;
    }
  }
  int64_t n = 0;
  if (!absl::SimpleAtoi(v, &n) || n < 0 || n > (int64_t{1} << 62) / unit) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", text, "' is not a size such as 4GiB, 500MiB or 0"));
  }
  return n * unit;
}

absl::Status CheckTimes(const Flags& f, Settings* s) {
  ASSIGN_OR_RETURN(s->controller.lease_timeout,
                   PositiveDuration("--lease-timeout", f.lease_timeout));
  absl::StatusOr<absl::Duration> heartbeat = PositiveDuration("--heartbeat-interval", f.heartbeat);
  if (!heartbeat.ok() || *heartbeat >= s->controller.lease_timeout) {
    return absl::InvalidArgumentError(
        absl::StrCat("--heartbeat-interval: '", f.heartbeat,
                     "' must be a positive duration below --lease-timeout"));
  }
  s->controller.heartbeat_interval = *heartbeat;
  ASSIGN_OR_RETURN(s->controller.suggest_deadline,
                   PositiveDuration("--suggest-deadline", f.suggest_deadline));
  ASSIGN_OR_RETURN(s->controller.reserve_after,
                   PositiveDuration("--reserve-after", f.reserve_after));
  ASSIGN_OR_RETURN(s->checkpoint_max_bytes, ParseBytes("--checkpoint-max-bytes", f.checkpoint_max));
  if (f.wal_sync == "write") {
    s->store.group_commit = false;
  } else if (!absl::ParseDuration(f.wal_sync, &s->store.group_delay) ||
             s->store.group_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--wal-sync: '", f.wal_sync, "' is neither 'write' nor a duration such as 0s or 5ms"));
  }
  return absl::OkStatus();
}

// TLS, mutual TLS, tokens, and the password of /metrics.
absl::Status CheckSecurity(const Flags& f, Settings* s) {
  if (f.tls_cert.empty() != f.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key: give both or neither");
  }
  if (!f.client_ca.empty() && f.tls_cert.empty()) {
    return absl::InvalidArgumentError("--client-ca: needs --tls-cert and --tls-key");
  }
  if (!f.tls_cert.empty()) {
    grpc::SslServerCredentialsOptions ssl(
        f.client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ASSIGN_OR_RETURN(std::string cert, rung::ReadFileFor("--tls-cert", f.tls_cert));
    ASSIGN_OR_RETURN(std::string key, rung::ReadFileFor("--tls-key", f.tls_key));
    ssl.pem_key_cert_pairs.push_back({key, cert});
    if (!f.client_ca.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_root_certs, rung::ReadFileFor("--client-ca", f.client_ca));
    }
    s->creds = grpc::SslServerCredentials(ssl);
  }
  if (!f.auth_tokens.empty()) {
    ASSIGN_OR_RETURN(s->auth, rung::Auth::FromFile(f.auth_tokens));
    if (f.tls_cert.empty()) {
      rung::Log(rung::LogLevel::kWarning,
                "--auth-tokens without --tls-cert: tokens cross the network in clear text; use TLS "
                "beyond loopback");
    }
  }
  if (!f.metrics_auth.empty()) {
    ASSIGN_OR_RETURN(std::string up, rung::ReadFileFor("--metrics-auth", f.metrics_auth));
    s->metrics_user_password = std::string(absl::StripAsciiWhitespace(up));
    if (s->metrics_user_password.find(':') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--metrics-auth ", f.metrics_auth, ": expected one line USER:PASSWORD"));
    }
  }
  return absl::OkStatus();
}

// Serves until SIGINT or SIGTERM, then shuts down promptly and says how long it took.
absl::Status Serve(const Flags& f, Settings s, const sigset_t& sigs) {
  std::error_code ec;
  std::filesystem::create_directories(f.data_dir, ec);
  if (ec)
    return absl::InvalidArgumentError(absl::StrCat("--data-dir ", f.data_dir, ": ", ec.message()));
  const absl::Time opening = absl::Now();
  ASSIGN_OR_RETURN(std::unique_ptr<rung::Store> store, rung::Store::Open(f.data_dir, s.store));
  rung::Log(rung::LogLevel::kInfo,
            absl::StrCat(
                "opened the store in ",
                absl::FormatDuration(absl::Trunc(absl::Now() - opening, absl::Milliseconds(1)))));
  ASSIGN_OR_RETURN(std::unique_ptr<rung::CheckpointFiles> checkpoints,
                   rung::CheckpointFiles::Open(absl::StrCat(f.data_dir, "/checkpoints"),
                                               s.checkpoint_max_bytes));
  s.controller.checkpoints = checkpoints.get();
  ASSIGN_OR_RETURN(std::unique_ptr<rung::Controller> controller,
                   rung::Controller::Create(store.get(), rung::Clock::Real(), s.controller));
  ASSIGN_OR_RETURN(
      std::unique_ptr<rung::ServerMetrics> metrics,
      rung::ServerMetrics::Start(f.metrics_listen, controller.get(), s.metrics_user_password));
  rung::ExperimentServiceImpl experiments(controller.get(), metrics.get(), &s.auth);
  rung::WorkerServiceImpl workers(controller.get(), metrics.get(), &s.auth);
  rung::AdminServiceImpl admin(controller.get(), metrics.get(), &s.auth);
  rung::CheckpointServiceImpl checkpoint_service(controller.get(), checkpoints.get(), metrics.get(),
                                                 &s.auth);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(f.listen, s.creds, &port);
  builder.RegisterService(&experiments);
  builder.RegisterService(&workers);
  builder.RegisterService(&admin);
  builder.RegisterService(&checkpoint_service);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(metrics->RpcTimer());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.SetMaxReceiveMessageSize(16 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0)
    return absl::UnavailableError(absl::StrCat("--listen ", f.listen, ": cannot listen"));
  // The page makes rungd's own gRPC calls, in process: the same checks, the same answers.
  std::unique_ptr<rung::web::WebServer> web;
  if (f.web_listen != "off") {
    grpc::ChannelArguments in_process;
    in_process.SetMaxReceiveMessageSize(-1);  // a big experiment's trials, in one answer
    rung::web::WebOptions page;
    page.listen = f.web_listen;
    page.tls_cert = f.tls_cert;
    page.tls_key = f.tls_key;
    page.client_ca = f.client_ca;
    page.tokens = s.auth.enabled();
    ASSIGN_OR_RETURN(web, rung::web::WebServer::Start(page, server->InProcessChannel(in_process)));
  }

  absl::Notification stop;
  std::thread ticker([&] {
    const absl::Duration every = std::min(
        {s.controller.lease_timeout / 4, s.controller.suggest_deadline / 4, absl::Seconds(1)});
    while (!stop.WaitForNotificationWithTimeout(every)) controller->Tick();
  });
  // Tests and scripts wait for this line.
  std::cout << "rungd: listening on " << f.listen.substr(0, f.listen.rfind(':')) << ":" << port
            << ", metrics on http://" << f.metrics_listen.substr(0, f.metrics_listen.rfind(':'))
            << ":" << metrics->port() << "/metrics, page on " << (web ? web->url() : "(off)")
            << ", data in " << f.data_dir << std::endl;
  rung::Log(rung::LogLevel::kInfo, absl::StrCat("ready; lease timeout ",
                                                absl::FormatDuration(s.controller.lease_timeout)));

  int sig = 0;
  sigwait(&sigs, &sig);
  const absl::Time signalled = absl::Now();
  rung::Log(rung::LogLevel::kInfo, absl::StrCat("SIG", sigabbrev_np(sig), ": shutting down"));
  stop.Notify();
  ticker.join();
  // Refuse changes, put what was written on disk and let its effects out, answer waiting
  // asks, end every watch and worker stream (workers reconnect to the next rungd).
  const rung::Controller::Ended ended =
      controller->Shutdown(absl::UnavailableError("rungd is shutting down; ask again"));
  // The page's calls are gRPC calls: they end first (its watches have ended). Like the
  // metrics server, civetweb is left to the process's end rather than waited for.
  if (web) web->Quiesce();
  (void)web.release();
  // No new calls. Every stream has been ended; a unary call still running gets a moment to
  // finish. gRPC also waits for idle client connections to close, which a client notices only
  // at its next poll (seconds): the short deadline closes them instead.
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Milliseconds(250)));
  server->Wait();
  server.reset();
  // What holds state closes in order: scrapes stop reading the controller, then the
  // controller goes, then the store (RocksDB closes its files).
  metrics->DetachController();
  controller.reset();
  store.reset();
  rung::Log(rung::LogLevel::kInfo,
            absl::StrCat("stopped in ", absl::ToInt64Milliseconds(absl::Now() - signalled),
                         " ms; it ended worker streams: ", ended.workers,
                         ", watches: ", ended.watches, ", waiting asks: ", ended.asks));
  // The metrics server ends its threads only on civetweb's 2 s poll. It has nothing left to
  // serve or to write, so rungd does not wait for it: main ends the process (_exit).
  (void)metrics.release();
  return absl::OkStatus();
}

int Fail(const absl::Status& s) {
  std::cerr << "rungd: " << s.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Two malloc arenas, not one for each of gRPC's threads: each arena keeps what its thread
  // freed, about 100 MB more resident at a million trials (bench/scale.sh), and rungd's own
  // work is under one lock anyway.
  mallopt(M_ARENA_MAX, 2);
  CLI::App app{"rungd: the rung controller (experiments, search, scheduling, persistence)"};
  Flags flags;
  AddFlags(&app, &flags);
  CLI11_PARSE(app, argc, argv);
  if (absl::Status s = ApplyConfigFile(&flags); !s.ok()) return Fail(s);
  auto level = rung::ParseLogLevel(flags.log_level);
  if (!level.ok()) return Fail(level.status());
  rung::SetLogLevel(*level);
  rung::SetLogTag("rungd");
  Settings settings;
  if (absl::Status s = CheckTimes(flags, &settings); !s.ok()) return Fail(s);
  if (absl::Status s = CheckSecurity(flags, &settings); !s.ok()) return Fail(s);

  // Signals are taken by sigwait in Serve; block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (absl::Status s = Serve(flags, std::move(settings), sigs); !s.ok()) return Fail(s);
  std::fflush(nullptr);
  _exit(0);  // see the end of Serve
}
