#include "worker/gpus.h"

#include <stdio.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace rung {

std::vector<std::string> ParseNvidiaSmi(absl::string_view output) {
  std::vector<std::string> gpus;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    bool digits = true;
    for (char c : line) digits = digits && absl::ascii_isdigit(static_cast<unsigned char>(c));
    if (digits) gpus.emplace_back(line);
  }
  return gpus;
}

std::vector<std::string> DiscoverGpus() {
  FILE* f = popen("nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null", "r");
  if (f == nullptr) return {};
  std::string out;
  char buf[256];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  if (pclose(f) != 0) return {};
  return ParseNvidiaSmi(out);
}

absl::StatusOr<std::vector<std::string>> ParseGpuList(absl::string_view flag) {
  std::vector<std::string> gpus;
  if (flag == "none") return gpus;
  std::set<std::string> seen;
  for (absl::string_view g : absl::StrSplit(flag, ',')) {
    g = absl::StripAsciiWhitespace(g);
    if (g.empty())
      return absl::InvalidArgumentError(absl::StrCat("--gpus '", flag, "': empty entry"));
    if (!seen.insert(std::string(g)).second) {
      return absl::InvalidArgumentError(absl::StrCat("--gpus '", flag, "': ", g, " appears twice"));
    }
    gpus.emplace_back(g);
  }
  return gpus;
}

}  // namespace rung
