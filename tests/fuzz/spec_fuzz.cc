// libFuzzer target: the spec parser and validator on arbitrary bytes. Any input must give a
// spec or an INVALID_ARGUMENT, never a crash, a hang or a sanitizer report; an accepted spec
// must make a searcher that can hand out trials.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "server/schedule/search_config.h"
#include "server/search/searcher.h"
#include "server/spec/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto spec = rung::ParseSpecYaml(std::string(reinterpret_cast<const char*>(data), size), "/base");
  if (!spec.ok()) {
    if (spec.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
    return 0;
  }
  rung::search::Config c = rung::SearchConfig(*spec);
  c.max_trials = std::min(c.max_trials, 20);
  auto searcher = rung::search::NewSearcher(c);
  if (!searcher.ok()) return 0;
  for (int i = 0; i < 3; ++i) (*searcher)->Handle(rung::search::TrialsWanted{1});
  return 0;
}
