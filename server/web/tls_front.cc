#include "server/web/tls_front.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace rung::web {

namespace {

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

}  // namespace

absl::StatusOr<std::unique_ptr<TlsFront>> TlsFront::Start(const std::string& listen,
                                                          const std::string& cert_file,
                                                          const std::string& key_file,
                                                          int backend_port, int max_connections) {
  std::unique_ptr<TlsFront> f(new TlsFront());
  f->backend_port_ = backend_port;
  f->max_connections_ = max_connections;
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  f->ctx_ = ctx;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("--tls-cert ", cert_file, ": ", SslError()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("--tls-key ", key_file, ": ", SslError()));
  }
  const size_t colon = listen.rfind(':');
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  const std::string service = colon == std::string::npos ? "" : listen.substr(colon + 1);
  addrinfo hints{}, *ai = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &ai);
      rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--web-listen ", listen, ": ", gai_strerror(rc)));
  }
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  const bool bound = fd >= 0 && bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 128) == 0;
  freeaddrinfo(ai);
  if (!bound) {
    const std::string why = strerror(errno);
    if (fd >= 0) close(fd);
    return absl::UnavailableError(absl::StrCat("--web-listen ", listen, ": ", why));
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

TlsFront::~TlsFront() {
  stopping_ = true;
  if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  {
    absl::MutexLock l(&mu_);
    for (int fd : fds_) shutdown(fd, SHUT_RDWR);  // their threads see the end and leave
    mu_.Await(absl::Condition(+[](int* open) { return *open == 0; }, &open_));
  }
  if (listen_fd_ >= 0) close(listen_fd_);
  SSL_CTX_free(static_cast<SSL_CTX*>(ctx_));
}

void TlsFront::Accept() {
  while (!stopping_) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // shut down
    }
    absl::MutexLock l(&mu_);
    if (open_ >= max_connections_ || stopping_) {
      close(fd);
      continue;
    }
    ++open_;
    fds_.push_back(fd);
    std::thread([this, fd] { Serve(fd); }).detach();
  }
}

void TlsFront::Serve(int fd) {
  // A handshake or a request that stalls for 30 s ends the connection.
  timeval timeout{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  SSL* ssl = SSL_new(static_cast<SSL_CTX*>(ctx_));
  SSL_set_fd(ssl, fd);
  int plain = -1;
  if (SSL_accept(ssl) == 1) {
    timeval none{0, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
    plain = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in b{};
    b.sin_family = AF_INET;
    b.sin_port = htons(static_cast<uint16_t>(backend_port_));
    b.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(plain, reinterpret_cast<sockaddr*>(&b), sizeof(b)) != 0) {
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
      if (p[1].revents != 0) {  // the page's server answered (or closed)
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
  if (plain >= 0) close(plain);
  SSL_shutdown(ssl);
  SSL_free(ssl);
  absl::MutexLock l(&mu_);
  fds_.erase(std::find(fds_.begin(), fds_.end(), fd));
  close(fd);
  --open_;
}

}  // namespace rung::web
