// A checkpoint folder as one file, so that it can travel through rungd in chunks and be
// checked whole: rung-worker packs the folder a trial attempt left, rungd stores the archive,
// and the worker of the next attempt (or `rung checkpoint`) unpacks it.
//
// The format is ours and plain: "RUNGCKPT 1\n", then per entry (sorted by path) "D PATH\n" for
// a folder or "F SIZE PATH\n" followed by SIZE bytes, then "END\n". Paths are relative,
// '/'-separated, without "." or ".." parts or newlines. Only regular files and folders are
// packed: a symbolic link or a device is an error that names it.
#ifndef RUNG_COMMON_CHECKPOINT_ARCHIVE_H_
#define RUNG_COMMON_CHECKPOINT_ARCHIVE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rung {

// CRC-32C (Castagnoli), continuing from `crc` (0 to start).
uint32_t Crc32c(uint32_t crc, const char* data, size_t n);
// The CRC-32C of a whole file.
absl::StatusOr<uint32_t> FileCrc32c(const std::string& path);

struct PackedArchive {
  int64_t bytes = 0;
  uint32_t crc32c = 0;
  int files = 0;
};

// Writes the archive of folder `dir` (which may be missing: an empty archive) to `archive`.
absl::StatusOr<PackedArchive> PackFolder(const std::string& dir, const std::string& archive);
// Empties `dir` (creating it when missing) and fills it from `archive`; a truncated or
// malformed archive is an error and leaves `dir` empty.
absl::Status UnpackArchive(const std::string& archive, const std::string& dir);

}  // namespace rung

#endif  // RUNG_COMMON_CHECKPOINT_ARCHIVE_H_
