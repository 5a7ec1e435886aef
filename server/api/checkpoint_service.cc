#include "server/api/checkpoint_service.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/spec.h"
#include "server/api/services.h"

namespace rung {

namespace {

constexpr size_t kChunk = 1 << 20;  // gRPC's default message limit is 4 MiB

double Since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One upload: the first message says what it is; every message carries data at its offset.
// Disk writes happen on gRPC's callback thread: a chunk's write, and one fsync at the end.
class Upload final : public grpc::ServerReadReactor<v1::CheckpointChunk> {
 public:
  Upload(Controller* controller, CheckpointFiles* files, ServerMetrics* metrics,
         v1::CheckpointRef* resp, absl::Status refused)
      : controller_(controller), files_(files), metrics_(metrics), resp_(resp) {
    if (!refused.ok()) {
      End(refused);
      return;
    }
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the worker has sent everything
      Commit();
      return;
    }
    if (experiment_id_.empty()) {
      first_ = in_;
      first_.clear_data();
      auto target =
          controller_->CheckpointUploadTarget(in_.trial_id(), in_.attempt(), in_.worker_id());
      absl::Status s =
          target.ok() ? files_->CheckSize(in_.trial_id(), in_.total_bytes()) : target.status();
      if (!s.ok()) return End(s);
      experiment_id_ = *target;
    }
    if (in_.offset() < 0 ||
        in_.offset() + static_cast<int64_t>(in_.data().size()) > first_.total_bytes()) {
      return End(absl::InvalidArgumentError(
          absl::StrCat("upload of ", first_.trial_id(), ": bytes ", in_.offset(), "..",
                       in_.offset() + static_cast<int64_t>(in_.data().size()),
                       " lie beyond the archive's declared ", first_.total_bytes())));
    }
    if (!in_.data().empty()) {
      absl::Status s = files_->Append(experiment_id_, first_.trial_id(), first_.attempt(),
                                      in_.offset(), in_.data());
      if (!s.ok()) return End(s);
      moved_ += static_cast<int64_t>(in_.data().size());
    }
    StartRead(&in_);
  }

  void OnDone() override {
    metrics_->CountRpc("CheckpointService.UploadCheckpoint", status_.error_code());
    delete this;
  }

 private:
  void Commit() {
    if (experiment_id_.empty()) {
      return End(absl::InvalidArgumentError("an upload with no message: nothing to store"));
    }
    absl::Status s = files_->Commit(experiment_id_, first_.trial_id(), first_.attempt(),
                                    first_.total_bytes(), first_.crc32c());
    if (!s.ok()) return End(s);
    resp_->set_attempt(first_.attempt());
    resp_->set_bytes(first_.total_bytes());
    resp_->set_crc32c(first_.crc32c());
    resp_->set_worker_id(first_.worker_id());
    resp_->set_created_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
    metrics_->ObserveCheckpoint("upload", moved_, Since(start_));
    End(absl::OkStatus());
  }

  void End(const absl::Status& s) {
    status_ = ToGrpc(s);
    Finish(status_);
  }

  Controller* const controller_;
  CheckpointFiles* const files_;
  ServerMetrics* const metrics_;
  v1::CheckpointRef* const resp_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  v1::CheckpointChunk in_, first_;
  std::string experiment_id_;  // set once the first message is accepted
  int64_t moved_ = 0;
  grpc::Status status_;
};

// One download: the archive from the asked offset, a chunk per write.
class Download final : public grpc::ServerWriteReactor<v1::CheckpointChunk> {
 public:
  Download(CheckpointFiles* files, ServerMetrics* metrics, std::string experiment_id,
           v1::CheckpointRef ref, const std::string& trial_id, int64_t offset, absl::Status refused)
      : files_(files),
        metrics_(metrics),
        experiment_id_(std::move(experiment_id)),
        ref_(std::move(ref)),
        trial_id_(trial_id),
        offset_(offset) {
    if (!refused.ok()) {
      End(refused);
      return;
    }
    Next();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      status_ = grpc::Status(grpc::StatusCode::CANCELLED, "the downloader went away");
      Finish(status_);
      return;
    }
    Next();
  }

  void OnDone() override {
    metrics_->CountRpc("CheckpointService.DownloadCheckpoint", status_.error_code());
    if (status_.ok()) metrics_->ObserveCheckpoint("download", moved_, Since(start_));
    delete this;
  }

 private:
  void Next() {
    // Every message says what the archive is; one goes out even when nothing is left to send.
    if (offset_ >= ref_.bytes() && sent_) return End(absl::OkStatus());
    sent_ = true;
    auto data = files_->Read(experiment_id_, trial_id_, ref_.attempt(), offset_, kChunk);
    if (!data.ok()) return End(data.status());
    out_.Clear();
    out_.set_trial_id(trial_id_);
    out_.set_attempt(ref_.attempt());
    out_.set_total_bytes(ref_.bytes());
    out_.set_crc32c(ref_.crc32c());
    out_.set_offset(offset_);
    offset_ += static_cast<int64_t>(data->size());
    moved_ += static_cast<int64_t>(data->size());
    *out_.mutable_data() = std::move(*data);
    StartWrite(&out_);
  }

  void End(const absl::Status& s) {
    status_ = ToGrpc(s);
    Finish(status_);
  }

  CheckpointFiles* const files_;
  ServerMetrics* const metrics_;
  const std::string experiment_id_;
  const v1::CheckpointRef ref_;
  const std::string trial_id_;
  int64_t offset_;
  int64_t moved_ = 0;
  bool sent_ = false;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  v1::CheckpointChunk out_;
  grpc::Status status_;
};

}  // namespace

grpc::ServerReadReactor<v1::CheckpointChunk>* CheckpointServiceImpl::UploadCheckpoint(
    grpc::CallbackServerContext* ctx, v1::CheckpointRef* resp) {
  auto caller = auth_->Check(*ctx, "CheckpointService.UploadCheckpoint", Role::kWorker);
  return new Upload(controller_, files_, metrics_, resp, caller.status());
}

grpc::ServerUnaryReactor* CheckpointServiceImpl::UploadStatus(grpc::CallbackServerContext* ctx,
                                                              const v1::UploadStatusRequest* req,
                                                              v1::UploadStatusResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  absl::Status s = auth_->Check(*ctx, "CheckpointService.UploadStatus", Role::kWorker).status();
  if (s.ok()) {
    auto target =
        controller_->CheckpointUploadTarget(req->trial_id(), req->attempt(), req->worker_id());
    s = target.status();
    if (s.ok()) resp->set_received(files_->Received(*target, req->trial_id(), req->attempt()));
  }
  const grpc::Status gs = ToGrpc(s);
  metrics_->CountRpc("CheckpointService.UploadStatus", gs.error_code());
  reactor->Finish(gs);
  return reactor;
}

grpc::ServerWriteReactor<v1::CheckpointChunk>* CheckpointServiceImpl::DownloadCheckpoint(
    grpc::CallbackServerContext* ctx, const v1::DownloadCheckpointRequest* req) {
  // Workers download any trial's checkpoint; a user (`rung checkpoint`) only its own
  // experiments', and hears about anyone else's what a missing trial gets.
  const char* method = "CheckpointService.DownloadCheckpoint";
  auto caller = auth_->Check(*ctx, method, Role::kWorker);
  if (caller.status().code() == absl::StatusCode::kPermissionDenied)
    caller = auth_->Check(*ctx, method, Role::kUser);
  absl::Status s = caller.status();
  std::pair<std::string, v1::CheckpointRef> found;
  if (s.ok()) {
    auto where = controller_->CheckpointOf(req->trial_id(), req->attempt());
    s = where.status();
    if (where.ok()) found = *where;
  }
  if (s.ok() && caller->role == Role::kUser) {
    auto e = controller_->GetExperiment(found.first);
    if (!e.ok() || e->owner() != caller->name)
      s = absl::NotFoundError(absl::StrCat("no trial ", req->trial_id()));
  }
  // A PBT member that exploited names its donor's archive: read it where it lies.
  const std::string& owner =
      found.second.trial_id().empty() ? req->trial_id() : found.second.trial_id();
  return new Download(files_, metrics_, found.first, found.second, owner, req->offset(), s);
}

}  // namespace rung
