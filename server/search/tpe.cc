// TPE: model the parameters of the best trials, l(x), and of the rest, g(x), with Parzen
// estimators, and pick, among candidates drawn from l, the one maximising l(x) / g(x).
// The defaults are Optuna's and Hyperopt's:
// - the best gamma(n) = min(ceil(0.1 n), 25) completed trials form l;
// - the rest, and every trial still running (the constant liar), form g;
// - 24 candidates; each estimator has a prior component over the whole range.
// Univariate (the default): each parameter on its own; bandwidths are the larger gap to a
// neighbour, clipped to [range / min(100, n + 1), range].
// Multivariate (`multivariate: true`, Falkner et al. 2018 and Optuna's `multivariate`): the
// parameters every trial has are modelled jointly, one product kernel per trial with
// Scott-style bandwidths 0.2 n^(-1/(d+4)) range; conditional parameters stay univariate.
// Floats (log ones in log space) and ints are continuous with truncated Gaussian kernels; ints
// are rounded; categoricals, and numbers given as a value list, use category frequencies
// with a prior count of 1 each (univariate) or a kernel that puts half its mass on the
// trial's category (multivariate).
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/search/history.h"
#include "server/search/sampler.h"
#include "server/search/stopping.h"

namespace rung::search {
namespace {

constexpr int kCandidates = 24;
constexpr double kPi = 3.14159265358979323846;
// Kernels further than this many bandwidths from a point add less than exp(-40) of the
// prior's density there, so LogPdf skips them.
constexpr double kCutoff = 9;

double Phi(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

double Gaussian(Rng* rng) {
  const double u1 = std::max(rng->Uniform(), 1e-300), u2 = rng->Uniform();
  return std::sqrt(-2 * std::log(u1)) * std::cos(2 * kPi * u2);
}

// A draw from N(mu, sigma) truncated to [lo, hi].
double TruncatedNormal(double mu, double sigma, double lo, double hi, Rng* rng) {
  for (int tries = 0; tries < 100; ++tries) {
    const double x = mu + sigma * Gaussian(rng);
    if (x >= lo && x <= hi) return x;
  }
  return std::clamp(mu, lo, hi);
}

// log of the density at x of N(mu, sigma) truncated to [lo, hi], less the -z^2/2 term.
double LogNormaliser(double mu, double sigma, double lo, double hi) {
  const double mass = Phi((hi - mu) / sigma) - Phi((lo - mu) / sigma);
  return -std::log(sigma * std::sqrt(2 * kPi) * std::max(mass, 1e-12));
}

// A univariate Parzen estimator on [lo, hi]: a kernel per point plus the prior, a kernel
// as wide as the range at its centre. Kernels are sorted by centre so LogPdf sums only the
// ones near x.
struct Parzen {
  std::vector<double> mu, inv_sigma, log_norm;  // the points' kernels, by centre
  double prior_log_norm = 0, inv_range = 1, window = 0;
  double lo = 0, hi = 1;

  Parzen(std::vector<double> points, double lo_, double hi_) : lo(lo_), hi(hi_) {
    const double range = hi - lo;
    std::sort(points.begin(), points.end());
    const double min_sigma = range / std::min(100.0, static_cast<double>(points.size() + 1));
    double max_sigma = 0;
    for (size_t i = 0; i < points.size(); ++i) {
      const double left = points[i] - (i > 0 ? points[i - 1] : lo);
      const double right = (i + 1 < points.size() ? points[i + 1] : hi) - points[i];
      const double sigma = std::clamp(std::max(left, right), min_sigma, range);
      mu.push_back(points[i]);
      inv_sigma.push_back(1 / sigma);
      log_norm.push_back(LogNormaliser(points[i], sigma, lo, hi));
      max_sigma = std::max(max_sigma, sigma);
    }
    prior_log_norm = LogNormaliser(0.5 * (lo + hi), range, lo, hi);
    inv_range = 1 / range;
    window = kCutoff * max_sigma;
  }

  size_t Components() const { return mu.size() + 1; }

  double Sample(Rng* rng) const {
    const size_t k = rng->Below(Components());
    if (k == mu.size()) return TruncatedNormal(0.5 * (lo + hi), hi - lo, lo, hi, rng);
    return TruncatedNormal(mu[k], 1 / inv_sigma[k], lo, hi, rng);
  }

  double LogPdf(double x) const {
    const double zp = (x - 0.5 * (lo + hi)) * inv_range;
    double sum = std::exp(-0.5 * zp * zp + prior_log_norm);
    const size_t first =
        static_cast<size_t>(std::lower_bound(mu.begin(), mu.end(), x - window) - mu.begin());
    for (size_t i = first; i < mu.size() && mu[i] <= x + window; ++i) {
      const double z = (x - mu[i]) * inv_sigma[i];
      sum += std::exp(-0.5 * z * z + log_norm[i]);
    }
    return std::log(std::max(sum / static_cast<double>(Components()), 1e-300));
  }
};

// A multivariate Parzen estimator over parameters `dims`: one product kernel per trial plus
// the prior component.
class JointParzen {
 public:
  JointParzen(const std::vector<Param>& space, const std::vector<size_t>& dims,
              const std::vector<const History::Trial*>& trials)
      : space_(space), dims_(dims), trials_(trials) {
    const double n = static_cast<double>(trials.size());
    const double d = static_cast<double>(dims.size());
    for (size_t j : dims) {
      Dim dim;
      dim.category = IsCategory(space[j]);
      if (dim.category) {
        dim.k = static_cast<double>(Categories(space[j]));
        // Each trial's kernel: (1/k + [c == its category]) / 2.
        dim.log_hit = std::log((1 / dim.k + 1) / 2);
        dim.log_miss = std::log(1 / dim.k / 2);
      } else {
        ContinuousDomain(space[j], &dim.lo, &dim.hi);
        const double range = dim.hi - dim.lo;
        dim.sigma = std::clamp(0.2 * std::pow(std::max(n, 1.0), -1 / (d + 4)) * range,
                               range / std::min(100.0, n + 1), range);
        for (const History::Trial* t : trials) {
          dim.log_norm.push_back(LogNormaliser(t->values[j], dim.sigma, dim.lo, dim.hi));
        }
        dim.prior_log_norm = LogNormaliser(0.5 * (dim.lo + dim.hi), range, dim.lo, dim.hi);
      }
      dims_info_.push_back(std::move(dim));
    }
  }

  // Encoded values for `dims`, from one component chosen uniformly.
  std::vector<double> Sample(Rng* rng) const {
    const size_t c = rng->Below(trials_.size() + 1);
    const bool prior = c == trials_.size();
    std::vector<double> x;
    for (size_t k = 0; k < dims_.size(); ++k) {
      const Dim& dim = dims_info_[k];
      if (dim.category) {
        const auto n = static_cast<uint64_t>(dim.k);
        x.push_back(!prior && rng->Uniform() < 0.5 ? trials_[c]->values[dims_[k]]
                                                   : static_cast<double>(rng->Below(n)));
      } else if (prior) {
        x.push_back(TruncatedNormal(0.5 * (dim.lo + dim.hi), dim.hi - dim.lo, dim.lo, dim.hi, rng));
      } else {
        x.push_back(TruncatedNormal(trials_[c]->values[dims_[k]], dim.sigma, dim.lo, dim.hi, rng));
      }
    }
    return x;
  }

  double LogPdf(const std::vector<double>& x) const {
    // log-sum-exp over components of the sum over dimensions of each kernel's log density.
    std::vector<double> terms(trials_.size() + 1, 0.0);
    for (size_t k = 0; k < dims_.size(); ++k) {
      const Dim& dim = dims_info_[k];
      const size_t j = dims_[k];
      if (dim.category) {
        for (size_t c = 0; c < trials_.size(); ++c) {
          terms[c] += trials_[c]->values[j] == x[k] ? dim.log_hit : dim.log_miss;
        }
        terms.back() -= std::log(dim.k);
      } else {
        const double inv = 1 / dim.sigma;
        for (size_t c = 0; c < trials_.size(); ++c) {
          const double z = (x[k] - trials_[c]->values[j]) * inv;
          terms[c] += -0.5 * z * z + dim.log_norm[c];
        }
        const double zp = (x[k] - 0.5 * (dim.lo + dim.hi)) / (dim.hi - dim.lo);
        terms.back() += -0.5 * zp * zp + dim.prior_log_norm;
      }
    }
    const double top = *std::max_element(terms.begin(), terms.end());
    double sum = 0;
    for (double t : terms) sum += std::exp(t - top);
    return top + std::log(sum / static_cast<double>(terms.size()));
  }

 private:
  struct Dim {
    bool category = false;
    double k = 0, log_hit = 0, log_miss = 0;               // categorical
    double lo = 0, hi = 1, sigma = 1, prior_log_norm = 0;  // numeric
    std::vector<double> log_norm;                          // numeric, per trial
  };
  const std::vector<Param>& space_;
  const std::vector<size_t> dims_;
  const std::vector<const History::Trial*> trials_;
  std::vector<Dim> dims_info_;
};

class TpeSampler final : public ModelSampler {
 public:
  TpeSampler(const Config& c, int startup) : ModelSampler(c, startup) {
    if (c.tpe_multivariate) {
      for (size_t j = 0; j < space_.size(); ++j) {
        if (space_[j].parent.empty()) joint_.push_back(j);
      }
      if (joint_.size() < 2) joint_.clear();
    }
  }

 private:
  std::shared_ptr<ModelSampler> Clone() const override {
    return std::make_shared<TpeSampler>(*this);
  }

  Params Model(std::vector<const Trial*> done, const std::vector<const Trial*>& running) override {
    std::stable_sort(done.begin(), done.end(), [&](const Trial* a, const Trial* b) {
      return goal_ == Goal::kMaximize ? a->value > b->value : a->value < b->value;
    });
    const size_t n_below = std::min<size_t>(
        25, static_cast<size_t>(std::ceil(0.1 * static_cast<double>(done.size()))));
    std::vector<const Trial*> below(done.begin(), done.begin() + n_below);
    std::vector<const Trial*> above(done.begin() + n_below, done.end());
    above.insert(above.end(), running.begin(), running.end());  // the constant liar
    std::vector<double> encoded(space_.size(), History::kAbsent);
    if (!joint_.empty()) SuggestJoint(below, above, &encoded);
    for (size_t j = 0; j < space_.size(); ++j) {
      if (!std::isnan(encoded[j])) continue;  // chosen jointly
      // Parents come first, so whether j exists is known by now.
      if (!Active(space_[j], history_.Decode(encoded))) continue;
      encoded[j] = Suggest(j, below, above);
    }
    return history_.Decode(encoded);
  }

  // Multivariate: the parameters in joint_ at once, maximising l / g over candidates
  // drawn from l.
  void SuggestJoint(const std::vector<const Trial*>& below, const std::vector<const Trial*>& above,
                    std::vector<double>* encoded) {
    auto complete = [&](const std::vector<const Trial*>& trials) {
      std::vector<const Trial*> out;
      for (const Trial* t : trials) {
        if (std::none_of(joint_.begin(), joint_.end(),
                         [&](size_t j) { return std::isnan(t->values[j]); })) {
          out.push_back(t);
        }
      }
      return out;
    };
    const JointParzen l(space_, joint_, complete(below)), g(space_, joint_, complete(above));
    double best_score = -std::numeric_limits<double>::infinity();
    std::vector<double> best;
    for (int n = 0; n < kCandidates; ++n) {
      std::vector<double> x = l.Sample(&rng_);
      const double score = l.LogPdf(x) - g.LogPdf(x);
      if (score > best_score) {
        best_score = score;
        best = std::move(x);
      }
    }
    for (size_t k = 0; k < joint_.size(); ++k) (*encoded)[joint_[k]] = best[k];
  }

  // The encoded value for parameter j that maximises l / g over candidates drawn from l.
  double Suggest(size_t j, const std::vector<const Trial*>& below,
                 const std::vector<const Trial*>& above) {
    const Param& p = space_[j];
    // Each model learns from the trials that had this parameter, whatever branch they took.
    if (IsCategory(p)) {
      const size_t k = Categories(p);
      std::vector<double> l(k, 1.0), g(k, 1.0);  // a prior count of 1 each
      for (const Trial* t : below) {
        if (!std::isnan(t->values[j])) l[static_cast<size_t>(t->values[j])] += 1;
      }
      for (const Trial* t : above) {
        if (!std::isnan(t->values[j])) g[static_cast<size_t>(t->values[j])] += 1;
      }
      double lsum = 0, gsum = 0;
      for (size_t c = 0; c < k; ++c) {
        lsum += l[c];
        gsum += g[c];
      }
      double best_score = -std::numeric_limits<double>::infinity(), best = 0;
      for (int n = 0; n < kCandidates; ++n) {
        double r = rng_.Uniform() * lsum;
        size_t c = 0;
        while (c + 1 < k && r >= l[c]) r -= l[c++];
        double score = std::log(l[c] / lsum) - std::log(g[c] / gsum);
        if (score > best_score) {
          best_score = score;
          best = static_cast<double>(c);
        }
      }
      return best;
    }
    double lo, hi;
    ContinuousDomain(p, &lo, &hi);
    std::vector<double> lp, gp;
    for (const Trial* t : below) {
      if (!std::isnan(t->values[j])) lp.push_back(t->values[j]);
    }
    for (const Trial* t : above) {
      if (!std::isnan(t->values[j])) gp.push_back(t->values[j]);
    }
    Parzen l(lp, lo, hi), g(gp, lo, hi);
    double best_score = -std::numeric_limits<double>::infinity(), best = 0.5 * (lo + hi);
    for (int n = 0; n < kCandidates; ++n) {
      double x = l.Sample(&rng_);
      double score = l.LogPdf(x) - g.LogPdf(x);
      if (score > best_score) {
        best_score = score;
        best = x;
      }
    }
    return best;
  }

  std::vector<size_t> joint_;  // multivariate: the parameters modelled jointly
};

}  // namespace

std::unique_ptr<Sampler> NewTpeSampler(const Config& config, int startup) {
  return std::make_unique<TpeSampler>(config, startup);
}

}  // namespace rung::search
