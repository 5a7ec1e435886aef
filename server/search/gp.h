// A Gaussian process with a Matérn-5/2 ARD kernel, for the GP sampler (and its tests).
#ifndef RUNG_SERVER_SEARCH_GP_H_
#define RUNG_SERVER_SEARCH_GP_H_

#include "Eigen/Cholesky"
#include "Eigen/Dense"

namespace rung::search {

// k(r) / signal for scaled distance r.
double Matern52(double r);

struct GpHyper {
  Eigen::VectorXd log_lengthscale;  // one per feature
  double log_signal = 0;            // log signal variance
  double log_noise = -6.9;          // log noise variance
};

class GaussianProcess {
 public:
  // Conditions on observations `x` (one row each) and `y`. False when the kernel matrix is
  // not positive definite.
  bool Fit(const Eigen::MatrixXd& x, const Eigen::VectorXd& y, const GpHyper& h);
  // Posterior mean and variance of the latent function at `x`.
  void Predict(const Eigen::VectorXd& x, double* mean, double* var) const;
  // log p(y | x, hyperparameters).
  double LogMarginal() const;

 private:
  double Kernel(const Eigen::Ref<const Eigen::VectorXd>& a,
                const Eigen::Ref<const Eigen::VectorXd>& b) const;
  Eigen::MatrixXd xt_;  // observations, one column each
  Eigen::VectorXd y_, alpha_;
  Eigen::LLT<Eigen::MatrixXd> llt_;
  GpHyper h_;
  Eigen::VectorXd inv_lengthscale_;  // exp(-log_lengthscale), computed once a fit
  double signal_ = 1;                // exp(log_signal)
};

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_GP_H_
