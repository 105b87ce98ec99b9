// foryou bench --backup: what the sovereign data layer costs a write, and the
// RPO and RTO of its backups, measured on real `foryou serve` processes.
//
// Phases, in order, each on a fresh store (reported under its key;
// docs/perf/backup.json):
//   open              one server, no policy: plaintext log, no audit
//   sovereign         one region (us) under a policy with a region key:
//                     events sealed per user, every write audited (fsynced)
//                     before it is applied; no backup
//   sovereign_backup  sg first, then us with --backup-to sg: every write is
//                     acknowledged once sg stored it (X-Foryou-Backup:
//                     confirmed) or after --backup-wait-ms (pending)
// In each: load the catalog (POST /v1/videos, batches of 1,000, 2 clients),
// then `clients` closed-loop clients POST /v1/events in batches of `batch`
// for `duration_s`                       -> events_per_s, batch_p50/p99_ms
// while /metrics is read every `lag_sample_ms` in every phase (equal load);
// in sovereign_backup its foryou_backup_lag_records{region="sg"} is kept
//                                        -> lag_max_records, lag_p99_records
// Then, with the clients still posting, the us server is killed (SIGKILL),
// `foryou restore` rebuilds it from sg into an empty store and a us server is
// started on that store:
//   rpo  acknowledged_confirmed_events vs restored_events;
//        lost_acknowledged_events = max(0, confirmed - restored), and per
//        user: a user whose restored event count is below what was confirmed
//        for it lost an acknowledged event (users_short)
//   rto  restore_wall_seconds (fetch + replay + process) + server_start_seconds
// Nothing is estimated: every number is a clock reading or a count returned
// by a server. Runs from one thread (the load uses its own threads).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "util/status.h"

namespace foryou {

struct BackupBenchOptions {
  size_t videos = 100'000;      // catalog loaded before each phase
  size_t events_per_user = 10;  // mean; users are drawn until the time is up
  size_t batch = 100;           // events per POST /v1/events
  int clients = 2;              // closed-loop ingest clients
  double duration_s = 10;       // load per phase
  int lag_sample_ms = 20;       // /metrics poll period
  size_t verify_users = 20000;  // most recently confirmed users checked one by one after the restore
  int server_threads = 8;
  std::string binary;           // the foryou binary to run as servers and restore
  uint64_t seed = 1;
};

// --quick: 20,000 videos and 4 s per phase.
BackupBenchOptions QuickBackupBenchOptions();

struct BackupPhaseReport {
  std::string name;
  double load_videos_s = 0;
  size_t batches = 0, events = 0, errors = 0;  // acknowledged within duration_s
  double seconds = 0, events_per_s = 0;
  double batch_p50_ms = 0, batch_p99_ms = 0, batch_max_ms = 0;
  // sovereign_backup only: acknowledgements by X-Foryou-Backup, within duration_s.
  size_t confirmed_batches = 0, pending_batches = 0;
  size_t lag_samples = 0;
  double lag_max_records = 0, lag_p99_records = 0, lag_p50_records = 0;
  uint64_t backup_failures = 0;  // foryou_backup_failures_total at the end of the load
  std::vector<double> latencies_ms;  // sorted, for the plot
};

struct BackupBenchReport {
  BackupBenchOptions options;
  std::vector<BackupPhaseReport> phases;  // open, sovereign, sovereign_backup

  // The crash, counted over every acknowledgement up to the kill.
  size_t acknowledged_confirmed_events = 0, acknowledged_pending_events = 0;
  size_t failed_batches_at_kill = 0;  // requests cut off by the kill (never acknowledged)
  uint64_t sg_received_bytes = 0;     // foryou_backup_received_bytes_total just before the kill

  // foryou restore --json.
  uint64_t restored_records = 0, restored_keys = 0, restored_bytes = 0;
  uint64_t restored_users = 0, restored_events = 0, restored_videos = 0;
  double restore_fetch_seconds = 0, restore_replay_seconds = 0, restore_wall_seconds = 0;
  size_t lost_acknowledged_events = 0;  // RPO in events
  size_t users_checked = 0, users_short = 0, events_short = 0;

  double server_start_seconds = 0;
  double rto_seconds = 0;  // restore_wall_seconds + server_start_seconds
};

Result<BackupBenchReport> RunBackupBench(const BackupBenchOptions& options);
std::string BackupBenchToJson(const BackupBenchReport& report);
std::string BackupBenchToTable(const BackupBenchReport& report);
// Batch latency distribution of each phase (log-spaced buckets), SVG.
std::string BackupLatencySvg(const BackupBenchReport& report);

}  // namespace foryou
