// Samplers, internal to the search library: they propose each new trial's parameters.
#ifndef RUNG_SERVER_SEARCH_SAMPLER_H_
#define RUNG_SERVER_SEARCH_SAMPLER_H_

#include <memory>
#include <string>
#include <vector>

#include "server/search/history.h"
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

// A sampler that learns from its History (TPE, GP): random trials until `startup` trials
// have completed (warm-start ones included), then Model(). It owns the shared state and the
// snapshot layout: "rng=<state>", the model's own lines (ModelLineCount() of them), then the
// history's lines.
class ModelSampler : public Sampler {
 public:
  ModelSampler(const Config& config, int startup);
  Params Next(int index) final;
  void Observe(int index, bool has_value, double value) final;
  void Save(std::vector<std::string>* lines) const final;
  bool Load(const std::vector<std::string>& lines) final;

 protected:
  using Trial = History::Trial;
  // The next trial's parameters from the completed trials `done` (in index order) and those
  // still `running`.
  virtual Params Model(std::vector<const Trial*> done, const std::vector<const Trial*>& running) = 0;
  virtual int ModelLineCount() const { return 0; }
  virtual void SaveModel(std::vector<std::string>* /*lines*/) const {}
  virtual bool LoadModel(const std::vector<std::string>& /*lines*/) { return true; }
  // A uniform draw of every parameter that is active.
  Params RandomValid();

  const std::vector<Param> space_;
  const Goal goal_;
  const int startup_;
  Rng rng_;
  History history_;
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
