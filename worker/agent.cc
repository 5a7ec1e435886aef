#include "worker/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/log.h"
#include "grpcpp/grpcpp.h"
#include "rung/v1/worker_service.grpc.pb.h"
#include "worker/python_module.h"
#include "worker/reconnect.h"
#include "worker/supervisor.h"
#include "worker/work_dir_lock.h"

namespace rung {
namespace {

namespace fs = std::filesystem;
using Stream = grpc::ClientReaderWriter<v1::WorkerMessage, v1::ControllerMessage>;

constexpr size_t kMaxLine = 1 << 20;  // a longer report line closes its connection
// How often a wait for the channel looks at whether the agent is stopping.
constexpr absl::Duration kStopCheck = absl::Milliseconds(100);
// gRPC's own reconnect backoff (per TCP connection attempt) is capped here, so that a worker
// is back within about a second of rungd serving again: the cap plus gRPC's 20% jitter, and
// a connection attempt to a daemon that is down is one refused SYN.
constexpr int kMaxReconnectBackoffMs = 700;

struct Conn {
  int fd;
  std::string buf;
};

void WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data.remove_prefix(n);
  }
}

class AgentImpl final : public Agent {
 public:
  AgentImpl(AgentOptions o, AgentEnv env)
      : o_(std::move(o)), clock_(env.clock), launcher_(env.launcher), seed_(env.seed) {}
  ~AgentImpl() override {
    mover_.reset();  // its thread wakes the loop through wake_w_
    for (int fd : {wake_r_, wake_w_, signal_fd_, listen_fd_}) {
      if (fd >= 0) close(fd);
    }
    for (auto& c : conns_) close(c.fd);
  }

  absl::Status Init();
  absl::Status Run() override;
  const AgentStats& stats() const override { return sup_->stats(); }

 private:
  absl::Status PrepareWorkDir();
  absl::Status OpenReportSocket();
  absl::Status OpenChannel();

  // ---- stream thread ----
  void StreamThread();
  // Opens one stream and reads it until it ends; returns how it ended. `registered`: rungd
  // sent at least one message on it.
  absl::Status RunStream(bool* registered);
  // Waits up to `delay` before the next stream. Returns early (true) when the channel comes
  // back after having been down, or at once when `go_if_ready` and it is ready now.
  bool WaitBeforeRetry(absl::Duration delay, bool go_if_ready);
  // Writes to the stream of generation `gen`; false when that stream is gone.
  bool Write(const v1::WorkerMessage& m, uint64_t gen);
  void Wake() {
    char c = 1;
    ssize_t unused = write(wake_w_, &c, 1);
    (void)unused;
  }

  // ---- loop ----
  void TakeFromStream(absl::Status* fatal);
  void ServeReportSocket(const std::vector<pollfd>& fds, size_t conn_base, size_t conn_end);
  void HandleConn(Conn* c, bool* close_it);
  void WriteOutgoing();
  void StopStreamThread();

  const AgentOptions o_;
  Clock* const clock_;
  ProcessLauncher* const launcher_;
  uint64_t seed_;
  std::string session_id_;  // random, once per process: sent in every Register
  std::unique_ptr<WorkDirLock> lock_;
  std::unique_ptr<Supervisor> sup_;
  std::string socket_path_, python_dir_;
  int wake_r_ = -1, wake_w_ = -1, signal_fd_ = -1, listen_fd_ = -1;
  std::vector<Conn> conns_;
  uint64_t seen_gen_ = 0;
  bool fatal_seen_ = false;

  // Shared with the stream thread.
  absl::Mutex mu_;
  std::deque<v1::ControllerMessage> inbox_ ABSL_GUARDED_BY(mu_);
  uint64_t gen_ ABSL_GUARDED_BY(mu_) = 0;  // raised by each new stream and each end of one
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);  // rungd refused us for good
  absl::Mutex stream_mu_;
  Stream* stream_ ABSL_GUARDED_BY(stream_mu_) = nullptr;
  uint64_t stream_gen_ ABSL_GUARDED_BY(stream_mu_) = 0;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(stream_mu_) = nullptr;
  bool stopping_ ABSL_GUARDED_BY(stream_mu_) = false;
  absl::Notification stop_stream_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  std::unique_ptr<ReconnectPolicy> policy_;  // the stream thread's
  std::unique_ptr<CheckpointMover> mover_;   // checkpoints to and from rungd
};

absl::Status AgentImpl::Init() {
  if (o_.gpus.empty() && o_.cpu_slots <= 0) {
    return absl::InvalidArgumentError("no slots: give --slots N or --gpus LIST (no GPU was found)");
  }
  if (seed_ == 0) seed_ = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  std::mt19937_64 rng(seed_);
  session_id_ = absl::StrFormat("%016x%016x", rng(), rng());
  if (auto s = PrepareWorkDir(); !s.ok()) return s;
  if (auto s = OpenReportSocket(); !s.ok()) return s;
  sup_ = std::make_unique<Supervisor>(o_, SupervisorPaths{o_.work_dir, socket_path_, python_dir_},
                                      session_id_, clock_, launcher_);

  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return absl::InternalError(strerror(errno));
  wake_r_ = p[0];
  wake_w_ = p[1];
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGCHLD);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  signal_fd_ = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ < 0) return absl::InternalError(absl::StrCat("signalfd: ", strerror(errno)));
  ReconnectOptions ro;
  ro.name_clash_window = o_.name_clash_window;
  policy_ = std::make_unique<ReconnectPolicy>(clock_, o_.controller, ro, rng());
  return OpenChannel();
}

// The folder, locked before anything in it is touched (the report socket, the module).
absl::Status AgentImpl::PrepareWorkDir() {
  std::error_code ec;
  fs::create_directories(fs::path(o_.work_dir) / "trials", ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("--work-dir ", o_.work_dir, ": ", ec.message()));
  }
  auto lock = WorkDirLock::Acquire(o_.work_dir);
  if (!lock.ok()) return lock.status();
  lock_ = std::move(*lock);
  python_dir_ = (fs::path(o_.work_dir) / "python").string();
  fs::create_directories(fs::path(python_dir_) / "rung", ec);
  for (int i = 0; i < kPythonModuleFiles; ++i) {
    std::ofstream py(fs::path(python_dir_) / "rung" / kPythonModule[i].name, std::ios::trunc);
    py << kPythonModule[i].source;
    if (!py) {
      return absl::UnavailableError(absl::StrCat("cannot write the rung module in ", python_dir_));
    }
  }
  return absl::OkStatus();
}

absl::Status AgentImpl::OpenReportSocket() {
  socket_path_ = (fs::path(o_.work_dir) / "report.sock").string();
  sockaddr_un addr{};
  if (socket_path_.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("--work-dir ", o_.work_dir, ": the socket path ",
                                                   socket_path_, " is longer than ",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  }
  unlink(socket_path_.c_str());  // a dead worker's (we hold the folder's lock)
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
  if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listen_fd_, 128) != 0) {
    return absl::UnavailableError(
        absl::StrCat("report socket ", socket_path_, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status AgentImpl::OpenChannel() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  auto channel = Connect(o_.controller, o_.connect, args);
  if (!channel.ok()) return channel.status();
  channel_ = *channel;
  stub_ = v1::WorkerService::NewStub(channel_);
  mover_ = std::make_unique<CheckpointMover>(channel_, o_.connect, o_.name,
                                             o_.work_dir + "/transfers", [this] { Wake(); });
  sup_->set_transfers(mover_.get());
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Stream thread

void AgentImpl::StreamThread() {
  bool went_early = false;
  while (!stop_stream_.HasBeenNotified()) {
    bool registered = false;
    const absl::Status s = RunStream(&registered);
    if (stop_stream_.HasBeenNotified()) break;
    const ReconnectDecision d = policy_->OnStreamEnded(s, registered);
    if (!d.note.empty()) Log(d.level, d.note);
    if (d.give_up) {
      {
        absl::MutexLock l(&mu_);
        fatal_ = d.reason;
      }
      Wake();
      return;
    }
    // rungd unreachable: go as soon as the channel is ready again. A ready channel whose
    // stream failed anyway (rungd refusing with UNAVAILABLE) gets that at most every other
    // time, so a daemon that is up but refusing is not hammered.
    const bool unreachable = !registered && s.code() == absl::StatusCode::kUnavailable;
    went_early = WaitBeforeRetry(d.delay, unreachable && !went_early);
  }
}

absl::Status AgentImpl::RunStream(bool* registered) {
  grpc::ClientContext ctx;
  AddToken(&ctx, o_.connect);
  {
    // Published before the call starts, so that StopStreamThread() can cancel a call that
    // is still connecting.
    absl::MutexLock l(&stream_mu_);
    if (stopping_) return absl::CancelledError("the worker is stopping");
    ctx_ = &ctx;
  }
  std::unique_ptr<Stream> stream = stub_->Connect(&ctx);
  uint64_t gen;
  {
    absl::MutexLock l(&mu_);
    gen = gen_ + 1;  // only this thread changes gen_
  }
  {
    absl::MutexLock l(&stream_mu_);
    stream_ = stream.get();
    stream_gen_ = gen;
  }
  {
    absl::MutexLock l(&mu_);
    gen_ = gen;
    connected_ = true;
  }
  Wake();
  v1::ControllerMessage m;
  while (stream->Read(&m)) {
    *registered = true;
    absl::MutexLock l(&mu_);
    inbox_.push_back(std::move(m));
    Wake();
  }
  {
    absl::MutexLock l(&stream_mu_);
    stream_ = nullptr;
    ctx_ = nullptr;
  }
  {
    absl::MutexLock l(&mu_);
    connected_ = false;
    ++gen_;
  }
  Wake();
  return FromGrpc(stream->Finish());
}

bool AgentImpl::WaitBeforeRetry(absl::Duration delay, bool go_if_ready) {
  // Real time: this waits on gRPC, whose deadlines are real.
  const absl::Time deadline = absl::Now() + delay;
  grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
  if (state == GRPC_CHANNEL_READY) {
    if (go_if_ready) return true;
    stop_stream_.WaitForNotificationWithTimeout(delay);
    return false;
  }
  while (!stop_stream_.HasBeenNotified()) {
    const absl::Time now = absl::Now();
    if (now >= deadline) return false;
    const absl::Time until = std::min(deadline, now + kStopCheck);
    if (channel_->WaitForStateChange(state, absl::ToChronoTime(until))) {
      state = channel_->GetState(/*try_to_connect=*/true);
      if (state == GRPC_CHANNEL_READY) return true;
    }
  }
  return false;
}

bool AgentImpl::Write(const v1::WorkerMessage& m, uint64_t gen) {
  absl::MutexLock l(&stream_mu_);
  if (stream_ == nullptr || stream_gen_ != gen) return false;
  return stream_->Write(m);
}

void AgentImpl::StopStreamThread() {
  stop_stream_.Notify();
  absl::MutexLock l(&stream_mu_);
  stopping_ = true;
  if (ctx_ != nullptr) ctx_->TryCancel();
}

// ---------------------------------------------------------------------------------------
// Loop

// What the stream thread brought: a new or lost stream, controller messages, a refusal.
void AgentImpl::TakeFromStream(absl::Status* fatal) {
  std::deque<v1::ControllerMessage> inbox;
  uint64_t gen;
  bool connected;
  absl::Status refused;
  {
    absl::MutexLock l(&mu_);
    inbox.swap(inbox_);
    gen = gen_;
    connected = connected_;
    refused = fatal_;
  }
  if (gen != seen_gen_) {
    seen_gen_ = gen;
    if (connected) {
      sup_->OnStreamStarted();
    } else {
      sup_->OnStreamLost();
    }
  }
  for (const auto& m : inbox) sup_->HandleControllerMessage(m);
  if (!refused.ok() && !fatal_seen_) {
    fatal_seen_ = true;
    *fatal = refused;
    sup_->BeginShutdown(/*deliver=*/false);  // nobody will acknowledge the trials' exits
  }
}

void AgentImpl::HandleConn(Conn* c, bool* close_it) {
  char buf[65536];
  while (true) {
    ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) {
      *close_it = true;
      break;
    }
    c->buf.append(buf, n);
    if (c->buf.size() > kMaxLine) {
      *close_it = true;
      return;
    }
  }
  size_t nl;
  while ((nl = c->buf.find('\n')) != std::string::npos) {
    std::string line = c->buf.substr(0, nl);
    c->buf.erase(0, nl + 1);
    WriteAll(c->fd, sup_->HandleReportLine(line));
  }
}

void AgentImpl::ServeReportSocket(const std::vector<pollfd>& fds, size_t conn_base,
                                  size_t conn_end) {
  if (fds[2].revents & POLLIN) {
    int fd;
    while ((fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
      conns_.push_back({fd, ""});
    }
  }
  std::vector<Conn> keep;
  for (size_t i = 0; i < conns_.size(); ++i) {
    bool close_it = false;
    if (i + conn_base < conn_end && fds[i + conn_base].revents) HandleConn(&conns_[i], &close_it);
    if (close_it) {
      close(conns_[i].fd);
    } else {
      keep.push_back(std::move(conns_[i]));
    }
  }
  conns_.swap(keep);
}

void AgentImpl::WriteOutgoing() {
  for (const v1::WorkerMessage& m : sup_->TakeOutgoing()) {
    // A failed write means the stream broke: the stream thread notices, and the next
    // registration resends what matters.
    if (!Write(m, seen_gen_)) break;
  }
}

absl::Status AgentImpl::Run() {
  std::thread stream_thread([this] { StreamThread(); });
  absl::Status result;
  while (true) {
    std::vector<pollfd> fds;
    fds.push_back({wake_r_, POLLIN, 0});
    fds.push_back({signal_fd_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    const size_t conn_base = fds.size();
    for (const Conn& c : conns_) fds.push_back({c.fd, POLLIN, 0});
    const size_t trial_base = fds.size();
    for (int fd : sup_->StdoutFds()) fds.push_back({fd, POLLIN, 0});
    const absl::Time next = sup_->NextWake();
    int timeout = -1;
    if (next != absl::InfiniteFuture()) {
      timeout = static_cast<int>(
          std::clamp<int64_t>(absl::ToInt64Milliseconds(next - clock_->Now()) + 1, 0, 60000));
    }
    int n = poll(fds.data(), fds.size(), timeout);
    if (n < 0 && errno != EINTR) {
      result = absl::InternalError(absl::StrCat("poll: ", strerror(errno)));
      break;
    }

    if (fds[1].revents) {
      signalfd_siginfo si;
      while (read(signal_fd_, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM) sup_->BeginShutdown();
      }
    }
    if (fds[0].revents) {
      char buf[256];
      while (read(wake_r_, buf, sizeof(buf)) > 0) {
      }
    }
    TakeFromStream(&result);
    for (const TransferDone& d : mover_->TakeDone()) sup_->OnTransferDone(d);
    ServeReportSocket(fds, conn_base, trial_base);
    for (size_t i = trial_base; i < fds.size(); ++i) {
      if (fds[i].revents) sup_->ReadStdout(fds[i].fd);
    }
    sup_->Tick();
    WriteOutgoing();
    if (sup_->ShutdownComplete()) break;
  }
  StopStreamThread();
  stream_thread.join();
  return result;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(AgentOptions options, AgentEnv env) {
  // Trials run in their own folders, so every path handed to them must be absolute.
  std::error_code ec;
  options.work_dir = fs::absolute(options.work_dir, ec).lexically_normal().string();
  if (ec) return absl::InvalidArgumentError(absl::StrCat("--work-dir: ", ec.message()));
  if (!options.work_dir.empty() && options.work_dir.back() == '/' && options.work_dir.size() > 1) {
    options.work_dir.pop_back();  // "x/" normalises to ".../x/"; messages name ".../x"
  }
  auto agent = std::make_unique<AgentImpl>(std::move(options), env);
  absl::Status s = agent->Init();
  if (!s.ok()) return s;
  return std::unique_ptr<Agent>(std::move(agent));
}

}  // namespace rung
