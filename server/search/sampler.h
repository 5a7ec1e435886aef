// Samplers, internal to the search library: they propose each new trial's parameters.
#ifndef RUNG_SERVER_SEARCH_SAMPLER_H_
#define RUNG_SERVER_SEARCH_SAMPLER_H_

#include <functional>
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
  // A job that computes what Next(index) would, from a copy of this sampler, safe to run on
  // any thread while this one goes on; null when Next is cheap (no model to consult).
  virtual std::function<Proposal()> Propose(int /*index*/) { return nullptr; }
  // New trial `index` takes the parameters of `proposal` (from a Propose job) when they are
  // for it and valid; otherwise (or with no proposal) parameters drawn at random.
  virtual Params Adopt(int index, const Proposal* /*proposal*/) { return Next(index); }
  // Trial `index` reported its objective `value` at `resource` (with a stopping rule).
  virtual void Report(int /*index*/, double /*resource*/, double /*value*/) {}
  // A trial closed (completed with results, or not).
  virtual void Observe(const TrialClosed& /*closed*/) {}
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
  std::function<Proposal()> Propose(int index) final;
  Params Adopt(int index, const Proposal* proposal) final;
  void Report(int index, double resource, double value) final;
  void Observe(const TrialClosed& closed) final;
  void Save(std::vector<std::string>* lines) const final;
  bool Load(const std::vector<std::string>& lines) final;

 protected:
  using Trial = History::Trial;
  // The next trial's parameters from the completed trials `done` (in index order) and those
  // still `running`.
  virtual Params Model(std::vector<const Trial*> done,
                       const std::vector<const Trial*>& running) = 0;
  // A copy of this sampler, state and all.
  virtual std::shared_ptr<ModelSampler> Clone() const = 0;
  virtual int ModelLineCount() const { return 0; }
  virtual void SaveModel(std::vector<std::string>* /*lines*/) const {}
  virtual bool LoadModel(const std::vector<std::string>& /*lines*/) { return true; }
  // A uniform draw of every parameter that is active.
  Params RandomValid();
  // Start-up trial `index`: a Latin hypercube draw while index < startup_, else RandomValid.
  Params StartupDraw(int index);

  const std::vector<Param> space_;
  const Goal goal_;
  const int startup_;
  const uint64_t seed_;
  Rng rng_;
  History history_;

 private:
  // What the model learns from: the completed trials once `startup_` have completed, else
  // the highest rung level (its index) with `startup_` results, else nothing. Counts only.
  // kByDepth: every trial that reached a rung, ranked by depth (Config::rank_by_depth).
  static constexpr int kByDepth = -3, kNone = -2, kCompleted = -1;
  int Basis() const;
  // Basis(), with `done` (each with its value there) and `running` filled in for it.
  int Ready(std::vector<const Trial*>* done, std::vector<const Trial*>* running);
  // Ready() for kByDepth: the ended trials that reached a rung (or completed), each with its
  // rank as its value (0 the best: the deepest, then the best value there); kNone when fewer
  // than `startup_`.
  int ReadyByDepth(std::vector<const Trial*>* done, std::vector<const Trial*>* running);
  // Several objectives or constraints: `done` with each value replaced by one number to
  // optimise in the goal's direction (ParEGO's augmented Chebyshev scalarisation under
  // random weights; a constraint breaker counts as worse than every trial that kept them).
  void Scalarise(std::vector<const Trial*>* done);
  const std::vector<Goal> objectives_;
  const bool constrained_;
  const bool rank_by_depth_;
  std::vector<Trial> level_view_;   // trials as seen at one rung level, for Ready
  std::vector<Trial> scalar_view_;  // for Scalarise
};

// One uniform draw of `p` (log-uniform when p.log), as random search makes it.
ParamValue SampleUniform(const Param& p, Rng* rng);
// One uniform draw of every parameter of `space` that exists given those drawn before it
// (conditions respected): random search's trial.
Params SampleSpace(const std::vector<Param>& space, Rng* rng);

// Tree-structured Parzen estimator (Bergstra et al. 2011), univariate, with the constant
// liar for running trials and `startup` random trials first.
std::unique_ptr<Sampler> NewTpeSampler(const Config& config, int startup);

// Gaussian-process search (server/search/gp.cc) after `startup` random trials.
std::unique_ptr<Sampler> NewGpSampler(const Config& config, int startup);

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_SAMPLER_H_
