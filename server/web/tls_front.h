// TLS in front of the page's HTTP server. Debian's civetweb loads OpenSSL 1.1's functions by
// name and cannot use OpenSSL 3, so the page's TLS is ours: each connection's TLS ends here
// (OpenSSL, rungd's --tls-cert and --tls-key, and with --client-ca a client certificate that
// CA signed) and its bytes go on to the HTTP server on loopback, one thread per connection.
// The HTTP server serves only connections that came through here (Ours), so a local user
// cannot go round the TLS, or round mutual TLS, through its loopback port.
#ifndef RUNG_SERVER_WEB_TLS_FRONT_H_
#define RUNG_SERVER_WEB_TLS_FRONT_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace rung::web {

class TlsFront {
 public:
  struct Options {
    std::string listen;     // HOST:PORT, port 0: any
    std::string cert_file;  // PEM
    std::string key_file;
    std::string client_ca;     // PEM: require a client certificate it signed; empty: none
    int backend_port = 0;      // the HTTP server, on 127.0.0.1
    int max_connections = 64;  // others are closed at once
  };
  static absl::StatusOr<std::unique_ptr<TlsFront>> Start(const Options& options);
  // Stops accepting, ends every connection and waits for their threads.
  ~TlsFront();

  int port() const { return port_; }
  // Whether a connection to the HTTP server from 127.0.0.1:`port` is one of ours.
  bool Ours(int port) const;

  struct Shared;

 private:
  TlsFront() = default;
  void Accept();

  std::shared_ptr<Shared> shared_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
};

}  // namespace rung::web

#endif  // RUNG_SERVER_WEB_TLS_FRONT_H_
