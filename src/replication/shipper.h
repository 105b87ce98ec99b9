// Shipper: the primary side of replication. Ships every acknowledged record
// of this region's log, as stored (personal data sealed per user, keys
// wrapped by the region key), to each backup region, in order, continuously.
//
// Targets come from `foryou serve --backup-to REGION=URL`; the caller checks
// them against the policy (only regions approved to hold backups of every
// jurisdiction this region is primary for) before constructing a Shipper.
// One thread per target: it learns the target's last stored sequence number
// and that record's hash (GET /v1/backup/{source}/status), checks that the
// target holds a prefix of this log (a target ahead of it, or with another
// record there, has diverged: nothing is shipped and no write is confirmed
// until an operator clears it), then POSTs batches from there on
// (replication/wire.h), waking on Notify() or every `poll_ms`.
//
// WaitFor lets a write wait until every target has stored it: the server
// acknowledges writes that way (replication is synchronous; RPO 0) unless
// the backups do not answer within the timeout. While a target is failing
// (its last attempt failed, or it was never reached) WaitFor does not wait
// at all: writes are acknowledged as pending at once instead of each paying
// the timeout, and become synchronous again when the target has caught up.
//
// With ShipAuditLog, a second thread per target ships the region's audit log
// (its records as stored, and its keys sealed under the region key) on its
// own connection: asynchronously, so an entry reaches the backup within
// about poll_ms of being written, and neither writes nor the data shipping
// ever wait on it. On connecting it checks that the target's copy is a
// prefix of the log here; a copy that is longer or differs (this log lost
// its tail, or was restored from an older backup) stops the audit shipping
// to that target, loudly (audit_error), while the data goes on.
//
// Thread safety: all methods may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <memory>

namespace httplib {
class Client;
}

#include "audit/audit_log.h"
#include "engine/engine.h"

namespace foryou {

struct BackupTarget {
  std::string region;  // its name in the policy
  std::string url;     // http://host:port
};

struct ShipperOptions {
  // Upper bound of one shipped batch's records, in bytes.
  size_t max_batch_bytes = 4 << 20;
  // How often a target is checked for new records without a Notify.
  int poll_ms = 50;
  // Wait after a failed attempt (doubling up to 2 s).
  int retry_ms = 100;
  int timeout_s = 10;  // per HTTP call
  std::string ca_file;  // for https:// targets (replication/region_client.h)
  std::string cert_file, key_file;  // this region's client certificate (mutual TLS)
};

struct ShipperTargetStats {
  std::string region;
  uint64_t shipped_seq = 0;  // the target's last stored sequence number
  uint64_t failures = 0;
  std::string last_error;
  // Seconds since the target last held everything this region had written
  // (0 while it does): the age of the oldest write it still lacks, at most.
  double lag_seconds = 0;
  // The audit log (with ShipAuditLog): entries the target holds, and why
  // shipping it stopped ("" while it goes on).
  uint64_t audit_entries = 0;
  std::string audit_error;
};

class Shipper {
 public:
  // `engine` is borrowed and must outlive the Shipper. `api_key` is this
  // region's key at the targets (a principal with role operator there).
  Shipper(Engine& engine, std::string source_region, std::vector<BackupTarget> targets, std::string api_key,
          ShipperOptions options = {});
  ~Shipper();  // stops the threads
  Shipper(const Shipper&) = delete;
  Shipper& operator=(const Shipper&) = delete;

  // Ships `audit` (borrowed; must outlive the Shipper) as well, with
  // `sealed_keys` (AuditLog::SealKeys under this region's key). Before Start.
  void ShipAuditLog(const AuditLog* audit, SealedAuditKeys sealed_keys);
  void Start();
  // New records were appended.
  void Notify();
  // Blocks until every target has stored `seq`; false on timeout.
  bool WaitFor(uint64_t seq, std::chrono::milliseconds timeout);
  std::vector<ShipperTargetStats> Stats() const;

 private:
  struct Target {
    BackupTarget where;
    ShipperTargetStats stats;  // guarded by mu_
    bool known = false;        // shipped_seq learned from the target
    bool failing = false;      // an attempt failed, and the target has not caught up since
    // When the target last held everything written here (start: now).
    std::chrono::steady_clock::time_point caught_up = std::chrono::steady_clock::now();
  };
  void Run(size_t target);
  void RunAudit(size_t target);
  // A client for target `index` (its URL, the TLS and key options), with
  // its URL and region's name; each shipping thread has its own connection.
  std::unique_ptr<httplib::Client> ConnectTo(size_t index, std::string* url, std::string* region) const;
  // OK when a target whose log ends at (seq, SHA-256 of that record) holds a
  // prefix of this region's log; Conflict ("diverged") otherwise.
  Status CheckSameHistory(uint64_t target_seq, const std::string& target_hash) const;

  // OK when a target whose copy of the audit log ends at (size, SHA-256 of
  // its last record) holds a prefix of the audit log here.
  Status CheckSameAuditHistory(uint64_t target_size, const std::string& target_hash) const;

  Engine& engine_;
  const AuditLog* audit_ = nullptr;
  SealedAuditKeys sealed_audit_keys_;
  const std::string source_;
  const std::string api_key_;
  const ShipperOptions options_;
  mutable std::mutex mu_;
  std::condition_variable wake_;     // new records, or stop
  std::condition_variable shipped_;  // a target advanced
  std::vector<Target> targets_;      // guarded by mu_ (the stats)
  bool stop_ = false;                // guarded by mu_
  uint64_t notified_ = 0;            // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace foryou
