#include "server/web/tls_front.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <list>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace rung::web {

namespace {

constexpr int kHandshakeMs = 10000;  // the whole handshake, however slowly it trickles in
constexpr int kStallSeconds = 30;    // a client that takes nothing for this long is cut off

std::string SslError() {
  char why[256];
  ERR_error_string_n(ERR_get_error(), why, sizeof(why));
  return why;
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// SSL_accept on a non-blocking socket, within kHandshakeMs in all.
bool Handshake(SSL* ssl, int fd) {
  const int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kHandshakeMs);
  bool ok = false;
  for (;;) {
    const int rc = SSL_accept(ssl);
    if (rc == 1) {
      ok = true;
      break;
    }
    const int e = SSL_get_error(ssl, rc);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) break;
    pollfd p = {fd, static_cast<short>(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    if (poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) break;
  }
  fcntl(fd, F_SETFL, flags);
  return ok;
}

}  // namespace

struct TlsFront::Shared {
  SSL_CTX* ctx = nullptr;
  int backend_port = 0;
  int max_connections = 0;
  mutable absl::Mutex mu;
  // Each connection's sockets (the client's, and ours to the HTTP server once open).
  std::map<int, int> conns ABSL_GUARDED_BY(mu);
  std::set<int> ports ABSL_GUARDED_BY(mu);  // our connections' local ports on 127.0.0.1
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;  // set as the thread's last act
  };
  std::list<Worker> threads ABSL_GUARDED_BY(mu);
  ~Shared() { SSL_CTX_free(ctx); }
};

namespace {

// One connection, until either side ends it.
void Serve(const std::shared_ptr<TlsFront::Shared>& s, int fd) {
  timeval stall{kStallSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &stall, sizeof(stall));
  SSL* ssl = SSL_new(s->ctx);
  SSL_set_fd(ssl, fd);
  int plain = -1, port = 0;
  if (Handshake(ssl, fd)) {
    plain = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in b{};
    b.sin_family = AF_INET;
    b.sin_port = htons(static_cast<uint16_t>(s->backend_port));
    b.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // Bound first, so that the port is known to be ours before the HTTP server can see it.
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(local);
    if (bind(plain, reinterpret_cast<sockaddr*>(&local), sizeof(local)) == 0 &&
        getsockname(plain, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      port = ntohs(local.sin_port);
      absl::MutexLock l(&s->mu);
      s->ports.insert(port);
      s->conns[fd] = plain;
    }
    if (port == 0 || connect(plain, reinterpret_cast<sockaddr*>(&b), sizeof(b)) != 0) {
      close(plain);
      plain = -1;
    }
  }
  char buf[16384];
  while (plain >= 0) {
    if (SSL_pending(ssl) == 0) {
      pollfd p[2] = {{fd, POLLIN, 0}, {plain, POLLIN, 0}};
      if (poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (p[1].revents != 0) {  // the HTTP server answered (or closed)
        const ssize_t n = recv(plain, buf, sizeof(buf), 0);
        if (n <= 0 || SSL_write(ssl, buf, static_cast<int>(n)) <= 0) break;
      }
      if (p[0].revents == 0) continue;
    }
    const int n = SSL_read(ssl, buf, sizeof(buf));
    if (n <= 0) {
      const int e = SSL_get_error(ssl, n);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) continue;
      break;
    }
    if (!WriteAll(plain, buf, static_cast<size_t>(n))) break;
  }
  {
    absl::MutexLock l(&s->mu);
    s->conns.erase(fd);
    s->ports.erase(port);
  }
  if (plain >= 0) close(plain);
  SSL_shutdown(ssl);
  SSL_free(ssl);
  close(fd);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsFront>> TlsFront::Start(const Options& o) {
  std::unique_ptr<TlsFront> f(new TlsFront());
  f->shared_ = std::make_shared<Shared>();
  Shared& s = *f->shared_;
  s.backend_port = o.backend_port;
  s.max_connections = o.max_connections;
  s.ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_min_proto_version(s.ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(s.ctx, o.cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("--tls-cert ", o.cert_file, ": ", SslError()));
  }
  if (SSL_CTX_use_PrivateKey_file(s.ctx, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(s.ctx) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("--tls-key ", o.key_file, ": ", SslError()));
  }
  if (!o.client_ca.empty()) {
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.client_ca.c_str());
    if (names == nullptr ||
        SSL_CTX_load_verify_locations(s.ctx, o.client_ca.c_str(), nullptr) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--client-ca ", o.client_ca, ": ", SslError()));
    }
    SSL_CTX_set_client_CA_list(s.ctx, names);
    SSL_CTX_set_verify(s.ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  const size_t colon = o.listen.rfind(':');
  std::string host = o.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  const std::string service = colon == std::string::npos ? "" : o.listen.substr(colon + 1);
  addrinfo hints{}, *ai = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &ai);
      rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--web-listen ", o.listen, ": ", gai_strerror(rc)));
  }
  const int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  const bool bound =
      fd >= 0 && bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 128) == 0;
  freeaddrinfo(ai);
  if (!bound) {
    const std::string why = strerror(errno);
    if (fd >= 0) close(fd);
    return absl::UnavailableError(absl::StrCat("--web-listen ", o.listen, ": ", why));
  }
  sockaddr_storage a{};
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  f->port_ = ntohs(a.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&a)->sin6_port
                                           : reinterpret_cast<sockaddr_in*>(&a)->sin_port);
  f->listen_fd_ = fd;
  f->acceptor_ = std::thread([p = f.get()] { p->Accept(); });
  return f;
}

bool TlsFront::Ours(int port) const {
  absl::MutexLock l(&shared_->mu);
  return shared_->ports.count(port) > 0;
}

TlsFront::~TlsFront() {
  stopping_ = true;
  if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  std::list<Shared::Worker> threads;
  {
    absl::MutexLock l(&shared_->mu);
    for (const auto& [client, plain] : shared_->conns) {  // their threads see the end
      shutdown(client, SHUT_RDWR);
      if (plain >= 0) shutdown(plain, SHUT_RDWR);
    }
    threads.swap(shared_->threads);
  }
  for (Shared::Worker& w : threads) w.thread.join();
  if (listen_fd_ >= 0) close(listen_fd_);
}

void TlsFront::Accept() {
  while (!stopping_) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) return;
      // Out of descriptors or memory for a moment: the listener stays, and tries again.
      if (errno != EINTR && errno != ECONNABORTED)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    absl::MutexLock l(&shared_->mu);
    // Threads whose connection has ended are joined here, so that they do not pile up.
    for (auto it = shared_->threads.begin(); it != shared_->threads.end();) {
      if (*it->done) {
        it->thread.join();
        it = shared_->threads.erase(it);
      } else {
        ++it;
      }
    }
    if (static_cast<int>(shared_->conns.size()) >= shared_->max_connections) {
      close(fd);
      continue;
    }
    shared_->conns[fd] = -1;
    auto done = std::make_shared<std::atomic<bool>>(false);
    shared_->threads.push_back({std::thread([s = shared_, fd, done] {
                                  Serve(s, fd);
                                  *done = true;
                                }),
                                done});
  }
}

}  // namespace rung::web
