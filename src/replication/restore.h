// Restore: rebuilds a lost primary from its backup region (foryou restore).
//
// Fetches the source region's log, as the backup region holds it, page by
// page (GET /v1/backup/{source}/records?from=N) into an empty store at
// `data_dir`: same records, same sequence numbers, the wrapped keys. Then
// opens that store with the source's region key and replays it, which both
// proves the key opens the data and measures how long a restarted primary
// takes to come back (the RTO's second half). Users whose keys were shredded
// stay unreadable: erasure survives a restore.
//
// From a cluster's mirrors it also fetches every replica's audit log into
// DATA_DIR/replica-audit (each checked against its public key; a replica
// that seeds the rebuilt region publishes them to its new stream), and the
// newest mirrored snapshot, and
// checks its MAC under the region's store key, so that the replay covers
// only the records after it (one that fails is dropped: a full replay).
//
// Over HTTP it also fetches the region's audit log as the backup holds it
// (GET /v1/backup/{source}/audit), checking every record against the log's
// public key, into <data_dir>/audit, and installs the log's signing key
// (sealed under the region key in the backup), so that the restored region
// goes on with the same log under the same key: a tree head an auditor
// saved verifies against it, up to the last entry the backup received.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cluster/cluster_log.h"
#include "config/options.h"
#include "util/status.h"

namespace foryou {

struct RestoreOptions {
  std::string from_url;       // the backup region's server, http://host:port
  // Or, in cluster mode, the backup region's JetStream mirrors of the
  // source's log and keys (JetStreamLog::BindMirrors); from_url is then only
  // a label for messages.
  std::shared_ptr<ClusterLog> mirror;
  std::string source_region;  // whose backup to fetch (this region's name)
  std::string api_key;        // the source region's replication principal
  std::string ca_file;        // for an https:// URL (replication/region_client.h)
  std::string cert_file, key_file;  // the source region's client certificate (mutual TLS)
  std::string data_dir;       // must be empty or absent
  std::string region_key;     // the source region's key, 32 bytes
  EngineOptions engine;
  size_t page_bytes = 8 << 20;
  // From a mirror: how long to wait for the next record before giving up (a
  // mirror that stopped delivering, or records it lost).
  int mirror_timeout_ms = 30'000;
  // From a mirror: the jurisdictions the backup region is approved to hold
  // (from the policy; empty: not checked). A record lacking the part of one
  // of them fails the restore: that region's copy of it is gone.
  std::vector<std::string> expected_jurisdictions;
  std::function<void(uint64_t records, uint64_t last_seq)> progress;  // may be empty
};

struct RestoreReport {
  uint64_t records = 0, keys = 0, bytes = 0;
  uint64_t last_seq = 0;
  double fetch_seconds = 0, replay_seconds = 0;
  uint64_t users = 0, events = 0, videos = 0;
  uint64_t audit_entries = 0;    // of the audit log, restored (0: the backup held none)
  // From a cluster's mirrors: the snapshot the replay started from (0: none,
  // the whole log was replayed), and the records replayed after it.
  uint64_t snapshot_seq = 0, replayed_records = 0;
  std::string audit_public_key;  // hex
  // From a cluster's mirrors: the replicas' audit logs, restored as copies
  // under DATA_DIR/replica-audit (cluster/audit_streamer.h), and the entries
  // they hold together.
  uint64_t replica_audit_logs = 0, replica_audit_entries = 0;
  // Messages of the audit mirror skipped: not a batch, or a batch that did
  // not check under its log's key or did not follow the copy (at most 20
  // listed). The rest of the restore goes on.
  std::vector<std::string> replica_audit_errors;
  // From a cluster's mirrors in a backup region approved for some of the
  // region's jurisdictions only: the records that lost parts (their other
  // jurisdictions' users' data, which that region never held), and the
  // jurisdictions restored. Their chain is made anew from the first such
  // record on, after each record checked against its entry MAC.
  uint64_t partial_records = 0;
  std::vector<std::string> jurisdictions;
  std::vector<std::string> jurisdictions_missing;  // whose parts the records lacked
};

Result<RestoreReport> Restore(const RestoreOptions& options);

}  // namespace foryou
