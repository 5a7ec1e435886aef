#include "worker/work_dir_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace rung {
namespace {

// The pid the holder wrote, or "" when there is none yet (it is between flock and write).
std::string HolderPid(int fd) {
  char buf[32] = {0};
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return "";
  int pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(buf, n)), &pid)) return "";
  return absl::StrCat(pid);
}

}  // namespace

absl::StatusOr<std::unique_ptr<WorkDirLock>> WorkDirLock::Acquire(const std::string& dir) {
  std::string path = absl::StrCat(dir, "/rung-worker.lock");
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("--work-dir ", dir, ": cannot open ", path, ": ", strerror(errno)));
  }
  int r;
  while ((r = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
  }
  if (r != 0) {
    const int err = errno;
    const std::string pid = HolderPid(fd);
    close(fd);
    if (err != EWOULDBLOCK) {
      return absl::UnavailableError(
          absl::StrCat("--work-dir ", dir, ": cannot lock ", path, ": ", strerror(err)));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("--work-dir ", dir, " is in use by another rung-worker (",
                     pid.empty() ? "pid unknown" : absl::StrCat("pid ", pid),
                     "); give each worker its own --work-dir and --name"));
  }
  const std::string text = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd, 0) != 0 ||
      pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("--work-dir ", dir, ": cannot write ", path, ": ", strerror(err)));
  }
  return std::unique_ptr<WorkDirLock>(new WorkDirLock(std::move(path), fd));
}

WorkDirLock::~WorkDirLock() { close(fd_); }

}  // namespace rung
