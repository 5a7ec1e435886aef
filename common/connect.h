// How rung's clients (the CLI, rung-worker) reach rungd: TLS or plaintext, an optional client
// certificate for mutual TLS, and an optional bearer token on every call.
#ifndef RUNG_COMMON_CONNECT_H_
#define RUNG_COMMON_CONNECT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace rung {

struct ConnectOptions {
  std::string token;      // --token / RUNG_TOKEN: sent as "authorization: Bearer TOKEN"
  std::string ca_file;    // --ca / RUNG_CA: TLS, trusting this CA's certificates
  std::string cert_file;  // --cert / RUNG_CERT: a client certificate, for mutual TLS
  std::string key_file;   // --key / RUNG_KEY: its private key
};

// The environment's values (RUNG_TOKEN, RUNG_CA, RUNG_CERT, RUNG_KEY) for fields still empty.
void ConnectFromEnvironment(ConnectOptions* o);

// A channel to `addr`: TLS when ca_file is set, else plaintext. INVALID_ARGUMENT naming the
// flag when a file cannot be read, or when a certificate comes without its key.
absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const std::string& addr,
                                                       const ConnectOptions& o,
                                                       const grpc::ChannelArguments& args = {});

// Adds the bearer token (if any) to a call.
void AddToken(grpc::ClientContext* ctx, const ConnectOptions& o);
// A call's outcome as an absl::Status (the two share the canonical codes).
absl::Status FromGrpc(const grpc::Status& s);

// Reads a whole file; INVALID_ARGUMENT naming `flag` when it cannot.
absl::StatusOr<std::string> ReadFileFor(const std::string& flag, const std::string& path);

}  // namespace rung

#endif  // RUNG_COMMON_CONNECT_H_
