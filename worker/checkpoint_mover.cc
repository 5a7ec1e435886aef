#include "worker/checkpoint_mover.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/checkpoint_archive.h"
#include "common/log.h"
#include "common/status.h"

namespace rung {

namespace fs = std::filesystem;

namespace {

constexpr size_t kChunk = 1 << 20;

std::string MarkerText(const v1::CheckpointRef& ref) {
  // Another trial's archive (a PBT member that exploited) names that trial first.
  return absl::StrCat(ref.trial_id(), ref.trial_id().empty() ? "" : " ", ref.attempt(), " ",
                      ref.bytes(), " ", ref.crc32c());
}

void WriteMarker(const std::string& dir, const v1::CheckpointRef& ref) {
  std::ofstream(CheckpointMarker(dir), std::ios::trunc) << MarkerText(ref) << "\n";
}

bool MarkerMatches(const std::string& dir, const v1::CheckpointRef& ref) {
  std::ifstream in(CheckpointMarker(dir));
  std::string line;
  return std::getline(in, line) && line == MarkerText(ref);
}

}  // namespace

std::string CheckpointMarker(const std::string& dir) {
  // Beside the folder, not in it: what the trial sees is exactly what it saved.
  return absl::StrCat(absl::StripSuffix(dir, "/"), ".rung-version");
}

CheckpointMover::CheckpointMover(std::shared_ptr<grpc::Channel> channel, ConnectOptions connect,
                                 std::string worker_id, std::string scratch,
                                 std::function<void()> wake)
    : stub_(v1::CheckpointService::NewStub(channel)),
      connect_(std::move(connect)),
      worker_id_(std::move(worker_id)),
      scratch_(std::move(scratch)),
      wake_(std::move(wake)) {
  std::error_code ec;
  fs::remove_all(scratch_, ec);  // what a killed worker left in transit
  fs::create_directories(scratch_, ec);
  // Two at once: a large upload does not hold up the download another slot is waiting for.
  for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { Loop(); });
}

CheckpointMover::~CheckpointMover() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    jobs_.clear();
    for (grpc::ClientContext* call : calls_) call->TryCancel();
  }
  for (std::thread& t : threads_) t.join();
}

void CheckpointMover::Fetch(const std::string& trial_id, int attempt, const v1::CheckpointRef& ref,
                            const std::string& dir) {
  absl::MutexLock l(&mu_);
  jobs_.push_back({false, trial_id, attempt, ref, dir});
}

void CheckpointMover::Store(const std::string& trial_id, int attempt, const std::string& dir) {
  absl::MutexLock l(&mu_);
  jobs_.push_back({true, trial_id, attempt, {}, dir});
}

std::vector<TransferDone> CheckpointMover::TakeDone() {
  absl::MutexLock l(&mu_);
  std::vector<TransferDone> out;
  out.swap(done_);
  return out;
}

void CheckpointMover::Loop() {
  while (true) {
    Job job;
    {
      absl::MutexLock l(&mu_);
      auto ready = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !jobs_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    TransferDone d = Run(job);
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return;
      done_.push_back(std::move(d));
    }
    wake_();
  }
}

TransferDone CheckpointMover::Run(const Job& job) {
  const auto start = std::chrono::steady_clock::now();
  TransferDone d;
  d.trial_id = job.trial_id;
  d.attempt = job.attempt;
  d.upload = job.upload;
  d.result = job.upload ? Upload(job, &d.bytes) : Download(job, &d.bytes);
  d.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Log(d.result.ok() ? LogLevel::kInfo : LogLevel::kWarning,
      absl::StrCat("trial ", job.trial_id, " attempt ", job.attempt, ": checkpoint ",
                   job.upload ? "upload" : "download",
                   d.result.ok() ? absl::StrCat(" done, ", d.bytes, " bytes in ", d.seconds, "s")
                                 : absl::StrCat(" failed: ", d.result.status().message())));
  return d;
}

bool CheckpointMover::Retry(const absl::Status& s, int* tries, int* backoff) {
  // rungd unreachable or restarting: try again (resuming) for as long as it takes; the
  // attempt's lease decides whether the result is still wanted. A broken upload (offset out of
  // step, a CRC that did not match) is tried again a few times.
  const bool transient = s.code() == absl::StatusCode::kUnavailable ||
                         s.code() == absl::StatusCode::kDeadlineExceeded ||
                         s.code() == absl::StatusCode::kCancelled ||
                         s.code() == absl::StatusCode::kAborted;
  const bool again = s.code() == absl::StatusCode::kDataLoss ||
                     (s.code() == absl::StatusCode::kFailedPrecondition &&
                      absl::StrContains(s.message(), "stands at"));
  // `tries` counts the broken uploads only: an unreachable rungd is waited out for as long
  // as it takes.
  if (!transient && !(again && ++*tries < 4)) return false;
  *backoff = transient ? std::min(*backoff + 1, 6) : 0;
  const auto delay = std::chrono::milliseconds(std::min(5000, 100 << *backoff));
  absl::MutexLock l(&mu_);
  auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
  mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::FromChrono(delay));
  return !stopping_;
}

absl::StatusOr<v1::CheckpointRef> CheckpointMover::Upload(const Job& job, int64_t* moved) {
  const std::string archive = absl::StrCat(scratch_, "/", job.trial_id, "-", job.attempt, ".up");
  ASSIGN_OR_RETURN(PackedArchive packed, PackFolder(job.dir, archive));
  std::ifstream in(archive, std::ios::binary);
  int tries = 0, backoff = 0;
  while (true) {
    absl::Status s;
    v1::UploadStatusRequest q;
    q.set_trial_id(job.trial_id);
    q.set_attempt(job.attempt);
    q.set_worker_id(worker_id_);
    v1::UploadStatusResponse have;
    {
      grpc::ClientContext ctx;
      AddToken(&ctx, connect_);
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      {
        absl::MutexLock l(&mu_);
        if (stopping_) return absl::CancelledError("the worker is stopping");
        calls_.insert(&ctx);  // the destructor cancels it rather than wait for its deadline
      }
      s = FromGrpc(stub_->UploadStatus(&ctx, q, &have));
      absl::MutexLock l(&mu_);
      calls_.erase(&ctx);
    }
    if (s.ok()) {
      // Resume after what rungd holds (all of it: commit again, which is a no-op).
      int64_t offset = std::min<int64_t>(have.received(), packed.bytes);
      grpc::ClientContext ctx;
      AddToken(&ctx, connect_);
      {
        absl::MutexLock l(&mu_);
        if (stopping_) return absl::CancelledError("the worker is stopping");
        calls_.insert(&ctx);
      }
      v1::CheckpointRef ref;
      auto writer = stub_->UploadCheckpoint(&ctx, &ref);
      v1::CheckpointChunk chunk;
      chunk.set_trial_id(job.trial_id);
      chunk.set_attempt(job.attempt);
      chunk.set_total_bytes(packed.bytes);
      chunk.set_crc32c(packed.crc32c);
      chunk.set_worker_id(worker_id_);
      std::string buf(kChunk, '\0');
      bool first = true;
      in.clear();
      in.seekg(offset);
      while (first || offset < packed.bytes) {
        in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        const size_t n = static_cast<size_t>(in.gcount());
        chunk.set_offset(offset);
        chunk.set_data(buf.data(), n);
        if (!writer->Write(chunk)) break;
        if (first) {
          first = false;
          chunk.clear_trial_id();  // later messages carry data only
          chunk.clear_worker_id();
        }
        offset += static_cast<int64_t>(n);
        *moved += static_cast<int64_t>(n);
        if (n == 0) break;
      }
      writer->WritesDone();
      s = FromGrpc(writer->Finish());
      {
        absl::MutexLock l(&mu_);
        calls_.erase(&ctx);
      }
      if (s.ok()) {
        std::error_code ec;
        fs::remove(archive, ec);
        WriteMarker(job.dir, ref);
        return ref;
      }
    }
    if (!Retry(s, &tries, &backoff)) {
      std::error_code ec;
      fs::remove(archive, ec);
      return s;
    }
  }
}

absl::StatusOr<v1::CheckpointRef> CheckpointMover::Download(const Job& job, int64_t* moved) {
  if (MarkerMatches(job.dir, job.ref)) return job.ref;  // already here
  std::error_code ec;
  fs::remove(CheckpointMarker(job.dir), ec);
  // The trial whose attempt wrote it: this one, or the member of a population it exploited.
  const std::string& owner = job.ref.trial_id().empty() ? job.trial_id : job.ref.trial_id();
  const std::string archive =
      absl::StrCat(scratch_, "/", job.trial_id, "-", owner, "-", job.ref.attempt(), ".down");
  int tries = 0, backoff = 0;
  while (true) {
    // Resume after what an earlier try left.
    const uintmax_t have = fs::exists(archive, ec) ? fs::file_size(archive, ec) : 0;
    std::ofstream out(archive, std::ios::binary | std::ios::app);
    grpc::ClientContext ctx;
    AddToken(&ctx, connect_);
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return absl::CancelledError("the worker is stopping");
      calls_.insert(&ctx);
    }
    v1::DownloadCheckpointRequest req;
    req.set_trial_id(owner);
    req.set_attempt(job.ref.attempt());
    req.set_offset(static_cast<int64_t>(have));
    auto reader = stub_->DownloadCheckpoint(&ctx, req);
    v1::CheckpointChunk chunk;
    while (reader->Read(&chunk)) {
      out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
      *moved += static_cast<int64_t>(chunk.data().size());
    }
    absl::Status s = FromGrpc(reader->Finish());
    {
      absl::MutexLock l(&mu_);
      calls_.erase(&ctx);
    }
    out.close();
    if (s.ok()) {
      const uintmax_t size = fs::file_size(archive, ec);
      auto crc = FileCrc32c(archive);
      if (ec || static_cast<int64_t>(size) != job.ref.bytes() || !crc.ok() ||
          *crc != job.ref.crc32c()) {
        fs::remove(archive, ec);
        s = absl::DataLossError(absl::StrCat("the downloaded checkpoint of ", job.trial_id,
                                             " does not match its size and CRC-32C"));
      } else {
        s = UnpackArchive(archive, job.dir);
        fs::remove(archive, ec);
        if (s.ok()) {
          WriteMarker(job.dir, job.ref);
          return job.ref;
        }
      }
    }
    if (!Retry(s, &tries, &backoff)) {
      fs::remove(archive, ec);
      return s;
    }
  }
}

}  // namespace rung
