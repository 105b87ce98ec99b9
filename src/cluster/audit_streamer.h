// AuditStreamer: keeps a cluster replica's audit log in the region's
// ClusterLog (FORYOU_AUDIT_<region>, mirrored to the approved backup
// regions), so that a replica lost with its disk does not take its audit
// history with it. `foryou restore --from-cluster` rebuilds every replica's
// log from the backup region's mirror (replication/restore.h).
//
// Contract:
// - Entries reach the ClusterLog in order, in batches of consecutive
//   records as the log stores them (AuditLog::ReadRecords), each batch with
//   the log's public key. Nothing is sent that the log did not sign.
// - Shipping is asynchronous: a request is answered once its entry is in the
//   replica's own log (on its disk); the entry reaches the region's stream
//   within about `idle_ms` (AuditStreamerOptions). What a kill -9 of the
//   machine with its disk can lose is that lag (docs/SCALING.md).
// - Resumes where the stream ends (ClusterLog::LastAudit), after checking
//   that the stream's last entry is this log's: a stream that holds more
//   entries than the log, or other ones (the log was cut, or replaced by an
//   older copy), stops the shipping, loudly (Stats().error), while the
//   replica goes on serving.
// - Flush ships everything the log holds now; Stop flushes and joins.
//
// - The stream is trusted to hold what this log published: a process that
//   can publish to the region's JetStream can add batches under another
//   replica's subject (NATS permissions are where that is prevented); a
//   restore checks every record against its log's key, so such a batch can
//   end a restored copy early (reported) but never enter it.
//
// Thread safety: Stats may be called from any thread; Start, Flush and Stop
// from one, and Flush only before Start.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "audit/audit_log.h"
#include "cluster/cluster_log.h"
#include "util/status.h"

namespace foryou {

struct AuditStreamerOptions {
  // Bytes of records per batch, at most half the ClusterLog's largest
  // message (nats-server's max_payload, 1 MB by default). Default 256 KiB,
  // about 1,500 entries.
  size_t batch_bytes = 256 << 10;
  // How often the thread looks for new entries. Default 50 ms.
  int idle_ms = 50;
  // After a failure (the region's JetStream unreachable), how long before it
  // tries again. Default 1 s.
  int retry_ms = 1000;
};

struct AuditStreamerStats {
  uint64_t shipped = 0;   // entries the region's stream holds
  uint64_t failures = 0;  // failed attempts since start
  std::string error;      // why shipping stopped for good ("": it did not)
};

class AuditStreamer {
 public:
  // `audit` and `log` are borrowed and must outlive the streamer. `audit`
  // may be a copy (AuditLog::OpenCopy): a seeding replica republishes the
  // audit logs a restore brought back.
  AuditStreamer(const AuditLog& audit, ClusterLog& log, AuditStreamerOptions options = {});
  ~AuditStreamer();  // Stop()

  // Ships everything the log holds now, on the caller's thread.
  Status Flush();
  // Ships on a thread of its own until Stop.
  void Start();
  // Ships what is left (one Flush), then stops the thread.
  Status Stop();
  AuditStreamerStats Stats() const;

 private:
  // Finds where the stream ends and checks it holds a prefix of this log.
  Status Resume();
  Status ShipAvailable();
  void Run();

  const AuditLog& audit_;
  ClusterLog& log_;
  const AuditStreamerOptions options_;
  std::string public_key_;  // 32 bytes
  bool resumed_ = false;    // used by one thread at a time (the caller's or run_)
  std::thread run_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;          // guarded by mu_
  AuditStreamerStats stats_;   // guarded by mu_
};

// Where `foryou restore --from-cluster` puts the audit logs of the region's
// replicas: DATA_DIR/replica-audit/<hex public key>/audit, each a copy
// (AuditLog::OpenCopy) that `foryou audit verify --data-dir
// DATA_DIR/replica-audit/<hex public key>` checks.
inline constexpr const char* kReplicaAuditDir = "replica-audit";

// Publishes to `log` what its stream lacks of every copy under
// DATA_DIR/replica-audit (a replica seeding a region rebuilt by a restore,
// whose stream may be new). *logs and *entries: the copies found and the
// entries they hold together.
Status PublishAuditCopies(const std::string& data_dir, ClusterLog& log, uint64_t* logs, uint64_t* entries);

}  // namespace foryou
