// ClusterLog: a region's log shared by its replicas (cluster mode,
// `foryou serve --cluster`). The embedded engine keeps its log in its own
// RocksDB store (storage/store.h); in cluster mode that store becomes the
// replica's local copy, and the log every replica agrees on lives here.
//
// Contract:
// - Records are numbered 1, 2, ... with no gaps. Publish(seq, ...) succeeds
//   only if the log's last record is seq - 1 at that moment (optimistic
//   concurrency: one writer wins each number; the loser gets Conflict with
//   kClusterConflict, catches up and tries again). OK means the log has
//   acknowledged the record at its replication (docs/SCALING.md says what
//   that survives).
// - A record travels with its integrity-chain MAC (Keyring::LogMac), so a
//   replica verifies every record it applies exactly as a replay does.
// - A record also travels with its entry MAC (Keyring::EntryMac over its
//   cluster/log_entry.h entry), so that a backup region that holds only
//   some jurisdictions' parts of it can still check what it holds.
// - Each jurisdiction's personal data is kept apart (cluster/log_entry.h):
//   mirrored only to backup regions the policy approves for that
//   jurisdiction. A backup region's copy may therefore lack parts; records
//   read from it come back with those parts left out (ClusterRecord::partial).
// - Users' wrapped data keys are kept apart from the records, one entry per
//   key name and under the user's jurisdiction, so that erasure can destroy
//   a key (EraseKeys) in the region and in every mirror while the sealed
//   records stay. A key is put before the first record it seals is
//   published.
// - The store key, wrapped by the region key, is kept once (StoreKey): the
//   first replica to start proposes one and every later replica adopts it.
// - Only sealed records, wrapped keys and the wrapped store key are ever
//   given to a ClusterLog: nothing in it opens without the region key.
//
// Thread safety: every method may be called from any thread, except that
// Follow/Next belong to one thread (the engine's follower).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "replication/wire.h"
#include "util/status.h"

namespace foryou {

// Prefix of the Conflict message Publish returns when another replica took
// the sequence number.
inline constexpr std::string_view kClusterConflict = "cluster: another replica wrote record";
// Message of the Unavailable Next returns when no record came in time.
inline constexpr std::string_view kClusterIdle = "cluster: no new record";

// A snapshot published to the region (engine/snapshot.cc): the two files of
// one a replica wrote, byte for byte (user entries sealed as on disk).
struct ClusterSnapshot {
  uint64_t seq = 0;  // the log record it covers; 0: none published
  uint64_t state_bytes = 0, ann_bytes = 0;
  std::string id;    // which publication
  std::string mac;   // Keyring::SnapshotMac of the two files: checked before a joining replica uses them
  // The stream sequence numbers of its first and last chunk (0: unknown, a
  // manifest written before they were recorded), so that it can be read
  // message by message, also from a mirror.
  uint64_t first_msg = 0, last_msg = 0;
};

struct ClusterRecord {
  uint64_t seq = 0;
  std::string record;     // as stored (storage/log_format.h)
  std::string mac;        // its chain MAC
  std::string entry_mac;  // Keyring::EntryMac of its entry ("" in a log written before entries had one)
  std::string entry;      // its entry, encoded (cluster/log_entry.h); "" in a log from before entries
  // Some jurisdictions' parts were not in this copy (a backup region approved
  // for some of them only): `record` leaves them out and no longer checks
  // against `mac`; check `entry_mac` over `entry` instead.
  bool partial = false;
  std::vector<std::string> missing;  // the jurisdictions whose parts were not there
};

// A user's wrapped data key, under the user's home jurisdiction.
struct ClusterKey {
  std::string jurisdiction;
  std::string name;     // pseudonym + key id (crypto/keyring.h KeyName::bytes)
  std::string wrapped;
};

class ClusterLog {
 public:
  virtual ~ClusterLog() = default;

  // `keys`: the new keys the record's sealed groups use, kept (as PutKeys)
  // before the record is.
  virtual Status Publish(uint64_t seq, std::string_view record, std::string_view mac, std::string_view entry_mac,
                         const std::vector<ClusterKey>& keys) = 0;
  // The sequence number of the log's last record (0 when empty).
  virtual Result<uint64_t> LastSeq() = 0;
  // The record at `seq`, or NotFound.
  virtual Result<ClusterRecord> Get(uint64_t seq) = 0;

  // Wrapped data keys. Put is idempotent.
  virtual Status PutKeys(const std::vector<ClusterKey>& keys) = 0;
  virtual Result<std::optional<std::string>> GetKey(std::string_view jurisdiction, std::string_view name) = 0;
  // Destroys every key of these keys' pseudonyms, in every jurisdiction's
  // keys (`jurisdiction`, the user's home, is a hint; "" when not known), in
  // the region's log and in every mirror of it (secure erase: the bytes are
  // overwritten). Keys already gone are fine.
  virtual Status EraseKeys(std::string_view jurisdiction, const std::vector<std::string>& names) = 0;

  // The region's wrapped store key: `proposed` if none was kept yet (it is
  // kept now), else the one kept. With `proposed` empty, only reads it
  // (NotFound if none).
  virtual Result<std::string> StoreKey(std::string_view proposed) = 0;

  // Seeding (a restored store becoming a new region log): the number of the
  // last record the seeding replica will publish, 0 when none is under way.
  virtual Status SetSeeding(uint64_t up_to) = 0;
  virtual Result<uint64_t> Seeding() = 0;
  // Drops and recreates every mirror of the region's streams, so that they
  // copy a log that was made anew (seeded) from its start.
  virtual Status ResetMirrors() = 0;

  // Snapshots. A replica publishes the files of one it wrote; a replica
  // joining with an empty data dir fetches the newest, copies the log up to
  // it without applying it, and replays only the rest. The files are
  // verified by whoever loads them (storage/snapshot_files.h). The defaults
  // keep none.
  virtual Status PutSnapshot(uint64_t seq, const std::string& state_path, const std::string& ann_path,
                             const std::string& mac) {
    return Status::OK();
  }
  virtual Result<ClusterSnapshot> NewestSnapshot() { return ClusterSnapshot{}; }
  virtual Status FetchSnapshot(const ClusterSnapshot& snapshot, const std::string& state_path,
                               const std::string& ann_path) {
    return Status::Unavailable("cluster: this log keeps no snapshots");
  }
  // Every wrapped key the region's log holds, in bulk (a joining replica).
  virtual Status ForEachKey(const std::function<Status(std::string_view name, std::string_view wrapped)>& fn) = 0;

  // Audit logs. Each replica signs an audit log of its own
  // (audit/audit_log.h); it is kept here too, so that a replica lost with
  // its disk does not take its audit history with it, and mirrored to the
  // approved backup regions like the log. A batch is AuditBatch
  // (replication/wire.h): consecutive records of the log whose key is
  // `public_key`, from entry `first`. Entries name users by pseudonym only.
  // PublishAudit: OK once kept at the log's replication; a batch published
  // twice (a resend) is kept once.
  virtual Status PublishAudit(const AuditBatch& batch) {
    return Status::Unavailable("cluster: this log keeps no audit logs");
  }
  // The last batch kept of the audit log with `public_key` (32 bytes), or
  // nullopt when none is.
  virtual Result<std::optional<AuditBatch>> LastAudit(std::string_view public_key) {
    return std::optional<AuditBatch>();
  }
  // The largest message the log takes (bytes); an audit batch stays under
  // half of it.
  virtual size_t MaxMessageBytes() { return size_t{1} << 30; }
  // Every batch of every replica's audit log, in the order they were kept;
  // a message that is not a batch of the log its subject names goes to
  // `skipped` (what and why) instead, and the reading goes on.
  virtual Status ForEachAudit(const std::function<Status(const AuditBatch&)>& fn,
                              const std::function<void(const std::string&)>& skipped) {
    return Status::OK();
  }

  // Starts delivering records from `from_seq` on, in order (Next).
  virtual Status Follow(uint64_t from_seq) = 0;
  // The next record, or Unavailable if none came within `timeout_ms`.
  virtual Status Next(int timeout_ms, ClusterRecord* out) = 0;
};

}  // namespace foryou
