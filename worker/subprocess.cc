#include "worker/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace rung {

std::map<std::string, std::string> CurrentEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e; ++e) {
    const char* eq = strchr(*e, '=');
    if (eq != nullptr) env[std::string(*e, eq - *e)] = std::string(eq + 1);
  }
  return env;
}

std::string WaitForLine(Subprocess* p, const std::string& needle, int timeout_ms) {
  std::string line;
  while (true) {
    pollfd pf{p->stdout_fd(), POLLIN, 0};
    if (poll(&pf, 1, timeout_ms) <= 0) return "";
    char c;
    ssize_t n = read(p->stdout_fd(), &c, 1);
    if (n == 0) return "";
    if (n < 0) continue;  // EAGAIN or EINTR
    if (c != '\n') {
      line += c;
    } else if (line.find(needle) != std::string::npos) {
      return line;
    } else {
      line.clear();
    }
  }
}

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Spawn(const SpawnOptions& o) {
  if (o.argv.empty()) return absl::InvalidArgumentError("empty command");
  // Everything the child needs is built before fork: only async-signal-safe calls after it.
  std::vector<char*> argv;
  for (const auto& a : o.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : o.env) env_strings.push_back(absl::StrCat(k, "=", v));
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  // PATH lookup uses the child's PATH.
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  if (auto it = o.env.find("PATH"); it != o.env.end()) path = it->second;

  int err_pipe[2], out_pipe[2] = {-1, -1}, in_pipe[2] = {-1, -1};
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return absl::InternalError(strerror(errno));
  if ((o.pipe_stdout && pipe2(out_pipe, O_CLOEXEC) != 0) ||
      (o.pipe_stdin && pipe2(in_pipe, O_CLOEXEC) != 0)) {
    const std::string why = strerror(errno);
    for (int fd : {err_pipe[0], err_pipe[1], out_pipe[0], out_pipe[1], in_pipe[0], in_pipe[1]}) {
      if (fd >= 0) close(fd);
    }
    return absl::InternalError(why);
  }
  int err_fd = open(o.stderr_path.empty() ? "/dev/null" : o.stderr_path.c_str(),
                    O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (err_fd < 0) {
    std::string msg = absl::StrCat("cannot open ", o.stderr_path, ": ", strerror(errno));
    close(err_pipe[0]);
    close(err_pipe[1]);
    for (int fd : {out_pipe[0], out_pipe[1], in_pipe[0], in_pipe[1]}) {
      if (fd >= 0) close(fd);
    }
    return absl::UnavailableError(msg);
  }
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return absl::ResourceExhaustedError(absl::StrCat("fork: ", strerror(errno)));
  if (pid == 0) {
    // Child.
    auto fail = [&](const char* what) {
      int e = errno;
      ssize_t unused = write(err_pipe[1], what, strlen(what));
      unused = write(err_pipe[1], ": ", 2);
      const char* s = strerror(e);
      unused = write(err_pipe[1], s, strlen(s));
      (void)unused;
      _exit(127);
    };
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the worker died before prctl took effect
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    int devnull = open("/dev/null", O_RDWR);
    dup2(o.pipe_stdin ? in_pipe[0] : devnull, 0);
    dup2(o.pipe_stdout ? out_pipe[1] : devnull, 1);
    dup2(err_fd, 2);
    if (!o.workdir.empty() && chdir(o.workdir.c_str()) != 0) fail(o.workdir.c_str());
    if (strchr(argv[0], '/') != nullptr) {
      execve(argv[0], argv.data(), envp.data());
    } else {
      // Search the child's PATH by hand (execvpe would search ours).
      const char* p = path.c_str();
      char buf[4096];
      int first_errno = ENOENT;
      while (true) {
        const char* colon = strchr(p, ':');
        size_t len = colon ? static_cast<size_t>(colon - p) : strlen(p);
        size_t alen = strlen(argv[0]);
        if (len + alen + 2 < sizeof(buf)) {
          memcpy(buf, len ? p : ".", len ? len : 1);
          size_t off = len ? len : 1;
          buf[off] = '/';
          memcpy(buf + off + 1, argv[0], alen + 1);
          execve(buf, argv.data(), envp.data());
          if (errno != ENOENT) first_errno = errno;
        }
        if (!colon) break;
        p = colon + 1;
      }
      errno = first_errno;
    }
    fail(argv[0]);
  }
  // Parent.
  close(err_fd);
  close(err_pipe[1]);
  if (out_pipe[1] >= 0) close(out_pipe[1]);
  if (in_pipe[0] >= 0) close(in_pipe[0]);
  setpgid(pid, pid);  // also in the parent, so the group exists before we signal it
  // The pipe closes on a successful exec (O_CLOEXEC); otherwise it carries the reason.
  std::string exec_error;
  char msg[512];
  while (true) {
    ssize_t n = read(err_pipe[0], msg, sizeof(msg));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    exec_error.append(msg, n);
  }
  close(err_pipe[0]);
  if (!exec_error.empty()) {
    int status;
    waitpid(pid, &status, 0);
    if (out_pipe[0] >= 0) close(out_pipe[0]);
    if (in_pipe[1] >= 0) close(in_pipe[1]);
    return absl::NotFoundError(exec_error);
  }
  std::unique_ptr<Subprocess> sp(new Subprocess());
  sp->pid_ = pid;
  sp->stdout_fd_ = out_pipe[0];
  if (sp->stdout_fd_ >= 0) fcntl(sp->stdout_fd_, F_SETFL, O_NONBLOCK);
  sp->stdin_fd_ = in_pipe[1];
  if (sp->stdin_fd_ >= 0) fcntl(sp->stdin_fd_, F_SETFL, O_NONBLOCK);
  return sp;
}

Subprocess::~Subprocess() {
  CloseStdout();
  CloseStdin();
  if (pid_ > 0 && !exited_) {
    SignalGroup(SIGKILL);
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

void Subprocess::CloseStdout() {
  if (stdout_fd_ >= 0) close(stdout_fd_);
  stdout_fd_ = -1;
}

void Subprocess::CloseStdin() {
  if (stdin_fd_ >= 0) close(stdin_fd_);
  stdin_fd_ = -1;
}

void Subprocess::SignalGroup(int sig) {
  if (pid_ <= 0) return;
  // After the leader exited the group may still hold its children: signal it anyway.
  kill(-pid_, sig);
}

bool Subprocess::Poll(int* status) {
  if (!exited_) {
    pid_t r = waitpid(pid_, &status_, WNOHANG);
    if (r == pid_) exited_ = true;
  }
  if (exited_ && status) *status = status_;
  return exited_;
}

}  // namespace rung
