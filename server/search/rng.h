// A seeded generator whose output does not depend on the standard library's distributions,
// so a seed gives the same trials on every platform and compiler. Its state is one line of
// text for searcher snapshots.
#ifndef RUNG_SERVER_SEARCH_RNG_H_
#define RUNG_SERVER_SEARCH_RNG_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

namespace rung::search {

// xoshiro256** seeded through splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  uint64_t Next();
  // Uniform in [0, 1).
  double Uniform();
  // Uniform integer in [0, n); n > 0.
  uint64_t Below(uint64_t n);

  std::string Save() const;
  bool Load(absl::string_view text);

 private:
  uint64_t s_[4];
};

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_RNG_H_
