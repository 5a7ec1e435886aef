#include "server/search/ablation.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace rung::search {
namespace {

std::string Quote(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, absl::StrFormat("\\u%04x", c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

std::string Variant::Json() const {
  std::vector<std::string> quoted;
  for (const auto& d : dropped) quoted.push_back(Quote(d));
  return absl::StrCat("{\"kind\": ", Quote(kind), ", \"name\": ", Quote(name), ", \"dropped\": [",
                      absl::StrJoin(quoted, ", "), "]}");
}

std::vector<Variant> LeaveOneComponentOut::Variants(const std::vector<Component>& components) const {
  std::vector<Variant> out = {{"base", "base", {}}};
  for (const Component& c : components) out.push_back({c.kind, c.name, c.members});
  return out;
}

absl::StatusOr<std::unique_ptr<AblationPolicy>> NewAblationPolicy(absl::string_view name) {
  if (name == "loco" || name.empty()) return std::make_unique<LeaveOneComponentOut>();
  return absl::InvalidArgumentError(absl::StrCat("unknown ablation policy '", name, "' (known: loco)"));
}

}  // namespace rung::search
