// rungd's Prometheus metrics. Gauges about experiments, trials, workers and slots are read
// from the Controller at scrape time, so they are never stale; RPC counts are kept here.
#ifndef RUNG_SERVER_API_METRICS_H_
#define RUNG_SERVER_API_METRICS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/server_interceptor.h"
#include "grpcpp/support/status.h"
#include "server/schedule/controller.h"

namespace prometheus {
class Collectable;
class Exposer;
class Registry;
template <typename T>
class Family;
class Counter;
class Histogram;
}  // namespace prometheus

namespace rung {

class ServerMetrics {
 public:
  // Serves /metrics on `listen` (host:port; port 0 picks a free one), behind HTTP basic auth
  // when `user_password` ("USER:PASSWORD") is not empty. `controller` must outlive this object,
  // or DetachController().
  static absl::StatusOr<std::unique_ptr<ServerMetrics>> Start(
      const std::string& listen, Controller* controller, const std::string& user_password = "");
  ~ServerMetrics();

  // Counts one finished RPC. Thread-safe.
  void CountRpc(absl::string_view method, grpc::StatusCode code);
  // Times every RPC ("ExperimentService.GetExperiment") into rung_rpc_duration_seconds; give
  // it to grpc::ServerBuilder::experimental().SetInterceptorCreators.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> RpcTimer();
  void ObserveRpc(const std::string& method, double seconds);
  // One checkpoint transfer (CheckpointService): `direction` "upload" or "download", the
  // bytes it moved and how long it took. Thread-safe.
  void ObserveCheckpoint(const std::string& direction, int64_t bytes, double seconds);
  int port() const { return port_; }
  // After it returns, scrapes no longer read the controller (which may then go away).
  void DetachController();

 private:
  ServerMetrics() = default;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Collectable> state_;
  prometheus::Family<prometheus::Counter>* rpcs_ = nullptr;
  prometheus::Family<prometheus::Histogram>* rpc_seconds_ = nullptr;
  prometheus::Family<prometheus::Counter>* checkpoint_bytes_ = nullptr;
  prometheus::Family<prometheus::Histogram>* checkpoint_seconds_ = nullptr;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

}  // namespace rung

#endif  // RUNG_SERVER_API_METRICS_H_
