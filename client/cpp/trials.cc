#include "rung/trials.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

extern char** environ;

namespace rung {
namespace {

std::string Env(const char* name) {
  const char* v = getenv(name);
  return v == nullptr ? "" : v;
}

bool ParseJson(const std::string& text, google::protobuf::Struct* out) {
  return google::protobuf::util::JsonStringToMessage(text, out).ok();
}

// JSON string quoting for ids and metric names.
std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += absl::StrFormat("\\u%04x", c);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// The worker's report socket, connected on first use and again after a failure.
class ReportSocket {
 public:
  ~ReportSocket() { Close(); }
  // Sends one line, returns the reply line; throws when the worker cannot be reached.
  std::string Call(const std::string& line) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (fd_ < 0 && !Connect()) continue;
      if (Send(line)) {
        std::string reply;
        if (ReadLine(&reply)) return reply;
      }
      Close();
    }
    throw std::runtime_error("rung: cannot reach rung-worker's report socket " +
                             Env("RUNG_REPORT_SOCKET"));
  }

 private:
  bool Connect() {
    const std::string path = Env("RUNG_REPORT_SOCKET");
    sockaddr_un addr{};
    if (path.empty() || path.size() >= sizeof(addr.sun_path)) return false;
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ >= 0 && connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      return true;
    }
    Close();
    return false;
  }
  bool Send(const std::string& line) {
    size_t done = 0;
    while (done < line.size()) {
      ssize_t n = send(fd_, line.data() + done, line.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }
  bool ReadLine(std::string* out) {
    char c;
    while (true) {
      ssize_t n = read(fd_, &c, 1);
      if (n <= 0) return false;
      if (c == '\n') return true;
      out->push_back(c);
    }
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
};

ReportSocket& Socket() {
  static ReportSocket* const s = new ReportSocket();
  return *s;
}

// A runner keeps these of its own environment when the next trial's replaces the last one's.
bool Kept(const std::string& key) {
  return key == "RUNG_RUNNER" || key == "RUNG_REPORT_SOCKET" || key == "RUNG_WORKER";
}

}  // namespace

double CurrentTrial::Number(const std::string& name, double fallback) const {
  auto it = numbers_.find(name);
  return it == numbers_.end() ? fallback : it->second;
}

std::string CurrentTrial::Text(const std::string& name, const std::string& fallback) const {
  auto it = texts_.find(name);
  return it == texts_.end() ? fallback : it->second;
}

CurrentTrial CurrentTrial::FromEnvironment() {
  CurrentTrial t;
  t.id_ = Env("RUNG_TRIAL_ID");
  const std::string attempt = Env("RUNG_ATTEMPT");
  if (!attempt.empty()) t.attempt_ = std::atoi(attempt.c_str());
  std::string params = Env("RUNG_PARAMS");
  const std::string file = Env("RUNG_PARAMS_FILE");
  if (!file.empty()) {
    std::ifstream in(file);
    if (in) params.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  google::protobuf::Struct s;
  if (!params.empty() && ParseJson(params, &s)) {
    for (const auto& [k, v] : s.fields()) {
      if (v.has_number_value()) {
        t.numbers_[k] = v.number_value();
      } else if (v.has_string_value()) {
        t.texts_[k] = v.string_value();
      } else if (v.has_bool_value()) {
        t.texts_[k] = v.bool_value() ? "true" : "false";
      }
    }
  }
  const std::string budget = Env("RUNG_BUDGET");
  if (!budget.empty()) t.budget_ = std::strtod(budget.c_str(), nullptr);
  t.checkpoint_dir_ = Env("RUNG_CHECKPOINT_DIR");
  t.ablation_ = Env("RUNG_ABLATION");
  return t;
}

bool CurrentTrial::Report(double step, const std::map<std::string, double>& metrics,
                          bool final) const {
  if (Env("RUNG_REPORT_SOCKET").empty()) return false;  // run by hand
  std::string line = absl::StrCat("{\"trial_id\": ", Quote(id_), ", \"attempt\": ", attempt_,
                                  ", \"step\": ", absl::StrFormat("%.17g", step));
  for (const auto& [k, v] : metrics) {
    if (!std::isfinite(v)) throw std::invalid_argument("rung: metric '" + k + "' is not finite");
    absl::StrAppend(&line, ", ", Quote(k), ": ", absl::StrFormat("%.17g", v));
  }
  if (!Env("RANK").empty()) absl::StrAppend(&line, ", \"rank\": ", Env("RANK"));
  absl::StrAppend(&line, final ? ", \"final\": true}\n" : "}\n");
  const std::string reply = Socket().Call(line);
  google::protobuf::Struct r;
  if (!ParseJson(reply, &r)) throw std::runtime_error("rung: bad reply from rung-worker: " + reply);
  auto stop = r.fields().find("stop");
  const bool stopping = stop != r.fields().end() && stop->second.bool_value();
  auto error = r.fields().find("error");
  if (error != r.fields().end() && !stopping) {
    throw std::runtime_error("rung: " + error->second.string_value());
  }
  return stopping;
}

Trials::Trials() : runner_(!Env("RUNG_RUNNER").empty()) {}

Trials::~Trials() = default;

std::optional<CurrentTrial> Trials::Next() {
  if (!runner_) {
    if (given_one_) return std::nullopt;
    given_one_ = true;
    return CurrentTrial::FromEnvironment();
  }
  if (!current_id_.empty()) {  // the previous trial is done
    std::cout << "@rung-end {\"trial_id\": " << Quote(current_id_)
              << ", \"attempt\": " << current_attempt_ << "}" << std::endl;
    current_id_.clear();
  }
  std::string line;
  google::protobuf::Struct msg;
  while (true) {
    if (!std::getline(std::cin, line)) return std::nullopt;  // no more trials
    if (!line.empty() && ParseJson(line, &msg)) break;
  }
  const auto& env = msg.fields().at("env").struct_value().fields();
  std::vector<std::string> stale;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const std::string key = kv.substr(0, kv.find('='));
    if (key.rfind("RUNG_", 0) == 0 && !Kept(key) && env.find(key) == env.end()) {
      stale.push_back(key);
    }
  }
  for (const std::string& key : stale) unsetenv(key.c_str());
  for (const auto& [k, v] : env) setenv(k.c_str(), v.string_value().c_str(), 1);
  CurrentTrial t = CurrentTrial::FromEnvironment();
  current_id_ = t.id_;
  current_attempt_ = t.attempt_;
  return t;
}

}  // namespace rung
