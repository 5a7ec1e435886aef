// Inside the C++ client: rungd's messages into the plain structs of rung/client.h.
#ifndef RUNG_CLIENT_CPP_CONVERT_H_
#define RUNG_CLIENT_CPP_CONVERT_H_

#include "rung/client.h"
#include "rung/v1/admin_service.pb.h"
#include "rung/v1/experiment_service.pb.h"

namespace rung::client_internal {

// Each copies what its struct holds and keeps the whole message in proto_bytes.
Experiment FromProto(const v1::Experiment& e);
Trial FromProto(const v1::Trial& t);
Report FromProto(const v1::MetricReport& r);
TrialLogs FromProto(const v1::GetTrialLogsResponse& l);
AblationResults FromProto(const v1::AblationResults& a);
ReplayResult FromProto(const v1::ReplaySearchResponse& r);
Worker FromProto(const v1::WorkerStatus& w);
BackupResult FromProto(const v1::BackupResponse& b);

}  // namespace rung::client_internal

#endif  // RUNG_CLIENT_CPP_CONVERT_H_
