#include "eval/progress.h"

#include <unistd.h>

#include <cstdio>

namespace foryou {

ProgressBar::ProgressBar(std::string label, size_t total)
    : label_(std::move(label)), total_(total), start_(std::chrono::steady_clock::now()), last_draw_(start_) {
  if (isatty(fileno(stderr))) Draw(0);
}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Update(size_t done) {
  const auto now = std::chrono::steady_clock::now();
  if (!isatty(fileno(stderr))) {
    // In logs: one line per tenth, no carriage returns.
    if (total_ > 0 && done * 10 / total_ != last_done_ * 10 / total_ && done < total_) {
      last_done_ = done;
      Draw(done);
      std::fputc('\n', stderr);
    }
    last_done_ = done;
    return;
  }
  last_done_ = done;
  if (now - last_draw_ < std::chrono::milliseconds(100) && done < total_) return;
  last_draw_ = now;
  Draw(done);
}

void ProgressBar::Finish() {
  if (finished_) return;
  finished_ = true;
  Draw(total_);
  std::fputc('\n', stderr);
}

void ProgressBar::Draw(size_t done) {
  constexpr int kWidth = 30;
  const double frac = total_ == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total_);
  const int filled = static_cast<int>(frac * kWidth);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::fprintf(stderr, "\r%-14s [%-*.*s] %5.1f%% %zu/%zu %.1fs", label_.c_str(), kWidth, filled,
               "##############################", frac * 100, done, total_, secs);
  std::fflush(stderr);
}

}  // namespace foryou
