#include "server/store/checkpoint_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/checkpoint_archive.h"

namespace rung {

namespace fs = std::filesystem;

namespace {

absl::Status Errno(const std::string& what) {
  const int e = errno;
  const std::string msg = absl::StrCat(what, ": ", std::strerror(e));
  return e == ENOSPC || e == EDQUOT ? absl::ResourceExhaustedError(msg) : absl::InternalError(msg);
}

absl::Status FsyncPath(const std::string& path, int flags) {
  const int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return Errno(absl::StrCat("open ", path));
  const int rc = fsync(fd);
  const absl::Status s = rc == 0 ? absl::OkStatus() : Errno(absl::StrCat("fsync ", path));
  close(fd);
  return s;
}

std::string HumanBytes(int64_t b) {
  if (b >= (int64_t{1} << 30)) return absl::StrCat(b >> 30, " GiB");
  if (b >= (int64_t{1} << 20)) return absl::StrCat(b >> 20, " MiB");
  if (b >= (int64_t{1} << 10)) return absl::StrCat(b >> 10, " KiB");
  return absl::StrCat(b, " bytes");
}

}  // namespace

absl::StatusOr<std::unique_ptr<CheckpointFiles>> CheckpointFiles::Open(const std::string& root,
                                                                       int64_t max_bytes) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", root, ": ", ec.message()));
  std::unique_ptr<CheckpointFiles> f(new CheckpointFiles(root, max_bytes));
  int64_t bytes = 0, archives = 0;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    std::error_code size_ec;
    if (it->path().extension() != ".ckpt" || !it->is_regular_file(size_ec)) continue;
    const uintmax_t n = it->file_size(size_ec);
    if (size_ec) continue;
    bytes += static_cast<int64_t>(n);
    ++archives;
  }
  f->bytes_stored_ = bytes;
  f->archives_ = archives;
  return f;
}

std::string CheckpointFiles::Path(const std::string& experiment_id, const std::string& trial_id,
                                  int attempt, absl::string_view suffix) const {
  return absl::StrCat(root_, "/", experiment_id, "/", trial_id, "/", attempt, suffix);
}

absl::Status CheckpointFiles::CheckSize(const std::string& trial_id, int64_t bytes) const {
  if (max_bytes_ > 0 && bytes > max_bytes_) {
    return absl::OutOfRangeError(absl::StrCat(
        "the checkpoint of trial ", trial_id, " is ", HumanBytes(bytes), " (", bytes,
        " bytes); rungd stores checkpoints of at most ", HumanBytes(max_bytes_),
        " (--checkpoint-max-bytes): save less, or use a shared trial.checkpoint_root"));
  }
  return absl::OkStatus();
}

int64_t CheckpointFiles::Received(const std::string& experiment_id, const std::string& trial_id,
                                  int attempt) {
  absl::MutexLock l(&mu_);
  std::error_code ec;
  for (const char* suffix : {".ckpt", ".part"}) {
    const uintmax_t n = fs::file_size(Path(experiment_id, trial_id, attempt, suffix), ec);
    if (!ec) return static_cast<int64_t>(n);
  }
  return 0;
}

absl::Status CheckpointFiles::Append(const std::string& experiment_id, const std::string& trial_id,
                                     int attempt, int64_t offset, absl::string_view data) {
  absl::MutexLock l(&mu_);
  const std::string part = Path(experiment_id, trial_id, attempt, ".part");
  std::error_code ec;
  fs::create_directories(fs::path(part).parent_path(), ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create the folder of ", part));
  uintmax_t have = fs::file_size(part, ec);
  if (ec) have = 0;
  if (static_cast<int64_t>(have) != offset) {
    return absl::FailedPreconditionError(absl::StrCat("upload of ", trial_id, " attempt ", attempt,
                                                      " stands at ", have, ", not ", offset));
  }
  const int fd = open(part.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Errno(absl::StrCat("open ", part));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const absl::Status s = Errno(absl::StrCat("write ", part));
      // A short write would leave the offset unknown to the sender: back to where it was.
      (void)ftruncate(fd, static_cast<off_t>(offset));
      close(fd);
      return s;
    }
    done += static_cast<size_t>(n);
  }
  close(fd);
  return absl::OkStatus();
}

absl::Status CheckpointFiles::Commit(const std::string& experiment_id, const std::string& trial_id,
                                     int attempt, int64_t bytes, uint32_t crc32c) {
  const std::string part = Path(experiment_id, trial_id, attempt, ".part");
  const std::string final_path = Path(experiment_id, trial_id, attempt, ".ckpt");
  std::error_code ec;
  if (!fs::exists(part, ec) && fs::exists(final_path, ec)) return absl::OkStatus();  // a resend
  const uintmax_t have = fs::file_size(part, ec);
  if (ec || static_cast<int64_t>(have) < bytes) {
    // A broken call: what arrived stays, and the worker resumes after it.
    return absl::UnavailableError(absl::StrCat("upload of ", trial_id, " attempt ", attempt,
                                               " stopped at ", ec ? 0 : have, " of ", bytes,
                                               " bytes; resume it"));
  }
  // Checked and fsynced without the lock: a large archive holds up no other upload.
  auto crc = FileCrc32c(part);
  if (static_cast<int64_t>(have) != bytes || !crc.ok() || *crc != crc32c) {
    fs::remove(part, ec);
    return absl::DataLossError(absl::StrCat("upload of ", trial_id, " attempt ", attempt,
                                            " does not match its size and CRC-32C; it is dropped"));
  }
  if (absl::Status s = FsyncPath(part, O_RDONLY); !s.ok()) return s;
  absl::MutexLock l(&mu_);
  if (rename(part.c_str(), final_path.c_str()) != 0) return Errno(absl::StrCat("rename ", part));
  if (absl::Status s =
          FsyncPath(fs::path(final_path).parent_path().string(), O_RDONLY | O_DIRECTORY);
      !s.ok()) {
    return s;
  }
  bytes_stored_ += bytes;
  ++archives_;
  return absl::OkStatus();
}

absl::StatusOr<int64_t> CheckpointFiles::Size(const std::string& experiment_id,
                                              const std::string& trial_id, int attempt) const {
  std::error_code ec;
  const uintmax_t n = fs::file_size(Path(experiment_id, trial_id, attempt, ".ckpt"), ec);
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("rungd holds no checkpoint of trial ", trial_id, " attempt ", attempt));
  }
  return static_cast<int64_t>(n);
}

absl::StatusOr<std::string> CheckpointFiles::Read(const std::string& experiment_id,
                                                  const std::string& trial_id, int attempt,
                                                  int64_t offset, size_t n) const {
  const std::string path = Path(experiment_id, trial_id, attempt, ".ckpt");
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("rungd holds no checkpoint of trial ", trial_id, " attempt ", attempt));
  }
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    const ssize_t r = pread(fd, out.data() + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const absl::Status s = Errno(absl::StrCat("read ", path));
      close(fd);
      return s;
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  close(fd);
  out.resize(got);
  return out;
}

void CheckpointFiles::Collect(const std::map<std::string, Keep>& keep, fs::file_time_type since) {
  absl::MutexLock l(&mu_);
  for (const auto& [experiment_id, trials] : keep) {
    const fs::path dir = fs::path(root_) / experiment_id;
    std::error_code ec;
    if (!fs::exists(dir, ec)) continue;
    std::vector<fs::path> trial_dirs;
    for (const auto& e : fs::directory_iterator(dir, ec)) trial_dirs.push_back(e.path());
    for (const fs::path& td : trial_dirs) {
      auto kept = trials.find(td.filename().string());
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(td, ec)) files.push_back(e.path());
      size_t left = files.size();
      for (const fs::path& f : files) {
        const std::string name = f.filename().string();
        absl::string_view stem = name;
        const bool archive = absl::ConsumeSuffix(&stem, ".ckpt");
        int attempt = 0;
        const bool named =
            (archive || absl::ConsumeSuffix(&stem, ".part")) && absl::SimpleAtoi(stem, &attempt);
        if (named && kept != trials.end() && kept->second.count(attempt)) continue;
        std::error_code rm_ec;
        if (fs::last_write_time(f, rm_ec) >= since || rm_ec) continue;  // too new to judge
        const uintmax_t size = fs::file_size(f, rm_ec);
        if (!fs::remove(f, rm_ec) || rm_ec) continue;
        --left;
        if (archive && named) {
          bytes_stored_ -= static_cast<int64_t>(size);
          --archives_;
        }
      }
      if (left == 0) fs::remove(td, ec);
    }
    if (fs::is_empty(dir, ec)) fs::remove(dir, ec);
  }
}

}  // namespace rung
