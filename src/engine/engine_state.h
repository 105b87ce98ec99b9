// Internal to the engine: the in-memory state guarded by Engine::mu_, and the
// feature extraction shared by training (engine.cc) and serving (feed.cc).
#pragma once

#include <algorithm>
#include <boost/container/flat_map.hpp>
#include <boost/container/flat_set.hpp>
#include <memory>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <deque>
#include <functional>
#include <vector>

#include "engine/catalog.h"
#include "engine/engine.h"
#include "engine/video_scratch.h"
#include "learning/watch_norm.h"
#include "learning/embedding_model.h"
#include "learning/ranker_model.h"
#include "learning/signals.h"
#include "ranking/features.h"
#include "retrieval/ann_index.h"
#include "learning/sequence_model.h"
#include "retrieval/co_engagement.h"
#include "retrieval/trending.h"

namespace foryou {

class Keyring;

struct RecentPositive {
  uint32_t video;
  PositiveKind kind;
};

// Per-user sets and weights are sorted vectors (Boost.Container): a user
// holds a few to a few thousand entries of each, and at 1M users the hash
// containers' nodes and buckets were most of the 3.6 KB a user cost
// (docs/PERFORMANCE.md, "Memory").
using VideoSet = boost::container::flat_set<uint32_t>;
using WeightMap = boost::container::flat_map<uint32_t, float>;

struct UserRecord {
  std::string id;
  std::string home;  // jurisdiction, "" in open mode
  int64_t first_seen = 0;
  int64_t last_seen = 0;
  VideoSet seen;     // every video with any event: never shown again
  VideoSet blocked;  // not_interested
  VideoSet liked;
  VideoSet follows;  // creator indexes
  std::vector<RecentPositive> recent;  // most recent first, unique videos, at most learning.recent_positives
  WeightMap tag_affinity;
  WeightMap creator_affinity;
  WeightMap language_weight;
  std::array<uint64_t, kNumEventTypes> event_counts{};
  double watch_ratio_sum = 0;  // over plays
  double watch_log_sum = 0;    // over plays, of log(1 + watch_ratio)
  double watch_log_sq = 0;     // over plays, of its square
  uint32_t plays = 0;

  // The language the user engages with most; nullopt if none yet.
  std::optional<uint32_t> TopLanguage() const;
  std::vector<uint32_t> RecentVideos(size_t k) const;
  // The videos of recent[from, from + max) into out; returns how many.
  size_t RecentVideosFrom(size_t from, size_t max, uint32_t* out) const;
};

// Who is being scored, resolved once per feed or per training event.
struct UserContext {
  const UserRecord* user = nullptr;  // null: a user with no events yet
  std::optional<uint32_t> idx;       // index into State::users and the embeddings
  std::optional<uint32_t> lang;      // the language to match, if known
  // Co-engagement of videos with the user's recent positives, precomputed
  // into a caller's scratch when many videos are scored (feeds, evaluation);
  // null: looked up per video. Both give bit-identical values (same
  // summation order).
  const VideoScratch<float>* co = nullptr;
  // The sequence model's context of the user's latest positives
  // (SequenceModel::Context); has_sequence false: none (no positives yet,
  // or the model is off).
  bool has_sequence = false;
  std::array<float, SequenceModel::kMaxDim> sequence{};
};

// The longest sequence context and the most replays per event
// (learning.sequence_context and sequence_replays are refused above them).
constexpr size_t kMaxSequenceContext = 64;
constexpr size_t kMaxSequenceReplays = 100;

// Recent positive number i (0 = most recent) counts kSeedDecay^i in the
// co-engagement feature: what was watched last says most about what is next.
constexpr float kSeedDecay = 0.8f;

inline std::array<double, kNumHeads> ObjectiveArray(const ObjectiveWeights& w) {
  std::array<double, kNumHeads> a{};
  a[kHeadComplete] = w.complete;
  a[kHeadReplay] = w.replay;
  a[kHeadLike] = w.like;
  a[kHeadShare] = w.share;
  a[kHeadFollow] = w.follow;
  a[kHeadSkip] = w.skip;
  a[kHeadNotInterested] = w.not_interested;
  return a;
}

struct Engine::State {
  explicit State(const EngineOptions& o)
      : embeddings(o.learning.embedding_dim, o.learning),
        sequence(o.learning),
        ann(o.learning.embedding_dim, o.retrieval),
        co(/*max_neighbors=*/200, /*decay=*/0.85f, /*window=*/20, static_cast<float>(o.learning.co_backward_weight)),
        // A feed scans at most 10x its trending budget per ranking (feed.cc).
        trending(o.retrieval.trending_half_life_hours,
                 std::max<size_t>(Trending::kDefaultCapacity, 10 * static_cast<size_t>(std::max(o.retrieval.trending, 0)) + 1)) {}

  Catalog catalog;
  std::vector<UserRecord> users;
  std::unordered_map<std::string, uint32_t> user_index;
  EmbeddingModel embeddings;
  SequenceModel sequence;
  RankerModel ranker;
  AnnIndex ann;
  CoEngagement co;
  Trending trending;
  // Each video's vector as last written to the ANN index; a video is
  // re-indexed once it drifts more than retrieval.ann_reindex_drift from it.
  std::vector<float> ann_vectors;
  // Videos of the catalog the ANN index does not hold yet, oldest first: a
  // large batch's new videos, inserted by the background indexer after the
  // batch was acknowledged (engine/ann_indexer.cc). Until then feeds find
  // them through the other sources (fresh, creator, tags, trending).
  std::deque<uint32_t> ann_pending;
  uint64_t events = 0;
  // The sequence model's replays drawn by the record being applied, one
  // seed each (TrainSequence, ReplaySequence); empty between records.
  std::vector<uint64_t> sequence_replays;
  // Every play's watch so far, the prior of each viewer's (learning/watch_norm.h).
  WatchSums watch_population;

  const UserRecord* FindUser(std::string_view id) const {
    auto it = user_index.find(std::string(id));
    return it == user_index.end() ? nullptr : &users[it->second];
  }
  std::optional<uint32_t> FindUserIdx(std::string_view id) const {
    auto it = user_index.find(std::string(id));
    if (it == user_index.end()) return std::nullopt;
    return it->second;
  }

  // Snapshot body (engine/snapshot.cc, docs/FORMATS.md): everything here but
  // the ANN graph (its own file). EncodeSnapshotHead: the sections before
  // the users, each as its length then its bytes, and last the users
  // section's header (its length and entries follow it in the file: the
  // users are encoded while writers go on, Engine::UserSectionWalk, which
  // seals each entry with its user's data key).
  void EncodeSnapshotHead(uint64_t plaintext_records, const SnapshotAnchor& anchor,
                          std::vector<std::string>* out) const;
  // Replaces this (fresh) state with a snapshot body's, and the ANN index
  // with the (verified) file at ann_path. Entries whose key is
  // destroyed are left as erased slots and their key names appended to
  // *unreadable (the caller checks them against the Shred records it
  // replays). Corruption on anything malformed. `wait_for_keys`, if given,
  // is called before the first sealed entry is opened (the keyring may
  // still be loading meanwhile); its error is returned.
  Status DecodeSnapshot(std::string_view in, const std::string& ann_path, const Keyring* keyring,
                        uint64_t* plaintext_records, SnapshotAnchor* anchor, std::vector<std::string>* unreadable,
                        const std::function<Status()>& wait_for_keys = {});

  // co_scratch: non-null to precompute the co-engagement of every neighbour
  // of the recent positives into it (reset here); the context points at it.
  UserContext MakeContext(std::optional<uint32_t> user_idx, std::optional<uint32_t> lang,
                          VideoScratch<float>* co_scratch, const EngineOptions& o) const;
  // Features of (user, video) as of now_ms.
  FeatureVector Features(const UserContext& ctx, uint32_t video, int64_t now_ms, const EngineOptions& o) const;
  // Asks the CPU to fetch the per-video memory Features(., video, ...) reads
  // (a hint only): callers scoring many videos issue it a few videos ahead,
  // so that their cache misses overlap.
  void PrefetchFeatures(uint32_t video) const;
  // The feed's nearest-video source: up to k (video, inner product) pairs
  // for a user's embedding, into *out. A catalog smaller than
  // r.ann_exact_below is scanned exactly (retrieval/exact_search.h), every
  // video included; a larger one is searched through the HNSW graph, which
  // leaves out videos its background indexer has not reached yet.
  void NearestVideos(const float* query, size_t k, const RetrievalOptions& r,
                     std::vector<std::pair<uint32_t, float>>* out) const;
  // The sequence model's step for a positive on `video` after `recent` (the
  // user's latest positives, most recent first). It also draws the event's
  // replays of transitions from the users' recent positives
  // (learning/sequence_model.h) from `seed` into sequence_replays, which
  // ReplaySequence trains once the whole record is applied.
  void TrainSequence(const std::vector<uint32_t>& recent, uint32_t video, uint64_t seed, const LearningOptions& lo);
  // Trains the replays drawn while a record was applied, in the order they
  // were drawn, and empties the list. Done per record rather than per event
  // so that many replays' cache misses overlap: each touches a random user's
  // record and list and several random videos' vectors.
  void ReplaySequence(const LearningOptions& lo);
  // Normalised co-engagement weight of the edge seed -> video of raw weight w.
  float CoWeight(uint32_t seed, uint32_t video, float w) const;
  // The model's value of `video` for the user: sum_k objective_k * P(head_k).
  double Score(const FeatureVector& x, const std::array<double, kNumHeads>& objectives) const;
  // Writes `video`'s vector to the ANN index if it drifted (or if force).
  // `reserved`: the index has room for every video (AnnIndex::Reserve), so
  // distinct videos may be reindexed in parallel.
  Status Reindex(uint32_t video, double drift, bool force, bool reserved = false);
  // An empty ANN index fits its norm bound to the longest video vector
  // (AnnIndex::FittedNormBound) before its first insert, so that a store that starts empty
  // does not index its first catalog against the default bound of 1 and
  // clamp every longer vector until a rebuild (retrieval/ann_index.h).
  void FitEmptyAnnBound();
  // Whether `video`'s vector moved more than `drift` of its indexed norm.
  bool Drifted(uint32_t video, double drift) const;
  // The same rule for a vector `now` against the copy `indexed` an index
  // holds (a rebuild catching up, Engine::RebuildAnn).
  static bool MovedFrom(const float* now, const float* indexed, int dim, double drift);
};

}  // namespace foryou
