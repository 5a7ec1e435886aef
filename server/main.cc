// rungd: the controller. Parses flags, opens the store, wires the parts, serves.
#include <signal.h>
#include <string.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "absl/strings/ascii.h"
#include "common/connect.h"
#include "common/log.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/api/metrics.h"
#include "server/api/services.h"
#include "server/schedule/controller.h"
#include "server/store/store.h"
#include "yaml-cpp/yaml.h"

namespace {

std::string DefaultDataDir() {
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return absl::StrCat(x, "/rung");
  if (const char* h = std::getenv("HOME"); h && *h) return absl::StrCat(h, "/.local/share/rung");
  return "./rung-data";
}

int Fail(const std::string& msg) {
  std::cerr << "rungd: " << msg << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rungd: the rung controller (experiments, search, scheduling, persistence)"};
  std::string config_file, listen = "127.0.0.1:7411", data_dir = DefaultDataDir(),
                           metrics_listen = "127.0.0.1:9411", lease_timeout = "30s",
                           heartbeat = "5s", suggest_deadline = "2s", log_level = "info",
                           wal_sync = "0s", tls_cert, tls_key, client_ca, auth_tokens, metrics_auth;
  app.add_option("--config", config_file, "YAML file with any of the flags below as keys");
  auto* o_listen = app.add_option("--listen", listen, "gRPC address")->capture_default_str();
  auto* o_data = app.add_option("--data-dir", data_dir, "RocksDB folder")->capture_default_str();
  auto* o_metrics = app.add_option("--metrics-listen", metrics_listen,
                                   "Prometheus /metrics address")->capture_default_str();
  auto* o_lease = app.add_option("--lease-timeout", lease_timeout,
                                 "a worker silent this long loses its trials (e.g. 30s, 2m)")
                      ->capture_default_str();
  auto* o_hb = app.add_option("--heartbeat-interval", heartbeat, "how often workers heartbeat")
                   ->capture_default_str();
  auto* o_suggest = app.add_option("--suggest-deadline", suggest_deadline,
                                   "how long tpe or gp may take to propose a trial before it is "
                                   "drawn at random instead")
                        ->capture_default_str();
  auto* o_sync = app.add_option("--wal-sync", wal_sync,
                                "when acknowledged writes reach the disk: 'write' fsyncs each write; a "
                                "duration is group commit, one fsync for every write of up to that "
                                "long (0s: as soon as the previous fsync ends); either way nothing "
                                "is acknowledged before it is on disk")
                    ->capture_default_str();
  auto* o_cert = app.add_option("--tls-cert", tls_cert, "PEM certificate (chain): serve gRPC over TLS");
  auto* o_key = app.add_option("--tls-key", tls_key, "PEM private key of --tls-cert");
  auto* o_ca = app.add_option("--client-ca", client_ca,
                              "PEM CA: require every client and worker to present a certificate it signed "
                              "(mutual TLS)");
  auto* o_tokens = app.add_option("--auth-tokens", auth_tokens,
                                  "token file, one 'TOKEN NAME ROLE' per line (admin|user|worker; # comments): "
                                  "every call needs a bearer token");
  auto* o_mauth = app.add_option("--metrics-auth", metrics_auth,
                                 "file with one 'USER:PASSWORD' line: /metrics requires HTTP basic auth");
  auto* o_log = app.add_option("--log-level", log_level, "debug|info|warning|error")
                    ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (!config_file.empty()) {
    YAML::Node cfg;
    try {
      cfg = YAML::LoadFile(config_file);
    } catch (const YAML::Exception& e) {
      return Fail(absl::StrCat("--config ", config_file, ": ", e.what()));
    }
    const std::pair<const char*, std::pair<CLI::Option*, std::string*>> keys[] = {
        {"listen", {o_listen, &listen}},          {"data-dir", {o_data, &data_dir}},
        {"metrics-listen", {o_metrics, &metrics_listen}},
        {"lease-timeout", {o_lease, &lease_timeout}}, {"heartbeat-interval", {o_hb, &heartbeat}},
        {"suggest-deadline", {o_suggest, &suggest_deadline}}, {"wal-sync", {o_sync, &wal_sync}},
        {"tls-cert", {o_cert, &tls_cert}}, {"tls-key", {o_key, &tls_key}}, {"client-ca", {o_ca, &client_ca}},
        {"auth-tokens", {o_tokens, &auth_tokens}}, {"metrics-auth", {o_mauth, &metrics_auth}},
        {"log-level", {o_log, &log_level}}};
    if (!cfg.IsMap()) return Fail(absl::StrCat("--config ", config_file, ": expected a mapping"));
    for (const auto& kv : cfg) {
      std::string key = kv.first.Scalar();
      bool known = false;
      for (const auto& [name, opt] : keys) {
        if (key != name) continue;
        known = true;
        if (opt.first->count() == 0) *opt.second = kv.second.Scalar();  // flags win
      }
      if (!known) return Fail(absl::StrCat("--config ", config_file, ": unknown key '", key, "'"));
    }
  }

  auto level = rung::ParseLogLevel(log_level);
  if (!level.ok()) return Fail(std::string(level.status().message()));
  rung::SetLogLevel(*level);
  rung::SetLogTag("rungd");
  rung::ControllerOptions options;
  if (!absl::ParseDuration(lease_timeout, &options.lease_timeout) ||
      options.lease_timeout <= absl::ZeroDuration()) {
    return Fail(absl::StrCat("--lease-timeout: '", lease_timeout, "' is not a positive duration"));
  }
  if (!absl::ParseDuration(heartbeat, &options.heartbeat_interval) ||
      options.heartbeat_interval <= absl::ZeroDuration() ||
      options.heartbeat_interval >= options.lease_timeout) {
    return Fail(absl::StrCat("--heartbeat-interval: '", heartbeat,
                             "' must be a positive duration below --lease-timeout"));
  }

  if (!absl::ParseDuration(suggest_deadline, &options.suggest_deadline) ||
      options.suggest_deadline <= absl::ZeroDuration()) {
    return Fail(absl::StrCat("--suggest-deadline: '", suggest_deadline, "' is not a positive duration"));
  }

  rung::Store::Options store_options;
  if (wal_sync == "write") {
    store_options.group_commit = false;
  } else if (!absl::ParseDuration(wal_sync, &store_options.group_delay) ||
             store_options.group_delay < absl::ZeroDuration()) {
    return Fail(absl::StrCat("--wal-sync: '", wal_sync, "' is neither 'write' nor a duration such as 0s or 5ms"));
  }

  // TLS, mutual TLS and tokens.
  if (tls_cert.empty() != tls_key.empty()) return Fail("--tls-cert and --tls-key: give both or neither");
  if (!client_ca.empty() && tls_cert.empty()) return Fail("--client-ca: needs --tls-cert and --tls-key");
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!tls_cert.empty()) {
    grpc::SslServerCredentialsOptions ssl(client_ca.empty()
                                              ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                              : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    auto cert = rung::ReadFileFor("--tls-cert", tls_cert);
    auto key = rung::ReadFileFor("--tls-key", tls_key);
    if (!cert.ok()) return Fail(std::string(cert.status().message()));
    if (!key.ok()) return Fail(std::string(key.status().message()));
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    if (!client_ca.empty()) {
      auto ca = rung::ReadFileFor("--client-ca", client_ca);
      if (!ca.ok()) return Fail(std::string(ca.status().message()));
      ssl.pem_root_certs = *ca;
    }
    creds = grpc::SslServerCredentials(ssl);
  }
  rung::Auth auth;
  if (!auth_tokens.empty()) {
    auto a = rung::Auth::FromFile(auth_tokens);
    if (!a.ok()) return Fail(std::string(a.status().message()));
    auth = std::move(*a);
    if (tls_cert.empty()) {
      rung::Log(rung::LogLevel::kWarning,
                "--auth-tokens without --tls-cert: tokens cross the network in clear text; use TLS beyond loopback");
    }
  }
  std::string metrics_user_password;
  if (!metrics_auth.empty()) {
    auto up = rung::ReadFileFor("--metrics-auth", metrics_auth);
    if (!up.ok()) return Fail(std::string(up.status().message()));
    metrics_user_password = std::string(absl::StripAsciiWhitespace(*up));
    if (metrics_user_password.find(':') == std::string::npos) {
      return Fail(absl::StrCat("--metrics-auth ", metrics_auth, ": expected one line USER:PASSWORD"));
    }
  }

  // Signals are taken by sigwait below; block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) return Fail(absl::StrCat("--data-dir ", data_dir, ": ", ec.message()));
  auto store = rung::Store::Open(data_dir, store_options);
  if (!store.ok()) return Fail(std::string(store.status().message()));
  auto controller = rung::Controller::Create(store->get(), rung::Clock::Real(), options);
  if (!controller.ok()) return Fail(std::string(controller.status().message()));
  auto metrics = rung::ServerMetrics::Start(metrics_listen, controller->get(), metrics_user_password);
  if (!metrics.ok()) return Fail(std::string(metrics.status().message()));

  rung::ExperimentServiceImpl experiments(controller->get(), metrics->get(), &auth);
  rung::WorkerServiceImpl workers(controller->get(), metrics->get(), &auth);
  rung::AdminServiceImpl admin(controller->get(), metrics->get(), &auth);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, creds, &port);
  builder.RegisterService(&experiments);
  builder.RegisterService(&workers);
  builder.RegisterService(&admin);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back((*metrics)->RpcTimer());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.SetMaxReceiveMessageSize(16 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) return Fail(absl::StrCat("--listen ", listen, ": cannot listen"));

  absl::Notification stop;
  std::thread ticker([&] {
    const absl::Duration every = std::min(
        {options.lease_timeout / 4, options.suggest_deadline / 4, absl::Seconds(1)});
    while (!stop.WaitForNotificationWithTimeout(every)) (*controller)->Tick();
  });

  std::string host = listen.substr(0, listen.rfind(':'));
  std::string metrics_host = metrics_listen.substr(0, metrics_listen.rfind(':'));
  // Tests and scripts wait for this line.
  std::cout << "rungd: listening on " << host << ":" << port << ", metrics on http://"
            << metrics_host << ":" << (*metrics)->port() << "/metrics, data in " << data_dir
            << std::endl;
  rung::Log(rung::LogLevel::kInfo, absl::StrCat("ready; lease timeout ",
                                                absl::FormatDuration(options.lease_timeout)));

  int sig = 0;
  sigwait(&sigs, &sig);
  const absl::Time signalled = absl::Now();
  rung::Log(rung::LogLevel::kInfo, absl::StrCat("SIG", sigabbrev_np(sig), ": shutting down"));
  stop.Notify();
  ticker.join();
  // Refuse changes, put what was written on disk and let its effects out, answer waiting
  // asks, end every watch and worker stream (workers reconnect to the next rungd).
  const rung::Controller::Ended ended =
      (*controller)->Shutdown(absl::UnavailableError("rungd is shutting down; ask again"));
  // No new calls. Every stream has been ended; a unary call still running gets a moment to
  // finish. gRPC also waits for idle client connections to close, which a client notices only
  // at its next poll (seconds): the short deadline closes them instead.
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Milliseconds(250)));
  server->Wait();
  rung::Log(rung::LogLevel::kInfo,
            absl::StrCat("stopped in ", absl::ToInt64Milliseconds(absl::Now() - signalled),
                         " ms; it ended worker streams: ", ended.workers, ", watches: ", ended.watches,
                         ", waiting asks: ", ended.asks));
  return 0;
}
