// Metrics: what /metrics renders, in the Prometheus text exposition format
// (checked by `promtool check metrics` in tests/contract): request counters
// and latency histograms per endpoint, rejections by reason, audit appends,
// events accepted, the engine's gauges, the process's own metrics
// (process_cpu_seconds_total, process_resident_memory_bytes,
// process_open_fds, process_start_time_seconds, ... from /proc/self) and
// foryou_build_info.
//
// Every *_total is a true counter: it starts at 0 when the process starts and
// never goes down (foryou_events_stored, the model's count since the store
// was created, is a gauge).
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <array>
#include <atomic>
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
  // A request refused before or instead of its handler's work, by the
  // error code it got ("no_route", "too_large", "unauthenticated", ...).
  void ObserveRejection(std::string_view reason);
  void ObserveAuditAppend(bool ok);
  void AddEventsIngested(uint64_t n) { events_ingested_.fetch_add(n, std::memory_order_relaxed); }
  // The engine's model-update count when this process started serving, so
  // foryou_model_updates_total counts from 0 like every other counter.
  void SetModelUpdatesBaseline(uint64_t n) { model_updates_base_.store(n); }

  std::string Render(const EngineStats& stats) const;
  // process_* (from /proc/self) and foryou_build_info; also served while
  // the server is starting.
  static std::string RenderProcess();

 private:
  struct Endpoint {
    std::map<int, uint64_t> by_status;
    std::array<uint64_t, kBuckets.size() + 1> buckets{};
    double sum = 0;
    uint64_t count = 0;
  };
  mutable std::mutex mu_;
  std::map<std::string, Endpoint, std::less<>> endpoints_;  // guarded by mu_
  std::map<std::string, uint64_t, std::less<>> rejections_;  // guarded by mu_
  uint64_t audit_appends_ = 0, audit_failures_ = 0;          // guarded by mu_
  std::atomic<uint64_t> events_ingested_{0};
  std::atomic<uint64_t> model_updates_base_{0};
  mutable std::atomic<uint64_t> model_updates_seen_{0};  // never rendered lower than this
};

}  // namespace foryou
