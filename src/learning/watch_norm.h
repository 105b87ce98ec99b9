// The watch, normalised by its viewer (issue 12).
//
// What a short-video ranker must predict best is how long people watch, and
// a plain mean watch ratio of a video is a poor estimate of it: a few
// viewers looping a video a hundred times dominate it, and viewers who
// watch everything long count as much as picky ones. WatchNorm::Z
// measures one watch against its viewer's own history: how far
// log(1 + watch_ratio) lies from the viewer's mean, in units of the
// viewer's spread, both smoothed with the weight of kPriorPlays plays toward
// the population's (every play so far), clamped to [-kMaxZ, kMaxZ]. The
// mean of it over a video's plays (VideoStats::watch_z_sum, the `watch_z`
// ranking feature) says how much more than usual people watch that video.
// Where every play has the same watch ratio (a catalogue of purchases, say)
// it is 0 for every play: it says nothing rather than something spurious.
//
// Online: each play is measured against the plays before it (the viewer's
// and the population's sums are updated after), so replaying the log gives
// the same numbers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace foryou {

// The scale a watch is measured on: log(1 + watch_ratio).
inline double WatchLog(double watch_ratio) { return std::log1p(std::max(0.0, watch_ratio)); }

// Sums of WatchLog and of its square over `plays` plays.
struct WatchSums {
  double log_sum = 0;
  double log_sq = 0;
  uint64_t plays = 0;

  void Add(double watch_ratio) {
    const double x = WatchLog(watch_ratio);
    log_sum += x;
    log_sq += x * x;
    ++plays;
  }
};

struct WatchNorm {
  static constexpr double kPriorPlays = 3;
  static constexpr double kMaxZ = 4;
  static constexpr double kMinVariance = 1e-3;

  // The viewer's sums (`log_sum`, `log_sq` over `plays`) and the population's.
  static double Z(double log_sum, double log_sq, uint64_t plays, const WatchSums& population, double watch_ratio) {
    // The first play of all has nothing to be measured against.
    if (population.plays == 0) return 0.0;
    const double np = static_cast<double>(population.plays);
    const double prior_mean = population.log_sum / np;
    const double prior_var = std::max(population.log_sq / np - prior_mean * prior_mean, 0.0);
    const double n = static_cast<double>(plays) + kPriorPlays;
    const double mean = (log_sum + kPriorPlays * prior_mean) / n;
    const double second = (log_sq + kPriorPlays * (prior_var + prior_mean * prior_mean)) / n;
    const double sd = std::sqrt(std::max(second - mean * mean, kMinVariance));
    const double x = WatchLog(watch_ratio);
    // Rounding must not turn "the same as always" into a signal.
    if (std::abs(x - mean) < 1e-9) return 0.0;
    return std::clamp((x - mean) / sd, -kMaxZ, kMaxZ);
  }
};

}  // namespace foryou
