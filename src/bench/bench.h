// foryou bench: end-to-end performance of a real server under load.
//
// Workloads, in order (each reported under its key; docs/PERFORMANCE.md):
//   load_videos   POST /v1/videos, batches of 1,000, 2 clients
//   ingest        POST /v1/events, batches of 1,000, 2 clients; every
//                 batch acknowledged durably        -> ingest_events_per_s
//   ceiling       GET /healthz at `concurrency`     -> http_ceiling_qps
//   feed          GET /v1/feed?n=20 for random users at `concurrency`
//                                                    -> feed_qps, feed_p50/p99/p999_ms
//   wrk           the same two loads from wrk (2 threads, 8 connections), if
//                 installed -> wrk_healthz_qps, wrk_feed_qps, wrk_feed_p99_ms,
//                 wrk_feed_vs_healthz
//   freshness     follow a creator, then poll the feed until it shows that
//                 creator's videos                   -> freshness_ms_p99
//   session       a user likes a video; how much of the next page of 10
//                 shares its creator or a tag, against the page before
//                 (eval/session_lean.h)              -> session_lean_at_10,
//                 session_related_before/after, session_same_creator_after
//   restart       SIGTERM (the server writes a snapshot as it stops) -> stop_s;
//                 start again on the same store, until a feed is served
//                                                    -> restart_s
//   crash         5% more users' events after that snapshot, kill -9, start
//                 again until a feed is served       -> crash_restart_s
//   ann           in-process: HNSW vs brute force on the learned vectors,
//                 the graph as the server served it (saved at its stop),
//                 then rebuilt from scratch on the same vectors
//                                                    -> ann_recall_at_100, ann_query_us,
//                                                       ann_recall_rebuilt_at_100
// The server is a separate `foryou serve` process on a free loopback port;
// the load comes from this process over real HTTP.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "util/status.h"

namespace foryou {

struct BenchOptions {
  size_t videos = 1'000'000;
  size_t users = 1'000'000;
  size_t events_per_user = 10;
  int concurrency = 4;      // feed and ceiling clients
  // Clients posting the catalog and the events at once: concurrent event
  // batches share durable writes (engine/group_commit.cc). Until the
  // twenty-first session the bench posted with 2.
  int ingest_clients = 4;
  double duration_s = 10;   // per load phase
  size_t freshness_probes = 200;
  int server_threads = 8;
  std::string data_dir;     // empty: a temporary directory
  std::string server_logs;  // the servers' stdout/stderr go here; empty: a temporary directory
  std::string binary;       // the foryou binary to run as the server
  uint64_t seed = 1;
  // More `foryou serve` arguments, e.g. a policy, a region key and --cluster
  // (scripts/cluster-scale-bench.sh), and headers every request carries
  // (Authorization, X-Foryou-Jurisdiction). With server arguments the store
  // is not opened in process, so the ANN phase is skipped.
  std::vector<std::string> server_args;
  std::vector<std::pair<std::string, std::string>> headers;
  // Cluster mode: after the restarts, start a second replica with an empty
  // data dir (it joins from the region's snapshot plus the tail) and measure
  // the time until it serves, feeds over both replicas, and replica lag.
  bool join = false;
};

// --quick: a small world that runs in well under a minute.
BenchOptions QuickBenchOptions();

struct BenchReport {
  size_t videos = 0, users = 0, events = 0;
  int concurrency = 0;
  int ingest_clients = 0;
  double feed_qps = 0, feed_p50_ms = 0, feed_p99_ms = 0, feed_p999_ms = 0;
  double ingest_events_per_s = 0;
  double freshness_ms_p99 = 0, freshness_ms_p50 = 0;
  size_t session_users = 0;
  double session_related_before = 0, session_related_after = 0, session_lean_at_10 = 0;
  double session_same_creator_after = 0, session_creators_after = 0;
  size_t freshness_probes = 0, freshness_failures = 0;
  double http_ceiling_qps = 0, feed_vs_ceiling = 0;
  bool wrk_measured = false;  // wrk was installed and ran
  double wrk_healthz_qps = 0, wrk_feed_qps = 0, wrk_feed_p99_ms = 0, wrk_feed_vs_healthz = 0;
  double ann_recall_at_100 = 0, ann_query_us = 0, ann_exact_us = 0;
  // Recall of the served graph against the vectors as it holds them (moved
  // only once they drift), and of a graph rebuilt from the learned vectors.
  double ann_recall_indexed_at_100 = 0, ann_recall_rebuilt_at_100 = 0, ann_rebuilt_query_us = 0;
  uint64_t ann_moves = 0;  // in-place moves the served graph took since it was built (AnnIndex::moves)
  struct EfPoint {
    int ef;
    double recall_at_100, query_us;
  };
  std::vector<EfPoint> ann_ef_sweep;  // the same queries at other HNSW search breadths
  // rss_mb: the server's RSS after the events, once no snapshot is being
  // written (one holds its encoded body, about 0.9 GB at 1M x 1M, until it
  // is on disk); rss_peak_mb: the most it ever held (VmHWM), snapshots
  // included.
  double rss_mb = 0, rss_peak_mb = 0, bytes_per_video = 0, bytes_per_user = 0;
  double restart_s = 0, stop_s = 0, crash_restart_s = 0;
  size_t crash_tail_events = 0;
  // join (cluster mode): a new replica's start until its first feed; feeds
  // with the load split over both replicas; an event acknowledged by the
  // first replica until the second one has applied its record.
  double join_s = 0;
  double feed_two_replicas_qps = 0, feed_two_replicas_p99_ms = 0;
  double replica_lag_ms_p50 = 0, replica_lag_ms_p99 = 0;
  size_t replica_lag_probes = 0;
  bool ann_measured = false;
  double load_videos_s = 0, ingest_s = 0;
  // From the first video POST until the ANN index holds every video (large
  // batches are answered first and indexed in the background).
  double load_indexed_s = 0;
  size_t feed_errors = 0;
  // Share of the feed phase (the server's /metrics polled every 100 ms)
  // during which it was writing a snapshot, or rebuilding its ANN index in
  // the background: work that competes with feeds for the cores.
  double feed_during_snapshot = 0, feed_during_ann_rebuild = 0;
  std::vector<double> feed_latencies_ms;  // every feed request, for the histogram
};

Result<BenchReport> RunBench(const BenchOptions& options);
std::string BenchToJson(const BenchReport& report);
std::string BenchToTable(const BenchReport& report);
// Latency histogram (log-spaced buckets), SVG.
std::string LatencyHistogramSvg(const BenchReport& report);

}  // namespace foryou
