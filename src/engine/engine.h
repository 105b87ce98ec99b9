// Engine: the For You feed engine. Owns the catalog, every user's state, the
// learned models, the candidate indexes and the durable log they are rebuilt
// from.
//
// Write path (UpsertVideos, IngestEvents): validate the whole batch, append it
// to the log (durable when Options::sync_writes), apply it to the in-memory
// state under the write lock, then return. A batch is all or nothing: on any
// error nothing of it is stored or applied. After IngestEvents returns, the
// next Feed of that user already reflects every event of the batch.
//
// Read path (Feed, GetUser, GetVideo, Stats): under the read lock, so reads
// run in parallel with each other and see each write either wholly or not.
//
// Open replays the log; see storage/store.h for why that restores exactly the
// state that was acknowledged.
//
// Thread safety: every public method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <cstdint>
#include <functional>
#include <future>
#include <tuple>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cluster/cluster_log.h"
#include "config/options.h"
#include "core/types.h"
#include "engine/user_fences.h"
#include "storage/store.h"
#include "util/clock.h"
#include "util/status.h"

namespace foryou {

// What ties a snapshot to the log it was taken from (engine/snapshot.cc).
struct SnapshotAnchor {
  uint64_t record_hash = 0;  // xxHash64 of the log record at the snapshot's seq
  std::string mac;           // its chain MAC ("" without a chain)
  uint64_t options_hash = 0; // of the settings that shape the state (a snapshot under others is not used)
};

struct FeedRequest {
  std::string user_id;
  int n = 20;
  std::string language;  // optional: overrides the user's inferred language
  // Also say what each item is (creator, tags) and what its score is made
  // of (FeedItem::components). Off on the hot path: it copies strings.
  bool explain = false;
};

// One term of a feed item's score: the ranker head's predicted probability
// of the outcome times the objective weight it is ranked by
// (score = sum of weight * probability over the heads).
struct ScoreComponent {
  const char* head = "";  // HeadName: complete, replay, like, ...
  double probability = 0;
  double weight = 0;
};

struct FeedItem {
  std::string video_id;
  double score = 0;  // the model's value of this video to this user
  std::vector<std::string> reasons;
  std::vector<std::string> sources;  // candidate sources: ann, co_engagement, followed, trending, fresh, catalog
  // Only with FeedRequest::explain.
  std::string creator_id;
  std::vector<std::string> tags;
  std::vector<ScoreComponent> components;
};

struct FeedResponse {
  std::string user_id;
  std::vector<FeedItem> items;
  size_t candidates = 0;  // how many were scored
};

// Where one Feed's time went, stage by stage, in nanoseconds (wall clock of
// the calling thread). For benchmarks (bench/, `foryou bench`); a null trace
// costs nothing.
struct FeedTrace {
  int64_t context_ns = 0;    // served set, co-engagement with the recent positives
  int64_t retrieval_ns = 0;  // candidate sources, seen and blocked videos dropped
  int64_t features_ns = 0;   // one FeatureVector per candidate
  int64_t scoring_ns = 0;    // the ranker's heads, the objective-weighted score
  int64_t rerank_ns = 0;     // creator spacing, tag diversity, exploration
  int64_t explain_ns = 0;    // reasons and sources in words
};

struct UserProfile {
  std::string id;
  std::string home;  // home jurisdiction, "" when none is recorded (open mode)
  int64_t first_seen = 0;
  int64_t last_seen = 0;
  std::vector<std::pair<std::string, uint64_t>> event_counts;  // type name -> count
  size_t videos_seen = 0;
  std::vector<std::string> liked;           // video ids
  std::vector<std::string> follows;         // creator ids
  std::vector<std::string> not_interested;  // video ids
  std::vector<std::pair<std::string, float>> top_tags;
  std::string language;                     // inferred, may be empty
  std::vector<std::pair<std::string, std::string>> recent_positives;  // (video id, verb)
};

// Everything foryou holds about one user (GET /v1/users/{id}/export).
struct UserExport {
  UserProfile profile;
  std::string home;                      // jurisdiction, "" in open mode
  std::vector<Event> events;             // every event of the user in the log, in order
  std::vector<float> embedding;          // the learned user vector
  std::vector<std::pair<std::string, float>> tag_affinity, creator_affinity;
  std::vector<std::string> recently_served;  // in-memory feed history
};

// One user's residency facts (foryou residency report).
struct UserSummary {
  std::string id;
  std::string home;  // jurisdiction, "" if none recorded
  uint64_t events = 0;
};

struct VideoInfo {
  Video video;
  uint32_t impressions = 0, plays = 0, completes = 0, likes = 0, shares = 0, comments = 0, skips = 0,
           not_interested = 0;
  float trending = 0;  // relative to the top video of its language, in [0, 1]
};

// ANN retrieval against exact search on the same learned embeddings.
struct AnnQuality {
  size_t queries = 0;
  int k = 0;
  double recall = 0;    // |ANN top-k ∩ exact top-k| / k, averaged
  // The same against the exact top-k of the vectors as the index holds them
  // (moved only once they drift: retrieval.ann_reindex_drift).
  double recall_indexed = 0;
  double query_us = 0;  // mean ANN search time
  double exact_us = 0;  // mean brute-force time, for comparison
  // (ef, recall, query_us) for other search breadths, same queries.
  std::vector<std::tuple<int, double, double>> ef_sweep;
};

struct AnnWorkload {
  int dim = 0;
  std::vector<float> items;    // videos x dim
  std::vector<float> queries;  // queries x dim
};

struct EngineStats {
  uint64_t videos = 0;
  uint64_t users = 0;
  uint64_t events = 0;         // events applied since the store was created
  uint64_t model_updates = 0;  // ranker SGD steps
  uint64_t ann_size = 0;
  uint64_t ann_pending = 0;  // videos acknowledged but not yet in the ANN index (engine/ann_indexer.cc)
  uint64_t ann_clamped = 0;  // vectors longer than the ANN norm bound (see retrieval/ann_index.h)
  uint64_t ann_moves = 0;    // videos moved in place in the ANN index since it was built (AnnIndex::moves)
  double ann_norm_bound = 0; // the ANN index's norm bound (retrieval.ann_norm_headroom)
  uint64_t co_engagement_edges = 0;
  uint64_t log_seq = 0;
  uint64_t applied_seq = 0;  // the last record applied to the in-memory state: what feeds reflect
  uint64_t store_bytes = 0;
  double recovery_seconds = 0;  // time Open spent loading the snapshot and replaying the log
  uint64_t recovered_records = 0;  // log records Open's state covers: its snapshot's, then those it replayed
  uint64_t replayed_records = 0;   // of which replayed (after the snapshot, if one was loaded)
  uint64_t records_at_open = 0;    // log records the data dir held when Open began (0: a new store or replica)
  uint64_t snapshot_seq = 0;       // the newest snapshot loaded or written (0: none)
  uint64_t snapshots_written = 0;  // since Open
  bool snapshot_writing = false;   // a snapshot is being written now
  uint64_t ann_rebuilds = 0;       // ANN index rebuilds swapped in since Open (RebuildAnn)
  bool ann_rebuilding = false;     // a background ANN rebuild runs now
  uint64_t snapshots_skipped = 0;  // damaged ones Open skipped (each logged)
  uint64_t snapshot_bytes = 0;     // on disk, of snapshot_seq's
  double snapshot_seconds = 0;     // the last write, total
  double snapshot_pause_seconds = 0;  // of which writers were held up (state copied)
  uint64_t updates_since_snapshot = 0;  // events and video upserts since the last snapshot began
  uint64_t snapshot_due_updates = 0;    // ... at which the next is due (SnapshotDue; 0: background snapshots off)
  uint64_t followed_records = 0;  // cluster mode: records applied that other replicas wrote
  uint64_t cluster_conflicts = 0;  // cluster mode: writes that lost a sequence number and ran again
  // Group commit (engine/group_commit.cc), since Open: durable log writes
  // that carried queued batches (events, videos), and the batches they carried.
  uint64_t group_commits = 0;
  uint64_t group_committed_batches = 0;
};

class Engine {
 public:
  // Opens (creating if needed) the store in data_dir and replays it. `clock`
  // is borrowed and must outlive the engine. With a `region_key` (32 bytes,
  // crypto/keyring.h) every user's events are encrypted at rest with a key
  // of their own; a store that holds encrypted data does not open without
  // its region key (InvalidArgument), nor with another (Corruption).
  //
  // Cluster mode (`cluster` given; engine/cluster_replica.cc): the region's
  // log is `cluster`, shared by every replica, and data_dir holds this
  // replica's copy of it. Open checks that copy against the cluster's log,
  // catches up to the cluster's last record and then follows it in a thread
  // of its own: records other replicas write are stored and applied here
  // through the same ApplyRecord as a replay. A write is published to the
  // cluster (acknowledged at its replication), stored and applied here, and
  // only then answered; when another replica took the sequence number the
  // engine catches up and tries again, re-validating the batch. Needs a
  // region key: only sealed records leave the process. `cluster_seed`: a
  // store with history may publish it into an empty region log (a region
  // rebuilt by `foryou restore`, or an embedded store moving to cluster
  // mode); without it such a start is refused.
  static Status Open(const EngineOptions& options, const std::string& data_dir, const Clock& clock,
                     std::unique_ptr<Engine>* out, std::string region_key = {},
                     std::shared_ptr<ClusterLog> cluster = nullptr, bool cluster_seed = false);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Inserts or replaces videos. created_at <= 0 means "now".
  Status UpsertVideos(std::vector<Video> videos);
  // Validates, persists and applies a batch of events; returns how many.
  // ts <= 0 means "now". Errors name the first bad event: "events[3].video_id: ...".
  // Users first seen in this batch get `jurisdiction` as their home,
  // atomically with their first events.
  Result<size_t> IngestEvents(std::vector<Event> events, const std::string& jurisdiction = "");

  Result<FeedResponse> Feed(const FeedRequest& request, FeedTrace* trace = nullptr);

  // The user's home jurisdiction, "" if none was recorded (docs/SOVEREIGNTY.md).
  // Set with the user's first events (IngestEvents' jurisdiction, stored in
  // the sealed record); it changes only by migration.
  std::string UserHome(const std::string& user_id) const;

  // Erases a user from live state, served history and the per-user model
  // parameters, and from the log: encrypted, by destroying the user's data
  // keys (crypto-shredding: a Shred record in the log tells every backup to
  // destroy its copy too); in plaintext, by rewriting the records without the
  // user. Either way the bytes are compacted off the disk, and snapshots
  // cannot yield the user either (sealed entries whose keys are gone; in
  // plaintext, every snapshot is removed). Aggregates the user contributed
  // to (co-engagement, trending, the ranker, video vectors) keep that share,
  // in memory and in later snapshots; only a full replay
  // (snapshot.load = false) rebuilds them without those events.
  // NotFound if unknown.
  Status EraseUser(const std::string& user_id);

  // Migration fence (engine/user_fences.h): while set, IngestEvents refuses
  // the user's events with Unavailable. EraseUser lifts it. NotFound for an
  // unknown user when fencing; lifting an absent fence is OK.
  Status FenceUser(const std::string& user_id, bool fenced);

  // "" while writes are taken; otherwise why not: a stored record failed to
  // apply, and every write is refused (Unavailable) until a restart.
  std::string WriteFailure() const;
  // After an append failed on I/O (a full disk): OK once the store takes
  // writes again (Store::Resume). Cheap when nothing failed.
  Status ResumeWrites();

  // The arriving side of a migration: all of a user's events as ONE record
  // (no max_batch split), so that a crash leaves the user wholly imported or
  // not at all. Same checks as IngestEvents otherwise.
  Result<size_t> ImportUserEvents(std::vector<Event> events, const std::string& jurisdiction);

  // Re-wraps a (stopped) store's store key under a new region key: the
  // region key rotates without re-encrypting anything. The old key no longer
  // opens the store; backups receive the new wrapped store key with the next
  // shipment. Corruption if `old_key` is not the store's. Returns the new
  // wrapped store key (its SHA-256 is what backups report once they hold it).
  static Result<std::string> RotateRegionKey(const std::string& data_dir, const std::string& old_key,
                                             const std::string& new_key);
  // The store key wrapped by the region key ("" in plaintext stores and those
  // encrypted before store keys existed), shipped to backup regions.
  std::string WrappedStoreKey() const;

  // Whether personal data is encrypted at rest (a region key was given).
  bool encrypted() const { return keyring_ != nullptr; }
  // Whether the log carries an integrity chain: encrypted from its first
  // record (docs/FORMATS.md).
  bool chained() const { return chained_; }
  // Log records holding personal data in the clear (from before the store
  // was encrypted, or in open mode). Backups refuse them.
  uint64_t PlaintextPersonalRecords() const;
  // The user's pseudonym in the encrypted log and its backups ("p:" + 32 hex
  // digits); "" when not encrypted.
  std::string Pseudonym(const std::string& user_id) const;
  // The sequence number of the last durable record.
  uint64_t LastSeq() const;
  // The sequence number of the last record applied to the state that feeds
  // read: at most LastSeq(), and at least a write's own record once it
  // returns (group commit may have written later records, not yet applied).
  uint64_t AppliedSeq() const { return applied_seq_.load(std::memory_order_acquire); }
  // Replication (replication/shipper.h): up to about `max_bytes` of records
  // from `from_seq` on, with the wrapped keys of every user they seal.
  Status ReadLog(uint64_t from_seq, size_t max_bytes, LogBatch* out) const;

  // Writes a snapshot of the state as of AppliedSeq() (engine/snapshot.cc):
  // writers wait while the catalog, the model and the ANN graph are
  // encoded, then for one hold at a time while the users are
  // (engine/user_section_walk.h); feeds do not wait. Keeps the newest
  // options().snapshot.keep. OK without writing when the snapshot this engine loaded or
  // last wrote is at AppliedSeq().
  Status WriteSnapshot();
  // Decodes a snapshot body (no files, no checksums, no keys: sealed user
  // entries are Corruption) into a throwaway state, with the ANN file at
  // ann_path: OK or the error a start would report. For fuzz/fuzz_snapshot.cc,
  // which feeds it hostile bytes.
  static Status DecodeSnapshotBody(const EngineOptions& options, std::string_view body, const std::string& ann_path);

  // Rebuilds the ANN index with a norm bound fitted to the current video
  // vectors (retrieval.ann_norm_headroom times the longest the graph alone
  // holds; AnnIndex::MaxNormBesideLongest), off the state
  // lock, then re-writes the videos that moved meanwhile (copied under the
  // shared lock, so feeds go on), and swaps it in under the write lock with
  // the few that moved since; OK at
  // once if every vector outside the exact list fits the current bound, the
  // list has room, and the index has not taken
  // retrieval.ann_refit_moves in-place moves (AnnRefitDue). Vectors longer than the
  // bound rank as if shorter (retrieval/ann_index.h), as happens in a store
  // that started empty or loaded an index from a snapshot: Open and each
  // snapshot write start this in the background, on one thread, when it is
  // due. `threads`: 0 = every core. `force`: rebuild even if every vector
  // fits (a graph that took many in-place moves: `foryou bench`'s ANN phase
  // measures both). `idle_priority`: the build's threads run in SCHED_IDLE
  // (util/thread_priority.h), so that a busy server's feeds and writes go
  // first; the background rebuild uses it for in-place moves (and gives it
  // up when vectors outgrow the bound meanwhile), a rebuild asked for by a
  // caller does not.
  Status RebuildAnn(unsigned threads = 0, bool force = false, bool idle_priority = false);
  // AnnIndex::moves of the index being served.
  uint64_t AnnMoves() const;

  // The trained algorithm without any user data (engine/model_payload.h):
  // catalog, video vectors and counters, ranker weights, co-engagement.
  std::string ExportModel() const;
  // Loads an exported model, durably (a log record): upserts its catalog and
  // sets those parameters. Users and their data are untouched.
  // InvalidArgument if its embedding_dim differs from this engine's, or it
  // carries sequence vectors of another learning.sequence_dim (they would
  // be dropped: the imported algorithm would not be the exported one) or
  // trained with the other learning.sequence_softmax.
  Status ImportModel(std::string_view payload);
  // For offline evaluation protocols that show an interaction to a model as
  // context only (foryou eval s3rec --validation context): extends each
  // event's user history (seen, recent positives, affinities: what the
  // user's features are computed from) and trains nothing: no ranker,
  // embedding, co-engagement, video statistic or trending update. Not
  // written to the log (lost on restart). NotFound for an unknown user or
  // video.
  Status ExtendHistory(const std::vector<Event>& events);
  // Scores videos for `user_id` exactly as Feed scores its candidates (same
  // user context, features and model) but without retrieval, exclusion or
  // reranking. `videos` are catalog indexes (VideoIndex); null means every
  // video, in index order. For offline evaluation (foryou eval).
  Status ScoreVideos(const std::string& user_id, int64_t now_ms, const std::vector<uint32_t>* videos,
                     std::vector<float>* scores,
                     const ObjectiveWeights* objectives = nullptr) const;
  // Dense index of a video: the order in which videos were first upserted.
  std::optional<uint32_t> VideoIndex(const std::string& video_id) const;

  Result<UserProfile> GetUser(const std::string& user_id) const;
  // Reads the whole log for the user's events: O(log size).
  Result<UserExport> ExportUser(const std::string& user_id);
  Result<VideoInfo> GetVideo(const std::string& video_id) const;
  EngineStats Stats() const;
  std::vector<UserSummary> Users() const;
  // Queries are the vectors of up to `queries` users with history (the real
  // query distribution), chosen with a fixed seed. Also sweeps `ef_sweep`
  // search breadths (under the write lock: ef is global to the index).
  AnnQuality MeasureAnn(size_t queries, int k, const std::vector<int>& ef_sweep = {});
  // The vectors the ANN index is asked about: every video's learned vector
  // (row i is video index i) and the queries MeasureAnn uses, for comparing
  // index structures on them offline (bench/ann_bench.cc). Personal data (a
  // user's learned vector): for the operator's own benchmarks, not an API.
  AnnWorkload AnnVectors(size_t queries) const;
  // Waits until the ANN index holds every video of the catalog: a large
  // batch of new videos is acknowledged before it is indexed (see
  // RetrievalOptions::ann_defer_from). False after `timeout`.
  bool WaitForAnnIndex(std::chrono::milliseconds timeout) const;
  // For tests: holds the background ANN indexer before its next chunk
  // (videos stay pending) until called with false.
  void PauseAnnIndexer(bool paused);
  // For tests: how many users' served lists are remembered (in the eviction order).
  size_t ServedUsersForTest() {
    std::lock_guard lock(served_mu_);
    return served_order_.size();
  }
  // For tests: called on the snapshot's thread, holding no lock, before
  // each hold of a snapshot's walk of the users (engine/user_section_walk.h)
  // with the first slot it will encode, and once more with the number of
  // slots when the walk is over. Set before any snapshot runs.
  void SetSnapshotHoldHookForTest(std::function<void(size_t next_slot)> hook) {
    snapshot_hold_hook_ = std::move(hook);
  }
  const EngineOptions& options() const { return options_; }
  // Cluster mode: records this replica applied that another replica wrote
  // (0 in embedded mode).
  uint64_t FollowedRecords() const { return followed_records_.load(std::memory_order_relaxed); }
  bool clustered() const { return cluster_ != nullptr; }

 private:
  struct State;  // everything under mu_ (engine/engine_state.h)
  class UserSectionWalk;  // a snapshot's users, encoded while writers go on (engine/user_section_walk.h)
  Engine(const EngineOptions& options, const Clock& clock);

  // Appends a record (with its chain MAC when the log is chained). Caller
  // holds write_mu_.
  Status AppendRecord(std::string_view record, uint64_t* seq, const Store::KeyEntries& keys = {},
                      const std::vector<std::string>& delete_keys = {});
  Status ApplyRecord(uint64_t seq, std::string_view record, bool replaying);
  // A record needing no validation (videos, model): group-committed in
  // embedded mode; in cluster mode written alone, retried on a conflict.
  Status AppendAndApply(const std::string& record);
  // Cluster mode (engine/cluster_replica.cc).
  Status OpenCluster(bool seed);                          // checks, seeding, catch-up; starts the threads
  Status JoinFromSnapshot();                              // an empty replica: the region's snapshot, keys, log prefix
  void PublishSnapshot(uint64_t seq);                     // caller holds snapshot_mu_
  Status SeedCluster(uint64_t from_seq);                  // publishes this store's log from from_seq on
  Status AppendToCluster(std::string_view record, uint64_t* seq, const Store::KeyEntries& keys,
                         const std::vector<std::string>& delete_keys);  // caller holds write_mu_
  Status ApplyFromCluster(const ClusterRecord& r);        // caller holds write_mu_
  void FollowLoop();
  void EraseLoop();  // retries pending cluster erasures and compacts the key table, off write_mu_
  // Erases wrapped keys from the cluster (region and mirrors). Durable
  // intent: each name is kept as meta "cluster_erase/<hex>" until the
  // erasure succeeded; EraseLoop retries it (never under write_mu_).
  void EraseClusterKeys(const std::vector<std::string>& names, const std::string& jurisdiction);
  void RetryClusterErasures();
  Status Erase(const std::string& user_id);
  // Rewrites the log records in [from, to] that hold the user's events or
  // home without them; counts into *personal the records that still hold
  // someone's personal data in the clear. Plaintext erasure only.
  Status RewriteLogWithout(const std::string& user_id, uint64_t from, uint64_t to, uint64_t* personal);
  Result<size_t> IngestClustered(const std::vector<Event>& events, const std::string& jurisdiction, bool batch_limit);
  // Runs `attempt` (a whole write: validate, append, apply) again while it
  // loses the race for the next sequence number to another replica.
  template <typename F>
  auto RetryOnClusterConflict(F attempt) -> decltype(attempt());
  Status ApplyShred(const struct LogRecord& rec, bool replaying);
  // Snapshots (engine/snapshot.cc). LoadSnapshot: during Open, holding mu_,
  // the newest snapshot that verifies (damaged ones skipped and logged);
  // *seq = its sequence number, 0 if none.
  Status LoadSnapshot(uint64_t* seq);
  Status WriteSnapshotLocked();  // WriteSnapshot's work; caller holds snapshot_mu_
  // One attempt of it; *again: its walk of the users was cut short
  // (UserSectionWalk::BeforeReset) and nothing was written (a later record
  // is tried).
  Status WriteSnapshotAttempt(bool* again);
  // Writers call these under mu_ (exclusive) before they change user slot
  // `slot` (an erasure: before its Shred record takes the user's keys out of
  // memory), and before they reset one: the users section of a snapshot
  // being written keeps the slot as of its record
  // (engine/user_section_walk.h).
  void BeforeUserChange(uint32_t slot);
  void BeforeUserReset(uint32_t slot);
  Status TryLoadSnapshot(uint64_t seq);
  void MaybeRebuildAnnInBackground();
  // Vectors outgrew the ANN norm bound and the exact list cannot cover
  // them (full or off): a rebuild is urgent. Caller holds mu_.
  bool AnnRefitOutgrown() const;
  // Whether the ANN index is due for a rebuild: vectors outgrew its norm
  // bound (AnnRefitOutgrown), its exact list is full, or
  // retrieval.ann_refit_moves in-place moves. Caller holds mu_.
  bool AnnRefitDue() const;
  Result<SnapshotAnchor> Anchor(uint64_t seq) const;
  void SnapshotLoop();
  void NoteUpdates(uint64_t n);  // caller holds mu_; wakes SnapshotLoop when one is due
  // Updates after which a background snapshot is due: snapshot.every_updates,
  // or every_updates_per_entry per user and video as of the last one if
  // more; 0 when background snapshots are off.
  uint64_t SnapshotDue() const;
  void ResetUser(uint32_t idx);
  Status IndexNewVideos(const std::vector<uint32_t>& fresh);
  // The background ANN indexer (engine/ann_indexer.cc). QueueForAnn: caller
  // holds mu_ exclusively; the videos go to State::ann_pending and the
  // indexer (started on first use) inserts them in chunks.
  void QueueForAnn(const std::vector<uint32_t>& videos);
  void WakeAnnIndexer();
  void AnnIndexerLoop();
  Status ApplyVideos(const std::vector<Video>& videos, bool replaying);
  // Remembers `videos` as served to user_id: the feed passes the videos of
  // its page that its ServedSnapshot did not hold, so the list holds each
  // video once (two feeds of one user at once may both add one; a
  // duplicate only takes a place in the list). walk_from: where the next
  // catalog walk starts (nullopt: unchanged). erasures: what ServedSnapshot
  // gave the feed; if a user was erased since, nothing is recorded (the
  // page may have been ranked from the erased user's state, which must not
  // come back as a served list; the cost is that one page may be shown again).
  void RecordServed(const std::string& user_id, const std::vector<uint32_t>& videos,
                    std::optional<uint32_t> walk_from, uint64_t erasures);
  // The videos recently served to user_id (unordered; a video served by two
  // feeds at once may be there twice) into *out. Returns the count of
  // erasures so far, for RecordServed.
  uint64_t ServedSnapshot(const std::string& user_id, std::vector<uint32_t>* out,
                          std::optional<uint32_t>* walk_from = nullptr);
  // Forgets user_id's served list. Caller holds served_mu_.
  void ForgetServedLocked(const std::string& user_id);

  const EngineOptions options_;
  const Clock& clock_;
  std::unique_ptr<class Store> store_;
  std::unique_ptr<class Keyring> keyring_;  // null: plaintext
  bool chained_ = false;   // the log carries an integrity chain (Keyring::LogMac)
  mutable std::mutex store_key_mu_;
  std::string wrapped_store_key_;  // kept in the store; guarded by store_key_mu_
  std::string unsaved_store_key_;  // a new store's, until its first record; guarded by write_mu_
  // The chain MAC of the last record; guarded by write_mu_, and by the
  // leader of a group commit (which runs only while no one holds write_mu_
  // for anything but queueing).
  std::string last_mac_;

  std::mutex write_mu_;  // serialises log appends with their application
  UserFences fences_;    // guarded by write_mu_
  Status ApplyLive(uint64_t seq, std::string_view record);
  std::atomic<bool> failed_{false};  // set once, after write_failure_
  std::string write_failure_;        // written once (ApplyLive), before failed_ is set
  std::string FenceName(const std::string& user_id) const;
  // At Open: lifts fences whose user is gone (an erasure that ended a move,
  // then a crash before it lifted the fence).
  Status LiftStaleFences();
  Result<size_t> Ingest(std::vector<Event> events, const std::string& jurisdiction, bool batch_limit);

  // Group commit (embedded mode; engine/group_commit.cc). An events batch is
  // validated and sealed holding write_mu_, queued, and write_mu_ let go
  // (video batches and model imports too, unvalidated: AppendAndApply). One
  // write leader at a time numbers every queued, unwritten record and writes
  // them in one durable batch (one fsync); each group is applied in order
  // once the groups before it are, so a write overlaps the previous apply.
  // Every other writer takes write_mu_ through LockWrites, which first waits
  // until the queue is empty.
  struct QueuedWrite {
    std::string record;
    Store::KeyEntries keys;  // new wrapped keys the record needs
    uint64_t ticket = 0;     // its place in the queue (QueueWrite)
    uint64_t seq = 0;        // numbered by the group's leader
    Status status;
    bool written = false;    // durable in the log (not yet applied unless done)
    bool done = false;
  };
  // write_mu_, once no queued write is left unapplied.
  std::unique_lock<std::mutex> LockWrites();
  bool GroupCommits() const;          // whether Ingest queues; caller holds write_mu_
  // Queues w unless a group failed since CommitFailures() returned
  // `failures` (Unavailable). Caller holds write_mu_.
  Status QueueWrite(QueuedWrite* w, uint64_t failures);
  uint64_t CommitFailures();
  Status CommitQueued(QueuedWrite* w);  // caller let go of write_mu_; returns w's outcome
  QueuedWrite* FirstUnwritten() const;  // caller holds commit_mu_
  Status WriteGroup(const std::vector<QueuedWrite*>& group);  // the write leader
  void FailUnwritten(const Status& s);  // caller holds commit_mu_
  // Drops queued homes of batches applied or failed since. Caller holds
  // write_mu_.
  void PruneQueuedHomes();
  // The home a sealed record still in the queue gives a user the state does
  // not know yet (what validation would read once it is applied); "" if none.
  // Caller holds write_mu_.
  std::string QueuedHome(const std::string& user_id) const;
  std::mutex commit_mu_;
  std::condition_variable commit_cv_;       // with commit_mu_: a group was committed
  std::deque<QueuedWrite*> commit_queue_;   // guarded by commit_mu_; in ticket order
  uint64_t tickets_ = 0;                    // guarded by write_mu_ and commit_mu_
  uint64_t commit_failures_ = 0;            // group writes that failed; guarded by commit_mu_
  bool writing_ = false;                    // a group write runs; guarded by commit_mu_
  std::vector<std::pair<uint64_t, uint64_t>> failed_tickets_;  // [from, to] failed, not yet pruned; commit_mu_
  std::atomic<uint64_t> committed_tickets_{0};  // every ticket up to this one is done
  std::atomic<uint64_t> group_commits_{0}, group_committed_batches_{0};
  std::unordered_map<std::string, std::pair<uint64_t, std::string>> queued_homes_;  // user -> (ticket, home); write_mu_
  std::deque<std::pair<uint64_t, std::string>> queued_home_order_;  // (ticket, user), to prune; write_mu_
  mutable std::shared_mutex mu_;
  std::unique_ptr<State> state_;  // guarded by mu_
  // Every writer takes mu_ through LockStateForWrite, which counts it in
  // state_writers_waiting_ while it waits: a snapshot's walk of the users
  // (engine/user_section_walk.h) lets the waiting writers in between its
  // holds of the shared lock. (glibc's rwlock lets a reader in ahead of a
  // waiting writer: the walk would take the lock back at once, and hold the
  // writers for all of it.)
  std::unique_lock<std::shared_mutex> LockStateForWrite();
  std::atomic<int> state_writers_waiting_{0};

  // Videos shown to each user and not yet interacted with. In memory only:
  // after a restart a served-but-unwatched video may be shown again.
  struct Served {
    std::vector<uint32_t> ring;  // the newest kMaxServed (engine.cc), oldest overwritten first
    size_t next = 0;
    // Where the user's next catalog walk (feed.cc's fallback) starts: after
    // the last video the previous walk looked at, so a user who has used up
    // the other sources does not rescan what the last feeds already passed.
    std::optional<uint32_t> walk_from;
  };
  std::mutex served_mu_;
  std::unordered_map<std::string, Served> served_;  // guarded by served_mu_
  std::deque<std::string> served_order_;            // insertion order, for eviction
  uint64_t served_erasures_ = 0;                    // guarded by served_mu_; ForgetServedLocked

  std::shared_ptr<ClusterLog> cluster_;  // null: embedded mode
  std::thread follower_, eraser_;
  std::mutex erase_mu_;
  std::mutex one_erasure_mu_;  // one Erase at a time, taken before snapshot_mu_ and write_mu_: a plaintext erasure rewrites records with writers going on
  // Users whose plaintext erasure rewrote part of the log and failed before
  // they left the state: no snapshot is written while any is left (guarded
  // by snapshot_mu_).
  std::set<std::string> unfinished_erasures_;
  std::mutex erase_retry_mu_;  // one RetryClusterErasures at a time (the erase loop and Erase both call it)
  std::condition_variable erase_cv_;  // with erase_mu_: an erasure or a scrub is due
  bool erase_due_ = false, scrub_due_ = false;  // guarded by erase_mu_
  std::atomic<bool> stopping_{false};
  std::condition_variable applied_cv_;  // with write_mu_: a followed record was applied
  std::atomic<uint64_t> followed_records_{0};
  std::atomic<uint64_t> cluster_conflicts_{0};
  std::atomic<uint64_t> applied_seq_{0};  // set after each apply

  std::mutex ann_rebuild_mu_;  // one RebuildAnn at a time; taken before mu_
  std::mutex ann_thread_mu_;  // guards ann_rebuilder_
  std::thread ann_rebuilder_;
  std::atomic<bool> ann_rebuilding_{false};  // a background rebuild runs (MaybeRebuildAnnInBackground)
  // Vectors outgrew the norm bound: a background rebuild at idle priority
  // gives way to one at normal priority.
  std::atomic<bool> ann_rebuild_urgent_{false};
  std::atomic<uint64_t> ann_rebuilds_{0};     // rebuilds swapped in since Open
  std::atomic<bool> snapshot_writing_{false};
  std::mutex ann_indexer_mu_;  // guards ann_indexer_, ann_indexer_due_ and ann_indexer_paused_
  std::condition_variable ann_indexer_cv_;
  std::thread ann_indexer_;
  bool ann_indexer_due_ = false;
  bool ann_indexer_paused_ = false;  // guarded by ann_indexer_mu_
  std::unique_ptr<class SnapshotFiles> snapshots_;
  std::mutex snapshot_mu_;  // one snapshot write (or removal) at a time; taken before mu_
  std::thread snapshotter_;
  std::mutex snapshot_wait_mu_;
  std::condition_variable snapshot_cv_;  // with snapshot_wait_mu_: a snapshot is due, or stopping
  std::atomic<uint64_t> updates_since_snapshot_{0};
  std::atomic<uint64_t> snapshot_entries_{0};  // users + videos as of the last snapshot or the start
  std::atomic<uint64_t> snapshot_seq_{0}, snapshots_written_{0}, snapshots_skipped_{0}, snapshot_bytes_{0};
  std::atomic<double> snapshot_seconds_{0}, snapshot_pause_seconds_{0};
  // The users section of the snapshot being written, while it walks the
  // users (null otherwise); guarded by mu_ (engine/user_section_walk.h).
  std::unique_ptr<UserSectionWalk> user_walk_;
  std::function<void(size_t)> snapshot_hold_hook_;  // SetSnapshotHoldHookForTest
  // During Open's replay after a snapshot: videos to write to the ANN index
  // once it is over (the loaded index holds the others as of the snapshot):
  // new or changed ones (forced), and those whose vector events moved
  // (written if they drifted, as when serving).
  struct AnnDirty {
    std::vector<uint32_t> forced, moved;
  };
  AnnDirty* ann_dirty_ = nullptr;

  // During Open: the user keys, loading on a thread of their own while the
  // snapshot decodes (WaitForKeys). Declared after keyring_ and store_, so
  // destroyed (and waited for) before them.
  std::shared_future<Status> keys_loaded_;
  Status WaitForKeys() const { return keys_loaded_.valid() ? keys_loaded_.get() : Status::OK(); }

  double recovery_seconds_ = 0;
  uint64_t recovered_records_ = 0, replayed_records_ = 0, records_at_open_ = 0;
  // Records of personal data in the clear (written before the store was
  // encrypted): erasure rewrites them, and they cannot be backed up.
  // Written holding mu_ and write_mu_ (or the group commit's apply turn, which
  // excludes write_mu_'s holders through LockWrites); read holding either.
  uint64_t plaintext_personal_records_ = 0;
  // During Open only (its replay, and in cluster mode its catch-up):
  // pseudonyms whose keys Shred records destroyed, and the key names of
  // sealed groups (or snapshot entries) that did not open.
  std::unordered_set<std::string> shredded_, unreadable_;
  bool opening_ = true;  // cleared before cluster mode's follower starts
};

}  // namespace foryou
