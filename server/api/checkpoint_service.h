// CheckpointService: workers upload the checkpoint folder a trial attempt left (as an
// archive, in chunks, resumable) and download the one the next attempt starts from; `rung
// checkpoint` downloads a kept one. The archives are CheckpointFiles'; who may upload and
// what is kept is the Controller's.
#ifndef RUNG_SERVER_API_CHECKPOINT_SERVICE_H_
#define RUNG_SERVER_API_CHECKPOINT_SERVICE_H_

#include "rung/v1/worker_service.grpc.pb.h"
#include "server/api/auth.h"
#include "server/api/metrics.h"
#include "server/schedule/controller.h"
#include "server/store/checkpoint_files.h"

namespace rung {

class CheckpointServiceImpl final : public v1::CheckpointService::CallbackService {
 public:
  CheckpointServiceImpl(Controller* controller, CheckpointFiles* files, ServerMetrics* metrics,
                        const Auth* auth)
      : controller_(controller), files_(files), metrics_(metrics), auth_(auth) {}

  grpc::ServerReadReactor<v1::CheckpointChunk>* UploadCheckpoint(grpc::CallbackServerContext* ctx,
                                                                 v1::CheckpointRef* resp) override;
  grpc::ServerUnaryReactor* UploadStatus(grpc::CallbackServerContext* ctx,
                                         const v1::UploadStatusRequest* req,
                                         v1::UploadStatusResponse* resp) override;
  grpc::ServerWriteReactor<v1::CheckpointChunk>* DownloadCheckpoint(
      grpc::CallbackServerContext* ctx, const v1::DownloadCheckpointRequest* req) override;

 private:
  Controller* const controller_;
  CheckpointFiles* const files_;
  ServerMetrics* const metrics_;
  const Auth* const auth_;
};

}  // namespace rung

#endif  // RUNG_SERVER_API_CHECKPOINT_SERVICE_H_
