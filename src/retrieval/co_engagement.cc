#include "retrieval/co_engagement.h"

#include <algorithm>

namespace foryou {

void CoEngagement::AddEdge(uint32_t from, uint32_t to, float w) {
  auto& m = edges_[from];
  auto [it, inserted] = m.try_emplace(to, 0.0f);
  it->second += w;
  if (inserted) ++num_edges_;
  if (m.size() > 2 * max_neighbors_) {
    std::vector<std::pair<uint32_t, float>> all(m.begin(), m.end());
    std::nth_element(all.begin(), all.begin() + max_neighbors_, all.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second || (a.second == b.second && a.first < b.first); });
    all.resize(max_neighbors_);
    num_edges_ -= m.size() - all.size();
    m = std::unordered_map<uint32_t, float>(all.begin(), all.end());
  }
}

void CoEngagement::Record(const std::vector<uint32_t>& recent, uint32_t item, float strength) {
  float w = strength;
  size_t n = std::min(window_, recent.size());
  for (size_t r = 0; r < n; ++r, w *= decay_) {
    if (recent[r] == item) continue;
    AddEdge(recent[r], item, w);
    AddEdge(item, recent[r], w);
  }
}

std::vector<std::pair<uint32_t, float>> CoEngagement::Neighbors(uint32_t item, size_t k) const {
  std::vector<std::pair<uint32_t, float>> out;
  if (item >= edges_.size()) return out;
  out.assign(edges_[item].begin(), edges_[item].end());
  auto better = [](const auto& a, const auto& b) { return a.second > b.second || (a.second == b.second && a.first < b.first); };
  if (out.size() > k) {
    std::partial_sort(out.begin(), out.begin() + k, out.end(), better);
    out.resize(k);
  } else {
    std::sort(out.begin(), out.end(), better);
  }
  return out;
}

float CoEngagement::Weight(uint32_t item, uint32_t other) const {
  if (item >= edges_.size()) return 0;
  auto it = edges_[item].find(other);
  return it == edges_[item].end() ? 0.0f : it->second;
}

}  // namespace foryou
