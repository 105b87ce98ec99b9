// Metrics: request counters and latency histograms per endpoint, rendered in
// the Prometheus text exposition format together with the engine's gauges.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "engine/engine.h"

namespace foryou {

class Metrics {
 public:
  // Upper bounds of the latency buckets, in seconds (+Inf is implicit).
  static constexpr std::array<double, 14> kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                      0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   2.5};

  void ObserveRequest(std::string_view endpoint, int http_status, double seconds);
  std::string Render(const EngineStats& stats) const;

 private:
  struct Endpoint {
    std::map<int, uint64_t> by_status;
    std::array<uint64_t, kBuckets.size() + 1> buckets{};
    double sum = 0;
    uint64_t count = 0;
  };
  mutable std::mutex mu_;
  std::map<std::string, Endpoint, std::less<>> endpoints_;  // guarded by mu_
};

}  // namespace foryou
