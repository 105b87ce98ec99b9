// ServerProcess: runs a real `foryou serve` process on a free loopback port
// and stops it by PID. Used by `foryou bench` and by the end-to-end tests.
// Not thread-safe; one owner.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace foryou {

// Runs a command to completion; returns its exit status, its stdout and its
// stderr (kept apart, so a JSON stdout parses).
struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
CommandResult RunCommand(const std::vector<std::string>& args);

class ServerProcess {
 public:
  // Starts `binary serve --listen 127.0.0.1:0 --data-dir data_dir extra...`
  // and waits (up to timeout_s) for its "listening on" line. Output goes to
  // files in log_dir. Returns null (and prints why) on failure.
  static std::unique_ptr<ServerProcess> Start(const std::string& binary, const std::string& data_dir,
                                              const std::string& log_dir, const std::vector<std::string>& extra,
                                              double timeout_s = 120);
  ~ServerProcess();

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // SIGKILL: no chance to flush or clean up.
  void Kill9();
  // SIGTERM and wait; returns the exit status (or -1).
  int Terminate();
  // Open file descriptors of the server process.
  int CountOpenFds() const;
  // Resident set size of the server process, in bytes (0 if unknown).
  uint64_t RssBytes() const;
  uint64_t PeakRssBytes() const;  // VmHWM: the most it has held

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace foryou
