#include "server/web/web_server.h"

#include <arpa/inet.h>
#include <zlib.h>

#include <functional>
#include <map>
#include <thread>

#include "CivetServer.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/log.h"
#include "common/status.h"
#include "server/web/assets.h"
#include "server/web/json_bridge.h"
#include "server/web/tls_front.h"

namespace rung::web {

namespace {

constexpr size_t kMaxBody = 1 << 20;
constexpr char kApi[] = "/api/";
constexpr char kWatch[] = "rung.v1.ExperimentService/WatchExperiment";

std::string ContentType(const std::string& path) {
  if (absl::EndsWith(path, ".html")) return "text/html; charset=utf-8";
  if (absl::EndsWith(path, ".js")) return "text/javascript; charset=utf-8";
  if (absl::EndsWith(path, ".css")) return "text/css; charset=utf-8";
  if (absl::EndsWith(path, ".svg")) return "image/svg+xml";
  if (absl::EndsWith(path, ".png")) return "image/png";
  return "application/octet-stream";
}

// A gzip stream inflated, for a client that does not take gzip.
std::string Gunzip(const unsigned char* data, size_t size) {
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return "";
  z.next_in = const_cast<unsigned char*>(data);
  z.avail_in = static_cast<uInt>(size);
  std::string out;
  char buf[1 << 16];
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<unsigned char*>(buf);
    z.avail_out = sizeof(buf);
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - z.avail_out);
  }
  inflateEnd(&z);
  return rc == Z_STREAM_END ? out : "";
}

// `body` gzipped, quickly (level 1): the page's big answers (a large experiment's trials and
// curves) are JSON of a few bytes per number, which shrinks several times.
std::string Gzip(const std::string& body) {
  z_stream z{};
  if (deflateInit2(&z, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return "";
  std::string out(deflateBound(&z, body.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(body.data()));
  z.avail_in = static_cast<uInt>(body.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return rc == Z_STREAM_END ? out : "";
}

bool TakesGzip(mg_connection* conn) {
  const char* accept = mg_get_header(conn, "Accept-Encoding");
  return accept != nullptr && absl::StrContains(accept, "gzip");
}

// "127.0.0.1:7412", "[::1]:7412", "localhost:7412": an IP address, or localhost.
bool PlainHost(const char* host_header) {
  if (host_header == nullptr) return true;  // HTTP/1.0: not a browser's request
  std::string host = host_header;
  if (!host.empty() && host.front() == '[') {
    host = host.substr(1, host.find(']') - 1);
  } else {
    host = host.substr(0, host.rfind(':'));
  }
  if (host == "localhost") return true;
  in6_addr a6;
  in_addr a4;
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

struct File {
  std::string type;
  const unsigned char* gz;
  size_t size;
  std::string etag;
};

}  // namespace

struct WebServer::Impl : public CivetHandler {
  Impl(std::shared_ptr<grpc::Channel> channel, bool tokens)
      : bridge(std::move(channel)), tokens(tokens) {
    for (const Asset& a : Assets()) {
      const size_t size = static_cast<size_t>(a.gz_end - a.gz);
      const std::string path = a.path;
      files[path] = {ContentType(path), a.gz, size,
                     absl::StrFormat("\"%x-%x\"",
                                     std::hash<std::string_view>()(std::string_view(
                                         reinterpret_cast<const char*>(a.gz), size)),
                                     size)};
    }
  }

  // A request is served only before Quiesce; Quiesce waits for those being served.
  bool Enter(mg_connection* conn) {
    const mg_request_info* ri = mg_get_request_info(conn);
    const char* refusal;
    int status = 403;
    {
      absl::MutexLock l(&mu);
      if (closed) {
        status = 503;
        refusal = "rungd is stopping\n";
      } else if (tls != nullptr && !tls->Ours(ri->remote_port)) {
        refusal = "the page is served over TLS only\n";
      } else if (!tokens && !PlainHost(mg_get_header(conn, "Host"))) {
        refusal =
            "without --auth-tokens the page answers only http://IP:PORT or "
            "http://localhost:PORT (a name could point anywhere)\n";
      } else {
        ++active;
        return true;
      }
    }
    Send(conn, status, "text/plain; charset=utf-8", refusal);
    return false;
  }
  void Exit() {
    absl::MutexLock l(&mu);
    --active;
  }

  bool handleGet(CivetServer*, mg_connection* conn) override {
    if (!Enter(conn)) return true;
    Get(conn);
    Exit();
    return true;
  }

  bool handlePost(CivetServer*, mg_connection* conn) override {
    if (!Enter(conn)) return true;
    Post(conn);
    Exit();
    return true;
  }

  bool Get(mg_connection* conn) {
    const mg_request_info* ri = mg_get_request_info(conn);
    std::string path = ri->local_uri ? ri->local_uri : "/";
    if (path == "/" || path == "/index.html") path = "/assets/index.html";
    if (absl::StartsWith(path, kApi)) {
      Send(conn, 405, "application/json",
           ErrorJson(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                  "the API takes POST, with the request as JSON")));
      return true;
    }
    auto it = files.find(path);
    if (it == files.end()) {
      Send(conn, 404, "text/plain; charset=utf-8", absl::StrCat("no page ", path, "\n"));
      return true;
    }
    const File& f = it->second;
    const char* match = mg_get_header(conn, "If-None-Match");
    mg_response_header_start(conn, match != nullptr && f.etag == match ? 304 : 200);
    Headers(conn, f.type);
    mg_response_header_add(conn, "Cache-Control", "no-cache", -1);  // revalidate: ETag
    mg_response_header_add(conn, "ETag", f.etag.c_str(), -1);
    mg_response_header_add(conn, "Vary", "Accept-Encoding", -1);
    if (match != nullptr && f.etag == match) {
      mg_response_header_send(conn);
      return true;
    }
    if (TakesGzip(conn)) {
      mg_response_header_add(conn, "Content-Encoding", "gzip", -1);
      mg_response_header_add(conn, "Content-Length", absl::StrCat(f.size).c_str(), -1);
      mg_response_header_send(conn);
      mg_write(conn, f.gz, f.size);
    } else {
      const std::string body = Gunzip(f.gz, f.size);
      mg_response_header_add(conn, "Content-Length", absl::StrCat(body.size()).c_str(), -1);
      mg_response_header_send(conn);
      mg_write(conn, body.data(), body.size());
    }
    return true;
  }

  bool Post(mg_connection* conn) {
    const mg_request_info* ri = mg_get_request_info(conn);
    const std::string path = ri->local_uri ? ri->local_uri : "";
    if (!absl::StartsWith(path, kApi)) {
      Send(conn, 405, "text/plain; charset=utf-8", "only the API (/api/...) takes POST\n");
      return true;
    }
    // A JSON body only: a form or a text/plain POST from another site's page (which a
    // browser sends without asking) is refused.
    const char* type = mg_get_header(conn, "Content-Type");
    if (type == nullptr || !absl::StartsWith(type, "application/json")) {
      return Fail(conn, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                     "the API takes Content-Type: application/json"));
    }
    if (ri->content_length > static_cast<long long>(kMaxBody)) {
      return Fail(conn, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                     absl::StrCat("the request body is ", ri->content_length,
                                                  " bytes; at most ", kMaxBody)));
    }
    std::string body;
    char buf[8192];
    for (int n; (n = mg_read(conn, buf, sizeof(buf))) > 0;) {
      body.append(buf, n);
      if (body.size() > kMaxBody) {
        return Fail(conn,
                    grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 absl::StrCat("the request body is over ", kMaxBody, " bytes")));
      }
    }
    const char* auth = mg_get_header(conn, "Authorization");
    const std::string method = path.substr(sizeof(kApi) - 1);
    if (method == kWatch) {
      Watch(conn, body, auth ? auth : "");
      return true;
    }
    JsonReply r = bridge.Unary(method, body, auth ? auth : "");
    std::string gz;
    if (r.json.size() > (16 << 10) && TakesGzip(conn)) gz = Gzip(r.json);
    Send(conn, r.http_status, "application/json", gz.empty() ? r.json : gz, !gz.empty());
    return true;
  }

  // Server-sent events, in chunks; a comment every 15 s finds a page that has gone.
  void Watch(mg_connection* conn, const std::string& body, const std::string& auth) {
    mg_response_header_start(conn, 200);
    Headers(conn, "text/event-stream; charset=utf-8");
    mg_response_header_add(conn, "Cache-Control", "no-store", -1);
    mg_response_header_add(conn, "Transfer-Encoding", "chunked", -1);
    mg_response_header_send(conn);
    grpc::ClientContext ctx;
    absl::Mutex mu;  // one write at a time
    bool gone = false;
    auto write = [&](const std::string& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      if (!gone && mg_send_chunk(conn, s.data(), static_cast<unsigned>(s.size())) < 0) gone = true;
      return !gone;
    };
    absl::Notification finished;
    std::thread pinger([&] {
      while (!finished.WaitForNotificationWithTimeout(absl::Seconds(15))) {
        absl::MutexLock l(&mu);
        if (!write(": ping\n\n")) {
          ctx.TryCancel();
          return;
        }
      }
    });
    grpc::Status s = bridge.Watch(body, auth, &ctx, [&](const std::string& json) {
      absl::MutexLock l(&mu);
      return write(absl::StrCat("data: ", json, "\n\n"));
    });
    finished.Notify();
    pinger.join();
    absl::MutexLock l(&mu);
    if (write(absl::StrCat("event: end\ndata: ", ErrorJson(s), "\n\n"))) mg_send_chunk(conn, "", 0);
  }

  bool Fail(mg_connection* conn, const grpc::Status& s) {
    Send(conn, HttpStatusOf(s.error_code()), "application/json", ErrorJson(s));
    return true;
  }

  static void Headers(mg_connection* conn, const std::string& type) {
    mg_response_header_add(conn, "Content-Type", type.c_str(), -1);
    mg_response_header_add(conn, "X-Content-Type-Options", "nosniff", -1);
    mg_response_header_add(conn, "X-Frame-Options", "DENY", -1);
    mg_response_header_add(conn, "Referrer-Policy", "no-referrer", -1);
    // Scripts from rungd only; ECharts sets element styles, hence inline styles.
    mg_response_header_add(conn, "Content-Security-Policy",
                           "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; frame-ancestors 'none'",
                           -1);
  }

  static void Send(mg_connection* conn, int status, const std::string& type,
                   const std::string& body, bool gzipped = false) {
    mg_response_header_start(conn, status);
    Headers(conn, type);
    if (gzipped) mg_response_header_add(conn, "Content-Encoding", "gzip", -1);
    mg_response_header_add(conn, "Cache-Control", "no-store", -1);
    mg_response_header_add(conn, "Content-Length", absl::StrCat(body.size()).c_str(), -1);
    mg_response_header_send(conn);
    mg_write(conn, body.data(), body.size());
  }

  JsonBridge bridge;
  const bool tokens;
  std::map<std::string, File> files;
  std::unique_ptr<CivetServer> server;
  absl::Mutex mu;
  std::unique_ptr<TlsFront> tls ABSL_GUARDED_BY(mu);
  bool closed ABSL_GUARDED_BY(mu) = false;
  int active ABSL_GUARDED_BY(mu) = 0;
};

absl::StatusOr<std::unique_ptr<WebServer>> WebServer::Start(
    const WebOptions& options, std::shared_ptr<grpc::Channel> channel) {
  const bool tls = !options.tls_cert.empty();
  std::unique_ptr<WebServer> web(new WebServer());
  web->impl_ = std::make_unique<Impl>(std::move(channel), options.tokens);
  // With TLS the HTTP server listens on loopback only, behind the TLS front.
  const std::string http_listen = tls ? "127.0.0.1:0" : options.listen;
  const std::vector<std::string> civet = {
      "listening_ports",   http_listen, "num_threads", absl::StrCat(options.threads),
      "enable_keep_alive", "yes",
  };
  CivetCallbacks callbacks;
  callbacks.log_message = [](const mg_connection*, const char* message) {
    Log(LogLevel::kWarning, absl::StrCat("web page: ", message));
    return 1;
  };
  try {
    web->impl_->server = std::make_unique<CivetServer>(civet, &callbacks);
  } catch (const CivetException& e) {
    return absl::UnavailableError(
        absl::StrCat("--web-listen ", http_listen, ": cannot serve (", e.what(), ")"));
  }
  std::vector<int> ports = web->impl_->server->getListeningPorts();
  web->port_ = ports.empty() ? 0 : ports[0];
  if (tls) {
    auto front = TlsFront::Start({options.listen, options.tls_cert, options.tls_key,
                                  options.client_ca, web->port_, options.threads});
    if (!front.ok()) return front.status();
    absl::MutexLock l(&web->impl_->mu);
    web->impl_->tls = std::move(*front);
    web->port_ = web->impl_->tls->port();
  }
  // Until now civetweb has answered 404 to anyone: the page is served once the TLS front
  // that it checks connections against is in place.
  web->impl_->server->addHandler("/", web->impl_.get());
  const std::string host = options.listen.substr(0, options.listen.rfind(':'));
  web->url_ = absl::StrCat(tls ? "https://" : "http://", host, ":", web->port_, "/");
  return web;
}

void WebServer::Quiesce() {
  {
    absl::MutexLock l(&impl_->mu);
    impl_->closed = true;
    impl_->mu.Await(absl::Condition(
        +[](Impl* i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(i->mu) { return i->active == 0; }, impl_.get()));
    impl_->tls.reset();  // the last answers have gone through it
  }
}

WebServer::~WebServer() {
  if (impl_ == nullptr) return;
  {
    absl::MutexLock l(&impl_->mu);
    impl_->tls.reset();
  }
  if (impl_->server) impl_->server->close();
}

}  // namespace rung::web
