// Learning curves for GetCurves: every trial's points of one metric, and their reduction to a
// budget of points with largest-triangle-three-buckets (Steinarsson, 2013), which keeps a
// curve's shape (its peaks and drops) far better than taking every k-th point.
#ifndef RUNG_SERVER_SCHEDULE_CURVES_H_
#define RUNG_SERVER_SCHEDULE_CURVES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "rung/v1/experiment_service.pb.h"
#include "rung/v1/types.pb.h"

namespace rung {

// The indices of the points of (x[i], y[i]) that LTTB keeps: `keep` of them, the first and
// the last among them, in order. All of them when there are no more than `keep` (or keep < 3).
std::vector<size_t> Lttb(const std::vector<double>& x, const std::vector<double>& y, size_t keep);

// Gathers curves from an experiment's reports, given in (trial, attempt, seq) order.
class CurveBuilder {
 public:
  // `metric` on the y axis; `x_metric` on the x axis ("step": the report's step; otherwise the
  // report's value of it, or its step when the report lacks it).
  CurveBuilder(std::string metric, std::string x_metric);
  void Add(const v1::MetricReport& r);
  // The curves, each reduced to an equal share of `max_points` (at least 16 points) when
  // there are more in all; max_points 0: every point.
  v1::GetCurvesResponse Finish(int64_t max_points);

 private:
  v1::GetCurvesResponse out_;
  int64_t points_ = 0;
};

}  // namespace rung

#endif  // RUNG_SERVER_SCHEDULE_CURVES_H_
