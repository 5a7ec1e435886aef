// TPE: model the parameters of the best trials, l(x), and of the rest, g(x), with Parzen
// estimators, and pick, among candidates drawn from l, the one maximising l(x) / g(x).
// Univariate (each parameter on its own), as Optuna's and Hyperopt's defaults are:
// - the best gamma(n) = min(ceil(0.1 n), 25) completed trials form l;
// - the rest, and every trial still running (the constant liar), form g;
// - 24 candidates; each estimator has a prior component over the whole range;
// - bandwidths are the larger gap to a neighbour, clipped to [range / min(100, n + 1), range].
// Floats (log ones in log space) and ints are continuous with truncated Gaussian kernels; ints
// are rounded; categoricals, and numbers given as a value list, use category frequencies
// with a prior count of 1 each.
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



double Phi(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

struct Parzen {
  std::vector<double> mu, sigma, scale, inv_sigma;
  double lo = 0, hi = 1;

  Parzen(std::vector<double> points, double lo_, double hi_) : lo(lo_), hi(hi_) {
    const double range = hi - lo;
    points.push_back(0.5 * (lo + hi));  // the prior
    std::sort(points.begin(), points.end());
    const double min_sigma = range / std::min(100.0, static_cast<double>(points.size()));
    for (size_t i = 0; i < points.size(); ++i) {
      double left = points[i] - (i > 0 ? points[i - 1] : lo);
      double right = (i + 1 < points.size() ? points[i + 1] : hi) - points[i];
      mu.push_back(points[i]);
      sigma.push_back(std::clamp(std::max(left, right), min_sigma, range));
    }
    // The prior component is as wide as the range.
    for (size_t i = 0; i < mu.size(); ++i) {
      if (mu[i] == 0.5 * (lo + hi)) {
        sigma[i] = range;
        break;
      }
    }
    // Each kernel's normaliser (truncated to [lo, hi]), computed once, not per candidate.
    for (size_t i = 0; i < mu.size(); ++i) {
      const double mass = Phi((hi - mu[i]) / sigma[i]) - Phi((lo - mu[i]) / sigma[i]);
      scale.push_back(1.0 / (sigma[i] * std::sqrt(2 * kPi) * std::max(mass, 1e-12)));
      inv_sigma.push_back(1.0 / sigma[i]);
    }
  }

  double Sample(Rng* rng) const {
    const size_t k = rng->Below(mu.size());
    for (int tries = 0; tries < 100; ++tries) {
      // Box-Muller from the seeded generator.
      double u1 = std::max(rng->Uniform(), 1e-300), u2 = rng->Uniform();
      double z = std::sqrt(-2 * std::log(u1)) * std::cos(2 * kPi * u2);
      double x = mu[k] + sigma[k] * z;
      if (x >= lo && x <= hi) return x;
    }
    return std::clamp(mu[k], lo, hi);
  }

  double LogPdf(double x) const {
    double sum = 0;
    for (size_t i = 0; i < mu.size(); ++i) {
      const double z = (x - mu[i]) * inv_sigma[i];
      sum += std::exp(-0.5 * z * z) * scale[i];
    }
    return std::log(std::max(sum / static_cast<double>(mu.size()), 1e-300));
  }
};

class TpeSampler final : public ModelSampler {
 public:
  TpeSampler(const Config& c, int startup) : ModelSampler(c, startup) {}

 private:
  Params Model(std::vector<const Trial*> done, const std::vector<const Trial*>& running) override {
    std::stable_sort(done.begin(), done.end(), [&](const Trial* a, const Trial* b) {
      return goal_ == Goal::kMaximize ? a->value > b->value : a->value < b->value;
    });
    const size_t n_below =
        std::min<size_t>(25, static_cast<size_t>(std::ceil(0.1 * static_cast<double>(done.size()))));
    std::vector<const Trial*> below(done.begin(), done.begin() + n_below);
    std::vector<const Trial*> above(done.begin() + n_below, done.end());
    above.insert(above.end(), running.begin(), running.end());  // the constant liar
    std::vector<double> encoded(space_.size(), History::kAbsent);
    for (size_t j = 0; j < space_.size(); ++j) {
      // Parents come first, so whether j exists is known by now.
      if (!Active(space_[j], history_.Decode(encoded))) continue;
      encoded[j] = Suggest(j, below, above);
    }
    return history_.Decode(encoded);
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

};

}  // namespace

std::unique_ptr<Sampler> NewTpeSampler(const Config& config, int startup) {
  return std::make_unique<TpeSampler>(config, startup);
}

}  // namespace rung::search
