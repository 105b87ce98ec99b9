#include "bench/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace foryou {

std::unique_ptr<ServerProcess> ServerProcess::Start(const std::string& binary, const std::string& data_dir,
                                                    const std::string& log_dir, const std::vector<std::string>& extra,
                                                    double timeout_s) {
  static int counter = 0;
  const std::string out_path = log_dir + "/server-" + std::to_string(++counter) + ".out";
  const std::string err_path = log_dir + "/server-" + std::to_string(counter) + ".err";
  std::vector<std::string> args = {binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir, "--log-level", "warn"};
  args.insert(args.end(), extra.begin(), extra.end());

  pid_t pid = fork();
  if (pid < 0) return nullptr;
  if (pid == 0) {
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  auto proc = std::unique_ptr<ServerProcess>(new ServerProcess());
  proc->pid_ = pid;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(out_path);
    std::string line;
    while (std::getline(in, line)) {
      for (std::string_view prefix : {"listening on http://127.0.0.1:", "listening on https://127.0.0.1:"}) {
        if (line.rfind(prefix, 0) == 0) {
          proc->port_ = std::stoi(line.substr(prefix.size()));
          return proc;
        }
      }
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      proc->pid_ = -1;
      std::ifstream err(err_path);
      std::stringstream ss;
      ss << err.rdbuf();
      std::fprintf(stderr, "server exited before listening: %s\n", ss.str().c_str());
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::fprintf(stderr, "server did not print 'listening on' within %.0f s\n", timeout_s);
  return nullptr;  // the destructor kills it
}

CommandResult RunCommand(const std::vector<std::string>& args) {
  CommandResult r;
  char err_path[] = "/tmp/foryou-command-stderr-XXXXXX";
  const int err_fd = mkstemp(err_path);
  if (err_fd < 0) return r;
  close(err_fd);
  std::string cmd;
  for (const auto& a : args) cmd += "'" + a + "' ";
  cmd += "2>'" + std::string(err_path) + "'";
  FILE* p = popen(cmd.c_str(), "r");
  if (p != nullptr) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    int status = pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::ifstream err(err_path);
    r.err.assign(std::istreambuf_iterator<char>(err), std::istreambuf_iterator<char>());
  }
  unlink(err_path);
  return r;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) Kill9();
}

void ServerProcess::Kill9() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

int ServerProcess::Terminate() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

namespace {
uint64_t StatusKb(int pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::stoull(line.substr(field.size())) * 1024;  // kB
  }
  return 0;
}
}  // namespace

uint64_t ServerProcess::RssBytes() const { return StatusKb(pid_, "VmRSS:"); }
uint64_t ServerProcess::PeakRssBytes() const { return StatusKb(pid_, "VmHWM:"); }

int ServerProcess::CountOpenFds() const {
  int n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid_) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

}  // namespace foryou
