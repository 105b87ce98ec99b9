// The watch, normalised by its viewer (issue 12).
//
// What a short-video ranker must predict best is how long people watch, and
// a plain mean watch ratio of a video is a poor estimate of it: a few
// viewers looping a video a hundred times dominate it, and viewers who
// watch everything long count as much as picky ones. NormalizedWatch
// measures one watch against its viewer's own history: how far
// log(1 + watch_ratio) lies from the viewer's mean, in units of the
// viewer's spread, both smoothed toward priors with the weight of
// kPriorPlays plays, clamped to [-kMaxZ, kMaxZ]. The mean of it over a
// video's plays (VideoStats::watch_z_sum, the `watch_z` ranking feature)
// says how much more than usual people watch that video.
//
// Online: each play is measured against the plays before it (the viewer's
// sums are updated after), so replaying the log gives the same numbers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace foryou {

struct WatchNorm {
  static constexpr double kPriorPlays = 3;
  static constexpr double kPriorMean = 0.6;      // log(1 + r) of a typical watch
  static constexpr double kPriorVariance = 0.15;
  static constexpr double kMaxZ = 4;

  // The viewer's sums of log(1 + watch_ratio) and of its square over `plays`.
  static double Z(double log_sum, double log_sq, uint32_t plays, double watch_ratio) {
    const double n = static_cast<double>(plays) + kPriorPlays;
    const double mean = (log_sum + kPriorPlays * kPriorMean) / n;
    const double second = (log_sq + kPriorPlays * (kPriorVariance + kPriorMean * kPriorMean)) / n;
    const double sd = std::sqrt(std::max(second - mean * mean, 1e-3));
    return std::clamp((std::log1p(std::max(0.0, watch_ratio)) - mean) / sd, -kMaxZ, kMaxZ);
  }
};

}  // namespace foryou
