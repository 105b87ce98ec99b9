// AnnIndex: approximate nearest videos by inner product, over the learned
// video embeddings (hnswlib HNSW). Labels are the engine's dense video indexes.
//
// Videos are inserted as they arrive and moved when their embedding moves.
// A move (RetrievalOptions::ann_move_links) either overwrites the point's
// vector and keeps its links (the default; the engine rebuilds the graph
// once moves add up: retrieval.ann_refit_moves), or is hnswlib's updatePoint,
// which re-chooses the links of the point and its neighbours from the
// point's two-hop neighbourhood and so, move after move, loses the
// long-range links a search needs. hnswlib reports failure by throwing; this
// wrapper turns that into a Status.
//
// Maximum inner product search is reduced to nearest-neighbour search in L2,
// where HNSW's graphs work well (Bachrach et al. 2014): a vector v is stored
// as [v, sqrt(M^2 - |v|^2)] and a query q as [q, 0], so |q' - v'|^2 =
// |q|^2 + M^2 - 2 q.v and the nearest point is the largest inner product.
// M is a bound on the norms (SetNormBound); a vector longer than M is stored
// as if its norm were M (counted in clamped()). A build sets M above the
// vectors the graph alone will hold (MaxNormBesideLongest): the few far
// longer than the rest are in the exact list below, at full length.
//
// Moved points are also searched exactly until the next rebuild. A move
// keeps the links chosen where the point was, so a search that follows them
// may never reach where it went, and the points that move are the ones
// learning favours: popular videos, whose vectors grow and which hold most
// users' true top results (at 1M videos, 2.5% of the videos had moved and
// the graph as served found 0.13 of the true top 100). Each moved point's
// vector, as given (not nudged, not shortened to the bound), is kept in an
// exact list that every Search compares with the query (64 points at a
// time, coordinate-major blocks) and merges with the graph's answer. Up to
// RetrievalOptions::ann_exact_moves points, and at most an eighth of the
// index (ExactRoom); beyond that, moves only reach the graph, and
// exact_moves_full() tells the engine a rebuild is due. A rebuilt graph
// starts its list with the longest vectors (KeepLongestExact): a graph
// alone found 0.82-0.85 of the true top 100 at 1M, the graph and the list
// 0.94.
// A listed point is hidden in the graph (hnswlib's delete mark): the links
// it had still route searches, but the graph answers with ef unlisted
// points, so none of its k is a stale copy of a listed one. Two costs: a
// search passes hidden points by to find ef others (hence the eighth), and
// hnswlib links points inserted later to unhidden points only.
//
// Exact duplicates: HNSW's neighbour selection keeps a candidate unless a
// link already chosen is strictly closer to it than the new point is, so
// identical vectors never prune one another, link only among themselves,
// and trap searches that walk in (qdrant PR 10239 describes the same sink).
// A catalog loaded at its content priors is full of them (at 1M videos of
// the bench world, half the vectors in 91,000 identical groups; the graph
// served recall@100 0.11). Each stored vector is therefore nudged by
// RetrievalOptions::ann_jitter x |v|, in a direction drawn from its label:
// ties are broken, and the ranking moves by about that fraction.

//
// Thread safety: Search may run concurrently with other Search calls; Upsert
// needs exclusive access (the engine's write lock); UpsertReserved of
// distinct labels not yet in the index may run in parallel (the rebuild at
// start; a move overwrites a point's vector, which nothing else may read
// meanwhile). hnswlib 0.6.2
// draws each point's level from one RNG without a lock, so parallel inserts
// race on it (ThreadSanitizer reports it; fuzz/tsan.supp): the levels drawn
// differ from run to run, as the parallel graph does anyway.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "config/options.h"
#include "util/status.h"

namespace hnswlib {
template <typename T>
class HierarchicalNSW;
template <typename T>
class SpaceInterface;
}  // namespace hnswlib

namespace foryou {

class AnnIndex {
 public:
  AnnIndex(int dim, const RetrievalOptions& options);
  ~AnnIndex();

  // Inserts or moves a point, growing the index when it is full. One caller
  // at a time.
  Status Upsert(uint32_t label, const float* vec);
  // Upsert without growing: distinct labels may run in parallel, once
  // Reserve has made room for all of them (growing is not thread-safe, and
  // neither is reading the point count while others insert).
  Status UpsertReserved(uint32_t label, const float* vec);
  Status Reserve(size_t n);
  // The nudge an Upsert gives `label`'s vector (RetrievalOptions::ann_jitter;
  // see the top of this file), applied to *x in place.
  static void Nudge(uint32_t label, double jitter, std::vector<float>* x);
  // Reserve for a growing catalog: room for at least n, doubling, so that a
  // load in many batches does not copy the index once per batch.
  Status Grow(size_t n);
  // Applies to points upserted afterwards. Default 1.
  void SetNormBound(float m) { norm_bound_ = m; }
  // The bound an index built for vectors up to `max_norm` long takes, with
  // room for them to grow: max(1, RetrievalOptions::ann_norm_headroom x
  // max_norm).
  float FittedNormBound(float max_norm) const;
  float norm_bound() const { return norm_bound_; }
  uint64_t clamped() const { return clamped_.load(); }
  // New points stored shortened to the bound since this index was built
  // (not in the exact list, which only moves and builds fill): the engine
  // rebuilds for them. Not kept in snapshots.
  uint64_t clamped_inserts() const { return clamped_inserts_.load(std::memory_order_relaxed); }
  void SetClamped(uint64_t n) { clamped_.store(n); }
  // The moved points searched exactly (see the top of this file), in the
  // order they first moved. A snapshot keeps the labels; RestoreExactMoves
  // puts them back with their vectors (`vectors`: label-indexed, dim each).
  const std::vector<uint32_t>& exact_moves() const { return moved_labels_; }
  bool exact_moves_full() const;
  bool listed(uint32_t label) const { return moved_slot_.count(label) > 0; }
  // After a build: keeps the vectors much longer than most (over twice the
  // median norm) in the exact list too, longest first, up to half its room
  // less what moves already took
  // (`vectors`: labels 0..n-1, dim each, as inserted). They are the best
  // inner products for most queries (popular videos), and the graph holds
  // them shortened to the bound. Exclusive access.
  // New points stored beyond the bound are counted again afterwards
  // (clamped_inserts), leaving out the ones the list now holds.
  void KeepLongestExact(const float* vectors, size_t n);
  // The longest norm among `vectors` (labels 0..n-1) that KeepLongestExact
  // would leave to the graph alone, with an empty list: what the bound of
  // an index about to be built need cover (FittedNormBound).
  float MaxNormBesideLongest(const float* vectors, size_t n) const;
  Status RestoreExactMoves(const std::vector<uint32_t>& labels, const std::vector<float>& vectors);
  // Points moved in place (an Upsert of a label already in the index) since
  // this index was built: links chosen for where the points were. The
  // engine rebuilds the index once they reach retrieval.ann_refit_moves.
  uint64_t moves() const { return moves_.load(std::memory_order_relaxed); }
  // A snapshot carries the count with its graph (Load leaves it alone).
  void SetMoves(uint64_t n) { moves_.store(n, std::memory_order_relaxed); }
  // Snapshot (engine/snapshot.h): the graph as hnswlib's own file format at
  // `path` (written whole or an error; the caller checksums it). Load
  // replaces the index with the file's, with room for `capacity` points;
  // only load a file whose checksum was verified (hnswlib trusts its input).
  // The norm bound is not in the file: restore it with SetNormBound.
  Status Save(const std::string& path) const;
  Status Load(const std::string& path, size_t capacity);
  // The same through hnswlib's own loader (an lseek per point: slow on
  // large files); for tests that check Load builds the index it builds.
  Status LoadWithHnswlib(const std::string& path, size_t capacity);
  // Exchanges two indexes whole (graph, norm bound, clamped count, exact list).
  void Swap(AnnIndex& other);
  // Search breadth; affects every search, so only change it while none runs
  // (it also applies to an index loaded later).
  void SetEf(int ef);
  // Up to k (label, inner product) pairs, best first.
  std::vector<std::pair<uint32_t, float>> Search(const float* query, int k) const;
  size_t size() const;
  // Whether `label` was ever inserted. Not concurrently with inserts.
  bool Contains(uint32_t label) const;

 private:
  int dim_;
  float norm_bound_ = 1.0f;
  std::atomic<uint64_t> clamped_{0};
  std::atomic<uint64_t> clamped_inserts_{0};
  std::atomic<uint64_t> moves_{0};
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> NewIndex(size_t capacity) const;
  // Keeps `vec` as `label`'s exact copy (a move), if there is room, and
  // hides a newly listed point in the graph.
  void KeepExact(uint32_t label, const float* vec);
  void HideFromGraph(uint32_t label);
  // The vectors over twice the median norm, longest first, at most `room`:
  // (squared norm, label).
  std::vector<std::pair<float, uint32_t>> Longest(const float* vectors, size_t n, size_t room) const;
  // The exact list's room in an index of n points: ann_exact_moves, and at
  // most an eighth of n (at least 256).
  size_t ExactRoom(size_t n) const;

  RetrievalOptions options_;
  // The exact list: labels, their vectors and each label's slot. Vectors
  // are in blocks of 64 slots, coordinate-major within a block (see Search;
  // unused slots of the last block are zeros). Written by moves (exclusive
  // access), read by Search.
  std::vector<uint32_t> moved_labels_;
  std::vector<float> moved_vectors_;
  std::unordered_map<uint32_t, uint32_t> moved_slot_;
  std::unique_ptr<hnswlib::SpaceInterface<float>> space_;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> index_;  // made by the first Upsert, Reserve or Load
};

}  // namespace foryou
