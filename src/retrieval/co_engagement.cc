#include "retrieval/co_engagement.h"

#include <algorithm>

#include "util/coding.h"

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
    m = boost::container::flat_map<uint32_t, float>(all.begin(), all.end());
  }
}

void CoEngagement::Record(const std::vector<uint32_t>& recent, uint32_t item, float strength) {
  float w = strength;
  size_t n = std::min(window_, recent.size());
  for (size_t r = 0; r < n; ++r, w *= decay_) {
    if (recent[r] == item) continue;
    AddEdge(recent[r], item, w);                               // what came next
    if (backward_ > 0) AddEdge(item, recent[r], w * backward_);  // what came before
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

void CoEngagement::EncodeTo(std::string* out) const {
  PutVarint64(out, edges_.size());
  out->reserve(out->size() + edges_.size() * 2 + num_edges_ * 7);  // sized once, as Catalog::EncodeTo
  for (const auto& m : edges_) {
    PutVarint64(out, m.size());
    uint32_t prev = 0;
    for (const auto& [to, w] : m) {  // a flat_map: ascending already, so small deltas
      PutVarint64(out, to - prev);
      prev = to;
      PutFloat(out, w);
    }
  }
}

bool CoEngagement::DecodeFrom(std::string_view* in) {
  uint64_t n;
  if (!GetVarint64(in, &n) || n > in->size()) return false;
  std::vector<boost::container::flat_map<uint32_t, float>> edges(n);
  size_t num = 0;
  for (auto& m : edges) {
    uint64_t count;
    if (!GetVarint64(in, &count) || count > in->size()) return false;
    m.reserve(count);
    uint64_t to = 0;
    for (uint64_t k = 0; k < count; ++k) {
      uint64_t delta;
      float w;
      if (!GetVarint64(in, &delta) || !GetFloat(in, &w)) return false;
      to += delta;
      if (to >= n || !m.try_emplace(static_cast<uint32_t>(to), w).second) return false;
    }
    num += m.size();
  }
  edges_ = std::move(edges);
  num_edges_ = num;
  return true;
}

}  // namespace foryou
