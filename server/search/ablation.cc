#include "server/search/ablation.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace rung::search {
namespace {

std::string Quote(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, absl::StrFormat("\\u%04x", c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

std::string Variant::Json() const {
  std::vector<std::string> quoted;
  for (const auto& d : dropped) quoted.push_back(Quote(d));
  return absl::StrCat("{\"kind\": ", Quote(kind), ", \"name\": ", Quote(name), ", \"dropped\": [",
                      absl::StrJoin(quoted, ", "), "]}");
}

std::vector<Variant> LeaveOneComponentOut::Variants(
    const std::vector<Component>& components) const {
  std::vector<Variant> out = {{"base", "base", {}}};
  for (const Component& c : components) out.push_back({c.kind, c.name, c.members});
  return out;
}

namespace {

// The regularized incomplete beta function I_x(a, b), by its continued fraction (modified
// Lentz), using the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) where the fraction converges slowly.
double BetaContinuedFraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  double c = 1, d = 1 - (a + b) * x / (a + 1);
  d = 1 / (std::fabs(d) < kTiny ? kTiny : d);
  double h = d;
  for (int m = 1; m <= 300; ++m) {
    const double m2 = 2.0 * m;
    double num = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
    d = 1 + num * d;
    d = 1 / (std::fabs(d) < kTiny ? kTiny : d);
    c = 1 + num / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    h *= d * c;
    num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
    d = 1 + num * d;
    d = 1 / (std::fabs(d) < kTiny ? kTiny : d);
    c = 1 + num / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    const double step = d * c;
    h *= step;
    if (std::fabs(step - 1) < 1e-15) break;
  }
  return h;
}

double RegularizedBeta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double front = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) +
                                a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1) / (a + b + 2)) return front * BetaContinuedFraction(a, b, x) / a;
  return 1 - front * BetaContinuedFraction(b, a, 1 - x) / b;
}

struct Moments {
  int n = 0;
  double mean = std::nan(""), var = std::nan("");
};

Moments Of(const std::vector<double>& xs) {
  Moments m;
  m.n = static_cast<int>(xs.size());
  if (m.n == 0) return m;
  double sum = 0;
  for (double x : xs) sum += x;
  m.mean = sum / m.n;
  if (m.n < 2) return m;
  double ss = 0;
  for (double x : xs) ss += (x - m.mean) * (x - m.mean);
  m.var = ss / (m.n - 1);
  return m;
}

}  // namespace

double TwoSidedP(double t, double df) {
  if (std::isnan(t) || !(df > 0)) return std::nan("");
  if (std::isinf(t)) return 0;
  return RegularizedBeta(df / 2, 0.5, df / (df + t * t));
}

std::vector<VariantResult> Summarize(const std::vector<Variant>& variants,
                                     const std::vector<Run>& runs, bool minimize, double alpha) {
  std::vector<std::vector<double>> values(variants.size());
  std::vector<std::map<int, double>> by_repeat(variants.size());
  for (const Run& r : runs) {
    if (r.variant >= variants.size()) continue;
    values[r.variant].push_back(r.value);
    by_repeat[r.variant][r.repeat] = r.value;
  }
  std::vector<VariantResult> out(variants.size());
  const Moments base = variants.empty() ? Moments() : Of(values[0]);
  for (size_t v = 0; v < variants.size(); ++v) {
    VariantResult& r = out[v];
    r.variant = variants[v];
    const Moments m = Of(values[v]);
    r.runs = m.n;
    r.mean = m.mean;
    r.stddev = std::sqrt(m.var);
    if (v == 0) continue;
    r.delta = m.mean - base.mean;
    r.harm = minimize ? r.delta : -r.delta;
    // Paired on the repeats (shared seeds) where both ran; else Welch's unequal variances.
    std::vector<double> diffs;
    for (const auto& [repeat, x] : by_repeat[v]) {
      auto it = by_repeat[0].find(repeat);
      if (it != by_repeat[0].end()) diffs.push_back(x - it->second);
    }
    double t = std::nan(""), df = 0;
    if (diffs.size() >= 2) {
      const Moments d = Of(diffs);
      r.test = "paired t";
      df = d.n - 1;
      t = d.var > 0 ? d.mean / std::sqrt(d.var / d.n)
                    : (d.mean == 0 ? 0 : std::copysign(INFINITY, d.mean));
    } else if (m.n >= 2 && base.n >= 2) {
      r.test = "Welch t";
      const double a = m.var / m.n, b = base.var / base.n;
      if (a + b > 0) {
        t = r.delta / std::sqrt(a + b);
        df = (a + b) * (a + b) / (a * a / (m.n - 1) + b * b / (base.n - 1));
      } else {
        t = r.delta == 0 ? 0 : std::copysign(INFINITY, r.delta);
        df = m.n + base.n - 2;
      }
    }
    if (!r.test.empty()) {
      r.p = TwoSidedP(t, df);
      r.significant = r.p < alpha;
    }
  }
  // Rank the removals by harm, the most harmful first.
  std::vector<size_t> order;
  for (size_t v = 1; v < out.size(); ++v) {
    if (out[v].runs > 0 && !std::isnan(out[v].harm)) order.push_back(v);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return out[a].harm > out[b].harm; });
  for (size_t i = 0; i < order.size(); ++i) out[order[i]].rank = static_cast<int>(i) + 1;
  return out;
}

absl::StatusOr<std::unique_ptr<AblationPolicy>> NewAblationPolicy(absl::string_view name) {
  if (name == "loco" || name.empty()) return std::make_unique<LeaveOneComponentOut>();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown ablation policy '", name, "' (known: loco)"));
}

}  // namespace rung::search
