// TLS in front of the page's HTTP server. Debian's civetweb loads OpenSSL 1.1's functions by
// name and cannot use OpenSSL 3, so the page's TLS is ours: each connection's TLS ends here
// (OpenSSL, rungd's --tls-cert and --tls-key) and its bytes go on to the HTTP server on
// loopback, one thread per connection.
#ifndef RUNG_SERVER_WEB_TLS_FRONT_H_
#define RUNG_SERVER_WEB_TLS_FRONT_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace rung::web {

class TlsFront {
 public:
  // Listens on `listen` (HOST:PORT, port 0: any) and passes each connection's plain bytes to
  // 127.0.0.1:`backend_port`; at most `max_connections` at once (others are closed).
  static absl::StatusOr<std::unique_ptr<TlsFront>> Start(const std::string& listen,
                                                         const std::string& cert_file,
                                                         const std::string& key_file,
                                                         int backend_port, int max_connections);
  ~TlsFront();  // stops accepting and waits for every connection to end

  int port() const { return port_; }

 private:
  TlsFront() = default;
  void Accept();
  void Serve(int fd);

  void* ctx_ = nullptr;  // SSL_CTX
  int listen_fd_ = -1;
  int port_ = 0;
  int backend_port_ = 0;
  int max_connections_ = 0;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);  // connections open now
};

}  // namespace rung::web

#endif  // RUNG_SERVER_WEB_TLS_FRONT_H_
