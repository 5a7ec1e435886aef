// The web page's API: rungd's own gRPC calls, made over its in-process channel, with their
// messages in protobuf's JSON mapping. Nothing here reads the controller: a call from the
// page is a gRPC call like any other, with the same checks of its token and the same metrics.
#ifndef RUNG_SERVER_WEB_JSON_BRIDGE_H_
#define RUNG_SERVER_WEB_JSON_BRIDGE_H_

#include <functional>
#include <memory>
#include <string>

#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "rung/v1/experiment_service.grpc.pb.h"

namespace rung::web {

// An answer for the page: an HTTP status and a JSON body (the response message, or
// {"code", "status", "message"} for an error).
struct JsonReply {
  int http_status = 200;
  std::string json;
};

// The HTTP status that stands for a gRPC status (as grpc-gateway maps them).
int HttpStatusOf(grpc::StatusCode code);
// {"code": 5, "status": "NOT_FOUND", "message": "..."}
std::string ErrorJson(const grpc::Status& s);

class JsonBridge {
 public:
  explicit JsonBridge(std::shared_ptr<grpc::Channel> channel);

  // Calls `method` ("rung.v1.ExperimentService/ListTrials") with the request `body` (JSON),
  // carrying `authorization` ("Bearer TOKEN", or empty). Only the ExperimentService's reads
  // can be called: the page changes nothing.
  JsonReply Unary(const std::string& method, const std::string& body,
                  const std::string& authorization);

  // WatchExperiment: `event` gets each WatchEvent as JSON until it returns false (the page
  // left) or the stream ends; returns how it ended. `ctx` lets another thread cancel it.
  grpc::Status Watch(const std::string& body, const std::string& authorization,
                     grpc::ClientContext* ctx,
                     const std::function<bool(const std::string&)>& event);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  grpc::GenericStub generic_;                          // the unary reads, by name
  std::unique_ptr<v1::ExperimentService::Stub> stub_;  // WatchExperiment
};

}  // namespace rung::web

#endif  // RUNG_SERVER_WEB_JSON_BRIDGE_H_
