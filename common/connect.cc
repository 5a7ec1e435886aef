#include "common/connect.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace rung {

void ConnectFromEnvironment(ConnectOptions* o) {
  const std::pair<const char*, std::string*> vars[] = {{"RUNG_TOKEN", &o->token},
                                                       {"RUNG_CA", &o->ca_file},
                                                       {"RUNG_CERT", &o->cert_file},
                                                       {"RUNG_KEY", &o->key_file}};
  for (const auto& [name, field] : vars) {
    const char* v = std::getenv(name);
    if (field->empty() && v != nullptr) *field = v;
  }
}

absl::StatusOr<std::string> ReadFileFor(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const std::string& addr,
                                                       const ConnectOptions& o,
                                                       const grpc::ChannelArguments& args) {
  if (o.cert_file.empty() != o.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--cert and --key: give both (a client certificate and its key) or neither");
  }
  if (o.ca_file.empty()) {
    if (!o.cert_file.empty())
      return absl::InvalidArgumentError("--cert: needs --ca (a client certificate is for TLS)");
    return grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), args);
  }
  grpc::SslCredentialsOptions ssl;
  auto ca = ReadFileFor("--ca", o.ca_file);
  if (!ca.ok()) return ca.status();
  ssl.pem_root_certs = *ca;
  if (!o.cert_file.empty()) {
    auto cert = ReadFileFor("--cert", o.cert_file);
    if (!cert.ok()) return cert.status();
    auto key = ReadFileFor("--key", o.key_file);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  return grpc::CreateCustomChannel(addr, grpc::SslCredentials(ssl), args);
}

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

void AddToken(grpc::ClientContext* ctx, const ConnectOptions& o) {
  if (!o.token.empty()) ctx->AddMetadata("authorization", "Bearer " + o.token);
}

}  // namespace rung
