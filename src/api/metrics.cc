#include "api/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#ifndef FORYOU_GIT_COMMIT
#define FORYOU_GIT_COMMIT "unknown"
#endif

namespace foryou {

void Metrics::ObserveRejection(std::string_view reason) {
  std::lock_guard lock(mu_);
  auto it = rejections_.find(reason);
  if (it == rejections_.end()) it = rejections_.emplace(std::string(reason), 0).first;
  it->second++;
}

void Metrics::ObserveAuditAppend(bool ok) {
  std::lock_guard lock(mu_);
  (ok ? audit_appends_ : audit_failures_)++;
}

std::string Metrics::RenderProcess() {
  std::string out;
  auto metric = [&](const char* name, const char* help, const char* type, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
  };
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  // /proc/self/stat: fields after the ")" that ends the command name.
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');
  if (close != std::string::npos) {
    std::istringstream in(stat.substr(close + 2));
    std::string f[24];
    for (auto& x : f) in >> x;
    // f[0] is field 3 (state): utime 14, stime 15, threads 20, starttime 22,
    // vsize 23, rss 24.
    const double utime = std::atof(f[11].c_str()), stime = std::atof(f[12].c_str());
    metric("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter",
           (utime + stime) / ticks);
    std::ifstream uptime_file("/proc/uptime");
    double uptime = 0;
    uptime_file >> uptime;
    const double boot = static_cast<double>(time(nullptr)) - uptime;
    metric("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge",
           boot + std::atof(f[19].c_str()) / ticks);
    metric("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", std::atof(f[20].c_str()));
    metric("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", std::atof(f[21].c_str()) * page);
    metric("process_threads", "Threads of the process.", "gauge", std::atof(f[17].c_str()));
  }
  size_t fds = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) fds += e->d_name[0] != '.';
    closedir(d);
    fds = fds > 0 ? fds - 1 : 0;  // the directory stream's own descriptor
  }
  metric("process_open_fds", "Number of open file descriptors.", "gauge", static_cast<double>(fds));
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    metric("process_max_fds", "Maximum number of open file descriptors.", "gauge", static_cast<double>(lim.rlim_cur));
  }
  out += fmt::format(
      "# HELP foryou_build_info The running build: version and git commit (at configure time).\n"
      "# TYPE foryou_build_info gauge\nforyou_build_info{{version=\"{}\",commit=\"{}\"}} 1\n",
      FORYOU_VERSION, FORYOU_GIT_COMMIT);
  return out;
}

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
  gauge("foryou_events_stored", "Events the model learned from since the store was created (a gauge, not a counter).", "gauge",
        static_cast<double>(st.events));
  gauge("foryou_events_ingested_total", "Events accepted through this server's API since it started.", "counter",
        static_cast<double>(events_ingested_.load(std::memory_order_relaxed)));
  {
    const uint64_t base = model_updates_base_.load();
    uint64_t v = st.model_updates > base ? st.model_updates - base : 0;
    uint64_t seen = model_updates_seen_.load();
    while (v > seen && !model_updates_seen_.compare_exchange_weak(seen, v)) {
    }
    v = std::max(v, seen);
    gauge("foryou_model_updates_total", "Online ranker SGD steps since this server started.", "counter",
          static_cast<double>(v));
  }
  gauge("foryou_ann_index_size", "Videos in the ANN index.", "gauge", static_cast<double>(st.ann_size));
  gauge("foryou_ann_pending_videos", "Videos acknowledged in a large batch and not yet in the ANN index (the background indexer's queue).",
        "gauge", static_cast<double>(st.ann_pending));
  gauge("foryou_ann_clamped_total", "Video vectors indexed beyond the ANN norm bound since start (ranked as if shorter).",
        "counter", static_cast<double>(st.ann_clamped));
  gauge("foryou_ann_norm_bound",
        "The ANN index's norm bound: a video vector longer than it ranks as if shorter until a rebuild (retrieval.ann_norm_headroom).",
        "gauge", st.ann_norm_bound);
  gauge("foryou_ann_moves", "Videos moved in place in the ANN index since it was last built (retrieval.ann_refit_moves rebuilds it).",
        "gauge", static_cast<double>(st.ann_moves));
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
  gauge("foryou_group_commits_total",
        "Durable log writes that carried queued batches of events or videos (one fsync each) since start.", "counter",
        static_cast<double>(st.group_commits));
  gauge("foryou_group_committed_batches_total",
        "Batches written by group commits since start; divided by foryou_group_commits_total, the batches "
        "that shared an fsync.",
        "counter", static_cast<double>(st.group_committed_batches));
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
  gauge("foryou_snapshot_writing", "1 while a snapshot is being written.", "gauge", st.snapshot_writing ? 1.0 : 0.0);
  gauge("foryou_ann_rebuilds_total", "ANN index rebuilds swapped in since start (retrieval.ann_refit_moves, norm bound).",
        "counter", static_cast<double>(st.ann_rebuilds));
  gauge("foryou_ann_rebuilding", "1 while a background ANN index rebuild runs (at idle CPU priority).", "gauge",
        st.ann_rebuilding ? 1.0 : 0.0);
  gauge("foryou_snapshot_seconds", "Seconds the last snapshot write took.", "gauge", st.snapshot_seconds);
  gauge("foryou_snapshot_pause_seconds", "The longest writers waited at once during the last snapshot write.", "gauge",
        st.snapshot_pause_seconds);
  gauge("foryou_updates_since_snapshot", "Events and video upserts applied since the last snapshot began.", "gauge",
        static_cast<double>(st.updates_since_snapshot));
  gauge("foryou_snapshot_due_updates",
        "Updates since the last snapshot at which the next is due: snapshot.every_updates, or "
        "snapshot.every_updates_per_entry per user and video if more (0: none in the background).",
        "gauge", static_cast<double>(st.snapshot_due_updates));

  std::lock_guard lock(mu_);
  out += fmt::format(
      "# HELP foryou_audit_appends_total Audit log entries appended since start.\n"
      "# TYPE foryou_audit_appends_total counter\nforyou_audit_appends_total {}\n"
      "# HELP foryou_audit_append_failures_total Audit appends that failed since start (the request was refused).\n"
      "# TYPE foryou_audit_append_failures_total counter\nforyou_audit_append_failures_total {}\n",
      audit_appends_, audit_failures_);
  out += "# HELP foryou_http_rejections_total Requests refused, by reason (the error code, or no_route).\n";
  out += "# TYPE foryou_http_rejections_total counter\n";
  for (const auto& [reason, count] : rejections_) {
    out += fmt::format("foryou_http_rejections_total{{reason=\"{}\"}} {}\n", reason, count);
  }
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
  out += RenderProcess();
  return out;
}

}  // namespace foryou
