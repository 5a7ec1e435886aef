// A C++ trial that runs trial after trial in one process (trial: {reuse_process: true}) with
// rung/trials.h; by hand (no RUNG_* environment) it runs one trial with the defaults.
#include <unistd.h>

#include <cmath>
#include <iostream>
#include <optional>

#include "rung/trials.h"

int main() {
  rung::Trials trials;
  while (std::optional<rung::CurrentTrial> t = trials.Next()) {
    const double x = t->Number("x", 0.5);
    for (int step = 1; step <= t->BudgetOr(3); ++step) {
      const double loss = (x - 0.3) * (x - 0.3) + 1.0 / step;
      if (t->Report(step, {{"loss", loss}, {"pid", static_cast<double>(getpid())}})) break;
    }
    std::cout << "trial " << (t->id().empty() ? "(by hand)" : t->id()) << " done" << std::endl;
  }
  return 0;
}
