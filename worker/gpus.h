// GPU discovery for rung-worker.
#ifndef RUNG_WORKER_GPUS_H_
#define RUNG_WORKER_GPUS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rung {

// Parses `nvidia-smi --query-gpu=index --format=csv,noheader` output: one index a line.
std::vector<std::string> ParseNvidiaSmi(absl::string_view output);

// The GPUs of this machine: `nvidia-smi`'s list when it is on PATH and succeeds, else none.
std::vector<std::string> DiscoverGpus();

// Parses a --gpus value: "0,1,3" (indices or UUIDs), or "none".
absl::StatusOr<std::vector<std::string>> ParseGpuList(absl::string_view flag);

}  // namespace rung

#endif  // RUNG_WORKER_GPUS_H_
