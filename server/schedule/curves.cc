#include "server/schedule/curves.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace rung {

std::vector<size_t> Lttb(const std::vector<double>& x, const std::vector<double>& y, size_t keep) {
  const size_t n = x.size();
  std::vector<size_t> out;
  if (keep >= n || keep < 3) {
    out.resize(n);
    for (size_t i = 0; i < n; ++i) out[i] = i;
    return out;
  }
  out.reserve(keep);
  out.push_back(0);
  // The points between the first and the last fall into keep - 2 buckets; from each the point
  // that makes the largest triangle with the point kept before it and the mean of the next
  // bucket is kept.
  const double every = static_cast<double>(n - 2) / static_cast<double>(keep - 2);
  size_t a = 0;
  for (size_t b = 0; b < keep - 2; ++b) {
    const size_t lo = static_cast<size_t>(std::floor(b * every)) + 1;
    const size_t hi = std::min(static_cast<size_t>(std::floor((b + 1) * every)) + 1, n - 1);
    const size_t next_lo = hi;
    const size_t next_hi = std::min(static_cast<size_t>(std::floor((b + 2) * every)) + 1, n);
    double mx = 0, my = 0;
    for (size_t i = next_lo; i < next_hi; ++i) {
      mx += x[i];
      my += y[i];
    }
    const double count = static_cast<double>(std::max<size_t>(next_hi - next_lo, 1));
    mx /= count;
    my /= count;
    if (next_hi <= next_lo) {  // the last bucket: the triangle closes on the last point
      mx = x[n - 1];
      my = y[n - 1];
    }
    size_t best = lo;
    double best_area = -1;
    for (size_t i = lo; i < hi; ++i) {
      const double area = std::fabs((x[a] - mx) * (y[i] - y[a]) - (x[a] - x[i]) * (my - y[a]));
      if (area > best_area) {
        best_area = area;
        best = i;
      }
    }
    out.push_back(best);
    a = best;
  }
  out.push_back(n - 1);
  return out;
}

CurveBuilder::CurveBuilder(std::string metric, std::string x_metric) {
  out_.set_metric(std::move(metric));
  out_.set_x_metric(std::move(x_metric));
}

void CurveBuilder::Add(const v1::MetricReport& r) {
  auto y = r.values().find(out_.metric());
  if (y == r.values().end()) return;
  double x = r.step();
  if (out_.x_metric() != "step") {
    auto it = r.values().find(out_.x_metric());
    if (it != r.values().end()) x = it->second;
  }
  if (out_.curves_size() == 0 || out_.curves().rbegin()->trial_id() != r.trial_id()) {
    out_.add_curves()->set_trial_id(r.trial_id());
  }
  v1::Curve* c = out_.mutable_curves(out_.curves_size() - 1);
  c->add_x(x);
  c->add_y(y->second);
  c->set_reported(c->reported() + 1);
  c->set_last_attempt(r.attempt());
  c->set_last_seq(r.seq());
  ++points_;
}

v1::GetCurvesResponse CurveBuilder::Finish(int64_t max_points) {
  out_.set_points(points_);
  if (max_points <= 0 || points_ <= max_points || out_.curves_size() == 0) return std::move(out_);
  const size_t share = static_cast<size_t>(
      std::max<int64_t>(16, max_points / static_cast<int64_t>(out_.curves_size())));
  for (v1::Curve& c : *out_.mutable_curves()) {
    if (static_cast<size_t>(c.x_size()) <= share) continue;
    const std::vector<double> x(c.x().begin(), c.x().end()), y(c.y().begin(), c.y().end());
    c.clear_x();
    c.clear_y();
    for (size_t i : Lttb(x, y, share)) {
      c.add_x(x[i]);
      c.add_y(y[i]);
    }
    out_.set_downsampled(true);
  }
  return std::move(out_);
}

}  // namespace rung
