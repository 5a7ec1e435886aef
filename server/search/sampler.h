// Samplers, internal to the search library: they propose each new trial's parameters.
#ifndef RUNG_SERVER_SEARCH_SAMPLER_H_
#define RUNG_SERVER_SEARCH_SAMPLER_H_

#include <memory>
#include <string>
#include <vector>

#include "server/search/rng.h"
#include "server/search/searcher.h"

namespace rung::search {

class Sampler {
 public:
  virtual ~Sampler() = default;
  // The parameters of new trial `index`.
  virtual Params Next(int index) = 0;
  // Trial `index` closed; `has_value` when it completed with objective `value`.
  virtual void Observe(int /*index*/, bool /*has_value*/, double /*value*/) {}
  // State as lines (no '\n' inside), and back; Load gets exactly the lines Save wrote.
  virtual void Save(std::vector<std::string>* lines) const = 0;
  virtual bool Load(const std::vector<std::string>& lines) = 0;
};

// One uniform draw of `p` (log-uniform when p.log), as random search makes it.
ParamValue SampleUniform(const Param& p, Rng* rng);

// Tree-structured Parzen estimator (Bergstra et al. 2011), univariate, with the constant
// liar for running trials and `startup` random trials first.
std::unique_ptr<Sampler> NewTpeSampler(const Config& config, int startup);

// Gaussian-process search (server/search/gp.cc) after `startup` random trials.
std::unique_ptr<Sampler> NewGpSampler(const Config& config, int startup);

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_SAMPLER_H_
