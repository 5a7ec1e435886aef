#include "server/web/json_bridge.h"

#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/generic/generic_stub.h"

namespace rung::web {

namespace {

namespace pb = google::protobuf;

constexpr char kService[] = "rung.v1.ExperimentService";

// What the page may call: reads, so that a page (or another site's page in the same browser)
// cannot change anything.
const std::set<std::string>& Readable() {
  static const std::set<std::string> kMethods = {
      "GetExperiment", "ListExperiments", "ListTrials",  "GetTrial",  "GetTrialMetrics",
      "GetBestTrials", "GetTrialLogs",    "GetAblation", "GetCurves", "ListWorkers"};
  return kMethods;
}

pb::util::JsonPrintOptions PrintOptions() {
  pb::util::JsonPrintOptions o;
  o.always_print_primitive_fields = true;  // the page need not know proto3's defaults
  return o;
}

grpc::Status FromJson(const std::string& body, pb::Message* msg) {
  pb::util::JsonParseOptions o;
  o.ignore_unknown_fields = false;
  pb::util::Status s = pb::util::JsonStringToMessage(body.empty() ? "{}" : body, msg, o);
  if (!s.ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("the request body is not a ", msg->GetTypeName(),
                                     " in JSON: ", std::string(s.message())));
  }
  return grpc::Status::OK;
}

JsonReply Error(const grpc::Status& s) { return {HttpStatusOf(s.error_code()), ErrorJson(s)}; }

}  // namespace

int HttpStatusOf(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::CANCELLED:
      return 499;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    default:
      return 500;
  }
}

std::string ErrorJson(const grpc::Status& s) {
  const int code = s.error_code();
  pb::Struct e;
  (*e.mutable_fields())["code"].set_number_value(code);
  // absl and gRPC share the canonical codes and their names.
  const std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  (*e.mutable_fields())["status"].set_string_value(name.empty() ? "UNKNOWN" : name);
  (*e.mutable_fields())["message"].set_string_value(s.error_message());
  std::string out;
  (void)pb::util::MessageToJsonString(e, &out);
  return out;
}

JsonBridge::JsonBridge(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)),
      generic_(channel_),
      stub_(v1::ExperimentService::NewStub(channel_)) {}

JsonReply JsonBridge::Unary(const std::string& method, const std::string& body,
                            const std::string& authorization) {
  const std::string prefix = absl::StrCat(kService, "/");
  const std::string name = method.rfind(prefix, 0) == 0 ? method.substr(prefix.size()) : "";
  if (Readable().count(name) == 0) {
    return Error(grpc::Status(
        grpc::StatusCode::NOT_FOUND,
        absl::StrCat("no call ", method, " for the page; it may call ", kService,
                     "/{ListExperiments, GetExperiment, ListTrials, GetTrial, GetTrialMetrics, "
                     "GetBestTrials, GetTrialLogs, GetAblation, GetCurves, ListWorkers, "
                     "WatchExperiment}")));
  }
  const pb::MethodDescriptor* md =
      pb::DescriptorPool::generated_pool()->FindServiceByName(kService)->FindMethodByName(name);
  pb::MessageFactory* factory = pb::MessageFactory::generated_factory();
  std::unique_ptr<pb::Message> req(factory->GetPrototype(md->input_type())->New());
  std::unique_ptr<pb::Message> resp(factory->GetPrototype(md->output_type())->New());
  if (grpc::Status s = FromJson(body, req.get()); !s.ok()) return Error(s);

  std::string wire;
  req->SerializeToString(&wire);
  grpc::Slice slice(wire);
  grpc::ByteBuffer in(&slice, 1), out;
  grpc::ClientContext ctx;
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  grpc::Status status;
  absl::Notification done;
  generic_.UnaryCall(&ctx, absl::StrCat("/", kService, "/", name), grpc::StubOptions(), &in, &out,
                     [&](grpc::Status s) {
                       status = std::move(s);
                       done.Notify();
                     });
  done.WaitForNotification();
  if (!status.ok()) return Error(status);

  std::vector<grpc::Slice> slices;
  if (!out.Dump(&slices).ok()) {
    return Error(grpc::Status(grpc::StatusCode::INTERNAL, "cannot read the answer"));
  }
  wire.clear();
  for (const grpc::Slice& s : slices)
    wire.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (!resp->ParseFromString(wire)) {
    return Error(grpc::Status(grpc::StatusCode::INTERNAL,
                              absl::StrCat("cannot parse the answer of ", method)));
  }
  JsonReply reply;
  (void)pb::util::MessageToJsonString(*resp, &reply.json, PrintOptions());
  return reply;
}

grpc::Status JsonBridge::Watch(const std::string& body, const std::string& authorization,
                               grpc::ClientContext* ctx,
                               const std::function<bool(const std::string&)>& event) {
  v1::WatchExperimentRequest req;
  if (grpc::Status s = FromJson(body, &req); !s.ok()) return s;
  if (!authorization.empty()) ctx->AddMetadata("authorization", authorization);
  std::unique_ptr<grpc::ClientReader<v1::WatchEvent>> reader = stub_->WatchExperiment(ctx, req);
  v1::WatchEvent e;
  std::string json;
  const pb::util::JsonPrintOptions options = PrintOptions();
  while (reader->Read(&e)) {
    json.clear();
    (void)pb::util::MessageToJsonString(e, &json, options);
    if (!event(json)) {
      ctx->TryCancel();
      break;
    }
  }
  return reader->Finish();
}

}  // namespace rung::web
