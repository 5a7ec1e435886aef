// A TCP proxy on loopback that can cut the network between a worker and rungd: while cut it
// swallows every byte both ways without closing anything (as a partition does: no reset, no
// FIN, just silence), and new connections go nowhere. Heal() drops the connections that lived
// through the cut, as a long partition's do, and forwards again.
#ifndef RUNG_TESTS_INTEGRATION_PROXY_H_
#define RUNG_TESTS_INTEGRATION_PROXY_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace rung::testing {

class Proxy {
 public:
  explicit Proxy(int target_port) : target_port_(target_port) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = Loopback(0);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(listen_fd_, 16);
    socklen_t len = sizeof(a);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  ~Proxy() {
    stopping_ = true;
    shutdown(listen_fd_, SHUT_RDWR);
    close(listen_fd_);
    acceptor_.join();
    std::lock_guard<std::mutex> l(mu_);
    for (auto& c : conns_) c->Close();
    for (auto& c : conns_) c->Join();
  }

  std::string addr() const { return absl::StrCat("127.0.0.1:", port_); }

  void Cut() { cut_ = true; }

  void Heal() {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& c : conns_) c->Close();
    cut_ = false;
  }

 private:
  static sockaddr_in Loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    return a;
  }

  struct Conn {
    int a = -1, b = -1;
    std::thread up, down;
    std::atomic<bool> closed{false};
    void Close() {
      if (closed.exchange(true)) return;
      shutdown(a, SHUT_RDWR);
      shutdown(b, SHUT_RDWR);
    }
    void Join() {
      if (up.joinable()) up.join();
      if (down.joinable()) down.join();
      close(a);
      close(b);
    }
  };

  void Pump(Conn* c, int from, int to) {
    char buf[65536];
    for (;;) {
      ssize_t n = read(from, buf, sizeof(buf));
      if (n <= 0) break;
      if (cut_) continue;  // swallowed
      for (ssize_t off = 0; off < n;) {
        // MSG_NOSIGNAL: a peer gone mid-write (Heal() closing it) must not kill the test.
        ssize_t w = send(to, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
        if (w <= 0) {
          c->Close();
          return;
        }
        off += w;
      }
    }
    c->Close();
  }

  void AcceptLoop() {
    while (!stopping_) {
      int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) {
        if (stopping_) return;
        continue;
      }
      auto c = std::make_unique<Conn>();
      c->a = fd;
      c->b = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in t = Loopback(target_port_);
      if (connect(c->b, reinterpret_cast<sockaddr*>(&t), sizeof(t)) != 0) {
        close(c->a);
        close(c->b);
        continue;
      }
      Conn* raw = c.get();
      raw->up = std::thread([this, raw] { Pump(raw, raw->a, raw->b); });
      raw->down = std::thread([this, raw] { Pump(raw, raw->b, raw->a); });
      std::lock_guard<std::mutex> l(mu_);
      conns_.push_back(std::move(c));
    }
  }

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> cut_{false}, stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Conn>> conns_;
};

}  // namespace rung::testing

#endif  // RUNG_TESTS_INTEGRATION_PROXY_H_
