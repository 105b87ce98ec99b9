// CoEngagement: item-to-item graph of videos engaged with by the same users
// close together in time ("people who watched X to the end also liked Y").
//
// When a user has a positive on video j, every video i among that user's
// recent positives gets weight strength * decay^rank added to the edge i->j
// (what came next: rank 0 = most recent) and `backward` times that to j->i
// (what came before). Retrieval and the co-engagement feature follow edges
// out of the user's recent positives, so `backward` < 1 leans them toward
// what people went on to, as sequential recommenders do (issue 12:
// learning.co_backward_weight). Each video keeps at most `max_neighbors`
// strongest edges; weaker ones are pruned in bulk.
//
// Thread safety: const methods may run concurrently; AddItem, Record and
// RemoveItemEdges need exclusive access.
#pragma once

#include <boost/container/flat_map.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace foryou {

class CoEngagement {
 public:
  explicit CoEngagement(size_t max_neighbors = 200, float decay = 0.85f, size_t window = 20, float backward = 1.0f)
      : max_neighbors_(max_neighbors), decay_(decay), window_(window), backward_(backward) {}

  void AddItem() { edges_.emplace_back(); }
  // recent: the user's recent positive videos, most recent first, not
  // including `item`.
  void Record(const std::vector<uint32_t>& recent, uint32_t item, float strength);

  // The strongest neighbours of `item`, best first, at most k.
  std::vector<std::pair<uint32_t, float>> Neighbors(uint32_t item, size_t k) const;
  // Calls fn(neighbour, weight) for every edge of `item`, in unspecified order.
  template <typename Fn>
  void ForEachNeighbor(uint32_t item, Fn&& fn) const {
    if (item >= edges_.size()) return;
    for (const auto& [nb, w] : edges_[item]) fn(nb, w);
  }
  // Sets an edge's weight (model import).
  void SetEdge(uint32_t from, uint32_t to, float w) {
    if (edges_[from].insert_or_assign(to, w).second) ++num_edges_;
  }
  // Edge weight item -> other (0 if none).
  float Weight(uint32_t item, uint32_t other) const;
  size_t num_edges() const { return num_edges_; }
  size_t size() const { return edges_.size(); }  // videos
  // Snapshot (engine/snapshot.h): every edge, each video's sorted by
  // neighbour. DecodeFrom replaces the graph; false on malformed input.
  void EncodeTo(std::string* out) const;
  [[nodiscard]] bool DecodeFrom(std::string_view* in);

 private:
  void AddEdge(uint32_t from, uint32_t to, float w);
  size_t max_neighbors_;
  float decay_;
  size_t window_;
  float backward_;
  // Each video's edges, sorted by neighbour (at most 2 x max_neighbors_):
  // 8 bytes an edge where a hash map took about 40.
  std::vector<boost::container::flat_map<uint32_t, float>> edges_;
  size_t num_edges_ = 0;
};

}  // namespace foryou
