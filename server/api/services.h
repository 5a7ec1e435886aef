// rungd's gRPC services on the callback API. Thin: validate, translate, hand off to the
// Controller, map absl::Status to grpc::Status in one place (ToGrpc).
#ifndef RUNG_SERVER_API_SERVICES_H_
#define RUNG_SERVER_API_SERVICES_H_

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "rung/v1/admin_service.grpc.pb.h"
#include "rung/v1/experiment_service.grpc.pb.h"
#include "rung/v1/worker_service.grpc.pb.h"
#include "server/api/auth.h"
#include "server/api/metrics.h"
#include "server/schedule/controller.h"

namespace rung {

grpc::Status ToGrpc(const absl::Status& s);

// Both services borrow `controller` and `metrics`, which must outlive the server.
class ExperimentServiceImpl final : public v1::ExperimentService::CallbackService {
 public:
  ExperimentServiceImpl(Controller* controller, ServerMetrics* metrics, const Auth* auth)
      : controller_(controller), metrics_(metrics), auth_(auth) {}

  grpc::ServerUnaryReactor* CreateExperiment(grpc::CallbackServerContext* ctx,
                                             const v1::CreateExperimentRequest* req,
                                             v1::Experiment* resp) override;
  grpc::ServerUnaryReactor* GetExperiment(grpc::CallbackServerContext* ctx,
                                          const v1::GetExperimentRequest* req,
                                          v1::Experiment* resp) override;
  grpc::ServerUnaryReactor* ListExperiments(grpc::CallbackServerContext* ctx,
                                            const v1::ListExperimentsRequest* req,
                                            v1::ListExperimentsResponse* resp) override;
  grpc::ServerUnaryReactor* CancelExperiment(grpc::CallbackServerContext* ctx,
                                             const v1::ExperimentRequest* req,
                                             v1::Experiment* resp) override;
  grpc::ServerUnaryReactor* PauseExperiment(grpc::CallbackServerContext* ctx,
                                            const v1::ExperimentRequest* req,
                                            v1::Experiment* resp) override;
  grpc::ServerUnaryReactor* ResumeExperiment(grpc::CallbackServerContext* ctx,
                                             const v1::ExperimentRequest* req,
                                             v1::Experiment* resp) override;
  grpc::ServerUnaryReactor* ListTrials(grpc::CallbackServerContext* ctx,
                                       const v1::ListTrialsRequest* req,
                                       v1::ListTrialsResponse* resp) override;
  grpc::ServerUnaryReactor* GetTrial(grpc::CallbackServerContext* ctx,
                                     const v1::GetTrialRequest* req, v1::Trial* resp) override;
  grpc::ServerUnaryReactor* GetTrialMetrics(grpc::CallbackServerContext* ctx,
                                            const v1::GetTrialMetricsRequest* req,
                                            v1::GetTrialMetricsResponse* resp) override;
  grpc::ServerUnaryReactor* GetBestTrials(grpc::CallbackServerContext* ctx,
                                          const v1::GetBestTrialsRequest* req,
                                          v1::GetBestTrialsResponse* resp) override;
  grpc::ServerUnaryReactor* GetTrialLogs(grpc::CallbackServerContext* ctx,
                                         const v1::GetTrialLogsRequest* req,
                                         v1::GetTrialLogsResponse* resp) override;
  grpc::ServerUnaryReactor* GetCurves(grpc::CallbackServerContext* ctx,
                                      const v1::GetCurvesRequest* req,
                                      v1::GetCurvesResponse* resp) override;
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* ctx,
                                        const v1::ListWorkersRequest* req,
                                        v1::ListWorkersResponse* resp) override;
  grpc::ServerUnaryReactor* GetAblation(grpc::CallbackServerContext* ctx,
                                        const v1::GetAblationRequest* req,
                                        v1::AblationResults* resp) override;
  grpc::ServerWriteReactor<v1::WatchEvent>* WatchExperiment(
      grpc::CallbackServerContext* ctx, const v1::WatchExperimentRequest* req) override;
  grpc::ServerUnaryReactor* AskTrials(grpc::CallbackServerContext* ctx,
                                      const v1::AskTrialsRequest* req,
                                      v1::AskTrialsResponse* resp) override;
  grpc::ServerUnaryReactor* ReportTrial(grpc::CallbackServerContext* ctx,
                                        const v1::ReportTrialRequest* req,
                                        v1::ReportTrialResponse* resp) override;
  grpc::ServerUnaryReactor* CompleteTrial(grpc::CallbackServerContext* ctx,
                                          const v1::CompleteTrialRequest* req,
                                          v1::Trial* resp) override;
  grpc::ServerUnaryReactor* TellTrials(grpc::CallbackServerContext* ctx,
                                       const v1::TellTrialsRequest* req,
                                       v1::TellTrialsResponse* resp) override;

 private:
  grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const char* method,
                                 const absl::Status& s);
  // The caller, allowed to use `experiment_id` (when not empty): a user only its own; about
  // anyone else's it hears what a missing experiment (or trial `trial_id`) would get.
  absl::StatusOr<Caller> Allow(grpc::CallbackServerContext* ctx, const char* method,
                               const std::string& experiment_id, const std::string& trial_id);
  Controller* const controller_;
  ServerMetrics* const metrics_;
  const Auth* const auth_;
};

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  AdminServiceImpl(Controller* controller, ServerMetrics* metrics, const Auth* auth)
      : controller_(controller), metrics_(metrics), auth_(auth) {}

  grpc::ServerUnaryReactor* ReplaySearch(grpc::CallbackServerContext* ctx,
                                         const v1::ReplaySearchRequest* req,
                                         v1::ReplaySearchResponse* resp) override;
  grpc::ServerUnaryReactor* Backup(grpc::CallbackServerContext* ctx, const v1::BackupRequest* req,
                                   v1::BackupResponse* resp) override;

 private:
  Controller* const controller_;
  ServerMetrics* const metrics_;
  const Auth* const auth_;
};

class WorkerServiceImpl final : public v1::WorkerService::CallbackService {
 public:
  WorkerServiceImpl(Controller* controller, ServerMetrics* metrics, const Auth* auth)
      : controller_(controller), metrics_(metrics), auth_(auth) {}
  grpc::ServerBidiReactor<v1::WorkerMessage, v1::ControllerMessage>* Connect(
      grpc::CallbackServerContext* ctx) override;

 private:
  Controller* const controller_;
  ServerMetrics* const metrics_;
  const Auth* const auth_;
};

}  // namespace rung

#endif  // RUNG_SERVER_API_SERVICES_H_
