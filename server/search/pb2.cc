// PB2's explore (Parker-Holder et al., 2020, "Provably efficient online hyperparameter
// optimization with population-based bandits"): the parameters a member takes when it
// exploits are chosen by a GP bandit on the improvement recent segments made, rather than by
// perturbing the donor's. The GP is rung's (gp.h): a Matérn-5/2 kernel on (time, parameters in
// the unit cube), outputs scaled to [0, 1], fixed length scales (there are few observations and
// they drift with time, which the time input lets the model follow). The other members'
// current parameters enter as pending points at their believed mean (GP-BUCB), so that
// members that exploit at once spread out.
#include <algorithm>
#include <cmath>
#include <limits>

#include "Eigen/Dense"
#include "server/search/gp.h"
#include "server/search/history.h"
#include "server/search/pbt.h"
#include "server/search/sampler.h"

namespace rung::search {

namespace {

constexpr int kRandomCandidates = 256;
constexpr int kPerturbedCandidates = 64;
constexpr double kKappa = 1;              // UCB: mean + kappa sd
constexpr double kSignal = 0.25;          // the kernel's variance, of the [0, 1] improvement
constexpr double kLengthscale = 0.3;      // on the unit cube
constexpr double kTimeLengthscale = 0.5;  // time, scaled to [0, 1] over the observations
constexpr double kNoise = 0.01;           // the noise variance, of the [0, 1] improvement

}  // namespace

std::vector<double> Population::Unit(const Params& params) const {
  std::vector<double> x;
  for (const Param& p : space_) {
    auto it = params.find(p.name);
    if (it == params.end()) {
      x.push_back(0.5);  // a conditional parameter that is absent: the middle
      continue;
    }
    if (p.kind == Param::Kind::kCategorical) {
      const auto at =
          std::find(p.values.begin(), p.values.end(), std::get<std::string>(it->second));
      const double n = static_cast<double>(p.values.size());
      x.push_back(n > 1 ? static_cast<double>(at - p.values.begin()) / (n - 1) : 0.5);
      continue;
    }
    double lo, hi;
    ContinuousDomain(p, &lo, &hi);
    double v = p.kind == Param::Kind::kInt ? static_cast<double>(std::get<int64_t>(it->second))
                                           : std::get<double>(it->second);
    if (p.log) v = std::log(std::max(v, 1e-300));
    x.push_back(hi > lo ? std::clamp((v - lo) / (hi - lo), 0.0, 1.0) : 0.5);
  }
  return x;
}

Params Population::Pb2Explore(const Params& from, double at, int member) {
  if (observations_.size() < 2) return Explore(from);
  const size_t dims = 1 + space_.size();
  double t_max = at;
  for (const Observation& o : observations_) t_max = std::max(t_max, o.at);
  auto point = [&](const Params& params, double t) {
    Eigen::VectorXd x(static_cast<Eigen::Index>(dims));
    x(0) = t_max > 0 ? t / t_max : 0;
    const std::vector<double> u = Unit(params);
    for (size_t k = 0; k < u.size(); ++k) x(static_cast<Eigen::Index>(k + 1)) = u[k];
    return x;
  };
  const Eigen::Index n = static_cast<Eigen::Index>(observations_.size());
  Eigen::MatrixXd x(n, static_cast<Eigen::Index>(dims));
  Eigen::VectorXd y(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const Observation& o = observations_[static_cast<size_t>(i)];
    x.row(i) = point(o.params, o.at).transpose();
    y(i) = o.improvement;
  }
  // Scaled to [0, 1], worst to best, as PB2 does: the GP's prior mean, 0, is the worst
  // improvement seen, so a region no segment has tried is worth its uncertainty alone.
  const double lo = y.minCoeff(), range = y.maxCoeff() - lo;
  y = (y.array() - lo) / (range > 1e-12 ? range : 1.0);
  GpHyper h;
  h.log_lengthscale =
      Eigen::VectorXd::Constant(static_cast<Eigen::Index>(dims), std::log(kLengthscale));
  h.log_lengthscale(0) = std::log(kTimeLengthscale);
  h.log_signal = std::log(kSignal);
  h.log_noise = std::log(kNoise);
  GaussianProcess gp;
  if (!gp.Fit(x, y, h)) return Explore(from);
  // The other members train with their parameters now: pending, at the mean the model
  // believes of them, which narrows its uncertainty there.
  std::vector<Eigen::VectorXd> pending;
  for (const auto& [m, s] : members_) {
    if (m != member) pending.push_back(point(s.params, at));
  }
  if (!pending.empty()) {
    Eigen::MatrixXd xa(n + static_cast<Eigen::Index>(pending.size()), x.cols());
    Eigen::VectorXd ya(xa.rows());
    xa.topRows(n) = x;
    ya.head(n) = y;
    for (size_t i = 0; i < pending.size(); ++i) {
      double mu, var;
      gp.Predict(pending[i], &mu, &var);
      xa.row(n + static_cast<Eigen::Index>(i)) = pending[i].transpose();
      ya(n + static_cast<Eigen::Index>(i)) = mu;
    }
    GaussianProcess believer;
    if (believer.Fit(xa, ya, h)) gp = std::move(believer);
  }
  std::vector<Params> candidates;
  for (int i = 0; i < kPerturbedCandidates; ++i) candidates.push_back(Explore(from));
  for (int i = 0; i < kRandomCandidates; ++i) candidates.push_back(SampleSpace(space_, &rng_));
  size_t best = 0;
  double best_score = -std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < candidates.size(); ++i) {
    double mu, var;
    gp.Predict(point(candidates[i], at), &mu, &var);
    const double score = mu + kKappa * std::sqrt(var);
    if (score > best_score) {
      best_score = score;
      best = i;
    }
  }
  return candidates[best];
}

}  // namespace rung::search
