// foryou bench --connections: the connection layer against the targets of
// docs/PERFORMANCE.md ("Connections"), on a real `foryou serve --demo`.
//
// Phases, in order (reported under its key):
//   before   `concurrency` closed-loop clients, /healthz then feeds of demo
//            users, duration_s each    -> healthz_/feed_ qps, p50, p99
//   idle     `idle` keep-alive connections are opened, each asks /healthz
//            once and then stays open and silent (the server is started
//            with server.idle_timeout_ms = 10 min so that none is closed
//            during the phase)          -> idle_open (answered and still
//            open, checked against the server's open descriptors), then the
//            same two loads next to them -> idle_healthz_/idle_feed_ p99
//   burst    the idle connections closed, `burst` connections are started
//            at once (non-blocking connects), each sends one GET /healthz
//                                       -> burst_served, connect-to-answer
//                                          p50/p99/max
// Nothing is estimated: latencies are clock readings around real requests.
#pragma once

#include <cstddef>
#include <string>

#include "util/status.h"

namespace foryou {

struct ConnectionBenchOptions {
  size_t idle = 10'000;
  size_t burst = 1'000;
  int concurrency = 4;
  double duration_s = 5;
  std::string binary;  // the foryou binary to run as the server
};

struct ConnectionBenchReport {
  size_t idle_requested = 0, idle_open = 0, server_fds_idle = 0;
  double idle_open_s = 0;  // time to open and serve them all
  double healthz_qps = 0, healthz_p50_ms = 0, healthz_p99_ms = 0;
  double feed_qps = 0, feed_p50_ms = 0, feed_p99_ms = 0;
  double idle_healthz_qps = 0, idle_healthz_p50_ms = 0, idle_healthz_p99_ms = 0;
  double idle_feed_qps = 0, idle_feed_p50_ms = 0, idle_feed_p99_ms = 0;
  size_t load_errors = 0;
  size_t burst = 0, burst_served = 0;
  double burst_p50_ms = 0, burst_p99_ms = 0, burst_max_ms = 0;
};

Result<ConnectionBenchReport> RunConnectionBench(const ConnectionBenchOptions& o);
std::string ConnectionBenchToJson(const ConnectionBenchReport& r);
std::string ConnectionBenchToTable(const ConnectionBenchReport& r);

}  // namespace foryou
