// Who may call what: bearer tokens with roles, from a token file (--auth-tokens).
//   # comment
//   TOKEN NAME ROLE        ROLE: admin, user or worker
// admin: everything. user: the ExperimentService, on experiments it created. worker: only
// the worker stream. Without a token file every caller is an anonymous admin (a laptop).
#ifndef RUNG_SERVER_API_AUTH_H_
#define RUNG_SERVER_API_AUTH_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace rung {

enum class Role { kAdmin, kUser, kWorker };

struct Caller {
  std::string name;  // empty when authentication is off
  Role role = Role::kAdmin;
};

class Auth {
 public:
  // Authentication off.
  Auth() = default;
  // Parses a token file; INVALID_ARGUMENT naming the file and line on a bad line.
  static absl::StatusOr<Auth> FromFile(const std::string& path);
  static absl::StatusOr<Auth> FromText(const std::string& text, const std::string& source);

  bool enabled() const { return !tokens_.empty(); }

  // The caller of `method` (e.g. "AdminService.Backup"), which needs `need`: UNAUTHENTICATED
  // without a known bearer token, PERMISSION_DENIED when its role may not call it.
  absl::StatusOr<Caller> Check(const grpc::ServerContextBase& ctx, const char* method,
                               Role need) const;

 private:
  struct Token {
    std::string secret;
    Caller caller;
  };
  std::vector<Token> tokens_;
};

const char* RoleName(Role r);

}  // namespace rung

#endif  // RUNG_SERVER_API_AUTH_H_
