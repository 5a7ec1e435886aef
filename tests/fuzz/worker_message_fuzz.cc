// libFuzzer target: the controller's handling of worker messages. Each input picks a
// well-formed message about a real trial (started, reports, exited, pull, heartbeat, or a new
// registration) and merges its remaining bytes over it as protobuf wire data, so the fuzzer
// explores near-valid messages as well as garbage. The controller runs on a real RocksDB in a
// temp folder; any status is fine, a crash or a sanitizer report is not.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/log.h"
#include "server/schedule/controller.h"
#include "server/spec/spec.h"
#include "server/store/store.h"

namespace {

class NullSink : public rung::WorkerSink {
 public:
  void Send(const rung::v1::ControllerMessage& m) override {
    if (m.has_assignment()) last = m.assignment().trial();
  }
  rung::v1::Trial last;
};

struct World {
  std::unique_ptr<rung::Store> store;
  rung::FakeClock clock;
  std::unique_ptr<rung::Controller> controller;
  NullSink sink;
  int64_t session = 0;
  int64_t seq = 0;

  World() {
    rung::SetLogLevel(rung::LogLevel::kError);
    char tmpl[] = "/tmp/rung-fuzz-XXXXXX";
    std::string dir = mkdtemp(tmpl);
    rung::Store::Options so;
    so.group_commit = false;
    store = std::move(rung::Store::Open(dir, so).value());
    rung::ControllerOptions o;
    o.run_job = [](std::function<void()>) {};  // random sampling: no model jobs
    controller = std::move(rung::Controller::Create(store.get(), &clock, o).value());
    auto spec = rung::ParseSpecYaml(R"(
objective: {metric: loss, goal: minimize}
resource: {metric: epoch, min: 1, max: 9}
search_space: {x: {type: float, min: 0, max: 1}, c: {type: categorical, values: [a, b]}}
algorithm: {name: random, seed: 1, early_stopping: {rule: asha}}
budget: {max_trials: 1000000, max_concurrent: 4}
trial: {command: [train], max_restarts: 3}
)",
                                    "/base");
    controller->CreateExperiment(spec.value(), "",
                                 [](absl::StatusOr<rung::v1::Experiment> e) { e.value(); });
    Register();
  }

  void Register() {
    rung::v1::Register reg;
    reg.set_worker_id("fuzz");
    for (int i = 0; i < 4; ++i) reg.add_slots()->set_id(i);
    auto s = controller->WorkerConnected(reg, &sink);
    session = s.ok() ? *s : 0;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* w = new World();
  if (size == 0) return 0;
  rung::v1::WorkerMessage m;
  const rung::v1::Trial& t = w->sink.last;
  switch (data[0] % 6) {
    case 0:
      m.mutable_pull()->add_free_slots(data[0] / 6 % 4);
      break;
    case 1:
      m.mutable_started()->mutable_trial()->set_trial_id(t.id());
      m.mutable_started()->mutable_trial()->set_attempt(t.attempt());
      break;
    case 2: {
      auto* r = m.mutable_reports()->add_reports();
      r->set_trial_id(t.id());
      r->set_attempt(t.attempt());
      r->set_seq(++w->seq);
      (*r->mutable_values())["loss"] = 0.5;
      (*r->mutable_values())["epoch"] = static_cast<double>(w->seq % 10);
      break;
    }
    case 3:
      m.mutable_exited()->mutable_trial()->set_trial_id(t.id());
      m.mutable_exited()->mutable_trial()->set_attempt(t.attempt());
      break;
    case 4:
      m.mutable_heartbeat();
      break;
    case 5:
      w->controller->WorkerDisconnected(w->session);
      w->Register();
      return 0;
  }
  m.set_seq(++w->seq);
  // Bytes that are not a message never reach the controller: gRPC refuses them.
  rung::v1::WorkerMessage extra;
  if (!extra.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
  m.MergeFrom(extra);
  if (!w->controller->HandleWorkerMessage(w->session, m).ok()) {
    // The stream would end here: the worker reconnects.
    w->controller->WorkerDisconnected(w->session);
    w->Register();
  }
  w->controller->Tick();
  return 0;
}
