#include "server/api/auth.h"

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace rung {
namespace {

// Compares without stopping at the first difference, so timing tells nothing of a token.
bool SameSecret(absl::string_view a, absl::string_view b) {
  if (b.empty()) return false;
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % b.size()]);
  return diff == 0;
}

}  // namespace

const char* RoleName(Role r) {
  switch (r) {
    case Role::kAdmin:
      return "admin";
    case Role::kUser:
      return "user";
    case Role::kWorker:
      return "worker";
  }
  return "?";
}

absl::StatusOr<Auth> Auth::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--auth-tokens: cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return FromText(ss.str(), path);
}

absl::StatusOr<Auth> Auth::FromText(const std::string& text, const std::string& source) {
  Auth a;
  int n = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++n;
    line = line.substr(0, line.find('#'));
    std::vector<absl::string_view> w =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (w.empty()) continue;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("--auth-tokens ", source, " line ", n, ": ", why));
    };
    if (w.size() != 3) return bad("expected TOKEN NAME ROLE");
    Token t;
    t.secret = std::string(w[0]);
    t.caller.name = std::string(w[1]);
    if (w[2] == "admin") {
      t.caller.role = Role::kAdmin;
    } else if (w[2] == "user") {
      t.caller.role = Role::kUser;
    } else if (w[2] == "worker") {
      t.caller.role = Role::kWorker;
    } else {
      return bad(absl::StrCat("role '", w[2], "' is not admin, user or worker"));
    }
    if (t.secret.size() < 16) return bad("a token must have at least 16 characters");
    for (const Token& o : a.tokens_) {
      if (o.secret == t.secret)
        return bad(absl::StrCat("the token of ", t.caller.name, " is also ", o.caller.name, "'s"));
    }
    a.tokens_.push_back(std::move(t));
  }
  if (a.tokens_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth-tokens ", source, ": no tokens (every caller would be refused)"));
  }
  return a;
}

absl::StatusOr<Caller> Auth::Check(const grpc::ServerContextBase& ctx, const char* method,
                                   Role need) const {
  if (tokens_.empty()) return Caller{};
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return absl::UnauthenticatedError(
        absl::StrCat(method, ": no bearer token (give --token or RUNG_TOKEN)"));
  }
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&value, "Bearer ")) {
    return absl::UnauthenticatedError(
        absl::StrCat(method, ": the authorization header is not \"Bearer TOKEN\""));
  }
  const Token* found = nullptr;
  for (const Token& t : tokens_) {
    if (SameSecret(value, t.secret)) found = &t;
  }
  if (found == nullptr) return absl::UnauthenticatedError(absl::StrCat(method, ": unknown token"));
  const Role have = found->caller.role;
  if (have != Role::kAdmin && have != need) {
    return absl::PermissionDeniedError(
        absl::StrCat(method, ": ", found->caller.name, " has role ", RoleName(have),
                     ", which may not call it (it needs ", RoleName(need), ")"));
  }
  return found->caller;
}

}  // namespace rung
