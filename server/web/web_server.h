// rungd's web page (--web-listen): the page's files, built into rungd, and its API, a JSON
// bridge to rungd's own gRPC calls (json_bridge.h), on one HTTP (or, with rungd's TLS
// certificate, HTTPS) port.
//   GET  /                                     the page
//   GET  /assets/NAME                          its files (gzipped; inflated for a client
//                                              that does not take gzip)
//   POST /api/rung.v1.ExperimentService/NAME   a read call: request and answer in JSON
//   POST /api/rung.v1.ExperimentService/WatchExperiment
//                                              server-sent events: `data: WatchEvent` each,
//                                              then `event: end` with how the stream ended
// A call carries the page's token in "Authorization: Bearer TOKEN", which goes on to the gRPC
// call as it is: what the token may see is decided where every gRPC call's is.
#ifndef RUNG_SERVER_WEB_WEB_SERVER_H_
#define RUNG_SERVER_WEB_WEB_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace rung::web {

struct WebOptions {
  std::string listen;    // HOST:PORT (port 0: any free one)
  std::string tls_cert;  // PEM files: serve HTTPS when both are set
  std::string tls_key;
  std::string client_ca;  // PEM: with TLS, a browser must present a certificate it signed
  // Whether rungd checks tokens. Without, the page is anyone's who reaches it, and it answers
  // only requests for an IP address or localhost: a web site whose name points at 127.0.0.1
  // (DNS rebinding) gets nothing.
  bool tokens = false;
  int threads = 64;  // connections served at once; each open page's watch holds one
};

class WebServer {
 public:
  // Serves until destroyed. `channel` reaches rungd's gRPC services (its in-process channel).
  static absl::StatusOr<std::unique_ptr<WebServer>> Start(const WebOptions& options,
                                                          std::shared_ptr<grpc::Channel> channel);
  // Stops civetweb, which notices only on its next 2 s poll.
  ~WebServer();

  // Answers every request from now on with 503, and returns once none is being served (the
  // watches end when the controller shuts down): then rungd's gRPC server can go.
  void Quiesce();

  int port() const { return port_; }
  // http://HOST:PORT/ or https://HOST:PORT/
  std::string url() const { return url_; }

  struct Impl;

 private:
  WebServer() = default;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  std::string url_;
};

}  // namespace rung::web

#endif  // RUNG_SERVER_WEB_WEB_SERVER_H_
