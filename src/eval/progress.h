// A progress bar on stderr for long-running commands (eval, bench, import).
// Redraws at most ~10 times a second. Not thread-safe: call from one thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace foryou {

class ProgressBar {
 public:
  ProgressBar(std::string label, size_t total);
  ~ProgressBar();  // finishes the line
  void Update(size_t done);
  void Finish();

 private:
  void Draw(size_t done);
  std::string label_;
  size_t total_;
  size_t last_done_ = 0;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace foryou
