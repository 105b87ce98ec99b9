// JetStreamLog: ClusterLog (cluster/cluster_log.h) on NATS JetStream.
//
// Streams (docs/SCALING.md, "Streams and placement"), for region R:
//   FORYOU_LOG_R       subject foryou.R.log        the log's entries, in
//                      order (cluster/log_entry.h: catalog records whole,
//                      personal ones as references to their jurisdictions'
//                      parts); deletes and purges denied
//   FORYOU_LOG_R_J     subject foryou.R.J.log      for each jurisdiction J
//                      R is primary for: the parts of J's users (sealed
//                      groups, Shred and fence records); deletes and
//                      purges denied
//   FORYOU_KEYS_R_J    subjects foryou.R.J.key.<hex pseudonym>.<hex key id>:
//                      one message per wrapped key of J's users (erasure
//                      overwrites every key of the pseudonym)
//   FORYOU_KEYS_R      subjects foryou.R.storekey, foryou.R.key.seeding: the
//                      wrapped store key and the seeding marker (and, in a
//                      log written before per-jurisdiction streams, every
//                      user key, on foryou.R.key.<hex pseudonym>.<hex key id>)
//   FORYOU_SNAP_R      subjects foryou.R.snap.>: the newest snapshot's
//                      chunks and its manifest (older ones purged)
//   FORYOU_AUDIT_R     subjects foryou.R.audit.<hex public key>: each
//                      replica's audit log, in AuditBatch messages;
//                      deletes and purges denied
// all on file storage with `replicas` replicas, placed in the JetStream
// cluster named R. Mirrors, each placed in its backup region's cluster B and
// named <stream>_AT_B: of FORYOU_LOG_R_J and FORYOU_KEYS_R_J in every region
// the policy approves for J's backups; of FORYOU_LOG_R and FORYOU_KEYS_R
// (no personal data) in every region approved for any of R's
// jurisdictions; of FORYOU_SNAP_R and FORYOU_AUDIT_R (every user's sealed
// state, every user's pseudonym) only in regions approved for all of them
// (snapshot user entries are sealed with the users' keys, so erasure
// reaches the mirrored snapshots as it reaches the mirrored log; a new
// snapshot purges the older ones from the mirrors too).
//
// Ensure (at start) creates what is missing and refuses, naming the stream
// and the rule, what contradicts the plan: a stream of R placed outside
// cluster R, with other replicas or as a mirror, and any stream in any
// cluster that mirrors or sources R's streams, or their approved mirrors,
// into a region the policy does not approve for what that stream holds.
// Checked at start only.
//
// A log message is a LogEntry (cluster/log_entry.h, header Foryou-Entry: 1);
// a message without that header is one record and its MAC in the backup wire
// format (replication/wire.h), as logs written before entries hold them, and
// is still read. A write publishes the parts first, then claims the entry's
// number; a part whose claim lost stays in its stream, referenced by nothing.
#pragma once

#include <condition_variable>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cluster/cluster_log.h"

struct __natsConnection;
struct __jsCtx;
struct __natsSubscription;
struct __natsMsg;
struct jsPubAck;
struct jsPubAckErr;

namespace foryou {

struct ClusterPlan {
  std::string region;                 // this region; also its JetStream cluster's name
  int replicas = 3;                   // of the region's streams
  std::vector<std::string> backups;   // regions approved to hold backups of all its jurisdictions (their clusters)
  int backup_replicas = 1;            // of each mirror
  std::vector<std::string> jurisdictions;  // what the region is primary for: one stream pair each
  // For each jurisdiction, the regions approved to hold its backups (a
  // superset of `backups`; a jurisdiction missing here has only those).
  std::map<std::string, std::vector<std::string>> jurisdiction_backups;
  // Regions approved for at least one jurisdiction: they mirror the entries
  // and the store key.
  std::vector<std::string> AnyBackups() const;
  std::vector<std::string> BackupsOf(const std::string& jurisdiction) const;
};

struct JetStreamOptions {
  std::vector<std::string> urls;  // nats://HOST:PORT of any servers of the region's cluster
  int request_timeout_ms = 5000;  // JetStream API calls and publish acknowledgements
};

std::string LogStreamName(const std::string& region);
std::string KeysStreamName(const std::string& region);
std::string SnapshotStreamName(const std::string& region);
std::string AuditStreamName(const std::string& region);
std::string MirrorName(const std::string& stream, const std::string& backup_region);
// A jurisdiction's streams of a region: its parts, its users' keys.
std::string PartsStreamName(const std::string& region, const std::string& jurisdiction);
std::string JurisdictionKeysStreamName(const std::string& region, const std::string& jurisdiction);

class JetStreamLog : public ClusterLog {
 public:
  // Connects (reconnecting forever afterwards) without touching streams.
  static Status Connect(const JetStreamOptions& options, std::unique_ptr<JetStreamLog>* out);
  ~JetStreamLog() override;

  // Creates the region's streams and mirrors where missing; refuses what
  // contradicts `plan` (FailedPrecondition-like: Forbidden, naming the stream).
  Status Ensure(const ClusterPlan& plan);
  // Binds to existing streams of `source_region` under other names: a
  // restore reads a backup region's mirrors (read-only use).
  void BindMirrors(const std::string& source_region, const std::string& backup_region);

  Status Publish(uint64_t seq, std::string_view record, std::string_view mac, std::string_view entry_mac,
                 const std::vector<ClusterKey>& keys) override;
  Result<uint64_t> LastSeq() override;
  Result<ClusterRecord> Get(uint64_t seq) override;
  Status PutKeys(const std::vector<ClusterKey>& keys) override;
  Result<std::optional<std::string>> GetKey(std::string_view jurisdiction, std::string_view name) override;
  Status EraseKeys(std::string_view jurisdiction, const std::vector<std::string>& names) override;
  Result<std::string> StoreKey(std::string_view proposed) override;
  Status SetSeeding(uint64_t up_to) override;
  Result<uint64_t> Seeding() override;
  Status ResetMirrors() override;
  Status PutSnapshot(uint64_t seq, const std::string& state_path, const std::string& ann_path,
                     const std::string& mac) override;
  Result<ClusterSnapshot> NewestSnapshot() override;
  Status FetchSnapshot(const ClusterSnapshot& snapshot, const std::string& state_path,
                       const std::string& ann_path) override;
  Status ForEachKey(const std::function<Status(std::string_view, std::string_view)>& fn) override;
  Status PublishAudit(const AuditBatch& batch) override;
  size_t MaxMessageBytes() override;
  Result<std::optional<AuditBatch>> LastAudit(std::string_view public_key) override;
  Status ForEachAudit(const std::function<Status(const AuditBatch&)>& fn,
                      const std::function<void(const std::string&)>& skipped) override;
  Status Follow(uint64_t from_seq) override;
  Status Next(int timeout_ms, ClusterRecord* out) override;

 private:
  JetStreamLog() = default;
  Status EnsureStream(const std::string& name, const std::string& subject_or_mirror, bool mirror,
                      const std::string& cluster, int replicas, bool deny_delete);
  Status EraseFrom(const std::string& stream, const std::string& subject);
  Result<uint64_t> StreamLastSeq(const std::string& stream);
  // An ordered consumer over every message of `stream` on `subject`; on
  // a mirror (BindMirrors), over every message of it (Unfiltered).
  Status ReadAll(const std::string& stream, const std::string& subject, __natsSubscription** sub);
  // nats-server 2.9 refuses a consumer with a subject filter on a mirror (it
  // listens on no subject), and the client library one without: an
  // ephemeral push consumer over every message from `start_seq`, delivered
  // to an inbox read by a plain subscription. NextMessage answers its flow
  // control.
  Status Unfiltered(const std::string& stream, uint64_t start_seq, __natsSubscription** sub);
  // The next message with data of a subscription (skipping, and answering,
  // the flow-control and heartbeat messages of an Unfiltered one).
  // Returns a natsStatus (nats.h stays out of this header).
  int NextMessage(__natsSubscription* sub, int64_t timeout_ms, ::__natsMsg** out);
  std::string KeySubject(std::string_view name) const;  // in FORYOU_KEYS_R (older logs)
  std::string KeySubject(std::string_view jurisdiction, std::string_view name) const;
  // The streams of a jurisdiction as this log reads them: the region's own,
  // or (BindMirrors) the backup region's mirrors of them.
  std::string PartsStream(const std::string& jurisdiction) const;
  std::string JKeysStream(const std::string& jurisdiction) const;
  std::string PartsSubject(const std::string& jurisdiction) const;
  std::string JKeyPrefix(const std::string& jurisdiction) const;
  // The jurisdictions whose streams this log reads: the plan's, or those
  // whose mirrors the backup region holds (BindMirrors).
  Result<std::vector<std::string>> Jurisdictions();
  // A log message as a record: an entry whose parts are fetched and joined,
  // or a record of an older log.
  // `in_order`: read by Next, where a whole record after an entry is damage
  // (an older replica writing beside newer ones).
  Status ToRecord(::__natsMsg* msg, uint64_t seq, ClusterRecord* out, bool in_order);
  Status ForEachKeyIn(const std::string& stream, const std::string& prefix,
                      const std::function<Status(std::string_view, std::string_view)>& fn);
  // The layout of the region's log: *split, entries and parts (its first
  // message is an entry, or it is empty and the region is primary for
  // several jurisdictions); *whole_data, some stream every backup region
  // mirrors holds every jurisdiction's data (whole records, or user keys in
  // FORYOU_KEYS_R from before per-jurisdiction streams).
  Status ReadLayout(size_t jurisdictions, bool* split, bool* whole_data);
  bool split_ = true;
  Status PublishWhole(uint64_t seq, std::string_view record, std::string_view mac, const std::vector<ClusterKey>& keys);
  // Publishes a log message as number `seq`, only if the log's last is seq - 1.
  Status Claim(uint64_t seq, const std::string& data, bool entry);
  static constexpr size_t kKeyIdBytesForSubjects = 8;  // crypto/keyring.h kKeyIdBytes

  // Acknowledgements of asynchronous publishes (PutKeys), counted per batch:
  // each message carries its batch number, so that a late acknowledgement of
  // a batch that timed out never counts for the next one.
  struct AsyncAcks {
    std::mutex mu;
    std::condition_variable cv;
    uint64_t batch = 0;  // the batch being waited for
    size_t acked = 0, failed = 0;
    std::string error;
    std::vector<uint64_t> seqs;  // per message of the batch (Foryou-Index header)
  };
  static void OnAsyncAck(::__jsCtx* js, ::__natsMsg* msg, ::jsPubAck* pa, ::jsPubAckErr* pae, void* closure);
  std::mutex put_keys_mu_;  // one PublishAll batch at a time
  Status PublishAll(const std::vector<std::pair<std::string, std::string_view>>& msgs, std::vector<uint64_t>* seqs);
  Status KeyMessages(const std::vector<ClusterKey>& keys,
                     std::vector<std::pair<std::string, std::string_view>>* msgs) const;
  AsyncAcks acks_;

  JetStreamOptions options_;
  __natsConnection* nc_ = nullptr;
  __jsCtx* js_ = nullptr;
  __natsSubscription* sub_ = nullptr;  // the follower's
  std::string region_;
  std::string log_stream_, keys_stream_, log_subject_, key_prefix_, store_key_subject_;
  std::string audit_stream_, audit_prefix_;  // audit logs: <prefix><hex public key>
  std::string snap_stream_, snap_prefix_;  // snapshots: chunks on <prefix><seq>.<id>, manifests on <prefix>latest
  std::vector<std::string> key_mirrors_;  // FORYOU_KEYS_R's mirrors, for EraseKeys (keys of older logs)
  std::map<std::string, std::vector<std::string>> j_key_mirrors_;  // each jurisdiction's keys mirrors
  std::vector<std::string> snap_mirrors_;  // the snapshot stream's mirrors, purged as it is
  bool bound_to_mirrors_ = false;          // BindMirrors: read-only
  std::string backup_region_;             // BindMirrors: whose mirrors
  bool entries_seen_ = false;             // Next (the follower's thread): an entry was read
  // The follower's thread: each jurisdiction's parts, pushed as they are
  // published, so that an entry's parts are usually here when it arrives
  // (not a request each). Bounded by kPartCacheBytes.
  void FollowParts();
  std::optional<std::string> TakePart(const std::string& jurisdiction, uint64_t msg);
  static constexpr size_t kPartCacheBytes = 64 << 20;
  static constexpr int kPartWaitMs = 5;  // for a part not pushed yet, before fetching it by number
  uint64_t parts_pushed_ = 0, parts_fetched_ = 0;  // (the follower's thread)
  std::map<std::string, uint64_t> part_seen_;      // per jurisdiction: the last part the subscription went past
  std::map<std::string, __natsSubscription*> part_subs_;
  std::map<std::pair<std::string, uint64_t>, std::string> part_cache_;
  size_t part_cache_bytes_ = 0;
  std::optional<std::vector<std::string>> jurisdictions_;  // Jurisdictions(), once known
  ClusterPlan plan_;                      // as given to Ensure
};

}  // namespace foryou
