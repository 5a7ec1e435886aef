#include "worker/launcher.h"

#include "worker/subprocess.h"

namespace rung {
namespace {

class RealLauncher final : public ProcessLauncher {
 public:
  absl::StatusOr<std::unique_ptr<Process>> Spawn(const SpawnOptions& options) override {
    auto p = Subprocess::Spawn(options);
    if (!p.ok()) return p.status();
    return std::unique_ptr<Process>(std::move(*p));
  }
  std::map<std::string, std::string> Environment() override { return CurrentEnvironment(); }
};

}  // namespace

ProcessLauncher* ProcessLauncher::Real() {
  static ProcessLauncher* const launcher = new RealLauncher();
  return launcher;
}

}  // namespace rung
