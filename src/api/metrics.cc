#include "api/metrics.h"

#include <fmt/format.h>

namespace foryou {

void Metrics::ObserveRequest(std::string_view endpoint, int http_status, double seconds) {
  std::lock_guard lock(mu_);
  auto it = endpoints_.find(endpoint);
  if (it == endpoints_.end()) it = endpoints_.emplace(std::string(endpoint), Endpoint{}).first;
  Endpoint& e = it->second;
  e.by_status[http_status]++;
  size_t b = 0;
  while (b < kBuckets.size() && seconds > kBuckets[b]) ++b;
  e.buckets[b]++;
  e.sum += seconds;
  e.count++;
}

std::string Metrics::Render(const EngineStats& st) const {
  std::string out;
  auto gauge = [&](const char* name, const char* help, const char* type, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
  };
  gauge("foryou_videos", "Videos in the catalog.", "gauge", static_cast<double>(st.videos));
  gauge("foryou_users", "Users with at least one event.", "gauge", static_cast<double>(st.users));
  gauge("foryou_events_ingested_total", "Events applied since the store was created.", "counter", static_cast<double>(st.events));
  gauge("foryou_model_updates_total", "Online ranker SGD steps since the store was created.", "counter", static_cast<double>(st.model_updates));
  gauge("foryou_ann_index_size", "Videos in the ANN index.", "gauge", static_cast<double>(st.ann_size));
  gauge("foryou_ann_clamped_total", "Video vectors indexed beyond the ANN norm bound since start (ranked as if shorter).",
        "counter", static_cast<double>(st.ann_clamped));
  gauge("foryou_co_engagement_edges", "Edges in the item-to-item co-engagement graph.", "gauge", static_cast<double>(st.co_engagement_edges));
  gauge("foryou_log_sequence", "Sequence number of the last durable log record.", "gauge", static_cast<double>(st.log_seq));
  gauge("foryou_applied_sequence",
        "Sequence number of the last log record applied to the in-memory state (what feeds reflect).", "gauge",
        static_cast<double>(st.applied_seq));
  gauge("foryou_store_bytes", "Approximate bytes of the RocksDB store.", "gauge", static_cast<double>(st.store_bytes));
  gauge("foryou_cluster_followed_records_total",
        "Cluster mode: log records written by other replicas and applied here since start.", "counter",
        static_cast<double>(st.followed_records));
  gauge("foryou_cluster_write_conflicts_total",
        "Cluster mode: writes that lost their sequence number to another replica and ran again.", "counter",
        static_cast<double>(st.cluster_conflicts));
  gauge("foryou_recovery_seconds", "Seconds the last start spent loading its snapshot and replaying the log.", "gauge",
        st.recovery_seconds);
  gauge("foryou_recovery_replayed_records", "Log records the last start replayed (after its snapshot, if any).",
        "gauge", static_cast<double>(st.replayed_records));
  gauge("foryou_snapshot_sequence", "Log sequence number of the newest snapshot loaded or written (0: none).", "gauge",
        static_cast<double>(st.snapshot_seq));
  gauge("foryou_snapshot_bytes", "Bytes on disk of that snapshot.", "gauge", static_cast<double>(st.snapshot_bytes));
  gauge("foryou_snapshots_written_total", "Snapshots written since start.", "counter",
        static_cast<double>(st.snapshots_written));
  gauge("foryou_snapshots_skipped_total", "Damaged snapshots the last start skipped (each logged).", "counter",
        static_cast<double>(st.snapshots_skipped));
  gauge("foryou_snapshot_seconds", "Seconds the last snapshot write took.", "gauge", st.snapshot_seconds);
  gauge("foryou_snapshot_pause_seconds", "Seconds of the last snapshot write during which writers waited.", "gauge",
        st.snapshot_pause_seconds);

  std::lock_guard lock(mu_);
  out += "# HELP foryou_http_requests_total HTTP requests by endpoint and status.\n";
  out += "# TYPE foryou_http_requests_total counter\n";
  for (const auto& [name, e] : endpoints_) {
    for (const auto& [status, count] : e.by_status) {
      out += fmt::format("foryou_http_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", name, status, count);
    }
  }
  out += "# HELP foryou_http_request_duration_seconds HTTP request latency by endpoint.\n";
  out += "# TYPE foryou_http_request_duration_seconds histogram\n";
  for (const auto& [name, e] : endpoints_) {
    uint64_t cumulative = 0;
    for (size_t b = 0; b < kBuckets.size(); ++b) {
      cumulative += e.buckets[b];
      out += fmt::format("foryou_http_request_duration_seconds_bucket{{endpoint=\"{}\",le=\"{}\"}} {}\n", name,
                         kBuckets[b], cumulative);
    }
    cumulative += e.buckets[kBuckets.size()];
    out += fmt::format("foryou_http_request_duration_seconds_bucket{{endpoint=\"{}\",le=\"+Inf\"}} {}\n", name, cumulative);
    out += fmt::format("foryou_http_request_duration_seconds_sum{{endpoint=\"{}\"}} {}\n", name, e.sum);
    out += fmt::format("foryou_http_request_duration_seconds_count{{endpoint=\"{}\"}} {}\n", name, e.count);
  }
  return out;
}

}  // namespace foryou
