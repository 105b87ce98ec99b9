// Small helpers shared by foryou bench's workloads (bench.cc, backup_bench.cc):
// the JSON a load generator posts, percentiles of sorted samples, timing.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/types.h"
#include "util/status.h"

namespace foryou {

using BenchClock = std::chrono::steady_clock;
inline double Seconds(BenchClock::time_point a, BenchClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// A video or an event as POST /v1/videos or /v1/events takes it.
nlohmann::json VideoJson(const Video& v);
nlohmann::json EventJson(const Event& e);

// The p-quantile (0..1) of ascending `sorted`; 0 when empty.
double Percentile(const std::vector<double>& sorted, double p);

Status WriteTextFile(const std::string& path, const std::string& text);

}  // namespace foryou
