// The synthetic learning-curve family shared by the simulation benchmark and its Optuna
// reference (bench/optuna_sim.py implements the same formulas): noisy decay toward a
// configuration-dependent floor, with curves that cross and epochs that take different times.
#ifndef RUNG_BENCH_CURVES_H_
#define RUNG_BENCH_CURVES_H_

#include <cmath>

namespace rung::bench {

constexpr int kDims = 4;

// The loss a configuration x in [0,1]^4 would reach with unlimited training.
inline double Floor(const double* x) {
  static const double kCenter[kDims] = {0.2, 0.7, 0.5, 0.35};
  static const double kWeight[kDims] = {1.0, 0.8, 0.6, 0.4};
  double f = 0.1;
  for (int i = 0; i < kDims; ++i) f += kWeight[i] * (x[i] - kCenter[i]) * (x[i] - kCenter[i]);
  return f;
}

// Deterministic noise in [-1, 1) from the configuration and the epoch.
inline double Noise(const double* x, int epoch) {
  double s =
      std::sin(12.9898 * x[0] + 78.233 * x[1] + 37.719 * x[2] + 4.581 * x[3] + 0.917 * epoch) *
      43758.5453;
  return 2 * (s - std::floor(s)) - 1;
}

// The expected validation loss after `epoch` epochs. x[0] speeds the decay but moves the
// floor away from its best (0.2), so early rankings mislead: the curves cross.
inline double MeanLoss(const double* x, int epoch) {
  const double a = 0.5 + 1.5 * x[3];
  const double b = 0.3 + 1.2 * x[0];
  return Floor(x) + a * std::pow(static_cast<double>(epoch), -b);
}

// What a trial observes: the mean plus noise that shrinks as training goes on.
inline double Loss(const double* x, int epoch) {
  return MeanLoss(x, epoch) + 0.02 * Noise(x, epoch) / std::sqrt(static_cast<double>(epoch));
}

// Simulated seconds one epoch takes: good values of x[1] (0.7) make slower models.
inline double EpochSeconds(const double* x) { return 1.0 + 2.0 * x[1]; }

}  // namespace rung::bench

#endif  // RUNG_BENCH_CURVES_H_
